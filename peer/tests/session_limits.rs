//! Session limits and acceptance rules that need more than one frame to
//! show: the bounded output queue, per-member rate limits, the skew window,
//! chat rules, the channel rule, certificate expiry, and one frame per
//! `DropReason` through `Session::handle_frame`.

mod support;

use support::session::{
    Entry, ROOM, ROOM_MS_AT_START, START, WALL, cert_until, drain, dropped, events, follower,
    frames, host, join, join_pinned, join_with, k, ms, raw_chat, room, room_ms_at, sign, sign_at,
    sign_raw, u,
};
use watchparty_peer::acceptance::{DropReason, MAX_TRACKED_SIGNERS};
use watchparty_peer::channels::{self, ChannelId};
use watchparty_peer::frame::{Envelope, MAX_FRAME_LEN, MIN_FRAME_LEN};
use watchparty_peer::ids::{PositionMs, Role, RoomId, UnixSeconds};
use watchparty_peer::message::{
    Buffering, ChatText, Emoji, Fingerprint, Kind, Message, Policy, Readiness, Refusal,
    RefuseReason, RequestedCommand, Status,
};
use watchparty_peer::session::{
    ChannelOpen, CommandError, DEFAULT_CHAT_LIMIT, DEFAULT_POLICY, DEFAULT_REACTION_LIMIT,
    DEFAULT_REQUEST_LIMIT, DisconnectReason, Event, HOST_PATH_MEMORY, MAX_QUEUED_OUTPUTS, Output,
    RateLimit, STATE_REPLY_INTERVAL, Session, SessionConfig, SessionError, UserCommand,
};
use watchparty_peer::signaling::{ClientMessage, ServerMessage};
use watchparty_peer::time::{LocalTime, MediaPos, TimeDelta};

fn pause(pos: u64) -> Message {
    Message::Pause {
        position: PositionMs::new(pos).unwrap(),
        at: watchparty_peer::ids::RoomMs(0),
    }
}

fn chat(text: &str) -> Message {
    Message::Chat(ChatText::new(text).unwrap())
}

fn kind_of(bytes: &[u8]) -> u8 {
    bytes[3]
}

/// Decodes a frame signed by the host (user 1).
fn host_message(bytes: &[u8]) -> Message {
    Envelope::parse(bytes)
        .unwrap()
        .verify(&k(1).public_key())
        .unwrap()
        .decode()
        .unwrap()
        .into_message()
}

// ------------------------------------------------------------ output queue --

#[test]
fn full_output_queue_drops_non_essential_first_and_a_later_state_repairs() {
    let mut h = join(1, &room(), &[3]);
    let now = ms(2_000);
    let fp = Fingerprint::Sha256([7; 32]);
    // Essential outputs queued first: the Bind for a new channel, the
    // kick's Disconnect and its signaling message.
    h.channel_open(
        ChannelOpen {
            peer: u(2),
            local_fingerprint: Some(fp),
            remote_fingerprint: Some(fp),
        },
        now,
    );
    h.command(UserCommand::Kick(u(3)), now).unwrap();
    // A state change the follower must not miss for good.
    let laggards = Policy {
        buffering: Buffering::LaggardsCatchUp,
        ..DEFAULT_POLICY
    };
    h.command(UserCommand::SetPolicy(laggards), now).unwrap();
    // The driver stops draining while the host keeps seeking.
    for i in 0..(MAX_QUEUED_OUTPUTS as u64 + 100) {
        h.command(UserCommand::Seek(MediaPos::from_millis(i * 10)), now)
            .unwrap();
    }
    assert!(h.stats().outputs_dropped >= 100, "{:?}", h.stats());
    let out = drain(&mut h);
    assert_eq!(out.len(), MAX_QUEUED_OUTPUTS, "bounded");
    assert!(out.contains(&Output::Disconnect {
        peer: u(3),
        reason: DisconnectReason::Kicked
    }));
    assert!(out.contains(&Output::Signal(ClientMessage::Kick { user: u(3) })));
    let sent = frames(&out);
    assert!(
        sent.iter()
            .any(|(to, _, b)| *to == u(2) && kind_of(b) == Kind::Bind.to_byte()),
        "Bind kept"
    );
    assert!(
        !sent
            .iter()
            .any(|(_, _, b)| kind_of(b) == Kind::Policy.to_byte()),
        "the oldest frames were dropped"
    );
    assert!(events(&out).is_empty(), "events go first");

    // The follower gets what survived: the latest timeline, an old policy.
    let mut f = join(2, &room(), &[1]);
    for (to, ch, b) in &sent {
        if *to == u(2) {
            f.handle_frame(u(1), *ch, b, now);
        }
    }
    assert_eq!(f.drops().total(), 0, "{:?}", f.drops());
    assert_eq!(f.playback(), h.playback());
    assert_eq!(f.policy(), DEFAULT_POLICY);
    assert_ne!(h.policy(), DEFAULT_POLICY);

    // The host scheduled a State at once; it repairs the follower.
    let due = h.poll_timeout().unwrap();
    assert!(due <= now + TimeDelta::from_millis(1), "State due now");
    h.handle_timeout(due);
    let out = drain(&mut h);
    let states: Vec<_> = frames(&out)
        .into_iter()
        .filter(|(to, _, b)| *to == u(2) && kind_of(b) == Kind::State.to_byte())
        .collect();
    assert_eq!(states.len(), 1);
    f.handle_frame(u(1), states[0].1, &states[0].2, due);
    assert_eq!(f.policy(), laggards);
    assert_eq!(f.playback(), h.playback());
    assert_eq!(f.drops().total(), 0);
}

