//! A raw-bytes MCP session over Streamable HTTP or the 2024-11-05 HTTP+SSE transport, for a
//! caller that forwards messages it did not write (the vMCP): requests go out as the
//! caller's bytes (the caller sets the id) and their responses come back as the server's
//! bytes; everything else the server sends, on a POST's SSE stream, the session's GET
//! stream or the legacy event stream (server→client requests, progress, logging,
//! list_changed), is handed to the caller through a bounded channel, unanswered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use apiary_protocol::{Body, Kind, Message, RequestId, parse_body};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::ClientError;
use super::http::{MAX_MESSAGE_BYTES, SseReader, connection_error, has_content_type, read_capped, status_error};
use super::reach::Reach;
use super::{SUPPORTED_PROTOCOL_VERSIONS, Transport, header_map, parse_url};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
/// How often a response stream the server closed before answering is re-opened.
const MAX_RESUMES: u32 = 16;
/// Upper bound on the server's `retry:` hint.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// The GET stream is re-opened after it ends, at most this many times in a row without
/// receiving anything in between.
const MAX_LISTEN_FAILURES: u32 = 3;
/// Requests of one legacy SSE session waiting for their answer on the stream.
const MAX_SSE_PENDING: usize = 4096;

/// How to open a [`RawSession`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Extra headers sent with every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bounds opening, each request and closing.
    pub timeout: Duration,
    /// Bound on server-initiated messages waiting for the caller.
    pub incoming_capacity: usize,
    /// The `initialize` params, as JSON text.
    pub initialize_params: String,
    /// Open the session's GET stream (server-initiated messages outside any request;
    /// Streamable HTTP only: the legacy transport's stream is always open).
    pub listen: bool,
    /// `Auto`: SSE when the path ends in `/sse`, else Streamable HTTP, falling back to SSE
    /// when `initialize` gets 400, 404 or 405.
    pub transport: Transport,
    /// Extra TLS roots and the address guard (both unset: the plain client).
    pub reach: Reach,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            incoming_capacity: 256,
            initialize_params: format!(
                r#"{{"protocolVersion":"{}","capabilities":{{}},"clientInfo":{{"name":"apiary","version":"{}"}}}}"#,
                super::OFFERED_PROTOCOL_VERSION,
                env!("CARGO_PKG_VERSION")
            ),
            listen: true,
            transport: Transport::Auto,
            reach: Reach::default(),
        }
    }
}

struct Wire {
    http: Client,
    url: Url,
    headers: HeaderMap,
    incoming: mpsc::Sender<Bytes>,
    /// Messages handed to the incoming channel so far.
    delivered: AtomicU64,
    /// Set for a legacy HTTP+SSE session.
    sse: Option<SseSide>,
}

