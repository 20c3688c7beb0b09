//! Children for the 2026-07-28 requests that declare client capabilities, when the upstream
//! is a legacy stdio server. Such a request may make the server ask its client something (a
//! server→client request), and the shared child, initialized with no capabilities, must not
//! be asked on anyone's behalf (DESIGN.md: never guess who a server→client message belongs
//! to). So the request gets a child of its own for its duration: initialized with the
//! capabilities the request declared and leased to that one request, so whatever the child
//! asks while leased can only be that request's. Children come from the per-session child
//! machinery and count against its `--max-session-children` bound; past it, the request runs
//! on the shared child with its capabilities unused (logged and counted), as `auto` does for
//! sessions. A child goes back to the pool only when its lease ended clean (answered, nothing
//! asked and unanswered); otherwise it is stopped, so no leftover work of one request can
//! reach the next.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use apiary_protocol::{Message, RequestId, modern};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::ClientCaps;
use crate::sessions::placement::{Placement, own_initialize_params};
use crate::upstream::mux::{Attached, ChildGroup};
use crate::upstream::stdio::{ChildConn, StdioError};

/// Idle capable children kept for reuse; more are stopped when their lease ends.
const MAX_IDLE: usize = 4;
/// How long an idle capable child is kept for reuse.
const IDLE_TTL: Duration = Duration::from_secs(300);
/// Server→client requests one leased child may have waiting for the bridge.
const ASKS_QUEUE: usize = 16;

/// The capabilities a 2026-07-28 request declares in
/// `params._meta["io.modelcontextprotocol/clientCapabilities"]` (read alone, from the bytes).
pub fn declared_caps(m: &Message) -> ClientCaps {
    let Ok(Some(range)) = m.params_member(&["_meta", modern::META_CAPABILITIES]) else {
        return ClientCaps::default();
    };
    let Ok(caps) = serde_json::from_slice::<serde_json::Value>(&m.bytes()[range]) else {
        return ClientCaps::default();
    };
    ClientCaps::from_initialize(&serde_json::json!({ "capabilities": caps }))
}

/// The `initialize` params of a child for requests declaring `caps`.
fn init_params(caps: ClientCaps) -> String {
    let mut declared = serde_json::Map::new();
    for (on, name) in [(caps.sampling, "sampling"), (caps.elicitation, "elicitation"), (caps.roots, "roots")] {
        if on {
            declared.insert(name.to_owned(), serde_json::json!({}));
        }
    }
    own_initialize_params(serde_json::Value::Object(declared))
}

/// What the multiplexer routes a capable child's unasked messages to: its server→client
/// requests go to the lease holder while the child is leased, and are refused otherwise.
struct LeaseOwner {
    leased: AtomicBool,
    asks: mpsc::Sender<Bytes>,
}

impl Attached for LeaseOwner {
    fn has_in_flight(&self) -> bool {
        self.leased.load(Ordering::SeqCst)
    }
    fn may_be_asked(&self, _method: &str) -> bool {
        true
    }
    fn is_subscribed(&self, _uri: &str) -> bool {
        false
    }
    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }
    fn wants_log(&self, _m: &Message) -> bool {
        false
    }
    fn deliver(&self, frame: Bytes, server_request: Option<(RequestId, u64)>, _request_scoped: bool) -> bool {
        match server_request {
            // A request raised while nobody holds the child has no owner: refused.
            Some(_) => self.leased.load(Ordering::SeqCst) && self.asks.try_send(frame).is_ok(),
            // Notifications (list changes, logs) of a leased child are not relayed.
            None => true,
        }
    }
}

/// One capable child: its group, what it was initialized with, and where its
/// server→client requests arrive.
struct CapableChild {
    group: Arc<ChildGroup>,
    caps: ClientCaps,
    owner: Arc<LeaseOwner>,
    asks: mpsc::Receiver<Bytes>,
}

impl CapableChild {
    fn start(placement: &Placement, caps: ClientCaps) -> Option<CapableChild> {
        let group = placement.start_own_child(init_params(caps))?;
        let (tx, asks) = mpsc::channel(ASKS_QUEUE);
        let owner = Arc::new(LeaseOwner { leased: AtomicBool::new(false), asks: tx });
        let weak: Weak<dyn Attached> = Arc::downgrade(&(Arc::clone(&owner) as Arc<dyn Attached>));
        group.attach(weak);
        Some(CapableChild { group, caps, owner, asks })
    }

    fn alive(&self) -> bool {
        self.group.slot.live().is_some()
    }

    /// Stops the child and frees its place under the bound.
    fn retire(self) {
        self.owner.leased.store(false, Ordering::SeqCst);
        self.group.release(self.owner.as_ref());
    }
}

/// A capable child leased to one request. Dropped without [`CapablePool::give_back`], the
/// child is stopped: whatever it still does belongs to a request that is gone.
pub struct Lease {
    child: Option<CapableChild>,
    /// The live child.
    pub conn: Arc<ChildConn>,
}

impl Lease {
    /// The next server→client request of the child (the raw frame, the child's id in it).
    pub async fn next_ask(&mut self) -> Option<Bytes> {
        match self.child.as_mut() {
            Some(c) => c.asks.recv().await,
            None => None,
        }
    }
}

