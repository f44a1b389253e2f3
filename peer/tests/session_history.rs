//! Chat history for late joiners (docs/protocol.md §4.1 *Chat history*,
//! issue #20 item 8): the host keeps the last chat
//! frames it accepted and offers them, each wrapped unchanged in a
//! host-signed `ChatHistory`, on every new link after its `Bind` and
//! `Roster`; the receiver verifies the member signature inside, shows each
//! message once, marked earlier, and drops forgeries for their reason.
//! Real sessions; the single-session fixtures of `support::session` and,
//! for the journey, the virtual-time room of `support::room`.

mod support;

use support::room::{Net, Room};
use support::session::{
    Entry, ROOM, ROOM_MS_AT_START, START, drain, dropped, events, follower, frames, join_pinned,
    join_with, k, ms, room, sign, sign_at, u,
};
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::channels;
use watchparty_peer::ids::{Role, RoomId, RoomMs};
use watchparty_peer::message::{Admitted, ChatText, EarlierChat, Fingerprint, Kind, Message};
use watchparty_peer::session::{
    CHAT_HISTORY_MAX, ChannelOpen, Event, Output, RateLimit, Session, SessionConfig, UserCommand,
};
use watchparty_peer::time::{LocalTime, TimeDelta};

/// Ten minutes before the fixtures' start, on the room clock: far outside
/// the skew bound, as earlier chat is.
const LONG_AGO_MS: i64 = ROOM_MS_AT_START - 600_000;

/// A chat frame of `who` (seq `seq`) issued at room time `at_ms`.
fn chat_at(who: u8, seq: u64, at_ms: i64, text: &str) -> Vec<u8> {
    chat_in(ROOM, 1, who, seq, at_ms, text)
}

fn chat_in(room: RoomId, epoch: u64, who: u8, seq: u64, at_ms: i64, text: &str) -> Vec<u8> {
    sign_at(
        &k(who),
        room,
        epoch,
        seq,
        at_ms,
        &Message::Chat(ChatText::new(text).unwrap()),
    )
}

/// A `ChatHistory` carrying `inner`, signed by `signer` with `seq`.
fn history_by(signer: u8, seq: u64, inner: Vec<u8>) -> Vec<u8> {
    sign(
        &k(signer),
        seq,
        &Message::ChatHistory(EarlierChat::new(inner).unwrap()),
    )
}

/// The host's (user 1) `ChatHistory` carrying `inner`.
fn history(seq: u64, inner: Vec<u8>) -> Vec<u8> {
    history_by(1, seq, inner)
}

/// Feeds `bytes` from neighbour `from` on its kind's channel at `at`.
fn feed(s: &mut Session, from: u64, bytes: &[u8], at: LocalTime) -> Vec<Output> {
    let channel = Kind::from_byte(bytes[3]).unwrap().channel().id;
    s.handle_frame(u(from), channel, bytes, at);
    drain(s)
}

/// The chat messages among `outputs`: (sender, text, earlier).
fn chats(outputs: &[Output]) -> Vec<(u64, String, Option<RoomMs>)> {
    events(outputs)
        .into_iter()
        .filter_map(|e| match e {
            Event::Chat {
                from,
                text,
                earlier,
            } => Some((from.get(), text.as_str().to_owned(), earlier)),
            _ => None,
        })
        .collect()
}

/// A room of four with a lenient chat limit (so one member can fill the
/// history), the admission secret of the host key, host 1 linked to 2 and 3.
fn host_with_secret() -> (Session, AdmitSecret) {
    let secret = AdmitSecret::derive(&k(1));
    let mut cfg = SessionConfig::new(ROOM);
    cfg.chat_limit = RateLimit {
        burst: 1000,
        interval: TimeDelta::from_millis(1),
    };
    cfg.admit_secret = Some(secret);
    let mut roster = room();
    roster.push(Entry::new(4, Role::Viewer));
    (join_with(cfg, 1, &roster, &[2, 3]), secret)
}

