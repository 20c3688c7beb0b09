//! The multiplexer: one child and the sessions attached to it. A child of its own serves
//! one session (exclusive); a shared child serves many. Messages the child sends unasked
//! are routed by one rule: **never guess who a server→client message belongs to**
//! (DESIGN.md). List changes go to every session, resource updates to the subscribers, and
//! everything that may carry one client's data (server→client requests, log messages)
//! only to a session whose ownership is certain; otherwise it is refused or logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use apiary_protocol::{Message, RequestId, codes, error_response, methods};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::upstream::stdio::{ChildSlot, Delivery, SlotEvent, SlotOptions, Unsolicited, UnsolicitedSink};

/// Whatever the multiplexer routes a child's unasked messages to (today a legacy session):
/// what it asks of it, so the mux needs no knowledge of the layer above it.
pub trait Attached: Send + Sync {
    /// It has requests of its own waiting on the child.
    fn has_in_flight(&self) -> bool;
    /// It declared the capability a server→client request with this method needs.
    fn may_be_asked(&self, method: &str) -> bool;
    fn is_subscribed(&self, uri: &str) -> bool;
    /// The resource URIs it is subscribed to.
    fn subscriptions(&self) -> Vec<String>;
    /// Whether a `notifications/message` is at or above the level it set.
    fn wants_log(&self, m: &Message) -> bool;
    /// Hands it a message no request of its own waits for; false when it cannot take it
    /// (a session: see its implementation).
    fn deliver(&self, frame: Bytes, server_request: Option<(RequestId, u64)>, request_scoped: bool) -> bool;
}

/// One child and the sessions it serves.
pub struct ChildGroup {
    pub slot: ChildSlot,
    /// A child of one session's own.
    pub exclusive: bool,
    sessions: Mutex<Vec<Weak<dyn Attached>>>,
    /// Subscribers per resource URI; the child is subscribed while the count is > 0.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// The most verbose level any session asked for, as set on the child.
    level: Mutex<Option<u8>>,
    /// Requests in flight that belong to no session.
    sessionless: AtomicUsize,
    /// Server→client requests refused because no owner was certain.
    pub refused: AtomicU64,
    /// Open SSE streams of sessionless calls (by number): the one of them carries the
    /// notifications of the one sessionless call in flight (row 12).
    sessionless_streams: Mutex<Vec<(u64, mpsc::Sender<Delivery>)>>,
    next_stream: AtomicU64,
    /// Counts live exclusive children; decremented when this one is released.
    own_children: Option<Arc<AtomicUsize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChildGroup {
    /// Starts a supervised child and the group that routes what it sends unasked.
    pub fn start(
        opts: SlotOptions,
        exclusive: bool,
        own_children: Option<Arc<AtomicUsize>>,
        events: mpsc::UnboundedSender<SlotEvent>,
    ) -> Arc<ChildGroup> {
        Arc::new_cyclic(|weak: &Weak<ChildGroup>| {
            let weak = weak.clone();
            let sink: UnsolicitedSink = Arc::new(move |u| {
                if let Some(g) = weak.upgrade() {
                    g.route(u);
                }
            });
            ChildGroup::with_slot(ChildSlot::spawn(opts, sink, events), exclusive, own_children)
        })
    }

    fn with_slot(slot: ChildSlot, exclusive: bool, own_children: Option<Arc<AtomicUsize>>) -> ChildGroup {
        ChildGroup {
            slot,
            exclusive,
            sessions: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(HashMap::new()),
            level: Mutex::new(None),
            sessionless: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            sessionless_streams: Mutex::new(Vec::new()),
            next_stream: AtomicU64::new(1),
            own_children,
        }
    }

    pub fn attach(&self, s: Weak<dyn Attached>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|w| w.strong_count() > 0);
        sessions.push(s);
    }

    /// A session ends: its subscriptions go; an exclusive child stops. Returns the URIs
    /// whose last subscriber this was (the child should be unsubscribed from them).
    pub fn release(&self, s: &dyn Attached) -> Vec<String> {
        lock(&self.sessions).retain(|w| w.upgrade().is_some_and(|o| !std::ptr::addr_eq(Arc::as_ptr(&o), s)));
        if self.exclusive {
            self.slot.stop();
            if let Some(c) = &self.own_children {
                c.fetch_sub(1, Ordering::Relaxed);
            }
            return Vec::new();
        }
        s.subscriptions().into_iter().filter(|uri| self.unsubscribe(uri)).collect()
    }

    fn live(&self) -> Vec<Arc<dyn Attached>> {
        lock(&self.sessions).iter().filter_map(Weak::upgrade).collect()
    }

