//! `GET /status` and `GET /api/backends/health` of the gateway: the Gateway, what is served and
//! what is not (with why), each route's AuthPolicy state, and the backends' health. Never
//! shows a credential.

use std::sync::Arc;

use apiary_authpolicy::{Enforcer, JwtVerifier, MetadataFetcher};
use apiary_operator::gateway::Snapshot;
use apiary_operator::registration::route::Key;
use apiary_vmcp::HealthRegistry;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The AuthPolicy state of a route, as `/status` shows it.
pub type PolicyState = Option<Result<(), String>>;

/// The status document.
pub fn status(
    gateway: &Key,
    snapshot: &Snapshot,
    health: &HealthRegistry,
    policy: &dyn Fn(&str) -> PolicyState,
) -> Value {
    let served: Vec<Value> = snapshot
        .backends
        .iter()
        .map(|b| {
            let route = b.server_name();
            let auth = match policy(&route) {
                None => json!({"state": "none"}),
                Some(Ok(())) => json!({"state": "enforced"}),
                Some(Err(why)) => json!({"state": "refused", "message": why}),
            };
            json!({"registration": b.registration.to_string(), "route": b.route.to_string(),
                "serverName": route, "url": b.url, "prefix": b.prefix, "backend": b.backend_name(),
                "credential": b.token.is_some(), "authPolicy": auth})
        })
        .collect();
    let skipped: Vec<Value> = snapshot
        .skipped
        .iter()
        .map(|s| json!({"registration": s.registration.to_string(), "reason": s.reason, "message": s.message}))
        .collect();
    json!({"gateway": gateway.to_string(), "synced": snapshot.synced, "servers": served, "notServed": skipped,
        "health": health.status_report()})
}

/// The routes serving [`status`] and the backends' health report.
pub fn routes<V: JwtVerifier + 'static, F: MetadataFetcher + 'static>(
    gateway: Key,
    snapshots: watch::Receiver<Snapshot>,
    health: Arc<HealthRegistry>,
    enforcer: Arc<Enforcer<V, F>>,
) -> axum::Router {
    let h2 = Arc::clone(&health);
    let answer = move || {
        let policy = |route: &str| enforcer.policy_status(route).map(|r| r.map_err(|e| e.to_string()));
        let body = status(&gateway, &snapshots.borrow(), &health, &policy).to_string();
        async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
    };
    axum::Router::new().route("/status", get(answer)).route(
        "/api/backends/health",
        get(move || {
            let body = h2.health_report().to_string();
            async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use apiary_operator::gateway::{Backend, Skipped};

    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key { namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn status_lists_served_and_skipped_with_the_policy_state_and_without_the_credential() {
        let snapshot = Snapshot {
            backends: vec![Backend {
                registration: key("mcp-test", "kubernetes-mcp-server"),
                route: key("mcp-test", "kubernetes-mcp"),
                url: "http://localhost:9999/mcp".into(),
                prefix: "kube_".into(),
                token: Some("s3cret".into()),
            }],
            skipped: vec![Skipped {
                registration: key("other", "r"),
                reason: "NotAttached",
                message: "HTTPRoute other/r has no parentRef to Gateway gateway-system/mcp-gateway".into(),
            }],
            synced: true,
        };
        let refused = |_: &str| Some(Err("spec.rules.metadata.x.http.urlExpression: not supported".to_owned()));
        let s = status(&key("gateway-system", "mcp-gateway"), &snapshot, &HealthRegistry::default(), &refused);
        assert_eq!(s["gateway"], "gateway-system/mcp-gateway");
        assert_eq!(s["servers"][0]["serverName"], "mcp-test/kubernetes-mcp");
        assert_eq!(s["servers"][0]["credential"], true);
        assert_eq!(s["servers"][0]["authPolicy"]["state"], "refused");
        assert_eq!(s["notServed"][0]["reason"], "NotAttached");
        assert!(!s.to_string().contains("s3cret"), "{s}");
        let none = |_: &str| None;
        let s = status(&key("gateway-system", "mcp-gateway"), &snapshot, &HealthRegistry::default(), &none);
        assert_eq!(s["servers"][0]["authPolicy"]["state"], "none");
    }
}
