//! Legacy clients (an `initialize`, a session) of a stdio child that speaks only 2026-07-28
//! (issue 18, part 5; mcp-brief.md §9 rule 40). The proxy answers `initialize` from the
//! child's `server/discover`, keeps the session itself, and sends each of the session's
//! requests to the child as a 2026-07-28 one, its `_meta` stamped with what the session's
//! `initialize` declared (by splice: the client's params keep their bytes). An
//! `InputRequiredResult` becomes the legacy server→client requests on the call's stream;
//! the client's answers go back as the retry (`inputResponses` + `requestState`) until a
//! final result. `ping` and `logging/setLevel` (removed in 2026-07-28) are answered here.

use std::convert::Infallible;
use std::sync::Arc;

use apiary_protocol::bridge::{self, Stamp};
use apiary_protocol::{Kind, Message, ParseError, Revision, codes, error_response, methods, rewrite};
use apiary_transport::sse;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Refusal};
use crate::client::{ClientCaps, level_rank};
use crate::front::bridged::{Bridged, lock};
use crate::front::call::{send_event, sse_response};
use crate::front::dispatch::dispatch;
use crate::front::edge::Accepts;
use crate::front::refuse;
use crate::front::state::StdioFront;
use crate::guard::RequestCtx;
use crate::sessions::session::Session;
use crate::upstream::mux::{Attached, ChildGroup};
use crate::upstream::stdio::Delivery;

/// The `logLevel` stamped for a session that never sent `logging/setLevel`.
const DEFAULT_LEVEL: &str = "\"debug\"";
/// Resource URIs one bridged session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Longest one `subscriptions/listen` stays open before it is opened again.
const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
/// Input rounds one call may take before the proxy gives up on it.
const MAX_ROUNDS: usize = 8;
/// Calls one session may have in flight through the bridge.
const MAX_CALLS: usize = 256;

/// Whether legacy sessions are bridged: the shared child is up and speaks only 2026-07-28.
pub(crate) async fn bridging(front: &StdioFront) -> bool {
    let slot = &front.placement.shared.slot;
    slot.ready(front.request_timeout).await.is_ok() && slot.is_modern_only()
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
    #[serde(borrow, default)]
    capabilities: Option<&'a RawValue>,
    #[serde(borrow, rename = "clientInfo", default)]
    client_info: Option<&'a RawValue>,
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
    let params: InitParams<'_> = m
        .params_raw()
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or_else(|| Refusal::InvalidParams("initialize needs params".into()))?;
    let revision = params
        .protocol_version
        .as_deref()
        .and_then(|v| v.parse::<Revision>().ok())
        .filter(|r| r.era() == apiary_protocol::Era::Legacy)
        .unwrap_or(Revision::LATEST_LEGACY);
    let capabilities = params.capabilities.map(RawValue::get).filter(|c| c.starts_with('{')).unwrap_or("{}");
    let caps = ClientCaps::from_initialize(&m.params_as::<serde_json::Value>().unwrap_or_default());
    let session = front
        .sessions
        .insert(revision, Arc::clone(&front.placement.shared), caps)
        .map_err(|e| refuse::opening(e, Some(id)))?;
    let bridged = Arc::new(Bridged::new(&session, caps, capabilities, params.client_info.map(RawValue::get)));
    front.bridged.insert(Arc::clone(&session.id), bridged);
    let result = bridge::initialize_from_discover(&discover, revision.as_str());
    tracing::info!(session = %session.id, %revision, "session opened on a 2026-07-28-only server (bridged)");
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
    if !batch && let [Ok(m)] = members.as_slice() {
        return single(front, ctx, session, b, m.clone(), acc).await;
    }
    // A batch (2025-03-26): each member in turn, answered together as JSON; no member can
    // be asked for input (there is no stream to ask on).
    let mut frames = Vec::new();
    for member in members {
        let m = match member {
            Ok(m) => m,
            Err(e) => {
                frames.push(e.to_response());
                continue;
            }
        };
        match m.kind() {
            Kind::Request => frames.push(match local(&b, &m) {
                Some(frame) => frame,
                None if is_subscription(&m) => subscription(front, ctx, &session, &b, &m).await,
                None => run_call(front, ctx, &b, &m, None).await,
            }),
            Kind::Notification => notification(&b, &m),
            Kind::Response | Kind::Error => {
                b.answered(m);
            }
        }
    }
    if frames.is_empty() {
        return Ok(answer::accepted());
    }
    let mut body = BytesMut::from(&b"["[..]);
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b",");
        }
        body.extend_from_slice(f);
    }
    body.extend_from_slice(b"]");
    Ok(answer::json(body.freeze()))
}

