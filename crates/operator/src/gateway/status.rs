//! Gateway API status written by `apiary gateway`, so `kubectl get gateway` and `kubectl
//! describe httproute` say what the gateway made of them, as any Gateway API implementation
//! does. On the served Gateway: `status.listeners[]` (`Accepted`, `Programmed`, `ResolvedRefs`,
//! `attachedRoutes`, `supportedKinds`) and `status.conditions` (`Accepted`, `Programmed`). On
//! each HTTPRoute whose `parentRefs` name it: one `status.parents[]` entry per such parentRef
//! with [`CONTROLLER_NAME`], `Accepted` (the attachment rules of [`super::listeners`], their
//! standard reasons) and `ResolvedRefs` (`BackendNotFound` when a backend Service is missing,
//! `InvalidKind` when it is not a core Service).
//!
//! Only a Gateway whose GatewayClass names [`CONTROLLER_NAME`] is written (and that class is
//! marked `Accepted`); another class's Gateway belongs to another implementation. Writes are JSON merge patches of the status
//! subresource, sent only when the computed status differs from the object's. A route's
//! `parents` list is read, our entries (our controller, a parentRef naming our Gateway)
//! replaced and every other entry kept as it was, and the patch carries the route's
//! `resourceVersion`, so a concurrent writer makes it fail (409) instead of being overwritten;
//! the next pass retries. Everything written is computed from the cluster's objects alone
//! (no address, host or time beyond condition transitions), so two gateways serving the same
//! Gateway (one on a host, one in the cluster) compute the same status and converge instead
//! of flapping.
//!
//! The computation is pure ([`listener_statuses`], [`gateway_conditions`], [`route_parents`]);
//! [`Writer`] reads the GatewayClass and patches.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::listeners::{self, GatewaySpec, Listener, ParentRef};
use crate::reconcile::check::{self, Check};
use crate::registration::route::{GATEWAY_GROUP, HTTPROUTE_KIND, Key, RouteSpec, names_gateway};

/// The `controllerName` of Apiary's GatewayClass and of the route `parents` entries it writes.
pub const CONTROLLER_NAME: &str = "apiary.dev/gateway";

/// Field manager of the status patches.
const FIELD_MANAGER: &str = "apiary-gateway";

/// Gateway API's own bound on a route's `status.parents`.
const MAX_PARENTS: usize = 32;

/// One entry of a Gateway's `status.listeners`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// The route kinds it takes (HTTPRoute, or none).
    #[serde(default)]
    pub supported_kinds: Vec<RouteKind>,
    /// How many routes attach to it.
    #[serde(default)]
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A route group and kind, as `supportedKinds` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteKind {
    /// API group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// One entry of a route's `status.parents` as Apiary writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef as the route's spec writes it.
    pub parent_ref: Value,
    /// [`CONTROLLER_NAME`] for Apiary's entries.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A route as the status computation reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Its namespace and name.
    pub key: Key,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec fields attachment and backends need.
    pub spec: RouteSpec,
    /// `spec.parentRefs` as written (what a status entry's `parentRef` repeats).
    pub parent_refs: Vec<Value>,
    /// `status.parents` as it is now, every controller's.
    pub parents: Vec<Value>,
    /// `metadata.resourceVersion` of what was read.
    pub resource_version: Option<String>,
}

impl Route {
    /// The route of a cached HTTPRoute; `None` when its spec cannot be read.
    pub fn from_object(o: &DynamicObject) -> Option<Route> {
        let spec_value = o.data.get("spec").cloned().unwrap_or_default();
        let spec: RouteSpec = serde_json::from_value(spec_value.clone()).ok()?;
        let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
        Some(Route {
            key: Key { namespace: o.namespace().unwrap_or_default(), name: o.name_any() },
            generation: o.metadata.generation,
            parent_refs: list(spec_value.get("parentRefs")),
            parents: list(o.data.get("status").and_then(|s| s.get("parents"))),
            resource_version: o.metadata.resource_version.clone(),
            spec,
        })
    }

