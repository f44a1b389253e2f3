//! Virtual-time simulations of a whole room's playback sync: a host and up to
//! 16 followers with clock offsets up to ±5 s and drift up to ±200 ppm, a
//! network of 40 ms ± 15 ms one-way latency with 2 % loss and reordering,
//! and virtual players with their own start-up and seek latencies.
//!
//! Every assertion is on virtual time; nothing here reads a clock. Each test
//! prints its measured figures (`cargo test -- --nocapture`), which
//! `docs/sync.md` quotes.

use watchparty_peer::player::{PlayerAction, UserIntent};
use watchparty_peer::sim::{ActionRecord, Sim, SimConfig, SimError};
use watchparty_peer::sync::SyncEvent;
use watchparty_peer::sync_config::SyncConfig;
use watchparty_peer::time::{MediaPos, Rate, TimeDelta};

fn secs(s: i64) -> TimeDelta {
    TimeDelta::from_secs(s)
}

fn ms(v: i64) -> TimeDelta {
    TimeDelta::from_millis(v)
}

/// 99th percentile of absolute values (µs).
fn p99(mut v: Vec<i64>) -> i64 {
    assert!(!v.is_empty(), "no samples");
    v.iter_mut().for_each(|e| *e = e.abs());
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn all_errors(sim: &Sim, from: TimeDelta, to: TimeDelta) -> Vec<i64> {
    (0..sim.peer_count())
        .flat_map(|i| sim.errors(i, from, to))
        .collect()
}

fn actions_of(sim: &Sim, peer: usize, from: TimeDelta) -> Vec<ActionRecord> {
    sim.actions
        .iter()
        .filter(|a| a.peer == peer && a.at >= from)
        .copied()
        .collect()
}

fn is_seek(a: &ActionRecord) -> bool {
    matches!(a.action, PlayerAction::Seek { .. })
}

fn room(followers: usize, seed: u64) -> Sim {
    match Sim::new(SimConfig {
        followers,
        seed,
        ..SimConfig::default()
    }) {
        Ok(s) => s,
        Err(e) => panic!("sim: {e}"),
    }
}

/// Largest |rate / room rate − 1| (ppm) among SetRate actions in `from..`.
fn max_rate_deviation(sim: &Sim, peer: usize, from: TimeDelta, room_rate: Rate) -> i64 {
    actions_of(sim, peer, from)
        .iter()
        .filter_map(|a| match a.action {
            PlayerAction::SetRate { rate } => Some(rate.ppm_relative_to(room_rate).abs()),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn sixteen_followers_settle_within_10ms_p99() {
    let cfg = SyncConfig::default();
    for seed in [1, 2, 3] {
        let mut sim = room(16, seed);
        sim.run_until(secs(2));
        sim.host_play();
        sim.run_until(secs(180));
        let settled = secs(45);
        let clock_worst = (1..sim.peer_count())
            .filter_map(|i| sim.clock_error(i))
            .map(|e| e.abs().as_micros())
            .max()
            .unwrap_or(i64::MAX);
        assert!(clock_worst <= 5_000, "clock error {clock_worst} µs");
        let errs = all_errors(&sim, settled, secs(180));
        let p = p99(errs.clone());
        let max = errs.iter().map(|e| e.abs()).max().unwrap_or(0);
        let mut steady_rate_changes = 0;
        for peer in 0..sim.peer_count() {
            let late = actions_of(&sim, peer, settled);
            // Steady state: no seeks, rate within the (inaudible) trim bound.
            assert!(
                !late.iter().any(is_seek),
                "seed {seed} peer {peer} seeked: {late:?}"
            );
            let dev = max_rate_deviation(&sim, peer, settled, Rate::NORMAL);
            assert!(
                dev <= i64::from(cfg.max_trim_ppm),
                "seed {seed} peer {peer}: {dev} ppm"
            );
            steady_rate_changes += late.len();
            // Whole run: never beyond the nudge bound.
            let all = max_rate_deviation(&sim, peer, TimeDelta::ZERO, Rate::NORMAL);
            assert!(
                all <= i64::from(cfg.max_nudge_ppm),
                "peer {peer}: {all} ppm"
            );
        }
        let per_peer_minute = steady_rate_changes as f64 / 17.0 / ((180.0 - 45.0) / 60.0);
        println!(
            "seed {seed}: p99 {:.2} ms, max {:.2} ms over {} samples; steady rate changes {per_peer_minute:.2}/peer/min; worst clock error {:.2} ms",
            p as f64 / 1e3,
            max as f64 / 1e3,
            errs.len(),
            clock_worst as f64 / 1e3
        );
        assert!(p <= 10_000, "seed {seed}: p99 {p} µs");
    }
}

#[test]
fn commands_apply_within_one_rtt_plus_lead_and_storms_stay_echo_free() {
    let cfg = SimConfig::default();
    let lead = cfg.sync.lead_time;
    // One RTT at the worst latency of this network.
    let rtt = (cfg.net.latency + cfg.net.jitter) + (cfg.net.latency + cfg.net.jitter);
    let mut sim = room(8, 11);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(20));
    // A storm: every command kind, 0.4–1.3 s apart.
    let script: [(i64, &str); 14] = [
        (20_000, "pause"),
        (20_400, "play"),
        (21_000, "seek"),
        (22_300, "rate"),
        (23_000, "pause"),
        (23_500, "seek"),
        (24_000, "play"),
        (25_000, "seek"),
        (25_600, "rate1"),
        (26_500, "pause"),
        (27_000, "play"),
        (28_000, "seek"),
        (29_000, "pause"),
        (30_000, "play"),
    ];
    let first_cmd = sim.commands.len();
    let mut target = 600_000_u64;
    for (at, what) in script {
        sim.run_until(ms(at));
        match what {
            "pause" => sim.host_pause(),
            "play" => sim.host_play(),
            "seek" => {
                target += 97_531;
                sim.host_seek(MediaPos::from_millis(target));
            }
            "rate" => sim.host_rate(Rate::from_f64_clamped(1.25)),
            _ => sim.host_rate(Rate::NORMAL),
        }
    }
    sim.run_until(secs(90));

    // Every command reached every follower's player in time.
    let mut checked = 0;
    let mut worst = TimeDelta::ZERO;
    for (n, cmd) in sim.commands.iter().enumerate().skip(first_cmd) {
        let prev = sim.commands[n - 1].state;
        for &(peer, delivered, retried) in &cmd.deliveries {
            let later = sim.commands.get(n + 1).map_or(secs(1_000), |c| c.at);
            let acts: Vec<_> = actions_of(&sim, peer, cmd.at)
                .into_iter()
                .filter(|a| a.at < later)
                .collect();
            let wanted = |a: &ActionRecord| match a.action {
                PlayerAction::Pause => cmd.state.paused && !prev.paused,
                PlayerAction::Play => !cmd.state.paused && prev.paused,
                PlayerAction::Seek { .. } => cmd.state.position != prev.position_at(cmd.state.at),
                PlayerAction::SetRate { rate } => {
                    cmd.state.rate != prev.rate
                        && rate.ppm_relative_to(cmd.state.rate).abs() <= 50_000
                }
            };
            let Some(applied) = acts.iter().find(|a| wanted(a)) else {
                continue;
            };
            let took = applied.at - cmd.at;
            if !retried {
                assert!(
                    took <= rtt + lead,
                    "command {n} peer {peer}: {took} > {}",
                    rtt + lead
                );
                worst = worst.max(took);
                checked += 1;
            } else {
                // A retransmitted command is applied on arrival.
                assert!(
                    applied.at - delivered <= lead,
                    "peer {peer}: late by {}",
                    applied.at - delivered
                );
            }
        }
    }
    println!(
        "{checked} command applications checked, slowest {worst} (bound {})",
        rtt + lead
    );
    assert!(checked >= 8 * 10, "only {checked} checked");

    // Anti-echo: nobody touched a player, so no engine saw a user intent.
    let intents = sim
        .events
        .iter()
        .filter(|e| matches!(e.event, SyncEvent::UserIntent { .. }))
        .count();
    assert_eq!(intents, 0, "{:?}", sim.events);

    // Settled again after the storm.
    let p = p99(all_errors(&sim, secs(60), secs(90)));
    println!("after storm: p99 {:.2} ms", p as f64 / 1e3);
    assert!(p <= 10_000, "p99 {p} µs");
}

#[test]
fn pause_lands_every_player_on_the_same_frame() {
    let mut sim = room(12, 5);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(40));
    sim.host_pause();
    sim.run_until(secs(45));
    let Some(state) = sim.host_state() else {
        panic!("host has a state")
    };
    assert!(state.paused);
    let late: Vec<usize> = sim.commands.last().map_or_else(Vec::new, |c| {
        // Delivered after the pause took effect (lost and resent, or queued
        // behind a resent heartbeat).
        c.deliveries
            .iter()
            .filter(|d| d.1.as_micros() > c.state.at.as_micros())
            .map(|d| d.0)
            .collect()
    });
    let mut worst = 0;
    for peer in 0..sim.peer_count() {
        let Some(pos) = sim.position(peer) else {
            panic!("peer")
        };
        worst = worst.max((pos - state.position).abs().as_micros());
        if late.contains(&peer) {
            // Its pause arrived after the pause time: it overshot and seeks
            // back to the room's frame, invisibly.
            continue;
        }
        // No seek was needed to land there.
        assert!(
            !actions_of(&sim, peer, secs(40)).iter().any(is_seek),
            "peer {peer} needed a seek: {:?}",
            actions_of(&sim, peer, secs(38))
        );
    }
    println!(
        "paused frame spread: max {:.2} ms ({} late deliveries)",
        worst as f64 / 1e3,
        late.len()
    );
    assert!(worst <= 10_000, "{worst} µs");
}

#[test]
fn peer_300ms_off_converges_by_rate_without_seek() {
    let cfg = SyncConfig::default();
    let mut sim = room(4, 21);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(40));
    let before = sim.error_now(2).map_or(0, |e| e.as_micros());
    sim.stall(2, ms(300));
    sim.run_until(ms(40_500));
    let off = sim.error_now(2).map_or(0, |e| e.as_micros());
    assert!(
        off < -280_000,
        "stall put the peer behind: {off} µs (before {before})"
    );
    sim.run_until(secs(70));
    let acts = actions_of(&sim, 2, secs(40));
    assert!(!acts.iter().any(is_seek), "{acts:?}");
    let dev = max_rate_deviation(&sim, 2, secs(40), Rate::NORMAL);
    assert!(dev <= i64::from(cfg.max_nudge_ppm) && dev > 0, "{dev} ppm");
    // Converged: find when the error stayed within 10 ms for good.
    let errs = sim.errors(2, secs(40), secs(70));
    let last_bad = errs.iter().rposition(|e| e.abs() > 10_000).unwrap_or(0);
    let converge = (last_bad + 1) as f64 * 0.05;
    println!(
        "300 ms behind: converged in {converge:.1} s with {} rate changes, max nudge {dev} ppm, no seek",
        acts.len()
    );
    let p = p99(sim.errors(2, secs(60), secs(70)));
    assert!(p <= 10_000, "p99 {p} µs");
}

#[test]
fn three_second_error_triggers_exactly_one_seek() {
    let mut sim = room(4, 31);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(40));
    sim.stall(3, secs(3));
    sim.run_until(secs(43));
    sim.run_until(secs(80));
    let seeks: Vec<_> = actions_of(&sim, 3, secs(40))
        .into_iter()
        .filter(is_seek)
        .collect();
    println!("3 s behind: {} seek(s) {:?}", seeks.len(), seeks);
    assert_eq!(seeks.len(), 1);
    let p = p99(sim.errors(3, secs(65), secs(80)));
    assert!(p <= 10_000, "p99 {p} µs");
    // The others were not disturbed.
    for peer in [0, 1, 2, 4] {
        assert!(!actions_of(&sim, peer, secs(40)).iter().any(is_seek));
    }
}

