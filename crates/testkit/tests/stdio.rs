//! The fixture server over stdio, spoken to as raw newline-delimited JSON-RPC: the handshake,
//! listing tools, `echo`, `pid` and `crash`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use common::StdioServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

fn text_of(response: &Value) -> &str {
    response["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content: {response}"))
}

#[tokio::test]
async fn handshake_list_and_echo_over_raw_lines() {
    let mut server = StdioServer::spawn();
    let init = server.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["serverInfo"]["name"], "apiary-testkit-server", "{init}");
    for capability in ["tools", "resources", "prompts", "logging", "completions"] {
        assert!(init["capabilities"].get(capability).is_some(), "missing {capability}: {init}");
    }

    let list = server.request(2, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    for expected in ["echo", "sleep", "pid", "crash", "test_simple_text", "test_reconnection"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    let text = "hello, λ \"quoted\"\nsecond line";
    let echo = server.request(3, "tools/call", json!({ "name": "echo", "arguments": { "text": text } })).await;
    assert_eq!(text_of(&echo), text, "{echo}");
    assert_ne!(echo["result"]["isError"], true, "{echo}");

    let echo =
        server.request(4, "tools/call", json!({ "name": "echo", "arguments": { "message": "via message" } })).await;
    assert_eq!(text_of(&echo), "via message", "{echo}");

    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn reconnection_tool_answers_directly_over_stdio() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    let answer = server.request(2, "tools/call", json!({ "name": "test_reconnection", "arguments": {} })).await;
    assert_eq!(text_of(&answer), "Reconnection test completed successfully", "{answer}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn pid_tool_reports_the_server_process() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    let expected = server.child.id().unwrap().to_string();
    let answer = server.request(2, "tools/call", json!({ "name": "pid", "arguments": {} })).await;
    assert_eq!(text_of(&answer), expected, "{answer}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn sleep_returns_and_stops_early_when_cancelled() {
    let mut server = StdioServer::spawn_with_stderr(Stdio::piped());
    let mut log = BufReader::new(server.child.stderr.take().unwrap()).lines();
    server.initialize().await;
    let short = server.request(2, "tools/call", json!({ "name": "sleep", "arguments": { "ms": 1 } })).await;
    assert_eq!(text_of(&short), "slept 1 ms", "{short}");

    // A ten-minute sleep, cancelled: the tool logs that it stopped, long before it would end.
    server.send(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "sleep", "arguments": { "ms": 600_000 } } })).await;
    server.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 3 } })).await;
    let stopped = async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("request cancelled: stopping early") {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(common::LINE_TIMEOUT, stopped).await.expect("sleep was not cancelled"),
        "the server exited without cancelling the sleep"
    );
    // The connection still works, and the cancelled request got no answer before this one.
    let echo = server.request(4, "tools/call", json!({ "name": "echo", "arguments": { "text": "still here" } })).await;
    assert_eq!(text_of(&echo), "still here", "{echo}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn subscribed_resource_updates_are_notified_until_unsubscribed() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    let uri = "test://watched-resource";
    let read = server.request(2, "resources/read", json!({ "uri": uri })).await;
    assert_eq!(read["result"]["contents"][0]["text"], "Watched resource, version 1", "{read}");

    let subscribed = server.request(3, "resources/subscribe", json!({ "uri": uri })).await;
    assert_eq!(subscribed["result"], json!({}), "{subscribed}");
    let touch = json!({ "name": "touch_resource", "arguments": { "uri": uri } });
    let (answer, before) = server.request_collecting(4, "tools/call", touch.clone()).await;
    assert_eq!(text_of(&answer), format!("touched {uri}; subscribers notified: true"));
    let updates: Vec<&Value> =
        before.iter().filter(|message| message["method"] == "notifications/resources/updated").collect();
    assert_eq!(updates.len(), 1, "{before:?}");
    assert_eq!(updates[0]["params"]["uri"], uri);
    let read = server.request(5, "resources/read", json!({ "uri": uri })).await;
    assert_eq!(read["result"]["contents"][0]["text"], "Watched resource, version 2", "{read}");

    let unsubscribed = server.request(6, "resources/unsubscribe", json!({ "uri": uri })).await;
    assert_eq!(unsubscribed["result"], json!({}), "{unsubscribed}");
    let (answer, before) = server.request_collecting(7, "tools/call", touch).await;
    assert_eq!(text_of(&answer), format!("touched {uri}; subscribers notified: false"));
    assert!(before.iter().all(|message| message["method"] != "notifications/resources/updated"), "{before:?}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn sampling_and_elicitation_ask_the_client_over_stdio() {
    let mut server = StdioServer::spawn();
    server.initialize_with(json!({ "sampling": {}, "elicitation": {} })).await;

    let call = json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } });
    server.send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call })).await;
    let ask = server.next_message().await.unwrap();
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "say hi", "{ask}");
    assert_eq!(ask["params"]["maxTokens"], 100, "{ask}");
    let reply = json!({ "role": "assistant", "content": { "type": "text", "text": "hi!" }, "model": "test-model", "stopReason": "endTurn" });
    server.send(json!({ "jsonrpc": "2.0", "id": ask["id"].clone(), "result": reply })).await;
    let answer = server.response(2).await;
    assert_eq!(text_of(&answer), "LLM response: hi!", "{answer}");

    let call = json!({ "name": "test_elicitation", "arguments": { "message": "who are you?" } });
    server.send(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call })).await;
    let ask = server.next_message().await.unwrap();
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "who are you?", "{ask}");
    assert_eq!(ask["params"]["requestedSchema"]["required"], json!(["username", "email"]), "{ask}");
    let reply = json!({ "action": "accept", "content": { "username": "u", "email": "u@example.com" } });
    server.send(json!({ "jsonrpc": "2.0", "id": ask["id"].clone(), "result": reply })).await;
    let answer = server.response(3).await;
    let text = text_of(&answer);
    assert!(text.starts_with("User response: action=accept, content="), "{text}");
    assert!(text.contains("u@example.com"), "{text}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn sampling_without_the_client_capability_is_a_tool_error() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    let call = json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } });
    let answer = server.request(2, "tools/call", call).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(server.close().await, Some(0));
}

