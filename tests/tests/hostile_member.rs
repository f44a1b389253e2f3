//! Hostile member: the real server in-process (real SQLite file, real
//! HTTP/WebSocket on 127.0.0.1), an honest host and two honest followers
//! (native str0m drivers, virtual players), and a member with a **valid**
//! certificate that connects through webrtc-rs (an independent WebRTC stack)
//! and attacks every honest peer over real data channels:
//!
//! - control frames with a zeroed signature ("unsigned"),
//! - control frames signed with its own (valid, member) key,
//! - host frames captured earlier and replayed,
//! - frames for another room,
//! - messages above the frame limit,
//! - junk frames to every honest peer for at least [`FLOOD`] (and until a
//!   host seek sent during it was applied everywhere), paced to at most
//!   [`JUNK_RATE`] per second each (measured on 2 cores: 3 000–6 000 per
//!   peer and about 14 000 in total, with the attacker, the server and the
//!   three honest peers sharing the machine; at least [`MIN_JUNK_RATE`]
//!   each is required).
//!
//! The honest peers apply none of it (their playback is the host's, in
//! sync), count each attack under its reason in the hostile member's row of
//! `status`, stay responsive (a host seek sent during the flood is applied
//! during the flood) and memory stays bounded (process RSS growth during the
//! flood under [`MAX_RSS_GROWTH_MIB`], while far more junk than that passes
//! through).
//!
//! A second test (`fake_buffering_cannot_hold_the_room`): the hostile
//! member claims `Buffering` again and again in signed `Status` frames; its
//! hold allowance runs out, the host is told in plain words, and the host's
//! room keeps playing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/inproc.rs"]
mod inproc;
#[path = "support/webrtc_peer.rs"]
mod webrtc_peer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inproc::{row, wait_for, wait_in_sync};
use watchparty_peer::channels;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::frame::{self, Envelope, Header};
use watchparty_peer::ids::ContentHash;
use watchparty_peer::ids::{Epoch, PositionMs, RoomId, RoomMs, Seq, UserId};
use watchparty_peer::message::{ChatText, Kind, Message, Readiness, Status};
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{DriverEvent, DriverHandle, PeerView, StatusSnapshot};
use watchparty_peer::native::rtc::MAX_FRAME_SIZE;
use watchparty_peer::native::signal_client::{SignalClient, SignalConfig, SignalEvent};
use watchparty_peer::session::{STATE_REPLY_INTERVAL, SessionConfig, UserCommand};
use watchparty_peer::signaling::{ClientMessage, Sdp, ServerMessage};
use watchparty_peer::time::MediaPos;
use webrtc_peer::{WEvent, WebrtcPeer};

/// Junk frames per second sent to each honest peer during the flood.
const JUNK_RATE: u64 = 10_000;
/// The flood must reach at least this rate per honest peer for the test to
/// count (the sender is webrtc-rs with a bounded send buffer, so the
/// receivers' pace limits it).
const MIN_JUNK_RATE: u64 = 1_000;
/// How long the flood lasts at least.
const FLOOD: Duration = Duration::from_secs(3);
/// How long the flood lasts at most: it goes on until the host seek sent
/// during it was applied by every follower (on a busy machine that can take
/// longer than [`FLOOD`]).
const FLOOD_MAX: Duration = Duration::from_secs(33);
/// Concurrent junk senders per honest peer.
const SENDERS_PER_PEER: usize = 4;
/// Junk frames are sent in batches this often.
const BATCH_EVERY: Duration = Duration::from_millis(10);
/// Bound on the growth of this process's resident memory during the flood.
/// The process holds the server, three honest drivers and the attacker
/// (whose webrtc-rs send buffers are capped at `SEND_BUFFER_LIMIT` per
/// channel); about 40 000 junk frames pass through. Measured: +12 to
/// +22 MiB. Coarse: it catches retention of several hundred bytes per
/// rejected frame (a per-frame event or buffer kept without bound), not a
/// few bytes; the exact per-reason counters and the driver's event-queue
/// overflow counter (asserted too) are the sharper checks.
const MAX_RSS_GROWTH_MIB: u64 = 40;
/// Junk frame sizes (bytes).
const JUNK_MIN_LEN: usize = 64;
const JUNK_MAX_LEN: usize = 256;
/// Position tolerance between host and followers once settled.
const SYNC_TOLERANCE_MS: f64 = 50.0;
/// Sanity bound on how long a host command may take to be applied during
/// the flood. The behaviour asserted is that it is applied while the flood
/// goes on; how fast (about 1 s on an idle machine) is a performance figure
/// for benchmarks, not a test bound on a shared 2-core machine.
const RESPONSIVE_WITHIN: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(30);

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The hostile member: its signaling client, key, and one webrtc-rs
/// connection per honest peer.
struct Hostile {
    key: SigningKey,
    me: UserId,
    room: RoomId,
    epoch: Epoch,
    peers: BTreeMap<UserId, WebrtcPeer>,
    seq: u64,
}

