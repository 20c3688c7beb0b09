//! The legacy sessions the proxy keeps for a 2026-07-28-only server (a stdio child,
//! `legacy_bridge`, or an HTTP upstream, `http_bridge`): what each session's `initialize`
//! declared, the server→client requests it owes answers to, and the calls it has in flight.
//! A room of its own so that `state` holds the table without importing the bridge's handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use apiary_protocol::{Message, RequestId};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::answer::Refusal;
use crate::client::ClientCaps;
use crate::sessions::session::Session;

/// Server→client requests one session may have waiting for the client's answer.
const MAX_ASKS: usize = 32;
/// Prefix of the ids of the server→client requests the bridge sends a legacy client.
const ASK_PREFIX: &str = "apiary-input-";

/// One legacy session on a modern-only server: what its `initialize` declared, and what it
/// has in flight.
pub(crate) struct Bridged {
    /// The stdio front's session this one rides on (an HTTP upstream's have none: the table
    /// holds them alone).
    session: Option<Weak<Session>>,
    /// Cancelled when the session ends: its calls stop.
    pub(crate) closed: CancellationToken,
    /// When the session was last used (an HTTP upstream's idle sessions are dropped).
    seen: Mutex<Instant>,
    pub(crate) caps: ClientCaps,
    /// `initialize`'s `capabilities` and `clientInfo`, as the client wrote them.
    pub(crate) capabilities: Box<str>,
    pub(crate) client_info: Option<Box<str>>,
    /// The level of `logging/setLevel` (a JSON string), stamped as `logLevel`.
    pub(crate) level: Mutex<Option<Box<str>>>,
    /// Server→client requests waiting for the client's answer, by the id the bridge gave them.
    asks: Mutex<HashMap<RequestId, oneshot::Sender<Message>>>,
    /// Calls in flight, by the client's id: cancelling one stops it at the child.
    pub(crate) calls: Mutex<HashMap<RequestId, CancellationToken>>,
    next_ask: AtomicU64,
    /// The resource URIs the client subscribed to, and the `subscriptions/listen` that
    /// carries their updates from the child (re-opened when the set changes).
    pub(crate) subscriptions: Mutex<std::collections::BTreeSet<String>>,
    pub(crate) listen: Mutex<Option<Listening>>,
    /// The session's GET stream, where an HTTP upstream's `resources/updated` go (a stdio
    /// child's go through the stdio session): the latest GET's, bounded, `None` until one.
    pub(crate) stream: Mutex<Option<tokio::sync::mpsc::Sender<bytes::Bytes>>>,
    /// The list changes the server's `server/discover` advertises (so the session's
    /// `initialize` answer does too).
    pub(crate) offered: ListChanges,
    /// Set once the session has a stream for unsolicited messages (a GET stream, or the
    /// 2024-11-05 session's one stream): from then on its listen asks for `offered`.
    pub(crate) lists_wanted: AtomicBool,
}

/// A session's one `subscriptions/listen`: the task that keeps it open, and where its first
/// acknowledgement (or why it failed) shows; `None` until then.
pub(crate) struct Listening {
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) acked: tokio::sync::watch::Receiver<Option<Result<(), String>>>,
}

/// Which `notifications/*/list_changed` a server advertises (its capabilities'
/// `listChanged`), or a listen asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ListChanges {
    pub(crate) tools: bool,
    pub(crate) prompts: bool,
    pub(crate) resources: bool,
}

impl ListChanges {
    /// What a `server/discover` result advertises.
    pub(crate) fn offered(discover: &[u8]) -> ListChanges {
        let d: serde_json::Value = serde_json::from_slice(discover).unwrap_or_default();
        let on = |kind: &str| d["capabilities"][kind]["listChanged"] == serde_json::Value::Bool(true);
        ListChanges { tools: on("tools"), prompts: on("prompts"), resources: on("resources") }
    }

