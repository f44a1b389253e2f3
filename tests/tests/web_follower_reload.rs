//! Issue #20 item 2: a follower reloads its page mid-play. Real server,
//! real WebRTC, headless Chromium: a browser host, a browser follower (a
//! second Chromium profile) and a native follower (in-process driver,
//! virtual player). The host plays from 20 s, everyone follows; the
//! browser follower's page reloads. After the reloaded page's video is
//! ready (its first `canplay`) it must play within [`SYNC_TOLERANCE_MS`]
//! of the room's timeline within [`BACK_IN_SYNC_LIMIT`], then also meet
//! the host's page, and stay there; meanwhile the room never stops: the
//! host's player is never paused (no `pause` event at all) and neither the
//! host nor the native follower stops advancing or jumps back. Prints
//! `follower reload: back in sync in N ms` (docs/user-guide.md, "Reloading
//! the page"; docs/benchmarks.md, room life).

mod browser;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use browser::native::*;
use browser::*;
use serde_json::{Value, json};

/// Longest time from the reloaded page's video being ready (first
/// `canplay`) to it playing in sync with the room's timeline (issue #20:
/// "back in sync within 1 s of its video being ready").
const BACK_IN_SYNC_LIMIT: Duration = Duration::from_secs(1);

/// Longest time from the reload to the new page's video being ready (the
/// page loads, signs in again, joins and connects; a busy 2-core machine).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Samples in a row within [`SYNC_TOLERANCE_MS`] that count as "in sync"
/// (as [`wait_in_sync`] does).
const IN_SYNC_RUN: usize = 3;

/// Once back in sync, the pages are sampled this many times (≥ 100 ms
/// apart): the page stays there, it does not settle behind (issue #20: a
/// reloaded page stayed 90–187 ms behind). The median offset must be within
/// [`SYNC_TOLERANCE_MS`] and every sample within [`STEADY_MAX_MS`].
const STEADY_SAMPLES: usize = 20;

/// Most any one steady sample may be off (ms): one reading on a loaded
/// machine, caught mid-correction, may cross [`SYNC_TOLERANCE_MS`].
const STEADY_MAX_MS: f64 = 2.0 * SYNC_TOLERANCE_MS;

/// One native status (a round trip through the driver) against one page
/// sample (as in `web_host_reload`).
const NATIVE_TOLERANCE_MS: f64 = 250.0;

/// Counts the host page's `pause` and `play` events from now on.
const COUNT_TRANSITIONS_JS: &str = "const v = document.getElementById('video'); \
     window.__wp_transitions = {pause: 0, play: 0}; \
     v.addEventListener('pause', () => window.__wp_transitions.pause++); \
     v.addEventListener('play', () => window.__wp_transitions.play++); return true;";

/// In every new document of the follower: the wall time (ms) of the video's
/// first `canplay` (media events do not bubble; a capturing listener on
/// the document sees them).
const RECORD_READY_JS: &str = "window.__wp_ready = null; \
     document.addEventListener('canplay', (e) => { \
       if (e.target && e.target.id === 'video' && window.__wp_ready === null) \
         window.__wp_ready = performance.timeOrigin + performance.now(); }, true);";

/// The follower page's room clock against the host's (they share the
/// machine's wall clock): how far off its estimate of room time is (ms),
/// with its own uncertainty.
async fn clock_error(host: &Browser, follower: &Browser) -> String {
    const ROOM_JS: &str = "const s = window.__watchparty_room.status(); \
         return {room: s.room_ms, wall: performance.timeOrigin + performance.now(), \
         uncertainty: s.sync.offset_uncertainty_ms, error: s.sync.error_ms};";
    let (h, f) = tokio::join!(
        host.exec(ROOM_JS, json!([])),
        follower.exec(ROOM_JS, json!([]))
    );
    let at =
        |v: &Value| v["room"].as_f64().unwrap_or(f64::NAN) - v["wall"].as_f64().unwrap_or(f64::NAN);
    format!(
        "off by {:.1} ms (its uncertainty {}, its own error estimate {} ms)",
        at(&f) - at(&h),
        f["uncertainty"],
        f["error"]
    )
}

/// The host page's own sync error estimate (ms; its player against the
/// room timeline), for the trace.
const HOST_ERROR_JS: &str = "return window.__watchparty_room.status().sync.error_ms;";

