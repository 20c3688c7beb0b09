//! `docs/bad-input.md` as tests: every row of the contract gets `row_NN_…` tests, and the
//! rules after the table get `rule_N_…` tests. Each runs a real proxy in front of the real
//! fixture server over stdio (or, for rows 16 and 25–28, a deliberately broken fake child in
//! `tests/bad_input/fake_child.py`; for the HTTP-upstream part of rows 1–7 and 27, the
//! fixture over HTTP or a broken fake upstream), sends the exact input, checks status,
//! headers and the JSON-RPC error, checks that refused input never reached the child, and
//! checks that another session (the witness) keeps working on the same child throughout.
//!
//! Tests of behaviour the proxy does not have yet are kept, marked
//! `#[ignore = "row N: <what the proxy does wrong>"]`, so they stay visible.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
#[path = "bad_input/rig.rs"]
mod rig;
#[path = "bad_input/wire.rs"]
mod wire;

use std::time::{Duration, Instant};

use apiary_config::StdioMode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use rig::{HttpRig, Rig, config};
use wire::*;

/// Bounds reading one SSE event that is due now.
const EVENT_LIMIT: Duration = Duration::from_secs(20);

/// `GET /sse` on `base`: the stream and the `/messages` URL its `endpoint` event announces.
async fn open_sse(c: &reqwest::Client, base: &str) -> (Sse, String) {
    let res = c.get(format!("{base}/sse")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /sse");
    let mut sse = Sse::new(res);
    let ev = sse.next(EVENT_LIMIT).await.expect("the endpoint event");
    assert_eq!(ev.event.as_deref(), Some("endpoint"), "{ev:?}");
    assert!(ev.data.contains("/messages?session_id="), "{ev:?}");
    let url = if ev.data.starts_with("http") { ev.data.clone() } else { format!("{base}{}", ev.data) };
    (sse, url)
}

/// `echo` through `/messages` is accepted and answered on the session's stream.
async fn sse_echo_ok(c: &reqwest::Client, messages: &str, sse: &mut Sse, text: &str) {
    let id = json!(format!("sse-{text}"));
    let r = post(c, messages, echo(id.clone(), text)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let answer = sse.until(EVENT_LIMIT, |v| v["id"] == id).await.pop().unwrap().json().unwrap();
    assert_eq!(result_text(&answer), text);
}

/// [`open_sse`], then `initialize` and `notifications/initialized` through `/messages`: a
/// 2024-11-05 session ready for calls.
async fn open_sse_session(c: &reqwest::Client, base: &str) -> (Sse, String) {
    let (mut sse, messages) = open_sse(c, base).await;
    let init = INIT_BODY.replace("2025-11-25", "2024-11-05").replace("R06-init", "sse-client");
    let r = post(c, &messages, init).send().await.unwrap();
    assert_eq!(r.status(), 202, "initialize on /messages");
    let answer = sse.until(EVENT_LIMIT, |v| v["id"] == 0).await.pop().unwrap().json().unwrap();
    assert!(answer["result"].is_object(), "{answer}");
    let r = post(c, &messages, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).send().await.unwrap();
    assert_eq!(r.status(), 202, "notifications/initialized on /messages");
    (sse, messages)
}

// ---------------------------------------------------------------------------------------
// Row 1: not JSON text
// ---------------------------------------------------------------------------------------

/// (what, body, exact byte offset when it is known). Every body that could reach a child
/// carries a marker `R01-…`.
fn not_json_bodies() -> Vec<(&'static str, Vec<u8>, Option<usize>)> {
    let valid = |m: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{m}"}}}}}}"#
        )
    };
    let truncated = valid("R01-truncated");
    let mut out: Vec<(&'static str, Vec<u8>, Option<usize>)> = vec![
        ("empty", Vec::new(), Some(0)),
        ("truncated", br#"{"jsonrpc":"#.to_vec(), None),
        ("a truncated call", truncated.as_bytes()[..truncated.len() - 3].to_vec(), None),
        ("a second value", format!("{} {}", valid("R01-second-a"), valid("R01-second-b")).into_bytes(), None),
        ("a block comment", format!("/* c */ {}", valid("R01-block-comment")).into_bytes(), None),
        ("a line comment", format!("{}\n// c", valid("R01-line-comment")).into_bytes(), None),
        (
            "NaN",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"R01-nan","n":NaN}}}"#
                .to_vec(),
            None,
        ),
        ("a bare NaN", b"NaN".to_vec(), Some(0)),
        (
            "single quotes",
            b"{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'echo','arguments':{'text':'R01-quotes'}}}"
                .to_vec(),
            None,
        ),
    ];
    // Bytes spliced into a string right after a marker: the offsets are exact.
    let spliced = |m: &str, bad: &[u8]| -> (Vec<u8>, usize) {
        let s = valid(m);
        let at = s.find(m).unwrap() + m.len();
        let mut b = s.as_bytes()[..at].to_vec();
        b.extend_from_slice(bad);
        b.extend_from_slice(&s.as_bytes()[at..]);
        (b, at)
    };
    for (what, m, bad) in [
        ("a stray 0xFF", "R01-ff", &b"\xff"[..]),
        ("an overlong form", "R01-overlong", &b"\xc0\xaf"[..]),
        ("a lone surrogate escape", "R01-surrogate", &b"\\uD800"[..]),
    ] {
        let (body, at) = spliced(m, bad);
        out.push((what, body, Some(at)));
    }
    out
}

const R01_MARKERS: [&str; 10] = [
    "R01-truncated",
    "R01-second-a",
    "R01-second-b",
    "R01-block-comment",
    "R01-line-comment",
    "R01-nan",
    "R01-quotes",
    "R01-ff",
    "R01-overlong",
    "R01-surrogate",
];

/// Sends every not-JSON body to `url` in every revision (no version header, each legacy one,
/// 2026-07-28), with and without `session`, accepting JSON or also SSE: the answer is 400
/// -32700 with the byte offset, and the same bytes every time.
async fn check_not_json(c: &reqwest::Client, url: &str, session: &str) {
    for (what, body, offset) in not_json_bodies() {
        let mut answers: Vec<(String, String)> = Vec::new();
        let versions = [None, Some(LEGACY[0]), Some(LEGACY[1]), Some(LEGACY[2]), Some(LEGACY[3]), Some("2026-07-28")];
        for version in versions {
            for sid in [None, Some(session)] {
                for accept in [None, Some("application/json, text/event-stream")] {
                    let mut b = post(c, url, body.clone());
                    if let Some(v) = version {
                        b = b.header("mcp-protocol-version", v);
                    }
                    if let Some(s) = sid {
                        b = b.header("mcp-session-id", s);
                    }
                    if let Some(a) = accept {
                        b = b.header("accept", a);
                    }
                    let res = b.send().await.unwrap();
                    let v = refused(res, 400, -32700).await;
                    no_id(&v);
                    let msg = message(&v).to_owned();
                    let at = byte_offset(&msg).unwrap_or_else(|| panic!("{what}: no byte offset in {msg:?}"));
                    assert!(at <= body.len(), "{what}: offset {at} past the body ({}): {msg}", body.len());
                    if let Some(want) = offset {
                        assert_eq!(at, want, "{what}: {msg}");
                    }
                    answers.push((format!("{version:?}/{sid:?}/{accept:?}"), v.to_string()));
                }
            }
        }
        let first = &answers[0].1;
        for (how, a) in &answers {
            assert_eq!(a, first, "{what}: the answer differs for {how}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_01_not_json_is_a_parse_error_with_the_byte_offset() {
    let rig = Rig::fixture(config("row01")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    check_not_json(&c, &url, w.id()).await;
    w.check().await;
    for m in R01_MARKERS {
        assert!(!rig.child_saw(m), "{m} reached a child");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_01_not_json_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row01-http", |_| {}).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open_http(&url).await;
    check_not_json(&c, &url, w.id()).await;
    w.check().await;
    for m in R01_MARKERS {
        assert!(!rig.upstream_saw(m), "{m} reached the upstream");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_01_not_json_on_messages() {
    let rig = Rig::fixture(config("row01-messages")).await;
    let c = http();
    let (mut sse, messages) = open_sse_session(&c, &rig.base()).await;
    for (what, body, offset) in not_json_bodies() {
        let v = refused(post(&c, &messages, body.clone()).send().await.unwrap(), 400, -32700).await;
        no_id(&v);
        let at = byte_offset(message(&v)).unwrap_or_else(|| panic!("{what}: no byte offset in {v}"));
        if let Some(want) = offset {
            assert_eq!(at, want, "{what}: {v}");
        }
    }
    for m in R01_MARKERS {
        assert!(!rig.child_saw(m), "{m} reached a child");
    }
    sse_echo_ok(&c, &messages, &mut sse, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 2: nesting
// ---------------------------------------------------------------------------------------

fn nested_bodies() -> Vec<(&'static str, String)> {
    const DEEP: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(DEEP), "}".repeat(DEEP));
    // 129 levels in all: the envelope, params, arguments, then 126 arrays.
    let just_past = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"R02-129","deep":{}{}}}}}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    let in_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"R02-params","deep":{}{}}}}}}}"#,
        "[".repeat(DEEP),
        "]".repeat(DEEP)
    );
    vec![("arrays", arrays), ("objects", objects), ("129 levels", just_past), ("deep params", in_params)]
}

