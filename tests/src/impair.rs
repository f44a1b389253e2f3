//! Network impairment for whole-system tests, without `tc netem` (not
//! available on this kernel): nftables rules for random loss and partitions,
//! and a userspace UDP relay that delays (with jitter) the datagrams sent to
//! one local UDP port.
//!
//! Everything here changes the firewall of the **current network namespace**,
//! so it must only run inside a private namespace (`cargo xtask test` and
//! `cargo xtask soak` run the tests in one; [`in_private_netns`] checks the
//! marker they set). Every rule lives in its own nftables table, removed when
//! its guard is dropped.
//!
//! - [`Loss`]: drops N % of the UDP datagrams *arriving* at a port (input hook,
//!   `numgen random mod 100 < N`), i.e. on the receiving side.
//! - [`Partition`]: drops every UDP datagram to or from a port.
//! - [`DelayRelay`]: between two local UDP ports (the target and its peer).
//!   DNAT rules (nat output hook) send every new flow toward the target, and
//!   every new flow from the target to the peer, to one of the relay's two
//!   front sockets; the relay holds each datagram (toward the target
//!   `delay + uniform(0..=jitter)`, toward the peer `reply_delay`) and
//!   forwards it from a per-sender socket on [`RELAY_OUT_IP`] (excluded from
//!   the DNAT). Answers to that socket go back through the front socket, and
//!   conntrack undoes the DNAT, so each side sees them come from the address
//!   it sent to. Whoever starts the ICE checks, every path crosses the
//!   relay. The rules only catch new flows: install them before the peers
//!   exchange packets.

