//! The sans-I/O WebRTC transport: many str0m peer connections behind one UDP
//! socket.
//!
//! [`RtcTransport`] owns one [`str0m::Rtc`] per remote peer, keyed by a peer id
//! `P`. It never touches a socket or a clock: the driver feeds it datagrams
//! ([`RtcTransport::handle_datagram`]) and timeouts
//! ([`RtcTransport::handle_timeout`]) with `now`, and polls out datagrams to
//! send ([`RtcTransport::poll_transmit`]), events
//! ([`RtcTransport::poll_event`]) and the next deadline
//! ([`RtcTransport::poll_timeout`]). Every mutation of an `Rtc` is followed by
//! draining its `poll_output` until it yields a timeout, as str0m requires.
//!
//! Data channels are the three pre-negotiated ones of [`crate::channels`]:
//! the offerer declares them in its SDP offer, the answerer creates them with
//! the direct API right after accepting the offer; both use the fixed SCTP
//! stream ids, so no DCEP handshake is involved. A channel opened by the
//! remote with any other id is closed again and counted.
//!
//! Limits (all named, all enforced here):
//! - [`MAX_FRAME_SIZE`]: larger outgoing frames are refused, larger incoming
//!   ones dropped and counted.
//! - [`TransportConfig::max_queued_bytes`]: per-peer send queue for frames the
//!   SCTP buffer could not take yet; beyond it `send` fails with
//!   [`SendError::QueueFull`].
//! - [`TransportConfig::send_stall_limit`]: a peer whose queue stays non-empty
//!   that long (it does not read) is dropped ([`CloseReason::SendStalled`]).
//! - [`TransportConfig::connect_timeout`], [`TransportConfig::idle_timeout`],
//!   [`TransportConfig::disconnect_grace`]: a peer that never connects, or
//!   goes silent and stays so, is dropped.
//! - [`TransportConfig::max_peers`]: connections per transport.
//! - [`MAX_REMOTE_CANDIDATES`]: remote candidates remembered per peer (for
//!   naming the type of the selected pair and of what was tried).
//!
//! STUN/TURN: [`RtcTransport::set_ice_servers`] starts a
//! [`super::relay::Gatherer`] on the same socket. Its server-reflexive and
//! relayed candidates are added to every connection (new ones at creation,
//! existing ones trickled: [`TransportEvent::LocalCandidate`]). Datagrams
//! str0m sends from the relayed address go through the TURN server;
//! datagrams from a STUN/TURN server go to the gatherer, and what it relays
//! to us is fed to str0m as received on the relayed address.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, Reliability};
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use super::fingerprint::Fingerprint;
use super::relay::{CandidateType, GatherServer, GatherStats, Gatherer, RelayState};
use super::str0m_log::StreamDropCounter;
use crate::channels::{self, ChannelId, ChannelSpec, Delivery};

/// Largest data-channel message the transport sends or delivers, in bytes.
/// Frames of the protocol are far smaller; browsers only portably handle
/// messages up to 64 KiB. Larger outgoing frames are refused with
/// [`SendError::TooLarge`]; larger incoming ones are dropped and counted in
/// [`PeerStats::oversized_dropped`].
pub const MAX_FRAME_SIZE: usize = 16 * 1024;

/// The SCTP max-message-size this transport advertises (`a=max-message-size`)
/// and reassembles. Above [`MAX_FRAME_SIZE`] on purpose: an oversized frame
/// from a remote peer is then dropped by us and counted, instead of breaking
/// the SCTP association.
pub const SCTP_MAX_MESSAGE_SIZE: u32 = 64 * 1024;

/// Remote candidates remembered per peer (address → type). More are still
/// given to str0m, only not remembered: a pair on such an address is
/// reported as peer-reflexive.
pub const MAX_REMOTE_CANDIDATES: usize = 64;

/// How often str0m reports a connection's statistics (the ICE round trip
/// shown per peer in `status`).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Default number of peer connections one transport serves (a room has at
/// most 16 members; the margin covers reconnects racing old connections).
pub const DEFAULT_MAX_PEERS: usize = 32;

/// Default per-peer bytes queued while the SCTP send buffer is full.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 256 * 1024;

/// Default time a peer's send queue may stay non-empty before the peer is
/// dropped as stalled.
pub const DEFAULT_SEND_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Default time from creating a connection to DTLS being up; a link not up
/// by then is explained to the user ([`crate::ice::LINK_FAILURE_TIMEOUT`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = crate::ice::LINK_FAILURE_TIMEOUT;

/// Default time a connected peer may send nothing at all (ICE keeps a working
/// pair alive with a check at least every [`IceTiming::max_rto`]) before it
/// counts as [`TransportEvent::Disconnected`]. str0m's own ICE verdict needs
/// at least 15 s of silence; this makes it configurable.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(12);

/// Default time a connected peer may stay ICE-disconnected (no answer to
/// connectivity checks) before it is dropped. An ICE restart
/// ([`RtcTransport::restart_ice`]) restarts this clock.
pub const DEFAULT_DISCONNECT_GRACE: Duration = Duration::from_secs(15);

/// ICE connectivity-check timing, which decides how fast a vanished peer is
/// noticed (str0m marks ICE disconnected once checks stay unanswered for
/// roughly the sum of the retransmission delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceTiming {
    /// First STUN retransmission timeout (doubles per retry).
    pub initial_rto: Duration,
    /// Cap on the STUN retransmission timeout; also the check interval of a
    /// working pair.
    pub max_rto: Duration,
    /// Unanswered checks before a pair counts as failed.
    pub max_retransmits: usize,
}

impl Default for IceTiming {
    /// str0m's defaults: 250 ms, 3 s, 9 retransmits (about 20 s to notice).
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_millis(250),
            max_rto: Duration::from_secs(3),
            max_retransmits: 9,
        }
    }
}