impl Hostile {
    fn header(&mut self, room: RoomId) -> Header {
        self.seq += 1;
        Header {
            room,
            epoch: self.epoch,
            seq: Seq::new(self.seq).unwrap(),
            issued_at: RoomMs(0),
        }
    }

    /// A `Pause` at 0 (visible if ever applied), signed with our own key.
    fn own_pause(&mut self) -> Vec<u8> {
        let h = self.header(self.room);
        let msg = Message::Pause {
            position: PositionMs::new(0).unwrap(),
            at: RoomMs(0),
        };
        frame::encode(&self.key, &h, &msg).unwrap()
    }

    /// A `Status` signed with our own key, issued at room time `room_ms`
    /// (within the host's skew bound), claiming `readiness` for `item`.
    fn status(&mut self, readiness: Readiness, item: ContentHash, room_ms: i64) -> Vec<u8> {
        let mut h = self.header(self.room);
        h.issued_at = RoomMs(room_ms);
        let msg = Message::Status(Status {
            readiness,
            item: Some(item),
            position: PositionMs::new(0).unwrap(),
            at: RoomMs(room_ms),
            detached: false,
        });
        frame::encode(&self.key, &h, &msg).unwrap()
    }

    /// The same, with the signature zeroed.
    fn unsigned_pause(&mut self) -> Vec<u8> {
        let mut f = self.own_pause();
        let n = f.len();
        f[n - 64..].fill(0);
        f
    }

    /// A chat frame for another room.
    fn other_room_chat(&mut self) -> Vec<u8> {
        let h = self.header(RoomId::from_bytes([0xab; 16]));
        let msg = Message::Chat(ChatText::new("hello other room").unwrap());
        frame::encode(&self.key, &h, &msg).unwrap()
    }

    async fn send_all(&self, spec: channels::ChannelSpec, data: &[u8]) {
        for w in self.peers.values() {
            w.send(spec, data).await;
        }
    }
}

/// Connects the hostile member: signaling with its own session key (the
/// server issues it a valid viewer certificate), then a webrtc-rs offer to
/// every online member (the server's offerer rule is `joiner`); `online`
/// other members are expected.
async fn connect_hostile(room: &inproc::Room, index: usize, online_peers: usize) -> Hostile {
    let key = new_signing_key().unwrap();
    let api = &room.apis[index];
    let mut signal = SignalClient::spawn(
        SignalConfig {
            url: api.signal_url(&room.room.to_string()).unwrap().to_string(),
            session_key: key.public_key(),
            tls: None,
            jitter_seed: 99,
        },
        api.clone(),
    );
    let (me, epoch, online) = tokio::time::timeout(STEP, async {
        loop {
            match signal.incoming.recv().await.expect("signaling") {
                SignalEvent::Message(m) => {
                    if let ServerMessage::Hello {
                        you,
                        epoch,
                        members,
                        ..
                    } = *m
                    {
                        let online: Vec<UserId> = members
                            .as_slice()
                            .iter()
                            .filter(|m| m.online)
                            .map(|m| m.certificate.claimed().user)
                            .filter(|u| *u != you)
                            .collect();
                        return (you, epoch, online);
                    }
                }
                SignalEvent::Fatal(r) => panic!("hostile signaling: {r}"),
                _ => {}
            }
        }
    })
    .await
    .expect("hello");
    assert_eq!(online.len(), online_peers, "honest members online");
    let mut pending = BTreeMap::new();
    for peer in &online {
        let (w, offer) = webrtc_peer::webrtc_side(None, None).await;
        signal
            .outgoing
            .send(ClientMessage::Offer {
                to: *peer,
                sdp: Sdp::new(&offer).unwrap(),
            })
            .await
            .unwrap();
        pending.insert(*peer, w);
    }
    let mut peers = BTreeMap::new();
    tokio::time::timeout(STEP, async {
        while !pending.is_empty() {
            if let SignalEvent::Message(m) = signal.incoming.recv().await.expect("signaling")
                && let ServerMessage::Answer { from, sdp } = *m
                && let Some(w) = pending.remove(&from)
            {
                w.pc.set_remote_answer(sdp.as_str().to_owned()).await;
                peers.insert(from, w);
            }
        }
    })
    .await
    .expect("answers");
    // Keep the signaling session alive (a member whose socket closed is no
    // longer current, which would change the drop reasons) and drained.
    tokio::spawn(async move {
        let mut signal = signal;
        while signal.incoming.recv().await.is_some() {}
    });
    Hostile {
        key,
        me,
        room: room.room,
        epoch,
        peers,
        seq: 0,
    }
}

