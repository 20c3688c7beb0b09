//! SEP-2243 `Mcp-Param-*` headers on a 2026-07-28 `tools/call` to the shared stdio child:
//! the proxy is the HTTP server that reads the body, so it checks each header an
//! `x-mcp-header` annotation asks for against the argument it mirrors (the child never sees
//! the headers). Which arguments are mirrored comes from the child's tool list: learnt from
//! every `tools/list` answer that passes through, and fetched from the child itself, every
//! page, when the tool called is not in what is known of the child serving now (a fresh one
//! after a restart included); the table itself is
//! [`ToolHeaders`](crate::front::tool_headers::ToolHeaders).

use apiary_protocol::modern;
use apiary_protocol::{Kind, Message, methods};
use axum::http::HeaderMap;

use crate::answer::Refusal;
use crate::front::state::StdioFront;

/// Checks a modern `tools/call`'s `Mcp-Param-*` headers; other requests pass.
pub async fn check(front: &StdioFront, headers: &HeaderMap, m: &Message) -> Result<(), Refusal> {
    if m.method() != Some(methods::TOOLS_CALL) {
        return Ok(());
    }
    let Some(tool) = modern::params_string(m, "name") else { return Ok(()) };
    let slot = &front.placement.shared.slot;
    let generation = slot.generation();
    let known = &front.tool_headers;
    let params = match known.of(generation, &tool) {
        Some(params) => params,
        None => {
            // One fetch at a time; a call that waited finds what the one before it learnt.
            let _fetching = known.fetching.lock().await;
            match known.of(generation, &tool) {
                Some(params) => params,
                None => {
                    fetch(front, generation).await;
                    known.of(generation, &tool).unwrap_or_default()
                }
            }
        }
    };
    for param in &params {
        let name = format!("mcp-param-{}", param.header);
        let value = headers.get(name.as_str()).map(|v| v.as_bytes());
        modern::check_param_header(m, param, value).map_err(Refusal::HeaderMismatch)?;
    }
    Ok(())
}

/// Pages of the child's tool list read at most, in one fetch.
const MAX_PAGES: usize = 64;

/// Asks the child for its tools, every page (at most [`MAX_PAGES`]), in its own era. The
/// table is then complete; a failure leaves it as it was: a call of a tool not known is then
/// forwarded unchecked, as for a tool with no annotation (and the next one asks again).
async fn fetch(front: &StdioFront, generation: u64) {
    let slot = &front.placement.shared.slot;
    let Ok(conn) = slot.ready(front.request_timeout).await else { return };
    let modern_child = slot.is_modern();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = list_params(modern_child, cursor.as_deref());
        let answer = tokio::time::timeout(front.request_timeout, conn.call_own(methods::TOOLS_LIST, &params)).await;
        let result = match answer {
            Ok(Ok(m)) if m.kind() == Kind::Response => m.payload_raw().map(str::to_owned),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not list the child's tools for the Mcp-Param-* check");
                return;
            }
            Err(_) => {
                tracing::debug!("the child did not list its tools in time for the Mcp-Param-* check");
                return;
            }
        };
        let Some(result) = result else {
            tracing::debug!("the child refused to list its tools for the Mcp-Param-* check");
            return;
        };
        front.tool_headers.learn(generation, &result);
        cursor = next_cursor(&result);
        if cursor.is_none() {
            front.tool_headers.learnt_every_page(generation);
            return;
        }
    }
    tracing::warn!(
        max = MAX_PAGES,
        "the child's tool list has more pages than are read: the rest get no Mcp-Param-* check"
    );
    front.tool_headers.learnt_every_page(generation);
}

/// The params of one `tools/list` of the proxy's own: the modern `_meta` for a modern
/// child, and the cursor of the page wanted.
fn list_params(modern_child: bool, cursor: Option<&str>) -> String {
    let mut params: serde_json::Value = if modern_child {
        serde_json::from_str(&modern::probe_params("apiary", env!("CARGO_PKG_VERSION"))).unwrap_or_default()
    } else {
        serde_json::json!({})
    };
    if let (Some(object), Some(cursor)) = (params.as_object_mut(), cursor) {
        object.insert("cursor".into(), cursor.into());
    }
    params.to_string()
}

/// The one member of a page read here (the rest is skipped, no number in it decoded).
#[derive(serde::Deserialize)]
struct Page {
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

/// The `nextCursor` of a `tools/list` result (JSON text): `None` on the last page, and for
/// an empty cursor (no progress could be made with it).
fn next_cursor(result: &str) -> Option<String> {
    serde_json::from_str::<Page>(result).ok()?.next_cursor.filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_cursor_and_keep_the_era() {
        assert_eq!(next_cursor(r#"{"tools":[{"n":1e400}],"nextCursor":"p2"}"#).as_deref(), Some("p2"));
        assert_eq!(next_cursor(r#"{"tools":[],"nextCursor":null}"#), None);
        assert_eq!(next_cursor(r#"{"tools":[],"nextCursor":""}"#), None);
        assert_eq!(next_cursor(r#"{"tools":[]}"#), None);
        assert_eq!(list_params(false, None), "{}");
        assert_eq!(list_params(false, Some("p2")), r#"{"cursor":"p2"}"#);
        let modern: serde_json::Value = serde_json::from_str(&list_params(true, Some("p2"))).unwrap_or_default();
        assert_eq!(modern["cursor"], "p2");
        assert_eq!(modern["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    }
}
