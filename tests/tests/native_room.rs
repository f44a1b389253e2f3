//! Whole-room test of the native driver: the real signaling server
//! (in-process, real SQLite file, real HTTP/WebSocket on 127.0.0.1) and three
//! native drivers (host + two followers, virtual players) in one process,
//! with real WebRTC (str0m) over loopback UDP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::timeout;
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, RoomId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::{ApiClient, CreateRoom, Invite};
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{
    DriverConfig, DriverEvent, DriverHandle, StatusSnapshot, VirtualMedia,
};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;
use watchparty_peer::virtual_player::VirtualPlayerConfig;
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::validate::{DisplayName, Username};

const PASSWORD: &str = "correct-horse-battery";

async fn add_user(state: &AppState, name: &str) -> i64 {
    let hash = state.hasher.hash(PASSWORD.as_bytes()).await.unwrap();
    watchparty_signal::accounts::create_user(
        &state.db,
        &Username::parse(name).unwrap(),
        &DisplayName::parse(name).unwrap(),
        &hash,
        false,
    )
    .await
    .unwrap()
}

async fn spawn_driver(
    api: &ApiClient,
    room: RoomId,
    identity: watchparty_peer::crypto::SigningKey,
    pin: Option<watchparty_peer::crypto::PublicKey>,
) -> DriverHandle {
    let clock = PlayerClock::new(tokio::time::Instant::now());
    let url = api.signal_url(&room.to_string()).unwrap().to_string();
    let mut cfg = DriverConfig::new(room, url, identity);
    cfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.pinned_host = pin;
    cfg.jitter_seed = 42;
    let backend = VirtualBackend::new(
        VirtualPlayerConfig {
            duration: Some(MediaPos::from_millis(600_000)),
            ..VirtualPlayerConfig::default()
        },
        clock,
    );
    DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia)
        .await
        .unwrap()
}

/// Waits for an event matching `f` (other events are skipped).
async fn wait_for(h: &mut DriverHandle, what: &str, f: impl Fn(&DriverEvent) -> bool) {
    let r = timeout(Duration::from_secs(30), async {
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

async fn settled(h: &DriverHandle, paused: bool) -> StatusSnapshot {
    for _ in 0..200 {
        let s = h.status().await.unwrap();
        if let (Some(p), Some(pos)) = (s.playback, s.player_position_ms)
            && p.paused == paused
            && (pos - p.position_ms).abs() < 50.0
            && !s.correcting
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not settled: {:?}", h.status().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_two_followers_sync_over_real_server_and_webrtc() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut movie = vec![7u8; 10_000];
    movie[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
    std::fs::write(lib.join("movie.mp4"), &movie).unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.argon2 = Argon2Cost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let state = AppState::new(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let st = state.clone();
    tokio::spawn(async move {
        watchparty_signal::server::serve(st, listener, std::future::pending()).await
    });
    let lib_id: i64 = sqlx::query_scalar(
        "INSERT INTO libraries (name, root_path, created_at) VALUES ('films', ?1, 0) RETURNING id",
    )
    .bind(std::fs::canonicalize(&lib).unwrap().to_str().unwrap())
    .fetch_one(&state.db)
    .await
    .unwrap();
    watchparty_signal::media::scan::scan_library(&state.db, lib_id)
        .await
        .unwrap();
    let names = ["host", "alice", "bob"];
    let mut apis = Vec::new();
    for n in names {
        let id = add_user(&state, n).await;
        sqlx::query(
            "INSERT INTO library_grants (user_id, library_id, created_at) VALUES (?1, ?2, 0)",
        )
        .bind(id)
        .bind(lib_id)
        .execute(&state.db)
        .await
        .unwrap();
        let api = ApiClient::new(&base, None).unwrap();
        api.login(n, PASSWORD).await.unwrap();
        apis.push(api);
    }
    let media = apis[0].media().await.unwrap();
    let info = media.first().expect("one media item");
    let host_key = new_signing_key().unwrap();
    let room = apis[0]
        .create_room(&CreateRoom {
            name: "native".into(),
            media_id: info.id,
            invite_only: true,
            password: None,
            invites: ["alice", "bob"]
                .iter()
                .map(|u| Invite {
                    username: (*u).into(),
                    role: "viewer".into(),
                })
                .collect(),
            host_public_key: host_key.public_key().to_base64url(),
        })
        .await
        .unwrap();
    let room_id: RoomId = room.id.parse().unwrap();
    for api in &apis[1..] {
        api.join_room(&room.id, None).await.unwrap();
    }
    let pin = host_key.public_key();
    let mut host = spawn_driver(&apis[0], room_id, host_key, None).await;
    wait_for(&mut host, "host joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let mut followers = Vec::new();
    for api in &apis[1..] {
        let mut f = spawn_driver(api, room_id, new_signing_key().unwrap(), Some(pin)).await;
        wait_for(&mut f, "follower joined", |e| {
            matches!(e, DriverEvent::Joined { .. })
        })
        .await;
        followers.push(f);
    }
    for f in &mut followers {
        wait_for(f, "channels open", |e| {
            matches!(e, DriverEvent::PeerConnected { .. })
        })
        .await;
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&info.content_hash, &mut hash).unwrap();
    let item = MediaItem {
        media: MediaId::new(&info.id.to_string()).unwrap(),
        hash: ContentHash(hash),
        duration: PositionMs::new(600_000).unwrap(),
    };
    host.command(UserCommand::Load(item)).await.unwrap();
    for f in &mut followers {
        wait_for(f, "media loaded", |e| {
            matches!(e, DriverEvent::MediaLoaded { .. })
        })
        .await;
    }
    host.command(UserCommand::Seek(MediaPos::from_millis(30_000)))
        .await
        .unwrap();
    host.command(UserCommand::Play).await.unwrap();
    let h = settled(&host, false).await;
    for f in &followers {
        let s = settled(f, false).await;
        let room_pos = s.playback.unwrap().position_ms;
        assert!(room_pos >= 30_000.0, "{s:?}");
        assert!(s.commands_applied >= 3, "{s:?}");
        assert_eq!(s.host, h.you);
        // The only drops an honest room causes: a forwarded copy of a host
        // command that arrived after a newer one (docs/protocol.md §7.1).
        assert!(
            s.drops.keys().all(|k| *k == "old_sequence"),
            "{:?}",
            s.drops
        );
    }
    host.command(UserCommand::Pause).await.unwrap();
    for f in &followers {
        let s = settled(f, true).await;
        assert!(s.playback.unwrap().paused);
    }
}
