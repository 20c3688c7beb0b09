//! The Streamable HTTP transport (MCP 2025-03-26 and later): every message is a POST to one
//! URL; an answer comes back as one JSON body or on an SSE stream tied to that POST, which we
//! resume with `GET` + `Last-Event-ID` when the server closes it early (2025-11-25 polling).

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::error::ClientError;
use super::http::{MAX_MESSAGE_BYTES, SseReader, connection_error, has_content_type, read_capped, status_error};
use super::message::{self, Incoming, RequestId};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
/// How often we re-open a response stream the server closed before answering.
const MAX_RESUMES: u32 = 16;
/// Upper bound on the server's `retry:` hint; the operation timeout bounds it too.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct StreamableHttp {
    http: Client,
    url: Url,
    headers: HeaderMap,
    session_id: OnceLock<HeaderValue>,
    protocol_version: OnceLock<HeaderValue>,
}

impl StreamableHttp {
    pub fn new(http: Client, url: Url, headers: HeaderMap) -> Self {
        StreamableHttp { http, url, headers, session_id: OnceLock::new(), protocol_version: OnceLock::new() }
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.get().and_then(|v| v.to_str().ok())
    }

    /// Records the negotiated revision; every later request carries it as `MCP-Protocol-Version`.
    pub fn set_protocol_version(&self, version: &str) -> Result<(), ClientError> {
        let v = HeaderValue::from_str(version)
            .map_err(|_| ClientError::Protocol(format!("invalid protocol version {version:?}")))?;
        let _ = self.protocol_version.set(v);
        Ok(())
    }

