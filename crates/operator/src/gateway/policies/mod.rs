//! The AuthPolicies (`kuadrant.io/v1`) of the cluster, loaded into the gateway's enforcer: a
//! watch of the policies (every namespace, or one) and of the HTTPRoutes they target; for each
//! route the oldest policy targeting it is compiled with the Secrets its `sharedSecretRef`s name
//! (read from the policy's namespace; each watched, so a change reloads it) and handed to a
//! [`PolicySink`] — an `Err` when Apiary cannot evaluate it, which makes the route refuse traffic.
//! Each policy gets `Accepted` / `Enforced` conditions naming what cannot be evaluated. A missing
//! AuthPolicy CRD is logged and retried, never fatal.

mod decide;
mod secrets;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apiary_authpolicy::{CompiledPolicy, Enforcer, JwtVerifier, LoadError, MetadataFetcher};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use self::decide::{Fate, Seen, conditions, holders, secret_names};
use self::secrets::{Secrets, Watches as SecretWatches};
use super::watches::Watches;
use crate::registration::route::{Key, httproute_resource};

pub use self::decide::{ACCEPTED, ENFORCED};

/// How often every policy is looked at again without a watched change (Secrets re-read too).
pub const RESYNC: Duration = Duration::from_secs(30);
/// The field manager of the status writes.
const MANAGER: &str = "apiary-gateway";

/// Where compiled policies go, keyed by route (`<namespace>/<HTTPRoute name>`, the value of
/// `x-mcp-servername`).
pub trait PolicySink: Send + Sync {
    /// `route` is protected by `policy` from now on; `Err`: it refuses all traffic.
    fn set(&self, route: &str, policy: Result<CompiledPolicy, LoadError>);
    /// `route` has no AuthPolicy any more.
    fn remove(&self, route: &str);
    /// Called once, after the first pass over every policy. Before it no route has its policy
    /// yet: a gateway that must not serve a route unprotected waits for it.
    fn synced(&self) {}
}

impl<V: JwtVerifier, F: MetadataFetcher> PolicySink for Enforcer<V, F> {
    fn set(&self, route: &str, policy: Result<CompiledPolicy, LoadError>) {
        self.set_policy(route, policy);
    }

    fn remove(&self, route: &str) {
        self.remove_policy(route);
    }
}

/// The `kuadrant.io/v1` AuthPolicy API, for dynamic reads, watches and status writes.
pub fn authpolicy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kuadrant.io", "v1", "AuthPolicy"), "authpolicies")
}

/// Follows the AuthPolicies of every namespace into `sink` until `stop`.
pub async fn run(client: Client, sink: Arc<dyn PolicySink>, stop: impl Future<Output = ()> + Send) {
    run_in(client, None, sink, stop).await;
}

/// [`run`] limited to the policies (and HTTPRoutes) of `namespace` when it is `Some`.
pub async fn run_in(
    client: Client,
    namespace: Option<String>,
    sink: Arc<dyn PolicySink>,
    stop: impl Future<Output = ()> + Send,
) {
    let policy_ar = authpolicy_resource();
    let route_ar = httproute_resource();
    let api = |ar: &ApiResource| match &namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar),
        None => Api::<DynamicObject>::all_with(client.clone(), ar),
    };
    let policy_writer = Writer::<DynamicObject>::new(policy_ar.clone());
    let policies = policy_writer.as_reader();
    let route_writer = Writer::<DynamicObject>::new(route_ar.clone());
    let routes = route_writer.as_reader();
    let config = watcher::Config::default();
    let mut watches = Watches::new(true);
    watches.add(API_NAMES[0], watcher(api(&policy_ar), config.clone()).default_backoff().reflect(policy_writer));
    watches.add(API_NAMES[1], watcher(api(&route_ar), config).default_backoff().reflect(route_writer));
    let (secret_tx, mut secret_rx) = mpsc::channel(1);
    let mut state = State {
        client: client.clone(),
        sink,
        policy_ar,
        routes,
        applied: HashMap::new(),
        watches: SecretWatches::new(client, secret_tx),
        synced: false,
    };
    let mut resync = tokio::time::interval(RESYNC);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            more = watches.next_pass(&mut resync, Some(&mut secret_rx)) => if !more { return },
        }
        state.pass(&policies.state()).await;
    }
}

/// The watched APIs, by stream index.
const API_NAMES: [&str; 2] = ["kuadrant.io/v1 AuthPolicy", "gateway.networking.k8s.io/v1 HTTPRoute"];

/// What a route was last given.
struct Applied {
    /// SHA-256 of the holder, its spec and its Secrets: equal means nothing to reload.
    fingerprint: Vec<u8>,
    loaded: Result<(), LoadError>,
}

struct State {
    client: Client,
    sink: Arc<dyn PolicySink>,
    policy_ar: ApiResource,
    routes: Store<DynamicObject>,
    applied: HashMap<String, Applied>,
    watches: SecretWatches,
    synced: bool,
}

