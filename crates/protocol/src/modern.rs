//! What the 2026-07-28 era ("modern") asks of a request, with no I/O: where its version and
//! capabilities live in `_meta`, which methods it removed, which header mirrors which body
//! member, and how an HTTP mirror header's value is decoded (the `=?base64?…?=` form).

use base64::Engine as _;
use serde_json::Value;

use crate::envelope::{Kind, Message};
use crate::{SpliceError, methods, splice};

/// `params._meta` key holding the request's protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `params._meta` key holding the request's client capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `params._meta` key holding the client's self-description (optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// Result `_meta` key naming the server that produced it.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The HTTP header that mirrors the method.
pub const METHOD_HEADER: &str = "Mcp-Method";
/// The HTTP header that mirrors the name, URI or task id a request acts on.
pub const NAME_HEADER: &str = "Mcp-Name";
/// The HTTP header that carries the protocol version.
pub const VERSION_HEADER: &str = "MCP-Protocol-Version";

/// Methods of the legacy era that 2026-07-28 removed: a modern caller gets 404 -32601.
pub const REMOVED_METHODS: [&str; 5] =
    [methods::INITIALIZE, methods::PING, methods::SET_LEVEL, methods::SUBSCRIBE, methods::UNSUBSCRIBE];

pub fn is_removed(method: &str) -> bool {
    REMOVED_METHODS.contains(&method)
}

/// Methods whose results carry the cache hints `ttlMs` and `cacheScope`.
pub fn is_cacheable(method: &str) -> bool {
    matches!(
        method,
        methods::SERVER_DISCOVER
            | methods::TOOLS_LIST
            | methods::PROMPTS_LIST
            | methods::RESOURCES_LIST
            | "resources/templates/list"
            | methods::RESOURCES_READ
    )
}

/// A response frame from a legacy upstream made a modern one: its result gains
/// `resultType: "complete"` and, for a cacheable method, `ttlMs: 0` and
/// `cacheScope: "private"` (nothing is known about how long it holds or for whom), each
/// only when absent. Every other byte is kept; error frames come back unchanged.
pub fn complete_result(frame: bytes::Bytes, method: &str) -> Result<bytes::Bytes, SpliceError> {
    let Ok(m) = Message::parse(frame.clone()) else { return Ok(frame) };
    if m.kind() != Kind::Response {
        return Ok(frame);
    }
    let Some(result) = m.payload_range() else { return Ok(frame) };
    if splice::find_member(&frame, result.clone(), "resultType").is_err() {
        return Ok(frame); // not an object: nothing to stamp
    }
    let mut out = frame;
    let mut adds: Vec<(&str, &str)> = vec![("resultType", "\"complete\"")];
    if is_cacheable(method) {
        adds.push(("ttlMs", "0"));
        adds.push(("cacheScope", "\"private\""));
    }
    for (key, value) in adds {
        let m = Message::parse(out.clone()).map_err(|_| SpliceError::InvalidValue)?;
        let Some(result) = m.payload_range() else { break };
        if splice::find_member(&out, result.clone(), key)?.is_none() {
            out = splice::set_path(&out, result, &[key], value)?;
        }
    }
    Ok(out)
}

/// A modern request made a legacy one for a child Apiary initialized itself: the
/// `io.modelcontextprotocol/*` keys leave `params._meta` (a legacy server may refuse a
/// request that declares a version it does not speak). Only `_meta`'s bytes change;
/// its other keys (a `progressToken`) stay.
pub fn legacy_request(frame: &bytes::Bytes) -> Result<bytes::Bytes, SpliceError> {
    let m = Message::parse(frame.clone()).map_err(|_| SpliceError::InvalidValue)?;
    let Some(params) = m.params_range() else { return Ok(frame.clone()) };
    let Some(at) = splice::find_member(frame, params.clone(), "_meta")? else { return Ok(frame.clone()) };
    let meta: serde_json::Map<String, Value> =
        serde_json::from_slice(&frame[at.clone()]).map_err(|_| SpliceError::InvalidValue)?;
    let kept: serde_json::Map<String, Value> =
        meta.into_iter().filter(|(k, _)| !k.starts_with("io.modelcontextprotocol/")).collect();
    let kept = serde_json::to_string(&kept).map_err(|_| SpliceError::InvalidValue)?;
    splice::splice(frame, &[(at, kept.as_bytes())])
}

