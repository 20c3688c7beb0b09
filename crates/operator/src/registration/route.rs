//! From a registration's `targetRef` to the URL of its MCP server: which HTTPRoute it names,
//! the few route fields the gateway reads (names.md §2: `hostnames`, `rules[].matches[].path`,
//! `rules[].backendRefs[]{group,kind,name,port}`), the backend Service a rule sends to, and the
//! URL that Service gives (`ExternalName` included). Pure; the reconciler fetches the objects.

use k8s_openapi::api::core::v1::Service;
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;

use crate::crd::registration::TargetRef;

/// API group of Gateway API routes.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The only kind a registration may target.
pub const HTTPROUTE_KIND: &str = "HTTPRoute";

/// The HTTPRoute API (`gateway.networking.k8s.io/v1`), for dynamic reads and watches.
pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GATEWAY_GROUP, "v1", HTTPROUTE_KIND), "httproutes")
}

/// Why a registration's server cannot be resolved: the `Ready=False` reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, naming the object or field.
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem { reason, message: message.into() }
    }
}

/// A namespaced object's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The HTTPRoute `target` names, its namespace defaulting to `namespace` (the registration's).
pub fn target(namespace: &str, target: &TargetRef) -> Result<Key, Problem> {
    let group = target.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = target.kind.as_deref().unwrap_or(HTTPROUTE_KIND);
    if group != GATEWAY_GROUP || kind != HTTPROUTE_KIND {
        return Err(Problem::new(
            "InvalidTargetRef",
            format!("spec.targetRef must be a {GATEWAY_GROUP} {HTTPROUTE_KIND}, not {group:?} {kind:?}"),
        ));
    }
    if target.name.is_empty() {
        return Err(Problem::new("InvalidTargetRef", "spec.targetRef.name is empty"));
    }
    let namespace = target.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(namespace);
    Ok(Key { namespace: namespace.to_string(), name: target.name.clone() })
}

/// The fields of an HTTPRoute's spec the gateway reads; everything else is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The Gateways (or other parents) the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route answers.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A parent of a route: `group`/`kind` default to a Gateway API `Gateway`, `namespace` to the
/// route's; `sectionName`/`port` pick one listener of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// API group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The listener's name, when the route picks one.
    #[serde(default)]
    pub section_name: Option<String>,
    /// The listener's port, when the route picks by port.
    #[serde(default)]
    pub port: Option<i64>,
}

/// True when `parent`, one of route `route`'s `parentRefs`, names Gateway `gateway` (whether a
/// listener of it admits the route is the gateway's `listeners` module's question).
pub fn names_gateway(route: &Key, parent: &ParentRef, gateway: &Key) -> bool {
    parent.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        && parent.name == gateway.name
        && parent.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(&route.namespace) == gateway.namespace
}

/// One rule of a route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Matches; none matches everything.
    #[serde(default)]
    pub matches: Vec<Match>,
    /// Where matched requests go.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

/// One match of a rule (only its path is read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Match {
    /// The path match.
    #[serde(default)]
    pub path: Option<PathMatch>,
}

/// A path match: `type` (`PathPrefix` by default, `Exact`, `RegularExpression`) and `value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PathMatch {
    /// Match type.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    /// The path.
    #[serde(default)]
    pub value: Option<String>,
}

/// A backend of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct BackendRef {
    /// API group (`""`, the core group, by default).
    #[serde(default)]
    pub group: Option<String>,
    /// Kind (`Service` by default).
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (the route's by default).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Port on the Service.
    #[serde(default)]
    pub port: Option<i32>,
}

impl Match {
    /// True when a request for `path` meets this match.
    fn covers(&self, path: &str) -> bool {
        let Some(p) = &self.path else { return true };
        let value = p.value.as_deref().unwrap_or("/");
        match p.type_.as_deref().unwrap_or("PathPrefix") {
            "Exact" => path == value,
            // Prefix matching is by path element: `/mcp` covers `/mcp` and `/mcp/x`, not `/mcpx`.
            "PathPrefix" => {
                let value = value.trim_end_matches('/');
                value.is_empty() || path == value || path.strip_prefix(value).is_some_and(|r| r.starts_with('/'))
            }
            // A regular expression is not evaluated here; such a rule still counts as a candidate.
            _ => true,
        }
    }
}

