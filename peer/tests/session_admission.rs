//! Admission to a pinned room (docs/protocol.md §2.2, issue #15 item 3):
//! a member the server certified but the host never admitted (it has no
//! admission secret from the invite link) is not heard by the host nor by
//! the pinned followers; members that knocked with the secret are. Real
//! sessions, virtual time, the scripted server of `support::room`.

mod support;

use support::room::{Net, Room, key, user};
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::ids::Role;
use watchparty_peer::session::{AskFor, Event, UserCommand};

/// Host 0 and followers 1 and 2 with the admission secret (pinned when
/// `pinned`), then member 3 the server let in without it, playing from
/// 20 s.
fn room_with_intruder(seed: u64, pinned: bool) -> Room {
    let mut room = Room::new(seed, Net::default());
    room.pin_followers = pinned;
    room.admit = true;
    for _ in 0..3 {
        room.add(Role::Viewer, None);
    }
    room.admit = false;
    room.add(Role::Viewer, None);
    room.play_from_20s();
    room
}

/// The chat texts peer `i` was shown, with their senders' indices.
fn chats(room: &Room, i: usize) -> Vec<(u64, String)> {
    room.peers[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Chat { from, text, .. } => Some((from.get() - 1, text.as_str().to_owned())),
            _ => None,
        })
        .collect()
}

fn admitted(room: &Room, at: usize, who: usize) -> bool {
    let now = room.local(at);
    room.peers[at]
        .session
        .peers(now)
        .iter()
        .find(|p| p.user == user(who))
        .is_some_and(|p| p.admitted)
}

#[test]
fn a_member_the_host_never_admitted_is_not_heard_in_a_pinned_room() {
    let mut room = room_with_intruder(71, true);
    room.command(1, UserCommand::Chat("hello".into())).unwrap();
    room.command(3, UserCommand::Chat("buy now".into()))
        .unwrap();
    room.command(3, UserCommand::Ask(AskFor::Pause)).unwrap();
    room.command(3, UserCommand::Reaction("🎉".into())).unwrap();
    room.run_for_ms(3000);
    for i in [0, 2] {
        assert_eq!(chats(&room, i), vec![(1, "hello".to_owned())], "peer {i}");
        let s = &room.peers[i].session;
        assert!(s.admission_enforced(), "peer {i}");
        // Chat and reaction everywhere; the ask went to the host alone.
        let want = if i == 0 { 3 } else { 2 };
        assert!(s.drops().get(DropReason::NotAdmitted) >= want, "peer {i}");
        assert!(admitted(&room, i, 1), "peer {i}");
        assert!(!admitted(&room, i, 3), "peer {i}");
    }
    // The host holds no ask of the intruder, and the room plays on in
    // sync for everyone (the intruder too: it still follows the host).
    assert!(room.peers[0].session.pending_asks().is_empty());
    assert!(room.peers[0].session.playback().is_some_and(|p| !p.paused));
    room.run_for_ms(10_000);
    for i in 1..4 {
        let e = room.error_now(i).expect("in the room").abs();
        assert!(e < 20_000, "peer {i} off by {e} µs");
    }
    // The admitted members see themselves admitted; the intruder does not.
    for i in 1..3 {
        let me = room.peers[i].session.user().unwrap();
        assert!(room.peers[i].session.is_admitted(me), "peer {i}");
    }
    let me = room.peers[3].session.user().unwrap();
    assert!(!room.peers[0].session.is_admitted(me));
}

#[test]
fn an_unpinned_follower_trusts_the_server_as_before() {
    let mut room = room_with_intruder(72, false);
    room.command(3, UserCommand::Chat("still heard".into()))
        .unwrap();
    room.run_for_ms(3000);
    // The host enforces (it holds the secret); a follower without a pin
    // does not: the host key itself came from the server.
    assert!(chats(&room, 0).is_empty());
    assert!(!room.peers[2].session.admission_enforced());
    assert_eq!(chats(&room, 2), vec![(3, "still heard".to_owned())]);
    // It still shows who the host admitted.
    assert!(admitted(&room, 2, 1));
    assert!(!admitted(&room, 2, 3));
}

