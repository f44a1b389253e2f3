//! The room page as people live it (issue 20, items 3, 4 and 6), in two
//! headless Chromium profiles against the real server over real WebRTC:
//!
//! - the host makes a viewer a controller from the member list: both pages
//!   show the new role at once and keep it (the follower's play/pause
//!   buttons work), and back;
//! - what the page says is plain language: a refused control and a lost
//!   connection to the server read as exact sentences, and the member list
//!   shows no clock offsets or codes;
//! - someone opening the link of an invite-only room without an invitation
//!   reads that they are not invited and whom to ask; the host invites them
//!   from the room page and the same link then lets them in.

mod browser;

use std::time::{Duration, Instant};

use browser::*;
use serde_json::{Value, json};
use watchparty_signal::ws::hub::CloseCmd;

const WAIT: Duration = Duration::from_secs(30);
/// How soon a role change must show on both pages ("at once", with room for
/// a loaded 2-core machine).
const ROLE_SHOWN: Duration = Duration::from_secs(5);

async fn user_id(site: &Site, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE username = ?1")
        .bind(name)
        .fetch_one(&site.state.db)
        .await
        .unwrap()
}

async fn server_role(site: &Site, room: &str, user: i64) -> String {
    sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = ?1 AND user_id = ?2")
        .bind(room)
        .bind(user)
        .fetch_one(&site.state.db)
        .await
        .unwrap()
}

/// What a page shows about itself and about `member`: its own role label,
/// whether play is enabled, the member's role pill and the host's button.
fn view_js(member: i64) -> String {
    format!(
        "const row = document.querySelector('#members li[data-user=\"{member}\"]'); \
         const t = row && row.querySelector('.role-toggle'); \
         return {{ me: document.getElementById('my-role').textContent, \
                   play: !document.getElementById('btn-play').disabled, \
                   pause: !document.getElementById('btn-pause').disabled, \
                   member: row ? row.querySelector('.role').textContent : null, \
                   toggle: t ? t.textContent : null }};"
    )
}

