//! Tests of the native WebRTC transport: two real str0m stacks talking to
//! each other, over real 127.0.0.1 UDP sockets ([`UdpRtc`]) and, where time
//! must be controlled (timeouts, stalls), through the sans-I/O core with a
//! virtual clock and an in-memory wire.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::candidates::HostAddrs;
use super::fingerprint::fingerprint_of_sdp;
use super::rtc::*;
use super::udp::UdpRtc;
use crate::channels::{self, CHAT, CLOCK, CONTROL, ChannelId};

const A: u64 = 1;
const B: u64 = 2;

/// Fast ICE failure detection for tests (about one second).
fn fast_config() -> TransportConfig {
    TransportConfig {
        ice: IceTiming {
            initial_rto: Duration::from_millis(50),
            max_rto: Duration::from_millis(200),
            max_retransmits: 4,
        },
        idle_timeout: Duration::from_millis(1000),
        disconnect_grace: Duration::from_millis(500),
        ..TransportConfig::default()
    }
}

fn all_channels() -> HashSet<ChannelId> {
    channels::ALL.iter().map(|s| s.id).collect()
}

async fn bind(config: TransportConfig) -> UdpRtc<u64> {
    UdpRtc::bind(
        "127.0.0.1:0".parse().unwrap(),
        HostAddrs::loopback(),
        config,
    )
    .await
    .unwrap()
}

