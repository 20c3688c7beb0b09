//! A 2026-07-28 client through the proxy over stdio: it discovers, lists and calls tools
//! against a child that speaks both eras and against a legacy-only one, and the official
//! conformance suite's 2026-07-28 requirement set run through the proxy.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_testkit::conformance::run_server_suite;
use serde_json::{Value, json};

/// One modern request with the headers 2026-07-28 requires; returns (status, body).
async fn modern(url: &str, id: i64, method: &str, name: Option<&str>, mut params: Value) -> (u16, Value) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
    });
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    let mut req = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(n) = name {
        req = req.header("mcp-name", n);
    }
    let res = req.body(body.to_string()).send().await.unwrap();
    let status = res.status().as_u16();
    assert!(res.headers().get("mcp-session-id").is_none(), "a modern answer carries no session");
    (status, res.json().await.unwrap())
}

/// Discover, list and call through the proxy; every result is a complete modern one. A
/// modern child answers `server/discover` itself (its own list of versions); for a legacy
/// one the proxy synthesises it (the modern version only).
async fn discover_list_call(url: &str, modern_child: bool) {
    let (status, v) = modern(url, 1, "server/discover", None, json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], 1);
    let versions = if modern_child {
        json!(["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"])
    } else {
        json!(["2026-07-28"])
    };
    assert_eq!(v["result"]["supportedVersions"], versions, "{v}");
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert!(v["result"]["ttlMs"].is_u64() && v["result"]["cacheScope"].is_string(), "{v}");

    let (status, v) = modern(url, 2, "tools/list", None, json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], 2);
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert!(v["result"]["ttlMs"].is_u64(), "{v}");

    let (status, v) =
        modern(url, 5, "tools/call", Some("echo"), json!({"name":"echo","arguments":{"text":"hi modern"}})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], 5);
    assert_eq!(v["result"]["content"][0]["text"], "hi modern", "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");

    // The child's own method-not-found is a 404 for a modern caller.
    let (status, v) = modern(url, 6, "unknown/method", None, json!({})).await;
    assert_eq!((status, v["error"]["code"].clone()), (404, json!(-32601)), "{v}");
}

/// A 2025-11-25 client opens a session and lists the tools.
async fn legacy_session_lists_tools(url: &str) {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"legacy-test","version":"1"}}});
    let res = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers().get("mcp-session-id").unwrap().to_str().unwrap().to_owned();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25", "{v}");
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"});
    let v: Value = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(list.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{v}");
    assert!(v["result"].get("resultType").is_none(), "a legacy answer is not stamped: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_client_lists_and_calls_through_a_dual_era_child() {
    let proxy = common::fixture_proxy("modern-dual", &["--stdio"]).await;
    discover_list_call(&proxy.url(), true).await;
    // The status names the child's newest revision.
    assert_eq!(proxy.status().borrow().revision.as_deref(), Some("2026-07-28"));
    // The same child still serves legacy clients: the proxy initialized it too.
    legacy_session_lists_tools(&proxy.url()).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_client_lists_and_calls_through_a_legacy_only_child() {
    let proxy = common::fixture_proxy("modern-legacy", &["--stdio", "--legacy-only"]).await;
    discover_list_call(&proxy.url(), false).await;
    assert_eq!(proxy.status().borrow().revision.as_deref(), Some("2025-11-25"));
    legacy_session_lists_tools(&proxy.url()).await;
    proxy.shutdown().await;
}

/// Reads the SSE answer `res` until a frame with `method` arrives; returns every frame so
/// far, parsed.
async fn frames_until(res: &mut reqwest::Response, text: &mut String, method: &str) -> Vec<Value> {
    let frames = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    loop {
        let seen = frames(text);
        if seen.iter().any(|f| f["method"] == method) {
            return seen;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), res.chunk()).await;
        let chunk = chunk.unwrap_or_else(|_| panic!("no {method} in time; got {text}")).unwrap();
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended before {method}; got {text}"));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// A `subscriptions/listen` through the proxy to a modern child: the stream opens with the
/// acknowledgement, then carries the tool-list change another request caused, each tagged
/// with the caller's own listen id (the child saw another; the proxy restores it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_gets_its_notifications_under_the_callers_id() {
    let proxy = common::fixture_proxy("modern-listen", &["--stdio"]).await;
    let url = proxy.url();
    let body = json!({"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{
        "notifications": {"toolsListChanged": true},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    }});
    let mut res = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    let frames = frames_until(&mut res, &mut text, "notifications/subscriptions/acknowledged").await;
    assert_eq!(frames[0]["method"], "notifications/subscriptions/acknowledged", "the ack comes first: {frames:?}");

    let (status, v) =
        modern(&url, 2, "tools/call", Some("test_trigger_tool_change"), json!({"name":"test_trigger_tool_change"}))
            .await;
    assert_eq!(status, 200, "{v}");
    let frames = frames_until(&mut res, &mut text, "notifications/tools/list_changed").await;
    for f in &frames {
        assert_eq!(f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1", "{f}");
    }
    drop(res);
    proxy.shutdown().await;
}

/// A call of a tool whose argument is mirrored in `Mcp-Param-Region` (SEP-2243), with that
/// header as given; returns (status, body).
async fn call_custom_header(url: &str, region: &str, header: Option<&str>) -> (u16, Value) {
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
        "name":"test_custom_header","arguments":{"region":region},
        "_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{},
        },
    }});
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "test_custom_header");
    if let Some(h) = header {
        req = req.header("mcp-param-region", h);
    }
    let res = req.body(body.to_string()).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The proxy checks `Mcp-Param-*` headers for the stdio child, which never sees them: with
