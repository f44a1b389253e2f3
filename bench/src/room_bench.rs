//! Room figures over real WebRTC: connect time, control latency, sync
//! accuracy and correction quality.

use std::time::{Duration, Instant};

use serde_json::json;
use watchparty_peer::player::PlayerAction;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;

use crate::Error;
use crate::grid::Impairment;
use crate::room::{Room, WAIT_LIMIT, World};
use crate::stats::{Figure, Stat, Target};

/// Sizes measured.
pub const SIZES: [usize; 4] = [2, 4, 8, 16];

/// Spacing of position samples for the spread.
pub const SPREAD_SAMPLE: Duration = Duration::from_millis(50);

/// Settling time after a command before spread samples count (loopback
/// run; the grid's quick plan uses less).
pub const SETTLE: Duration = Duration::from_secs(2);

/// Pause between the paused seek and the play that starts the sync phase
/// (loopback run).
pub const PRE_PLAY: Duration = Duration::from_secs(1);

/// Longest wait for one command to reach every follower.
pub const COMMAND_WAIT: Duration = Duration::from_secs(5);

/// Pause between two commands (lets seeks finish).
pub const COMMAND_GAP: Duration = Duration::from_millis(250);

/// Lengths of the measuring phases in one connected room: host commands
/// (control latency), then play / seek / steady state (sync accuracy).
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Host commands for the control figures.
    pub commands: usize,
    /// Pause between the paused seek and the play that starts the sync
    /// phase (lets the seek land everywhere).
    pub pre_play: Duration,
    /// Settling time after play and after seek before spread samples count.
    pub settle: Duration,
    /// Sampling window after play and after seek.
    pub spread_window: Duration,
    /// Steady-state window for correction quality.
    pub steady_window: Duration,
}

/// Run lengths of the loopback room section.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rooms built per size for the connect figure.
    pub connect_runs: usize,
    /// Sizes with a sync-accuracy run.
    pub sync_sizes: &'static [usize],
    /// Phases in the last room of each size.
    pub phases: Phases,
}

/// How the figures of one measured room are named, grouped and judged: the
/// loopback run (`control_latency_seek_n8`, group per kind, issue 9's
/// targets) or one cell of the impairment grid
/// (`grid_control_latency_seek_loss5_n4`, group `grid`, no targets: the
/// issue's targets are for loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    /// Room size (host included).
    pub n: usize,
    /// The grid cell; `None` for the loopback run.
    pub cell: Option<Impairment>,
}

/// Report group of every grid figure.
pub const GRID_GROUP: &str = "grid";

impl Naming {
    /// The loopback run with `n` peers.
    pub fn loopback(n: usize) -> Self {
        Self { n, cell: None }
    }

    /// The figure name for `base` (e.g. `spread_steady`).
    pub fn name(&self, base: &str) -> String {
        match self.cell {
            None => format!("{base}_n{}", self.n),
            Some(c) => format!("grid_{base}_{}_n{}", c.tag(), self.n),
        }
    }

    /// A figure of this room (samples summarised; `None` when empty). The
    /// grid's figures go to [`GRID_GROUP`], carry the impairment in their
    /// parameters and have no target.
    pub fn figure(
        &self,
        group: &str,
        base: &str,
        unit: &str,
        samples: &[f64],
        mut params: serde_json::Value,
        target: Option<Target>,
    ) -> Option<Figure> {
        let Some(cell) = self.cell else {
            return Figure::new(group, &self.name(base), unit, samples, params, target);
        };
        if let Some(m) = params.as_object_mut() {
            m.insert("impairment".into(), json!(cell.describe()));
            m.insert("kind".into(), json!(group));
        }
        Figure::new(GRID_GROUP, &self.name(base), unit, samples, params, None)
    }

    /// Short label for progress lines.
    fn label(&self) -> String {
        match self.cell {
            None => format!("N={}", self.n),
            Some(c) => format!("N={} {}", self.n, c.tag()),
        }
    }
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
        let naming = Naming::loopback(n);
        if let Err(e) = control(&room, naming, plan.phases.commands, out).await {
            notes.push(format!("control N={n}: {e}"));
        }
        if plan.sync_sizes.contains(&n)
            && let Err(e) = sync(&room, naming, plan.phases, out).await
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

/// Control latency of `room`: issues `count` host commands and adds the
/// figures per kind (`control_latency_{play,pause,seek}`), over all kinds
/// (`control_latency`) and the commands lost (`commands_lost`: follower ×
/// command pairs not applied within [`COMMAND_WAIT`]).
pub async fn control(
    room: &Room,
    naming: Naming,
    count: usize,
    out: &mut Vec<Figure>,
) -> Result<(), Error> {
    let n = naming.n;
    let (lat, lost) = control_samples(room, count).await?;
    for (k, label) in [(0, "play"), (1, "pause"), (2, "seek")] {
        let v: Vec<f64> = lat.iter().filter(|s| s.0 == k).map(|s| s.1).collect();
        out.extend(naming.figure(
            "control",
            &format!("control_latency_{label}"),
            "ms",
            &v,
            json!({"peers": n, "command": label}),
            (n == 8 && k == 2).then(|| {
                Target::at_most(Stat::P99, 5.0, "p99 ≤ 5 ms (N = 8; seeks apply on arrival)")
            }),
        ));
    }
    let lat: Vec<f64> = lat.iter().map(|s| s.1).collect();
    // No target: play and pause are scheduled `lead_time` (150 ms) ahead on
    // purpose, so that every follower starts at once; the delivery target
    // is judged on seeks.
    let target = None;
    if let Some(f) = naming.figure(
        "control",
        "control_latency",
        "ms",
        &lat,
        json!({"peers": n, "commands": count, "samples": "per follower per command", "lost": lost,
               "warm_up": "one seek first, awaited everywhere, not counted (follower clock start-up)",
               "includes": "play/pause scheduled lead_time (150 ms) ahead by design"}),
        target,
    ) {
        eprintln!(
            "bench: control {}: p50 {:.3} p99 {:.3} ms, {lost} lost",
            naming.label(),
            f.median,
            f.p99
        );
        out.push(f);
    }
    out.extend(naming.figure(
        "control",
        "commands_lost",
        "commands",
        &[lost as f64],
        json!({"peers": n, "commands": count, "of": count * (n - 1), "lost_after_ms": COMMAND_WAIT.as_millis(),
               "counted": "follower × command pairs never applied"}),
        None,
    ));
    Ok(())
}

/// Issues `count` host commands (seek, play, pause, …) and returns, per
/// follower and command, the delay from issuing to the follower's player
/// receiving the matching action (ms), and how many never arrived.
async fn control_samples(room: &Room, count: usize) -> Result<(Vec<(u8, f64)>, usize), Error> {
    warm_up(room).await?;
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
        let (got, missing) = arrivals(room, t0, want, COMMAND_WAIT).await;
        lat.extend(got.into_iter().map(|ms| (want, ms)));
        lost += missing;
        tokio::time::sleep(COMMAND_GAP).await;
    }
    Ok((lat, lost))
}

