//! The era of an HTTP upstream (mcp-brief.md rule 9), and how a 2026-07-28 POST's answer is
//! read. A `server/discover` POST is the probe: a result offering 2026-07-28 and no legacy
//! revision is a modern-only server, whose legacy clients the proxy bridges (`http_bridge`);
//! anything else (an error, a 4xx, a 404, silence past the timeout) leaves the upstream
//! legacy, served byte for byte as before. Probed once at start, again when the upstream
//! starts refusing (the proxy then forgets what it knew and the next `initialize` asks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use apiary_protocol::{Kind, Message, modern};
use apiary_transport::sse::{event_data, take_event};
use axum::http::{HeaderName, HeaderValue, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

/// The most of a probe's answer read.
const MAX_PROBE_ANSWER: usize = 1024 * 1024;
/// The id of the probe request.
const PROBE_ID: &str = "\"apiary-discover\"";

/// What the proxy knows of its upstream's era.
#[derive(Debug, Clone, Default)]
pub(crate) enum Known {
    /// Not probed yet, or the probe could not reach it: asked again at the next `initialize`.
    #[default]
    Unknown,
    /// It did not answer `server/discover` with a result: a legacy server.
    Legacy,
    /// It answered `server/discover` (the result's JSON text); `only` when it offers no
    /// legacy revision.
    Modern { discover: Bytes, only: bool },
}

impl Known {
    /// The `server/discover` result of a modern-only upstream.
    pub(crate) fn modern_only(&self) -> Option<&Bytes> {
        match self {
            Known::Modern { discover, only: true } => Some(discover),
            _ => None,
        }
    }
}

/// The probe's result, kept by the HTTP front.
#[derive(Default)]
pub(crate) struct UpstreamEra {
    known: Mutex<Known>,
    /// One probe at a time: concurrent `initialize`s wait for the one in flight.
    probing: tokio::sync::Mutex<()>,
    /// Counts the probes that found a modern server: tool annotations learnt from an older
    /// one are not used for a newer one.
    generation: AtomicU64,
}

impl UpstreamEra {
    pub(crate) fn known(&self) -> Known {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The era, probed with `probe` first when it is not known.
    pub(crate) async fn learn(&self, probe: impl Future<Output = Known>) -> Known {
        let known = self.known();
        if !matches!(known, Known::Unknown) {
            return known;
        }
        let _one = self.probing.lock().await;
        let known = self.known();
        if !matches!(known, Known::Unknown) {
            return known;
        }
        let found = probe.await;
        self.set(found.clone());
        found
    }

    /// Records a probe's result (the one at start).
    pub(crate) fn set(&self, found: Known) {
        if let Known::Modern { only, .. } = &found {
            self.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(modern_only = only, "the upstream server speaks 2026-07-28");
        }
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = found;
    }

    /// The upstream refused what its era should have taken: ask again next time.
    pub(crate) fn forget(&self) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*known, Known::Unknown) {
            tracing::info!("the upstream server refused a request of its era: probing it again at the next initialize");
        }
        *known = Known::Unknown;
    }
}

