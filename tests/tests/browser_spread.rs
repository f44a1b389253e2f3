//! Measurement (not a test of `cargo xtask test`; `#[ignore]`d and run by
//! `cargo xtask bench`): the sync spread between two headless Chromium
//! `video` elements, a host page and one follower page, over the real
//! server, real WebRTC, the real web app and wasm bundle.
//!
//! Both pages are sampled at once every [`SAMPLE_EVERY`] (the same method as
//! `web_room`): each page returns its `currentTime` with its own wall
//! timestamp, and each position is moved to the later of the two instants
//! at the page's playback rate before they are compared. Three phases:
//!
//! 1. **after play** — the host clicks play from 0; sampled after
//!    [`PHASE_SETTLE`] for the play window;
//! 2. **after seek** — the host drags the slider to [`SEEK_TO_MS`] while
//!    playing; sampled after [`PHASE_SETTLE`];
//! 3. **steady** — sampling goes on; the follower's correction counters
//!    (seeks, rate changes) are read before and after.
//!
//! The raw samples go as JSON to `$WATCHPARTY_BENCH_BROWSER_OUT` (read by
//! `watchparty-bench --browser-samples`). `WATCHPARTY_BENCH_QUICK=1` makes
//! the windows shorter.

mod browser;

use std::time::{Duration, Instant};

use browser::*;
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

/// Env: where the samples go (JSON). Unset: printed summary only.
const OUT_ENV: &str = "WATCHPARTY_BENCH_BROWSER_OUT";
/// Env: `1` for the short windows.
const QUICK_ENV: &str = "WATCHPARTY_BENCH_QUICK";
/// Time between two samples (the start of one to the start of the next).
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Wait after a command before its window starts.
const PHASE_SETTLE: Duration = Duration::from_secs(2);
/// Where the host seeks while playing (ms); must leave room in the clip for
/// the after-seek and steady windows.
const SEEK_TO_MS: f64 = 40_000.0;
/// Longest wait for the host page to report playing after its click.
const PLAY_WAIT: Duration = Duration::from_secs(10);
/// Format version of the JSON file (read by `bench/src/browser.rs`).
const FORMAT_VERSION: u32 = 1;

/// Window lengths of one run.
#[derive(Clone, Copy)]
struct Plan {
    after_play: Duration,
    after_seek: Duration,
    steady: Duration,
}

const FULL: Plan = Plan {
    after_play: Duration::from_secs(15),
    after_seek: Duration::from_secs(15),
    steady: Duration::from_secs(30),
};

const QUICK: Plan = Plan {
    after_play: Duration::from_secs(5),
    after_seek: Duration::from_secs(5),
    steady: Duration::from_secs(8),
};

/// The samples of one phase.
#[derive(Default)]
struct Phase {
    /// |follower − host| at one instant (ms).
    spread: Vec<f64>,
    /// follower − host (ms): positive = follower ahead.
    signed: Vec<f64>,
    /// Wall-time difference between the two pages' readings (ms), the
    /// amount the positions were moved by to compare them.
    skew: Vec<f64>,
    /// Follower playback rate at each sample.
    follower_rate: Vec<f64>,
    /// Samples where a page was paused.
    not_playing: usize,
    /// Samples where a page was seeking.
    seeking: usize,
    /// Samples where a page had less than `HAVE_FUTURE_DATA`.
    starving: usize,
}

impl Phase {
    fn info(&self, window: Duration) -> Value {
        let mut skew = self.skew.clone();
        skew.sort_by(f64::total_cmp);
        json!({
            "window_s": window.as_secs_f64(),
            "samples": self.spread.len(),
            "samples_not_playing": self.not_playing,
            "samples_seeking": self.seeking,
            "samples_below_have_future_data": self.starving,
            "sampling_skew_ms_median": skew.get(skew.len() / 2),
            "sampling_skew_ms_max": skew.last(),
        })
    }
}

/// Samples both pages every [`SAMPLE_EVERY`] for `window`.
async fn sample_window(host: &Browser, follower: &Browser, window: Duration) -> Phase {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + window;
    let mut ph = Phase::default();
    while Instant::now() < end {
        tick.tick().await;
        let (s, spread) = sample_all(&[host, follower]).await;
        let (h, f) = (&s[0], &s[1]);
        let (hw, fw) = (h["wall"].as_f64().unwrap(), f["wall"].as_f64().unwrap());
        let t = hw.max(fw);
        ph.spread.push(spread);
        ph.signed.push(position_at(f, t) - position_at(h, t));
        ph.skew.push((hw - fw).abs());
        ph.follower_rate.push(f["rate"].as_f64().unwrap_or(1.0));
        ph.not_playing += usize::from(s.iter().any(|x| x["paused"] != false));
        ph.seeking += usize::from(s.iter().any(|x| x["seeking"] == true));
        ph.starving += usize::from(s.iter().any(|x| x["ready"].as_u64().unwrap_or(0) < 3));
    }
    ph
}

/// The browser's full version (CDP `Browser.getVersion`; the user agent
/// string only carries the major version).
async fn chromium_version(b: &Browser) -> String {
    let v = b.cdp("Browser.getVersion", json!({})).await;
    if let Some(p) = v["product"].as_str() {
        return p.rsplit('/').next().unwrap_or(p).to_owned();
    }
    let ua = b.exec("return navigator.userAgent", json!([])).await;
    let ua = ua.as_str().unwrap_or_default();
    ua.split_whitespace()
        .find_map(|w| w.split_once("Chrome/").map(|(_, v)| v.to_owned()))
        .unwrap_or_else(|| ua.to_owned())
}