async fn check_nesting(c: &reqwest::Client, url: &str, session: &str) {
    for (what, body) in nested_bodies() {
        assert!(body.len() < 1 << 20, "well under the size cap");
        for sid in [None, Some(session)] {
            let mut b = post(c, url, body.clone());
            if let Some(s) = sid {
                b = b.header("mcp-session-id", s);
            }
            let v = refused(b.send().await.unwrap(), 400, -32700).await;
            assert!(message(&v).contains("nesting deeper than 128"), "{what}: {v}");
            no_id(&v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_02_deep_nesting_is_a_parse_error_and_the_worker_lives() {
    let rig = Rig::fixture(config("row02")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    check_nesting(&c, &url, w.id()).await;
    w.check().await;
    assert!(!rig.child_saw("R02-"), "a refused body reached a child");
    // 103 levels are fine: they reach the child and are answered.
    let ok = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"R02-fine","deep":{}{}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let (status, v) = w.sess.call(&c, &url, ok).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "R02-fine");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_02_deep_nesting_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row02-http", |_| {}).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open_http(&url).await;
    check_nesting(&c, &url, w.id()).await;
    w.check().await;
    assert!(!rig.upstream_saw("R02-"), "a refused body reached the upstream");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 3: body cap
// ---------------------------------------------------------------------------------------

const CAP: usize = 4096;

fn declared_over_cap(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        CAP + 1
    )
}

fn check_413(r: &RawResponse) {
    let v = r.refused(413, -32600);
    no_id(&v);
    assert!(message(&v).contains(&format!("body exceeds {CAP} bytes")), "{v}");
    assert!(r.header("retry-after").is_none(), "413 is not temporary: {:?}", r.headers);
}

/// A chunked body of exactly CAP + 1 payload bytes, never terminated: the answer must be 413
/// and then the connection closes.
async fn chunked_over_cap(addr: std::net::SocketAddr, path: &str, marker: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut payload = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{marker}"#
    )
    .into_bytes();
    payload.resize(CAP + 1, b'x');
    for chunk in payload.chunks(1000) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if s.write_all(&framed).await.is_err() {
            break;
        }
    }
    let r = read_response(&mut s).await;
    check_413(&r);
    let (_, closed) = read_to_close(&mut s, ANSWER_LIMIT).await;
    assert!(closed, "the connection stays open after a chunked body ran past the cap");
}

/// A body of exactly CAP bytes: a call to `echo` padded with spaces.
fn body_of_cap(text: &str) -> String {
    let mut b = echo(json!(3), text);
    let pad = CAP - b.len();
    b.insert_str(b.len() - 1, &" ".repeat(pad));
    assert_eq!(b.len(), CAP);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_03_bodies_over_the_cap_get_413() {
    let mut cfg = config("row03");
    cfg.limits.max_body_bytes = CAP as u64;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;

    // Declared: refused before any of the body is sent (raw waits for nothing else).
    check_413(&raw(rig.addr(), declared_over_cap("/mcp", "").as_bytes()).await);
    let in_session = format!("Mcp-Session-Id: {}\r\n", w.id());
    check_413(&raw(rig.addr(), declared_over_cap("/mcp", &in_session).as_bytes()).await);
    w.check().await;
    // Chunked past the cap: 413, then the connection closes.
    chunked_over_cap(rig.addr(), "/mcp", "R03-chunked").await;
    w.check().await;
    assert!(!rig.child_saw("R03-chunked"));
    // Exactly the cap passes.
    let (status, v) = w.sess.call(&c, &url, body_of_cap("R03-at-cap")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "R03-at-cap");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_03_bodies_over_the_cap_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row03-http", |cfg| cfg.limits.max_body_bytes = CAP as u64).await;
    let w = Witness::open_http(&rig.url()).await;
    check_413(&raw(rig.addr(), declared_over_cap("/mcp", "").as_bytes()).await);
    chunked_over_cap(rig.addr(), "/mcp", "R03-http-chunked").await;
    assert!(!rig.upstream_saw("R03-http-chunked"));
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_03_bodies_over_the_cap_on_messages() {
    let mut cfg = config("row03-messages");
    cfg.limits.max_body_bytes = CAP as u64;
    let rig = Rig::fixture(cfg).await;
    let c = http();
    let (mut sse, messages) = open_sse_session(&c, &rig.base()).await;
    let path = messages.strip_prefix(&rig.base()).unwrap().to_owned();
    check_413(&raw(rig.addr(), declared_over_cap(&path, "").as_bytes()).await);
    chunked_over_cap(rig.addr(), &path, "R03-messages-chunked").await;
    assert!(!rig.child_saw("R03-messages-chunked"));
    sse_echo_ok(&c, &messages, &mut sse, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 4: JSON, but not JSON-RPC
// ---------------------------------------------------------------------------------------

/// (body, the id the error must echo; `None`: no id member; `Some(Null)`: not pinned).
fn not_jsonrpc_bodies() -> Vec<(String, Option<Value>)> {
    let p = |m: &str| format!(r#""params":{{"name":"echo","arguments":{{"text":"{m}"}}}}"#);
    vec![
        (format!(r#"{{"id":1,"method":"tools/call",{}}}"#, p("R04-no-jsonrpc")), Some(json!(1))),
        (format!(r#"{{"jsonrpc":"1.0","id":"a","method":"tools/call",{}}}"#, p("R04-v1")), Some(json!("a"))),
        (format!(r#"{{"jsonrpc":2.0,"id":2,"method":"tools/call",{}}}"#, p("R04-number")), Some(json!(2))),
        (format!(r#"{{"jsonrpc":"2.0","id":{{"x":1}},"method":"tools/call",{}}}"#, p("R04-id-object")), None),
        (format!(r#"{{"jsonrpc":"2.0","id":[1],"method":"tools/call",{}}}"#, p("R04-id-array")), None),
        (format!(r#"{{"jsonrpc":"2.0","id":true,"method":"tools/call",{}}}"#, p("R04-id-bool")), None),
        (format!(r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call",{}}}"#, p("R04-id-null")), None),
        (format!(r#"{{"jsonrpc":"2.0","id":1.5,"method":"tools/call",{}}}"#, p("R04-id-fraction")), None),
        (format!(r#"{{"jsonrpc":"2.0","id":3,{}}}"#, p("R04-no-method")), Some(json!(3))),
        (format!(r#"{{"jsonrpc":"2.0","id":4,"method":7,{}}}"#, p("R04-method-number")), Some(json!(4))),
        (format!(r#"{{"jsonrpc":"2.0","id":5,"method":null,{}}}"#, p("R04-method-null")), Some(json!(5))),
        (
            r#"{"jsonrpc":"2.0","id":6,"result":{"R04":"both"},"error":{"code":1,"message":"m"}}"#.into(),
            Some(Value::Null),
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","result":{{}},{}}}"#, p("R04-method-result")),
            Some(Value::Null),
        ),
        ("42".into(), None),
        (r#""R04-string""#.into(), None),
        ("true".into(), None),
        ("null".into(), None),
    ]
}

fn check_id(v: &Value, want: &Option<Value>, body: &str) {
    match want {
        None => assert!(v.get("id").is_none(), "no id member for {body}: {v}"),
        Some(Value::Null) => {}
        Some(id) => assert_eq!(v.get("id"), Some(id), "the id is echoed for {body}: {v}"),
    }
}

async fn check_not_jsonrpc(c: &reqwest::Client, url: &str, session: &str) {
    for (body, id) in not_jsonrpc_bodies() {
        for sid in [None, Some(session)] {
            let mut b = post(c, url, body.clone());
            if let Some(s) = sid {
                b = b.header("mcp-session-id", s);
            }
            let v = refused(b.send().await.unwrap(), 400, -32600).await;
            check_id(&v, &id, &body);
        }
    }
}

/// An `initialize` that is not JSON-RPC: it must open no session.
const BAD_INITIALIZE: &str = r#"{"jsonrpc":"1.0","id":8,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"R04-init","version":"1"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_04_valid_json_that_is_not_jsonrpc_is_an_invalid_request() {
    let rig = Rig::fixture(config("row04")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    check_not_jsonrpc(&c, &url, w.id()).await;
    w.check().await;

    let children = rig.child_pids().len();
    let r = post(&c, &url, BAD_INITIALIZE).send().await.unwrap();
    assert!(r.headers().get("mcp-session-id").is_none(), "a session was minted");
    let v = refused(r, 400, -32600).await;
    assert_eq!(v["id"], 8, "{v}");
    assert_eq!(rig.child_pids().len(), children, "a child was started for a refused initialize");
    w.check().await;
    assert!(!rig.child_saw("R04"), "a refused message reached a child");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_04_not_jsonrpc_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row04-http", |_| {}).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open_http(&url).await;
    check_not_jsonrpc(&c, &url, w.id()).await;
    let r = post(&c, &url, BAD_INITIALIZE).send().await.unwrap();
    assert!(r.headers().get("mcp-session-id").is_none(), "a session was minted");
    refused(r, 400, -32600).await;
    w.check().await;
    assert!(!rig.upstream_saw("R04"), "a refused message reached the upstream");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 5: Content-Type
// ---------------------------------------------------------------------------------------

async fn check_content_types(c: &reqwest::Client, url: &str, w: &Witness) {
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
        Some("application/json; charset=utf-16"),
    ] {
        let mut b = w.sess.post_bare(c, url, echo(json!(1), "R05-refused"));
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let v = refused(b.send().await.unwrap(), 415, -32600).await;
        assert_eq!(message(&v), "Content-Type must be application/json", "{ct:?}: {v}");
        no_id(&v);
    }
    for (i, ct) in ["application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"]
        .into_iter()
        .enumerate()
    {
        let text = format!("R05-ok-{i}");
        let r = w.sess.post_bare(c, url, echo(json!(i), &text)).header("content-type", ct).send().await.unwrap();
        let (status, v) = answer(r).await;
        assert_eq!(status, 200, "{ct}");
        assert_eq!(result_text(&v), text);
    }
    w.check().await;
}

/// The body is not read: a declared body that never comes is refused at once.
async fn content_type_before_body(addr: std::net::SocketAddr) {
    let head =
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n".as_bytes();
    let r = raw(addr, head).await;
    no_id(&r.refused(415, -32600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_05_content_type_must_be_json() {
    let rig = Rig::fixture(config("row05")).await;
    let url = rig.url();
    let w = Witness::open(&url).await;
    check_content_types(&http(), &url, &w).await;
    content_type_before_body(rig.addr()).await;
    assert!(!rig.child_saw("R05-refused"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_05_content_type_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row05-http", |_| {}).await;
    let url = rig.url();
    let w = Witness::open_http(&url).await;
    check_content_types(&http(), &url, &w).await;
    content_type_before_body(rig.addr()).await;
    assert!(!rig.upstream_saw("R05-refused"));
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 6: Origin and Host
// ---------------------------------------------------------------------------------------

const INIT_BODY: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"R06-init","version":"1"}}}"#;

async fn check_origins(c: &reqwest::Client, url: &str, addr: std::net::SocketAddr, w: &Witness) {
    let evil = [("origin", "https://evil.example"), ("origin", "http://localhost.evil.example")];
    let hosts = [("host", "evil.example.com"), ("host", "evil.example.com:80")];
    for (name, value) in evil.iter().chain(hosts.iter()) {
        let want = if *name == "origin" { "origin not allowed" } else { "host not allowed" };
        // POST, GET and DELETE naming the witness's session: none may touch it.
        let r = w.sess.post(c, url, echo(json!(1), "R06-refused")).header(*name, *value).send().await.unwrap();
        let v = refused(r, 403, -32600).await;
        assert_eq!(message(&v), want, "{value}: {v}");
        no_id(&v);
        let r = c
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", w.id())
            .header(*name, *value)
            .send()
            .await
            .unwrap();
        assert_eq!(message(&refused(r, 403, -32600).await), want);
        let r = c.delete(url).header("mcp-session-id", w.id()).header(*name, *value).send().await.unwrap();
        assert_eq!(message(&refused(r, 403, -32600).await), want);
        // Checked first: before the session lookup and the body.
        let r =
            post(c, url, "{").header("mcp-session-id", "no-such-session").header(*name, *value).send().await.unwrap();
        refused(r, 403, -32600).await;
        // No session is created.
        let r = post(c, url, INIT_BODY).header(*name, *value).send().await.unwrap();
        assert!(r.headers().get("mcp-session-id").is_none());
        refused(r, 403, -32600).await;
        w.check().await;
    }
    // No body is read: a declared body that never comes, over the cap too.
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n";
    raw(addr, head.as_bytes()).await.refused(403, -32600);

    // What passes: no Origin, loopback origins on any port (any case), the configured
    // origin, and loopback hosts.
    let port = addr.port();
    let loopback_origin = format!("http://127.0.0.1:{port}");
    for origin in [
        loopback_origin.as_str(),
        "http://localhost:5173",
        "http://[::1]:1",
        "HTTP://LocalHost",
        "https://app.example",
        "HTTPS://APP.EXAMPLE",
    ] {
        let r = w.sess.post(c, url, echo(json!(2), "R06-ok")).header("origin", origin).send().await.unwrap();
        assert_eq!(r.status(), 200, "{origin}");
    }
    for host in ["localhost", "localhost:9", "LOCALHOST", "127.0.0.1:1", "[::1]:8080", "[::1]"] {
        let r = w.sess.post(c, url, echo(json!(3), "R06-ok")).header("host", host).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // conformance `localhost-host-valid-accepted`: initialize and the notification after it.
    let r = post(c, url, INIT_BODY.replace("R06-init", "R06-loopback"))
        .header("origin", &loopback_origin)
        .header("accept", BOTH)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = post(c, url, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .header("origin", &loopback_origin)
        .header("accept", BOTH)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_06_foreign_origins_and_hosts_get_403() {
    let mut cfg = config("row06");
    cfg.proxy.allowed_origins = vec!["https://app.example".into()];
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let w = Witness::open(&url).await;
    check_origins(&http(), &url, rig.addr(), &w).await;
    assert!(!rig.child_saw("R06-refused") && !rig.child_saw("R06-init"), "a refused request reached a child");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_06_foreign_origins_in_front_of_an_http_upstream() {
    let rig =
        HttpRig::fixture("row06-http", |cfg| cfg.proxy.allowed_origins = vec!["https://app.example".into()]).await;
    let url = rig.url();
    let w = Witness::open_http(&url).await;
    check_origins(&http(), &url, rig.addr(), &w).await;
    assert!(
        !rig.upstream_saw("R06-refused") && !rig.upstream_saw("R06-init"),
        "a refused request reached the upstream"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_06_foreign_origins_on_sse_and_messages() {
    let rig = Rig::fixture(config("row06-sse")).await;
    let c = http();
    let (mut sse, messages) = open_sse_session(&c, &rig.base()).await;
    let r = c
        .get(format!("{}/sse", rig.base()))
        .header("accept", "text/event-stream")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(message(&refused(r, 403, -32600).await), "origin not allowed");
    let r = post(&c, &messages, echo(json!(1), "R06-messages"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(message(&refused(r, 403, -32600).await), "origin not allowed");
    let r =
        post(&c, &messages, echo(json!(1), "R06-messages")).header("host", "evil.example.com").send().await.unwrap();
    assert_eq!(message(&refused(r, 403, -32600).await), "host not allowed");
    assert!(!rig.child_saw("R06-messages"));
    sse_echo_ok(&c, &messages, &mut sse, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 7: methods
// ---------------------------------------------------------------------------------------

fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.as_bytes()).unwrap()
}

async fn check_methods(c: &reqwest::Client, base: &str, addr: std::net::SocketAddr, w: &Witness) {
    let url = format!("{base}/mcp");
    for m in ["PUT", "PATCH", "PURGE"] {
        let r = c
            .request(method(m), &url)
            .header("content-type", "application/json")
            .header("mcp-session-id", w.id())
            .body(echo(json!(1), "R07-refused"))
            .send()
            .await
            .unwrap();
        assert_eq!(tokens(r.headers().get("allow")), allow(&["GET", "POST", "DELETE"]), "{m}");
        let v = refused(r, 405, -32600).await;
        assert_eq!(message(&v), "method not allowed", "{m}: {v}");
        no_id(&v);
    }
    let r = c.request(reqwest::Method::OPTIONS, &url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(tokens(r.headers().get("allow")), allow(&["GET", "POST", "DELETE"]));
    // The body is never read.
    let head = "PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    raw(addr, head.as_bytes()).await.refused(405, -32600);

    let health = format!("{base}/health");
    for m in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = c.request(method(m), &health).send().await.unwrap();
        assert_eq!(r.status(), 405, "{m} /health");
        assert_eq!(tokens(r.headers().get("allow")), allow(&["GET", "HEAD"]), "{m} /health");
    }
    assert_eq!(c.get(&health).send().await.unwrap().status(), 200);
    assert_eq!(c.head(&health).send().await.unwrap().status(), 200);
    let r = c.request(reqwest::Method::OPTIONS, &health).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(tokens(r.headers().get("allow")), allow(&["GET", "HEAD"]));
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_07_unsupported_methods_get_405_with_allow() {
    let rig = Rig::fixture(config("row07")).await;
    let w = Witness::open(&rig.url()).await;
    check_methods(&http(), &rig.base(), rig.addr(), &w).await;
    assert!(!rig.child_saw("R07-refused"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_07_unsupported_methods_in_front_of_an_http_upstream() {
    let rig = HttpRig::fixture("row07-http", |_| {}).await;
    let w = Witness::open_http(&rig.url()).await;
    check_methods(&http(), &rig.base(), rig.addr(), &w).await;
    assert!(!rig.upstream_saw("R07-refused"), "a refused method reached the upstream");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_07_unsupported_methods_on_sse_and_messages() {
    let rig = Rig::fixture(config("row07-sse")).await;
    let c = http();
    let (mut stream, messages) = open_sse_session(&c, &rig.base()).await;
    let sse = format!("{}/sse", rig.base());
    for m in ["POST", "DELETE", "PUT"] {
        let r = c.request(method(m), &sse).header("content-type", "application/json").body("{}").send().await.unwrap();
        assert_eq!(tokens(r.headers().get("allow")), allow(&["GET"]), "{m} /sse");
        assert_eq!(message(&refused(r, 405, -32600).await), "method not allowed");
    }
    for m in ["GET", "DELETE", "PUT"] {
        let r = c.request(method(m), &messages).header("accept", "text/event-stream").send().await.unwrap();
        assert_eq!(tokens(r.headers().get("allow")), allow(&["POST"]), "{m} /messages");
        assert_eq!(message(&refused(r, 405, -32600).await), "method not allowed");
    }
    for (url, want) in [(&sse, allow(&["GET"])), (&messages, allow(&["POST"]))] {
        let r = c.request(reqwest::Method::OPTIONS, url.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 204, "OPTIONS {url}");
        assert_eq!(tokens(r.headers().get("allow")), want);
    }
    sse_echo_ok(&c, &messages, &mut stream, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 8: batches
// ---------------------------------------------------------------------------------------

fn batch(members: &[String]) -> String {
    format!("[{}]", members.join(","))
}

/// The member of a batch answer with `id`.
fn member<'a>(arr: &'a [Value], id: &Value) -> &'a Value {
    arr.iter().find(|m| m.get("id") == Some(id)).unwrap_or_else(|| panic!("no answer for id {id}: {arr:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_08_batches_are_handled_in_2025_03_26_only() {
    let rig = Rig::fixture(config("row08")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row08-0326", "2025-03-26", json!({})).await;
    assert_eq!(s.revision, "2025-03-26");

    // Requests: one response each, as a JSON array...
    let r = s.post(&c, &url, batch(&[echo(json!(1), "b1"), echo(json!("two"), "b2")])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let arr = v.as_array().unwrap_or_else(|| panic!("a JSON array: {v}"));
    assert_eq!(arr.len(), 2, "{v}");
    assert_eq!(result_text(member(arr, &json!(1))), "b1");
    assert_eq!(result_text(member(arr, &json!("two"))), "b2");
    // ... or one SSE event each (to a client that takes SSE only: with both admitted, answers
    // that come at once are one JSON body).
    let r = s
        .post(&c, &url, batch(&[echo(json!(1), "e1"), echo(json!(2), "e2")]))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events: Vec<Value> = Sse::new(r).rest(EVENT_LIMIT).await.iter().filter_map(Event::json).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(Value::is_object), "one event per response: {events:?}");
    assert_eq!(result_text(member(&events, &json!(1))), "e1");
    assert_eq!(result_text(member(&events, &json!(2))), "e2");
    // Only notifications: 202, no body.
    let r = s
        .post(&c, &url, batch(&[r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#.into()]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.bytes().await.unwrap().is_empty());
    // A bad member gets its own -32600.
    let bad = r#"{"jsonrpc":"1.0","id":4,"method":"tools/list"}"#.to_owned();
    let r = s.post(&c, &url, batch(&[echo(json!(3), "b3"), bad])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let arr = v.as_array().unwrap_or_else(|| panic!("a JSON array: {v}"));
    assert_eq!(result_text(member(arr, &json!(3))), "b3");
    assert_eq!(member(arr, &json!(4))["error"]["code"], -32600, "{v}");
    // Refused whole, with a single -32600: nothing runs.
    let init = INIT_BODY.replace("R06-init", "R08-init");
    for (what, body) in [
        ("empty", "[]".to_owned()),
        ("mixed", batch(&[echo(json!(5), "R08-mixed"), r#"{"jsonrpc":"2.0","id":77,"result":{}}"#.into()])),
        ("initialize inside", batch(&[init, echo(json!(6), "R08-with-init")])),
    ] {
        let v = refused(s.post(&c, &url, body).send().await.unwrap(), 400, -32600).await;
        no_id(&v);
        let _ = what;
    }
    // Sessionless without a version header: 2025-03-26.
    let r = post(&c, &url, batch(&[echo(json!(1), "s1"), echo(json!(2), "s2")])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    // The session's revision decides, not the header.
    let r = s
        .post(&c, &url, batch(&[echo(json!(1), "h1"), echo(json!(2), "h2")]))
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap().as_array().map(Vec::len), Some(2));
    for rev in ["2025-06-18", "2025-11-25"] {
        let s2 = open(&c, &url, "row08-later", rev, json!({})).await;
        let marker = format!("R08-{rev}");
        let v = refused(s2.post(&c, &url, batch(&[echo(json!(1), &marker)])).send().await.unwrap(), 400, -32600).await;
        assert!(message(&v).contains(&format!("batches are not supported in {rev}")), "{v}");
        no_id(&v);
        let r = post(&c, &url, batch(&[echo(json!(1), &marker)]))
            .header("mcp-session-id", &s2.id)
            .header("mcp-protocol-version", "2025-03-26")
            .send()
            .await
            .unwrap();
        refused(r, 400, -32600).await;
        // Sessionless, with this revision in the header.
        let r =
            post(&c, &url, batch(&[echo(json!(1), &marker)])).header("mcp-protocol-version", rev).send().await.unwrap();
        assert!(message(&refused(r, 400, -32600).await).contains("batches are not supported"));
    }
    w.check().await;
    assert!(!rig.child_saw("R08-"), "a member of a refused batch ran");
    assert!(rig.child_lines().iter().all(|l| !l.is_array()), "a batch was sent to a child");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_08_modern_batches_are_refused() {
    let rig = Rig::fixture(config("row08-modern")).await;
    let url = rig.url();
    let c = http();
    let body =
        format!("[{}]", modern_body(json!(1), "tools/call", json!({"name":"echo","arguments":{"text":"R08-modern"}})));
    let v = refused(modern_post(&c, &url, "tools/call", Some("echo"), body).send().await.unwrap(), 400, -32600).await;
    assert!(message(&v).contains("batches are not supported in 2026-07-28"), "{v}");
    assert!(!rig.child_saw("R08-modern"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_08_batches_on_messages_are_refused() {
    let rig = Rig::fixture(config("row08-messages")).await;
    let c = http();
    let (mut sse, messages) = open_sse_session(&c, &rig.base()).await;
    let v =
        refused(post(&c, &messages, batch(&[echo(json!(1), "R08-messages")])).send().await.unwrap(), 400, -32600).await;
    assert!(message(&v).contains("batches are not supported in 2024-11-05"), "{v}");
    assert!(!rig.child_saw("R08-messages"));
    sse_echo_ok(&c, &messages, &mut sse, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 9: Accept on POST
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_09_an_accept_admitting_neither_type_gets_406() {
    let rig = Rig::fixture(config("row09")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    for accept in ["text/html", "text/event-stream;q=0, application/json;q=0", "image/png, text/plain"] {
        for sid in [None, Some(w.id())] {
            let mut b = post(&c, &url, echo(json!(1), "R09-refused")).header("accept", accept);
            if let Some(s) = sid {
                b = b.header("mcp-session-id", s);
            }
            let v = refused(b.send().await.unwrap(), 406, -32600).await;
            let m = message(&v);
            assert!(m.contains("application/json") && m.contains("text/event-stream"), "{accept}: {v}");
            no_id(&v);
        }
    }
    // The body is not read.
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/html\r\nContent-Length: 100\r\n\r\n";
    raw(rig.addr(), head.as_bytes()).await.refused(406, -32600);
    // What passes, and in which type it is answered.
    for (i, (accept, want)) in [
        (None, Some("application/json")),
        (Some("application/json"), Some("application/json")),
        (Some("application/*"), Some("application/json")),
        (Some("text/event-stream"), Some("text/event-stream")),
        (Some("text/*"), Some("text/event-stream")),
        (Some("*/*"), None),
    ]
    .into_iter()
    .enumerate()
    {
        let text = format!("R09-ok-{i}");
        let mut b = w.sess.post(&c, &url, echo(json!(i), &text));
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let r = b.send().await.unwrap();
        assert_eq!(r.status(), 200, "{accept:?}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        if let Some(want) = want {
            assert!(ct.starts_with(want), "{accept:?} answered as {ct}");
        }
        let answer = if ct.starts_with("text/event-stream") {
            Sse::new(r).until(EVENT_LIMIT, |v| v["id"] == json!(i)).await.pop().unwrap().json().unwrap()
        } else {
            r.json::<Value>().await.unwrap()
        };
        assert_eq!(result_text(&answer), text);
    }
    w.check().await;
    assert!(!rig.child_saw("R09-refused"));
    rig.stop().await;
}

/// A GET stream on `s`.
async fn get_stream(c: &reqwest::Client, url: &str, s: &Sess) -> Sse {
    let r = c
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", &s.revision)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET stream");
    Sse::new(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_09_a_json_only_clients_notifications_go_to_its_get_stream() {
    let rig = Rig::fixture(config("row09-get")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row09-get", "2025-11-25", json!({})).await;
    let mut stream = get_stream(&c, &url, &s).await;
    let r = s
        .post(&c, &url, call(json!(1), "test_tool_with_logging", json!({})))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.json::<Value>().await.unwrap()["result"].is_object());
    stream.until(EVENT_LIMIT, |v| v["method"] == "notifications/message").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_09_a_json_only_clients_server_requests_are_refused_to_the_child() {
    let rig = Rig::fixture(config("row09-sampling")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row09-sampling", "2025-11-25", json!({"sampling":{}})).await;
    let answer = tokio::time::timeout(
        ANSWER_LIMIT,
        s.post(&c, &url, call(json!(1), "test_sampling", json!({"prompt":"R09"})))
            .header("accept", "application/json")
            .send(),
    )
    .await
    .expect("the call is answered at once: its sampling request was refused")
    .unwrap();
    assert_eq!(answer.status(), 200);
    let v: Value = answer.json().await.unwrap();
    assert!(v.to_string().contains("-32601"), "the child heard -32601: {v}");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 10: Accept on GET
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_10_a_get_must_accept_event_stream() {
    let rig = Rig::fixture(config("row10")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row10", "2025-11-25", json!({})).await;
    // Queue a notification for s while it has no stream.
    let sub = json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://watched-resource"}});
    assert_eq!(s.call(&c, &url, sub.to_string()).await.0, 200);
    let (status, v) =
        s.call(&c, &url, call(json!(2), "touch_resource", json!({"uri":"test://watched-resource"}))).await;
    assert_eq!(status, 200, "{v}");
    assert!(result_text(&v).contains("notified: true"), "{v}");
    assert_eq!(s.call(&c, &url, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#.into()).await.0, 200);

    for accept in ["application/json", "text/html"] {
        for sid in [s.id.as_str(), "no-such-session"] {
            let r = c
                .get(&url)
                .header("accept", accept)
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", "2025-11-25")
                .send()
                .await
                .unwrap();
            let v = refused(r, 406, -32600).await;
            assert_eq!(message(&v), "Accept must include text/event-stream", "{v}");
            no_id(&v);
        }
    }
    // Nothing queued was consumed.
    let mut stream = get_stream(&c, &url, &s).await;
    stream.until(EVENT_LIMIT, |v| v["method"] == "notifications/resources/updated").await;
    drop(stream);
    // A missing Accept and */* pass.
    for accept in [None, Some("*/*")] {
        let mut b = c.get(&url).header("mcp-session-id", &s.id).header("mcp-protocol-version", "2025-11-25");
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let r = b.send().await.unwrap();
        assert_eq!(r.status(), 200, "{accept:?}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    }
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_10_get_sse_must_accept_event_stream() {
    let rig = Rig::fixture(config("row10-sse")).await;
    let c = http();
    let r = c.get(format!("{}/sse", rig.base())).header("accept", "application/json").send().await.unwrap();
    let v = refused(r, 406, -32600).await;
    assert_eq!(message(&v), "Accept must include text/event-stream");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 11: unknown sessions
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_11_unknown_and_deleted_sessions_get_404() {
    let rig = Rig::fixture(config("row11")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let long = "x".repeat(1000);
    for sid in ["never-minted", "../../etc/passwd", "00000000000000000000000000000000", long.as_str()] {
        let r = post(&c, &url, echo(json!(1), "R11-refused"))
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(message(&refused(r, 404, -31001).await), "session not found");
        let r = c.get(&url).header("accept", "text/event-stream").header("mcp-session-id", sid).send().await.unwrap();
        assert_eq!(message(&refused(r, 404, -31001).await), "session not found");
    }
    // Deleted.
    let s = open(&c, &url, "row11", "2025-11-25", json!({})).await;
    assert_eq!(c.delete(&url).header("mcp-session-id", &s.id).send().await.unwrap().status(), 204);
    refused(s.post(&c, &url, echo(json!(2), "R11-refused")).send().await.unwrap(), 404, -31001).await;
    let r = c.get(&url).header("accept", "text/event-stream").header("mcp-session-id", &s.id).send().await.unwrap();
    refused(r, 404, -31001).await;
    // initialize with an unknown id: a new session.
    let r = post(&c, &url, INIT_BODY.replace("R06-init", "row11-new"))
        .header("mcp-session-id", "never-minted")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let minted = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert_ne!(minted, "never-minted");
    // initialize with a live id: refused, id echoed.
    let again = INIT_BODY.replace("R06-init", "R11-again").replace(r#""id":0"#, r#""id":9"#);
    let v = refused(post(&c, &url, again).header("mcp-session-id", w.id()).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), "session already initialized");
    assert_eq!(v["id"], 9, "{v}");
    w.check().await;
    assert!(!rig.child_saw("R11-"), "a refused request reached a child");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_11_a_session_idle_past_its_ttl_is_not_found() {
    let mut cfg = config("row11-ttl");
    cfg.limits.session_idle_ttl_secs = 1;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row11-ttl", "2025-11-25", json!({})).await;
    // s idles past the TTL while the witness keeps busy.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        w.sess.echo_ok(&c, &url, "busy").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    refused(s.post(&c, &url, echo(json!(1), "late")).send().await.unwrap(), 404, -31001).await;
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_11_a_modern_request_ignores_the_session_header() {
    let rig = Rig::fixture(config("row11-modern")).await;
    let url = rig.url();
    let c = http();
    let body = modern_body(json!(1), "tools/call", json!({"name":"echo","arguments":{"text":"modern"}}));
    let r = modern_post(&c, &url, "tools/call", Some("echo"), body)
        .header("mcp-session-id", "never-minted")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none(), "a session id was echoed");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 12: requests that need a session
// ---------------------------------------------------------------------------------------

const NEEDS_SESSION: &str = "needs a session: send initialize first";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12_session_only_requests_without_a_session_get_400() {
    let rig = Rig::fixture(config("row12")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let r = c.get(&url).header("accept", "text/event-stream").send().await.unwrap();
    let v = refused(r, 400, -32600).await;
    assert_eq!(message(&v), NEEDS_SESSION);
    no_id(&v);
    for (id, method, params) in [
        (json!(11), "resources/subscribe", json!({"uri":"test://R12-sub"})),
        (json!(12), "resources/unsubscribe", json!({"uri":"test://R12-unsub"})),
        (json!("s13"), "logging/setLevel", json!({"level":"emergency"})),
    ] {
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
        let r = post(&c, &url, body).header("mcp-protocol-version", "2025-11-25").send().await.unwrap();
        let v = refused(r, 400, -32600).await;
        assert_eq!(message(&v), NEEDS_SESSION, "{method}");
        assert_eq!(v["id"], id, "{method}: {v}");
    }
    let r = post(&c, &url, r#"{"jsonrpc":"2.0","id":5,"result":{"R12":"R12-response"}}"#).send().await.unwrap();
    let v = refused(r, 400, -32600).await;
    assert_eq!(message(&v), NEEDS_SESSION);
    no_id(&v);

    // Other sessionless requests are served statelessly.
    let r = post(&c, &url, echo(json!(6), "R12-ok")).header("mcp-protocol-version", "2025-11-25").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none(), "a session id was minted");
    assert_eq!(result_text(&r.json().await.unwrap()), "R12-ok");
    let r = post(&c, &url, r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    // Progress rides the POST's SSE stream.
    let body = json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{
        "name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"R12-progress"}}});
    let r = post(&c, &url, body.to_string()).header("accept", BOTH).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let events = Sse::new(r).until(EVENT_LIMIT, |v| v["id"] == 8).await;
    let progress: Vec<Value> =
        events.iter().filter_map(Event::json).filter(|v| v["method"] == "notifications/progress").collect();
    assert!(!progress.is_empty(), "no progress on the POST's stream: {events:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "R12-progress"), "{progress:?}");

    w.check().await;
    for m in ["R12-sub", "R12-unsub", "R12-response", "\"emergency\""] {
        assert!(!rig.child_saw(m), "{m} reached a child");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12_sessionless_server_requests_are_refused_to_the_child() {
    // The fake child asks its client for a sampling whatever the client declared.
    let rig = Rig::fake(config("row12-ask"), &[]).await;
    let url = rig.url();
    let c = http();
    for accept in [None, Some(BOTH)] {
        let mut b = post(&c, &url, call(json!(7), "ask", json!({})));
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let (status, v) = tokio::time::timeout(ANSWER_LIMIT, async { answer(b.send().await.unwrap()).await })
            .await
            .expect("answered at once: the server->client request was refused to the child");
        assert_eq!(status, 200, "{v}");
        let heard: Value = serde_json::from_str(result_text(&v)).unwrap();
        assert_eq!(heard["error"]["code"], -32601, "the child heard {heard}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12_sessionless_log_notifications_ride_the_post_stream() {
    let rig = Rig::fixture(config("row12-log")).await;
    let url = rig.url();
    let c = http();
    let r = post(&c, &url, call(json!(1), "test_tool_with_logging", json!({})))
        .header("accept", BOTH)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = Sse::new(r).until(EVENT_LIMIT, |v| v["id"] == 1).await;
    assert!(
        events.iter().filter_map(Event::json).any(|v| v["method"] == "notifications/message"),
        "no log notification on the POST's stream: {events:?}"
    );
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 13: DELETE
// ---------------------------------------------------------------------------------------

/// The child-side id of the first `tools/call` a child received whose arguments `pick` accepts.
fn upstream_id(rig: &Rig, pick: impl Fn(&Value) -> bool) -> Value {
    rig.child_lines()
        .into_iter()
        .find(|l| l["method"] == "tools/call" && pick(&l["params"]["arguments"]))
        .map(|l| l["id"].clone())
        .expect("the call reached a child")
}

/// The `notifications/cancelled` lines children received.
fn cancellations(rig: &Rig) -> Vec<Value> {
    rig.child_lines().into_iter().filter(|l| l["method"] == "notifications/cancelled").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_13_delete_rules() {
    // One shared child: a cancellation must name the right call on it.
    let mut cfg = config("row13");
    cfg.stdio.mode = StdioMode::Shared;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let v = refused(c.delete(&url).send().await.unwrap(), 400, -32600).await;
    no_id(&v);
    refused(c.delete(&url).header("mcp-session-id", "never-minted").send().await.unwrap(), 404, -31001).await;

    let a = open(&c, &url, "row13-a", "2025-11-25", json!({})).await;
    let b = open(&c, &url, "row13-b", "2025-11-25", json!({})).await;
    let a_call = tokio::spawn(a.post(&c, &url, call(json!(9), "sleep", json!({"ms": 600_000}))).send());
    rig.wait_child_saw(r#""ms":600000"#).await;
    let b_call = tokio::spawn(b.post(&c, &url, call(json!(9), "sleep", json!({"ms": 1500}))).send());
    rig.wait_child_saw(r#""ms":1500"#).await;

    assert_eq!(c.delete(&url).header("mcp-session-id", &a.id).send().await.unwrap().status(), 204);
    // a's call is cancelled at the child, under the child's id.
    let up = upstream_id(&rig, |args| args["ms"] == 600_000);
    let cancelled = async {
        while !cancellations(&rig).iter().any(|l| l["params"]["requestId"] == up) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(ANSWER_LIMIT, cancelled).await.expect("the deleted session's call is cancelled upstream");
    // b's call, with the same client id, is untouched.
    let r = b_call.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(result_text(&r.json().await.unwrap()), "slept 1500 ms");
    // Gone for good.
    refused(c.delete(&url).header("mcp-session-id", &a.id).send().await.unwrap(), 404, -31001).await;
    refused(a.post(&c, &url, echo(json!(1), "late")).send().await.unwrap(), 404, -31001).await;
    b.echo_ok(&c, &url, "b lives").await;
    w.check().await;
    a_call.abort();
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 14: MCP-Protocol-Version
// ---------------------------------------------------------------------------------------

fn check_supported(v: &Value) {
    let mut got: Vec<&str> = v["error"]["data"]["supported"]
        .as_array()
        .unwrap_or_else(|| panic!("data.supported: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, LEGACY.to_vec(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_14_unsupported_version_headers_get_400() {
    let rig = Rig::fixture(config("row14")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = &w.sess;
    for bad in ["invalid-protocol-version", "2000-01-01", "2099-01-01"] {
        let list = r#"{"jsonrpc":"2.0","id":20,"method":"tools/list","params":{"R14":"R14-refused"}}"#;
        let r = post(&c, &url, list)
            .header("mcp-session-id", &s.id)
            .header("mcp-protocol-version", bad)
            .send()
            .await
            .unwrap();
        let v = refused(r, 400, -32600).await;
        assert_eq!(message(&v), "unsupported MCP-Protocol-Version", "{bad}");
        check_supported(&v);
        let r = post(&c, &url, list).header("mcp-protocol-version", bad).send().await.unwrap();
        check_supported(&refused(r, 400, -32600).await);
        let r = c
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &s.id)
            .header("mcp-protocol-version", bad)
            .send()
            .await
            .unwrap();
        check_supported(&refused(r, 400, -32600).await);
    }
    // A missing header means the session's revision; another supported one is served.
    let r = post(&c, &url, echo(json!(1), "no header")).header("mcp-session-id", &s.id).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&c, &url, echo(json!(2), "older"))
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // initialize is not checked: its body negotiates.
    let r = post(&c, &url, INIT_BODY.replace("R06-init", "row14"))
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_some());
    w.check().await;
    assert!(!rig.child_saw("R14-refused"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_14_delete_checks_the_version_header() {
    let rig = Rig::fixture(config("row14-delete")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row14-delete", "2025-11-25", json!({})).await;
    let r = c
        .delete(&url)
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    check_supported(&refused(r, 400, -32600).await);
    s.echo_ok(&c, &url, "still here").await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 15: session and child caps
// ---------------------------------------------------------------------------------------

fn check_retry_after(h: &reqwest::header::HeaderMap) {
    let ra = h.get("retry-after").unwrap_or_else(|| panic!("no Retry-After: {h:?}"));
    let secs: u64 = ra.to_str().unwrap().parse().unwrap_or_else(|_| panic!("Retry-After is whole seconds: {ra:?}"));
    assert!(secs >= 1, "{ra:?}");
}

async fn limit_reached(r: reqwest::Response) -> Value {
    assert!(r.headers().get("mcp-session-id").is_none(), "a session was minted");
    check_retry_after(r.headers());
    let v = refused(r, 503, -31002).await;
    assert_eq!(message(&v), "session limit reached");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_15_the_session_cap_gives_503_with_retry_after() {
    let mut cfg = config("row15");
    cfg.limits.max_sessions = 2;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let b = open(&c, &url, "row15-b", "2025-11-25", json!({})).await;
    let children = rig.child_pids().len();
    limit_reached(post(&c, &url, INIT_BODY.replace("R06-init", "R15-over")).send().await.unwrap()).await;
    assert_eq!(rig.child_pids().len(), children, "a child was started past the cap");
    // Requests that open no session are not counted.
    let r = post(&c, &url, r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    b.echo_ok(&c, &url, "b").await;
    w.check().await;
    assert!(!rig.child_saw("R15-over"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_15_the_child_cap_gives_503_with_retry_after() {
    let mut cfg = config("row15-children");
    cfg.stdio.max_session_children = 2;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let b = open(&c, &url, "row15-b", "2025-11-25", json!({})).await;
    let children = rig.child_pids().len();
    limit_reached(post(&c, &url, INIT_BODY.replace("R06-init", "R15-over")).send().await.unwrap()).await;
    assert_eq!(rig.child_pids().len(), children, "a child was started past the cap");
    b.echo_ok(&c, &url, "b").await;
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_15_idle_sessions_are_reaped_before_refusing() {
    let mut cfg = config("row15-reap");
    cfg.limits.max_sessions = 2;
    cfg.limits.session_idle_ttl_secs = 1;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let b = open(&c, &url, "row15-idle", "2025-11-25", json!({})).await;
    // b idles past the TTL while the witness keeps busy.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        w.sess.echo_ok(&c, &url, "busy").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = tokio::time::timeout(ANSWER_LIMIT, post(&c, &url, INIT_BODY.replace("R06-init", "row15-new")).send())
        .await
        .expect("initialize is answered while an idle session is reaped")
        .unwrap();
    assert_eq!(r.status(), 200, "the idle session was not reaped first");
    refused(b.post(&c, &url, echo(json!(1), "late")).send().await.unwrap(), 404, -31001).await;
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_15_get_sse_at_the_session_cap_gives_503() {
    let mut cfg = config("row15-sse");
    cfg.limits.max_sessions = 1;
    let rig = Rig::fixture(cfg).await;
    let c = http();
    let _w = Witness::open(&rig.url()).await;
    let r = c.get(format!("{}/sse", rig.base())).header("accept", "text/event-stream").send().await.unwrap();
    limit_reached(r).await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 16: queue bounds
// ---------------------------------------------------------------------------------------

/// Requests (in `s`, or sessionless) towards a stalled child, up to `max`, until one is
/// refused at once: the refusal, and the requests left waiting (abort them when done).
async fn fill_queue(
    c: &reqwest::Client,
    url: &str,
    s: Option<&Sess>,
    max: usize,
) -> (reqwest::Response, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiting = Vec::new();
    for i in 0..max {
        let body = echo(json!(format!("q{i}")), &format!("R16-queued-{i}"));
        let req = match s {
            Some(s) => s.post(c, url, body),
            None => post(c, url, body),
        };
        let tx = tx.clone();
        waiting.push(tokio::spawn(async move {
            let _ = tx.send(req.send().await);
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Ok(r) = rx.try_recv() {
            return (r.unwrap(), waiting);
        }
    }
    let r = tokio::time::timeout(ANSWER_LIMIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{max} requests towards a stalled child, and none refused"))
        .unwrap()
        .unwrap();
    (r, waiting)
}

fn stalled_config(name: &str) -> apiary_config::RunConfig {
    let mut cfg = config(name);
    cfg.limits.max_queued_per_session = 2;
    cfg
}

async fn queue_full(r: reqwest::Response, status: u16) {
    check_retry_after(r.headers());
    assert_eq!(message(&refused(r, status, -31003).await), "queue full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_16_a_full_session_queue_gets_429() {
    let rig = Rig::fake(stalled_config("row16"), &["--stall-client", "stall"]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "stall", "2025-11-25", json!({})).await;
    let (r, waiting) = fill_queue(&c, &url, Some(&s), 50).await;
    queue_full(r, 429).await;
    // The next request is refused the same way, at once, and is not enqueued.
    let r = tokio::time::timeout(ANSWER_LIMIT, s.post(&c, &url, echo(json!(1), "R16-late")).send())
        .await
        .expect("refused at once")
        .unwrap();
    queue_full(r, 429).await;
    // Other sessions' queues are unaffected.
    w.check().await;
    let t = open(&c, &url, "row16-other", "2025-11-25", json!({})).await;
    t.echo_ok(&c, &url, "other").await;
    assert!(!rig.child_saw("R16-late"));
    for t in waiting {
        t.abort();
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_16_a_notification_past_a_full_session_queue_gets_429() {
    let rig = Rig::fake(stalled_config("row16-note"), &["--stall-client", "stall"]).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "stall", "2025-11-25", json!({})).await;
    let (r, waiting) = fill_queue(&c, &url, Some(&s), 50).await;
    queue_full(r, 429).await;
    let note = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed","params":{"R16":"R16-note"}});
    queue_full(s.post(&c, &url, note.to_string()).send().await.unwrap(), 429).await;
    assert!(!rig.child_saw("R16-note"));
    for t in waiting {
        t.abort();
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_16_cancellations_are_never_refused_for_a_full_queue() {
    let rig = Rig::fake(stalled_config("row16-cancel"), &["--stall-client", "stall"]).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "stall", "2025-11-25", json!({})).await;
    let (r, waiting) = fill_queue(&c, &url, Some(&s), 50).await;
    queue_full(r, 429).await;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"q0","reason":"R16"}});
    let r = s.post(&c, &url, cancel.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    for t in waiting {
        t.abort();
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_16_a_full_shared_queue_gets_503_for_sessionless_requests() {
    // The shared child (which Apiary initializes as "apiary") stalls.
    let rig = Rig::fake(stalled_config("row16-shared"), &["--stall-client", "apiary"]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let (r, waiting) = fill_queue(&c, &url, None, 4000).await;
    queue_full(r, 503).await;
    w.check().await;
    for t in waiting {
        t.abort();
    }
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 17: responses nobody asked for
// ---------------------------------------------------------------------------------------

fn sampling_answer(id: &Value, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","content":{"type":"text","text":text},"model":"m"}})
        .to_string()
}

const NO_OUTSTANDING: &str = "no outstanding request with this id";

/// Starts `test_sampling` in `s` on an SSE stream; returns the stream and the sampling
/// request's id as the client sees it.
async fn sampling_request(c: &reqwest::Client, url: &str, s: &Sess, call_id: i64) -> (Sse, Value) {
    let r = s
        .post(c, url, call(json!(call_id), "test_sampling", json!({"prompt":"R17"})))
        .header("accept", BOTH)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = Sse::new(r);
    let req =
        stream.until(EVENT_LIMIT, |v| v["method"] == "sampling/createMessage").await.pop().unwrap().json().unwrap();
    (stream, req["id"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_17_responses_to_requests_never_made_are_refused() {
    let rig = Rig::fixture(config("row17")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let a = open(&c, &url, "row17-a", "2025-11-25", json!({"sampling":{}})).await;
    let b = open(&c, &url, "row17-b", "2025-11-25", json!({"sampling":{}})).await;
    let (mut stream, asked) = sampling_request(&c, &url, &a, 1).await;
    // Never sent.
    for bogus in [json!("never-sent"), json!(424_242)] {
        let v =
            refused(a.post(&c, &url, sampling_answer(&bogus, "R17-never")).send().await.unwrap(), 400, -32600).await;
        assert_eq!(message(&v), NO_OUTSTANDING);
        no_id(&v);
    }
    // Sent to another session.
    let v = refused(b.post(&c, &url, sampling_answer(&asked, "R17-from-b")).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    no_id(&v);
    // The genuine answer settles it, exactly once.
    let r = a.post(&c, &url, sampling_answer(&asked, "R17-genuine")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let done = stream.until(EVENT_LIMIT, |v| v["id"] == 1).await.pop().unwrap().json().unwrap();
    assert!(result_text(&done).contains("R17-genuine"), "{done}");
    let v = refused(a.post(&c, &url, sampling_answer(&asked, "R17-again")).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    b.echo_ok(&c, &url, "b").await;
    w.check().await;
    for m in ["R17-never", "R17-from-b", "R17-again"] {
        assert!(!rig.child_saw(m), "{m} reached a child");
    }
    assert!(rig.child_saw("R17-genuine"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_17_requests_withdrawn_when_the_child_died_cannot_be_answered() {
    let rig = Rig::fixture(config("row17-died")).await;
    let url = rig.url();
    let c = http();
    let a = open(&c, &url, "row17-died", "2025-11-25", json!({"sampling":{}})).await;
    let pid: u32 = a.child_pid(&c, &url).await.parse().unwrap();
    let (mut stream, asked) = sampling_request(&c, &url, &a, 1).await;
    rig::kill(&[pid]);
    let failed = stream.until(EVENT_LIMIT, |v| v["id"] == 1).await.pop().unwrap().json().unwrap();
    assert_eq!(failed["error"]["code"], -31004, "{failed}");
    let v = refused(a.post(&c, &url, sampling_answer(&asked, "R17-late")).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    // Still refused once the child is back.
    let back = async {
        while a.call(&c, &url, echo(json!(2), "back")).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), back).await.expect("the child restarts");
    let v = refused(a.post(&c, &url, sampling_answer(&asked, "R17-late")).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    assert!(!rig.child_saw("R17-late"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_17_modern_clients_may_not_send_responses() {
    let rig = Rig::fixture(config("row17-modern")).await;
    let c = http();
    let r = post(&c, &rig.url(), sampling_answer(&json!(1), "R17-modern"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("accept", BOTH)
        .send()
        .await
        .unwrap();
    let v = refused(r, 400, -32600).await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    no_id(&v);
    assert!(!rig.child_saw("R17-modern"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_17_stray_responses_on_messages_are_refused() {
    let rig = Rig::fixture(config("row17-messages")).await;
    let c = http();
    let (_sse, messages) = open_sse_session(&c, &rig.base()).await;
    let v =
        refused(post(&c, &messages, sampling_answer(&json!(77), "R17-messages")).send().await.unwrap(), 400, -32600)
            .await;
    assert_eq!(message(&v), NO_OUTSTANDING);
    assert!(!rig.child_saw("R17-messages"));
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 18: duplicate ids in flight
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_18_an_id_in_flight_cannot_be_reused_in_its_session() {
    let rig = Rig::fixture(config("row18")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row18", "2025-11-25", json!({})).await;
    for (n, id) in [json!(5), json!("dup")].into_iter().enumerate() {
        let ms = 3001 + n as u64;
        let r = s
            .post(&c, &url, call(id.clone(), "sleep", json!({ "ms": ms })))
            .header("accept", BOTH)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut first = Sse::new(r);
        rig.wait_child_saw(&format!(r#""ms":{ms}"#)).await;
        let dup = json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{"R18":"R18-dup"}});
        let v = refused(s.post(&c, &url, dup.to_string()).send().await.unwrap(), 400, -32600).await;
        assert_eq!(message(&v), "request id already in flight");
        assert_eq!(v["id"], id, "{v}");
        // The earlier request continues and gets exactly one response.
        let events: Vec<Value> = first.rest(Duration::from_secs(30)).await.iter().filter_map(Event::json).collect();
        let answers: Vec<&Value> = events.iter().filter(|v| v["id"] == id).collect();
        assert_eq!(answers.len(), 1, "{events:?}");
        assert_eq!(result_text(answers[0]), format!("slept {ms} ms"));
        // Answered: the id is free again.
        let (status, v) = s.call(&c, &url, echo(id.clone(), "again")).await;
        assert_eq!(status, 200, "{v}");
    }
    // Sessionless requests share no id space.
    let slow = tokio::spawn(post(&c, &url, call(json!(7), "sleep", json!({"ms": 1501}))).send());
    rig.wait_child_saw(r#""ms":1501"#).await;
    let r = post(&c, &url, echo(json!(7), "R18-concurrent"))
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(result_text(&r.json().await.unwrap()), "R18-concurrent");
    let r = slow.await.unwrap().unwrap();
    assert_eq!(result_text(&r.json().await.unwrap()), "slept 1501 ms");
    w.check().await;
    assert!(!rig.child_saw("R18-dup"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_18_an_id_is_free_again_once_cancelled() {
    let rig = Rig::fixture(config("row18-cancel")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row18-cancel", "2025-11-25", json!({})).await;
    let first = tokio::spawn(s.post(&c, &url, call(json!(6), "sleep", json!({"ms": 600_000}))).send());
    rig.wait_child_saw(r#""ms":600000"#).await;
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":6,"reason":"R18"}});
    assert_eq!(s.post(&c, &url, cancel.to_string()).send().await.unwrap().status(), 202);
    let (status, v) = s.call(&c, &url, echo(json!(6), "reused")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "reused");
    first.abort();
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_18_a_duplicate_id_on_messages_is_refused_in_the_post_answer() {
    let rig = Rig::fixture(config("row18-messages")).await;
    let c = http();
    let (_sse, messages) = open_sse_session(&c, &rig.base()).await;
    let r = post(&c, &messages, call(json!(5), "sleep", json!({"ms": 3003}))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    rig.wait_child_saw(r#""ms":3003"#).await;
    let v = refused(post(&c, &messages, echo(json!(5), "R18-messages")).send().await.unwrap(), 400, -32600).await;
    assert_eq!(message(&v), "request id already in flight");
    assert_eq!(v["id"], 5);
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 19: bad cancellations
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_19_bad_cancellations_are_accepted_and_dropped() {
    let mut cfg = config("row19");
    cfg.stdio.mode = StdioMode::Shared;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let a = open(&c, &url, "row19-a", "2025-11-25", json!({})).await;
    let b = open(&c, &url, "row19-b", "2025-11-25", json!({})).await;
    // a: one finished call (3) and one in flight (8); b: one in flight (7).
    let (status, _) = a.call(&c, &url, echo(json!(3), "finished")).await;
    assert_eq!(status, 200);
    let b_call = tokio::spawn(b.post(&c, &url, call(json!(7), "sleep", json!({"ms": 2500}))).send());
    rig.wait_child_saw(r#""ms":2500"#).await;
    let a_call = tokio::spawn(a.post(&c, &url, call(json!(8), "sleep", json!({"ms": 600_000}))).send());
    rig.wait_child_saw(r#""ms":600000"#).await;

    let before = cancellations(&rig).len();
    for (what, params) in [
        ("an unknown id", Some(json!({"requestId": 99, "reason": "R19"}))),
        ("a finished id", Some(json!({"requestId": 3, "reason": "R19"}))),
        ("another session's id", Some(json!({"requestId": 7, "reason": "R19"}))),
        ("initialize's id", Some(json!({"requestId": 0, "reason": "R19"}))),
        ("no params", None),
        ("an object requestId", Some(json!({"requestId": {"x": 1}, "reason": "R19"}))),
        ("no requestId", Some(json!({"reason": "R19"}))),
        ("params that are a string", Some(json!("R19"))),
    ] {
        let mut n = json!({"jsonrpc":"2.0","method":"notifications/cancelled"});
        if let Some(p) = params {
            n["params"] = p;
        }
        let r = a.post(&c, &url, n.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 202, "{what}");
        assert!(r.bytes().await.unwrap().is_empty(), "{what}: 202 has no body");
        assert_eq!(cancellations(&rig).len(), before, "{what} was forwarded to the child");
    }
    // b's call was not cancelled.
    let r = b_call.await.unwrap().unwrap();
    assert_eq!(result_text(&r.json().await.unwrap()), "slept 2500 ms");
    // A known id is mapped to the child's id before forwarding.
    let up = upstream_id(&rig, |args| args["ms"] == 600_000);
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":8,"reason":"R19-known"}});
    assert_eq!(a.post(&c, &url, cancel.to_string()).send().await.unwrap().status(), 202);
    let forwarded = async {
        loop {
            if let Some(l) = cancellations(&rig).into_iter().find(|l| l["params"]["reason"] == "R19-known") {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let l = tokio::time::timeout(ANSWER_LIMIT, forwarded).await.expect("the known cancellation is forwarded");
    assert_eq!(l["params"]["requestId"], up, "{l}");
    a_call.abort();
    w.check().await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 20: Last-Event-ID
// ---------------------------------------------------------------------------------------

/// A GET stream request on `s` resuming after `last`.
async fn resume(c: &reqwest::Client, url: &str, s: &Sess, last: &str) -> reqwest::Response {
    c.get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", &s.revision)
        .header("last-event-id", last)
        .send()
        .await
        .unwrap()
}

/// The id of the first event of a POST's SSE answer in `s` (its priming event).
async fn first_event_id(c: &reqwest::Client, url: &str, s: &Sess, body: String) -> (Sse, String) {
    // SSE only: with both admitted, a quick answer is a JSON body, which has no event id.
    let r = s.post(c, url, body).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = Sse::new(r);
    let first = stream.next(EVENT_LIMIT).await.expect("a first event");
    (stream, first.id.unwrap_or_else(|| panic!("the first event has no id")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_20_an_unknown_last_event_id_is_refused() {
    let rig = Rig::fixture(config("row20-unknown")).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row20-s", "2025-11-25", json!({})).await;
    let t = open(&c, &url, "row20-t", "2025-11-25", json!({})).await;
    // Every event id s was issued, and t's ids (t has more streams and events than s).
    let ids = |events: Vec<Event>| events.into_iter().filter_map(|e| e.id).collect::<Vec<String>>();
    let (mut own, first) = first_event_id(&c, &url, &s, echo(json!(1), "s")).await;
    let mut s_ids = vec![first];
    s_ids.extend(ids(own.rest(EVENT_LIMIT).await));
    let mut t_ids = Vec::new();
    for i in 0..3 {
        let (mut other, first) = first_event_id(&c, &url, &t, echo(json!(i), "t")).await;
        t_ids.push(first);
        t_ids.extend(ids(other.rest(EVENT_LIMIT).await));
    }
    let foreign = t_ids.iter().find(|id| !s_ids.contains(id)).expect("an id t was issued and s was not").clone();
    let last = s_ids.last().unwrap().clone();
    for bad in ["garbage".to_owned(), format!("{last}999999"), foreign] {
        let v = refused(resume(&c, &url, &s, &bad).await, 400, -32600).await;
        assert_eq!(message(&v), "unknown Last-Event-ID", "{bad}");
    }
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_20_an_evicted_last_event_id_gets_409() {
    let mut cfg = config("row20-evicted");
    cfg.limits.event_buffer_bytes = 1;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row20-evicted", "2025-11-25", json!({})).await;
    let (mut stream, first) = first_event_id(&c, &url, &s, call(json!(1), "test_tool_with_logging", json!({}))).await;
    stream.until(EVENT_LIMIT, |v| v["id"] == 1).await;
    let v = refused(resume(&c, &url, &s, &first).await, 409, -31005).await;
    assert_eq!(message(&v), "events after this id were evicted");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_20_a_valid_last_event_id_resumes_the_stream() {
    let rig = Rig::fixture(config("row20-resume")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row20-resume", "2025-11-25", json!({})).await;
    let (stream, first) = first_event_id(&c, &url, &s, call(json!(4), "sleep", json!({"ms": 1500}))).await;
    drop(stream); // the client goes away before the answer
    let r = resume(&c, &url, &s, &first).await;
    assert_eq!(r.status(), 200);
    let events = Sse::new(r).until(Duration::from_secs(30), |v| v["id"] == 4).await;
    let answers: Vec<Value> = events.iter().filter_map(Event::json).filter(|v| v["id"] == 4).collect();
    assert_eq!(answers.len(), 1, "{events:?}");
    assert_eq!(result_text(&answers[0]), "slept 1500 ms");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Rows 21–23: the modern era (2026-07-28)
// ---------------------------------------------------------------------------------------

fn modern_call(id: i64, name: &str) -> String {
    modern_body(json!(id), "tools/call", json!({"name": name, "arguments": {"text": "R21-refused"}}))
}

fn header_value(bytes: &[u8]) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_bytes(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_21_modern_headers_must_match_the_body() {
    let rig = Rig::fixture(config("row21")).await;
    let url = rig.url();
    let c = http();
    let mp = |method: &str, name: Option<&str>, body: String| modern_post(&c, &url, method, name, body);
    let mut version_mismatch: Value = serde_json::from_str(&modern_call(7, "echo")).unwrap();
    version_mismatch["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let cases: Vec<(&str, i64, reqwest::RequestBuilder)> = vec![
        ("Mcp-Method", 1, mp("tools/list", Some("echo"), modern_call(1, "echo"))),
        ("Mcp-Name", 2, mp("tools/call", Some("other"), modern_call(2, "echo"))),
        ("Mcp-Name", 3, mp("tools/call", Some("=?base64?b3RoZXI=?="), modern_call(3, "echo"))),
        ("Mcp-Name", 4, mp("tools/call", Some("=?base64?SGVsbG8?="), modern_call(4, "Hello"))),
        (
            "Mcp-Name",
            5,
            mp("tools/call", None, modern_call(5, "echö")).header("mcp-name", header_value("echö".as_bytes())),
        ),
        ("Mcp-Name", 6, mp("tools/call", None, modern_call(6, "ec\tho")).header("mcp-name", header_value(b"ec\tho"))),
        ("MCP-Protocol-Version", 7, mp("tools/call", Some("echo"), version_mismatch.to_string())),
        (
            "Mcp-Method",
            8,
            post(&c, &url, modern_call(8, "echo"))
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-name", "echo"),
        ),
        ("Mcp-Name", 9, mp("tools/call", None, modern_call(9, "echo"))),
        (
            "Mcp-Name",
            10,
            mp(
                "resources/read",
                Some("test://other"),
                modern_body(json!(10), "resources/read", json!({"uri":"test://static-text","R21":"R21-refused"})),
            ),
        ),
        (
            "Mcp-Name",
            11,
            mp(
                "tasks/get",
                Some("t2"),
                modern_body(json!(11), "tasks/get", json!({"taskId":"t1","R21":"R21-refused"})),
            ),
        ),
    ];
    for (header, id, req) in cases {
        let v = refused(req.send().await.unwrap(), 400, -32020).await;
        assert_eq!(v["id"], id, "case {id}: {v}");
        assert!(
            message(&v).to_ascii_lowercase().contains(&header.to_ascii_lowercase()),
            "case {id} names {header}: {v}"
        );
    }
    // What passes: trimmed values, valid base64, a literal that only starts like the sentinel.
    for (id, name) in [(20, "  echo  "), (21, "=?base64?ZWNobw==?=")] {
        let r = mp(
            "tools/call",
            Some(name),
            modern_body(json!(id), "tools/call", json!({"name":"echo","arguments":{"text":"ok"}})),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{name:?}");
    }
    let literal = "=?base64?ZWNobw==";
    let r =
        mp("tools/call", Some(literal), modern_body(json!(22), "tools/call", json!({"name":literal,"arguments":{}})))
            .send()
            .await
            .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("-32020"), "{text}");
    // Notifications and legacy requests are not header-checked.
    let note = json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    assert_eq!(mp("tools/list", None, note.to_string()).send().await.unwrap().status(), 202);
    let r = post(&c, &url, echo(json!(30), "legacy")).header("mcp-method", "tools/list").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!rig.child_saw("R21-refused"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_22_modern_meta_must_be_complete_and_served() {
    let rig = Rig::fixture(config("row22")).await;
    let url = rig.url();
    let c = http();
    let full: Value = serde_json::from_str(&modern_call(1, "echo")).unwrap();
    let mut no_meta = full.clone();
    no_meta["params"].as_object_mut().unwrap().remove("_meta");
    let mut no_version = full.clone();
    no_version["params"]["_meta"].as_object_mut().unwrap().remove("io.modelcontextprotocol/protocolVersion");
    let mut no_caps = full.clone();
    no_caps["params"]["_meta"].as_object_mut().unwrap().remove("io.modelcontextprotocol/clientCapabilities");
    for (what, body) in [("no _meta", no_meta), ("no version", no_version), ("no capabilities", no_caps)] {
        let v = refused(
            modern_post(&c, &url, "tools/call", Some("echo"), body.to_string()).send().await.unwrap(),
            400,
            -32602,
        )
        .await;
        assert_eq!(v["id"], 1, "{what}: {v}");
    }
    // clientInfo may be absent (modern_body sends none).
    let r = modern_post(
        &c,
        &url,
        "tools/call",
        Some("echo"),
        modern_body(json!(2), "tools/call", json!({"name":"echo","arguments":{"text":"ok"}})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // Unserved versions.
    let r = modern_post(&c, &url, "server/discover", None, modern_body(json!(3), "server/discover", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let discover: Value = r.json().await.unwrap();
    let served: Vec<Value> = discover["result"]["supportedVersions"].as_array().cloned().unwrap_or_default();
    assert!(!served.is_empty(), "{discover}");
    for version in ["2099-01-01", "v999.0.0"] {
        let mut body = full.clone();
        body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(version);
        let r = post(&c, &url, body.to_string())
            .header("accept", BOTH)
            .header("mcp-protocol-version", version)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .send()
            .await
            .unwrap();
        let v = refused(r, 400, -32022).await;
        assert_eq!(v["id"], 1, "{v}");
        assert_eq!(v["error"]["data"]["requested"], version, "{v}");
        let supported = v["error"]["data"]["supported"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(!supported.is_empty() && supported.iter().all(|s| served.contains(s)), "{v} vs {served:?}");
    }
    assert!(!rig.child_saw("R21-refused"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_23_modern_calls_to_removed_methods_get_404() {
    let rig = Rig::fixture(config("row23")).await;
    let url = rig.url();
    let c = http();
    for (id, method, params) in [
        (
            1,
            "initialize",
            json!({"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"R23-init","version":"1"}}),
        ),
        (2, "ping", json!({"R23":"R23-ping"})),
        (3, "logging/setLevel", json!({"level":"emergency","R23":"R23-level"})),
        (4, "resources/subscribe", json!({"uri":"test://R23-sub"})),
        (5, "resources/unsubscribe", json!({"uri":"test://R23-unsub"})),
        (6, "foo/bar", json!({})),
    ] {
        let r = modern_post(&c, &url, method, None, modern_body(json!(id), method, params)).send().await.unwrap();
        let v = refused(r, 404, -32601).await;
        assert_eq!(v["id"], id, "{method}: {v}");
    }
    assert!(!rig.child_saw("R23-"), "a removed method reached the child");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_23_a_legacy_unknown_method_is_forwarded_and_answered_200() {
    let rig = Rig::fixture(config("row23-legacy")).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row23", "2025-11-25", json!({})).await;
    let (status, v) = s.call(&c, &url, r#"{"jsonrpc":"2.0","id":1,"method":"foo/bar"}"#.into()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -32601, "{v}");
    assert_eq!(v["id"], 1);
    assert!(rig.child_saw("foo/bar"));
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 24: /messages session_id
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_24_messages_needs_a_session_id_it_issued() {
    let rig = Rig::fixture(config("row24")).await;
    let base = rig.base();
    let c = http();
    let (mut sse, messages) = open_sse_session(&c, &base).await;
    for q in ["never-issued", "00000000000000000000000000000000"] {
        let r =
            post(&c, &format!("{base}/messages?session_id={q}"), echo(json!(1), "R24-refused")).send().await.unwrap();
        assert_eq!(message(&refused(r, 404, -31001).await), "session not found");
    }
    for url in [format!("{base}/messages"), format!("{base}/messages?session_id=")] {
        refused(post(&c, &url, echo(json!(1), "R24-refused")).send().await.unwrap(), 400, -32600).await;
    }
    // Accepted: 202, the answer on the session's stream.
    let r = post(&c, &messages, echo(json!(2), "R24-ok")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let answer = sse.until(EVENT_LIMIT, |v| v["id"] == 2).await.pop().unwrap().json().unwrap();
    assert_eq!(result_text(&answer), "R24-ok");
    // A closed stream's session is gone.
    let (closed, gone) = open_sse_session(&c, &base).await;
    drop(closed);
    let gone_404 = async {
        loop {
            let r = post(&c, &gone, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#).send().await.unwrap();
            if r.status() == 404 {
                return refused(r, 404, -31001).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(ANSWER_LIMIT, gone_404).await.expect("the closed stream's session ends");
    assert!(!rig.child_saw("R24-refused"));
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 25: junk from the child
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_25_junk_lines_from_the_child_are_dropped() {
    let rig = Rig::fake(config("row25"), &[]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row25", "2025-11-25", json!({})).await;
    let pid = s.child_pid(&c, &url).await;
    // A call in flight while the child writes junk.
    let r = s.post(&c, &url, call(json!(1), "hold", json!({}))).header("accept", BOTH).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut held = Sse::new(r);
    rig.wait_child_saw(r#""name":"hold""#).await;
    let (status, v) = s.call(&c, &url, call(json!(2), "noisy", json!({}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "noisy done");
    let (status, v) = s.call(&c, &url, call(json!(3), "release", json!({}))).await;
    assert_eq!(status, 200, "{v}");
    // The held call's stream carries its answer and nothing of the junk.
    let events = held.rest(EVENT_LIMIT).await;
    let messages: Vec<&Event> = events.iter().filter(|e| !e.data.is_empty()).collect();
    assert_eq!(messages.len(), 1, "{events:?}");
    let answer = messages[0].json().unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(result_text(&answer), "held");
    // The child kept running.
    assert_eq!(s.child_pid(&c, &url).await, pid);
    assert_eq!(rig.status().restarts, 0);
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_25_a_batch_line_from_a_2025_03_26_child_is_split() {
    let rig = Rig::fake(config("row25-batch"), &[]).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row25-batch", "2025-03-26", json!({})).await;
    assert_eq!(s.revision, "2025-03-26");
    let (status, v) = tokio::time::timeout(ANSWER_LIMIT, s.call(&c, &url, call(json!(1), "batchy", json!({}))))
        .await
        .expect("the answer inside the batch line arrives");
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "from a batch");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 26: lines over the line cap
// ---------------------------------------------------------------------------------------

const LINE_CAP: u64 = 64 * 1024;

async fn oversized_answer(name: &str) -> (Rig, Value) {
    let mut cfg = config(name);
    cfg.limits.max_line_bytes = LINE_CAP;
    let rig = Rig::fake(cfg, &[]).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, name, "2025-11-25", json!({})).await;
    let (status, v) =
        tokio::time::timeout(ANSWER_LIMIT, s.call(&c, &url, call(json!(7), "big", json!({"size": 300_000}))))
            .await
            .expect("the caller hears about its oversized answer at once");
    assert_eq!(status, 200, "{v}");
    (rig, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_26_an_oversized_line_fails_only_its_call() {
    let mut cfg = config("row26");
    cfg.limits.max_line_bytes = LINE_CAP;
    let rig = Rig::fake(cfg, &[]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row26", "2025-11-25", json!({})).await;
    let pid = s.child_pid(&c, &url).await;
    let (status, v) =
        tokio::time::timeout(ANSWER_LIMIT, s.call(&c, &url, call(json!(7), "big", json!({"size": 300_000}))))
            .await
            .expect("the caller hears about its oversized answer at once");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert_eq!(v["id"], 7, "{v}");
    assert!(message(&v).contains("exceeded"), "{v}");
    // Reading resumes at the next line.
    s.echo_ok(&c, &url, "next line").await;
    // An oversized line naming no call: nothing is sent, the next answer arrives.
    let (status, v) = s.call(&c, &url, call(json!(8), "big_note", json!({"size": 300_000}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_text(&v), "after");
    // The child was not killed.
    assert_eq!(s.child_pid(&c, &url).await, pid);
    assert_eq!(rig.status().restarts, 0);
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_26_the_error_names_the_line_cap() {
    let (rig, v) = oversized_answer("row26-message").await;
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(message(&v).contains(&format!("upstream message exceeded {LINE_CAP} bytes")), "{v}");
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 27: the upstream goes away
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_a_crashed_child_fails_its_calls_and_restarts() {
    let mut cfg = config("row27");
    // A long first backoff, so that a call can arrive during the restart.
    cfg.restart.backoff_initial_ms = 4000;
    cfg.restart.backoff_max_ms = 4000;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row27", "2025-11-25", json!({})).await;
    let pid = s.child_pid(&c, &url).await;
    // Two calls in flight: one answered as JSON, one on an SSE stream.
    let json_call = {
        let (c, url, s) = (c.clone(), url.clone(), s.clone());
        tokio::spawn(async move {
            let r = s.post(&c, &url, call(json!(1), "sleep", json!({"ms": 59_001}))).send().await.unwrap();
            (
                Instant::now(),
                r.status().as_u16(),
                r.headers()["content-type"].to_str().unwrap().to_owned(),
                r.text().await.unwrap(),
            )
        })
    };
    rig.wait_child_saw(r#""ms":59001"#).await;
    let r =
        s.post(&c, &url, call(json!(2), "sleep", json!({"ms": 59_002}))).header("accept", BOTH).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = Sse::new(r);
    rig.wait_child_saw(r#""ms":59002"#).await;
    let sse_call = tokio::spawn(async move {
        let last = stream.until(Duration::from_secs(30), |v| v["id"] == 2).await.pop().unwrap().json().unwrap();
        (Instant::now(), last)
    });
    // The child exits (status 3) while all three are in flight.
    let (status, crash) = s.call(&c, &url, call(json!(3), "crash", json!({}))).await;
    let crashed = Instant::now();
    assert_eq!(status, 200, "{crash}");
    assert_eq!((crash["id"].clone(), crash["error"]["code"].clone()), (json!(3), json!(-31004)), "{crash}");
    let (at, status, ct, text) = json_call.await.unwrap();
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(1), json!(-31004)), "{v}");
    assert!(at.max(crashed) - at.min(crashed) < Duration::from_secs(1), "the JSON call heard late");
    let (at, last) = sse_call.await.unwrap();
    assert_eq!(last["error"]["code"], -31004, "the SSE call's final event: {last}");
    assert!(at.max(crashed) - at.min(crashed) < Duration::from_secs(1), "the SSE call heard late");
    // During the restart: 503 + Retry-After + -31004.
    let r = s.post(&c, &url, echo(json!(4), "during")).send().await.unwrap();
    check_retry_after(r.headers());
    refused(r, 503, -31004).await;
    // Afterwards the session is still valid, on a new child.
    let back = async {
        loop {
            let (status, v) = s.call(&c, &url, echo(json!(5), "after")).await;
            match status {
                200 => return v,
                503 => tokio::time::sleep(Duration::from_millis(200)).await,
                other => panic!("{other}: {v}"),
            }
        }
    };
    let v = tokio::time::timeout(Duration::from_secs(30), back).await.expect("the child restarts");
    assert_eq!(result_text(&v), "after");
    assert_ne!(s.child_pid(&c, &url).await, pid, "the child was restarted");
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_a_child_that_closes_stdout_fails_its_calls() {
    let rig = Rig::fake(config("row27-stdout"), &[]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row27-stdout", "2025-11-25", json!({})).await;
    let r = s.post(&c, &url, call(json!(1), "hold", json!({}))).header("accept", BOTH).send().await.unwrap();
    let mut held = Sse::new(r);
    rig.wait_child_saw(r#""name":"hold""#).await;
    let (status, v) = s.call(&c, &url, call(json!(2), "close_stdout", json!({}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -31004, "{v}");
    let last = held.until(EVENT_LIMIT, |v| v["id"] == 1).await.pop().unwrap().json().unwrap();
    assert_eq!(last["error"]["code"], -31004, "{last}");
    w.check().await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_past_the_crash_loop_limit_the_upstream_is_down() {
    let mut cfg = config("row27-down");
    cfg.restart.max_restarts = 0;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    // Sessionless calls run on the shared child; crash it.
    let r = post(&c, &url, call(json!(1), "crash", json!({}))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(1), json!(-31004)), "{v}");
    let r = post(&c, &url, echo(json!(2), "down")).send().await.unwrap();
    check_retry_after(r.headers());
    refused(r, 503, -31004).await;
    let down = async {
        while c.get(format!("{}/health", rig.base())).send().await.unwrap().status() != 503 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(ANSWER_LIMIT, down).await.expect("/health reports the upstream down");
    // Sessions on other children are untouched.
    w.check().await;
    rig.stop().await;
}

/// A call through an HTTP upstream that failed: 200 JSON with -31004 and the id.
async fn upstream_unavailable(url: &str) {
    let c = http();
    let r = post(&c, url, echo(json!(1), "x")).header("accept", BOTH).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = check_error(&r.text().await.unwrap(), -31004);
    assert_eq!(v["id"], 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_an_unreachable_http_upstream_answers_calls_with_31004() {
    let rig = HttpRig::in_front_of("row27-refused", &rig::unreachable_url().await, |_| {}).await;
    upstream_unavailable(&rig.url()).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_a_reset_http_connection_answers_calls_with_31004() {
    let rig = HttpRig::in_front_of("row27-reset", &rig::broken_upstream(rig::Broken::Reset).await, |_| {}).await;
    upstream_unavailable(&rig.url()).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_an_http_upstream_5xx_answers_calls_with_31004() {
    let broken = rig::Broken::Answer("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let rig = HttpRig::in_front_of("row27-5xx", &rig::broken_upstream(broken).await, |_| {}).await;
    upstream_unavailable(&rig.url()).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_27_an_http_upstream_body_that_is_not_jsonrpc_answers_calls_with_31004() {
    let broken = rig::Broken::Answer(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    let rig = HttpRig::in_front_of("row27-junk", &rig::broken_upstream(broken).await, |_| {}).await;
    upstream_unavailable(&rig.url()).await;
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// Row 28: clients that stop reading
// ---------------------------------------------------------------------------------------

/// A connection with a small receive window, so that a client that stops reading stalls
/// the server's writes quickly.
async fn small_window(addr: std::net::SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Reads a chunked response until its body ends or the connection closes; panics past
/// `limit`. Returns the head and the de-chunked body.
async fn drain_stream(s: &mut TcpStream, limit: Duration) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(limit, async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
                && dechunk(&got[end + 4..]).1
            {
                return;
            }
            match tokio::io::AsyncReadExt::read(s, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stream neither ended nor closed within {limit:?}");
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    (String::from_utf8_lossy(&got[..end]).into_owned(), dechunk(&got[end + 4..]).0)
}

fn raw_post(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// How long a test stops reading a stream: well past the 1 s write timeout it configures,
/// with room for the socket buffers to fill first.
const STALL: Duration = Duration::from_secs(8);

/// A file whose existence tells the fake child's `flood` to stop (removed when dropped).
struct StopFile(std::path::PathBuf);

impl StopFile {
    fn new(name: &str) -> StopFile {
        let p = std::env::temp_dir().join(format!("apiary-bad-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        StopFile(p)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }

    fn stop(&self) {
        std::fs::write(&self.0, b"stop").unwrap();
    }
}

impl Drop for StopFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn flood_call(id: i64, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"flood","arguments":args,"_meta":{"progressToken":"R28"}}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_28_a_client_that_stops_reading_does_not_stall_the_child() {
    let mut cfg = config("row28");
    cfg.stdio.mode = StdioMode::Shared;
    let rig = Rig::fake(cfg, &[]).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let s = open(&c, &url, "row28", "2025-11-25", json!({})).await;
    // s asks for 20 MB of progress and never reads its stream.
    let mut stalled = small_window(rig.addr()).await;
    let body = flood_call(1, json!({"count": 20_000, "pad": 1024}));
    let req =
        raw_post("/mcp", &[("Accept", BOTH), ("Mcp-Session-Id", &s.id), ("MCP-Protocol-Version", "2025-11-25")], &body);
    stalled.write_all(&req).await.unwrap();
    rig.wait_child_saw(r#""name":"flood""#).await;
    // The child reads its next request only once all of its output was taken from it: the
    // witness on the same child is answered only if the reader never blocked on s.
    tokio::time::timeout(Duration::from_secs(60), w.check()).await.expect("the child's output kept flowing");
    drop(stalled);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_28_a_stalled_stream_is_closed_and_its_call_keeps_running() {
    let mut cfg = config("row28-close");
    cfg.limits.write_timeout_secs = 1;
    cfg.limits.event_buffer_bytes = 128 << 20;
    let rig = Rig::fake(cfg, &[]).await;
    let url = rig.url();
    let c = http();
    let s = open(&c, &url, "row28-close", "2025-11-25", json!({})).await;
    // 4 KiB of progress a millisecond until told to stop: far more than the socket
    // buffers hold, and less than the event buffer.
    let stop = StopFile::new("row28-close");
    let mut stalled = small_window(rig.addr()).await;
    let body = flood_call(1, json!({"stop": stop.path(), "pad": 4096, "pace_ms": 1}));
    let req =
        raw_post("/mcp", &[("Accept", BOTH), ("Mcp-Session-Id", &s.id), ("MCP-Protocol-Version", "2025-11-25")], &body);
    stalled.write_all(&req).await.unwrap();
    rig.wait_child_saw(r#""name":"flood""#).await;
    // Stop reading well past the write timeout while the child keeps producing.
    tokio::time::sleep(STALL).await;
    stop.stop();
    // Drain: the stream must end (the connection closed, or the response body ended)
    // without the call's answer, which came after the stall.
    let (head, payload) = drain_stream(&mut stalled, Duration::from_secs(60)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let events = parse_events(&payload);
    assert!(events.iter().filter_map(Event::json).all(|v| v["id"] != 1), "the stalled stream was never closed");
    // Not a cancellation: the call keeps running and its answer waits for a resume.
    assert!(cancellations(&rig).is_empty(), "the stalled stream's call was cancelled");
    let last = events.iter().rev().find_map(|e| e.id.clone()).expect("an event id on the stalled stream");
    let r = resume(&c, &url, &s, &last).await;
    assert_eq!(r.status(), 200);
    let answer = Sse::new(r).until(Duration::from_secs(60), |v| v["id"] == 1).await.pop().unwrap().json().unwrap();
    assert!(result_text(&answer).starts_with("flooded"), "{answer}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_28_a_stalled_sse_stream_ends_its_2024_11_05_session() {
    let mut cfg = config("row28-sse");
    cfg.limits.write_timeout_secs = 1;
    let rig = Rig::fake(cfg, &[]).await;
    let c = http();
    let mut stalled = small_window(rig.addr()).await;
    stalled.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    // Read only as far as the endpoint event.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let endpoint = async {
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut stalled, &mut buf).await.unwrap();
            assert!(n > 0, "the stream closed before the endpoint event");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(at) = text.find("/messages?session_id=")
                && let Some(end) = text[at..].find(['\r', '\n'])
            {
                return text[at..at + end].to_owned();
            }
        }
    };
    let path = tokio::time::timeout(EVENT_LIMIT, endpoint).await.expect("the endpoint event");
    let messages = format!("{}{path}", rig.base());
    let init = INIT_BODY.replace("2025-11-25", "2024-11-05").replace("R06-init", "row28-sse");
    assert_eq!(post(&c, &messages, init).send().await.unwrap().status(), 202);
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post(&c, &messages, initialized).send().await.unwrap().status(), 202);
    let stop = StopFile::new("row28-sse");
    let r = post(&c, &messages, flood_call(1, json!({"stop": stop.path(), "pad": 4096, "pace_ms": 1})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    rig.wait_child_saw(r#""name":"flood""#).await;
    // The stream was the session: once the write timeout closes it, the session is gone
    // (polled within a bound, so a loaded machine does not fail the test).
    let gone = async {
        loop {
            let r = post(&c, &messages, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).send().await.unwrap();
            if r.status() == 404 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(60), gone).await.expect("the stalled session ends");
    refused(r, 404, -31001).await;
    let up = upstream_id(&rig, |a| a["stop"] == stop.path());
    let cancelled = async {
        while !cancellations(&rig).iter().any(|l| l["params"]["requestId"] == up) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), cancelled).await.expect("the session's call was not cancelled");
    stop.stop();
    drop(stalled);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_28_a_stalled_modern_stream_cancels_its_call() {
    let mut cfg = config("row28-modern");
    cfg.limits.write_timeout_secs = 1;
    let rig = Rig::fake(cfg, &[]).await;
    let stop = StopFile::new("row28-modern");
    let mut stalled = small_window(rig.addr()).await;
    let body = modern_body(
        json!(1),
        "tools/call",
        json!({"name":"flood","arguments":{"stop": stop.path(), "pad": 4096, "pace_ms": 1},"_meta":{}}),
    );
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["params"]["_meta"]["progressToken"] = json!("R28");
    let req = raw_post(
        "/mcp",
        &[
            ("Accept", BOTH),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "flood"),
        ],
        &v.to_string(),
    );
    stalled.write_all(&req).await.unwrap();
    rig.wait_child_saw(r#""name":"flood""#).await;
    let up = upstream_id(&rig, |a| a["stop"] == stop.path());
    let cancelled = async {
        while !cancellations(&rig).iter().any(|l| l["params"]["requestId"] == up) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), cancelled).await.expect("the stalled modern call is cancelled");
    stop.stop();
    drop(stalled);
    rig.stop().await;
}

// ---------------------------------------------------------------------------------------
// The rules after the table
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_the_first_failing_check_decides() {
    let mut cfg = config("rule1");
    cfg.limits.max_body_bytes = CAP as u64;
    cfg.limits.max_sessions = 1;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    let addr = rig.addr();
    let over = format!("Content-Length: {}\r\n", CAP + 1);
    for (what, head, status, code) in [
        ("origin before method", format!("PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n{over}\r\n"), 403, -32600),
        ("method before size", format!("PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{over}\r\n"), 405, -32600),
        ("size before Content-Type", format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n{over}\r\n"), 413, -32600),
        (
            "Content-Type before Accept",
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nAccept: text/html\r\nContent-Length: 10\r\n\r\n".into(),
            415,
            -32600,
        ),
        (
            "Accept before JSON",
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/html\r\nContent-Length: 1\r\n\r\n{".into(),
            406,
            -32600,
        ),
    ] {
        let r = raw(addr, head.as_bytes()).await;
        assert_eq!(r.status, status, "{what}: {}", String::from_utf8_lossy(&r.body));
        r.refused(status, code);
    }
    let unknown = |body: &'static str| post(&c, &url, body).header("mcp-session-id", "never-minted");
    refused(unknown("{").send().await.unwrap(), 400, -32700).await; // JSON before session
    refused(unknown(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).send().await.unwrap(), 400, -32600).await; // shape before session
    let r = unknown(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    refused(r, 404, -31001).await; // session before version
    let r = post(&c, &url, batch(&[echo(json!(1), "R-rule1")]))
        .header("mcp-session-id", w.id())
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(message(&refused(r, 400, -32600).await), "unsupported MCP-Protocol-Version"); // version before batch
    // Capacity comes last: at the session cap, earlier faults still decide.
    let r = post(&c, &url, BAD_INITIALIZE).send().await.unwrap();
    refused(r, 400, -32600).await;
    let r =
        post(&c, &url, INIT_BODY.replace("R06-init", "R-rule1")).header("mcp-session-id", w.id()).send().await.unwrap();
    assert_eq!(message(&refused(r, 400, -32600).await), "session already initialized");
    // Error bodies are JSON even when the client accepts only SSE.
    let r = post(&c, &url, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "never-minted")
        .send()
        .await
        .unwrap();
    refused(r, 404, -31001).await;
    w.check().await;
    assert!(!rig.child_saw("R-rule1"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_errors_made_after_the_body_was_read_echo_its_id() {
    let mut cfg = config("rule2");
    cfg.limits.max_sessions = 1;
    cfg.restart.max_restarts = 0;
    let rig = Rig::fixture(cfg).await;
    let url = rig.url();
    let c = http();
    let w = Witness::open(&url).await;
    // Every case is checked; the ids that went missing are reported together.
    let mut missing = Vec::new();
    let mut check = |what: &str, v: Value, id: Value| {
        if v.get("id") != Some(&id) {
            missing.push(format!("{what}: {v}"));
        }
    };
    let r = post(&c, &url, echo(json!(41), "x")).header("mcp-session-id", "never-minted").send().await.unwrap();
    check("404 unknown session", refused(r, 404, -31001).await, json!(41));
    let r = post(&c, &url, echo(json!("v42"), "x"))
        .header("mcp-session-id", w.id())
        .header("mcp-protocol-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    check("400 unsupported version", refused(r, 400, -32600).await, json!("v42"));
    let r = post(&c, &url, INIT_BODY.replace(r#""id":0"#, r#""id":43"#)).send().await.unwrap();
    check("503 session limit", refused(r, 503, -31002).await, json!(43));
    // The shared child crashes and stays down: sessionless calls get 503 -31004.
    let r = post(&c, &url, call(json!(1), "crash", json!({}))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&c, &url, echo(json!("s44"), "x")).send().await.unwrap();
    check("503 upstream down", refused(r, 503, -31004).await, json!("s44"));
    // A refused response has no id.
    let r = w.sess.post(&c, &url, r#"{"jsonrpc":"2.0","id":45,"result":{}}"#).send().await.unwrap();
    no_id(&refused(r, 400, -32600).await);
    w.check().await;
    rig.stop().await;
    assert!(missing.is_empty(), "errors without the request's id:\n{}", missing.join("\n"));
}