impl Lease {
    /// A lease of `conn` that belongs to no pool (unit tests of what holds a lease).
    #[cfg(test)]
    pub(crate) fn detached(conn: Arc<ChildConn>) -> Lease {
        Lease { child: None, conn }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            child.retire();
        }
    }
}

/// The idle capable children, and what went unused for want of one.
#[derive(Default)]
pub struct CapablePool {
    idle: Mutex<Vec<(CapableChild, Instant)>>,
    /// Requests that declared capabilities but ran on the shared child (no capable child
    /// could be had): their capabilities went unused.
    pub on_shared: AtomicU64,
}

impl CapablePool {
    fn idle(&self) -> MutexGuard<'_, Vec<(CapableChild, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child initialized with `caps`, leased to the caller: an idle one, or a new one
    /// when the bound has room (an idle child of other capabilities is stopped to make
    /// room). `Ok(None)` when none can be had: the caller runs on the shared child.
    pub async fn lease(
        &self,
        placement: &Placement,
        caps: ClientCaps,
        wait: Duration,
    ) -> Result<Option<Lease>, StdioError> {
        let reused = {
            let mut idle = self.idle();
            let now = Instant::now();
            let (keep, stale): (Vec<_>, Vec<_>) =
                idle.drain(..).partition(|(c, since)| c.alive() && now.duration_since(*since) < IDLE_TTL);
            *idle = keep;
            for (c, _) in stale {
                c.retire();
            }
            idle.iter().position(|(c, _)| c.caps == caps).map(|i| idle.swap_remove(i).0)
        };
        let child = match reused {
            Some(c) => Some(c),
            None => match CapableChild::start(placement, caps) {
                Some(c) => Some(c),
                None => {
                    // Make room by stopping an idle child of other capabilities, once.
                    let evicted = self.idle().pop();
                    match evicted {
                        Some((c, _)) => {
                            c.retire();
                            CapableChild::start(placement, caps)
                        }
                        None => None,
                    }
                }
            },
        };
        let Some(mut child) = child else {
            self.on_shared.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "a 2026-07-28 request that declared client capabilities runs on the shared child: the child \
                 bound (--max-session-children) is reached; its server→client requests will be refused"
            );
            return Ok(None);
        };
        // Whatever the child asked while idle was refused; nothing of it may reach this lease.
        while child.asks.try_recv().is_ok() {}
        let conn = match child.group.slot.ready(wait).await {
            Ok(conn) => conn,
            Err(e) => {
                child.retire();
                return Err(e);
            }
        };
        child.owner.leased.store(true, Ordering::SeqCst);
        Ok(Some(Lease { child: Some(child), conn }))
    }

    /// Ends a lease whose request was answered: the child is kept for another request
    /// when nothing it asked is left over, and stopped otherwise.
    pub fn give_back(&self, mut lease: Lease) {
        let Some(mut child) = lease.child.take() else { return };
        child.owner.leased.store(false, Ordering::SeqCst);
        let clean = child.asks.try_recv().is_err() && child.alive();
        if !clean {
            child.retire();
            return;
        }
        let evicted = {
            let mut idle = self.idle();
            idle.push((child, Instant::now()));
            if idle.len() > MAX_IDLE { Some(idle.remove(0).0) } else { None }
        };
        if let Some(c) = evicted {
            c.retire();
        }
    }

    /// Stops every idle child (the proxy is stopping).
    pub fn clear(&self) {
        let idle: Vec<_> = self.idle().drain(..).collect();
        for (c, _) in idle {
            c.retire();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(meta: &str) -> Message {
        Message::parse(Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"n":1e400}},"_meta":{meta}}}}}"#
        )))
        .unwrap()
    }

    #[test]
    fn declared_capabilities_are_read_from_meta_alone() {
        let m =
            request(r#"{"io.modelcontextprotocol/clientCapabilities":{"sampling":{},"roots":{"listChanged":true}}}"#);
        let caps = declared_caps(&m);
        assert!(caps.sampling && caps.roots && !caps.elicitation);
        assert!(!declared_caps(&request(r#"{"io.modelcontextprotocol/clientCapabilities":{}}"#)).any());
        assert!(!declared_caps(&request("{}")).any());
        let params: serde_json::Value = serde_json::from_str(&init_params(caps)).unwrap();
        assert_eq!(params["capabilities"], serde_json::json!({"sampling": {}, "roots": {}}));
    }

    #[test]
    fn a_request_raised_while_nobody_holds_the_child_is_refused() {
        let (tx, mut rx) = mpsc::channel(2);
        let owner = LeaseOwner { leased: AtomicBool::new(false), asks: tx };
        let ask = Some((RequestId::Int(7), 1));
        assert!(!owner.deliver(Bytes::from_static(b"{}"), ask.clone(), true), "idle: no owner");
        owner.leased.store(true, Ordering::SeqCst);
        assert!(owner.deliver(Bytes::from_static(b"{}"), ask, true));
        assert!(rx.try_recv().is_ok());
        assert!(owner.deliver(Bytes::from_static(b"{}"), None, false), "notifications are dropped, not refused");
        assert!(rx.try_recv().is_err());
    }
}
