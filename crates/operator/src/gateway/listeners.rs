//! Gateway API attachment: whether a listener of the served Gateway admits an HTTPRoute. A
//! route attaches when one of its `parentRefs` names the Gateway (and its `sectionName`/`port`,
//! when set, pick listeners) and one of those listeners admits it: the listener takes
//! HTTPRoutes (`protocol` HTTP/HTTPS or `allowedRoutes.kinds`), the route's namespace is allowed
//! (`allowedRoutes.namespaces.from`: `Same`, the default, or `All`; `Selector` is refused as
//! unsupported), and the hostnames intersect (a listener or a route without hostnames matches
//! any; `*.example.com` matches any name below `example.com`, not `example.com` itself).
//! Pure: the caller reads the Gateway and the route's `parentRefs` from its caches. A refusal
//! carries the Gateway API route condition reason (`NoMatchingParent`, `NotAllowedByListeners`,
//! `NoMatchingListenerHostname`, `UnsupportedValue`) and says which listener refused and why.

use serde::Deserialize;

pub use crate::registration::route::ParentRef;
use crate::registration::route::{GATEWAY_GROUP, HTTPROUTE_KIND, Key, names_gateway};

/// The fields of a Gateway's spec attachment reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct GatewaySpec {
    /// Its listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// One listener of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Its name (what a parentRef's `sectionName` names).
    pub name: String,
    /// The host name it serves; none serves every host.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its port.
    #[serde(default)]
    pub port: Option<i64>,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    #[serde(default)]
    pub protocol: String,
    /// Which routes may attach.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// A listener's `allowedRoutes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct AllowedRoutes {
    /// Where routes may come from.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// Which kinds; none means what the protocol supports.
    #[serde(default)]
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `allowedRoutes.namespaces`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
}

/// One entry of `allowedRoutes.kinds`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RouteGroupKind {
    /// Defaults to the Gateway API group.
    #[serde(default)]
    pub group: Option<String>,
    /// The route kind.
    pub kind: String,
}

/// The route's `parentRefs`, read from its spec (everything else ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParents {
    /// Its parents.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
}

/// Why a route does not attach: a Gateway API route condition reason and what refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `NotAttached` (no parentRef names the Gateway), `NoMatchingParent`,
    /// `NotAllowedByListeners`, `NoMatchingListenerHostname` or `UnsupportedValue`.
    pub reason: &'static str,
    /// Which listener refused and why.
    pub message: String,
}

/// Whether route `route` (with `parents` and `hostnames`) attaches to Gateway `gateway`
/// (with `spec`): `Ok` with the admitting listener's name, else why not.
pub fn attach(
    route: &Key,
    parents: &[ParentRef],
    hostnames: &[String],
    gateway: &Key,
    spec: &GatewaySpec,
) -> Result<String, Refused> {
    let ours: Vec<&ParentRef> = parents.iter().filter(|p| names_gateway(route, p, gateway)).collect();
    if ours.is_empty() {
        return Err(Refused {
            reason: "NotAttached",
            message: format!("HTTPRoute {route} has no parentRef to Gateway {gateway}; this gateway does not serve it"),
        });
    }
    let mut best: Option<Refused> = None;
    for parent in ours {
        match attach_parent(route, parent, hostnames, gateway, spec) {
            Ok(listener) => return Ok(listener),
            Err(refused) => {
                if best.as_ref().is_none_or(|b| rank(refused.reason) > rank(b.reason)) {
                    best = Some(refused);
                }
            }
        }
    }
    Err(best.unwrap_or(Refused { reason: "NotAttached", message: format!("HTTPRoute {route} does not attach") }))
}

/// Which refusal says most (the one that got furthest).
fn rank(reason: &str) -> u8 {
    match reason {
        "NoMatchingListenerHostname" => 3,
        "UnsupportedValue" => 2,
        "NotAllowedByListeners" => 1,
        _ => 0,
    }
}