/// The legacy transport's state: where to POST, and the requests waiting for an answer
/// on the event stream.
#[derive(Default)]
struct SseSide {
    endpoint: OnceLock<Url>,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<Bytes>>>,
    /// Why the stream ended, once it has.
    closed: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An initialized Streamable HTTP session that moves raw JSON-RPC bytes.
pub struct RawSession {
    wire: Arc<Wire>,
    timeout: Duration,
    init_result: Bytes,
    protocol_version: String,
    stop: CancellationToken,
}

impl std::fmt::Debug for RawSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSession")
            .field("url", &self.wire.url.as_str())
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RawSession {
    /// Opens a session: `initialize` (capturing `Mcp-Session-Id`), then
    /// `notifications/initialized`, then (with `listen`) the GET stream. The receiver gets
    /// every message the server sends that is not the response to one of our requests.
    pub async fn open(url: &str, options: SessionOptions) -> Result<(RawSession, mpsc::Receiver<Bytes>), ClientError> {
        let parsed = parse_url(url)?;
        let headers = header_map(&options.headers)?;
        let http = super::reach::client(&parsed, &options.reach, options.timeout).await?;
        match options.transport {
            Transport::Sse => Self::open_sse(http, parsed, headers, &options).await,
            Transport::Auto if parsed.path().ends_with("/sse") => Self::open_sse(http, parsed, headers, &options).await,
            Transport::StreamableHttp => Self::open_streamable(http, parsed, headers, &options).await,
            Transport::Auto => {
                match Self::open_streamable(http.clone(), parsed.clone(), headers.clone(), &options).await {
                    Err(ClientError::HttpStatus { status: 400 | 404 | 405, .. }) => {
                        Self::open_sse(http, parsed, headers, &options).await
                    }
                    other => other,
                }
            }
        }
    }

    async fn open_streamable(
        http: Client,
        url: Url,
        headers: HeaderMap,
        options: &SessionOptions,
    ) -> Result<(RawSession, mpsc::Receiver<Bytes>), ClientError> {
        let (tx, rx) = mpsc::channel(options.incoming_capacity.max(1));
        let mut wire = Wire { http, url, headers, incoming: tx, delivered: AtomicU64::new(0), sse: None };
        let opened = tokio::time::timeout(options.timeout, async {
            let resp = wire.post(initialize_request(options)).await?;
            if let Some(sid) = resp.headers().get(SESSION_HEADER) {
                if sid.is_empty() || !sid.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return Err(ClientError::Protocol(
                        "server sent an Mcp-Session-Id with characters outside visible ASCII".into(),
                    ));
                }
                wire.headers.insert(SESSION_HEADER, sid.clone());
            }
            wire.answer(resp, &RequestId::Int(0)).await
        })
        .await
        .map_err(|_| ClientError::Timeout {
            after: options.timeout,
            waiting_for: "the answer to initialize".into(),
        })??;
        let (result, version) = initialize_outcome(opened)?;
        // Every request after `initialize` carries the negotiated version.
        let supported = SUPPORTED_PROTOCOL_VERSIONS.contains(&version.as_str());
        if supported {
            let value = HeaderValue::from_str(&version)
                .map_err(|_| ClientError::Protocol(format!("invalid protocol version {version:?}")))?;
            wire.headers.insert(VERSION_HEADER, value);
        }
        let session = RawSession {
            wire: Arc::new(wire),
            timeout: options.timeout,
            init_result: result,
            protocol_version: version.clone(),
            stop: CancellationToken::new(),
        };
        if !supported {
            // Be polite: end the session the server just opened. Its outcome changes nothing.
            let _ = session.close().await;
            return Err(ClientError::UnsupportedVersion(version));
        }
        session.send(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)).await?;
        if options.listen {
            tokio::spawn(listen(Arc::clone(&session.wire), session.stop.clone()));
        }
        Ok((session, rx))
    }

    /// The 2024-11-05 transport: a GET event stream whose `endpoint` event names where to
    /// POST; every answer arrives on the stream.
    async fn open_sse(
        http: Client,
        url: Url,
        headers: HeaderMap,
        options: &SessionOptions,
    ) -> Result<(RawSession, mpsc::Receiver<Bytes>), ClientError> {
        let (tx, rx) = mpsc::channel(options.incoming_capacity.max(1));
        let get = http.get(url.clone()).headers(headers.clone()).header(ACCEPT, "text/event-stream").send();
        let resp = tokio::time::timeout(options.timeout, get)
            .await
            .map_err(|_| ClientError::Timeout { after: options.timeout, waiting_for: format!("GET {url}") })?
            .map_err(|e| connection_error(format!("GET {url}"), e))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "GET").await);
        }
        if !has_content_type(&resp, "text/event-stream") {
            return Err(ClientError::Protocol(format!("GET {url} did not answer with text/event-stream")));
        }
        let wire = Arc::new(Wire {
            http,
            url,
            headers,
            incoming: tx,
            delivered: AtomicU64::new(0),
            sse: Some(SseSide::default()),
        });
        let stop = CancellationToken::new();
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        tokio::spawn(sse_reader(Arc::clone(&wire), SseReader::new(resp), endpoint_tx, stop.clone()));
        let mut session = RawSession {
            wire,
            timeout: options.timeout,
            init_result: Bytes::new(),
            protocol_version: String::new(),
            stop,
        };
        match tokio::time::timeout(options.timeout, endpoint_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(ClientError::Closed("the SSE stream ended before the endpoint event".into())),
            Err(_) => {
                return Err(ClientError::Timeout { after: options.timeout, waiting_for: "the endpoint event".into() });
            }
        }
        let (result, version) = initialize_outcome(session.request(initialize_request(options)).await?)?;
        if !SUPPORTED_PROTOCOL_VERSIONS.contains(&version.as_str()) {
            return Err(ClientError::UnsupportedVersion(version));
        }
        session.init_result = result;
        session.protocol_version = version;
        session.send(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)).await?;
        Ok((session, rx))
    }

    /// The server's `initialize` result, as the JSON text it sent.
    pub fn initialize_result(&self) -> &Bytes {
        &self.init_result
    }

    /// The negotiated protocol revision.
    pub fn protocol_version(&self) -> &str {
        &self.protocol_version
    }

    /// How many messages were handed to the incoming channel so far. Read after
    /// [`RawSession::request`] returns, it counts everything the server sent before its
    /// answer, so a relay can keep that order (progress before the result).
    pub fn delivered(&self) -> u64 {
        self.wire.delivered.load(Ordering::SeqCst)
    }

    /// The session id the server assigned, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.wire.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
    }

    /// Sends one request (its bytes as given; the caller chose the id) and returns the
    /// server's response message (a result or an error) as it came. Other messages that
    /// arrive meanwhile go to the incoming channel.
    pub async fn request(&self, request: Bytes) -> Result<Bytes, ClientError> {
        self.request_with(request, &[]).await
    }

    /// [`RawSession::request`] with `extra` headers on this one request's POST, replacing
    /// session headers of the same name (the gateway's per-request `x-mcp-*` headers).
    pub async fn request_with(&self, request: Bytes, extra: &[(String, String)]) -> Result<Bytes, ClientError> {
        let extra = header_map(extra)?;
        let msg = Message::parse(request.clone()).map_err(|e| ClientError::Protocol(format!("bad request: {e}")))?;
        let id = match (msg.kind(), msg.id()) {
            (Kind::Request, Some(id)) => id,
            _ => return Err(ClientError::Protocol("request() needs a request with an id".into())),
        };
        let method = msg.method().unwrap_or_default().to_owned();
        let call = async {
            if let Some(sse) = &self.wire.sse {
                return self.sse_request(sse, request, id, &extra).await;
            }
            let resp = self.wire.post_with(request, &extra).await?;
            self.wire.answer(resp, &id).await
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: format!("the answer to {method:?}"),
        })?
    }

    async fn sse_request(
        &self,
        sse: &SseSide,
        request: Bytes,
        id: RequestId,
        extra: &HeaderMap,
    ) -> Result<Bytes, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            if let Some(why) = lock(&sse.closed).clone() {
                return Err(ClientError::Closed(why));
            }
            let mut pending = lock(&sse.pending);
            if pending.len() >= MAX_SSE_PENDING {
                return Err(ClientError::Protocol(format!("more than {MAX_SSE_PENDING} requests in flight")));
            }
            pending.insert(id.clone(), tx);
        }
        let _guard = PendingGuard { sse, id };
        let resp = self.wire.post_with(request, extra).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "POST").await);
        }
        rx.await.map_err(|_| {
            ClientError::Closed(lock(&sse.closed).clone().unwrap_or_else(|| "the SSE stream ended".into()))
        })
    }

    /// Sends a notification or a response; the server answers 202 with no body.
    pub async fn send(&self, message: Bytes) -> Result<(), ClientError> {
        let send = async {
            let resp = self.wire.post(message).await?;
            if resp.status().is_success() { Ok(()) } else { Err(status_error(resp, "POST").await) }
        };
        tokio::time::timeout(self.timeout, send).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: "the server to accept a message".into(),
        })?
    }

    /// Ends the session with `DELETE` (404 and 405 are not errors) and stops the GET stream;
    /// a legacy SSE session ends by closing its stream.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.stop.cancel();
        if self.wire.sse.is_some() {
            return Ok(());
        }
        if self.session_id().is_none() {
            return Ok(());
        }
        let delete = async {
            let resp = self
                .wire
                .build(Method::DELETE)
                .send()
                .await
                .map_err(|e| connection_error(format!("DELETE {}", self.wire.url), e))?;
            let status = resp.status();
            if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(status_error(resp, "DELETE").await)
            }
        };
        tokio::time::timeout(self.timeout, delete).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: "the server to end the session".into(),
        })?
    }
}