    /// True when one of its parentRefs names `gateway`.
    fn names(&self, gateway: &Key) -> bool {
        self.spec.parent_refs.iter().any(|p| names_gateway(&self.key, p, gateway))
    }
}

/// Whether `entry`, one of `route`'s `status.parents`, is Apiary's entry for `gateway`.
fn ours(route: &Key, entry: &Value, gateway: &Key) -> bool {
    entry.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER_NAME)
        && entry
            .get("parentRef")
            .and_then(|p| serde_json::from_value::<ParentRef>(p.clone()).ok())
            .is_some_and(|p| names_gateway(route, &p, gateway))
}

/// The route kinds a listener takes: HTTPRoute when its protocol is HTTP/HTTPS and
/// `allowedRoutes.kinds` (when set) lists it; else none, with why.
fn supported_kinds(l: &Listener) -> Result<Vec<RouteKind>, Check> {
    let http_route = RouteKind { group: Some(GATEWAY_GROUP.into()), kind: HTTPROUTE_KIND.into() };
    if !matches!(l.protocol.as_str(), "HTTP" | "HTTPS") {
        return Err(Check::fail(
            "Accepted",
            "UnsupportedProtocol",
            format!("protocol {:?} is not served by apiary gateway (HTTP and HTTPS are)", l.protocol),
        ));
    }
    let kinds = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()).filter(|k| !k.is_empty());
    match kinds {
        None => Ok(vec![http_route]),
        Some(kinds) => {
            let takes = kinds
                .iter()
                .any(|k| k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP && k.kind == HTTPROUTE_KIND);
            if takes {
                Ok(vec![http_route])
            } else {
                Err(Check::fail(
                    "ResolvedRefs",
                    "InvalidRouteKinds",
                    "allowedRoutes.kinds lists no kind apiary gateway serves (HTTPRoute)",
                ))
            }
        }
    }
}

/// `status.listeners` of Gateway `gateway` (`spec`, at `generation`) with `routes` (every
/// route that may name it), from the current entries `before`; `now` stamps a flipped
/// condition only.
pub fn listener_statuses(
    gateway: &Key,
    spec: &GatewaySpec,
    generation: Option<i64>,
    routes: &[Route],
    before: &[ListenerStatus],
    now: Timestamp,
) -> Vec<ListenerStatus> {
    spec.listeners
        .iter()
        .map(|l| {
            let kinds = supported_kinds(l);
            let checks = match &kinds {
                Ok(_) => vec![
                    Check::pass("Accepted", "Accepted", "the listener is served by apiary gateway"),
                    Check::pass("ResolvedRefs", "ResolvedRefs", "every reference of the listener is resolved"),
                    Check::pass("Programmed", "Programmed", "apiary gateway serves the listener"),
                ],
                Err(why) if why.type_ == "Accepted" => vec![
                    why.clone(),
                    Check::pass("ResolvedRefs", "ResolvedRefs", "the listener has no references to resolve"),
                    Check::fail("Programmed", "Invalid", "the listener is not accepted"),
                ],
                Err(why) => vec![
                    Check::pass("Accepted", "Accepted", "the listener is served by apiary gateway"),
                    why.clone(),
                    Check::fail("Programmed", "Invalid", "the listener takes no route kind apiary gateway serves"),
                ],
            };
            let attached = if kinds.is_ok() {
                let alone = GatewaySpec { listeners: vec![l.clone()] };
                routes
                    .iter()
                    .filter(|r| r.names(gateway))
                    .filter(|r| {
                        listeners::attach(&r.key, &r.spec.parent_refs, &r.spec.hostnames, gateway, &alone).is_ok()
                    })
                    .count()
            } else {
                0
            };
            let previous = before.iter().find(|b| b.name == l.name).map(|b| b.conditions.clone()).unwrap_or_default();
            ListenerStatus {
                name: l.name.clone(),
                supported_kinds: kinds.unwrap_or_default(),
                attached_routes: i32::try_from(attached).unwrap_or(i32::MAX),
                conditions: check::apply(previous, &checks, generation, now),
            }
        })
        .collect()
}

