//! A native follower next to the browser pages (in-process driver, virtual
//! player) and a watch that samples a player while something happens
//! elsewhere in the room (used by the reload tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::ids::{ContentHash, RoomId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::ApiClient;
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{
    DriverConfig, DriverEvent, DriverHandle, MediaResolver, VirtualMedia,
};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::native::player::mpv::{MpvBackend, MpvConfig};
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::time::MediaPos;
use watchparty_peer::virtual_player::VirtualPlayerConfig;

use super::CLIP_SECS;

/// Longest wait for a native driver event.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// How far (ms) a player may step back between two samples without
/// counting as a jump (sampling jitter, small corrective seeks).
pub const BACKSTEP_TOLERANCE_MS: f64 = 500.0;

/// The driver configuration of a native follower of `room` (signed in
/// through `api`), host key pinned to `pin` when given.
fn follower_config(
    api: &ApiClient,
    room: RoomId,
    pin: Option<PublicKey>,
    admit: Option<watchparty_peer::admit::AdmitSecret>,
    jitter_seed: u64,
) -> DriverConfig {
    let url = api.signal_url(&room.to_string()).unwrap().to_string();
    let mut cfg = DriverConfig::new(room, url, new_signing_key().unwrap());
    // Every interface: Chromium never uses 127.0.0.1 candidates.
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    cfg.pinned_host = pin;
    cfg.session.admit_secret = admit;
    cfg.jitter_seed = jitter_seed;
    cfg
}