/// Tracks the first of [`IN_SYNC_RUN`] samples in a row that were in sync.
#[derive(Default)]
struct InSyncRun {
    /// Wall instants (ms) of the current run of in-sync samples.
    run: Vec<f64>,
    /// The first instant of the first complete run.
    since: Option<f64>,
}

impl InSyncRun {
    fn sample(&mut self, in_sync: bool, wall: f64) {
        if self.since.is_some() {
            return;
        }
        if in_sync {
            self.run.push(wall);
            if self.run.len() == IN_SYNC_RUN {
                self.since = Some(self.run[0]);
            }
        } else {
            self.run.clear();
        }
    }
}

/// Whether both pages play, not seeking, within [`SYNC_TOLERANCE_MS`].
fn in_sync(samples: &[Value], spread: f64) -> bool {
    samples
        .iter()
        .all(|s| s["paused"] == json!(false) && s["seeking"] == json!(false))
        && spread <= SYNC_TOLERANCE_MS
}

/// The room never stutters while a follower reloads, the native follower
/// stays in sync, and the reloaded page is back in sync with the room's
/// timeline within [`BACK_IN_SYNC_LIMIT`] of its video being ready, then
/// also with the host's page, and stays there. Prints how long each took.
///
/// The bound is judged against the room's timeline — the host-signed
/// state, placed in wall time by the native follower's clock (its
/// uncertainty on loopback is ~1 ms) — not against the host's page: on
/// this 2-core machine the host's page itself falls 30–80 ms behind its
/// own timeline while the other browser reloads (its tab gets few turns;
/// its own engine then corrects by rate), and a follower that waited for
/// that lag would be out of sync with everyone else. The time until the
/// page also meets the host's page is printed and reported beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_follower_is_back_in_sync_within_a_second_and_the_room_never_stutters() {
    follower_reload(BACK_IN_SYNC_LIMIT).await;
}

