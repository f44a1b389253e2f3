//! Room figures over real WebRTC: connect time, control latency, sync
//! accuracy and correction quality.

use std::time::{Duration, Instant};

use serde_json::json;
use watchparty_peer::player::PlayerAction;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;

use crate::Error;
use crate::room::{Room, World};
use crate::stats::{Figure, Stat, Target};

/// Sizes measured.
pub const SIZES: [usize; 4] = [2, 4, 8, 16];

/// Spacing of position samples for the spread.
pub const SPREAD_SAMPLE: Duration = Duration::from_millis(50);

/// Settling time after a command before spread samples count.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Longest wait for one command to reach every follower.
pub const COMMAND_WAIT: Duration = Duration::from_secs(5);

/// Pause between two commands (lets seeks finish).
pub const COMMAND_GAP: Duration = Duration::from_millis(250);

/// Run lengths.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rooms built per size for the connect figure.
    pub connect_runs: usize,
    /// Host commands per size for the control figure.
    pub commands: usize,
    /// Sizes with a sync-accuracy run.
    pub sync_sizes: &'static [usize],
    /// Sampling window after play and after seek.
    pub spread_window: Duration,
    /// Steady-state window for correction quality.
    pub steady_window: Duration,
}

/// Builds `runs` rooms of `n` peers and adds the `connect_time_n{n}`
/// figure; returns the last room when `keep_last` (the others are closed).
async fn connect(
    world: &World,
    n: usize,
    runs: usize,
    keep_last: bool,
    out: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Option<Room> {
    let mut connect = Vec::new();
    let mut last = None;
    let mut counters = Vec::new();
    let drops_before = crate::procfs::udp_rcvbuf_errors();
    for r in 0..runs {
        match world.room(n, true).await {
            Ok(room) => {
                connect.push(room.connect_ms);
                counters.push(room.negotiation_counters().await);
                if keep_last && r + 1 == runs {
                    last = Some(room);
                } else {
                    room.close().await;
                }
            }
            Err(e) => notes.push(format!("connect N={n} run {r}: {e}")),
        }
    }
    let rcvbuf_drops = crate::procfs::udp_rcvbuf_errors()
        .zip(drops_before)
        .map(|(a, b)| a.saturating_sub(b));
    let target = (n == 8).then(|| Target::at_most(Stat::Median, 300.0, "p50 ≤ 300 ms (N = 8)"));
    out.extend(Figure::new(
        "connect",
        &format!("connect_time_n{n}"),
        "ms",
        &connect,
        json!({"peers": n, "from": "followers spawn (join) after host joined", "to": "every peer has all n-1 data channel sets open",
            "negotiation_counters_per_run": counters, "udp_rcvbuf_drops_all_runs": rcvbuf_drops}),
        target,
    ));
    eprintln!(
        "bench: connect N={n}: {connect:.1?} ms; udp rcvbuf drops {rcvbuf_drops:?}; counters {counters:?}"
    );
    last
}

/// Connect time only (`--only connect`): `runs` rooms per size, for
/// diagnosing the connect phases (with `WATCHPARTY_BENCH_LOG`).
pub async fn connect_only(
    runs: usize,
    out: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let world = World::start().await?;
    for n in SIZES {
        connect(&world, n, runs, false, out, notes).await;
    }
    Ok(())
}

/// Runs every room figure; per-size failures are reported, not fatal.
pub async fn run(plan: Plan, out: &mut Vec<Figure>, notes: &mut Vec<String>) -> Result<(), Error> {
    let world = World::start().await?;
    for n in SIZES {
        let last = connect(&world, n, plan.connect_runs, true, out, notes).await;
        let Some(room) = last else { continue };
        match control(&room, plan.commands).await {
            Ok((lat, lost)) => {
                for (k, label) in [(0, "play"), (1, "pause"), (2, "seek")] {
                    let v: Vec<f64> = lat.iter().filter(|s| s.0 == k).map(|s| s.1).collect();
                    out.extend(Figure::new(
                        "control",
                        &format!("control_latency_{label}_n{n}"),
                        "ms",
                        &v,
                        json!({"peers": n, "command": label}),
                        (n == 8 && k == 2).then(|| {
                            Target::at_most(
                                Stat::P99,
                                5.0,
                                "p99 ≤ 5 ms (N = 8; seeks apply on arrival)",
                            )
                        }),
                    ));
                }
                let lat: Vec<f64> = lat.iter().map(|s| s.1).collect();
                // No target: play and pause are scheduled `lead_time` (150 ms)
                // ahead on purpose, so that every follower starts at once;
                // the delivery target is judged on seeks.
                let target = None;
                if let Some(f) = Figure::new(
                    "control",
                    &format!("control_latency_n{n}"),
                    "ms",
                    &lat,
                    json!({"peers": n, "commands": plan.commands, "samples": "per follower per command", "lost": lost, "includes": "play/pause scheduled lead_time (150 ms) ahead by design"}),
                    target,
                ) {
                    eprintln!(
                        "bench: control N={n}: p50 {:.3} p99 {:.3} ms",
                        f.median, f.p99
                    );
                    out.push(f);
                }
            }
            Err(e) => notes.push(format!("control N={n}: {e}")),
        }
        if plan.sync_sizes.contains(&n)
            && let Err(e) = sync(&room, n, plan, out).await
        {
            notes.push(format!("sync N={n}: {e}"));
        }
        room.close().await;
    }
    Ok(())
}

fn kind(a: &PlayerAction) -> u8 {
    match a {
        PlayerAction::Play => 0,
        PlayerAction::Pause => 1,
        PlayerAction::Seek { .. } => 2,
        PlayerAction::SetRate { .. } => 3,
    }
}

/// Issues `count` host commands (seek, play, pause, …) and returns, per
/// follower and command, the delay from issuing to the follower's player
/// receiving the matching action (ms), and how many never arrived.
async fn control(room: &Room, count: usize) -> Result<(Vec<(u8, f64)>, usize), Error> {
    let mut lat = Vec::new();
    let mut lost = 0;
    let mut playing = false;
    for i in 0..count {
        let (cmd, want) = match i % 3 {
            0 => {
                let pos = 60_000 + (i as u64 * 7919) % 1_000_000;
                (UserCommand::Seek(MediaPos::from_millis(pos)), 2)
            }
            _ if playing => (UserCommand::Pause, 1),
            _ => (UserCommand::Play, 0),
        };
        if want != 2 {
            playing = !playing;
        }
        let t0 = Instant::now();
        room.command(cmd).await?;
        let deadline = t0 + COMMAND_WAIT;
        let mut pending: Vec<usize> = (1..room.peers.len()).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&p| {
                let hit = room.peers[p]
                    .probe
                    .log()
                    .iter()
                    .rev()
                    .take_while(|a| a.at >= t0)
                    .filter(|a| kind(&a.action) == want)
                    .map(|a| a.at)
                    .min();
                match hit {
                    Some(at) => {
                        lat.push((want, at.duration_since(t0).as_secs_f64() * 1000.0));
                        false
                    }
                    None => true,
                }
            });
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lost += pending.len();
        tokio::time::sleep(COMMAND_GAP).await;
    }
    Ok((lat, lost))
}

