//! The watch loop: reflectors over MCPServerRegistrations, HTTPRoutes and Services in every
//! namespace and over the served Gateway (its listeners decide which routes attach); after any change (and every [`RESYNC`], which also picks up credential Secrets,
//! read from the apiserver when needed) every registration is resolved again from the caches
//! and the [`Snapshot`] republished if it differs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::Snapshot;
use super::listeners::{GatewaySpec, ParentRef, RouteParents};
use super::select::{Gateway, Skipped, select};
use super::status;
use super::watches::Watches;
use crate::crd::registration::MCPServerRegistration;
use crate::normalize::Normalize;
use crate::registration::route::{self, Key};
use crate::registration::{Objects, resolve};

/// How often everything is resolved again without a watched change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// The Gateway API `Gateway` (`gateway.networking.k8s.io/v1`), for dynamic reads and watches.
pub(super) fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(route::GATEWAY_GROUP, "v1", "Gateway"), "gateways")
}

/// Routes, Services and the Gateway from the watch caches; Secrets from the apiserver.
struct Cached {
    client: Client,
    routes: Store<DynamicObject>,
    services: Store<Service>,
    gateways: Store<DynamicObject>,
}

impl Cached {
    /// The served Gateway as cached now; its spec `None` when absent or unreadable.
    fn gateway(&self, key: &Key) -> Gateway {
        let r = ObjectRef::new_with(&key.name, gateway_resource()).within(&key.namespace);
        let spec = self.gateways.get(&r).and_then(|o| {
            let spec = o.data.get("spec").cloned().unwrap_or_default();
            serde_json::from_value::<GatewaySpec>(spec)
                .inspect_err(|e| tracing::warn!(gateway = %key, error = %e, "cannot read the Gateway's listeners"))
                .ok()
        });
        Gateway { key: key.clone(), spec }
    }

    /// The `parentRefs` of route `key` as cached now (none when absent or unreadable).
    fn parents(&self, key: &Key) -> Vec<ParentRef> {
        let r = ObjectRef::new_with(&key.name, route::httproute_resource()).within(&key.namespace);
        self.routes
            .get(&r)
            .and_then(|o| serde_json::from_value::<RouteParents>(o.data.get("spec").cloned().unwrap_or_default()).ok())
            .map(|p| p.parent_refs)
            .unwrap_or_default()
    }
}

impl Objects for Cached {
    async fn route(&self, key: &Key) -> Result<Option<DynamicObject>, kube::Error> {
        let r = ObjectRef::new_with(&key.name, route::httproute_resource()).within(&key.namespace);
        Ok(self.routes.get(&r).map(|o| (*o).clone()))
    }

    async fn service(&self, key: &Key) -> Result<Option<Service>, kube::Error> {
        Ok(self.services.get(&ObjectRef::new(&key.name).within(&key.namespace)).map(|o| (*o).clone()))
    }

    async fn secret(&self, key: &Key) -> Result<Option<Secret>, kube::Error> {
        Api::<Secret>::namespaced(self.client.clone(), &key.namespace).get_opt(&key.name).await
    }
}