/// Polls both sides until `done` holds for the collected events; panics
/// after 10 s.
async fn run_until(
    a: &mut UdpRtc<u64>,
    b: &mut UdpRtc<u64>,
    evs_a: &mut Vec<TransportEvent<u64>>,
    evs_b: &mut Vec<TransportEvent<u64>>,
    mut done: impl FnMut(&[TransportEvent<u64>], &[TransportEvent<u64>]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(evs_a, evs_b) {
        tokio::select! {
            ev = a.next_event() => evs_a.push(ev),
            ev = b.next_event() => evs_b.push(ev),
            () = tokio::time::sleep_until(deadline) => {
                panic!("timed out; a saw {evs_a:?}, b saw {evs_b:?}")
            }
        }
    }
}

fn opened(evs: &[TransportEvent<u64>]) -> HashSet<ChannelId> {
    evs.iter()
        .filter_map(|e| match e {
            TransportEvent::ChannelOpen(_, c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn data(evs: &[TransportEvent<u64>]) -> Vec<(ChannelId, Vec<u8>)> {
    evs.iter()
        .filter_map(|e| match e {
            TransportEvent::Data { channel, data, .. } => Some((*channel, data.clone())),
            _ => None,
        })
        .collect()
}

/// `offerer` connects to `answerer` (peer ids: A is `offerer`'s id at the
/// answerer, B the answerer's id at the offerer).
async fn connect(
    offerer: &mut UdpRtc<u64>,
    answerer: &mut UdpRtc<u64>,
) -> (Vec<TransportEvent<u64>>, Vec<TransportEvent<u64>>) {
    let offer = offerer.create_offer(B).unwrap();
    let answer = answerer.accept_offer(A, &offer).unwrap();
    offerer.accept_answer(B, &answer).unwrap();
    let (mut eo, mut ea) = (Vec::new(), Vec::new());
    run_until(offerer, answerer, &mut eo, &mut ea, |o, a| {
        opened(o) == all_channels() && opened(a) == all_channels()
    })
    .await;
    assert!(eo.contains(&TransportEvent::Connected(B)));
    assert!(ea.contains(&TransportEvent::Connected(A)));
    (eo, ea)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends frames both ways on all three channels and checks they arrive
/// byte-exact and, per reliable channel, in order.
async fn exchange(x: &mut UdpRtc<u64>, y: &mut UdpRtc<u64>) {
    let sizes = [1usize, 100, 1200, 5000, MAX_FRAME_SIZE];
    let mut sent_x = Vec::new();
    let mut sent_y = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        for spec in [CONTROL, CHAT, CLOCK] {
            let fx = pattern(len, i as u8 ^ spec.id.get() as u8);
            let fy = pattern(len, 0x80 | (i as u8 ^ spec.id.get() as u8));
            x.send(B, spec.id, &fx).unwrap();
            y.send(A, spec.id, &fy).unwrap();
            sent_x.push((spec.id, fx));
            sent_y.push((spec.id, fy));
        }
    }
    let (mut ex, mut ey) = (Vec::new(), Vec::new());
    let n = sent_x.len();
    run_until(x, y, &mut ex, &mut ey, |ex, ey| {
        data(ex).len() >= n && data(ey).len() >= n
    })
    .await;
    for spec in [CONTROL, CHAT] {
        let want: Vec<_> = sent_x.iter().filter(|(c, _)| *c == spec.id).collect();
        let got: Vec<_> = data(&ey)
            .into_iter()
            .filter(|(c, _)| *c == spec.id)
            .collect();
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want,
            "x→y on {}",
            spec.label
        );
        let want: Vec<_> = sent_y.iter().filter(|(c, _)| *c == spec.id).collect();
        let got: Vec<_> = data(&ex)
            .into_iter()
            .filter(|(c, _)| *c == spec.id)
            .collect();
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            want,
            "y→x on {}",
            spec.label
        );
    }
    // Unordered channel: same multiset.
    let mut want: Vec<_> = sent_x
        .iter()
        .filter(|(c, _)| *c == CLOCK.id)
        .cloned()
        .collect();
    let mut got: Vec<_> = data(&ey)
        .into_iter()
        .filter(|(c, _)| *c == CLOCK.id)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn udp_pair_connects_and_exchanges_with_each_side_offering() {
    // x offers to y.
    let mut x = bind(TransportConfig::default()).await;
    let mut y = bind(TransportConfig::default()).await;
    connect(&mut x, &mut y).await;
    exchange(&mut x, &mut y).await;
    // Fingerprints: each side sees exactly the other's certificate.
    assert_eq!(
        x.transport().remote_fingerprint(B),
        Some(y.local_fingerprint())
    );
    assert_eq!(
        y.transport().remote_fingerprint(A),
        Some(x.local_fingerprint())
    );

    // The other direction, fresh transports: y' offers to x'.
    let mut x2 = bind(TransportConfig::default()).await;
    let mut y2 = bind(TransportConfig::default()).await;
    connect(&mut y2, &mut x2).await;
    // y2 knows x2 as B and x2 knows y2 as A.
    exchange(&mut y2, &mut x2).await;
}

#[tokio::test]
async fn oversized_frames_are_refused_and_dropped() {
    let mut x = bind(TransportConfig::default()).await;
    let mut y = bind(TransportConfig::default()).await;
    connect(&mut x, &mut y).await;
    let big = vec![7u8; MAX_FRAME_SIZE + 1];
    assert_eq!(
        x.send(B, CONTROL.id, &big),
        Err(SendError::TooLarge {
            len: MAX_FRAME_SIZE + 1,
            max: MAX_FRAME_SIZE
        })
    );
    // A misbehaving remote bypasses the send check: the receiver drops it.
    assert!(
        x.transport_mut()
            .raw_write(B, CHAT.id, &big, Instant::now())
    );
    x.send(B, CHAT.id, b"after").unwrap();
    let (mut ex, mut ey) = (Vec::new(), Vec::new());
    run_until(&mut x, &mut y, &mut ex, &mut ey, |_, ey| {
        !data(ey).is_empty()
    })
    .await;
    assert_eq!(data(&ey), vec![(CHAT.id, b"after".to_vec())]);
    let stats = y.transport().peer_stats(A).unwrap();
    assert_eq!(stats.oversized_dropped, 1);
    assert_eq!(stats.state, PeerState::Connected);
}

/// Data on an SCTP stream id we never created (str0m drops it inside
/// `poll_output`, where it used to log one WARN line per message) is counted
/// per peer in `unknown_channel_dropped`, and the connection carries on.
#[tokio::test]
async fn data_on_an_unknown_stream_is_counted() {
    const MESSAGES: u64 = 20;
    let mut x = bind(TransportConfig::default()).await;
    let mut y = bind(TransportConfig::default()).await;
    connect(&mut x, &mut y).await;
    let (mut ex, mut ey) = (Vec::new(), Vec::new());
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < MESSAGES {
        assert!(Instant::now() < deadline, "the raw channel never opened");
        if x.transport_mut()
            .raw_stream_write(B, 7, b"junk", Instant::now())
        {
            sent += 1;
        } else {
            // Let the SCTP stream open.
            let _ = tokio::time::timeout(Duration::from_millis(20), async {
                tokio::select! {
                    ev = x.next_event() => ex.push(ev),
                    ev = y.next_event() => ey.push(ev),
                }
            })
            .await;
        }
    }
    x.send(B, CHAT.id, b"after").unwrap();
    run_until(&mut x, &mut y, &mut ex, &mut ey, |_, ey| {
        !data(ey).is_empty()
    })
    .await;
    while y.transport().peer_stats(A).unwrap().unknown_channel_dropped < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            y.transport().peer_stats(A)
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), y.next_event()).await;
    }
    let stats = y.transport().peer_stats(A).unwrap();
    assert_eq!(stats.unknown_channel_dropped, MESSAGES);
    assert_eq!(stats.state, PeerState::Connected);
    assert_eq!(data(&ey), vec![(CHAT.id, b"after".to_vec())]);
}

#[tokio::test]
async fn graceful_close_is_seen_by_the_remote() {
    let mut x = bind(TransportConfig::default()).await;
    let mut y = bind(TransportConfig::default()).await;
    connect(&mut x, &mut y).await;
    x.close_peer(B);
    assert!(x.transport().peer_stats(B).is_none());
    let (mut ex, mut ey) = (Vec::new(), Vec::new());
    run_until(&mut x, &mut y, &mut ex, &mut ey, |_, ey| {
        ey.iter()
            .any(|e| matches!(e, TransportEvent::PeerClosed { .. }))
    })
    .await;
    assert!(
        ex.contains(&TransportEvent::PeerClosed {
            peer: B,
            reason: CloseReason::Local
        }) || ex.is_empty()
    );
    assert!(ey.contains(&TransportEvent::PeerClosed {
        peer: A,
        reason: CloseReason::RemoteClosed
    }));
    assert!(y.transport().peer_stats(A).is_none());
}

#[tokio::test]
async fn vanished_peer_is_detected_and_dropped() {
    let mut x = bind(fast_config()).await;
    let mut y = bind(fast_config()).await;
    connect(&mut x, &mut y).await;
    drop(x); // no close_notify: the peer just goes silent
    let started = Instant::now();
    let mut evs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !evs
        .iter()
        .any(|e| matches!(e, TransportEvent::PeerClosed { .. }))
    {
        tokio::select! {
            ev = y.next_event() => evs.push(ev),
            () = tokio::time::sleep_until(deadline) => panic!("not detected: {evs:?}"),
        }
    }
    assert_eq!(
        evs,
        vec![
            TransportEvent::Disconnected(A),
            TransportEvent::PeerClosed {
                peer: A,
                reason: CloseReason::IceFailed
            }
        ],
        "after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Sans-I/O: virtual clock, in-memory wire.

struct Wire {
    now: Instant,
    a: RtcTransport<u64>,
    b: RtcTransport<u64>,
    /// When false, datagrams from b to a are lost.
    b_to_a: bool,
    ev_a: Vec<TransportEvent<u64>>,
    ev_b: Vec<TransportEvent<u64>>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Wire {
    fn new(config: TransportConfig) -> Self {
        Self {
            now: Instant::now(),
            a: RtcTransport::new(config.clone(), vec![addr(1000)]).unwrap(),
            b: RtcTransport::new(config, vec![addr(2000)]).unwrap(),
            b_to_a: true,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
        }
    }

    /// Delivers all datagrams (instantly) and collects events.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                self.b
                    .handle_datagram(self.now, t.source, t.destination, &t.contents);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                if self.b_to_a {
                    self.a
                        .handle_datagram(self.now, t.source, t.destination, &t.contents);
                }
            }
            self.ev_a.extend(std::iter::from_fn(|| self.a.poll_event()));
            self.ev_b.extend(std::iter::from_fn(|| self.b.poll_event()));
            if !moved {
                return;
            }
        }
    }

    /// Advances virtual time to the next deadline (at most `max_step`).
    fn step(&mut self, max_step: Duration) {
        self.pump();
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.now + max_step);
        self.now = next.clamp(self.now, self.now + max_step);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.pump();
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let end = self.now + limit;
        let mut steps = 0u32;
        while !done(self) {
            assert!(
                self.now < end,
                "virtual timeout: a {:?} b {:?}",
                self.ev_a,
                self.ev_b
            );
            steps += 1;
            assert!(steps < 1_000_000, "time does not advance");
            self.step(Duration::from_millis(50));
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        self.run_until(by + Duration::from_secs(1), |w| w.now >= end);
    }

    fn connect(&mut self) {
        let offer = self.a.create_offer(B, self.now).unwrap();
        let answer = self.b.accept_offer(A, &offer, self.now).unwrap();
        self.a.accept_answer(B, &answer, self.now).unwrap();
        self.run_until(Duration::from_secs(5), |w| {
            opened(&w.ev_a) == all_channels() && opened(&w.ev_b) == all_channels()
        });
    }
}

#[test]
fn sdp_carries_the_transport_fingerprint() {
    let mut w = Wire::new(TransportConfig::default());
    let offer = w.a.create_offer(B, w.now).unwrap();
    assert_eq!(
        fingerprint_of_sdp(&offer).as_ref(),
        Some(w.a.local_fingerprint())
    );
    assert!(offer.contains("127.0.0.1 1000 typ host"), "{offer}");
    let answer = w.b.accept_offer(A, &offer, w.now).unwrap();
    assert_eq!(
        fingerprint_of_sdp(&answer).as_ref(),
        Some(w.b.local_fingerprint())
    );
    assert_eq!(w.b.remote_fingerprint(A), Some(w.a.local_fingerprint()));
}

#[test]
fn bad_remote_input_is_an_error_not_a_peer() {
    let mut w = Wire::new(TransportConfig::default());
    assert!(matches!(
        w.b.accept_offer(A, "v=0\r\ngarbage", w.now),
        Err(TransportError::RemoteSdp(_))
    ));
    assert_eq!(w.b.peers().count(), 0);
    assert_eq!(
        w.a.accept_answer(B, "v=0", w.now),
        Err(TransportError::UnknownPeer)
    );
    assert_eq!(
        w.a.add_remote_candidate(B, "candidate:x", w.now),
        Err(TransportError::UnknownPeer)
    );
    let _ = w.a.create_offer(B, w.now).unwrap();
    assert!(matches!(
        w.a.add_remote_candidate(B, "candidate:nonsense", w.now),
        Err(TransportError::RemoteSdp(_))
    ));
    assert_eq!(w.a.create_offer(B, w.now), Err(TransportError::PeerExists));
    // Junk datagrams are counted, not fatal.
    w.a.handle_datagram(w.now, addr(9), addr(1000), &[]);
    w.a.handle_datagram(w.now, addr(9), addr(1000), &[0x17, 0xfe, 0xfd, 1, 2, 3]);
    let s = w.a.stats();
    assert_eq!(s.malformed_datagrams + s.unmatched_datagrams, 2);
    assert!(w.a.peer_stats(B).is_some());
}

#[test]
fn max_peers_is_enforced() {
    let mut w = Wire::new(TransportConfig {
        max_peers: 1,
        ..TransportConfig::default()
    });
    w.a.create_offer(B, w.now).unwrap();
    assert_eq!(
        w.a.create_offer(3, w.now),
        Err(TransportError::TooManyPeers(1))
    );
}

#[test]
fn unanswered_offer_times_out() {
    let mut w = Wire::new(TransportConfig::default());
    w.a.create_offer(B, w.now).unwrap();
    let start = w.now;
    w.run_until(DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(5), |w| {
        !w.ev_a.is_empty()
    });
    assert_eq!(
        w.ev_a,
        vec![TransportEvent::PeerClosed {
            peer: B,
            reason: CloseReason::ConnectTimeout
        }]
    );
    assert!(w.now - start >= DEFAULT_CONNECT_TIMEOUT);
}

#[test]
fn remote_candidates_are_remembered_up_to_the_limit_and_named_after_a_failure() {
    use crate::ice::CandidateType;
    let mut w = Wire::new(TransportConfig::default());
    w.a.create_offer(B, w.now).unwrap();
    for i in 0..MAX_REMOTE_CANDIDATES + 6 {
        let port = 20_000 + u16::try_from(i).unwrap();
        let line = format!("candidate:{i} 1 udp 2130706431 198.51.100.7 {port} typ host");
        w.a.add_remote_candidate(B, &line, w.now).unwrap();
    }
    w.a.add_remote_candidate(
        B,
        "candidate:99 1 udp 1694498815 203.0.113.9 40000 typ srflx raddr 0.0.0.0 rport 0",
        w.now,
    )
    .unwrap();
    // Full: the srflx one is given to str0m but not remembered.
    assert_eq!(w.a.remembered_remote_candidates(B), MAX_REMOTE_CANDIDATES);
    assert_eq!(
        w.a.peer_stats(B).unwrap().remote_types,
        vec![CandidateType::Host]
    );
    // Nothing answers: after the connect deadline the types tried are kept.
    w.run_until(DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(5), |w| {
        !w.ev_a.is_empty()
    });
    assert_eq!(w.a.failed_remote_types(B), Some(&[CandidateType::Host][..]));
    assert_eq!(w.a.local_types(), vec![CandidateType::Host]);
}

#[test]
fn virtual_wire_connects_and_sends() {
    let mut w = Wire::new(TransportConfig::default());
    w.connect();
    assert_eq!(w.a.send(B, CONTROL.id, b"hi", w.now), Ok(SendOutcome::Sent));
    assert_eq!(
        w.a.send(B, ChannelId::new(9), b"hi", w.now),
        Err(SendError::UnknownChannel(9))
    );
    assert_eq!(
        w.a.send(7, CONTROL.id, b"hi", w.now),
        Err(SendError::UnknownPeer)
    );
    w.pump();
    assert_eq!(data(&w.ev_b), vec![(CONTROL.id, b"hi".to_vec())]);
}

#[test]
fn a_peer_that_stops_acknowledging_fills_the_queue_and_is_dropped() {
    let config = TransportConfig {
        max_queued_bytes: 64 * 1024,
        send_stall_limit: Duration::from_secs(2),
        // Keep ICE from giving up first.
        disconnect_grace: Duration::from_secs(3600),
        ..TransportConfig::default()
    };
    let mut w = Wire::new(config);
    w.connect();
    w.b_to_a = false; // b's SACKs never arrive: a's SCTP buffer fills up
    let frame = vec![1u8; 8 * 1024];
    let mut queued = 0usize;
    let full = loop {
        match w.a.send(B, CHAT.id, &frame, w.now) {
            Ok(SendOutcome::Sent) => {}
            Ok(SendOutcome::Queued) => queued += 1,
            Err(e) => break e,
        }
        w.pump();
        assert!(queued <= 8, "queue grew past its byte limit");
    };
    assert_eq!(full, SendError::QueueFull);
    assert_eq!(queued, 8); // 64 KiB of 8 KiB frames
    assert_eq!(w.a.peer_stats(B).unwrap().queued_bytes, 64 * 1024);
    let stalled_at = w.now;
    w.run_until(Duration::from_secs(10), |w| {
        w.ev_a
            .iter()
            .any(|e| matches!(e, TransportEvent::PeerClosed { .. }))
    });
    assert!(w.ev_a.contains(&TransportEvent::PeerClosed {
        peer: B,
        reason: CloseReason::SendStalled
    }));
    assert!(w.now - stalled_at >= Duration::from_secs(2));
}

#[test]
fn queued_frames_flow_once_acknowledgements_return() {
    let mut w = Wire::new(TransportConfig::default());
    w.connect();
    w.b_to_a = false;
    let frames: Vec<Vec<u8>> = (0..40).map(|i| pattern(8 * 1024, i)).collect();
    let mut outcomes = Vec::new();
    for f in &frames {
        outcomes.push(w.a.send(B, CONTROL.id, f, w.now).unwrap());
        w.pump();
    }
    assert!(outcomes.contains(&SendOutcome::Queued));
    w.b_to_a = true;
    w.run_until(Duration::from_secs(30), |w| {
        data(&w.ev_b).len() == frames.len()
    });
    let got: Vec<Vec<u8>> = data(&w.ev_b).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, frames);
    assert_eq!(w.a.peer_stats(B).unwrap().queued_bytes, 0);
}