/// Configuration of a [`RtcTransport`]. Every field is a documented limit.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Peer connections at most ([`DEFAULT_MAX_PEERS`]).
    pub max_peers: usize,
    /// Per-peer send queue in bytes ([`DEFAULT_MAX_QUEUED_BYTES`]).
    pub max_queued_bytes: usize,
    /// Stalled-sender limit ([`DEFAULT_SEND_STALL_LIMIT`]).
    pub send_stall_limit: Duration,
    /// Connect deadline ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// ICE-disconnected grace ([`DEFAULT_DISCONNECT_GRACE`]).
    pub disconnect_grace: Duration,
    /// Silence after which a connected peer counts as disconnected
    /// ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// STUN timing of the ICE agent.
    pub ice: IceTiming,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_peers: DEFAULT_MAX_PEERS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            send_stall_limit: DEFAULT_SEND_STALL_LIMIT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            disconnect_grace: DEFAULT_DISCONNECT_GRACE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ice: IceTiming::default(),
        }
    }
}

/// A UDP datagram the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Local address to send from (one of the host candidates).
    pub source: SocketAddr,
    /// Remote address.
    pub destination: SocketAddr,
    /// Payload.
    pub contents: Vec<u8>,
}

/// Why a peer connection ended. After [`TransportEvent::PeerClosed`] the peer
/// id is unknown to the transport and may be reused for a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`RtcTransport::close_peer`] was called.
    Local,
    /// The remote closed DTLS/SCTP.
    RemoteClosed,
    /// Not connected within [`TransportConfig::connect_timeout`].
    ConnectTimeout,
    /// The peer stayed disconnected (ICE verdict or
    /// [`TransportConfig::idle_timeout`] of silence) longer than
    /// [`TransportConfig::disconnect_grace`].
    IceFailed,
    /// The send queue stayed non-empty longer than
    /// [`TransportConfig::send_stall_limit`].
    SendStalled,
    /// A new offer with a different DTLS fingerprint replaced the connection.
    Replaced,
    /// str0m reported an error for this connection.
    Error(String),
}

/// What the transport reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent<P> {
    /// ICE and DTLS are up for the first time.
    Connected(P),
    /// A pre-negotiated channel is open and can carry data.
    ChannelOpen(P, ChannelId),
    /// A local candidate was gathered after the connection's SDP was made:
    /// the driver trickles it to the peer (`candidate:` line, for the one
    /// media section, index 0).
    LocalCandidate(P, String),
    /// A binary (or text) message arrived, at most [`MAX_FRAME_SIZE`] bytes.
    Data {
        /// Sender.
        peer: P,
        /// Channel it came on.
        channel: ChannelId,
        /// The message bytes, exactly as sent.
        data: Vec<u8>,
    },
    /// A channel closed; the connection may still be up.
    ChannelClosed(P, ChannelId),
    /// ICE lost the peer, or nothing arrived from it for
    /// [`TransportConfig::idle_timeout`]; it may come back by itself or after
    /// [`RtcTransport::restart_ice`]. Dropped after
    /// [`TransportConfig::disconnect_grace`].
    Disconnected(P),
    /// The peer is reachable again after [`TransportEvent::Disconnected`].
    Reconnected(P),
    /// The connection is gone; the peer id is free again.
    PeerClosed {
        /// The peer.
        peer: P,
        /// Why.
        reason: CloseReason,
    },
}

/// Errors of the signaling-side operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// No connection with this peer.
    #[error("no connection with this peer")]
    UnknownPeer,
    /// A connection with this peer already exists.
    #[error("a connection with this peer already exists")]
    PeerExists,
    /// [`TransportConfig::max_peers`] reached.
    #[error("too many peer connections (limit {0})")]
    TooManyPeers(usize),
    /// The remote SDP or candidate could not be parsed or applied.
    #[error("bad remote description: {0}")]
    RemoteSdp(String),
    /// An answer arrived but no offer of ours is pending.
    #[error("no offer is pending for this peer")]
    NoPendingOffer,
    /// None of the local addresses was accepted as a host candidate.
    #[error("no usable local candidate")]
    NoLocalCandidate,
    /// The crypto backend could not generate a DTLS certificate.
    #[error("cannot generate a DTLS certificate")]
    Certificate,
    /// str0m refused the operation.
    #[error("webrtc: {0}")]
    Rtc(String),
}

/// Why [`RtcTransport::send`] did not take a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No connection with this peer.
    #[error("no connection with this peer")]
    UnknownPeer,
    /// Not one of the pre-negotiated channels.
    #[error("unknown channel {0}")]
    UnknownChannel(u16),
    /// Above [`MAX_FRAME_SIZE`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The per-peer queue is at [`TransportConfig::max_queued_bytes`]; the
    /// frame was not taken.
    #[error("send queue full")]
    QueueFull,
}

/// What [`RtcTransport::send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Handed to SCTP.
    Sent,
    /// Queued: the channel is not open yet or the SCTP buffer is full. It
    /// goes out in order as soon as possible.
    Queued,
}

/// Per-peer connection state as seen by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Waiting for ICE + DTLS.
    Connecting,
    /// Up.
    Connected,
    /// Was up, ICE currently lost.
    Disconnected,
}

/// Counters and state of one peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// Connection state.
    pub state: PeerState,
    /// Open channels, by id.
    pub open_channels: Vec<ChannelId>,
    /// Bytes waiting in the send queue.
    pub queued_bytes: usize,
    /// Incoming messages above [`MAX_FRAME_SIZE`] that were dropped.
    pub oversized_dropped: u64,
    /// Incoming messages or channels with an id that is not ours: a
    /// channel the remote opened in band (closed at once), a second open
    /// of one of ours, data on a channel that is not ours, and data on a
    /// stream id with no channel at all (dropped inside str0m, counted
    /// here instead of logged per message).
    pub unknown_channel_dropped: u64,
    /// Round trip of the last ICE connectivity check on the selected
    /// candidate pair (refreshed every [`STATS_INTERVAL`]).
    pub rtt: Option<Duration>,
    /// Types of the selected candidate pair, `(local, remote)` (refreshed
    /// every [`STATS_INTERVAL`]): the path the link uses.
    pub selected_pair: Option<(CandidateType, CandidateType)>,
    /// Types of the candidates the peer announced (SDP and trickled).
    pub remote_types: Vec<CandidateType>,
}

/// Transport-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams no connection accepted.
    pub unmatched_datagrams: u64,
    /// Datagrams that were not STUN/DTLS/RTP at all.
    pub malformed_datagrams: u64,
}

struct QueuedFrame {
    channel: ChannelId,
    data: Vec<u8>,
}