fn summary(name: &str, v: &[f64]) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        println!("{name}: no samples");
        return;
    }
    let p99 = s[((0.99 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    println!(
        "{name}: {} samples, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.len(),
        s[s.len() / 2],
        p99,
        s[s.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for `cargo xtask bench` (about 2 minutes)"]
async fn browser_spread_two_chromium_video_elements() {
    let out = std::env::var_os(OUT_ENV).map(std::path::PathBuf::from);
    if !browser_available() {
        assert!(
            out.is_none(),
            "{OUT_ENV} is set but Chromium is not available: nothing measured"
        );
        return;
    }
    require_room_client();
    let quick = std::env::var(QUICK_ENV).is_ok_and(|v| v == "1");
    let plan = if quick { QUICK } else { FULL };
    let needed = SEEK_TO_MS + (PHASE_SETTLE + plan.after_seek + plan.steady).as_secs_f64() * 1000.0;
    assert!(
        needed + 10_000.0 < f64::from(CLIP_SECS) * 1000.0,
        "the clip ({CLIP_SECS} s) is too short for the windows ({needed} ms)"
    );

    let started = Instant::now();
    let site = Site::start(&["host", "follower"]).await;
    let (host, follower) = tokio::join!(Browser::start("host"), Browser::start("follower"));
    tokio::join!(
        sign_in(&host, &site, "host"),
        sign_in(&follower, &site, "follower")
    );
    create_room(&host, &site, &[("follower", "viewer")]).await;
    let link = host
        .property(&host.find("#invite-link").await, "value")
        .await;
    follower.goto(link.as_str().unwrap()).await;
    follower.find("#video").await;
    wait_connected(&host, 1).await;
    wait_connected(&follower, 1).await;
    let chromium = chromium_version(&host).await;
    println!(
        "pages connected after {:.1} s (Chromium {chromium})",
        started.elapsed().as_secs_f64()
    );

    // 1. Play from the start.
    click(&host, "#btn-play").await;
    let clicked = Instant::now();
    host.wait_until(
        "the host playing",
        "return !document.getElementById('video').paused",
        PLAY_WAIT,
    )
    .await;
    tokio::time::sleep(PHASE_SETTLE.saturating_sub(clicked.elapsed())).await;
    let after_play = sample_window(&host, &follower, plan.after_play).await;

    // 2. Seek while playing.
    seek_from_page(&host, SEEK_TO_MS).await;
    tokio::time::sleep(PHASE_SETTLE).await;
    let pos = host
        .exec(
            "return document.getElementById('video').currentTime * 1000",
            json!([]),
        )
        .await;
    assert!(
        pos.as_f64().unwrap() >= SEEK_TO_MS - 1000.0,
        "the host did not seek: at {pos} ms"
    );
    let after_seek = sample_window(&host, &follower, plan.after_seek).await;

    // 3. Steady state, with the follower's correction counters around it.
    let before = follower.exec(ACTIONS_JS, json!([])).await;
    let steady_start = Instant::now();
    let steady = sample_window(&host, &follower, plan.steady).await;
    let steady_s = steady_start.elapsed().as_secs_f64();
    let after = follower.exec(ACTIONS_JS, json!([])).await;
    let delta = |k: &str| -> Option<f64> { Some(after[k].as_f64()? - before[k].as_f64()?) };
    let off = steady
        .follower_rate
        .iter()
        .filter(|r| (**r - 1.0).abs() > 1e-9)
        .count();
    let worst = steady
        .follower_rate
        .iter()
        .map(|r| (r - 1.0).abs())
        .fold(0.0, f64::max);
    let correction = json!({
        "window_s": steady_s,
        "seeks": delta("seeks"),
        "rate_changes": delta("rate_changes"),
        "time_off_1x_pct": 100.0 * off as f64 / steady.follower_rate.len().max(1) as f64,
        "max_rate_deviation_ppm": worst * 1e6,
        "method": "seeks / rate changes: the follower's status().sync.actions counters before and after the window; \
                   time off 1.0x and deviation: the follower's playbackRate in the samples",
    });

    for (name, ph) in [
        ("after play", &after_play),
        ("after seek", &after_seek),
        ("steady", &steady),
    ] {
        summary(name, &ph.spread);
    }
    println!("follower correction in steady state: {correction}");
    let doc = json!({
        "version": FORMAT_VERSION,
        "params": {
            "pages": 2,
            "quick": quick,
            "sample_every_ms": SAMPLE_EVERY.as_millis(),
            "settle_ms": PHASE_SETTLE.as_millis(),
            "seek_to_ms": SEEK_TO_MS,
            "windows_s": {
                "after_play": plan.after_play.as_secs_f64(),
                "after_seek": plan.after_seek.as_secs_f64(),
                "steady": plan.steady.as_secs_f64(),
            },
            "clip": format!("WebM VP8 320x180 25 fps 150 kb/s + Opus, {CLIP_SECS} s (ffmpeg testsrc2)"),
            "chromium": chromium,
            "method": "both pages' video.currentTime read at once over WebDriver, each moved to the later \
                       page timestamp at its playbackRate; spread = |follower - host|",
        },
        "phases": {
            "after_play": after_play.spread,
            "after_seek": after_seek.spread,
            "steady": steady.spread,
        },
        "signed_ms": {
            "after_play": after_play.signed,
            "after_seek": after_seek.signed,
            "steady": steady.signed,
        },
        "phase_info": {
            "after_play": after_play.info(plan.after_play),
            "after_seek": after_seek.info(plan.after_seek),
            "steady": steady.info(plan.steady),
        },
        "correction": correction,
    });
    write_measurement(out.as_deref(), &doc, "browser spread samples");
    host.close().await;
    follower.close().await;
    println!(
        "browser spread measurement: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