#[test]
fn the_host_offers_its_last_messages_on_a_new_link_after_bind_and_roster() {
    let (mut host, secret) = host_with_secret();
    let mac = secret.knock_mac(ROOM, &k(2).public_key(), u(2));
    let knock = sign(&k(2), 0, &Message::Knock(mac));
    assert!(dropped(&feed(&mut host, 2, &knock, START)).is_empty());
    // Member 2 says more than the history keeps; the host says one thing.
    let extra = 7;
    let sent: Vec<Vec<u8>> = (1..=(CHAT_HISTORY_MAX + extra) as u64)
        .map(|seq| chat_at(2, seq, ROOM_MS_AT_START, &format!("message {seq}")))
        .collect();
    for f in &sent {
        let out = feed(&mut host, 2, f, START);
        assert_eq!(chats(&out).len(), 1);
    }
    host.command(UserCommand::Chat("from the host".into()), START)
        .unwrap();
    let own = frames(&drain(&mut host))
        .into_iter()
        .find(|(_, c, _)| *c == channels::CHAT.id)
        .unwrap()
        .2;
    // Member 4 connects (with fingerprints, so the host binds the link).
    host.channel_open(
        ChannelOpen {
            peer: u(4),
            local_fingerprint: Some(Fingerprint::Sha256([1; 32])),
            remote_fingerprint: Some(Fingerprint::Sha256([4; 32])),
        },
        ms(1_500),
    );
    let to_4: Vec<Vec<u8>> = frames(&drain(&mut host))
        .into_iter()
        .filter(|(to, c, _)| *to == u(4) && *c == channels::CONTROL.id)
        .map(|(_, _, b)| b)
        .collect();
    let kinds: Vec<Kind> = to_4
        .iter()
        .map(|b| Kind::from_byte(b[3]).unwrap())
        .collect();
    assert_eq!(kinds[..2], [Kind::Bind, Kind::Roster]);
    let offered: Vec<Vec<u8>> = to_4[2..]
        .iter()
        .map(|b| {
            let f = watchparty_peer::frame::receive(b, |_, _| Some(k(1).public_key())).unwrap();
            match f.message() {
                Message::ChatHistory(c) => c.frame().to_vec(),
                other => panic!("not a ChatHistory: {other:?}"),
            }
        })
        .collect();
    // The last CHAT_HISTORY_MAX messages, oldest first, byte for byte.
    let mut want: Vec<Vec<u8>> = sent[extra + 1..].to_vec();
    want.push(own);
    assert_eq!(offered.len(), CHAT_HISTORY_MAX);
    assert_eq!(offered, want);
}

#[test]
fn a_late_joiner_shows_an_earlier_message_once_marked_earlier() {
    let mut s = follower();
    let inner = chat_at(3, 0, LONG_AGO_MS, "said before you came");
    let out = feed(&mut s, 1, &history(0, inner.clone()), START);
    assert!(dropped(&out).is_empty(), "{:?}", dropped(&out));
    assert_eq!(
        chats(&out),
        vec![(
            3,
            "said before you came".to_owned(),
            Some(RoomMs(LONG_AGO_MS))
        )]
    );
    // Offered again (another link, another host frame): not shown twice.
    let out = feed(&mut s, 1, &history(1, inner.clone()), START);
    assert!(chats(&out).is_empty());
    assert!(dropped(&out).is_empty());
    // The same frame live, late (forwarded by a member): an exact copy.
    let dup = s.stats().duplicates;
    let out = feed(&mut s, 3, &inner, START);
    assert!(chats(&out).is_empty());
    assert!(dropped(&out).is_empty());
    assert_eq!(s.stats().duplicates, dup + 1);
}

#[test]
fn a_message_seen_live_is_not_shown_again_from_history() {
    let mut s = follower();
    let live = chat_at(3, 0, ROOM_MS_AT_START, "live first");
    let out = feed(&mut s, 3, &live, START);
    assert_eq!(chats(&out), vec![(3, "live first".to_owned(), None)]);
    let out = feed(&mut s, 1, &history(0, live), START);
    assert!(chats(&out).is_empty());
    assert!(dropped(&out).is_empty());
}

#[test]
fn forged_or_foreign_history_is_dropped_for_its_reason() {
    let mut s = follower();
    let good = chat_at(3, 0, LONG_AGO_MS, "genuine");
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut tampered = good.clone();
    tampered[56] ^= 1; // a byte of the text
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "inner signature broken",
            history(0, forged),
            DropReason::BadSignature,
        ),
        (
            "inner text changed",
            history(1, tampered),
            DropReason::BadSignature,
        ),
        (
            "inner signer unknown",
            history(2, chat_at(9, 0, LONG_AGO_MS, "who am I")),
            DropReason::UnknownSigner,
        ),
        (
            "inner of another room",
            history(
                3,
                chat_in(RoomId::from_bytes([7; 16]), 1, 3, 1, LONG_AGO_MS, "x"),
            ),
            DropReason::WrongRoom,
        ),
        (
            "inner of a later epoch",
            history(4, chat_in(ROOM, 2, 3, 2, LONG_AGO_MS, "x")),
            DropReason::UnknownEpoch,
        ),
        (
            "inner not a chat",
            history(
                5,
                sign(
                    &k(3),
                    3,
                    &Message::Reaction(watchparty_peer::message::Emoji::new("🎉").unwrap()),
                ),
            ),
            DropReason::Malformed,
        ),
        (
            "inner not a frame",
            history(6, b"hello".to_vec()),
            DropReason::NotAFrame,
        ),
        (
            "outer signed by a member",
            history_by(3, 4, good.clone()),
            DropReason::NotHost,
        ),
    ];
    let accepted = s.stats().accepted;
    for (what, bytes, reason) in cases {
        let out = feed(&mut s, 1, &bytes, START);
        assert_eq!(dropped(&out), vec![reason], "{what}");
        assert!(chats(&out).is_empty(), "{what}");
    }
    assert_eq!(s.stats().accepted, accepted, "nothing accepted");
    // A dropped frame changed nothing: the genuine one is still shown.
    let out = feed(&mut s, 1, &history(7, good), START);
    assert_eq!(chats(&out).len(), 1);
}

