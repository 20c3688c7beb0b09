//! One MCP client session on one keep-alive HTTP/1.1 connection (hyper's connection-level
//! client, so there is exactly one socket and no pool): the 2025-11-25 handshake, then
//! `tools/call echo` requests one at a time, each bounded by the request timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::answer::{self, AnswerError};
use crate::quickack;

/// The protocol revision the sessions negotiate.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// A URL the tool cannot use.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` is not a URL")]
    Invalid(String),
    #[error("only http:// URLs are supported, not `{0}`")]
    Scheme(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// Where the sessions connect and what they POST to.
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
    /// Sent with every request (e.g. `Authorization`).
    extra: Vec<(http::HeaderName, HeaderValue)>,
    /// The echo tool's name (`echo`, or a gateway's prefixed `fixture_echo`).
    tool: String,
}

impl Target {
    /// The target, sending `extra` with every request.
    pub fn with_headers(mut self, extra: Vec<(http::HeaderName, HeaderValue)>) -> Target {
        self.extra = extra;
        self
    }

    /// The target, calling `tool` (a name `cli` checked: no JSON escaping needed) as its echo tool.
    pub fn with_tool(mut self, tool: &str) -> Target {
        tool.clone_into(&mut self.tool);
        self
    }

    /// Parses and resolves an `http://host:port/path` URL.
    pub async fn resolve(url: &str) -> Result<Target, TargetError> {
        let uri: Uri = url.parse().map_err(|_| TargetError::Invalid(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(TargetError::Scheme(url.to_owned()));
        }
        let authority = uri.authority().ok_or_else(|| TargetError::Invalid(url.to_owned()))?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let mut addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|source| TargetError::Resolve { host: host.clone(), source })?;
        let addr = addrs.next().ok_or_else(|| TargetError::NoAddress(host.clone()))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| TargetError::Invalid(url.to_owned()))?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| TargetError::Invalid(url.to_owned()))?;
        Ok(Target { addr, host, path, extra: Vec::new(), tool: "echo".to_owned() })
    }
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP/1.1 handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("the request failed: {0}")]
    Request(hyper::Error),
    #[error("no answer within the request timeout")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("cannot read the answer body: {0}")]
    Body(String),
    #[error("cannot build the request: {0}")]
    Build(http::Error),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

impl CallError {
    /// A short stable name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Connect(_) => "connect",
            CallError::Handshake(_) => "http_handshake",
            CallError::Request(_) => "request",
            CallError::Timeout => "timeout",
            CallError::Status(_) => "http_status",
            CallError::Body(_) => "body",
            CallError::Build(_) => "build",
            CallError::Answer(e) => e.kind(),
        }
    }

    /// Whether the connection can no longer be trusted (a half-read answer may still arrive).
    fn breaks_connection(&self) -> bool {
        matches!(
            self,
            CallError::Connect(_)
                | CallError::Handshake(_)
                | CallError::Request(_)
                | CallError::Timeout
                | CallError::Body(_)
        )
    }
}

/// An open connection; its driver task ends with it. `--hold` passes one from session to
/// session ([`Session::take_connection`]), so thousands of sessions share a few sockets.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    session_id: Option<HeaderValue>,
    sse: bool,
    body: Bytes,
}

/// One client session.
pub struct Session {
    target: Arc<Target>,
    timeout: Duration,
    quick_ack: bool,
    max_body: usize,
    payload: Arc<str>,
    connection: Option<Connection>,
    /// `Some` once the handshake is done (the header value may be absent: a stateless server).
    session_id: Option<Option<HeaderValue>>,
    next_id: u64,
    /// Good calls since the handshake.
    calls_done: u64,
}

impl Session {
    pub fn new(target: Arc<Target>, timeout: Duration, quick_ack: bool, payload: Arc<str>) -> Session {
        // Room for the echoed text escaped at worst 6x (\uXXXX), plus SSE framing and envelopes.
        let max_body = payload.len().saturating_mul(6).saturating_add(64 * 1024);
        Session {
            target,
            timeout,
            quick_ack,
            max_body,
            payload,
            connection: None,
            session_id: None,
            next_id: 1,
            calls_done: 0,
        }
    }

    /// Whether the MCP handshake has been done.
    pub fn is_ready(&self) -> bool {
        self.session_id.is_some()
    }

    async fn connect(&self) -> Result<Connection, CallError> {
        let stream = TcpStream::connect(self.target.addr).await.map_err(CallError::Connect)?;
        stream.set_nodelay(true).map_err(CallError::Connect)?;
        let stream = quickack::Stream::new(stream, self.quick_ack).map_err(CallError::Connect)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(CallError::Handshake)?;
        let driver = tokio::spawn(async move {
            // The error surfaces on the next request; nothing to do with it here.
            let _ = conn.await;
        });
        Ok(Connection { sender, driver })
    }

    /// Takes the session's connection (if any) away, for another session to use.
    pub fn take_connection(&mut self) -> Option<Connection> {
        self.connection.take()
    }

    /// Gives the session a connection to send on (an earlier one is dropped).
    pub fn use_connection(&mut self, connection: Option<Connection>) {
        self.connection = connection;
    }

    /// Good calls since the handshake.
    pub fn calls_done(&self) -> u64 {
        self.calls_done
    }

