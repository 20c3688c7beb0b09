//! `StartExtras::mcp_layer`, the hook a role (Apiary's gateway) puts on the MCP endpoints: it
//! runs after the edge checks and before the front's own layers, so it sees the request as the
//! client sent it — the `Authorization` header included even when the proxy authenticates
//! callers itself (the front then removes it) — and may answer it or pass it on.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use apiary_config::OidcConfig;
use apiary_proxy::{McpLayer, StartExtras};
use apiary_testkit::issuer::TestIssuer;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use serde_json::json;

const AUDIENCE: &str = "apiary-test";

/// (path, the Authorization the layer saw) of every request it was given.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_sees_the_callers_authorization_and_may_answer_before_the_front() {
    let iss = TestIssuer::start().await;
    let mut cfg = common::testkit_config("mcp-layer");
    cfg.policy.oidc = Some(OidcConfig {
        audience: Some(AUDIENCE.into()),
        insecure_allow_http: true,
        ..OidcConfig::new(iss.issuer())
    });
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let layer: McpLayer = Arc::new(move |req: Request, next: Next| {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        log.lock().unwrap().push((req.uri().path().to_owned(), auth));
        let refuse = req.headers().contains_key("x-refuse");
        Box::pin(async move {
            if refuse { (StatusCode::IM_A_TEAPOT, "refused by the layer").into_response() } else { next.run(req).await }
        })
    });
    let launcher =
        common::CommandLauncher { program: apiary_testkit::binaries::testkit_server(), args: vec!["--stdio".into()] };
    let extras = StartExtras { mcp_layer: Some(layer), ..StartExtras::default() };
    let proxy = apiary_proxy::start_with(cfg, Some(Arc::new(launcher)), extras).await.unwrap();
    let url = proxy.url();
    let token = iss.mint(&iss.claims("alice", AUDIENCE));
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"layer-test","version":"1"}}});

    // Passed on: the front authenticates it as always, and the layer saw the token.
    let res = common::post_mcp(&url, Some(&token), None, &[], &init).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(seen.lock().unwrap().last().unwrap(), &("/mcp".to_owned(), Some(format!("Bearer {token}"))));
    // Without a token the front still refuses it, after the layer.
    let res = common::post_mcp(&url, None, None, &[], &init).await;
    assert_eq!(res.status(), 401);
    assert_eq!(seen.lock().unwrap().last().unwrap().1, None);
    // The layer's own answer is final: the front never sees the request (no 401 here).
    let res = common::post_mcp(&url, None, None, &[("x-refuse", "1")], &init).await;
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    let before = seen.lock().unwrap().len();
    // The edge checks come first: a foreign Origin never reaches the layer.
    let res = common::post_mcp(&url, Some(&token), None, &[("origin", "https://evil.example")], &init).await;
    assert_eq!(res.status(), 403);
    // Nor do routes outside the MCP endpoints.
    let health = reqwest::get(url.replace("/mcp", "/health")).await.unwrap();
    assert!(health.status().is_success() || health.status() == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.lock().unwrap().len(), before);
    proxy.shutdown().await;
}
