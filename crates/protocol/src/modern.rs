//! What the 2026-07-28 era ("modern") asks of a request, with no I/O: where its version and
//! capabilities live in `_meta`, which methods it removed, which header mirrors which body
//! member, and how an HTTP mirror header's value is decoded (the `=?base64?…?=` form).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::envelope::{Kind, Message};
use crate::{SpliceError, methods, splice};

/// `params._meta` key holding the request's protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `params._meta` key holding the request's client capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `params._meta` key holding the client's self-description (optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// Notification `_meta` key naming the `subscriptions/listen` request (its id) a
/// notification is delivered for.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

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
/// request that declares a version it does not speak). Only those members' bytes go; every
/// other byte, `_meta`'s other members (a `progressToken`) included, stays as it came.
pub fn legacy_request(frame: &bytes::Bytes) -> Result<bytes::Bytes, SpliceError> {
    let m = Message::parse(frame.clone()).map_err(|_| SpliceError::InvalidValue)?;
    let Some(meta) = m.params_member(&["_meta"])? else { return Ok(frame.clone()) };
    if frame.get(meta.start) != Some(&b'{') {
        return Ok(frame.clone());
    }
    splice::remove_members(frame, meta, |key| key.starts_with(MODERN_META_PREFIX))
}

/// The prefix of the `_meta` keys the modern era reserves for itself.
pub const MODERN_META_PREFIX: &str = "io.modelcontextprotocol/";

/// The `params` member that `Mcp-Name` mirrors for `method`, if the method has one.
pub fn name_member(method: &str) -> Option<&'static str> {
    match method {
        methods::TOOLS_CALL | methods::PROMPTS_GET => Some("name"),
        methods::RESOURCES_READ => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// `params` read for its `_meta` alone: every other member is skipped, never decoded, so a
/// `1e400` or a 30-digit integer in the arguments cannot fail the read.
#[derive(Deserialize)]
struct ParamsMeta<'a> {
    #[serde(borrow, rename = "_meta", default)]
    meta: Option<&'a RawValue>,
}

/// The two `_meta` members every modern request carries, borrowed as written. A member that
/// is present but `null` is kept apart from an absent one.
#[derive(Deserialize)]
struct MetaMembers<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion", default, deserialize_with = "present")]
    version: Option<&'a RawValue>,
    #[serde(borrow, rename = "io.modelcontextprotocol/clientCapabilities", default, deserialize_with = "present")]
    capabilities: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The `_meta` members of `params` (its raw text), or why they cannot be read.
fn meta_members(params: Option<&str>) -> Result<MetaMembers<'_>, MetaError> {
    let params = params.ok_or(MetaError::Missing)?;
    let outer: ParamsMeta<'_> = serde_json::from_str(params).map_err(|_| MetaError::Missing)?;
    let meta = outer.meta.filter(|m| m.get().starts_with('{')).ok_or(MetaError::Missing)?;
    serde_json::from_str(meta.get()).map_err(|e| MetaError::Unreadable(e.to_string()))
}

/// A JSON string's value (escapes decoded); `None` for any other value.
fn string_of(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// The protocol version a request's `_meta` declares (any string), if it declares one.
/// `params` is the request's raw params text.
pub fn meta_version(params: Option<&str>) -> Option<String> {
    meta_members(params).ok()?.version.and_then(string_of)
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
    #[error("params._meta cannot be read: {0}")]
    Unreadable(String),
}

/// Checks the `_meta` keys every modern request carries, read from the raw params text: a
/// version string and a capabilities object (`clientInfo` is only a SHOULD). Returns the
/// version.
pub fn check_meta(params: Option<&str>) -> Result<String, MetaError> {
    let meta = meta_members(params)?;
    let version = match meta.version {
        None => return Err(MetaError::Lacks(META_VERSION)),
        Some(v) => string_of(v).ok_or(MetaError::WrongType(META_VERSION))?,
    };
    match meta.capabilities {
        None => Err(MetaError::Lacks(META_CAPABILITIES)),
        Some(v) if !v.get().starts_with('{') => Err(MetaError::WrongType(META_CAPABILITIES)),
        Some(_) => Ok(version),
    }
}

/// The string a request's `params.<member>` holds (the value `Mcp-Name` mirrors), read
/// from its bytes alone; `None` when absent or not a string.
pub fn params_string(m: &Message, member: &str) -> Option<String> {
    m.params_string(member)
}

/// One tool argument a 2026-07-28 client mirrors in a header (SEP-2243):
/// `params.arguments.<path…>` travels in `Mcp-Param-<header>` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The chain of `properties` keys to the argument (one key for a top-level one).
    pub path: Vec<String>,
    pub header: String,
}