/// Removes a waiter whose caller stopped waiting (answer, timeout or cancellation).
struct PendingGuard<'a> {
    sse: &'a SseSide,
    id: RequestId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.sse.pending).remove(&self.id);
    }
}

fn initialize_request(options: &SessionOptions) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}}"#, options.initialize_params))
}

/// The `initialize` result's text and the protocol version it names.
fn initialize_outcome(answer: Bytes) -> Result<(Bytes, String), ClientError> {
    let msg = Message::parse(answer).map_err(|e| ClientError::Protocol(format!("initialize answer: {e}")))?;
    let result = response_result(&msg)?;
    let version = serde_json::from_slice::<serde_json::Value>(&result)
        .ok()
        .and_then(|v| v.get("protocolVersion").and_then(|p| p.as_str()).map(str::to_owned))
        .ok_or_else(|| ClientError::Protocol("initialize result has no protocolVersion".into()))?;
    Ok((result, version))
}

/// The `result` member's text of a response, or the JSON-RPC error as an error.
fn response_result(msg: &Message) -> Result<Bytes, ClientError> {
    match (msg.kind(), msg.payload_raw()) {
        (Kind::Response, Some(r)) => Ok(Bytes::copy_from_slice(r.as_bytes())),
        (Kind::Error, Some(e)) => {
            let v: serde_json::Value = serde_json::from_str(e).unwrap_or_default();
            Err(ClientError::JsonRpc {
                code: v.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0),
                message: v.get("message").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned(),
                data: v.get("data").cloned(),
            })
        }
        _ => Err(ClientError::Protocol("the answer is neither a result nor an error".into())),
    }
}

