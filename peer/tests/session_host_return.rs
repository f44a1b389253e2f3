//! Issue #20 item 1: the host reloads its page (or restarts, or loses its
//! network) and comes back with the same key. The followers keep playing,
//! hand it the room state they hold (its own signed `State` of the earlier
//! term), and it resumes the room there in a new epoch: same media, same
//! position, same play state; followers see the host return, not a new
//! host, and no certificate error. Real sessions, virtual time and players
//! (docs/protocol.md §7.2).

mod support;

use support::room::*;
use watchparty_peer::ids::{Epoch, Role};
use watchparty_peer::session::{
    Event, HOST_RETURN_GRACE, HOST_RETURN_WAIT, Session, SessionConfig, UserCommand,
};
use watchparty_peer::signaling::{BoundedVec, OffererRule, RosterEntry, ServerMessage};
use watchparty_peer::time::{LocalTime, MediaPos, TimeDelta, WallTime};
use watchparty_peer::timeline::PlaybackState;
use watchparty_peer::virtual_player::VirtualPlayer;

/// A room of a host and two viewers playing from 20 s.
fn playing_room(seed: u64) -> Room {
    let mut room = ready_room(seed, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Seek(MediaPos::from_millis(20_000)))
        .unwrap();
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(8_000);
    room
}

/// The host's page goes away (the server tells the others it left).
fn host_goes(room: &mut Room) {
    room.leave(0);
}

/// The host's page comes back: a fresh session with the same key, a fresh
/// page clock (origin now) and player; the server opens a new epoch and
/// announces the host certificate to the others (`member_joined`, then
/// `host_changed`, as the real server does); connections open. `linked`:
/// followers the new page connects to.
fn host_comes_back(room: &mut Room, linked: &[usize]) -> Epoch {
    // Host 0's wall clock is WALL at its local time 0 and never drifts in
    // this room; the new page's clock starts at 0 now.
    let wall = WallTime::from_unix_micros(
        i64::try_from(WALL.0).unwrap() * 1_000_000 + room.peers[0].clock.local(room.t).as_micros(),
    );
    room.peers[0].clock = Clock {
        offset: -room.t,
        drift_ppm: 0,
    };
    let local = room.local(0);
    assert_eq!(local, LocalTime::ZERO);
    let mut cfg = SessionConfig::new(ROOM);
    cfg.initial_policy.wait_timeout_ms = 10_000;
    room.peers[0].session =
        Session::new(cfg, key(0), room.server.public_key(), None, local, wall).unwrap();
    room.peers[0].player = VirtualPlayer::new(room.peers[0].player_cfg.clone(), local);
    room.peers[0].pending_load = None;
    room.peers[0].next_observe = room.t;
    room.peers[0].online = true;
    room.epoch = Epoch(room.epoch.0 + 1);
    let epoch = room.epoch;
    let host_cert = room.cert(0, Role::Host, epoch);
    let members = (1..room.peers.len())
        .filter(|j| room.peers[*j].online)
        .map(|j| RosterEntry {
            certificate: room.cert(j, Role::Viewer, epoch),
            online: true,
        })
        .collect();
    let hello = ServerMessage::Hello {
        protocol: 1,
        room: ROOM,
        you: user(0),
        epoch,
        server_key: room.server.public_key(),
        certificate: host_cert.clone(),
        members: BoundedVec::new(members).unwrap(),
        ice_servers: BoundedVec::empty(),
        offerer: OffererRule::Joiner,
    };
    room.signal(0, hello);
    for j in 1..room.peers.len() {
        room.signal(
            j,
            ServerMessage::MemberJoined {
                member: RosterEntry {
                    certificate: host_cert.clone(),
                    online: true,
                },
            },
        );
        room.signal(
            j,
            ServerMessage::HostChanged {
                certificate: host_cert.clone(),
            },
        );
    }
    for j in linked {
        room.link(0, *j);
    }
    epoch
}

fn events_since(room: &Room, i: usize, mark: usize) -> Vec<Event> {
    room.peers[i].events[mark..]
        .iter()
        .map(|(_, e)| e.clone())
        .collect()
}

/// Runs `ms` in steps of 50 ms, asserting every follower's player keeps
/// playing throughout.
fn run_followers_playing(room: &mut Room, ms: i64) {
    for _ in 0..ms / 50 {
        room.run_for_ms(50);
        for j in 1..room.peers.len() {
            assert!(
                room.playing(j),
                "follower {j} stopped at t={} ms",
                room.t / 1000
            );
        }
    }
}