// ------------------------------------------------------------- rate limits --

/// Member 3 sends `kind` frames to follower 2: the burst passes, the next
/// one within the interval is dropped (counted, surfaced, not forwarded,
/// and a forwarded copy of it is a silent duplicate), one more passes per
/// interval.
fn crosses_member_limit(limit: RateLimit, channel: ChannelId, msg: &Message) {
    let mut s = follower();
    let t0 = ms(2_000);
    let mut seq = 0;
    for _ in 0..limit.burst {
        s.handle_frame(u(3), channel, &sign(&k(3), seq, msg), t0);
        seq += 1;
    }
    let out = drain(&mut s);
    assert_eq!(s.stats().accepted, u64::from(limit.burst));
    assert_eq!(frames(&out).len(), limit.burst as usize, "forwarded to 1");
    assert!(dropped(&out).is_empty());

    let almost = t0 + limit.interval - TimeDelta::from_micros(1);
    let over = sign(&k(3), seq, msg);
    seq += 1;
    s.handle_frame(u(3), channel, &over, almost);
    let out = drain(&mut s);
    assert_eq!(s.drops().get(DropReason::RateLimited), 1);
    assert_eq!(
        events(&out),
        vec![Event::Dropped {
            from: u(3),
            reason: DropReason::RateLimited
        }]
    );
    assert!(
        frames(&out).is_empty(),
        "an over-limit frame is not forwarded"
    );
    s.handle_frame(u(1), channel, &over, almost);
    assert_eq!(s.stats().duplicates, 1, "no second chance through the mesh");
    assert_eq!(s.drops().total(), 1);
    assert!(drain(&mut s).is_empty());

    let next = t0 + limit.interval;
    s.handle_frame(u(3), channel, &sign(&k(3), seq, msg), next);
    assert_eq!(s.stats().accepted, u64::from(limit.burst) + 1);
    s.handle_frame(u(3), channel, &sign(&k(3), seq + 1, msg), next);
    assert_eq!(s.drops().get(DropReason::RateLimited), 2);
    assert_eq!(s.stats().accepted, u64::from(limit.burst) + 1);
}

#[test]
fn chat_over_the_limit_is_dropped() {
    crosses_member_limit(DEFAULT_CHAT_LIMIT, channels::CHAT.id, &chat("hi"));
}

#[test]
fn reactions_over_the_limit_are_dropped() {
    let r = Message::Reaction(Emoji::new("👍").unwrap());
    crosses_member_limit(DEFAULT_REACTION_LIMIT, channels::CHAT.id, &r);
}

