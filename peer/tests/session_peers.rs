//! Per-peer observability (`Session::peers`): what each neighbour sent
//! (accepted, duplicates, drops by reason), the follower's clock estimate of
//! the host with its error bound and round trip, and the host's view of each
//! member's reported position error. Real sessions, virtual time.

mod support;

use support::room::*;
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::ids::{PositionMs, Role, RoomMs};
use watchparty_peer::message::{Message, Readiness};
use watchparty_peer::session::{PeerInfo, UserCommand};

fn row(room: &Room, i: usize, of: usize) -> PeerInfo {
    let now = room.local(i);
    room.peers[i]
        .session
        .peers(now)
        .into_iter()
        .find(|p| p.user == user(of))
        .unwrap_or_else(|| panic!("peer {i} has no row for {of}"))
}

#[test]
fn follower_sees_host_clock_with_a_bound_that_holds() {
    let mut room = ready_room(31, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(12_000);
    for i in 1..3 {
        let h = row(&room, i, 0);
        assert!(h.is_host && h.linked, "{h:?}");
        assert!(h.report.is_none(), "followers get no reports: {h:?}");
        let est = h.clock.expect("clock estimate of the host");
        // The true offset room clock (the host's) − follower at this instant.
        let truth = room.room_time_of_host().as_micros() - room.local(i).as_micros();
        let err = (est.offset.as_micros() - truth).abs();
        assert!(
            err <= est.uncertainty.as_micros() + 1_000,
            "peer {i}: offset error {err} µs beyond bound {:?}",
            est.uncertainty
        );
        assert!(est.uncertainty.as_micros() > 0);
        // Round trip: two one-way delays of 40 ± 15 ms (+ retransmits on
        // loss never apply to the unreliable clock channel).
        let rtt = h.clock_round_trip.expect("clock round trip").as_micros();
        assert!((50_000..=110_000).contains(&rtt), "peer {i}: rtt {rtt} µs");
        assert!(h.counters.accepted > 0);
        assert!(h.counters.drops.total() == 0, "{:?}", h.counters.drops);
        // Peer rows for the other follower carry no clock.
        let other = row(&room, i, 3 - i);
        assert!(!other.is_host && other.clock.is_none() && other.clock_round_trip.is_none());
    }
}

#[test]
fn host_sees_each_members_reported_position_error() {
    let mut room = ready_room(32, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    // Status reports every 5 s; give the followers time to settle first.
    room.run_for_ms(16_000);
    for i in 1..3 {
        let m = row(&room, 0, i);
        assert!(!m.is_host && m.linked);
        assert!(
            m.clock.is_none(),
            "the host has no clock estimate of members"
        );
        let r = m.report.expect("a status report");
        assert_eq!(r.readiness, Readiness::Ready);
        assert!(!r.detached);
        let e = r.position_error.expect("position error").as_micros().abs();
        // Settled followers are within a few ms: the report pairs the
        // player's last reading with the room time of that reading (not of
        // the send, which would show a playing member up to one sampling
        // interval behind).
        assert!(e <= 10_000, "member {i}: reported error {e} µs");
    }
    // A seek makes older reports refer to an older state: no error shown
    // until the next report about the new one.
    room.command(
        0,
        UserCommand::Seek(watchparty_peer::time::MediaPos::from_millis(90_000)),
    )
    .unwrap();
    room.run_for_ms(1);
    for i in 1..3 {
        let r = row(&room, 0, i).report.unwrap();
        assert_eq!(r.position_error, None, "member {i}: {r:?}");
    }
    room.run_for_ms(12_000);
    for i in 1..3 {
        let r = row(&room, 0, i).report.unwrap();
        let e = r.position_error.expect("fresh report").as_micros().abs();
        assert!(e <= 10_000, "member {i}: {e} µs after seek");
    }
}

#[test]
fn drops_are_counted_per_sending_neighbour_and_reason() {
    let mut room = ready_room(33, 3, |_| Role::Viewer);
    room.run_for_ms(2_000);
    let before_host = row(&room, 1, 0).counters;
    // Member 2 (a viewer with a valid certificate) plays host to peer 1.
    let forged = support::session::sign_at(
        &key(2),
        ROOM,
        1,
        1_000,
        0,
        &Message::Pause {
            position: PositionMs::new(0).unwrap(),
            at: RoomMs(0),
        },
    );
    room.inject(2, 1, forged.clone());
    room.inject(2, 1, b"junk junk junk".to_vec());
    room.inject(2, 1, vec![0xff; 40]);
    let m = row(&room, 1, 2);
    assert_eq!(m.counters.drops.get(DropReason::NotHost), 1, "{m:?}");
    assert_eq!(m.counters.drops.get(DropReason::NotAFrame), 2, "{m:?}");
    assert_eq!(m.counters.drops.total(), 3);
    assert_eq!(m.counters.accepted, 0);
    // Nothing was attributed to the host.
    let h = row(&room, 1, 0).counters;
    assert_eq!(h.drops.total(), before_host.drops.total());
    // A copy of a host frame peer 1 already accepted, sent again by member
    // 2, is a silent duplicate attributed to member 2.
    let dup_before = row(&room, 1, 2).counters.duplicates;
    let state = room.peers[1]
        .session
        .last_state_frame()
        .expect("a signed state")
        .to_vec();
    room.inject(2, 1, state);
    assert_eq!(row(&room, 1, 2).counters.duplicates, dup_before + 1);
    // The session-wide counters agree.
    assert_eq!(room.peers[1].session.drops().get(DropReason::NotHost), 1);
}
