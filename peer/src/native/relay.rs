//! STUN and TURN for the native transport, sans I/O.
//!
//! str0m gathers no candidates itself. [`Gatherer`] does it for
//! [`super::rtc::RtcTransport`], on the transport's own UDP socket:
//!
//! - a STUN Binding request to every STUN server *and* every TURN server
//!   (coturn answers STUN too) gives the server-reflexive address: the
//!   socket's address as the server saw it, i.e. after the NAT;
//! - a TURN Allocate (RFC 8656, long-term credentials; the server hands out
//!   ephemeral TURN REST credentials) gives a relayed address on the TURN
//!   server. Datagrams str0m sends *from* that address go to the server
//!   wrapped in Send indications / ChannelData ([`Gatherer::send`]); what the
//!   server relays back comes out of [`Gatherer::poll_inbound`] as if it had
//!   arrived on the relayed address from the remote peer.
//!
//! The TURN protocol itself (transactions, retransmission, the 401 nonce
//! dance, refreshing the allocation before its lifetime ends, refreshing
//! permissions every five minutes and channel bindings before they expire)
//! is webrtc-rs's sans-I/O `rtc-turn` client; one [`rtc_turn::client::Client`]
//! per server. This module decides *what* to ask for and bounds it.
//!
//! Only UDP is supported: `turn:` URLs with `transport=udp` (or none);
//! `turns:` and `transport=tcp` are skipped (the browser uses them).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc_shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc_turn::client::{Client, ClientConfig, Event as TurnEvent};
use sansio::Protocol as _;
use str0m::Candidate;

pub use crate::ice::CandidateType;

/// STUN/TURN server addresses the native peer uses at most (the server's
/// list is longer only if misconfigured; the rest is ignored).
pub const MAX_GATHER_SERVERS: usize = 4;

/// Remote addresses one TURN allocation holds a permission for at most.
/// Each remote candidate str0m checks through the relay needs one; beyond
/// this, datagrams to new addresses are dropped (counted in
/// [`GatherStats::relay_dropped`]).
pub const MAX_RELAY_PERMISSIONS: usize = 64;

/// Datagrams relayed to us waiting to be handed to str0m at most; the
/// transport drains them after every input, so this only bounds a burst.
pub const MAX_RELAY_INBOUND: usize = 256;

/// Default port of `stun:` / `turn:` URLs without one (RFC 7064/7065).
pub const DEFAULT_STUN_PORT: u16 = 3478;

/// `SOFTWARE` attribute of our STUN/TURN requests.
const SOFTWARE: &str = "watchparty";

/// What a `stun:`/`turn:` URL names, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceTarget {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// A TURN server (else STUN only).
    pub turn: bool,
}

/// Parses a `stun:` or `turn:` URL (RFC 7064 / 7065) the native peer can use:
/// UDP only. `None` for `stuns:`/`turns:`, `transport=tcp`, or anything that
/// does not parse.
#[must_use]
pub fn parse_ice_url(url: &str) -> Option<IceTarget> {
    let (turn, rest) = if let Some(r) = url.strip_prefix("stun:") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("turn:") {
        (true, r)
    } else {
        return None;
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        let udp = q
            .split('&')
            .all(|kv| !kv.starts_with("transport=") || kv.eq_ignore_ascii_case("transport=udp"));
        if !turn || !udp {
            return None;
        }
    }
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_STUN_PORT,
            None => return None,
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, DEFAULT_STUN_PORT),
        }
    };
    if host.is_empty() || port == 0 || host.contains(['/', '@', ' ']) {
        return None;
    }
    Some(IceTarget {
        host: host.to_owned(),
        port,
        turn,
    })
}

/// TURN long-term credentials (the server's ephemeral REST credentials).
/// `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnAuth {
    /// Username (`<expiry>:<user id>`).
    pub username: String,
    /// Password (base64 HMAC).
    pub credential: String,
}

impl fmt::Debug for TurnAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnAuth(<redacted>)")
    }
}

/// One resolved server to gather from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherServer {
    /// Its address.
    pub addr: SocketAddr,
    /// Credentials for a TURN allocation; `None`: STUN only.
    pub turn: Option<TurnAuth>,
}

/// The state of gathering from one TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// Allocate sent, no answer yet.
    Allocating,
    /// The relayed address.
    Allocated(SocketAddr),
    /// Refused or unanswered; the reason in plain words (never a credential).
    Failed(String),
}

