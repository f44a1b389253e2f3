//! Issue #20 item 1: the host reloads its page mid-play. Real server, real
//! WebRTC, headless Chromium: a browser host, a browser follower (a second
//! Chromium profile) and a native follower (in-process driver, virtual
//! player). The host plays and seeks to 20 s, everyone follows; the host's
//! page reloads. The room must resume where it was (±1 s of where it
//! would be by then) and playing, and neither follower may pause or jump
//! back meanwhile. Prints `host reload: room resumed in N ms`
//! (docs/protocol.md §7.2).

mod browser;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use browser::*;
use serde_json::{Value, json};
use watchparty_peer::ids::RoomId;
use watchparty_peer::native::api_client::ApiClient;
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{DriverConfig, DriverEvent, DriverHandle, VirtualMedia};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::time::MediaPos;
use watchparty_peer::virtual_player::VirtualPlayerConfig;

const WAIT: Duration = Duration::from_secs(30);

/// Longest time the room may take to be back after the reload started.
const RESUME_LIMIT: Duration = Duration::from_secs(30);

/// How far (ms) the resumed room may be from where it would be had the
/// host never left.
const POSITION_TOLERANCE_MS: f64 = 1_000.0;

/// How far (ms) a follower's player may step back between two samples
/// without counting as a jump (sampling jitter, small corrective seeks).
const BACKSTEP_TOLERANCE_MS: f64 = 500.0;

async fn native_follower(
    api: &ApiClient,
    room: RoomId,
    pin: Option<watchparty_peer::crypto::PublicKey>,
) -> DriverHandle {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let url = api.signal_url(&room.to_string()).unwrap().to_string();
    let mut cfg = DriverConfig::new(room, url, new_signing_key().unwrap());
    // Every interface: Chromium never uses 127.0.0.1 candidates.
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    cfg.pinned_host = pin;
    cfg.jitter_seed = 11;
    let backend = VirtualBackend::new(
        VirtualPlayerConfig {
            duration: Some(MediaPos::from_millis(u64::from(CLIP_SECS) * 1000)),
            ..VirtualPlayerConfig::default()
        },
        clock,
    );
    DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia)
        .await
        .unwrap()
}

