//! Room simulation: real `Session`s exchanging real signed frames over a
//! virtual network (40 ± 15 ms, 2 % loss, reordering), per-peer clock
//! offsets ±5 s and drift ±200 ppm, virtual players. Virtual time only.

mod support;

use support::room::*;
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::ids::Role;
use watchparty_peer::message::{Buffering, Permissions, Policy, RefuseReason};
use watchparty_peer::session::{CommandError, Event, UserCommand};
use watchparty_peer::time::{MediaPos, Rate};

fn has_event(room: &Room, i: usize, f: impl Fn(&Event) -> bool) -> bool {
    room.peers[i].events.iter().any(|(_, e)| f(e))
}

/// In an honest room the only drops are authentic host frames that a
/// forwarded path delivered after a newer command (superseded).
fn assert_honest_drops_only(i: usize, peer: &Peer) {
    let d = peer.session.drops();
    let old = d.get(DropReason::OldSequence);
    assert_eq!(d.total(), old, "peer {i} dropped frames: {d:?}");
    assert!(old <= 5, "peer {i}: {old} superseded frames");
}

#[test]
fn sixteen_peers_converge_within_10ms() {
    let mut room = ready_room(11, 16, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(60_000);
    let errs = room.errors(25_000, 65_000);
    assert!(errs.len() > 16 * 700, "samples: {}", errs.len());
    let p = p99(&errs);
    println!(
        "16 peers: p99 {} µs, max {} µs, n {}",
        p,
        errs.last().unwrap(),
        errs.len()
    );
    assert!(p <= 10_000, "p99 {p} µs");
    for (i, peer) in room.peers.iter().enumerate() {
        assert_honest_drops_only(i, peer);
        assert!(peer.session.sync().is_attached());
    }
    // Mesh duplicates were recognised without counting them as attacks.
    assert!(room.peers[5].session.stats().duplicates > 0);
}

#[test]
fn command_storm_applies_within_rtt_plus_lead() {
    let mut room = ready_room(12, 8, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(8_000);
    let cmds = [
        UserCommand::Pause,
        UserCommand::Seek(MediaPos::from_millis(60_000)),
        UserCommand::Play,
        UserCommand::Rate(Rate::from_milli(1250).unwrap()),
        UserCommand::Seek(MediaPos::from_millis(10_000)),
        UserCommand::Pause,
        UserCommand::Play,
        UserCommand::Rate(Rate::NORMAL),
        UserCommand::Seek(MediaPos::from_millis(120_000)),
        UserCommand::Pause,
        UserCommand::Play,
    ];
    let bound_us = 2 * 55_000 + 150_000; // one RTT (max one-way 55 ms) + lead
    let mut worst = 0;
    let mut checked = 0;
    for cmd in cmds {
        room.command(0, cmd).unwrap();
        let target = room.peers[0].session.playback().unwrap();
        let issued = room.t;
        let mut applied = vec![None; room.peers.len()];
        while room.t < issued + 900_000 {
            room.run_for_ms(1);
            for (i, a) in applied.iter_mut().enumerate().skip(1) {
                if a.is_none() && room.peers[i].session.playback() == Some(target) {
                    *a = Some(room.t - issued);
                }
            }
        }
        for a in applied.iter().skip(1) {
            let a = a.expect("command never applied");
            worst = worst.max(a);
            checked += 1;
        }
    }
    println!("storm: {checked} applications, slowest {worst} µs (bound {bound_us})");
    assert!(worst <= bound_us, "slowest {worst} µs");
    room.run_for_ms(30_000);
    let errs = room.errors(room.t / 1000 - 10_000, room.t / 1000);
    println!("storm: p99 {} µs 20 s later", p99(&errs));
    assert!(p99(&errs) <= 10_000);
    for (i, p) in room.peers.iter().enumerate() {
        assert_honest_drops_only(i, p);
    }
}

#[test]
fn late_joiner_lands_in_sync() {
    let mut room = ready_room(13, 6, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(20_000);
    let j = room.add(Role::Viewer, None);
    room.run_for_ms(40_000);
    let errs: Vec<i64> = {
        let mut v: Vec<i64> = room.peers[j]
            .errors
            .iter()
            .filter(|(t, _)| *t > room.t - 20_000_000)
            .map(|(_, e)| e.abs())
            .collect();
        v.sort_unstable();
        v
    };
    assert!(errs.len() > 300);
    println!("late joiner: p99 {} µs", p99(&errs));
    assert!(p99(&errs) <= 10_000);
}

#[test]
fn wait_for_everyone_holds_the_room_then_watchdog_releases_it() {
    let mut room = Room::new(14, Net::default());
    for i in 0..5 {
        room.add(Role::Viewer, None);
        room.peers[i].load_delay = Some(300_000 + 400_000 * i as i64);
    }
    room.peers[4].load_delay = None; // never finishes loading
    room.run_for_ms(1000);
    room.command(0, UserCommand::Load(item(2, 3600))).unwrap();
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(1000);
    // peer 3 loads at ~1.5 s: nobody may play before that
    assert!(
        (0..5).all(|i| !room.playing(i)),
        "room started before everyone was ready"
    );
    assert!(has_event(&room, 0, |e| matches!(e, Event::Waiting(_))));
    room.run_for_ms(8_000);
    assert!(
        (0..5).all(|i| !room.playing(i)),
        "stuck member still waited for"
    );
    room.run_for_ms(3_000); // watchdog (10 s) expired
    assert!(has_event(
        &room,
        0,
        |e| matches!(e, Event::WatchdogExpired(v) if v.contains(&user(4)))
    ));
    assert!(
        (0..4).all(|i| room.playing(i)),
        "room deadlocked on a stuck member"
    );
    // buffering pauses the room and releases it when done
    room.run_for_ms(5_000);
    let l = room.local(2);
    room.peers[2]
        .player
        .stall(l, watchparty_peer::time::TimeDelta::from_millis(2000));
    room.run_for_ms(700);
    assert!(!room.playing(1), "room did not wait for a buffering member");
    room.run_for_ms(4_000);
    assert!((0..4).all(|i| room.playing(i)), "room did not resume");
}

#[test]
fn laggards_catch_up_policy_does_not_wait() {
    let mut room = Room::new(15, Net::default());
    for _ in 0..4 {
        room.add(Role::Viewer, None);
    }
    room.peers[3].load_delay = None;
    room.run_for_ms(1000);
    room.command(
        0,
        UserCommand::SetPolicy(Policy {
            buffering: Buffering::LaggardsCatchUp,
            wait_timeout_ms: 10_000,
            controllers: Permissions::ALL,
        }),
    )
    .unwrap();
    room.command(0, UserCommand::Load(item(3, 3600))).unwrap();
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(2000);
    assert!((0..3).all(|i| room.playing(i)));
}

#[test]
fn viewer_refused_controller_honoured() {
    let mut room = ready_room(16, 3, |i| {
        if i == 1 {
            Role::Controller
        } else {
            Role::Viewer
        }
    });
    assert_eq!(
        room.command(2, UserCommand::Play),
        Err(CommandError::Refused(RefuseReason::ViewerRole))
    );
    room.run_for_ms(1000);
    assert!(!room.playing(0));
    room.command(1, UserCommand::Play).unwrap();
    room.run_for_ms(2000);
    assert!(
        (0..3).all(|i| room.playing(i)),
        "controller's request not honoured"
    );
    // policy forbids seeking for controllers: refused locally
    room.command(
        0,
        UserCommand::SetPolicy(Policy {
            buffering: Buffering::WaitForEveryone,
            wait_timeout_ms: 10_000,
            controllers: Permissions::PLAY_PAUSE,
        }),
    )
    .unwrap();
    room.run_for_ms(500);
    assert_eq!(
        room.command(1, UserCommand::Seek(MediaPos::from_millis(5000))),
        Err(CommandError::Refused(RefuseReason::PolicyDenied))
    );
    // a viewer's user action on its own player is not obeyed by the room
    let l = room.local(2);
    room.peers[2]
        .player
        .apply(watchparty_peer::player::PlayerAction::Pause, l);
    room.run_for_ms(4000);
    assert!(room.playing(0) && room.playing(2), "viewer paused the room");
}

#[test]
fn host_handoff_moves_authority() {
    let mut room = ready_room(17, 4, |_| Role::Controller);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(5000);
    room.command(0, UserCommand::Handoff(user(2))).unwrap();
    room.run_for_ms(500);
    assert!(room.peers[2].session.is_host());
    assert!(!room.peers[0].session.is_host());
    for i in 0..4 {
        assert_eq!(room.peers[i].session.host(), Some(user(2)), "peer {i}");
    }
    room.command(2, UserCommand::Seek(MediaPos::from_millis(300_000)))
        .unwrap();
    room.run_for_ms(15_000);
    for i in 0..4 {
        let pos = room.position(i).as_millis();
        assert!((310_000..330_000).contains(&pos), "peer {i} at {pos}");
    }
    let errs = room.errors(room.t / 1000 - 5000, room.t / 1000);
    assert!(p99(&errs) <= 10_000, "p99 {}", p99(&errs));
    // The pinned followers' links to the new host were bound by its `Bind`
    // (15 s > BIND_DEADLINE: none was closed for want of one).
    for i in [0, 1, 3] {
        let s = &room.peers[i].session;
        assert_eq!(s.stats().bindings_missing, 0, "peer {i}");
        let now = room.local(i);
        assert!(
            s.peers(now).iter().any(|p| p.user == user(2) && p.bound),
            "peer {i}: link to the new host bound"
        );
    }
    // the old host's key no longer commands anyone (its frames are refused)
    assert!(
        room.peers
            .iter()
            .all(|p| p.session.drops().get(DropReason::NotHost) == 0)
    );
}

#[test]
fn host_leaves_room_pauses_and_server_cannot_promote_without_handoff() {
    let mut room = ready_room(18, 4, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(5000);
    room.leave(0);
    // The room plays on for a host that reloads (HOST_RETURN_GRACE after
    // the latest State), then pauses.
    let grace_ms = watchparty_peer::session::HOST_RETURN_GRACE.as_micros() / 1000;
    room.run_for_ms(grace_ms + 2000);
    for i in 1..4 {
        assert!(!room.playing(i), "peer {i} still playing without a host");
        assert!(has_event(&room, i, |e| matches!(e, Event::HostLeft(_))));
    }
    // Every peer pinned the host key from the invite link: the server alone
    // cannot install another host (no signed handoff).
    room.server_promote(1);
    room.run_for_ms(500);
    for i in 1..4 {
        assert!(!room.peers[i].session.is_host());
        assert_eq!(room.peers[i].session.host(), Some(user(0)));
        assert!(has_event(&room, i, |e| matches!(
            e,
            Event::CertificateRefused {
                error: watchparty_peer::cert::CertError::HostKeyMismatch,
                ..
            }
        )));
        assert!(!room.playing(i));
    }
}

#[test]
fn peer_reachable_only_through_another_peer_follows() {
    let mut room = Room::new(19, Net::default());
    room.add(Role::Viewer, None);
    room.add(Role::Viewer, None);
    room.add(Role::Viewer, Some(vec![1])); // no path to the host but via 1
    room.add(Role::Viewer, Some(vec![2])); // two hops
    room.run_for_ms(1000);
    room.command(0, UserCommand::Load(item(1, 3600))).unwrap();
    room.run_for_ms(4000);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(40_000);
    for i in [2, 3] {
        let mut v: Vec<i64> = room.peers[i]
            .errors
            .iter()
            .filter(|(t, _)| *t > 25_000_000)
            .map(|(_, e)| e.abs())
            .collect();
        v.sort_unstable();
        println!("mesh peer {i}: p99 {} µs, n {}", p99(&v), v.len());
        assert!(v.len() > 200);
        // The room target (10 ms) per clock path: peer 2's pings are
        // relayed once (twice a direct round trip), peer 3's twice.
        let bound = if i == 2 { 20_000 } else { 30_000 };
        assert!(p99(&v) <= bound, "peer {i} p99 {}", p99(&v));
        assert!(
            room.peers[i]
                .session
                .sync()
                .status(room.local(i))
                .clock_ready
        );
    }
    assert!(room.peers[1].session.stats().forwarded > 0);
}

#[test]
fn swapped_fingerprint_is_detected_and_aborted() {
    let mut room = Room::new(20, Net::default());
    room.add(Role::Viewer, None);
    room.swapped.insert((1, 0)); // peer 1 sees a forged host fingerprint
    room.add(Role::Viewer, None);
    room.add(Role::Viewer, None);
    room.run_for_ms(1000);
    assert!(has_event(&room, 1, |e| matches!(
        e,
        Event::BindingMismatch { pinned: true, .. }
    )));
    assert!(!room.links.contains(&(0, 1)), "connection not aborted");
    assert!(has_event(&room, 2, |e| matches!(
        e,
        Event::BindingVerified(_)
    )));
}

#[test]
fn queue_auto_advances_at_end_of_item() {
    let mut room = Room::new(21, Net::default());
    for _ in 0..3 {
        room.add(Role::Viewer, None);
    }
    room.run_for_ms(1000);
    room.command(0, UserCommand::Queue(vec![item(5, 20), item(6, 600)]))
        .unwrap();
    room.command(0, UserCommand::Jump(0)).unwrap();
    room.run_for_ms(3000);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(30_000);
    for i in 0..3 {
        assert_eq!(
            room.peers[i].session.loaded().map(|m| m.hash.0[0]),
            Some(6),
            "peer {i}"
        );
        assert_eq!(room.peers[i].session.queue().current(), Some(1));
    }
    assert!(
        (0..3).all(|i| room.playing(i)),
        "not playing after auto-advance"
    );
}

#[test]
fn periodic_state_refresh_counts_apart_from_commands() {
    let mut room = ready_room(31, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(2_000);
    let before: Vec<_> = room.peers.iter().map(|p| p.session.stats()).collect();
    // No command for three refresh intervals (5 s each): only `State`
    // frames arrive, and they are not counted as commands.
    room.run_for_ms(16_000);
    for (i, (p, b)) in room.peers.iter().zip(&before).enumerate().skip(1) {
        let s = p.session.stats();
        assert_eq!(s.commands_applied, b.commands_applied, "peer {i}: {s:?}");
        assert!(s.states_applied >= b.states_applied + 3, "peer {i}: {s:?}");
        assert_eq!(s.applied_total(), s.commands_applied + s.states_applied);
    }
    // A command counts as one.
    room.command(0, UserCommand::Pause).unwrap();
    room.run_for_ms(1_000);
    for (i, (p, b)) in room.peers.iter().zip(&before).enumerate().skip(1) {
        let s = p.session.stats();
        assert_eq!(
            s.commands_applied,
            b.commands_applied + 1,
            "peer {i}: {s:?}"
        );
    }
}

/// A member that stalls again each time the room resumes (as a browser
/// whose every correction seek buffers) must not stop the room forever:
/// its short holds count as one, the watchdog excuses it, and it stays
/// excused until it has been steady for `EXCUSE_STEADY`.
#[test]
fn member_stalling_again_and_again_is_excused_not_waited_for_forever() {
    let mut room = ready_room(15, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(3_000);
    assert!((0..3).all(|i| room.playing(i)));
    let mut stalls = 0;
    let mut host_playing_late = 0;
    let steps = 400; // 40 s in 100 ms steps
    for step in 0..steps {
        if room.playing(2) && step % 10 == 0 {
            let l = room.local(2);
            room.peers[2]
                .player
                .stall(l, watchparty_peer::time::TimeDelta::from_millis(800));
            stalls += 1;
        }
        room.run_for_ms(100);
        if step >= steps - 150 && room.playing(0) {
            host_playing_late += 1;
        }
    }
    println!("flapping: {stalls} stalls, host playing {host_playing_late}/150 of the last 15 s");
    assert!(stalls >= 10, "the member kept stalling: {stalls}");
    assert!(has_event(
        &room,
        0,
        |e| matches!(e, Event::WatchdogExpired(v) if v.contains(&user(2)))
    ));
    // Once excused, its stalls no longer stop the room.
    assert!(host_playing_late >= 145, "{host_playing_late}/150");
    // Steady again: after EXCUSE_STEADY it is waited for again.
    room.run_for_ms(15_000);
    let l = room.local(2);
    room.peers[2]
        .player
        .stall(l, watchparty_peer::time::TimeDelta::from_millis(2_000));
    room.run_for_ms(700);
    assert!(!room.playing(1), "the steady member is waited for again");
    room.run_for_ms(4_000);
    assert!((0..3).all(|i| room.playing(i)), "room resumed");
}

/// Runs a room of host, an honest member (peer 1) and a griefer (peer 2)
/// for five minutes of playback. The griefer's player reports buffering
/// for 12 s (longer than the policy's 10 s wait) each time it has been
/// steady for `gap_ms`; the honest member buffers once, for 3 s, at about
/// 200 s.
/// Returns the share of the five minutes the host's player was paused (the
/// room held) and whether the room waited for the honest member.
fn griefed_room(seed: u64, gap_ms: i64) -> (f64, bool, Room) {
    let mut room = ready_room(seed, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(3_000);
    assert!((0..3).all(|i| room.playing(i)));
    let steps = 3_000; // 5 min in 100 ms steps
    let mut stalled_until = room.t;
    let mut held = 0;
    let mut honest_waited = false;
    let mut honest_stall_at = None;
    for step in 0..steps {
        if room.t >= stalled_until + gap_ms * 1000 && room.playing(2) {
            let l = room.local(2);
            room.peers[2]
                .player
                .stall(l, watchparty_peer::time::TimeDelta::from_millis(12_000));
            stalled_until = room.t + 12_000_000;
        }
        if step >= 2_000 && honest_stall_at.is_none() && room.playing(1) {
            let l = room.local(1);
            room.peers[1]
                .player
                .stall(l, watchparty_peer::time::TimeDelta::from_millis(3_000));
            honest_stall_at = Some(room.t);
        }
        room.run_for_ms(100);
        if !room.playing(0) {
            held += 1;
            // The room holds (host paused) while the honest member buffers.
            if honest_stall_at.is_some_and(|t| room.t - t <= 2_500_000)
                && has_event(
                    &room,
                    0,
                    |e| matches!(e, Event::Waiting(v) if v.contains(&user(1))),
                )
            {
                honest_waited = true;
            }
        }
    }
    (f64::from(held) / f64::from(steps), honest_waited, room)
}

/// A griefer faking "buffering" again and again cannot hold the room more
/// than a small share of the time, while an honest member that buffers
/// once is still waited for. Before the hold allowance the worst of these
/// rhythms held the room 35 % of the five minutes; the allowance bounds
/// one member to 2 waits + 1 s per minute (25 s in 5 min: 8.3 %).
#[test]
fn griefer_faking_buffering_cannot_hold_the_room() {
    let mut worst: f64 = 0.0;
    for (seed, gap_ms) in [
        (16, 500),
        (17, 5_000),
        (18, 11_000),
        (19, 16_000),
        (20, 21_000),
    ] {
        let (share, honest_waited, room) = griefed_room(seed, gap_ms);
        for (t, e) in &room.peers[0].events {
            if matches!(
                e,
                Event::Waiting(_) | Event::WatchdogExpired(_) | Event::NoLongerWaitedFor(_)
            ) {
                println!("  host at {:.1} s: {e:?}", *t as f64 / 1e6);
            }
        }
        println!(
            "griefer steady {gap_ms} ms between 12 s stalls: room held {:.1} % of 5 min; honest member waited for: {honest_waited}",
            share * 100.0
        );
        assert!(honest_waited, "the room did not wait for the honest member");
        worst = worst.max(share);
    }
    assert!(
        worst <= 0.10,
        "a griefer held the room {:.1} % of the time",
        worst * 100.0
    );
}

/// Issue #20 item 2: a member that joins (or reloads its page) while the
/// room plays loads, seeks and buffers again after each of its first seeks
/// (as a browser page aligning itself). It catches up on its own: the room
/// never pauses for it meanwhile (no stutter), it ends in sync, and once
/// it has been steady for `EXCUSE_STEADY` it is waited for like everyone.
#[test]
fn catching_up_member_never_makes_the_room_stutter() {
    let mut room = ready_room(21, 3, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(10_000);
    assert!((0..3).all(|i| room.playing(i)));
    let j = room.add(Role::Viewer, None);
    room.peers[j].load_delay = Some(1_500_000);
    let mut host_stopped = 0;
    let mut stalls = 0;
    for step in 0..100 {
        // 10 s in 100 ms steps; the newcomer buffers 300 ms at every
        // other step it plays during its first 8 s.
        if step < 80 && step % 6 == 0 && room.playing(j) {
            let l = room.local(j);
            room.peers[j]
                .player
                .stall(l, watchparty_peer::time::TimeDelta::from_millis(300));
            stalls += 1;
        }
        room.run_for_ms(100);
        if !room.playing(0) {
            host_stopped += 1;
        }
    }
    assert!(stalls >= 5, "the newcomer kept stalling: {stalls}");
    assert_eq!(host_stopped, 0, "the room paused for a catching-up member");
    assert!(
        !has_event(
            &room,
            0,
            |e| matches!(e, Event::Waiting(v) if v.contains(&user(j)))
        ),
        "the room waited for a catching-up member"
    );
    // It catches up on its own, and having been steady since, it is
    // waited for like everyone.
    room.run_for_ms(14_000);
    let e = room.error_now(j).unwrap().abs();
    assert!(e <= 10_000, "the newcomer is {e} µs off");
    let l = room.local(j);
    room.peers[j]
        .player
        .stall(l, watchparty_peer::time::TimeDelta::from_millis(2_000));
    room.run_for_ms(700);
    assert!(!room.playing(1), "the steady newcomer is waited for");
    room.run_for_ms(4_000);
    assert!((0..=j).all(|i| room.playing(i)), "room resumed");
}
