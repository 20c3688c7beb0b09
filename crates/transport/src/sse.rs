//! Server-Sent Events as Apiary writes them: one JSON-RPC message per `message` event,
//! with an event id for resumption, the priming event of 2025-11-25, and keep-alive
//! comments; and as it reads an upstream's: events taken off a buffer, their data joined.

use bytes::{BufMut, Bytes, BytesMut};

/// One `message` event carrying `data` (a single-line JSON text), with an optional id.
pub fn message_event(id: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: message\n");
    // JSON text never needs more than one data line, but a frame from a peer could carry
    // raw newlines as whitespace; split them into data lines as SSE requires.
    for line in data.split(|&b| b == b'\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The priming event: an id and empty data, so a client can resume before the first real
/// event; `retry` tells it how long to wait before reconnecting.
pub fn priming_event(id: &str, retry_ms: u64) -> Bytes {
    Bytes::from(format!("id: {id}\nretry: {retry_ms}\ndata: \n\n"))
}

/// The `endpoint` event of the 2024-11-05 HTTP+SSE transport.
pub fn endpoint_event(url: &str) -> Bytes {
    Bytes::from(format!("event: endpoint\ndata: {url}\n\n"))
}

/// A comment line that keeps idle connections open through proxies.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

/// Takes the first complete SSE event (up to a blank line) off `buf`.
pub fn take_event(buf: &mut BytesMut) -> Option<BytesMut> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    let (at, sep) = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let event = buf.split_to(at);
    let _ = buf.split_to(sep);
    Some(event)
}

/// The `data` of an SSE event: its data lines joined by newlines.
pub fn event_data(event: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(data) = line.strip_prefix(b"data:") {
            if !out.is_empty() {
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed() {
        assert_eq!(&message_event(Some("s-1"), b"{}")[..], b"id: s-1\nevent: message\ndata: {}\n\n");
        assert_eq!(&message_event(None, b"{\n}")[..], b"event: message\ndata: {\ndata: }\n\n");
        assert_eq!(&priming_event("s-0", 3000)[..], b"id: s-0\nretry: 3000\ndata: \n\n");
    }
}
