//! SEP-2243 `Mcp-Param-*` headers on a 2026-07-28 `tools/call` to the shared stdio child:
//! the proxy is the HTTP server that reads the body, so it checks each header an
//! `x-mcp-header` annotation asks for against the argument it mirrors (the child never sees
//! the headers). Which arguments are mirrored comes from the child's tool list: learnt from
//! every `tools/list` answer that passes through, and fetched from the child itself when
//! nothing is known about the child serving now (a fresh one after a restart included);
//! the table itself is [`ToolHeaders`](crate::front::tool_headers::ToolHeaders).

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
    let params = match front.tool_headers.of(generation, &tool) {
        Some(params) => params,
        None => {
            fetch(front, generation).await;
            front.tool_headers.of(generation, &tool).unwrap_or_default()
        }
    };
    for param in &params {
        let name = format!("mcp-param-{}", param.header);
        let value = headers.get(name.as_str()).map(|v| v.as_bytes());
        modern::check_param_header(m, param, value).map_err(Refusal::HeaderMismatch)?;
    }
    Ok(())
}

/// Asks the child for its tools (first page), in its own era. A failure leaves nothing
/// known: the call is then forwarded unchecked, as for a tool with no annotation.
async fn fetch(front: &StdioFront, generation: u64) {
    let slot = &front.placement.shared.slot;
    let Ok(conn) = slot.ready(front.request_timeout).await else { return };
    let params = if slot.is_modern() { modern::probe_params("apiary", env!("CARGO_PKG_VERSION")) } else { "{}".into() };
    let answer = tokio::time::timeout(front.request_timeout, conn.call_own(methods::TOOLS_LIST, &params)).await;
    match answer {
        Ok(Ok(m)) => {
            if let Some(result) = m.payload_raw().filter(|_| m.kind() == Kind::Response) {
                front.tool_headers.learn(generation, result);
            }
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "could not list the child's tools for the Mcp-Param-* check"),
        Err(_) => tracing::debug!("the child did not list its tools in time for the Mcp-Param-* check"),
    }
}