    /// Ends the session with `DELETE` (a stateless server answering 405 counts as closed);
    /// the next call handshakes again.
    pub async fn close(&mut self) -> Result<(), CallError> {
        let had_id = matches!(self.session_id, Some(Some(_)));
        let result = if had_id { Some(self.send(Method::DELETE, Bytes::new()).await) } else { None };
        self.session_id = None;
        self.calls_done = 0;
        match result {
            Some(Ok(a)) if !a.status.is_success() && a.status != StatusCode::METHOD_NOT_ALLOWED => {
                Err(CallError::Status(a.status.as_u16()))
            }
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn post(&mut self, body: Bytes) -> Result<Answer, CallError> {
        self.send(Method::POST, body).await
    }

    /// Sends one request, bounded by the request timeout; drops the connection when it broke.
    async fn send(&mut self, method: Method, body: Bytes) -> Result<Answer, CallError> {
        let result = match tokio::time::timeout(self.timeout, self.send_inner(method, body)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        };
        if result.as_ref().is_err_and(CallError::breaks_connection) {
            self.connection = None;
        }
        result
    }

    async fn send_inner(&mut self, method: Method, body: Bytes) -> Result<Answer, CallError> {
        if self.connection.as_ref().is_none_or(|c| c.sender.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let mut request = Request::builder()
            .method(method)
            .uri(self.target.path.clone())
            .header(HOST, self.target.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, ACCEPT_BOTH);
        if let Some(Some(id)) = &self.session_id {
            request = request.header(SESSION_HEADER, id.clone()).header(VERSION_HEADER, PROTOCOL_VERSION);
        }
        for (name, value) in &self.target.extra {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(CallError::Build)?;
        let Some(connection) = self.connection.as_mut() else {
            return Err(CallError::Body("no connection".into()));
        };
        connection.sender.ready().await.map_err(CallError::Request)?;
        let response = connection.sender.send_request(request).await.map_err(CallError::Request)?;
        let status = response.status();
        let headers = response.headers();
        let session_id = headers.get(SESSION_HEADER).cloned();
        let sse = answer::is_sse(headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
        let body = Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| CallError::Body(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, session_id, sse, body })
    }

    /// `initialize` then `notifications/initialized`; keeps the session id.
    pub async fn handshake(&mut self) -> Result<(), CallError> {
        self.session_id = None;
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"apiary-bench","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let answer = self.post(Bytes::from(init)).await?;
        if answer.status != StatusCode::OK {
            return Err(CallError::Status(answer.status.as_u16()));
        }
        answer::check_result(&answer.body, answer.sse, 0)?;
        self.session_id = Some(answer.session_id);
        let answer = self.post(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)).await;
        match answer {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) => {
                self.session_id = None;
                Err(CallError::Status(a.status.as_u16()))
            }
            Err(e) => {
                self.session_id = None;
                Err(e)
            }
        }
    }

    /// One `tools/list`; checks it is answered with a result.
    pub async fn list_tools(&mut self) -> Result<(), CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        let answer = self.post(Bytes::from(body)).await?;
        if answer.status != StatusCode::OK {
            return Err(CallError::Status(answer.status.as_u16()));
        }
        answer::check_result(&answer.body, answer.sse, id)?;
        Ok(())
    }

    /// One `tools/call` of the echo tool with the payload; checks the answer echoes it.
    pub async fn call_echo(&mut self) -> Result<(), CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let answer = self.post(echo_request(id, &self.target.tool, &self.payload)).await?;
        match answer.status {
            StatusCode::OK => {}
            // The server forgot the session: handshake again before the next call.
            StatusCode::NOT_FOUND => {
                self.session_id = None;
                return Err(CallError::Status(404));
            }
            other => return Err(CallError::Status(other.as_u16())),
        }
        answer::check_echo(&answer.body, answer.sse, id, &self.payload)?;
        self.calls_done += 1;
        Ok(())
    }
}

/// The body of `tools/call` request `id` of echo tool `tool`. The payload is plain ASCII (see
/// [`payload`]) and the tool name a checked one, so neither needs JSON escaping.
pub fn echo_request(id: u64, tool: &str, payload: &str) -> Bytes {
    let mut body = String::with_capacity(payload.len() + tool.len() + 128);
    body.push_str(r#"{"jsonrpc":"2.0","id":"#);
    body.push_str(&id.to_string());
    body.push_str(r#","method":"tools/call","params":{"name":""#);
    body.push_str(tool);
    body.push_str(r#"","arguments":{"text":""#);
    body.push_str(payload);
    body.push_str(r#""}}}"#);
    Bytes::from(body)
}

/// A payload of `len` ASCII letters and digits, the same every run.
pub fn payload(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len).map(|i| char::from(ALPHABET[(i * 7 + i / 62) % ALPHABET.len()])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_request_is_valid_json_rpc() {
        let text = payload(100);
        assert_eq!(text.len(), 100);
        let v: serde_json::Value = serde_json::from_slice(&echo_request(42, "echo", &text)).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"]["text"], text.as_str());
        let v: serde_json::Value = serde_json::from_slice(&echo_request(1, "fixture_echo", "x")).unwrap();
        assert_eq!(v["params"]["name"], "fixture_echo");
        assert_eq!(payload(0), "");
    }

    #[tokio::test]
    async fn urls_are_checked() {
        assert!(matches!(Target::resolve("https://127.0.0.1/mcp").await, Err(TargetError::Scheme(_))));
        assert!(matches!(Target::resolve("not a url").await, Err(TargetError::Invalid(_))));
        let t = Target::resolve("http://127.0.0.1:9/mcp?x=1").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path, "/mcp?x=1");
        assert_eq!(t.host, "127.0.0.1:9");
    }
}