#[test]
fn user_actions_are_intents_and_the_host_turns_them_into_commands() {
    let mut sim = room(6, 41);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(30));
    let commands = sim.commands.len();

    // A follower's user pauses: reported as intent, the engine holds, then
    // (no command came) plays again and is back in sync.
    sim.user_action(4, PlayerAction::Pause);
    sim.run_until(secs(31));
    let intents: Vec<_> = sim
        .events
        .iter()
        .filter(|e| e.peer == 4 && matches!(e.event, SyncEvent::UserIntent { .. }))
        .collect();
    assert!(
        matches!(
            intents.as_slice(),
            [e] if matches!(e.event, SyncEvent::UserIntent { intent: UserIntent::Pause { .. }, attached: true })
        ),
        "{intents:?}"
    );
    assert_eq!(
        sim.commands.len(),
        commands,
        "a follower's pause changes nothing for others"
    );
    sim.run_until(secs(55));
    let p = p99(sim.errors(4, secs(45), secs(55)));
    assert!(p <= 10_000, "p99 {p} µs");

    // The host's user seeks on its own player: one intent, one command,
    // every follower follows, and no echo comes back as a second intent.
    sim.user_action(
        0,
        PlayerAction::Seek {
            position: MediaPos::from_millis(900_000),
        },
    );
    sim.run_until(secs(56));
    assert_eq!(sim.commands.len(), commands + 1);
    assert_eq!(
        sim.host_state().map(|s| s.position.as_millis() / 1000),
        Some(900)
    );
    sim.run_until(secs(90));
    let host_intents = sim
        .events
        .iter()
        .filter(|e| e.peer == 0 && matches!(e.event, SyncEvent::UserIntent { .. }))
        .count();
    assert_eq!(host_intents, 1);
    let p = p99(all_errors(&sim, secs(75), secs(90)));
    println!("after host user seek: p99 {:.2} ms", p as f64 / 1e3);
    assert!(p <= 10_000, "p99 {p} µs");
}