/// The `params` member that `Mcp-Name` mirrors for `method`, if the method has one.
pub fn name_member(method: &str) -> Option<&'static str> {
    match method {
        methods::TOOLS_CALL | methods::PROMPTS_GET => Some("name"),
        methods::RESOURCES_READ => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The protocol version a request's `_meta` declares (any string), if it declares one.
pub fn meta_version(params: &Value) -> Option<&str> {
    params.get("_meta")?.get(META_VERSION)?.as_str()
}

/// Why a request's `_meta` is not what 2026-07-28 requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("params._meta is required in 2026-07-28")]
    Missing,
    #[error("params._meta lacks {0}")]
    Lacks(&'static str),
    #[error("params._meta.{0} has the wrong type")]
    WrongType(&'static str),
}

/// Checks the `_meta` keys every modern request carries: a version string and a
/// capabilities object (`clientInfo` is only a SHOULD).
pub fn check_meta(params: &Value) -> Result<(), MetaError> {
    let meta = params.get("_meta").and_then(Value::as_object).ok_or(MetaError::Missing)?;
    match meta.get(META_VERSION) {
        None => return Err(MetaError::Lacks(META_VERSION)),
        Some(v) if !v.is_string() => return Err(MetaError::WrongType(META_VERSION)),
        Some(_) => {}
    }
    match meta.get(META_CAPABILITIES) {
        None => Err(MetaError::Lacks(META_CAPABILITIES)),
        Some(v) if !v.is_object() => Err(MetaError::WrongType(META_CAPABILITIES)),
        Some(_) => Ok(()),
    }
}

/// Why a mirror header's raw value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    #[error("holds non-ASCII or control bytes")]
    NotVisibleAscii,
    #[error("is not valid base64")]
    BadBase64,
    #[error("decodes to bytes that are not UTF-8")]
    NotUtf8,
}

const BASE64_OPEN: &str = "=?base64?";
const BASE64_CLOSE: &str = "?=";

/// The value a mirror header carries: surrounding whitespace trimmed, and the
/// `=?base64?…?=` form (lowercase sentinel only) decoded strictly (canonical padding). A
/// value that opens like the sentinel but does not close is a literal.
pub fn decode_header_value(raw: &[u8]) -> Result<String, HeaderValueError> {
    if raw.iter().any(|b| !(0x20..0x7f).contains(b) && *b != b'\t') {
        return Err(HeaderValueError::NotVisibleAscii);
    }
    let text = std::str::from_utf8(raw).map_err(|_| HeaderValueError::NotVisibleAscii)?;
    let text = text.trim_matches([' ', '\t']);
    if text.contains('\t') {
        return Err(HeaderValueError::NotVisibleAscii);
    }
    let Some(inner) = text.strip_prefix(BASE64_OPEN).and_then(|t| t.strip_suffix(BASE64_CLOSE)) else {
        return Ok(text.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(inner).map_err(|_| HeaderValueError::BadBase64)?;
    String::from_utf8(bytes).map_err(|_| HeaderValueError::NotUtf8)
}

/// The params of the `server/discover` Apiary sends a child it starts, to learn its era:
/// the modern revision, no client capabilities, and `client` as the client's name.
pub fn probe_params(client_name: &str, client_version: &str) -> String {
    serde_json::json!({
        "_meta": {
            META_VERSION: crate::Revision::modern_names().first().copied().unwrap_or("2026-07-28"),
            META_CAPABILITIES: {},
            META_CLIENT_INFO: { "name": client_name, "version": client_version },
        }
    })
    .to_string()
}

/// Whether a `server/discover` result (its JSON text) lists a revision of the modern era
/// among its `supportedVersions`.
pub fn offers_modern(result: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(result) else { return false };
    v.get("supportedVersions").and_then(Value::as_array).is_some_and(|versions| {
        versions
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| s.parse::<crate::Revision>().ok())
            .any(|r| r.era() == crate::Era::Modern)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn header_values_decode_strictly() {
        assert_eq!(decode_header_value(b"  echo  ").unwrap(), "echo");
        assert_eq!(decode_header_value(b"=?base64?ZWNobw==?=").unwrap(), "echo");
        assert_eq!(decode_header_value(b"=?base64?ZWNobw==").unwrap(), "=?base64?ZWNobw==");
        assert_eq!(decode_header_value(b"=?BASE64?ZWNobw==?=").unwrap(), "=?BASE64?ZWNobw==?=");
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8?="), Err(HeaderValueError::BadBase64));
        assert_eq!(decode_header_value(b"=?base64?//79?="), Err(HeaderValueError::NotUtf8));
        assert_eq!(decode_header_value("echö".as_bytes()), Err(HeaderValueError::NotVisibleAscii));
        assert_eq!(decode_header_value(b"ec\tho"), Err(HeaderValueError::NotVisibleAscii));
        assert_eq!(decode_header_value(b"ec\x01ho"), Err(HeaderValueError::NotVisibleAscii));
    }

    #[test]
    fn meta_needs_version_and_capabilities() {
        let ok = json!({"_meta": {META_VERSION: "2026-07-28", META_CAPABILITIES: {}}});
        assert_eq!(check_meta(&ok), Ok(()));
        assert_eq!(meta_version(&ok), Some("2026-07-28"));
        assert_eq!(check_meta(&json!({})), Err(MetaError::Missing));
        assert_eq!(check_meta(&json!({"_meta": {META_CAPABILITIES: {}}})), Err(MetaError::Lacks(META_VERSION)));
        assert_eq!(check_meta(&json!({"_meta": {META_VERSION: "x"}})), Err(MetaError::Lacks(META_CAPABILITIES)));
        assert_eq!(
            check_meta(&json!({"_meta": {META_VERSION: 1, META_CAPABILITIES: {}}})),
            Err(MetaError::WrongType(META_VERSION))
        );
    }

    #[test]
    fn legacy_results_are_completed() {
        let list = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
        let out = complete_result(list, "tools/list").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"], json!({"tools":[],"resultType":"complete","ttlMs":0,"cacheScope":"private"}));
        let call = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#);
        assert_eq!(complete_result(call.clone(), "tools/call").unwrap(), call);
        let err = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#);
        assert_eq!(complete_result(err.clone(), "tools/call").unwrap(), err);
    }

    #[test]
    fn legacy_requests_lose_the_modern_meta_keys() {
        let req = bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        );
        let out = legacy_request(&req).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","_meta":{"progressToken":7}}}"#
        );
        let plain = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(legacy_request(&plain).unwrap(), plain);
    }

    #[test]
    fn removed_methods_and_name_members() {
        assert!(is_removed("initialize") && is_removed("logging/setLevel") && !is_removed("tools/list"));
        assert_eq!(name_member("tools/call"), Some("name"));
        assert_eq!(name_member("resources/read"), Some("uri"));
        assert_eq!(name_member("tasks/cancel"), Some("taskId"));
        assert_eq!(name_member("tools/list"), None);
    }

    #[test]
    fn a_discover_result_offers_modern_only_with_a_modern_version() {
        assert!(offers_modern(br#"{"supportedVersions":["2025-11-25","2026-07-28"]}"#));
        assert!(!offers_modern(br#"{"supportedVersions":["2025-11-25"]}"#));
        assert!(!offers_modern(br#"{"supportedVersions":"2026-07-28"}"#));
        assert!(!offers_modern(b"not json"));
    }

    #[test]
    fn probe_params_declare_the_modern_version_and_pass_the_checks() {
        let p: Value = serde_json::from_str(&probe_params("apiary", "1")).unwrap();
        assert_eq!(meta_version(&p), Some("2026-07-28"));
        assert!(check_meta(&p).is_ok());
    }
}
