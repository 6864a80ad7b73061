//! The bounded HTTP/1.1 listener (docs/http-api.md, Limits): request headers at most 16 KiB (else 431), header
//! read timeout 10 s (counted from the first byte of a request), idle keep-alive timeout 60 s,
//! a cap on concurrent connections, and graceful draining on shutdown. A slow or idle client
//! holds only its own connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::tls::TlsSetup;
use tokio::sync::Semaphore;

/// Connection limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `drain_timeout` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    tls: Option<Arc<TlsSetup>>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    serve_connection(stream, app, limits, watcher).await;
                    drop(permit);
                });
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    // The handshake gets the header timeout: a silent TLS client is a slowloris too.
                    let handshake = tls.acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            let identity = tls.identify(
                                stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first()),
                            );
                            let app = app.layer(axum::Extension(identity));
                            serve_connection(stream, app, limits, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }
}

/// Serves one connection (plain or TLS) with the listener's limits until it ends or the
/// graceful shutdown closes it.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: ListenerLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read_bytes = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(CountingIo {
        inner: stream,
        read_bytes: read_bytes.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(RequestTimer {
            read_bytes,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
        })
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) + 8192);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A TCP stream that counts the bytes read, so the timer can tell an idle connection from
/// one that is sending a request.
struct CountingIo<S> {
    inner: S,
    read_bytes: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// hyper's HTTP/1 server arms its header-read timer as soon as it waits for the next request,
/// so on its own it would also close idle keep-alive connections after the header timeout.
/// This timer gives the waiting connection `idle_timeout`, and `header_read_timeout` from the
/// first byte of the request on.
#[derive(Clone)]
struct RequestTimer {
    read_bytes: Arc<AtomicU64>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Timer for RequestTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        // hyper (http1 server) uses `sleep_until` only for the header read timeout.
        let now = tokio::time::Instant::now();
        Box::pin(HeadSleep {
            read_bytes: self.read_bytes.clone(),
            bytes_at_start: self.read_bytes.load(Ordering::Relaxed),
            header_read_timeout: self.header_read_timeout,
            request_started: false,
            sleep: Box::pin(tokio::time::sleep_until(now + self.idle_timeout)),
        })
    }
}

struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for PlainSleep {}

struct HeadSleep {
    read_bytes: Arc<AtomicU64>,
    bytes_at_start: u64,
    header_read_timeout: Duration,
    request_started: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this whenever the connection wakes, which includes every arrival of
        // data: the first poll after bytes arrived starts the header timeout.
        if !self.request_started && self.read_bytes.load(Ordering::Relaxed) > self.bytes_at_start {
            self.request_started = true;
            let deadline = tokio::time::Instant::now() + self.header_read_timeout;
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}
