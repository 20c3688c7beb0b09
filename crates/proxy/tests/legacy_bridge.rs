//! A legacy client (initialize, a session) through the proxy to a child that speaks only
//! 2026-07-28 (`apiary-testkit-server --stdio --modern-only`): the proxy answers
//! `initialize` from the child's `server/discover`, keeps the session itself, stamps each
//! request's `_meta`, and turns the child's `InputRequiredResult`s into server→client
//! requests on the session's stream; and the 2025-11-25 conformance suite through it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_testkit::conformance::run_server_suite;
use common::legacy_session::{Session, client, next_frame, sse_frames};
use serde_json::json;

/// Before the bridge, the proxy restarted a modern-only child without its probe, the child
/// refused `initialize` again, and nothing was served to either era.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_client_lists_and_calls_through_a_modern_only_child() {
    let proxy = common::fixture_proxy("bridge5-basic", &["--stdio", "--modern-only"]).await;
    let url = proxy.url();
    let (s, init) = Session::open(&url, "2025-06-18", json!({})).await;
    // The client's version (the proxy serves it), the child's own identity and capabilities.
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "apiary-testkit-server", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["result"]["instructions"].is_string(), "{init}");
    assert!(init["result"].get("supportedVersions").is_none(), "{init}");

    let v = s.request(2, "tools/list", json!({})).await;
    assert_eq!(v["id"], 2, "{v}");
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{v}");

    // Arguments reach the child as the client wrote them: the echo says so.
    let v = s.request(3, "tools/call", json!({"name":"echo","arguments":{"text":"through the bridge"}})).await;
    assert_eq!(v["id"], 3, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "through the bridge", "{v}");

    // ping is the proxy's to answer: 2026-07-28 removed it.
    let v = s.request(4, "ping", json!({})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":4,"result":{}}));
    proxy.shutdown().await;
}

/// The child asks for sampling with an `InputRequiredResult`; the legacy client gets a
/// `sampling/createMessage` request on the call's stream, answers it, and gets the final
/// result of the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_request_becomes_a_server_request_on_the_session() {
    let proxy = common::fixture_proxy("bridge5-sampling", &["--stdio", "--modern-only"]).await;
    let (s, _) = Session::open(&proxy.url(), "2025-11-25", json!({"sampling":{}})).await;
    let call = json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{
        "name":"test_input_required_result_sampling","arguments":{}}});
    let mut res = s.post(&call).await;
    assert_eq!(res.status(), 200);
    let (mut text, mut seen) = (String::new(), 0);
    let ask = next_frame(&mut res, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    assert!(ask["id"].is_string() || ask["id"].is_number(), "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"Paris"},"model":"test-model","stopReason":"endTurn"}});
    let posted = s.post(&answer).await;
    assert_eq!(posted.status(), 202);
    let done = next_frame(&mut res, &mut text, &mut seen, |f| f.get("id") == Some(&json!("call-1"))).await;
    let out = done["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{done}"));
    assert!(out.contains("Paris"), "{done}");
    // A response nobody is waiting for is refused.
    let res = s.post(&answer).await;
    assert_eq!(res.status(), 400);
    proxy.shutdown().await;
}

/// A subscription of a bridged session rides a `subscriptions/listen` at the child: the
/// update of the resource reaches the session's GET stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_resource_update_reaches_the_session() {
    let proxy = common::fixture_proxy("bridge5-subscribe", &["--stdio", "--modern-only"]).await;
    let (s, init) = Session::open(&proxy.url(), "2025-11-25", json!({})).await;
    assert_eq!(init["result"]["capabilities"]["resources"]["subscribe"], true, "{init}");
    let v = s.request(2, "resources/subscribe", json!({"uri":"test://watched-resource"})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    let mut get = client()
        .get(&s.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", &s.revision)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let v = s.request(3, "tools/call", json!({"name":"touch_resource","arguments":{}})).await;
    assert!(v["result"]["content"].is_array(), "{v}");
    let (mut text, mut seen) = (String::new(), 0);
    let update = next_frame(&mut get, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(update["method"], "notifications/resources/updated", "{update}");
    assert_eq!(update["params"]["uri"], "test://watched-resource", "{update}");
    let v = s.request(4, "resources/unsubscribe", json!({"uri":"test://watched-resource"})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":4,"result":{}}));
    drop(get);
    proxy.shutdown().await;
}

/// `notifications/cancelled` from the client stops its call: the call's stream ends with no
/// answer (the spec's cancellation) long before the tool would have finished, and the
/// session goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_ends_without_an_answer() {
    let proxy = common::fixture_proxy("bridge5-cancel", &["--stdio", "--modern-only"]).await;
    let (s, _) = Session::open(&proxy.url(), "2025-11-25", json!({})).await;
    let call = json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{
        "name":"sleep","arguments":{"ms":120000}}});
    let res = s.post(&call).await;
    assert_eq!(res.status(), 200);
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow","reason":"test"}});
    assert_eq!(s.post(&cancel).await.status(), 202);
    let text = tokio::time::timeout(Duration::from_secs(30), res.text()).await.expect("the stream ends").unwrap();
    assert!(sse_frames(&text).iter().all(|f| f.get("id").is_none()), "no answer to a cancelled call: {text}");
    let v = s.request(2, "tools/call", json!({"name":"echo","arguments":{"text":"after"}})).await;
    assert_eq!(v["result"]["content"][0]["text"], "after", "{v}");
    proxy.shutdown().await;
}

/// The 2025-11-25 suite, a legacy client, through the bridge to the modern-only child:
/// every scenario passes (docs/modern.md). A floor, like the other suite runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2025_11_25_through_the_bridge_to_a_modern_only_child() {
    let proxy = common::fixture_proxy("bridge5-conformance", &["--stdio", "--modern-only"]).await;
    let summary = run_server_suite(&proxy.url(), "2025-11-25").await;
    proxy.shutdown().await;
    summary.assert_floor(FLOOR);
}

/// Scenarios of the 2025-11-25 suite that pass through the bridge: all 33.
const FLOOR: usize = apiary_testkit::conformance::EXPECTED_2025_11_25;
