//! A POST's forwarded requests on their way back: collected into one JSON answer, streamed
//! as SSE events (recorded for resumption), or pumped into a 2024-11-05 session stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use apiary_protocol::{RequestId, Revision, codes, error_response};
use apiary_transport::sse;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::answer;
use crate::guard::Reshape;
use crate::sessions::session::Session;
use crate::upstream::mux::ChildGroup;
use crate::upstream::stdio::{ChildConn, Delivery};

/// Keep-alive comments on long-lived streams, shorter than common idle timeouts.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client should wait before reconnecting a closed stream.
pub(crate) const RETRY_MS: u64 = 1000;
/// How long a POST that admits both JSON and SSE waits for its answers before it is answered
/// as an SSE stream anyway (see [`Call::into_json_or_sse`]).
pub(crate) const JSON_GRACE: Duration = Duration::from_millis(100);

/// A POST's forwarded requests, waiting for their answers.
pub(crate) struct Call {
    pub(crate) session: Option<Arc<Session>>,
    /// For sessionless requests: the shared child and how many are counted in flight.
    pub(crate) sessionless: Option<(Arc<ChildGroup>, usize)>,
    pub(crate) conn: Arc<ChildConn>,
    pub(crate) waiting: Vec<(RequestId, u64)>,
    pub(crate) immediate: Vec<Bytes>,
    pub(crate) batch: bool,
    pub(crate) timeout: Duration,
    /// Rewrites of particular answers (a list the policy shapes), by the caller's id.
    pub(crate) reshapes: Vec<(RequestId, Reshape)>,
    /// Whether a call dropped unanswered is cancelled at the child: in the 2026-07-28 era a
    /// closed stream is a cancellation (row 28); in the legacy era it is not.
    pub(crate) cancel_on_drop: bool,
    /// A sender of the call's own channel, for the route of its unsolicited messages (taken
    /// by [`Call::open_route`], so one channel carries both, in the child's order); dropped
    /// by every other way of answering, so the channel still closes with the child's side.
    pub(crate) reply: Option<mpsc::Sender<Delivery>>,
}

impl Drop for Call {
    /// However the call ends (answered, timed out, or the client went away: a disconnect
    /// is not a cancellation, but nobody is left to hear the answers), its ids are free
    /// for reuse afterwards.
    fn drop(&mut self) {
        if self.cancel_on_drop {
            // Abandoning an answered request does nothing: child ids are never reused.
            for (_, up) in &self.waiting {
                self.conn.abandon(*up, "the client closed its stream");
            }
        }
        if let Some(s) = &self.session {
            // A call whose session has ended is cancelled at the child, however the
            // session's end and this call's end were ordered (abandoning an answered or
            // already abandoned call does nothing).
            let ended = s.closed.is_cancelled();
            for (id, up) in &self.waiting {
                if ended {
                    self.conn.abandon(*up, "the session ended");
                }
                s.finish(id, *up);
            }
        }
        if let Some((group, n)) = &self.sessionless {
            group.sessionless_finished(*n);
        }
    }
}

impl Call {
    /// Gives up on what has not been answered: the child is told, the caller gets errors.
    fn time_out(&mut self, answered: &[RequestId]) -> Vec<Bytes> {
        let mut out = Vec::new();
        for (id, up) in self.waiting.drain(..) {
            if answered.contains(&id) {
                continue;
            }
            self.conn.abandon(up, "the proxy's request timeout expired");
            if let Some(s) = &self.session {
                s.finish(&id, up);
            }
            let msg = format!("the server did not answer within {} s", self.timeout.as_secs());
            out.push(error_response(Some(&id.to_json()), codes::INTERNAL_ERROR, &msg, None));
        }
        out
    }

    /// The caller's id a delivery answers, after freeing it in the session and applying the
    /// answer's reshape, if it has one.
    fn settled(&mut self, d: &mut Delivery) -> Option<RequestId> {
        let id = d.answers.clone()?;
        if let (Some(s), Some((_, up))) = (&self.session, self.waiting.iter().find(|(w, _)| *w == id)) {
            s.finish(&id, *up);
        }
        if let Some(i) = self.reshapes.iter().position(|(w, _)| *w == id) {
            let (_, reshape) = self.reshapes.swap_remove(i);
            d.frame = reshape(std::mem::take(&mut d.frame));
        }
        Some(id)
    }

    /// Collects every answer and returns them as one JSON body (an array for a batch).
    /// Notifications have no place in a JSON answer and are dropped.
    pub(crate) async fn into_json(mut self, rx: mpsc::Receiver<Delivery>) -> Response {
        let frames = self.collect(rx).await;
        json_answer(frames, self.batch)
    }

    /// The one answer of a single request (the 2026-07-28 front shapes it itself).
    pub(crate) async fn into_frame(mut self, rx: mpsc::Receiver<Delivery>) -> Bytes {
        self.collect(rx).await.into_iter().next().unwrap_or_default()
    }

