//! The DTLS binding rule of a pinned room (docs/protocol.md §7.1
//! *Binding*, issue #15 item 2) and the joiner's skew check (item 4):
//! until the host's `Bind` verified on the link to the host, no host control
//! from that link is applied and no chat is sent over it; without a `Bind`
//! by [`BIND_DEADLINE`] the link is closed and reported. A joiner without a
//! clock estimate refuses frames whose issued-at is far from its wall clock.

mod support;

use support::session::{
    ROOM, START, drain, events, join_pinned, k, ms, room, room_ms_at, sign, sign_at, u,
};
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::channels;
use watchparty_peer::ids::{PositionMs, RoomMs};
use watchparty_peer::message::{DtlsBinding, Fingerprint, Message};
use watchparty_peer::session::{
    BIND_DEADLINE, ChannelOpen, DisconnectReason, Event, Output, Session, SessionConfig,
    UserCommand,
};
use watchparty_peer::time::{LocalTime, TimeDelta};

const HOST_FP: Fingerprint = Fingerprint::Sha256([0x11; 32]);
const MY_FP: Fingerprint = Fingerprint::Sha256([0x22; 32]);

fn pause(pos: u64, seq_at: i64) -> Message {
    Message::Pause {
        position: PositionMs::new(pos).unwrap(),
        at: RoomMs(seq_at),
    }
}

/// Follower 2 of the usual room, host key pinned (or not), linked to 3,
/// then to the host at `START` with real fingerprints (no `Bind` yet).
fn follower(pinned: bool) -> Session {
    let pin = pinned.then(|| k(1));
    let mut s = join_pinned(SessionConfig::new(ROOM), 2, &room(), &[3], pin.as_ref());
    s.channel_open(
        ChannelOpen {
            peer: u(1),
            local_fingerprint: Some(MY_FP),
            remote_fingerprint: Some(HOST_FP),
        },
        START,
    );
    drain(&mut s);
    s
}

fn bind(seq: u64, host_fp: Fingerprint) -> Vec<u8> {
    sign(
        &k(1),
        seq,
        &Message::Bind(DtlsBinding {
            peer: u(2),
            host_fingerprint: host_fp,
            peer_fingerprint: MY_FP,
        }),
    )
}

fn host_pause(seq: u64, pos: u64, t: LocalTime) -> Vec<u8> {
    let issued = room_ms_at(t);
    sign_at(&k(1), ROOM, 1, seq, issued, &pause(pos, issued))
}

fn chat_sent_to(outputs: &[Output], to: u64) -> usize {
    outputs
        .iter()
        .filter(|o| {
            matches!(o, Output::SendFrame { to: t, channel, .. }
                if *t == u(to) && *channel == channels::CHAT.id)
        })
        .count()
}

fn host_bound(s: &Session, now: LocalTime) -> bool {
    s.peers(now).iter().any(|p| p.user == u(1) && p.bound)
}

#[test]
fn pinned_follower_applies_no_host_control_and_sends_no_chat_before_the_bind() {
    let mut s = follower(true);
    let t = ms(2_000);
    // Host control over the unbound host link: authentic, but not applied.
    s.handle_frame(u(1), channels::CONTROL.id, &host_pause(1, 5, t), t);
    assert_eq!(s.drops().get(DropReason::UnboundLink), 1);
    assert!(s.playback().is_none(), "nothing applied before the Bind");
    // Chat goes to member 3, not over the unbound host link.
    s.command(UserCommand::Chat("hi".into()), t).unwrap();
    let out = drain(&mut s);
    assert_eq!(chat_sent_to(&out, 1), 0);
    assert_eq!(chat_sent_to(&out, 3), 1);
    assert!(!host_bound(&s, t));

    // The Bind verifies: the same frame (not remembered) now applies.
    s.handle_frame(u(1), channels::CONTROL.id, &bind(0, HOST_FP), t);
    assert!(
        events(&drain(&mut s))
            .iter()
            .any(|e| matches!(e, Event::BindingVerified(h) if *h == u(1)))
    );
    assert!(host_bound(&s, t));
    s.handle_frame(u(1), channels::CONTROL.id, &host_pause(1, 5, t), t);
    assert!(s.playback().is_some_and(|p| p.paused));
    let t2 = ms(3_500);
    s.command(UserCommand::Chat("again".into()), t2).unwrap();
    assert_eq!(chat_sent_to(&drain(&mut s), 1), 1);
    // Bound in time: the deadline never closes it.
    let late = START + BIND_DEADLINE + TimeDelta::from_secs(1);
    s.handle_timeout(late);
    assert!(s.neighbours().any(|n| n == u(1)));
    assert_eq!(s.stats().bindings_missing, 0);
}

#[test]
fn a_missing_bind_closes_the_host_link_at_the_deadline() {
    let mut s = follower(true);
    // Just before the deadline the link stays.
    let before = START + BIND_DEADLINE - TimeDelta::from_micros(1);
    assert!(s.poll_timeout().is_some_and(|t| t <= START + BIND_DEADLINE));
    s.handle_timeout(before);
    let out = drain(&mut s);
    assert!(!out.iter().any(|o| matches!(o, Output::Disconnect { .. })));
    assert!(s.neighbours().any(|n| n == u(1)));
    // At the deadline: closed and reported, counted.
    s.handle_timeout(START + BIND_DEADLINE);
    let out = drain(&mut s);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Disconnect { peer, reason: DisconnectReason::BindingMissing } if *peer == u(1)
    )));
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::BindingMissing { host } if *host == u(1)))
    );
    assert_eq!(s.stats().bindings_missing, 1);
    assert!(!s.neighbours().any(|n| n == u(1)));
}

#[test]
fn a_bind_for_another_connection_does_not_bind() {
    let mut s = follower(true);
    let t = ms(2_000);
    s.handle_frame(
        u(1),
        channels::CONTROL.id,
        &bind(0, Fingerprint::Sha256([0x33; 32])),
        t,
    );
    let out = drain(&mut s);
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::BindingMismatch { pinned: true, .. }))
    );
    assert!(!s.neighbours().any(|n| n == u(1)));
}

#[test]
fn an_unpinned_follower_needs_no_bind() {
    let mut s = follower(false);
    let t = ms(2_000);
    s.handle_frame(u(1), channels::CONTROL.id, &host_pause(1, 5, t), t);
    assert_eq!(s.drops().total(), 0);
    assert!(s.playback().is_some());
    s.handle_timeout(START + BIND_DEADLINE + TimeDelta::from_secs(1));
    assert!(s.neighbours().any(|n| n == u(1)));
    assert_eq!(s.stats().bindings_missing, 0);
}

#[test]
fn a_joiner_refuses_old_frames_replayed_before_it_knows_the_room_clock() {
    // A fresh session (a joiner, or a rejoiner after a reload: its replay
    // memory is empty) gets frames of the current epoch from long ago
    // through a neighbour.
    let mut s = follower(false);
    let t = ms(2_000);
    let max_skew = SessionConfig::new(ROOM).max_skew_ms as i64;
    let old_issued = room_ms_at(t) - max_skew - 1;
    let old = sign_at(&k(1), ROOM, 1, 1, old_issued, &pause(7, old_issued));
    s.handle_frame(u(3), channels::CONTROL.id, &old, t);
    assert_eq!(s.drops().get(DropReason::SkewedTime), 1);
    assert!(s.playback().is_none(), "an old command is never applied");
    // The room's current command is accepted.
    s.handle_frame(u(3), channels::CONTROL.id, &host_pause(2, 9, t), t);
    assert!(s.playback().is_some());
}