struct PeerConn {
    rtc: Rtc,
    state: PeerState,
    created: Instant,
    /// When the peer entered `Disconnected` (or its last ICE restart).
    disconnected_since: Option<Instant>,
    /// Last datagram from the peer (or last ICE restart).
    last_rx: Instant,
    /// Offer of ours waiting for an answer.
    pending_offer: Option<SdpPendingOffer>,
    /// Our channel id → str0m's channel handle, once open.
    open: BTreeMap<ChannelId, str0m::channel::ChannelId>,
    queue: VecDeque<QueuedFrame>,
    queued_bytes: usize,
    /// Since when the queue has been non-empty.
    stalled_since: Option<Instant>,
    rtc_timeout: Instant,
    oversized_dropped: u64,
    unknown_channel_dropped: u64,
    rtt: Option<Duration>,
    /// The selected pair's `(local, remote)` addresses, from str0m's stats.
    selected: Option<(SocketAddr, SocketAddr)>,
    /// Remote candidates announced by the peer, at most
    /// [`MAX_REMOTE_CANDIDATES`].
    remote_candidates: BTreeMap<SocketAddr, CandidateType>,
    remote_fingerprint: Option<Fingerprint>,
    /// Test hook: a channel on a stream id that is not ours, made by
    /// `raw_stream_write` to play a misbehaving remote.
    #[cfg(test)]
    raw_stream: Option<(u16, str0m::channel::ChannelId)>,
}

impl PeerConn {
    /// Whether `id` is the test hook's own channel.
    #[cfg(test)]
    fn is_raw_stream(&self, id: str0m::channel::ChannelId) -> bool {
        self.raw_stream.is_some_and(|(_, c)| c == id)
    }

    /// Never outside tests: the hook does not exist.
    #[cfg(not(test))]
    fn is_raw_stream(&self, _id: str0m::channel::ChannelId) -> bool {
        false
    }
}

/// Many WebRTC peer connections on one UDP socket, sans I/O. See the module
/// docs for the driving contract.
pub struct RtcTransport<P> {
    config: TransportConfig,
    crypto: Arc<CryptoProvider>,
    cert: DtlsCert,
    local_fingerprint: Fingerprint,
    local_candidates: Vec<SocketAddr>,
    peers: BTreeMap<P, PeerConn>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransportEvent<P>>,
    stats: TransportStats,
    /// Counts str0m's drops of data on unknown stream ids instead of
    /// logging each.
    stream_drops: StreamDropCounter,
    /// STUN/TURN, once the driver gave servers.
    gatherer: Option<Gatherer>,
    /// Candidates gathered so far (added to every new connection).
    gathered: Vec<(Candidate, CandidateType)>,
    /// The gatherer's next deadline (cached: polling it needs `&mut`).
    gather_timeout: Option<Instant>,
    /// Remote candidate types of connections that failed to come up
    /// (`ConnectTimeout` / `IceFailed`), until a new connection with the
    /// peer starts; at most `max_peers` entries.
    failed_remote_types: BTreeMap<P, Vec<CandidateType>>,
    /// The latest `now` given to any call (for relaying datagrams from
    /// [`Self::poll_transmit`], which takes none).
    last_now: Instant,
}

impl<P> fmt::Debug for RtcTransport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtcTransport")
            .field("local_candidates", &self.local_candidates)
            .field("local_fingerprint", &self.local_fingerprint)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn channel_config(spec: ChannelSpec) -> ChannelConfig {
    ChannelConfig {
        label: spec.label.to_owned(),
        ordered: spec.delivery.ordered(),
        reliability: match spec.delivery {
            Delivery::ReliableOrdered => Reliability::Reliable,
            Delivery::UnorderedNoRetransmit => Reliability::MaxRetransmits {
                retransmits: spec.delivery.max_retransmits().unwrap_or(0),
            },
        },
        negotiated: Some(spec.id.get()),
        protocol: String::new(),
    }
}

impl<P: Copy + Ord + fmt::Debug> RtcTransport<P> {
    /// A transport announcing `local_candidates` (the socket's address on each
    /// host interface; never a wildcard address). One DTLS certificate is
    /// generated for the transport and used for every connection, so
    /// [`Self::local_fingerprint`] is stable and can be signed once.
    ///
    /// # Errors
    /// [`TransportError::Certificate`] when the crypto backend cannot make a
    /// certificate, [`TransportError::NoLocalCandidate`] when no address is
    /// usable as a host candidate.
    pub fn new(
        config: TransportConfig,
        local_candidates: Vec<SocketAddr>,
    ) -> Result<Self, TransportError> {
        let usable: Vec<SocketAddr> = local_candidates
            .into_iter()
            .filter(|a| Candidate::host(*a, "udp").is_ok())
            .collect();
        if usable.is_empty() {
            return Err(TransportError::NoLocalCandidate);
        }
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or(TransportError::Certificate)?;
        let local_fingerprint = Fingerprint::sha256_of_der(&cert.certificate);
        Ok(Self {
            config,
            crypto,
            cert,
            local_fingerprint,
            local_candidates: usable,
            peers: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TransportStats::default(),
            stream_drops: StreamDropCounter::new(),
            gatherer: None,
            gathered: Vec::new(),
            gather_timeout: None,
            failed_remote_types: BTreeMap::new(),
            last_now: Instant::now(),
        })
    }

    /// The local address server-reflexive and relayed candidates are based
    /// on: the first non-loopback host candidate (where a datagram from a
    /// server arrives), else the first.
    fn gather_base(&self) -> Option<SocketAddr> {
        self.local_candidates
            .iter()
            .find(|a| !a.ip().is_loopback())
            .or_else(|| self.local_candidates.first())
            .copied()
    }

    /// Starts STUN/TURN gathering from `servers` (resolved, IPv4), or, when
    /// it already runs, hands it the servers' fresh credentials (a new
    /// `hello`). An empty list changes nothing.
    pub fn set_ice_servers(&mut self, servers: &[GatherServer], now: Instant) {
        self.last_now = now;
        match self.gatherer.as_mut() {
            Some(g) => g.update_credentials(servers, now),
            None if servers.is_empty() => return,
            None => {
                let Some(base) = self.gather_base() else {
                    return;
                };
                self.gatherer = Some(Gatherer::new(base, servers, now));
            }
        }
        self.pump_gatherer(now);
    }