    pub(crate) fn any(self) -> bool {
        self.tools || self.prompts || self.resources
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.listen).take() {
            l.task.abort();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bridged {
    /// A session's bridge state, from its `initialize`'s capabilities and client info (JSON
    /// texts as the client wrote them).
    pub(crate) fn new(
        session: &Arc<Session>,
        caps: ClientCaps,
        capabilities: &str,
        client_info: Option<&str>,
        offered: ListChanges,
    ) -> Bridged {
        let mut b = Bridged::standalone(caps, capabilities, client_info, offered);
        b.session = Some(Arc::downgrade(session));
        b.closed = session.closed.clone();
        b
    }

    /// A session of the proxy's own, on no stdio session (an HTTP upstream's): it lives
    /// until [`BridgedSessions::remove`] or idleness ends it.
    pub(crate) fn standalone(
        caps: ClientCaps,
        capabilities: &str,
        client_info: Option<&str>,
        offered: ListChanges,
    ) -> Bridged {
        Bridged {
            session: None,
            closed: CancellationToken::new(),
            seen: Mutex::new(Instant::now()),
            caps,
            capabilities: capabilities.into(),
            client_info: client_info.map(Into::into),
            level: Mutex::new(None),
            asks: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            next_ask: AtomicU64::new(0),
            subscriptions: Mutex::new(std::collections::BTreeSet::new()),
            listen: Mutex::new(None),
            stream: Mutex::new(None),
            offered,
            lists_wanted: AtomicBool::new(false),
        }
    }

    fn alive(&self) -> bool {
        let owned = self.session.as_ref().is_none_or(|s| s.strong_count() > 0);
        owned && !self.closed.is_cancelled()
    }

    /// Marks the session used now.
    pub(crate) fn touch(&self) {
        *lock(&self.seen) = Instant::now();
    }

    /// Unused for `idle` with no call in flight and no GET stream open (a client listening
    /// for its subscriptions is there: a gone one's stream fails its keep-alive write).
    fn idle(&self, idle: Duration) -> bool {
        let listening = lock(&self.stream).as_ref().is_some_and(|tx| !tx.is_closed());
        lock(&self.seen).elapsed() >= idle && lock(&self.calls).is_empty() && !listening
    }

    /// A new server→client request id and where its answer will arrive.
    pub(crate) fn ask(&self) -> Result<(String, oneshot::Receiver<Message>), Refusal> {
        let mut asks = lock(&self.asks);
        asks.retain(|_, tx| !tx.is_closed());
        if asks.len() >= MAX_ASKS {
            return Err(Refusal::QueueFull { retry_after: 1, in_session: true });
        }
        let n = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let id = format!("\"{ASK_PREFIX}{n}\"");
        let (tx, rx) = oneshot::channel();
        asks.insert(RequestId::from_json(&id).ok_or_else(|| Refusal::invalid("bad id"))?, tx);
        Ok((id, rx))
    }

    /// The client's answer to one of the bridge's requests; `false` when none waits for it.
    pub(crate) fn answered(&self, m: Message) -> bool {
        let Some(tx) = m.id().and_then(|id| lock(&self.asks).remove(&id)) else { return false };
        tx.send(m).is_ok()
    }
}

/// The bridged sessions of a stdio front, by session id. Bounded by the session table: an
/// entry whose session ended is dropped when the next one is added.
#[derive(Default)]
pub(crate) struct BridgedSessions {
    map: Mutex<HashMap<Arc<str>, Arc<Bridged>>>,
    /// Set by the first bridged session: until then every request of every session (the
    /// proxy's hot path) skips the table's lock.
    used: std::sync::atomic::AtomicBool,
}

impl BridgedSessions {
    pub(crate) fn get(&self, session: &str) -> Option<Arc<Bridged>> {
        if !self.used.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.map).get(session).cloned()
    }

    pub(crate) fn insert(&self, session: Arc<str>, b: Arc<Bridged>) {
        let mut map = lock(&self.map);
        self.used.store(true, Ordering::Release);
        map.retain(|_, b| b.alive());
        map.insert(session, b);
    }

    /// Adds a session the table alone holds (an HTTP upstream's): sessions idle for `idle`
    /// are ended first, and past `max` sessions the new one is refused.
    pub(crate) fn insert_bounded(
        &self,
        session: Arc<str>,
        b: Arc<Bridged>,
        max: usize,
        idle: Duration,
    ) -> Result<(), Refusal> {
        let mut map = lock(&self.map);
        self.used.store(true, Ordering::Release);
        map.retain(|_, b| {
            if b.alive() && b.idle(idle) {
                b.closed.cancel();
            }
            b.alive()
        });
        if map.len() >= max {
            return Err(Refusal::LimitReached { retry_after: 1 });
        }
        map.insert(session, b);
        Ok(())
    }

    /// Ends a session: its calls stop. `None` when there was none by that id.
    pub(crate) fn remove(&self, session: &str) -> Option<Arc<Bridged>> {
        if !self.used.load(Ordering::Acquire) {
            return None;
        }
        let b = lock(&self.map).remove(session)?;
        b.closed.cancel();
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_changes_are_offered_only_when_discover_says_true() {
        let d = br#"{"capabilities":{"tools":{"listChanged":true},"prompts":{"listChanged":false},"resources":{"subscribe":true}}}"#;
        assert_eq!(ListChanges::offered(d), ListChanges { tools: true, prompts: false, resources: false });
        assert!(ListChanges::offered(d).any());
        assert!(!ListChanges::offered(br#"{"capabilities":{"tools":{"listChanged":"yes"}}}"#).any());
        assert!(!ListChanges::offered(b"not json").any());
    }
}
