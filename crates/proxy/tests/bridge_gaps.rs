//! Gaps of the era bridge closed after the fact (docs/modern.md): a legacy request that
//! belongs to no session (no `initialize` before it) to a child that speaks only 2026-07-28
//! is bridged like a session's request, stamped with no client capabilities, instead of
//! reaching the child unstamped and being refused by it; and the `Mcp-Param-*` headers of
//! a tool listed past the first page of `tools/list` are checked like the first page's.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use serde_json::{Value, json};

/// The JSON-RPC answer of a response, whether it came as JSON or as SSE.
async fn answer(res: reqwest::Response) -> Value {
    let sse = res.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    if !sse {
        return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
    let frames: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    frames.into_iter().rfind(|f| f.get("id").is_some()).unwrap_or_else(|| panic!("no answer in {text}"))
}

/// `tools/list` and `tools/call` with no session, with and without a legacy version header:
/// answered by the modern-only child, in the legacy shape (no `resultType`), the call's
/// arguments reaching the child byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_legacy_request_to_a_modern_only_child_is_bridged() {
    let proxy = common::fixture_proxy("gap-sessionless", &["--stdio", "--modern-only"]).await;
    let url = proxy.url();
    for headers in [&[][..], &[("mcp-protocol-version", "2025-11-25")][..]] {
        let list = json!({"jsonrpc":"2.0","id":"l","method":"tools/list"});
        let listed = answer(common::post_mcp(&url, None, None, headers, &list).await).await;
        assert_eq!(listed["id"], "l", "{listed}");
        let tools = listed["result"]["tools"].as_array().unwrap_or_else(|| panic!("{listed}"));
        assert!(tools.iter().any(|t| t["name"] == "echo"), "{listed}");
        assert!(listed["result"].get("resultType").is_none(), "the legacy shape: {listed}");

        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"n=1.50 big=12345678901234567890123"}}}"#;
        let called = answer(
            reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(call)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(called["id"], 7, "{called}");
        let text = called["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{called}"));
        assert!(text.contains("n=1.50 big=12345678901234567890123"), "{called}");
        assert!(called["result"].get("resultType").is_none(), "{called}");
    }

    // A 2025-03-26 batch of no session: each request answered in turn, the notification
    // taken and not answered.
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"first"}}},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"second"}}},
    ]);
    let res = common::post_mcp(&url, None, None, &[("mcp-protocol-version", "2025-03-26")], &batch).await;
    let answers: Value = res.json().await.unwrap();
    let answers = answers.as_array().unwrap_or_else(|| panic!("{answers}"));
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (answer, (id, text)) in answers.iter().zip([(1, "first"), (2, "second")]) {
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
    }
    proxy.shutdown().await;
}

/// One 2026-07-28 `tools/call` of `tool` with `arguments`, and extra headers.
async fn modern_call(url: &str, tool: &str, arguments: Value, extra: &[(&str, &str)]) -> (u16, Value) {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments,
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)];
    headers.extend_from_slice(extra);
    let res = common::post_mcp(url, None, None, &headers, &body).await;
    (res.status().as_u16(), answer(res).await)
}

/// A legacy child that lists `regional` (its `region` mirrored in `Mcp-Param-Region`) on
/// the second page of `tools/list`: the proxy learns it (every page, fetched itself) and
/// holds a modern call of it to the header, as it does a first-page tool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_past_the_first_page_has_its_param_headers_checked() {
    let script = common::sdk::script("paged_server.py").display().to_string();
    let proxy = common::command_proxy("gap-paged", apiary_testkit::env::tool("python3"), &[&script], |_| {}).await;
    let url = proxy.url();

    let (status, missing) = modern_call(&url, "regional", json!({"region": "eu"}), &[]).await;
    assert_eq!((status, missing["error"]["code"].as_i64()), (400, Some(-32020)), "no header: {missing}");
    let (status, wrong) = modern_call(&url, "regional", json!({"region": "eu"}), &[("mcp-param-region", "us")]).await;
    assert_eq!((status, wrong["error"]["code"].as_i64()), (400, Some(-32020)), "another value: {wrong}");
    let (status, ok) = modern_call(&url, "regional", json!({"region": "eu"}), &[("mcp-param-region", "eu")]).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["result"]["content"][0]["text"], r#"regional got {"region": "eu"}"#, "{ok}");
    let (status, plain) = modern_call(&url, "plain", json!({}), &[]).await;
    assert_eq!(status, 200, "a first-page tool with nothing mirrored: {plain}");
    proxy.shutdown().await;
}
