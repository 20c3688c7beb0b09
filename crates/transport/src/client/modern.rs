//! A raw-bytes 2026-07-28 client for a caller that forwards messages it did not write (the
//! vMCP): no handshake and no session; each request is one POST of the caller's bytes with
//! the revision's headers (`MCP-Protocol-Version` from the request's `_meta`, `Mcp-Method`,
//! `Mcp-Name`, and the `Mcp-Param-*` the caller computed). The answer is the server's bytes,
//! whatever HTTP status carried it (a modern server answers -32021 with 400 and -32601 with
//! 404); the notifications it sends first on an SSE answer are handed to the caller.

use std::collections::VecDeque;
use std::time::Duration;

use apiary_protocol::{Body, Kind, Message, RequestId, modern, parse_body};
use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use tokio::sync::mpsc;

use super::error::ClientError;
use super::http::{MAX_MESSAGE_BYTES, SseReader, connection_error, has_content_type, read_capped, status_error};
use super::session::SessionOptions;
use super::{header_map, parse_url};

/// The revision this client speaks.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// A stateless 2026-07-28 client of one server URL.
pub struct ModernClient {
    http: Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl std::fmt::Debug for ModernClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModernClient").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

/// The messages of one POST's answer, in order: a JSON body's messages, or an SSE stream's.
pub struct ModernStream {
    queued: VecDeque<Bytes>,
    reader: Option<SseReader>,
}

impl ModernStream {
    /// The next message the server sent for this POST; `None` when the answer ended.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(m) = self.queued.pop_front() {
                return Ok(Some(m));
            }
            let Some(reader) = self.reader.as_mut() else { return Ok(None) };
            match reader.next_event().await? {
                Some(ev) if ev.kind() == "message" && !ev.data.trim().is_empty() => {
                    self.queued.extend(split(Bytes::from(ev.data))?);
                }
                Some(_) => {}
                None => self.reader = None,
            }
        }
    }
}

/// A body's messages (a batch is split).
fn split(data: Bytes) -> Result<Vec<Bytes>, ClientError> {
    match parse_body(data) {
        Ok(Body::Single(m)) => Ok(vec![m.into_bytes()]),
        Ok(Body::Batch(items)) => Ok(items.into_iter().filter_map(Result::ok).map(Message::into_bytes).collect()),
        Err(e) => Err(ClientError::Protocol(format!("server sent a message that is not JSON-RPC: {e}"))),
    }
}

impl ModernClient {
    /// A client for `url` with the options' headers, TLS roots, address guard and timeout
    /// (the session-only options are unused).
    pub async fn new(url: &str, options: &SessionOptions) -> Result<ModernClient, ClientError> {
        let parsed = parse_url(url)?;
        let headers = header_map(&options.headers)?;
        let http = super::reach::client(&parsed, &options.reach, options.timeout).await?;
        Ok(ModernClient { http, url: parsed, headers, timeout: options.timeout })
    }