/// Where the warm-up seek goes, ms.
const WARM_UP_POS: u64 = 30_000;

/// A follower applies nothing before its clock is ready (its first burst
/// of clock exchanges with the host: several round trips, hundreds of ms
/// under added delay). One seek, awaited at every follower (at most
/// [`WAIT_LIMIT`]) and not counted, keeps that start-up out of the control
/// figures.
async fn warm_up(room: &Room) -> Result<(), Error> {
    let t0 = Instant::now();
    room.command(UserCommand::Seek(MediaPos::from_millis(WARM_UP_POS)))
        .await?;
    let (_, missing) = arrivals(room, t0, 2, WAIT_LIMIT).await;
    if missing > 0 {
        return Err(Error::msg(format!(
            "warm-up seek not applied by {missing} follower(s) within {} s",
            WAIT_LIMIT.as_secs()
        )));
    }
    tokio::time::sleep(COMMAND_GAP).await;
    Ok(())
}

/// Waits (at most `limit`) until every follower's player got an action of
/// kind `want` at or after `t0`; returns the delays from `t0` (ms) and how
/// many followers got none.
async fn arrivals(room: &Room, t0: Instant, want: u8, limit: Duration) -> (Vec<f64>, usize) {
    let mut got = Vec::new();
    let deadline = t0 + limit;
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
                    got.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                    false
                }
                None => true,
            }
        });
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    (got, pending.len())
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

/// Sync accuracy of `room` (the peers' clocks distorted by
/// [`crate::room::distortion`]): spread after play, after a seek while
/// playing and in steady state, and the followers' correction activity in
/// steady state.
pub async fn sync(
    room: &Room,
    naming: Naming,
    phases: Phases,
    out: &mut Vec<Figure>,
) -> Result<(), Error> {
    let n = naming.n;
    let window_s = phases.spread_window.as_secs_f64();
    let params = |phase: &str| {
        json!({"peers": n, "phase": phase, "offsets_ms": "spread over ±5000", "drift_ppm": "spread over ±200 (player media clock)",
               "sample_every_ms": SPREAD_SAMPLE.as_millis(), "settle_ms": phases.settle.as_millis(), "window_s": window_s})
    };
    let target = || Some(Target::at_most(Stat::P99, 10.0, "p99 ≤ 10 ms"));
    // Paused state first, then play from 2 min.
    room.command(UserCommand::Pause).await.ok();
    room.command(UserCommand::Seek(MediaPos::from_millis(120_000_u64)))
        .await?;
    tokio::time::sleep(phases.pre_play).await;
    room.command(UserCommand::Play).await?;
    tokio::time::sleep(phases.settle).await;
    let after_play = spread(room, phases.spread_window).await;
    out.extend(naming.figure(
        "sync",
        "spread_after_play",
        "ms",
        &after_play,
        params("after play"),
        target(),
    ));
    room.command(UserCommand::Seek(MediaPos::from_millis(900_000)))
        .await?;
    tokio::time::sleep(phases.settle).await;
    let after_seek = spread(room, phases.spread_window).await;
    out.extend(naming.figure(
        "sync",
        "spread_after_seek",
        "ms",
        &after_seek,
        params("after seek while playing"),
        target(),
    ));
    eprintln!(
        "bench: sync {}: play {} samples, seek {} samples",
        naming.label(),
        after_play.len(),
        after_seek.len()
    );
    // Steady state: correction activity of every follower.
    let start = Instant::now();
    let start_rates: Vec<f64> = room.peers.iter().map(|p| p.probe.rate()).collect();
    let steady = spread(room, phases.steady_window).await;
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
    let qp = json!({"peers": n, "window_s": phases.steady_window.as_secs_f64(), "samples": "one per follower"});
    out.extend(naming.figure(
        "sync",
        "spread_steady",
        "ms",
        &steady,
        params("steady state"),
        target(),
    ));
    out.extend(naming.figure(
        "correction",
        "seeks_per_min",
        "1/min",
        &seeks,
        qp.clone(),
        None,
    ));
    out.extend(naming.figure(
        "correction",
        "rate_changes_per_min",
        "1/min",
        &rates,
        qp.clone(),
        None,
    ));
    out.extend(naming.figure("correction", "time_off_1x", "%", &off, qp.clone(), None));
    out.extend(naming.figure("correction", "max_rate_deviation", "ppm", &dev, qp, None));
    Ok(())
}