/// no `tools/list` seen yet it asks the child for its annotations itself, then refuses a
/// missing, undecodable or unequal header with 400 and -32020.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn param_headers_are_checked_against_the_childs_annotations() {
    for (name, args) in
        [("modern-param-dual", &["--stdio"][..]), ("modern-param-legacy", &["--stdio", "--legacy-only"][..])]
    {
        let proxy = common::fixture_proxy(name, args).await;
        let url = proxy.url();
        for (header, ok) in [
            (None, false),
            (Some("=?base64?SGVsbG8=?="), true),
            (Some("Hello"), true),
            (Some("=?base64?SGVsbG8?="), false),
            (Some("Bye"), false),
        ] {
            let (status, v) = call_custom_header(&url, "Hello", header).await;
            if ok {
                assert_eq!(status, 200, "{name} {header:?}: {v}");
                assert!(v.get("result").is_some(), "{name} {header:?}: {v}");
            } else {
                assert_eq!(status, 400, "{name} {header:?}: {v}");
                assert_eq!(v["error"]["code"], -32020, "{name} {header:?}: {v}");
            }
        }
        proxy.shutdown().await;
    }
}

/// A modern call that asks for progress, from a client that accepts SSE: the JSON-RPC
/// messages of the SSE answer, in order.
async fn call_with_progress(url: &str, id: i64) -> Vec<Value> {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
    "name":"test_tool_with_progress","arguments":{},
    "_meta":{
        "progressToken":"tok-7",
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }}});
    let res = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(60))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "test_tool_with_progress")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = res.text().await.unwrap();
    text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect()
}

async fn progress_then_result(url: &str) {
    let msgs = call_with_progress(url, 9).await;
    let (last, progress) = msgs.split_last().unwrap_or_else(|| panic!("no events"));
    assert_eq!(last["id"], 9, "{msgs:?}");
    assert_eq!(last["result"]["resultType"], "complete", "{last}");
    assert_eq!(progress.len(), 3, "{msgs:?}");
    for (p, want) in progress.iter().zip([0.0, 50.0, 100.0]) {
        assert_eq!(p["method"], "notifications/progress", "{p}");
        assert_eq!(p["params"]["progressToken"], "tok-7", "the caller's own token comes back: {p}");
        assert_eq!(p["params"]["progress"].as_f64(), Some(want), "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_call_with_a_progress_token_streams_its_progress() {
    let proxy = common::fixture_proxy("modern-progress", &["--stdio"]).await;
    progress_then_result(&proxy.url()).await;
    proxy.shutdown().await;
    let proxy = common::fixture_proxy("modern-progress-legacy", &["--stdio", "--legacy-only"]).await;
    progress_then_result(&proxy.url()).await;
    proxy.shutdown().await;
}

/// The 2026-07-28 scenarios: through the proxy over stdio, every one passes (a failure
/// prints the failing names).
const MODERN_FLOOR: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2026_07_28_through_the_proxy_over_stdio() {
    let proxy = common::fixture_proxy("modern-conformance", &["--stdio"]).await;
    let summary = run_server_suite(&proxy.url(), "2026-07-28").await;
    proxy.shutdown().await;
    summary.assert_all_pass(MODERN_FLOOR);
}

/// Scenarios of the 2026-07-28 set that pass through the bridge (the proxy in front of a
/// legacy-only child): a floor; what cannot pass by the revisions' definitions is listed
/// in docs/modern.md.
const BRIDGE_FLOOR: usize = 42;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2026_07_28_through_the_bridge_to_a_legacy_child() {
    let proxy = common::fixture_proxy("modern-bridge-conformance", &["--stdio", "--legacy-only"]).await;
    let summary = run_server_suite(&proxy.url(), "2026-07-28").await;
    proxy.shutdown().await;
    summary.assert_floor(BRIDGE_FLOOR);
}
