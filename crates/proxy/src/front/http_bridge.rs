//! Legacy clients (an `initialize`, a session) of an HTTP upstream that speaks only
//! 2026-07-28 (issue 18, part 5; mcp-brief.md §9 rule 40), the HTTP sibling of
//! `legacy_bridge`. `initialize` is answered from the upstream's `server/discover` (learnt
//! by `http_era`'s probe), the session is the proxy's (a bounded table, `bridged`), and each
//! of its requests is POSTed on its own as a 2026-07-28 one: `_meta` stamped by splice, a
//! fresh id, and the headers the era requires (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*` from the upstream's `x-mcp-header` annotations). The rounds,
//! `InputRequiredResult`s and cancellation are `legacy_rounds`'. `resources/subscribe` and
//! `unsubscribe` become one `subscriptions/listen` POST per session, whose
//! `resources/updated` reach the session's GET stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use apiary_protocol::bridge::Stamp;
use apiary_protocol::{Kind, Message, bridge, codes, error_response, methods, modern};
use apiary_transport::sse;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Refusal};
use crate::front::bridged::{Bridged, BridgedSessions, lock};
use crate::front::bridged_sse;
use crate::front::call::{send_event, sse_response};
use crate::front::edge::Accepts;
use crate::front::http_era::{self, UpstreamEra};
use crate::front::legacy_rounds::{self, Opening, Upstream};
use crate::front::tool_headers::ToolHeaders;
use crate::guard::RequestCtx;
use crate::upstream::stdio::Delivery;

/// Resource URIs one bridged session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Longest one `subscriptions/listen` POST stays open before it is opened again.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Pause before a listen the upstream ended is opened again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// Unsolicited messages a session's GET stream may have waiting; more are dropped.
const STREAM_QUEUE: usize = 64;
/// How often an idle GET stream gets a comment (a gone client is noticed by the write).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where the bridge sends its POSTs, and what it keeps between them.
pub(crate) struct HttpBridge {
    client: reqwest::Client,
    endpoint: String,
    /// Bound on one answer read from the upstream.
    max_answer: usize,
    /// Bound on one round, and on the client's answer to a request put to it.
    timeout: Duration,
    write_timeout: Duration,
    max_sessions: usize,
    idle: Duration,
    pub(crate) era: UpstreamEra,
    pub(crate) sessions: BridgedSessions,
    /// The upstream's `x-mcp-header` annotations, per modern generation of the era probe.
    tool_headers: ToolHeaders,
    next_id: AtomicU64,
}

/// The bounds of a bridge.
pub(crate) struct Bounds {
    pub(crate) max_answer: usize,
    pub(crate) timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) idle: Duration,
}