#[test]
fn silence_is_a_disconnect_and_traffic_a_reconnect() {
    let mut w = Wire::new(TransportConfig::default());
    w.connect();
    w.ev_a.clear();
    w.b_to_a = false;
    let cut = w.now;
    w.run_until(DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1), |w| {
        !w.ev_a.is_empty()
    });
    assert_eq!(w.ev_a, vec![TransportEvent::Disconnected(B)]);
    assert!(w.now - cut >= DEFAULT_IDLE_TIMEOUT);
    assert_eq!(w.a.peer_stats(B).unwrap().state, PeerState::Disconnected);
    w.b_to_a = true;
    w.run_until(Duration::from_secs(5), |w| w.ev_a.len() > 1);
    assert_eq!(w.ev_a[1], TransportEvent::Reconnected(B));
    w.b.send(A, CHAT.id, b"back", w.now).unwrap();
    w.run_until(Duration::from_secs(5), |w| !data(&w.ev_a).is_empty());
    assert_eq!(data(&w.ev_a), vec![(CHAT.id, b"back".to_vec())]);
}

#[test]
fn ice_restart_keeps_the_connection() {
    let mut w = Wire::new(TransportConfig::default());
    w.connect();
    let offer = w.a.restart_ice(B, w.now).unwrap();
    let answer = w.b.accept_offer(A, &offer, w.now).unwrap();
    w.a.accept_answer(B, &answer, w.now).unwrap();
    w.advance(Duration::from_secs(1));
    w.a.send(B, CHAT.id, b"still here", w.now).unwrap();
    w.run_until(Duration::from_secs(5), |w| !data(&w.ev_b).is_empty());
    assert_eq!(data(&w.ev_b), vec![(CHAT.id, b"still here".to_vec())]);
    assert!(
        !w.ev_a
            .iter()
            .chain(&w.ev_b)
            .any(|e| matches!(e, TransportEvent::PeerClosed { .. }))
    );
}