/// Waits until `b` shows `want` for `member` (fields absent in `want` are
/// not compared); returns how long it took.
async fn wait_view(b: &Browser, member: i64, want: &Value, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let v = b.exec(&view_js(member), json!([])).await;
        let matches = want
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, w)| v.get(k) == Some(w));
        if matches {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "[{}] did not show {want} within {within:?}: {v}; {}",
            b.name,
            b.exec(DIAG_JS, json!([])).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples `b` until `settled` says the server has the role too, then a
/// little longer; every sample must still show `want` (no stale read
/// taking the role back).
async fn assert_view_stays(b: &Browser, member: i64, want: &Value, samples: usize) {
    for _ in 0..samples {
        let v = b.exec(&view_js(member), json!([])).await;
        for (k, w) in want.as_object().unwrap() {
            assert_eq!(v.get(k), Some(w), "[{}] {k} changed back: {v}", b.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn message(b: &Browser, id: &str) -> String {
    b.wait_until(
        &format!("#{id}"),
        &format!(
            "const m = document.getElementById('{id}'); return m && !m.hidden && m.textContent"
        ),
        WAIT,
    )
    .await
    .as_str()
    .unwrap()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_show_at_once_and_messages_are_plain_words() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob"]).await;
    let bob_id = user_id(&site, "bob").await;
    let [alice, bob] = signed_in(&site, ["alice", "bob"]).await;
    let room = create_room(&alice, &site, &[("bob", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    bob.goto(link.as_str().unwrap()).await;
    bob.find("#video").await;
    wait_connected(&alice, 1).await;
    wait_connected(&bob, 1).await;

    let viewer = json!({"me": "You are a viewer", "play": false, "member": "viewer"});
    wait_view(&bob, bob_id, &viewer, WAIT).await;
    let host_sees_viewer = json!({"member": "viewer", "toggle": "Make controller"});
    wait_view(&alice, bob_id, &host_sees_viewer, WAIT).await;
    // One role per row: the pill, and the host's button saying what it does.
    let row = alice
        .exec(
            &format!(
                "return document.querySelector('#members li[data-user=\"{bob_id}\"]').textContent"
            ),
            json!([]),
        )
        .await;
    assert_eq!(
        row.as_str().unwrap().matches("viewer").count(),
        1,
        "the role shows once: {row}"
    );

    // The viewer's refused control, in plain words (a stale page whose
    // button was still on).
    bob.exec(
        "const b = document.getElementById('btn-pause'); b.disabled = false; b.click();",
        json!([]),
    )
    .await;
    assert_eq!(
        message(&bob, "room-message").await,
        "Only the host and controllers can control playback; you can ask the host instead."
    );

    // The host makes bob a controller from the member list.
    click(
        &alice,
        &format!("#members li[data-user=\"{bob_id}\"] .role-toggle"),
    )
    .await;
    let controller =
        json!({"me": "You are a controller", "play": true, "pause": true, "member": "controller"});
    let host_sees = json!({"member": "controller", "toggle": "Make viewer"});
    let (on_bob, on_alice) = tokio::join!(
        wait_view(&bob, bob_id, &controller, ROLE_SHOWN),
        wait_view(&alice, bob_id, &host_sees, ROLE_SHOWN),
    );
    println!(
        "role change shown: on the controller's page after {on_bob:?}, on the host's after {on_alice:?}"
    );
    // It stays once the server has it too (a late REST read does not take
    // it back).
    let started = Instant::now();
    while server_role(&site, &room, bob_id).await != "controller" {
        assert!(started.elapsed() < WAIT, "the server never stored the role");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_view_stays(&bob, bob_id, &controller, 15).await;
    assert_view_stays(&alice, bob_id, &host_sees, 5).await;
    // The follower's buttons work: bob starts the room, both pages play.
    click(&bob, "#btn-play").await;
    wait_in_sync(&[&alice, &bob], false).await;
    click(&bob, "#btn-pause").await;
    wait_in_sync(&[&alice, &bob], true).await;

    // The member list shows each member's playback offset, never the
    // difference between two machines' clocks.
    for b in [&alice, &bob] {
        let text = b
            .exec(
                "return document.getElementById('members').textContent",
                json!([]),
            )
            .await;
        let text = text.as_str().unwrap();
        for bad in ["offset", "error", "rtt", "code"] {
            assert!(!text.contains(bad), "[{}] member list: {text}", b.name);
        }
    }

    // And back to viewer.
    click(
        &alice,
        &format!("#members li[data-user=\"{bob_id}\"] .role-toggle"),
    )
    .await;
    tokio::join!(
        wait_view(&bob, bob_id, &viewer, ROLE_SHOWN),
        wait_view(&alice, bob_id, &host_sees_viewer, ROLE_SHOWN),
    );

    // The server drops bob's signaling connection: the banner says what
    // happened in words, then clears when the page is back.
    bob.exec(
        "window.__banners = []; const b = document.getElementById('banner'); \
         new MutationObserver(() => { if (!b.hidden) window.__banners.push(b.textContent); }) \
           .observe(b, { childList: true, characterData: true, subtree: true, attributes: true });",
        json!([]),
    )
    .await;
    let closed = site.state.hub.close_user(
        bob_id,
        CloseCmd {
            code: 1011,
            reason: "internal error",
        },
    );
    assert!(closed > 0, "bob had a signaling connection");
    let banners = bob
        .wait_until(
            "the reconnect notice",
            "return window.__banners.length > 0 && window.__banners",
            WAIT,
        )
        .await;
    assert_eq!(
        banners[0],
        json!(
            "Lost the connection to the server. Reconnecting… The video keeps playing meanwhile."
        ),
        "{banners}"
    );
    bob.wait_until(
        "reconnected",
        "const r = window.__watchparty_room; return r && r.status().signaling && document.getElementById('banner').hidden",
        WAIT,
    )
    .await;
    let pill = bob.text(&bob.find("#conn-status").await).await;
    assert_eq!(pill, "connected");

    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_invites_from_the_room_page_and_the_uninvited_read_why() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "dave"]).await;
    let [alice, dave] = signed_in(&site, ["alice", "dave"]).await;
    // Invite-only (the default), nobody invited.
    create_room(&alice, &site, &[]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    let note = alice.text(&alice.find("#invite-note").await).await;
    assert_eq!(
        note,
        "Only people you invite can join, even with the link. Invite them below, then send them the link."
    );

    // An empty queue says so (not as item 1), with nowhere to go back or
    // skip to.
    wait_connected(&alice, 0).await;
    let q = alice
        .wait_until(
            "the queue state",
            "const e = document.getElementById('queue-empty'); \
             return !document.getElementById('btn-play').disabled && { empty: !e.hidden && e.textContent, \
               items: document.querySelectorAll('#queue li').length, \
               prev: document.getElementById('queue-prev').disabled, \
               next: document.getElementById('queue-next').disabled }",
            WAIT,
        )
        .await;
    assert_eq!(
        q,
        json!({"empty": "The queue is empty.", "items": 0, "prev": true, "next": true})
    );

    // Dave opens the link without an invitation.
    dave.goto(&link).await;
    assert_eq!(
        message(&dave, "room-message").await,
        "You are not invited to this room. Ask the host to invite dave."
    );

    // The host invites a name that does not exist, then dave.
    let user = alice.find("#invite-username").await;
    alice.type_into(&user, "nobody").await;
    click(&alice, "#invite-send").await;
    assert_eq!(
        message(&alice, "invite-message").await,
        "There is no user named nobody on this server."
    );
    alice.type_into(&user, "dave").await;
    alice
        .exec(
            "document.getElementById('invite-role').value = 'controller'",
            json!([]),
        )
        .await;
    click(&alice, "#invite-send").await;
    alice
        .wait_until(
            "the invitation confirmed",
            "const m = document.getElementById('invite-message'); return m.textContent.startsWith('Invited dave as controller.')",
            WAIT,
        )
        .await;
    let pending = alice.text(&alice.find("#invite-pending li").await).await;
    assert_eq!(
        pending,
        "dave (dave) — invited as controller, not joined yet"
    );

    // The same link now lets dave in, as a controller.
    dave.goto(&link).await;
    dave.find("#video").await;
    wait_connected(&dave, 1).await;
    wait_connected(&alice, 1).await;
    dave.wait_until(
        "dave's role",
        "return document.getElementById('my-role').textContent === 'You are a controller'",
        WAIT,
    )
    .await;
    alice
        .wait_until(
            "dave in the host's member list, no longer pending",
            "const names = [...document.querySelectorAll('#members .name')].map(e => e.textContent); \
             return names.includes('dave') && document.querySelectorAll('#invite-pending li').length === 0",
            WAIT,
        )
        .await;
    // The invite form is the host's only.
    let hidden = dave
        .exec(
            "return document.getElementById('invite-form').hidden",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!(true));

    alice.close().await;
    dave.close().await;
}
