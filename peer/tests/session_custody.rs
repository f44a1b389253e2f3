//! Chain of custody of the host role (docs/protocol.md §6): a host change
//! the server announces without the current host's signed `Handoff` is
//! refused by the host and by every follower while the host is there, and
//! the refusal is reported; a signed handoff works as before. Real
//! sessions, virtual time, the scripted server of `support::room`.

mod support;

use support::room::{Net, Room, user};
use watchparty_peer::ids::{Epoch, Role};
use watchparty_peer::session::{
    Event, HOST_CHANGE_GRACE, HostChangeRefusal, RefusedHostChange, UserCommand,
};
use watchparty_peer::signaling::ServerMessage;
use watchparty_peer::time::MediaPos;

fn refusals(room: &Room, i: usize) -> Vec<RefusedHostChange> {
    room.peers[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::HostChangeRefused(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Host 0 and `n − 1` followers, playing from 20 s; followers pin the
/// host key when `pinned`.
fn playing_room(seed: u64, n: usize, pinned: bool) -> Room {
    let mut room = Room::new(seed, Net::default());
    room.pin_followers = pinned;
    for _ in 0..n {
        room.add(Role::Viewer, None);
    }
    room.play_from_20s();
    room
}

/// The server installs member 2 as host while host 0 is there (a REST
/// handoff the host never signed, or a hostile server): nobody follows it.
fn server_installs_member_2(pinned: bool, seed: u64) {
    let mut room = playing_room(seed, 3, pinned);
    room.server_promote(2);
    // The host reports at once; followers wait HOST_CHANGE_GRACE for a
    // signed Handoff that could still be on its way.
    room.run_for_ms(500);
    assert_eq!(refusals(&room, 0).len(), 1);
    for i in 1..3 {
        assert!(refusals(&room, i).is_empty(), "peer {i}");
        assert_eq!(room.peers[i].session.host(), Some(user(0)), "peer {i}");
        assert_eq!(room.peers[i].session.epoch(), Epoch(1), "peer {i}");
    }
    room.run_for_ms(HOST_CHANGE_GRACE.as_micros() / 1000);
    for i in 0..3 {
        let s = &room.peers[i].session;
        assert_eq!(s.is_host(), i == 0, "peer {i}");
        assert_eq!(s.host(), Some(user(0)), "peer {i}");
        assert_eq!(s.epoch(), Epoch(1), "peer {i}");
        let r = s.refused_host_change().expect("refusal recorded");
        assert_eq!(r.claimed_host, user(2), "peer {i}");
        assert_eq!(r.epoch, Epoch(2), "peer {i}");
        assert_eq!(r.host, Some(user(0)), "peer {i}");
        assert_eq!(r.we_are_host, i == 0, "peer {i}");
        let want = if i == 0 || !pinned {
            HostChangeRefusal::NotSignedByHost
        } else {
            HostChangeRefusal::PinMismatch
        };
        assert_eq!(r.reason, want, "peer {i}");
        assert_eq!(refusals(&room, i).len(), 1, "peer {i}");
    }
    let host_msg = room.peers[0]
        .session
        .refused_host_change()
        .unwrap()
        .message();
    assert_eq!(
        host_msg,
        "The server tried to give control of this room to user2 without your approval; \
         you are still the host."
    );
    let follower_msg = room.peers[1]
        .session
        .refused_host_change()
        .unwrap()
        .message();
    assert!(follower_msg.contains("user2"), "{follower_msg}");
    assert!(
        follower_msg.contains("you keep following the current host"),
        "{follower_msg}"
    );
    // The room did not split: the host's next command reaches everyone,
    // including the member the server named.
    room.command(0, UserCommand::Seek(MediaPos::from_millis(300_000)))
        .unwrap();
    room.run_for_ms(8000);
    for i in 0..3 {
        let pos = room.position(i).as_millis();
        assert!((305_000..312_000).contains(&pos), "peer {i} at {pos}");
        assert!(room.playing(i), "peer {i}");
    }
    // The would-be host cannot command: it is not the host anywhere,
    // itself included.
    assert_eq!(
        room.command(2, UserCommand::Pause),
        Err(watchparty_peer::session::CommandError::Refused(
            watchparty_peer::message::RefuseReason::ViewerRole
        ))
    );
}

#[test]
fn host_and_pinned_followers_refuse_a_server_installed_host() {
    server_installs_member_2(true, 61);
}

#[test]
fn host_and_unpinned_followers_refuse_a_server_installed_host_while_the_host_is_there() {
    server_installs_member_2(false, 62);
}

#[test]
fn signed_handoff_still_moves_the_host_without_any_refusal() {
    for pinned in [true, false] {
        let mut room = playing_room(63, 3, pinned);
        room.command(0, UserCommand::Handoff(user(2))).unwrap();
        room.run_for_ms(HOST_CHANGE_GRACE.as_micros() / 1000 + 1000);
        for i in 0..3 {
            let s = &room.peers[i].session;
            assert_eq!(s.host(), Some(user(2)), "peer {i} (pinned {pinned})");
            assert_eq!(s.is_host(), i == 2, "peer {i}");
            assert_eq!(s.epoch(), Epoch(2), "peer {i}");
            assert!(refusals(&room, i).is_empty(), "peer {i}");
            assert!(s.refused_host_change().is_none(), "peer {i}");
        }
        room.command(2, UserCommand::Seek(MediaPos::from_millis(300_000)))
            .unwrap();
        room.run_for_ms(8000);
        for i in 0..3 {
            let pos = room.position(i).as_millis();
            assert!((305_000..312_000).contains(&pos), "peer {i} at {pos}");
        }
    }
}

#[test]
fn after_the_host_left_an_unpinned_follower_takes_the_servers_next_host() {
    let mut room = playing_room(64, 3, false);
    room.leave(0);
    room.run_for_ms(500);
    room.server_promote(2);
    room.run_for_ms(500);
    for i in 1..3 {
        let s = &room.peers[i].session;
        assert_eq!(s.host(), Some(user(2)), "peer {i}");
        assert_eq!(s.epoch(), Epoch(2), "peer {i}");
        assert!(refusals(&room, i).is_empty(), "peer {i}");
    }
    assert!(room.peers[2].session.is_host());
}

#[test]
fn a_refused_change_is_applied_once_the_host_signs_the_matching_handoff() {
    // The server announces the new host before the host's signed Handoff
    // reaches a follower: held, then applied when the Handoff arrives.
    let mut room = playing_room(65, 3, false);
    // Cut follower 1 off from the host so the Handoff reaches it late
    // (through follower 2, after host_changed).
    room.unlink(0, 1);
    room.command(0, UserCommand::Handoff(user(2))).unwrap();
    room.run_for_ms(HOST_CHANGE_GRACE.as_micros() / 1000 + 1000);
    let s = &room.peers[1].session;
    assert_eq!(s.host(), Some(user(2)));
    assert_eq!(s.epoch(), Epoch(2));
    assert!(s.refused_host_change().is_none());
    assert!(refusals(&room, 1).is_empty());
}

#[test]
fn repeating_the_push_never_postpones_the_followers_report() {
    let mut room = playing_room(66, 3, false);
    let cert = room.cert(2, Role::Host, Epoch(2));
    let push = |room: &mut Room| {
        room.signal(
            1,
            ServerMessage::HostChanged {
                certificate: cert.clone(),
            },
        );
    };
    let grace_ms = HOST_CHANGE_GRACE.as_micros() / 1000;
    push(&mut room);
    room.run_for_ms(grace_ms - 1000);
    assert!(refusals(&room, 1).is_empty());
    push(&mut room);
    room.run_for_ms(1500);
    assert_eq!(refusals(&room, 1).len(), 1);
    assert_eq!(room.peers[1].session.host(), Some(user(0)));
}
