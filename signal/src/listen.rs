//! Accepting TCP connections and serving HTTP/1.1 on them with the
//! connection-level limits that `axum::serve` does not have:
//!
//! - a header-read timeout ([`Config::header_read_timeout`]): a client must
//!   send a request's complete header within it, so a slowloris client that
//!   trickles header bytes cannot hold a connection; the same clock runs while
//!   a keep-alive connection waits for its next request, so idle connections
//!   are closed after it too;
//! - a cap on open TCP connections ([`Config::connection_limit`]), upgraded
//!   WebSockets included: a connection over the cap reads
//!   [`OVER_CAPACITY_RESPONSE`] and is closed at once.
//!
//! Graceful shutdown (stop accepting, let in-flight requests finish, close idle
//! connections) and HTTP upgrades (the signaling WebSocket) work as before.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::config::Config;

/// What a client over the connection cap reads before its socket is closed.
pub const OVER_CAPACITY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
connection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";

/// Pause of the accept loop after an accept error that is not about a single
/// connection (e.g. out of file descriptors), so the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The connection-level limits, taken from [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time to receive a request header; also the idle time after
    /// which a keep-alive connection is closed.
    pub header_read_timeout: Duration,
    /// Most open TCP connections, upgraded WebSockets included.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits a server with `config` applies.
    pub fn from_config(config: &Config) -> Self {
        ConnectionLimits {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.connection_limit(),
        }
    }
}

/// The pool of connection slots: one per open TCP connection.
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    /// A pool of `max` slots.
    pub fn new(max: usize) -> Self {
        ConnectionSlots(Arc::new(Semaphore::new(max)))
    }

    /// Binds `stream` to a free slot, or hands it back when none is free.
    pub fn take<S>(&self, stream: S) -> Result<Counted<S>, S> {
        match Arc::clone(&self.0).try_acquire_owned() {
            Ok(slot) => Ok(Counted {
                inner: stream,
                _slot: slot,
            }),
            Err(_) => Err(stream),
        }
    }
}

/// A byte stream holding a connection slot until it is dropped (which, for an
/// upgraded WebSocket, is when the socket closes).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
}

impl<S> Counted<S> {
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

/// `axum_server` acceptor (TLS path) that binds every accepted TCP stream to a
/// slot; a stream over the cap is refused (closed before the TLS handshake).
#[derive(Debug, Clone)]
pub struct SlotAcceptor(pub ConnectionSlots);

impl<S> axum_server::accept::Accept<TcpStream, S> for SlotAcceptor {
    type Stream = Counted<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(match self.0.take(stream) {
            Ok(stream) => {
                // Nagle only adds latency; failing to turn it off is harmless.
                let _ = stream.get_ref().set_nodelay(true);
                Ok((stream, service))
            }
            Err(_) => Err(io::Error::other("connection cap reached")),
        })
    }
}

/// The HTTP/1.1 connection settings shared by every connection.
fn http1_builder(limits: ConnectionLimits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    http
}

/// Serves `app` over HTTP/1.1 on `listener` with `limits` until `shutdown`
/// completes; then stops accepting, lets in-flight requests finish and
/// returns once every HTTP connection is closed (upgraded WebSockets live on
/// in their own tasks, as with `axum::serve`).
pub async fn serve(
    app: Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = ConnectionSlots::new(limits.max_connections);
    let http = http1_builder(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let stream = match slots.take(stream) {
            Ok(stream) => stream,
            Err(stream) => {
                // Best effort: a full socket buffer just means no 503 is read.
                let _ = stream.try_write(OVER_CAPACITY_RESPONSE);
                tracing::debug!("connection cap reached, connection refused");
                continue;
            }
        };
        // Nagle only adds latency; failing to turn it off is harmless.
        let _ = stream.get_ref().set_nodelay(true);
        tokio::spawn(serve_connection(
            http.clone(),
            app.clone(),
            stream,
            remote,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    drop(stop_rx);
    // `Err` only means no connection is open any more.
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Accept errors that concern one connection only (the loop goes on at once).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection; on shutdown, finishes the request in flight and closes.
async fn serve_connection(
    http: http1::Builder,
    app: Router,
    stream: Counted<TcpStream>,
    remote: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req)
    });
    let conn = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    // `Err` (sender gone) only happens after shutdown began: stop as well.
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests end up here.
        tracing::debug!(error = %e, "connection closed with an error");
    }
}