#[test]
fn a_knock_with_another_rooms_secret_is_refused() {
    let mut room = Room::new(73, Net::default());
    room.admit = true;
    room.add(Role::Viewer, None);
    room.add(Role::Viewer, None);
    room.run_for_ms(2000);
    // Member 1 knocks with a MAC made under another secret.
    let wrong = AdmitSecret::derive(&key(9));
    let mac = wrong.knock_mac(support::room::ROOM, &key(1).public_key(), user(1));
    let before = room.peers[0].session.drops().get(DropReason::NotAdmitted);
    let frame = {
        let h = watchparty_peer::frame::Header {
            room: support::room::ROOM,
            epoch: room.peers[0].session.epoch(),
            seq: watchparty_peer::ids::Seq::new(1_000).unwrap(),
            issued_at: watchparty_peer::ids::RoomMs(
                room.peers[0]
                    .session
                    .sync()
                    .room_time(room.local(0))
                    .unwrap()
                    .as_micros()
                    / 1000,
            ),
        };
        watchparty_peer::frame::encode(&key(1), &h, &watchparty_peer::message::Message::Knock(mac))
            .unwrap()
    };
    room.inject(1, 0, frame);
    assert_eq!(
        room.peers[0].session.drops().get(DropReason::NotAdmitted),
        before + 1
    );
    // Its earlier, valid knock still stands.
    assert!(admitted(&room, 0, 1));
}

#[test]
fn a_signed_handoff_keeps_every_member_admitted() {
    let mut room = room_with_intruder(74, true);
    room.command(0, UserCommand::Handoff(user(1))).unwrap();
    room.run_for_ms(8000);
    assert!(room.peers[1].session.is_host());
    // The former host and member 2 are heard by everyone; the intruder is
    // not.
    room.command(0, UserCommand::Chat("from the old host".into()))
        .unwrap();
    room.command(2, UserCommand::Chat("from two".into()))
        .unwrap();
    room.command(3, UserCommand::Chat("intruder".into()))
        .unwrap();
    room.run_for_ms(3000);
    let heard = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = chats(&room, i).into_iter().map(|(_, t)| t).collect();
        v.sort();
        v
    };
    // (A sender is shown its own chat too.)
    for i in 0..3 {
        assert_eq!(heard(i), vec!["from the old host", "from two"], "peer {i}");
    }
}

#[test]
fn the_host_can_approve_a_member_by_hand() {
    let mut room = room_with_intruder(75, true);
    // Only the host may approve.
    assert!(room.command(1, UserCommand::Approve(user(3))).is_err());
    room.command(0, UserCommand::Approve(user(3))).unwrap();
    room.run_for_ms(2000);
    for i in 0..3 {
        assert!(admitted(&room, i, 3), "peer {i}");
    }
    room.command(3, UserCommand::Chat("let in".into())).unwrap();
    room.run_for_ms(3000);
    for i in 0..3 {
        assert_eq!(chats(&room, i), vec![(3, "let in".to_owned())], "peer {i}");
    }
}

/// `MAX_ADMITTED`: the host's roster holds at most 16 members, itself
/// included; a knock beyond that is not admitted until a member in the
/// roster leaves the room.
#[test]
fn the_roster_holds_at_most_max_admitted_members() {
    use watchparty_peer::message::MAX_ADMITTED;
    use watchparty_peer::signaling::ServerMessage;
    let mut room = Room::new(76, Net::default());
    room.admit = true;
    for _ in 0..=MAX_ADMITTED {
        room.add(Role::Viewer, None);
    }
    room.run_for_ms(12_000);
    // The host and the first 15 members to knock fill the roster.
    let out: Vec<usize> = (1..=MAX_ADMITTED)
        .filter(|i| !admitted(&room, 0, *i))
        .collect();
    assert_eq!(out.len(), 1, "one more than fits: {out:?}");
    let (left_out, leaving) = (out[0], if out[0] == 1 { 2 } else { 1 });
    // A member in the roster leaves: its entry goes for the next knock
    // (sent with each Status).
    room.peers[leaving].online = false;
    for j in 0..=MAX_ADMITTED {
        if j != leaving {
            room.signal(
                j,
                ServerMessage::MemberLeft {
                    user: user(leaving),
                },
            );
        }
    }
    room.run_for_ms(12_000);
    assert!(admitted(&room, 0, left_out));
    let other = if left_out == 3 { 4 } else { 3 };
    assert!(admitted(&room, other, left_out));
    assert!(!admitted(&room, 0, leaving));
}
