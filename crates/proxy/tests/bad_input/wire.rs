//! The client side of the bad-input tests: raw HTTP over TCP (declared lengths, chunked
//! bodies, bodies never sent), an SSE reader, legacy sessions, the witness session that must
//! keep working through every refusal, and the checks every refusal shares (status,
//! `Content-Type: application/json`, one JSON-RPC error object, the `id` rule).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds one exchange that should be answered at once.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(20);

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap()
}

pub const LEGACY: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// A refusal as bad-input.md shapes it: `status`, `Content-Type: application/json`, one
/// JSON-RPC error object with `code`. Returns the body.
pub async fn refused(res: reqwest::Response, status: u16, code: i64) -> Value {
    let got = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    // A stream would never end: fail on what is known now.
    assert!(
        !ct.as_deref().is_some_and(|c| c.starts_with("text/event-stream")),
        "expected {status} {code}, got {got} with an event stream"
    );
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "status; body: {text}");
    assert_eq!(ct.as_deref(), Some("application/json"), "Content-Type; body: {text}");
    check_error(&text, code)
}

/// `text` is exactly one JSON-RPC error object with `code`.
pub fn check_error(text: &str, code: i64) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(v.is_object(), "one error object, never a batch: {text}");
    assert_eq!(v["jsonrpc"], "2.0", "{text}");
    assert_eq!(v["error"]["code"].as_i64(), Some(code), "error code: {text}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {text}");
    assert!(v.get("result").is_none(), "{text}");
    v
}

/// The error has no `id` member at all (not even `null`), rule 2.
pub fn no_id(v: &Value) {
    assert!(v.get("id").is_none(), "the error must have no id member: {v}");
}

pub fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// The first number after "byte " in a message.
pub fn byte_offset(msg: &str) -> Option<usize> {
    let at = msg.find("byte ")?;
    let digits: String = msg[at + 5..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The set of comma-separated tokens in a header such as `Allow`.
pub fn tokens(v: Option<&reqwest::header::HeaderValue>) -> Vec<String> {
    let mut t: Vec<String> =
        v.map(|v| v.to_str().unwrap().split(',').map(|s| s.trim().to_owned()).collect()).unwrap_or_default();
    t.sort();
    t
}

pub fn allow(list: &[&str]) -> Vec<String> {
    let mut t: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    t.sort();
    t
}

/// A `tools/call` request body.
pub fn call(id: Value, tool: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}).to_string()
}

pub fn echo(id: Value, text: &str) -> String {
    call(id, "echo", json!({ "text": text }))
}

/// The text of a `tools/call` result.
pub fn result_text(v: &Value) -> &str {
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no tool result text: {v}"))
}

/// A POST of `body` to `url` with `Content-Type: application/json`.
pub fn post(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    c.post(url).header("content-type", "application/json").body(body)
}

/// The answer to a request: a JSON body, or the first response event of an SSE body.
pub async fn answer(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    if ct.starts_with("text/event-stream") {
        let mut sse = Sse::new(res);
        let ev = sse.until(ANSWER_LIMIT, |v| v.get("id").is_some() && v.get("method").is_none()).await;
        return (status, ev.last().unwrap().json().unwrap());
    }
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}")))
}

pub const BOTH: &str = "application/json, text/event-stream";

/// A legacy session.
#[derive(Debug, Clone)]
pub struct Sess {
    pub id: String,
    pub revision: String,
    /// The `Accept` sent with every POST (an HTTP upstream wants both types named).
    pub accept: Option<&'static str>,
}

