//! The network impairment grid of issue 9: the room figures of
//! [`crate::room_bench`] (control latency, commands lost, sync spread,
//! correction activity, connect time) for one room of [`GRID_PEERS`] native
//! peers under UDP loss and under added one-way delay.
//!
//! The impairment changes the firewall of the current network namespace
//! (`watchparty_e2e::impair`), so the section runs only inside the private
//! namespace `cargo xtask bench` creates; elsewhere it is skipped with a
//! note. Per cell, the drivers' UDP ports are chosen first, the rules or
//! relays installed, and only then the room is built (nftables NAT rules
//! only catch new flows). Cells:
//!
//! - `none`: the same room and phases without impairment, the baseline the
//!   other cells compare with (the loopback section measures sync accuracy
//!   only at N = 8 and 16).
//! - `lossP`: P % of the UDP datagrams arriving at every follower's port
//!   are dropped (nftables `numgen random`, input hook). Host → follower and
//!   follower ↔ follower datagrams are lost at P %; follower → host ones are
//!   not (the host's receiving side is clean).
//! - `delayD`: one [`DelayRelay`] per follower, target the follower's port,
//!   peer the host's port, D ms each way without jitter. The relay in front
//!   of follower F catches every new flow *to* F (from the host or another
//!   follower) and F's flows to the host; its forwarding sockets (on
//!   127.0.0.2) are exempt from every relay's rules, so each datagram
//!   crosses exactly one relay. Every one-way path (host → follower,
//!   follower → host, follower → follower) gets D ms, every round trip
//!   2 D; the ICE round trips measured on all links are reported with the
//!   connect figure as the proof.

use std::time::Duration;

use serde_json::json;
use watchparty_e2e::impair::{Delay, DelayRelay, Loss, free_udp_port, in_private_netns};

use crate::Error;
use crate::room::World;
use crate::room_bench::{self, Naming, Phases};
use crate::stats::Figure;

/// Room size of the grid: host + 3 followers. The smallest mesh with
/// follower ↔ follower paths as well as several host → follower paths (so
/// the spread is a spread, not a pair difference), and small enough that
/// six cells fit the section's time budget on 2 cores (connect, control
/// and sync phases of an N = 4 room take 10–30 s per cell).
pub const GRID_PEERS: usize = 4;

/// One impairment of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    /// No impairment: the baseline.
    None,
    /// Random drop of this percentage of the UDP datagrams arriving at
    /// every follower's port.
    Loss(u8),
    /// Added one-way delay on every path, ms.
    Delay(u16),
}

/// The cells, in the order they run.
pub const CELLS: [Impairment; 6] = [
    Impairment::None,
    Impairment::Loss(1),
    Impairment::Loss(5),
    Impairment::Loss(10),
    Impairment::Delay(50),
    Impairment::Delay(150),
];

/// The cells of a quick run: the baseline, the middle loss and the smaller
/// delay (lossy connects alone take 3–21 s; the quick run stays under 3 min).
pub const QUICK_CELLS: [Impairment; 3] =
    [Impairment::None, Impairment::Loss(5), Impairment::Delay(50)];

/// PRNG seed of the relays (they add no jitter; the seed is unused then).
const RELAY_SEED: u64 = 7;

/// Attempts at drawing distinct free UDP ports, per port.
const PORT_ATTEMPTS: usize = 10;

impl Impairment {
    /// The tag in figure names: `none`, `loss5`, `delay150`.
    pub fn tag(self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Loss(p) => format!("loss{p}"),
            Self::Delay(ms) => format!("delay{ms}"),
        }
    }

    /// What the cell does, for the figures' parameters.
    pub fn describe(self) -> String {
        match self {
            Self::None => "none (loopback in the namespace, baseline)".into(),
            Self::Loss(p) => format!(
                "{p} % UDP loss on every follower's receiving side (nftables); follower → host clean"
            ),
            Self::Delay(ms) => format!(
                "{ms} ms added one-way delay on every path (UDP relay per follower, no jitter); RTT + {} ms",
                2 * u32::from(ms)
            ),
        }
    }
}

/// The rules or relays of one cell, removed on drop (blocking: `nft` runs,
/// relay threads are joined).
#[derive(Debug, Default)]
struct Installed {
    loss: Vec<Loss>,
    relays: Vec<DelayRelay>,
}

impl Installed {
    /// Datagrams the relays carried (both ways).
    fn relayed(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.relays
            .iter()
            .map(|r| r.stats.forwarded.load(Relaxed) + r.stats.replies.load(Relaxed))
            .sum()
    }
}

/// Installs `cell` for a room whose peers use `ports` (host first).
fn install(cell: Impairment, ports: &[u16]) -> Result<Installed, Error> {
    let mut done = Installed::default();
    let Some((&host, followers)) = ports.split_first() else {
        return Ok(done);
    };
    match cell {
        Impairment::None => {}
        Impairment::Loss(p) => {
            for &f in followers {
                done.loss.push(Loss::install(f, p).map_err(Error::msg)?);
            }
        }
        Impairment::Delay(ms) => {
            let d = Duration::from_millis(u64::from(ms));
            for &f in followers {
                let delay = Delay {
                    delay: d,
                    jitter: Duration::ZERO,
                    reply_delay: d,
                    seed: RELAY_SEED,
                };
                done.relays
                    .push(DelayRelay::start(f, host, delay).map_err(Error::msg)?);
            }
        }
    }
    Ok(done)
}

/// How the figures of `cell` are named (room of [`GRID_PEERS`]).
pub fn naming(cell: Impairment) -> Naming {
    Naming {
        n: GRID_PEERS,
        cell: Some(cell),
    }
}

