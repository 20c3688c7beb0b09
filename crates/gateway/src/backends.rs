//! From the registrations' snapshot to what serves them: the vMCP config (one backend per
//! served registration, its prefix literal, its route as the server name, its credential as a
//! bearer), and the route a prefixed tool name goes to, as the gateway's middleware needs it
//! before the vMCP routes the call.

use apiary_operator::gateway::Snapshot;
use apiary_vmcp::VmcpConfig;
use apiary_vmcp::config::{CircuitBreaker, FailureHandling, Operational, StaticBackend};

/// The vMCP config serving `snapshot`.
pub fn vmcp_config(snapshot: &Snapshot) -> VmcpConfig {
    let backends = snapshot
        .backends
        .iter()
        .map(|b| StaticBackend {
            name: b.backend_name(),
            url: b.url.clone(),
            transport: "streamable-http".into(),
            tool_prefix: Some(b.prefix.clone()),
            server_name: Some(b.server_name()),
            headers: b.token.iter().map(|t| ("Authorization".to_owned(), format!("Bearer {t}"))).collect(),
            ..StaticBackend::default()
        })
        .collect();
    VmcpConfig {
        name: "gateway".into(),
        backends,
        operational: Some(Operational {
            failure_handling: Some(FailureHandling {
                circuit_breaker: Some(CircuitBreaker { enabled: true, ..CircuitBreaker::default() }),
                ..FailureHandling::default()
            }),
            ..Operational::default()
        }),
        ..VmcpConfig::default()
    }
}

/// Where a `tools/call` of an advertised name goes: the route key (`x-mcp-servername`) and the
/// server's own tool name (`x-mcp-toolname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRoute {
    pub server_name: String,
    pub tool: String,
}

/// The route of advertised tool `name`: the backend whose literal prefix it starts with — the
/// longest such prefix, and of equal ones the first backend (namespace/name order, the vMCP's
/// config order, which wins its name clashes). `None` when no prefix fits (or only an empty
/// prefix leaves an empty name).
///
/// The vMCP's catalog decides from what each server lists, which this cannot see: with nested
/// prefixes (`kube_`, `kube_x_`) both backends may claim a name. A mismatch is harmless: the
/// vMCP forwards under a grant only when it names the very server and tool it routes to, and
/// decides again otherwise.
pub fn tool_route(snapshot: &Snapshot, name: &str) -> Option<ToolRoute> {
    let mut best: Option<(&str, String)> = None;
    for b in &snapshot.backends {
        let Some(tool) = name.strip_prefix(b.prefix.as_str()) else { continue };
        if tool.is_empty() || best.as_ref().is_some_and(|(p, _)| p.len() >= b.prefix.len()) {
            continue;
        }
        best = Some((b.prefix.as_str(), b.server_name()));
    }
    best.map(|(prefix, server_name)| ToolRoute { server_name, tool: name[prefix.len()..].to_owned() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use apiary_operator::gateway::Backend;
    use apiary_operator::registration::route::Key;

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    fn backend(reg: &str, route: &str, prefix: &str) -> Backend {
        Backend {
            registration: key("mcp-test", reg),
            route: key("mcp-test", route),
            url: format!("http://localhost:9999/{reg}"),
            prefix: prefix.into(),
            token: Some("s3cret".into()),
        }
    }

    fn snapshot(backends: Vec<Backend>) -> Snapshot {
        Snapshot { backends, skipped: Vec::new(), synced: true }
    }

    #[test]
    fn a_snapshot_becomes_a_valid_vmcp_config_with_the_gateway_fields() {
        let c = vmcp_config(&snapshot(vec![backend("kubernetes-mcp-server", "kubernetes-mcp", "kube_")]));
        c.validate().unwrap();
        let b = &c.backends[0];
        assert_eq!(b.name, "mcp-test.kubernetes-mcp-server");
        assert_eq!(b.tool_prefix.as_deref(), Some("kube_"));
        assert_eq!(b.server_name.as_deref(), Some("mcp-test/kubernetes-mcp"));
        assert_eq!(b.headers.get("Authorization").map(String::as_str), Some("Bearer s3cret"));
        assert!(vmcp_config(&Snapshot::default()).backends.is_empty());
    }

    #[test]
    fn a_prefixed_name_maps_to_the_longest_prefix_then_the_first_backend() {
        let s = snapshot(vec![
            backend("a", "kubernetes-mcp", "kube_"),
            backend("b", "nested", "kube_x_"),
            backend("c", "same", "kube_"),
            backend("d", "bare", ""),
        ]);
        let route = |n: &str| tool_route(&s, n).map(|r| (r.server_name, r.tool));
        assert_eq!(route("kube_namespaces_list"), Some(("mcp-test/kubernetes-mcp".into(), "namespaces_list".into())));
        assert_eq!(route("kube_x_pods"), Some(("mcp-test/nested".into(), "pods".into())));
        assert_eq!(route("echo"), Some(("mcp-test/bare".into(), "echo".into())), "the empty prefix fits any name");
        assert_eq!(route("kube_"), Some(("mcp-test/bare".into(), "kube_".into())), "no empty tool name");
        let s = snapshot(vec![backend("a", "kubernetes-mcp", "kube_")]);
        assert_eq!(tool_route(&s, "other_echo"), None);
        assert_eq!(tool_route(&s, "kube_"), None);
        assert_eq!(tool_route(&Snapshot::default(), "kube_x"), None);
    }
}