/// Follows the registrations for Gateway `gateway` until `shutdown`, publishing on `out`.
pub async fn run(
    client: Client,
    gateway: Key,
    out: watch::Sender<Snapshot>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let ar = route::httproute_resource();
    let (registrations, reg_writer) = reflector::store::<MCPServerRegistration>();
    let route_writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let routes = route_writer.as_reader();
    let (services, svc_writer) = reflector::store::<Service>();
    let gw_writer = reflector::store::Writer::<DynamicObject>::new(gateway_resource());
    let gateways = gw_writer.as_reader();
    let config = watcher::Config::default();
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={}", gateway.name));
    let mut watches = Watches::new(false);
    watches.add(
        "mcp.kuadrant.io MCPServerRegistration",
        watcher(Api::<MCPServerRegistration>::all(client.clone()), config.clone())
            .default_backoff()
            .reflect(reg_writer),
    );
    watches.add(
        "gateway.networking.k8s.io/v1 HTTPRoute",
        watcher(Api::<DynamicObject>::all_with(client.clone(), &ar), config.clone())
            .default_backoff()
            .reflect(route_writer),
    );
    watches
        .add("v1 Service", watcher(Api::<Service>::all(client.clone()), config).default_backoff().reflect(svc_writer));
    watches.add(
        "gateway.networking.k8s.io/v1 Gateway",
        watcher(
            Api::<DynamicObject>::namespaced_with(client.clone(), &gateway.namespace, &gateway_resource()),
            only_ours,
        )
        .default_backoff()
        .reflect(gw_writer),
    );
    let mut writer = status::Writer::new(client.clone(), gateway.clone());
    let cached = Cached { client, routes, services, gateways };
    let mut resync = tokio::time::interval(RESYNC);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            more = watches.next_pass(&mut resync, None) => if !more { return },
        }
        match snapshot(&cached, &registrations.state(), &gateway).await {
            Ok(next) => publish(&out, next),
            Err(e) => tracing::warn!(error = %e, "cannot read the registrations' objects now; retrying"),
        }
        write_status(&mut writer, &cached, &gateway).await;
    }
}

/// The Gateway's and its routes' status conditions from the caches ([`status`]).
async fn write_status(writer: &mut status::Writer, cached: &Cached, gateway: &Key) {
    let served =
        cached.gateways.get(&ObjectRef::new_with(&gateway.name, gateway_resource()).within(&gateway.namespace));
    let exists = |k: &Key| cached.services.get(&ObjectRef::new(&k.name).within(&k.namespace)).is_some();
    writer.update(served.as_deref(), &cached.routes.state(), &exists).await;
}

/// Every registration resolved and selected, in namespace/name order.
async fn snapshot(
    objects: &Cached,
    registrations: &[std::sync::Arc<MCPServerRegistration>],
    gateway: &Key,
) -> Result<Snapshot, kube::Error> {
    let mut regs: Vec<_> = registrations.iter().filter(|r| r.metadata.deletion_timestamp.is_none()).collect();
    regs.sort_by_key(|r| (r.namespace().unwrap_or_default(), r.name_any()));
    let mut next = Snapshot { synced: true, ..Snapshot::default() };
    let served = objects.gateway(gateway);
    for r in regs {
        let key = Key { namespace: r.namespace().unwrap_or_default(), name: r.name_any() };
        let spec = r.spec.normalize().spec;
        let (resolved, _) = resolve(objects, &key.namespace, &spec).await?;
        let parents = resolved.as_ref().map(|r| objects.parents(&r.route)).unwrap_or_default();
        match select(&key, &spec, resolved, &parents, &served) {
            Ok(b) => next.backends.push(b),
            Err(s) => next.skipped.push(s),
        }
    }
    Ok(next)
}

/// Publishes `next` when it differs, logging what changed.
fn publish(out: &watch::Sender<Snapshot>, next: Snapshot) {
    out.send_if_modified(|current| {
        if *current == next {
            return false;
        }
        for b in next.backends.iter().filter(|b| !current.backends.contains(b)) {
            tracing::info!(registration = %b.registration, route = %b.route, url = %b.url, prefix = %b.prefix,
                "gateway: serving registered server");
        }
        for b in current.backends.iter().filter(|b| !next.backends.iter().any(|n| n.registration == b.registration)) {
            tracing::info!(registration = %b.registration, "gateway: registered server no longer served");
        }
        for s in next.skipped.iter().filter(|s| !current.skipped.contains(s)) {
            log_skipped(s);
        }
        *current = next;
        true
    });
}

fn log_skipped(s: &Skipped) {
    tracing::warn!(registration = %s.registration, reason = s.reason, "gateway: not served: {}", s.message);
}
