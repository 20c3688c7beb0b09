//! The bridge from a 2026-07-28 client to a legacy child (issue 18, part 4), end to end:
//! the proxy in front of `apiary-testkit-server --stdio --legacy-only`, whose
//! `test_input_required_result_*` tools ask the legacy way (server→client requests). A
//! request that declares client capabilities gets a child of its own; what that child asks
//! reaches the client as an `InputRequiredResult`, and the retry's answers reach the child.
//! `subscriptions/listen` is served from the child's notifications.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_proxy::ProxyHandle;
use serde_json::{Value, json};

async fn bridge(name: &str, max_children: Option<u32>) -> ProxyHandle {
    let program = apiary_testkit::binaries::testkit_server();
    common::command_proxy(name, program, &["--stdio", "--legacy-only"], |cfg| {
        if let Some(n) = max_children {
            cfg.stdio.max_session_children = n;
        }
    })
    .await
}

/// One modern request declaring `caps`, with the headers 2026-07-28 requires.
fn post(
    url: &str,
    id: Value,
    method: &str,
    name: Option<&str>,
    mut params: Value,
    caps: Value,
) -> reqwest::RequestBuilder {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
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
    req.body(body.to_string())
}

async fn call(url: &str, id: i64, tool: &str, extra: Value, caps: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": {}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let res = post(url, json!(id), "tools/call", Some(tool), params, caps).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

const ELICITATION: &str = "test_input_required_result_elicitation";

/// The child's `elicitation/create` reaches the client inside an `InputRequiredResult`
/// (keyed as the server named it, no JSON-RPC id of the child's); the retry's answer reaches
/// the child, whose result completes the retry under the retry's own id. The state is good
/// once: replayed, altered, or presented for another tool, it is refused with -32602.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_childs_elicitation_round_trips_as_an_input_required_result() {
    let proxy = bridge("bridge-elicitation", None).await;
    let url = proxy.url();
    let caps = json!({"elicitation": {}});
    let first = call(&url, 1, ELICITATION, json!({}), caps.clone()).await;
    let result = &first["result"];
    assert_eq!(first["id"], 1, "{first}");
    assert_eq!(result["resultType"], "input_required", "{first}");
    let ask = &result["inputRequests"]["user_name"];
    assert_eq!(ask["method"], "elicitation/create", "{first}");
    assert_eq!(ask["params"]["requestedSchema"]["properties"]["name"]["type"], "string", "{first}");
    assert!(ask.get("id").is_none() && ask.get("jsonrpc").is_none(), "the child's id never leaks: {first}");
    let state = result["requestState"].as_str().unwrap().to_owned();

    let answer = json!({"user_name": {"action": "accept", "content": {"name": "Alice"}}});
    let retry = json!({"inputResponses": answer, "requestState": state});
    let done = call(&url, 2, ELICITATION, retry.clone(), caps.clone()).await;
    assert_eq!(done["id"], 2, "answered under the retry's id: {done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "Hello, Alice!", "{done}");

    let replayed = call(&url, 3, ELICITATION, retry, caps.clone()).await;
    assert_eq!(replayed["error"]["code"], -32602, "a state is good once: {replayed}");

    let first = call(&url, 4, ELICITATION, json!({}), caps.clone()).await;
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let tampered = json!({"inputResponses": answer, "requestState": format!("{state}-TAMPERED")});
    let refused = call(&url, 5, ELICITATION, tampered, caps.clone()).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let elsewhere = json!({"inputResponses": answer, "requestState": state});
    let refused = call(&url, 6, "test_input_required_result_sampling", elsewhere, caps).await;
    assert_eq!(refused["error"]["code"], -32602, "bound to its tool: {refused}");
    proxy.shutdown().await;
}

/// Two rounds: each `InputRequiredResult` carries a new state, and the answers of both
/// rounds reach the one child call, whose result uses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_question_of_the_same_call_is_a_second_round() {
    let proxy = bridge("bridge-multi-round", None).await;
    let url = proxy.url();
    let caps = json!({"elicitation": {}});
    let tool = "test_input_required_result_multi_round";
    let r1 = call(&url, 1, tool, json!({}), caps.clone()).await;
    let key = r1["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let s1 = r1["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({ key: {"action": "accept", "content": {"name": "Bob"}} });
    let r2 = call(&url, 2, tool, json!({"inputResponses": answer, "requestState": s1}), caps.clone()).await;
    assert_eq!(r2["result"]["resultType"], "input_required", "{r2}");
    let key = r2["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let s2 = r2["result"]["requestState"].as_str().unwrap().to_owned();
    assert_ne!(r1["result"]["requestState"], r2["result"]["requestState"]);
    let answer = json!({ key: {"action": "accept", "content": {"color": "green"}} });
    let r3 = call(&url, 3, tool, json!({"inputResponses": answer, "requestState": s2}), caps).await;
    assert_eq!(r3["result"]["content"][0]["text"], "Bob likes green", "{r3}");
    proxy.shutdown().await;
}

/// The capabilities a request declares are the ones its child was initialized with: a
/// request declaring sampling alone is asked for sampling alone, and a round with several
/// questions asks them all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_asks_only_what_the_request_declared() {
    let proxy = bridge("bridge-capabilities", None).await;
    let url = proxy.url();
    let only_sampling =
        call(&url, 1, "test_input_required_result_capabilities", json!({}), json!({"sampling": {}})).await;
    let asks = only_sampling["result"]["inputRequests"].as_object().unwrap();
    let methods: Vec<&str> = asks.values().map(|a| a["method"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["sampling/createMessage"], "{only_sampling}");

    let all = json!({"sampling": {}, "elicitation": {}, "roots": {}});
    let many = call(&url, 2, "test_input_required_result_multiple_inputs", json!({}), all).await;
    let mut methods: Vec<&str> =
        many["result"]["inputRequests"].as_object().unwrap().values().map(|a| a["method"].as_str().unwrap()).collect();
    methods.sort_unstable();
    assert_eq!(methods, vec!["elicitation/create", "roots/list", "sampling/createMessage"], "{many}");
    proxy.shutdown().await;
}

/// Past `--max-session-children` (here 1, held by a call waiting for its input), a request
/// that declared capabilities runs on the shared child, initialized with none: nothing is
/// asked on its behalf (the legacy fixture then says it has nothing it may ask) and no
/// `InputRequiredResult` comes back. The waiting call is unharmed and completes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_child_bound_declared_capabilities_go_unused() {
    let proxy = bridge("bridge-bound", Some(1)).await;
    let url = proxy.url();
    let caps = json!({"elicitation": {}});
    let waiting = call(&url, 1, ELICITATION, json!({}), caps.clone()).await;
    assert_eq!(waiting["result"]["resultType"], "input_required", "{waiting}");
    let state = waiting["result"]["requestState"].as_str().unwrap().to_owned();

    let over = call(&url, 2, ELICITATION, json!({}), caps.clone()).await;
    assert!(over.get("error").is_some(), "{over}");
    assert_ne!(over.pointer("/result/resultType"), Some(&json!("input_required")), "{over}");

    let answer = json!({"user_name": {"action": "accept", "content": {"name": "Carol"}}});
    let done = call(&url, 3, ELICITATION, json!({"inputResponses": answer, "requestState": state}), caps).await;
    assert_eq!(done["result"]["content"][0]["text"], "Hello, Carol!", "{done}");
    proxy.shutdown().await;
}

/// Reads SSE `data:` frames until one has `method`; returns every frame read so far.
async fn frames_until(res: &mut reqwest::Response, text: &mut String, method: &str) -> Vec<Value> {
    loop {
        let frames: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect();
        if frames.iter().any(|f| f["method"] == method) {
            return frames;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), res.chunk()).await.unwrap().unwrap();
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended before {method}; got {text}"));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// `subscriptions/listen` to a legacy child: acknowledged with what the child supports
/// (its tool list changes, resource subscriptions; it has no prompt list changes), then the
/// tool-list change and the resource update other requests caused, tagged with the
/// caller's listen id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_is_fed_from_a_legacy_childs_notifications() {
    let proxy = bridge("bridge-listen", None).await;
    let url = proxy.url();
    let filter = json!({"notifications": {
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourceSubscriptions": ["test://watched-resource"],
    }});
    let mut res = post(&url, json!("listen-1"), "subscriptions/listen", None, filter, json!({})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    let frames = frames_until(&mut res, &mut text, "notifications/subscriptions/acknowledged").await;
    let ack = &frames[0];
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "the ack comes first: {frames:?}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": ["test://watched-resource"]}),
        "{ack}"
    );
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1", "{ack}");

    let changed = call(&url, 2, "test_trigger_tool_change", json!({}), json!({})).await;
    assert_eq!(changed["result"]["resultType"], "complete", "{changed}");
    let frames = frames_until(&mut res, &mut text, "notifications/tools/list_changed").await;
    let touched = call(&url, 3, "touch_resource", json!({}), json!({})).await;
    assert_eq!(touched["result"]["resultType"], "complete", "{touched}");
    let frames = [frames, frames_until(&mut res, &mut text, "notifications/resources/updated").await].concat();
    for f in &frames {
        assert_eq!(f["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1", "{f}");
        assert_ne!(f["method"], "notifications/prompts/list_changed", "not accepted, never sent: {f}");
    }
    drop(res);
    proxy.shutdown().await;
}
