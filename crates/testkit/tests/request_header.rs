//! The fixture's `request_header` tool over Streamable HTTP: it answers with the value of the
//! named header of the request that carried the call, and a tool error when there is none.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use serde_json::{Value, json};

/// POSTs one JSON-RPC message and returns the session id and the JSON-RPC answer.
async fn post(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    extra: &[(&str, &str)],
    body: Value,
) -> (Option<String>, Value) {
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25");
    if let Some(s) = session {
        request = request.header("Mcp-Session-Id", s);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.json(&body).send().await.unwrap();
    let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    // Plain JSON, or the first SSE `data:` line holding a message (a priming event's is empty).
    let json = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    } else {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
            .unwrap_or(Value::Null)
    };
    (session, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_returns_the_named_header_of_the_call() {
    let (mut server, url) = common::spawn_http().await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (session, answer) = post(&client, &url, None, &[], init).await;
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    let session = session.as_deref();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(&client, &url, session, &[], initialized).await;

    let call = |id: u64, name: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "request_header", "arguments": {"name": name}}})
    };
    let (_, answer) = post(&client, &url, session, &[("X-Upstream-Key", "k-123")], call(2, "x-upstream-key")).await;
    assert_eq!(answer["result"]["content"][0]["text"], "k-123", "{answer}");
    assert_ne!(answer["result"]["isError"], true, "{answer}");

    let (_, answer) = post(&client, &url, session, &[], call(3, "x-upstream-key")).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "no header x-upstream-key", "{answer}");
    server.kill().await.unwrap();
}
