//! `Mcp-Param-*` for an annotated property reached through nested `properties` (SEP-2243):
//! the fixture's `test_custom_header_nested`, whose `target.zone` argument is mirrored in
//! `Mcp-Param-Zone`. A 2026-07-28 client's header is checked by the proxy against the nested
//! argument for a stdio child (which never sees the headers); the HTTP bridge computes the
//! header for a modern-only HTTP upstream that checks it (the fixture refuses a call without
//! it with -32020).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_testkit::server::{ServerOptions, serve_http};
use common::legacy_session::Session;
use serde_json::{Value, json};

const TOOL: &str = "test_custom_header_nested";

/// A 2026-07-28 call of the nested tool with `zone` and the `Mcp-Param-Zone` header given;
/// returns (status, body).
async fn call(url: &str, zone: Option<&str>, header: Option<&str>) -> (u16, Value) {
    let target = zone.map_or_else(|| json!({}), |z| json!({"zone": z}));
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
        "name":TOOL,"arguments":{"target":target},
        "_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{},
        },
    }});
    let mut req = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", TOOL);
    if let Some(h) = header {
        req = req.header("mcp-param-zone", h);
    }
    let res = req.body(body.to_string()).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The proxy follows the annotation's `properties` path into `arguments`: the matching
/// header (plain or base64) passes, a missing, unequal or value-less one is 400 with -32020.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_clients_nested_param_header_is_checked_by_the_proxy() {
    let proxy = common::fixture_proxy("nested-param-stdio", &["--stdio", "--modern-only"]).await;
    let url = proxy.url();
    // "Zürich" in the base64 form the spec gives a non-ASCII value.
    let cases = [
        (Some("eu-1"), Some("eu-1"), true),
        (Some("Zürich"), Some("=?base64?WsO8cmljaA==?="), true),
        (None, None, true),
        (Some("eu-1"), None, false),
        (Some("eu-1"), Some("eu-2"), false),
        (Some("Zürich"), Some("=?base64?WsO8cmljaA?="), false),
        (None, Some("eu-1"), false),
    ];
    for (zone, header, ok) in cases {
        let (status, v) = call(&url, zone, header).await;
        if ok {
            assert_eq!(status, 200, "{zone:?} {header:?}: {v}");
            let expected = format!("zone {}", zone.map_or("".to_owned(), |z| format!("\"{z}\"")));
            assert_eq!(v["result"]["content"][0]["text"], expected, "{zone:?} {header:?}: {v}");
        } else {
            assert_eq!(status, 400, "{zone:?} {header:?}: {v}");
            assert_eq!(v["error"]["code"], -32020, "{zone:?} {header:?}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("Mcp-Param-Zone"), "{v}");
        }
    }
    proxy.shutdown().await;
}

/// A legacy client's call through the HTTP bridge: the proxy sends `Mcp-Param-Zone` from the
/// nested argument, which the upstream checks (without it, or with a wrong one, the
/// upstream answers -32020 and the call fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_bridge_sends_the_nested_param_header() {
    let options = ServerOptions { modern_only: true, ..ServerOptions::default() };
    let upstream = serve_http("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    // Without the proxy, the upstream refuses a call lacking the header: the check is real.
    let (status, v) = call(upstream.url(), Some("eu-1"), None).await;
    assert_eq!((status, v["error"]["code"].clone()), (400, json!(-32020)), "{v}");

    let proxy =
        apiary_proxy::start(RunConfig::new("nested-param-http", Source::remote(upstream.url())), None).await.unwrap();
    let (s, _) = Session::open(&proxy.url(), "2025-11-25", json!({})).await;
    let v = s.request(2, "tools/list", json!({})).await;
    assert!(v["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == TOOL), "{v}");
    for (n, zone) in (3..).zip(["eu-1", "Zürich ", "=?base64?x?="]) {
        let v = s.request(n, "tools/call", json!({"name":TOOL,"arguments":{"target":{"zone":zone}}})).await;
        assert_eq!(v["result"]["content"][0]["text"], format!("zone \"{zone}\""), "{v}");
    }
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}
