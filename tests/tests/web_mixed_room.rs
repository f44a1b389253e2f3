//! A mixed room: a Chromium host (alice), a Firefox follower (bob) and a
//! native follower (nat, in-process driver, virtual player) in one room
//! over real WebRTC. The host plays, seeks and pauses from its page; both
//! followers follow (positions within 50 ms of the host's, measured at one
//! instant, and the same paused/playing state). Chat from each of the three
//! arrives at the other two as sent.
//!
//! Printed figures (not asserted; `cargo xtask test` output):
//! - join: bob from opening the invite link until his page is connected to
//!   the host with the media loaded; nat from its start until both pages
//!   see all their peers;
//! - play → playing: from the host's click on play (wall clock, in its
//!   page) until each player starts: the host's and Firefox's `<video>`
//!   (their `playing` events), the native follower (the driver's event
//!   that the play was applied, when it reached the test);
//! - spread: the largest distance between the three positions, sampled
//!   every [`SPREAD_EVERY`] for [`SPREAD_WINDOW`] while playing, and the
//!   Firefox follower's corrective seeks and rate changes meanwhile.

mod browser;

use std::time::Duration;

use browser::native::*;
use browser::*;
use serde_json::{Value, json};
use watchparty_peer::native::driver::DriverEvent;
use watchparty_peer::session::UserCommand;

/// Where the host seeks while playing (ms).
const SEEK_TO_MS: f64 = 60_000.0;
/// How long the spread is sampled while playing.
const SPREAD_WINDOW: Duration = Duration::from_secs(4);
/// Time between two spread samples.
const SPREAD_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for chat to arrive.
const CHAT_WAIT: Duration = Duration::from_secs(30);

/// Records, in the page, the wall time of the video's first `playing`
/// event and of the first click on play from now on.
const RECORD_PLAYING_JS: &str = "window.__wp_playing_at = null; window.__wp_clicked_at = null; \
     const now = () => performance.timeOrigin + performance.now(); \
     document.getElementById('video').addEventListener('playing', () => { \
       if (window.__wp_playing_at === null) window.__wp_playing_at = now(); \
     }); \
     document.getElementById('btn-play').addEventListener('click', () => { \
       if (window.__wp_clicked_at === null) window.__wp_clicked_at = now(); \
     }, { capture: true });";

/// The wall time of the page's first `what` (`playing`, `clicked`) since
/// [`RECORD_PLAYING_JS`].
async fn recorded_at(b: &Browser, what: &str) -> f64 {
    let at = b
        .exec(&format!("return window.__wp_{what}_at"), json!([]))
        .await;
    at.as_f64()
        .unwrap_or_else(|| panic!("[{}] no `{what}` recorded", b.name))
}

/// The chat lines a page shows, in order.
const CHAT_TEXTS_JS: &str =
    "return [...document.querySelectorAll('#chat-log .chat-text')].map(e => e.textContent);";