    /// `server/discover` with Apiary's probe params: the result's JSON text, or the error
    /// the server answered (a legacy server refuses it one way or another).
    pub async fn discover(&self, client_name: &str) -> Result<Bytes, ClientError> {
        let params = modern::probe_params(client_name, env!("CARGO_PKG_VERSION"));
        let request =
            Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{params}}}"#));
        let answer = self.request(request, &[], None).await?;
        let msg = Message::parse(answer).map_err(|e| ClientError::Protocol(format!("discover answer: {e}")))?;
        match (msg.kind(), msg.payload_raw()) {
            (Kind::Response, Some(r)) => Ok(Bytes::copy_from_slice(r.as_bytes())),
            (_, payload) => Err(ClientError::Protocol(format!(
                "server/discover was refused: {}",
                payload.unwrap_or_default().chars().take(300).collect::<String>()
            ))),
        }
    }

    /// Sends one request (its bytes as given) and returns the server's answer to it as it
    /// came. `extra` are headers the caller computed (`Mcp-Param-*`). Notifications sent
    /// before the answer go to `notes` when given (dropped otherwise). Bounded by the timeout.
    pub async fn request(
        &self,
        request: Bytes,
        extra: &[(String, String)],
        notes: Option<&mpsc::Sender<Bytes>>,
    ) -> Result<Bytes, ClientError> {
        let msg = Message::parse(request.clone()).map_err(|e| ClientError::Protocol(format!("bad request: {e}")))?;
        let Some(id) = msg.id().filter(|_| msg.kind() == Kind::Request) else {
            return Err(ClientError::Protocol("request() needs a request with an id".into()));
        };
        let method = msg.method().unwrap_or_default().to_owned();
        let call = async {
            let mut stream = self.open(request, extra).await?;
            while let Some(m) = stream.next().await? {
                if answers(&m, &id) {
                    return Ok(m);
                }
                if let Some(tx) = notes
                    && is_notification(&m)
                {
                    let _ = tx.send(m).await;
                }
            }
            Err(ClientError::Closed(format!("the server ended its answer to {method:?} without a response")))
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| ClientError::Timeout {
            after: self.timeout,
            waiting_for: format!("the answer to {method:?}"),
        })?
    }

    /// POSTs one request and returns its answer's messages as they come (a
    /// `subscriptions/listen` stream lasts until the server ends it or the stream is
    /// dropped). Only the opening is bounded by the timeout.
    pub async fn open(&self, request: Bytes, extra: &[(String, String)]) -> Result<ModernStream, ClientError> {
        let msg = Message::parse(request.clone()).map_err(|e| ClientError::Protocol(format!("bad request: {e}")))?;
        let headers = self.request_headers(&msg, extra)?;
        let send = self
            .http
            .post(self.url.clone())
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(request)
            .send();
        let resp = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| ClientError::Timeout { after: self.timeout, waiting_for: format!("POST {}", self.url) })?
            .map_err(|e| connection_error(format!("POST {}", self.url), e))?;
        let status = resp.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Err(ClientError::Protocol(format!("server answered a request with HTTP {}", status.as_u16())));
        }
        if has_content_type(&resp, "text/event-stream") && status.is_success() {
            return Ok(ModernStream { queued: VecDeque::new(), reader: Some(SseReader::new(resp)) });
        }
        if has_content_type(&resp, "application/json") {
            // An error status with a JSON-RPC body is an answer (the revision ties statuses
            // to error codes); one without is an HTTP error.
            let body = read_capped(resp, MAX_MESSAGE_BYTES).await?;
            return match split(body.clone()) {
                Ok(messages) => Ok(ModernStream { queued: messages.into(), reader: None }),
                Err(_) if !status.is_success() => Err(ClientError::HttpStatus {
                    status: status.as_u16(),
                    method: "POST",
                    url: self.url.to_string(),
                    body: String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned(),
                }),
                Err(e) => Err(e),
            };
        }
        if !status.is_success() {
            return Err(status_error(resp, "POST").await);
        }
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
        Err(ClientError::Protocol(format!("unexpected response content type {ct:?}")))
    }

    /// The revision's headers for `msg`, after the client's own.
    fn request_headers(&self, msg: &Message, extra: &[(String, String)]) -> Result<HeaderMap, ClientError> {
        let mut headers = self.headers.clone();
        let invalid = |name: &str| ClientError::InvalidHeader { name: name.to_owned(), reason: "bad value".into() };
        let version = modern::meta_version(msg.params_raw()).unwrap_or_else(|| MODERN_PROTOCOL_VERSION.to_owned());
        let method = msg.method().unwrap_or_default();
        let mut put = |name: &str, value: &str| -> Result<(), ClientError> {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ClientError::InvalidHeader { name: name.to_owned(), reason: "bad name".into() })?;
            let v = HeaderValue::from_str(value).map_err(|_| invalid(name))?;
            headers.insert(n, v);
            Ok(())
        };
        put(modern::VERSION_HEADER, &version)?;
        put(modern::METHOD_HEADER, &encode_header_value(method))?;
        if let Some(member) = modern::name_member(method)
            && let Some(name) = msg.params_string(member)
        {
            put(modern::NAME_HEADER, &encode_header_value(&name))?;
        }
        for (name, value) in extra {
            put(name, value)?;
        }
        Ok(headers)
    }
}

fn answers(m: &Bytes, id: &RequestId) -> bool {
    Message::parse(m.clone())
        .is_ok_and(|m| matches!(m.kind(), Kind::Response | Kind::Error) && m.id().as_ref() == Some(id))
}

fn is_notification(m: &Bytes) -> bool {
    Message::parse(m.clone()).is_ok_and(|m| m.kind() == Kind::Notification)
}

/// A mirror header's value (SEP-2243): as is when it is visible ASCII without surrounding
/// whitespace and does not look like the sentinel; otherwise `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let visible = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let sentinel_like = value.starts_with("=?") && value.ends_with("?=");
    let plain = visible && !padded && !sentinel_like;
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn header_values_are_base64_only_when_they_must_be() {
        assert_eq!(encode_header_value("us-west"), "us-west");
        assert_eq!(encode_header_value("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(encode_header_value(" x"), "=?base64?IHg=?=");
        assert_eq!(encode_header_value("=?base64?eA==?="), "=?base64?PT9iYXNlNjQ/ZUE9PT89?=");
        for v in ["us-west", "héllo", " x", "=?base64?eA==?="] {
            assert_eq!(modern::decode_header_value(encode_header_value(v).as_bytes()).unwrap(), v);
        }
    }
}
