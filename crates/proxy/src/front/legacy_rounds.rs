//! The upstream-free half of the legacy-client → 2026-07-28-server bridge: what a bridged
//! session's messages become whoever carries the rounds. `ping` and `logging/setLevel` are
//! answered here, `notifications/cancelled` stops a call, and a call runs its rounds (the
//! request stamped, each `InputRequiredResult` put to the client as server→client requests
//! on the call's stream and retried with the answers) over an [`Upstream`]: a stdio child
//! (`legacy_bridge`) or an HTTP server (`http_bridge`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
use crate::front::edge::Accepts;
use crate::front::tool_headers;
use crate::guard::RequestCtx;
use crate::upstream::stdio::Delivery;

/// The `logLevel` stamped for a session that never sent `logging/setLevel`.
const DEFAULT_LEVEL: &str = "\"debug\"";
/// Input rounds one call may take before the proxy gives up on it.
const MAX_ROUNDS: usize = 8;
/// Calls one session may have in flight through the bridge.
const MAX_CALLS: usize = 256;

/// What carries a bridged session's requests to the 2026-07-28 server.
pub(crate) trait Upstream: Send + Sync + 'static {
    /// One request (stamped, 2026-07-28) to the server: its answer frame; what the server
    /// says before it (progress, log lines) goes to `out`. Dropping the future cancels the
    /// request at the server.
    fn round(
        &self,
        ctx: &RequestCtx,
        request: Bytes,
        out: Option<&mpsc::Sender<Bytes>>,
    ) -> impl Future<Output = Result<Bytes, Refusal>> + Send;

    /// `resources/subscribe` or `resources/unsubscribe` of session `b`: the answer frame.
    fn subscription(&self, ctx: &RequestCtx, b: &Arc<Bridged>, m: &Message) -> impl Future<Output = Bytes> + Send;

    /// How long the client has to answer a request the bridge puts to it.
    fn answer_timeout(&self) -> Duration;

    /// How long one SSE write to the client may wait.
    fn write_timeout(&self) -> Duration;
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

/// What a bridged session's `initialize` declares: the version it is served at (the
/// client's when it is a legacy one Apiary serves, else the newest legacy one, which the
/// client may refuse), and its capabilities and info as the client wrote them.
pub(crate) struct Opening {
    pub(crate) revision: Revision,
    pub(crate) caps: ClientCaps,
    pub(crate) capabilities: String,
    pub(crate) client_info: Option<String>,
}

impl Opening {
    pub(crate) fn of(m: &Message) -> Result<Opening, Refusal> {
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
        Ok(Opening {
            revision,
            caps,
            capabilities: capabilities.to_owned(),
            client_info: params.client_info.map(|i| i.get().to_owned()),
        })
    }
}

/// A POST of a bridged session: one message, or a batch (2025-03-26).
pub(crate) async fn post<U: Upstream>(
    up: &Arc<U>,
    ctx: &RequestCtx,
    b: Arc<Bridged>,
    members: Vec<Result<Message, ParseError>>,
    batch: bool,
    acc: Accepts,
) -> Result<Response, Refusal> {
    if !batch && let [Ok(m)] = members.as_slice() {
        return single(up, ctx, b, m.clone(), acc).await;
    }
    // Each member in turn, answered together as JSON; no member can be asked for input
    // (there is no stream to ask on).
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
                None if is_subscription(&m) => up.subscription(ctx, &b, &m).await,
                None => run_call(up.as_ref(), ctx, &b, &m, None).await,
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
async fn single<U: Upstream>(
    up: &Arc<U>,
    ctx: &RequestCtx,
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
                return Ok(answer::json(up.subscription(ctx, &b, &m).await));
            }
            let method = m.method().unwrap_or_default();
            // A stream when the server may ask for input (or the client wants progress).
            let may_ask = matches!(method, methods::TOOLS_CALL | methods::PROMPTS_GET | methods::RESOURCES_READ);
            let streams = acc.sse && (may_ask || rewrite::request_progress_token(&m).is_some() || !acc.json);
            if !streams {
                return Ok(answer::json(run_call(up.as_ref(), ctx, &b, &m, None).await));
            }
            stream_call(Arc::clone(up), ctx.clone(), b, m)
        }
    }
}

/// A notification of a bridged session: `notifications/cancelled` stops the call at the
/// server; the rest have no 2026-07-28 counterpart (`initialized`, `roots/list_changed`).
pub(crate) fn notification(b: &Bridged, m: &Message) {
    if m.method() == Some(methods::CANCELLED)
        && let Some(id) = rewrite::cancelled_request_id(m)
        && let Some(token) = lock(&b.calls).remove(&id)
    {
        token.cancel();
    }
}

/// Requests the 2026-07-28 era removed, answered here: `ping` and `logging/setLevel` (kept
/// and stamped as each later request's `logLevel`). The subscriptions are the upstream's.
pub(crate) fn local(b: &Bridged, m: &Message) -> Option<Bytes> {
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

pub(crate) fn is_subscription(m: &Message) -> bool {
    matches!(m.method(), Some(methods::SUBSCRIBE | methods::UNSUBSCRIBE))
}

/// Where a bridged call's messages go: its own SSE response (Streamable HTTP), or the
/// session's one stream (2024-11-05).
pub(crate) enum Sink {
    Body { out: Option<mpsc::Sender<Result<Bytes, Infallible>>>, write_timeout: Duration },
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

/// A call answered on its own SSE stream: the bridge's requests for input and the server's
/// progress, then the answer.
fn stream_call<U: Upstream>(up: Arc<U>, ctx: RequestCtx, b: Arc<Bridged>, m: Message) -> Result<Response, Refusal> {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let write_timeout = up.write_timeout();
    spawn_call(up, ctx, b, m, Sink::Body { out: Some(body_tx), write_timeout })?;
    Ok(sse_response(body_rx))
}

/// Runs a call in its own task, its messages to `sink`. `notifications/cancelled` or the
/// session's end stops it (and the server's work); a client that only goes away does not
/// (legacy era).
pub(crate) fn spawn_call<U: Upstream>(
    up: Arc<U>,
    ctx: RequestCtx,
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
    let closed = b.closed.clone();
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let call = run_call(up.as_ref(), &ctx, &b, &m, Some(tx));
        tokio::pin!(call);
        let answer = loop {
            tokio::select! {
                Some(frame) = rx.recv() => sink.send(&frame).await,
                frame = &mut call => break Some(frame),
                () = token.cancelled() => break None,
                () = closed.cancelled() => break None,
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
/// Dropping the future stops the call at the server.
pub(crate) async fn run_call<U: Upstream>(
    up: &U,
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
        let frame = match up.round(ctx, request, out.as_ref()).await {
            Ok(frame) => frame,
            Err(refusal) => return refusal.echo(Some(&id)).body(),
        };
        let Ok(answer) = Message::parse(frame.clone()) else { return frame };
        let asked = answer.payload_raw().filter(|_| answer.kind() == Kind::Response).and_then(bridge::input_required);
        let Some(asked) = asked else {
            // The proxy is the 2026-07-28 client here: it lists no tool a client must drop.
            let frame = if m.method() == Some(methods::TOOLS_LIST) { tool_headers::listable(frame) } else { frame };
            return bridge::legacy_result(frame);
        };
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
            let reply = match tokio::time::timeout(up.answer_timeout(), rx).await {
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