/// Counters of the gatherer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatherStats {
    /// Datagrams str0m wanted to send through the relay that were dropped:
    /// no permission yet for the destination (ICE retransmits), the
    /// permission was refused, or [`MAX_RELAY_PERMISSIONS`] was reached.
    pub relay_dropped: u64,
    /// Datagrams relayed to us dropped because [`MAX_RELAY_INBOUND`] were
    /// already waiting.
    pub relay_inbound_dropped: u64,
}

/// A datagram the TURN server relayed to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Our relayed address it arrived on.
    pub relayed: SocketAddr,
    /// The remote peer that sent it.
    pub from: SocketAddr,
    /// The payload.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    Requested,
    Granted,
}

struct Server {
    addr: SocketAddr,
    client: Client,
    auth: Option<TurnAuth>,
    relay: Option<RelayState>,
    srflx: Option<SocketAddr>,
    permissions: BTreeMap<SocketAddr, Permission>,
}

/// Gathers server-reflexive and relayed candidates for one socket and
/// carries the relayed traffic. Sans I/O: every call takes `now`; the
/// caller sends [`Self::poll_transmit`] and wakes at [`Self::poll_timeout`].
pub struct Gatherer {
    base: SocketAddr,
    servers: Vec<Server>,
    candidates: VecDeque<(Candidate, CandidateType)>,
    inbound: VecDeque<Relayed>,
    stats: GatherStats,
}