#[tokio::test]
async fn crash_tool_exits_with_status_3() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    server.send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "crash", "arguments": {} } })).await;
    // The process dies without answering: stdout ends.
    while let Some(message) = server.next_message().await {
        assert_ne!(message.get("id"), Some(&json!(2)), "crash answered: {message}");
    }
    assert_eq!(server.close().await, Some(3));
}

#[tokio::test]
async fn request_header_needs_an_http_request() {
    let mut server = StdioServer::spawn();
    server.initialize().await;
    let answer =
        server.request(2, "tools/call", json!({ "name": "request_header", "arguments": { "name": "x-a" } })).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(text_of(&answer), "this call did not come over HTTP", "{answer}");
    assert_eq!(server.close().await, Some(0));
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn add_tool_changes_this_list_and_says_so() {
    let mut server = StdioServer::spawn();
    let init = server.initialize().await;
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    let before = tool_names(&server.request(2, "tools/list", json!({})).await);
    assert!(!before.contains(&"extra".to_owned()));

    let (added, notes) = server
        .request_collecting(3, "tools/call", json!({ "name": "add_tool", "arguments": { "name": "extra" } }))
        .await;
    assert_eq!(text_of(&added), "added extra", "{added}");
    assert!(
        notes.iter().any(|n| n["method"] == "notifications/tools/list_changed"),
        "no list_changed before the answer: {notes:?}"
    );

    let after = tool_names(&server.request(4, "tools/list", json!({})).await);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(after.last().map(String::as_str), Some("extra"), "added tools come after the catalogue");
    let called = server.request(5, "tools/call", json!({ "name": "extra", "arguments": {} })).await;
    assert_eq!(text_of(&called), "extra", "{called}");

    let again = server.request(6, "tools/call", json!({ "name": "add_tool", "arguments": { "name": "extra" } })).await;
    assert_eq!(again["error"]["code"], -32602, "a name is added once: {again}");
    assert_eq!(server.close().await, Some(0));
}