    /// Local candidate types offered so far (host, and srflx/relay once
    /// gathered).
    #[must_use]
    pub fn local_types(&self) -> Vec<CandidateType> {
        let mut v = vec![CandidateType::Host];
        for (_, t) in &self.gathered {
            if !v.contains(t) {
                v.push(*t);
            }
        }
        v
    }

    /// The TURN servers and the state of their allocations (empty without
    /// TURN).
    #[must_use]
    pub fn relays(&self) -> Vec<(SocketAddr, RelayState)> {
        self.gatherer
            .iter()
            .flat_map(|g| g.relays().map(|(a, r)| (a, r.clone())))
            .collect()
    }

    /// Whether STUN/TURN gathering is over (or never started).
    #[must_use]
    pub fn gathering_done(&self) -> bool {
        self.gatherer.as_ref().is_none_or(Gatherer::done)
    }

    /// Releases the TURN allocations (at shutdown; the server would
    /// otherwise keep them until their lifetime ends).
    pub fn close_relays(&mut self, now: Instant) {
        if let Some(g) = self.gatherer.as_mut() {
            g.close(now);
        }
    }

    /// Counters of the relay path.
    #[must_use]
    pub fn gather_stats(&self) -> GatherStats {
        self.gatherer
            .as_ref()
            .map(Gatherer::stats)
            .unwrap_or_default()
    }

    /// Moves what the gatherer produced where it belongs: new candidates
    /// into every connection (trickled), relayed datagrams into str0m.
    fn pump_gatherer(&mut self, now: Instant) {
        let mut rounds = 0usize;
        loop {
            let Some(g) = self.gatherer.as_mut() else {
                return;
            };
            if let Some((c, t)) = g.poll_candidate() {
                tracing::info!(kind = t.as_str(), addr = %c.addr(), "ice: local candidate gathered");
                let peers: Vec<P> = self.peers.keys().copied().collect();
                for peer in peers {
                    let Some(conn) = self.peers.get_mut(&peer) else {
                        continue;
                    };
                    let line = conn
                        .rtc
                        .add_local_candidate(c.clone())
                        .map(Candidate::to_sdp_string);
                    if let Some(line) = line {
                        self.events
                            .push_back(TransportEvent::LocalCandidate(peer, line));
                    }
                    self.drain(peer, now);
                }
                self.gathered.push((c, t));
                continue;
            }
            // Bounded by MAX_RELAY_INBOUND per call; the rounds cap is a
            // second guard against a loop between str0m and the relay.
            if rounds < super::relay::MAX_RELAY_INBOUND
                && let Some(r) = g.poll_inbound()
            {
                rounds += 1;
                self.receive(now, r.from, r.relayed, &r.data);
                continue;
            }
            self.gather_timeout = g.poll_timeout();
            return;
        }
    }

    /// The SHA-256 fingerprint of this transport's DTLS certificate, as it
    /// appears in every SDP this transport produces.
    #[must_use]
    pub fn local_fingerprint(&self) -> &Fingerprint {
        &self.local_fingerprint
    }

    /// The DTLS fingerprint `peer` announced in its SDP (DTLS refuses a
    /// certificate that does not match it).
    #[must_use]
    pub fn remote_fingerprint(&self, peer: P) -> Option<&Fingerprint> {
        self.peers.get(&peer)?.remote_fingerprint.as_ref()
    }

    /// The host candidates this transport announces.
    #[must_use]
    pub fn local_candidates(&self) -> &[SocketAddr] {
        &self.local_candidates
    }

