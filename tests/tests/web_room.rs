//! Rooms in the web app over real WebRTC, each scenario in headless Chromium
//! and in headless Firefox:
//!
//! - three browsers (host, controller, viewer): the host plays, seeks and
//!   pauses from the page; every page's `video.currentTime`, sampled at one
//!   instant, is within 50 ms of the host's after settling;
//! - chat payloads `<img src=x onerror=…>` and `<script>` arrive as literal
//!   text and run nothing;
//! - the viewer's controls are disabled, its `command()` is refused locally,
//!   and host frames it replays or tampers with through the raw data channel
//!   from page script are refused by every other peer;
//! - a native host (in-process driver, virtual player) with a browser
//!   follower, and a browser host with a native follower.
//!
//! The room page screenshot goes to `target/screenshots/room.png`
//! (`room-firefox.png` from Firefox).

mod browser;
#[path = "support/usurper.rs"]
mod usurper;
#[path = "support/webrtc_peer.rs"]
mod webrtc_peer;

use std::net::SocketAddr;
use std::time::Duration;

use browser::native::{wait_event, wait_native_and_page};
use browser::*;
use serde_json::{Value, json};
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, RoomId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::{ApiClient, CreateRoom, Invite};
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{DriverConfig, DriverEvent, DriverHandle, VirtualMedia};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;
use watchparty_peer::virtual_player::VirtualPlayerConfig;

const WAIT: Duration = Duration::from_secs(30);

/// Records every data channel the page creates and, while
/// `__wp_capture_on` is set, the binary messages arriving on them.
const CAPTURE_JS: &str = r#"(() => {
  window.__wp_channels = [];
  window.__wp_captured = [];
  const orig = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (label, init) {
    const ch = orig.call(this, label, init);
    window.__wp_channels.push(ch);
    ch.addEventListener('message', async (e) => {
      if (!window.__wp_capture_on) return;
      let buf = e.data;
      if (buf instanceof Blob) buf = await buf.arrayBuffer();
      if (buf instanceof ArrayBuffer) window.__wp_captured.push({ id: ch.id, data: new Uint8Array(buf.slice(0)) });
    });
    return ch;
  };
})();"#;

/// Sends every captured frame again, and a copy with its last byte (inside
/// the signature) flipped, on every open channel with the same id.
const REPLAY_JS: &str = r#"
  let sent = 0;
  for (const ch of window.__wp_channels) {
    if (ch.readyState !== 'open') continue;
    for (const m of window.__wp_captured) {
      if (m.id !== ch.id) continue;
      ch.send(m.data);
      const t = m.data.slice();
      t[t.length - 1] ^= 0xff;
      ch.send(t);
      sent += 2;
    }
  }
  return sent;"#;

const DROPPED_TOTAL_JS: &str = "const d = window.__watchparty_room.status().dropped || {}; \
     return Object.values(d).reduce((a, b) => a + b, 0);";

const APPLIED_JS: &str = "return window.__watchparty_room.status().counters.commands_applied;";

async fn open_room(b: &Browser, site: &Site, room: &str) {
    b.goto(&site.url(&format!("/room/{room}"))).await;
    b.find("#video").await;
}

