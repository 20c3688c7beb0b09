//! The calls of the bridge to a legacy child (`input_bridge`) parked while their client
//! provides input: at most [`MAX_PARKED`], each for at most [`PARK_TTL`] (the defaults of
//! [`ParkBounds`]), each named by a sealed handle (an HMAC under a key drawn per process,
//! bound to the method, the name and the caller) that the client echoes as `requestState`.
//! An expired call has its child's requests answered with an error and its child stopped;
//! its retry, like that of a call taken already or never parked, is refused -32602. A call
//! that finds the table full is not parked (its caller refuses it). Its own module so that
//! the front's shared state holds the table without importing the bridge's handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use apiary_protocol::{codes, error_response};
use aws_lc_rs::hmac;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::front::capable::Lease;
use crate::upstream::stdio::Delivery;

/// Calls parked at once, waiting for their client's input.
pub const MAX_PARKED: usize = 64;
/// How long a parked call waits for the retry.
pub const PARK_TTL: Duration = Duration::from_secs(300);
/// What the retry of a call that is not parked (any more) is told, with -32602.
pub const GONE: &str = "requestState failed its integrity check, or the call it names is gone";

/// How many calls may be parked at once, and for how long each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkBounds {
    pub max: usize,
    pub ttl: Duration,
}

impl Default for ParkBounds {
    fn default() -> Self {
        ParkBounds { max: MAX_PARKED, ttl: PARK_TTL }
    }
}

/// One server→client request of the child, waiting for the client's answer.
pub(crate) struct Asked {
    pub key: String,
    /// The child's id, as JSON text (it never reaches the client).
    pub child_id: Box<str>,
    /// `{"method":…,"params":…}` as it goes into `inputRequests` (params as the child wrote them).
    pub request: String,
}

/// A call on a leased child, waiting for its answer.
pub(crate) struct Running {
    pub lease: Lease,
    /// The call's id at the child, and where its answer arrives.
    pub upstream: u64,
    pub rx: mpsc::Receiver<Delivery>,
    pub method: String,
    /// What the state is bound to: method, name, caller.
    pub binding: String,
}

/// A call and its child's requests the client is asked to answer.
pub(crate) struct Parked {
    pub run: Running,
    pub asked: Vec<Asked>,
}

/// A parked call and the timer that expires it (stopped when the call is taken, so live
/// timers are as bounded as the table).
struct Entry {
    parked: Parked,
    expiry: AbortHandle,
}

/// The parked calls and the key their states are sealed with.
pub struct InputBridge {
    parked: Arc<Mutex<HashMap<u64, Entry>>>,
    bounds: ParkBounds,
    next: AtomicU64,
    key: Option<hmac::Key>,
    fresh_keys: AtomicU64,
}

impl Default for InputBridge {
    fn default() -> Self {
        InputBridge::with_bounds(ParkBounds::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl InputBridge {
    /// A table of these bounds, under a key drawn now.
    pub fn with_bounds(bounds: ParkBounds) -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new()).ok();
        InputBridge { parked: Arc::default(), bounds, next: AtomicU64::new(1), key, fresh_keys: AtomicU64::new(1) }
    }

    pub fn bounds(&self) -> ParkBounds {
        self.bounds
    }

    /// Calls parked now.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        lock(&self.parked).len()
    }

    /// Takes the parked call a state names, when the state checks out for `binding`.
    pub(crate) fn take(&self, state: &str, binding: &str) -> Option<Parked> {
        let handle = self.open(state, binding)?;
        let entry = lock(&self.parked).remove(&handle)?;
        entry.expiry.abort();
        Some(entry.parked)
    }

    /// [`InputBridge::take`], or the answer to the retry `id` (JSON text) when the state is
    /// altered, replayed, expired or for another call: -32602 [`GONE`].
    pub(crate) fn take_or_refuse(&self, state: &str, binding: &str, id: &str) -> Result<Parked, Bytes> {
        self.take(state, binding).ok_or_else(|| error_response(Some(id), codes::INVALID_PARAMS, GONE, None))
    }

    /// `<handle>.<hex tag>`: the tag covers the handle and what it is bound to.
    pub(crate) fn seal(&self, handle: u64, binding: &str) -> Option<String> {
        let tag = hmac::sign(self.key.as_ref()?, format!("{handle}\n{binding}").as_bytes());
        Some(format!("{handle}.{}", hex(tag.as_ref())))
    }

    /// The handle a state seals, when its tag checks out for this binding.
    pub(crate) fn open(&self, state: &str, binding: &str) -> Option<u64> {
        let (handle, tag) = state.split_once('.')?;
        let handle: u64 = handle.parse().ok()?;
        hmac::verify(self.key.as_ref()?, format!("{handle}\n{binding}").as_bytes(), &unhex(tag)?).ok()?;
        Some(handle)
    }

