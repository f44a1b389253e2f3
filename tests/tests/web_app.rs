//! The web app in headless Chromium and in headless Firefox against the
//! real server: sign in, the
//! media list, room creation with invitees limited to people who can watch
//! the item, the invitation inbox, the password prompt, clear refusals, and
//! the room page (screenshot under `target/screenshots/`).
//!
//! The playback tests (sync between browsers and with native peers, chat
//! safety, viewer refusal) are in `web_room.rs`.

mod browser;

use std::time::Duration;

use browser::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

in_each_browser!(sign_in_create_room_invite_accept_and_refusals);

async fn sign_in_create_room_invite_accept_and_refusals(kind: BrowserKind) {
    if !kind.available() {
        return;
    }
    let start = |name: &'static str| Browser::launch(kind, name, Autoplay::Allowed);
    let site = Site::start(&["alice", "bob", "dave"]).await;
    site.add_user_without_access("carol").await;
    let alice = start("alice").await;

    // Unknown API paths stay JSON; app routes get the page.
    alice
        .goto(&site.url("/room/0123456789abcdef0123456789abcdef"))
        .await;
    alice.find("#login-form").await;

    // Wrong password: a clear message, no navigation.
    let u = alice.find("#login-username").await;
    alice.type_into(&u, "alice").await;
    let p = alice.find("#login-password").await;
    alice.type_into(&p, "not-the-password").await;
    alice.click(&alice.find("#login-submit").await).await;
    alice
        .wait_until(
            "the login error",
            "const m = document.getElementById('login-message'); return !m.hidden && m.textContent",
            WAIT,
        )
        .await;
    let msg = alice.text(&alice.find("#login-message").await).await;
    assert_eq!(msg, "Wrong username or password.");

    sign_in(&alice, &site, "alice").await;
    // Signing in returns to the page asked for first: that room does not
    // exist, which the page says plainly.
    let m = alice
        .wait_until(
            "the unknown-room message",
            "const m = document.getElementById('room-message'); return location.pathname.startsWith('/room/') && m && !m.hidden && m.textContent",
            WAIT,
        )
        .await;
    assert!(m.as_str().unwrap().contains("does not exist"), "{m}");
    alice.goto(&site.url("/")).await;
    // The access token (in the page's memory only) never appears in the URL
    // or in storage (web_session.rs covers the refresh cookie).
    let leaks = alice
        .exec_async(
            "const done = arguments[arguments.length - 1]; \
             import('/js/api.js').then(m => m.ready.then(() => { const t = m.accessToken(); \
             done(!t || location.href.includes(t) || [...Object.values(localStorage), ...Object.values(sessionStorage)].some(v => v.includes(t))); }));",
            json!([]),
        )
        .await;
    assert_eq!(leaks, json!(false));

    // Media page lists the clip.
    alice.find("#libraries .media-list li").await;
    let text = alice.body_text().await;
    assert!(text.contains("films"), "{text}");

    // Create: only users who can access the item are offered (not carol).
    alice.goto(&site.url("/create")).await;
    alice.find("#inv-bob").await;
    let offered = alice
        .exec(
            "return [...document.querySelectorAll('#create-invitees input[type=checkbox]')].map(c => c.dataset.username)",
            json!([]),
        )
        .await;
    assert_eq!(offered, json!(["bob", "dave"]));
    let room = create_room(&alice, &site, &[("bob", "viewer")]).await;
    alice.find("#invite-link").await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&site.url(&format!("/room/{room}"))),
        "{link}"
    );
    assert!(!link.contains("token"), "{link}");

    // Bob: the inbox shows the invitation; accepting opens the room.
    let bob = start("bob").await;
    sign_in(&bob, &site, "bob").await;
    bob.wait_until(
        "the invitation badge",
        "const b = document.getElementById('invite-count'); return !b.hidden && b.textContent === '1'",
        WAIT,
    )
    .await;
    bob.goto(&site.url("/invites")).await;
    let item = bob.find("#invite-list li.invite").await;
    let item_text = bob.text(&item).await;
    assert!(item_text.contains("alice"), "{item_text}");
    assert!(item_text.contains("viewer"), "{item_text}");
    bob.click(&bob.find("#invite-list li.invite button.primary").await)
        .await;
    bob.wait_until(
        "bob in the room",
        &format!("return location.pathname === '/room/{room}' && document.getElementById('room-title').textContent"),
        WAIT,
    )
    .await;
    bob.find("#video").await;
    // A viewer's transport controls are disabled, whatever the connection state.
    for id in ["btn-play", "btn-pause", "seek", "rate", "queue-next"] {
        let el = bob.find(&format!("#{id}")).await;
        assert!(!bob.enabled(&el).await, "viewer's #{id} is disabled");
    }
    // The viewer has no host tools.
    let hidden = bob
        .exec(
            "return document.getElementById('host-tools').hidden",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!(true));

    // Carol is not invited to the invite-only room (a bare address, no
    // invite link): the page says so and what to do.
    let carol = start("carol").await;
    sign_in(&carol, &site, "carol").await;
    carol.goto(&site.url(&format!("/room/{room}"))).await;
    let m = carol
        .wait_until(
            "the not-invited message",
            "const m = document.getElementById('room-message'); return m && !m.hidden && m.textContent",
            WAIT,
        )
        .await;
    assert_eq!(
        m,
        json!(
            "This room does not exist, or you are not invited to it. \
             If someone sent you the link, ask them to invite carol."
        )
    );
    carol.close().await;

    // An open room with a password: dave gets the prompt, a wrong password
    // is refused with a clear message, the right one lets him in.
    let token = alice
        .exec_async(
            "const done = arguments[arguments.length - 1]; import('/js/api.js').then(m => m.ready.then(() => done(m.accessToken())));",
            json!([]),
        )
        .await;
    let token = token.as_str().unwrap().to_owned();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let open: serde_json::Value = http
        .post(site.url("/api/v1/rooms"))
        .bearer_auth(&token)
        .json(&json!({"name": "open night", "media_id": site.media_id, "invite_only": false, "password": "room-pass-123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let open_id = open["id"].as_str().unwrap().to_owned();
    let dave = start("dave").await;
    sign_in(&dave, &site, "dave").await;
    dave.goto(&site.url(&format!("/room/{open_id}"))).await;
    let pw = dave.find("#room-password").await;
    dave.type_into(&pw, "wrong-password").await;
    dave.click(&dave.find("#room-password-submit").await).await;
    let m = dave
        .wait_until(
            "the wrong-password message",
            "const m = document.getElementById('room-password-message'); return !m.hidden && m.textContent",
            WAIT,
        )
        .await;
    assert_eq!(m, json!("Wrong room password."));
    let pw = dave.find("#room-password").await;
    dave.type_into(&pw, "room-pass-123").await;
    dave.click(&dave.find("#room-password-submit").await).await;
    dave.wait_until(
        "dave in the open room",
        "const t = document.getElementById('room-title'); return t && t.textContent === 'open night' && document.getElementById('video')",
        WAIT,
    )
    .await;
    dave.close().await;

    // The room page as the host sees it.
    alice.goto(&site.url(&format!("/room/{room}"))).await;
    alice.find("#chat-input").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    save_screenshot(&alice, &shot_name("room-pages", kind)).await;
    alice.close().await;
    bob.close().await;
}