#[test]
fn host_reload_resumes_the_room_where_it_was_and_followers_never_stop() {
    let mut room = playing_room(71);
    let before: PlaybackState = room.peers[0].session.playback().unwrap();
    assert!(!before.paused);
    let marks: Vec<usize> = (0..3).map(|i| room.peers[i].events.len()).collect();
    host_goes(&mut room);
    run_followers_playing(&mut room, 2_000);
    let epoch = host_comes_back(&mut room, &[1, 2]);
    run_followers_playing(&mut room, 6_000);

    let host = &room.peers[0].session;
    assert!(host.is_host());
    assert_eq!(host.epoch(), epoch);
    assert!(!host.is_resuming());
    let ev = events_since(&room, 0, 0);
    assert!(ev.contains(&Event::RoomResumed { adopted: true }), "{ev:?}");
    // The same media and the same line: the room clock went on (the host's
    // wall clock), so the timeline is the one before the reload.
    assert_eq!(host.loaded(), Some(&item(1, 3600)));
    let after = host.playback().unwrap();
    assert!(!after.paused);
    let now = room.room_time_of_host();
    let drift = (after.position_at(now) - before.position_at(now)).abs();
    assert!(drift <= TimeDelta::from_millis(2), "moved by {drift:?}");
    // Every player (the reloaded host's too) is back on it.
    for i in 0..3 {
        let err = room.error_now(i).unwrap();
        assert!(err.abs() < 30_000, "peer {i}: error {err} µs");
    }
    for (j, &mark) in marks.iter().enumerate().skip(1) {
        let ev = events_since(&room, j, mark);
        assert!(ev.contains(&Event::HostLeft(user(0))), "{ev:?}");
        assert!(
            ev.contains(&Event::HostReturned {
                host: user(0),
                epoch
            }),
            "{ev:?}"
        );
        // Not a new host, and no certificate error (the server announces
        // the new term with member_joined before host_changed).
        assert!(
            !ev.iter().any(|e| matches!(
                e,
                Event::HostChanged { .. } | Event::CertificateRefused { .. }
            )),
            "{ev:?}"
        );
        assert_eq!(room.peers[j].session.epoch(), epoch);
        assert!(!room.peers[j].session.playback().unwrap().paused);
    }
    // Commands of the new term are obeyed (fresh sequence numbers in the
    // new epoch are no replays).
    room.command(0, UserCommand::Pause).unwrap();
    room.run_for_ms(2_000);
    for j in 1..3 {
        assert!(!room.playing(j), "follower {j} did not pause");
    }
}

#[test]
fn host_away_past_the_grace_finds_the_room_paused_and_resumes_it_from_there() {
    let mut room = playing_room(72);
    host_goes(&mut room);
    // Followers play on through the grace (counted from the latest State
    // they hold, sent at most `state_interval` = 5 s before the host left)…
    let grace_ms = HOST_RETURN_GRACE.as_micros() / 1000;
    run_followers_playing(&mut room, grace_ms - 5_000 - 500);
    // …then pause, together, where the room is.
    room.run_for_ms(5_000 + 2_000);
    let paused: Vec<MediaPos> = (1..3).map(|j| room.position(j)).collect();
    for j in 1..3 {
        assert!(!room.playing(j), "follower {j} still playing");
        assert!(room.peers[j].session.playback().unwrap().paused);
    }
    let gap = (paused[0] - paused[1]).abs();
    assert!(gap < TimeDelta::from_millis(30), "{paused:?}");
    room.run_for_ms(30_000);
    // The host comes back a minute later: the room plays on from the
    // point where it paused, not from where it would be had it played on.
    host_comes_back(&mut room, &[1, 2]);
    room.run_for_ms(6_000);
    let host = &room.peers[0].session;
    let p = host.playback().unwrap();
    assert!(!p.paused, "the room plays again");
    let pos = p.position_at(room.room_time_of_host());
    let expected = paused[0] + TimeDelta::from_millis(6_000);
    assert!(
        (pos - expected).abs() < TimeDelta::from_millis(1_000),
        "room at {pos:?}, paused at {:?}",
        paused[0]
    );
    for j in 1..3 {
        assert!(room.playing(j), "follower {j} plays again");
        assert!(room.error_now(j).unwrap().abs() < 30_000);
    }
}

#[test]
fn returning_host_that_reaches_nobody_starts_afresh_after_the_wait() {
    let mut room = playing_room(73);
    host_goes(&mut room);
    room.run_for_ms(1_000);
    host_comes_back(&mut room, &[]);
    let wait_ms = HOST_RETURN_WAIT.as_micros() / 1000;
    room.run_for_ms(wait_ms - 100);
    assert!(room.peers[0].session.is_resuming());
    assert!(room.peers[0].session.playback().is_none());
    assert!(
        !events_since(&room, 0, 0)
            .iter()
            .any(|e| matches!(e, Event::RoomResumed { .. }))
    );
    room.run_for_ms(200);
    let host = &room.peers[0].session;
    assert!(!host.is_resuming());
    assert!(
        events_since(&room, 0, 0).contains(&Event::RoomResumed { adopted: false }),
        "{:?}",
        events_since(&room, 0, 0)
    );
    let p = host.playback().unwrap();
    assert!(p.paused && p.position == MediaPos::ZERO);
    assert!(host.loaded().is_none());
}

#[test]
fn returning_host_command_ends_the_wait() {
    let mut room = playing_room(74);
    host_goes(&mut room);
    room.run_for_ms(1_000);
    host_comes_back(&mut room, &[]);
    room.run_for_ms(500);
    assert!(room.peers[0].session.is_resuming());
    room.command(0, UserCommand::Load(item(2, 600))).unwrap();
    assert!(!room.peers[0].session.is_resuming());
    assert_eq!(room.peers[0].session.loaded(), Some(&item(2, 600)));
}