/// The Gateway's `status.conditions` from its listeners' statuses, updating `before`.
pub fn gateway_conditions(
    listeners: &[ListenerStatus],
    generation: Option<i64>,
    before: Vec<Condition>,
    now: Timestamp,
) -> Vec<Condition> {
    let is_true = |l: &ListenerStatus, t: &str| l.conditions.iter().any(|c| c.type_ == t && c.status == "True");
    let invalid: Vec<&str> = listeners.iter().filter(|l| !is_true(l, "Programmed")).map(|l| l.name.as_str()).collect();
    let accepted = if invalid.is_empty() {
        Check::pass("Accepted", "Accepted", "the Gateway is served by apiary gateway")
    } else {
        // Still accepted (Gateway API: `Accepted=True`, reason `ListenersNotValid`), the valid
        // listeners are served.
        Check::pass("Accepted", "ListenersNotValid", format!("listeners not served: {}", invalid.join(", ")))
    };
    let programmed = if listeners.iter().any(|l| is_true(l, "Programmed")) {
        Check::pass("Programmed", "Programmed", "apiary gateway serves the Gateway")
    } else {
        Check::fail("Programmed", "Invalid", "the Gateway has no listener apiary gateway can serve")
    };
    check::apply(before, &[accepted, programmed], generation, now)
}

/// The `Accepted` condition of Apiary's GatewayClass (at `generation`), updating `before`.
pub fn class_conditions(generation: Option<i64>, before: Vec<Condition>, now: Timestamp) -> Vec<Condition> {
    let accepted = Check::pass("Accepted", "Accepted", format!("handled by apiary gateway ({CONTROLLER_NAME})"));
    check::apply(before, &[accepted], generation, now)
}

/// Now, to the second (what the apiserver keeps of a condition's time).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether every backendRef of `spec` (route `route`) is a core Service that exists.
fn resolved_refs(route: &Key, spec: &RouteSpec, service_exists: &dyn Fn(&Key) -> bool) -> Check {
    for b in spec.rules.iter().flat_map(|r| &r.backend_refs) {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        if !group.is_empty() || kind != "Service" {
            return Check::fail(
                "ResolvedRefs",
                "InvalidKind",
                format!("backendRef {group:?} {kind:?} {} is not a core Service", b.name),
            );
        }
        let key =
            Key { namespace: b.namespace.clone().unwrap_or_else(|| route.namespace.clone()), name: b.name.clone() };
        if !service_exists(&key) {
            return Check::fail("ResolvedRefs", "BackendNotFound", format!("Service {key} not found"));
        }
    }
    Check::pass("ResolvedRefs", "ResolvedRefs", "every backendRef is resolved")
}