/// Waits until every channel of every connection is open on the webrtc-rs
/// side; returns the frames that arrived meanwhile.
async fn wait_open(h: &mut Hostile) -> Vec<(UserId, u16, Vec<u8>)> {
    let mut frames = Vec::new();
    for (peer, w) in &mut h.peers {
        let mut open = 0;
        tokio::time::timeout(STEP, async {
            while open < channels::ALL.len() {
                match w.events.recv().await.expect("webrtc-rs events") {
                    WEvent::Open(_) => open += 1,
                    WEvent::Message(c, d) => frames.push((*peer, c, d)),
                }
            }
        })
        .await
        .expect("hostile channels open");
    }
    frames
}

/// Collects what the honest peers sent the hostile member for `within`.
async fn collect(h: &mut Hostile, within: Duration) -> Vec<(UserId, u16, Vec<u8>)> {
    collect_until(h, tokio::time::Instant::now() + within).await
}

/// Collects what the honest peers sent the hostile member until `until`.
async fn collect_until(
    h: &mut Hostile,
    until: tokio::time::Instant,
) -> Vec<(UserId, u16, Vec<u8>)> {
    let mut frames = Vec::new();
    for (peer, w) in &mut h.peers {
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, w.events.recv()).await {
            if let WEvent::Message(c, d) = ev {
                frames.push((*peer, c, d));
            }
        }
    }
    frames
}

fn drop_count(p: &PeerView, reason: &str) -> u64 {
    p.drops.get(reason).copied().unwrap_or(0)
}

/// Drops an honest neighbour may legitimately cause: a forwarded copy of a
/// host command that arrives after a newer one.
fn assert_honest_row(p: &PeerView) {
    assert!(
        p.drops.keys().all(|k| *k == "old_sequence"),
        "honest neighbour {} dropped: {:?}",
        p.user,
        p.drops
    );
}

async fn status(h: &DriverHandle) -> StatusSnapshot {
    h.status().await.expect("driver running")
}

