//! A video that waits for data says why (issue #20 item 8): the host seeks
//! far past what its browser downloaded while the media server does not
//! answer. Before, the page showed a video "seeking" forever with no word;
//! now, after `STUCK_HINT_MS`, it says the part is loading — and that the
//! server cannot be reached once the signaling connection is lost too —
//! and the hint goes away by itself when the video plays again.
//!
//! Real parts: the server in-process with a 60 MB, 2-minute clip of video noise (too
//! big for Chromium to have read ahead), headless Chromium; the media
//! requests are held (never answered) with the DevTools `Fetch` domain and
//! the network is taken away with `Network.emulateNetworkConditions`.

mod browser;

use std::time::Duration;

use browser::*;
use serde_json::json;

/// Longer than the page's `STUCK_HINT_MS` (3 s) plus a busy machine.
const HINT_WAIT: Duration = Duration::from_secs(20);

/// The hint on the page: `null` while hidden, else `{reason, text}`.
const HINT_JS: &str = "const e = document.getElementById('video-stuck'); \
     return e && !e.hidden ? {reason: e.dataset.reason, text: e.textContent} : null;";

/// Where the host seeks: far past anything downloaded ahead.
const FAR_MS: f64 = 60_000.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_the_server_cannot_serve_says_why_and_recovers() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start_with_clip(&["alice"], &noise_clip()).await;
    let alice = Browser::start("alice").await;
    sign_in(&alice, &site, "alice").await;
    create_room(&alice, &site, &[]).await;
    wait_connected(&alice, 0).await;
    click(&alice, "#btn-play").await;
    alice
        .wait_until(
            "the host playing",
            "const v = document.getElementById('video'); return !v.paused && v.readyState >= 3 && v.currentTime > 0.5",
            PAGE_WAIT,
        )
        .await;
    let buffered_end = alice
        .exec(
            "const b = document.getElementById('video').buffered; \
             return b.length ? b.end(b.length - 1) * 1000 : 0;",
            json!([]),
        )
        .await
        .as_f64()
        .unwrap();
    assert!(
        buffered_end < FAR_MS - 5_000.0,
        "the browser already downloaded up to {buffered_end:.0} ms: the test cannot make a seek wait"
    );
    assert_eq!(alice.exec(HINT_JS, json!([])).await, json!(null));

    // From now on the media server does not answer: every media request is
    // held, never answered.
    alice
        .cdp(
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "*/api/v1/media/*"}]}),
        )
        .await;
    seek_from_page(&alice, FAR_MS).await;
    let hint = alice
        .wait_until(
            "the hint that the part is loading",
            &format!(
                "const h = (() => {{ {HINT_JS} }})(); return h && h.reason === 'loading' && h"
            ),
            HINT_WAIT,
        )
        .await;
    println!("stuck video, server up: {hint}");
    let text = hint["text"].as_str().unwrap();
    assert!(text.contains("taking a while"), "{text}");

    // The whole network goes away: the page also loses the server, and
    // the hint says so in words.
    alice.cdp("Network.enable", json!({})).await;
    alice
        .cdp(
            "Network.emulateNetworkConditions",
            json!({"offline": true, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
        )
        .await;
    let hint = alice
        .wait_until(
            "the hint that the server cannot be reached",
            &format!(
                "const h = (() => {{ {HINT_JS} }})(); return h && h.reason === 'offline' && h"
            ),
            Duration::from_secs(60),
        )
        .await;
    println!("stuck video, server unreachable: {hint}");
    let text = hint["text"].as_str().unwrap();
    assert!(
        text.contains("cannot be reached") && text.contains("when the connection is back"),
        "{text}"
    );
    assert!(
        !text.contains("code") && !text.contains("Error"),
        "words for people: {text}"
    );

    // The network and the server are back: the video plays from where the
    // host sent it, and the hint is gone.
    alice
        .cdp(
            "Network.emulateNetworkConditions",
            json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
        )
        .await;
    alice.cdp("Fetch.disable", json!({})).await;
    // Requests held before `Fetch.disable` may stay held: a new seek to
    // the same place asks again.
    seek_from_page(&alice, FAR_MS).await;
    let at = alice
        .wait_until(
            "the video playing past what it had downloaded, without the hint",
            "const v = document.getElementById('video'); \
             const hidden = document.getElementById('video-stuck').hidden; \
             return hidden && !v.paused && !v.seeking && v.readyState >= 3 && v.currentTime * 1000;",
            Duration::from_secs(60),
        )
        .await;
    assert!(
        at.as_f64().unwrap() > buffered_end + 5_000.0,
        "playing at {at} ms, not past the {buffered_end:.0} ms downloaded before"
    );
}