async fn wait_event(h: &mut DriverHandle, what: &str, f: impl Fn(&DriverEvent) -> bool) {
    let r = tokio::time::timeout(WAIT, async {
        loop {
            match h.events.recv().await {
                Some(e) if f(&e) => return,
                Some(DriverEvent::Stopped { reason }) => panic!("driver stopped: {reason}"),
                Some(_) => {}
                None => panic!("driver gone"),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for {what}");
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The native player as a page-style sample (`paused` is the room's
/// latest state, which is a *scheduled* pause while the host is away; the
/// watch judges the native player by its position instead).
async fn native_sample(h: &DriverHandle) -> Value {
    let s = h.status().await.unwrap();
    let pb = s.playback.as_ref();
    json!({
        "pos": s.player_position_ms.unwrap_or(f64::NAN),
        "wall": wall_ms(),
        "paused": pb.is_none_or(|p| p.paused),
        "rate": pb.map_or(1.0, |p| p.rate),
    })
}

/// What a follower did while the host was away.
#[derive(Debug, Default)]
struct Watch {
    samples: usize,
    paused: Vec<Value>,
    backsteps: Vec<(f64, f64)>,
    min_pos: f64,
}

/// Samples a follower every 100 ms until `stop`: records pauses and steps
/// back.
async fn watch_follower<F, Fut>(sample: F, stop: &AtomicBool) -> Watch
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut w = Watch {
        min_pos: f64::MAX,
        ..Watch::default()
    };
    let mut last: Option<(f64, f64)> = None;
    while !stop.load(Ordering::SeqCst) {
        let s = sample().await;
        w.samples += 1;
        let pos = s["pos"].as_f64().unwrap_or(f64::NAN);
        let wall = s["wall"].as_f64().unwrap_or(f64::NAN);
        if let Some((prev, prev_wall)) = last {
            if pos < prev - BACKSTEP_TOLERANCE_MS {
                w.backsteps.push((prev, pos));
            }
            // Stopped: the player advanced less than half the time passed.
            if pos - prev < (wall - prev_wall) * 0.5 {
                w.paused.push(s.clone());
            }
        }
        w.min_pos = w.min_pos.min(pos);
        last = Some((pos, wall));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w
}

/// The room position (ms) and state as the page's RoomClient sees it.
const PLAYBACK_JS: &str = "const r = window.__watchparty_room; if (!r) return null; \
     let s; try { s = r.status(); } catch (e) { return null; } \
     const v = document.getElementById('video'); \
     return {playback: s.playback, resuming: !!s.resuming, is_host: s.is_host, epoch: s.epoch, \
       origin: performance.timeOrigin, wall: performance.timeOrigin + performance.now(), \
       video_pos: v ? v.currentTime * 1000 : null, video_paused: v ? v.paused : null, \
       ready: v ? v.readyState : null};";

const MESSAGE_JS: &str = "const m = document.getElementById('room-message'); \
     return m && !m.hidden ? m.textContent : '';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reload_resumes_the_room_and_followers_never_stop() {
    if !browser_available() {
        return;
    }
    require_room_client();
    let site = Site::start(&["alice", "bob", "nat"]).await;
    let alice = Browser::start("alice").await;
    let bob = Browser::start("bob").await;
    sign_in(&alice, &site, "alice").await;
    sign_in(&bob, &site, "bob").await;
    let room = create_room(&alice, &site, &[("bob", "viewer"), ("nat", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    let pin = link
        .split_once("#k=")
        .map(|(_, k)| watchparty_peer::crypto::PublicKey::from_base64url(k).unwrap());
    bob.goto(&link).await;
    bob.find("#video").await;
    let api = ApiClient::new(&site.base, None).unwrap();
    api.login("nat", PASSWORD).await.unwrap();
    api.join_room(&room, None).await.unwrap();
    let mut nat = native_follower(&api, room.parse().unwrap(), pin).await;
    wait_event(&mut nat, "native follower joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    wait_connected(&alice, 2).await;
    wait_connected(&bob, 2).await;

    // Play, seek to 20 s; everyone follows.
    click(&alice, "#btn-play").await;
    wait_in_sync(&[&alice, &bob], false).await;
    seek_from_page(&alice, 20_000.0).await;
    let s = wait_in_sync(&[&alice, &bob], false).await;
    assert!(s[0]["pos"].as_f64().unwrap() >= 19_000.0, "{s:?}");
    let native_ok = tokio::time::timeout(SETTLE, async {
        loop {
            let (n, p) = tokio::join!(native_sample(&nat), alice.exec(SAMPLE_JS, json!([])));
            let t = n["wall"].as_f64().unwrap().max(p["wall"].as_f64().unwrap());
            if n["paused"] == json!(false)
                && (position_at(&n, t) - position_at(&p, t)).abs() <= SYNC_TOLERANCE_MS
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert!(native_ok.is_ok(), "the native follower follows the host");

    // The room before the reload: where it would be at any later instant.
    let before = alice.exec(PLAYBACK_JS, json!([])).await;
    let pb = &before["playback"];
    assert_eq!(pb["playing"], json!(true), "{before}");
    let (pos0, wall0) = (
        pb["position_ms"].as_f64().unwrap(),
        before["wall"].as_f64().unwrap(),
    );
    let expected_at = |wall: f64| pos0 + (wall - wall0);

    // The host reloads; both followers are watched meanwhile.
    let stop = AtomicBool::new(false);
    let reload = async {
        let started = Instant::now();
        let origin = before["origin"].clone();
        alice
            .exec("setTimeout(() => location.reload(), 0)", json!([]))
            .await;
        let back = alice
            .wait_until(
                "the reloaded host page running the room again",
                &format!(
                    "const r = window.__watchparty_room; if (!r || performance.timeOrigin === {origin}) return false; \
                     let s; try {{ s = r.status(); }} catch (e) {{ return false; }} \
                     const v = document.getElementById('video'); \
                     return s.is_host && !s.resuming && s.playback && s.playback.playing && \
                       v && !v.paused && !v.seeking && v.readyState >= 3 && \
                       Math.abs(v.currentTime * 1000 - s.playback.position_ms) < 200;"
                ),
                RESUME_LIMIT,
            )
            .await;
        let took = started.elapsed();
        assert_eq!(back, json!(true));
        let after = alice.exec(PLAYBACK_JS, json!([])).await;
        stop.store(true, Ordering::SeqCst);
        (took, after)
    };
    let (w_bob, w_nat, (took, after)) = tokio::join!(
        watch_follower(|| bob.exec(SAMPLE_JS, json!([])), &stop),
        watch_follower(|| native_sample(&nat), &stop),
        reload
    );
    println!("host reload: room resumed in {} ms", took.as_millis());
    println!(
        "followers sampled while the host was away: page {} / native {}",
        w_bob.samples, w_nat.samples
    );

    // Same position (±1 s of where it would be by now) and playing.
    let pb = &after["playback"];
    assert_eq!(pb["playing"], json!(true), "{after}");
    let pos = pb["position_ms"].as_f64().unwrap();
    let want = expected_at(after["wall"].as_f64().unwrap());
    assert!(
        (pos - want).abs() <= POSITION_TOLERANCE_MS,
        "room at {pos:.0} ms after the reload, expected {want:.0} ms"
    );
    // The followers never paused, never went back (to 0 or anywhere).
    for (name, w) in [("browser follower", &w_bob), ("native follower", &w_nat)] {
        assert!(w.samples > 0, "{name} sampled");
        assert!(w.paused.is_empty(), "{name} paused: {:?}", w.paused);
        assert!(
            w.backsteps.is_empty(),
            "{name} jumped back: {:?}",
            w.backsteps
        );
        assert!(
            w.min_pos >= pos0 - BACKSTEP_TOLERANCE_MS,
            "{name} went to {}",
            w.min_pos
        );
    }
    // Everyone in sync again, and no stale error on the follower's page.
    let s = wait_in_sync(&[&alice, &bob], false).await;
    println!("after the reload: {s:?}");
    let msg = bob.exec(MESSAGE_JS, json!([])).await;
    assert_eq!(msg, json!(""), "the follower's page shows no error");
    let n = native_sample(&nat).await;
    let p = alice.exec(SAMPLE_JS, json!([])).await;
    let t = n["wall"].as_f64().unwrap().max(p["wall"].as_f64().unwrap());
    assert!(
        (position_at(&n, t) - position_at(&p, t)).abs() <= 250.0,
        "native {n} / host page {p}"
    );
    // Only a run that passed is a figure (`cargo xtask bench`).
    record_room_life_figure("host_reload_resume", took.as_secs_f64() * 1000.0);
    for b in [alice, bob] {
        b.close().await;
    }
}
