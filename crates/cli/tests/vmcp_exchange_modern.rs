//! `token_exchange` vMCP backends for 2026-07-28 clients, against a real Keycloak (the `mcp`
//! realm): each stateless request carries its own `Authorization`; the vMCP exchanges that
//! request's verified caller token (RFC 8693) for one addressed to the backend, lists the
//! backend to that caller and routes its calls there; the backend sees only the exchanged
//! token. A caller Keycloak will not exchange for never sees the backend.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use apiary_testkit::keycloak::{Keycloak, USER_CLIENT};
use serde_json::{Value, json};
use support::exchange::{assert_exchanged, header_seen, post, start_exchange_vmcp};

/// One 2026-07-28 request (its `_meta` and headers as that revision wants them): the HTTP
/// status and the answer (from JSON or the first SSE `data:` line that is a response).
async fn modern(url: &str, token: Option<&str>, id: u64, method: &str, mut params: Value) -> (u16, Option<Value>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "exchange-modern-test", "version": "1"},
    });
    let name = params.get("name").and_then(Value::as_str).map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method)];
    headers.extend(name.as_deref().map(|n| ("mcp-name", n)));
    let (status, answer, _) = post(url, token, &headers, &body).await;
    (status, answer)
}

async fn tool_names(url: &str, token: &str) -> Vec<String> {
    let (status, listed) = modern(url, Some(token), 2, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{listed:?}");
    listed.unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The `Authorization` header `backend` received for this caller's call (the error text
/// when it received none, or the call failed).
async fn seen_by(url: &str, token: &str, backend: &str) -> Result<String, String> {
    let params = json!({"name": format!("{backend}_request_header"), "arguments": {"name": "authorization"}});
    let (_, answer) = modern(url, Some(token), 7, "tools/call", params).await;
    header_seen(&answer.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_requests_own_caller_token_is_exchanged_for_the_backend_and_never_forwarded() {
    let kc = Keycloak::shared().await;
    let setup = start_exchange_vmcp(kc).await;
    let v = &setup.vmcp;

    // No caller token: 401 at the front, nothing reaches a backend.
    let (status, _) = modern(&v.url, None, 1, "tools/list", json!({})).await;
    assert_eq!(status, 401);

    // The caller sees the token-exchange backend's tools beside the other's.
    let caller = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    let names = tool_names(&v.url, &caller).await;
    assert!(names.contains(&"alpha_request_header".to_owned()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("beta_")), "{names:?}");

    // A call reaches alpha with a token exchanged for it, never the caller's own.
    let first = seen_by(&v.url, &caller, "alpha").await.unwrap();
    assert_exchanged(&first, &caller);
    assert_eq!(seen_by(&v.url, &caller, "alpha").await.unwrap(), first, "the exchanged token is cached");
    // A backend without outgoing auth gets no Authorization at all.
    let beta = seen_by(&v.url, &caller, "beta").await.unwrap_err();
    assert!(beta.contains("no header authorization"), "{beta}");

    // Another token of the same user: exchanged anew, per request.
    let other = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    let second = seen_by(&v.url, &other, "alpha").await.unwrap();
    assert_ne!(second, first, "the second caller token was not exchanged for itself");
    assert_ne!(second.strip_prefix("Bearer ").unwrap(), other);

    // A user Keycloak will not exchange for that audience: alpha is left out of that caller's
    // list and unknown to its calls; the other backend still serves it.
    let norole = kc.password_token(USER_CLIENT, "mcp-norole", "mcp-norole", "openid").await.unwrap().access_token;
    let names = tool_names(&v.url, &norole).await;
    assert!(
        names.iter().any(|n| n.starts_with("beta_")) && !names.iter().any(|n| n.starts_with("alpha_")),
        "{names:?}"
    );
    let err = seen_by(&v.url, &norole, "alpha").await.unwrap_err();
    assert!(err.contains("Unknown tool: alpha_request_header"), "{err}");
    // The first caller still gets its own exchange.
    assert_eq!(seen_by(&v.url, &caller, "alpha").await.unwrap(), first);
}