impl HttpBridge {
    pub(crate) fn new(client: reqwest::Client, endpoint: &str, bounds: Bounds) -> HttpBridge {
        HttpBridge {
            client,
            endpoint: endpoint.to_owned(),
            max_answer: bounds.max_answer,
            timeout: bounds.timeout,
            write_timeout: bounds.write_timeout,
            max_sessions: bounds.max_sessions,
            idle: bounds.idle,
            era: UpstreamEra::default(),
            sessions: BridgedSessions::default(),
            tool_headers: ToolHeaders::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The upstream's `server/discover` result when it is modern-only (probed now, with
    /// `headers`, when its era is not known).
    pub(crate) async fn modern_only(&self, headers: &[(HeaderName, HeaderValue)]) -> Option<Bytes> {
        let probe = http_era::probe(&self.client, &self.endpoint, headers, self.timeout);
        self.era.learn(probe).await.modern_only().cloned()
    }

    /// Most sessions at once (2024-11-05 streams waiting for their `initialize` included).
    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// How long one SSE write to a client may wait.
    pub(crate) fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Probes the upstream in the background (at start, with the proxy's own credentials).
    pub(crate) fn probe_at_start(self: &Arc<Self>, headers: Vec<(HeaderName, HeaderValue)>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let me = Arc::clone(self);
        rt.spawn(async move {
            let probe = http_era::probe(&me.client, &me.endpoint, &headers, me.timeout);
            me.era.learn(probe).await;
        });
    }
}

/// `initialize` of a legacy client of a modern-only upstream: a session of the proxy's, and
/// the answer made from `discover` (JSON, or one SSE event for a client that takes only SSE).
pub(crate) fn open(bridge: &HttpBridge, m: &Message, discover: &[u8], acc: Accepts) -> Result<Response, Refusal> {
    let (session, _, frame) = open_session(bridge, m, discover)?;
    let mut res = if acc.json {
        answer::json(frame)
    } else {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Ok(sse::message_event(None, &frame)));
        sse_response(rx)
    };
    if let Ok(v) = HeaderValue::from_str(&session) {
        res.headers_mut().insert("mcp-session-id", v);
    }
    Ok(res)
}

/// The session an `initialize` opens (its id and state, kept in the bridge's bounded table)
/// and the answer frame, made from `discover`. Shared by the Streamable HTTP front above
/// and the 2024-11-05 one (`http_bridge_sse`).
pub(crate) fn open_session(
    bridge: &HttpBridge,
    m: &Message,
    discover: &[u8],
) -> Result<(Arc<str>, Arc<Bridged>, Bytes), Refusal> {
    let id = m.id_raw().unwrap_or("null");
    let o = Opening::of(m)?;
    let b = Arc::new(Bridged::standalone(o.caps, &o.capabilities, o.client_info.as_deref()));
    let session: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    bridge.sessions.insert_bounded(Arc::clone(&session), Arc::clone(&b), bridge.max_sessions, bridge.idle)?;
    let result = bridge::initialize_from_discover(discover, o.revision.as_str());
    let frame = apiary_protocol::result_response(id, &result);
    tracing::info!(%session, revision = %o.revision, "session opened on a 2026-07-28-only HTTP server (bridged)");
    Ok((session, b, frame))
}

/// A message of a bridged 2024-11-05 session (`POST /messages`): whatever answers it goes
/// to the session's stream `out`; `headers` as for [`post`].
pub(crate) async fn sse_post(
    bridge: &Arc<HttpBridge>,
    ctx: &RequestCtx,
    b: Arc<Bridged>,
    m: Message,
    out: mpsc::Sender<Delivery>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<(), Refusal> {
    b.touch();
    let up = Arc::new(Rounds { bridge: Arc::clone(bridge), headers });
    bridged_sse::post(up, ctx, b, m, out).await
}

/// `GET` of a bridged session: its stream of unsolicited messages (the upstream's
/// `resources/updated` for the session's subscriptions), with keep-alive comments, until
/// the client or the session goes away. A newer GET replaces it (the older one ends).
pub(crate) fn stream(bridge: &HttpBridge, b: &Bridged) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    *lock(&b.stream) = Some(tx);
    let (body_tx, body_rx) = mpsc::channel(16);
    let closed = b.closed.clone();
    let write_timeout = bridge.write_timeout;
    tokio::spawn(async move {
        let mut out = Some(body_tx);
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.reset();
        while out.is_some() {
            let event = tokio::select! {
                frame = rx.recv() => match frame {
                    Some(frame) => sse::message_event(None, &frame),
                    None => break,
                },
                _ = tick.tick() => sse::keep_alive(),
                () = closed.cancelled() => break,
            };
            send_event(&mut out, event, write_timeout).await;
        }
    });
    sse_response(body_rx)
}

/// An unsolicited message for the session's GET stream: dropped when none is open or it is
/// full (the legacy era lets a server send on the GET stream only while one is open).
fn deliver(b: &Bridged, frame: Bytes) {
    let sent = lock(&b.stream).as_ref().is_some_and(|tx| tx.try_send(frame).is_ok());
    if !sent {
        tracing::debug!("a resource update for a bridged session with no open GET stream was dropped");
    }
}

/// A POST of a bridged session; `headers` are what each of its POSTs upstream carries
/// (the proxy's credentials, the caller's passed headers).
pub(crate) async fn post(
    bridge: &Arc<HttpBridge>,
    ctx: &RequestCtx,
    b: Arc<Bridged>,
    members: Vec<Result<Message, apiary_protocol::ParseError>>,
    batch: bool,
    acc: Accepts,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<Response, Refusal> {
    b.touch();
    let up = Arc::new(Rounds { bridge: Arc::clone(bridge), headers });
    legacy_rounds::post(&up, ctx, b, members, batch, acc).await
}

/// One request's POSTs to the upstream.
struct Rounds {
    bridge: Arc<HttpBridge>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rounds {
    /// POSTs `request` (a 2026-07-28 request) with a fresh id: the answer, with the
    /// request's own id back.
    async fn send(&self, request: &Message, out: Option<&mpsc::Sender<Bytes>>) -> Result<Bytes, Refusal> {
        let params =
            if request.method() == Some(methods::TOOLS_CALL) { self.param_headers(request).await } else { Vec::new() };
        self.post(request, out, params).await
    }

    /// [`Rounds::send`] with the `Mcp-Param-*` headers given.
    async fn post(
        &self,
        request: &Message,
        out: Option<&mpsc::Sender<Bytes>>,
        params: Vec<(String, String)>,
    ) -> Result<Bytes, Refusal> {
        let method = request.method().unwrap_or_default();
        let n = self.bridge.next_id.fetch_add(1, Ordering::Relaxed);
        let body = request.with_id(&format!("\"apiary-{n}\""));
        let mut req = http_era::modern_post(&self.bridge.client, &self.bridge.endpoint, method, &self.headers);
        if let Some(member) = modern::name_member(method)
            && let Some(name) = modern::params_string(request, member)
        {
            req = req.header("mcp-name", bridge::header_value(&name));
        }
        for (header, value) in params {
            req = req.header(header, value);
        }
        let unavailable = |reason: String| Refusal::UpstreamUnavailable { reason, retry_after: 1, id: None };
        let res = req.body(body).send().await.map_err(|e| unavailable(format!("the server is not reachable: {e}")))?;
        let status = res.status().as_u16();
        let frame = match http_era::read_answer(res, out, self.bridge.max_answer).await {
            Ok(frame) => frame,
            Err(why) => {
                if (400..500).contains(&status) {
                    // Not an error of the era (those are JSON-RPC): the server may no
                    // longer be the one probed.
                    self.bridge.era.forget();
                }
                return Err(unavailable(format!("the server answered HTTP {status}: {why}")));
            }
        };
        let answer = Message::parse(frame).map_err(|_| unavailable("the server's answer is not JSON-RPC".into()))?;
        Ok(match request.id_raw() {
            Some(id) => answer.with_id(id),
            None => answer.into_bytes(),
        })
    }

    /// The `Mcp-Param-*` headers of a `tools/call`, from the upstream's annotations (its
    /// tools listed first when nothing is known about them).
    async fn param_headers(&self, request: &Message) -> Vec<(String, String)> {
        let Some(tool) = modern::params_string(request, "name") else { return Vec::new() };
        let generation = self.bridge.era.generation();
        let params = match self.bridge.tool_headers.of(generation, &tool) {
            Some(params) => params,
            None => {
                self.fetch_tools(generation).await;
                self.bridge.tool_headers.of(generation, &tool).unwrap_or_default()
            }
        };
        params
            .iter()
            .filter_map(|p| Some((format!("mcp-param-{}", p.header), bridge::param_header_value(request, p)?)))
            .collect()
    }

    /// Lists the upstream's tools (first page) to learn their annotations; a failure leaves
    /// nothing known, and the call goes without the headers.
    async fn fetch_tools(&self, generation: u64) {
        let params = modern::probe_params("apiary", env!("CARGO_PKG_VERSION"));
        let frame = format!(r#"{{"jsonrpc":"2.0","id":0,"method":"tools/list","params":{params}}}"#);
        let Ok(list) = Message::parse(Bytes::from(frame)) else { return };
        match tokio::time::timeout(self.bridge.timeout, self.post(&list, None, Vec::new())).await {
            Ok(Ok(answer)) => self.learn(generation, &answer),
            _ => tracing::debug!("could not list the upstream's tools for its Mcp-Param-* headers"),
        }
    }

    fn learn(&self, generation: u64, answer: &Bytes) {
        if let Ok(m) = Message::parse(answer.clone())
            && m.kind() == Kind::Response
            && let Some(result) = m.payload_raw()
        {
            self.bridge.tool_headers.learn(generation, result);
        }
    }
}

impl Upstream for Rounds {
    async fn round(
        &self,
        _ctx: &RequestCtx,
        request: Bytes,
        out: Option<&mpsc::Sender<Bytes>>,
    ) -> Result<Bytes, Refusal> {
        let request = Message::parse(request).map_err(Refusal::Parse)?;
        let generation = self.bridge.era.generation();
        let answer = tokio::time::timeout(self.bridge.timeout, self.send(&request, out)).await.map_err(|_| {
            Refusal::UpstreamUnavailable {
                reason: "the server did not answer in time".into(),
                retry_after: 1,
                id: None,
            }
        })??;
        if request.method() == Some(methods::TOOLS_LIST) {
            self.learn(generation, &answer);
        }
        Ok(answer)
    }

    async fn subscription(&self, _ctx: &RequestCtx, b: &Arc<Bridged>, m: &Message) -> Bytes {
        subscription(&self.bridge, &self.headers, b, m).await
    }

    fn answer_timeout(&self) -> Duration {
        self.bridge.timeout
    }

    fn write_timeout(&self) -> Duration {
        self.bridge.write_timeout
    }
}

/// `resources/subscribe` and `resources/unsubscribe` (removed in 2026-07-28): the session's
/// set of URIs changes, and the one `subscriptions/listen` POST that carries their updates
/// is opened again for the new set, or closed with the last URI (mcp-brief.md rule 40).
/// Answered once the upstream acknowledged the new listen.
async fn subscription(
    bridge: &Arc<HttpBridge>,
    headers: &[(HeaderName, HeaderValue)],
    b: &Arc<Bridged>,
    m: &Message,
) -> Bytes {
    let id = m.id_raw().unwrap_or("null");
    let ok = || apiary_protocol::result_response(id, "{}");
    let Some(uri) = m.params_string("uri") else {
        return error_response(Some(id), codes::INVALID_PARAMS, "params.uri (a string) is required", None);
    };
    let subscribe = m.method() == Some(methods::SUBSCRIBE);
    let acked = {
        // The listen's lock is held while the set changes and its task is replaced, so
        // concurrent changes leave the listen of the newest set.
        let mut listen = lock(&b.listen);
        let uris: Vec<String> = {
            let mut set = lock(&b.subscriptions);
            if subscribe && !set.contains(&uri) && set.len() >= MAX_SUBSCRIPTIONS {
                let msg = format!("a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources");
                return error_response(Some(id), codes::INVALID_REQUEST, &msg, None);
            }
            let changed = if subscribe { set.insert(uri) } else { set.remove(&uri) };
            if !changed {
                return ok();
            }
            set.iter().cloned().collect()
        };
        if let Some(old) = listen.take() {
            old.abort();
        }
        if uris.is_empty() {
            return ok();
        }
        let (ack_tx, ack_rx) = oneshot::channel();
        let l = Listen {
            bridge: Arc::clone(bridge),
            headers: headers.to_vec(),
            session: Arc::downgrade(b),
            closed: b.closed.clone(),
            capabilities: b.capabilities.clone(),
            client_info: b.client_info.clone(),
            uris: serde_json::to_string(&uris).unwrap_or_else(|_| "[]".into()),
        };
        *listen = Some(tokio::spawn(l.run(ack_tx)));
        ack_rx
    };
    match tokio::time::timeout(bridge.timeout, acked).await {
        Ok(Ok(Ok(()))) => ok(),
        Ok(Ok(Err(why))) => error_response(Some(id), codes::INTERNAL_ERROR, &why, None),
        _ => error_response(Some(id), codes::INTERNAL_ERROR, "the server did not acknowledge the subscription", None),
    }
}

/// Where a listen's acknowledgement (or why it failed) goes, until it is sent.
type Ack = Option<oneshot::Sender<Result<(), String>>>;

/// One session's `subscriptions/listen` at the upstream. It holds the session weakly: the
/// session's end (DELETE, idleness) drops its task with it.
struct Listen {
    bridge: Arc<HttpBridge>,
    /// The headers of the `resources/subscribe` that opened it (credentials, tracing).
    headers: Vec<(HeaderName, HeaderValue)>,
    session: Weak<Bridged>,
    closed: CancellationToken,
    capabilities: Box<str>,
    client_info: Option<Box<str>>,
    /// The URIs, a JSON array.
    uris: String,
}

impl Listen {
    /// Opens the listen, and again when the upstream ends it (or after [`LISTEN_TIMEOUT`]),
    /// while the session lives; a first opening that fails is the subscribe's error.
    async fn run(self, ack: oneshot::Sender<Result<(), String>>) {
        let mut ack = Some(ack);
        while !self.closed.is_cancelled() {
            let ended = tokio::select! {
                r = tokio::time::timeout(LISTEN_TIMEOUT, self.once(&mut ack)) => r.unwrap_or(Ok(())),
                () = self.closed.cancelled() => return,
            };
            if let Some(a) = ack.take() {
                let why = ended.err().unwrap_or_else(|| "the server ended the subscription".into());
                let _ = a.send(Err(why));
                return;
            }
            if let Err(why) = ended {
                tracing::info!(%why, "a bridged session's subscriptions/listen ended; opening it again");
            }
            tokio::select! {
                () = tokio::time::sleep(LISTEN_RETRY) => {}
                () = self.closed.cancelled() => return,
            }
        }
    }

    /// One listen POST, read until the upstream ends it.
    async fn once(&self, ack: &mut Ack) -> Result<(), String> {
        let n = self.bridge.next_id.fetch_add(1, Ordering::Relaxed);
        let uris = &self.uris;
        let frame = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":"apiary-listen-{n}","method":"subscriptions/listen","params":{{"notifications":{{"resourceSubscriptions":{uris}}}}}}}"#
        ));
        let stamp =
            Stamp { capabilities: &self.capabilities, client_info: self.client_info.as_deref(), log_level: None };
        let body = bridge::modern_request(&frame, &stamp).map_err(|e| format!("the listen cannot be built: {e}"))?;
        let req =
            http_era::modern_post(&self.bridge.client, &self.bridge.endpoint, "subscriptions/listen", &self.headers);
        let res = req.body(body).send().await.map_err(|e| format!("the server is not reachable: {e}"))?;
        let status = res.status();
        let mut events = http_era::Events::new(res, self.bridge.max_answer);
        while let Some(data) = events.next().await? {
            let Ok(m) = Message::parse(data.clone()) else { continue };
            match (m.kind(), m.method()) {
                (Kind::Notification, Some("notifications/subscriptions/acknowledged")) => {
                    if let Some(a) = ack.take() {
                        let _ = a.send(Ok(()));
                    }
                }
                (Kind::Notification, Some(methods::RESOURCES_UPDATED)) => match self.session.upgrade() {
                    Some(b) => deliver(&b, data),
                    None => return Ok(()),
                },
                (Kind::Notification, _) => {}
                // The listen's answer: it ended (an error says why).
                _ => {
                    return match m.kind() {
                        Kind::Error => Err(m.payload_raw().unwrap_or_default().chars().take(300).collect()),
                        _ => Ok(()),
                    };
                }
            }
        }
        if !status.is_success() {
            return Err(format!("the server answered HTTP {status}"));
        }
        Ok(())
    }
}
