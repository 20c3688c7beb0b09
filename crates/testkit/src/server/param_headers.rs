//! SEP-2243 custom headers over HTTP: the fixture's tools with an `x-mcp-header` argument,
//! and the check every 2026-07-28 call of them passes before the SDK sees it (the SDK does
//! not check `Mcp-Param-*`). The argument `region` of [`TOOL`] is mirrored in
//! `Mcp-Param-Region`, and the nested `target.zone` of [`NESTED_TOOL`] (an annotation
//! reached through two `properties`) in `Mcp-Param-Zone`: a value in the body needs the
//! header, the header (decoded when written `=?base64?…?=`, strictly) must equal it, and a
//! header without a value is a mismatch too; any failure is HTTP 400 with JSON-RPC -32020.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, Tool};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

/// The tool whose `region` argument is mirrored in a header.
pub const TOOL: &str = "test_custom_header";
/// The mirrored argument.
const MEMBER: &str = "region";
/// The header carrying it: `Mcp-Param-` and the annotation's name.
const HEADER: &str = "mcp-param-region";
/// The tool whose nested `target.zone` argument is mirrored in a header.
pub const NESTED_TOOL: &str = "test_custom_header_nested";
/// The header carrying `target.zone`.
const NESTED_HEADER: &str = "mcp-param-zone";
/// Largest POST body the check reads (the fixture's messages are small).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The tool, for `tools/list`.
pub fn tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": { MEMBER: { "type": "string", "x-mcp-header": "Region", "description": "Mirrored in Mcp-Param-Region" } },
        "required": [MEMBER],
    });
    Tool::new(
        TOOL,
        "Echoes its region argument, which is mirrored in the Mcp-Param-Region header",
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

/// The nested tool, for `tools/list`.
pub fn nested_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": { "target": {
            "type": "object",
            "properties": { "zone": { "type": "string", "x-mcp-header": "Zone", "description": "Mirrored in Mcp-Param-Zone" } },
        } },
        "required": ["target"],
    });
    Tool::new(
        NESTED_TOOL,
        "Echoes its target.zone argument, which is mirrored in the Mcp-Param-Zone header",
        Arc::new(schema.as_object().cloned().unwrap_or_default()),
    )
}

/// Runs [`TOOL`] or [`NESTED_TOOL`] when `request` names it (the header was checked before); `None` otherwise.
pub fn call(request: &CallToolRequestParams) -> Option<CallToolResult> {
    let args = request.arguments.as_ref();
    let text = match request.name.as_ref() {
        TOOL => format!("region {}", args.and_then(|a| a.get(MEMBER)).map(ToString::to_string).unwrap_or_default()),
        NESTED_TOOL => {
            let zone = args.and_then(|a| a.get("target")).and_then(|t| t.get("zone"));
            format!("zone {}", zone.map(ToString::to_string).unwrap_or_default())
        }
        _ => return None,
    };
    Some(CallToolResult::success(vec![ContentBlock::text(text)]))
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<CallParams>,
}

#[derive(Deserialize)]
struct CallParams {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Args>,
}

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    region: Option<serde_json::Value>,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    zone: Option<serde_json::Value>,
}

/// Middleware: refuses a 2026-07-28 call of [`TOOL`] whose header does not mirror its
/// argument; passes everything else on unchanged.
pub async fn check(req: Request<Body>, next: Next) -> Response {
    if req.method() != Method::POST || !is_modern(req.headers()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    if let Ok(call) = serde_json::from_slice::<Call<'_>>(&bytes)
        && call.method.as_deref() == Some("tools/call")
        && let Some(params) = &call.params
        && let Some((mirror, name, body)) = mirrored(params)
        && let Err(why) = mirrors(parts.headers.get(mirror).map(|v| v.as_bytes()), body)
    {
        let id = call.id.map_or("null", RawValue::get);
        let error = json!({ "code": -32020, "message": format!("{name} {why}") });
        let frame = format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#);
        return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], frame).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The header a call of one of the tools must carry, its name for messages, and the
/// argument it mirrors (`None` when absent or `null`); `None` for other tools.
fn mirrored(params: &CallParams) -> Option<(&'static str, &'static str, Option<&serde_json::Value>)> {
    let args = params.arguments.as_ref();
    let (header, name, value) = match params.name.as_deref()? {
        TOOL => (HEADER, "Mcp-Param-Region", args.and_then(|a| a.region.as_ref())),
        NESTED_TOOL => (NESTED_HEADER, "Mcp-Param-Zone", args.and_then(|a| a.target.as_ref()?.zone.as_ref())),
        _ => return None,
    };
    Some((header, name, value.filter(|v| !v.is_null())))
}

fn is_modern(headers: &HeaderMap) -> bool {
    headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "2026-07-28")
}

/// Whether the header's value mirrors the body's.
fn mirrors(header: Option<&[u8]>, body: Option<&serde_json::Value>) -> Result<(), &'static str> {
    let (header, body) = match (header, body) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return Err("is required when the argument has a value"),
        (Some(_), None) => return Err("is sent but the argument has no value"),
        (Some(h), Some(b)) => (h, b),
    };
    let decoded = decode(header)?;
    let expected = match body {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if decoded == expected { Ok(()) } else { Err("does not match the argument") }
}

/// A header value: trimmed, and `=?base64?…?=` decoded strictly (a value that only opens
/// like it is a literal).
fn decode(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "is not visible ASCII")?.trim_matches([' ', '\t']);
    let Some(inner) = text.strip_prefix("=?base64?").and_then(|t| t.strip_suffix("?=")) else {
        return Ok(text.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(inner).map_err(|_| "is not valid base64")?;
    String::from_utf8(bytes).map_err(|_| "decodes to bytes that are not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_mirror_the_argument() {
        let hello = json!("Hello");
        assert_eq!(mirrors(Some(b"=?base64?SGVsbG8=?="), Some(&hello)), Ok(()));
        assert_eq!(mirrors(Some(b" Hello "), Some(&hello)), Ok(()));
        assert!(mirrors(Some(b"=?base64?SGVsbG8?="), Some(&hello)).is_err(), "bad padding");
        assert!(mirrors(Some(b"=?base64?SGVs!!!bG8=?="), Some(&hello)).is_err(), "bad characters");
        assert_eq!(mirrors(Some(b"=?base64?SGVsbG8="), Some(&json!("=?base64?SGVsbG8="))), Ok(()), "a literal");
        assert!(mirrors(None, Some(&hello)).is_err(), "missing");
        assert!(mirrors(Some(b"Hello"), None).is_err(), "no value");
        assert_eq!(mirrors(None, None), Ok(()));
        assert!(mirrors(Some(b"Bye"), Some(&hello)).is_err());
    }
}
