//! Legacy clients (an `initialize`, a session) of a stdio child that speaks only 2026-07-28
//! (issue 18, part 5; mcp-brief.md §9 rule 40). The proxy answers `initialize` from the
//! child's `server/discover`, keeps the session itself, and sends each of the session's
//! requests to the child as a 2026-07-28 one, its `_meta` stamped with what the session's
//! `initialize` declared (by splice: the client's params keep their bytes). An
//! `InputRequiredResult` becomes the legacy server→client requests on the call's stream;
//! the client's answers go back as the retry (`inputResponses` + `requestState`) until a
//! final result. What does not depend on the child (the rounds, `ping`, `logging/setLevel`)
//! is `legacy_rounds`', what the session's one `subscriptions/listen` asks for is
//! `bridged_listen`'s; the listen and the rounds on the shared child are here.

use std::sync::Arc;

use apiary_protocol::bridge::{self, Stamp};
use apiary_protocol::{Kind, Message, ParseError};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::answer::Refusal;
use crate::front::bridged::{Bridged, ListChanges};
use crate::front::bridged_listen::{self, Ack, Filter, Heard, LISTEN_RETRY, LISTEN_TIMEOUT, Listens};
use crate::front::bridged_sse;
use crate::front::dispatch::dispatch;
use crate::front::edge::Accepts;
use crate::front::legacy_rounds::{self, Upstream};
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;
use crate::sessions::session::Session;
use crate::upstream::mux::{Attached, ChildGroup};
use crate::upstream::stdio::Delivery;

/// Whether legacy sessions are bridged: the shared child is up and speaks only 2026-07-28.
pub(crate) async fn bridging(front: &StdioFront) -> bool {
    let slot = &front.placement.shared.slot;
    slot.ready(front.request_timeout).await.is_ok() && slot.is_modern_only()
}

/// `initialize` of a bridged session: the session is the proxy's; the answer is made from
/// the child's `server/discover` result with the client's version when Apiary serves it
/// (else the newest legacy one, which the client may refuse).
pub(crate) fn open(front: &StdioFront, m: &Message) -> Result<(Arc<Session>, Bytes), Refusal> {
    let id = m.id_raw().unwrap_or("null");
    let discover = front.placement.shared.slot.discover_result().ok_or_else(|| Refusal::UpstreamUnavailable {
        reason: "the server has not answered server/discover".into(),
        retry_after: 1,
        id: Some(id.to_owned()),
    })?;
    let o = legacy_rounds::Opening::of(m)?;
    let session = front
        .sessions
        .insert(o.revision, Arc::clone(&front.placement.shared), o.caps)
        .map_err(|e| refuse::opening(e, Some(id)))?;
    let offered = ListChanges::offered(&discover);
    let bridged = Arc::new(Bridged::new(&session, o.caps, &o.capabilities, o.client_info.as_deref(), offered));
    front.bridged.insert(Arc::clone(&session.id), bridged);
    let result = bridge::initialize_from_discover(&discover, o.revision.as_str());
    tracing::info!(session = %session.id, revision = %o.revision, "session opened on a 2026-07-28-only server (bridged)");
    Ok((session, apiary_protocol::result_response(id, &result)))
}

/// A POST of a bridged session.
pub(crate) async fn post(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    session: Arc<Session>,
    b: Arc<Bridged>,
    members: Vec<Result<Message, ParseError>>,
    batch: bool,
    acc: Accepts,
) -> Result<Response, Refusal> {
    let up = Arc::new(Child { front: Arc::clone(front), session });
    legacy_rounds::post(&up, ctx, b, members, batch, acc).await
}

/// A bridged session's rounds on the shared child.
struct Child {
    front: Arc<StdioFront>,
    session: Arc<Session>,
}

impl Upstream for Child {
    async fn round(
        &self,
        ctx: &RequestCtx,
        request: Bytes,
        out: Option<&mpsc::Sender<Bytes>>,
    ) -> Result<Bytes, Refusal> {
        one_round(&self.front, ctx, request, out).await
    }

    fn answer_timeout(&self) -> std::time::Duration {
        self.front.request_timeout
    }

    fn write_timeout(&self) -> std::time::Duration {
        self.front.write_timeout
    }
}

impl Listens for Child {
    fn open_listen(&self, ctx: &RequestCtx, b: &Arc<Bridged>, filter: Filter, ack: Ack) -> JoinHandle<()> {
        let stamp = OwnedStamp { capabilities: b.capabilities.clone(), client_info: b.client_info.clone() };
        let session = Arc::clone(&self.session);
        tokio::spawn(listen(Arc::clone(&self.front), ctx.clone(), session, stamp, filter, ack))
    }

    fn ack_timeout(&self) -> std::time::Duration {
        self.front.request_timeout
    }
}

/// What [`Stamp`] borrows, owned by a task.
struct OwnedStamp {
    capabilities: Box<str>,
    client_info: Option<Box<str>>,
}