#[test]
fn a_fresh_offer_with_a_new_fingerprint_replaces_the_connection() {
    let mut w = Wire::new(TransportConfig::default());
    w.connect();
    // The remote restarted from scratch: new transport, new certificate.
    let mut a2 = RtcTransport::new(TransportConfig::default(), vec![addr(1001)]).unwrap();
    let offer = a2.create_offer(B, w.now).unwrap();
    let answer = w.b.accept_offer(A, &offer, w.now).unwrap();
    a2.accept_answer(B, &answer, w.now).unwrap();
    w.pump();
    assert!(w.ev_b.contains(&TransportEvent::PeerClosed {
        peer: A,
        reason: CloseReason::Replaced
    }));
    assert_eq!(w.b.remote_fingerprint(A), Some(a2.local_fingerprint()));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn udp_receive_buffer_is_enlarged_up_to_the_kernel_cap() {
    use super::udp::UDP_RECV_BUFFER_BYTES;
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let x = bind(TransportConfig::default()).await;
    // Linux reports twice the requested size (bookkeeping overhead).
    let got = x.recv_buffer_size().unwrap();
    let want = UDP_RECV_BUFFER_BYTES.min(rmem_max);
    assert!(got >= want, "SO_RCVBUF {got} < {want}");
}

#[tokio::test]
async fn a_burst_larger_than_one_batch_is_drained_completely() {
    use super::udp::RECV_BATCH;
    let mut x = bind(TransportConfig::default()).await;
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let count = 3 * RECV_BATCH + 1;
    for i in 0..count {
        // DTLS-looking records nobody negotiated: unmatched, not fatal.
        junk.send_to(&[0x17, 0xfe, 0xfd, (i % 256) as u8], x.local_addr())
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = x.transport().stats();
        if s.malformed_datagrams + s.unmatched_datagrams >= count as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {s:?} of {count} datagrams handled"
        );
        // Junk produces no event: next_event only runs until the timeout.
        let _ = tokio::time::timeout(Duration::from_millis(50), x.next_event()).await;
    }
    let s = x.transport().stats();
    assert_eq!(s.malformed_datagrams + s.unmatched_datagrams, count as u64);
}
