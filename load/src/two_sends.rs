//! A connection that writes every response in two sends, as some servers and proxies do (the
//! headers, then the body). Without `TCP_NODELAY`, Nagle's algorithm holds the second send
//! until the first is acknowledged, and a client that delays its ACKs (Linux waits up to
//! 40 ms) pays that wait on some answers and not on others: round trips of ~1 ms and ~41 ms
//! from a server that is not loaded at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Wraps a stream; with `split` every write the server makes is cut in two sends.
pub struct TwoSends<S> {
    inner: S,
    split: bool,
    /// The first half of a write went out; the rest goes whole.
    rest_pending: bool,
}

impl<S> TwoSends<S> {
    pub fn new(inner: S, split: bool) -> Self {
        TwoSends {
            inner,
            split,
            rest_pending: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TwoSends<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TwoSends<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let first = if this.split && !this.rest_pending && buf.len() > 1 {
            &buf[..buf.len() / 2]
        } else {
            buf
        };
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, first))?;
        this.rest_pending = this.split && !this.rest_pending && written < buf.len();
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
