//! Every message the proxy forwards keeps its bytes (DESIGN.md, "The flow of one request"):
//! through a stdio child shared by two sessions (ids and progress tokens rewritten), and
//! through an HTTP upstream. The servers are the testkit's raw echo, which answers with the
//! exact line it received, so these tests compare bytes, never re-parsed values.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use apiary_config::{CommandSource, RunConfig, Source, StdioMode};
use apiary_testkit::server::{RAW_ECHO_PROGRESS, RAW_ECHO_TAIL, raw_echo_router};

/// Arguments no re-serialiser keeps: key order, `1.50`, a big integer, `1e400`, escapes,
/// whitespace between tokens, and a `_meta.progressToken` that is the tool's, not the call's.
const ARGS: &str = "{\"z\":1,\"a\":1.50,\"big\":12345678901234567890123,\"huge\":1e400,\"e\":\"\\u00e9\",\"\u{e9}\":\"\u{e9}\",\"s\":\"a\\/b\",\"w\" :\t[ 1 , 2 ],\"_meta\":{\"progressToken\":1}}";

/// A `tools/call` of `raw_echo` with the id last and the request's `_meta` between members.
fn call_body(id: &str, token: &str, tag: &str) -> String {
    format!(
        r#"{{ "method":"tools/call","params":{{"name":"raw_echo","_meta":{{"other":1.0,"progressToken":{token}}},"arguments":{{"session":"{tag}","x":{ARGS}}}}},"jsonrpc":"2.0","id":{id} }}"#
    )
}

fn arguments(tag: &str) -> String {
    format!(r#"{{"session":"{tag}","x":{ARGS}}}"#)
}

/// What the proxy answers a call with, when the server received `received` for it.
fn expected_answer(client_id: &str, received: &str, tag: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{client_id},"result":{{"content":[],"received":{},"arguments":{},{RAW_ECHO_TAIL}}}}}"#,
        serde_json::to_string(received).unwrap(),
        arguments(tag)
    )
}

fn expected_progress(token: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},{RAW_ECHO_PROGRESS}}}}}"#
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// POSTs `body` as written; returns the session header and each JSON-RPC frame of the
/// answer exactly as it came (an SSE event's data, or the JSON body).
async fn post(url: &str, session: Option<&str>, body: &str) -> (Option<String>, Vec<String>) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_owned());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{} for {body}", res.status());
    let session = res.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let sse = res.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let frames = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d).to_owned())
            .filter(|d| !d.is_empty())
            .collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![text]
    };
    (session, frames)
}

/// Opens a session: `initialize`, then `notifications/initialized`.
async fn open(url: &str, name: &str) -> String {
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"1"}}}}}}"#
    );
    let (session, _) = post(url, None, &init).await;
    let session = session.expect("initialize opens a session");
    post(url, Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    session
}

#[derive(serde::Deserialize)]
struct Answer {
    result: Echoed,
}

#[derive(serde::Deserialize)]
struct Echoed {
    #[serde(default)]
    received: String,
    #[serde(default)]
    lines: Vec<String>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: serde_json::Value,
}

/// The line the server received, read back from the answer's `received` member. (Read
/// through a struct: a `serde_json::Value` cannot hold `1e400`.)
fn received_of(answer: &str) -> String {
    serde_json::from_str::<Answer>(answer).unwrap_or_else(|e| panic!("{e}: {answer}")).result.received
}

/// The lines the server received so far, from a `raw_seen` answer.
fn lines_of(answer: &str) -> Vec<String> {
    serde_json::from_str::<Answer>(answer).unwrap_or_else(|e| panic!("{e}: {answer}")).result.lines
}

/// The id of a message, as a value.
fn id_of(line: &str) -> serde_json::Value {
    serde_json::from_str::<IdOnly>(line).unwrap().id
}

fn raw_echo_config(name: &str) -> RunConfig {
    let server = apiary_testkit::binaries::testkit_server();
    let mut cfg = RunConfig::new(
        name,
        Source::Command(CommandSource { program: server.display().to_string(), args: vec!["--raw-echo".into()] }),
    );
    cfg.stdio.mode = StdioMode::Shared;
    cfg
}

async fn raw_echo_proxy(name: &str) -> apiary_proxy::ProxyHandle {
    let launcher = common::CommandLauncher {
        program: apiary_testkit::binaries::testkit_server(),
        args: vec!["--raw-echo".into()],
    };
    apiary_proxy::start(raw_echo_config(name), Some(Arc::new(launcher))).await.expect("the proxy starts")
}