impl State {
    /// Every policy looked at once: routes loaded or removed, Secrets watched, statuses written.
    async fn pass(&mut self, objects: &[Arc<DynamicObject>]) {
        let mut objects: Vec<&DynamicObject> =
            objects.iter().map(AsRef::as_ref).filter(|o| o.metadata.deletion_timestamp.is_none()).collect();
        objects.sort_by_key(|o| (o.namespace(), o.name_any()));
        let seen: Vec<Seen> = objects.iter().map(|o| read(o)).collect();
        let held = holders(&seen);

        let mut applied = HashMap::new();
        let mut watched = BTreeSet::new();
        for (route, &i) in &held {
            let (policy, object) = (&seen[i], objects[i]);
            let names = policy.policy.as_ref().map(secret_names).unwrap_or_default();
            watched.extend(names.iter().map(|n| Key { namespace: policy.key.namespace.clone(), name: n.clone() }));
            let (secrets, complete) = Secrets::read(&self.client, &policy.key.namespace, &names).await;
            let fingerprint = fingerprint(&policy.key, object, &secrets);
            match self.applied.remove(route) {
                Some(last) if last.fingerprint == fingerprint => {
                    applied.insert(route.clone(), last);
                    continue;
                }
                // The apiserver did not answer: keep what the route has until the next pass. A
                // route with nothing yet gets the policy without that Secret (it refuses).
                Some(last) if !complete => {
                    applied.insert(route.clone(), last);
                    continue;
                }
                _ => {}
            }
            let compiled = match &policy.policy {
                Ok(p) => CompiledPolicy::load(p, &secrets),
                Err(e) => Err(e.clone()),
            };
            let loaded = compiled.as_ref().map(|_| ()).map_err(Clone::clone);
            match &loaded {
                Ok(()) => tracing::info!(route = %route, policy = %policy.key, "gateway: AuthPolicy loaded"),
                Err(e) => tracing::warn!(route = %route, policy = %policy.key, error = %e,
                    "gateway: AuthPolicy cannot be evaluated; the route refuses all traffic"),
            }
            self.sink.set(route, compiled);
            applied.insert(route.clone(), Applied { fingerprint, loaded });
        }
        for route in self.applied.keys() {
            tracing::info!(route = %route, "gateway: AuthPolicy removed from the route");
            self.sink.remove(route);
        }
        self.applied = applied;
        self.watches.follow(&watched);
        if !self.synced {
            self.synced = true;
            self.sink.synced();
        }

        for (i, (policy, object)) in seen.iter().zip(&objects).enumerate() {
            let fate = match &policy.target {
                Err(e) => Fate::NoTarget(e),
                Ok(route) => match (held.get(route), self.applied.get(route)) {
                    (Some(&h), Some(a)) if h == i => {
                        Fate::Holds { route, loaded: &a.loaded, route_exists: self.route_exists(route) }
                    }
                    (Some(&h), _) if h != i => Fate::Overridden { route, holder: &seen[h].key },
                    // Not reached: every held route was just applied.
                    _ => continue,
                },
            };
            let wanted = conditions(&fate);
            if let Some(p) = status::patch(object.data.get("status"), &wanted, policy.generation, Timestamp::now()) {
                self.write_status(&policy.key, &p).await;
            }
        }
    }

    fn route_exists(&self, route: &str) -> bool {
        let Some((ns, name)) = route.split_once('/') else { return false };
        self.routes.get(&ObjectRef::new_with(name, httproute_resource()).within(ns)).is_some()
    }

    async fn write_status(&self, key: &Key, patch: &serde_json::Value) {
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &key.namespace, &self.policy_ar);
        match api.patch_status(&key.name, &PatchParams::apply(MANAGER), &Patch::Merge(patch)).await {
            Ok(_) => tracing::debug!(policy = %key, "gateway: AuthPolicy status written"),
            // Retried on the next pass: the cached status still differs.
            Err(e) => tracing::warn!(policy = %key, error = %e, "gateway: cannot write the AuthPolicy's status"),
        }
    }
}

/// A cached AuthPolicy object as [`Seen`].
fn read(object: &DynamicObject) -> Seen {
    let key = Key { namespace: object.namespace().unwrap_or_default(), name: object.name_any() };
    // Listed objects may lack apiVersion/kind: the parser needs them.
    let value = json!({
        "apiVersion": "kuadrant.io/v1",
        "kind": "AuthPolicy",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "spec": object.data.get("spec").cloned().unwrap_or_default(),
    });
    let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
    Seen::read(key, object.metadata.generation, created, value)
}

fn fingerprint(holder: &Key, object: &DynamicObject, secrets: &Secrets) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(holder.to_string().as_bytes());
    hasher.update([0]);
    hasher.update(object.data.get("spec").map(ToString::to_string).unwrap_or_default().as_bytes());
    hasher.update([0]);
    secrets.digest(&mut hasher);
    hasher.finalize().to_vec()
}
