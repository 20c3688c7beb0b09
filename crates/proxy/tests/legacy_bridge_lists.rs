//! The legacy-client → 2026-07-28-server bridge, what issue 18 part 5 left: a bridged
//! session hears the server's list changes, and a 2025-03-26 batch whose call asks for
//! input is served. Against the testkit in its 2026-07-28 mode (`--modern-only`), as a
//! stdio child and as an HTTP upstream: `initialize` advertises `tools.listChanged` as the
//! server's `server/discover` does; a session with a GET stream (or the 2024-11-05 session's
//! one stream) gets `notifications/tools/list_changed` when `test_trigger_tool_change`
//! runs, a session without one gets nothing; a batch holding a sampling call is answered on
//! one SSE stream carrying the `sampling/createMessage` request, and completes with the
//! client's answer.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_proxy::ProxyHandle;
use apiary_testkit::server::{HttpServer, ServerOptions, serve_http};
use apiary_transport::client::{RawSession, SessionOptions, Transport};
use common::legacy_session::{Session, client, next_frame, sse_frames};
use serde_json::{Value, json};

const LIST_CHANGED: &str = "notifications/tools/list_changed";

/// The fixture over HTTP, modern-only, and the proxy in front of it.
async fn http_bridged(name: &str) -> (HttpServer, ProxyHandle) {
    let options = ServerOptions { modern_only: true, ..ServerOptions::default() };
    let upstream = serve_http("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    let proxy = apiary_proxy::start(RunConfig::new(name, Source::remote(upstream.url())), None).await.unwrap();
    (upstream, proxy)
}

/// Triggers before a list change is given up on. The server acknowledges a listen before
/// its handler watches for changes (rmcp sends the acknowledgement first), so a change made
/// right after the acknowledgement can be missed by the server itself: the trigger is
/// repeated until one is heard.
const TRIGGERS: usize = 10;
/// How long one trigger's notification is waited for before the next trigger.
const HEAR_WITHIN: Duration = Duration::from_secs(3);

/// `session` calls `test_trigger_tool_change` (`n` numbers the call's id): the frames of
/// its call's stream, which must hold its answer and nothing unsolicited.
async fn trigger(session: &Session, n: usize) {
    let id = format!("t-{n}");
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"test_trigger_tool_change","arguments":{}}});
    let res = session.post(&call).await;
    assert_eq!(res.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), res.text()).await.expect("the call ends").unwrap();
    let frames = sse_frames(&text);
    assert!(frames.iter().any(|f| f["id"] == id.as_str() && f["result"]["content"].is_array()), "{text}");
    assert!(frames.iter().all(|f| f.get("method").is_none()), "nothing unsolicited on a call's stream: {text}");
}

/// `by` triggers list changes until `get` (a session's GET stream) hears one: the
/// notification heard.
async fn trigger_until_heard(by: &Session, get: &mut reqwest::Response, text: &mut String, seen: &mut usize) -> Value {
    for n in 0..TRIGGERS {
        trigger(by, n).await;
        let heard = next_frame(get, text, seen, |f| f.get("method").is_some());
        if let Ok(heard) = tokio::time::timeout(HEAR_WITHIN, heard).await {
            return heard;
        }
    }
    panic!("no list change heard after {TRIGGERS} triggers; the stream got {text}");
}

