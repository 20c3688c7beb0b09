//! The Streamable HTTP front of a stdio upstream (legacy revisions): `POST /mcp` answered
//! as JSON or SSE, the standalone `GET /mcp` stream, and `DELETE /mcp`. `--stdio-mode`
//! places each session on a child of its own (initialized with the session's own
//! `initialize`) or on the shared child that Apiary initialized itself, which also serves
//! requests that belong to no session.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use apiary_config::RunConfig;
use apiary_protocol::rewrite;
use apiary_protocol::{
    Body as JsonBody, Kind, Message, ParseError, RequestId, Revision, codes, error_response, methods, parse_body,
};
use apiary_transport::sse;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::client::level_rank;
use crate::front::call::{Call, KEEP_ALIVE, RETRY_MS, send_event, sse_response};
use crate::front::edge::{self, Accepts};
use crate::front::refuse;
use crate::guard::{Guard, RequestCtx};
use crate::sessions::events::ResumeError;
use crate::sessions::placement::{Placement, open_session};
use crate::sessions::session::{Session, SessionTable};
use crate::upstream::stdio::{ChildConn, Delivery, SlotEvent, SlotOptions};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Everything the `/mcp` handlers of a stdio upstream share.
pub struct StdioFront {
    pub sessions: SessionTable,
    /// The children sessions (and requests of none) are placed on.
    pub placement: Placement,
    pub(crate) request_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_queued: usize,
    pub(crate) max_body: usize,
    /// 2024-11-05 sessions (`/sse` + `/messages`).
    pub(crate) sse: crate::front::legacy_sse::SseSessions,
    pub(crate) endpoint_prefix: String,
    pub(crate) trust_proxy_headers: bool,
    /// Authorization and tool filters, applied to each parsed message.
    pub(crate) guard: Arc<Guard>,
}

impl StdioFront {
    pub fn new(
        cfg: &RunConfig,
        template: SlotOptions,
        events: mpsc::UnboundedSender<SlotEvent>,
        guard: Arc<Guard>,
    ) -> Arc<StdioFront> {
        let limits = &cfg.limits;
        Arc::new(StdioFront {
            sessions: SessionTable::new(
                limits.max_sessions as usize,
                limits.session_idle_ttl(),
                limits.event_buffer_bytes as usize,
            ),
            placement: Placement::new(cfg, template, events),
            max_body: limits.max_body_bytes as usize,
            request_timeout: limits.request_timeout(),
            write_timeout: limits.write_timeout(),
            sse: Default::default(),
            endpoint_prefix: cfg.proxy.endpoint_prefix.trim_end_matches('/').to_owned(),
            trust_proxy_headers: cfg.proxy.trust_proxy_headers,
            max_queued: limits.max_queued_per_session as usize,
            guard,
        })
    }
}

impl StdioFront {
    /// Stops every child: the shared one and each session's.
    pub fn stop_all(&self) {
        self.placement.shared.slot.stop();
        self.sessions.clear();
        self.sse.clear();
    }
}

