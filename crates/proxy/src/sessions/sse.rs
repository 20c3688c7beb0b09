//! The 2024-11-05 sessions (`GET /sse` + `POST /messages`): each stream, the session behind
//! it once `initialize` arrives, and the table of live streams by the id their `endpoint`
//! event announced. Kept with the other sessions so the front's handlers share it without
//! importing each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::Session;
use crate::upstream::stdio::Delivery;

/// One `GET /sse` stream and the session behind it, once `initialize` arrives.
pub struct SseSession {
    /// Everything for the client travels on this stream.
    pub out: mpsc::Sender<Delivery>,
    pub inner: OnceLock<Arc<Session>>,
    /// Cancelled when the proxy stops: the stream ends.
    pub closed: CancellationToken,
}

impl SseSession {
    pub fn new(out: mpsc::Sender<Delivery>) -> Self {
        SseSession { out, inner: OnceLock::new(), closed: CancellationToken::new() }
    }
}

/// Live 2024-11-05 sessions by the id the `endpoint` event announced.
#[derive(Default)]
pub struct SseSessions {
    map: Mutex<HashMap<String, Arc<SseSession>>>,
}

impl SseSessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<SseSession>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn insert(&self, id: String, session: Arc<SseSession>) {
        self.map().insert(id, session);
    }

    pub fn get(&self, id: &str) -> Option<Arc<SseSession>> {
        self.map().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// Ends every stream (the proxy is stopping).
    pub fn clear(&self) {
        for (_, s) in self.map().drain() {
            s.closed.cancel();
        }
    }
}
