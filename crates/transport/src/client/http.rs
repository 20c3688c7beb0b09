//! HTTP plumbing shared by both transports: bounded body reads, error excerpts, content-type
//! checks and an SSE event reader over a reqwest response.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::Response;
use reqwest::header::CONTENT_TYPE;

use super::error::ClientError;
use super::sse::{SseEvent, SseParser};

/// Largest JSON body or SSE event we accept from a server.
pub(crate) const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// How much of an error body we keep for the error message.
const EXCERPT_BYTES: usize = 1024;

pub(crate) fn connection_error(context: impl Into<String>, source: reqwest::Error) -> ClientError {
    ClientError::Connection { context: context.into(), source }
}

/// True when the response's media type is `wanted` (parameters and case ignored).
pub(crate) fn has_content_type(resp: &Response, wanted: &str) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(wanted))
}

/// Reads the whole body, refusing more than `cap` bytes.
pub(crate) async fn read_capped(resp: Response, cap: usize) -> Result<Bytes, ClientError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ClientError::Protocol(format!("response body larger than {cap} bytes")));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| connection_error("reading the response body", e))?;
        if buf.len() + chunk.len() > cap {
            return Err(ClientError::Protocol(format!("response body larger than {cap} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Turns a response with an unusable status into an error carrying a short body excerpt.
pub(crate) async fn status_error(resp: Response, method: &'static str) -> ClientError {
    let status = resp.status().as_u16();
    let url = resp.url().to_string();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while body.len() < EXCERPT_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(EXCERPT_BYTES);
    ClientError::HttpStatus { status, method, url, body: String::from_utf8_lossy(&body).into_owned() }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Reads SSE events from a response body, one at a time.
pub(crate) struct SseReader {
    body: ByteStream,
    parser: SseParser,
}

impl SseReader {
    pub fn new(resp: Response) -> Self {
        SseReader { body: Box::pin(resp.bytes_stream()), parser: SseParser::new(MAX_MESSAGE_BYTES) }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(ev) = self.parser.next_event() {
                return Ok(Some(ev));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.parser.push(&chunk).map_err(|e| ClientError::Protocol(e.to_string()))?,
                Some(Err(e)) => return Err(connection_error("reading the SSE stream", e)),
                None => return Ok(None),
            }
        }
    }

    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    pub fn retry_ms(&self) -> Option<u64> {
        self.parser.retry_ms()
    }
}
