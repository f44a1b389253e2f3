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
//!   [`OVER_CAPACITY_RESPONSE`] and is closed at once;
//! - a cap on open TCP connections per client address
//!   ([`Config::max_connections_per_ip`]; an IPv6 client counts by its
//!   `auth_ipv6_prefix_len` prefix, trusted proxies only against the global
//!   cap): one address cannot take every slot; a connection over it reads
//!   [`OVER_ADDRESS_CAP_RESPONSE`] and is closed at once;
//! - a cap on the request header ([`Config::max_header_bytes`], which is also
//!   the connection's read buffer, and [`Config::max_headers`]): a larger
//!   header is answered `431` and the connection closed, so an unfinished
//!   header holds at most `max_header_bytes` of memory.
//!
//! Request bodies have their own deadlines, enforced per request by
//! [`crate::request_body`].
//!
//! Graceful shutdown (stop accepting, let in-flight requests finish, close idle
//! connections) and HTTP upgrades (the signaling WebSocket) work as before.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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

use crate::client_ip::{IpNet, unmap};
use crate::config::Config;
use crate::throttle::ipv6_prefix;

/// What a client over the connection cap reads before its socket is closed.
pub const OVER_CAPACITY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
connection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";

/// What a client over its address's connection cap reads before its socket
/// is closed.
pub const OVER_ADDRESS_CAP_RESPONSE: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
connection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";

/// Pause of the accept loop after an accept error that is not about a single
/// connection (e.g. out of file descriptors), so the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The connection-level limits, taken from [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time to receive a request header; also the idle time after
    /// which a keep-alive connection is closed.
    pub header_read_timeout: Duration,
    /// Most open TCP connections, upgraded WebSockets included.
    pub max_connections: usize,
    /// Most open TCP connections from one client address (see [`address_key`]).
    pub max_per_address: usize,
    /// Length of the IPv6 prefix one address counts by.
    pub ipv6_prefix_len: u8,
    /// Peers exempt from the per-address cap (reverse proxies).
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request header (bytes), also the read buffer's size.
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
}

impl ConnectionLimits {
    /// The limits a server with `config` applies.
    pub fn from_config(config: &Config) -> Self {
        ConnectionLimits {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.connection_limit(),
            max_per_address: config.max_connections_per_ip,
            ipv6_prefix_len: config.auth_ipv6_prefix_len,
            trusted_proxies: config.trusted_proxies.clone(),
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
        }
    }
}

/// What one client address counts as for the per-address cap: an IPv4
/// address itself (IPv4-mapped IPv6 unmapped first), an IPv6 address cut to
/// its first `ipv6_prefix_len` bits (one subscriber holds a whole /64).
pub fn address_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    let ip = unmap(ip);
    ipv6_prefix(ip, ipv6_prefix_len).map_or(ip, IpAddr::V6)
}

/// Why a connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken.
    Full,
    /// The client's address holds its share of slots.
    Address,
}

impl Refused {
    /// The response the refused client reads before its socket is closed.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refused::Full => OVER_CAPACITY_RESPONSE,
            Refused::Address => OVER_ADDRESS_CAP_RESPONSE,
        }
    }
}

/// Open connections per client address (entries only for addresses with at
/// least one, so at most `max_connections` entries).
#[derive(Debug)]
struct PerAddress {
    max: usize,
    ipv6_prefix_len: u8,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map only holds counters; a panic elsewhere cannot corrupt them.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool of connection slots: one per open TCP connection, at most
/// `max_per_address` of them per client address.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    global: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
}

