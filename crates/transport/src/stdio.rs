//! stdio framing: one compact JSON-RPC message per line, both ways, with a cap on how
//! long a line may grow. A line over the cap is discarded up to its newline, and its
//! first bytes are kept so the caller can still tell whose answer it was.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How much of an oversized line is kept for the caller to inspect.
pub const OVERSIZED_HEAD: usize = 64 * 1024;

/// One unit read from a child's stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its newline (a trailing `\r` is removed too).
    Frame(Bytes),
    /// A line longer than the cap: its full length and its first bytes.
    Oversized { len: usize, head: Bytes },
}

/// Reads newline-delimited frames, never holding more than `max_line` bytes of a line.
pub struct LineReader<R> {
    inner: R,
    buf: BytesMut,
    max_line: usize,
    /// Set while skipping the rest of an oversized line: its length so far and its head.
    skipping: Option<(usize, Bytes)>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader { inner, buf: BytesMut::with_capacity(8 * 1024), max_line: max_line.max(1), skipping: None }
    }

    /// The cap on one line, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The next line, or `None` at end of stream. A partial last line without a newline is
    /// returned as a frame.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_buffered() {
                return Ok(Some(line));
            }
            let n = self.read_more().await?;
            if n == 0 {
                if let Some((len, head)) = self.skipping.take() {
                    return Ok(Some(Line::Oversized { len: len + self.buf.len(), head }));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = self.buf.split().freeze();
                return Ok(Some(Line::Frame(trim_cr(rest))));
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            // Never reserve past the cap (plus one read) for a single line.
            let want = (self.buf.len() + 64 * 1024).min(self.max_line + 64 * 1024);
            self.buf.reserve(want.saturating_sub(self.buf.len()).max(4096));
        }
        self.inner.read_buf(&mut self.buf).await
    }

    /// A line from what is buffered, or `None` when more must be read.
    fn take_buffered(&mut self) -> Option<Line> {
        match memchr::memchr(b'\n', &self.buf) {
            Some(pos) => {
                let line = self.buf.split_to(pos + 1);
                match self.skipping.take() {
                    Some((len, head)) => Some(Line::Oversized { len: len + pos, head }),
                    None if pos > self.max_line => {
                        let head = Bytes::copy_from_slice(&line[..OVERSIZED_HEAD.min(pos)]);
                        Some(Line::Oversized { len: pos, head })
                    }
                    None => {
                        let mut frame = line.freeze();
                        frame.truncate(pos);
                        Some(Line::Frame(trim_cr(frame)))
                    }
                }
            }
            None => {
                if self.buf.len() > self.max_line {
                    // Over the cap without a newline: keep the head, drop the rest.
                    let dropped = self.buf.split();
                    let (len, head) = self
                        .skipping
                        .take()
                        .unwrap_or_else(|| (0, Bytes::copy_from_slice(&dropped[..OVERSIZED_HEAD.min(dropped.len())])));
                    self.skipping = Some((len + dropped.len(), head));
                } else if let Some((len, head)) = self.skipping.take() {
                    let dropped = self.buf.split();
                    self.skipping = Some((len + dropped.len(), head));
                }
                None
            }
        }
    }
}

fn trim_cr(mut b: Bytes) -> Bytes {
    if b.last() == Some(&b'\r') {
        b.truncate(b.len() - 1);
    }
    b
}

/// Writes one frame and its newline, in one write (two would cost the reader a wake-up for
/// half a line). See [`push_frame`].
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    let mut line = BytesMut::with_capacity(frame.len() + 1);
    push_frame(&mut line, frame);
    w.write_all(&line).await?;
    w.flush().await
}

/// Appends one frame and its newline to `out`, so several can go out in one write. Newlines
/// inside valid JSON can only be whitespace (a raw newline is illegal inside a string), so
/// they are turned into spaces: a frame never spans lines.
pub fn push_frame(out: &mut BytesMut, frame: &[u8]) {
    if memchr::memchr2(b'\n', b'\r', frame).is_some() {
        out.extend(frame.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    } else {
        out.extend_from_slice(frame);
    }
    out.extend_from_slice(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, cap);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_trims_cr() {
        let got = lines(b"a\r\nbc\n\nd", 100).await;
        assert_eq!(
            got,
            vec![
                Line::Frame(Bytes::from_static(b"a")),
                Line::Frame(Bytes::from_static(b"bc")),
                Line::Frame(Bytes::new()),
                Line::Frame(Bytes::from_static(b"d")),
            ]
        );
    }

    #[tokio::test]
    async fn oversized_lines_are_skipped_and_reading_resumes() {
        let mut input = b"{\"id\":5,".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300_000));
        input.extend_from_slice(b"\nok\n");
        let got = lines(&input, 1000).await;
        assert_eq!(got.len(), 2);
        match &got[0] {
            Line::Oversized { len, head } => {
                assert_eq!(*len, 300_008);
                assert!(head.starts_with(b"{\"id\":5,"));
                assert!(head.len() <= OVERSIZED_HEAD);
            }
            other => panic!("expected oversized, got {other:?}"),
        }
        assert_eq!(got[1], Line::Frame(Bytes::from_static(b"ok")));
    }

    #[tokio::test]
    async fn write_frame_flattens_newlines() {
        let mut out = Vec::new();
        write_frame(&mut out, b"{\n\"a\": 1\r\n}").await.unwrap();
        assert_eq!(out, b"{ \"a\": 1  }\n");
    }
}