    /// Peers with a connection (in any state).
    pub fn peers(&self) -> impl Iterator<Item = P> + '_ {
        self.peers.keys().copied()
    }

    /// State and counters of one peer.
    #[must_use]
    pub fn peer_stats(&self, peer: P) -> Option<PeerStats> {
        let c = self.peers.get(&peer)?;
        Some(PeerStats {
            state: c.state,
            open_channels: c.open.keys().copied().collect(),
            queued_bytes: c.queued_bytes,
            oversized_dropped: c.oversized_dropped,
            unknown_channel_dropped: c.unknown_channel_dropped,
            rtt: c.rtt,
            selected_pair: c.selected.map(|(local, remote)| {
                (
                    self.local_type(local),
                    c.remote_candidates
                        .get(&remote)
                        .copied()
                        .unwrap_or(CandidateType::PeerReflexive),
                )
            }),
            remote_types: {
                let mut v: Vec<CandidateType> = c.remote_candidates.values().copied().collect();
                v.sort();
                v.dedup();
                v
            },
        })
    }

    /// The type of a local address str0m sent from: relayed if it is our
    /// TURN address, else host (a server-reflexive candidate sends from its
    /// host base).
    fn local_type(&self, addr: SocketAddr) -> CandidateType {
        if self.gatherer.as_ref().is_some_and(|g| g.is_relayed(addr)) {
            CandidateType::Relayed
        } else {
            CandidateType::Host
        }
    }

    /// Transport-wide counters.
    #[must_use]
    pub fn stats(&self) -> TransportStats {
        self.stats
    }

    fn new_conn(&self, now: Instant) -> Result<PeerConn, TransportError> {
        let mut cfg = RtcConfig::new()
            .set_crypto_provider(Arc::clone(&self.crypto))
            .set_dtls_cert(self.cert.clone())
            .set_sctp_max_message_size(SCTP_MAX_MESSAGE_SIZE)
            .set_stats_interval(Some(STATS_INTERVAL));
        cfg.set_initial_stun_rto(self.config.ice.initial_rto);
        cfg.set_max_stun_rto(self.config.ice.max_rto);
        cfg.set_max_stun_retransmits(self.config.ice.max_retransmits);
        let mut rtc = cfg.build(now);
        let mut added = 0usize;
        for addr in &self.local_candidates {
            if let Ok(c) = Candidate::host(*addr, "udp")
                && rtc.add_local_candidate(c).is_some()
            {
                added += 1;
            }
        }
        if added == 0 {
            return Err(TransportError::NoLocalCandidate);
        }
        for (c, _) in &self.gathered {
            let _ = rtc.add_local_candidate(c.clone());
        }
        Ok(PeerConn {
            rtc,
            state: PeerState::Connecting,
            created: now,
            disconnected_since: None,
            last_rx: now,
            pending_offer: None,
            open: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            stalled_since: None,
            rtc_timeout: now,
            oversized_dropped: 0,
            unknown_channel_dropped: 0,
            rtt: None,
            selected: None,
            remote_candidates: BTreeMap::new(),
            remote_fingerprint: None,
            #[cfg(test)]
            raw_stream: None,
        })
    }

    fn check_room(&mut self, peer: P) -> Result<(), TransportError> {
        self.failed_remote_types.remove(&peer);
        if self.peers.contains_key(&peer) {
            return Err(TransportError::PeerExists);
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(TransportError::TooManyPeers(self.config.max_peers));
        }
        Ok(())
    }

    /// Starts a connection to `peer` as the offerer: declares the
    /// pre-negotiated channels and returns the SDP offer (with all local
    /// candidates) to signal. Complete it with [`Self::accept_answer`].
    ///
    /// # Errors
    /// [`TransportError::PeerExists`], [`TransportError::TooManyPeers`], or
    /// a local setup failure.
    pub fn create_offer(&mut self, peer: P, now: Instant) -> Result<String, TransportError> {
        self.check_room(peer)?;
        let mut conn = self.new_conn(now)?;
        let mut api = conn.rtc.sdp_api();
        for spec in channels::ALL {
            let _ = api.add_channel_with_config(channel_config(spec));
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| TransportError::Rtc("offer has no changes".into()))?;
        conn.pending_offer = Some(pending);
        self.peers.insert(peer, conn);
        self.drain(peer, now);
        Ok(offer.to_sdp_string())
    }

    /// Applies `peer`'s SDP offer and returns our SDP answer.
    ///
    /// Who offers is the driver's decision and must be deterministic (e.g.
    /// the member already in the room offers to the newcomer): when both
    /// sides offer at once, each offer replaces the other side's pending
    /// connection and neither answer then finds its offer.
    ///
    /// For a new peer this creates the connection and the pre-negotiated
    /// channels. For a known peer whose offer carries the same DTLS
    /// fingerprint it is a renegotiation (e.g. an ICE restart) of the existing
    /// connection; a different fingerprint means the remote started over, so
    /// the old connection is closed ([`CloseReason::Replaced`]) and a new one
    /// made.
    ///
    /// # Errors
    /// [`TransportError::RemoteSdp`] for an SDP that does not parse or apply
    /// (a new connection is then discarded), [`TransportError::TooManyPeers`].
    pub fn accept_offer(
        &mut self,
        peer: P,
        sdp: &str,
        now: Instant,
    ) -> Result<String, TransportError> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| TransportError::RemoteSdp(e.to_string()))?;
        let offered_fp = super::fingerprint::fingerprint_of_sdp(sdp)
            .ok_or_else(|| TransportError::RemoteSdp("missing a=fingerprint".into()))?;

        let replaces = match self.peers.get(&peer) {
            Some(existing) if existing.remote_fingerprint.as_ref() == Some(&offered_fp) => {
                return self.renegotiate(peer, offer, sdp, now);
            }
            Some(_) => true,
            None => {
                self.check_room(peer)?;
                false
            }
        };
        let mut conn = self.new_conn(now)?;
        let answer = conn
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| TransportError::RemoteSdp(e.to_string()))?;
        let mut direct = conn.rtc.direct_api();
        for spec in channels::ALL {
            let _ = direct.create_data_channel(channel_config(spec));
        }
        conn.remote_fingerprint = Some(offered_fp);
        remember_sdp_candidates(&mut conn, sdp);
        if replaces {
            // Only now that the new offer applied cleanly.
            self.remove_peer(peer, CloseReason::Replaced, now);
        }
        self.peers.insert(peer, conn);
        self.drain(peer, now);
        Ok(answer.to_sdp_string())
    }

    fn renegotiate(
        &mut self,
        peer: P,
        offer: SdpOffer,
        sdp: &str,
        now: Instant,
    ) -> Result<String, TransportError> {
        let conn = self
            .peers
            .get_mut(&peer)
            .ok_or(TransportError::UnknownPeer)?;
        remember_sdp_candidates(conn, sdp);
        // An offer from the remote supersedes any offer of ours (glare: the
        // remote's wins; our pending offer is void once theirs is accepted).
        conn.pending_offer = None;
        let result = conn.rtc.sdp_api().accept_offer(offer);
        if result.is_ok() {
            conn.last_rx = now;
            if conn.state == PeerState::Disconnected {
                conn.disconnected_since = Some(now);
            }
        }
        self.drain(peer, now);
        result
            .map(|a| a.to_sdp_string())
            .map_err(|e| TransportError::RemoteSdp(e.to_string()))
    }

    /// Applies `peer`'s SDP answer to our pending offer.
    ///
    /// # Errors
    /// [`TransportError::UnknownPeer`], [`TransportError::NoPendingOffer`],
    /// [`TransportError::RemoteSdp`] (the connection stays; the driver may
    /// close it).
    pub fn accept_answer(
        &mut self,
        peer: P,
        sdp: &str,
        now: Instant,
    ) -> Result<(), TransportError> {
        let conn = self
            .peers
            .get_mut(&peer)
            .ok_or(TransportError::UnknownPeer)?;
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| TransportError::RemoteSdp(e.to_string()))?;
        let fp = super::fingerprint::fingerprint_of_sdp(sdp)
            .ok_or_else(|| TransportError::RemoteSdp("missing a=fingerprint".into()))?;
        if conn
            .remote_fingerprint
            .as_ref()
            .is_some_and(|known| *known != fp)
        {
            return Err(TransportError::RemoteSdp(
                "answer changes the DTLS fingerprint".into(),
            ));
        }
        let pending = conn
            .pending_offer
            .take()
            .ok_or(TransportError::NoPendingOffer)?;
        let result = conn.rtc.sdp_api().accept_answer(pending, answer);
        if result.is_ok() {
            conn.remote_fingerprint = Some(fp);
            remember_sdp_candidates(conn, sdp);
        }
        self.drain(peer, now);
        result.map_err(|e| TransportError::RemoteSdp(e.to_string()))
    }

    /// Adds a trickled remote ICE candidate (`candidate:…`, with or without
    /// the `a=` prefix).
    ///
    /// # Errors
    /// [`TransportError::UnknownPeer`], [`TransportError::RemoteSdp`] for a
    /// candidate that does not parse.
    pub fn add_remote_candidate(
        &mut self,
        peer: P,
        candidate: &str,
        now: Instant,
    ) -> Result<(), TransportError> {
        let conn = self
            .peers
            .get_mut(&peer)
            .ok_or(TransportError::UnknownPeer)?;
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| TransportError::RemoteSdp(e.to_string()))?;
        remember_remote(conn, &c);
        conn.rtc.add_remote_candidate(c);
        self.drain(peer, now);
        Ok(())
    }

    /// Starts an ICE restart towards `peer` (e.g. after
    /// [`TransportEvent::Disconnected`]) and returns the new SDP offer;
    /// complete it with [`Self::accept_answer`]. Restarts the
    /// disconnect-grace clock.
    ///
    /// # Errors
    /// [`TransportError::UnknownPeer`], or str0m refusing to make an offer.
    pub fn restart_ice(&mut self, peer: P, now: Instant) -> Result<String, TransportError> {
        let conn = self
            .peers
            .get_mut(&peer)
            .ok_or(TransportError::UnknownPeer)?;
        let mut api = conn.rtc.sdp_api();
        let _ = api.ice_restart(true);
        let applied = api.apply();
        let result = match applied {
            Some((offer, pending)) => {
                conn.pending_offer = Some(pending);
                conn.last_rx = now;
                if conn.state == PeerState::Disconnected {
                    conn.disconnected_since = Some(now);
                }
                Ok(offer.to_sdp_string())
            }
            None => Err(TransportError::Rtc("ICE restart produced no offer".into())),
        };
        self.drain(peer, now);
        result
    }

    /// Closes the connection to `peer` (DTLS close_notify is sent) and
    /// forgets it; emits [`TransportEvent::PeerClosed`] with
    /// [`CloseReason::Local`]. Unknown peers are ignored.
    pub fn close_peer(&mut self, peer: P, now: Instant) {
        self.remove_peer(peer, CloseReason::Local, now);
    }

    /// The candidate types `peer` announced on its last connection that
    /// failed to come up (see [`CloseReason::ConnectTimeout`]).
    #[must_use]
    pub fn failed_remote_types(&self, peer: P) -> Option<&[CandidateType]> {
        self.failed_remote_types.get(&peer).map(Vec::as_slice)
    }

    fn remove_peer(&mut self, peer: P, reason: CloseReason, now: Instant) {
        let Some(mut conn) = self.peers.remove(&peer) else {
            return;
        };
        if matches!(reason, CloseReason::ConnectTimeout | CloseReason::IceFailed) {
            if self.failed_remote_types.len() >= self.config.max_peers {
                self.failed_remote_types.clear();
            }
            let mut types: Vec<CandidateType> = conn.remote_candidates.values().copied().collect();
            types.sort();
            types.dedup();
            self.failed_remote_types.insert(peer, types);
        }
        if conn.rtc.is_alive() && conn.rtc.close().is_ok() {
            // Flush the close output (close_notify) of the closing instance.
            let _ = Self::drain_conn(&mut conn, peer, now, &mut self.transmits, &mut self.events);
        }
        self.events
            .push_back(TransportEvent::PeerClosed { peer, reason });
    }

    /// Sends `data` to `peer` on `channel`, or queues it while the channel is
    /// not open yet or the SCTP buffer is full. Frames on one channel leave
    /// in the order they were given.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] above [`MAX_FRAME_SIZE`],
    /// [`SendError::QueueFull`] when the per-peer queue is at its limit,
    /// [`SendError::UnknownPeer`], [`SendError::UnknownChannel`].
    pub fn send(
        &mut self,
        peer: P,
        channel: ChannelId,
        data: &[u8],
        now: Instant,
    ) -> Result<SendOutcome, SendError> {
        if channels::by_id(channel).is_none() {
            return Err(SendError::UnknownChannel(channel.get()));
        }
        if data.len() > MAX_FRAME_SIZE {
            return Err(SendError::TooLarge {
                len: data.len(),
                max: MAX_FRAME_SIZE,
            });
        }
        let max_queued = self.config.max_queued_bytes;
        let conn = self.peers.get_mut(&peer).ok_or(SendError::UnknownPeer)?;
        if conn.queue.is_empty() && try_write(conn, channel, data) {
            self.drain(peer, now);
            return Ok(SendOutcome::Sent);
        }
        if conn.queued_bytes + data.len() > max_queued {
            return Err(SendError::QueueFull);
        }
        conn.queue.push_back(QueuedFrame {
            channel,
            data: data.to_vec(),
        });
        conn.queued_bytes += data.len();
        if conn.stalled_since.is_none() {
            conn.stalled_since = Some(now);
        }
        Ok(SendOutcome::Queued)
    }

    /// Bytes SCTP holds for `peer` on `channel` (sent but unacknowledged, or
    /// not yet sent), not counting our own queue (see [`PeerStats`]).
    pub fn buffered_amount(&mut self, peer: P, channel: ChannelId) -> Option<usize> {
        let conn = self.peers.get_mut(&peer)?;
        let id = *conn.open.get(&channel)?;
        Some(conn.rtc.channel(id)?.buffered_amount())
    }

    /// Feeds one received UDP datagram. `destination` must be the local
    /// candidate address it arrived on. Datagrams from a STUN/TURN server go
    /// to the gatherer; others no connection accepts are dropped and counted.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.last_now = now;
        if let Some(g) = self.gatherer.as_mut()
            && g.claims(source)
        {
            g.handle_datagram(now, source, contents);
            self.pump_gatherer(now);
            return;
        }
        self.receive(now, source, destination, contents);
    }

    /// Hands a datagram (from the socket, or relayed to us by TURN) to the
    /// connection that accepts it.
    fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, contents) else {
            self.stats.malformed_datagrams += 1;
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(peer) = self
            .peers
            .iter()
            .find(|(_, c)| c.rtc.accepts(&input))
            .map(|(p, _)| *p)
        else {
            self.stats.unmatched_datagrams += 1;
            tracing::debug!(%source, first_byte = contents.first().copied(), len = contents.len(), "connect: unmatched datagram");
            return;
        };
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Err(e) = conn.rtc.handle_input(input) {
            self.remove_peer(peer, CloseReason::Error(e.to_string()), now);
            return;
        }
        conn.last_rx = now;
        self.drain(peer, now);
        // Silence ended (str0m never declared ICE lost): back to normal.
        if let Some(conn) = self.peers.get_mut(&peer)
            && conn.state == PeerState::Disconnected
            && conn.rtc.is_connected()
        {
            conn.state = PeerState::Connected;
            conn.disconnected_since = None;
            self.events.push_back(TransportEvent::Reconnected(peer));
        }
        self.flush_queue(peer, now);
    }

    /// Advances time: str0m timers, connect/disconnect/stall deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if let Some(g) = self.gatherer.as_mut()
            && self.gather_timeout.is_some_and(|t| t <= now)
        {
            g.handle_timeout(now);
            self.pump_gatherer(now);
        }
        let peers: Vec<P> = self.peers.keys().copied().collect();
        for peer in peers {
            let Some(conn) = self.peers.get_mut(&peer) else {
                continue;
            };
            if conn.rtc_timeout <= now {
                if let Err(e) = conn.rtc.handle_input(Input::Timeout(now)) {
                    self.remove_peer(peer, CloseReason::Error(e.to_string()), now);
                    continue;
                }
                self.drain(peer, now);
            }
            self.flush_queue(peer, now);
            if let Some(conn) = self.peers.get_mut(&peer)
                && conn.state == PeerState::Connected
                && now >= conn.last_rx + self.config.idle_timeout
            {
                conn.state = PeerState::Disconnected;
                conn.disconnected_since = Some(now);
                self.events.push_back(TransportEvent::Disconnected(peer));
            }
            if let Some(reason) = self.expired(peer, now) {
                self.remove_peer(peer, reason, now);
            }
        }
    }

    fn expired(&self, peer: P, now: Instant) -> Option<CloseReason> {
        let conn = self.peers.get(&peer)?;
        let cfg = &self.config;
        if conn.state == PeerState::Connecting && now >= conn.created + cfg.connect_timeout {
            return Some(CloseReason::ConnectTimeout);
        }
        if conn
            .disconnected_since
            .is_some_and(|t| now >= t + cfg.disconnect_grace)
        {
            return Some(CloseReason::IceFailed);
        }
        if conn
            .stalled_since
            .is_some_and(|t| now >= t + cfg.send_stall_limit)
        {
            return Some(CloseReason::SendStalled);
        }
        None
    }

    /// The next instant [`Self::handle_timeout`] must be called, if any
    /// connection exists.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let cfg = &self.config;
        self.peers
            .values()
            .flat_map(|c| {
                [
                    Some(c.rtc_timeout),
                    (c.state == PeerState::Connecting).then(|| c.created + cfg.connect_timeout),
                    (c.state == PeerState::Connected).then(|| c.last_rx + cfg.idle_timeout),
                    c.disconnected_since.map(|t| t + cfg.disconnect_grace),
                    c.stalled_since.map(|t| t + cfg.send_stall_limit),
                ]
            })
            .flatten()
            .chain(self.gather_timeout)
            .min()
    }

    /// The next datagram to send. What str0m sends from our relayed address
    /// goes to the TURN server instead (see [`super::relay::Gatherer::send`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            if let Some(g) = self.gatherer.as_mut()
                && let Some((destination, contents)) = g.poll_transmit()
            {
                return Some(Transmit {
                    source: self.gather_base().unwrap_or(destination),
                    destination,
                    contents,
                });
            }
            let t = self.transmits.pop_front()?;
            match self.gatherer.as_mut() {
                Some(g) if g.is_relayed(t.source) => {
                    g.send(self.last_now, t.source, t.destination, &t.contents);
                    self.gather_timeout = g.poll_timeout();
                }
                _ => return Some(t),
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TransportEvent<P>> {
        self.events.pop_front()
    }

    /// Moves queued frames into SCTP while it takes them.
    fn flush_queue(&mut self, peer: P, now: Instant) {
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut wrote = false;
        while let Some(frame) = conn.queue.pop_front() {
            if !try_write(conn, frame.channel, &frame.data) {
                conn.queue.push_front(frame);
                break;
            }
            conn.queued_bytes = conn.queued_bytes.saturating_sub(frame.data.len());
            wrote = true;
        }
        if conn.queue.is_empty() {
            conn.stalled_since = None;
        }
        if wrote {
            self.drain(peer, now);
        }
    }

    /// Drains `peer`'s `poll_output` until a timeout, translating events. A
    /// connection that errors or is no longer alive afterwards is removed.
    fn drain(&mut self, peer: P, now: Instant) {
        self.last_now = now;
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        // str0m drops data on a stream id with no channel itself (one WARN
        // line per message); count those for this peer instead.
        let (transmits, events) = (&mut self.transmits, &mut self.events);
        let (outcome, unknown) = self
            .stream_drops
            .count(|| Self::drain_conn(conn, peer, now, transmits, events));
        conn.unknown_channel_dropped = conn.unknown_channel_dropped.saturating_add(unknown);
        match outcome {
            Ok(None) if conn.rtc.is_alive() => {}
            Ok(None) => self.remove_peer(peer, CloseReason::RemoteClosed, now),
            Ok(Some(reason)) => self.remove_peer(peer, reason, now),
            Err(e) => self.remove_peer(peer, CloseReason::Error(e), now),
        }
    }

    fn drain_conn(
        conn: &mut PeerConn,
        peer: P,
        now: Instant,
        transmits: &mut VecDeque<Transmit>,
        events: &mut VecDeque<TransportEvent<P>>,
    ) -> Result<Option<CloseReason>, String> {
        let mut close = None;
        loop {
            if !conn.rtc.is_alive() {
                return Ok(close.or(Some(CloseReason::RemoteClosed)));
            }
            match conn.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => {
                    conn.rtc_timeout = t;
                    return Ok(close);
                }
                Output::Transmit(t) => transmits.push_back(Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(ev) => {
                    if let Some(reason) = Self::on_event(conn, peer, now, ev, events) {
                        close = Some(reason);
                    }
                }
            }
        }
    }

    fn on_event(
        conn: &mut PeerConn,
        peer: P,
        now: Instant,
        ev: Event,
        events: &mut VecDeque<TransportEvent<P>>,
    ) -> Option<CloseReason> {
        if let Event::IceConnectionStateChange(state) = &ev {
            tracing::debug!(peer = ?peer, ?state, "connect: ice state");
        }
        match ev {
            Event::Connected if conn.state == PeerState::Connecting => {
                conn.state = PeerState::Connected;
                events.push_back(TransportEvent::Connected(peer));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if conn.state == PeerState::Connected =>
            {
                conn.state = PeerState::Disconnected;
                conn.disconnected_since = Some(now);
                events.push_back(TransportEvent::Disconnected(peer));
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if conn.state == PeerState::Disconnected => {
                conn.state = PeerState::Connected;
                conn.disconnected_since = None;
                events.push_back(TransportEvent::Reconnected(peer));
            }
            Event::ChannelOpen(id, _label) => {
                let ours = conn
                    .rtc
                    .direct_api()
                    .sctp_stream_id_by_channel_id(id)
                    .map(ChannelId::new)
                    .filter(|c| channels::by_id(*c).is_some());
                match ours {
                    Some(ch) if !conn.open.contains_key(&ch) => {
                        conn.open.insert(ch, id);
                        events.push_back(TransportEvent::ChannelOpen(peer, ch));
                    }
                    // A second open on one of our stream ids: closing it
                    // would reset our own stream, so only count it.
                    Some(_) => conn.unknown_channel_dropped += 1,
                    None if conn.is_raw_stream(id) => {}
                    None => {
                        conn.unknown_channel_dropped += 1;
                        conn.rtc.direct_api().close_data_channel(id);
                    }
                }
            }
            Event::ChannelData(d) => {
                let ours = conn.open.iter().find(|(_, v)| **v == d.id).map(|(k, _)| *k);
                match ours {
                    None => conn.unknown_channel_dropped += 1,
                    Some(_) if d.data.len() > MAX_FRAME_SIZE => conn.oversized_dropped += 1,
                    Some(channel) => events.push_back(TransportEvent::Data {
                        peer,
                        channel,
                        data: d.data,
                    }),
                }
            }
            Event::ChannelClose(id) => {
                let ours = conn.open.iter().find(|(_, v)| **v == id).map(|(k, _)| *k);
                if let Some(ch) = ours {
                    conn.open.remove(&ch);
                    let before = conn.queue.len();
                    conn.queue.retain(|f| f.channel != ch);
                    if conn.queue.len() != before {
                        conn.queued_bytes = conn.queue.iter().map(|f| f.data.len()).sum();
                        if conn.queue.is_empty() {
                            conn.stalled_since = None;
                        }
                    }
                    events.push_back(TransportEvent::ChannelClosed(peer, ch));
                }
            }
            Event::Closed => return Some(CloseReason::RemoteClosed),
            Event::PeerStats(st) => {
                if let Some(pair) = st.selected_candidate_pair {
                    conn.selected = Some((pair.local.addr, pair.remote.addr));
                    if let Some(rtt) = pair.current_round_trip_time {
                        conn.rtt = Some(rtt);
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// Test hook: how many remote candidates are remembered for `peer`.
    #[cfg(test)]
    pub(crate) fn remembered_remote_candidates(&self, peer: P) -> usize {
        self.peers
            .get(&peer)
            .map_or(0, |c| c.remote_candidates.len())
    }

    /// Test hook: writes raw bytes on an open channel, bypassing
    /// [`MAX_FRAME_SIZE`], to play a misbehaving remote.
    #[cfg(test)]
    pub(crate) fn raw_write(
        &mut self,
        peer: P,
        channel: ChannelId,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(conn) = self.peers.get_mut(&peer) else {
            return false;
        };
        let ok = try_write(conn, channel, data);
        self.drain(peer, now);
        ok
    }

    /// Test hook: writes `data` on SCTP stream `stream` through a channel
    /// only this side has (a negotiated id the remote never created), to
    /// play a misbehaving remote. `false` until that channel is open.
    #[cfg(test)]
    pub(crate) fn raw_stream_write(
        &mut self,
        peer: P,
        stream: u16,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(conn) = self.peers.get_mut(&peer) else {
            return false;
        };
        let id = match conn.raw_stream {
            Some((s, id)) if s == stream => id,
            _ => {
                let id = conn.rtc.direct_api().create_data_channel(ChannelConfig {
                    negotiated: Some(stream),
                    ..channel_config(channels::CONTROL)
                });
                conn.raw_stream = Some((stream, id));
                id
            }
        };
        let ok = conn
            .rtc
            .channel(id)
            .is_some_and(|mut ch| matches!(ch.write(true, data), Ok(true)));
        self.drain(peer, now);
        ok
    }
}

/// The ICE type of a str0m candidate.
fn candidate_type(kind: CandidateKind) -> CandidateType {
    match kind {
        CandidateKind::Host => CandidateType::Host,
        CandidateKind::ServerReflexive => CandidateType::ServerReflexive,
        CandidateKind::PeerReflexive => CandidateType::PeerReflexive,
        CandidateKind::Relayed => CandidateType::Relayed,
    }
}

/// Remembers a remote candidate's type by address (bounded).
fn remember_remote(conn: &mut PeerConn, c: &Candidate) {
    if conn.remote_candidates.len() < MAX_REMOTE_CANDIDATES
        || conn.remote_candidates.contains_key(&c.addr())
    {
        conn.remote_candidates
            .insert(c.addr(), candidate_type(c.kind()));
    }
}

/// Remembers the `a=candidate:` lines of a remote SDP.
fn remember_sdp_candidates(conn: &mut PeerConn, sdp: &str) {
    for line in sdp.lines() {
        if let Some(c) = line
            .trim()
            .strip_prefix("a=")
            .filter(|l| l.starts_with("candidate:"))
            .and_then(|l| Candidate::from_sdp_string(l).ok())
        {
            remember_remote(conn, &c);
        }
    }
}

/// Writes one frame to SCTP; `false` when the channel is not open or the SCTP
/// buffer cannot take it now.
fn try_write(conn: &mut PeerConn, channel: ChannelId, data: &[u8]) -> bool {
    let Some(id) = conn.open.get(&channel).copied() else {
        return false;
    };
    let Some(mut ch) = conn.rtc.channel(id) else {
        return false;
    };
    // `Ok(false)` means the SCTP buffer is full: the frame stays queued.
    matches!(ch.write(true, data), Ok(true))
}
