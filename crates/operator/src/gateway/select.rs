//! Which registrations a gateway serves, and as what: pure decisions over a registration and
//! what [`crate::registration::resolve`] found for it. A registration is served when it
//! resolves and its HTTPRoute attaches to the gateway's Gateway: a `parentRefs` entry names it
//! and one of its listeners admits the route ([`super::listeners`]); otherwise it is skipped
//! with a reason the gateway logs and shows at `/status`.

use super::listeners::{self, GatewaySpec, ParentRef};
use crate::crd::registration::MCPServerRegistrationSpec;
use crate::registration::Resolved;
use crate::registration::route::{Key, Problem};

/// The served Gateway as the gateway sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// Its namespace and name.
    pub key: Key,
    /// Its spec; `None` while it does not exist (or cannot be read).
    pub spec: Option<GatewaySpec>,
}

/// One registered server the gateway serves.
#[derive(Clone, PartialEq, Eq)]
pub struct Backend {
    /// The MCPServerRegistration.
    pub registration: Key,
    /// Its HTTPRoute: `<namespace>/<name>` is the `x-mcp-servername` of routed requests.
    pub route: Key,
    /// The server's MCP endpoint.
    pub url: String,
    /// Put before each tool name as written (`prefix` over `toolPrefix`; empty when neither).
    pub prefix: String,
    /// The `credentialRef` token, sent as a bearer. Never printed.
    pub token: Option<String>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("registration", &self.registration)
            .field("route", &self.route)
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Longest vMCP backend name.
const MAX_NAME: usize = 63;

impl Backend {
    /// The vMCP backend name: `<namespace>.<name>` of the registration, or, when that is longer
    /// than 63 characters, a shortened form kept unique by a hash of the whole.
    pub fn backend_name(&self) -> String {
        let full = format!("{}.{}", self.registration.namespace, self.registration.name);
        if full.len() <= MAX_NAME {
            return full;
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        full.hash(&mut h);
        let tag = format!("-{:012x}", h.finish() & 0xffff_ffff_ffff);
        let head: String = full.chars().take(MAX_NAME - tag.len()).collect();
        format!("{}{tag}", head.trim_end_matches(['.', '-']))
    }

    /// The `x-mcp-servername` of requests routed to it.
    pub fn server_name(&self) -> String {
        self.route.to_string()
    }
}

/// A registration the gateway does not serve, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The MCPServerRegistration.
    pub registration: Key,
    /// CamelCase reason (the reconciler's, or `NotAttached`, `Unsupported`).
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// What the gateway serves for one registration (`spec` normalized) that resolved to
/// `resolved`, whose route has `parents` (its `parentRefs`), on Gateway `gateway`.
pub fn select(
    registration: &Key,
    spec: &MCPServerRegistrationSpec,
    resolved: Result<Resolved, Problem>,
    parents: &[ParentRef],
    gateway: &Gateway,
) -> Result<Backend, Skipped> {
    let skip = |reason: &'static str, message: String| Skipped { registration: registration.clone(), reason, message };
    if spec.ca_cert_secret_ref.is_some() {
        return Err(skip("Unsupported", "spec.caCertSecretRef is not applied by the gateway yet".into()));
    }
    let r = resolved.map_err(|p| skip(p.reason, p.message))?;
    let Some(gateway_spec) = &gateway.spec else {
        return Err(skip("GatewayNotFound", format!("Gateway {} does not exist (or cannot be read)", gateway.key)));
    };
    listeners::attach(&r.route, parents, &r.route_spec.hostnames, &gateway.key, gateway_spec)
        .map_err(|refused| skip(refused.reason, refused.message))?;
    Ok(Backend {
        registration: registration.clone(),
        route: r.route,
        url: r.url,
        prefix: spec.prefix.clone().unwrap_or_default(),
        token: r.token,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crd::registration::SecretRefWithDefaultKey;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    fn resolved(parent_ns: &str) -> Resolved {
        Resolved {
            route: key("mcp-test", "kubernetes-mcp"),
            route_spec: serde_json::from_value(json!({"parentRefs": [{"name": "mcp-gateway",
                "namespace": parent_ns}]}))
            .unwrap(),
            url: "http://localhost:9999/mcp".into(),
            token: Some("t0ken".into()),
        }
    }

    fn spec(prefix: Option<&str>) -> MCPServerRegistrationSpec {
        MCPServerRegistrationSpec { prefix: prefix.map(str::to_string), ..MCPServerRegistrationSpec::default() }
    }

    /// The route's parentRefs: Gateway `mcp-gateway` in `parent_ns`.
    fn parents(parent_ns: &str) -> Vec<ParentRef> {
        vec![ParentRef { name: "mcp-gateway".into(), namespace: Some(parent_ns.into()), ..ParentRef::default() }]
    }

    /// Gateway `gateway-system/mcp-gateway` with one listener of `hostname` admitting all namespaces.
    fn gw(hostname: Option<&str>) -> Gateway {
        let spec = serde_json::from_value(json!({"listeners": [{"name": "mcp", "hostname": hostname, "port": 8080,
            "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}))
        .unwrap();
        Gateway { key: key("gateway-system", "mcp-gateway"), spec: Some(spec) }
    }

    #[test]
    fn an_attached_route_is_served_with_its_prefix_and_server_name() {
        let reg = key("mcp-test", "kubernetes-mcp-server");
        let gw = gw(None);
        let p = parents("gateway-system");
        let b = select(&reg, &spec(Some("kube_")), Ok(resolved("gateway-system")), &p, &gw).unwrap();
        assert_eq!((b.prefix.as_str(), b.url.as_str()), ("kube_", "http://localhost:9999/mcp"));
        assert_eq!(b.server_name(), "mcp-test/kubernetes-mcp");
        assert_eq!(b.backend_name(), "mcp-test.kubernetes-mcp-server");
        assert!(!format!("{b:?}").contains("t0ken"), "the token is never printed");
        assert_eq!(select(&reg, &spec(None), Ok(resolved("gateway-system")), &p, &gw).unwrap().prefix, "");
    }

    #[test]
    fn a_route_no_listener_admits_or_a_missing_gateway_is_skipped_with_the_reason() {
        let reg = key("mcp-test", "kubernetes-mcp-server");
        let p = parents("gateway-system");
        // The route's hostnames are empty in `resolved`: give it the seed's.
        let mut r = resolved("gateway-system");
        r.route_spec.hostnames = vec!["kubernetes-mcp.example.com".into()];
        let refused = select(&reg, &spec(None), Ok(r.clone()), &p, &gw(Some("mcp.example.org"))).unwrap_err();
        assert_eq!(refused.reason, "NoMatchingListenerHostname");
        assert!(refused.message.contains("mcp.example.org"), "{}", refused.message);
        assert!(select(&reg, &spec(None), Ok(r.clone()), &p, &gw(Some("*.example.com"))).is_ok());
        let absent = Gateway { key: key("gateway-system", "mcp-gateway"), spec: None };
        let gone = select(&reg, &spec(None), Ok(r), &p, &absent).unwrap_err();
        assert_eq!(gone.reason, "GatewayNotFound");
        assert!(gone.message.contains("gateway-system/mcp-gateway"), "{}", gone.message);
    }

    #[test]
    fn a_route_of_another_gateway_a_problem_and_a_ca_secret_are_skipped_with_reasons() {
        let reg = key("mcp-test", "r");
        let gw = gw(None);
        let p = parents("gateway-system");
        let other =
            select(&reg, &spec(None), Ok(resolved("toolhive-system")), &parents("toolhive-system"), &gw).unwrap_err();
        assert_eq!(other.reason, "NotAttached");
        assert!(other.message.contains("gateway-system/mcp-gateway"), "{}", other.message);
        let gone = Problem { reason: "RouteNotFound", message: "HTTPRoute mcp-test/x not found".into() };
        assert_eq!(select(&reg, &spec(None), Err(gone), &p, &gw).unwrap_err().reason, "RouteNotFound");
        let with_ca = MCPServerRegistrationSpec {
            ca_cert_secret_ref: Some(SecretRefWithDefaultKey { name: "ca".into(), key: None }),
            ..spec(None)
        };
        assert_eq!(select(&reg, &with_ca, Ok(resolved("gateway-system")), &p, &gw).unwrap_err().reason, "Unsupported");
    }

    #[test]
    fn long_names_are_shortened_and_stay_distinct() {
        let b = |name: &str| Backend {
            registration: key(&"n".repeat(40), name),
            route: key("a", "b"),
            url: String::new(),
            prefix: String::new(),
            token: None,
        };
        let (one, two) = (b(&"x".repeat(60)).backend_name(), b(&format!("{}y", "x".repeat(59))).backend_name());
        assert!(one.len() <= 63 && two.len() <= 63, "{one} {two}");
        assert_ne!(one, two);
    }
}
