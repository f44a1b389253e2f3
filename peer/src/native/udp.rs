//! The thin tokio layer around [`RtcTransport`]: one UDP socket, the clock
//! and the timer.
//!
//! [`UdpRtc`] is meant to live inside the native peer's driver loop:
//!
//! ```text
//! loop {
//!     tokio::select! {
//!         ev = udp.next_event() => { /* feed ev to the session core */ }
//!         msg = signaling.recv() => { udp.accept_offer(peer, &sdp)?; … }
//!         out = session_output => { udp.send(peer, channel, &bytes)?; }
//!     }
//! }
//! ```
//!
//! Every method reads `Instant::now()`, calls the sans-I/O transport and then
//! sends whatever datagrams it produced. [`UdpRtc::next_event`] waits for a
//! datagram or the transport's next deadline and is cancel-safe, so it can be
//! one branch of a `select!` whose other branches call the methods.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::candidates::HostAddrs;
use super::fingerprint::Fingerprint;
use super::relay::GatherServer;
use super::rtc::{
    RtcTransport, SendError, SendOutcome, TransportConfig, TransportError, TransportEvent,
};
use crate::channels::ChannelId;

/// Receive buffer size. WebRTC datagrams stay below the path MTU (str0m
/// targets about 1200 bytes); anything longer is truncated and then fails to
/// parse, which the transport counts as malformed.
pub const RECV_BUFFER_SIZE: usize = 4096;

/// Kernel receive buffer requested for the socket (`SO_RCVBUF`): 2 MiB.
///
/// One socket carries every connection of the mesh. While a room connects,
/// up to `MAX_ROSTER − 1` DTLS handshakes (certificate flights of several
/// datagrams each), ICE checks and SCTP handshakes arrive at once, and the
/// driver task shares the CPU with the rest of the process. With Linux's
/// default (`net.core.rmem_default`, 208 KiB) the connect benchmark lost
/// about 9 000 datagrams per run at 16 peers (`RcvbufErrors`), and each lost
/// SCTP INIT costs its 3 s initial retransmission timeout. The kernel caps the
/// request at `net.core.rmem_max` (no privilege is needed below it); a
/// smaller buffer is not an error.
pub const UDP_RECV_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// Most datagrams handed to the transport per wake-up of
/// [`UdpRtc::next_event`] before its timers and the caller's other
/// `select!` branches get a turn (the socket is drained in batches, not one
/// datagram per wake-up).
pub const RECV_BATCH: usize = 64;

/// Errors of [`UdpRtc::bind`].
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The socket could not be bound or queried.
    #[error("udp socket: {0}")]
    Io(#[from] io::Error),
    /// The transport could not be created.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Counters of the socket layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams dropped because the socket's send buffer was full or the
    /// send failed.
    pub send_failures: u64,
    /// Datagrams received whose destination could not be inferred.
    pub unroutable: u64,
}

/// An [`RtcTransport`] on a tokio UDP socket.
pub struct UdpRtc<P> {
    socket: UdpSocket,
    local_addr: SocketAddr,
    hosts: Option<HostAddrs>,
    transport: RtcTransport<P>,
    buf: Vec<u8>,
    stats: SocketStats,
}