/// The three positions moved to one instant; returns the spread (ms).
async fn spread(r: &MixedRoom) -> f64 {
    let browsers = [&r.alice, &r.bob];
    let (pages, n) = tokio::join!(sample_all(&browsers), native_sample(&r.nat));
    let samples: Vec<&Value> = pages.0.iter().chain([&n]).collect();
    let t = samples
        .iter()
        .map(|s| s["wall"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let pos: Vec<f64> = samples.iter().map(|s| position_at(s, t)).collect();
    pos.iter().copied().fold(f64::MIN, f64::max) - pos.iter().copied().fold(f64::MAX, f64::min)
}

/// `(median, p99, max)` of `v`.
fn quantiles(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let p99 = s[((0.99 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (s[s.len() / 2], p99, s[s.len() - 1])
}

/// Waits until every page is in the `paused` state in sync and the native
/// follower is in sync with the host's page.
async fn wait_all_in_sync(r: &MixedRoom, paused: bool) -> (Vec<Value>, Value) {
    let pages = wait_in_sync(&[&r.alice, &r.bob], paused).await;
    let (n, _) = wait_native_and_page(&r.nat, &r.alice, paused).await;
    (pages, n)
}

/// Waits until the page `b` shows every line of `want`.
async fn wait_chat_on_page(b: &Browser, want: &[&str]) {
    let all = want
        .iter()
        .map(|t| format!("t.includes({})", json!(t)))
        .collect::<Vec<_>>()
        .join(" && ");
    b.wait_until(
        "the chat lines",
        &format!("const t = (() => {{ {CHAT_TEXTS_JS} }})(); return {all} && t"),
        CHAT_WAIT,
    )
    .await;
}

/// Waits until the native follower has received every line of `want` as
/// live chat.
async fn wait_chat_on_native(r: &mut MixedRoom, want: &[&str]) {
    let mut missing: Vec<&str> = want.to_vec();
    let got = tokio::time::timeout(CHAT_WAIT, async {
        while !missing.is_empty() {
            match r.nat.events.recv().await {
                Some(DriverEvent::Chat {
                    text,
                    earlier: false,
                    ..
                }) => missing.retain(|m| *m != text),
                Some(DriverEvent::Stopped { reason }) => panic!("driver stopped: {reason}"),
                Some(_) => {}
                None => panic!("driver gone"),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the native follower never got {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_host_firefox_and_native_followers_play_seek_pause_and_chat() {
    if !BrowserKind::Chromium.available() || !BrowserKind::Firefox.available() {
        return;
    }
    require_room_client();
    let mut r = mixed_room(BrowserKind::Firefox).await;
    let version = r.bob.exec("return navigator.userAgent", json!([])).await;
    assert!(
        version.as_str().is_some_and(|ua| ua.contains("Firefox/")),
        "bob runs Firefox: {version}"
    );

    // Play from the host's page; both followers start.
    for b in [&r.alice, &r.bob] {
        b.exec(RECORD_PLAYING_JS, json!([])).await;
    }
    let ((), nat_playing_at) = tokio::join!(click(&r.alice, "#btn-play"), async {
        wait_event(
            &mut r.nat,
            "the play applied",
            |e| matches!(e, DriverEvent::CommandApplied { playback: Some(p), .. } if !p.paused),
        )
        .await;
        wall_ms()
    });
    let (pages, _) = wait_all_in_sync(&r, false).await;
    println!("playing: {pages:?}");
    let (clicked_at, host_at, firefox_at) = tokio::join!(
        recorded_at(&r.alice, "clicked"),
        recorded_at(&r.alice, "playing"),
        recorded_at(&r.bob, "playing")
    );

    // Seek while playing.
    seek_from_page(&r.alice, SEEK_TO_MS).await;
    let (pages, n) = wait_all_in_sync(&r, false).await;
    for s in pages.iter().chain([&n]) {
        assert!(s["pos"].as_f64().unwrap() >= SEEK_TO_MS - 1_000.0, "{s}");
    }

    // The spread of the three while playing, and the Firefox follower's
    // corrections meanwhile.
    let actions_before = r.bob.exec(ACTIONS_JS, json!([])).await;
    let mut spreads = Vec::new();
    let mut tick = tokio::time::interval(SPREAD_EVERY);
    let end = tokio::time::Instant::now() + SPREAD_WINDOW;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        spreads.push(spread(&r).await);
    }
    let actions_after = r.bob.exec(ACTIONS_JS, json!([])).await;
    let corrections = |k: &str| {
        actions_after[k].as_f64().unwrap_or(f64::NAN) - actions_before[k].as_f64().unwrap_or(0.0)
    };

    // Pause from the host's page.
    click(&r.alice, "#btn-pause").await;
    let (pages, n) = wait_all_in_sync(&r, true).await;
    println!("paused: {pages:?} native {n}");

    // Chat from each of the three reaches the other two.
    let (from_alice, from_bob, from_nat) = (
        "hello from Chromium",
        "hello from Firefox",
        "hello from the native peer",
    );
    send_chat(&r.alice, from_alice).await;
    send_chat(&r.bob, from_bob).await;
    r.nat
        .command(UserCommand::Chat(from_nat.to_owned()))
        .await
        .unwrap();
    wait_chat_on_page(&r.alice, &[from_bob, from_nat]).await;
    wait_chat_on_page(&r.bob, &[from_alice, from_nat]).await;
    wait_chat_on_native(&mut r, &[from_alice, from_bob]).await;

    let (median, p99, max) = quantiles(&spreads);
    println!(
        "mixed room (Chromium host, Firefox and native followers): join: Firefox {:.0} ms, \
         native {:.0} ms; play click -> playing: host {:.0} ms, Firefox {:.0} ms, native {:.0} ms; spread of the \
         three while playing ({} samples): median {median:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; \
         Firefox corrections meanwhile: {} seeks, {} rate changes",
        r.bob_joined_in.as_secs_f64() * 1000.0,
        r.nat_joined_in.as_secs_f64() * 1000.0,
        host_at - clicked_at,
        firefox_at - clicked_at,
        nat_playing_at - clicked_at,
        spreads.len(),
        corrections("seeks"),
        corrections("rate_changes"),
    );
    r.alice.close().await;
    r.bob.close().await;
}
