//! The legacy-client → 2026-07-28-server direction of the era bridge, with no I/O: the
//! `initialize` answer made from a `server/discover` result, a legacy request made a modern
//! one (its `_meta` stamped by splice), an `InputRequiredResult` read, its retry built, and a
//! modern result made a legacy one. Every byte of a forwarded message that the era does not
//! require changing is kept (DESIGN.md: arguments forwarded byte for byte).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::envelope::{Kind, Message};
use crate::modern::{META_CAPABILITIES, META_CLIENT_INFO, META_SERVER_INFO, META_VERSION};
use crate::{SpliceError, splice};

/// `params._meta` key holding the log level a modern request asks notifications at.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The version stamped on every request the bridge sends a modern server.
pub const MODERN_VERSION: &str = "2026-07-28";

/// What a legacy session declared in its `initialize`, as the JSON texts stamped on each
/// of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// `capabilities` of the `initialize` (a JSON object).
    pub capabilities: &'a str,
    /// `clientInfo` of the `initialize`, if any.
    pub client_info: Option<&'a str>,
    /// The level set with `logging/setLevel` (a JSON string), if any.
    pub log_level: Option<&'a str>,
}

/// A legacy request made a 2026-07-28 one: `params._meta` gains the version, the client's
/// capabilities and info, and the log level (each replacing a member of that name), by
/// splice; `params` and `_meta` are added when absent. Every other byte is kept.
pub fn modern_request(frame: &Bytes, stamp: &Stamp<'_>) -> Result<Bytes, SpliceError> {
    let version = format!("\"{MODERN_VERSION}\"");
    let mut edits: Vec<(&str, &str)> = vec![(META_VERSION, &version), (META_CAPABILITIES, stamp.capabilities)];
    if let Some(info) = stamp.client_info {
        edits.push((META_CLIENT_INFO, info));
    }
    if let Some(level) = stamp.log_level {
        edits.push((META_LOG_LEVEL, level));
    }
    let mut out = frame.clone();
    for (key, value) in edits {
        let object = envelope_range(&out)?;
        out = splice::set_path(&out, object, &["params", "_meta", key], value)?;
    }
    Ok(out)
}

/// The byte range of a message's top-level object.
fn envelope_range(frame: &[u8]) -> Result<std::ops::Range<usize>, SpliceError> {
    let start = frame.iter().position(|b| *b == b'{').ok_or(SpliceError::InvalidValue)?;
    let end = frame.iter().rposition(|b| *b == b'}').ok_or(SpliceError::InvalidValue)? + 1;
    Ok(start..end)
}

/// One request of an `InputRequiredResult`: its key and the legacy request it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRequest {
    pub key: String,
    pub method: String,
    /// `params` as the server wrote them.
    pub params: Option<String>,
}

/// An `InputRequiredResult` (SEP-2322): the requests to put to the client, and the
/// `requestState` to echo (its JSON text, byte for byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRequired {
    pub requests: Vec<InputRequest>,
    pub request_state: Option<String>,
}

#[derive(Deserialize)]
struct InputHead<'a> {
    #[serde(rename = "resultType", default)]
    result_type: Option<String>,
    #[serde(borrow, rename = "inputRequests", default)]
    input_requests: Option<BTreeMap<String, RequestHead<'a>>>,
    #[serde(borrow, rename = "requestState", default)]
    request_state: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestHead<'a> {
    method: String,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// The `InputRequiredResult` a result (its JSON text) is, if it is one.
pub fn input_required(result: &str) -> Option<InputRequired> {
    let head: InputHead<'_> = serde_json::from_str(result).ok()?;
    if head.result_type.as_deref() != Some("input_required") {
        return None;
    }
    let requests = head
        .input_requests
        .unwrap_or_default()
        .into_iter()
        .map(|(key, r)| InputRequest { key, method: r.method, params: r.params.map(|p| p.get().to_owned()) })
        .collect();
    Some(InputRequired { requests, request_state: head.request_state.map(|s| s.get().to_owned()) })
}