    /// Every answer, or the error of a request that timed out; notifications are dropped.
    async fn collect(&mut self, mut rx: mpsc::Receiver<Delivery>) -> Vec<Bytes> {
        self.reply = None;
        let mut frames = std::mem::take(&mut self.immediate);
        let mut answered = Vec::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while answered.len() < self.waiting.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(mut d)) if d.is_response() => {
                    if let Some(id) = self.settled(&mut d) {
                        answered.push(id);
                    }
                    frames.push(d.frame);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        frames.extend(self.time_out(&answered));
        frames
    }

    /// Sends every answer and progress notification to `out` (the 2024-11-05 session
    /// stream), until all requests are answered or time out.
    pub(crate) async fn pump(mut self, mut rx: mpsc::Receiver<Delivery>, out: mpsc::Sender<Delivery>) {
        self.reply = None;
        for frame in std::mem::take(&mut self.immediate) {
            let _ = out.send(Delivery::message(frame)).await;
        }
        let mut answered = Vec::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while answered.len() < self.waiting.len() {
            let next = tokio::select! {
                d = rx.recv() => d,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(mut d) = next else { break };
            if let Some(id) = self.settled(&mut d) {
                answered.push(id);
            }
            if out.send(d).await.is_err() {
                return;
            }
        }
        for frame in self.time_out(&answered) {
            let _ = out.send(Delivery::message(frame)).await;
        }
    }

    /// Streams one 2026-07-28 request's progress notifications, then its answer (shaped by
    /// `finish`), as SSE events, and closes. Nothing is recorded for resumption: in this era
    /// the stream is the request, so a client that goes away (or stops reading past the
    /// write timeout) cancels it at the child (row 28).
    pub(crate) fn into_request_sse(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        write_timeout: Duration,
        finish: impl FnOnce(Bytes) -> Bytes + Send + 'static,
    ) -> Response {
        self.reply = None;
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
        tokio::spawn(async move {
            let mut finish = Some(finish);
            let closed = body_tx.clone();
            let mut out = Some(body_tx);
            for f in std::mem::take(&mut self.immediate) {
                let f = finish.take().map_or(f.clone(), |fin| fin(f));
                send_event(&mut out, sse::message_event(None, &f), write_timeout).await;
            }
            let mut answered = Vec::new();
            let deadline = tokio::time::Instant::now() + self.timeout;
            while answered.len() < self.waiting.len() && out.is_some() {
                let next = tokio::select! {
                    d = rx.recv() => d,
                    // A client that hangs up between events is noticed at once.
                    () = closed.closed() => break,
                    () = tokio::time::sleep_until(deadline) => None,
                };
                let Some(mut d) = next else { break };
                if let Some(id) = self.settled(&mut d) {
                    answered.push(id);
                    let frame = std::mem::take(&mut d.frame);
                    d.frame = match finish.take() {
                        Some(fin) => fin(frame),
                        None => frame,
                    };
                }
                send_event(&mut out, sse::message_event(None, &d.frame), write_timeout).await;
            }
            if out.is_none() || closed.is_closed() {
                tracing::info!("a 2026-07-28 client closed its stream: its request is cancelled");
                // Dropping `self` tells the child (cancel_on_drop).
                return;
            }
            for f in self.time_out(&answered) {
                send_event(&mut out, sse::message_event(None, &f), write_timeout).await;
            }
        });
        sse_response(body_rx)
    }

    /// Opens the routes a call's unsolicited messages (log lines, server→client requests
    /// that belong to it) take to reach its stream while it is open: into the call's own
    /// channel, where they arrive in the order the child wrote them, before the response
    /// that follows them. The session's stream number is allocated either way (the SSE
    /// stream's event ids use it).
    fn open_route(&mut self) -> StreamRoute {
        let tx = self.reply.take();
        if let Some(s) = &self.session {
            let n = s.new_stream();
            if let Some(tx) = tx {
                s.open_post_stream(n, tx);
            }
            return StreamRoute { session: Some((Arc::clone(s), n)), sessionless: None };
        }
        let sessionless = match (&self.sessionless, tx) {
            (Some((g, _)), Some(tx)) => Some((Arc::clone(g), g.open_sessionless_stream(tx))),
            _ => None,
        };
        StreamRoute { session: None, sessionless }
    }

    /// Answers with one JSON body when every answer comes first, within [`JSON_GRACE`]: the
    /// usual case, and the cheapest (issue #21). The first notification or server→client
    /// request for the call turns the answer into an SSE stream instead, which the client
    /// admitted too, and so does an answer slower than the grace: a long call gets a stream
    /// with event ids, so a client that loses it can still resume it (row 20) rather than
    /// lose the answer, as it would a JSON one.
    pub(crate) async fn into_json_or_sse(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        write_timeout: Duration,
    ) -> Response {
        let route = self.open_route();
        let mut frames = std::mem::take(&mut self.immediate);
        let mut answered = Vec::new();
        let now = tokio::time::Instant::now();
        let deadline = now + self.timeout;
        let grace = (now + JSON_GRACE).min(deadline);
        while answered.len() < self.waiting.len() {
            let mut slow = false;
            // What is already there is taken without arming the grace timer (a timer-wheel
            // entry, inserted and removed); the timer runs only while the call waits.
            let next = match rx.try_recv() {
                Ok(d) => Some(d),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    biased;
                    d = rx.recv() => d,
                    () = tokio::time::sleep_until(grace) => {
                        slow = grace < deadline;
                        None
                    }
                },
            };
            if slow {
                return self.stream(rx, route, frames, answered, deadline, write_timeout);
            }
            let Some(mut d) = next else { break };
            if !d.is_response() {
                frames.push(d.frame);
                return self.stream(rx, route, frames, answered, deadline, write_timeout);
            }
            if let Some(id) = self.settled(&mut d) {
                answered.push(id);
            }
            frames.push(d.frame);
        }
        drop(route);
        frames.extend(self.time_out(&answered));
        json_answer(frames, self.batch)
    }