/// The Service a route sends `path` to, with the backend's port: the first backend of the
/// first rule that matches `path` (a rule without matches matches everything); falls back to
/// the first rule with a backend.
pub fn backend(route: &Key, spec: &RouteSpec, path: &str) -> Result<(Key, Option<i32>), Problem> {
    let with_backends = || spec.rules.iter().filter(|r| !r.backend_refs.is_empty());
    let rule = with_backends()
        .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.covers(path)))
        .or_else(|| with_backends().next())
        .ok_or_else(|| Problem::new("BackendNotFound", format!("HTTPRoute {route} has no backendRefs")))?;
    let b = rule.backend_refs.first().ok_or_else(|| Problem::new("BackendNotFound", "no backendRef"))?;
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err(Problem::new(
            "UnsupportedBackend",
            format!("HTTPRoute {route} sends to {group:?} {kind:?} {}; only core Services are supported", b.name),
        ));
    }
    let namespace = b.namespace.clone().unwrap_or_else(|| route.namespace.clone());
    Ok((Key { namespace, name: b.name.clone() }, b.port))
}

/// The URL of the MCP endpoint `path` on Service `service` (named `key`) at `port` (the
/// route's backend port; when unset, the Service's only port). `ExternalName` Services point
/// at their external name; others at their cluster DNS name. `https` when the port's
/// `appProtocol` or name says so, or it is 443.
pub fn url(key: &Key, service: &Service, port: Option<i32>, path: &str) -> Result<String, Problem> {
    let spec =
        service.spec.as_ref().ok_or_else(|| Problem::new("BackendNotFound", format!("Service {key} has no spec")))?;
    let ports = spec.ports.as_deref().unwrap_or_default();
    let service_port = match port {
        Some(p) => ports.iter().find(|sp| sp.port == p),
        None if ports.len() == 1 => ports.first(),
        None => None,
    };
    let port = match (port, service_port) {
        (Some(p), _) => p,
        (None, Some(sp)) => sp.port,
        (None, None) => {
            return Err(Problem::new(
                "BackendNotFound",
                format!("the route names no port and Service {key} does not have exactly one"),
            ));
        }
    };
    let host = if spec.type_.as_deref() == Some("ExternalName") {
        let name = spec.external_name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            Problem::new("BackendNotFound", format!("ExternalName Service {key} has no spec.externalName"))
        })?;
        name.trim_end_matches('.').to_string()
    } else {
        format!("{}.{}.svc", key.name, key.namespace)
    };
    let tls = port == 443
        || service_port.is_some_and(|sp| {
            sp.app_protocol.as_deref() == Some("https")
                || (sp.app_protocol.is_none() && sp.name.as_deref() == Some("https"))
        });
    let scheme = if tls { "https" } else { "http" };
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    Ok(format!("{scheme}://{host}:{port}{path}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    /// The seed's route (use case 1).
    fn seed_route() -> RouteSpec {
        serde_json::from_value(json!({
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-gateway",
                "namespace": "gateway-system"}],
            "hostnames": ["kubernetes-mcp.example.com"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "kubernetes-mcp-external", "port": 9999}]}]
        }))
        .unwrap()
    }

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn target_defaults_group_kind_and_namespace_and_refuses_other_kinds() {
        let t = TargetRef { name: "kubernetes-mcp".into(), ..TargetRef::default() };
        assert_eq!(target("mcp-test", &t).unwrap(), key("mcp-test", "kubernetes-mcp"));
        let other_ns = TargetRef { namespace: Some("routes".into()), ..t.clone() };
        assert_eq!(target("mcp-test", &other_ns).unwrap(), key("routes", "kubernetes-mcp"));
        let grpc = TargetRef { kind: Some("GRPCRoute".into()), ..t.clone() };
        assert_eq!(target("mcp-test", &grpc).unwrap_err().reason, "InvalidTargetRef");
        let core = TargetRef { group: Some(String::new()), ..t };
        assert_eq!(target("mcp-test", &core).unwrap_err().reason, "InvalidTargetRef");
    }

    #[test]
    fn the_seed_route_resolves_to_its_external_name_service_and_port() {
        let route = key("mcp-test", "kubernetes-mcp");
        let spec = seed_route();
        assert_eq!(spec.hostnames, ["kubernetes-mcp.example.com"]);
        let (svc, port) = backend(&route, &spec, "/mcp").unwrap();
        assert_eq!((svc.clone(), port), (key("mcp-test", "kubernetes-mcp-external"), Some(9999)));
        let s = service(json!({"spec": {"type": "ExternalName", "externalName": "kubernetes-mcp.example.com",
            "ports": [{"name": "http", "port": 9999, "targetPort": 9999, "protocol": "TCP", "appProtocol": "http"}]}}));
        assert_eq!(url(&svc, &s, port, "/mcp").unwrap(), "http://kubernetes-mcp.example.com:9999/mcp");
    }

    #[test]
    fn the_seed_route_names_its_gateway_only() {
        let names = |route: &Key, spec: &RouteSpec, gateway: &Key| {
            spec.parent_refs.iter().any(|p| names_gateway(route, p, gateway))
        };
        let route = key("mcp-test", "kubernetes-mcp");
        let spec = seed_route();
        assert!(names(&route, &spec, &key("gateway-system", "mcp-gateway")));
        assert!(!names(&route, &spec, &key("toolhive-system", "mcp-gateway")), "same name, other namespace");
        assert!(!names(&route, &spec, &key("gateway-system", "other")));
        // A parentRef without a namespace means the route's own.
        let local: RouteSpec = serde_json::from_value(json!({"parentRefs": [{"name": "gw"}]})).unwrap();
        assert!(names(&route, &local, &key("mcp-test", "gw")));
        let not_a_gateway: RouteSpec =
            serde_json::from_value(json!({"parentRefs": [{"kind": "Service", "group": "", "name": "gw"}]})).unwrap();
        assert!(!names(&route, &not_a_gateway, &key("mcp-test", "gw")));
        assert!(!names(&route, &RouteSpec::default(), &key("mcp-test", "gw")));
    }

    #[test]
    fn a_cluster_service_resolves_to_its_dns_name_and_its_only_port() {
        let svc = key("ns1", "fixture");
        let s = service(json!({"spec": {"ports": [{"port": 8080}]}}));
        assert_eq!(url(&svc, &s, None, "/mcp").unwrap(), "http://fixture.ns1.svc:8080/mcp");
        assert_eq!(url(&svc, &s, Some(8080), "mcp/v2").unwrap(), "http://fixture.ns1.svc:8080/mcp/v2");
        let tls = service(json!({"spec": {"ports": [{"port": 8443, "appProtocol": "https"}]}}));
        assert_eq!(url(&svc, &tls, Some(8443), "/mcp").unwrap(), "https://fixture.ns1.svc:8443/mcp");
        let two = service(json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}}));
        assert_eq!(url(&svc, &two, None, "/mcp").unwrap_err().reason, "BackendNotFound");
        let nameless = service(json!({"spec": {"type": "ExternalName", "ports": [{"port": 1}]}}));
        assert_eq!(url(&svc, &nameless, None, "/mcp").unwrap_err().reason, "BackendNotFound");
    }

    #[test]
    fn the_rule_whose_path_covers_the_servers_path_is_chosen() {
        let route = key("ns", "r");
        let spec: RouteSpec = serde_json::from_value(json!({"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/other"}}], "backendRefs": [{"name": "a"}]},
            {"matches": [{"path": {"type": "Exact", "value": "/mcp"}}], "backendRefs": [{"name": "b", "port": 80}]},
        ]}))
        .unwrap();
        assert_eq!(backend(&route, &spec, "/mcp").unwrap(), (key("ns", "b"), Some(80)));
        // Nothing covers `/mcpx`: the first rule with a backend.
        assert_eq!(backend(&route, &spec, "/mcpx").unwrap().0, key("ns", "a"));
        let none: RouteSpec = serde_json::from_value(json!({"rules": [{"matches": []}]})).unwrap();
        assert_eq!(backend(&route, &none, "/mcp").unwrap_err().reason, "BackendNotFound");
        let foreign: RouteSpec = serde_json::from_value(
            json!({"rules": [{"backendRefs": [{"group": "x.io", "kind": "Thing", "name": "t"}]}]}),
        )
        .unwrap();
        assert_eq!(backend(&route, &foreign, "/mcp").unwrap_err().reason, "UnsupportedBackend");
    }
}