/// `route`'s new `status.parents`: one Apiary entry per parentRef naming Gateway `gateway`
/// (`spec`), every other entry (other controllers', other Gateways') kept as it is.
pub fn route_parents(
    route: &Route,
    gateway: &Key,
    spec: &GatewaySpec,
    service_exists: &dyn Fn(&Key) -> bool,
    now: Timestamp,
) -> Vec<Value> {
    let mut out: Vec<Value> = route.parents.iter().filter(|e| !ours(&route.key, e, gateway)).cloned().collect();
    let refs = resolved_refs(&route.key, &route.spec, service_exists);
    for (raw, parent) in route.parent_refs.iter().zip(&route.spec.parent_refs) {
        if !names_gateway(&route.key, parent, gateway) {
            continue;
        }
        let accepted =
            match listeners::attach(&route.key, std::slice::from_ref(parent), &route.spec.hostnames, gateway, spec) {
                Ok(listener) => Check::pass("Accepted", "Accepted", format!("attached to listener {listener:?}")),
                Err(refused) => Check::fail("Accepted", refused.reason, refused.message),
            };
        let previous = route
            .parents
            .iter()
            .filter(|e| ours(&route.key, e, gateway))
            .find(|e| e.get("parentRef") == Some(raw))
            .and_then(|e| serde_json::from_value::<RouteParentStatus>(e.clone()).ok())
            .map(|e| e.conditions)
            .unwrap_or_default();
        let entry = RouteParentStatus {
            parent_ref: raw.clone(),
            controller_name: CONTROLLER_NAME.into(),
            conditions: check::apply(previous, &[accepted, refs.clone()], route.generation, now),
        };
        if out.len() < MAX_PARENTS {
            out.push(serde_json::to_value(entry).unwrap_or_default());
        }
    }
    out
}

/// The GatewayClass API (cluster-scoped).
fn gateway_class_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", "GatewayClass"), "gatewayclasses")
}

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

/// Writes the status of one served Gateway and its routes.
pub struct Writer {
    client: Client,
    gateway: Key,
    /// Why the last pass wrote nothing, so it is logged once, not every resync.
    idle: Option<String>,
}

impl Writer {
    /// A writer for Gateway `gateway`.
    pub fn new(client: Client, gateway: Key) -> Self {
        Writer { client, gateway, idle: None }
    }