/// `initialize` (as `name`, offering `revision`, declaring `caps`) and `notifications/initialized`.
pub async fn open(c: &reqwest::Client, url: &str, name: &str, revision: &str, caps: Value) -> Sess {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":revision,"capabilities":caps,"clientInfo":{"name":name,"version":"1"}}});
    let r = post(c, url, init.to_string()).header("accept", BOTH).send().await.unwrap();
    let sid = r.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let (status, v) = answer(r).await;
    assert_eq!(status, 200, "initialize: {v}");
    let sid = sid.unwrap_or_else(|| panic!("initialize answered without Mcp-Session-Id: {v}"));
    assert!(!sid.is_empty() && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{sid:?}");
    let negotiated = v["result"]["protocolVersion"].as_str().unwrap().to_owned();
    let r = post(c, url, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .header("accept", BOTH)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", &negotiated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "notifications/initialized");
    Sess { id: sid, revision: negotiated, accept: None }
}

impl Sess {
    /// A POST inside the session, with its negotiated version header (when it has one).
    pub fn post(&self, c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.post_bare(c, url, body).header("content-type", "application/json")
    }

    /// Like [`Sess::post`], without `Content-Type`.
    pub fn post_bare(&self, c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut b = c.post(url).body(body).header("mcp-session-id", &self.id);
        if self.revision.as_str() >= "2025-06-18" {
            b = b.header("mcp-protocol-version", &self.revision);
        }
        if let Some(a) = self.accept {
            b = b.header("accept", a);
        }
        b
    }

    /// A call and its answer: (status, body).
    pub async fn call(&self, c: &reqwest::Client, url: &str, body: String) -> (u16, Value) {
        answer(self.post(c, url, body).send().await.unwrap()).await
    }

    /// `echo` inside the session must answer `text`.
    pub async fn echo_ok(&self, c: &reqwest::Client, url: &str, text: &str) {
        let (status, v) = self.call(c, url, echo(json!(format!("echo-{text}")), text)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(result_text(&v), text, "{v}");
    }

    /// The pid of the session's child (both the fixture and the fake child have a `pid` tool).
    pub async fn child_pid(&self, c: &reqwest::Client, url: &str) -> String {
        let (status, v) = self.call(c, url, call(json!("pid"), "pid", json!({}))).await;
        assert_eq!(status, 200, "{v}");
        result_text(&v).to_owned()
    }
}

/// Another client's session that must keep working through every refusal (rule 5): same
/// session, same child process, answers every call.
pub struct Witness {
    pub sess: Sess,
    url: String,
    pid: String,
    c: reqwest::Client,
    n: AtomicU64,
}

impl Witness {
    /// Opens the witness session on `url` (a session of its own, declaring roots, so it gets a
    /// child of its own in auto mode too).
    pub async fn open(url: &str) -> Witness {
        Witness::open_with(url, None).await
    }

    /// The witness of a proxy in front of an HTTP upstream, which wants both types accepted.
    pub async fn open_http(url: &str) -> Witness {
        Witness::open_with(url, Some(BOTH)).await
    }

    async fn open_with(url: &str, accept: Option<&'static str>) -> Witness {
        let c = http();
        let mut sess = open(&c, url, "witness", "2025-11-25", json!({"roots":{}})).await;
        sess.accept = accept;
        let pid = sess.child_pid(&c, url).await;
        Witness { sess, url: url.to_owned(), pid, c, n: AtomicU64::new(0) }
    }

    /// The witness still works, on the same child.
    pub async fn check(&self) {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        self.sess.echo_ok(&self.c, &self.url, &format!("witness-{n}")).await;
        assert_eq!(self.sess.child_pid(&self.c, &self.url).await, self.pid, "the witness's child was replaced");
    }

    pub fn id(&self) -> &str {
        &self.sess.id
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Reads events from an SSE body.
pub struct Sse {
    stream: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    buf: Vec<u8>,
}

impl Sse {
    pub fn new(res: reqwest::Response) -> Sse {
        let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        assert!(ct.as_deref().is_some_and(|c| c.starts_with("text/event-stream")), "not SSE: {ct:?}");
        Sse { stream: res.bytes_stream().boxed(), buf: Vec::new() }
    }

    /// The next event, `None` at the end of the stream. Panics past `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, self.next_inner()).await.expect("an SSE event in time")
    }

    async fn next_inner(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let block: Vec<u8> = self.buf.drain(..end.0 + end.1).collect();
                let ev = parse_event(&block[..end.0]);
                if ev.data.is_empty() && ev.id.is_none() && ev.event.is_none() {
                    continue; // a comment (keep-alive)
                }
                return Some(ev);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Events up to the one whose JSON `pred` accepts (included); panics if the stream ends first.
    pub async fn until(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let ev = self.next(limit).await.unwrap_or_else(|| panic!("the stream ended before the event: {out:?}"));
            let hit = ev.json().is_some_and(|v| pred(&v));
            out.push(ev);
            if hit {
                return out;
            }
        }
    }

    /// Every event until the stream ends.
    pub async fn rest(&mut self, limit: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(limit).await {
            out.push(ev);
        }
        out
    }
}

/// (end of the event block, length of the separator)
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buf.len() {
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
        if buf[i..].starts_with(b"\n\n") {
            return Some((i, 2));
        }
    }
    None
}

pub fn parse_event(block: &[u8]) -> Event {
    let text = String::from_utf8_lossy(block);
    let mut ev = Event::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => ev.id = Some(value.to_owned()),
            "event" => ev.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    ev.data = data.join("\n");
    ev
}

/// Events of a raw SSE body (chunked framing removed by [`dechunk`] first).
pub fn parse_events(body: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((end, sep)) = find_blank_line(rest) {
        let ev = parse_event(&rest[..end]);
        if !(ev.data.is_empty() && ev.id.is_none() && ev.event.is_none()) {
            out.push(ev);
        }
        rest = &rest[end + sep..];
    }
    out
}

/// An HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Same checks as [`refused`].
    pub fn refused(&self, status: u16, code: i64) -> Value {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        assert_eq!(self.status, status, "status; body: {text}");
        assert_eq!(self.header("content-type"), Some("application/json"), "Content-Type; body: {text}");
        check_error(&text, code)
    }
}

/// Sends `request` (head and whatever body) and reads one response; the body is whatever
/// `Content-Length` says. Panics if no complete response arrives within [`ANSWER_LIMIT`]:
/// for a request whose body was never sent, that means the server waited for it.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_response(&mut s).await
}

/// Reads one response with a `Content-Length` body off `s`.
pub async fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            if let Some(r) = parse_response(&got) {
                return r;
            }
            let n = s.read(&mut buf).await.unwrap_or(0);
            assert!(n > 0, "the connection closed before a whole response: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(ANSWER_LIMIT, read).await.expect("a response without waiting for the body")
}

fn parse_response(got: &[u8]) -> Option<RawResponse> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let body = got.get(end + 4..end + 4 + len)?.to_vec();
    Some(RawResponse { status, headers, body })
}

/// Reads until the peer closes; returns the bytes and whether it closed within `limit`.
pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// The payload of a chunked body (as much as is complete).
pub fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else { return (out, false) };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        let start = eol + 2;
        if body.len() < start + size {
            out.extend_from_slice(&body[start..]);
            return (out, false);
        }
        out.extend_from_slice(&body[start..start + size]);
        body = body.get(start + size + 2..).unwrap_or(&[]);
    }
}

/// A modern (2026-07-28) request body: `_meta` carries the version and the client capabilities.
pub fn modern_body(id: Value, method: &str, mut params: Value) -> String {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    params.as_object_mut().unwrap().insert("_meta".into(), meta);
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
}

/// A modern POST with the headers 2026-07-28 requires for `method` (and `Mcp-Name` when given).
pub fn modern_post(
    c: &reqwest::Client,
    url: &str,
    method: &str,
    name: Option<&str>,
    body: String,
) -> reqwest::RequestBuilder {
    let mut b = post(c, url, body)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(n) = name {
        b = b.header("mcp-name", n);
    }
    b
}
