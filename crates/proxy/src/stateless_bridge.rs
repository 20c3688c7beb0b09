//! Sessionless requests in front of a Streamable HTTP server that wants sessions.
//!
//! names.md §5 and bad-input row 12: a bare `POST /mcp` with `tools/list` and no handshake
//! (seed 000's curl) must work, and so must a `tools/call` carrying only
//! `MCP-Protocol-Version`. A stdio server behind the proxy gets these on its shared child; an
//! HTTP server that requires a session (most SDK servers) would refuse them with 400 or 406.
//! So the proxy opens a short session of its own upstream (`initialize`, `initialized`), sends
//! the one request, answers the caller with its own id, and ends the session (`DELETE`). No
//! session is minted or echoed to the caller.

use std::time::Duration;

use apiary_protocol::{Message, codes, error_response, result_response};
use apiary_transport::client::{ClientError, ConnectOptions, McpClient, Transport};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;

use crate::answer;
use crate::edge::Accepts;

/// Request headers passed on to the upstream session (credentials and tracing context).
const PASSED_HEADERS: &[&str] = &["authorization", "traceparent", "tracestate", "baggage"];

/// True when `message` (already parsed, a POST to the MCP endpoint) is a request the upstream
/// cannot take as it is: no session header and not itself an `initialize`.
pub fn needs_bridge(headers: &HeaderMap, message: &Message) -> bool {
    message.is_request() && message.method() != Some("initialize") && !headers.contains_key("mcp-session-id")
}

/// Serves `message` over a session of its own to `endpoint`.
pub async fn serve(
    endpoint: &str,
    headers: &HeaderMap,
    creds: &[(HeaderName, HeaderValue)],
    message: &Message,
    accepts: Accepts,
    timeout: Duration,
) -> Response {
    let id = message.id_raw().unwrap_or("null").to_owned();
    let method = message.method().unwrap_or_default().to_owned();
    let params = message
        .params_raw()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .unwrap_or(serde_json::Value::Null);
    // The proxy's own credentials for the upstream replace the client's.
    let mut passed: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter(|name| !creds.iter().any(|(n, _)| n.as_str() == **name))
        .filter_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    passed.extend(creds.iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))));
    let options = ConnectOptions { transport: Transport::StreamableHttp, timeout, headers: passed };
    let body = match McpClient::connect(endpoint, options).await {
        Err(e) => unavailable(&id, &e),
        Ok(client) => {
            let outcome = client.request(&method, params).await;
            // Ending the session is a courtesy to the server; the caller's answer does not wait
            // on it beyond the client's own bound.
            if let Err(e) = client.close().await {
                tracing::debug!(error = %e, "could not end the bridging session");
            }
            match outcome {
                Ok(result) => result_response(&id, &result.to_string()),
                Err(ClientError::JsonRpc { code, message, data }) => {
                    let code = i32::try_from(code).unwrap_or(codes::INTERNAL_ERROR);
                    error_response(Some(&id), code, &message, data.as_ref())
                }
                Err(e) => unavailable(&id, &e),
            }
        }
    };
    if accepts.json {
        return answer::json(body);
    }
    let mut r = Response::new(axum::body::Body::from(apiary_transport::sse::message_event(None, &body)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r
}

fn unavailable(id: &str, e: &ClientError) -> bytes::Bytes {
    tracing::warn!(error = %e, "a sessionless request could not be served upstream");
    error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, &format!("upstream unavailable: {e}"), None)
}
