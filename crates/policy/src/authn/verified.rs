//! JWTs already verified, so a client that sends the same token with every request pays for
//! the signature check once. Keyed by the token's SHA-256; an entry lives until the token's
//! `exp` and at most [`MAX_AGE`], so a key the issuer withdraws stops working within a minute
//! even for tokens seen before. Bounded: a full table forgets expired entries, then everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::Identity;

/// Longest an entry is trusted without checking the signature again.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Most tokens remembered.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    identity: Arc<Identity>,
    until: Instant,
}

/// The table of verified tokens.
#[derive(Default)]
pub(crate) struct Verified {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

pub(crate) fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Verified {
    /// The identity of a token verified less than its lifetime (and [`MAX_AGE`]) ago.
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Identity>> {
        let map = self.map.lock().ok()?;
        let e = map.get(key)?;
        (e.until > Instant::now()).then(|| Arc::clone(&e.identity))
    }

    /// Remembers a verified token until its `exp` (never past [`MAX_AGE`]).
    pub(crate) fn put(&self, key: [u8; 32], identity: Arc<Identity>) {
        let Some(exp) = identity.claims.get("exp").and_then(serde_json::Value::as_u64) else { return };
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
        let Some(left) = exp.checked_sub(now_unix).filter(|s| *s > 0) else { return };
        let until = Instant::now() + Duration::from_secs(left).min(MAX_AGE);
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, e| e.until > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, Entry { identity, until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;
    use serde_json::json;

    fn identity(exp: u64) -> Arc<Identity> {
        let claims = json!({"sub": "a", "exp": exp}).as_object().cloned().unwrap_or_default();
        Arc::new(Identity { subject: "a".into(), claims, kind: IdentityKind::Jwt })
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_and_no_longer() {
        let v = Verified::default();
        v.put(key("t1"), identity(now() + 3600));
        assert_eq!(v.get(&key("t1")).map(|i| i.subject.clone()), Some("a".into()));
        assert!(v.get(&key("t2")).is_none());
        // Expired (or expiring this second): not remembered at all.
        v.put(key("old"), identity(now()));
        assert!(v.get(&key("old")).is_none());
        // No exp: never remembered.
        let mut no_exp = (*identity(0)).clone();
        no_exp.claims.remove("exp");
        v.put(key("noexp"), Arc::new(no_exp));
        assert!(v.get(&key("noexp")).is_none());
    }

    #[test]
    fn the_table_stays_bounded() {
        let v = Verified::default();
        for i in 0..(MAX_ENTRIES + 10) {
            v.put(key(&i.to_string()), identity(now() + 3600));
        }
        assert!(v.map.lock().map(|m| m.len()).unwrap_or(usize::MAX) <= MAX_ENTRIES);
    }
}
