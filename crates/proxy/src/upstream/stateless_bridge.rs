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

use apiary_protocol::{Message, RequestId, codes, error_response};
use apiary_transport::client::{ConnectOptions, McpClient, Transport};
use apiary_transport::sse::{event_data, take_event};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Request headers passed on to the upstream session (credentials and tracing context).
const PASSED_HEADERS: &[&str] = &["authorization", "traceparent", "tracestate", "baggage"];

/// The most of an upstream answer read while looking for the response (the transport
/// client's own bound).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// True when `message` (already parsed, a POST to the MCP endpoint) is a request the upstream
/// cannot take as it is: no session header and not itself an `initialize`.
pub fn needs_bridge(headers: &HeaderMap, message: &Message) -> bool {
    message.is_request() && message.method() != Some("initialize") && !headers.contains_key("mcp-session-id")
}

/// Serves `message` over a session of its own to `endpoint` and returns the answer frame: the
/// upstream's response, or a -31004 error with the caller's id. The handshake is the transport
/// client's; the caller's request itself is POSTed as the bytes it came in (its id included:
/// nothing else is in flight on this session) and the upstream's response comes back as the
/// bytes it sent, so neither is re-serialised. How the frame travels (JSON or SSE) is the
/// front's business.
pub async fn serve(
    http: &reqwest::Client,
    endpoint: &str,
    headers: &HeaderMap,
    creds: &[(HeaderName, HeaderValue)],
    message: &Message,
    timeout: Duration,
) -> Bytes {
    let id = message.id_raw().unwrap_or("null").to_owned();
    // The proxy's own headers for the upstream (credentials, its trace context) replace the client's.
    let mut passed: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter(|name| !creds.iter().any(|(n, _)| n.as_str() == **name))
        .filter_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    passed.extend(creds.iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))));
    let options = ConnectOptions { transport: Transport::StreamableHttp, timeout, headers: passed.clone() };
    match McpClient::connect(endpoint, options).await {
        Err(e) => unavailable(&id, &e.to_string()),
        Ok(client) => {
            let outcome = tokio::time::timeout(timeout, forward(http, endpoint, &passed, &client, message))
                .await
                .unwrap_or_else(|_| Err("no answer in time".into()));
            // Ending the session is a courtesy to the server; the caller's answer does not wait
            // on it beyond the client's own bound.
            if let Err(e) = client.close().await {
                tracing::debug!(error = %e, "could not end the bridging session");
            }
            match outcome {
                Ok(frame) => frame,
                Err(reason) => unavailable(&id, &reason),
            }
        }
    }
}

/// POSTs the caller's message on the client's session and returns the response to it,
/// from a JSON body or from the SSE stream (notifications before it are not the caller's
/// business here: it asked without a session).
async fn forward(
    http: &reqwest::Client,
    endpoint: &str,
    passed: &[(String, String)],
    client: &McpClient,
    message: &Message,
) -> Result<Bytes, String> {
    let mut req = http
        .post(endpoint)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", client.protocol_version());
    if let Some(s) = client.session_id() {
        req = req.header("mcp-session-id", s);
    }
    for (name, value) in passed {
        req = req.header(name, value);
    }
    let res = req.body(message.bytes().clone()).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("the server answered HTTP {}", res.status().as_u16()));
    }
    let sse = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
    let want = message.id();
    let mut stream = res.bytes_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer exceeds {MAX_ANSWER_BYTES} bytes"));
        }
        buf.extend_from_slice(&chunk);
        if sse {
            while let Some(event) = take_event(&mut buf) {
                if let Some(frame) = answer_in(event_data(&event), want.as_ref()) {
                    return Ok(frame);
                }
            }
        }
    }
    let rest = if sse { event_data(&buf) } else { buf.freeze() };
    answer_in(rest, want.as_ref()).ok_or_else(|| "the server sent no response to the request".into())
}

/// The frame, when it is the response to `want` (or an error the server could not tie to
/// any request).
fn answer_in(frame: Bytes, want: Option<&RequestId>) -> Option<Bytes> {
    let m = Message::parse(frame).ok()?;
    let ours = m.is_response() && (m.id().as_ref() == want || m.id().is_none());
    ours.then(|| m.into_bytes())
}

fn unavailable(id: &str, reason: &str) -> Bytes {
    tracing::warn!(error = %reason, "a sessionless request could not be served upstream");
    error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, &format!("upstream unavailable: {reason}"), None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_are_taken_one_by_one_and_their_data_joined() {
        let mut buf =
            BytesMut::from(&b"event: message\r\ndata: {\"a\":\r\ndata:1}\r\n\r\nid: 2\ndata: x\n\npartial"[..]);
        let first = take_event(&mut buf).unwrap();
        assert_eq!(&event_data(&first)[..], b"{\"a\":\n1}");
        let second = take_event(&mut buf).unwrap();
        assert_eq!(&event_data(&second)[..], b"x");
        assert!(take_event(&mut buf).is_none());
        assert_eq!(&buf[..], b"partial");
    }

    #[test]
    fn only_the_response_to_the_request_is_the_answer() {
        let want = RequestId::Str("a".into());
        let ours = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"a","result":{"n":1.50}}"#);
        assert_eq!(answer_in(ours.clone(), Some(&want)), Some(ours));
        let other = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"b","result":{}}"#);
        assert_eq!(answer_in(other, Some(&want)), None);
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#);
        assert_eq!(answer_in(note, Some(&want)), None);
        assert_eq!(answer_in(Bytes::from_static(b"not json"), Some(&want)), None);
    }
}