/// `n` distinct free UDP ports on 127.0.0.1.
fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n * PORT_ATTEMPTS {
        if ports.len() == n {
            break;
        }
        let p = free_udp_port().map_err(Error::msg)?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    if ports.len() == n {
        Ok(ports)
    } else {
        Err(Error::msg(format!("could not draw {n} distinct UDP ports")))
    }
}

/// Runs the grid; a cell that fails (no connection within the limits, a
/// rule that cannot be installed) becomes a note, the others still run.
pub async fn run(
    cells: &[Impairment],
    phases: Phases,
    out: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    if !in_private_netns() {
        notes.push(
            "grid: skipped: the loss/delay grid changes the firewall of its network namespace \
             and runs only inside the private namespace of `cargo xtask bench` \
             (WATCHPARTY_TEST_NETNS=1 not set)"
                .into(),
        );
        return Ok(());
    }
    let world = World::start().await?;
    for &cell in cells {
        if let Err(e) = run_cell(&world, cell, phases, out, notes).await {
            notes.push(format!("grid {}: not measured: {e}", cell.tag()));
        }
    }
    Ok(())
}

async fn run_cell(
    world: &World,
    cell: Impairment,
    phases: Phases,
    out: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let n = GRID_PEERS;
    let naming = naming(cell);
    let ports = free_ports(n)?;
    let installed = {
        let ports = ports.clone();
        tokio::task::spawn_blocking(move || install(cell, &ports))
            .await
            .map_err(Error::msg)??
    };
    let result = async {
        let room = world.room_on(n, true, &ports).await?;
        let measured = async {
            room_bench::control(&room, naming, phases.commands, out).await?;
            room_bench::sync(&room, naming, phases, out).await
        }
        .await;
        if let Err(e) = measured {
            notes.push(format!("grid {}: {e}", cell.tag()));
        }
        let rtts = room.ice_rtts().await;
        let rtt_min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let rtt_max = rtts.iter().copied().fold(0.0, f64::max);
        out.extend(naming.figure(
            "connect",
            "connect_time",
            "ms",
            &[room.connect_ms],
            json!({"peers": n, "from": "followers spawn (join) after host joined", "to": "every peer has all n-1 data channel sets open",
                   "ice_rtt_ms_min": rtt_min.is_finite().then_some(rtt_min), "ice_rtt_ms_max": (!rtts.is_empty()).then_some(rtt_max),
                   "ice_rtt_links": rtts.len(), "relayed_datagrams": installed.relayed(),
                   "negotiation_counters": room.negotiation_counters().await}),
            None,
        ));
        eprintln!(
            "bench: grid {}: connected in {:.0} ms, ICE rtt {rtt_min:.1}–{rtt_max:.1} ms over {} links",
            cell.tag(),
            room.connect_ms,
            rtts.len()
        );
        room.close().await;
        Ok::<(), Error>(())
    }
    .await;
    // Removing the rules runs `nft` and joins the relay threads.
    tokio::task::spawn_blocking(move || drop(installed))
        .await
        .map_err(Error::msg)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_have_distinct_tags_in_figure_names() {
        let tags: Vec<String> = CELLS.iter().map(|c| c.tag()).collect();
        assert_eq!(
            tags,
            ["none", "loss1", "loss5", "loss10", "delay50", "delay150"]
        );
        for (cell, base, name) in [
            (
                Impairment::Loss(5),
                "control_latency_seek",
                "grid_control_latency_seek_loss5_n4",
            ),
            (
                Impairment::Delay(150),
                "spread_steady",
                "grid_spread_steady_delay150_n4",
            ),
        ] {
            assert_eq!(naming(cell).name(base), name);
        }
        assert_eq!(
            Naming::loopback(8).name("spread_steady"),
            "spread_steady_n8"
        );
    }

    #[test]
    fn grid_figures_carry_the_impairment_and_no_target() {
        let target = crate::stats::Target::at_most(crate::stats::Stat::P99, 1.0, "p99 ≤ 1");
        let fig = |naming: Naming| {
            let params = json!({"peers": 4});
            let samples = [3.0];
            naming
                .figure(
                    "sync",
                    "spread_steady",
                    "ms",
                    &samples,
                    params,
                    Some(target.clone()),
                )
                .unwrap()
        };
        let f = fig(naming(Impairment::Delay(50)));
        assert_eq!(f.group, room_bench::GRID_GROUP);
        assert!(f.target.is_none() && f.met.is_none());
        assert_eq!(f.params["kind"], "sync");
        assert!(f.params["impairment"].as_str().unwrap().contains("50 ms"));
        let f = fig(Naming::loopback(4));
        assert_eq!((f.group.as_str(), f.met), ("sync", Some(false)));
        assert!(f.params.get("impairment").is_none());
    }

    #[test]
    fn installs_only_inside_the_private_namespace() {
        let ports = free_ports(GRID_PEERS).unwrap();
        let none = install(Impairment::None, &ports).unwrap();
        assert!(none.loss.is_empty() && none.relays.is_empty());
        // Outside the xtask namespace the firewall is never touched; inside
        // it, one rule or relay per follower.
        let inside = in_private_netns();
        let loss = install(Impairment::Loss(5), &ports);
        assert_eq!(loss.is_ok(), inside);
        if let Ok(l) = loss {
            assert_eq!(l.loss.len(), GRID_PEERS - 1);
        }
        let delay = install(Impairment::Delay(50), &ports);
        assert_eq!(delay.is_ok(), inside);
        if let Ok(d) = delay {
            assert_eq!((d.relays.len(), d.relayed()), (GRID_PEERS - 1, 0));
        }
    }

    #[test]
    fn draws_distinct_ports() {
        let p = free_ports(GRID_PEERS).unwrap();
        assert_eq!(p.len(), GRID_PEERS);
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), GRID_PEERS);
    }
}
