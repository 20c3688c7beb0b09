//! A POST's messages on their way to a stdio child: admitted by the guard, checked against
//! the session, answered locally where a shared child must not see them, and forwarded.
//! Shared by the Streamable HTTP and the 2024-11-05 handlers, which differ only in how the
//! answers travel back.

use std::sync::Arc;

use apiary_protocol::rewrite;
use apiary_protocol::{Kind, Message, ParseError, RequestId, codes, error_response, methods};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::Refusal;
use crate::client::level_rank;
use crate::front::call::Call;
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;
use crate::sessions::session::Session;
use crate::upstream::stdio::{ChildConn, Delivery};

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
    if waiting.is_empty() && immediate.is_empty() {
        return Ok(None);
    }
    let waiting_is_empty = waiting.is_empty();
    let sessionless = if session.is_none() && !waiting.is_empty() {
        front.placement.shared.sessionless_started(waiting.len());
        Some((Arc::clone(&front.placement.shared), waiting.len()))
    } else {
        None
    };
    let call = Call {
        session,
        sessionless,
        conn,
        waiting,
        immediate,
        batch,
        timeout: front.request_timeout,
        reshapes,
        cancel_on_drop: false,
        // Only a call with requests in flight has unsolicited messages to route.
        reply: (!waiting_is_empty).then_some(tx),
    };
    Ok(Some((call, rx)))
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
    // One member read from the bytes: a `1e400` elsewhere in params must not hide it.
    let param = |k: &str| m.params_string(k);
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
