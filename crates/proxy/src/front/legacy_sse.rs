//! The 2024-11-05 HTTP+SSE transport for stdio servers: `GET /sse` opens a stream whose
//! first event names where to POST (`/messages?session_id=…`), and every answer travels on
//! that stream. The stream is the session: when it closes, the session ends and its calls
//! are cancelled. Behind an ingress that strips a path prefix, the `endpoint` event names
//! the public path (`endpointPrefix`, or a trusted `X-Forwarded-Prefix`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use apiary_protocol::{Body as JsonBody, methods, parse_body};
use apiary_transport::sse;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::front::call::{KEEP_ALIVE, send_event, sse_response};
use crate::front::dispatch::dispatch;
use crate::front::edge;
use crate::front::legacy_bridge;
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;
use crate::sessions::placement::open_session;
use crate::sessions::sse::SseSession;
use crate::upstream::stdio::Delivery;

/// `/sse`: GET only (bad-input.md, row 7).
pub async fn sse(State(front): State<Arc<StdioFront>>, method: Method, headers: HeaderMap) -> Response {
    match method {
        Method::GET => open(&front, &headers).unwrap_or_else(IntoResponse::into_response),
        Method::OPTIONS => allow("GET"),
        _ => Refusal::MethodNotAllowed { allow: "GET" }.into_response(),
    }
}

/// `/messages`: POST only.
pub async fn messages(
    State(front): State<Arc<StdioFront>>,
    ctx: Option<Extension<RequestCtx>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    match method {
        Method::POST => post(
            &front,
            &ctx.map_or_else(RequestCtx::anonymous, |Extension(c)| c),
            &headers,
            query.get("session_id").map(String::as_str),
            body,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response),
        Method::OPTIONS => allow("POST"),
        _ => Refusal::MethodNotAllowed { allow: "POST" }.into_response(),
    }
}

fn allow(methods: &'static str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

/// The public path prefix for the `endpoint` event: `configured` (`endpointPrefix`), else a
/// trusted `X-Forwarded-Prefix`. Shared with the HTTP bridge's own `/sse` (`http_bridge_sse`).
pub(crate) fn public_prefix(configured: &str, trust_proxy_headers: bool, headers: &HeaderMap) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    if trust_proxy_headers && let Some(p) = headers.get("x-forwarded-prefix").and_then(|v| v.to_str().ok()) {
        let p = p.trim().trim_end_matches('/');
        // Only a plain absolute path may become part of a URL we announce.
        if p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#') {
            return p.to_owned();
        }
    }
    String::new()
}

fn open(front: &Arc<StdioFront>, headers: &HeaderMap) -> Result<Response, Refusal> {
    if !edge::accepts_event_stream(headers) {
        return Err(Refusal::NotAcceptable("Accept must include text/event-stream"));
    }
    front.sessions.check_capacity_with(front.sse.len())?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = public_prefix(&front.endpoint_prefix, front.trust_proxy_headers, headers);
    let endpoint = format!("{prefix}/messages?session_id={id}");
    let (tx, rx) = mpsc::channel::<Delivery>(front.max_queued.max(16));
    let session = Arc::new(SseSession::new(tx));
    front.sse.insert(id.clone(), Arc::clone(&session));
    let closed = session.closed.clone();
    let write_timeout = front.write_timeout;
    let front = Arc::clone(front);
    Ok(serve_stream(endpoint, rx, closed, write_timeout, move || {
        // The stream is the session (row 28): it ends here, and its calls with it.
        front.sse.remove(&id);
        if let Some(inner) = session.inner.get() {
            front.sessions.remove(&inner.id);
        }
        tracing::info!(session = %id, "2024-11-05 session closed");
    }))
}