impl fmt::Debug for Gatherer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gatherer")
            .field("base", &self.base)
            .field(
                "servers",
                &self.servers.iter().map(|s| s.addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn new_client(base: SocketAddr, s: &GatherServer) -> Option<Client> {
    let (username, password, turn_addr) = match &s.turn {
        Some(a) => (a.username.clone(), a.credential.clone(), s.addr.to_string()),
        None => (String::new(), String::new(), String::new()),
    };
    let config = ClientConfig {
        stun_serv_addr: s.addr.to_string(),
        turn_serv_addr: turn_addr,
        local_addr: base,
        transport_protocol: TransportProtocol::UDP,
        username,
        password,
        realm: String::new(),
        software: SOFTWARE.to_owned(),
        rto_in_ms: 0,
        allocation_refresh_interval_cap: None,
    };
    let provider = rtc_turn::crypto::default_provider().ok()?;
    Client::new(config, provider).ok()
}

impl Gatherer {
    /// Starts gathering from `servers` (at most [`MAX_GATHER_SERVERS`],
    /// IPv4 only; a server listed twice is used once) for a socket whose
    /// local candidate address is `base`.
    #[must_use]
    pub fn new(base: SocketAddr, servers: &[GatherServer], now: Instant) -> Self {
        let mut g = Self {
            base,
            servers: Vec::new(),
            candidates: VecDeque::new(),
            inbound: VecDeque::new(),
            stats: GatherStats::default(),
        };
        // One entry per address; a TURN entry wins over a STUN-only one for
        // the same address (coturn serves both on one port).
        let mut merged: Vec<&GatherServer> = Vec::new();
        for s in servers.iter().filter(|s| s.addr.is_ipv4()) {
            match merged.iter_mut().find(|o| o.addr == s.addr) {
                Some(o) if o.turn.is_none() && s.turn.is_some() => *o = s,
                Some(_) => {}
                None => merged.push(s),
            }
        }
        for s in merged {
            if g.servers.len() >= MAX_GATHER_SERVERS {
                break;
            }
            let Some(client) = new_client(base, s) else {
                continue;
            };
            let mut server = Server {
                addr: s.addr,
                client,
                auth: s.turn.clone(),
                relay: None,
                srflx: None,
                permissions: BTreeMap::new(),
            };
            let _ = server.client.send_binding_request(now);
            if server.auth.is_some() {
                server.relay = Some(match server.client.allocate(now) {
                    Ok(_) => RelayState::Allocating,
                    Err(e) => RelayState::Failed(e.to_string()),
                });
            }
            g.servers.push(server);
        }
        g
    }

    /// New credentials (a fresh `hello`): used for the next refreshes, and a
    /// failed allocation is tried again with them. Servers not in the
    /// gatherer are ignored.
    pub fn update_credentials(&mut self, servers: &[GatherServer], now: Instant) {
        for s in servers {
            let (Some(server), Some(auth)) = (
                self.servers.iter_mut().find(|o| o.addr == s.addr),
                s.turn.as_ref(),
            ) else {
                continue;
            };
            if server.auth.as_ref() == Some(auth) {
                continue;
            }
            if server
                .client
                .update_credentials(auth.username.clone(), auth.credential.clone())
                .is_err()
            {
                continue;
            }
            server.auth = Some(auth.clone());
            if matches!(server.relay, Some(RelayState::Failed(_)) | None) {
                // A new client: the old one's realm/nonce state is stale.
                if let Some(client) = new_client(self.base, s) {
                    server.client = client;
                    server.permissions.clear();
                    server.relay = Some(match server.client.allocate(now) {
                        Ok(_) => RelayState::Allocating,
                        Err(e) => RelayState::Failed(e.to_string()),
                    });
                }
            }
        }
    }

    /// Whether a datagram from `source` is for the gatherer (it came from
    /// one of its servers).
    #[must_use]
    pub fn claims(&self, source: SocketAddr) -> bool {
        self.servers.iter().any(|s| s.addr == source)
    }

    /// Whether `addr` is one of our relayed addresses.
    #[must_use]
    pub fn is_relayed(&self, addr: SocketAddr) -> bool {
        self.servers
            .iter()
            .any(|s| s.relay == Some(RelayState::Allocated(addr)))
    }

    /// The TURN servers and the state of their allocations.
    pub fn relays(&self) -> impl Iterator<Item = (SocketAddr, &RelayState)> + '_ {
        self.servers
            .iter()
            .filter_map(|s| s.relay.as_ref().map(|r| (s.addr, r)))
    }

    /// Whether any TURN server was configured.
    #[must_use]
    pub fn has_turn(&self) -> bool {
        self.servers.iter().any(|s| s.auth.is_some())
    }

    /// Whether every server has answered or given up (nothing more will
    /// be gathered).
    #[must_use]
    pub fn done(&self) -> bool {
        self.servers
            .iter()
            .all(|s| !matches!(s.relay, Some(RelayState::Allocating)))
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> GatherStats {
        self.stats
    }

    /// Feeds a datagram from one of the servers ([`Self::claims`]).
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let base = self.base;
        let Some(i) = self.servers.iter().position(|s| s.addr == source) else {
            return;
        };
        if let Some(s) = self.servers.get_mut(i) {
            let msg = TransportMessage {
                now,
                transport: TransportContext {
                    local_addr: base,
                    peer_addr: source,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: BytesMut::from(contents),
            };
            // Malformed or unexpected messages are dropped; a wrong answer
            // to a transaction of ours surfaces as its error event.
            let _ = s.client.handle_read(msg);
        }
        self.process_events(i);
    }

    fn process_events(&mut self, i: usize) {
        let base = self.base;
        let Some(s) = self.servers.get_mut(i) else {
            return;
        };
        while let Some(ev) = s.client.poll_event() {
            match ev {
                TurnEvent::BindingResponse(_, mapped) => {
                    if mapped != base
                        && mapped.is_ipv4()
                        && s.srflx.is_none()
                        && !self.candidates.iter().any(|(c, _)| c.addr() == mapped)
                        && let Ok(c) = Candidate::server_reflexive(mapped, base, "udp")
                    {
                        s.srflx = Some(mapped);
                        self.candidates
                            .push_back((c, CandidateType::ServerReflexive));
                    }
                }
                TurnEvent::AllocateResponse(_, relayed) => {
                    if let Ok(c) = Candidate::relayed(relayed, base, "udp") {
                        s.relay = Some(RelayState::Allocated(relayed));
                        self.candidates.push_back((c, CandidateType::Relayed));
                    }
                }
                TurnEvent::AllocateError(_, e) => {
                    s.relay = Some(RelayState::Failed(allocate_error_text(&e.to_string())));
                }
                TurnEvent::TransactionTimeout(_) if s.relay == Some(RelayState::Allocating) => {
                    s.relay = Some(RelayState::Failed(
                        "the TURN server did not answer".to_owned(),
                    ));
                }
                TurnEvent::CreatePermissionResponse(_, peer) => {
                    if let Some(p) = s.permissions.get_mut(&peer) {
                        *p = Permission::Granted;
                    }
                }
                TurnEvent::CreatePermissionError(_, _) | TurnEvent::BindingError(_, _) => {}
                TurnEvent::DataIndicationOrChannelData(_, from, data) => {
                    let Some(RelayState::Allocated(relayed)) = s.relay else {
                        continue;
                    };
                    if self.inbound.len() >= MAX_RELAY_INBOUND {
                        self.stats.relay_inbound_dropped += 1;
                    } else {
                        self.inbound.push_back(Relayed {
                            relayed,
                            from,
                            data: data.to_vec(),
                        });
                    }
                }
                // `Event` is non-exhaustive.
                _ => {}
            }
        }
    }

    /// Sends `data` from our relayed address `relayed` to `to` through the
    /// TURN server. The first datagram to a new address asks for a
    /// permission and is dropped (ICE retransmits); so is everything beyond
    /// [`MAX_RELAY_PERMISSIONS`] addresses. Returns whether it went out.
    pub fn send(&mut self, now: Instant, relayed: SocketAddr, to: SocketAddr, data: &[u8]) -> bool {
        let Some(s) = self
            .servers
            .iter_mut()
            .find(|s| s.relay == Some(RelayState::Allocated(relayed)))
        else {
            self.stats.relay_dropped += 1;
            return false;
        };
        let sent = match s.permissions.get(&to) {
            Some(Permission::Granted) => s
                .client
                .relay(relayed)
                .and_then(|mut r| r.send_to(now, data, to))
                .is_ok(),
            Some(Permission::Requested) => false,
            None if s.permissions.len() >= MAX_RELAY_PERMISSIONS => false,
            None => {
                if s.client
                    .relay(relayed)
                    .and_then(|mut r| r.create_permission(now, to))
                    .is_ok()
                {
                    s.permissions.insert(to, Permission::Requested);
                }
                false
            }
        };
        if !sent {
            self.stats.relay_dropped += 1;
        }
        sent
    }

    /// The next candidate gathered, with its type.
    pub fn poll_candidate(&mut self) -> Option<(Candidate, CandidateType)> {
        self.candidates.pop_front()
    }

    /// The next datagram the TURN server relayed to us.
    pub fn poll_inbound(&mut self) -> Option<Relayed> {
        self.inbound.pop_front()
    }

    /// The next datagram to send: `(destination, bytes)`, always to one of
    /// the servers, from the socket the candidates were gathered on.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.servers.iter_mut().find_map(|s| {
            s.client
                .poll_write()
                .map(|t| (t.transport.peer_addr, t.message.to_vec()))
        })
    }

    /// The next instant [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.servers
            .iter_mut()
            .filter_map(|s| s.client.poll_timeout())
            .min()
    }

    /// Advances time: retransmissions, allocation/permission refreshes.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.servers.len() {
            if let Some(s) = self.servers.get_mut(i) {
                let _ = s.client.handle_timeout(now);
            }
            self.process_events(i);
        }
    }

    /// Releases every allocation (a refresh with lifetime 0).
    pub fn close(&mut self, now: Instant) {
        for s in &mut self.servers {
            if let Some(RelayState::Allocated(a)) = s.relay
                && let Ok(mut r) = s.client.relay(a)
            {
                let _ = r.close(now);
            }
        }
    }
}

