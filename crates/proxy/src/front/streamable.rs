//! The Streamable HTTP front of a stdio upstream (legacy revisions): `POST /mcp` answered
//! as JSON or SSE, the standalone `GET /mcp` stream, and `DELETE /mcp`. `--stdio-mode`
//! places each session on a child of its own (initialized with the session's own
//! `initialize`) or on the shared child that Apiary initialized itself, which also serves
//! requests that belong to no session.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use apiary_protocol::{Body as JsonBody, Message, ParseError, Revision, methods, parse_body};
use apiary_transport::sse;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::{self, Refusal};
use crate::front::call::{KEEP_ALIVE, RETRY_MS, send_event, sse_response};
use crate::front::dispatch::dispatch;
use crate::front::edge::{self, Accepts};
use crate::front::legacy_bridge;
use crate::front::modern;
use crate::front::refuse;
use crate::front::sessionless_bridge;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;
use crate::sessions::events::ResumeError;
use crate::sessions::placement::open_session;
use crate::sessions::session::Session;
use crate::upstream::stdio::Delivery;

// Header names built once: a lookup by `&str` parses and validates the name on every request.
static SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
static VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

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
        // The modern era is POST only (mcp-brief.md rule 4).
        Method::GET | Method::DELETE if modern::header_is_modern(&headers) => {
            Err(Refusal::MethodNotAllowed { allow: "POST" })
        }
        Method::GET => get(&front, &ctx, &headers).await,
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

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `MCP-Protocol-Version` on a legacy request: absent is fine, a legacy revision is fine,
/// anything else is refused (row 14).
fn check_version(headers: &HeaderMap) -> Result<Option<Revision>, Refusal> {
    match header_str(headers, &VERSION_HEADER) {
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
    // The one point where the eras part (mcp-brief.md rule 7).
    let answered = if modern::is_modern(headers, &parsed) {
        modern::post(front, ctx, headers, acc, parsed).await
    } else {
        post_parsed(front, ctx, headers, acc, parsed).await
    };
    answered.map_err(|e| e.echo(echo_id.as_deref()))
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
    let session = match header_str(headers, &SESSION_HEADER) {
        Some(id) => Some(front.sessions.get(id).ok_or(Refusal::SessionNotFound)?),
        None => None,
    };
    let header_version = check_version(headers)?;
    let bridged = session.as_ref().and_then(|s| front.bridged.get(&s.id).map(|b| (Arc::clone(s), b)));
    let batch = matches!(parsed, JsonBody::Batch(_));
    let members = match parsed {
        JsonBody::Single(m) => vec![Ok(m)],
        JsonBody::Batch(members) => {
            let rev = session.as_ref().map(|s| s.revision).or(header_version).unwrap_or(Revision::HTTP_DEFAULT);
            check_batch(&members, rev)?;
            members
        }
    };
    if let Some((s, b)) = bridged {
        return legacy_bridge::post(front, ctx, s, b, members, batch, acc).await;
    }
    // No session: a 2026-07-28-only child gets the requests stamped (sessionless_bridge).
    if session.is_none() && sessionless_bridge::applies(front).await? {
        return sessionless_bridge::post(front, ctx, acc, members, batch).await;
    }
    match dispatch(front, ctx, session, members, batch).await? {
        None => Ok(answer::accepted()),
        Some((call, rx)) if !acc.json => Ok(call.into_sse(rx, front.write_timeout)),
        // Both admitted: JSON unless something for the call comes before its answer.
        Some((call, rx)) if acc.sse_named => Ok(call.into_json_or_sse(rx, front.write_timeout).await),
        Some((call, rx)) => Ok(call.into_json(rx).await),
    }
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

/// `initialize`: places the session on a child (its own, started with the client's own
/// `initialize`, or the shared one) and answers from that child's `initialize` result.
async fn initialize(
    front: &Arc<StdioFront>,
    headers: &HeaderMap,
    m: &Message,
    acc: Accepts,
) -> Result<Response, Refusal> {
    if let Some(id) = header_str(headers, &SESSION_HEADER)
        && front.sessions.get(id).is_some()
    {
        return Err(Refusal::invalid_with_id("session already initialized", m.id_raw()));
    }
    // A child that speaks only 2026-07-28 gets the session through the bridge.
    let (session, frame) = if legacy_bridge::bridging(front).await {
        legacy_bridge::open(front, m)?
    } else {
        open_session(&front.placement, &front.sessions, m).await.map_err(|e| refuse::opening(e, m.id_raw()))?
    };
    let mut res = if acc.json {
        answer::json(frame)
    } else {
        let (tx, rx) = mpsc::channel(2);
        let _ = tx.try_send(Ok(sse::message_event(None, &frame)));
        sse_response(rx)
    };
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        res.headers_mut().insert(SESSION_HEADER.clone(), v);
    }
    Ok(res)
}

/// `GET /mcp`: the session's standalone stream for messages no request is waiting for.
/// With `Last-Event-ID` it first resumes the stream that id belongs to: the events that
/// followed it, then that stream's live events until it ends (rows 10, 20).
async fn get(front: &Arc<StdioFront>, ctx: &RequestCtx, headers: &HeaderMap) -> Result<Response, Refusal> {
    if !edge::accepts_event_stream(headers) {
        return Err(Refusal::NotAcceptable("Accept must include text/event-stream"));
    }
    let Some(id) = header_str(headers, &SESSION_HEADER) else {
        return Err(Refusal::invalid("needs a session: send initialize first"));
    };
    let session = front.sessions.get(id).ok_or(Refusal::SessionNotFound)?;
    check_version(headers)?;
    let resumed = match header_str(headers, &LAST_EVENT_ID) {
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
    let bridged = front.bridged.get(&session.id).map(|b| (Arc::clone(&session), b));
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
    // A bridged session's listen asks for list changes once it has this stream.
    if let Some((session, b)) = bridged {
        legacy_bridge::stream_opened(front, ctx, &session, &b).await;
    }
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
    // A standalone stream ends when its client or the session goes: its events stay.
    session.finish_stream(n, false);
}

/// `DELETE /mcp`: ends the session, cancels its calls and stops its child (row 13).
fn delete(front: &Arc<StdioFront>, headers: &HeaderMap) -> Result<Response, Refusal> {
    let Some(id) = header_str(headers, &SESSION_HEADER) else {
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
