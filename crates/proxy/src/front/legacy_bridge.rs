//! Legacy clients (an `initialize`, a session) of a stdio child that speaks only 2026-07-28
//! (issue 18, part 5; mcp-brief.md §9 rule 40). The proxy answers `initialize` from the
//! child's `server/discover`, keeps the session itself, and sends each of the session's
//! requests to the child as a 2026-07-28 one, its `_meta` stamped with what the session's
//! `initialize` declared (by splice: the client's params keep their bytes). An
//! `InputRequiredResult` becomes the legacy server→client requests on the call's stream;
//! the client's answers go back as the retry (`inputResponses` + `requestState`) until a
//! final result. What does not depend on the child (the rounds, `ping`, `logging/setLevel`)
//! is `legacy_rounds`'; the subscriptions and the rounds on the shared child are here.

use std::sync::Arc;

use apiary_protocol::bridge::{self, Stamp};
use apiary_protocol::{Kind, Message, ParseError, codes, error_response, methods};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::answer::Refusal;
use crate::front::bridged::{Bridged, lock};
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

/// Resource URIs one bridged session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Longest one `subscriptions/listen` stays open before it is opened again.
const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

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
    let bridged = Arc::new(Bridged::new(&session, o.caps, &o.capabilities, o.client_info.as_deref()));
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

    async fn subscription(&self, ctx: &RequestCtx, b: &Arc<Bridged>, m: &Message) -> Bytes {
        subscription(&self.front, ctx, &self.session, b, m).await
    }

    fn answer_timeout(&self) -> std::time::Duration {
        self.front.request_timeout
    }

    fn write_timeout(&self) -> std::time::Duration {
        self.front.write_timeout
    }
}

/// `resources/subscribe` and `resources/unsubscribe` (removed in 2026-07-28): the session's
/// set of URIs changes, and the one `subscriptions/listen` that carries their updates from
/// the child is re-opened for the new set (mcp-brief.md rule 40). Answered once the child
/// acknowledged the new listen.
async fn subscription(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    session: &Arc<Session>,
    b: &Bridged,
    m: &Message,
) -> Bytes {
    let id = m.id_raw().unwrap_or("null");
    let Some(uri) = m.params_string("uri") else {
        return error_response(Some(id), codes::INVALID_PARAMS, "params.uri (a string) is required", None);
    };
    let subscribe = m.method() == Some(methods::SUBSCRIBE);
    let uris: Vec<String> = {
        let mut set = lock(&b.subscriptions);
        if subscribe && !set.contains(&uri) && set.len() >= MAX_SUBSCRIPTIONS {
            let msg = format!("a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources");
            return error_response(Some(id), codes::INVALID_REQUEST, &msg, None);
        }
        let changed = if subscribe { set.insert(uri) } else { set.remove(&uri) };
        if !changed {
            return apiary_protocol::result_response(id, "{}");
        }
        set.iter().cloned().collect()
    };
    if let Some(old) = lock(&b.listen).take() {
        old.abort();
    }
    if uris.is_empty() {
        return apiary_protocol::result_response(id, "{}");
    }
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    let stamp = OwnedStamp { capabilities: b.capabilities.clone(), client_info: b.client_info.clone() };
    let task = tokio::spawn(listen(Arc::clone(front), ctx.clone(), Arc::clone(session), stamp, uris, ack_tx));
    *lock(&b.listen) = Some(task);
    match tokio::time::timeout(front.request_timeout, ack_rx).await {
        Ok(Ok(Ok(()))) => apiary_protocol::result_response(id, "{}"),
        Ok(Ok(Err(why))) => error_response(Some(id), codes::INTERNAL_ERROR, &why, None),
        _ => error_response(Some(id), codes::INTERNAL_ERROR, "the server did not acknowledge the subscription", None),
    }
}

/// What [`Stamp`] borrows, owned by a task.
struct OwnedStamp {
    capabilities: Box<str>,
    client_info: Option<Box<str>>,
}

/// One session's `subscriptions/listen` at the child for `uris`: `resources/updated` for
/// them goes to the session as any unsolicited message does (its GET stream, or its one
/// open stream). Re-opened when it ends while the session lives; stopped by aborting.
async fn listen(
    front: Arc<StdioFront>,
    ctx: RequestCtx,
    session: Arc<Session>,
    stamp: OwnedStamp,
    uris: Vec<String>,
    ack: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut ack = Some(ack);
    let uris = serde_json::to_string(&uris).unwrap_or_else(|_| "[]".into());
    let frame = Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":"apiary-listen","method":"subscriptions/listen","params":{{"notifications":{{"resourceSubscriptions":{uris}}}}}}}"#
    ));
    let stamp = Stamp { capabilities: &stamp.capabilities, client_info: stamp.client_info.as_deref(), log_level: None };
    let fail = |ack: &mut Option<tokio::sync::oneshot::Sender<Result<(), String>>>, why: String| {
        if let Some(a) = ack.take() {
            let _ = a.send(Err(why));
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
            let Ok(m) = Message::parse(d.frame.clone()) else { continue };
            match (m.kind(), m.method()) {
                (Kind::Notification, Some("notifications/subscriptions/acknowledged")) => {
                    if let Some(a) = ack.take() {
                        let _ = a.send(Ok(()));
                    }
                }
                (Kind::Notification, Some(methods::RESOURCES_UPDATED)) => {
                    session.deliver(d.frame, None, false);
                }
                (Kind::Notification, _) => {}
                // The listen ended (the child's answer, or its error).
                _ => {
                    let why = m.payload_raw().unwrap_or("the listen ended").chars().take(300).collect::<String>();
                    fail(&mut ack, why);
                    break;
                }
            }
        }
        if ack.is_some() {
            return fail(&mut ack, "the server ended the subscription".into());
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = session.closed.cancelled() => return,
        }
    }
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
