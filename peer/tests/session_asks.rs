//! Asking the host (docs/protocol.md §4.2 *Asking the host*): a viewer, or
//! a controller the policy does not allow, asks; the host holds the ask
//! for its user, who accepts (the host signs the command itself) or
//! dismisses it. Asks are limited per member and bounded at the host.

mod support;

use support::room::{Room, ready_room, user};
use support::session::{Entry, drain, events, frames, host, join, k, ms, sign, u};
use watchparty_peer::channels;
use watchparty_peer::frame::Envelope;
use watchparty_peer::ids::{PositionMs, Role, Seq};
use watchparty_peer::message::{
    Buffering, Message, Permissions, Policy, Refusal, RefuseReason, RequestedCommand,
};
use watchparty_peer::session::{
    AskFor, CommandError, DEFAULT_ASK_LIMIT, Event, MAX_PENDING_ASKS, Session, UserCommand,
};
use watchparty_peer::time::{LocalTime, MediaPos};

/// Host 0, controller 1, viewer 2; playing.
fn playing_room(seed: u64) -> Room {
    let mut room = ready_room(seed, 3, |i| {
        if i == 1 {
            Role::Controller
        } else {
            Role::Viewer
        }
    });
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(3000);
    assert!((0..3).all(|i| room.playing(i)));
    room
}

fn refused_with(room: &Room, i: usize, reason: RefuseReason) -> bool {
    room.peers[i]
        .events
        .iter()
        .any(|(_, e)| *e == Event::RequestRefused { reason })
}

#[test]
fn a_viewers_ask_waits_for_the_host_and_accepting_pauses_the_room() {
    let mut room = playing_room(71);
    room.command(2, UserCommand::Ask(AskFor::Pause)).unwrap();
    room.run_for_ms(2000);
    // Nothing happens by itself: the ask waits for the host's user.
    assert!((0..3).all(|i| room.playing(i)), "an ask is not a command");
    let asks = room.peers[0].session.pending_asks();
    assert_eq!(asks.len(), 1);
    assert_eq!((asks[0].member, asks[0].what), (user(2), AskFor::Pause));
    assert!(
        room.peers[0]
            .events
            .iter()
            .any(|(_, e)| *e == Event::AsksChanged)
    );
    // Followers hold no asks.
    assert!(room.peers[1].session.pending_asks().is_empty());
    assert!(room.peers[2].session.pending_asks().is_empty());

    room.command(0, UserCommand::AcceptAsk(user(2))).unwrap();
    room.run_for_ms(2000);
    assert!((0..3).all(|i| !room.playing(i)), "the room paused");
    assert!(room.peers[0].session.pending_asks().is_empty());
    assert_eq!(
        room.command(0, UserCommand::AcceptAsk(user(2))),
        Err(CommandError::NoSuchAsk),
        "answered once"
    );

    // A newer ask of the same member replaces its earlier one (once the
    // ask limit allows two more).
    room.run_for_ms(2 * DEFAULT_ASK_LIMIT.interval.as_micros() / 1000);
    room.command(2, UserCommand::Ask(AskFor::Play)).unwrap();
    let to = MediaPos::from_millis(600_000);
    room.command(2, UserCommand::Ask(AskFor::Seek(to))).unwrap();
    room.run_for_ms(2000);
    let asks = room.peers[0].session.pending_asks();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].what, AskFor::Seek(to));
    room.command(0, UserCommand::AcceptAsk(user(2))).unwrap();
    room.run_for_ms(2000);
    for i in 0..3 {
        let pos = room.position(i).as_millis();
        assert!((600_000..601_000).contains(&pos), "peer {i} at {pos}");
    }
}