fn assert_spread(samples: &[Value]) {
    let t = samples
        .iter()
        .map(|s| s["wall"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let host = position_at(&samples[0], t);
    for s in &samples[1..] {
        let d = (position_at(s, t) - host).abs();
        assert!(
            d <= SYNC_TOLERANCE_MS,
            "follower {d:.1} ms from the host: {samples:?}"
        );
    }
}

in_each_browser!(three_browsers_sync_chat_is_literal_and_viewer_is_refused);

async fn three_browsers_sync_chat_is_literal_and_viewer_is_refused(kind: BrowserKind) {
    if !kind.available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob", "carol"]).await;
    let alice = Browser::launch(kind, "alice", Autoplay::Allowed).await;
    let bob = Browser::launch(kind, "bob", Autoplay::Allowed).await;
    let carol = Browser::launch(kind, "carol", Autoplay::Allowed).await;
    carol.inject_on_new_document(CAPTURE_JS).await;
    sign_in(&alice, &site, "alice").await;
    sign_in(&bob, &site, "bob").await;
    sign_in(&carol, &site, "carol").await;
    let room = create_room(&alice, &site, &[("bob", "controller"), ("carol", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    assert!(
        link.contains("#k="),
        "the invite link pins the host key: {link}"
    );
    // Bob follows the invite link (accepts his invitation on the way).
    bob.goto(&link).await;
    bob.find("#video").await;
    open_room(&carol, &site, &room).await;
    for b in [&alice, &bob, &carol] {
        wait_connected(b, 2).await;
    }

    // Controls by role: host and controller may play, the viewer may not.
    for (b, want) in [(&alice, true), (&bob, true), (&carol, false)] {
        let v = b
            .exec(
                "return !document.getElementById('btn-play').disabled",
                json!([]),
            )
            .await;
        assert_eq!(v, json!(want), "[{}] play enabled", b.name);
    }
    for id in ["btn-pause", "seek", "btn-fwd", "queue-next"] {
        let v = carol
            .exec(
                &format!("return document.getElementById('{id}').disabled"),
                json!([]),
            )
            .await;
        assert_eq!(v, json!(true), "viewer's #{id} is disabled");
    }

    // Play, seek, pause from the host page; everyone follows within 50 ms.
    let pages = [&alice, &bob, &carol];
    carol.exec("window.__wp_capture_on = true", json!([])).await;
    click(&alice, "#btn-play").await;
    let s = wait_in_sync(&pages, false).await;
    assert_spread(&s);
    carol
        .exec("window.__wp_capture_on = false", json!([]))
        .await;
    seek_from_page(&alice, 60_000.0).await;
    let s = wait_in_sync(&pages, false).await;
    assert!(s[0]["pos"].as_f64().unwrap() >= 59_000.0, "{s:?}");
    assert_spread(&s);
    // The controller pauses; the host plays again; the host pauses.
    click(&bob, "#btn-pause").await;
    wait_in_sync(&pages, true).await;
    click(&alice, "#btn-play").await;
    wait_in_sync(&pages, false).await;
    click(&alice, "#btn-pause").await;
    let paused = wait_in_sync(&pages, true).await;
    assert_spread(&paused);
    println!(
        "paused positions: {:?}",
        paused.iter().map(|s| s["pos"].clone()).collect::<Vec<_>>()
    );

    // Chat payloads stay text.
    for b in pages {
        b.exec(
            "window.__alerts = 0; window.alert = () => { window.__alerts++; }; window.__pwned = 0;",
            json!([]),
        )
        .await;
    }
    let payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>window.__pwned = 1; alert(2)</script>",
    ];
    for p in payloads {
        send_chat(&alice, p).await;
    }
    for b in pages {
        let texts = b
            .wait_until(
                "both chat lines",
                "const t = [...document.querySelectorAll('#chat-log .chat-text')].map(e => e.textContent); \
                 return t.length >= 2 && t",
                WAIT,
            )
            .await;
        assert_eq!(texts, json!(payloads), "[{}] literal chat text", b.name);
        let ran = b
            .exec(
                "return {alerts: window.__alerts, pwned: window.__pwned, \
                 img: document.querySelectorAll('#chat-log img').length, \
                 script: document.querySelectorAll('#chat-log script').length}",
                json!([]),
            )
            .await;
        assert_eq!(
            ran,
            json!({"alerts": 0, "pwned": 0, "img": 0, "script": 0}),
            "[{}]",
            b.name
        );
    }
    // The counter and limit: text over it is kept (not cut silently), the
    // counter says by how much it is too long, and Send is off until the
    // text fits.
    let input = alice.find("#chat-input").await;
    alice.type_into(&input, &"x".repeat(520)).await;
    let (len, counter, send_off) = (
        alice
            .exec(
                "return document.getElementById('chat-input').value.length",
                json!([]),
            )
            .await,
        alice.text(&alice.find("#chat-count").await).await,
        alice
            .exec(
                "return document.getElementById('chat-send').disabled",
                json!([]),
            )
            .await,
    );
    assert_eq!(len, json!(520));
    assert_eq!(counter, "520/500 — too long by 20");
    assert_eq!(send_off, json!(true));
    alice.type_into(&input, &"x".repeat(500)).await;
    assert_eq!(
        alice.text(&alice.find("#chat-count").await).await,
        "500/500"
    );
    alice.type_into(&input, "").await;

    // The viewer forcing playback: refused locally by its own client…
    let local = carol
        .exec_async(
            "const done = arguments[arguments.length - 1]; \
             window.__watchparty_room.command({type: 'play'}).then(() => done('accepted'), e => done('refused: ' + e.message));",
            json!([]),
        )
        .await;
    assert!(local.as_str().unwrap().starts_with("refused"), "{local}");
    // …and, replaying / tampering host frames through the raw data
    // channels, refused by every other peer: nobody starts playing.
    let before: Vec<Value> =
        futures_util::future::join_all([&alice, &bob].map(|b| b.exec(DROPPED_TOTAL_JS, json!([]))))
            .await;
    let applied: Vec<Value> =
        futures_util::future::join_all([&alice, &bob].map(|b| b.exec(APPLIED_JS, json!([])))).await;
    let captured = carol
        .exec("return window.__wp_captured.length", json!([]))
        .await;
    assert!(
        captured.as_u64().unwrap() > 0,
        "frames captured on the viewer's channels"
    );
    let sent = carol.exec(REPLAY_JS, json!([])).await;
    assert!(
        sent.as_u64().unwrap() > 0,
        "frames forced through the data channels"
    );
    for (b, before) in [&alice, &bob].iter().zip(&before) {
        b.wait_until(
            "the forced frames refused",
            &format!("{DROPPED_TOTAL_JS_FN} return total() > {before};"),
            WAIT,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_applied: Vec<Value> =
        futures_util::future::join_all([&alice, &bob].map(|b| b.exec(APPLIED_JS, json!([])))).await;
    assert_eq!(applied, after_applied, "no forced command was applied");
    let still = wait_in_sync(&pages, true).await;
    for (a, b) in paused.iter().zip(&still) {
        assert!(
            (a["pos"].as_f64().unwrap() - b["pos"].as_f64().unwrap()).abs() < 1.0,
            "{paused:?} vs {still:?}"
        );
    }

    // The screenshot shows the page from the top (the video), not the
    // chat input the typing scrolled to.
    alice
        .exec(
            "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
            json!([]),
        )
        .await;
    save_screenshot(&alice, &shot_name("room", kind)).await;
    for b in [alice, bob, carol] {
        b.close().await;
    }
}

const DROPPED_TOTAL_JS_FN: &str = "const total = () => { const d = window.__watchparty_room.status().dropped || {}; \
     return Object.values(d).reduce((a, b) => a + b, 0); };";

// ------------------------------------------------------------------ native

async fn native_driver(
    api: &ApiClient,
    room: RoomId,
    identity: watchparty_peer::crypto::SigningKey,
    pin: Option<watchparty_peer::crypto::PublicKey>,
    admit: Option<watchparty_peer::admit::AdmitSecret>,
) -> (DriverHandle, PlayerClock) {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let url = api.signal_url(&room.to_string()).unwrap().to_string();
    let mut cfg = DriverConfig::new(room, url, identity);
    // Every interface: Chromium never uses 127.0.0.1 candidates.
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    cfg.pinned_host = pin;
    cfg.session.admit_secret = admit;
    cfg.jitter_seed = 7;
    let backend = VirtualBackend::new(
        VirtualPlayerConfig {
            duration: Some(MediaPos::from_millis(u64::from(CLIP_SECS) * 1000)),
            ..VirtualPlayerConfig::default()
        },
        clock,
    );
    let h = DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia)
        .await
        .unwrap();
    (h, clock)
}

in_each_browser!(native_host_with_browser_follower_and_browser_host_with_native_follower);

async fn native_host_with_browser_follower_and_browser_host_with_native_follower(
    kind: BrowserKind,
) {
    if !kind.available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["nathost", "webfollow", "webhost", "natfollow"]).await;

    // 1. Native host (virtual player), browser follower via the invite link.
    let host_api = ApiClient::new(&site.base, None).unwrap();
    host_api.login("nathost", PASSWORD).await.unwrap();
    let info = host_api.media().await.unwrap().into_iter().next().unwrap();
    let key = new_signing_key().unwrap();
    let host_pub = key.public_key().to_base64url();
    let room = host_api
        .create_room(&CreateRoom {
            name: "native host".into(),
            media_id: info.id,
            invite_only: true,
            password: None,
            invites: vec![Invite {
                username: "webfollow".into(),
                role: "viewer".into(),
            }],
            host_public_key: host_pub.clone(),
        })
        .await
        .unwrap();
    let room_id: RoomId = room.id.parse().unwrap();
    let (mut host, _clock) = native_driver(&host_api, room_id, key, None, None).await;
    wait_event(&mut host, "host joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let follower = Browser::launch(kind, "webfollow", Autoplay::Allowed).await;
    sign_in(&follower, &site, "webfollow").await;
    follower
        .goto(&site.url(&format!("/room/{}#k={host_pub}", room.id)))
        .await;
    wait_event(&mut host, "browser connected", |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&info.content_hash, &mut hash).unwrap();
    let item = MediaItem {
        media: MediaId::new(&info.id.to_string()).unwrap(),
        hash: ContentHash(hash),
        duration: PositionMs::new(u64::from(CLIP_SECS) * 1000).unwrap(),
    };
    host.command(UserCommand::Load(item)).await.unwrap();
    wait_connected(&follower, 1).await;
    host.command(UserCommand::Seek(MediaPos::from_millis(20_000)))
        .await
        .unwrap();
    host.command(UserCommand::Play).await.unwrap();
    let (n, p) = wait_native_and_page(&host, &follower, false).await;
    println!("native host {n} / page {p}");
    host.command(UserCommand::Seek(MediaPos::from_millis(75_000)))
        .await
        .unwrap();
    let (n, _) = wait_native_and_page(&host, &follower, false).await;
    assert!(n["pos"].as_f64().unwrap() >= 75_000.0, "{n}");
    host.command(UserCommand::Pause).await.unwrap();
    wait_native_and_page(&host, &follower, true).await;
    follower.close().await;
    drop(host);

    // 2. Browser host, native follower.
    let web_host = Browser::launch(kind, "webhost", Autoplay::Allowed).await;
    sign_in(&web_host, &site, "webhost").await;
    let room = create_room(&web_host, &site, &[("natfollow", "viewer")]).await;
    let link = web_host
        .property(&web_host.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    // The link pins the host key and carries the admission secret.
    let fragment = link.split_once('#').map_or("", |(_, f)| f);
    let pin = watchparty_peer::cert::parse_invite_fragment(fragment).unwrap();
    let admit = watchparty_peer::cert::parse_invite_secret(fragment).unwrap();
    assert!(
        admit.is_some(),
        "the host's link carries the admission secret: {link}"
    );
    let f_api = ApiClient::new(&site.base, None).unwrap();
    f_api.login("natfollow", PASSWORD).await.unwrap();
    f_api.join_room(&room, None).await.unwrap();
    let room_id: RoomId = room.parse().unwrap();
    let (mut nf, _clock) =
        native_driver(&f_api, room_id, new_signing_key().unwrap(), pin, admit).await;
    wait_event(&mut nf, "follower joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    wait_event(&mut nf, "connected to the browser host", |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    wait_connected(&web_host, 1).await;
    click(&web_host, "#btn-play").await;
    wait_native_and_page(&nf, &web_host, false).await;
    seek_from_page(&web_host, 90_000.0).await;
    let (n, _) = wait_native_and_page(&nf, &web_host, false).await;
    assert!(n["pos"].as_f64().unwrap() >= 89_000.0, "{n}");
    click(&web_host, "#btn-pause").await;
    let (n, p) = wait_native_and_page(&nf, &web_host, true).await;
    println!("native follower {n} / browser host {p}");
    web_host.close().await;
}

in_each_browser!(browser_host_refuses_a_server_installed_host_and_says_so);

/// A server-installed host (docs/protocol.md §6) against a browser host: a
/// REST handoff the page never signed, then the named member registers a
/// room key of its own and sends signed commands over real WebRTC. The
/// page stays host, in its epoch, its video is not moved, and it tells the
/// person in plain words.
async fn browser_host_refuses_a_server_installed_host_and_says_so(kind: BrowserKind) {
    if !kind.available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["webhost", "usurper"]).await;
    let web_host = Browser::launch(kind, "webhost", Autoplay::Allowed).await;
    sign_in(&web_host, &site, "webhost").await;
    let room = create_room(&web_host, &site, &[("usurper", "viewer")]).await;
    let room_id: RoomId = room.parse().unwrap();
    web_host
        .wait_until(
            "the page hosts with its video loaded",
            "const r = window.__watchparty_room; if (!r) return false; \
             const s = r.status(); const v = document.getElementById('video'); \
             return s.is_host && v && v.readyState >= 1",
            WAIT,
        )
        .await;
    click(&web_host, "#btn-play").await;
    let before = web_host
        .wait_until(
            "playing",
            "const s = window.__watchparty_room.status(); \
             return s.playback && s.playback.playing && s.playback.position_ms > 1000 && s",
            WAIT,
        )
        .await;
    let epoch = before["epoch"].as_u64().unwrap();

    let t_api = ApiClient::new(&site.base, None).unwrap();
    t_api.login("usurper", PASSWORD).await.unwrap();
    t_api.join_room(&room, None).await.unwrap();
    let url = t_api.signal_url(&room).unwrap().to_string();
    // On the namespace's address, not 127.0.0.1: Firefox never connects
    // to a peer whose only candidate is a loopback one.
    let bind = std::env::var("WATCHPARTY_TEST_ADDR")
        .map_or_else(|_| "127.0.0.1:0".to_owned(), |addr| format!("{addr}:0"));
    let mut t = usurper::Usurper::connect_on(&t_api, room_id, url, &bind).await;
    // The host's credentials used elsewhere (or a hostile server): the
    // REST handoff, without the page's signed Handoff.
    let host_api = ApiClient::new(&site.base, None).unwrap();
    host_api.login("webhost", PASSWORD).await.unwrap();
    host_api.handoff(&room, t.me.get()).await.unwrap();
    let t_key = new_signing_key().unwrap();
    let t_epoch = t.register(&t_key).await;
    t.pause_and_seek(&t_key, t_epoch, 5_000).await;

    let banner = web_host
        .wait_until(
            "the warning",
            "const b = document.getElementById('banner'); \
             return !b.hidden && b.textContent.includes('without your approval') && b.textContent",
            WAIT,
        )
        .await;
    assert_eq!(
        banner.as_str().unwrap(),
        "The server tried to give control of this room to usurper without your approval; \
         you are still the host."
    );
    // Still the host, in its epoch, playing on; T's commands moved nothing.
    let after = web_host
        .wait_until(
            "T's frames judged",
            &format!(
                "const s = window.__watchparty_room.status(); \
                 const p = (s.peers || []).find(p => p.user_id === {}); \
                 const d = s.dropped || {{}}; \
                 return p && (d.unknown_signer || 0) >= 2 && s",
                t.me.get()
            ),
            WAIT,
        )
        .await;
    assert_eq!(after["is_host"], true, "{after}");
    assert_eq!(after["epoch"].as_u64(), Some(epoch), "{after}");
    assert_eq!(after["playback"]["playing"], true, "{after}");
    assert!(
        after["playback"]["position_ms"].as_f64().unwrap()
            >= before["playback"]["position_ms"].as_f64().unwrap(),
        "{after}"
    );
    assert_eq!(
        after["refused_host_change"]["user_id"].as_u64(),
        Some(t.me.get()),
        "{after}"
    );
    let label = web_host.text(&web_host.find("#my-role").await).await;
    assert_eq!(label, "You are the host");
    let text = web_host.body_text().await;
    assert!(!text.contains("not_signed_by_host"), "{text}");
    web_host.close().await;
}
