//! Rewriting primitives for a child shared by many sessions: child-unique request ids with
//! a reverse map, progress tokens namespaced per session, and the `requestId` inside
//! `notifications/cancelled`. Only the member that changes is rewritten; the rest of the
//! message keeps its bytes.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::envelope::{Message, RequestId};

/// Mints child-unique integer ids and remembers what each one stands for.
#[derive(Debug)]
pub struct IdMap<V> {
    next: u64,
    pending: HashMap<u64, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { next: 1, pending: HashMap::new() }
    }
}

impl<V> IdMap<V> {
    /// Remembers `value` under a fresh id and returns the id.
    pub fn insert(&mut self, value: V) -> u64 {
        let id = self.next;
        self.next += 1;
        self.pending.insert(id, value);
        id
    }

    /// Looks up the id a peer answered with.
    pub fn remove(&mut self, id: &RequestId) -> Option<V> {
        match id {
            RequestId::Int(n) => u64::try_from(*n).ok().and_then(|n| self.pending.remove(&n)),
            RequestId::Str(_) => None,
        }
    }

    pub fn get(&self, id: &RequestId) -> Option<&V> {
        match id {
            RequestId::Int(n) => u64::try_from(*n).ok().and_then(|n| self.pending.get(&n)),
            RequestId::Str(_) => None,
        }
    }

    /// Removes the first entry matching `pred` and returns its id and value.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&V) -> bool) -> Option<(u64, V)> {
        let key = self.pending.iter().find(|(_, v)| pred(v)).map(|(k, _)| *k)?;
        self.pending.remove(&key).map(|v| (key, v))
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes every pending entry (a child died: each caller must hear about it).
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.pending.drain()
    }
}

/// Replaces the value at `path` inside the message's params; `None` when that member is
/// absent (then nothing needs rewriting).
fn replace_in_params(msg: &Message, path: &[&str], new: Value) -> Option<Bytes> {
    let mut params: Map<String, Value> = serde_json::from_str(msg.params_raw()?).ok()?;
    let (last, parents) = path.split_last()?;
    let mut obj = &mut params;
    for key in parents {
        obj = obj.get_mut(*key)?.as_object_mut()?;
    }
    let slot = obj.get_mut(*last)?;
    *slot = new;
    let text = serde_json::to_string(&params).ok()?;
    Some(msg.with_params(&text))
}

fn value_in_params(msg: &Message, path: &[&str]) -> Option<Value> {
    let params: Value = serde_json::from_str(msg.params_raw()?).ok()?;
    let mut v = &params;
    for key in path {
        v = v.get(*key)?;
    }
    Some(v.clone())
}

const REQUEST_TOKEN: [&str; 2] = ["_meta", "progressToken"];
const NOTIFICATION_TOKEN: [&str; 1] = ["progressToken"];
const CANCELLED_ID: [&str; 1] = ["requestId"];

/// The progress token a request asks for (`params._meta.progressToken`).
pub fn request_progress_token(msg: &Message) -> Option<Value> {
    // Cheap pre-check: most requests carry no token and need no params parse.
    if !msg.params_raw()?.contains("progressToken") {
        return None;
    }
    value_in_params(msg, &REQUEST_TOKEN).filter(|v| v.is_string() || v.is_i64() || v.is_u64())
}

/// The request with its progress token replaced.
pub fn with_request_progress_token(msg: &Message, token: Value) -> Option<Bytes> {
    replace_in_params(msg, &REQUEST_TOKEN, token)
}

/// The token of a `notifications/progress`.
pub fn notification_progress_token(msg: &Message) -> Option<Value> {
    value_in_params(msg, &NOTIFICATION_TOKEN)
}

/// The progress notification with its token replaced.
pub fn with_notification_progress_token(msg: &Message, token: Value) -> Option<Bytes> {
    replace_in_params(msg, &NOTIFICATION_TOKEN, token)
}

/// The request a `notifications/cancelled` names.
pub fn cancelled_request_id(msg: &Message) -> Option<RequestId> {
    let v = value_in_params(msg, &CANCELLED_ID)?;
    RequestId::from_json(&v.to_string())
}

/// The cancellation rewritten to name `id` (JSON text) instead.
pub fn with_cancelled_request_id(msg: &Message, id: &str) -> Option<Bytes> {
    let v: Value = serde_json::from_str(id).ok()?;
    replace_in_params(msg, &CANCELLED_ID, v)
}

/// A `notifications/cancelled` Apiary sends itself, naming `id` (JSON text).
pub fn cancellation(id: &str, reason: &str) -> Bytes {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":{reason}}}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn id_map_round_trip() {
        let mut m = IdMap::default();
        let a = m.insert("a");
        let b = m.insert("b");
        assert_ne!(a, b);
        assert_eq!(m.remove(&RequestId::Int(a as i64)), Some("a"));
        assert_eq!(m.remove(&RequestId::Int(a as i64)), None);
        assert_eq!(m.remove(&RequestId::Str("2".into())), None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.drain().count(), 1);
    }

    #[test]
    fn progress_tokens_are_replaced_and_restored() {
        let m = msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"t1"}}}"#,
        );
        assert_eq!(request_progress_token(&m), Some(Value::from("t1")));
        let out = msg(std::str::from_utf8(&with_request_progress_token(&m, Value::from(99)).unwrap()).unwrap());
        assert_eq!(request_progress_token(&out), Some(Value::from(99)));
        assert_eq!(out.method(), Some("tools/call"));
        let none = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(request_progress_token(&none), None);

        let n =
            msg(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":99,"progress":1}}"#);
        assert_eq!(notification_progress_token(&n), Some(Value::from(99)));
        let back = msg(std::str::from_utf8(&with_notification_progress_token(&n, Value::from("t1")).unwrap()).unwrap());
        assert_eq!(notification_progress_token(&back), Some(Value::from("t1")));
    }

    #[test]
    fn cancellations_are_rewritten() {
        let c =
            msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"abc","reason":"r"}}"#);
        assert_eq!(cancelled_request_id(&c), Some(RequestId::Str("abc".into())));
        let out = msg(std::str::from_utf8(&with_cancelled_request_id(&c, "17").unwrap()).unwrap());
        assert_eq!(cancelled_request_id(&out), Some(RequestId::Int(17)));
        let own = msg(std::str::from_utf8(&cancellation("5", "gone")).unwrap());
        assert_eq!(cancelled_request_id(&own), Some(RequestId::Int(5)));
    }
}