#[test]
fn host_refuses_requests_over_the_limit_once_per_streak() {
    let mut h = host();
    let t0 = ms(2_000);
    let seek = |p: u64| {
        Message::Request(RequestedCommand::Seek {
            position: PositionMs::new(p).unwrap(),
        })
    };
    let burst = u64::from(DEFAULT_REQUEST_LIMIT.burst);
    for seq in 0..burst {
        h.handle_frame(
            u(3),
            channels::CONTROL.id,
            &sign(&k(3), seq, &seek(seq * 1000)),
            t0,
        );
    }
    drain(&mut h);
    assert_eq!(h.drops().total(), 0);
    let executed = h.playback().unwrap();
    assert_eq!(executed.position, MediaPos::from_millis((burst - 1) * 1000));

    // Over the limit: dropped, counted, and refused with a reason.
    h.handle_frame(
        u(3),
        channels::CONTROL.id,
        &sign(&k(3), burst, &seek(99_000)),
        t0,
    );
    let out = drain(&mut h);
    assert_eq!(h.drops().get(DropReason::RateLimited), 1);
    assert_eq!(dropped(&out), vec![DropReason::RateLimited]);
    assert_eq!(h.playback(), Some(executed), "not executed");
    let refusals: Vec<_> = frames(&out)
        .into_iter()
        .map(|(to, _, b)| (to, host_message(&b)))
        .collect();
    let expect = Message::Refuse(Refusal {
        member: u(3),
        request_seq: watchparty_peer::ids::Seq::new(burst).unwrap(),
        reason: RefuseReason::RateLimited,
    });
    assert_eq!(
        refusals,
        vec![(u(2), expect.clone()), (u(3), expect)],
        "one Refuse to every neighbour"
    );

    // The same streak: no more refusals (no amplification).
    h.handle_frame(
        u(3),
        channels::CONTROL.id,
        &sign(&k(3), burst + 1, &seek(98_000)),
        t0,
    );
    let out = drain(&mut h);
    assert_eq!(h.drops().get(DropReason::RateLimited), 2);
    assert!(frames(&out).is_empty());

    // One interval later one request passes and ends the streak.
    let t1 = t0 + DEFAULT_REQUEST_LIMIT.interval;
    h.handle_frame(
        u(3),
        channels::CONTROL.id,
        &sign(&k(3), burst + 2, &seek(50_000)),
        t1,
    );
    drain(&mut h);
    assert_eq!(
        h.playback().unwrap().position,
        MediaPos::from_millis(50_000)
    );
    h.handle_frame(
        u(3),
        channels::CONTROL.id,
        &sign(&k(3), burst + 3, &seek(60_000)),
        t1,
    );
    let out = drain(&mut h);
    assert_eq!(h.drops().get(DropReason::RateLimited), 3);
    let refused: Vec<_> = frames(&out)
        .into_iter()
        .map(|(_, _, b)| host_message(&b))
        .filter(|m| matches!(m, Message::Refuse(r) if r.reason == RefuseReason::RateLimited))
        .collect();
    assert_eq!(refused.len(), 2, "a new streak is refused again");
}

#[test]
fn followers_do_not_limit_requests_they_only_forward() {
    let mut s = follower();
    let t0 = ms(2_000);
    for seq in 0..u64::from(DEFAULT_REQUEST_LIMIT.burst) * 2 {
        s.handle_frame(
            u(3),
            channels::CONTROL.id,
            &sign(&k(3), seq, &Message::Request(RequestedCommand::Play)),
            t0,
        );
    }
    assert_eq!(s.drops().total(), 0);
    assert_eq!(
        frames(&drain(&mut s)).len(),
        usize::try_from(DEFAULT_REQUEST_LIMIT.burst * 2).unwrap(),
        "forwarded toward the host, which decides"
    );
}

#[test]
fn a_session_never_sends_what_receivers_would_drop() {
    let mut s = join(3, &room(), &[1]);
    let t0 = ms(2_000);
    // One token stays in reserve for network jitter.
    for _ in 1..DEFAULT_CHAT_LIMIT.burst {
        s.command(UserCommand::Chat("hi".into()), t0).unwrap();
    }
    assert_eq!(
        s.command(UserCommand::Chat("hi".into()), t0),
        Err(CommandError::RateLimited)
    );
    for _ in 1..DEFAULT_REACTION_LIMIT.burst {
        s.command(UserCommand::Reaction("👍".into()), t0).unwrap();
    }
    assert_eq!(
        s.command(UserCommand::Reaction("👍".into()), t0),
        Err(CommandError::RateLimited)
    );
    for _ in 1..DEFAULT_REQUEST_LIMIT.burst {
        s.command(UserCommand::Pause, t0).unwrap();
    }
    assert_eq!(
        s.command(UserCommand::Pause, t0),
        Err(CommandError::RateLimited)
    );
    let t1 = t0 + DEFAULT_CHAT_LIMIT.interval;
    s.command(UserCommand::Chat("again".into()), t1).unwrap();
}

#[test]
fn an_honest_sender_at_full_speed_is_never_dropped_despite_jitter() {
    // Sender (3) chats whenever its own limit allows; each frame reaches the
    // receiver (2) after 0..=interval of jitter, in order (reliable channel).
    let mut tx = join(3, &room(), &[2]);
    let mut rx = join(2, &room(), &[3]);
    let interval = DEFAULT_CHAT_LIMIT.interval.as_micros();
    let mut rng = 0x1234_5678_u64;
    let mut arrival = 0i64;
    let mut sent = 0u64;
    let mut t = 2_000_000i64;
    while t < 60_000_000 {
        if tx
            .command(UserCommand::Chat("hi".into()), LocalTime::from_micros(t))
            .is_ok()
        {
            sent += 1;
            for (_, ch, b) in frames(&drain(&mut tx)) {
                rng = rng
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let jitter = i64::try_from((rng >> 33) % (interval as u64 + 1)).unwrap();
                arrival = arrival.max(t + jitter);
                rx.handle_frame(u(3), ch, &b, LocalTime::from_micros(arrival));
            }
        }
        t += 37_000;
    }
    assert!(sent > 60, "sent {sent}");
    assert_eq!(rx.drops().total(), 0, "{:?}", rx.drops());
    assert_eq!(rx.stats().accepted, sent);
}

