//! A legacy client (initialize, a session) through the proxy to an HTTP server that speaks
//! only 2026-07-28 (the fixture served over Streamable HTTP in its `--modern-only` mode):
//! the proxy probes the upstream with `server/discover`, answers `initialize` from it, keeps
//! the session itself, POSTs each request as a 2026-07-28 one (stamped `_meta`, the era's
//! headers) and turns `InputRequiredResult`s into server→client requests on the call's
//! stream, and resource subscriptions into a `subscriptions/listen` whose updates reach the
//! session's GET stream; a legacy upstream still gets the caller's bytes; and the
//! 2025-11-25 conformance suite through this bridge.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_proxy::ProxyHandle;
use apiary_testkit::conformance::run_server_suite;
use apiary_testkit::server::{HttpServer, RAW_ECHO_SESSION, ServerOptions, raw_echo_router, serve_http};
use common::legacy_session::{Session, client, next_frame, sse_frames};
use serde_json::json;

/// The fixture over HTTP, modern-only, and the proxy in front of it.
async fn bridged_proxy(name: &str) -> (HttpServer, ProxyHandle) {
    let options = ServerOptions { modern_only: true, ..ServerOptions::default() };
    let upstream = serve_http("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    let proxy = apiary_proxy::start(RunConfig::new(name, Source::remote(upstream.url())), None).await.unwrap();
    (upstream, proxy)
}

/// Without the bridge the upstream refuses a legacy client's `initialize` (-32022): no
/// legacy client could use it through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_client_lists_and_calls_through_a_modern_only_http_server() {
    let (upstream, proxy) = bridged_proxy("httpbr-basic").await;
    let url = proxy.url();
    let (s, init) = Session::open(&url, "2025-06-18", json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "apiary-testkit-server", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["result"].get("supportedVersions").is_none(), "{init}");
    // The upstream's discover offers resource subscriptions, which the bridge carries.
    assert_eq!(init["result"]["capabilities"]["resources"]["subscribe"], true, "{init}");

    let v = s.request(2, "tools/list", json!({})).await;
    assert_eq!(v["id"], 2, "{v}");
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{v}");
    assert!(v["result"].get("resultType").is_none(), "a legacy result: {v}");

    let v = s.request(3, "tools/call", json!({"name":"echo","arguments":{"text":"through the HTTP bridge"}})).await;
    assert_eq!(v["id"], 3, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "through the HTTP bridge", "{v}");

    // The upstream refuses a call whose Mcp-Param-Region header does not mirror the
    // argument (-32020): the proxy sends it from the tool's `x-mcp-header` annotation.
    for region in ["eu-west-1", "Zürich "] {
        let v = s.request(4, "tools/call", json!({"name":"test_custom_header","arguments":{"region":region}})).await;
        assert_eq!(v["result"]["content"][0]["text"], format!("region \"{region}\""), "{v}");
    }

    // ping is the proxy's to answer: 2026-07-28 removed it.
    let v = s.request(5, "ping", json!({})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":5,"result":{}}));

    // A bridged session's GET stream needs an Accept of SSE; DELETE ends the session, and
    // it is then unknown.
    let get = client().get(&url).header("accept", "application/json").header("mcp-session-id", &s.id).send().await;
    assert_eq!(get.unwrap().status(), 406);
    let deleted = client().delete(&url).header("mcp-session-id", &s.id).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let res = s.post(&json!({"jsonrpc":"2.0","id":6,"method":"tools/list"})).await;
    assert!(res.status().is_client_error(), "{}", res.status());
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// The upstream asks for sampling with an `InputRequiredResult`; the legacy client gets a
/// `sampling/createMessage` request on the call's stream, answers it, and gets the final
/// result of the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_request_becomes_a_server_request_on_the_http_session() {
    let (upstream, proxy) = bridged_proxy("httpbr-sampling").await;
    let (s, _) = Session::open(&proxy.url(), "2025-11-25", json!({"sampling":{}})).await;
    let call = json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{
        "name":"test_input_required_result_sampling","arguments":{}}});
    let mut res = s.post(&call).await;
    assert_eq!(res.status(), 200);
    let (mut text, mut seen) = (String::new(), 0);
    let ask = next_frame(&mut res, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{
        "role":"assistant","content":{"type":"text","text":"Paris"},"model":"test-model","stopReason":"endTurn"}});
    assert_eq!(s.post(&answer).await.status(), 202);
    let done = next_frame(&mut res, &mut text, &mut seen, |f| f.get("id") == Some(&json!("call-1"))).await;
    let out = done["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{done}"));
    assert!(out.contains("Paris"), "{done}");
    // A response nobody is waiting for is refused.
    assert_eq!(s.post(&answer).await.status(), 400);

    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// `resources/subscribe` opens a `subscriptions/listen` at the upstream for the session:
