//! Sync under network impairment: a host and a follower (native drivers, real
//! server, real WebRTC over loopback UDP) while the follower's UDP port
//! suffers random loss on its receiving side (nftables), a delay/jitter relay,
//! or a 10 s partition. The follower must apply every host command and end
//! up in sync; after the partition it must heal by itself.
//!
//! Needs the private network namespace of `cargo xtask test` (it changes the
//! namespace's firewall); elsewhere the tests say so and return. The default
//! run covers one loss point, one delay point and the partition; the grid
//! (1/5/10 % loss, 50/100/150 ms delay, loss plus delay) is `#[ignore]`d and
//! run by `cargo xtask soak`.

#[path = "support/inproc.rs"]
mod inproc;

use std::time::{Duration, Instant};

use inproc::*;
use watchparty_e2e::impair::{Delay, DelayRelay, Loss, Partition, free_udp_port, in_private_netns};
use watchparty_peer::native::driver::{DriverEvent, DriverHandle};
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;

/// Allowed follower error once settled, ms (the same bound as the sync
/// engine's settle check in native_room).
const TOLERANCE_MS: f64 = 50.0;
/// Frames an impaired link may lose to `unbound_link` before the host's
/// `Bind` arrives (the first clock burst is 8 pings).
const MAX_UNBOUND_DROPS: u64 = 16;
/// Longest wait for one command to be applied under impairment.
const APPLY_LIMIT: Duration = Duration::from_secs(45);
/// Longest wait for the connection (ICE + DTLS + SCTP under loss/delay).
const CONNECT_LIMIT: Duration = Duration::from_secs(60);
/// Partition length.
const PARTITION: Duration = Duration::from_secs(10);
/// Longest time after the partition ends until the follower is in sync again.
const HEAL_LIMIT: Duration = Duration::from_secs(60);

fn skip() -> bool {
    if in_private_netns() {
        return false;
    }
    eprintln!("skipped: needs the private network namespace (cargo xtask test --only e2e)");
    true
}