#[test]
fn invalid_limits_are_refused() {
    for (name, cfg) in [
        (
            "reaction_limit",
            SessionConfig {
                reaction_limit: RateLimit {
                    burst: 0,
                    interval: TimeDelta::from_millis(1),
                },
                ..SessionConfig::new(ROOM)
            },
        ),
        (
            "chat_limit",
            SessionConfig {
                chat_limit: RateLimit {
                    burst: 1,
                    interval: TimeDelta::ZERO,
                },
                ..SessionConfig::new(ROOM)
            },
        ),
        (
            "request_limit",
            SessionConfig {
                request_limit: RateLimit {
                    burst: 1,
                    interval: TimeDelta::from_micros(-1),
                },
                ..SessionConfig::new(ROOM)
            },
        ),
    ] {
        let r = Session::new(cfg, k(2), k(0x50).public_key(), None, START, WALL);
        assert_eq!(r.err(), Some(SessionError::RateLimit(name)));
    }
}

#[test]
fn configured_limits_apply() {
    let cfg = SessionConfig {
        chat_limit: RateLimit {
            burst: 1,
            interval: TimeDelta::from_secs(10),
        },
        ..SessionConfig::new(ROOM)
    };
    let mut s = join_with(cfg, 2, &room(), &[1, 3]);
    s.handle_frame(
        u(3),
        channels::CHAT.id,
        &sign(&k(3), 0, &chat("a")),
        ms(2_000),
    );
    s.handle_frame(
        u(3),
        channels::CHAT.id,
        &sign(&k(3), 1, &chat("b")),
        ms(11_999),
    );
    assert_eq!(s.drops().get(DropReason::RateLimited), 1);
    s.handle_frame(
        u(3),
        channels::CHAT.id,
        &sign(&k(3), 2, &chat("c")),
        ms(12_000),
    );
    assert_eq!(s.stats().accepted, 2);
}

// -------------------------------------------------------------------- skew --

#[test]
fn issued_at_outside_the_skew_window_is_dropped() {
    let mut h = host();
    let now = ms(40_000);
    let room_ms = h.sync().room_time(now).unwrap().as_millis_floor();
    let max = i64::try_from(SessionConfig::new(ROOM).max_skew_ms).unwrap();
    let cases = [
        (room_ms + max, None),
        (room_ms - max, None),
        (room_ms + max + 1, Some(DropReason::SkewedTime)),
        (room_ms - max - 1, Some(DropReason::SkewedTime)),
        (i64::MAX, Some(DropReason::SkewedTime)),
        (i64::MIN, Some(DropReason::SkewedTime)),
    ];
    for (seq, (issued, expect)) in cases.into_iter().enumerate() {
        let before = h.stats().accepted;
        let b = sign_at(&k(3), ROOM, 1, seq as u64, issued, &chat("hi"));
        h.handle_frame(u(3), channels::CHAT.id, &b, now);
        let out = drain(&mut h);
        match expect {
            None => {
                assert_eq!(h.stats().accepted, before + 1, "{issued}");
                assert!(dropped(&out).is_empty());
            }
            Some(r) => {
                assert_eq!(h.stats().accepted, before, "{issued}");
                assert_eq!(dropped(&out), vec![r]);
                assert!(!events(&out).iter().any(|e| matches!(e, Event::Chat { .. })));
            }
        }
    }
    assert_eq!(h.drops().get(DropReason::SkewedTime), 4);

    // A follower without a room clock yet judges issued-at against its
    // wall clock, which the room clock starts from (§7.1): a frame from
    // long ago (a replay to a joiner) is refused, a current one accepted.
    let mut f = follower();
    let window = SessionConfig::new(ROOM).max_skew_ms as i64;
    let wall_now = room_ms_at(now);
    for (seq, issued, accepted) in [
        (0, i64::MAX, 0),
        (1, wall_now - window - 1, 0),
        (2, wall_now + window + 1, 0),
        (3, wall_now - window, 1),
        (4, wall_now + window, 2),
    ] {
        let b = sign_at(&k(3), ROOM, 1, seq, issued, &chat("hi"));
        f.handle_frame(u(3), channels::CHAT.id, &b, now);
        assert_eq!(f.stats().accepted, accepted, "issued {issued}");
    }
    assert_eq!(f.drops().get(DropReason::SkewedTime), 3);
}

// -------------------------------------------------------------------- chat --