impl ParamHeader {
    /// A top-level argument's annotation.
    pub fn top(member: &str, header: &str) -> ParamHeader {
        ParamHeader { path: vec![member.to_owned()], header: header.to_owned() }
    }

    /// Where the argument is in a `tools/call`'s params: `["arguments", path…]`.
    pub fn params_path(&self) -> Vec<&str> {
        std::iter::once("arguments").chain(self.path.iter().map(String::as_str)).collect()
    }
}

#[derive(Deserialize)]
struct ListHead<'a> {
    #[serde(borrow, default)]
    tools: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolHead<'a> {
    name: String,
    #[serde(borrow, rename = "inputSchema", default)]
    input_schema: Option<&'a RawValue>,
}

/// A tool's annotations (`x-mcp-header` on properties reached through `properties`
/// chains, nested ones included), or why they are invalid.
fn tool_params(tool: &ToolHead<'_>) -> Result<Vec<ParamHeader>, crate::mcp_header::InvalidAnnotation> {
    let Some(schema) = tool.input_schema else { return Ok(Vec::new()) };
    let found = crate::mcp_header::annotations(schema.get())?;
    Ok(found.into_iter().map(|a| ParamHeader { path: a.path, header: a.header }).collect())
}

/// The tools of a `tools/list` result (its JSON text), each with the arguments it mirrors in
/// headers. A tool whose annotations are invalid has none (a client drops it and sends no
/// headers for it: [`drop_invalid_tools`]). Only these members are decoded; a tool that
/// cannot be read is skipped.
pub fn param_headers_of_tools(result: &str) -> Vec<(String, Vec<ParamHeader>)> {
    let Ok(list) = serde_json::from_str::<ListHead<'_>>(result) else { return Vec::new() };
    let mut out = Vec::new();
    for tool in list.tools {
        let Ok(tool) = serde_json::from_str::<ToolHead<'_>>(tool.get()) else { continue };
        let params = tool_params(&tool).unwrap_or_default();
        out.push((tool.name, params));
    }
    out
}

/// A tool dropped from a list, and why.
pub type Dropped = (String, crate::mcp_header::InvalidAnnotation);

/// A `tools/list` answer (a response frame) without the tools whose `x-mcp-header`
/// annotations are invalid, which a client must not list (mcp-brief.md rule 31); every
/// other byte is kept. `None` when nothing is dropped (or the frame holds no tool list).
pub fn drop_invalid_tools(frame: &bytes::Bytes) -> Option<(bytes::Bytes, Vec<Dropped>)> {
    let text = std::str::from_utf8(frame).ok()?;
    let m = Message::parse(frame.clone()).ok()?;
    let result = m.payload_range().filter(|_| m.kind() == Kind::Response)?;
    let tools = splice::find_member(frame, result, "tools").ok()??;
    let items: Vec<&RawValue> = serde_json::from_str(text.get(tools.clone())?).ok()?;
    let mut kept = Vec::with_capacity(items.len());
    let mut dropped = Vec::new();
    for item in items {
        match serde_json::from_str::<ToolHead<'_>>(item.get()).map(|t| (tool_params(&t), t.name)) {
            Ok((Err(why), name)) => dropped.push((name, why)),
            _ => kept.push(item.get()),
        }
    }
    if dropped.is_empty() {
        return None;
    }
    let list = format!("[{}]", kept.join(","));
    let out = splice::splice(frame, &[(tools, list.as_bytes())]).ok()?;
    Some((out, dropped))
}

