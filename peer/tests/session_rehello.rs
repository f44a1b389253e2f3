//! A repeated `hello` (re-registration after a signaling reconnect or a
//! server restart): the session refreshes certificates and roster without
//! disturbing playback or the mesh; a new epoch is accepted only through a
//! valid host certificate; an older epoch or another user id is refused.
//! Real sessions, virtual time.

mod support;

use support::room::{Room, ready_room, user};
use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::ids::{DisplayName, Epoch, Role, UnixSeconds};
use watchparty_peer::session::{Event, RejoinError, UserCommand};
use watchparty_peer::signaling::{BoundedVec, OffererRule, RosterEntry, ServerMessage};
use watchparty_peer::time::MediaPos;

/// The `hello` the server sends peer `i` when it re-registers at `epoch`:
/// every member except those in `omit` (and `i` itself), each with the role
/// the room currently gives them.
fn hello(room: &Room, i: usize, epoch: Epoch, omit: &[usize]) -> ServerMessage {
    let role = |j: usize| {
        let s = &room.peers[j].session;
        if s.is_host() {
            Role::Host
        } else {
            s.role().unwrap_or(Role::Viewer)
        }
    };
    let members = (0..room.peers.len())
        .filter(|j| *j != i && !omit.contains(j))
        .map(|j| RosterEntry {
            certificate: room.cert(j, role(j), epoch),
            online: true,
        })
        .collect();
    ServerMessage::Hello {
        protocol: 1,
        room: support::room::ROOM,
        you: user(i),
        epoch,
        server_key: room.server.public_key(),
        certificate: room.cert(i, role(i), epoch),
        members: BoundedVec::new(members).unwrap(),
        ice_servers: BoundedVec::empty(),
        offerer: OffererRule::Joiner,
    }
}

fn events_since(room: &Room, i: usize, n: usize) -> Vec<Event> {
    room.peers[i].events[n..]
        .iter()
        .map(|(_, e)| e.clone())
        .collect()
}

fn playing_room(seed: u64) -> Room {
    let mut room = ready_room(seed, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Seek(MediaPos::from_millis(20_000)))
        .unwrap();
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(8_000);
    room
}

#[test]
fn every_peer_rehello_same_epoch_keeps_playback_mesh_and_sync() {
    let mut room = playing_room(41);
    let before: Vec<_> = (0..3).map(|i| room.peers[i].session.playback()).collect();
    let links = room.links.clone();
    let marks: Vec<usize> = (0..3).map(|i| room.peers[i].events.len()).collect();
    let applied: Vec<u64> = (0..3)
        .map(|i| room.peers[i].session.stats().commands_applied)
        .collect();
    // The server restarted: everyone re-registers, host included.
    for i in 0..3 {
        let h = hello(&room, i, room.epoch, &[]);
        room.signal(i, h);
    }
    for i in 0..3 {
        assert_eq!(room.peers[i].session.playback(), before[i], "peer {i}");
        assert_eq!(room.peers[i].session.epoch(), Epoch(1));
        assert_eq!(room.peers[i].session.is_host(), i == 0);
        let ev = events_since(&room, i, marks[i]);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Rejoined { epoch: Epoch(1), host: Some(h), .. } if *h == user(0)
            )),
            "peer {i}: {ev:?}"
        );
        assert!(
            !ev.iter().any(|e| matches!(
                e,
                Event::Joined { .. } | Event::MemberLeft(_) | Event::HostLeft(_)
            )),
            "peer {i}: {ev:?}"
        );
    }
    // No connection was closed.
    assert_eq!(room.links, links);
    // The host's timeline (and so its room clock) was not reset: playing
    // on from 20 s, not paused at 0.
    let h = room.peers[0].session.playback().unwrap();
    assert!(
        !h.paused && h.position >= MediaPos::from_millis(20_000),
        "{h:?}"
    );
    // The host keeps commanding; its sequence numbers continue, so
    // followers apply the next commands.
    room.command(0, UserCommand::Seek(MediaPos::from_millis(90_000)))
        .unwrap();
    room.run_for_ms(6_000);
    for (i, before) in applied.iter().enumerate().skip(1) {
        // The seek, plus any periodic State.
        assert!(
            room.peers[i].session.stats().commands_applied > *before,
            "peer {i}"
        );
        assert_eq!(
            room.peers[i].session.playback(),
            room.peers[0].session.playback()
        );
        let e = room.error_now(i).unwrap().abs();
        assert!(e <= 15_000, "peer {i}: error {e} µs after rejoin + seek");
        let d = room.peers[i].session.drops();
        assert_eq!(
            d.total(),
            d.get(watchparty_peer::acceptance::DropReason::OldSequence),
            "{d:?}"
        );
    }
}