/// One message of a bridged session.
async fn single(
    front: &Arc<StdioFront>,
    ctx: &RequestCtx,
    session: Arc<Session>,
    b: Arc<Bridged>,
    m: Message,
    acc: Accepts,
) -> Result<Response, Refusal> {
    match m.kind() {
        Kind::Response | Kind::Error => {
            if b.answered(m) {
                Ok(answer::accepted())
            } else {
                Err(Refusal::invalid("no outstanding request with this id"))
            }
        }
        Kind::Notification => {
            notification(&b, &m);
            Ok(answer::accepted())
        }
        Kind::Request => {
            if let Some(frame) = local(&b, &m) {
                return Ok(answer::json(frame));
            }
            if is_subscription(&m) {
                return Ok(answer::json(subscription(front, ctx, &session, &b, &m).await));
            }
            let method = m.method().unwrap_or_default();
            // A stream when the child may ask for input (or the client wants progress).
            let may_ask = matches!(method, methods::TOOLS_CALL | methods::PROMPTS_GET | methods::RESOURCES_READ);
            let streams = acc.sse && (may_ask || rewrite::request_progress_token(&m).is_some() || !acc.json);
            if !streams {
                return Ok(answer::json(run_call(front, ctx, &b, &m, None).await));
            }
            Ok(stream_call(Arc::clone(front), ctx.clone(), session, b, m)?)
        }
    }
}

/// A notification of a bridged session: `notifications/cancelled` stops the call at the
/// child; the rest have no 2026-07-28 counterpart (`initialized`, `roots/list_changed`).
fn notification(b: &Bridged, m: &Message) {
    if m.method() == Some(methods::CANCELLED)
        && let Some(id) = rewrite::cancelled_request_id(m)
        && let Some(token) = lock(&b.calls).remove(&id)
    {
        token.cancel();
    }
}

/// Requests the 2026-07-28 era removed, answered here: `ping` and `logging/setLevel` (kept
/// and stamped as each later request's `logLevel`). The subscriptions are [`subscription`]'s.
fn local(b: &Bridged, m: &Message) -> Option<Bytes> {
    let id = m.id_raw()?;
    match m.method()? {
        methods::PING => Some(apiary_protocol::result_response(id, "{}")),
        methods::SET_LEVEL => {
            let level = m.params_string("level").filter(|l| level_rank(l).is_some());
            let Some(level) = level else {
                return Some(error_response(Some(id), codes::INVALID_PARAMS, "unknown log level", None));
            };
            *lock(&b.level) = serde_json::to_string(&level).ok().map(Into::into);
            Some(apiary_protocol::result_response(id, "{}"))
        }
        _ => None,
    }
}