impl Wire {
    fn build(&self, method: Method) -> RequestBuilder {
        self.http.request(method, self.url.clone()).headers(self.headers.clone())
    }

    async fn post(&self, body: Bytes) -> Result<reqwest::Response, ClientError> {
        self.post_with(body, &HeaderMap::new()).await
    }

    /// A POST with `extra` headers, which replace session headers of the same name.
    async fn post_with(&self, body: Bytes, extra: &HeaderMap) -> Result<reqwest::Response, ClientError> {
        if let Some(endpoint) = self.sse.as_ref().and_then(|s| s.endpoint.get()) {
            return self
                .http
                .post(endpoint.clone())
                .headers(self.headers.clone())
                .headers(extra.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| connection_error(format!("POST {endpoint}"), e));
        }
        self.build(Method::POST)
            .headers(extra.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| connection_error(format!("POST {}", self.url), e))
    }

    /// Reads the answer to request `id` from a POST's response (JSON or SSE).
    async fn answer(&self, resp: reqwest::Response, id: &RequestId) -> Result<Bytes, ClientError> {
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(resp, "POST").await);
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Err(ClientError::Protocol(format!(
                "server answered a request with HTTP {} and no response",
                status.as_u16()
            )));
        }
        if has_content_type(&resp, "text/event-stream") {
            self.read_stream_until(SseReader::new(resp), id).await
        } else if has_content_type(&resp, "application/json") {
            let body = read_capped(resp, MAX_MESSAGE_BYTES).await?;
            match self.deliver(body, Some(id)).await? {
                Some(answer) => Ok(answer),
                None => Err(ClientError::Protocol(format!("JSON response does not answer request id {id}"))),
            }
        } else {
            let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
            Err(ClientError::Protocol(format!("unexpected response content type {ct:?}")))
        }
    }

    /// Sorts one body or event: the response to `wanted` is returned, the rest handed on.
    async fn deliver(&self, data: Bytes, wanted: Option<&RequestId>) -> Result<Option<Bytes>, ClientError> {
        let messages = match parse_body(data) {
            Ok(Body::Single(m)) => vec![m],
            Ok(Body::Batch(items)) => items.into_iter().filter_map(Result::ok).collect(),
            Err(e) => return Err(ClientError::Protocol(format!("server sent a message that is not JSON-RPC: {e}"))),
        };
        let mut found = None;
        for m in messages {
            if let (Some(sse), Kind::Response | Kind::Error, Some(id)) = (&self.sse, m.kind(), m.id()) {
                let waiter = lock(&sse.pending).remove(&id);
                if let Some(w) = waiter {
                    let _ = w.send(m.into_bytes());
                    continue;
                }
            }
            let answers =
                matches!(m.kind(), Kind::Response | Kind::Error) && wanted.is_some_and(|w| m.id().as_ref() == Some(w));
            if answers && found.is_none() {
                found = Some(m.into_bytes());
            } else if matches!(m.kind(), Kind::Response | Kind::Error) && !answers {
                tracing::debug!("ignoring a response to a request this session did not send");
            } else if self.incoming.send(m.into_bytes()).await.is_ok() {
                self.delivered.fetch_add(1, Ordering::SeqCst);
            } else {
                tracing::debug!("a server message arrived after the session's reader went away");
            }
        }
        Ok(found)
    }

    /// Reads SSE events until the response to `id`, resuming with `Last-Event-ID` when the
    /// server closes the stream after giving an event id.
    async fn read_stream_until(&self, mut reader: SseReader, id: &RequestId) -> Result<Bytes, ClientError> {
        let mut last_id: Option<String> = None;
        let mut retry_ms: Option<u64> = None;
        let mut resumes = 0;
        loop {
            let next = reader.next_event().await;
            if let Some(l) = reader.last_event_id() {
                last_id = Some(l.to_owned());
            }
            retry_ms = reader.retry_ms().or(retry_ms);
            let ended = match next {
                Ok(Some(ev)) => {
                    if ev.kind() == "message"
                        && !ev.data.trim().is_empty()
                        && let Some(answer) = self.deliver(Bytes::from(ev.data), Some(id)).await?
                    {
                        return Ok(answer);
                    }
                    continue;
                }
                Ok(None) => "the server closed the response stream before answering".to_owned(),
                Err(e @ ClientError::Connection { .. }) => e.to_string(),
                Err(e) => return Err(e),
            };
            let Some(last) = last_id.clone() else {
                return Err(ClientError::Closed(format!("{ended} (request id {id})")));
            };
            if resumes >= MAX_RESUMES {
                return Err(ClientError::Closed(format!("{ended}; gave up after {MAX_RESUMES} resumptions")));
            }
            resumes += 1;
            tokio::time::sleep(Duration::from_millis(retry_ms.unwrap_or(0)).min(MAX_RETRY_WAIT)).await;
            reader = self.get_stream(Some(&last)).await?;
        }
    }

    async fn get_stream(&self, last_event_id: Option<&str>) -> Result<SseReader, ClientError> {
        let mut req = self.build(Method::GET).header(ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            req = req.header(LAST_EVENT_ID, last);
        }
        let resp = req.send().await.map_err(|e| connection_error(format!("GET {}", self.url), e))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "GET").await);
        }
        if !has_content_type(&resp, "text/event-stream") {
            return Err(ClientError::Protocol("the GET stream is not text/event-stream".into()));
        }
        Ok(SseReader::new(resp))
    }
}