/// the update of the watched resource reaches the session's GET stream; after
/// `resources/unsubscribe` the next update does not (and DELETE ends the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_resource_update_reaches_the_http_session() {
    let (upstream, proxy) = bridged_proxy("httpbr-subscribe").await;
    let (s, _) = Session::open(&proxy.url(), "2025-11-25", json!({})).await;
    let v = s.request(2, "resources/subscribe", json!({"uri":"test://watched-resource"})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    let mut get = s.get().await;
    assert_eq!(get.status(), 200);
    assert!(get.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let v = s.request(3, "tools/call", json!({"name":"touch_resource","arguments":{}})).await;
    assert!(v["result"]["content"].is_array(), "{v}");
    let (mut text, mut seen) = (String::new(), 0);
    let update = next_frame(&mut get, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(update["method"], "notifications/resources/updated", "{update}");
    assert_eq!(update["params"]["uri"], "test://watched-resource", "{update}");

    // Subscribed to two, then unsubscribed from the watched one: the listen is re-opened
    // for the template resource alone, so touching the watched one sends nothing, while
    // touching the other still does (and is the next frame on the stream).
    let other = "test://template/7/data";
    let v = s.request(4, "resources/subscribe", json!({"uri":other})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":4,"result":{}}));
    let v = s.request(5, "resources/unsubscribe", json!({"uri":"test://watched-resource"})).await;
    assert_eq!(v, json!({"jsonrpc":"2.0","id":5,"result":{}}));
    let v = s.request(6, "tools/call", json!({"name":"touch_resource","arguments":{}})).await;
    assert!(v["result"]["content"].is_array(), "{v}");
    let v = s.request(7, "tools/call", json!({"name":"touch_resource","arguments":{"uri":other}})).await;
    assert!(v["result"]["content"].is_array(), "{v}");
    let update = next_frame(&mut get, &mut text, &mut seen, |f| f.get("method").is_some()).await;
    assert_eq!(update["params"]["uri"], other, "only the URI still subscribed: {update}");

    // The session's end ends its GET stream.
    let deleted = client().delete(&s.url).header("mcp-session-id", &s.id).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let rest = tokio::time::timeout(Duration::from_secs(30), get.text()).await.expect("the stream ends").unwrap();
    assert!(sse_frames(&rest).is_empty(), "nothing after the session ended: {rest}");
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
}

/// `notifications/cancelled` closes the upstream request: the call's stream ends with no
/// answer long before the tool would have finished, and the session goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_ends_without_an_answer_over_http() {
    let (upstream, proxy) = bridged_proxy("httpbr-cancel").await;
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
    upstream.shutdown().await.unwrap();
}

/// A legacy upstream (it refuses `server/discover`) is not bridged: its own session comes
/// back, and a call reaches it, and its answer the caller, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_http_upstream_still_passes_through_byte_for_byte() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, raw_echo_router()).await.unwrap() });
    let proxy = apiary_proxy::start(RunConfig::new("httpbr-legacy", Source::remote(&upstream)), None).await.unwrap();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;
    let res = client()
        .post(proxy.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init)
        .send()
        .await
        .unwrap();
    let session = res.headers().get("mcp-session-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(session, RAW_ECHO_SESSION, "the upstream's own session");
    let body = r#"{ "method":"tools/call","params":{"name":"raw_echo","arguments":{"z":1,"a":1.50,"big":12345678901234567890123}},"jsonrpc":"2.0","id":"k\/1" }"#;
    let res = client()
        .post(proxy.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(body)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    let received = serde_json::to_string(body).unwrap();
    assert!(text.contains(&format!(r#""received":{received}"#)), "the upstream got the caller's bytes: {text}");
    assert!(text.contains(r#""id":"k\/1""#), "{text}");
    proxy.shutdown().await;
}

/// The 2025-11-25 suite, a legacy client, through the bridge to the modern-only HTTP
/// fixture (docs/modern.md). A floor, like the other suite runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2025_11_25_through_the_bridge_to_a_modern_only_http_server() {
    let (upstream, proxy) = bridged_proxy("httpbr-conformance").await;
    let summary = run_server_suite(&proxy.url(), "2025-11-25").await;
    proxy.shutdown().await;
    upstream.shutdown().await.unwrap();
    // Every scenario and every check (docs/modern.md).
    summary.assert_all_pass(apiary_testkit::conformance::EXPECTED_2025_11_25);
}