/// The headers of a 2026-07-28 POST besides `Mcp-Name` and `Mcp-Param-*`.
pub(crate) fn modern_post(
    client: &reqwest::Client,
    endpoint: &str,
    method: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> reqwest::RequestBuilder {
    let mut req = client
        .post(endpoint)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", apiary_protocol::bridge::MODERN_VERSION)
        .header("mcp-method", method);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req
}

/// Sends `server/discover` to `endpoint` with `headers` (the proxy's credentials), within
/// `timeout`. An upstream that cannot be reached, or refuses the credentials, stays unknown.
pub(crate) async fn probe(
    client: &reqwest::Client,
    endpoint: &str,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> Known {
    let params = modern::probe_params("apiary", env!("CARGO_PKG_VERSION"));
    let body = format!(r#"{{"jsonrpc":"2.0","id":{PROBE_ID},"method":"server/discover","params":{params}}}"#);
    let asked = async {
        let res = modern_post(client, endpoint, "server/discover", headers).body(body).send().await;
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                tracing::debug!(error = %e, "the server/discover probe did not reach the upstream");
                return Known::Unknown;
            }
        };
        let status = res.status().as_u16();
        if matches!(status, 401 | 403) || status >= 500 {
            return Known::Unknown;
        }
        match read_answer(res, None, MAX_PROBE_ANSWER).await {
            Ok(frame) => discovered(frame),
            Err(_) => Known::Legacy,
        }
    };
    tokio::time::timeout(timeout, asked).await.unwrap_or_else(|_| {
        tracing::info!("the upstream did not answer server/discover in time: taken as a legacy server");
        Known::Legacy
    })
}

/// The era a probe's answer says.
fn discovered(frame: Bytes) -> Known {
    let Ok(m) = Message::parse(frame) else { return Known::Legacy };
    match m.payload_raw().filter(|_| m.kind() == Kind::Response) {
        Some(result) if modern::offers_modern(result.as_bytes()) => Known::Modern {
            discover: Bytes::copy_from_slice(result.as_bytes()),
            only: !modern::offers_legacy(result.as_bytes()),
        },
        _ => Known::Legacy,
    }
}

/// The response in a 2026-07-28 POST's answer (a JSON body, or an SSE stream whose other
/// messages, progress and log lines, go to `out`), at most `max` bytes of it read at once.
pub(crate) async fn read_answer(
    res: reqwest::Response,
    out: Option<&mpsc::Sender<Bytes>>,
    max: usize,
) -> Result<Bytes, String> {
    let mut events = Events::new(res, max);
    while let Some(data) = events.next().await? {
        match Message::parse(data.clone()) {
            Ok(m) if m.is_response() => return Ok(data),
            Ok(_) if events.sse => {
                if let Some(out) = out {
                    let _ = out.send(data).await;
                }
            }
            _ if events.sse => {}
            _ => break,
        }
    }
    Err("the server sent no response".into())
}

/// The messages of an upstream's answer as they arrive: each SSE event's data, or the whole
/// JSON body. At most `max` bytes of one event (or of the body) wait unread, so a
/// long-lived stream (a `subscriptions/listen`) is bounded however long it runs.
pub(crate) struct Events {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// The answer is an SSE stream (else one JSON body).
    pub(crate) sse: bool,
    buf: BytesMut,
    max: usize,
    done: bool,
}

impl Events {
    pub(crate) fn new(res: reqwest::Response, max: usize) -> Events {
        let sse = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        Events { stream: Box::pin(res.bytes_stream()), sse, buf: BytesMut::new(), max, done: false }
    }

    /// The next message's bytes; `None` when the answer ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if self.sse {
                while let Some(event) = take_event(&mut self.buf) {
                    if event.len() > self.max {
                        return Err(format!("an event of the server's answer exceeds {} bytes", self.max));
                    }
                    let data = event_data(&event);
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
            // What waits unread now is one incomplete event (or the JSON body so far).
            if self.buf.len() > self.max {
                return Err(format!("the server's answer exceeds {} bytes", self.max));
            }
            if self.done {
                let rest = self.buf.split().freeze();
                let data = if self.sse { event_data(&rest) } else { rest };
                return Ok((!data.is_empty()).then_some(data));
            }
            match self.stream.next().await {
                // One chunk more than the bound at most (the transport bounds a chunk).
                Some(chunk) => self.buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_are_split_and_their_data_joined() {
        let mut buf = BytesMut::from(&b"data: \nid: 0\nretry: 3000\n\ndata: {\"a\":\r\ndata: 1}\r\n\r\npartial"[..]);
        assert_eq!(&event_data(&take_event(&mut buf).unwrap())[..], b"");
        assert_eq!(&event_data(&take_event(&mut buf).unwrap())[..], b"{\"a\":\n1}");
        assert!(take_event(&mut buf).is_none());
        assert_eq!(&buf[..], b"partial");
    }

    fn response(content_type: &str, body: String) -> reqwest::Response {
        let res = axum::http::Response::builder().header("content-type", content_type).body(body).unwrap();
        reqwest::Response::from(res)
    }

    #[tokio::test]
    async fn a_long_stream_is_read_event_by_event_within_its_bound() {
        // 100 events of ~60 bytes: far more than the 256-byte bound in all, each within it.
        let event = |i: usize| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{{\"i\":{i}}}}}");
        let body: String = (0..100).map(|i| format!("data: {}\n\n", event(i))).collect();
        let mut events = Events::new(response("text/event-stream", body), 256);
        for i in 0..100 {
            assert_eq!(events.next().await.unwrap().unwrap(), Bytes::from(event(i)));
        }
        assert!(events.next().await.unwrap().is_none());
        // One event past the bound is refused.
        let big = format!("data: {}\n\n", "x".repeat(300));
        assert!(Events::new(response("text/event-stream", big), 256).next().await.is_err());
        // A JSON body is one message.
        let json = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let mut events = Events::new(response("application/json", json.into()), 256);
        assert_eq!(events.next().await.unwrap().unwrap(), Bytes::from(json));
        assert!(events.next().await.unwrap().is_none());
    }

    #[test]
    fn a_discover_result_offering_only_2026_is_modern_only() {
        let only = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"apiary-discover","result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#,
        );
        assert!(discovered(only).modern_only().is_some());
        let both = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25","2026-07-28"],"capabilities":{}}}"#,
        );
        assert!(matches!(discovered(both), Known::Modern { only: false, .. }));
        let refused = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#);
        assert!(matches!(discovered(refused), Known::Legacy));
    }
}