/// One parentRef naming the Gateway: the listeners it picks, and whether one admits the route.
fn attach_parent(
    route: &Key,
    parent: &ParentRef,
    hostnames: &[String],
    gateway: &Key,
    spec: &GatewaySpec,
) -> Result<String, Refused> {
    let picked: Vec<&Listener> = spec
        .listeners
        .iter()
        .filter(|l| parent.section_name.as_deref().is_none_or(|s| s == l.name))
        .filter(|l| parent.port.is_none_or(|p| l.port == Some(p)))
        .collect();
    if picked.is_empty() {
        let wanted = match (&parent.section_name, parent.port) {
            (Some(s), Some(p)) => format!("a listener named {s:?} on port {p}"),
            (Some(s), None) => format!("a listener named {s:?}"),
            (None, Some(p)) => format!("a listener on port {p}"),
            (None, None) => "a listener".to_owned(),
        };
        return Err(Refused {
            reason: "NoMatchingParent",
            message: format!("HTTPRoute {route}: Gateway {gateway} has no {wanted}"),
        });
    }
    let mut why = Vec::new();
    let mut reason = "NotAllowedByListeners";
    for listener in picked {
        match admits(listener, route, hostnames, gateway) {
            Ok(()) => return Ok(listener.name.clone()),
            Err((r, text)) => {
                if rank(r) > rank(reason) {
                    reason = r;
                }
                why.push(format!("listener {:?}: {text}", listener.name));
            }
        }
    }
    Err(Refused {
        reason,
        message: format!("HTTPRoute {route} is not admitted by Gateway {gateway}: {}", why.join("; ")),
    })
}

/// Whether one listener admits the route, else the reason and why.
fn admits(listener: &Listener, route: &Key, hostnames: &[String], gateway: &Key) -> Result<(), (&'static str, String)> {
    let allowed = listener.allowed_routes.as_ref();
    match allowed.and_then(|a| a.kinds.as_ref()) {
        Some(kinds) if !kinds.is_empty() => {
            let takes = kinds
                .iter()
                .any(|k| k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP && k.kind == HTTPROUTE_KIND);
            if !takes {
                return Err(("NotAllowedByListeners", "allowedRoutes.kinds does not include HTTPRoute".into()));
            }
        }
        _ => {
            if !matches!(listener.protocol.as_str(), "HTTP" | "HTTPS") {
                return Err(("NotAllowedByListeners", format!("protocol {:?} takes no HTTPRoutes", listener.protocol)));
            }
        }
    }
    let from = allowed.and_then(|a| a.namespaces.as_ref()).and_then(|n| n.from.as_deref()).unwrap_or("Same");
    match from {
        "All" => {}
        "Same" if route.namespace == gateway.namespace => {}
        "Same" => {
            return Err((
                "NotAllowedByListeners",
                format!(
                    "allowedRoutes.namespaces.from is Same and the route is in {:?}, not {:?}",
                    route.namespace, gateway.namespace
                ),
            ));
        }
        "Selector" => {
            return Err((
                "UnsupportedValue",
                "allowedRoutes.namespaces.from: Selector is not supported by apiary gateway; use Same or All".into(),
            ));
        }
        other => {
            return Err((
                "UnsupportedValue",
                format!("allowedRoutes.namespaces.from {other:?} is not Same, All or Selector"),
            ));
        }
    }
    let Some(host) = listener.hostname.as_deref().filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    if hostnames.is_empty() || hostnames.iter().any(|h| intersects(host, h)) {
        return Ok(());
    }
    Err((
        "NoMatchingListenerHostname",
        format!("hostname {host:?} matches none of the route's hostnames {hostnames:?}"),
    ))
}