#[test]
fn dismissing_tells_the_asker_and_changes_nothing() {
    let mut room = playing_room(72);
    room.command(2, UserCommand::Ask(AskFor::Pause)).unwrap();
    room.run_for_ms(1000);
    room.command(0, UserCommand::DismissAsk(user(2))).unwrap();
    room.run_for_ms(2000);
    assert!(refused_with(&room, 2, RefuseReason::Dismissed));
    assert!(
        !refused_with(&room, 1, RefuseReason::Dismissed),
        "only the asker is told"
    );
    assert!((0..3).all(|i| room.playing(i)), "nothing happened");
    assert!(room.peers[0].session.pending_asks().is_empty());
    assert_eq!(
        room.command(0, UserCommand::DismissAsk(user(2))),
        Err(CommandError::NoSuchAsk)
    );
    // Only the host answers asks.
    assert_eq!(
        room.command(1, UserCommand::AcceptAsk(user(2))),
        Err(CommandError::NotHost)
    );
}

#[test]
fn a_controller_asks_for_what_the_policy_does_not_allow() {
    let mut room = playing_room(73);
    room.command(
        0,
        UserCommand::SetPolicy(Policy {
            buffering: Buffering::WaitForEveryone,
            wait_timeout_ms: 10_000,
            controllers: Permissions::PLAY_PAUSE,
        }),
    )
    .unwrap();
    room.run_for_ms(1000);
    // Allowed: asking is just doing.
    room.command(1, UserCommand::Ask(AskFor::Pause)).unwrap();
    room.run_for_ms(2000);
    assert!((0..3).all(|i| !room.playing(i)));
    assert!(room.peers[0].session.pending_asks().is_empty());
    // Not allowed (seek): held for the host.
    let to = MediaPos::from_millis(300_000);
    assert_eq!(
        room.command(1, UserCommand::Seek(to)),
        Err(CommandError::Refused(RefuseReason::PolicyDenied)),
        "a plain command is still refused locally"
    );
    room.command(1, UserCommand::Ask(AskFor::Seek(to))).unwrap();
    room.run_for_ms(1000);
    let asks = room.peers[0].session.pending_asks();
    assert_eq!(asks.len(), 1);
    assert_eq!((asks[0].member, asks[0].what), (user(1), AskFor::Seek(to)));
    // The member leaves: its ask goes with it.
    room.leave(1);
    room.run_for_ms(1000);
    assert!(room.peers[0].session.pending_asks().is_empty());
}

// ------------------------------------------------- host rules, frame level

/// The message of a host-signed frame; `None` for forwarded member frames.
fn host_message(bytes: &[u8]) -> Option<Message> {
    let v = Envelope::parse(bytes)
        .unwrap()
        .verify(&k(1).public_key())
        .ok()?;
    Some(v.decode().unwrap().message().clone())
}

fn refusals(out: &[watchparty_peer::session::Output]) -> Vec<Refusal> {
    let mut v: Vec<Refusal> = frames(out)
        .into_iter()
        .filter_map(|(_, _, b)| match host_message(&b)? {
            Message::Refuse(r) => Some(r),
            _ => None,
        })
        .collect();
    v.dedup();
    v
}

fn ask_frame(member: u8, seq: u64, cmd: RequestedCommand) -> Vec<u8> {
    sign(&k(member), seq, &Message::Request(cmd))
}

fn deliver(h: &mut Session, member: u8, seq: u64, cmd: RequestedCommand, at: LocalTime) {
    h.handle_frame(
        u(u64::from(member)),
        channels::CONTROL.id,
        &ask_frame(member, seq, cmd),
        at,
    );
}

#[test]
fn asks_over_the_ask_limit_are_refused_once_per_streak() {
    let mut h = host();
    let t0 = ms(2_000);
    let burst = u64::from(DEFAULT_ASK_LIMIT.burst);
    for seq in 0..burst {
        deliver(&mut h, 2, seq, RequestedCommand::Pause, t0);
        let out = drain(&mut h);
        assert!(events(&out).contains(&Event::AsksChanged), "ask {seq}");
        assert!(refusals(&out).is_empty(), "ask {seq}");
    }
    // Over the limit (well within the request limit): refused once.
    deliver(&mut h, 2, burst, RequestedCommand::Play, t0);
    let out = drain(&mut h);
    assert_eq!(
        refusals(&out),
        vec![Refusal {
            member: u(2),
            request_seq: Seq::new(burst).unwrap(),
            reason: RefuseReason::RateLimited,
        }]
    );
    assert!(!events(&out).contains(&Event::AsksChanged));
    assert_eq!(h.pending_asks()[0].what, AskFor::Pause, "not replaced");
    deliver(&mut h, 2, burst + 1, RequestedCommand::Play, t0);
    assert!(refusals(&drain(&mut h)).is_empty(), "no refusal flood");
    // One interval later, one more ask is held.
    let t1 = t0 + DEFAULT_ASK_LIMIT.interval;
    deliver(&mut h, 2, burst + 2, RequestedCommand::Play, t1);
    let out = drain(&mut h);
    assert!(refusals(&out).is_empty());
    assert_eq!(h.pending_asks()[0].what, AskFor::Play);
}

