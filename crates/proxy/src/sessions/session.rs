//! Legacy Streamable HTTP sessions: the table with its bound and idle TTL, and each
//! session's routing state (its child, its open streams, the ids it has in flight and the
//! server→client requests it owes answers to).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use apiary_protocol::{RequestId, Revision};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::error::SessionError;
use crate::client::{ClientCaps, level_rank};
use crate::sessions::events::{EventLog, ResumeError};
use crate::upstream::mux::{Attached, ChildGroup};
use crate::upstream::stdio::Delivery;
use tokio_util::sync::CancellationToken;

/// Messages a session keeps for a stream that is not open yet.
const MAX_QUEUED: usize = 256;

/// One client session.
pub struct Session {
    pub id: Arc<str>,
    pub revision: Revision,
    /// The child serving this session (its own, or one it shares).
    pub group: Arc<ChildGroup>,
    /// What the client declared it can be asked.
    pub caps: ClientCaps,
    /// Cancelled when the session ends (DELETE or expiry): its streams close.
    pub closed: CancellationToken,
    state: Mutex<SessionState>,
    events: Mutex<EventLog>,
    next_stream: AtomicU64,
}

#[derive(Default)]
struct SessionState {
    last_seen: Option<Instant>,
    /// The standalone GET stream, if open.
    get_stream: Option<mpsc::Sender<Delivery>>,
    /// Open POST SSE streams, by stream number.
    post_streams: Vec<(u64, mpsc::Sender<Delivery>)>,
    /// Client ids in flight, to the child-side id (for cancellation and duplicate checks).
    in_flight: HashMap<RequestId, u64>,
    /// Server→client request ids this session may answer.
    /// Server→client request ids this session may answer, with the generation of the
    /// child that asked (a request of a child that died is withdrawn).
    outstanding: HashMap<RequestId, u64>,
    /// Unsolicited messages waiting for a stream.
    queued: VecDeque<Delivery>,
    /// The log level the client set (rank, 0 = debug).
    level: Option<u8>,
    /// Resource URIs the client subscribed to.
    subscriptions: HashSet<String>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        self.state().last_seen = Some(Instant::now());
    }

    fn log(&self) -> MutexGuard<'_, EventLog> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new stream number for this session.
    pub fn new_stream(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a message event on `stream`; returns it encoded.
    pub fn record(&self, stream: u64, frame: &[u8]) -> Bytes {
        self.log().message(stream, frame)
    }

    /// Records a priming event on `stream`; returns it encoded.
    pub fn prime(&self, stream: u64, retry_ms: u64) -> Bytes {
        self.log().priming(stream, retry_ms)
    }

    /// Replays what followed `last_event_id` into `tx` and follows its stream.
    pub fn resume(&self, last_event_id: &str, tx: &mpsc::Sender<Bytes>) -> Result<u64, ResumeError> {
        self.log().resume(last_event_id, tx)
    }

    /// How many events the log holds (a resumer's channel must fit them all).
    pub fn buffered_events(&self) -> usize {
        self.log().buffered_len()
    }

    /// The producer of `stream` is done; `delivered` when every event was written to a
    /// client still connected (see [`EventLog::finish_stream`]).
    pub fn finish_stream(&self, stream: u64, delivered: bool) {
        self.log().finish_stream(stream, delivered);
    }

    /// Idle past `ttl` with nothing in flight and no stream open.
    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        let st = self.state();
        let idle = st.last_seen.is_none_or(|t| now.duration_since(t) > ttl);
        idle && st.in_flight.is_empty() && st.get_stream.is_none()
    }

    /// A notification counts against the same bound as requests (row 16); cancellations
    /// never do, since they reduce work.
    pub fn check_room(&self, max: usize) -> Result<(), SessionError> {
        if self.state().in_flight.len() >= max {
            return Err(SessionError::QueueFull);
        }
        Ok(())
    }

    pub fn set_level(&self, rank: u8) {
        self.state().level = Some(rank);
    }

    /// Records a subscription; false when it already existed.
    pub fn subscribe(&self, uri: &str) -> bool {
        self.state().subscriptions.insert(uri.to_owned())
    }

    /// Drops a subscription; false when there was none.
    pub fn unsubscribe(&self, uri: &str) -> bool {
        self.state().subscriptions.remove(uri)
    }

    /// Registers a caller's request id; refuses one already in flight (row 18).
    /// Refuses one past `max` requests waiting on the child (row 16: the child is slow or
    /// stalled, and this session alone is held back).
    pub fn begin(&self, id: &RequestId, raw: &str, max: usize) -> Result<(), SessionError> {
        let mut st = self.state();
        if st.in_flight.contains_key(id) {
            return Err(SessionError::DuplicateId { id: raw.to_owned() });
        }
        if st.in_flight.len() >= max {
            tracing::info!(session = %self.id, max, "refused a request: the session's queue toward the server is full");
            return Err(SessionError::QueueFull);
        }
        st.in_flight.insert(id.clone(), 0);
        Ok(())
    }

    /// Records the child-side id of a request in flight.
    pub fn forwarded(&self, id: &RequestId, upstream: u64) {
        if let Some(slot) = self.state().in_flight.get_mut(id) {
            *slot = upstream;
        }
    }

    /// The request `id` that went to the child as `upstream` is over. An id the client has
    /// since reused for a new request is left alone.
    pub fn finish(&self, id: &RequestId, upstream: u64) {
        let mut st = self.state();
        if st.in_flight.get(id).is_some_and(|u| *u == upstream || *u == 0) {
            st.in_flight.remove(id);
        }
    }

    /// The client cancelled `id`: it is free again, and its child-side id is returned so
    /// the child can be told.
    pub fn cancel(&self, id: &RequestId) -> Option<u64> {
        self.state().in_flight.remove(id).filter(|u| *u != 0)
    }

    /// Every child-side id in flight (to cancel when the session ends).
    pub fn all_upstream_ids(&self) -> Vec<u64> {
        self.state().in_flight.values().copied().filter(|u| *u != 0).collect()
    }

    /// Settles a server→client request this session was asked; false if it was never
    /// asked, already answered, or withdrawn because the child that asked has died since
    /// (`live` is the generation of the child running now, if one is) (row 17).
    pub fn settle(&self, id: &RequestId, live: Option<u64>) -> bool {
        self.state().outstanding.remove(id).is_some_and(|asked_by| live == Some(asked_by))
    }

    /// Registers POST SSE stream `n` for unsolicited messages while it is open.
    pub fn open_post_stream(&self, n: u64, tx: mpsc::Sender<Delivery>) {
        self.state().post_streams.push((n, tx));
    }

    pub fn close_post_stream(&self, n: u64) {
        self.state().post_streams.retain(|(k, _)| *k != n);
    }

    /// Opens the standalone GET stream (replacing an older one) and flushes the queue
    /// into it.
    pub fn open_get_stream(&self, tx: mpsc::Sender<Delivery>) {
        let mut st = self.state();
        while let Some(m) = st.queued.pop_front() {
            if tx.try_send(m).is_err() {
                break;
            }
        }
        st.get_stream = Some(tx);
    }

    pub fn close_get_stream(&self) {
        self.state().get_stream = None;
    }
}