/// The retry of a request (`stamped`, as first sent): the same method and params, plus
/// `inputResponses` (each key → the client's result, as it wrote it) and the
/// `requestState` echoed byte for byte. The id is the caller's to change.
pub fn retry_request(
    stamped: &Bytes,
    responses: &[(String, String)],
    state: Option<&str>,
) -> Result<Bytes, SpliceError> {
    let mut map = String::from("{");
    for (i, (key, result)) in responses.iter().enumerate() {
        if i > 0 {
            map.push(',');
        }
        map.push_str(&serde_json::to_string(key).map_err(|_| SpliceError::InvalidValue)?);
        map.push(':');
        map.push_str(result);
    }
    map.push('}');
    let object = envelope_range(stamped)?;
    let mut out = splice::set_path(stamped, object, &["params", "inputResponses"], &map)?;
    if let Some(state) = state {
        let object = envelope_range(&out)?;
        out = splice::set_path(&out, object, &["params", "requestState"], state)?;
    }
    Ok(out)
}

/// Members of a modern result that mean nothing in the legacy era.
const MODERN_ONLY_RESULT_MEMBERS: [&str; 3] = ["resultType", "ttlMs", "cacheScope"];

/// A modern server's response made a legacy one: `resultType`, `ttlMs` and `cacheScope`
/// leave the result, by splice. Errors, and anything unreadable, come back unchanged.
pub fn legacy_result(frame: Bytes) -> Bytes {
    let Ok(m) = Message::parse(frame.clone()) else { return frame };
    let Some(result) = m.payload_range().filter(|_| m.kind() == Kind::Response) else { return frame };
    if frame.get(result.start) != Some(&b'{') {
        return frame;
    }
    splice::remove_members(&frame, result, |k| MODERN_ONLY_RESULT_MEMBERS.contains(&k)).unwrap_or(frame)
}

/// The `initialize` result (JSON text) the bridge answers a legacy client with, from the
/// modern server's `server/discover` result: `version`, the server's info, instructions and
/// capabilities, less what the bridge does not carry to a legacy session: list-changed
/// notifications (only resource subscriptions are mapped onto a `subscriptions/listen`) and
/// the `extensions` (the 2026 tasks extension is not the 2025-11-25 tasks,
/// mcp-brief.md rule 41).
pub fn initialize_from_discover(discover: &[u8], version: &str) -> String {
    let d: Value = serde_json::from_slice(discover).unwrap_or(Value::Null);
    let mut capabilities =
        d.get("capabilities").filter(|c| c.is_object()).cloned().unwrap_or_else(|| Value::from(serde_json::Map::new()));
    if let Some(c) = capabilities.as_object_mut() {
        c.remove("extensions");
        for value in c.values_mut() {
            if let Some(inner) = value.as_object_mut() {
                inner.remove("listChanged");
            }
        }
    }
    let server_info = d
        .pointer(&format!("/_meta/{}", META_SERVER_INFO.replace('~', "~0").replace('/', "~1")))
        .filter(|i| i.is_object())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"name": "unknown", "version": "0"}));
    let mut out = serde_json::json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info,
    });
    if let (Some(i), Some(o)) = (d.get("instructions").filter(|i| i.is_string()), out.as_object_mut()) {
        o.insert("instructions".into(), i.clone());
    }
    out.to_string()
}

/// A header value for `text` as a 2026-07-28 client sends it (`Mcp-Name`, `Mcp-Param-*`):
/// as is when it is visible ASCII with no surrounding whitespace, else in the
/// `=?base64?…?=` form (SEP-2243), which also keeps a literal that looks like that form.
pub fn header_value(text: &str) -> String {
    let visible = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = text.starts_with(' ') || text.ends_with(' ');
    let like_base64 = text.starts_with("=?base64?") && text.ends_with("?=");
    let plain = visible && !padded && !like_base64;
    if plain {
        return text.to_owned();
    }
    use base64::Engine as _;
    format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
}