/// Two sessions on one bridged server: `with_get` opens its GET stream, `without` never
/// does. `without` triggers a tool-list change: `with_get`'s stream gets it as a legacy
/// notification (no 2026-07-28 subscription id), `without`'s calls carry none.
async fn list_changes_reach_only_the_session_with_a_stream(url: &str) {
    let (with_get, init) = Session::open(url, "2025-11-25", json!({})).await;
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true, "as discover advertises: {init}");
    assert!(init["result"]["capabilities"]["prompts"].get("listChanged").is_none(), "not advertised: {init}");
    let (without, _) = Session::open(url, "2025-11-25", json!({})).await;
    let mut get = with_get.get().await;
    assert_eq!(get.status(), 200);

    let (mut text, mut seen) = (String::new(), 0);
    let heard = trigger_until_heard(&without, &mut get, &mut text, &mut seen).await;
    assert_eq!(heard, json!({"jsonrpc":"2.0","method":LIST_CHANGED,"params":{}}), "a legacy notification");

    // The session with the stream triggers too: its stream hears it, not its call.
    let heard = trigger_until_heard(&with_get, &mut get, &mut text, &mut seen).await;
    assert_eq!(heard["method"], LIST_CHANGED, "{heard}");
    // Still a session like any other.
    let v = with_get.request(3, "tools/call", json!({"name":"echo","arguments":{"text":"after"}})).await;
    assert_eq!(v["result"]["content"][0]["text"], "after", "{v}");
    drop(get);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_reaches_the_get_stream_of_a_session_on_a_modern_stdio_child() {
    let proxy = common::fixture_proxy("bridge-lists-stdio", &["--stdio", "--modern-only"]).await;
    list_changes_reach_only_the_session_with_a_stream(&proxy.url()).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_reaches_the_get_stream_of_a_session_on_a_modern_http_server() {
    let (upstream, proxy) = http_bridged("bridge-lists-http").await;
    list_changes_reach_only_the_session_with_a_stream(&proxy.url()).await;
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// A session's first GET and its first `resources/subscribe` at once (as an SDK client
/// opens its GET stream in the background): each re-opens the session's one listen, and
/// the subscribe is answered once the listen that replaced its own is acknowledged (before,
/// it got -32603 when the GET's listen replaced its listen before the acknowledgement).
async fn a_subscribe_racing_the_first_get_is_acknowledged(url: &str) {
    for _ in 0..8 {
        let (s, _) = Session::open(url, "2025-11-25", json!({})).await;
        let (get, v) =
            tokio::join!(s.get(), s.request(2, "resources/subscribe", json!({"uri":"test://watched-resource"})));
        assert_eq!(get.status(), 200);
        assert_eq!(v, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_racing_the_first_get_is_acknowledged_on_both_bridges() {
    let proxy = common::fixture_proxy("bridge-lists-race", &["--stdio", "--modern-only"]).await;
    a_subscribe_racing_the_first_get_is_acknowledged(&proxy.url()).await;
    proxy.shutdown().await;
    let (upstream, proxy) = http_bridged("bridge-lists-race-http").await;
    a_subscribe_racing_the_first_get_is_acknowledged(&proxy.url()).await;
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// Apiary's own client (`RawSession`, Streamable HTTP, its GET stream opened in the
/// background) hears the list change another session triggers.
async fn the_rust_client_hears_a_list_change(url: &str) {
    let options = SessionOptions { transport: Transport::StreamableHttp, ..SessionOptions::default() };
    let (_s, mut incoming) = RawSession::open(url, options).await.unwrap();
    let (other, _) = Session::open(url, "2025-11-25", json!({})).await;
    for n in 0..TRIGGERS {
        trigger(&other, n).await;
        if let Ok(Some(frame)) = tokio::time::timeout(HEAR_WITHIN, incoming.recv()).await {
            let heard: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(heard, json!({"jsonrpc":"2.0","method":LIST_CHANGED,"params":{}}));
            return;
        }
    }
    panic!("no list change heard after {TRIGGERS} triggers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_hears_a_list_change_through_both_bridges() {
    let proxy = common::fixture_proxy("bridge-lists-rust", &["--stdio", "--modern-only"]).await;
    the_rust_client_hears_a_list_change(&proxy.url()).await;
    proxy.shutdown().await;
    let (upstream, proxy) = http_bridged("bridge-lists-rust-http").await;
    the_rust_client_hears_a_list_change(&proxy.url()).await;
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// Apiary's own client over the 2024-11-05 transport (`/sse`): the session's one stream is
/// open from the start, so the list change reaches it with no GET of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_reaches_a_2024_11_05_session_on_a_modern_stdio_child() {
    let proxy = common::fixture_proxy("bridge-lists-sse", &["--stdio", "--modern-only"]).await;
    let url = format!("http://{}/sse", proxy.local_addr());
    let options = SessionOptions {
        transport: Transport::Sse,
        initialize_params:
            r#"{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}"#.into(),
        ..SessionOptions::default()
    };
    let (s, mut incoming) = RawSession::open(&url, options).await.unwrap();
    let init: Value = serde_json::from_slice(s.initialize_result()).unwrap();
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    let mut heard = None;
    for n in 0..TRIGGERS {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"test_trigger_tool_change","arguments":{{}}}}}}"#
        );
        let answer: Value = serde_json::from_slice(&s.request(bytes::Bytes::from(call)).await.unwrap()).unwrap();
        assert!(answer["result"]["content"].is_array(), "{answer}");
        if let Ok(Some(frame)) = tokio::time::timeout(HEAR_WITHIN, incoming.recv()).await {
            heard = Some(frame);
            break;
        }
    }
    let heard: Value = serde_json::from_slice(&heard.expect("a list change heard")).unwrap();
    assert_eq!(heard, json!({"jsonrpc":"2.0","method":LIST_CHANGED,"params":{}}));
    s.close().await.unwrap();
    proxy.shutdown().await;
}

/// A 2025-03-26 batch: a call that asks for sampling, a plain call and a `ping`. The batch is
/// answered on one SSE stream: the `sampling/createMessage` request comes on it, the client
/// answers, and the stream then carries one response per request (the 2025-03-26 rule).
async fn a_batch_member_is_asked_and_answered(url: &str) {
    let (s, _) = Session::open(url, "2025-03-26", json!({"sampling":{}})).await;
    let batch = json!([
        {"jsonrpc":"2.0","id":"b-1","method":"tools/call","params":{"name":"test_input_required_result_sampling","arguments":{}}},
        {"jsonrpc":"2.0","id":"b-2","method":"tools/call","params":{"name":"echo","arguments":{"text":"beside"}}},
        {"jsonrpc":"2.0","id":"b-3","method":"ping"},
    ]);
    let mut res = s.post(&batch).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (mut text, mut seen) = (String::new(), 0);
    let ask = next_frame(&mut res, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"Paris"},"model":"test-model","stopReason":"endTurn"}});
    assert_eq!(s.post(&answer).await.status(), 202);
    let rest = tokio::time::timeout(Duration::from_secs(30), res.text()).await.expect("the batch ends").unwrap();
    text.push_str(&rest);
    let frames = sse_frames(&text);
    let answer = |id: &str| {
        let of: Vec<&Value> = frames.iter().filter(|f| f["id"] == id && f.get("method").is_none()).collect();
        assert_eq!(of.len(), 1, "one response for {id}: {text}");
        of[0].clone()
    };
    let sampled = answer("b-1");
    assert!(sampled["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{text}")).contains("Paris"));
    assert_eq!(answer("b-2")["result"]["content"][0]["text"], "beside", "{text}");
    assert_eq!(answer("b-3"), json!({"jsonrpc":"2.0","id":"b-3","result":{}}));

    // A client that takes only JSON cannot be asked: that member gets the precise error,
    // the others their answers.
    let res = client()
        .post(&s.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", &s.revision)
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let members = v.as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(members.len(), 3, "{v}");
    assert_eq!(members[0]["error"]["code"], -32603, "{v}");
    assert!(members[0]["error"]["message"].as_str().unwrap().contains("text/event-stream"), "{v}");
    assert_eq!(members[1]["result"]["content"][0]["text"], "beside", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_member_asking_for_input_is_served_by_a_modern_stdio_child() {
    let proxy = common::fixture_proxy("bridge-batch-stdio", &["--stdio", "--modern-only"]).await;
    a_batch_member_is_asked_and_answered(&proxy.url()).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_member_asking_for_input_is_served_by_a_modern_http_server() {
    let (upstream, proxy) = http_bridged("bridge-batch-http").await;
    a_batch_member_is_asked_and_answered(&proxy.url()).await;
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}