/// Checks that the header carrying `param` (its raw value, `None` when absent) mirrors the
/// call's argument: a value needs the header, a header needs a value, and the header
/// (decoded from `=?base64?…?=`) equals the string, or spells the integer or boolean.
pub fn check_param_header(m: &Message, param: &ParamHeader, header: Option<&[u8]>) -> Result<(), String> {
    let name = format!("Mcp-Param-{}", param.header);
    let body = m.params_member(&param.params_path()).ok().flatten().and_then(|r| m.text(r));
    let body = body.filter(|b| *b != "null");
    let (header, body) = match (header, body) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return Err(format!("the {name} header is required: the argument has a value")),
        (Some(_), None) => return Err(format!("the {name} header is sent but the argument has no value")),
        (Some(h), Some(b)) => (h, b),
    };
    let decoded = decode_header_value(header).map_err(|e| format!("the {name} header {e}"))?;
    let same = if body.starts_with('"') {
        serde_json::from_str::<String>(body).is_ok_and(|b| b == decoded)
    } else {
        match (body.parse::<i128>(), decoded.parse::<i128>()) {
            (Ok(b), Ok(h)) => b == h,
            _ => body == decoded,
        }
    };
    if same { Ok(()) } else { Err(format!("the {name} header does not match the argument")) }
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

#[derive(Deserialize)]
struct InitHead<'a> {
    #[serde(borrow, default)]
    capabilities: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, rename = "serverInfo", default)]
    server_info: Option<&'a RawValue>,
}

