//! Whole system with real processes: the `watchparty-signal` binary (real
//! SQLite file, HTTP/WebSocket on 127.0.0.1) and four `watchparty` CLI peers
//! (`--json`, virtual players, real WebRTC over loopback UDP), driven
//! through stdin like a user or a script would.
//!
//! Sync is checked at one shared instant: every peer is asked for a status
//! at once; each reply carries the player position at its snapshot instant
//! and that instant in Unix µs (`wall_us`). The positions are moved to the
//! latest of those instants (a few ms) with the room rate, then compared
//! with the host's (see `support::procs::position_at`).

mod support;

use std::time::Duration;

use serde_json::Value;

use support::procs::{first_media, step, wait_in_sync};
use support::room::{Room, SETTLE, SYNC_TOLERANCE_MS, connected, host_burst};

/// Longest wait for one change to reach a peer (generous: the suite runs on
/// 2 busy cores).
const STEP: Duration = Duration::from_secs(30);

#[test]
fn host_and_three_followers_stay_in_sync_through_storms_and_a_late_joiner() {
    let mut room = Room::start(&["alice", "bob", "carol"], &["dave"]);

    // Start playing somewhere in the middle.
    host_burst(&mut room, &["seek 30".into(), "play".into()]);
    wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);

    // Storms: play / pause / seek / rate, back to back, no waiting.
    let mut storm = Vec::new();
    for i in 0..6 {
        storm.push("pause".to_owned());
        storm.push(format!("seek {}", 40.0 + f64::from(i) * 7.25));
        storm.push(format!("rate {}", [1.5, 0.75, 2.0][i as usize % 3]));
        storm.push("play".to_owned());
        storm.push(format!("seek {}", 120.0 - f64::from(i) * 3.5));
    }
    storm.push("rate 1.25".to_owned());
    host_burst(&mut room, &storm);
    let snaps = wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);
    for s in &snaps {
        assert_eq!(s["playback"]["paused"], false, "{s}");
        assert_eq!(s["playback"]["rate"], 1.25, "{s}");
        // The only drops an honest room causes: a forwarded copy of a host
        // command that arrived after a newer one (docs/protocol.md §7.1),
        // which a back-to-back storm makes likely.
        assert!(
            s["drops"]
                .as_object()
                .is_some_and(|d| d.keys().all(|k| k == "old_sequence")),
            "{s}"
        );
    }

    // Paused: everyone holds the same frame.
    host_burst(&mut room, &["pause".into(), "seek 75.5".into()]);
    let snaps = wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);
    for s in &snaps {
        let pos = s["player_position_ms"].as_f64().unwrap();
        assert!((pos - 75_500.0).abs() <= SYNC_TOLERANCE_MS, "{s}");
    }

    // A late joiner lands in sync with a playing room.
    host_burst(&mut room, &["rate 1".into(), "play".into()]);
    step("dave joins late");
    room.add_follower("dave");
    room.wait_mesh();
    let snaps = wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);
    let dave = snaps.last().unwrap();
    assert_eq!(dave["playback"]["paused"], false, "{dave}");
    assert_eq!(dave["host"], snaps[0]["you"], "{dave}");
}