#[test]
fn invalid_chat_is_dropped_valid_chat_shown() {
    let mut s = follower();
    let now = ms(2_000);
    let cases: Vec<(String, bool)> = vec![
        (String::new(), false),
        (" \n\t ".into(), false),
        ("x".repeat(500), true),
        ("x".repeat(501), false),
        ("é".repeat(501), false),
        ("\u{1b}[31mred".into(), false),
        ("a\rb".into(), false),
        ("nul\0".into(), false),
        ("del\u{7f}".into(), false),
        ("c1\u{85}".into(), false),
        ("bidi\u{202e}".into(), false),
        ("two\nlines\tand a tab".into(), true),
    ];
    for (seq, (text, valid)) in cases.iter().enumerate() {
        let before = s.stats().accepted;
        let b = raw_chat(&k(3), seq as u64, ROOM_MS_AT_START, text);
        s.handle_frame(u(3), channels::CHAT.id, &b, now);
        let out = drain(&mut s);
        let shown: Vec<_> = events(&out)
            .into_iter()
            .filter_map(|e| match e {
                Event::Chat { from, text, .. } => Some((from, text.as_str().to_owned())),
                _ => None,
            })
            .collect();
        if *valid {
            assert_eq!(s.stats().accepted, before + 1, "{text:?}");
            assert_eq!(shown, vec![(u(3), text.clone())]);
        } else {
            assert_eq!(s.stats().accepted, before, "{text:?}");
            assert_eq!(dropped(&out), vec![DropReason::ChatInvalid], "{text:?}");
            assert!(shown.is_empty());
            assert!(frames(&out).is_empty(), "not forwarded");
        }
    }
    assert_eq!(s.drops().get(DropReason::ChatInvalid), 10);
    assert_eq!(s.drops().total(), 10);
}

// ----------------------------------------------------------------- channels --

#[test]
fn frames_must_arrive_on_their_kinds_channel() {
    let roster = [room(), vec![Entry::new(4, Role::Viewer)]].concat();
    let mut s = join(2, &roster, &[1, 3, 4]);
    let now = ms(2_000);
    let p = sign(&k(1), 0, &pause(5));
    let c = sign(&k(3), 0, &chat("hi"));
    for (bytes, channel) in [
        (&p, channels::CHAT.id),
        (&p, channels::CLOCK.id),
        (&p, ChannelId::new(7)),
        (&c, channels::CONTROL.id),
    ] {
        s.handle_frame(u(3), channel, bytes, now);
    }
    let out = drain(&mut s);
    assert_eq!(s.drops().get(DropReason::WrongChannel), 4);
    assert_eq!(dropped(&out), vec![DropReason::WrongChannel; 4]);
    assert!(frames(&out).is_empty());
    assert!(s.playback().is_none());
    assert_eq!(s.stats().accepted, 0);

    // The same frames on their own channels are accepted — here as copies
    // forwarded by member 3 and by the host — and forwarded on those
    // channels in turn.
    s.handle_frame(u(3), channels::CONTROL.id, &p, now);
    s.handle_frame(u(1), channels::CHAT.id, &c, now);
    assert_eq!(s.stats().accepted, 2);
    assert_eq!(s.drops().total(), 4);
    assert_eq!(s.playback().unwrap().position, MediaPos::from_millis(5));
    let fwd: Vec<_> = frames(&drain(&mut s))
        .into_iter()
        .filter(|(to, _, _)| *to == u(4))
        .collect();
    assert_eq!(
        fwd,
        vec![
            (u(4), channels::CONTROL.id, p.clone()),
            (u(4), channels::CHAT.id, c.clone()),
        ]
    );
    // Peer 4, which only hears the forwarded copies, accepts them.
    let mut other = join(4, &roster, &[2]);
    for (_, ch, b) in &fwd {
        other.handle_frame(u(2), *ch, b, now);
    }
    assert_eq!(other.stats().accepted, 2);
    assert_eq!(other.drops().total(), 0);
}

// --------------------------------------------------------------- expiry --

