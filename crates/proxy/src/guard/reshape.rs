//! Applies a [`Reshape`] to an HTTP upstream's answer to one request, whether the server
//! answered with a JSON body or with an SSE stream whose events carry the response among
//! progress notifications. Every other byte and event passes as it came.

use apiary_protocol::Message;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::Reshape;
use crate::answer::{self, Unfilterable};

/// Reshapes the answer to the request whose id (JSON text) is `id`. A body over `max` bytes
/// (JSON), or an event over `max` bytes (SSE), cannot be checked and is replaced by an error:
/// a list is never passed on unfiltered.
pub(crate) async fn reshape_response(res: Response, id: String, reshape: Reshape, max: usize) -> Response {
    let ct = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/json") {
        let (mut parts, body) = res.into_parts();
        let bytes = match axum::body::to_bytes(body, max).await {
            Ok(b) => b,
            Err(_) => return unfiltered(&id),
        };
        let shaped = if is_answer_to(&bytes, &id) { reshape(bytes) } else { bytes };
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(shaped));
    }
    if ct.starts_with("text/event-stream") {
        let (mut parts, body) = res.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        let state = SseState { body: body.into_data_stream(), buf: BytesMut::new(), reshape: Some(reshape), id, max };
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                if let Some(end) = event_end(&st.buf) {
                    let event = st.buf.split_to(end).freeze();
                    let out = st.event(event);
                    return Some((Ok::<Bytes, std::io::Error>(out), Some(st)));
                }
                if st.buf.len() > st.max {
                    tracing::warn!("an SSE event of the upstream exceeded the size limit; the stream ends");
                    let err = sse_event(&error_frame(&st.id));
                    return Some((Ok(err), None));
                }
                match st.body.next().await {
                    Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(std::io::Error::other(e)), None)),
                    None if st.buf.is_empty() => return None,
                    // A last event without its blank line: pass it through as it is.
                    None => {
                        let rest = std::mem::take(&mut st.buf).freeze();
                        let out = st.event(rest);
                        return Some((Ok(out), None));
                    }
                }
            }
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    res
}

struct SseState {
    body: axum::body::BodyDataStream,
    buf: BytesMut,
    reshape: Option<Reshape>,
    id: String,
    max: usize,
}

impl SseState {
    /// One whole event (with its terminating blank line): reshaped if it is the answer.
    fn event(&mut self, event: Bytes) -> Bytes {
        if self.reshape.is_none() {
            return event;
        }
        let Some(data) = event_data(&event) else { return event };
        if !is_answer_to(&data, &self.id) {
            return event;
        }
        let Some(reshape) = self.reshape.take() else { return event };
        let shaped = reshape(data);
        // Keep the event's other fields (its id, for resumption) and replace its data.
        let mut out = BytesMut::new();
        for line in lines(&event) {
            if !line.is_empty() && !line.starts_with(b"data") {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\n");
            }
        }
        out.extend_from_slice(&sse_data(&shaped));
        out.freeze()
    }
}

/// Where the first complete event ends (after its blank line), if one is buffered.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// The event's data: its `data:` lines joined by newlines (WHATWG SSE).
fn event_data(event: &[u8]) -> Option<Bytes> {
    let mut data: Option<BytesMut> = None;
    for line in lines(event) {
        let value = if line == b"data" {
            &b""[..]
        } else if let Some(v) = line.strip_prefix(b"data:") {
            v.strip_prefix(b" ").unwrap_or(v)
        } else {
            continue;
        };
        match &mut data {
            Some(d) => {
                d.extend_from_slice(b"\n");
                d.extend_from_slice(value);
            }
            None => data = Some(BytesMut::from(value)),
        }
    }
    data.map(BytesMut::freeze)
}

fn sse_data(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    for line in frame.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

fn sse_event(frame: &[u8]) -> Bytes {
    sse_data(frame)
}

fn is_answer_to(frame: &Bytes, id: &str) -> bool {
    Message::parse(frame.clone()).is_ok_and(|m| m.is_response() && m.id_raw() == Some(id))
}

fn error_frame(id: &str) -> Bytes {
    answer::unfilterable(Some(id), Unfilterable::TooLarge)
}

fn unfiltered(id: &str) -> Response {
    answer::json(error_frame(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines() {
        assert_eq!(event_end(b"data: a\n\nrest"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn data_lines_join() {
        assert_eq!(event_data(b"id: 1\ndata: {\"a\":\ndata: 1}\n\n").unwrap(), Bytes::from_static(b"{\"a\":\n1}"));
        assert_eq!(event_data(b": comment\n\n"), None);
    }
}
