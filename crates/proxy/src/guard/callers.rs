//! Which caller each session belongs to, for a proxy whose children use the session's caller
//! (the vMCP exchanging the caller's token for its backends): the front keeps each tracked
//! session's handle current with its owner's latest token, and refuses the session to others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apiary_transport::launch::{CallerHandle, WeakCallerHandle};
use axum::extract::Request;

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// Sessions whose caller handle is tracked at once; past it a new session keeps the token it
/// opened with (it is not refreshed).
const MAX_CALLER_SESSIONS: usize = 65_536;

/// The session a request names: `Mcp-Session-Id`, or the 2024-11-05 `session_id` query.
pub(crate) fn session_key(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(SESSION_HEADER) {
        return v.to_str().ok().map(str::to_owned);
    }
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "session_id").map(|(_, v)| v.into_owned())
}

/// Session id → the caller handle its child holds, and the subject who opened it. Weak: a
/// handle lives as long as the child that holds it, and a session whose child never took one
/// leaves nothing behind. One per proxy, kept only when its launcher may want the caller.
#[derive(Default)]
pub(crate) struct CallerSessions {
    map: Mutex<HashMap<String, (WeakCallerHandle, String)>>,
}

impl CallerSessions {
    /// The handle for one request: the session's own, updated with this request's token when
    /// the subject who opened the session sends it; a fresh one holding the token for a request
    /// of no tracked session. `None` when another subject names a tracked session: it must
    /// neither replace the owner's token nor act with it.
    pub(crate) fn for_request(
        &self,
        key: Option<&str>,
        subject: &str,
        token: Option<Arc<str>>,
    ) -> Option<CallerHandle> {
        if let Some(key) = key {
            let map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((weak, owner)) = map.get(key)
                && let Some(handle) = weak.upgrade()
            {
                if owner != subject {
                    tracing::warn!("a request named a session another caller opened; refused");
                    return None;
                }
                handle.set(token);
                return Some(handle);
            }
        }
        Some(CallerHandle::new(token))
    }

    /// Remembers the handle of a session whose child took it (a session's own child started
    /// while serving this request).
    pub(crate) fn register(&self, key: &str, subject: &str, handle: &CallerHandle) {
        if handle.holders() < 2 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(key).is_some_and(|(w, _)| w.upgrade().is_some()) {
            return;
        }
        if map.len() >= MAX_CALLER_SESSIONS {
            map.retain(|_, (w, _)| w.upgrade().is_some());
            if map.len() >= MAX_CALLER_SESSIONS {
                tracing::warn!("too many sessions to track their callers; this one keeps its first token");
                return;
            }
        }
        map.insert(key.to_owned(), (handle.downgrade(), subject.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(t: &str) -> Option<Arc<str>> {
        Some(Arc::from(t))
    }

    #[test]
    fn a_session_keeps_its_owners_latest_token_and_nobody_elses() {
        let callers = CallerSessions::default();
        // The request opening the session: a fresh handle, taken by the session's child.
        let opening = callers.for_request(None, "alice", token("t1")).unwrap();
        let child = opening.clone();
        callers.register("s1", "alice", &opening);
        drop(opening);

        // The owner's next request refreshes the child's view.
        let next = callers.for_request(Some("s1"), "alice", token("t2")).unwrap();
        assert_eq!(child.token().as_deref(), Some("t2"));
        drop(next);

        // Someone else naming the session is refused and never replaces the owner's token.
        assert!(callers.for_request(Some("s1"), "mallory", token("m1")).is_none());
        assert_eq!(child.token().as_deref(), Some("t2"));
        assert_eq!(callers.for_request(Some("s1"), "alice", token("t3")).unwrap().token().as_deref(), Some("t3"));
        assert_eq!(child.token().as_deref(), Some("t3"));

        // A handle no child took is not remembered; one whose child is gone is forgotten.
        let untaken = callers.for_request(None, "bob", token("b1")).unwrap();
        callers.register("s2", "bob", &untaken);
        assert!(callers.map.lock().unwrap().get("s2").is_none());
        drop(child);
        let fresh = callers.for_request(Some("s1"), "mallory", token("t4")).unwrap();
        assert_eq!(fresh.holders(), 1, "the dead session's handle is not revived");
    }
}
