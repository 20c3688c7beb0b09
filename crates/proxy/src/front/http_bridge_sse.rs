//! 2024-11-05 HTTP+SSE clients of an HTTP upstream that speaks only 2026-07-28 (issue 18,
//! part 5): the upstream has no `/sse`, so the proxy serves it itself. `GET /sse` opens the
//! proxy's stream (the `endpoint` event names the proxy's own `/messages`, served as the
//! stdio front serves it, `legacy_sse`); the `initialize` POSTed there opens a session of
//! `http_bridge`'s (its bounded table, its `server/discover`-made answer), and every later
//! message runs as a bridged request (`bridged_sse`), its answers, the server→client
//! requests of its `InputRequiredResult` rounds and the session's `resources/updated` all
//! on the stream. The stream is the session: when it closes the session ends, and the
//! session's end (DELETE has none here; the bridge's table) closes the stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use apiary_protocol::{Message, methods};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Refusal};
use crate::front::bridged::{Bridged, lock};
use crate::front::edge;
use crate::front::http_bridge::{self, HttpBridge};
use crate::front::legacy_sse::{public_prefix, serve_stream};
use crate::guard::{RequestCtx, Reshape};
use crate::upstream::stdio::Delivery;

/// Messages one stream may have waiting for the client (a slow reader holds its calls).
const STREAM_QUEUE: usize = 64;

/// The proxy's own 2024-11-05 streams in front of a modern-only HTTP upstream.
pub(crate) struct SseBridge {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    /// `proxy.endpointPrefix` and `proxy.trustProxyHeaders`, for the `endpoint` event.
    endpoint_prefix: String,
    trust_proxy_headers: bool,
}

/// One `GET /sse` stream and, once `initialize` arrives, the bridged session behind it.
pub(crate) struct Stream {
    out: mpsc::Sender<Delivery>,
    session: OnceLock<(Arc<str>, Arc<Bridged>)>,
    /// Cancelled when the session ends: the stream ends with it.
    closed: CancellationToken,
}

impl SseBridge {
    pub(crate) fn new(endpoint_prefix: &str, trust_proxy_headers: bool) -> SseBridge {
        SseBridge {
            streams: Mutex::new(HashMap::new()),
            endpoint_prefix: endpoint_prefix.trim_end_matches('/').to_owned(),
            trust_proxy_headers,
        }
    }

    /// The stream the `endpoint` event of `id` announced, if it is still open.
    pub(crate) fn stream(&self, id: &str) -> Option<Arc<Stream>> {
        lock(&self.streams).get(id).cloned()
    }

    /// Ends every stream (the proxy is stopping), and with them their sessions.
    pub(crate) fn clear(&self) {
        for (_, stream) in lock(&self.streams).drain() {
            stream.closed.cancel();
        }
    }

    /// `GET /sse`: a new stream, at most as many as the bridge has sessions.
    pub(crate) fn open(self: &Arc<Self>, bridge: &Arc<HttpBridge>, headers: &HeaderMap) -> Result<Response, Refusal> {
        if !edge::accepts_event_stream(headers) {
            return Err(Refusal::NotAcceptable("Accept must include text/event-stream"));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::channel::<Delivery>(STREAM_QUEUE);
        let stream = Arc::new(Stream { out: tx, session: OnceLock::new(), closed: CancellationToken::new() });
        {
            let mut streams = lock(&self.streams);
            if streams.len() >= bridge.max_sessions() {
                return Err(Refusal::LimitReached { retry_after: 1 });
            }
            streams.insert(id.clone(), Arc::clone(&stream));
        }
        let prefix = public_prefix(&self.endpoint_prefix, self.trust_proxy_headers, headers);
        let endpoint = format!("{prefix}/messages?session_id={id}");
        let closed = stream.closed.clone();
        let (me, bridge2) = (Arc::clone(self), Arc::clone(bridge));
        Ok(serve_stream(endpoint, rx, closed, bridge.write_timeout(), move || {
            lock(&me.streams).remove(&id);
            if let Some((session, _)) = stream.session.get() {
                bridge2.sessions.remove(session);
            }
            tracing::info!(stream = %id, "2024-11-05 stream of a bridged HTTP upstream closed");
        }))
    }
}

/// A message POSTed to `/messages` for `stream` (parsed, admitted by the guard; `reshape`
/// is the guard's for its answer); `headers` are what each of its POSTs upstream carries.
/// Refusals are the POST's answer; everything else is 202, the answers on the stream.
pub(crate) async fn message(
    bridge: &Arc<HttpBridge>,
    ctx: &RequestCtx,
    stream: &Arc<Stream>,
    m: Message,
    reshape: Option<Reshape>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<Response, Refusal> {
    let out = match (reshape, m.id_raw()) {
        (Some(r), Some(id)) => reshaping(stream.out.clone(), id.to_owned(), r),
        _ => stream.out.clone(),
    };
    if m.is_request() && m.method() == Some(methods::INITIALIZE) {
        let frame = initialize(bridge, stream, &m, &headers).await?;
        let _ = out.send(Delivery::message(frame)).await;
        return Ok(answer::accepted());
    }
    let (_, b) =
        stream.session.get().cloned().ok_or_else(|| Refusal::invalid("needs a session: send initialize first"))?;
    http_bridge::sse_post(bridge, ctx, b, m, out, headers).await?;
    Ok(answer::accepted())
}

/// Opens the stream's session: its answer frame. The session's unsolicited messages go to
/// the stream, and its end ends the stream.
async fn initialize(
    bridge: &Arc<HttpBridge>,
    stream: &Arc<Stream>,
    m: &Message,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Bytes, Refusal> {
    let again = || Refusal::invalid_with_id("session already initialized", m.id_raw());
    if stream.session.get().is_some() {
        return Err(again());
    }
    let discover = bridge.modern_only(headers).await.ok_or_else(|| Refusal::UpstreamUnavailable {
        reason: "the server no longer speaks only 2026-07-28: open the stream again".into(),
        retry_after: 1,
        id: m.id_raw().map(str::to_owned),
    })?;
    let (session, b, frame) = http_bridge::open_session(bridge, m, &discover)?;
    if stream.session.set((Arc::clone(&session), Arc::clone(&b))).is_err() {
        bridge.sessions.remove(&session);
        return Err(again());
    }
    // The session's GET stream is this one: its `resources/updated` come here (and an open
    // stream keeps the session from idling out: the stream is the session).
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    *lock(&b.stream) = Some(tx);
    let (out, stream_closed, session_closed) = (stream.out.clone(), stream.closed.clone(), b.closed.clone());
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                frame = rx.recv() => frame,
                () = session_closed.cancelled() => None,
            };
            let Some(frame) = frame else { break };
            if out.send(Delivery::message(frame)).await.is_err() {
                break;
            }
        }
        stream_closed.cancel();
    });
    Ok(frame)
}

/// `out`, with the guard's `reshape` applied to the answer to request `id` (the one frame
/// that answers it) on its way.
fn reshaping(out: mpsc::Sender<Delivery>, id: String, reshape: Reshape) -> mpsc::Sender<Delivery> {
    let (tx, mut rx) = mpsc::channel::<Delivery>(16);
    tokio::spawn(async move {
        let mut reshape = Some(reshape);
        while let Some(mut d) = rx.recv().await {
            let answers = Message::parse(d.frame.clone()).is_ok_and(|m| m.is_response() && m.id_raw() == Some(&id));
            if answers && let Some(r) = reshape.take() {
                d.frame = r(d.frame);
            }
            if out.send(d).await.is_err() {
                break;
            }
        }
    });
    tx
}
