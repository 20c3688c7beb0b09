//! Rewriting primitives for a child shared by many sessions: child-unique request ids with
//! a reverse map, progress tokens namespaced per session, and the `requestId` inside
//! `notifications/cancelled`. Only the member that changes is rewritten, by a byte splice
//! ([`crate::splice`]); the rest of the message keeps its bytes, key order, number
//! spelling and escapes included. Ids and tokens are handled as the JSON text they were
//! written as, so restoring one gives back the caller's exact bytes.

use std::collections::HashMap;

use crate::envelope::{Message, RequestId};
use crate::splice::{SpliceError, check_value, splice};
use bytes::Bytes;

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

const REQUEST_TOKEN: [&str; 2] = ["_meta", "progressToken"];
const NOTIFICATION_TOKEN: [&str; 1] = ["progressToken"];
const CANCELLED_ID: [&str; 1] = ["requestId"];
const SUBSCRIPTION_ID: [&str; 2] = ["_meta", crate::modern::META_SUBSCRIPTION_ID];

/// The text of the member at `path` in the message's params, as it was written.
fn param_text<'a>(msg: &'a Message, path: &[&str]) -> Option<&'a str> {
    msg.params_member(path).ok().flatten().and_then(|r| msg.text(r))
}

/// The message with the member at `path` in its params replaced by `value` (JSON text).
fn replace_param(msg: &Message, path: &[&str], value: &str) -> Result<Bytes, SpliceError> {
    check_value(value)?;
    match msg.params_member(path)? {
        Some(r) => splice(msg.bytes(), &[(r, value.as_bytes())]),
        None => Err(SpliceError::Absent(format!("params.{}", path.join(".")))),
    }
}

/// A progress token is a string or a number (MCP `ProgressToken`).
fn is_token(raw: &str) -> bool {
    raw.starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit())
}

/// The progress token a request asks for (`params._meta.progressToken`), as JSON text
/// exactly as the caller wrote it; `None` when absent or neither a string nor a number.
/// Only the top-level `_meta` counts: a `_meta` inside `arguments` belongs to the tool.
pub fn request_progress_token(msg: &Message) -> Option<&str> {
    // Cheap pre-check: most requests carry no token and need no scan.
    if !msg.params_raw()?.contains("progress") && !msg.params_raw()?.contains('\\') {
        return None;
    }
    param_text(msg, &REQUEST_TOKEN).filter(|t| is_token(t))
}

/// The request with its progress token replaced by `token` (JSON text); every other byte
/// kept. An error when the request has no token.
pub fn with_request_progress_token(msg: &Message, token: &str) -> Result<Bytes, SpliceError> {
    replace_param(msg, &REQUEST_TOKEN, token)
}

/// A request as forwarded to a shared child: its id replaced by `id` and, when `token` is
/// given, its progress token replaced by it (both JSON text), in one splice.
pub fn forwarded_request(msg: &Message, id: &str, token: Option<&str>) -> Result<Bytes, SpliceError> {
    check_value(id)?;
    let id_range = msg.id_range().ok_or_else(|| SpliceError::Absent("id".into()))?;
    let mut edits = vec![(id_range, id.as_bytes())];
    if let Some(token) = token {
        check_value(token)?;
        let r = msg
            .params_member(&REQUEST_TOKEN)?
            .ok_or_else(|| SpliceError::Absent("params._meta.progressToken".into()))?;
        edits.push((r, token.as_bytes()));
    }
    splice(msg.bytes(), &edits)
}

/// The token of a `notifications/progress`, as JSON text exactly as written.
pub fn notification_progress_token(msg: &Message) -> Option<&str> {
    param_text(msg, &NOTIFICATION_TOKEN).filter(|t| is_token(t))
}

/// The progress notification with its token replaced by `token` (JSON text).
pub fn with_notification_progress_token(msg: &Message, token: &str) -> Result<Bytes, SpliceError> {
    replace_param(msg, &NOTIFICATION_TOKEN, token)
}

/// The request a `notifications/cancelled` names.
pub fn cancelled_request_id(msg: &Message) -> Option<RequestId> {
    param_text(msg, &CANCELLED_ID).and_then(RequestId::from_json)
}

/// The cancellation rewritten to name `id` (JSON text) instead; every other byte kept.
pub fn with_cancelled_request_id(msg: &Message, id: &str) -> Result<Bytes, SpliceError> {
    replace_param(msg, &CANCELLED_ID, id)
}

