//! Autoplay refusal in the web app, for real, in Chromium and in Firefox:
//! the follower's browser requires user activation for unmuted media
//! ([`Autoplay::AfterActivation`]: Chromium's
//! `--autoplay-policy=document-user-activation-required`, Firefox's
//! `media.autoplay.default=1`), so when the host plays, the follower's
//! unmuted `<video>.play()` is refused by the browser (`NotAllowedError`;
//! the follower opened the room page by navigation and has not clicked it). The page must show the "click to
//! join playback" prompt instead of silently desyncing, the room client
//! must report `autoplay_blocked`, and a real click on the prompt
//! (`unlockPlayback()` inside a user gesture) must start playback in sync
//! with the host.

mod browser;

use std::time::Duration;

use browser::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The follower page's view of the refusal.
const BLOCKED_JS: &str = "const r = window.__watchparty_room; if (!r) return null; \
     const s = r.status(); const v = document.getElementById('video'); \
     return {blocked: s.player.autoplay_blocked, prompt: !document.getElementById('autoplay-prompt').hidden, \
     paused: v.paused, muted: v.muted};";

in_each_browser!(refused_autoplay_prompts_and_a_click_joins_playback);

async fn refused_autoplay_prompts_and_a_click_joins_playback(kind: BrowserKind) {
    if !kind.available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob"]).await;
    let alice = Browser::launch(kind, "alice", Autoplay::Allowed).await;
    let bob = Browser::launch(kind, "bob", Autoplay::AfterActivation).await;
    sign_in(&alice, &site, "alice").await;
    sign_in(&bob, &site, "bob").await;
    let room = create_room(&alice, &site, &[("bob", "viewer")]).await;
    // A fresh document for bob: no user activation on the room page.
    bob.goto(&site.url(&format!("/room/{room}"))).await;
    bob.find("#video").await;
    wait_connected(&alice, 1).await;
    wait_connected(&bob, 1).await;
    let before = bob.exec(BLOCKED_JS, json!([])).await;
    assert_eq!(
        before["muted"],
        json!(false),
        "the follower's video is unmuted"
    );
    assert_eq!(before["prompt"], json!(false), "no prompt before playback");

    // The host plays: bob's browser refuses to start the unmuted video.
    let play = alice.find("#btn-play").await;
    alice.click(&play).await;
    let blocked = bob
        .wait_until(
            "the autoplay prompt on the follower's page",
            &format!(
                "const b = (() => {{ {BLOCKED_JS} }})(); return b && b.blocked && b.prompt && b"
            ),
            WAIT,
        )
        .await;
    assert_eq!(blocked["paused"], json!(true), "{blocked}");
    // The refusal is not taken for the viewer pausing: the host keeps
    // playing and the room does not pause.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let host = alice.exec(SAMPLE_JS, json!([])).await;
    assert_eq!(host["paused"], json!(false), "the host still plays: {host}");
    let bob_status = bob
        .exec(
            "return window.__watchparty_room.status().playback",
            json!([]),
        )
        .await;
    assert_eq!(bob_status["playing"], json!(true), "{bob_status}");
    let shot = save_screenshot(&bob, &shot_name("autoplay-prompt", kind)).await;
    println!("autoplay prompt: {}", shot.display());

    // A real click on the prompt: user activation, unlockPlayback(), play.
    let button = bob.find("#autoplay-button").await;
    bob.click(&button).await;
    bob.wait_until(
        "the follower playing after the click",
        "const s = window.__watchparty_room.status(); const v = document.getElementById('video'); \
         return !v.paused && !s.player.autoplay_blocked && document.getElementById('autoplay-prompt').hidden",
        WAIT,
    )
    .await;
    let muted = bob
        .exec("return document.getElementById('video').muted", json!([]))
        .await;
    assert_eq!(muted, json!(false), "unlocking does not mute the viewer");
    // The follower's video advances now.
    let t0 = bob.exec(SAMPLE_JS, json!([])).await["pos"]
        .as_f64()
        .unwrap();
    bob.wait_until(
        "the follower's video advancing",
        &format!("return document.getElementById('video').currentTime * 1000 > {t0} + 500"),
        WAIT,
    )
    .await;
}