/// Plain words for a refused Allocate (the client's error text names the
/// STUN error code; never the credentials).
fn allocate_error_text(e: &str) -> String {
    if e.contains("401") {
        "the TURN server refused our credentials (expired or wrong secret)".to_owned()
    } else if e.contains("486") {
        "the TURN server has no room for another allocation".to_owned()
    } else if e.contains("403") {
        "the TURN server forbids relaying for us".to_owned()
    } else {
        "the TURN server refused an allocation".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = |turn, host: &str, port| {
            Some(IceTarget {
                host: host.into(),
                port,
                turn,
            })
        };
        assert_eq!(
            parse_ice_url("stun:203.0.113.1"),
            t(false, "203.0.113.1", 3478)
        );
        assert_eq!(
            parse_ice_url("stun:stun.example:19302"),
            t(false, "stun.example", 19302)
        );
        assert_eq!(
            parse_ice_url("turn:203.0.113.1:3479?transport=udp"),
            t(true, "203.0.113.1", 3479)
        );
        assert_eq!(
            parse_ice_url("turn:[2001:db8::1]:3478"),
            t(true, "2001:db8::1", 3478)
        );
        assert_eq!(parse_ice_url("turn:t.example?transport=tcp"), None);
        assert_eq!(parse_ice_url("turns:t.example"), None);
        assert_eq!(parse_ice_url("stuns:t.example"), None);
        assert_eq!(parse_ice_url("stun:t.example?transport=udp"), None);
        assert_eq!(parse_ice_url("turn:"), None);
        assert_eq!(parse_ice_url("turn:h:0"), None);
        assert_eq!(parse_ice_url("turn:h:x"), None);
        assert_eq!(parse_ice_url("http://h"), None);
    }

    #[test]
    fn credentials_are_never_debug_printed() {
        let s = GatherServer {
            addr: "192.0.2.1:3478".parse().unwrap(),
            turn: Some(TurnAuth {
                username: "1700000000:42".into(),
                credential: "c2VjcmV0".into(),
            }),
        };
        let text = format!("{s:?}");
        assert!(
            !text.contains("1700000000") && !text.contains("c2VjcmV0"),
            "{text}"
        );
    }

    fn turn_server(addr: &str) -> GatherServer {
        GatherServer {
            addr: addr.parse().unwrap(),
            turn: Some(TurnAuth {
                username: "u".into(),
                credential: "p".into(),
            }),
        }
    }

    #[test]
    fn servers_are_capped_and_deduplicated() {
        let now = Instant::now();
        let mut list: Vec<GatherServer> = (1..=MAX_GATHER_SERVERS + 2)
            .map(|i| turn_server(&format!("192.0.2.{i}:3478")))
            .collect();
        list.insert(1, turn_server("192.0.2.1:3478"));
        let mut g = Gatherer::new("10.0.0.2:5000".parse().unwrap(), &list, now);
        assert_eq!(g.servers.len(), MAX_GATHER_SERVERS);
        assert!(g.claims("192.0.2.1:3478".parse().unwrap()));
        assert!(!g.claims("192.0.2.1:3479".parse().unwrap()));
        // A binding request and an allocate per server go out at once.
        let mut n = 0;
        while let Some((to, bytes)) = g.poll_transmit() {
            assert!(g.claims(to));
            assert!(!bytes.is_empty());
            n += 1;
        }
        assert_eq!(n, 2 * MAX_GATHER_SERVERS);
        assert!(!g.done());
    }

    #[test]
    fn a_turn_server_wins_over_a_stun_entry_for_the_same_address() {
        let stun = GatherServer {
            addr: "192.0.2.1:3478".parse().unwrap(),
            turn: None,
        };
        let g = Gatherer::new(
            "10.0.0.2:5000".parse().unwrap(),
            &[stun, turn_server("192.0.2.1:3478")],
            Instant::now(),
        );
        assert_eq!(g.servers.len(), 1);
        assert!(g.has_turn());
        assert_eq!(
            g.relays().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![RelayState::Allocating]
        );
    }

    /// A TURN Data indication (RFC 8656 §11.4) from `from` carrying
    /// `payload`, built by hand (no integrity: indications carry none).
    fn data_indication(from: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let SocketAddr::V4(v4) = from else {
            panic!("IPv4 only")
        };
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&[0x00, 0x12, 0x00, 0x08, 0x00, 0x01]);
        attrs.extend_from_slice(&(v4.port() ^ 0x2112).to_be_bytes());
        attrs.extend_from_slice(&(u32::from(*v4.ip()) ^ 0x2112_a442).to_be_bytes());
        attrs.extend_from_slice(&[0x00, 0x13]);
        attrs.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        attrs.extend_from_slice(payload);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x17];
        msg.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(b"wp-data-ind!");
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn relayed_datagrams_waiting_for_str0m_are_bounded() {
        let now = Instant::now();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let peer: SocketAddr = "198.51.100.7:4242".parse().unwrap();
        let mut g = Gatherer::new(
            "10.0.0.2:5000".parse().unwrap(),
            &[turn_server("192.0.2.1:3478")],
            now,
        );
        // Before the allocation exists, relayed data is ignored.
        g.handle_datagram(now, server, &data_indication(peer, b"early"));
        assert_eq!(g.poll_inbound(), None);
        g.servers[0].relay = Some(RelayState::Allocated(relayed));
        for i in 0..MAX_RELAY_INBOUND + 3 {
            let byte = u8::try_from(i % 256).unwrap();
            g.handle_datagram(now, server, &data_indication(peer, &[byte]));
        }
        assert_eq!(g.stats().relay_inbound_dropped, 3);
        let first = g.poll_inbound().unwrap();
        assert_eq!(
            first,
            Relayed {
                relayed,
                from: peer,
                data: vec![0],
            }
        );
        let mut n = 1;
        while g.poll_inbound().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_RELAY_INBOUND);
    }

    #[test]
    fn unanswered_allocation_fails_in_plain_words() {
        let mut now = Instant::now();
        let mut g = Gatherer::new(
            "10.0.0.2:5000".parse().unwrap(),
            &[turn_server("192.0.2.1:3478")],
            now,
        );
        for _ in 0..100 {
            while g.poll_transmit().is_some() {}
            let Some(t) = g.poll_timeout() else { break };
            now = now.max(t);
            g.handle_timeout(now);
            if g.done() {
                break;
            }
        }
        assert!(g.done());
        let states: Vec<RelayState> = g.relays().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            states,
            vec![RelayState::Failed("the TURN server did not answer".into())]
        );
        // No relayed address: sending through it is dropped and counted.
        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        assert!(!g.send(now, relayed, "198.51.100.1:1".parse().unwrap(), b"x"));
        assert_eq!(g.stats().relay_dropped, 1);
    }
}