#[test]
fn members_are_refused_once_their_certificate_expires() {
    // Member 3 valid through WALL + 10 s, the host through WALL + 20 s.
    let roster = vec![
        Entry::new(1, Role::Host).until(UnixSeconds(WALL.0 + 20)),
        Entry::new(2, Role::Viewer),
        Entry::new(3, Role::Controller).until(UnixSeconds(WALL.0 + 10)),
    ];
    let mut s = join(2, &roster, &[1, 3]);
    assert_eq!(s.member_role(u(1)), Some(Role::Host));
    assert_eq!(s.member_role(u(3)), Some(Role::Controller));
    let at = |secs_after_start: i64, extra_us: i64| {
        START + TimeDelta::from_secs(secs_after_start) + TimeDelta::from_micros(extra_us)
    };
    let mut expired_at = Vec::new();
    let mut note = |s: &mut Session, t: LocalTime| {
        for e in events(&drain(s)) {
            if let Event::CertificateExpired(who) = e {
                expired_at.push((who, t));
            }
        }
    };
    // Valid through the last microsecond of its not-after second.
    s.handle_frame(
        u(3),
        channels::CHAT.id,
        &sign(&k(3), 0, &chat("a")),
        at(11, -1),
    );
    assert_eq!(s.stats().accepted, 1);
    note(&mut s, at(11, -1));
    // Checked on use: no timeout needed.
    s.handle_frame(
        u(3),
        channels::CHAT.id,
        &sign(&k(3), 1, &chat("b")),
        at(11, 0),
    );
    assert_eq!(s.drops().get(DropReason::NotMember), 1);
    assert_eq!(s.stats().accepted, 1);
    note(&mut s, at(11, 0));

    // Checked on timeout: the session wakes up at the expiry and reports it.
    let mut t = at(11, 0);
    while t < at(30, 0) {
        t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        note(&mut s, t);
    }
    assert_eq!(expired_at, vec![(u(3), at(11, 0)), (u(1), at(21, 0))]);
    assert!(!s.members().any(|m| m == u(3) || m == u(1)));
    // An expired member has no role (status shows it as not in the room).
    assert_eq!(s.member_role(u(3)), None);

    // The host's control is refused after its certificate expired.
    s.handle_frame(u(1), channels::CONTROL.id, &sign(&k(1), 0, &pause(1)), t);
    assert_eq!(s.drops().get(DropReason::NotHost), 1);
    assert!(s.playback().is_none());

    // A re-issued certificate makes member 3 current again.
    s.handle_signal(
        ServerMessage::RoleChanged {
            certificate: cert_until(3, Role::Controller, UnixSeconds(WALL.0 + 3600)),
        },
        t,
    );
    let current = sign_at(&k(3), ROOM, 1, 2, room_ms_at(t), &chat("c"));
    s.handle_frame(u(3), channels::CHAT.id, &current, t);
    assert_eq!(s.stats().accepted, 2);
    assert_eq!(s.member_role(u(3)), Some(Role::Controller));
}

#[test]
fn own_certificate_expiry_is_reported_once() {
    let roster = vec![
        Entry::new(1, Role::Host),
        Entry::new(2, Role::Viewer).until(UnixSeconds(WALL.0 + 5)),
    ];
    let mut s = join(2, &roster, &[1]);
    let mut reports = 0;
    let end = START + TimeDelta::from_secs(20);
    let mut t = START;
    while t < end {
        t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        reports += events(&drain(&mut s))
            .iter()
            .filter(|e| **e == Event::CertificateExpired(u(2)))
            .count();
    }
    assert_eq!(reports, 1);
}

// ----------------------------------------------------- every drop reason --

/// A session and a setup that makes the next frame fail exactly `reason`.
struct Provoke {
    session: Session,
    from: u64,
    channel: ChannelId,
    bytes: Vec<u8>,
    now: LocalTime,
}

fn control(session: Session, bytes: Vec<u8>) -> Provoke {
    Provoke {
        session,
        from: 3,
        channel: channels::CONTROL.id,
        bytes,
        now: ms(2_000),
    }
}

fn chat_frame(session: Session, bytes: Vec<u8>) -> Provoke {
    Provoke {
        channel: channels::CHAT.id,
        ..control(session, bytes)
    }
}

fn feed(s: &mut Session, from: u64, channel: ChannelId, bytes: &[u8]) {
    s.handle_frame(u(from), channel, bytes, ms(2_000));
    assert_eq!(s.drops().total(), 0, "setup frame dropped: {:?}", s.drops());
}