#[test]
fn rehello_with_a_new_epoch_is_judged_like_host_changed() {
    let mut room = playing_room(42);
    // While peer 1 was away the server opened epoch 2 for peer 2 (the host
    // left); peer 1's session learns it from the hello. Peer 1 follows a
    // pinned host key, so the un-pinned new host is refused, as
    // host_changed would be…
    room.epoch = Epoch(2);
    let mut h = hello(&room, 1, Epoch(2), &[0]);
    if let ServerMessage::Hello { members, .. } = &mut h {
        let entries: Vec<RosterEntry> = members
            .as_slice()
            .iter()
            .map(|m| RosterEntry {
                certificate: room.cert(2, Role::Host, Epoch(2)),
                online: m.online,
            })
            .collect();
        *members = BoundedVec::new(entries).unwrap();
    }
    let mark = room.peers[1].events.len();
    let before = room.peers[1].session.playback();
    room.signal(1, h.clone());
    let ev = events_since(&room, 1, mark);
    assert_eq!(room.peers[1].session.epoch(), Epoch(1), "{ev:?}");
    assert_eq!(room.peers[1].session.host(), Some(user(0)));
    assert_eq!(room.peers[1].session.playback(), before);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::CertificateRefused { .. })),
        "{ev:?}"
    );
    // …and the host (peer 0 itself, which pins nothing) refuses a new epoch
    // for peer 2 too: it never signed a handoff (docs/protocol.md §6), so it
    // stays host in its epoch, with its playback, and says so.
    let mark = room.peers[0].events.len();
    let h0 = hello(&room, 0, Epoch(2), &[]);
    let h0 = match h0 {
        ServerMessage::Hello {
            protocol,
            room: r,
            you,
            epoch,
            server_key,
            ice_servers,
            offerer,
            ..
        } => ServerMessage::Hello {
            protocol,
            room: r,
            you,
            epoch,
            server_key,
            certificate: room.cert(0, Role::Controller, Epoch(2)),
            members: BoundedVec::new(vec![
                RosterEntry {
                    certificate: room.cert(1, Role::Viewer, Epoch(2)),
                    online: true,
                },
                RosterEntry {
                    certificate: room.cert(2, Role::Host, Epoch(2)),
                    online: true,
                },
            ])
            .unwrap(),
            ice_servers,
            offerer,
        },
        other => other,
    };
    let pos_before = room.peers[0].session.playback().unwrap();
    room.signal(0, h0);
    let ev = events_since(&room, 0, mark);
    let s = &room.peers[0].session;
    assert_eq!(s.epoch(), Epoch(1), "{ev:?}");
    assert_eq!(s.host(), Some(user(0)));
    assert!(s.is_host());
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::HostChangeRefused(r) if r.we_are_host && r.claimed_host == user(2)
        )),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::HostChanged { .. } | Event::Rejoined { .. })),
        "{ev:?}"
    );
    assert_eq!(s.playback().unwrap(), pos_before);
}

#[test]
fn rehello_refreshes_roster_and_refuses_stale_epoch_or_other_user() {
    let mut room = playing_room(43);
    // Member 2 left while peer 1 was disconnected: missing from the roster.
    let mark = room.peers[1].events.len();
    let h = hello(&room, 1, Epoch(1), &[2]);
    room.signal(1, h);
    let ev = events_since(&room, 1, mark);
    assert!(ev.contains(&Event::MemberLeft(user(2))), "{ev:?}");
    assert!(!room.peers[1].session.members().any(|u| u == user(2)));
    assert!(!room.peers[1].session.playback().unwrap().paused);
    // The host missing from the roster: it left; the room pauses where it
    // is, as with member_left.
    let mark = room.peers[1].events.len();
    let h = hello(&room, 1, Epoch(1), &[0]);
    room.signal(1, h);
    let ev = events_since(&room, 1, mark);
    assert!(ev.contains(&Event::HostLeft(user(0))), "{ev:?}");
    assert!(room.peers[1].session.playback().unwrap().paused);

    // Stale epoch (a server restored from an older state): refused.
    let mut room = playing_room(44);
    room.server_promote(0); // epoch 2, same host
    room.run_for_ms(2_000);
    let before = room.peers[1].session.playback();
    let mark = room.peers[1].events.len();
    let h = hello(&room, 1, Epoch(1), &[]);
    room.signal(1, h);
    let ev = events_since(&room, 1, mark);
    assert!(
        ev.contains(&Event::RejoinRefused(RejoinError::StaleEpoch)),
        "{ev:?}"
    );
    assert_eq!(room.peers[1].session.epoch(), Epoch(2));
    assert_eq!(room.peers[1].session.playback(), before);

    // The server calls us by another user id (with our key): refused.
    let other = SignedCertificate::issue(
        &room.server,
        CertificateBody {
            room: support::room::ROOM,
            epoch: Epoch(2),
            user: user(9),
            name: DisplayName::new("x").unwrap(),
            role: Role::Viewer,
            key: room.peers[1].key.public_key(),
            not_after: UnixSeconds(support::room::WALL.0 + 86_400),
        },
    )
    .unwrap();
    let mut h = hello(&room, 1, Epoch(2), &[]);
    if let ServerMessage::Hello {
        you, certificate, ..
    } = &mut h
    {
        *you = user(9);
        *certificate = other;
    }
    let mark = room.peers[1].events.len();
    room.signal(1, h);
    let ev = events_since(&room, 1, mark);
    assert!(
        ev.contains(&Event::RejoinRefused(RejoinError::OtherUser)),
        "{ev:?}"
    );
    assert_eq!(room.peers[1].session.user(), Some(user(1)));
}