fn is_subscription(m: &Message) -> bool {
    matches!(m.method(), Some(methods::SUBSCRIBE | methods::UNSUBSCRIBE))
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

/// Where a bridged call's messages go: its own SSE response (Streamable HTTP), or the
/// session's one stream (2024-11-05).
enum Sink {
    Body { out: Option<mpsc::Sender<Result<Bytes, Infallible>>>, write_timeout: std::time::Duration },
    Session(mpsc::Sender<Delivery>),
}

impl Sink {
    async fn send(&mut self, frame: &Bytes) {
        match self {
            Sink::Body { out, write_timeout } => send_event(out, sse::message_event(None, frame), *write_timeout).await,
            Sink::Session(tx) => {
                let _ = tx.send(Delivery::message(frame.clone())).await;
            }
        }
    }
}

/// A call answered on its own SSE stream: the bridge's requests for input and the child's
/// progress, then the answer.
fn stream_call(
    front: Arc<StdioFront>,
    ctx: RequestCtx,
    session: Arc<Session>,
    b: Arc<Bridged>,
    m: Message,
) -> Result<Response, Refusal> {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let write_timeout = front.write_timeout;
    spawn_call(front, ctx, session, b, m, Sink::Body { out: Some(body_tx), write_timeout })?;
    Ok(sse_response(body_rx))
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
    match m.kind() {
        Kind::Response | Kind::Error => {
            if b.answered(m) {
                Ok(())
            } else {
                Err(Refusal::invalid("no outstanding request with this id"))
            }
        }
        Kind::Notification => {
            notification(&b, &m);
            Ok(())
        }
        Kind::Request => {
            let frame = match local(&b, &m) {
                Some(frame) => frame,
                None if is_subscription(&m) => subscription(front, ctx, &session, &b, &m).await,
                None => return spawn_call(Arc::clone(front), ctx.clone(), session, b, m, Sink::Session(out)),
            };
            let _ = out.send(Delivery::message(frame)).await;
            Ok(())
        }
    }
}

/// Runs a call in its own task, its messages to `sink`. `notifications/cancelled` or the
/// session's end stops it (and the child's work); a client that only goes away does not
/// (legacy era).
fn spawn_call(
    front: Arc<StdioFront>,
    ctx: RequestCtx,
    session: Arc<Session>,
    b: Arc<Bridged>,
    m: Message,
    mut sink: Sink,
) -> Result<(), Refusal> {
    let id = m.id().ok_or_else(|| Refusal::invalid("request id missing"))?;
    let token = CancellationToken::new();
    {
        let mut calls = lock(&b.calls);
        if calls.len() >= MAX_CALLS {
            return Err(Refusal::QueueFull { retry_after: 1, in_session: true });
        }
        if calls.contains_key(&id) {
            return Err(Refusal::invalid_with_id("request id already in flight", m.id_raw()));
        }
        calls.insert(id.clone(), token.clone());
    }
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let call = run_call(&front, &ctx, &b, &m, Some(tx));
        tokio::pin!(call);
        let answer = loop {
            tokio::select! {
                Some(frame) = rx.recv() => sink.send(&frame).await,
                frame = &mut call => break Some(frame),
                () = token.cancelled() => break None,
                () = session.closed.cancelled() => break None,
            }
        };
        lock(&b.calls).remove(&id);
        // What the call said before it ended goes out first.
        while let Ok(frame) = rx.try_recv() {
            sink.send(&frame).await;
        }
        // A cancelled request gets no answer (the spec's cancellation).
        if let Some(frame) = answer {
            sink.send(&frame).await;
        }
    });
    Ok(())
}