fn provoke(reason: DropReason) -> Provoke {
    let hk = k(1);
    let other_room = RoomId::from_bytes([1; 16]);
    match reason {
        DropReason::NotAFrame => control(follower(), b"XX-not-a-frame".to_vec()),
        DropReason::Truncated => control(follower(), vec![b'W', b'P', 1, 6]),
        DropReason::Oversized => control(follower(), vec![b'W'; MAX_FRAME_LEN + 1]),
        DropReason::UnknownVersion => control(follower(), vec![b'W', b'P', 9, 6]),
        DropReason::UnknownKind => {
            let mut b = vec![b'W', b'P', 1, 0x7f];
            b.resize(MIN_FRAME_LEN, 0);
            control(follower(), b)
        }
        DropReason::WrongChannel => chat_frame(follower(), sign(&hk, 0, &pause(1))),
        DropReason::UnknownSigner => control(follower(), sign(&k(77), 0, &pause(1))),
        DropReason::BadSignature => {
            let mut b = sign(&hk, 0, &pause(1));
            let n = b.len();
            b[n - 1] ^= 1;
            control(follower(), b)
        }
        DropReason::Malformed => control(follower(), sign_raw(&hk, Kind::Pause, 0, 0, &[1, 2, 3])),
        DropReason::NotHost => control(follower(), sign(&k(3), 0, &pause(1))),
        DropReason::NotMember => {
            let mut s = follower();
            s.handle_signal(ServerMessage::MemberLeft { user: u(3) }, ms(2_000));
            drain(&mut s);
            chat_frame(s, sign(&k(3), 0, &chat("hi")))
        }
        DropReason::WrongRoom => control(follower(), sign_at(&hk, other_room, 1, 0, 0, &pause(1))),
        DropReason::StaleEpoch => control(follower(), sign_at(&hk, ROOM, 0, 0, 0, &pause(1))),
        DropReason::UnknownEpoch => control(follower(), sign_at(&hk, ROOM, 2, 0, 0, &pause(1))),
        DropReason::Replay => {
            let mut s = follower();
            feed(&mut s, 1, channels::CONTROL.id, &sign(&hk, 5, &pause(5)));
            drain(&mut s);
            control(s, sign(&hk, 5, &pause(6)))
        }
        DropReason::OldSequence => {
            let mut s = follower();
            feed(&mut s, 1, channels::CONTROL.id, &sign(&hk, 100, &pause(5)));
            drain(&mut s);
            control(s, sign(&hk, 30, &pause(6)))
        }
        DropReason::SkewedTime => {
            let s = host();
            chat_frame(s, sign_at(&k(3), ROOM, 1, 0, 1_000_000, &chat("hi")))
        }
        DropReason::ChatInvalid => chat_frame(follower(), raw_chat(&k(3), 0, 0, "bell\u{7}")),
        DropReason::TooManySigners => {
            let mut s = follower();
            let first = 10u64;
            let last = first + MAX_TRACKED_SIGNERS as u64; // one more than fits
            for user in first..=last {
                s.handle_signal(
                    ServerMessage::MemberJoined {
                        member: watchparty_peer::signaling::RosterEntry {
                            certificate: support::session::cert(user, Role::Viewer),
                            online: true,
                        },
                    },
                    ms(2_000),
                );
            }
            for user in first..last {
                feed(
                    &mut s,
                    3,
                    channels::CHAT.id,
                    &sign(&k(user as u8), 0, &chat("hi")),
                );
            }
            drain(&mut s);
            chat_frame(s, sign(&k(last as u8), 0, &chat("hi")))
        }
        DropReason::UnboundLink => Provoke {
            from: 1,
            ..control(
                join_pinned(SessionConfig::new(ROOM), 2, &room(), &[1, 3], Some(&hk)),
                sign(&hk, 0, &pause(1)),
            )
        },
        DropReason::NotAdmitted => {
            // A host holding the admission secret; member 3 never knocked.
            let mut cfg = SessionConfig::new(ROOM);
            cfg.admit_secret = Some(watchparty_peer::admit::AdmitSecret::derive(&hk));
            chat_frame(
                support::session::join_with(cfg, 1, &room(), &[2, 3]),
                sign(&k(3), 0, &chat("hi")),
            )
        }
        DropReason::RateLimited => {
            let mut s = follower();
            for seq in 0..u64::from(DEFAULT_CHAT_LIMIT.burst) {
                feed(&mut s, 3, channels::CHAT.id, &sign(&k(3), seq, &chat("hi")));
            }
            drain(&mut s);
            let seq = u64::from(DEFAULT_CHAT_LIMIT.burst);
            chat_frame(s, sign(&k(3), seq, &chat("hi")))
        }
    }
}

#[test]
fn every_drop_reason_is_reachable_through_the_session() {
    for &reason in DropReason::ALL {
        let Provoke {
            mut session,
            from,
            channel,
            bytes,
            now,
        } = provoke(reason);
        let before = (
            session.playback(),
            session.stats().accepted,
            session.policy(),
            session.queue().clone(),
            session.members().collect::<Vec<_>>(),
            session.drops().clone(),
        );
        session.handle_frame(u(from), channel, &bytes, now);
        let out = drain(&mut session);
        assert_eq!(
            session.drops().get(reason),
            before.5.get(reason) + 1,
            "{reason:?}"
        );
        assert_eq!(session.drops().total(), before.5.total() + 1, "{reason:?}");
        assert_eq!(
            out,
            vec![Output::Event(Event::Dropped {
                from: u(from),
                reason
            })],
            "{reason:?}: one event, nothing sent"
        );
        let after = (
            session.playback(),
            session.stats().accepted,
            session.policy(),
            session.queue().clone(),
            session.members().collect::<Vec<_>>(),
        );
        assert_eq!(
            (before.0, before.1, before.2, before.3, before.4),
            after,
            "{reason:?} changed state"
        );
    }
}

// ------------------------------------------------------- status → state --