    /// Parks a call for at most the bounds' `ttl`; its state, or the call back when the
    /// table holds `max` calls already (it never grows past them).
    pub(crate) fn park(&self, parked: Parked) -> Result<String, Box<Parked>> {
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(state) = self.seal(handle, &parked.run.binding) else { return Err(Box::new(parked)) };
        let mut table = lock(&self.parked);
        if table.len() >= self.bounds.max {
            return Err(Box::new(parked));
        }
        let weak = Arc::downgrade(&self.parked);
        let ttl = self.bounds.ttl;
        // The timer waits for the lock held here before it can look, so it finds the entry.
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let Some(table) = weak.upgrade() else { return };
            let expired = lock(&table).remove(&handle);
            if let Some(Entry { parked: p, .. }) = expired {
                tracing::info!("a call waiting for its client's input expired: its child is stopped");
                refuse_asks(&p.run, &p.asked, "the client did not answer in time");
                p.run.lease.conn.abandon(p.run.upstream, "the client did not answer in time");
                // Dropping the lease stops the child.
            }
        })
        .abort_handle();
        table.insert(handle, Entry { parked, expiry });
        Ok(state)
    }

    pub(crate) fn fresh_key(&self) -> String {
        format!("input-{}", self.fresh_keys.fetch_add(1, Ordering::Relaxed))
    }
}

impl Drop for InputBridge {
    /// The front is going: its parked calls go with it (their leases stop their children),
    /// and so do their timers.
    fn drop(&mut self) {
        for (_, entry) in lock(&self.parked).drain() {
            entry.expiry.abort();
        }
    }
}

/// Answers each of the child's requests with an error.
pub(crate) fn refuse_asks(run: &Running, asked: &[Asked], why: &str) {
    for a in asked {
        let _ = run.lease.conn.send(error_response(Some(&a.child_id), codes::INTERNAL_ERROR, why, None));
    }
}