impl<P> std::fmt::Debug for UdpRtc<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpRtc")
            .field("local_addr", &self.local_addr)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl<P: Copy + Ord + std::fmt::Debug> UdpRtc<P> {
    /// Binds the socket.
    ///
    /// - A concrete address (e.g. `127.0.0.1:0` in tests) is the one and only
    ///   host candidate.
    /// - A wildcard address (`0.0.0.0:port`) announces the bound port on
    ///   every address of `hosts` (see [`HostAddrs::gather`]).
    ///
    /// # Errors
    /// When binding fails or no candidate is usable.
    pub async fn bind(
        addr: SocketAddr,
        hosts: HostAddrs,
        config: TransportConfig,
    ) -> Result<Self, BindError> {
        let socket = UdpSocket::bind(addr).await?;
        // Best effort: the kernel caps the size at `rmem_max`.
        if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(UDP_RECV_BUFFER_BYTES)
        {
            tracing::debug!(error = %e, "udp receive buffer not enlarged");
        }
        let local_addr = socket.local_addr()?;
        let (candidates, hosts) = if local_addr.ip().is_unspecified() {
            (hosts.candidates(local_addr.port()), Some(hosts))
        } else {
            (vec![local_addr], None)
        };
        let transport = RtcTransport::new(config, candidates)?;
        Ok(Self {
            socket,
            local_addr,
            hosts,
            transport,
            buf: vec![0; RECV_BUFFER_SIZE],
            stats: SocketStats::default(),
        })
    }

    /// The kernel's receive buffer size of the socket (Linux reports twice
    /// the usable size), see [`UDP_RECV_BUFFER_BYTES`].
    ///
    /// # Errors
    /// When the socket cannot be queried.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.socket).recv_buffer_size()
    }

    /// The bound socket address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The sans-I/O transport (fingerprints, peer stats, counters).
    #[must_use]
    pub fn transport(&self) -> &RtcTransport<P> {
        &self.transport
    }

    /// Mutable access for tests that play a misbehaving peer.
    #[cfg(test)]
    pub(crate) fn transport_mut(&mut self) -> &mut RtcTransport<P> {
        &mut self.transport
    }

    /// Socket-level counters.
    #[must_use]
    pub fn socket_stats(&self) -> SocketStats {
        self.stats
    }

    /// Our DTLS fingerprint (see [`RtcTransport::local_fingerprint`]).
    #[must_use]
    pub fn local_fingerprint(&self) -> &Fingerprint {
        self.transport.local_fingerprint()
    }

    /// See [`RtcTransport::create_offer`].
    ///
    /// # Errors
    /// As there.
    pub fn create_offer(&mut self, peer: P) -> Result<String, TransportError> {
        let r = self.transport.create_offer(peer, Instant::now());
        self.flush();
        r
    }

    /// See [`RtcTransport::accept_offer`].
    ///
    /// # Errors
    /// As there.
    pub fn accept_offer(&mut self, peer: P, sdp: &str) -> Result<String, TransportError> {
        let r = self.transport.accept_offer(peer, sdp, Instant::now());
        self.flush();
        r
    }

    /// See [`RtcTransport::accept_answer`].
    ///
    /// # Errors
    /// As there.
    pub fn accept_answer(&mut self, peer: P, sdp: &str) -> Result<(), TransportError> {
        let r = self.transport.accept_answer(peer, sdp, Instant::now());
        self.flush();
        r
    }

    /// See [`RtcTransport::add_remote_candidate`].
    ///
    /// # Errors
    /// As there.
    pub fn add_remote_candidate(&mut self, peer: P, candidate: &str) -> Result<(), TransportError> {
        let r = self
            .transport
            .add_remote_candidate(peer, candidate, Instant::now());
        self.flush();
        r
    }

    /// See [`RtcTransport::restart_ice`].
    ///
    /// # Errors
    /// As there.
    pub fn restart_ice(&mut self, peer: P) -> Result<String, TransportError> {
        let r = self.transport.restart_ice(peer, Instant::now());
        self.flush();
        r
    }

    /// See [`RtcTransport::set_ice_servers`].
    pub fn set_ice_servers(&mut self, servers: &[GatherServer]) {
        self.transport.set_ice_servers(servers, Instant::now());
        self.flush();
    }

    /// See [`RtcTransport::close_peer`].
    pub fn close_peer(&mut self, peer: P) {
        self.transport.close_peer(peer, Instant::now());
        self.flush();
    }

    /// See [`RtcTransport::send`].
    ///
    /// # Errors
    /// As there.
    pub fn send(
        &mut self,
        peer: P,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<SendOutcome, SendError> {
        let r = self.transport.send(peer, channel, data, Instant::now());
        self.flush();
        r
    }

    /// Closes every connection (close_notify goes out) and returns the
    /// remaining events.
    pub fn shutdown(&mut self) -> Vec<TransportEvent<P>> {
        let now = Instant::now();
        let peers: Vec<P> = self.transport.peers().collect();
        for p in peers {
            self.transport.close_peer(p, now);
        }
        self.transport.close_relays(now);
        self.flush();
        std::iter::from_fn(|| self.transport.poll_event()).collect()
    }

    /// Sends every pending datagram. UDP may drop; so do we when the socket
    /// buffer is full (str0m retransmits what matters).
    fn flush(&mut self) {
        while let Some(t) = self.transport.poll_transmit() {
            if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                self.stats.send_failures += 1;
            }
        }
    }

    /// Hands one received datagram to the transport.
    fn on_recv(&mut self, r: io::Result<(usize, SocketAddr)>) {
        let now = Instant::now();
        match r {
            Ok((n, source)) => {
                let destination = match &self.hosts {
                    None => Some(self.local_addr),
                    Some(h) => h.destination_for(source, self.local_addr.port()),
                };
                match (destination, self.buf.get(..n)) {
                    (Some(dst), Some(bytes)) => {
                        self.transport.handle_datagram(now, source, dst, bytes);
                    }
                    _ => self.stats.unroutable += 1,
                }
            }
            // ICMP errors surface on some platforms; the transport's ICE
            // timers handle lost peers.
            Err(e) => tracing::debug!(error = %e, "udp recv error"),
        }
    }

    /// Waits for the next transport event, driving the socket and timers
    /// meanwhile. Cancel-safe: dropping the future loses no datagram that was
    /// already handed to the transport and no event.
    pub async fn next_event(&mut self) -> TransportEvent<P> {
        loop {
            self.flush();
            if let Some(ev) = self.transport.poll_event() {
                return ev;
            }
            let deadline = self.transport.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut self.buf) => {
                    self.on_recv(r);
                    // Drain what else is queued (bounded) while we run.
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut self.buf) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            r => self.on_recv(r),
                        }
                    }
                    let now = Instant::now();
                    if deadline.is_some_and(|t| t <= now) {
                        self.transport.handle_timeout(now);
                    }
                }
                () = sleep => {
                    self.transport.handle_timeout(Instant::now());
                }
            }
        }
    }
}