/// Member 3's `Status` number `seq`, issued 10 ms per seq after the start
/// (the pace of the flood below).
fn status_frame(seq: u64) -> Vec<u8> {
    sign_at(
        &k(3),
        ROOM,
        1,
        seq,
        ROOM_MS_AT_START + 10 * seq as i64,
        &Message::Status(Status {
            readiness: Readiness::Ready,
            item: None,
            position: PositionMs::new(0).unwrap(),
            at: watchparty_peer::ids::RoomMs(0),
            detached: false,
        }),
    )
}

/// The host's periodic signed `State`, as follower 2 receives it.
fn host_state() -> Vec<u8> {
    let mut h = host();
    let mut t = START;
    loop {
        t += TimeDelta::from_millis(500);
        h.handle_timeout(t);
        if let Some((_, _, b)) = frames(&drain(&mut h))
            .into_iter()
            .find(|(to, _, b)| *to == u(2) && kind_of(b) == Kind::State.to_byte())
        {
            return b;
        }
        assert!(
            t < START + TimeDelta::from_secs(60),
            "the host sent no State"
        );
    }
}

/// States follower `f` sent to member 3.
fn states_to_3(outputs: &[Output]) -> usize {
    frames(outputs)
        .iter()
        .filter(|(to, _, b)| *to == u(3) && kind_of(b) == Kind::State.to_byte())
        .count()
}

/// §7.1: a follower answers a member's own `Status` with its latest `State`
/// at most once per `STATE_REPLY_INTERVAL` (a flood of 2 100 Status frames
/// drew 2 101 States before), and not at all while the member shows a path
/// to the host (its frames reach us through the host).
#[test]
fn status_flood_draws_at_most_one_state_per_interval() {
    let mut f = follower();
    f.handle_frame(u(1), channels::CONTROL.id, &host_state(), ms(1_500));
    assert!(f.last_state_frame().is_some());
    drain(&mut f);
    let interval_ms = STATE_REPLY_INTERVAL.as_micros() / 1000;
    // 2 100 Status frames from member 3 over 21 s, sent to us directly.
    let (mut states, mut accepted_before) = (0, f.stats().accepted);
    let start = 2_000;
    for i in 0..2_100u64 {
        let now = ms(start + 10 * i as i64);
        f.handle_frame(u(3), channels::CONTROL.id, &status_frame(i), now);
        states += states_to_3(&drain(&mut f));
    }
    assert_eq!(f.stats().accepted - accepted_before, 2_100, "all authentic");
    // 21 s: answers at 0, 5, 10, 15 and 20 s.
    let expected = (21_000 / interval_ms + 1) as usize;
    assert_eq!(states, expected.min(5), "one State per interval");
    assert!(states <= 5);
    // Crossing the interval: nothing just before it, one at it.
    let last_answer = start + 20_000;
    f.handle_frame(
        u(3),
        channels::CONTROL.id,
        &status_frame(5_000),
        ms(last_answer + interval_ms - 1),
    );
    assert_eq!(states_to_3(&drain(&mut f)), 0);
    f.handle_frame(
        u(3),
        channels::CONTROL.id,
        &status_frame(5_001),
        ms(last_answer + interval_ms),
    );
    assert_eq!(states_to_3(&drain(&mut f)), 1);

    // Member 3 has a path to the host: its Status reaches us through the
    // host. Then its own Status is not answered, for HOST_PATH_MEMORY.
    let t = last_answer + 3 * interval_ms;
    f.handle_frame(u(1), channels::CONTROL.id, &status_frame(5_002), ms(t));
    accepted_before = f.stats().accepted;
    let memory_ms = HOST_PATH_MEMORY.as_micros() / 1000;
    let mut later = 0;
    for (i, dt) in [0, interval_ms, 2 * interval_ms, memory_ms - 1]
        .iter()
        .enumerate()
    {
        f.handle_frame(
            u(3),
            channels::CONTROL.id,
            &status_frame(5_003 + i as u64),
            ms(t + dt),
        );
        later += states_to_3(&drain(&mut f));
    }
    assert_eq!(f.stats().accepted - accepted_before, 4);
    assert_eq!(
        later, 0,
        "a member with a path to the host gets no State reply"
    );
    // An exact copy through the host counts as that evidence too.
    let copy = status_frame(6_000);
    let t2 = t + memory_ms;
    f.handle_frame(u(3), channels::CONTROL.id, &copy, ms(t2));
    assert_eq!(states_to_3(&drain(&mut f)), 1, "no recent path: answered");
    f.handle_frame(u(1), channels::CONTROL.id, &copy, ms(t2 + 1));
    drain(&mut f);
    f.handle_frame(
        u(3),
        channels::CONTROL.id,
        &status_frame(6_001),
        ms(t2 + interval_ms),
    );
    assert_eq!(
        states_to_3(&drain(&mut f)),
        0,
        "the copy via the host showed a path"
    );
}
