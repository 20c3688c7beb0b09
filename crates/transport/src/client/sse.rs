//! A bounded parser for `text/event-stream` bodies (WHATWG "server-sent events"), written by
//! hand so that one hostile stream can hold at most `max_event_bytes` of memory.

use std::collections::VecDeque;

/// One dispatched event. `event` is `None` for the default type ("message").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// The event type with the spec's default applied.
    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    #[error("SSE stream is not valid UTF-8")]
    NotUtf8,
}

/// Incremental parser: feed it chunks, take the events out.
#[derive(Debug)]
pub(crate) struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the current, still unterminated line.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF belongs to that line ending.
    skip_lf: bool,
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The last event id seen (persists across events, as the spec says).
    last_event_id: Option<String>,
    /// The last `retry:` value, in milliseconds.
    retry_ms: Option<u64>,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            skip_lf: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: None,
            last_event_id: None,
            retry_ms: None,
            ready: VecDeque::new(),
        }
    }

    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// Feeds one chunk of the body.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        if !self.started {
            // A UTF-8 BOM may open the stream; it can be split across chunks, so wait for 3 bytes.
            self.line.extend_from_slice(chunk);
            if self.line.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.line) {
                return Ok(());
            }
            self.started = true;
            let pending = std::mem::take(&mut self.line);
            let body = pending.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&pending);
            return self.push_lines(body);
        }
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.push_lines(chunk)
    }

    fn push_lines(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) {
            let (head, rest) = chunk.split_at(pos);
            self.check_size(self.line.len() + head.len())?;
            self.line.extend_from_slice(head);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line)?;
            chunk = if rest[0] == b'\r' {
                match rest.get(1) {
                    Some(b'\n') => &rest[2..],
                    Some(_) => &rest[1..],
                    None => {
                        self.skip_lf = true;
                        &rest[1..]
                    }
                }
            } else {
                &rest[1..]
            };
            if !chunk.is_empty() {
                self.skip_lf = false;
            }
        }
        self.check_size(self.line.len() + chunk.len())?;
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    fn check_size(&self, line_len: usize) -> Result<(), SseError> {
        if line_len.saturating_add(self.data.len()) > self.max_event_bytes {
            Err(SseError::TooLarge(self.max_event_bytes))
        } else {
            Ok(())
        }
    }

    fn process_line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        if !self.has_data {
            // Per the spec an event with an empty data buffer is not dispatched; its `id:`
            // (a 2025-11-25 "priming" event) has already been recorded above.
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        self.ready.push_back(SseEvent { event: event.filter(|e| !e.is_empty()), data, id: self.last_event_id.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c).unwrap();
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        (out, p)
    }

    #[test]
    fn parses_events_with_all_line_endings_and_split_chunks() {
        let whole = b"\xEF\xBB\xBFevent: endpoint\r\ndata: /messages?x=1\r\n\r\n: keepalive\n\ndata: a\rdata:b\r\rid: 7\nretry: 1500\ndata: {\"x\":1}\n\n";
        let (all_at_once, p) = parse_chunks(&[whole]);
        // The same bytes one at a time must give the same events (split CRLF, split BOM).
        let singles: Vec<&[u8]> = whole.chunks(1).collect();
        let (one_by_one, _) = parse_chunks(&singles);
        assert_eq!(all_at_once, one_by_one);
        assert_eq!(all_at_once.len(), 3);
        assert_eq!(all_at_once[0].kind(), "endpoint");
        assert_eq!(all_at_once[0].data, "/messages?x=1");
        assert_eq!(all_at_once[1].kind(), "message");
        assert_eq!(all_at_once[1].data, "a\nb");
        assert_eq!(all_at_once[2].data, "{\"x\":1}");
        assert_eq!(all_at_once[2].id.as_deref(), Some("7"));
        assert_eq!(p.retry_ms(), Some(1500));
    }

    #[test]
    fn priming_event_without_data_records_the_id_only() {
        let (events, p) = parse_chunks(&[b"id: abc\ndata:\n\n", b"id: def\n\n"]);
        // `data:` with an empty value is still data: one event with "" payload.
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
        assert_eq!(p.last_event_id(), Some("def"));
    }

    #[test]
    fn refuses_oversized_events_and_lines() {
        let mut p = SseParser::new(16);
        assert_eq!(p.push(b"data: 0123456789abcdef\n"), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(16);
        p.push(b"data: 0123456\n").unwrap();
        assert_eq!(p.push(b"data: 0123456\n"), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(16);
        assert_eq!(p.push(&[b'x'; 40]), Err(SseError::TooLarge(16)));
    }

    #[test]
    fn refuses_invalid_utf8() {
        let mut p = SseParser::new(64);
        assert_eq!(p.push(b"data: \xFF\n"), Err(SseError::NotUtf8));
    }
}