#[test]
fn host_changes_roles_kicks_and_queues_through_the_cli() {
    let mut room = Room::start(&["alice", "bob"], &[]);
    let bob_id = room.followers[1].status()["you"].as_u64().unwrap();

    // A viewer's command is refused locally.
    let mark = room.followers[0].mark();
    room.followers[0].send("play");
    let e = room.followers[0].wait_after(mark, "refusal", |v| v["event"] == "error");
    assert!(e["message"].as_str().unwrap().contains("refused"), "{e}");

    // Promote alice (by username) to controller: her play now reaches the
    // host, which executes it for everyone.
    step("role change");
    room.host.send("role alice controller");
    let done = room.host.wait_for("role done", |v| {
        v["event"] == "done" || v["event"] == "error"
    });
    assert_eq!(done["command"], "role", "{done}");
    // Alice may control once the host's signed role grant reached her.
    room.followers[0].wait_after(mark, "alice's controller role", |v| {
        v["event"] == "session"
            && v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("RoleChanged") && d.contains("Controller"))
    });
    // Every status shows the new role at once: hers, and her row at the
    // host and at bob.
    let alice_id = room.followers[0].status()["you"].as_u64().unwrap();
    room.followers[0].status_until("alice's own status: controller", STEP, |s| {
        s["role"] == "controller"
    });
    let alice_row_is = |role: &'static str| {
        move |s: &Value| {
            s["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["user"] == alice_id && p["role"] == role))
        }
    };
    room.host.status_until(
        "alice's row at the host: controller",
        STEP,
        alice_row_is("controller"),
    );
    room.followers[1].status_until(
        "alice's row at bob: controller",
        STEP,
        alice_row_is("controller"),
    );
    room.followers[0].send("play");
    // The room was paused: only alice's play can start it.
    room.followers[1].status_until("alice's play applied", STEP, |s| {
        s["playback"]["paused"] == false
    });
    wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);

    // The host manages the queue.
    let media = first_media(&room.dir.path().join("host"));
    host_burst(
        &mut room,
        &[format!("queue {media} {media}"), "next".into()],
    );

    // Only the host may kick; the kicked peer stops, the rest plays on.
    let mark = room.followers[0].mark();
    room.followers[0].send(&format!("kick {bob_id}"));
    let e = room.followers[0].wait_after(mark, "refusal", |v| v["event"] == "error");
    assert!(
        e["message"].as_str().unwrap().contains("only the host"),
        "{e}"
    );
    step("kick");
    room.host.send(&format!("kick {bob_id}"));
    let done = room.host.wait_for("kick done", |v| {
        v["event"] == "done" || v["event"] == "error"
    });
    assert_eq!(done["command"], "kick", "{done}");
    assert_eq!(done["user"], bob_id, "{done}");
    room.followers[1].wait_event("stopped");
    let mut bob = room.followers.pop().unwrap();
    bob.wait_exit(Duration::from_secs(10));
    room.host
        .status_until("bob gone", STEP, |s| connected(s) == 1);
    // A kicked member has no role any more in the host's status.
    room.host.status_until("bob's row: no role", STEP, |s| {
        s["peers"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["user"] != bob_id || p["role"].is_null()))
    });
    host_burst(&mut room, &["seek 12".into(), "play".into()]);
    wait_in_sync(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);

    // A live handoff (REST + signed Handoff): alice hosts the next epoch
    // with her own key, the old host (pinned nothing, it was the host) and
    // she keep playing in sync, and her commands are applied.
    step("handoff");
    let before = room.host.status();
    room.host.send("handoff alice");
    let done = room.host.wait_for("handoff done", |v| {
        v["event"] == "done" || v["event"] == "error"
    });
    assert_eq!(done["command"], "handoff", "{done}");
    let a = room.followers[0].status_until("alice hosts", STEP, |s| s["is_host"] == true);
    assert_eq!(a["role"], "host", "{a}");
    assert_eq!(
        a["epoch"].as_u64(),
        before["epoch"].as_u64().map(|e| e + 1),
        "{a}"
    );
    let old = room.host.status_until("alice's term", STEP, |s| {
        s["host"] == alice_id && s["epoch"] == a["epoch"]
    });
    assert_eq!(old["is_host"], false, "{old}");
    room.followers[0].send("seek 33");
    room.followers[0].send("rate 1.5");
    // The rate comes after the seek in alice's timeline: once it shows,
    // both are in (whether as commands or in a `State`).
    room.host
        .status_until("alice's commands applied", STEP, |s| {
            s["playback"]["rate"] == 1.5
        });
    let mut alice = room.followers.remove(0);
    wait_in_sync(&mut [&mut alice, &mut room.host], SYNC_TOLERANCE_MS, SETTLE);
}
