//! The MCP client against the reference `mcp-server-everything` (TypeScript SDK) over
//! Streamable HTTP, HTTP+SSE and transport auto-detection: lists, calls, reads, prompts,
//! JSON-RPC errors, interleaved notifications, time-outs and session teardown.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod client_common;

use std::time::Duration;

use apiary_transport::client::{ClientError, ConnectOptions, McpClient, Transport};
use client_common::{Everything, WAIT};
use serde_json::{Value, json};

fn options(transport: Transport) -> ConnectOptions {
    ConnectOptions { transport, timeout: WAIT, headers: vec![] }
}

fn names(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|i| i[key].as_str().expect("string member").to_owned()).collect()
}

/// The same checks over whichever transport `client` speaks.
async fn exercise(client: &McpClient) {
    assert_eq!(client.server_info()["name"], "mcp-servers/everything");
    assert!(client.capabilities()["tools"].is_object());

    let tools = client.list_tools().await.unwrap();
    let tool_names = names(&tools, "name");
    assert!(tool_names.iter().any(|n| n == "echo"), "no echo in {tool_names:?}");

    let echoed = client.call_tool("echo", json!({"message": "hello bees"})).await.unwrap();
    assert_eq!(echoed["content"][0]["type"], "text");
    assert_eq!(echoed["content"][0]["text"], "Echo: hello bees");
    assert_ne!(echoed["isError"], json!(true));

    let resources = client.list_resources().await.unwrap();
    let uris = names(&resources, "uri");
    let instructions = uris
        .iter()
        .find(|u| u.ends_with("/instructions.md"))
        .unwrap_or_else(|| panic!("no instructions.md resource in {uris:?}"));
    let read = client.read_resource(instructions).await.unwrap();
    assert_eq!(read["contents"][0]["uri"], json!(instructions));
    assert!(read["contents"][0]["text"].as_str().is_some_and(|t| !t.is_empty()));

    let templates = client.list_resource_templates().await.unwrap();
    let template_uris = names(&templates, "uriTemplate");
    assert!(template_uris.iter().any(|t| t.contains("{resourceId}")), "{template_uris:?}");

    let prompts = client.list_prompts().await.unwrap();
    let prompt_names = names(&prompts, "name");
    assert!(prompt_names.iter().any(|n| n == "simple-prompt"), "{prompt_names:?}");
    let prompt = client.get_prompt("simple-prompt", Value::Null).await.unwrap();
    assert_eq!(prompt["messages"][0]["content"]["text"], "This is a simple prompt without arguments.");
    let with_args = client.get_prompt("args-prompt", json!({"city": "Lyon"})).await.unwrap();
    assert!(with_args.to_string().contains("Lyon"), "prompt arguments were not sent: {with_args}");

    // An unknown method is refused with -32601 and the client says so in its error type.
    let err = client.request("no/such/method", json!({})).await.unwrap_err();
    assert!(matches!(err, ClientError::JsonRpc { code: -32601, .. }), "unexpected {err:?}");
    // A bad tool argument: the SDK answers with a JSON-RPC error or an isError result.
    match client.call_tool("echo", json!({"message": 42})).await {
        Ok(r) => assert_eq!(r["isError"], json!(true), "{r}"),
        Err(e) => assert!(e.jsonrpc_code().is_some(), "{e:?}"),
    }

    // Progress notifications arrive on the stream before the answer; they must be skipped.
    let long = client
        .request(
            "tools/call",
            json!({
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 0.3, "steps": 3},
                "_meta": {"progressToken": "p-1"},
            }),
        )
        .await
        .unwrap();
    assert!(long["content"][0]["text"].as_str().is_some_and(|t| t.contains("completed")), "{long}");
}

#[tokio::test]
async fn streamable_http_end_to_end() {
    let server = Everything::start("streamableHttp");
    let url = server.url("/mcp");
    let client = McpClient::connect(&url, options(Transport::StreamableHttp)).await.unwrap();
    assert_eq!(client.transport(), Transport::StreamableHttp);
    assert_eq!(client.protocol_version(), "2025-11-25");
    let session = client.session_id().expect("a session id").to_owned();
    exercise(&client).await;
    client.close().await.unwrap();

    // The DELETE ended the session: the server no longer knows the id.
    let after = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert!(after.status().is_client_error(), "session still alive after close: {}", after.status());
}

#[tokio::test]
async fn sse_end_to_end() {
    let server = Everything::start("sse");
    let client = McpClient::connect(&server.url("/sse"), options(Transport::Sse)).await.unwrap();
    assert_eq!(client.transport(), Transport::Sse);
    assert_eq!(client.protocol_version(), "2025-11-25");
    assert_eq!(client.session_id(), None);
    exercise(&client).await;

    // Several calls in flight at once on one SSE stream are matched by id.
    let calls = (0..8).map(|i| {
        let client = &client;
        async move { client.call_tool("echo", json!({"message": format!("m{i}")})).await }
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap()["content"][0]["text"], format!("Echo: m{i}"));
    }
    client.close().await.unwrap();
}

#[tokio::test]
async fn auto_detects_each_transport() {
    let http = Everything::start("streamableHttp");
    let sse = Everything::start("sse");

    // A path not ending in /sse: Streamable HTTP.
    let c = McpClient::connect(&http.url("/mcp"), ConnectOptions::default()).await.unwrap();
    assert_eq!(c.transport(), Transport::StreamableHttp);
    assert!(!c.list_tools().await.unwrap().is_empty());
    c.close().await.unwrap();

    // A path ending in /sse: straight to SSE.
    let c = McpClient::connect(&sse.url("/sse"), ConnectOptions::default()).await.unwrap();
    assert_eq!(c.transport(), Transport::Sse);
    c.close().await.unwrap();

    // `/sse/` does not end in /sse, so Auto POSTs first; the SSE-only server answers 404 and
    // the client falls back to GET + endpoint event.
    let c = McpClient::connect(&sse.url("/sse/"), ConnectOptions::default()).await.unwrap();
    assert_eq!(c.transport(), Transport::Sse);
    let tools = c.list_tools().await.unwrap();
    assert!(names(&tools, "name").iter().any(|n| n == "echo"));
    c.close().await.unwrap();

    // Forcing the wrong transport fails with the HTTP status instead of falling back.
    let err = McpClient::connect(&sse.url("/sse/"), options(Transport::StreamableHttp)).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err:?}");
}

#[tokio::test]
async fn waits_are_bounded_by_the_timeout() {
    for (mode, path, transport) in
        [("streamableHttp", "/mcp", Transport::StreamableHttp), ("sse", "/sse", Transport::Sse)]
    {
        let server = Everything::start(mode);
        let mut client = McpClient::connect(&server.url(path), options(transport)).await.unwrap();
        client.set_timeout(Duration::from_millis(300));
        let err =
            client.call_tool("trigger-long-running-operation", json!({"duration": 60, "steps": 1})).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        // The session is still usable after a timed-out call.
        client.set_timeout(WAIT);
        let echoed = client.call_tool("echo", json!({"message": "still here"})).await.unwrap();
        assert_eq!(echoed["content"][0]["text"], "Echo: still here");
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn connection_failures_are_typed() {
    // Nothing listens on this port.
    let port = client_common::free_port();
    let err = McpClient::connect(&format!("http://127.0.0.1:{port}/mcp"), options(Transport::StreamableHttp))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connection { .. }), "{err:?}");

    // The SSE server has no /mcp route: a clear HTTP status, not a hang.
    let sse = Everything::start("sse");
    let err = McpClient::connect(&sse.url("/nothing/sse"), options(Transport::Sse)).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err:?}");
}