/// The `subscriptions/listen` request a 2026-07-28 notification belongs to
/// (`params._meta["io.modelcontextprotocol/subscriptionId"]`, the listen request's id).
pub fn notification_subscription_id(msg: &Message) -> Option<RequestId> {
    // Cheap pre-check: most notifications belong to no subscription.
    if !msg.params_raw()?.contains("subscriptionId") && !msg.params_raw()?.contains('\\') {
        return None;
    }
    param_text(msg, &SUBSCRIPTION_ID).and_then(RequestId::from_json)
}

/// The notification with its subscription id replaced by `id` (JSON text); every other
/// byte kept.
pub fn with_notification_subscription_id(msg: &Message, id: &str) -> Result<Bytes, SpliceError> {
    replace_param(msg, &SUBSCRIPTION_ID, id)
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// Arguments no typed round trip keeps: key order, number spellings, big integers,
    /// escapes, whitespace, and a `_meta.progressToken` that belongs to the tool.
    const NASTY_ARGS: &str = r#"{"z":1,"a":1.50,"big":12345678901234567890123,"huge":1e400,"e":"\u00e9","é":"é","s":"a\/b","w" :	[ 1 , 2 ],"_meta":{"progressToken":1}}"#;

    #[test]
    fn subscription_ids_are_read_and_replaced_alone() {
        let n = Message::parse(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"x":1.50,"io.modelcontextprotocol/subscriptionId":7}}}"#,
        ))
        .unwrap();
        assert_eq!(notification_subscription_id(&n), Some(RequestId::Int(7)));
        let out = with_notification_subscription_id(&n, r#""l\/1""#).unwrap();
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"x":1.50,"io.modelcontextprotocol/subscriptionId":"l\/1"}}}"#
        );
        let plain =
            Message::parse(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#))
                .unwrap();
        assert_eq!(notification_subscription_id(&plain), None);
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
    fn request_token_and_id_are_spliced_byte_exact() {
        let before = format!(
            r#"{{ "params" : {{"name":"x","arguments":{NASTY_ARGS},"_meta":{{"other":[1.0],"progressToken":"t\u00e9", "after":2}}}},"jsonrpc":"2.0","method":"tools/call", "id" : "abc"}}"#
        );
        let m = msg(&before);
        assert_eq!(request_progress_token(&m), Some(r#""t\u00e9""#));
        let out = forwarded_request(&m, "41", Some(r#""apiary-progress-41""#)).unwrap();
        let expected = before.replace(r#""t\u00e9""#, r#""apiary-progress-41""#).replace(r#""abc""#, "41");
        assert_eq!(text(&out), expected);

        // The way back restores the caller's exact id text.
        let answer = msg(r#"{"id":41,"jsonrpc":"2.0","result":{"v":1.50,"n":12345678901234567890123}}"#);
        assert_eq!(
            text(&answer.with_id(r#""abc""#)),
            r#"{"id":"abc","jsonrpc":"2.0","result":{"v":1.50,"n":12345678901234567890123}}"#
        );

        let only_token = with_request_progress_token(&m, "7").unwrap();
        assert_eq!(text(&only_token), before.replace(r#""t\u00e9""#, "7"));
    }

    #[test]
    fn ids_at_either_end_and_integer_ids() {
        for (before, after) in [
            (r#"{"id":12,"jsonrpc":"2.0","method":"m"}"#, r#"{"id":"x","jsonrpc":"2.0","method":"m"}"#),
            (r#"{"jsonrpc":"2.0","method":"m","id":-3}"#, r#"{"jsonrpc":"2.0","method":"m","id":"x"}"#),
            (r#"{"jsonrpc":"2.0","method":"m","id":"\/a"}"#, r#"{"jsonrpc":"2.0","method":"m","id":"x"}"#),
        ] {
            assert_eq!(text(&forwarded_request(&msg(before), r#""x""#, None).unwrap()), after);
        }
    }

    #[test]
    fn a_token_inside_arguments_is_not_the_requests() {
        let before = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{NASTY_ARGS}}}}}"#
        );
        let m = msg(&before);
        assert_eq!(request_progress_token(&m), None);
        assert_eq!(with_request_progress_token(&m, "1"), Err(SpliceError::Absent("params._meta.progressToken".into())));
        // Forwarding it changes the id alone.
        let out = forwarded_request(&m, "9", None).unwrap();
        assert_eq!(text(&out), before.replacen(r#""id":1"#, r#""id":9"#, 1));
        // A request without params has no token either.
        assert_eq!(request_progress_token(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)), None);
    }

    #[test]
    fn escaped_token_key_is_found() {
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progress\u0054oken":5}}}"#);
        assert_eq!(request_progress_token(&m), Some("5"));
    }

    #[test]
    fn progress_notification_token_is_restored_byte_exact() {
        let before = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{ "progress" : 1.50, "total":1e400, "progressToken":"apiary-progress-4" ,"message":"\u00e9 \/"}}"#;
        let n = msg(before);
        assert_eq!(notification_progress_token(&n), Some(r#""apiary-progress-4""#));
        let back = with_notification_progress_token(&n, "12345678901234567890123").unwrap();
        assert_eq!(text(&back), before.replace(r#""apiary-progress-4""#, "12345678901234567890123"));
        let back = with_notification_progress_token(&n, r#""t\u00e9""#).unwrap();
        assert_eq!(text(&back), before.replace(r#""apiary-progress-4""#, r#""t\u00e9""#));
        // Neither a string nor a number is not a token.
        let odd = msg(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":{"a":1}}}"#);
        assert_eq!(notification_progress_token(&odd), None);
    }

    #[test]
    fn cancellations_are_rewritten_byte_exact() {
        let before = r#"{"params":{"reason":"\u00e9\/ gone","requestId" : "abc","x":1.50},"jsonrpc":"2.0","method":"notifications/cancelled"}"#;
        let c = msg(before);
        assert_eq!(cancelled_request_id(&c), Some(RequestId::Str("abc".into())));
        let out = with_cancelled_request_id(&c, "17").unwrap();
        assert_eq!(text(&out), before.replace(r#""abc""#, "17"));
        assert_eq!(cancelled_request_id(&msg(text(&out))), Some(RequestId::Int(17)));
        let own = msg(text(&cancellation("5", "gone")));
        assert_eq!(cancelled_request_id(&own), Some(RequestId::Int(5)));
        let none = msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#);
        assert!(matches!(with_cancelled_request_id(&none, "1"), Err(SpliceError::Absent(_))));
    }

    /// JSON text as people write it: any number spelling, escapes, whitespace, nesting,
    /// and `_meta`/`progressToken` keys at any depth.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-z /]|\\\\[\"\\\\/nt]|\\\\u00e9|é)*\"",
            Just("true".to_owned()),
            Just("null".to_owned()),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            let key = prop_oneof!["\"[a-z]{0,3}\"", Just("\"_meta\"".to_owned()), Just("\"progressToken\"".to_owned())];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(" , "))),
                proptest::collection::vec((key, inner), 0..4).prop_map(|v| {
                    let members: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} :{v}")).collect();
                    format!("{{ {}}}", members.join(",\t"))
                }),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the arguments, forwarding changes only the id and the token, and
        /// restoring them gives back the caller's bytes.
        #[test]
        fn a_rewrite_is_undone_byte_for_byte(args in json_text(), token in "\"([a-z/]|\\\\[\"\\\\/n]|\\\\u00e9){0,6}\"|-?(0|[1-9][0-9]{0,24})") {
            let text = format!(
                r#"{{"params":{{"arguments":{args},"_meta":{{"progressToken":{token}}}}},"id":"c","jsonrpc":"2.0","method":"tools/call"}}"#
            );
            let m = msg(&text);
            proptest::prop_assert_eq!(request_progress_token(&m), Some(token.as_str()));
            let out = forward_text(&m, "7", "\"p-7\"");
            let expected = text.replacen(&format!(r#""progressToken":{token}}}}},"id":"c""#), r#""progressToken":"p-7"}},"id":7"#, 1);
            proptest::prop_assert_eq!(&out, &expected);
            let back = forward_text(&msg(&out), "\"c\"", &token);
            proptest::prop_assert_eq!(back, text);
        }
    }

    fn forward_text(m: &Message, id: &str, token: &str) -> String {
        String::from_utf8(forwarded_request(m, id, Some(token)).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn bad_replacements_are_refused() {
        let c = msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#);
        assert_eq!(with_cancelled_request_id(&c, "1,\"x\":2"), Err(SpliceError::InvalidValue));
        let r = msg(r#"{"jsonrpc":"2.0","id":1,"method":"x"}"#);
        assert_eq!(forwarded_request(&r, "", None), Err(SpliceError::InvalidValue));
        let n = msg(r#"{"jsonrpc":"2.0","method":"x"}"#);
        assert_eq!(forwarded_request(&n, "1", None), Err(SpliceError::Absent("id".into())));
    }
}