/// A `server/discover` result (JSON text) for a legacy server, made from its `initialize`
/// result (JSON text): its capabilities, instructions and server info as written (never
/// re-serialised), the modern versions, `resultType` and the cache hints (`ttlMs: 0`,
/// `cacheScope: private`: nothing is known about how long it holds or for whom).
pub fn discover_from_initialize(init: &[u8]) -> String {
    fn object(v: Option<&RawValue>) -> Option<&str> {
        v.map(RawValue::get).filter(|t| t.starts_with('{'))
    }
    let head = serde_json::from_slice::<InitHead<'_>>(init).ok();
    let capabilities = head.as_ref().and_then(|h| object(h.capabilities)).unwrap_or("{}");
    let versions = serde_json::to_string(&crate::Revision::modern_names()).unwrap_or_else(|_| "[]".into());
    let mut out = format!(
        r#"{{"supportedVersions":{versions},"capabilities":{capabilities},"resultType":"complete","ttlMs":0,"cacheScope":"private""#
    );
    if let Some(i) = head.as_ref().and_then(|h| h.instructions).filter(|i| i.get().starts_with('"')) {
        out.push_str(&format!(r#","instructions":{}"#, i.get()));
    }
    if let Some(info) = head.as_ref().and_then(|h| object(h.server_info)) {
        out.push_str(&format!(r#","_meta":{{"{META_SERVER_INFO}":{info}}}"#));
    }
    out.push('}');
    out
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
    offers_era(result, crate::Era::Modern)
}

/// Whether a `server/discover` result (its JSON text) lists a legacy revision among its
/// `supportedVersions`: one that does not is a modern-only server, which refuses
/// `initialize` (mcp-spec-notes.md §2.15).
pub fn offers_legacy(result: &[u8]) -> bool {
    offers_era(result, crate::Era::Legacy)
}

fn offers_era(result: &[u8], era: crate::Era) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(result) else { return false };
    v.get("supportedVersions").and_then(Value::as_array).is_some_and(|versions| {
        versions
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| s.parse::<crate::Revision>().ok())
            .any(|r| r.era() == era)
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

    fn check(params: &Value) -> Result<String, MetaError> {
        check_meta(Some(&params.to_string()))
    }

    #[test]
    fn meta_needs_version_and_capabilities() {
        let ok = json!({"_meta": {META_VERSION: "2026-07-28", META_CAPABILITIES: {}}});
        assert_eq!(check(&ok), Ok("2026-07-28".to_owned()));
        assert_eq!(meta_version(Some(&ok.to_string())).as_deref(), Some("2026-07-28"));
        assert_eq!(check_meta(None), Err(MetaError::Missing));
        assert_eq!(check(&json!({})), Err(MetaError::Missing));
        assert_eq!(check(&json!({"_meta": null})), Err(MetaError::Missing));
        assert_eq!(check(&json!({"_meta": {META_CAPABILITIES: {}}})), Err(MetaError::Lacks(META_VERSION)));
        assert_eq!(check(&json!({"_meta": {META_VERSION: "x"}})), Err(MetaError::Lacks(META_CAPABILITIES)));
        assert_eq!(
            check(&json!({"_meta": {META_VERSION: 1, META_CAPABILITIES: {}}})),
            Err(MetaError::WrongType(META_VERSION))
        );
        assert_eq!(
            check(&json!({"_meta": {META_VERSION: null, META_CAPABILITIES: {}}})),
            Err(MetaError::WrongType(META_VERSION))
        );
        assert_eq!(
            check(&json!({"_meta": {META_VERSION: "x", META_CAPABILITIES: []}})),
            Err(MetaError::WrongType(META_CAPABILITIES))
        );
    }

    /// Numbers no `serde_json::Value` can hold, anywhere else in params or `_meta`, do not
    /// get in the way of reading the two members (they were refused as "_meta missing").
    #[test]
    fn meta_is_read_past_numbers_a_value_cannot_hold() {
        let params = r#"{"name":"e","arguments":{"huge":1e400,"big":123456789012345678901234567890},"_meta":{"x":-1e999,"io.modelcontextprotocol/protocolVersion":"2026-\u00307-28","io.modelcontextprotocol/clientCapabilities":{"n":1e400}}}"#;
        assert!(serde_json::from_str::<Value>(params).is_err(), "the case needs a number Value refuses");
        assert_eq!(check_meta(Some(params)), Ok("2026-07-28".to_owned()));
        assert_eq!(meta_version(Some(params)).as_deref(), Some("2026-07-28"));
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        let m = Message::parse(bytes::Bytes::from(frame)).unwrap();
        assert_eq!(params_string(&m, "name").as_deref(), Some("e"));
        assert_eq!(params_string(&m, "arguments"), None);
        assert_eq!(params_string(&m, "uri"), None);
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

    /// `_meta`'s other members keep their bytes: order, number spelling, escapes, spacing
    /// (they were re-serialised through `Value`, which sorted keys and respelled `1.50`).
    #[test]
    fn legacy_requests_keep_every_other_meta_byte() {
        let cases = [
            (
                r#"{"z":1.50, "io.modelcontextprotocol/protocolVersion" : "2026-07-28" ,"a":"\u00e9\/","io.modelcontextprotocol/clientCapabilities":{"x":1e400},"big":123456789012345678901234567890}"#,
                r#"{"z":1.50, "a":"\u00e9\/","big":123456789012345678901234567890}"#,
            ),
            (
                r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{},"k":1.0}"#,
                r#"{"k":1.0}"#,
            ),
            (
                r#"{ "k":[1e400] , "io.modelcontextprotocol/protocolVersion":"2026-07-28","io.model\u0063ontextprotocol/clientInfo":{} }"#,
                r#"{ "k":[1e400] }"#,
            ),
            (r#"{ "io.modelcontextprotocol/protocolVersion":"2026-07-28" }"#, r#"{  }"#),
            (r#"{"progressToken":"t"}"#, r#"{"progressToken":"t"}"#),
        ];
        for (meta, kept) in cases {
            let frame = |m: &str| {
                format!(
                    r#"{{"id":"x" ,"method":"tools/call","params":{{"arguments":{{"n":1e400}},"_meta":{m}}},"jsonrpc":"2.0"}}"#
                )
            };
            let out = legacy_request(&bytes::Bytes::from(frame(meta))).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), frame(kept), "for {meta}");
        }
    }

    #[test]
    fn param_headers_are_read_from_a_tool_list() {
        let list = r#"{"tools":[{"name":"a","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer","default":1e400},"p":true}}},{"name":"b"},{"nope":1}],"nextCursor":null}"#;
        let got = param_headers_of_tools(list);
        assert_eq!(got, vec![("a".to_owned(), vec![ParamHeader::top("r", "Region")]), ("b".to_owned(), vec![])]);
        assert!(param_headers_of_tools("not json").is_empty());
    }

    #[test]
    fn param_headers_mirror_the_arguments() {
        let call = |args: &str| {
            Message::parse(bytes::Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{args}}}}}"#
            )))
            .unwrap()
        };
        let p = |member: &str| ParamHeader::top(member, "X");
        let hello = call(r#"{"r":"Hello","n":42,"b":true,"z":null,"big":1e400}"#);
        assert_eq!(check_param_header(&hello, &p("r"), Some(b"=?base64?SGVsbG8=?=")), Ok(()));
        assert_eq!(check_param_header(&hello, &p("r"), Some(b"Hello")), Ok(()));
        assert!(check_param_header(&hello, &p("r"), Some(b"=?base64?SGVsbG8?=")).is_err());
        assert!(check_param_header(&hello, &p("r"), Some(b"=?base64?SGVs!!!bG8=?=")).is_err());
        assert!(check_param_header(&hello, &p("r"), None).is_err());
        assert!(check_param_header(&hello, &p("r"), Some(b"Bye")).is_err());
        assert_eq!(check_param_header(&hello, &p("n"), Some(b"042")), Ok(()), "integers compare as numbers");
        assert_eq!(check_param_header(&hello, &p("b"), Some(b"true")), Ok(()));
        assert_eq!(check_param_header(&hello, &p("z"), None), Ok(()), "null is no value");
        assert_eq!(check_param_header(&hello, &p("absent"), None), Ok(()));
        assert!(check_param_header(&hello, &p("absent"), Some(b"x")).is_err());
        assert_eq!(check_param_header(&hello, &p("big"), Some(b"1e400")), Ok(()));
    }

    #[test]
    fn nested_annotations_are_read_and_invalid_tools_have_none() {
        let list = r#"{"tools":[
            {"name":"deploy","inputSchema":{"type":"object","properties":{
                "target":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},
                    "replicas":{"type":"integer","x-mcp-header":"Replicas"}}},
                "dry":{"type":"boolean","x-mcp-header":"Dry"}}}},
            {"name":"bad","inputSchema":{"type":"object","properties":{"l":{"type":"array","items":{"type":"string","x-mcp-header":"L"}}}}}]}"#;
        let deploy = vec![
            ParamHeader::top("dry", "Dry"),
            ParamHeader { path: vec!["target".into(), "region".into()], header: "Region".into() },
            ParamHeader { path: vec!["target".into(), "replicas".into()], header: "Replicas".into() },
        ];
        assert_eq!(param_headers_of_tools(list), vec![("deploy".to_owned(), deploy), ("bad".to_owned(), vec![])]);
    }

    #[test]
    fn nested_arguments_are_checked_against_their_headers() {
        let call = Message::parse(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"target":{"region":"Z\u00fcrich","replicas":3,"n":null},"flat":"x"}}}"#,
        ))
        .unwrap();
        let nested = |leaf: &str| ParamHeader { path: vec!["target".into(), leaf.into()], header: "X".into() };
        // The non-ASCII value travels in the base64 form, decoded before the comparison.
        let zurich = crate::bridge::param_header_value(&call, &nested("region")).unwrap();
        assert_eq!(zurich, "=?base64?WsO8cmljaA==?=");
        assert_eq!(check_param_header(&call, &nested("region"), Some(zurich.as_bytes())), Ok(()));
        assert!(check_param_header(&call, &nested("region"), Some(b"Zurich")).is_err(), "mismatch");
        let missing = check_param_header(&call, &nested("region"), None).unwrap_err();
        assert!(missing.contains("Mcp-Param-X") && missing.contains("required"), "{missing}");
        assert_eq!(check_param_header(&call, &nested("replicas"), Some(b"3")), Ok(()));
        assert!(check_param_header(&call, &nested("replicas"), Some(b"4")).is_err());
        assert_eq!(check_param_header(&call, &nested("n"), None), Ok(()), "null is no value");
        assert_eq!(check_param_header(&call, &nested("absent"), None), Ok(()));
        assert!(check_param_header(&call, &nested("absent"), Some(b"x")).is_err(), "a header with no value");
        // A path through a member that is not an object reaches nothing.
        let through = ParamHeader { path: vec!["flat".into(), "deeper".into()], header: "X".into() };
        assert_eq!(check_param_header(&call, &through, None), Ok(()));
        assert_eq!(crate::bridge::param_header_value(&call, &through), None);
    }

    #[test]
    fn tools_with_invalid_annotations_are_dropped_every_other_byte_kept() {
        let frame = bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"ok","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"R","default":1e400}}}} , {"name":"num","inputSchema":{"properties":{"n":{"type":"number","x-mcp-header":"N"}}}},{"name":"plain","n":1.50}],"nextCursor":"c"}}"#,
        );
        let (out, dropped) = drop_invalid_tools(&frame).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"ok","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"R","default":1e400}}}},{"name":"plain","n":1.50}],"nextCursor":"c"}}"#
        );
        assert_eq!(dropped, vec![("num".to_owned(), crate::mcp_header::InvalidAnnotation::NotPrimitive("n".into()))]);
        // Nothing to drop, an error, or no list: nothing is rewritten.
        let fine = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#);
        assert!(drop_invalid_tools(&fine).is_none());
        let err = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#);
        assert!(drop_invalid_tools(&err).is_none());
        assert!(drop_invalid_tools(&bytes::Bytes::from_static(b"not json")).is_none());
    }

    /// The members are copied as written: a number `Value` cannot hold stays, and so do key
    /// order and escapes.
    #[test]
    fn discover_keeps_the_initialize_members_as_written() {
        let init = br#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{"x":1e400},"a":1.50},"instructions":"\u00e9","serverInfo":{"name":"s","version":"1"}}"#;
        let out = discover_from_initialize(init);
        assert_eq!(
            out,
            r#"{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{"x":1e400},"a":1.50},"resultType":"complete","ttlMs":0,"cacheScope":"private","instructions":"\u00e9","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s","version":"1"}}}"#
        );
        assert_eq!(
            discover_from_initialize(b"not json"),
            r#"{"supportedVersions":["2026-07-28"],"capabilities":{},"resultType":"complete","ttlMs":0,"cacheScope":"private"}"#
        );
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
        assert!(offers_legacy(br#"{"supportedVersions":["2025-11-25","2026-07-28"]}"#));
        assert!(!offers_legacy(br#"{"supportedVersions":["2026-07-28"]}"#));
    }

    #[test]
    fn probe_params_declare_the_modern_version_and_pass_the_checks() {
        let p = probe_params("apiary", "1");
        assert_eq!(meta_version(Some(&p)).as_deref(), Some("2026-07-28"));
        assert!(check_meta(Some(&p)).is_ok());
    }
}
