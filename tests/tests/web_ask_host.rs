//! Asking the host (issue 20, item 5), in two headless Chromium profiles —
//! host and viewer — against the real server over real WebRTC:
//!
//! - both pages state the room's rules in plain words;
//! - the viewer clicks "Ask the host to pause", the host's page shows the
//!   request, the host accepts it in one click and the room pauses on both
//!   pages (the host signed the pause);
//! - the host dismisses the next request: the viewer reads that the host
//!   said no, and the room plays on;
//! - asking again and again is refused at the viewer with a plain message
//!   once over the ask limit (`DEFAULT_ASK_LIMIT`), and the host's list
//!   holds one request per member.

mod browser;

use std::time::Duration;

use browser::*;
use serde_json::json;
use watchparty_peer::session::DEFAULT_ASK_LIMIT;

const WAIT: Duration = Duration::from_secs(30);
/// What the viewer reads after asking to pause.
const ASKED: &str = "You asked the host to pause. They will see your request.";
/// What the viewer reads when asking too often.
const TOO_OFTEN: &str =
    "You asked the host several times just now; wait a few seconds before asking again.";

/// The texts of the host's pending requests.
const ASKS_JS: &str =
    "return [...document.querySelectorAll('#asks li.ask .ask-text')].map(e => e.textContent);";

/// Waits until `b`'s message line reads `want`.
async fn wait_message(b: &Browser, want: &str) {
    let script = format!(
        "const m = document.getElementById('room-message'); return !!m && !m.hidden && m.textContent === {}",
        json!(want)
    );
    let ok = b
        .wait_until(&format!("the message {want:?}"), &script, WAIT)
        .await;
    assert_eq!(ok, json!(true));
}

/// Waits until the host's page lists exactly `want` requests.
async fn wait_asks(b: &Browser, want: &[&str]) {
    let script = format!(
        "const a = [...document.querySelectorAll('#asks li.ask .ask-text')].map(e => e.textContent); \
         return JSON.stringify(a) === {} && a",
        json!(serde_json::to_string(want).unwrap())
    );
    b.wait_until(&format!("the requests {want:?}"), &script, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_asks_the_host_who_accepts_or_dismisses_in_one_click() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob"]).await;
    let [alice, bob] = signed_in(&site, ["alice", "bob"]).await;
    create_room(&alice, &site, &[("bob", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    bob.goto(link.as_str().unwrap()).await;
    bob.find("#video").await;
    wait_connected(&alice, 1).await;
    wait_connected(&bob, 1).await;

    // Everyone reads the room's rules in plain words.
    for b in [&alice, &bob] {
        let text = b
            .wait_until(
                "the room's rules",
                "const p = document.getElementById('room-policy'); return !!p && p.textContent",
                WAIT,
            )
            .await;
        let text = text.as_str().unwrap();
        assert!(
            text.starts_with("The host controls playback.")
                && text.contains("Viewers watch and can ask the host to pause, play or jump."),
            "[{}] {text}",
            b.name
        );
    }
    // The viewer's controls are off; asking is on. The host has no ask
    // buttons and an (empty) list of requests.
    let bob_view = bob
        .wait_until(
            "the ask buttons",
            "const a = document.getElementById('ask-host'); \
             return !!a && !a.hidden && { pause: document.getElementById('btn-pause').disabled, \
               card: document.getElementById('asks-card').hidden }",
            WAIT,
        )
        .await;
    assert_eq!(bob_view, json!({"pause": true, "card": true}));
    let alice_view = alice
        .exec(
            "return { ask: document.getElementById('ask-host').hidden, \
                      card: document.getElementById('asks-card').hidden, \
                      list: document.getElementById('asks').textContent }",
            json!([]),
        )
        .await;
    assert_eq!(
        alice_view,
        json!({"ask": true, "card": false, "list": "No requests waiting."})
    );

    // The host starts the room.
    click(&alice, "#btn-play").await;
    wait_in_sync(&[&alice, &bob], false).await;

    // 1. The viewer asks to pause; the host accepts; the room pauses.
    click(&bob, "#ask-pause").await;
    wait_message(
        &bob,
        "You asked the host to pause. They will see your request.",
    )
    .await;
    wait_asks(&alice, &["bob asks to pause."]).await;
    // Asking is not pausing.
    let s = alice.exec(SAMPLE_JS, json!([])).await;
    assert_eq!(s["paused"], json!(false), "an ask paused the room");
    click(&alice, "#asks li.ask .ask-accept").await;
    wait_in_sync(&[&alice, &bob], true).await;
    wait_asks(&alice, &[]).await;

    // 2. The host dismisses: the viewer is told, the room plays on.
    click(&alice, "#btn-play").await;
    wait_in_sync(&[&alice, &bob], false).await;
    click(&bob, "#ask-pause").await;
    wait_asks(&alice, &["bob asks to pause."]).await;
    click(&alice, "#asks li.ask .ask-dismiss").await;
    wait_message(&bob, "The host said no to your request.").await;
    wait_asks(&alice, &[]).await;
    let samples = wait_in_sync(&[&alice, &bob], false).await;
    assert!(samples.iter().all(|s| s["paused"] == json!(false)));

    // 3. Asking again and again: refused at the viewer, in plain words,
    // within the ask limit's burst (the page keeps one ask in reserve);
    // the host's list holds one request per member.
    let mut asked = 0;
    let mut refused = false;
    for _ in 0..DEFAULT_ASK_LIMIT.burst {
        bob.exec(
            "const m = document.getElementById('room-message'); m.hidden = true; m.textContent = ''; \
             document.getElementById('ask-pause').click();",
            json!([]),
        )
        .await;
        let text = bob
            .wait_until(
                "the answer to the ask",
                "const m = document.getElementById('room-message'); return !m.hidden && m.textContent",
                WAIT,
            )
            .await;
        if text == json!(ASKED) {
            asked += 1;
        } else {
            assert_eq!(text, json!(TOO_OFTEN));
            refused = true;
            break;
        }
    }
    assert!(refused, "{asked} asks in a row were all sent");
    assert!(asked < DEFAULT_ASK_LIMIT.burst, "{asked} asks sent");
    if asked > 0 {
        wait_asks(&alice, &["bob asks to pause."]).await;
    }
    let asks = alice.exec(ASKS_JS, json!([])).await;
    assert!(
        asks.as_array().unwrap().len() <= 1,
        "one request per member: {asks}"
    );
    let s = alice.exec(SAMPLE_JS, json!([])).await;
    assert_eq!(s["paused"], json!(false), "asks never pause by themselves");

    alice.close().await;
    bob.close().await;
}