/// `/mcp`: dispatches on the method (bad-input.md, row 7).
pub async fn mcp(
    State(front): State<Arc<StdioFront>>,
    ctx: Option<Extension<RequestCtx>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = ctx.map_or_else(RequestCtx::anonymous, |Extension(c)| c);
    let result = match method {
        Method::POST => post(&front, &ctx, &headers, body).await,
        Method::GET => get(&front, &headers).await,
        Method::DELETE => delete(&front, &headers),
        Method::OPTIONS => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            Ok(r)
        }
        _ => Err(Refusal::MethodNotAllowed { allow: "GET, POST, DELETE" }),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `MCP-Protocol-Version` on a legacy request: absent is fine, a legacy revision is fine,
/// anything else is refused (row 14).
fn check_version(headers: &HeaderMap) -> Result<Option<Revision>, Refusal> {
    match header_str(headers, VERSION_HEADER) {
        None => Ok(None),
        Some(v) => match v.parse::<Revision>() {
            Ok(r) if r.era() == apiary_protocol::Era::Legacy => Ok(Some(r)),
            _ => Err(Refusal::UnsupportedVersion),
        },
    }
}

/// The edge checks every POST shares, in the order bad-input.md fixes: size, then
/// Content-Type, then Accept, then the body itself.
async fn post_prelude(front: &StdioFront, headers: &HeaderMap, body: Body) -> Result<(Accepts, JsonBody), Refusal> {
    edge::check_post_headers(headers, front.max_body)?;
    let acc = edge::accepts(headers);
    if !acc.json && !acc.sse {
        return Err(Refusal::NotAcceptable("Accept must include application/json or text/event-stream"));
    }
    let bytes = edge::read_body(body, front.max_body).await?;
    let parsed = parse_body(bytes).map_err(Refusal::Parse)?;
    Ok((acc, parsed))
}

async fn post(front: &Arc<StdioFront>, ctx: &RequestCtx, headers: &HeaderMap, body: Body) -> Result<Response, Refusal> {
    let (acc, parsed) = post_prelude(front, headers, body).await?;
    ctx.note_body(&parsed);
    // From here on the body is read: a refusal of a single request carries its id.
    let echo_id = match &parsed {
        JsonBody::Single(m) if m.is_request() => m.id_raw().map(str::to_owned),
        _ => None,
    };
    post_parsed(front, ctx, headers, acc, parsed).await.map_err(|e| e.echo(echo_id.as_deref()))
}

async fn post_parsed(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    acc: Accepts,
    parsed: JsonBody,
) -> Result<Response, Refusal> {
    if let JsonBody::Single(m) = &parsed
        && m.is_request()
        && m.method() == Some(methods::INITIALIZE)
    {
        return initialize(front, headers, m, acc).await;
    }
    let session = match header_str(headers, SESSION_HEADER) {
        Some(id) => Some(front.sessions.get(id).ok_or(Refusal::SessionNotFound)?),
        None => None,
    };
    let header_version = check_version(headers)?;
    let batch = matches!(parsed, JsonBody::Batch(_));
    let members = match parsed {
        JsonBody::Single(m) => vec![Ok(m)],
        JsonBody::Batch(members) => {
            let rev = session.as_ref().map(|s| s.revision).or(header_version).unwrap_or(Revision::HTTP_DEFAULT);
            check_batch(&members, rev)?;
            members
        }
    };
    match dispatch(front, ctx, session, members, batch).await? {
        None => Ok(answer::accepted()),
        Some((call, rx)) if acc.sse_named || !acc.json => Ok(call.into_sse(rx, front.write_timeout)),
        Some((call, rx)) => Ok(call.into_json(rx).await),
    }
}

/// Forwards a POST's messages to the session's child (or the shared one). `None` when
/// nothing needs an answer (only notifications and responses: 202).
pub(crate) async fn dispatch(
    front: &StdioFront,
    ctx: &RequestCtx,
    session: Option<Arc<Session>>,
    members: Vec<Result<Message, ParseError>>,
    batch: bool,
) -> Result<Option<(Call, mpsc::Receiver<Delivery>)>, Refusal> {
    let group = session.as_ref().map_or(&front.placement.shared, |s| &s.group);
    // A lone response is judged before waiting for the child: one owed by a child that
    // died is withdrawn, whatever the state of its successor (row 17).
    if let (Some(s), false, [Ok(m)]) = (&session, batch, members.as_slice())
        && m.is_response()
    {
        if !m.id().is_some_and(|id| s.settle(&id, group.slot.live_generation())) {
            return Err(Refusal::invalid("no outstanding request with this id"));
        }
        let conn = group.slot.ready(front.request_timeout).await?;
        conn.send(m.bytes().clone())?;
        return Ok(None);
    }
    let conn = group.slot.ready(front.request_timeout).await?;
    let (tx, rx) = mpsc::channel::<Delivery>(front.max_queued.max(members.len() + 8));
    let mut immediate = Vec::new();
    let mut waiting: Vec<(RequestId, u64)> = Vec::new();
    let mut reshapes = Vec::new();
    for member in members {
        let m = match member {
            Ok(m) => m,
            Err(e) => {
                immediate.push(e.to_response());
                continue;
            }
        };
        let m = match front.guard.admit(&ctx.identity, m) {
            Ok(admitted) => {
                if let (Some(r), Some(id)) = (admitted.reshape, admitted.message.id()) {
                    reshapes.push((id, r));
                }
                admitted.message
            }
            Err(e) if !batch => return Err(e),
            Err(e) => {
                immediate.push(e.body());
                continue;
            }
        };
        match forward(session.as_deref(), &conn, &m, &tx, front.max_queued, group.slot.live_generation()) {
            Ok(Forwarded::Request(id, up)) => waiting.push((id, up)),
            Ok(Forwarded::Local(frame)) => immediate.push(frame),
            Ok(Forwarded::Nothing) => {}
            Err(e) if !batch => return Err(e),
            Err(e) => immediate.push(refusal_frame(&e, m.id_raw())),
        }
    }
    drop(tx);
    if waiting.is_empty() && immediate.is_empty() {
        return Ok(None);
    }
    let sessionless = if session.is_none() && !waiting.is_empty() {
        front.placement.shared.sessionless_started(waiting.len());
        Some((Arc::clone(&front.placement.shared), waiting.len()))
    } else {
        None
    };
    let call = Call { session, sessionless, conn, waiting, immediate, batch, timeout: front.request_timeout, reshapes };
    Ok(Some((call, rx)))
}

/// Batches exist only in 2025-03-26, and may not hold `initialize` or mix requests with
/// responses (row 8).
fn check_batch(members: &[Result<Message, ParseError>], rev: Revision) -> Result<(), Refusal> {
    if !rev.allows_batches() {
        return Err(Refusal::invalid(format!("batches are not supported in {rev}")));
    }
    if members.is_empty() {
        return Err(Refusal::invalid("an empty batch is not a request"));
    }
    let ok = members.iter().filter_map(|m| m.as_ref().ok());
    let (mut requests, mut responses) = (false, false);
    for m in ok {
        if m.method() == Some(methods::INITIALIZE) {
            return Err(Refusal::invalid("initialize cannot be batched"));
        }
        requests |= m.is_request();
        responses |= m.is_response();
    }
    if requests && responses {
        return Err(Refusal::invalid("a batch cannot mix requests and responses"));
    }
    Ok(())
}

/// An error frame for one refused batch member.
fn refusal_frame(r: &Refusal, id: Option<&str>) -> Bytes {
    match r {
        Refusal::InvalidRequest { message, .. } => error_response(id, codes::INVALID_REQUEST, message, None),
        other => error_response(id, codes::UPSTREAM_UNAVAILABLE, &other.to_string(), None),
    }
}

/// What became of one message of a POST.
enum Forwarded {
    /// A request went to the child: (client id, child id).
    Request(RequestId, u64),
    /// Apiary answered it itself.
    Local(Bytes),
    /// A notification or a response: nothing to wait for.
    Nothing,
}

/// On a shared child, requests that change per-client state are kept per session and
/// reach the child only when they change what the child must do.
fn answer_locally(s: &Session, m: &Message) -> Option<Bytes> {
    if s.group.exclusive {
        return None;
    }
    let id = m.id_raw()?;
    let param = |k: &str| m.params_as::<Value>().and_then(|p| p.get(k)?.as_str().map(str::to_owned));
    let forward = match m.method()? {
        methods::SET_LEVEL => {
            let rank = param("level").as_deref().and_then(level_rank)?;
            s.set_level(rank);
            s.group.lower_level(rank)
        }
        methods::SUBSCRIBE => {
            let uri = param("uri")?;
            s.subscribe(&uri) && s.group.subscribe(&uri)
        }
        methods::UNSUBSCRIBE => {
            let uri = param("uri")?;
            s.unsubscribe(&uri) && s.group.unsubscribe(&uri)
        }
        _ => return None,
    };
    (!forward).then(|| apiary_protocol::result_response(id, "{}"))
}

/// Forwards one message to the child.
fn forward(
    session: Option<&Session>,
    conn: &ChildConn,
    m: &Message,
    tx: &mpsc::Sender<Delivery>,
    max_queued: usize,
    live: Option<u64>,
) -> Result<Forwarded, Refusal> {
    match m.kind() {
        Kind::Request => {
            let method = m.method().unwrap_or_default();
            let id = m.id().ok_or_else(|| Refusal::invalid("request id missing"))?;
            let Some(s) = session else {
                if methods::needs_session(method) {
                    return Err(Refusal::invalid_with_id("needs a session: send initialize first", m.id_raw()));
                }
                let up = conn.request(m, tx.clone()).map_err(|e| refuse::stdio_sessionless(e, m.id_raw()))?;
                return Ok(Forwarded::Request(id, up));
            };
            if let Some(frame) = answer_locally(s, m) {
                return Ok(Forwarded::Local(frame));
            }
            s.begin(&id, m.id_raw().unwrap_or_default(), max_queued)?;
            match conn.request(m, tx.clone()) {
                Ok(up) => {
                    s.forwarded(&id, up);
                    Ok(Forwarded::Request(id, up))
                }
                Err(e) => {
                    s.finish(&id, 0);
                    Err(e.into())
                }
            }
        }
        Kind::Notification => {
            match m.method() {
                // Apiary initialized the child itself.
                Some(methods::INITIALIZED) => {}
                Some(methods::CANCELLED) => {
                    // The id is free at once (row 18); the child is told under its own id.
                    let target = session.zip(rewrite::cancelled_request_id(m)).and_then(|(s, id)| s.cancel(&id));
                    match target.and_then(|up| rewrite::with_cancelled_request_id(m, &up.to_string()).ok()) {
                        Some(frame) => conn.send(frame)?,
                        None => tracing::debug!("dropped a cancellation naming no request in flight"),
                    }
                }
                _ => {
                    if let Some(s) = session {
                        s.check_room(max_queued)?;
                    }
                    conn.send(m.bytes().clone())?
                }
            }
            Ok(Forwarded::Nothing)
        }
        Kind::Response | Kind::Error => {
            let Some(s) = session else {
                return Err(Refusal::invalid("needs a session: send initialize first"));
            };
            match m.id() {
                Some(id) if s.settle(&id, live) => {
                    conn.send(m.bytes().clone())?;
                    Ok(Forwarded::Nothing)
                }
                _ => Err(Refusal::invalid("no outstanding request with this id")),
            }
        }
    }
}

/// `initialize`: places the session on a child (its own, started with the client's own
/// `initialize`, or the shared one) and answers from that child's `initialize` result.
async fn initialize(
    front: &Arc<StdioFront>,
    headers: &HeaderMap,
    m: &Message,
    acc: Accepts,
) -> Result<Response, Refusal> {
    if let Some(id) = header_str(headers, SESSION_HEADER)
        && front.sessions.get(id).is_some()
    {
        return Err(Refusal::invalid_with_id("session already initialized", m.id_raw()));
    }
    let (session, frame) =
        open_session(&front.placement, &front.sessions, m).await.map_err(|e| refuse::opening(e, m.id_raw()))?;
    let mut res = if acc.json {
        answer::json(frame)
    } else {
        let (tx, rx) = mpsc::channel(2);
        let _ = tx.try_send(Ok(sse::message_event(None, &frame)));
        sse_response(rx)
    };
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(res)
}

/// `GET /mcp`: the session's standalone stream for messages no request is waiting for.
/// With `Last-Event-ID` it first resumes the stream that id belongs to: the events that
/// followed it, then that stream's live events until it ends (rows 10, 20).
async fn get(front: &Arc<StdioFront>, headers: &HeaderMap) -> Result<Response, Refusal> {
    if !edge::accepts_event_stream(headers) {
        return Err(Refusal::NotAcceptable("Accept must include text/event-stream"));
    }
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Err(Refusal::invalid("needs a session: send initialize first"));
    };
    let session = front.sessions.get(id).ok_or(Refusal::SessionNotFound)?;
    check_version(headers)?;
    let resumed = match header_str(headers, "last-event-id") {
        None => None,
        Some(last) => {
            let (tx, rx) = mpsc::channel::<Bytes>(session.buffered_events() + 64);
            match session.resume(last, &tx) {
                Ok(_) => Some(rx),
                Err(ResumeError::Unknown) => return Err(Refusal::invalid("unknown Last-Event-ID")),
                Err(ResumeError::Evicted) => return Err(Refusal::ResumeGap),
            }
        }
    };
    let write_timeout = front.write_timeout;
    let max_queued = front.max_queued.max(16);
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut out = Some(body_tx);
        if let Some(mut rx) = resumed {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => send_event(&mut out, ev, write_timeout).await,
                        None => break,
                    },
                    () = session.closed.cancelled() => return,
                }
                if out.is_none() {
                    return;
                }
            }
        }
        standalone(&session, out, max_queued, write_timeout).await;
    });
    Ok(sse_response(body_rx))
}