/// Host + one follower on `port`, connected, media loaded.
async fn connect(port: u16, host_port: u16) -> (Room, DriverHandle, DriverHandle, Duration) {
    let mut room = room(1).await;
    let mut host = room.driver(0, host_port).await;
    wait_for(&mut host, "host joined", CONNECT_LIMIT, |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let t0 = Instant::now();
    let mut f = room.driver(1, port).await;
    wait_for(&mut f, "follower connected", CONNECT_LIMIT, |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    let connected = t0.elapsed();
    host.command(UserCommand::Load(room.item.clone()))
        .await
        .unwrap();
    wait_for(&mut f, "media loaded", APPLY_LIMIT, |e| {
        matches!(e, DriverEvent::MediaLoaded { .. })
    })
    .await;
    (room, host, f, connected)
}

/// Seek, play, seek while playing, pause, play: after each, the follower is in
/// sync. Returns (worst apply time, worst settled error).
async fn command_sequence(host: &DriverHandle, f: &DriverHandle) -> (Duration, f64) {
    let mut worst = (Duration::ZERO, 0.0f64);
    let steps: [(&[UserCommand], bool, f64); 4] = [
        (
            &[
                UserCommand::Seek(MediaPos::from_millis(30_000)),
                UserCommand::Play,
            ],
            false,
            30_000.0,
        ),
        (
            &[UserCommand::Seek(MediaPos::from_millis(120_000))],
            false,
            120_000.0,
        ),
        (&[UserCommand::Pause], true, 120_000.0),
        (&[UserCommand::Play], false, 120_000.0),
    ];
    for (cmds, paused, min) in steps {
        for c in cmds {
            host.command(c.clone()).await.unwrap();
        }
        let (t, err) = wait_in_sync(host, f, paused, min, TOLERANCE_MS, APPLY_LIMIT).await;
        worst = (worst.0.max(t), worst.1.max(err));
    }
    // Each step above waited for its outcome (paused or playing, from the
    // right position, in sync). Whether a step arrived as the command or
    // in a later `State` is timing, not behaviour: not asserted.
    // The one drop loss and delay may cause by design: frames that reach
    // the pinned follower over its new link before the host's `Bind` (its
    // `control` copy lost and resent, while unordered clock frames got
    // through) are refused until it verifies (`unbound_link`, protocol.md
    // §7 rule 12). Nothing else, and few of those.
    let s = f.status().await.unwrap();
    let unbound = s.drops.get("unbound_link").copied().unwrap_or(0);
    assert!(
        s.drops.keys().all(|k| *k == "unbound_link") && unbound <= MAX_UNBOUND_DROPS,
        "follower rejected frames: {:?}",
        s.drops
    );
    worst
}

async fn under_loss(percent: u8) {
    let port = free_udp_port().unwrap();
    let _loss = Loss::install(port, percent).unwrap();
    let (_room, host, f, connected) = connect(port, 0).await;
    let (apply, err) = command_sequence(&host, &f).await;
    println!(
        "impairment: {percent}% loss on the follower's receiving side: connected in {connected:?}, \
         slowest command applied+settled in {apply:?}, worst settled error {err:.1} ms"
    );
}

async fn under_delay(delay_ms: u64, jitter_ms: u64, loss: Option<u8>) {
    let port = free_udp_port().unwrap();
    let host_port = free_udp_port().unwrap();
    let relay = DelayRelay::start(
        port,
        host_port,
        Delay {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            reply_delay: Duration::from_millis(delay_ms),
            seed: 7,
        },
    )
    .unwrap();
    let _loss = loss.map(|p| Loss::install(port, p).unwrap());
    let (_room, host, f, connected) = connect(port, host_port).await;
    let (apply, err) = command_sequence(&host, &f).await;
    let rtt = f
        .status()
        .await
        .unwrap()
        .peers
        .iter()
        .find_map(|p| p.rtt_ms);
    let forwarded = relay
        .stats
        .forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "impairment: {delay_ms} ms (+0..{jitter_ms} ms jitter) each way{}: connected in {connected:?}, \
         ICE rtt {rtt:?} ms, slowest command applied+settled in {apply:?}, worst settled error {err:.1} ms, \
         relay forwarded {forwarded} datagrams",
        loss.map_or(String::new(), |p| format!(" + {p}% loss"))
    );
    // The relay really carried the traffic, and the peers see its delay.
    assert!(forwarded > 20, "relay forwarded only {forwarded} datagrams");
    if let Some(rtt) = rtt {
        assert!(
            rtt >= 2.0 * delay_ms as f64 * 0.9,
            "ICE rtt {rtt} ms below the relay delay"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_under_5_percent_loss() {
    if skip() {
        return;
    }
    under_loss(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_under_100ms_delay_with_jitter() {
    if skip() {
        return;
    }
    under_delay(100, 20, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_partitioned_for_10s_heals_by_itself() {
    if skip() {
        return;
    }
    let port = free_udp_port().unwrap();
    let (_room, host, f, _) = connect(port, 0).await;
    host.command(UserCommand::Seek(MediaPos::from_millis(30_000)))
        .await
        .unwrap();
    host.command(UserCommand::Play).await.unwrap();
    wait_in_sync(&host, &f, false, 30_000.0, TOLERANCE_MS, APPLY_LIMIT).await;
    let applied_before = f.status().await.unwrap().commands_applied;
    let cut = Partition::install(port).unwrap();
    let t_cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.command(UserCommand::Seek(MediaPos::from_millis(300_000)))
        .await
        .unwrap();
    host.command(UserCommand::Pause).await.unwrap();
    tokio::time::sleep(PARTITION.saturating_sub(t_cut.elapsed())).await;
    // The partition held: nothing reached the follower.
    let during = f.status().await.unwrap();
    assert_eq!(during.commands_applied, applied_before, "{during:?}");
    assert!(!during.playback.unwrap().paused, "{during:?}");
    drop(cut);
    let (heal, err) = wait_in_sync(&host, &f, true, 300_000.0, TOLERANCE_MS, HEAL_LIMIT).await;
    // And it keeps working afterwards.
    host.command(UserCommand::Play).await.unwrap();
    let (after, _) = wait_in_sync(&host, &f, false, 300_000.0, TOLERANCE_MS, APPLY_LIMIT).await;
    println!(
        "impairment: follower partitioned for {PARTITION:?} healed {heal:?} after the partition ended \
         (error {err:.1} ms); next command applied+settled in {after:?}"
    );
}

/// The full grid (`cargo xtask soak`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by cargo xtask soak"]
async fn sync_grid() {
    if skip() {
        return;
    }
    for p in [1, 5, 10] {
        under_loss(p).await;
    }
    for d in [50, 100, 150] {
        under_delay(d, d / 4, None).await;
    }
    under_delay(150, 30, Some(10)).await;
}