#[test]
fn the_asking_session_keeps_below_the_limit_and_says_so() {
    let mut s = join(2, &support::session::room(), &[1, 3]);
    let t0 = ms(2_000);
    let allowed = DEFAULT_ASK_LIMIT.burst - 1; // one kept in reserve
    for _ in 0..allowed {
        s.command(UserCommand::Ask(AskFor::Pause), t0).unwrap();
        drain(&mut s);
    }
    assert_eq!(
        s.command(UserCommand::Ask(AskFor::Pause), t0),
        Err(CommandError::AskedTooOften)
    );
    assert!(
        frames(&drain(&mut s)).is_empty(),
        "nothing sent over the limit"
    );
    let msg = CommandError::AskedTooOften.to_string();
    assert!(msg.contains("wait a few seconds"), "{msg}");
    s.command(
        UserCommand::Ask(AskFor::Pause),
        t0 + DEFAULT_ASK_LIMIT.interval,
    )
    .unwrap();
}

#[test]
fn pending_asks_are_bounded_at_the_host() {
    let n = u8::try_from(MAX_PENDING_ASKS).unwrap() + 2;
    let roster: Vec<Entry> = std::iter::once(Entry::new(1, Role::Host))
        .chain((2..=n).map(|m| Entry::new(u64::from(m), Role::Viewer)))
        .collect();
    let links: Vec<u64> = (2..=u64::from(n)).collect();
    let mut h = join(1, &roster, &links);
    let t0 = ms(2_000);
    for m in 2..n {
        deliver(&mut h, m, 0, RequestedCommand::Pause, t0);
    }
    drain(&mut h);
    assert_eq!(h.pending_asks().len(), MAX_PENDING_ASKS);
    deliver(&mut h, n, 0, RequestedCommand::Pause, t0);
    assert_eq!(
        refusals(&drain(&mut h)),
        vec![Refusal {
            member: u(u64::from(n)),
            request_seq: Seq::new(0).unwrap(),
            reason: RefuseReason::TooManyPending,
        }]
    );
    assert_eq!(h.pending_asks().len(), MAX_PENDING_ASKS);
    // A member with an ask waiting may still replace it.
    deliver(&mut h, 2, 1, RequestedCommand::Play, t0);
    assert!(refusals(&drain(&mut h)).is_empty());
    assert_eq!(h.pending_asks().len(), MAX_PENDING_ASKS);
}

#[test]
fn what_cannot_be_asked_for_is_refused_as_before() {
    let mut h = host();
    let t0 = ms(2_000);
    deliver(&mut h, 2, 0, RequestedCommand::Next, t0);
    let out = drain(&mut h);
    assert_eq!(
        refusals(&out),
        vec![Refusal {
            member: u(2),
            request_seq: Seq::new(0).unwrap(),
            reason: RefuseReason::ViewerRole,
        }]
    );
    assert!(h.pending_asks().is_empty());
    // A seek is askable and carries its position.
    deliver(
        &mut h,
        2,
        1,
        RequestedCommand::Seek {
            position: PositionMs::new(42_000).unwrap(),
        },
        t0,
    );
    drain(&mut h);
    assert_eq!(
        h.pending_asks()[0].what,
        AskFor::Seek(MediaPos::from_millis(42_000))
    );
}
