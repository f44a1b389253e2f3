//! Chat history for a late joiner (issue 20, item 8), in three headless
//! Chromium profiles against the real server over real WebRTC: the host
//! and a member chat; a third member opens the invite link afterwards and
//! sees both messages, in order, once each, greyed and marked "earlier"
//! (the host offered them, each signed by its author, docs/protocol.md
//! §4.1 *Chat history*); a message sent after it joined is a live line
//! below them.

mod browser;

use std::time::Duration;

use browser::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The chat lines of a page: text, whether marked earlier, and the label.
const LINES_JS: &str = "return [...document.querySelectorAll('#chat-log li.chat-line')].map(li => ({ \
     text: li.querySelector('.chat-text').textContent, \
     earlier: li.classList.contains('earlier'), \
     label: (li.querySelector('.earlier-label') || {}).textContent || null }));";

/// Waits until `b` shows exactly `n` chat lines; returns them.
async fn wait_lines(b: &Browser, n: usize) -> serde_json::Value {
    let script = format!("const l = (() => {{ {LINES_JS} }})(); return l.length === {n} && l");
    b.wait_until(&format!("{n} chat lines"), &script, WAIT)
        .await
}

fn line(text: &str, earlier: bool) -> serde_json::Value {
    json!({ "text": text, "earlier": earlier, "label": earlier.then_some("earlier") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_sees_the_earlier_chat_marked_earlier() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = signed_in(&site, ["alice", "bob", "carol"]).await;
    create_room(&alice, &site, &[("bob", "controller"), ("carol", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    bob.goto(&link).await;
    bob.find("#video").await;
    wait_connected(&alice, 1).await;
    wait_connected(&bob, 1).await;

    // The host and the member chat before carol is there.
    send_chat(&alice, "hello from alice").await;
    wait_lines(&bob, 1).await;
    send_chat(&bob, "hi from bob").await;
    let before = [line("hello from alice", false), line("hi from bob", false)];
    for b in [&alice, &bob] {
        assert_eq!(wait_lines(b, 2).await, json!(before), "[{}]", b.name);
    }

    // Carol opens the link late: both messages, in order, once, earlier.
    carol.goto(&link).await;
    carol.find("#video").await;
    wait_connected(&carol, 2).await;
    let earlier = [line("hello from alice", true), line("hi from bob", true)];
    assert_eq!(wait_lines(&carol, 2).await, json!(earlier));

    // A message after she joined is live, below the earlier ones; nobody
    // sees anything twice.
    send_chat(&alice, "welcome carol").await;
    let mut want = earlier.to_vec();
    want.push(line("welcome carol", false));
    assert_eq!(wait_lines(&carol, 3).await, json!(want));
    for b in [&alice, &bob] {
        let mut want = before.to_vec();
        want.push(line("welcome carol", false));
        assert_eq!(wait_lines(b, 3).await, json!(want), "[{}]", b.name);
    }

    alice.close().await;
    bob.close().await;
    carol.close().await;
}