    fn build(&self, method: Method) -> RequestBuilder {
        let mut req = self.http.request(method, self.url.clone()).headers(self.headers.clone());
        if let Some(sid) = self.session_id.get() {
            req = req.header(SESSION_HEADER, sid.clone());
        }
        if let Some(v) = self.protocol_version.get() {
            req = req.header(VERSION_HEADER, v.clone());
        }
        req
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, ClientError> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        self.build(Method::POST)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| connection_error(format!("POST {}", self.url), e))
    }

    /// Sends one request and waits for its response. The caller bounds the wait.
    pub async fn request(&self, id: RequestId, method: &str, params: Option<Value>) -> Result<Value, ClientError> {
        let resp = self.post(&message::request(id, method, params)).await?;
        if method == "initialize" {
            self.capture_session(&resp)?;
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(resp, "POST").await);
        }
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Err(ClientError::Protocol(format!(
                "server answered request {method:?} with HTTP {} and no response",
                status.as_u16()
            )));
        }
        if has_content_type(&resp, "text/event-stream") {
            self.read_stream_until(SseReader::new(resp), id).await
        } else if has_content_type(&resp, "application/json") {
            let body = read_capped(resp, MAX_MESSAGE_BYTES).await?;
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Protocol(format!("response is not JSON: {e}")))?;
            for msg in message::split_batch(value) {
                if let Some(outcome) = self.handle_incoming(msg, id).await {
                    return outcome;
                }
            }
            Err(ClientError::Protocol(format!("JSON response does not answer request id {id}")))
        } else {
            let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
            Err(ClientError::Protocol(format!("unexpected response content type {ct:?}")))
        }
    }

    fn capture_session(&self, resp: &reqwest::Response) -> Result<(), ClientError> {
        let Some(sid) = resp.headers().get(SESSION_HEADER) else {
            return Ok(());
        };
        // The spec allows only visible ASCII in a session id.
        if sid.is_empty() || !sid.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(ClientError::Protocol(
                "server sent an Mcp-Session-Id with characters outside visible ASCII".into(),
            ));
        }
        let _ = self.session_id.set(sid.clone());
        Ok(())
    }

    /// Reads SSE events until the response to `id`, re-opening the stream if the server
    /// closes it after having given us an event id.
    async fn read_stream_until(&self, mut reader: SseReader, id: RequestId) -> Result<Value, ClientError> {
        let mut last_id: Option<String> = None;
        let mut retry_ms: Option<u64> = None;
        let mut resumes = 0;
        loop {
            let next = reader.next_event().await;
            if let Some(l) = reader.last_event_id() {
                last_id = Some(l.to_owned());
            }
            retry_ms = reader.retry_ms().or(retry_ms);
            let ended = match next {
                Ok(Some(ev)) => {
                    if ev.kind() != "message" || ev.data.trim().is_empty() {
                        continue;
                    }
                    let value: Value = serde_json::from_str(&ev.data)
                        .map_err(|e| ClientError::Protocol(format!("SSE event data is not JSON: {e}")))?;
                    for msg in message::split_batch(value) {
                        if let Some(outcome) = self.handle_incoming(msg, id).await {
                            return outcome;
                        }
                    }
                    continue;
                }
                Ok(None) => "the server closed the response stream before answering".to_owned(),
                Err(e @ ClientError::Connection { .. }) => e.to_string(),
                Err(e) => return Err(e),
            };
            let Some(last) = last_id.clone() else {
                return Err(ClientError::Closed(format!("{ended} (request id {id})")));
            };
            if resumes >= MAX_RESUMES {
                return Err(ClientError::Closed(format!(
                    "{ended}; gave up after {MAX_RESUMES} resumptions (request id {id})"
                )));
            }
            resumes += 1;
            let wait = Duration::from_millis(retry_ms.unwrap_or(0)).min(MAX_RETRY_WAIT);
            tokio::time::sleep(wait).await;
            reader = self.resume(&last).await?;
        }
    }

    async fn resume(&self, last_event_id: &str) -> Result<SseReader, ClientError> {
        let resp = self
            .build(Method::GET)
            .header(ACCEPT, "text/event-stream")
            .header(LAST_EVENT_ID, last_event_id)
            .send()
            .await
            .map_err(|e| connection_error(format!("GET {} (resume)", self.url), e))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "GET").await);
        }
        if !has_content_type(&resp, "text/event-stream") {
            return Err(ClientError::Protocol("resumed stream is not text/event-stream".into()));
        }
        Ok(SseReader::new(resp))
    }

    /// Handles one server message; `Some` when it settles request `id`.
    async fn handle_incoming(&self, msg: Value, id: RequestId) -> Option<Result<Value, ClientError>> {
        match message::classify(msg) {
            Incoming::Response { id: Some(rid), outcome } if rid == id => Some(outcome),
            Incoming::Response { id: other, .. } => {
                tracing::debug!(?other, "ignoring a response to a request we did not send");
                None
            }
            Incoming::Request { id: rid, method } => {
                let answer = message::answer_server_request(rid, &method);
                if let Err(e) = self.send_unanswered(&answer).await {
                    tracing::debug!(%method, error = %e, "could not answer a server request");
                }
                None
            }
            Incoming::Notification { method } => {
                tracing::trace!(%method, "server notification");
                None
            }
            Incoming::Invalid(why) => {
                tracing::debug!(%why, "ignoring an invalid message from the server");
                None
            }
        }
    }

    /// POSTs a notification or a response: the server answers 202 without a body.
    pub async fn send_unanswered(&self, msg: &Value) -> Result<(), ClientError> {
        let resp = self.post(msg).await?;
        if resp.status().is_success() { Ok(()) } else { Err(status_error(resp, "POST").await) }
    }

    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), ClientError> {
        self.send_unanswered(&message::notification(method, params)).await
    }

    /// Ends the session with `DELETE`. A server that does not allow that (405) or that already
    /// forgot the session (404) is not an error.
    pub async fn close(&self) -> Result<(), ClientError> {
        if self.session_id.get().is_none() {
            return Ok(());
        }
        let resp =
            self.build(Method::DELETE).send().await.map_err(|e| connection_error(format!("DELETE {}", self.url), e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(status_error(resp, "DELETE").await)
        }
    }
}