/// Whether a listener hostname and a route hostname have a name in common (Gateway API
/// matching: exact, or a `*.` wildcard on either side matching one or more labels below its
/// suffix; case does not matter).
pub fn intersects(listener: &str, route: &str) -> bool {
    let (a, b) = (listener.to_ascii_lowercase(), route.to_ascii_lowercase());
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => a == b,
        // `.example.com` (the wildcard's suffix, dot included) against a plain name.
        (Some(suffix), None) => b.len() > suffix.len() && b.ends_with(suffix),
        (None, Some(suffix)) => a.len() > suffix.len() && a.ends_with(suffix),
        // Two wildcards share names when one's suffix ends the other's.
        (Some(x), Some(y)) => x.ends_with(y) || y.ends_with(x),
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

    fn gateway(listeners: serde_json::Value) -> GatewaySpec {
        serde_json::from_value(json!({"listeners": listeners})).unwrap()
    }

    fn parents(refs: serde_json::Value) -> Vec<ParentRef> {
        serde_json::from_value::<RouteParents>(json!({"parentRefs": refs})).unwrap().parent_refs
    }

    const GW: (&str, &str) = ("gateway-system", "mcp-gateway");

    /// The Gateway of seed 004 after its `kubectl patch`: the chart's listener and the seed's.
    fn seed_gateway() -> GatewaySpec {
        gateway(json!([
            {"name": "mcp", "hostname": "mcp.127-0-0-1.sslip.io", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "kubernetes-mcp", "hostname": "kubernetes-mcp.example.com", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
        ]))
    }

    fn to_gw() -> Vec<ParentRef> {
        parents(json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mcp-gateway",
            "namespace": "gateway-system"}]))
    }

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_seeds_patched_listener_admits_its_route_and_the_chart_listener_alone_does_not() {
        let route = key("mcp-test", "kubernetes-mcp");
        let gw = key(GW.0, GW.1);
        let seed_hosts = hosts(&["kubernetes-mcp.example.com"]);
        assert_eq!(attach(&route, &to_gw(), &seed_hosts, &gw, &seed_gateway()).unwrap(), "kubernetes-mcp");
        let before_patch = GatewaySpec { listeners: seed_gateway().listeners[..1].to_vec() };
        let refused = attach(&route, &to_gw(), &seed_hosts, &gw, &before_patch).unwrap_err();
        assert_eq!(refused.reason, "NoMatchingListenerHostname");
        assert!(
            refused.message.contains("\"mcp\"") && refused.message.contains("kubernetes-mcp.example.com"),
            "{refused:?}"
        );
    }

    #[test]
    fn hostnames_match_exactly_or_by_wildcard_suffix_on_either_side() {
        for (listener, route, want) in [
            ("a.example.com", "a.example.com", true),
            ("A.Example.com", "a.example.COM", true),
            ("a.example.com", "b.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "aexample.com", false),
            ("a.example.com", "*.example.com", true),
            ("example.com", "*.example.com", false),
            ("*.example.com", "*.b.example.com", true),
            ("*.b.example.com", "*.example.com", true),
            ("*.example.com", "*.example.org", false),
        ] {
            assert_eq!(intersects(listener, route), want, "{listener} vs {route}");
        }
    }

    #[test]
    fn a_listener_or_route_without_hostnames_matches_any() {
        let route = key("mcp-test", "r");
        let gw = key(GW.0, GW.1);
        let open =
            gateway(json!([{"name": "l", "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]));
        assert!(attach(&route, &to_gw(), &hosts(&["anything.test"]), &gw, &open).is_ok());
        assert!(attach(&route, &to_gw(), &[], &gw, &seed_gateway()).is_ok());
    }

    #[test]
    fn allowed_namespaces_same_by_default_all_and_selector_refused_as_unsupported() {
        let gw = key(GW.0, GW.1);
        let same = gateway(json!([{"name": "l", "protocol": "HTTP"}]));
        let elsewhere = key("mcp-test", "r");
        let refused = attach(&elsewhere, &to_gw(), &[], &gw, &same).unwrap_err();
        assert_eq!(refused.reason, "NotAllowedByListeners");
        assert!(refused.message.contains("Same"), "{refused:?}");
        assert!(attach(&key(GW.0, "r"), &to_gw(), &[], &gw, &same).is_ok(), "Same admits the Gateway's namespace");
        let selector = gateway(json!([{"name": "l", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"a": "b"}}}}}]));
        let refused = attach(&elsewhere, &to_gw(), &[], &gw, &selector).unwrap_err();
        assert_eq!(refused.reason, "UnsupportedValue");
        assert!(refused.message.contains("Selector is not supported"), "{refused:?}");
    }

    #[test]
    fn section_name_and_port_pick_the_listener() {
        let route = key("mcp-test", "kubernetes-mcp");
        let gw = key(GW.0, GW.1);
        let seed_hosts = hosts(&["kubernetes-mcp.example.com"]);
        let pick = |section: &str| {
            parents(json!([{"name": "mcp-gateway", "namespace": "gateway-system", "sectionName": section}]))
        };
        assert_eq!(
            attach(&route, &pick("kubernetes-mcp"), &seed_hosts, &gw, &seed_gateway()).unwrap(),
            "kubernetes-mcp"
        );
        let wrong = attach(&route, &pick("mcp"), &seed_hosts, &gw, &seed_gateway()).unwrap_err();
        assert_eq!(wrong.reason, "NoMatchingListenerHostname", "the named listener's hostname is another");
        let missing = attach(&route, &pick("nope"), &seed_hosts, &gw, &seed_gateway()).unwrap_err();
        assert_eq!(missing.reason, "NoMatchingParent");
        assert!(missing.message.contains("\"nope\""), "{missing:?}");
        let port = |p: i64| parents(json!([{"name": "mcp-gateway", "namespace": "gateway-system", "port": p}]));
        assert!(attach(&route, &port(8080), &seed_hosts, &gw, &seed_gateway()).is_ok());
        assert_eq!(
            attach(&route, &port(9090), &seed_hosts, &gw, &seed_gateway()).unwrap_err().reason,
            "NoMatchingParent"
        );
    }

    #[test]
    fn listeners_not_taking_httproutes_refuse_them() {
        let route = key("mcp-test", "r");
        let gw = key(GW.0, GW.1);
        let all = json!({"namespaces": {"from": "All"}});
        let tcp = gateway(json!([{"name": "t", "protocol": "TCP", "allowedRoutes": all}]));
        assert_eq!(attach(&route, &to_gw(), &[], &gw, &tcp).unwrap_err().reason, "NotAllowedByListeners");
        let grpc_only = gateway(json!([{"name": "g", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "GRPCRoute"}]}}]));
        assert_eq!(attach(&route, &to_gw(), &[], &gw, &grpc_only).unwrap_err().reason, "NotAllowedByListeners");
        let http_kind = gateway(json!([{"name": "g", "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]}}]));
        assert!(attach(&route, &to_gw(), &[], &gw, &http_kind).is_ok());
    }

    #[test]
    fn a_route_naming_another_gateway_is_not_attached_and_any_admitting_parent_wins() {
        let route = key("mcp-test", "r");
        let gw = key(GW.0, GW.1);
        let other = parents(json!([{"name": "elsewhere", "namespace": "gateway-system"}]));
        assert_eq!(attach(&route, &other, &[], &gw, &seed_gateway()).unwrap_err().reason, "NotAttached");
        let same_ns = parents(json!([{"name": "mcp-gateway"}]));
        assert_eq!(attach(&route, &same_ns, &[], &gw, &seed_gateway()).unwrap_err().reason, "NotAttached");
        let two = parents(json!([{"name": "mcp-gateway", "namespace": "gateway-system", "sectionName": "nope"},
            {"name": "mcp-gateway", "namespace": "gateway-system", "sectionName": "mcp"}]));
        assert_eq!(attach(&route, &two, &hosts(&["mcp.127-0-0-1.sslip.io"]), &gw, &seed_gateway()).unwrap(), "mcp");
    }
}
