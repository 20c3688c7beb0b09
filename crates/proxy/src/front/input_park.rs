//! The calls of the bridge to a legacy child (`input_bridge`) parked while their client
//! provides input: at most [`MAX_PARKED`], each for at most [`PARK_TTL`], each named by a
//! sealed handle (an HMAC under a key drawn per process, bound to the method, the name and
//! the caller) that the client echoes as `requestState`. An expired call has its child's
//! requests answered with an error and its child stopped. Its own module so that the
//! front's shared state holds the table without importing the bridge's handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use apiary_protocol::{codes, error_response};
use aws_lc_rs::hmac;
use tokio::sync::mpsc;

use crate::front::capable::Lease;
use crate::upstream::stdio::Delivery;

/// Calls parked at once, waiting for their client's input.
pub const MAX_PARKED: usize = 64;
/// How long a parked call waits for the retry.
pub const PARK_TTL: Duration = Duration::from_secs(300);

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

/// The parked calls and the key their states are sealed with.
pub struct InputBridge {
    parked: Arc<Mutex<HashMap<u64, Parked>>>,
    next: AtomicU64,
    key: Option<hmac::Key>,
    fresh_keys: AtomicU64,
}

impl Default for InputBridge {
    fn default() -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new()).ok();
        InputBridge { parked: Arc::default(), next: AtomicU64::new(1), key, fresh_keys: AtomicU64::new(1) }
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
    /// Takes the parked call a state names, when the state checks out for `binding`.
    pub(crate) fn take(&self, state: &str, binding: &str) -> Option<Parked> {
        let handle = self.open(state, binding)?;
        lock(&self.parked).remove(&handle)
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

    /// Parks a call; its state, or the call back when the table is full.
    pub(crate) fn park(&self, parked: Parked) -> Result<String, Box<Parked>> {
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(state) = self.seal(handle, &parked.run.binding) else { return Err(Box::new(parked)) };
        {
            let mut table = lock(&self.parked);
            if table.len() >= MAX_PARKED {
                return Err(Box::new(parked));
            }
            table.insert(handle, parked);
        }
        let table = Arc::clone(&self.parked);
        tokio::spawn(async move {
            tokio::time::sleep(PARK_TTL).await;
            let expired = lock(&table).remove(&handle);
            if let Some(p) = expired {
                tracing::info!("a call waiting for its client's input expired: its child is stopped");
                refuse_asks(&p.run, &p.asked, "the client did not answer in time");
                p.run.lease.conn.abandon(p.run.upstream, "the client did not answer in time");
                // Dropping the lease stops the child.
            }
        });
        Ok(state)
    }

    pub(crate) fn fresh_key(&self) -> String {
        format!("input-{}", self.fresh_keys.fetch_add(1, Ordering::Relaxed))
    }
}

/// Answers each of the child's requests with an error.
pub(crate) fn refuse_asks(run: &Running, asked: &[Asked], why: &str) {
    for a in asked {
        let _ = run.lease.conn.send(error_response(Some(&a.child_id), codes::INTERNAL_ERROR, why, None));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