/// Spread (max − min true position, ms) across every peer, sampled every
/// [`SPREAD_SAMPLE`] for `window`.
async fn spread(room: &Room, window: Duration) -> Vec<f64> {
    let mut out = Vec::new();
    let end = Instant::now() + window;
    let mut tick = tokio::time::interval(SPREAD_SAMPLE);
    while Instant::now() < end {
        tick.tick().await;
        let at = Instant::now();
        let pos: Vec<f64> = room.peers.iter().map(|p| p.probe.position_ms(at)).collect();
        let max = pos.iter().copied().fold(f64::MIN, f64::max);
        let min = pos.iter().copied().fold(f64::MAX, f64::min);
        out.push(max - min);
    }
    out
}

async fn sync(room: &Room, n: usize, plan: Plan, out: &mut Vec<Figure>) -> Result<(), Error> {
    let params = |phase: &str| {
        json!({"peers": n, "phase": phase, "offsets_ms": "spread over ±5000", "drift_ppm": "spread over ±200 (player media clock)",
               "sample_every_ms": SPREAD_SAMPLE.as_millis(), "settle_ms": SETTLE.as_millis(), "window_s": plan.spread_window.as_secs()})
    };
    let target = || Some(Target::at_most(Stat::P99, 10.0, "p99 ≤ 10 ms"));
    // Paused state first, then play from 2 min.
    room.command(UserCommand::Pause).await.ok();
    room.command(UserCommand::Seek(MediaPos::from_millis(120_000_u64)))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    room.command(UserCommand::Play).await?;
    tokio::time::sleep(SETTLE).await;
    let after_play = spread(room, plan.spread_window).await;
    out.extend(Figure::new(
        "sync",
        &format!("spread_after_play_n{n}"),
        "ms",
        &after_play,
        params("after play"),
        target(),
    ));
    room.command(UserCommand::Seek(MediaPos::from_millis(900_000)))
        .await?;
    tokio::time::sleep(SETTLE).await;
    let after_seek = spread(room, plan.spread_window).await;
    out.extend(Figure::new(
        "sync",
        &format!("spread_after_seek_n{n}"),
        "ms",
        &after_seek,
        params("after seek while playing"),
        target(),
    ));
    eprintln!(
        "bench: sync N={n}: play {} samples, seek {} samples",
        after_play.len(),
        after_seek.len()
    );
    // Steady state: correction activity of every follower.
    let start = Instant::now();
    let start_rates: Vec<f64> = room.peers.iter().map(|p| p.probe.rate()).collect();
    let steady = spread(room, plan.steady_window).await;
    let end = Instant::now();
    let minutes = end.duration_since(start).as_secs_f64() / 60.0;
    let (mut seeks, mut rates, mut off, mut dev) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (p, r0) in room.peers.iter().zip(start_rates).skip(1) {
        let log: Vec<_> = p
            .probe
            .log()
            .into_iter()
            .filter(|a| a.at >= start && a.at < end)
            .collect();
        seeks.push(log.iter().filter(|a| kind(&a.action) == 2).count() as f64 / minutes);
        rates.push(log.iter().filter(|a| kind(&a.action) == 3).count() as f64 / minutes);
        let (mut rate, mut since, mut off_s, mut worst) = (r0, start, 0.0, (r0 - 1.0).abs());
        for a in &log {
            if let PlayerAction::SetRate { rate: r } = a.action {
                if (rate - 1.0).abs() > 1e-9 {
                    off_s += a.at.duration_since(since).as_secs_f64();
                }
                rate = r.as_f64();
                since = a.at;
                worst = worst.max((rate - 1.0).abs());
            }
        }
        if (rate - 1.0).abs() > 1e-9 {
            off_s += end.duration_since(since).as_secs_f64();
        }
        off.push(100.0 * off_s / end.duration_since(start).as_secs_f64());
        dev.push(worst * 1e6);
    }
    let qp = json!({"peers": n, "window_s": plan.steady_window.as_secs(), "samples": "one per follower"});
    out.extend(Figure::new(
        "sync",
        &format!("spread_steady_n{n}"),
        "ms",
        &steady,
        params("steady state"),
        target(),
    ));
    out.extend(Figure::new(
        "correction",
        &format!("seeks_per_min_n{n}"),
        "1/min",
        &seeks,
        qp.clone(),
        None,
    ));
    out.extend(Figure::new(
        "correction",
        &format!("rate_changes_per_min_n{n}"),
        "1/min",
        &rates,
        qp.clone(),
        None,
    ));
    out.extend(Figure::new(
        "correction",
        &format!("time_off_1x_n{n}"),
        "%",
        &off,
        qp.clone(),
        None,
    ));
    out.extend(Figure::new(
        "correction",
        &format!("max_rate_deviation_n{n}"),
        "ppm",
        &dev,
        qp,
        None,
    ));
    Ok(())
}