    /// One pass: the Gateway (`None` when absent) and every cached route. Failures are logged;
    /// the next pass (the next change, or the resync) tries again.
    pub async fn update(
        &mut self,
        gateway: Option<&DynamicObject>,
        routes: &[Arc<DynamicObject>],
        service_exists: &(dyn Fn(&Key) -> bool + Sync),
    ) {
        match self.ours(gateway).await {
            Ok(Some((object, spec))) => {
                self.idle = None;
                let now = now();
                let routes: Vec<Route> = routes.iter().filter_map(|r| Route::from_object(r)).collect();
                if let Err(e) = self.write_gateway(object, &spec, &routes, now).await {
                    tracing::warn!(gateway = %self.gateway, error = %e, "cannot write the Gateway's status");
                }
                for route in routes
                    .iter()
                    .filter(|r| r.names(&self.gateway) || r.parents.iter().any(|e| ours(&r.key, e, &self.gateway)))
                {
                    match self.write_route(route, &spec, service_exists, now).await {
                        Ok(()) => {}
                        // Changed since read (another controller, a new spec): the watch brings
                        // the new version and the next pass writes again.
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            tracing::debug!(route = %route.key, "HTTPRoute changed while its status was written; retrying")
                        }
                        Err(e) => tracing::warn!(route = %route.key, error = %e, "cannot write the HTTPRoute's status"),
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(gateway = %self.gateway, error = %e, "cannot read the GatewayClass"),
        }
    }

    /// The Gateway and its spec when its class is Apiary's; else `None` (logged once).
    async fn ours<'a>(
        &mut self,
        gateway: Option<&'a DynamicObject>,
    ) -> Result<Option<(&'a DynamicObject, GatewaySpec)>, kube::Error> {
        let idle = |me: &mut Self, why: String| {
            if me.idle.as_ref() != Some(&why) {
                tracing::info!(gateway = %me.gateway, "gateway status not written: {why}");
                me.idle = Some(why);
            }
        };
        let Some(object) = gateway else {
            idle(self, "the Gateway does not exist".into());
            return Ok(None);
        };
        let spec_value = object.data.get("spec").cloned().unwrap_or_default();
        let class = spec_value.get("gatewayClassName").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Ok(spec) = serde_json::from_value::<GatewaySpec>(spec_value) else {
            idle(self, "its spec cannot be read".into());
            return Ok(None);
        };
        let classes: Api<DynamicObject> = Api::all_with(self.client.clone(), &gateway_class_resource());
        let found = classes.get_opt(&class).await?;
        let controller =
            found.as_ref().and_then(|c| c.data.get("spec")?.get("controllerName")?.as_str().map(str::to_owned));
        match controller {
            Some(c) if c == CONTROLLER_NAME => {
                if let Some(found) = &found {
                    self.accept_class(&classes, found).await;
                }
                Ok(Some((object, spec)))
            }
            Some(c) => {
                idle(self, format!("its GatewayClass {class:?} belongs to controller {c:?}, not {CONTROLLER_NAME}"));
                Ok(None)
            }
            None => {
                idle(self, format!("its GatewayClass {class:?} does not exist"));
                Ok(None)
            }
        }
    }

    /// Marks Apiary's GatewayClass `Accepted` (what `kubectl get gatewayclass` shows), once.
    async fn accept_class(&self, api: &Api<DynamicObject>, class: &DynamicObject) {
        let before: Vec<Condition> = class
            .data
            .get("status")
            .and_then(|s| s.get("conditions"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let conditions = class_conditions(class.metadata.generation, before.clone(), now());
        if conditions == before {
            return;
        }
        let body = json!({"status": {"conditions": conditions}});
        let name = class.name_any();
        match api.patch_status(&name, &patch_params(), &Patch::Merge(&body)).await {
            Ok(_) => tracing::info!(class = %name, "gateway: GatewayClass accepted"),
            Err(e) => tracing::warn!(class = %name, error = %e, "cannot write the GatewayClass's status"),
        }
    }

    async fn write_gateway(
        &self,
        object: &DynamicObject,
        spec: &GatewaySpec,
        routes: &[Route],
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let status = object.data.get("status");
        let before_listeners: Vec<ListenerStatus> = status
            .and_then(|s| s.get("listeners"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let before_conditions: Vec<Condition> = status
            .and_then(|s| s.get("conditions"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let generation = object.metadata.generation;
        let listeners = listener_statuses(&self.gateway, spec, generation, routes, &before_listeners, now);
        let conditions = gateway_conditions(&listeners, generation, before_conditions.clone(), now);
        if listeners == before_listeners && conditions == before_conditions {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.gateway.namespace, &super::follow::gateway_resource());
        let body = json!({"status": {"listeners": listeners, "conditions": conditions}});
        api.patch_status(&self.gateway.name, &patch_params(), &Patch::Merge(&body)).await?;
        tracing::info!(gateway = %self.gateway, "gateway: Gateway status written");
        Ok(())
    }

    async fn write_route(
        &self,
        route: &Route,
        spec: &GatewaySpec,
        service_exists: &(dyn Fn(&Key) -> bool + Sync),
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let parents = route_parents(route, &self.gateway, spec, service_exists, now);
        if parents == route.parents {
            return Ok(());
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &route.key.namespace,
            &crate::registration::route::httproute_resource(),
        );
        // The resourceVersion read with the parents makes a change since (another controller's
        // entry, a newer spec) a conflict, retried on the next pass, not a loss.
        let body = json!({"metadata": {"resourceVersion": route.resource_version}, "status": {"parents": parents}});
        api.patch_status(&route.key.name, &patch_params(), &Patch::Merge(&body)).await?;
        tracing::info!(route = %route.key, "gateway: HTTPRoute status written");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    const GW: (&str, &str) = ("gateway-system", "mcp-gateway");

    fn gw() -> Key {
        key(GW.0, GW.1)
    }

    fn gateway(listeners: Value) -> GatewaySpec {
        serde_json::from_value(json!({"listeners": listeners})).unwrap()
    }

    /// Seed 004's Gateway after its patch: the chart-like listener `mcp` and the seed's.
    fn seed_gateway() -> GatewaySpec {
        gateway(json!([
            {"name": "mcp", "hostname": "mcp.127-0-0-1.sslip.io", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "kubernetes-mcp", "hostname": "kubernetes-mcp.example.com", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
        ]))
    }

    /// A cached HTTPRoute object with `spec` and `status`.
    fn object(ns: &str, name: &str, spec: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "generation": 3, "resourceVersion": "42"},
            "spec": spec, "status": status}))
        .unwrap()
    }

    fn seed_parent_ref() -> Value {
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-gateway",
            "namespace": "gateway-system"})
    }

    /// The seed's route `mcp-test/kubernetes-mcp`, with `status.parents` = `parents`.
    fn seed_route(parents: Value) -> Route {
        let spec = json!({"parentRefs": [seed_parent_ref()], "hostnames": ["kubernetes-mcp.example.com"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "kubernetes-mcp-external", "port": 9999}]}]});
        Route::from_object(&object("mcp-test", "kubernetes-mcp", spec, json!({"parents": parents}))).unwrap()
    }