    /// The session that certainly owns what the child sends now: the only session of an
    /// exclusive child, or on a shared child the one session with requests in flight
    /// while no other session, and no sessionless request, has any.
    fn owner(&self) -> Option<Arc<dyn Attached>> {
        let live = self.live();
        if self.exclusive {
            return live.into_iter().next();
        }
        if self.sessionless.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let mut busy = live.into_iter().filter(|s| s.has_in_flight());
        match (busy.next(), busy.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Registers the SSE stream of a sessionless call; returns its number.
    pub fn open_sessionless_stream(&self, tx: mpsc::Sender<Delivery>) -> u64 {
        let n = self.next_stream.fetch_add(1, Ordering::Relaxed);
        lock(&self.sessionless_streams).push((n, tx));
        n
    }

    pub fn close_sessionless_stream(&self, n: u64) {
        lock(&self.sessionless_streams).retain(|(k, _)| *k != n);
    }

    /// The stream of the one sessionless call in flight, when no session has any.
    fn sessionless_owner(&self) -> Option<mpsc::Sender<Delivery>> {
        if self.exclusive
            || self.sessionless.load(Ordering::Relaxed) != 1
            || self.live().iter().any(|s| s.has_in_flight())
        {
            return None;
        }
        match lock(&self.sessionless_streams).as_slice() {
            [(_, only)] => Some(only.clone()),
            _ => None,
        }
    }

    pub fn sessionless_started(&self, n: usize) {
        self.sessionless.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sessionless_finished(&self, n: usize) {
        let _ = self.sessionless.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }

    /// Counts a subscriber; true when it is the first (the child must be subscribed).
    pub fn subscribe(&self, uri: &str) -> bool {
        let mut subs = lock(&self.subscriptions);
        let n = subs.entry(uri.to_owned()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Drops a subscriber; true when it was the last (the child must be unsubscribed).
    pub fn unsubscribe(&self, uri: &str) -> bool {
        let mut subs = lock(&self.subscriptions);
        match subs.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                subs.remove(uri);
                true
            }
            None => false,
        }
    }

    /// Records a session's level; true when the child must be told (it is more verbose
    /// than what the child runs at).
    pub fn lower_level(&self, rank: u8) -> bool {
        let mut level = lock(&self.level);
        if level.is_none_or(|cur| rank < cur) {
            *level = Some(rank);
            true
        } else {
            false
        }
    }

    fn route(&self, u: Unsolicited) {
        match u {
            Unsolicited::Notification(m) => self.route_notification(m),
            Unsolicited::Request(m, child) => {
                let method = m.method().unwrap_or_default().to_owned();
                let target = self.owner().filter(|s| self.exclusive || s.may_be_asked(&method));
                let id = m.id();
                let asked = id.map(|id| (id, self.slot.generation()));
                let delivered = target.is_some_and(|s| s.deliver(m.bytes().clone(), asked, true));
                if !delivered {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %method,
                        "refused a server→client request: no single session with the capability and an open stream owns it"
                    );
                    let msg = "the client of this request cannot be determined or reached; Apiary does not guess";
                    let _ = child.try_send(error_response(m.id_raw(), codes::METHOD_NOT_FOUND, msg, None));
                }
            }
        }
    }

    fn route_notification(&self, m: Message) {
        let method = m.method().unwrap_or_default();
        if methods::is_list_changed(method) {
            for s in self.live() {
                let _ = s.deliver(m.bytes().clone(), None, false);
            }
            return;
        }
        if method == methods::RESOURCES_UPDATED {
            // Read from the bytes: a `1e400` elsewhere in params must not drop the update.
            let uri = m.params_string("uri");
            for s in self.live() {
                if self.exclusive || uri.as_deref().is_some_and(|u| s.is_subscribed(u)) {
                    let _ = s.deliver(m.bytes().clone(), None, false);
                }
            }
            return;
        }
        // Log lines and anything else may carry one client's data: owner only.
        match self.owner() {
            Some(s) if method != methods::MESSAGE || s.wants_log(&m) => {
                let _ = s.deliver(m.into_bytes(), None, true);
            }
            Some(_) => {}
            None => match self.sessionless_owner() {
                // The call's own channel: its last slot is kept for the response.
                Some(tx) if tx.capacity() > 1 => {
                    let _ = tx.try_send(Delivery::message(m.into_bytes()));
                }
                Some(_) => {
                    tracing::debug!(%method, "notification from a shared child dropped: its call's stream is full")
                }
                None => tracing::debug!(%method, "notification from a shared child kept in the log only"),
            },
        }
    }
}