/// Keeps the session's GET stream open while the session lives, handing every message on.
async fn listen(wire: Arc<Wire>, stop: CancellationToken) {
    let mut failures = 0;
    let mut last_id: Option<String> = None;
    while failures < MAX_LISTEN_FAILURES {
        let reader = tokio::select! {
            r = wire.get_stream(last_id.as_deref()) => r,
            () = stop.cancelled() => return,
        };
        let mut reader = match reader {
            Ok(r) => r,
            Err(ClientError::HttpStatus { status: 405, .. }) => return,
            Err(e) => {
                tracing::debug!(error = %e, "the session's GET stream could not be opened");
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                n = reader.next_event() => n,
                () = stop.cancelled() => return,
            };
            match next {
                Ok(Some(ev)) => {
                    failures = 0;
                    if let Some(l) = reader.last_event_id() {
                        last_id = Some(l.to_owned());
                    }
                    if ev.kind() == "message"
                        && !ev.data.trim().is_empty()
                        && let Err(e) = wire.deliver(Bytes::from(ev.data), None).await
                    {
                        tracing::debug!(error = %e, "ignoring a bad message on the GET stream");
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Owns a legacy session's event stream: announces the endpoint, hands answers to their
/// waiters and everything else to the incoming channel, until the stream or session ends.
async fn sse_reader(
    wire: Arc<Wire>,
    mut reader: SseReader,
    endpoint_tx: oneshot::Sender<Result<(), ClientError>>,
    stop: CancellationToken,
) {
    let mut endpoint_tx = Some(endpoint_tx);
    let Some(sse) = wire.sse.as_ref() else { return };
    let why = loop {
        let next = tokio::select! {
            n = reader.next_event() => n,
            () = stop.cancelled() => break "the session was closed".to_owned(),
        };
        let ev = match next {
            Ok(Some(ev)) => ev,
            Ok(None) => break "the server closed the SSE stream".to_owned(),
            Err(e) => break e.to_string(),
        };
        match ev.kind() {
            "endpoint" if sse.endpoint.get().is_none() => {
                // Relative to the stream's URL, and on its origin: a hostile stream must not
                // make us POST (with our headers) somewhere else.
                let resolved = wire.url.join(ev.data.trim()).map_err(|e| e.to_string()).and_then(|u| {
                    if u.origin() == wire.url.origin() {
                        Ok(u)
                    } else {
                        Err(format!("the endpoint event points to another origin: {u}"))
                    }
                });
                match resolved {
                    Ok(u) => {
                        let _ = sse.endpoint.set(u);
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Err(why) => {
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(Err(ClientError::Protocol(why.clone())));
                        }
                        break why;
                    }
                }
            }
            "message" if !ev.data.trim().is_empty() => {
                if let Err(e) = wire.deliver(Bytes::from(ev.data), None).await {
                    tracing::debug!(error = %e, "ignoring a bad message on the SSE stream");
                }
            }
            _ => {}
        }
    };
    if let Some(tx) = endpoint_tx.take() {
        let _ = tx.send(Err(ClientError::Closed(why.clone())));
    }
    *lock(&sse.closed) = Some(why);
    // Dropping the waiters fails their callers with the reason just recorded.
    lock(&sse.pending).clear();
}