    /// A route picking listener `mcp` by sectionName, without hostnames.
    fn fixture_route() -> Route {
        let spec = json!({"parentRefs": [{"name": "mcp-gateway", "namespace": "gateway-system", "sectionName": "mcp"}],
            "rules": [{"backendRefs": [{"name": "fixture", "port": 80}]}]});
        Route::from_object(&object("mcp-test", "fixture", spec, json!({}))).unwrap()
    }

    fn cond<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_}"));
        (c.status.as_str(), c.reason.as_str())
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn all_services(_: &Key) -> bool {
        true
    }

    #[test]
    fn apiarys_class_is_accepted_once() {
        let pending: Vec<Condition> = serde_json::from_value(json!([{"type": "Accepted", "status": "Unknown",
            "reason": "Pending", "message": "Waiting for controller", "lastTransitionTime": "1970-01-01T00:00:00Z"}]))
        .unwrap();
        let accepted = class_conditions(Some(1), pending, t(10));
        assert_eq!(cond(&accepted, "Accepted"), ("True", "Accepted"));
        assert_eq!(accepted.len(), 1);
        assert_eq!(class_conditions(Some(1), accepted.clone(), t(99)), accepted, "nothing to write again");
    }

    #[test]
    fn a_route_is_read_from_its_object_with_its_parents_and_version() {
        let r = seed_route(json!([{"controllerName": "other.example/gw", "parentRef": {"name": "x"}}]));
        assert_eq!(r.key, key("mcp-test", "kubernetes-mcp"));
        assert_eq!((r.generation, r.resource_version.as_deref()), (Some(3), Some("42")));
        assert_eq!(r.parent_refs, vec![seed_parent_ref()]);
        assert_eq!(r.parents.len(), 1);
        assert!(r.names(&gw()));
        assert!(!r.names(&key("toolhive-system", "mcp-gateway")));
    }

    #[test]
    fn listeners_count_the_routes_they_admit_and_report_accepted_programmed_resolved() {
        let routes = [seed_route(json!([])), fixture_route()];
        let ls = listener_statuses(&gw(), &seed_gateway(), Some(2), &routes, &[], t(10));
        assert_eq!(
            ls.iter().map(|l| (l.name.as_str(), l.attached_routes)).collect::<Vec<_>>(),
            [("mcp", 1), ("kubernetes-mcp", 1)]
        );
        for l in &ls {
            for type_ in ["Accepted", "Programmed", "ResolvedRefs"] {
                assert_eq!(cond(&l.conditions, type_), ("True", type_), "{} {type_}", l.name);
            }
            assert!(l.conditions.iter().all(|c| c.observed_generation == Some(2)));
            assert_eq!(
                l.supported_kinds,
                vec![RouteKind { group: Some(GATEWAY_GROUP.into()), kind: "HTTPRoute".into() }]
            );
        }
        // Before the seed's patch only listener `mcp` exists: the seed's route attaches nowhere.
        let before_patch = GatewaySpec { listeners: seed_gateway().listeners[..1].to_vec() };
        let ls = listener_statuses(&gw(), &before_patch, Some(1), &routes, &[], t(10));
        assert_eq!(ls[0].attached_routes, 1, "only the fixture route");
        // A route naming another Gateway is not counted.
        let elsewhere = listener_statuses(&key("other", "gw"), &seed_gateway(), Some(1), &routes, &[], t(10));
        assert!(elsewhere.iter().all(|l| l.attached_routes == 0));
    }

    #[test]
    fn listeners_apiary_cannot_serve_are_reported_invalid_and_attach_nothing() {
        let spec = gateway(json!([
            {"name": "tcp", "port": 9000, "protocol": "TCP", "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "grpc", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "GRPCRoute"}]}},
        ]));
        let routes = [fixture_route(), seed_route(json!([]))];
        let ls = listener_statuses(&gw(), &spec, Some(1), &routes, &[], t(10));
        assert_eq!(cond(&ls[0].conditions, "Accepted"), ("False", "UnsupportedProtocol"));
        assert_eq!(cond(&ls[0].conditions, "Programmed"), ("False", "Invalid"));
        assert_eq!(cond(&ls[1].conditions, "Accepted"), ("True", "Accepted"));
        assert_eq!(cond(&ls[1].conditions, "ResolvedRefs"), ("False", "InvalidRouteKinds"));
        for l in &ls {
            assert!(l.supported_kinds.is_empty() && l.attached_routes == 0, "{l:?}");
        }
        let gc = gateway_conditions(&ls, Some(1), vec![], t(10));
        assert_eq!(cond(&gc, "Programmed"), ("False", "Invalid"));
    }

    #[test]
    fn the_gateway_is_accepted_and_programmed_and_names_listeners_it_cannot_serve() {
        let mut spec = seed_gateway();
        let ls = listener_statuses(&gw(), &spec, Some(4), &[], &[], t(10));
        let gc = gateway_conditions(&ls, Some(4), vec![], t(10));
        assert_eq!(cond(&gc, "Accepted"), ("True", "Accepted"));
        assert_eq!(cond(&gc, "Programmed"), ("True", "Programmed"));
        assert!(gc.iter().all(|c| c.observed_generation == Some(4)));
        spec.listeners.push(gateway(json!([{"name": "udp", "protocol": "UDP"}])).listeners.remove(0));
        let ls = listener_statuses(&gw(), &spec, Some(5), &[], &[], t(20));
        let gc2 = gateway_conditions(&ls, Some(5), gc, t(20));
        let accepted = gc2.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("True", "ListenersNotValid"));
        assert!(accepted.message.contains("udp"), "{}", accepted.message);
        assert_eq!(accepted.last_transition_time.0, t(10), "still True: the transition time stays");
    }

    #[test]
    fn an_unchanged_status_is_computed_equal_so_nothing_is_written() {
        let routes = [seed_route(json!([])), fixture_route()];
        let first = listener_statuses(&gw(), &seed_gateway(), Some(2), &routes, &[], t(10));
        let again = listener_statuses(&gw(), &seed_gateway(), Some(2), &routes, &first, t(99));
        assert_eq!(first, again);
        let parents = route_parents(&routes[0], &gw(), &seed_gateway(), &all_services, t(10));
        let written = seed_route(Value::Array(parents.clone()));
        assert_eq!(route_parents(&written, &gw(), &seed_gateway(), &all_services, t(99)), parents);
    }

    #[test]
    fn a_route_gets_accepted_and_resolved_refs_under_its_parent_ref() {
        let route = seed_route(json!([]));
        let parents = route_parents(&route, &gw(), &seed_gateway(), &all_services, t(10));
        assert_eq!(parents.len(), 1);
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(p.controller_name, "apiary.dev/gateway");
        assert_eq!(p.parent_ref, seed_parent_ref(), "the parentRef as the route writes it");
        assert_eq!(cond(&p.conditions, "Accepted"), ("True", "Accepted"));
        assert!(p.conditions[0].message.contains("kubernetes-mcp"), "{:?}", p.conditions[0]);
        assert_eq!(cond(&p.conditions, "ResolvedRefs"), ("True", "ResolvedRefs"));
        assert!(p.conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn a_refused_route_says_why_with_the_gateway_api_reason() {
        let route = seed_route(json!([]));
        let before_patch = GatewaySpec { listeners: seed_gateway().listeners[..1].to_vec() };
        let parents = route_parents(&route, &gw(), &before_patch, &all_services, t(10));
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(cond(&p.conditions, "Accepted"), ("False", "NoMatchingListenerHostname"));
        let same_only = gateway(json!([{"name": "l", "protocol": "HTTP"}]));
        let parents = route_parents(&route, &gw(), &same_only, &all_services, t(10));
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(cond(&p.conditions, "Accepted"), ("False", "NotAllowedByListeners"));
        let wrong_section = fixture_route();
        let parents = route_parents(
            &wrong_section,
            &gw(),
            &gateway(json!([{"name": "other", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}}}])),
            &all_services,
            t(10),
        );
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(cond(&p.conditions, "Accepted"), ("False", "NoMatchingParent"));
    }

    #[test]
    fn a_missing_or_foreign_backend_is_not_resolved() {
        let route = seed_route(json!([]));
        let missing = |k: &Key| *k != key("mcp-test", "kubernetes-mcp-external");
        let parents = route_parents(&route, &gw(), &seed_gateway(), &missing, t(10));
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(cond(&p.conditions, "ResolvedRefs"), ("False", "BackendNotFound"));
        assert!(p.conditions[1].message.contains("mcp-test/kubernetes-mcp-external"), "{:?}", p.conditions[1]);
        assert_eq!(cond(&p.conditions, "Accepted"), ("True", "Accepted"), "attachment does not depend on backends");
        let spec = json!({"parentRefs": [seed_parent_ref()],
            "rules": [{"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b"}]}]});
        let odd = Route::from_object(&object("mcp-test", "odd", spec, json!({}))).unwrap();
        let parents = route_parents(&odd, &gw(), &seed_gateway(), &all_services, t(10));
        let p: RouteParentStatus = serde_json::from_value(parents[0].clone()).unwrap();
        assert_eq!(cond(&p.conditions, "ResolvedRefs"), ("False", "InvalidKind"));
    }

    #[test]
    fn other_controllers_and_other_gateways_entries_are_kept_and_a_stale_one_of_ours_removed() {
        let theirs = json!({"controllerName": "istio.io/gateway-controller", "parentRef": seed_parent_ref(),
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let ours_elsewhere = json!({"controllerName": CONTROLLER_NAME,
            "parentRef": {"name": "other-gateway", "namespace": "gateway-system"}, "conditions": []});
        let route = seed_route(json!([theirs, ours_elsewhere]));
        let parents = route_parents(&route, &gw(), &seed_gateway(), &all_services, t(10));
        assert_eq!(parents.len(), 3);
        assert_eq!(parents[0], theirs, "another controller's entry is untouched");
        assert_eq!(parents[1], ours_elsewhere, "another Gateway's entry is not this gateway's to write");
        assert_eq!(parents[2]["controllerName"], CONTROLLER_NAME);

        // The route no longer names the Gateway: our entry for it goes, the others stay.
        let mut moved = seed_route(Value::Array(parents.clone()));
        moved.spec.parent_refs[0].name = "other-gateway".into();
        moved.parent_refs[0]["name"] = json!("other-gateway");
        let after = route_parents(&moved, &gw(), &seed_gateway(), &all_services, t(20));
        assert_eq!(after, parents[..2].to_vec());
    }
}