/// The standalone stream: unsolicited messages for the session, recorded and sent, with
/// keep-alive comments, until the client or the session goes away.
async fn standalone(
    session: &Arc<Session>,
    mut out: Option<mpsc::Sender<Result<Bytes, Infallible>>>,
    max_queued: usize,
    write_timeout: Duration,
) {
    let n = session.new_stream();
    let (tx, mut rx) = mpsc::channel::<Delivery>(max_queued);
    session.open_get_stream(tx);
    if session.revision >= Revision::V2025_11_25 {
        send_event(&mut out, session.prime(n, RETRY_MS), write_timeout).await;
    }
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;
    while let Some(tx) = out.as_ref() {
        let ev = tokio::select! {
            d = rx.recv() => match d {
                Some(d) => session.record(n, &d.frame),
                None => break,
            },
            _ = keep_alive.tick() => sse::keep_alive(),
            () = session.closed.cancelled() => break,
            () = tx.closed() => break,
        };
        send_event(&mut out, ev, write_timeout).await;
    }
    session.close_get_stream();
    session.finish_stream(n);
}

/// `DELETE /mcp`: ends the session, cancels its calls and stops its child (row 13).
fn delete(front: &Arc<StdioFront>, headers: &HeaderMap) -> Result<Response, Refusal> {
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Err(Refusal::invalid("DELETE needs an Mcp-Session-Id"));
    };
    if front.sessions.get(id).is_none() {
        return Err(Refusal::SessionNotFound);
    }
    check_version(headers)?;
    // Ending the session cancels its calls at the child and stops a child of its own.
    let session = front.sessions.remove(id).ok_or(Refusal::SessionNotFound)?;
    tracing::info!(session = %session.id, "session deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