/// A 2024-11-05 session's stream: the `endpoint` event, then each message of `rx`, with
/// keep-alive comments, until the client goes away, `closed` is cancelled or `rx` ends;
/// then `ended` runs (the stream is the session: it ends the session). Shared by the stdio
/// front and the HTTP bridge's own `/sse` (`http_bridge_sse`).
pub(crate) fn serve_stream(
    endpoint: String,
    mut rx: mpsc::Receiver<Delivery>,
    closed: tokio_util::sync::CancellationToken,
    write_timeout: std::time::Duration,
    ended: impl FnOnce() + Send + 'static,
) -> Response {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut out = Some(body_tx);
        send_event(&mut out, sse::endpoint_event(&endpoint), write_timeout).await;
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        while let Some(tx) = out.as_ref() {
            let ev = tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => sse::message_event(None, &d.frame),
                    None => break,
                },
                _ = keep_alive.tick() => sse::keep_alive(),
                () = tx.closed() => break,
                () = closed.cancelled() => break,
            };
            send_event(&mut out, ev, write_timeout).await;
        }
        ended();
    });
    sse_response(body_rx)
}

/// The `session_id` of a `/messages` POST (400 when missing or empty).
pub(crate) fn session_param(id: Option<&str>) -> Result<&str, Refusal> {
    id.filter(|v| !v.is_empty()).ok_or_else(|| Refusal::invalid("session_id query parameter missing"))
}

/// The one message of a `/messages` POST: its headers checked, its body read (at most
/// `max_body`) and parsed; a batch is refused (2024-11-05 has none).
pub(crate) async fn read_message(
    ctx: &RequestCtx,
    headers: &HeaderMap,
    body: Body,
    max_body: usize,
) -> Result<apiary_protocol::Message, Refusal> {
    edge::check_post_headers(headers, max_body)?;
    let bytes = edge::read_body(body, max_body).await?;
    let parsed = parse_body(bytes).map_err(Refusal::Parse)?;
    ctx.note_body(&parsed);
    match parsed {
        JsonBody::Single(m) => Ok(m),
        JsonBody::Batch(_) => Err(Refusal::invalid("batches are not supported in 2024-11-05")),
    }
}

/// A POST to `/messages`: refusals are its own answer; everything else is 202, and the
/// answers travel on the session's stream (rows 8, 18, 24).
async fn post(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    id: Option<&str>,
    body: Body,
) -> Result<Response, Refusal> {
    let session = front.sse.get(session_param(id)?).ok_or(Refusal::SessionNotFound)?;
    let m = read_message(ctx, headers, body, front.max_body).await?;
    if m.is_request() && m.method() == Some(methods::INITIALIZE) {
        if session.inner.get().is_some() {
            return Err(Refusal::invalid_with_id("session already initialized", m.id_raw()));
        }
        // A child that speaks only 2026-07-28 gets the session through the bridge.
        let (inner, frame) = if legacy_bridge::bridging(front).await {
            legacy_bridge::open(front, &m)?
        } else {
            open_session(&front.placement, &front.sessions, &m).await.map_err(|e| refuse::opening(e, m.id_raw()))?
        };
        // Unsolicited messages for this session go to its one stream.
        let (tx, mut rx) = mpsc::channel::<Delivery>(front.max_queued.max(16));
        inner.open_get_stream(tx);
        let out = session.out.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if out.send(d).await.is_err() {
                    break;
                }
            }
        });
        if session.inner.set(Arc::clone(&inner)).is_err() {
            front.sessions.remove(&inner.id);
            return Err(Refusal::invalid_with_id("session already initialized", m.id_raw()));
        }
        let _ = session.out.send(Delivery::message(frame)).await;
        return Ok(answer::accepted());
    }
    let inner =
        session.inner.get().cloned().ok_or_else(|| Refusal::invalid("needs a session: send initialize first"))?;
    if let Some(b) = front.bridged.get(&inner.id) {
        legacy_bridge::sse_post(front, ctx, inner, b, m, session.out.clone()).await?;
        return Ok(answer::accepted());
    }
    if let Some((call, rx)) = dispatch(front, ctx, Some(inner), vec![Ok(m)], false).await? {
        tokio::spawn(call.pump(rx, session.out.clone()));
    }
    Ok(answer::accepted())
}