#[test]
fn rehello_refreshes_our_certificate_expiry() {
    use support::session::{Entry, WALL, join, ms, u};
    use watchparty_peer::time::LocalTime;
    // Our certificate expires after 10 s; the repeated hello carries one
    // valid for an hour.
    let short = UnixSeconds(WALL.0 + 10);
    let roster = [
        Entry::new(1, Role::Host),
        Entry::new(2, Role::Viewer).until(short),
    ];
    let mut s = join(2, &roster, &[1]);
    let fresh = support::session::cert(2, Role::Viewer);
    s.handle_signal(
        ServerMessage::Hello {
            protocol: 1,
            room: support::session::ROOM,
            you: u(2),
            epoch: Epoch(1),
            server_key: support::session::server().public_key(),
            certificate: fresh,
            members: BoundedVec::new(vec![RosterEntry {
                certificate: support::session::cert(1, Role::Host),
                online: true,
            }])
            .unwrap(),
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        },
        ms(2_000),
    );
    let ev = support::session::events(&support::session::drain(&mut s));
    assert!(
        ev.iter().any(|e| matches!(e, Event::Rejoined { .. })),
        "{ev:?}"
    );
    // Past the old expiry: no CertificateExpired for us.
    let later: LocalTime = ms(1_000 + 30_000);
    s.handle_timeout(later);
    let ev = support::session::events(&support::session::drain(&mut s));
    assert!(!ev.contains(&Event::CertificateExpired(u(2))), "{ev:?}");
}

#[test]
fn host_reregistering_in_a_new_epoch_keeps_hosting_without_a_reset() {
    // The server opens a new epoch whenever the host registers its key
    // again (reconnect): the host's own hello carries its host certificate
    // of that epoch, the followers get `host_changed`.
    let mut room = playing_room(45);
    let before = room.peers[0].session.playback().unwrap();
    room.epoch = Epoch(2);
    let mark = room.peers[0].events.len();
    let h = hello(&room, 0, Epoch(2), &[]);
    room.signal(0, h);
    let ev = events_since(&room, 0, mark);
    let s = &room.peers[0].session;
    assert!(s.is_host() && s.epoch() == Epoch(2), "{ev:?}");
    // The same host with the same key: it returned, it is no new host.
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::HostReturned {
                epoch: Epoch(2),
                ..
            }
        )),
        "{ev:?}"
    );
    let after = s.playback().unwrap();
    assert_eq!((after.paused, after.rate), (before.paused, before.rate));
    assert_eq!(after.position_at(after.at), before.position_at(after.at));
    let cert = room.cert(0, Role::Host, Epoch(2));
    for i in 1..3 {
        room.signal(
            i,
            ServerMessage::HostChanged {
                certificate: cert.clone(),
            },
        );
        assert_eq!(room.peers[i].session.epoch(), Epoch(2));
        let ev = events_since(&room, i, room.peers[i].events.len() - 1);
        assert!(
            matches!(
                ev.as_slice(),
                [Event::HostReturned {
                    epoch: Epoch(2),
                    ..
                }]
            ),
            "{ev:?}"
        );
    }
    room.command(0, UserCommand::Seek(MediaPos::from_millis(200_000)))
        .unwrap();
    room.run_for_ms(6_000);
    for i in 1..3 {
        assert_eq!(
            room.peers[i].session.playback(),
            room.peers[0].session.playback(),
            "peer {i}"
        );
        let e = room.error_now(i).unwrap().abs();
        assert!(e <= 15_000, "peer {i}: {e} µs");
    }
}