impl Attached for Session {
    fn has_in_flight(&self) -> bool {
        !self.state().in_flight.is_empty()
    }

    fn may_be_asked(&self, method: &str) -> bool {
        self.caps.allows(method)
    }

    /// Whether a `notifications/message` is at or above the level this session set.
    fn wants_log(&self, m: &apiary_protocol::Message) -> bool {
        let Some(min) = self.state().level else { return true };
        let rank = m.params_string("level").as_deref().and_then(level_rank);
        rank.is_none_or(|r| r >= min)
    }

    fn is_subscribed(&self, uri: &str) -> bool {
        self.state().subscriptions.contains(uri)
    }

    fn subscriptions(&self) -> Vec<String> {
        self.state().subscriptions.iter().cloned().collect()
    }

    /// Delivers a message no request is waiting for: to the GET stream if open, else the
    /// one open POST stream, else a bounded queue (mcp-brief.md, rule 19). Messages that
    /// belong to a call in flight (log lines, server→client requests: `request_scoped`)
    /// prefer that call's POST stream when exactly one is open, so they arrive in order
    /// with its response.
    ///
    /// A server→client request is never queued: with no stream open it cannot be asked
    /// now, so `false` is returned and the caller refuses it to the child (row 9).
    fn deliver(&self, frame: Bytes, server_request: Option<(RequestId, u64)>, request_scoped: bool) -> bool {
        let frame = Delivery::message(frame);
        let mut st = self.state();
        st.post_streams.retain(|(_, tx)| !tx.is_closed());
        if st.get_stream.as_ref().is_some_and(|tx| tx.is_closed()) {
            st.get_stream = None;
        }
        let one_post = match st.post_streams.as_slice() {
            [(_, only)] => Some(only.clone()),
            _ => None,
        };
        let target = if request_scoped {
            one_post.or_else(|| st.get_stream.clone())
        } else {
            st.get_stream.clone().or(one_post)
        };
        if let Some((id, generation)) = &server_request {
            if target.is_none() {
                return false;
            }
            st.outstanding.insert(id.clone(), *generation);
        }
        // A POST stream's route is the call's own channel: its last slot is kept for the
        // response (as for progress), or the answer could find the channel full.
        if let Some(tx) = target
            && tx.capacity() > 1
            && tx.try_send(frame.clone()).is_ok()
        {
            return true;
        }
        if let Some((id, _)) = &server_request {
            st.outstanding.remove(id);
            return false;
        }
        if st.queued.len() >= MAX_QUEUED {
            st.queued.pop_front();
            tracing::warn!(session = %self.id, "dropped the oldest queued message: no stream is reading");
        }
        st.queued.push_back(frame);
        true
    }
}