    /// Streams progress, server→client requests and the answers as SSE events, then
    /// closes. Every event of a session is recorded in its event log first; if the client
    /// goes away, or stops reading past the write timeout, the connection is dropped but the
    /// call keeps running and its events wait in the log for a `GET` with `Last-Event-ID`:
    /// in the legacy era a disconnect is not a cancellation (rows 20, 28).
    pub(crate) fn into_sse(mut self, rx: mpsc::Receiver<Delivery>, write_timeout: Duration) -> Response {
        let route = self.open_route();
        let first = std::mem::take(&mut self.immediate);
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.stream(rx, route, first, Vec::new(), deadline, write_timeout)
    }

    /// The SSE stream of [`Call::into_sse`], starting with `first` (frames already settled
    /// or received) after the requests `answered` so far.
    fn stream(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        route: StreamRoute,
        first: Vec<Bytes>,
        mut answered: Vec<RequestId>,
        deadline: tokio::time::Instant,
        write_timeout: Duration,
    ) -> Response {
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
        tokio::spawn(async move {
            let recorded = route.session.clone();
            let encode = |frame: &[u8]| match &recorded {
                Some((s, n)) => s.record(*n, frame),
                None => sse::message_event(None, frame),
            };
            let mut out = Some(body_tx);
            if let Some((s, n)) = &recorded
                && s.revision >= Revision::V2025_11_25
            {
                send_event(&mut out, s.prime(*n, RETRY_MS), write_timeout).await;
            }
            for f in first {
                send_event(&mut out, encode(&f), write_timeout).await;
            }
            while answered.len() < self.waiting.len() {
                // Unsolicited messages come on the same channel, before the response that
                // follows them, as the reader routed them.
                let next = tokio::select! {
                    biased;
                    d = rx.recv() => d,
                    () = tokio::time::sleep_until(deadline) => None,
                };
                let Some(mut d) = next else { break };
                if let Some(id) = self.settled(&mut d) {
                    answered.push(id);
                }
                send_event(&mut out, encode(&d.frame), write_timeout).await;
                if out.is_none() {
                    // Detached: unsolicited messages must find another stream.
                    route.detach();
                }
            }
            for f in self.time_out(&answered) {
                send_event(&mut out, encode(&f), write_timeout).await;
            }
            drop(route);
            if let Some((s, n)) = &recorded {
                s.finish_stream(*n, out.is_some());
            }
        });
        sse_response(body_rx)
    }
}

/// Where a call's unsolicited messages reach it while its stream is open: the session's
/// POST stream `n`, or the shared child's stream of a sessionless call. Closed when dropped,
/// however the call ends (a client that goes away mid-wait drops it with the handler).
struct StreamRoute {
    session: Option<(Arc<Session>, u64)>,
    sessionless: Option<(Arc<ChildGroup>, u64)>,
}

impl StreamRoute {
    /// Stops taking unsolicited messages (the client went away; they must find another stream).
    fn detach(&self) {
        if let Some((s, n)) = &self.session {
            s.close_post_stream(*n);
        }
        if let Some((g, n)) = &self.sessionless {
            g.close_sessionless_stream(*n);
        }
    }
}

impl Drop for StreamRoute {
    fn drop(&mut self) {
        self.detach();
    }
}

/// One JSON body of every answer (an array for a batch).
fn json_answer(frames: Vec<Bytes>, batch: bool) -> Response {
    if !batch {
        return answer::json(frames.into_iter().next().unwrap_or_default());
    }
    let mut body = BytesMut::with_capacity(frames.iter().map(|f| f.len() + 1).sum::<usize>() + 2);
    body.extend_from_slice(b"[");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b",");
        }
        body.extend_from_slice(f);
    }
    body.extend_from_slice(b"]");
    answer::json(body.freeze())
}

/// Writes one event to a client stream; a client that is gone, or does not read within the
/// write timeout, loses its connection (`out` becomes `None`), never the proxy's progress.
pub(crate) async fn send_event(
    out: &mut Option<mpsc::Sender<Result<Bytes, Infallible>>>,
    event: Bytes,
    write_timeout: Duration,
) {
    let Some(tx) = out else { return };
    match tokio::time::timeout(write_timeout, tx.send(Ok(event))).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => *out = None,
        Err(_) => {
            tracing::info!("closed an SSE stream whose client stopped reading");
            *out = None;
        }
    }
}

pub(crate) fn sse_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let mut res = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