#[test]
fn free_watch_stays_local_and_resync_is_one_call() {
    let mut sim = room(4, 51);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(30));
    let commands = sim.commands.len();
    sim.detach(1);
    sim.user_action(1, PlayerAction::Pause);
    sim.run_until(secs(35));
    sim.user_action(
        1,
        PlayerAction::Seek {
            position: MediaPos::from_millis(5_000),
        },
    );
    sim.run_until(secs(45));
    // The engine left the player alone and nothing reached the room.
    let acts = actions_of(&sim, 1, ms(30_001));
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(sim.commands.len(), commands);
    assert_eq!(sim.position(1), Some(MediaPos::from_millis(5_000)));
    let local_intents = sim
        .events
        .iter()
        .filter(|e| {
            e.peer == 1
                && matches!(
                    e.event,
                    SyncEvent::UserIntent {
                        attached: false,
                        ..
                    }
                )
        })
        .count();
    assert_eq!(local_intents, 2);
    // Others stay in sync.
    assert!(p99(all_errors(&sim, secs(35), secs(45))) <= 10_000);
    sim.resync(1);
    sim.run_until(secs(70));
    assert!(sim.engine(1).is_some_and(|e| e.is_attached()));
    let p = p99(sim.errors(1, secs(55), secs(70)));
    println!("re-synced free-watcher: p99 {:.2} ms", p as f64 / 1e3);
    assert!(p <= 10_000, "p99 {p} µs");
}

