//! Whole-room test of the native driver: the real signaling server
//! (in-process, real SQLite file, real HTTP/WebSocket on 127.0.0.1) and three
//! native drivers (host + two followers, virtual players) in one process,
//! with real WebRTC (str0m) over loopback UDP.

#[path = "support/inproc.rs"]
mod inproc;

use std::time::Duration;

use watchparty_peer::native::driver::{DriverEvent, DriverHandle, StatusSnapshot};
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;

const STEP: Duration = Duration::from_secs(30);

/// Waits for an event matching `f` (other events are skipped).
async fn wait_for(h: &mut DriverHandle, what: &str, f: impl Fn(&DriverEvent) -> bool) {
    inproc::wait_for(h, what, STEP, f).await;
}

/// Waits (up to [`STEP`]) until the peer's player sits where its view of
/// the room says, `paused` as given, no correction running.
async fn settled(h: &DriverHandle, paused: bool) -> StatusSnapshot {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
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
    let mut room = inproc::room(2).await;
    let mut host = room.driver(0, 0).await;
    wait_for(&mut host, "host joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let mut followers = Vec::new();
    for i in 1..=2 {
        let mut f = room.driver(i, 0).await;
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
    host.command(UserCommand::Load(room.item.clone()))
        .await
        .unwrap();
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
        // What the follower ended up with, not how it learned it: a
        // follower whose channel to the host opened late learns the load,
        // seek or play from the host's `State` instead of the command
        // (docs/protocol.md §4.1), so the split between commands and
        // states applied depends on timing.
        let p = s.playback.unwrap();
        assert!(!p.paused && p.position_ms >= 30_000.0, "{s:?}");
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

/// The chat messages among `events`: (sender, text, earlier).
fn chats<'a>(events: impl IntoIterator<Item = &'a DriverEvent>) -> Vec<(u64, String, bool)> {
    events
        .into_iter()
        .filter_map(|e| match e {
            DriverEvent::Chat {
                from,
                text,
                earlier,
            } => Some((*from, text.clone(), *earlier)),
            _ => None,
        })
        .collect()
}

/// Issue 20 item 8 over the real server and real WebRTC: the host and a
/// follower chat; a third member starts late and is shown both messages,
/// in order, once each, marked earlier (the host's `ChatHistory`,
/// docs/protocol.md §4.1); a message after it joined is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_native_joiner_is_shown_the_earlier_chat() {
    let mut room = inproc::room(2).await;
    let mut host = room.driver(0, 0).await;
    wait_for(&mut host, "host joined", |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let mut bob = room.driver(1, 0).await;
    wait_for(&mut bob, "channels open", |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    let said =
        |e: &DriverEvent, want: &str| matches!(e, DriverEvent::Chat { text, .. } if text == want);
    host.command(UserCommand::Chat("hello from the host".into()))
        .await
        .unwrap();
    wait_for(&mut bob, "the host's chat", |e| {
        said(e, "hello from the host")
    })
    .await;
    bob.command(UserCommand::Chat("hi from bob".into()))
        .await
        .unwrap();
    wait_for(&mut host, "bob's chat", |e| said(e, "hi from bob")).await;
    let host_id = host.status().await.unwrap().you.unwrap();
    let bob_id = bob.status().await.unwrap().you.unwrap();

    let mut carol = room.driver(2, 0).await;
    let (last, before) = inproc::wait_for(&mut carol, "the earlier chat", STEP, |e| {
        said(e, "hi from bob")
    })
    .await;
    host.command(UserCommand::Chat("welcome carol".into()))
        .await
        .unwrap();
    let (live, between) = inproc::wait_for(&mut carol, "the live chat", STEP, |e| {
        said(e, "welcome carol")
    })
    .await;
    let shown = chats(before.iter().chain([&last]).chain(&between).chain([&live]));
    assert_eq!(
        shown,
        vec![
            (host_id, "hello from the host".to_owned(), true),
            (bob_id, "hi from bob".to_owned(), true),
            (host_id, "welcome carol".to_owned(), false),
        ]
    );
}
