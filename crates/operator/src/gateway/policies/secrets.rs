//! The Secrets AuthPolicies name in `sharedSecretRef`: read from the apiserver when a policy is
//! loaded, offered to the compiler as a [`SecretSource`], hashed (never kept or logged in clear)
//! to notice a change, and watched one by one (a field selector on the name) so a changed or
//! deleted Secret reloads its policy without waiting for the resync.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use apiary_authpolicy::SecretSource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::registration::route::Key;

/// At most this many Secrets are watched; past it, changes are picked up by the resync.
pub const MAX_WATCHED: usize = 256;

/// The Secrets of one policy's namespace, by name (`None`: absent or unreadable).
#[derive(Default)]
pub struct Secrets(BTreeMap<String, Option<Secret>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, s)| (name, s.is_some()))).finish()
    }
}

impl Secrets {
    #[cfg(test)]
    pub fn new(secrets: BTreeMap<String, Option<Secret>>) -> Self {
        Secrets(secrets)
    }

    /// Reads `names` from namespace `ns`. An unreadable Secret (an apiserver error, not an
    /// absent one) counts as absent and makes the answer incomplete (`false`); the error is logged.
    pub async fn read(client: &Client, ns: &str, names: &BTreeSet<String>) -> (Self, bool) {
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let mut out = BTreeMap::new();
        let mut complete = true;
        for name in names {
            let secret = match api.get_opt(name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(secret = %format!("{ns}/{name}"), error = %e, "cannot read an AuthPolicy's Secret");
                    complete = false;
                    None
                }
            };
            out.insert(name.clone(), secret);
        }
        (Secrets(out), complete)
    }

    /// SHA-256 over every Secret's keys and values, to tell whether a reload is needed.
    pub fn digest(&self, hasher: &mut Sha256) {
        for (name, secret) in &self.0 {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            let data = secret.as_ref().and_then(|s| s.data.as_ref());
            for (key, value) in data.into_iter().flatten() {
                hasher.update(key.as_bytes());
                hasher.update([1]);
                hasher.update(&value.0);
                hasher.update([2]);
            }
            hasher.update([3]);
        }
    }
}

impl SecretSource for Secrets {
    /// The value of `key`, as text. A value that is not UTF-8 counts as absent.
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.0.get(name)?.as_ref()?;
        let bytes = secret.data.as_ref()?.get(key)?;
        String::from_utf8(bytes.0.clone()).ok()
    }
}

/// One watch per Secret in use; each sends a signal on `changed` when its Secret is created,
/// changed or deleted (and after each (re)list).
pub struct Watches {
    client: Client,
    changed: mpsc::Sender<()>,
    running: HashMap<Key, JoinHandle<()>>,
}

impl Watches {
    pub fn new(client: Client, changed: mpsc::Sender<()>) -> Self {
        Watches { client, changed, running: HashMap::new() }
    }

    /// Watches exactly `wanted` (up to [`MAX_WATCHED`]): starts the new ones, stops the others.
    pub fn follow(&mut self, wanted: &BTreeSet<Key>) {
        self.running.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            if self.running.len() >= MAX_WATCHED {
                tracing::warn!(
                    limit = MAX_WATCHED,
                    "too many AuthPolicy Secrets to watch; the others reload on resync"
                );
                break;
            }
            let task = tokio::spawn(watch_one(self.client.clone(), key.clone(), self.changed.clone()));
            self.running.insert(key.clone(), task);
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

async fn watch_one(client: Client, key: Key, changed: mpsc::Sender<()>) {
    let api = Api::<Secret>::namespaced(client, &key.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut warned = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                // One pending signal is enough: the receiver re-reads every Secret.
                let _ = changed.try_send(());
            }
            Ok(_) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(secret = %key, error = %e, "cannot watch an AuthPolicy's Secret; it reloads on resync");
            }
            Err(e) => tracing::debug!(secret = %key, error = %e, "Secret watch still failing"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(key: &str, value: &[u8]) -> Secret {
        let mut s: Secret = serde_json::from_value(json!({"metadata": {"name": "token-exchange"}})).unwrap();
        s.data = Some([(key.to_owned(), ByteString(value.to_vec()))].into());
        s
    }

    fn digest(s: &Secrets) -> Vec<u8> {
        let mut h = Sha256::new();
        s.digest(&mut h);
        h.finalize().to_vec()
    }

    #[test]
    fn a_secret_value_is_read_by_name_and_key_and_never_printed() {
        let s = Secrets::new([("token-exchange".to_owned(), Some(secret("k", b"Basic abc")))].into());
        assert_eq!(s.secret("token-exchange", "k").as_deref(), Some("Basic abc"));
        assert_eq!(s.secret("token-exchange", "other"), None);
        assert_eq!(s.secret("nope", "k"), None);
        assert!(!format!("{s:?}").contains("abc"));
        let binary = Secrets::new([("token-exchange".to_owned(), Some(secret("k", &[0xff, 0xfe])))].into());
        assert_eq!(binary.secret("token-exchange", "k"), None, "not UTF-8: absent");
    }

    #[test]
    fn the_digest_changes_with_a_value_and_with_a_deletion() {
        let a = Secrets::new([("token-exchange".to_owned(), Some(secret("k", b"one")))].into());
        let b = Secrets::new([("token-exchange".to_owned(), Some(secret("k", b"two")))].into());
        let gone = Secrets::new([("token-exchange".to_owned(), None)].into());
        assert_ne!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&gone));
        assert_eq!(
            digest(&a),
            digest(&Secrets::new([("token-exchange".to_owned(), Some(secret("k", b"one")))].into()))
        );
    }
}
