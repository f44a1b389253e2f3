//! Issue #20 item 1: the host reloads its page mid-play. Real server, real
//! WebRTC, headless Chromium: a browser host, a browser follower (a second
//! Chromium profile) and a native follower (in-process driver, virtual
//! player). The host plays and seeks to 20 s, everyone follows; the host's
//! page reloads. The room must resume where it was (±1 s of where it
//! would be by then) and playing, and neither follower may pause or jump
//! back meanwhile. Prints `host reload: room resumed in N ms`
//! (docs/protocol.md §7.2).

mod browser;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use browser::native::*;
use browser::*;
use serde_json::json;

/// Longest time the room may take to be back after the reload started.
const RESUME_LIMIT: Duration = Duration::from_secs(30);

/// How far (ms) the resumed room may be from where it would be had the
/// host never left.
const POSITION_TOLERANCE_MS: f64 = 1_000.0;

/// The room position (ms) and state as the page's RoomClient sees it.
const PLAYBACK_JS: &str = "const r = window.__watchparty_room; if (!r) return null; \
     let s; try { s = r.status(); } catch (e) { return null; } \
     const v = document.getElementById('video'); \
     return {playback: s.playback, resuming: !!s.resuming, is_host: s.is_host, epoch: s.epoch, \
       origin: performance.timeOrigin, wall: performance.timeOrigin + performance.now(), \
       video_pos: v ? v.currentTime * 1000 : null, video_paused: v ? v.paused : null, \
       ready: v ? v.readyState : null};";

const MESSAGE_JS: &str = "const m = document.getElementById('room-message'); \
     return m && !m.hidden ? m.textContent : '';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reload_resumes_the_room_and_followers_never_stop() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let r = mixed_room(BrowserKind::Chromium).await;
    play_in_sync_from(&r, 20_000.0).await;
    let MixedRoom {
        alice, bob, nat, ..
    } = &r;

    // The room before the reload: where it would be at any later instant.
    let before = alice.exec(PLAYBACK_JS, json!([])).await;
    let pb = &before["playback"];
    assert_eq!(pb["playing"], json!(true), "{before}");
    let (pos0, wall0) = (
        pb["position_ms"].as_f64().unwrap(),
        before["wall"].as_f64().unwrap(),
    );
    let expected_at = |wall: f64| pos0 + (wall - wall0);

    // The host reloads; both followers are watched meanwhile.
    let stop = AtomicBool::new(false);
    let reload = async {
        let started = Instant::now();
        let origin = before["origin"].clone();
        alice
            .exec("setTimeout(() => location.reload(), 0)", json!([]))
            .await;
        let back = alice
            .wait_until(
                "the reloaded host page running the room again",
                &format!(
                    "const r = window.__watchparty_room; if (!r || performance.timeOrigin === {origin}) return false; \
                     let s; try {{ s = r.status(); }} catch (e) {{ return false; }} \
                     const v = document.getElementById('video'); \
                     return s.is_host && !s.resuming && s.playback && s.playback.playing && \
                       v && !v.paused && !v.seeking && v.readyState >= 3 && \
                       Math.abs(v.currentTime * 1000 - s.playback.position_ms) < 200;"
                ),
                RESUME_LIMIT,
            )
            .await;
        let took = started.elapsed();
        assert_eq!(back, json!(true));
        let after = alice.exec(PLAYBACK_JS, json!([])).await;
        stop.store(true, Ordering::SeqCst);
        (took, after)
    };
    let (w_bob, w_nat, (took, after)) = tokio::join!(
        watch_player(|| bob.exec(SAMPLE_JS, json!([])), &stop),
        watch_player(|| native_sample(nat), &stop),
        reload
    );
    println!("host reload: room resumed in {} ms", took.as_millis());
    println!(
        "followers sampled while the host was away: page {} / native {}",
        w_bob.samples, w_nat.samples
    );

    // Same position (±1 s of where it would be by now) and playing.
    let pb = &after["playback"];
    assert_eq!(pb["playing"], json!(true), "{after}");
    let pos = pb["position_ms"].as_f64().unwrap();
    let want = expected_at(after["wall"].as_f64().unwrap());
    assert!(
        (pos - want).abs() <= POSITION_TOLERANCE_MS,
        "room at {pos:.0} ms after the reload, expected {want:.0} ms"
    );
    // The followers never paused, never went back (to 0 or anywhere).
    for (name, w) in [("browser follower", &w_bob), ("native follower", &w_nat)] {
        assert!(w.samples > 0, "{name} sampled");
        assert!(w.paused.is_empty(), "{name} paused: {:?}", w.paused);
        assert!(
            w.backsteps.is_empty(),
            "{name} jumped back: {:?}",
            w.backsteps
        );
        assert!(
            w.min_pos >= pos0 - BACKSTEP_TOLERANCE_MS,
            "{name} went to {}",
            w.min_pos
        );
    }
    // Everyone in sync again, and no stale error on the follower's page.
    let s = wait_in_sync(&[alice, bob], false).await;
    println!("after the reload: {s:?}");
    let msg = bob.exec(MESSAGE_JS, json!([])).await;
    assert_eq!(msg, json!(""), "the follower's page shows no error");
    let n = native_sample(nat).await;
    let p = alice.exec(SAMPLE_JS, json!([])).await;
    assert!(
        native_offset(&n, &p).abs() <= 250.0,
        "native {n} / host page {p}"
    );
    // Only a run that passed is a figure (`cargo xtask bench`).
    record_room_life_figure("host_reload_resume", took.as_secs_f64() * 1000.0);
    let MixedRoom { alice, bob, .. } = r;
    for b in [alice, bob] {
        b.close().await;
    }
}