/// One session's call on the shared child: the child gets the caller's bytes with only the
/// id and the progress token changed, and the caller gets the child's bytes with only them
/// restored. Returns the child-side id.
async fn call_through_shared_child(
    url: String,
    session: String,
    tag: &'static str,
    client_id: &'static str,
    token: &'static str,
) -> u64 {
    let (_, frames) = post(&url, Some(&session), &call_body(client_id, token, tag)).await;
    assert_eq!(frames.len(), 2, "progress then the answer: {frames:?}");
    assert_eq!(frames[0], expected_progress(token), "the progress notification, its token restored");

    let received = received_of(&frames[1]);
    let child_id = id_of(&received).as_u64().unwrap();
    let child_token = format!(r#""apiary-progress-{child_id}""#);
    assert_eq!(received, call_body(&child_id.to_string(), &child_token, tag), "the bytes the child received");
    assert_eq!(frames[1], expected_answer(client_id, &received, tag), "the bytes the caller received");
    child_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_stdio_child_and_its_callers_get_each_others_bytes() {
    let proxy = raw_echo_proxy("bytes-shared").await;
    let url = proxy.url();
    let a = open(&url, "a").await;
    let b = open(&url, "b").await;
    // The same id in both sessions, so the child must see two different ones.
    let first = tokio::spawn(call_through_shared_child(url.clone(), a, "a", "\"same\"", "\"tok-\\u00e9\\/\""));
    let second = tokio::spawn(call_through_shared_child(url.clone(), b, "b", "\"same\"", "12345678901234567890123"));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_ne!(first, second, "the two sessions' ids were not remapped");
    let pids = proxy.status().borrow().child_pids.clone();
    proxy.shutdown().await;
    assert_eq!(pids.len(), 1, "shared mode runs one child: {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_ids_at_the_start_keep_every_other_byte() {
    let proxy = raw_echo_proxy("bytes-int-id").await;
    let url = proxy.url();
    let s = open(&url, "int").await;
    let body = format!(
        r#"{{"id":12,"jsonrpc":"2.0" , "method":"tools/call","params":{{"name":"raw_echo","arguments":{ARGS}}}}}"#
    );
    let (_, frames) = post(&url, Some(&s), &body).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let received = received_of(&frames[0]);
    let child_id = id_of(&received).as_u64().unwrap();
    assert_eq!(received, body.replacen(r#"{"id":12,"#, &format!(r#"{{"id":{child_id},"#), 1));
    let expected = format!(
        r#"{{"jsonrpc":"2.0","id":12,"result":{{"content":[],"received":{},"arguments":{ARGS},{RAW_ECHO_TAIL}}}}}"#,
        serde_json::to_string(&received).unwrap()
    );
    assert_eq!(frames[0], expected);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_reaches_the_shared_child_with_only_its_request_id_changed() {
    let proxy = raw_echo_proxy("bytes-cancel").await;
    let url = proxy.url();
    let s = open(&url, "cancel").await;
    // A call the child never answers, then its cancellation.
    let held = {
        let (url, s) = (url.clone(), s.clone());
        tokio::spawn(async move {
            let body = r#"{"jsonrpc":"2.0","id":"h\u00e9ld","method":"tools/call","params":{"name":"raw_hold"}}"#;
            let _ = http()
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .header("mcp-session-id", s)
                .body(body)
                .send()
                .await;
        })
    };
    // The child has the call once it has a line naming raw_hold.
    let seen_body =
        |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"raw_seen"}}}}"#);
    let mut hold_line = None;
    for i in 0..100 {
        let (_, frames) = post(&url, Some(&s), &seen_body(1000 + i)).await;
        hold_line = lines_of(&frames[0]).into_iter().find(|l| l.contains("raw_hold"));
        if hold_line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hold_line = hold_line.expect("the held call reached the child");
    let child_id = id_of(&hold_line).as_u64().unwrap();

    let cancel = r#"{"params":{"reason":"\u00e9 \/ enough","requestId" : "h\u00e9ld","n":1.50},"jsonrpc":"2.0","method":"notifications/cancelled"}"#;
    post(&url, Some(&s), cancel).await;
    let (_, frames) = post(&url, Some(&s), &seen_body(2000)).await;
    let lines = lines_of(&frames[0]);
    let expected = cancel.replace(r#""h\u00e9ld""#, &child_id.to_string());
    assert!(lines.contains(&expected), "the child got no {expected}\nin {lines:#?}");
    held.abort();
    proxy.shutdown().await;
}

/// A raw echo upstream over HTTP on a loopback port; stops with the test's runtime.
async fn raw_echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, raw_echo_router()).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_and_its_caller_get_each_others_bytes() {
    let upstream = raw_echo_upstream().await;
    let proxy = apiary_proxy::start(RunConfig::new("bytes-http", Source::remote(&upstream)), None).await.unwrap();
    let url = proxy.url();
    let s = open(&url, "http").await;
    let token = "\"tok-\\u00e9\\/\"";
    let body = call_body("\"h1\"", token, "http");
    let (_, frames) = post(&url, Some(&s), &body).await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], expected_progress(token));
    assert_eq!(received_of(&frames[1]), body, "the upstream got the caller's bytes");
    assert_eq!(frames[1], expected_answer("\"h1\"", &body, "http"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_call_bridged_to_an_http_upstream_keeps_its_bytes() {
    let upstream = raw_echo_upstream().await;
    let proxy = apiary_proxy::start(RunConfig::new("bytes-bridge", Source::remote(&upstream)), None).await.unwrap();
    let body = format!(
        r#"{{ "method":"tools/call","params":{{"name":"raw_echo","arguments":{}}},"jsonrpc":"2.0","id":"b\/1" }}"#,
        arguments("bridge")
    );
    let (_, frames) = post(&proxy.url(), None, &body).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let received = received_of(&frames[0]);
    assert_eq!(received, body, "the upstream got the caller's bytes");
    let expected = format!(
        r#"{{"jsonrpc":"2.0","id":"b\/1","result":{{"content":[],"received":{},"arguments":{},{RAW_ECHO_TAIL}}}}}"#,
        serde_json::to_string(&received).unwrap(),
        arguments("bridge")
    );
    assert_eq!(frames[0], expected, "the caller got the upstream's bytes, its id restored");
    proxy.shutdown().await;
}

/// With a Cedar policy on, a call still reaches the child byte for byte (the guard reads the
/// arguments; it never rewrites them), and an argument `serde_json::Value` cannot hold
/// (`1e400`) is neither a parse failure nor a way around a policy that reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_call_keeps_its_bytes_and_an_unreadable_argument_cannot_dodge_the_policy() {
    let mut cfg = raw_echo_config("bytes-guarded");
    cfg.policy.authz = Some(serde_json::json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {
            "policies": [
                "permit(principal, action == Action::\"call_tool\", resource == Tool::\"raw_echo\");",
                "forbid(principal, action == Action::\"call_tool\", resource == Tool::\"raw_echo\") when { resource has arg_limit && resource.arg_limit > 5 };"
            ],
            "entities_json": "[]"
        }
    }));
    let launcher = common::CommandLauncher {
        program: apiary_testkit::binaries::testkit_server(),
        args: vec!["--raw-echo".into()],
    };
    let proxy = apiary_proxy::start(cfg, Some(Arc::new(launcher))).await.expect("the proxy starts");
    let url = proxy.url();
    let s = open(&url, "guarded").await;

    // Allowed: every argument, `1e400` included, arrives as the caller wrote it.
    let body = format!(
        r#"{{"id":12,"jsonrpc":"2.0","method":"tools/call","params":{{"name":"raw_echo","arguments":{ARGS}}}}}"#
    );
    let (_, frames) = post(&url, Some(&s), &body).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let received = received_of(&frames[0]);
    let child_id = id_of(&received).as_u64().unwrap();
    assert_eq!(received, body.replacen(r#"{"id":12,"#, &format!(r#"{{"id":{child_id},"#), 1));

    // A small limit passes the forbid; a limit past f64 is denied, not waved through.
    for (limit, allowed) in [("3", true), ("1e400", false), ("-1e400", false)] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{{"name":"raw_echo","arguments":{{"limit":{limit}}}}}}}"#
        );
        let res = http()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", &s)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if allowed {
            assert_eq!(status, 200, "limit {limit}: {text}");
            assert!(text.contains(&format!(r#""arguments":{{"limit":{limit}}}"#)), "limit {limit}: {text}");
        } else {
            assert_eq!(status, 403, "limit {limit}: {text}");
            assert!(text.contains("-31007"), "limit {limit}: {text}");
        }
    }
    proxy.shutdown().await;
}

/// A 2026-07-28 `tools/call` whose arguments hold numbers `serde_json::Value` cannot (`1e400`,
/// a 30-digit integer) reaches the shared legacy child: it was refused as "_meta missing"
/// (the front decoded params into a `Value`). The child gets the caller's bytes with only the
/// id and progress token changed and the `io.modelcontextprotocol/*` `_meta` members gone;
/// `_meta`'s other members keep their bytes (they were re-serialised: keys sorted, `1.50`
/// written `1.5`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_call_reaches_a_shared_legacy_child_with_its_bytes() {
    let proxy = raw_echo_proxy("bytes-modern").await;
    let url = proxy.url();
    let meta = |middle: &str, token: &str| {
        format!(r#"{{"other":1.50,{middle}"progressToken":{token},"big":123456789012345678901234567890,"z":"a\/b"}}"#)
    };
    let modern_keys = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28", "io.modelcontextprotocol/clientCapabilities":{"n":1e400},"#;
    let body = |id: &str, meta: &str| {
        format!(
            r#"{{ "method":"tools/call","params":{{"name":"raw_echo","_meta":{meta},"arguments":{}}},"jsonrpc":"2.0","id":{id} }}"#,
            arguments("modern")
        )
    };
    let sent = body(r#""m\/1""#, &meta(modern_keys, r#""t\u00e9""#));
    let res = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "raw_echo")
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let frames: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(frames.len(), 2, "progress then the answer: {text}");
    assert_eq!(frames[0], expected_progress(r#""t\u00e9""#), "the progress notification, its token restored");
    let received = received_of(frames[1]);
    let child_id = id_of(&received).as_u64().unwrap();
    let child_token = format!(r#""apiary-progress-{child_id}""#);
    assert_eq!(received, body(&child_id.to_string(), &meta("", &child_token)), "the bytes the child received");
    proxy.shutdown().await;
}