/// A room with a host and two followers playing in sync from 30 s, and a
/// fourth invited member (index 3) not yet connected.
async fn playing_room() -> (inproc::Room, DriverHandle, Vec<DriverHandle>) {
    let mut room = inproc::room(3).await;
    let mut host = room.driver(0, 0).await;
    wait_for(&mut host, "host joined", STEP, |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let mut followers = Vec::new();
    for i in 1..=2 {
        let mut f = room.driver(i, 0).await;
        wait_for(&mut f, "follower connected", STEP, |e| {
            matches!(e, DriverEvent::PeerConnected { .. })
        })
        .await;
        followers.push(f);
    }
    host.command(UserCommand::Load(room.item.clone()))
        .await
        .unwrap();
    for f in &mut followers {
        wait_for(f, "media loaded", STEP, |e| {
            matches!(e, DriverEvent::MediaLoaded { .. })
        })
        .await;
    }
    host.command(UserCommand::Seek(MediaPos::from_millis(30_000)))
        .await
        .unwrap();
    host.command(UserCommand::Play).await.unwrap();
    for f in &followers {
        wait_in_sync(&host, f, false, 30_000.0, SYNC_TOLERANCE_MS, STEP).await;
    }
    (room, host, followers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_is_rejected_counted_and_harmless() {
    let (room, host, followers) = playing_room().await;

    // The hostile member joins with a valid certificate, over webrtc-rs.
    let mut h = connect_hostile(&room, 3, 3).await;
    let mut seen = wait_open(&mut h).await;
    let hostile = h.me;
    // Host commands while connected: frames to replay later.
    host.command(UserCommand::Seek(MediaPos::from_millis(40_000)))
        .await
        .unwrap();
    host.command(UserCommand::Pause).await.unwrap();
    host.command(UserCommand::Play).await.unwrap();
    let host_key = room.pin.key_id();
    let host_control = |seen: &[(UserId, u16, Vec<u8>)]| -> Vec<Vec<u8>> {
        seen.iter()
            .filter(|(_, c, _)| *c == channels::CONTROL.id.get())
            .filter(|(_, _, d)| {
                Envelope::parse(d).is_ok_and(|e| e.signer() == host_key && e.kind() != Kind::Bind)
            })
            .map(|(_, _, d)| d.clone())
            .collect()
    };
    // Collect until the three commands (and any `State`) are in, however
    // long a busy machine takes to deliver them.
    let t0 = Instant::now();
    while host_control(&seen).len() < 4 && t0.elapsed() < STEP {
        seen.extend(collect(&mut h, Duration::from_millis(500)).await);
    }
    let replays = host_control(&seen);
    assert!(
        replays.len() >= 4,
        "captured {} host control frames",
        replays.len()
    );
    let honest: Vec<&DriverHandle> = std::iter::once(&host).chain(&followers).collect();
    let mut before = Vec::new();
    for d in &honest {
        before.push(row(&status(d).await, hostile));
    }

    // Targeted attacks, each sent to every honest peer.
    for _ in 0..3 {
        let f = h.unsigned_pause();
        h.send_all(channels::CONTROL, &f).await;
        let f = h.own_pause();
        h.send_all(channels::CONTROL, &f).await;
        let f = h.other_room_chat();
        h.send_all(channels::CHAT, &f).await;
    }
    for f in &replays {
        h.send_all(channels::CONTROL, f).await;
    }
    let oversized = vec![0x57u8; MAX_FRAME_SIZE + 4000];
    h.send_all(channels::CONTROL, &oversized).await;
    h.send_all(channels::CHAT, &oversized).await;
    // Counted by reason in the hostile member's row at every honest peer.
    for (i, d) in honest.iter().enumerate() {
        let want = |p: &PeerView| {
            drop_count(p, "bad_signature") >= 3
                && drop_count(p, "not_host") >= 3
                && drop_count(p, "wrong_room") >= 3
                && p.oversized_dropped >= 2
                && p.duplicates
                    + drop_count(p, "replay")
                    + drop_count(p, "old_sequence")
                    + drop_count(p, "stale_epoch")
                    >= before[i].duplicates + replays.len() as u64
        };
        let t0 = Instant::now();
        let mut p = row(&status(d).await, hostile);
        while !want(&p) && t0.elapsed() < STEP {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p = row(&status(d).await, hostile);
        }
        println!("peer {i}: hostile row after targeted attacks: {p:?}");
        assert!(want(&p), "peer {i}: {p:?}");
        assert_eq!(
            p.accepted, before[i].accepted,
            "peer {i} accepted hostile frames"
        );
    }
    // Nothing was applied: everyone still plays the host's timeline.
    for f in &followers {
        wait_in_sync(&host, f, false, 40_000.0, SYNC_TOLERANCE_MS, STEP).await;
    }

    // The flood: JUNK_RATE junk frames per second to each honest peer for
    // at least FLOOD; a host seek is issued one second in and must be
    // applied while the flood goes on (the flood stops once it was, or at
    // FLOOD_MAX).
    let rss_before = rss_kib();
    let mut rss_peak = rss_before;
    let per_batch =
        (JUNK_RATE as u128 * BATCH_EVERY.as_millis() / 1000) as usize / SENDERS_PER_PEER;
    let targets: Vec<std::sync::Arc<dyn webrtc::data_channel::DataChannel>> =
        h.peers.values().map(|w| w.dc(channels::CONTROL)).collect();
    let target_users: Vec<UserId> = h.peers.keys().copied().collect();
    // One sender task per target (webrtc-rs connections have their own
    // drivers); each sends until told to stop, paced to at most JUNK_RATE.
    // SENDERS_PER_PEER tasks per target: each webrtc-rs `send` waits for
    // its connection's driver, so one task alone is latency-bound.
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = targets
        .iter()
        .flat_map(|dc| std::iter::repeat_n(dc, SENDERS_PER_PEER))
        .cloned()
        .enumerate()
        .map(|(t, dc)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                let start = tokio::time::Instant::now();
                let mut next = start;
                let mut sent = 0u64;
                while start.elapsed() < FLOOD_MAX
                    && !(start.elapsed() >= FLOOD && stop.load(Ordering::Relaxed))
                {
                    for _ in 0..per_batch {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let len = JUNK_MIN_LEN + (seed as usize) % (JUNK_MAX_LEN - JUNK_MIN_LEN);
                        let mut junk = vec![(seed >> 8) as u8; len];
                        junk[0] = b'J'; // never the frame magic
                        dc.send(bytes::BytesMut::from(&junk[..])).await.unwrap();
                        sent += 1;
                    }
                    next += BATCH_EVERY;
                    tokio::time::sleep_until(next).await;
                }
                (sent, Instant::now())
            })
        })
        .collect();
    let flood_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.command(UserCommand::Seek(MediaPos::from_millis(120_000)))
        .await
        .unwrap();
    let seek_at = Instant::now();
    let mut applied = vec![None; followers.len()];
    while applied.iter().any(Option::is_none) && seek_at.elapsed() < STEP {
        for (i, f) in followers.iter().enumerate() {
            let s = status(f).await;
            // On the seek's timeline: from 120 s, playing since (the old
            // one is far below).
            let until = 125_000.0 + seek_at.elapsed().as_secs_f64() * 1000.0;
            if applied[i].is_none()
                && s.playback
                    .is_some_and(|p| p.position_ms >= 120_000.0 && p.position_ms < until)
            {
                applied[i] = Some(seek_at.elapsed());
            }
        }
        rss_peak = rss_peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent_to: BTreeMap<u64, u64> = BTreeMap::new();
    let users = target_users
        .iter()
        .flat_map(|u| std::iter::repeat_n(u, SENDERS_PER_PEER));
    // When the first sender stopped: the end of the full flood.
    let mut flood_end = None::<Instant>;
    for (f, u) in floods.into_iter().zip(users) {
        let (n, ended) = f.await.unwrap();
        *sent_to.entry(u.get()).or_default() += n;
        flood_end = Some(flood_end.map_or(ended, |e| e.min(ended)));
    }
    let flood_end = flood_end.expect("flood senders");
    let sent: Vec<u64> = sent_to.values().copied().collect();
    let flood_took = flood_start.elapsed();
    rss_peak = rss_peak.max(rss_kib());
    let growth_mib = rss_peak.saturating_sub(rss_before) / 1024;
    println!(
        "flood: {sent:?} junk frames to the 3 peers in {flood_took:?}; seek applied after {applied:?}; RSS {} MiB → peak {} MiB (+{growth_mib} MiB)",
        rss_before / 1024,
        rss_peak / 1024
    );
    let rate = sent.iter().sum::<u64>() as f64 / flood_took.as_secs_f64();
    println!("flood: {rate:.0} junk frames/s in total");
    for n in &sent {
        assert!(
            *n as f64 / flood_took.as_secs_f64() >= MIN_JUNK_RATE as f64,
            "the flood itself was too slow: {sent:?} in {flood_took:?}"
        );
    }
    for (i, a) in applied.iter().enumerate() {
        let a = a.unwrap_or_else(|| panic!("follower {i} never applied the seek"));
        assert!(
            a <= RESPONSIVE_WITHIN,
            "follower {i} applied the seek after {a:?}"
        );
        assert!(
            seek_at + a <= flood_end,
            "follower {i}: the seek was applied only after the flood ({a:?})"
        );
    }
    assert!(
        growth_mib <= MAX_RSS_GROWTH_MIB,
        "RSS grew by {growth_mib} MiB during the flood (bound {MAX_RSS_GROWTH_MIB} MiB)"
    );
    // Nobody read the honest drivers' events during the flood: their
    // bounded event queues overflowed and counted the loss instead of
    // growing.
    for (i, d) in honest.iter().enumerate() {
        let s = status(d).await;
        assert!(s.counters.events_dropped > 0, "peer {i}: {:?}", s.counters);
    }
    // Every junk frame arrived (reliable channel) and was counted.
    for (i, d) in honest.iter().enumerate() {
        let t0 = Instant::now();
        let s = status(d).await;
        let want = sent_to[&s.you.unwrap()];
        let mut p = row(&s, hostile);
        while drop_count(&p, "not_a_frame") < want && t0.elapsed() < STEP {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p = row(&status(d).await, hostile);
        }
        assert_eq!(drop_count(&p, "not_a_frame"), want, "peer {i}: {p:?}");
        assert_eq!(p.accepted, before[i].accepted, "peer {i}");
    }
    // Still in sync on the host's timeline, and honest rows are clean.
    for f in &followers {
        wait_in_sync(&host, f, false, 120_000.0, SYNC_TOLERANCE_MS, STEP).await;
    }
    for (i, d) in honest.iter().enumerate() {
        let s = status(d).await;
        for p in s.peers.iter().filter(|p| p.user != hostile.get()) {
            assert_honest_row(p);
        }
        let total: u64 = s.drops.values().sum();
        let hostile_total: u64 = row(&s, hostile).drops.values().sum();
        assert_eq!(
            total - hostile_total,
            s.peers
                .iter()
                .filter(|p| p.user != hostile.get())
                .map(|p| p.drops.values().sum::<u64>())
                .sum::<u64>(),
            "peer {i}: every drop is attributed"
        );
    }
    let hs = status(&host).await;
    // Per-peer status (what `status` shows): ICE round trips everywhere,
    // the followers' clock estimate of the host, the host's view of each
    // follower's reported position error.
    let host_id = UserId::new(hs.you.unwrap()).unwrap();
    for f in &followers {
        let fs = status(f).await;
        let hr = row(&fs, host_id);
        assert!(hr.is_host && hr.rtt_ms.is_some(), "{hr:?}");
        assert!(
            hr.clock_offset_ms.is_some() && hr.clock_rtt_ms.is_some(),
            "{hr:?}"
        );
        assert!(hr.clock_uncertainty_ms.is_some_and(|u| u > 0.0), "{hr:?}");
        let me = UserId::new(fs.you.unwrap()).unwrap();
        let mr = row(&hs, me);
        assert_eq!(mr.readiness, Some("ready"), "{mr:?}");
        assert!(mr.rtt_ms.is_some(), "{mr:?}");
    }
    for f in &followers {
        let fs = status(f).await;
        let (hp, fp) = (hs.playback.unwrap(), fs.playback.unwrap());
        assert_eq!((hp.paused, hp.rate), (fp.paused, fp.rate));
        assert_eq!(fs.host, hs.you);
    }
}

/// Status frames the hostile member sends each follower, directly.
const STATUS_FLOOD: u64 = 2_100;
/// Over this long (evenly paced), so that the State-reply interval is
/// crossed a few times.
const STATUS_FLOOD_FOR: Duration = Duration::from_millis(10_500);
/// Messages the hostile member writes on a stream id nobody created.
const STRAY_MESSAGES: u64 = 500;
/// The stray stream id (not one of `channels::ALL`).
const STRAY_STREAM: u16 = 7;

/// Log lines that mention str0m's per-message unknown-stream warning,
/// written by this process's global subscriber (WARN, like the CLI's
/// default).
static STRAY_LOG_LINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct LineCounter;

impl std::io::Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        if line.contains("Drop ChannelData") {
            STRAY_LOG_LINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The hostile member's own `Status`, issued at room time `at_ms` (within
/// the skew window, so it is accepted: an authentic frame).
fn status_frame(h: &mut Hostile, at_ms: i64) -> Vec<u8> {
    let mut hd = h.header(h.room);
    hd.issued_at = RoomMs(at_ms);
    let msg = Message::Status(Status {
        readiness: Readiness::Ready,
        item: None,
        position: PositionMs::new(0).unwrap(),
        at: RoomMs(at_ms),
        detached: false,
    });
    frame::encode(&h.key, &hd, &msg).unwrap()
}

/// Issue #15 item 5: a member flooding the followers with its own `Status`
/// frames draws at most one `State` per `STATE_REPLY_INTERVAL` from each
/// (before: one `State` per `Status`), and data it writes on a stream id
/// nobody created is counted (`unknown_channel_dropped` in its `status`
/// row) instead of logged line by line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_flood_and_stray_stream_are_bounded_and_counted() {
    // Like the CLI: WARN and above, to a writer that counts the stray-stream
    // warning. Installed before any transport exists.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(|| LineCounter)
            .finish(),
    );
    let (room, host, followers) = playing_room().await;
    let mut h = connect_hostile(&room, 3, 3).await;
    let mut seen = wait_open(&mut h).await;
    let hostile = h.me;
    seen.extend(collect(&mut h, Duration::from_secs(1)).await);
    // The room clock, from the newest host frame: Status frames must pass
    // the followers' skew check to be authentic and accepted.
    let (mut room_ms, mut at) = (None, Instant::now());
    for (_, _, d) in &seen {
        if let Ok(f) = Envelope::parse(d)
            .map_err(drop)
            .and_then(|e| e.verify(&room.pin).map_err(drop))
            .and_then(|v| v.decode().map_err(drop))
        {
            room_ms = room_ms.max(Some(f.header().issued_at.0));
            at = Instant::now();
        }
    }
    let room_ms = room_ms.expect("a host frame");
    let follower_ids: Vec<UserId> = {
        let mut v = Vec::new();
        for f in &followers {
            v.push(UserId::new(status(f).await.you.unwrap()).unwrap());
        }
        v
    };
    let mut before = Vec::new();
    for f in &followers {
        let r = row(&status(f).await, hostile);
        before.push(r.accepted + r.duplicates);
    }

    // The flood: STATUS_FLOOD Status frames to each follower (only to
    // them: the host forwards nothing back to the first follower, so that
    // one has no sign of a path to the host and only the interval limits
    // it), evenly over STATUS_FLOOD_FOR, while counting the States each
    // follower sends us.
    const BATCH: u64 = 21;
    let every = STATUS_FLOOD_FOR / (STATUS_FLOOD / BATCH) as u32;
    let start = tokio::time::Instant::now();
    let mut states: BTreeMap<UserId, u64> = BTreeMap::new();
    let mut count = |frames: Vec<(UserId, u16, Vec<u8>)>| {
        for (from, c, d) in frames {
            if c == channels::CONTROL.id.get() && d.get(3) == Some(&Kind::State.to_byte()) {
                *states.entry(from).or_default() += 1;
            }
        }
    };
    for b in 0..STATUS_FLOOD / BATCH {
        for _ in 0..BATCH {
            let now = room_ms + at.elapsed().as_millis() as i64;
            let f = status_frame(&mut h, now);
            for id in &follower_ids {
                h.peers[id].send(channels::CONTROL, &f).await;
            }
        }
        let next = start + every * (b as u32 + 1);
        count(collect_until(&mut h, next).await);
    }
    count(collect(&mut h, Duration::from_secs(1)).await);
    let window = start.elapsed();
    // Every Status was authentic and taken: accepted, or (when the other
    // follower's mesh-forwarded copy arrived first) recognised as a
    // duplicate of one accepted — never dropped. The bound below is the
    // reply limit, not a drop.
    for (i, f) in followers.iter().enumerate() {
        let t0 = Instant::now();
        let taken = |p: &PeerView| p.accepted + p.duplicates;
        let mut p = row(&status(f).await, hostile);
        while taken(&p) < before[i] + STATUS_FLOOD && t0.elapsed() < STEP {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p = row(&status(f).await, hostile);
        }
        assert!(
            taken(&p) >= before[i] + STATUS_FLOOD && p.drops.is_empty(),
            "follower {i}: {p:?}"
        );
    }
    // What a follower may send us in the window: its replies (one per
    // STATE_REPLY_INTERVAL, the first at once) and the host's periodic
    // State it forwards (one per state interval), each +1 for the edges.
    let per = |interval: Duration| window.as_millis() as u64 / interval.as_millis() as u64 + 1;
    let reply = Duration::from_micros(STATE_REPLY_INTERVAL.as_micros() as u64);
    let periodic =
        Duration::from_micros(SessionConfig::new(room.room).state_interval.as_micros() as u64);
    let bound = per(reply) + per(periodic) + 1;
    println!("States from followers over {window:?} of Status flood: {states:?} (bound {bound})");
    for id in &follower_ids {
        let n = states.get(id).copied().unwrap_or(0);
        assert!(
            n <= bound,
            "follower {id:?} sent {n} States for {STATUS_FLOOD} Status frames (bound {bound})"
        );
    }

    // Data on a stream id that is none of ours, to every honest peer.
    let honest: Vec<&DriverHandle> = std::iter::once(&host).chain(&followers).collect();
    for w in h.peers.values() {
        let dc = w.pc.stray_channel(STRAY_STREAM).await;
        let mut sent = 0;
        let t0 = Instant::now();
        while sent < STRAY_MESSAGES {
            if dc.send(bytes::BytesMut::from(&b"stray"[..])).await.is_ok() {
                sent += 1;
            } else {
                assert!(t0.elapsed() < STEP, "the stray channel never opened");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for (i, d) in honest.iter().enumerate() {
        let t0 = Instant::now();
        let mut p = row(&status(d).await, hostile);
        while p.unknown_channel_dropped < STRAY_MESSAGES && t0.elapsed() < STEP {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p = row(&status(d).await, hostile);
        }
        println!("peer {i}: hostile row after stray data: {p:?}");
        assert_eq!(p.unknown_channel_dropped, STRAY_MESSAGES, "peer {i}: {p:?}");
        assert_eq!(p.state, "connected", "peer {i}: {p:?}");
    }
    // Counted, not logged: no line per message (none at all).
    assert_eq!(
        STRAY_LOG_LINES.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "str0m's per-message warning reached the log"
    );
    // Nothing of it disturbed playback.
    for f in &followers {
        wait_in_sync(&host, f, false, 30_000.0, SYNC_TOLERANCE_MS, STEP).await;
    }
}

/// The fake-buffering attack's rhythm: claim `Buffering` for this long
/// (longer than the policy's 10 s wait), then `Ready` for as long (longer
/// than `EXCUSE_STEADY`, so that the room waits for it again), again and
/// again. Before the hold allowance this held the room about half the time.
const FAKE_PHASE: Duration = Duration::from_millis(10_500);
/// The attacker reports this often.
const FAKE_REPORT_EVERY: Duration = Duration::from_millis(500);
/// The attack runs this long…
const FAKE_ATTACK: Duration = Duration::from_secs(105);
/// …and the host's room must play for at least [`MIN_PLAYING_SHARE`] of
/// the time from here to the end (after the member's allowance of two
/// waits is used up; before the fix the room played about 55 % of it).
const FAKE_MEASURE_FROM: Duration = Duration::from_secs(45);
/// Generous for a loaded 2-core machine: the room is expected to play all
/// of the measured span.
const MIN_PLAYING_SHARE: f64 = 0.80;

/// The room clock as the hostile member sees it: the issued-at of the
/// latest host frame and when it arrived.
fn note_host_time(
    clock: &mut Option<(i64, Instant)>,
    pin: &watchparty_peer::crypto::PublicKey,
    data: &[u8],
) {
    if let Ok(f) = Envelope::parse(data)
        .and_then(|e| e.verify(pin))
        .and_then(|v| v.decode())
    {
        let issued = f.header().issued_at.0;
        if clock.is_none_or(|(t, _)| issued >= t) {
            *clock = Some((issued, Instant::now()));
        }
    }
}

/// Griefing through the buffering policy, with real WebRTC: a member with a
/// valid certificate (webrtc-rs) sends the host signed `Status` frames
/// claiming `Buffering` for [`FAKE_PHASE`], then `Ready` for as long, again
/// and again. Its hold allowance runs out after two waits: the host is told
/// in plain words, its `status` row says the room no longer waits for it,
/// and the host's room plays (position advancing with wall time) for at
/// least [`MIN_PLAYING_SHARE`] of the rest of the attack, while the honest
/// follower is still waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_buffering_cannot_hold_the_room() {
    let mut room = inproc::room(2).await;
    let mut host = room.driver(0, 0).await;
    wait_for(&mut host, "host joined", STEP, |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let mut follower = room.driver(1, 0).await;
    wait_for(&mut follower, "follower connected", STEP, |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    host.command(UserCommand::Load(room.item.clone()))
        .await
        .unwrap();
    wait_for(&mut follower, "media loaded", STEP, |e| {
        matches!(e, DriverEvent::MediaLoaded { .. })
    })
    .await;
    host.command(UserCommand::Play).await.unwrap();
    wait_in_sync(&host, &follower, false, 0.0, SYNC_TOLERANCE_MS, STEP).await;

    let mut h = connect_hostile(&room, 2, 2).await;
    let hostile = h.me;
    let host_id = UserId::new(status(&host).await.you.unwrap()).unwrap();
    let mut clock = None;
    for (peer, _, d) in wait_open(&mut h).await {
        if peer == host_id {
            note_host_time(&mut clock, &room.pin, &d);
        }
    }
    // The host's periodic State gives the room time.
    let t0 = Instant::now();
    while clock.is_none() && t0.elapsed() < STEP {
        for (peer, _, d) in collect(&mut h, Duration::from_millis(500)).await {
            if peer == host_id {
                note_host_time(&mut clock, &room.pin, &d);
            }
        }
    }
    assert!(clock.is_some(), "no host frame reached the hostile member");

    let hash = room.item.hash;
    let start = Instant::now();
    let mut window: Option<(Instant, f64)> = None;
    let mut told = None;
    let mut claims = 0u32;
    while start.elapsed() < FAKE_ATTACK {
        let buffering = (start.elapsed().as_millis() / FAKE_PHASE.as_millis()).is_multiple_of(2);
        let w = h.peers.get_mut(&host_id).unwrap();
        while let Ok(ev) = w.events.try_recv() {
            if let WEvent::Message(_, d) = ev {
                note_host_time(&mut clock, &room.pin, &d);
            }
        }
        let (issued, at) = clock.unwrap();
        let room_ms = issued + i64::try_from(at.elapsed().as_millis()).unwrap();
        let readiness = if buffering {
            claims += 1;
            Readiness::Buffering
        } else {
            Readiness::Ready
        };
        let f = h.status(readiness, hash, room_ms);
        h.peers[&host_id].send(channels::CONTROL, &f).await;
        while let Ok(ev) = host.events.try_recv() {
            if let DriverEvent::NoLongerWaitedFor {
                member, message, ..
            } = &ev
                && *member == hostile.get()
            {
                told = Some((start.elapsed(), message.clone()));
            }
        }
        if window.is_none() && start.elapsed() >= FAKE_MEASURE_FROM {
            let p = status(&host).await.playback.unwrap();
            window = Some((Instant::now(), p.position_ms));
        }
        tokio::time::sleep(FAKE_REPORT_EVERY).await;
    }
    let hs = status(&host).await;
    let (from, from_pos) = window.unwrap();
    let wall_ms = from.elapsed().as_secs_f64() * 1000.0;
    let played_ms = hs.playback.unwrap().position_ms - from_pos;
    let share = played_ms / wall_ms;
    let row_h = row(&hs, hostile);
    let row_f = row(
        &hs,
        UserId::new(status(&follower).await.you.unwrap()).unwrap(),
    );
    println!(
        "fake buffering: {claims} buffering claims; host told {told:?}; over the last {:.1} s the room played {:.1} s ({:.0} %); hostile row waited_for={:?} allowance={:?} ms; follower row waited_for={:?}",
        wall_ms / 1000.0,
        played_ms / 1000.0,
        share * 100.0,
        row_h.waited_for,
        row_h.hold_allowance_ms,
        row_f.waited_for,
    );
    assert!(
        share >= MIN_PLAYING_SHARE,
        "the room played only {:.0} % of the time",
        share * 100.0
    );
    let (_, message) = told.expect("the host was not told that the room no longer waits");
    assert!(
        message.contains("kept stalling") && message.contains("no longer waits for"),
        "{message}"
    );
    assert_eq!(row_h.waited_for, Some(false), "{row_h:?}");
    assert_eq!(row_f.waited_for, Some(true), "{row_f:?}");
    assert!(
        row_h.readiness.is_some(),
        "the host took the claims: {row_h:?}"
    );
    // The honest follower still plays the host's timeline.
    wait_in_sync(&host, &follower, false, 0.0, SYNC_TOLERANCE_MS, STEP).await;
}
