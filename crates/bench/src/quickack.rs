//! `--quick-ack`: a TCP stream that re-arms `TCP_QUICKACK` after every read, so the load tool
//! acknowledges at once instead of delaying ACKs up to 40 ms. A server that writes an answer in
//! two segments without `TCP_NODELAY` otherwise stalls on Nagle until that delayed ACK, and the
//! run measures the stall rather than the server. The kernel clears the flag as it sees fit,
//! hence once per read (one extra syscall each).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that may ask for immediate ACKs after each read.
pub struct Stream {
    inner: TcpStream,
    quick_ack: bool,
}

impl Stream {
    pub fn new(inner: TcpStream, quick_ack: bool) -> io::Result<Stream> {
        if quick_ack {
            rustix::net::sockopt::set_tcp_quickack(&inner, true)?;
        }
        Ok(Stream { inner, quick_ack })
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.quick_ack && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Best effort: a failure only brings delayed ACKs back.
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.inner, true);
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