#[test]
fn history_is_bounded_per_link_and_never_counts_against_live_limits() {
    let mut s = follower();
    for seq in 0..CHAT_HISTORY_MAX as u64 {
        let inner = chat_at(3, seq, LONG_AGO_MS, &format!("old {seq}"));
        let out = feed(&mut s, 1, &history(seq, inner), START);
        assert_eq!(chats(&out).len(), 1, "earlier message {seq}");
    }
    let one_more = chat_at(3, 100, LONG_AGO_MS, "one too many");
    let out = feed(&mut s, 1, &history(100, one_more), START);
    assert_eq!(dropped(&out), vec![DropReason::RateLimited]);
    // Member 3's live chat is within its limit: history took no token.
    for seq in 200..205 {
        let live = chat_at(3, seq, ROOM_MS_AT_START, "now");
        let out = feed(&mut s, 3, &live, START);
        assert_eq!(chats(&out), vec![(3, "now".to_owned(), None)], "{seq}");
    }
}

#[test]
fn a_pinned_follower_shows_no_earlier_message_of_a_member_the_host_never_admitted() {
    let mut cfg = SessionConfig::new(ROOM);
    cfg.admit_secret = Some(AdmitSecret::derive(&k(1)));
    let mut s = join_pinned(cfg, 2, &room(), &[1, 3], Some(&k(1)));
    // The host's roster names 1 and 2; member 3 was never admitted. (Via
    // member 3's link: the host link has no fingerprints to bind.)
    let roster = sign(
        &k(1),
        0,
        &Message::Roster(vec![
            Admitted {
                member: u(1),
                key: k(1).public_key(),
            },
            Admitted {
                member: u(2),
                key: k(2).public_key(),
            },
        ]),
    );
    assert!(dropped(&feed(&mut s, 3, &roster, START)).is_empty());
    let out = feed(
        &mut s,
        3,
        &history(1, chat_at(3, 0, LONG_AGO_MS, "not admitted")),
        START,
    );
    assert_eq!(dropped(&out), vec![DropReason::NotAdmitted]);
    let out = feed(
        &mut s,
        3,
        &history(2, chat_at(1, 0, LONG_AGO_MS, "from the host")),
        START,
    );
    assert_eq!(chats(&out).len(), 1);
}

/// The chat messages peer `i` was shown: (sender index, text, earlier).
fn shown(room: &Room, i: usize) -> Vec<(u64, String, bool)> {
    room.peers[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Chat {
                from,
                text,
                earlier,
            } => Some((from.get() - 1, text.as_str().to_owned(), earlier.is_some())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_late_joiner_sees_the_earlier_chat_in_order_exactly_once() {
    // Pinned room with the admission secret: every rule applies.
    let mut room = Room::new(81, Net::default());
    room.admit = true;
    room.add(Role::Viewer, None);
    room.add(Role::Viewer, None);
    room.run_for_ms(2_000);
    room.command(0, UserCommand::Chat("hello from the host".into()))
        .unwrap();
    room.run_for_ms(500);
    room.command(1, UserCommand::Chat("hi, bob here".into()))
        .unwrap();
    room.run_for_ms(500);
    room.command(0, UserCommand::Chat("welcome bob".into()))
        .unwrap();
    room.run_for_ms(2_000);
    // Carol joins late, linked to both.
    let carol = room.add(Role::Viewer, None);
    room.run_for_ms(3_000);
    room.command(1, UserCommand::Chat("hi carol".into()))
        .unwrap();
    room.run_for_ms(2_000);
    assert_eq!(
        shown(&room, carol),
        vec![
            (0, "hello from the host".to_owned(), true),
            (1, "hi, bob here".to_owned(), true),
            (0, "welcome bob".to_owned(), true),
            (1, "hi carol".to_owned(), false),
        ]
    );
    // Nobody who was there sees anything twice or marked earlier.
    for i in 0..2 {
        assert!(
            shown(&room, i).iter().all(|(_, _, earlier)| !earlier),
            "{i}"
        );
        assert_eq!(shown(&room, i).len(), 4, "{i}");
    }
    assert_eq!(
        room.peers[carol]
            .session
            .drops()
            .get(DropReason::NotAdmitted),
        0
    );
}