/// A native follower of `room` (signed in through `api`), host key pinned
/// to `pin` when given.
pub async fn native_follower(
    api: &ApiClient,
    room: RoomId,
    pin: Option<PublicKey>,
    admit: Option<watchparty_peer::admit::AdmitSecret>,
) -> DriverHandle {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let cfg = follower_config(api, room, pin, admit, 11);
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

/// The follower's "local copy" of the room's item is a clip on disk.
pub struct ClipMedia(pub PathBuf);

impl MediaResolver for ClipMedia {
    async fn resolve(&self, item: MediaItem) -> Result<(String, ContentHash), String> {
        Ok((self.0.to_string_lossy().into_owned(), item.hash))
    }
}

/// Where a native follower joins a browser host's room: read from the
/// host page's invite link (it pins the host key and carries the
/// admission secret).
pub struct Invite {
    /// The invite link as the page shows it.
    pub link: String,
    /// The room.
    pub room: RoomId,
    /// The host key the link pins.
    pub pin: Option<PublicKey>,
    /// The admission secret the link carries.
    pub admit: Option<watchparty_peer::admit::AdmitSecret>,
}

/// The invite of `room` that `host` (a page on the room it created) shows.
pub async fn invite_of(host: &super::Browser, room: &str) -> Invite {
    let link = host
        .property(&host.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().to_owned();
    let fragment = link.split_once('#').map_or("", |(_, f)| f).to_owned();
    Invite {
        room: room.parse().unwrap(),
        pin: watchparty_peer::cert::parse_invite_fragment(&fragment).unwrap(),
        admit: watchparty_peer::cert::parse_invite_secret(&fragment).unwrap(),
        link,
    }
}

/// Signs `user` in through the API and joins the invite's room.
pub async fn api_join(site: &super::Site, user: &str, invite: &Invite) -> ApiClient {
    let api = ApiClient::new(&site.base, None).unwrap();
    api.login(user, super::PASSWORD).await.unwrap();
    api.join_room(&invite.room.to_string(), None).await.unwrap();
    api
}

/// A native follower whose player is a real mpv (started with `mpv_args`
/// after `--no-config --vo=null`) playing `clip` as the room's item;
/// returns once mpv has loaded it.
pub async fn mpv_follower(
    api: &ApiClient,
    invite: &Invite,
    mpv_args: Vec<String>,
    clip: PathBuf,
    jitter_seed: u64,
) -> DriverHandle {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let cfg = follower_config(api, invite.room, invite.pin, invite.admit, jitter_seed);
    let mut args = vec!["--no-config".to_owned(), "--vo=null".to_owned()];
    args.extend(mpv_args);
    let backend = MpvBackend::spawn(
        MpvConfig {
            args,
            ..MpvConfig::default()
        },
        clock,
    )
    .await
    .expect("mpv starts (`cargo xtask setup` installs it)");
    DriverHandle::spawn(cfg, clock, backend, api.clone(), ClipMedia(clip))
        .await
        .unwrap()
}

/// Waits for the first driver event matching `f`.
pub async fn wait_event(h: &mut DriverHandle, what: &str, f: impl Fn(&DriverEvent) -> bool) {
    let r = tokio::time::timeout(EVENT_WAIT, async {
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

/// Wall-clock now (ms since the epoch), comparable with a page's
/// `performance.timeOrigin + performance.now()`.
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The native player as a page-style sample (`paused` is the room's
/// latest state, which is a *scheduled* pause while the host is away; a
/// [`Watch`] judges a player by its position instead).
pub async fn native_sample(h: &DriverHandle) -> Value {
    let s = h.status().await.unwrap();
    let pb = s.playback.as_ref();
    json!({
        "pos": s.player_position_ms.unwrap_or(f64::NAN),
        // The snapshot's own instant: the reply may come much later on a
        // busy machine, and `pos` is extrapolated to the snapshot.
        "wall": s.wall_ms,
        "paused": pb.is_none_or(|p| p.paused),
        "rate": pb.map_or(1.0, |p| p.rate),
    })
}

/// The room's timeline (the host-signed playback state) as the native
/// follower's clock places it, as a page-style sample: where every player
/// should be at the snapshot instant. Null fields if the native peer has no
/// state or clock yet.
pub async fn room_timeline_sample(h: &DriverHandle) -> Value {
    let s = h.status().await.unwrap();
    let pb = s.playback.as_ref();
    json!({
        "pos": pb.map_or(f64::NAN, |p| p.position_ms),
        "wall": s.wall_ms,
        "paused": pb.is_none_or(|p| p.paused),
        "rate": pb.map_or(1.0, |p| p.rate),
    })
}

/// What a player did while it was watched.
#[derive(Debug, Default)]
pub struct Watch {
    /// Samples taken.
    pub samples: usize,
    /// Samples at which the player had stopped advancing.
    pub paused: Vec<Value>,
    /// Steps back (from, to) larger than [`BACKSTEP_TOLERANCE_MS`].
    pub backsteps: Vec<(f64, f64)>,
    /// The lowest position seen.
    pub min_pos: f64,
}

/// Samples a player every 100 ms until `stop`: records stops and steps
/// back.
pub async fn watch_player<F, Fut>(sample: F, stop: &AtomicBool) -> Watch
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

/// A room of a browser host (alice, Chromium), a browser follower (bob, a
/// second Chromium profile or a Firefox) and a native follower (nat), all
/// connected.
pub struct MixedRoom {
    /// The server.
    pub site: super::Site,
    /// The host's page.
    pub alice: super::Browser,
    /// The browser follower's page.
    pub bob: super::Browser,
    /// The native follower.
    pub nat: DriverHandle,
    /// From bob opening the invite link until his page is connected to the
    /// host with the media loaded.
    pub bob_joined_in: Duration,
    /// From the native follower's start until both pages see all of their
    /// peers.
    pub nat_joined_in: Duration,
}

/// Starts a [`MixedRoom`] with bob in `bob_kind`: alice creates it, bob
/// joins by the invite link, nat by the API; returns once every page sees
/// both of its peers.
pub async fn mixed_room(bob_kind: super::BrowserKind) -> MixedRoom {
    use super::*;
    let site = Site::start(&["alice", "bob", "nat"]).await;
    let alice = Browser::start("alice").await;
    let bob = Browser::launch(bob_kind, "bob", Autoplay::Allowed).await;
    sign_in(&alice, &site, "alice").await;
    sign_in(&bob, &site, "bob").await;
    let room = create_room(&alice, &site, &[("bob", "viewer"), ("nat", "viewer")]).await;
    let invite = invite_of(&alice, &room).await;
    let opened = Instant::now();
    bob.goto(&invite.link).await;
    bob.find("#video").await;
    wait_connected(&bob, 1).await;
    let bob_joined_in = opened.elapsed();
    let api = api_join(&site, "nat", &invite).await;
    let started = Instant::now();
    let mut nat = native_follower(&api, invite.room, invite.pin, invite.admit).await;
    wait_event(&mut nat, "native follower joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    wait_connected(&alice, 2).await;
    wait_connected(&bob, 2).await;
    let nat_joined_in = started.elapsed();
    MixedRoom {
        site,
        alice,
        bob,
        nat,
        bob_joined_in,
        nat_joined_in,
    }
}

/// The host plays and seeks to `pos_ms`; waits until both pages and the
/// native follower play in sync there.
pub async fn play_in_sync_from(r: &MixedRoom, pos_ms: f64) {
    use super::*;
    click(&r.alice, "#btn-play").await;
    wait_in_sync(&[&r.alice, &r.bob], false).await;
    seek_from_page(&r.alice, pos_ms).await;
    let s = wait_in_sync(&[&r.alice, &r.bob], false).await;
    assert!(s[0]["pos"].as_f64().unwrap() >= pos_ms - 1_000.0, "{s:?}");
    let native_ok = tokio::time::timeout(SETTLE, async {
        loop {
            let (n, p) = tokio::join!(native_sample(&r.nat), r.alice.exec(SAMPLE_JS, json!([])));
            if n["paused"] == json!(false) && native_offset(&n, &p).abs() <= SYNC_TOLERANCE_MS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert!(native_ok.is_ok(), "the native follower follows the host");
}

/// Waits until the native peer and the page agree within 50 ms, three
/// samples in a row, measured at one instant.
pub async fn wait_native_and_page(
    h: &DriverHandle,
    b: &super::Browser,
    paused: bool,
) -> (Value, Value) {
    use super::{SAMPLE_JS, SETTLE, SYNC_TOLERANCE_MS};
    let started = Instant::now();
    let mut good = 0;
    let mut last = (Value::Null, Value::Null, f64::MAX);
    while started.elapsed() < SETTLE {
        let (n, p) = tokio::join!(native_sample(h), b.exec(SAMPLE_JS, json!([])));
        let d = native_offset(&n, &p).abs();
        let ok =
            n["paused"] == json!(paused) && p["paused"] == json!(paused) && p["seeking"] == false;
        last = (n, p, d);
        if ok && d <= SYNC_TOLERANCE_MS {
            good += 1;
            if good >= 3 {
                return (last.0, last.1);
            }
        } else {
            good = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "native and page not in sync: {:.1} ms apart; native {} page {}",
        last.2, last.0, last.1
    );
}

/// The native sample's offset (ms) to a page's sample, at the later of
/// the two sampling instants.
pub fn native_offset(native: &Value, page: &Value) -> f64 {
    let t = native["wall"]
        .as_f64()
        .unwrap()
        .max(page["wall"].as_f64().unwrap());
    super::position_at(native, t) - super::position_at(page, t)
}