/// A child played by the test over in-memory pipes, and calls on it, for the unit tests of
/// what parks calls.
#[cfg(test)]
pub(crate) mod fake {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use apiary_protocol::Message;
    use bytes::Bytes;
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, Lines};
    use tokio::sync::mpsc;

    use super::{Asked, Running};
    use crate::front::capable::Lease;
    use crate::upstream::stdio::{ChildConn, UnsolicitedSink};

    /// Bounds each wait for a line the proxy writes to the child.
    const LINE_LIMIT: Duration = Duration::from_secs(10);

    pub(crate) struct FakeChild {
        pub conn: Arc<ChildConn>,
        /// What the proxy writes to the child's stdin.
        stdin: Lines<BufReader<DuplexStream>>,
        /// Held so the child's stdout stays open (its end would mark the child gone).
        _stdout: DuplexStream,
    }

    impl FakeChild {
        pub(crate) fn start() -> FakeChild {
            let (child_in, stdin) = tokio::io::duplex(64 * 1024);
            let (stdout, child_out) = tokio::io::duplex(64 * 1024);
            let sink: UnsolicitedSink = Arc::new(|_| {});
            let conn = ChildConn::start(None, Box::new(child_in), Box::new(child_out), 1 << 20, 16, sink);
            FakeChild { conn, stdin: BufReader::new(stdin).lines(), _stdout: stdout }
        }

        /// The next message the proxy writes to the child.
        pub(crate) async fn next(&mut self) -> Value {
            let line = tokio::time::timeout(LINE_LIMIT, self.stdin.next_line()).await.unwrap().unwrap().unwrap();
            serde_json::from_str(&line).unwrap()
        }

        /// A `tools/call` of `tool` forwarded to this child, running for `binding`; the
        /// forwarded request is read off the child's stdin.
        pub(crate) async fn call(&mut self, tool: &str, binding: &str) -> Running {
            let m = Message::parse(Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
            )))
            .unwrap();
            let (tx, rx) = mpsc::channel(4);
            let upstream = self.conn.request(&m, tx).unwrap();
            assert_eq!(self.next().await["params"]["name"], tool);
            let lease = Lease::detached(self.conn.clone());
            Running { lease, upstream, rx, method: "tools/call".into(), binding: binding.into() }
        }
    }

    /// A sampling request the child raised with `child_id`, under `key`.
    pub(crate) fn asked(key: &str, child_id: &str) -> Asked {
        Asked {
            key: key.into(),
            child_id: child_id.into(),
            request: r#"{"method":"sampling/createMessage","params":{}}"#.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::fake::{FakeChild, asked};
    use super::*;

    const BINDING: &str = "tools/call\nx\nalice";

    /// A call whose input never comes is dropped from the table after its TTL: the child's
    /// request is answered with an error, the call is cancelled at the child, and the retry
    /// that comes too late gets -32602 (the same answer an altered state gets).
    #[tokio::test]
    async fn a_parked_call_expires_and_its_late_retry_is_refused() {
        let bridge = InputBridge::with_bounds(ParkBounds { max: 4, ttl: Duration::from_millis(50) });
        let mut child = FakeChild::start();
        let run = child.call("x", BINDING).await;
        let upstream = run.upstream;
        let state = bridge.park(Parked { run, asked: vec![asked("k", r#""ask-1""#)] }).ok().unwrap();
        assert_eq!(bridge.parked(), 1);

        let refused = child.next().await;
        assert_eq!(refused["id"], "ask-1", "{refused}");
        assert_eq!(refused["error"]["code"], codes::INTERNAL_ERROR, "{refused}");
        let cancelled = child.next().await;
        assert_eq!(cancelled["method"], "notifications/cancelled", "{cancelled}");
        assert_eq!(cancelled["params"]["requestId"], upstream, "{cancelled}");
        assert_eq!(bridge.parked(), 0);

        let late = bridge.take_or_refuse(&state, BINDING, "9").err().unwrap();
        let late: serde_json::Value = serde_json::from_slice(&late).unwrap();
        assert_eq!(late["id"], 9, "{late}");
        assert_eq!(late["error"]["code"], codes::INVALID_PARAMS, "{late}");
        assert_eq!(late["error"]["message"], GONE, "{late}");
    }

    /// A call taken in time is the caller's: the retry finds it, and its expiry no longer
    /// touches it.
    #[tokio::test]
    async fn a_call_taken_in_time_is_found_once() {
        let bridge = InputBridge::with_bounds(ParkBounds { max: 4, ttl: Duration::from_secs(300) });
        let mut child = FakeChild::start();
        let run = child.call("x", BINDING).await;
        let state = bridge.park(Parked { run, asked: vec![asked("k", "7")] }).ok().unwrap();
        assert!(bridge.take_or_refuse(&state, "tools/call\ny\nalice", "2").is_err(), "another tool's binding");
        let parked = bridge.take_or_refuse(&state, BINDING, "2").ok().unwrap();
        assert_eq!(parked.asked[0].key, "k");
        assert!(bridge.take_or_refuse(&state, BINDING, "3").is_err(), "replayed");
        assert_eq!(bridge.parked(), 0);
    }

    /// Full, the table refuses a call (handing it back to the caller to refuse) instead of
    /// growing; a call taken out makes room again.
    #[tokio::test]
    async fn the_table_refuses_past_its_bound_rather_than_grow() {
        let bridge = InputBridge::with_bounds(ParkBounds { max: 2, ttl: Duration::from_secs(300) });
        let mut child = FakeChild::start();
        let mut states = Vec::new();
        for i in 0..2 {
            let run = child.call(&format!("t{i}"), BINDING).await;
            states.push(bridge.park(Parked { run, asked: vec![asked("k", &i.to_string())] }).ok().unwrap());
        }
        let run = child.call("t2", BINDING).await;
        let back = bridge.park(Parked { run, asked: vec![asked("k", "2")] }).err().unwrap();
        assert_eq!(back.asked[0].child_id.as_ref(), "2", "the refused call comes back to its caller");
        assert_eq!(bridge.parked(), 2);

        assert!(bridge.take_or_refuse(&states[0], BINDING, "1").is_ok());
        assert!(bridge.park(*back).is_ok(), "room again");
        assert_eq!(bridge.parked(), 2);
    }

    #[test]
    fn states_open_only_unaltered_and_for_their_binding() {
        let bridge = InputBridge::default();
        let state = bridge.seal(42, "tools/call\nx\nalice").unwrap();
        assert_eq!(bridge.open(&state, "tools/call\nx\nalice"), Some(42));
        assert_eq!(bridge.open(&format!("{state}-TAMPERED"), "tools/call\nx\nalice"), None);
        assert_eq!(bridge.open(&state, "tools/call\ny\nalice"), None, "another tool");
        assert_eq!(bridge.open(&state, "tools/call\nx\nmallory"), None, "another caller");
        let (_, tag) = state.split_once('.').unwrap();
        assert_eq!(bridge.open(&format!("43.{tag}"), "tools/call\nx\nalice"), None, "another handle");
        assert_eq!(bridge.open("no-dot", "tools/call\nx\nalice"), None);
        assert_eq!(InputBridge::default().open(&state, "tools/call\nx\nalice"), None, "another process's key");
    }
}