/// Plays from 20 s, reloads the browser follower and checks the room (see
/// the module docs), including that the page was back in sync with the
/// room's timeline within `limit`.
async fn follower_reload(limit: Duration) {
    if !browser_available() {
        return;
    }
    require_room_client();
    let r = mixed_room(BrowserKind::Chromium).await;
    play_in_sync_from(&r, 20_000.0).await;
    let MixedRoom {
        alice, bob, nat, ..
    } = &r;

    assert_eq!(
        alice.exec(COUNT_TRANSITIONS_JS, json!([])).await,
        json!(true)
    );
    bob.inject_on_new_document(RECORD_READY_JS).await;
    let origin = bob.exec("return performance.timeOrigin;", json!([])).await;

    // The follower reloads; the host and the native follower are watched
    // from now until the reloaded page has been in sync for a while.
    let stop = AtomicBool::new(false);
    let reload = async {
        let started = Instant::now();
        bob.exec("setTimeout(() => location.reload(), 0)", json!([]))
            .await;
        let ready = bob
            .wait_until(
                "the reloaded follower page's video ready",
                &format!(
                    "if (performance.timeOrigin === {origin} || !window.__watchparty_room) return false; \
                     return window.__wp_ready;"
                ),
                READY_LIMIT,
            )
            .await;
        let ready = ready.as_f64().unwrap();
        println!(
            "follower reload: video ready {} ms after the reload",
            started.elapsed().as_millis()
        );
        // Back in sync: the first of IN_SYNC_RUN samples in a row in sync,
        // with the room's timeline (the bound) and with the host's page.
        let mut with_room = InSyncRun::default();
        let mut with_host = InSyncRun::default();
        let mut trace = Vec::new();
        let mut last = (Vec::new(), f64::MAX);
        let deadline = Instant::now() + SETTLE;
        while (with_room.since.is_none() || with_host.since.is_none()) && Instant::now() < deadline
        {
            let pages = [alice, bob];
            let (l, n, tl, he) = tokio::join!(
                sample_all(&pages),
                native_sample(nat),
                room_timeline_sample(nat),
                alice.exec(HOST_ERROR_JS, json!([]))
            );
            last = l;
            let (h, f) = (&last.0[0], &last.0[1]);
            let t = h["wall"].as_f64().unwrap().max(f["wall"].as_f64().unwrap());
            let page_vs_room = position_at(f, t) - position_at(&tl, t);
            trace.push(format!(
                "+{:.0} ms: page vs room {:+.0} ms, vs host page {:+.0} ms, vs native {:+.0} ms; \
                 host page vs room {:+.0} ms (its own error estimate {} ms); page rate {}, paused {}, seeking {}, ready {}",
                t - ready,
                page_vs_room,
                position_at(f, t) - position_at(h, t),
                -native_offset(&n, f),
                position_at(h, t) - position_at(&tl, t),
                he,
                f["rate"],
                f["paused"],
                f["seeking"],
                f["ready"]
            ));
            let playing = in_sync(std::slice::from_ref(f), 0.0) && tl["paused"] == json!(false);
            with_room.sample(playing && page_vs_room.abs() <= SYNC_TOLERANCE_MS, t);
            with_host.sample(in_sync(&last.0, last.1), t);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "follower reload: until back in sync\n  {}",
            trace.join("\n  ")
        );
        let (Some(room_at), Some(host_at)) = (with_room.since, with_host.since) else {
            panic!(
                "the reloaded page never came back in sync within {SETTLE:?} (with the room: {}, \
                 with the host page: {}): spread {:.1} ms, {:?}",
                with_room.since.is_some(),
                with_host.since.is_some(),
                last.1,
                last.0
            );
        };
        let took = ((room_at - ready).max(0.0), (host_at - ready).max(0.0));
        const SYNC_JS: &str = "return window.__watchparty_room.status().sync;";
        let (hs, fs) = tokio::join!(alice.exec(SYNC_JS, json!([])), bob.exec(SYNC_JS, json!([])));
        println!("follower reload: sync status of the host page {hs}\n  of the reloaded page {fs}");
        // It stays in sync.
        let mut steady = Vec::new();
        for _ in 0..STEADY_SAMPLES {
            let (s, spread) = sample_all(&[alice, bob]).await;
            let playing = in_sync(&s, 0.0);
            steady.push((if playing { spread } else { f64::MAX }, s));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::SeqCst);
        (took, steady)
    };
    let (w_alice, w_nat, (took, steady)) = tokio::join!(
        watch_player(|| alice.exec(SAMPLE_JS, json!([])), &stop),
        watch_player(|| native_sample(nat), &stop),
        reload
    );
    let (took, took_host) = took;
    println!(
        "follower reload: back in sync in {took:.0} ms (with the room's timeline; with the host's page in {took_host:.0} ms)"
    );
    println!(
        "players sampled during the reload: host page {} / native {}",
        w_alice.samples, w_nat.samples
    );

    let mut spreads: Vec<f64> = steady.iter().map(|(d, _)| *d).collect();
    spreads.sort_by(f64::total_cmp);
    let median = spreads[spreads.len() / 2];
    println!(
        "follower reload: then off by {median:.1} ms (median), {:.1} ms (worst) over {} samples",
        spreads[spreads.len() - 1],
        spreads.len()
    );
    println!(
        "follower reload: page clock {}",
        clock_error(alice, bob).await
    );
    assert!(
        median <= SYNC_TOLERANCE_MS && spreads[spreads.len() - 1] <= STEADY_MAX_MS,
        "the reloaded page did not stay in sync: {steady:?}"
    );
    // The room never stuttered: the host's player never paused, and
    // neither the host nor the native follower stopped or went back.
    let transitions = alice
        .exec("return window.__wp_transitions;", json!([]))
        .await;
    assert_eq!(
        transitions,
        json!({"pause": 0, "play": 0}),
        "the host's player paused/played while the follower reloaded"
    );
    for (name, w) in [("host page", &w_alice), ("native follower", &w_nat)] {
        assert!(w.samples > 0, "{name} sampled");
        assert!(w.paused.is_empty(), "{name} stopped: {:?}", w.paused);
        assert!(
            w.backsteps.is_empty(),
            "{name} jumped back: {:?}",
            w.backsteps
        );
    }
    let n = native_sample(nat).await;
    let p = alice.exec(SAMPLE_JS, json!([])).await;
    assert!(
        native_offset(&n, &p).abs() <= NATIVE_TOLERANCE_MS,
        "native {n} / host page {p}"
    );
    // A figure once the room held (a miss of the 1 s goal is a figure
    // too: `cargo xtask bench` judges the goal over all runs).
    record_room_life_figure("follower_reload_in_sync", took);
    record_room_life_figure("follower_reload_with_host_page", took_host);
    assert!(
        took <= limit.as_secs_f64() * 1000.0,
        "back in sync with the room {took:.0} ms after the video was ready (limit {limit:?})"
    );
    let MixedRoom { alice, bob, .. } = r;
    for b in [alice, bob] {
        b.close().await;
    }
}
