//! The JSON-RPC envelope, parsed once and never re-serialised.
//!
//! A [`Message`] keeps the exact bytes it came in and the byte ranges of the members
//! routing needs (`id`, `params`, `result`/`error`). Everything else stays raw, so unknown
//! fields, methods and future revisions pass through untouched, and rewriting an id is a
//! splice of three byte ranges rather than a round trip through a typed model.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ParseError, ParseErrorKind};

/// Nesting deeper than this is refused (serde_json's own recursion limit).
pub const MAX_DEPTH: usize = 128;

/// What a message is, from its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: expects an answer.
    Request,
    /// `method` without `id`.
    Notification,
    /// `id` and `result`.
    Response,
    /// `error`, with an `id` (or a null one when the peer could not read ours).
    Error,
}

/// A JSON-RPC id in the form used as a map key: strings and integers only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestId {
    Int(i64),
    Str(Box<str>),
}

impl RequestId {
    /// The id as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            RequestId::Int(n) => n.to_string(),
            RequestId::Str(s) => serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()),
        }
    }

    /// Reads an id from its JSON text; `None` for anything but a string or an integer.
    pub fn from_json(raw: &str) -> Option<RequestId> {
        let raw = raw.trim();
        if raw.starts_with('"') {
            return serde_json::from_str::<String>(raw).ok().map(|s| RequestId::Str(s.into()));
        }
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse::<i64>().ok().map(RequestId::Int)
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// One parsed JSON-RPC message: its original bytes plus the ranges of its members.
#[derive(Debug, Clone)]
pub struct Message {
    bytes: Bytes,
    kind: Kind,
    id: Option<Range<usize>>,
    /// The id as a map key, read once at parse time (`None` with `id`, or for a null id).
    key: Option<RequestId>,
    method: Option<Method>,
    params: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

/// A message's method name: one of the methods every session sends without a copy of its
/// own, any other one copied out of the message.
#[derive(Debug, Clone)]
enum Method {
    Known(&'static str),
    Other(Box<str>),
}

impl Method {
    fn new(name: &str) -> Method {
        use crate::methods::*;
        match name {
            TOOLS_CALL => Method::Known(TOOLS_CALL),
            TOOLS_LIST => Method::Known(TOOLS_LIST),
            PROGRESS => Method::Known(PROGRESS),
            MESSAGE => Method::Known(MESSAGE),
            PING => Method::Known(PING),
            INITIALIZE => Method::Known(INITIALIZE),
            INITIALIZED => Method::Known(INITIALIZED),
            CANCELLED => Method::Known(CANCELLED),
            RESOURCES_READ => Method::Known(RESOURCES_READ),
            RESOURCES_LIST => Method::Known(RESOURCES_LIST),
            PROMPTS_GET => Method::Known(PROMPTS_GET),
            PROMPTS_LIST => Method::Known(PROMPTS_LIST),
            other => Method::Other(other.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Method::Known(m) => m,
            Method::Other(m) => m,
        }
    }
}

/// A POST body or a stdio line: one message, or a batch (a JSON array).
#[derive(Debug)]
pub enum Body {
    Single(Message),
    /// Each member parsed alone; a bad member does not spoil the others.
    Batch(Vec<Result<Message, ParseError>>),
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps a member that is present, even when it is `null` (plain `Option` would fold
/// `null` into absent, and a null id must be told apart from a missing one).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// Byte range of `part` inside `whole`; `part` must be a sub-slice of `whole`.
fn span_of(whole: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

impl Message {
    /// Parses one message (not a batch). The bytes are kept as they came.
    pub fn parse(bytes: Bytes) -> Result<Message, ParseError> {
        check_text(&bytes)?;
        Self::parse_checked(bytes)
    }

    /// Parses a message whose bytes already passed [`check_text`].
    fn parse_checked(bytes: Bytes) -> Result<Message, ParseError> {
        let env: RawEnvelope<'_> = serde_json::from_slice(&bytes).map_err(|e| ParseError::from_serde(&bytes, &e))?;
        let whole: &[u8] = &bytes;

        // The id is echoed in errors only when it is a string or an integer.
        let id_text = env.id.map(RawValue::get);
        let key = id_text.and_then(RequestId::from_json);
        let invalid = |msg: &str| {
            let echo_id = id_text.filter(|_| key.is_some()).map(str::to_owned);
            ParseError::invalid_request(msg, echo_id)
        };

        match env.jsonrpc.map(RawValue::get) {
            Some("\"2.0\"") => {}
            Some(other) if serde_json::from_str::<String>(other).ok().as_deref() == Some("2.0") => {}
            Some(_) => return Err(invalid("jsonrpc must be \"2.0\"")),
            None => return Err(invalid("jsonrpc member missing")),
        }
        let id_ok = id_text.is_none() || key.is_some();
        let null_id = id_text == Some("null");

        let kind = match (env.method, env.result, env.error) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(invalid("a message cannot carry both method and result/error"));
            }
            (None, Some(_), Some(_)) => {
                return Err(invalid("a response cannot carry both result and error"));
            }
            (Some(_), None, None) => {
                if !id_ok {
                    return Err(invalid("id must be a string or an integer"));
                }
                if id_text.is_some() { Kind::Request } else { Kind::Notification }
            }
            (None, Some(_), None) => {
                if id_text.is_none() || !id_ok {
                    return Err(invalid("a response needs a string or integer id"));
                }
                Kind::Response
            }
            (None, None, Some(_)) => {
                if !(id_ok || null_id) {
                    return Err(invalid("id must be a string or an integer"));
                }
                Kind::Error
            }
            (None, None, None) => return Err(invalid("method member missing")),
        };

        let method = match env.method.map(RawValue::get) {
            // A string without escapes is its own text between the quotes (the parser
            // already refused control characters in it): no decoding.
            Some(raw) if raw.len() >= 2 && raw.starts_with('"') && !raw.contains('\\') => {
                Some(Method::new(&raw[1..raw.len() - 1]))
            }
            Some(raw) => match serde_json::from_str::<String>(raw) {
                Ok(m) => Some(Method::new(&m)),
                Err(_) => return Err(invalid("method must be a string")),
            },
            None => None,
        };
        let id = env.id.filter(|_| !null_id).map(|r| span_of(whole, r.get()));
        let params = env.params.map(|r| span_of(whole, r.get()));
        let payload = env.result.or(env.error).map(|r| span_of(whole, r.get()));
        Ok(Message { kind, id, key, method, params, payload, bytes })
    }

    /// Builds a message from bytes Apiary produced itself (trusted to be well formed).
    pub fn from_own(bytes: Bytes) -> Message {
        match Message::parse(bytes.clone()) {
            Ok(m) => m,
            // Our own serialiser never produces this; keep the bytes and call it a notification.
            Err(_) => Message {
                kind: Kind::Notification,
                id: None,
                key: None,
                method: None,
                params: None,
                payload: None,
                bytes,
            },
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    pub fn is_notification(&self) -> bool {
        self.kind == Kind::Notification
    }

    /// A response or an error.
    pub fn is_response(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::Error)
    }

    /// The exact bytes of the message.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    fn slice(&self, r: &Option<Range<usize>>) -> Option<&str> {
        // The ranges were cut from text that passed UTF-8 validation at parse time.
        r.as_ref().and_then(|r| self.bytes.get(r.clone())).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The id exactly as it was written (`7`, `"abc"`), if any.
    pub fn id_raw(&self) -> Option<&str> {
        self.slice(&self.id)
    }

    /// The id as a map key.
    pub fn id(&self) -> Option<RequestId> {
        self.key.clone()
    }

    pub fn method(&self) -> Option<&str> {
        self.method.as_ref().map(Method::as_str)
    }

    /// The raw `params` text, if present.
    pub fn params_raw(&self) -> Option<&str> {
        self.slice(&self.params)
    }

    /// The raw `result` or `error` text of a response.
    pub fn payload_raw(&self) -> Option<&str> {
        self.slice(&self.payload)
    }

    /// The byte range of the id within [`Message::bytes`], if there is one.
    pub fn id_range(&self) -> Option<Range<usize>> {
        self.id.clone()
    }

    /// The byte range of `params` within [`Message::bytes`], if present.
    pub fn params_range(&self) -> Option<Range<usize>> {
        self.params.clone()
    }

    /// The byte range of `result` or `error` within [`Message::bytes`], if present.
    pub fn payload_range(&self) -> Option<Range<usize>> {
        self.payload.clone()
    }

    /// The text of a range of the message (one from [`crate::splice`] or the accessors).
    pub fn text(&self, range: Range<usize>) -> Option<&str> {
        self.slice(&Some(range))
    }

    /// The byte range of the value at `path` inside `params` (`["_meta", "progressToken"]`);
    /// `None` when params or a member on the way is absent.
    pub fn params_member(&self, path: &[&str]) -> Result<Option<Range<usize>>, crate::splice::SpliceError> {
        match &self.params {
            Some(r) if self.bytes.get(r.start) == Some(&b'{') => crate::splice::find_path(&self.bytes, r.clone(), path),
            _ => Ok(None),
        }
    }

    /// The string `params.<member>` holds (escapes decoded), read from the bytes alone: no
    /// other member is decoded, so a number a `serde_json::Value` cannot hold elsewhere in
    /// params does not hide it. `None` when absent or not a string.
    pub fn params_string(&self, member: &str) -> Option<String> {
        let range = self.params_member(&[member]).ok()??;
        serde_json::from_str(self.text(range)?).ok()
    }

    /// Decodes `params` into `T`; `None` when absent or of another shape.
    pub fn params_as<'a, T: Deserialize<'a>>(&'a self) -> Option<T> {
        self.params_raw().and_then(|p| serde_json::from_str(p).ok())
    }

    /// A copy of the message with its id replaced by `new_id` (JSON text). Only the id's
    /// bytes change; a message without an id is returned unchanged.
    pub fn with_id(&self, new_id: &str) -> Bytes {
        match &self.id {
            Some(r) => splice(&self.bytes, r.clone(), new_id.as_bytes()),
            None => self.bytes.clone(),
        }
    }

    /// A copy with `params` replaced by `new_params` (JSON text). Adds nothing when the
    /// message had no params.
    pub fn with_params(&self, new_params: &str) -> Bytes {
        match &self.params {
            Some(r) => splice(&self.bytes, r.clone(), new_params.as_bytes()),
            None => self.bytes.clone(),
        }
    }
}

/// `whole` with `range` (one the parser cut from it) replaced by `with`.
fn splice(whole: &Bytes, range: Range<usize>, with: &[u8]) -> Bytes {
    // The range came from parsing these very bytes, so it is in bounds; keep the message
    // as it is rather than panic if that ever stops being true.
    crate::splice::splice(whole, &[(range, with)]).unwrap_or_else(|_| whole.clone())
}

/// Checks what serde_json lets through but JSON-RPC over MCP must not carry: bytes that
/// are not UTF-8, nesting deeper than [`MAX_DEPTH`] (serde_json skips raw members without
/// a depth limit), and `\uD800`-style escapes that leave a surrogate unpaired.
pub fn check_text(bytes: &[u8]) -> Result<(), ParseError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ParseError::new(
            ParseErrorKind::Parse { offset: e.valid_up_to() },
            format!("Parse error: invalid UTF-8 at byte {}", e.valid_up_to()),
        ));
    }
    scan_structure(bytes)
}

/// One pass over the text, aware of strings: depth outside them, escapes inside them.
fn scan_structure(bytes: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::new(
                        ParseErrorKind::TooDeep,
                        format!("Parse error: nesting deeper than {MAX_DEPTH}"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => i = scan_string(bytes, i + 1)?,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Scans a string body starting at `i` (just after the opening quote); returns the index
/// of the closing quote (or the end). Refuses unpaired surrogate escapes.
fn scan_string(bytes: &[u8], mut i: usize) -> Result<usize, ParseError> {
    let hex4 = |at: usize| -> Option<u16> {
        let s = bytes.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
    };
    let lone = |at: usize| {
        ParseError::new(
            ParseErrorKind::Parse { offset: at },
            format!("Parse error: unpaired surrogate escape at byte {at}"),
        )
    };
    while i < bytes.len() {
        // Most of a message is string text: jump to the next quote or backslash.
        match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
            Some(skip) => i += skip,
            None => return Ok(bytes.len()),
        }
        match bytes[i] {
            b'"' => return Ok(i),
            b'\\' if bytes.get(i + 1) == Some(&b'u') => match hex4(i + 2) {
                Some(unit) if (0xD800..0xDC00).contains(&unit) => {
                    let low = bytes.get(i + 6) == Some(&b'\\')
                        && bytes.get(i + 7) == Some(&b'u')
                        && hex4(i + 8).is_some_and(|u| (0xDC00..0xE000).contains(&u));
                    if !low {
                        return Err(lone(i));
                    }
                    i += 12;
                }
                Some(unit) if (0xDC00..0xE000).contains(&unit) => return Err(lone(i)),
                _ => i += 2,
            },
            // Skip the escaped character, so `\\"` does not end the string.
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// Parses a body that may be a batch. An empty batch is returned as such; what it means
/// depends on the revision, which the caller knows.
pub fn parse_body(bytes: Bytes) -> Result<Body, ParseError> {
    check_text(&bytes)?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Message::parse_checked(bytes).map(Body::Single);
    }
    let members: Vec<&RawValue> = serde_json::from_slice(&bytes).map_err(|e| ParseError::from_serde(&bytes, &e))?;
    let whole: &[u8] = &bytes;
    let spans: Vec<Range<usize>> = members.iter().map(|m| span_of(whole, m.get())).collect();
    Ok(Body::Batch(spans.into_iter().map(|r| Message::parse_checked(bytes.slice(r))).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A member is read past numbers a `Value` cannot hold (`params_as::<Value>` failed on
    /// the whole params, so a subscription's `uri` or a log `level` went unseen).
    #[test]
    fn one_string_member_is_read_from_the_bytes() {
        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"x":1e400,"uri":"te\u0073t://a","n":{"uri":"no"}}}"#).unwrap();
        assert_eq!(m.params_string("uri").as_deref(), Some("test://a"));
        assert_eq!(m.params_string("x"), None, "not a string");
        assert_eq!(m.params_string("absent"), None);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","method":"m"}"#).unwrap().params_string("uri"), None);
    }

    #[test]
    fn request_members_are_found() {
        let m = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#).unwrap();
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.id_raw(), Some("7"));
        assert_eq!(m.id(), Some(RequestId::Int(7)));
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.params_raw(), Some(r#"{"name":"echo"}"#));
    }

    #[test]
    fn id_is_spliced_without_touching_other_bytes() {
        let text = r#"{ "jsonrpc" : "2.0", "id" : "a\"b", "method":"x", "extra": [1,2] }"#;
        let m = parse(text).unwrap();
        assert_eq!(m.id(), Some(RequestId::Str("a\"b".into())));
        let out = m.with_id("42");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{ "jsonrpc" : "2.0", "id" : 42, "method":"x", "extra": [1,2] }"#
        );
        let back = Message::parse(out).unwrap();
        assert_eq!(back.with_id(m.id_raw().unwrap()), Bytes::copy_from_slice(text.as_bytes()));
    }

    #[test]
    fn methods_and_ids_are_read_once_whatever_their_spelling() {
        let m = parse(r#"{"jsonrpc":"2.0","id":"k\u0031","method":"tools\/call"}"#).unwrap();
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.id(), Some(RequestId::Str("k1".into())));
        assert_eq!(m.id_raw(), Some(r#""k\u0031""#));
        let m = parse(r#"{"jsonrpc":"2.0","id":-3,"method":"x/\u00e9t\u00e9"}"#).unwrap();
        assert_eq!(m.method(), Some("x/été"));
        assert_eq!(m.id(), Some(RequestId::Int(-3)));
        let m = parse(r#"{"jsonrpc":"2.0","method":"ping"}"#).unwrap();
        assert_eq!((m.method(), m.id()), (Some("ping"), None));
        // A control character in a method is no method.
        assert!(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\u{1}b\"}").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(parse(r#"{"jsonrpc":"2.0","method":"n"}"#).unwrap().kind(), Kind::Notification);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap().kind(), Kind::Response);
        let e = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#).unwrap();
        assert_eq!(e.kind(), Kind::Error);
        assert_eq!(e.id(), None);
    }

    #[test]
    fn invalid_requests_are_told_apart_from_parse_errors() {
        for bad in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            "42",
            "\"str\"",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code(), crate::codes::INVALID_REQUEST, "{bad}: {e}");
        }
        for bad in ["", "{\"jsonrpc\":", "{} {}", "{/*c*/}", "NaN", "{'a':1}"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code(), crate::codes::PARSE_ERROR, "{bad}: {e}");
        }
    }

    #[test]
    fn echoed_id_only_when_readable() {
        let e = parse(r#"{"jsonrpc":"1.0","id":"q","method":"x"}"#).unwrap_err();
        assert_eq!(e.id_raw(), Some("\"q\""));
        let e = parse(r#"{"jsonrpc":"1.0","id":{},"method":"x"}"#).unwrap_err();
        assert_eq!(e.id_raw(), None);
    }

    #[test]
    fn bad_text_is_a_parse_error_with_offset() {
        let e = Message::parse(Bytes::from_static(b"{\"a\":\"\xff\"}")).unwrap_err();
        assert_eq!(e.kind(), &ParseErrorKind::Parse { offset: 6 });
        let e = parse(r#"{"jsonrpc":"2.0","method":"\uD800"}"#).unwrap_err();
        assert_eq!(e.code(), crate::codes::PARSE_ERROR);
        let e = parse(r#"{"jsonrpc":"2.0","method":"\uDC00x"}"#).unwrap_err();
        assert_eq!(e.code(), crate::codes::PARSE_ERROR);
        // A proper pair and an escaped backslash before `u` are fine.
        assert!(parse(r#"{"jsonrpc":"2.0","method":"\uD83D\uDE00"}"#).is_ok());
        assert!(parse(r#"{"jsonrpc":"2.0","method":"\\uD800"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = "[".repeat(100_000);
        let e = Message::parse(Bytes::from(deep.clone())).unwrap_err();
        assert_eq!(e.kind(), &ParseErrorKind::TooDeep);
        let e = parse_body(Bytes::from(deep)).unwrap_err();
        assert_eq!(e.kind(), &ParseErrorKind::TooDeep);
        let deep_obj = format!(r#"{{"jsonrpc":"2.0","method":"x","params":{}}}"#, "{\"a\":".repeat(200_000));
        assert_eq!(parse(&deep_obj).unwrap_err().kind(), &ParseErrorKind::TooDeep);
    }

    #[test]
    fn batches_parse_member_by_member() {
        let body = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, {"bad":1}, {"jsonrpc":"2.0","method":"n"}]"#,
        );
        let Body::Batch(members) = parse_body(body).unwrap() else { panic!("not a batch") };
        assert_eq!(members.len(), 3);
        assert_eq!(members[0].as_ref().unwrap().method(), Some("a"));
        assert!(members[1].is_err());
        assert!(members[2].as_ref().unwrap().is_notification());
        let Body::Batch(empty) = parse_body(Bytes::from_static(b" [] ")).unwrap() else { panic!() };
        assert!(empty.is_empty());
    }
}