/// One session's `subscriptions/listen` at the child for `filter`: what it carries for the
/// session goes to it as any unsolicited message does (its GET stream, or its one open
/// stream). Re-opened when it ends while the session lives; stopped by aborting.
async fn listen(
    front: Arc<StdioFront>,
    ctx: RequestCtx,
    session: Arc<Session>,
    stamp: OwnedStamp,
    filter: Filter,
    ack: Ack,
) {
    let mut ack = Some(ack);
    let frame = filter.request(r#""apiary-listen""#);
    let stamp = Stamp { capabilities: &stamp.capabilities, client_info: stamp.client_info.as_deref(), log_level: None };
    let fail = |ack: &mut Option<Ack>, why: String| {
        if let Some(a) = ack.take() {
            a.send(Err(why));
        }
    };
    while !session.closed.is_cancelled() {
        let opened = match bridge::modern_request(&frame, &stamp).map(Message::parse) {
            Ok(Ok(msg)) => dispatch(&front, &ctx, None, vec![Ok(msg)], false).await.map_err(|e| e.to_string()),
            _ => Err("the listen request cannot be built".to_owned()),
        };
        let (mut call, rx) = match opened {
            Ok(Some(c)) => c,
            Ok(None) => return fail(&mut ack, "nothing to forward".into()),
            Err(why) => return fail(&mut ack, why),
        };
        call.cancel_on_drop = true;
        call.timeout = LISTEN_TIMEOUT;
        // A standing listen is no call in flight: it must not keep the child's log lines
        // from the one call that is (the multiplexer's attribution rule).
        if let Some((group, n)) = call.sessionless.take() {
            group.sessionless_finished(n);
        }
        let (tx, mut local) = mpsc::channel::<Delivery>(16);
        let _pump = AbortOnDrop(tokio::spawn(call.pump(rx, tx)));
        loop {
            let d = tokio::select! {
                d = local.recv() => d,
                () = session.closed.cancelled() => return,
            };
            let Some(d) = d else { break };
            match bridged_listen::heard(&d.frame, filter.lists) {
                Heard::Acknowledged => {
                    if let Some(a) = ack.take() {
                        a.send(Ok(()));
                    }
                }
                Heard::Relay(frame) => {
                    session.deliver(frame, None, false);
                }
                Heard::Ignored => {}
                Heard::Ended(ended) => {
                    fail(&mut ack, ended.err().unwrap_or_else(|| "the listen ended".into()));
                    break;
                }
            }
        }
        if ack.is_some() {
            return fail(&mut ack, "the server ended the subscription".into());
        }
        tokio::select! {
            () = tokio::time::sleep(LISTEN_RETRY) => {}
            () = session.closed.cancelled() => return,
        }
    }
}

/// The session has a GET stream: its listen asks also for the list changes the child
/// offers (once; returns when the child acknowledged).
pub(crate) async fn stream_opened(front: &Arc<StdioFront>, ctx: &RequestCtx, session: &Arc<Session>, b: &Arc<Bridged>) {
    let up = Child { front: Arc::clone(front), session: Arc::clone(session) };
    bridged_listen::stream_opened(&up, ctx, b).await;
}

/// A message of a bridged 2024-11-05 session (`POST /messages`): whatever answers it
/// travels on the session's stream `out`.
pub(crate) async fn sse_post(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    session: Arc<Session>,
    b: Arc<Bridged>,
    m: Message,
    out: mpsc::Sender<Delivery>,
) -> Result<(), Refusal> {
    let up = Arc::new(Child { front: Arc::clone(front), session });
    bridged_sse::post(up, ctx, b, m, out).await
}

/// One request to the child (each a new child-side id): its answer; its progress goes to
/// `out`. Dropping the future cancels the request at the child.
async fn one_round(
    front: &StdioFront,
    ctx: &RequestCtx,
    request: Bytes,
    out: Option<&mpsc::Sender<Bytes>>,
) -> Result<Bytes, Refusal> {
    let msg = Message::parse(request).map_err(Refusal::Parse)?;
    // A child's log line names no request: it reaches this call only while this is the one
    // call of no session in flight on the child (the multiplexer's rule; never a guess).
    // The stream is open before the request is sent: a fast child logs before `dispatch`
    // returns, and a line that finds no stream open is dropped.
    let (logs_tx, mut logs) = mpsc::channel::<Delivery>(16);
    let _logs = SessionlessStream::open(&front.placement.shared, logs_tx);
    let Some((mut call, rx)) = dispatch(front, ctx, None, vec![Ok(msg)], false).await? else {
        return Err(Refusal::invalid("nothing to forward"));
    };
    call.cancel_on_drop = true;
    let (tx, mut local) = mpsc::channel::<Delivery>(16);
    let pump = AbortOnDrop(tokio::spawn(call.pump(rx, tx)));
    loop {
        let d = tokio::select! {
            biased;
            Some(d) = logs.recv() => {
                if let Some(out) = out {
                    let _ = out.send(d.frame).await;
                }
                continue;
            }
            d = local.recv() => d,
        };
        let Some(d) = d else { break };
        // The answer, or the error of a request that timed out (sent as a plain message).
        let answers = d.is_response()
            || Message::parse(d.frame.clone()).is_ok_and(|m| matches!(m.kind(), Kind::Response | Kind::Error));
        if answers {
            return Ok(d.frame);
        }
        if let Some(out) = out {
            let _ = out.send(d.frame).await;
        }
    }
    drop(pump);
    Err(Refusal::UpstreamUnavailable { reason: "the server went away".into(), retry_after: 1, id: None })
}

/// A call's stream registered with the shared child for its unattributed messages, for as
/// long as the call runs.
struct SessionlessStream<'a> {
    group: &'a ChildGroup,
    n: u64,
}

impl<'a> SessionlessStream<'a> {
    fn open(group: &'a ChildGroup, tx: mpsc::Sender<Delivery>) -> Self {
        SessionlessStream { group, n: group.open_sessionless_stream(tx) }
    }
}

impl Drop for SessionlessStream<'_> {
    fn drop(&mut self) {
        self.group.close_sessionless_stream(self.n);
    }
}

/// Aborts the task when dropped: the call it pumps is dropped with it, and cancelled at
/// the child.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