/// The value of the `Mcp-Param-*` header that mirrors `param` of a `tools/call` (`m`): a
/// string argument encoded by [`header_value`], a number or boolean as it is spelled;
/// `None` for an absent or `null` argument, or one no header can mirror (an object, an array).
pub fn param_header_value(m: &Message, param: &crate::modern::ParamHeader) -> Option<String> {
    let range = m.params_member(&param.params_path()).ok().flatten()?;
    let raw = m.text(range)?;
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(raw).ok().map(|s| header_value(&s)),
        b'{' | b'[' | b'n' => None,
        _ => Some(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const STAMP: Stamp<'static> = Stamp {
        capabilities: r#"{"sampling":{}}"#,
        client_info: Some(r#"{"name":"c","version":"1"}"#),
        log_level: None,
    };

    /// The arguments keep their bytes (key order, `1.50`, a 23-digit integer), as do other
    /// `_meta` members; the era's members are added.
    #[test]
    fn a_stamp_keeps_every_other_byte() {
        let frame = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","arguments":{"z":1.50,"a":12345678901234567890123},"_meta":{"progressToken":"p"}}}"#,
        );
        let out = modern_request(&frame, &STAMP).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","arguments":{"z":1.50,"a":12345678901234567890123},"_meta":{"progressToken":"p","#), "{text}");
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["params"]["_meta"][META_VERSION], "2026-07-28");
        assert_eq!(v["params"]["_meta"][META_CAPABILITIES], serde_json::json!({"sampling":{}}));
        assert_eq!(v["params"]["_meta"][META_CLIENT_INFO]["name"], "c");
        assert!(crate::modern::check_meta(Message::parse(out).unwrap().params_raw()).is_ok());
    }

    #[test]
    fn a_request_without_params_gets_them() {
        let frame = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let stamp = Stamp { log_level: Some("\"debug\""), ..STAMP };
        let out = modern_request(&frame, &stamp).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["params"]["_meta"][META_LOG_LEVEL], "debug");
        assert_eq!(v["method"], "tools/list");
    }

    #[test]
    fn an_input_required_result_is_read_and_its_retry_built() {
        let result = r#"{"resultType":"input_required","inputRequests":{"q":{"method":"sampling/createMessage","params":{"maxTokens":1.50}}},"requestState":"s\u0041"}"#;
        let ir = input_required(result).unwrap();
        assert_eq!(
            ir.requests,
            vec![InputRequest {
                key: "q".into(),
                method: "sampling/createMessage".into(),
                params: Some(r#"{"maxTokens":1.50}"#.into())
            }]
        );
        assert_eq!(ir.request_state.as_deref(), Some(r#""s\u0041""#));
        assert!(input_required(r#"{"resultType":"complete","content":[]}"#).is_none());
        assert!(input_required(r#"{"content":[]}"#).is_none());

        let stamped = Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t"}}"#);
        let retry =
            retry_request(&stamped, &[("q".into(), r#"{"x":1.0}"#.into())], ir.request_state.as_deref()).unwrap();
        assert_eq!(
            std::str::from_utf8(&retry).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","inputResponses":{"q":{"x":1.0}},"requestState":"s\u0041"}}"#
        );
    }

    /// A header made here passes the check a 2026-07-28 server (and the proxy) applies.
    #[test]
    fn param_headers_are_mirrored_as_the_check_reads_them() {
        let frame = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":"eu-west","b":"caf\u00e9 ","c":12345678901234567890123,"d":true,"e":null,"f":{"x":1}}}}"#,
        );
        let m = Message::parse(frame).unwrap();
        let p = |member: &str| crate::modern::ParamHeader::top(member, "X");
        assert_eq!(param_header_value(&m, &p("a")).as_deref(), Some("eu-west"));
        let b = param_header_value(&m, &p("b")).unwrap();
        assert!(b.starts_with("=?base64?"), "{b}");
        assert_eq!(param_header_value(&m, &p("c")).as_deref(), Some("12345678901234567890123"));
        assert_eq!(param_header_value(&m, &p("d")).as_deref(), Some("true"));
        for member in ["e", "f", "missing"] {
            assert_eq!(param_header_value(&m, &p(member)), None, "{member}");
        }
        for member in ["a", "b", "c", "d", "e", "missing"] {
            let value = param_header_value(&m, &p(member));
            crate::modern::check_param_header(&m, &p(member), value.as_deref().map(str::as_bytes)).unwrap();
        }
        assert_eq!(header_value("=?base64?x?="), "=?base64?PT9iYXNlNjQ/eD89?=");
    }

    #[test]
    fn a_modern_result_loses_the_modern_members_only() {
        let frame = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","tools":[],"ttlMs":0,"cacheScope":"private","n":1.50}}"#);
        assert_eq!(&legacy_result(frame)[..], br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"n":1.50}}"#);
        let err = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#);
        assert_eq!(legacy_result(err.clone()), err);
    }

    #[test]
    fn initialize_is_made_from_discover() {
        let d = r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true},"extensions":{"io.modelcontextprotocol/tasks":{}}},"instructions":"hi","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s","version":"2"}}}"#;
        let v: Value = serde_json::from_str(&initialize_from_discover(d.as_bytes(), "2025-03-26")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"protocolVersion":"2025-03-26","capabilities":{"tools":{},"resources":{"subscribe":true}},
                "serverInfo":{"name":"s","version":"2"},"instructions":"hi"})
        );
    }
}
