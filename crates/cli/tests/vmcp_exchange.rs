//! `token_exchange` to vMCP backends against a real Keycloak (the `mcp` realm): each client
//! session's caller token is exchanged (RFC 8693) for one addressed to the backend, which sees
//! only that one; a refreshed caller token is exchanged again; a caller without a token never
//! reaches a backend.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use apiary_testkit::keycloak::{Keycloak, USER_CLIENT, decode_claims};
use serde_json::{Value, json};
use support::exchange::{assert_exchanged, header_seen, post, start_exchange_vmcp};

/// One JSON-RPC message of a 2025-11-25 client, in `session` if given: the HTTP status, the
/// answer and the session id the answer names.
async fn rpc(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> (u16, Option<Value>, Option<String>) {
    let mut headers = vec![("mcp-protocol-version", "2025-11-25")];
    headers.extend(session.map(|s| ("mcp-session-id", s)));
    post(url, token, &headers, body).await
}

async fn open(url: &str, token: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"exchange-test","version":"1"}}});
    let (status, answer, sid) = rpc(url, Some(token), None, &init).await;
    assert_eq!(status, 200, "{answer:?}");
    let sid = sid.unwrap();
    rpc(url, Some(token), Some(&sid), &json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    sid
}

/// The `Authorization` header `backend` received for a call on this session (its error text
/// when it received none).
async fn seen_by(url: &str, token: &str, sid: &str, backend: &str) -> Result<String, String> {
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name": format!("{backend}_request_header"), "arguments":{"name":"authorization"}}});
    let (status, answer, _) = rpc(url, Some(token), Some(sid), &call).await;
    assert_eq!(status, 200, "{answer:?}");
    header_seen(&answer.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_callers_token_is_exchanged_for_the_backend_and_never_forwarded() {
    let kc = Keycloak::shared().await;
    let setup = start_exchange_vmcp(kc).await;
    let (apiary, text, v) = (&setup.apiary, &setup.config, &setup.vmcp);

    // Without incoming OIDC the same outgoing auth is refused when the file is loaded.
    let anonymous = apiary.scratch().join("anonymous.yaml");
    let cut = text.find("incomingAuth").unwrap();
    let end = text.find("outgoingAuth").unwrap();
    std::fs::write(&anonymous, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    let out = apiary.run(&["vmcp", "validate", "--config", anonymous.to_str().unwrap()]);
    let err = out.failed();
    assert!(err.contains("outgoingAuth.backends.alpha.type") && err.contains("incomingAuth.type oidc"), "{err}");

    // No caller token: 401 at the front, nothing reaches a backend.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"exchange-test","version":"1"}}});
    let (status, _, _) = rpc(&v.url, None, None, &init).await;
    assert_eq!(status, 401);

    let caller = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    let sid = open(&v.url, &caller).await;
    let first = seen_by(&v.url, &caller, &sid, "alpha").await.unwrap();
    assert_exchanged(&first, &caller);
    assert_eq!(seen_by(&v.url, &caller, &sid, "alpha").await.unwrap(), first, "the exchanged token is cached");
    // A backend without outgoing auth gets no Authorization at all.
    let beta = seen_by(&v.url, &caller, &sid, "beta").await.unwrap_err();
    assert!(beta.contains("no header authorization"), "{beta}");

    // The client refreshes its token mid-session: the next call carries a new exchange of it.
    let refreshed = kc.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap().access_token;
    assert_ne!(refreshed, caller);
    let second = seen_by(&v.url, &refreshed, &sid, "alpha").await.unwrap();
    assert_ne!(second, first, "the refreshed caller token was not exchanged again");
    assert_ne!(second.strip_prefix("Bearer ").unwrap(), refreshed);
    assert_eq!(decode_claims(second.strip_prefix("Bearer ").unwrap()).unwrap()["preferred_username"], "mcp");

    // A user Keycloak will not exchange for that audience: alpha is left out of that caller's
    // lists (never reached without a token of its own), the other backend still serves.
    let norole = kc.password_token(USER_CLIENT, "mcp-norole", "mcp-norole", "openid").await.unwrap().access_token;
    let sid2 = open(&v.url, &norole).await;
    let (_, listed, _) =
        rpc(&v.url, Some(&norole), Some(&sid2), &json!({"jsonrpc":"2.0","id":3,"method":"tools/list"})).await;
    let names: Vec<String> = listed.unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("beta_")) && !names.iter().any(|n| n.starts_with("alpha_")),
        "{names:?}"
    );
    let err = seen_by(&v.url, &norole, &sid2, "alpha").await.unwrap_err();
    assert!(err.contains("Unknown tool: alpha_request_header"), "{err}");
    // Another caller naming the first session is refused (it is the owner's alone), and the
    // owner's session still sends the owner's exchanged token.
    let call = json!({"jsonrpc":"2.0","id":9,"method":"tools/call",
        "params":{"name":"alpha_request_header","arguments":{"name":"authorization"}}});
    let (status, _, _) = rpc(&v.url, Some(&norole), Some(&sid), &call).await;
    assert_eq!(status, 404);
    assert_eq!(seen_by(&v.url, &refreshed, &sid, "alpha").await.unwrap(), second);
}