use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Source address of the relay's forwarding sockets; datagrams from it are
/// not redirected (else the relay would loop into itself).
pub const RELAY_OUT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Largest datagram the relay forwards (bigger ones are truncated by the
/// receive buffer and dropped).
pub const MAX_DATAGRAM: usize = 65_536;

/// How often relay threads check whether they should stop.
const POLL: Duration = Duration::from_millis(50);

/// Whether we run inside the private namespace made by xtask
/// (`WATCHPARTY_TEST_NETNS=1`).
pub fn in_private_netns() -> bool {
    std::env::var("WATCHPARTY_TEST_NETNS").as_deref() == Ok("1")
}

/// An error of the impairment tooling.
#[derive(Debug)]
pub struct ImpairError(pub String);

impl std::fmt::Display for ImpairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImpairError {}

fn nft_program() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

/// Runs an `nft -f -` script.
fn nft(script: &str) -> Result<(), ImpairError> {
    if !in_private_netns() {
        return Err(ImpairError(
            "refusing to change the firewall outside the private test namespace \
             (WATCHPARTY_TEST_NETNS=1; run through cargo xtask)"
                .into(),
        ));
    }
    let mut child = Command::new(nft_program())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ImpairError(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| ImpairError(format!("nft stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ImpairError(format!("nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ImpairError(format!(
            "nft failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// One nftables table; deleted on drop.
#[derive(Debug)]
struct Table(String);

impl Table {
    fn create(name: String, body: &str) -> Result<Table, ImpairError> {
        nft(&format!("table ip {name} {{\n{body}\n}}\n"))?;
        Ok(Table(name))
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table ip {}\n", self.0));
    }
}

/// Random loss of `percent` % of the UDP datagrams arriving at `port`.
#[derive(Debug)]
pub struct Loss {
    _table: Table,
}

impl Loss {
    /// Installs the rule (`percent` 0–100).
    ///
    /// # Errors
    /// Outside the private namespace, or when `nft` fails.
    pub fn install(port: u16, percent: u8) -> Result<Loss, ImpairError> {
        let percent = percent.min(100);
        let body = format!(
            "chain input {{ type filter hook input priority -10; policy accept;\n\
             udp dport {port} numgen random mod 100 < {percent} drop\n}}"
        );
        Ok(Loss {
            _table: Table::create(format!("wp_loss_{port}"), &body)?,
        })
    }
}

/// Every UDP datagram to or from `port` dropped while this guard lives.
#[derive(Debug)]
pub struct Partition {
    _table: Table,
}

impl Partition {
    /// Installs the rules.
    ///
    /// # Errors
    /// Outside the private namespace, or when `nft` fails.
    pub fn install(port: u16) -> Result<Partition, ImpairError> {
        let body = format!(
            "chain input {{ type filter hook input priority -10; policy accept;\n\
             udp dport {port} drop\nudp sport {port} drop\n}}"
        );
        Ok(Partition {
            _table: Table::create(format!("wp_partition_{port}"), &body)?,
        })
    }
}

/// Delay settings of a [`DelayRelay`].
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    /// Fixed delay toward the target.
    pub delay: Duration,
    /// Extra uniform random delay toward the target, 0..=jitter (reorders).
    pub jitter: Duration,
    /// Delay of the target's replies (fixed).
    pub reply_delay: Duration,
    /// PRNG seed of the jitter.
    pub seed: u64,
}

struct Scheduled {
    due: Instant,
    seq: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: Mutex<BinaryHeap<Scheduled>>,
    ready: Condvar,
    seq: AtomicU64,
}

impl Queue {
    fn push(&self, due: Instant, socket: Arc<UdpSocket>, to: SocketAddr, data: Vec<u8>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        heap.push(Scheduled {
            due,
            seq,
            socket,
            to,
            data,
        });
        self.ready.notify_one();
    }
}

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams forwarded to the target.
    pub forwarded: AtomicU64,
    /// Replies forwarded back.
    pub replies: AtomicU64,
}

/// A UDP delay/jitter relay in front of one local port (see the module docs).
pub struct DelayRelay {
    front: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<RelayStats>,
    _table: Table,
}

impl std::fmt::Debug for DelayRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayRelay")
            .field("front", &self.front)
            .finish_non_exhaustive()
    }
}

impl DelayRelay {
    /// Starts a relay between `127.0.0.1:target_port` and
    /// `127.0.0.1:peer_port`.
    ///
    /// # Errors
    /// Outside the private namespace, when `nft` fails or a socket cannot be
    /// bound.
    pub fn start(
        target_port: u16,
        peer_port: u16,
        delay: Delay,
    ) -> Result<DelayRelay, ImpairError> {
        let io = |e: std::io::Error| ImpairError(format!("relay socket: {e}"));
        let bind = || -> Result<Arc<UdpSocket>, ImpairError> {
            let s = UdpSocket::bind(("127.0.0.1", 0)).map_err(io)?;
            s.set_read_timeout(Some(POLL)).map_err(io)?;
            Ok(Arc::new(s))
        };
        let (front, back) = (bind()?, bind()?);
        let front_addr = front.local_addr().map_err(io)?;
        let back_addr = back.local_addr().map_err(io)?;
        let body = format!(
            "chain output {{ type nat hook output priority -100; policy accept;\n\
             ip daddr 127.0.0.1 ip saddr != {RELAY_OUT_IP} udp dport {target_port} \
             dnat to 127.0.0.1:{}\n\
             ip daddr 127.0.0.1 ip saddr != {RELAY_OUT_IP} udp sport {target_port} \
             udp dport {peer_port} dnat to 127.0.0.1:{}\n}}",
            front_addr.port(),
            back_addr.port()
        );
        let table = Table::create(format!("wp_delay_{target_port}"), &body)?;
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let peer = SocketAddr::from(([127, 0, 0, 1], peer_port));
        let toward_peer = Delay {
            delay: delay.reply_delay,
            jitter: Duration::ZERO,
            reply_delay: delay.delay,
            seed: delay.seed,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let queue = Arc::new(Queue::default());
        let stats = Arc::new(RelayStats::default());
        let mut threads = Vec::new();

        // Sender: releases datagrams when due.
        {
            let (queue, stop) = (queue.clone(), stop.clone());
            threads.push(std::thread::spawn(move || sender(&queue, &stop)));
        }
        // Front: datagrams for the target, from any sender; back: datagrams
        // from the target to the peer.
        for (socket, to, d) in [(front, target, delay), (back, peer, toward_peer)] {
            let (queue, stop, stats) = (queue.clone(), stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                front_loop(&socket, to, d, &queue, &stop, &stats);
            }));
        }
        Ok(DelayRelay {
            front: front_addr,
            stop,
            threads,
            stats,
            _table: table,
        })
    }

    /// The relay's front address (where the DNAT sends the target's traffic).
    pub fn front(&self) -> SocketAddr {
        self.front
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn sender(queue: &Queue, stop: &AtomicBool) {
    let mut heap = queue.heap.lock().unwrap_or_else(|e| e.into_inner());
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match heap.peek().map(|s| s.due) {
            Some(due) if due <= now => {
                if let Some(s) = heap.pop() {
                    // A failed send is a lost datagram, as on a real network.
                    let _ = s.socket.send_to(&s.data, s.to);
                }
            }
            Some(due) => {
                heap = queue
                    .ready
                    .wait_timeout(heap, (due - now).min(POLL))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => {
                heap = queue
                    .ready
                    .wait_timeout(heap, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

fn front_loop(
    front: &Arc<UdpSocket>,
    target: SocketAddr,
    delay: Delay,
    queue: &Arc<Queue>,
    stop: &Arc<AtomicBool>,
    stats: &Arc<RelayStats>,
) {
    let mut rng = delay.seed | 1;
    let mut outs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back_threads = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = front.recv_from(&mut buf) else {
            continue;
        };
        let out = match outs.get(&from) {
            Some(s) => s.clone(),
            None => {
                let Ok(s) = UdpSocket::bind((RELAY_OUT_IP, 0)) else {
                    continue;
                };
                if s.set_read_timeout(Some(POLL)).is_err() {
                    continue;
                }
                let s = Arc::new(s);
                outs.insert(from, s.clone());
                let (s2, front, queue, stop, stats) = (
                    s.clone(),
                    front.clone(),
                    queue.clone(),
                    stop.clone(),
                    stats.clone(),
                );
                let reply_delay = delay.reply_delay;
                back_threads.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((n, src)) = s2.recv_from(&mut buf)
                            && src == target
                        {
                            stats.replies.fetch_add(1, Ordering::Relaxed);
                            queue.push(
                                Instant::now() + reply_delay,
                                front.clone(),
                                from,
                                buf[..n].to_vec(),
                            );
                        }
                    }
                }));
                s
            }
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter_us = delay.jitter.as_micros() as u64;
        let extra = if jitter_us == 0 {
            0
        } else {
            rng % (jitter_us + 1)
        };
        let due = Instant::now() + delay.delay + Duration::from_micros(extra);
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
        queue.push(due, out, target, buf[..n].to_vec());
    }
    for t in back_threads {
        let _ = t.join();
    }
}

/// A free UDP port on 127.0.0.1 (released before use).
///
/// # Errors
/// When no socket can be bound.
pub fn free_udp_port() -> Result<u16, ImpairError> {
    UdpSocket::bind(("127.0.0.1", 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| ImpairError(format!("free port: {e}")))
}