/// The rounds of one call: the request stamped and sent, each `InputRequiredResult` put to
/// the client (on `out`) and retried, until the final answer (with the client's id).
/// Dropping the future stops the call at the child.
async fn run_call(
    front: &StdioFront,
    ctx: &RequestCtx,
    b: &Bridged,
    m: &Message,
    out: Option<mpsc::Sender<Bytes>>,
) -> Bytes {
    let id = m.id_raw().unwrap_or("null").to_owned();
    let fail = |code: i32, msg: &str| error_response(Some(&id), code, msg, None);
    // A legacy client that set no level leaves the choice to the server; a modern server
    // sends no log line for a request without a level, so the bridge asks for all of them.
    let level = lock(&b.level).clone().unwrap_or_else(|| DEFAULT_LEVEL.into());
    let stamp = Stamp { capabilities: &b.capabilities, client_info: b.client_info.as_deref(), log_level: Some(&level) };
    let stamped = match bridge::modern_request(m.bytes(), &stamp) {
        Ok(s) => s,
        Err(e) => return fail(codes::INVALID_REQUEST, &format!("the request cannot be forwarded: {e}")),
    };
    let mut request = stamped.clone();
    for _ in 0..MAX_ROUNDS {
        let frame = match one_round(front, ctx, request, out.as_ref()).await {
            Ok(frame) => frame,
            Err(refusal) => return refusal.echo(Some(&id)).body(),
        };
        let Ok(answer) = Message::parse(frame.clone()) else { return frame };
        let asked = answer.payload_raw().filter(|_| answer.kind() == Kind::Response).and_then(bridge::input_required);
        let Some(asked) = asked else { return bridge::legacy_result(frame) };
        let Some(out) = &out else {
            return fail(
                codes::INTERNAL_ERROR,
                "the server asks the client for input, which needs a stream: accept text/event-stream",
            );
        };
        let mut waits = Vec::with_capacity(asked.requests.len());
        for r in &asked.requests {
            if !b.caps.allows(&r.method) {
                // The client cannot be asked: the spec's error for a capability it lacks.
                let cap = r.method.split('/').next().unwrap_or_default();
                let data = serde_json::json!({"requiredCapabilities": {cap: {}}});
                let msg = format!("the server needs the client's {cap} capability, which it did not declare");
                return error_response(Some(&id), codes::MISSING_REQUIRED_CLIENT_CAPABILITY, &msg, Some(&data));
            }
            let (ask_id, rx) = match b.ask() {
                Ok(a) => a,
                Err(refusal) => return refusal.echo(Some(&id)).body(),
            };
            let method = serde_json::to_string(&r.method).unwrap_or_default();
            let params = r.params.as_deref().map(|p| format!(",\"params\":{p}")).unwrap_or_default();
            let ask = format!(r#"{{"jsonrpc":"2.0","id":{ask_id},"method":{method}{params}}}"#);
            if out.send(Bytes::from(ask)).await.is_err() {
                return fail(codes::INTERNAL_ERROR, "the client's stream is gone");
            }
            waits.push((r.key.clone(), rx));
        }
        let mut responses = Vec::with_capacity(waits.len());
        for (key, rx) in waits {
            let reply = match tokio::time::timeout(front.request_timeout, rx).await {
                Ok(Ok(reply)) => reply,
                _ => return fail(codes::INTERNAL_ERROR, "the client did not answer the server's request in time"),
            };
            match (reply.kind(), reply.payload_raw()) {
                (Kind::Response, Some(result)) => responses.push((key, result.to_owned())),
                // The client refused: so is the call, with the client's error.
                _ => {
                    let error = reply.payload_raw().unwrap_or("{}");
                    return Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#));
                }
            }
        }
        request = match bridge::retry_request(&stamped, &responses, asked.request_state.as_deref()) {
            Ok(r) => r,
            Err(e) => return fail(codes::INTERNAL_ERROR, &format!("the retry cannot be built: {e}")),
        };
    }
    fail(codes::INTERNAL_ERROR, &format!("the server asked for input more than {MAX_ROUNDS} times"))
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
    let Some((mut call, rx)) = dispatch(front, ctx, None, vec![Ok(msg)], false).await? else {
        return Err(Refusal::invalid("nothing to forward"));
    };
    call.cancel_on_drop = true;
    let (tx, mut local) = mpsc::channel::<Delivery>(16);
    let pump = AbortOnDrop(tokio::spawn(call.pump(rx, tx)));
    // A child's log line names no request: it reaches this call only while this is the one
    // call of no session in flight on the child (the multiplexer's rule; never a guess).
    let (logs_tx, mut logs) = mpsc::channel::<Delivery>(16);
    let _logs = SessionlessStream::open(&front.placement.shared, logs_tx);
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