/// All live sessions, bounded in number and reaped when idle.
pub struct SessionTable {
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    max: usize,
    idle_ttl: Duration,
    event_bytes: usize,
}

impl SessionTable {
    pub fn new(max: usize, idle_ttl: Duration, event_bytes: usize) -> Self {
        SessionTable { sessions: Mutex::new(HashMap::new()), max: max.max(1), idle_ttl, event_bytes }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a session up and marks it used.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map().get(id).cloned()?;
        // A session idle past its TTL is gone even before the next reap (row 11).
        if s.expired(Instant::now(), self.idle_ttl) {
            self.remove(id);
            return None;
        }
        s.touch();
        Some(s)
    }

    /// Refuses when the table is full, after reaping idle sessions (row 15).
    pub fn check_capacity(&self) -> Result<(), SessionError> {
        self.check_capacity_with(0)
    }

    /// The same, counting `others` sessions that live elsewhere (2024-11-05 streams not
    /// yet initialized).
    pub fn check_capacity_with(&self, others: usize) -> Result<(), SessionError> {
        self.reap();
        if self.map().len() + others >= self.max { Err(SessionError::LimitReached) } else { Ok(()) }
    }

    /// Adds a session under a fresh id.
    pub fn insert(
        &self,
        revision: Revision,
        group: Arc<ChildGroup>,
        caps: ClientCaps,
    ) -> Result<Arc<Session>, SessionError> {
        self.check_capacity()?;
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let session = Arc::new(Session {
            id: Arc::clone(&id),
            revision,
            group: Arc::clone(&group),
            caps,
            closed: CancellationToken::new(),
            state: Mutex::new(SessionState::default()),
            events: Mutex::new(EventLog::new(self.event_bytes)),
            next_stream: AtomicU64::new(1),
        });
        session.touch();
        group.attach(Arc::downgrade(&session) as Weak<dyn Attached>);
        self.map().insert(id, Arc::clone(&session));
        Ok(session)
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map().remove(id)?;
        end(&s);
        Some(s)
    }

    /// Ends every session (the proxy is stopping).
    pub fn clear(&self) {
        for (_, s) in self.map().drain() {
            end(&s);
        }
    }

    /// Drops sessions idle past the TTL; their children stop with them.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        self.map().retain(|id, s| {
            let keep = !s.expired(now, self.idle_ttl);
            if !keep {
                tracing::info!(session = %id, "session expired after its idle TTL");
                expired.push(Arc::clone(s));
            }
            keep
        });
        // Ended outside the table's lock: ending takes the session's own locks.
        for s in expired {
            end(&s);
        }
    }
}

/// A session is over: its streams close, its calls are cancelled at the child, its
/// subscriptions are dropped (unsubscribing the child where it was the last subscriber),
/// and a child of its own stops.
fn end(s: &Arc<Session>) {
    s.closed.cancel();
    // A call's POST stream route is a sender of its own channel: dropped here, so the call's
    // channel closes once the child's side lets go of its cancelled requests.
    s.state().post_streams.clear();
    let group = Arc::clone(&s.group);
    // Cancelled before the release: releasing stops a child of the session's own, and these
    // must be queued ahead of the end of its input to reach it.
    if let Some(conn) = group.slot.live() {
        for up in s.all_upstream_ids() {
            conn.abandon(up, "the session ended");
        }
    }
    let unsubscribe = group.release(&**s);
    if unsubscribe.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let Ok(conn) = group.slot.ready(Duration::ZERO).await else { return };
        for uri in unsubscribe {
            let text =
                serde_json::json!({"jsonrpc":"2.0","id":0,"method":"resources/unsubscribe","params":{"uri":uri}});
            let (tx, _rx) = mpsc::channel(1);
            if let Ok(m) = apiary_protocol::Message::parse(Bytes::from(text.to_string())) {
                let _ = conn.request(&m, tx);
            }
        }
    });
}