#[test]
fn late_joiner_lands_in_sync() {
    let mut sim = room(3, 61);
    sim.run_until(secs(2));
    sim.host_play();
    sim.run_until(secs(60));
    let joiner = match sim.join() {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    sim.run_until(secs(100));
    let seeks = actions_of(&sim, joiner, secs(60))
        .iter()
        .filter(|a| is_seek(a))
        .count();
    let p = p99(sim.errors(joiner, secs(80), secs(100)));
    println!(
        "late joiner: {seeks} seek(s), p99 {:.2} ms after 20 s",
        p as f64 / 1e3
    );
    assert!(p <= 10_000, "p99 {p} µs");
}

/// How long after `from` the error of `peer` entered `band` (µs) for good
/// (every later sample until `to` within it); `None` if it never did.
fn in_band_after(sim: &Sim, peer: usize, from: TimeDelta, to: TimeDelta, band: i64) -> Option<i64> {
    let errors = sim.errors(peer, from, to);
    let step = sim_sample_interval().as_micros();
    let last_out = errors.iter().rposition(|e| e.abs() > band);
    match last_out {
        None => Some(0),
        Some(i) if i + 1 < errors.len() => Some((i as i64 + 1) * step),
        Some(_) => None,
    }
}

fn sim_sample_interval() -> TimeDelta {
    SimConfig::default().sample_interval
}

/// Issue #20 item 2: a member that joins (or reloads) mid-play is cued —
/// seeked ahead while paused and started when the room arrives — so its
/// start does not depend on how long the seek took; a start that missed
/// because the start-up latency was not known yet is cued once more with
/// the latency just measured. Start-up latencies 20–250 ms and seek
/// latencies 50–400 ms (per player) against an initial guess of 100 ms.
#[test]
fn late_joiners_are_within_the_dead_zone_in_under_two_seconds() {
    let mut worst = 0;
    let mut figures = Vec::new();
    for seed in [3, 17, 29, 41, 53, 67, 79, 97] {
        let mut sim = room(2, seed);
        sim.run_until(secs(2));
        sim.host_play();
        sim.run_until(secs(30));
        let joiner = match sim.join() {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        };
        sim.run_until(secs(45));
        let band = SyncConfig::default().dead_zone.as_micros();
        let took = in_band_after(&sim, joiner, secs(30), secs(45), band);
        let Some(took) = took else {
            panic!(
                "seed {seed}: the joiner never settled within {band} µs: {:?}",
                sim.errors(joiner, secs(30), secs(45))
            )
        };
        let stats = sim.stats(joiner).unwrap_or_default();
        figures.push(format!(
            "seed {seed}: {:.0} ms ({} seek(s), {} re-cue(s))",
            took as f64 / 1e3,
            stats.seeks,
            stats.recues
        ));
        worst = worst.max(took);
        // Never a rate correction beyond the trim once in the band.
        let p = p99(sim.errors(joiner, secs(30) + TimeDelta::from_micros(took), secs(45)));
        assert!(p <= band, "seed {seed}: p99 {p} µs after settling");
    }
    println!(
        "late joiners: within the dead zone after {}",
        figures.join(", ")
    );
    assert!(worst <= 2_000_000, "worst {worst} µs: {figures:?}");
}

#[test]
fn limits_are_enforced() {
    let too_many = Sim::new(SimConfig {
        followers: 17,
        ..SimConfig::default()
    });
    assert!(matches!(too_many, Err(SimError::TooManyFollowers(17))));
    let bad = Sim::new(SimConfig {
        sync: SyncConfig {
            clock_window: 0,
            ..SyncConfig::default()
        },
        ..SimConfig::default()
    });
    assert!(matches!(bad, Err(SimError::Config(_))));
    let mut full = room(16, 1);
    assert!(matches!(full.join(), Err(SimError::TooManyFollowers(_))));
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut sim = room(5, 99);
        sim.run_until(secs(2));
        sim.host_play();
        sim.run_until(secs(20));
        (
            sim.actions.clone(),
            all_errors(&sim, TimeDelta::ZERO, secs(20)),
        )
    };
    assert_eq!(run(), run());
}