impl ConnectionSlots {
    /// A pool for `limits`.
    pub fn new(limits: &ConnectionLimits) -> Self {
        ConnectionSlots {
            global: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Arc::new(PerAddress {
                max: limits.max_per_address,
                ipv6_prefix_len: limits.ipv6_prefix_len,
                exempt: limits.trusted_proxies.clone(),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Binds `stream` from `peer` to a free slot, or hands it back with the
    /// reason when none is free (globally or for `peer`'s address).
    pub fn take<S>(&self, stream: S, peer: IpAddr) -> Result<Counted<S>, (S, Refused)> {
        let Ok(slot) = Arc::clone(&self.global).try_acquire_owned() else {
            return Err((stream, Refused::Full));
        };
        let per = &self.per_address;
        let address = if per.exempt.iter().any(|net| net.contains(peer)) {
            None
        } else {
            let key = address_key(peer, per.ipv6_prefix_len);
            let mut open = per.lock();
            let n = open.entry(key).or_insert(0);
            if *n >= per.max {
                return Err((stream, Refused::Address));
            }
            *n += 1;
            Some(AddressSlot {
                per_address: Arc::clone(per),
                key,
            })
        };
        Ok(Counted {
            inner: stream,
            _slot: slot,
            _address: address,
        })
    }
}

/// One connection counted against its client address; released on drop.
#[derive(Debug)]
struct AddressSlot {
    per_address: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.per_address.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A byte stream holding a connection slot until it is dropped (which, for an
/// upgraded WebSocket, is when the socket closes).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    _slot: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
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
        let Ok(peer) = stream.peer_addr() else {
            return std::future::ready(Err(io::Error::other("peer address unknown")));
        };
        std::future::ready(match self.0.take(stream, peer.ip()) {
            Ok(stream) => {
                // Nagle only adds latency; failing to turn it off is harmless.
                let _ = stream.get_ref().set_nodelay(true);
                Ok((stream, service))
            }
            Err((_, Refused::Full)) => Err(io::Error::other("connection cap reached")),
            Err((_, Refused::Address)) => Err(io::Error::other("address connection cap reached")),
        })
    }
}

/// The HTTP/1.1 connection settings shared by every connection.
fn http1_builder(limits: &ConnectionLimits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(read_buffer_bytes(limits))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    http
}

/// The connection's read buffer: `max_header_bytes`, which the configuration
/// keeps at or above hyper's smallest buffer (8 KiB; hyper panics below it).
pub fn read_buffer_bytes(limits: &ConnectionLimits) -> usize {
    limits
        .max_header_bytes
        .max(crate::config::MIN_MAX_HEADER_BYTES)
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
    let slots = ConnectionSlots::new(&limits);
    let http = http1_builder(&limits);
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
        let stream = match slots.take(stream, remote.ip()) {
            Ok(stream) => stream,
            Err((stream, refused)) => {
                // Best effort: a full socket buffer just means no answer is read.
                let _ = stream.try_write(refused.response());
                tracing::debug!(?refused, "connection cap reached, connection refused");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_address: usize) -> ConnectionLimits {
        let mut config = Config::new("/nonexistent");
        config.max_connections = Some(max);
        config.signaling.max_connections = 1;
        config.max_connections_per_ip = per_address;
        config.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
        ConnectionLimits::from_config(&config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_cap_keys_ipv6_by_prefix_and_exempts_proxies() {
        let slots = ConnectionSlots::new(&limits(8, 2));
        let a1 = slots.take((), ip("192.0.2.1")).unwrap();
        let _a2 = slots.take((), ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            slots.take((), ip("192.0.2.1")).map(|_| ()),
            Err(((), Refused::Address)),
            "an IPv4-mapped address is the same address"
        );
        // Two addresses of one /64 share its budget; another /64 does not.
        let _b1 = slots.take((), ip("2001:db8:1:1::1")).unwrap();
        let _b2 = slots.take((), ip("2001:db8:1:1::2")).unwrap();
        assert!(slots.take((), ip("2001:db8:1:1::3")).is_err());
        let _c = slots.take((), ip("2001:db8:1:2::1")).unwrap();
        // A trusted proxy only counts against the global cap...
        let _p1 = slots.take((), ip("10.0.0.1")).unwrap();
        let _p2 = slots.take((), ip("10.0.0.1")).unwrap();
        let _p3 = slots.take((), ip("10.0.0.1")).unwrap();
        // ...which is now full (8 taken).
        assert_eq!(
            slots.take((), ip("198.51.100.1")).map(|_| ()),
            Err(((), Refused::Full))
        );
        // Closing a connection frees both its slots.
        drop(a1);
        let _a3 = slots.take((), ip("192.0.2.1")).unwrap();
        assert_eq!(slots.per_address.lock().len(), 3);
    }
}
