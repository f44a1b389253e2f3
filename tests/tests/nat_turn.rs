//! Real NATs and a real TURN server (issue #16 items 2 and 3).
//!
//! Topology, built from network namespaces inside the private namespace
//! `cargo xtask test` runs the e2e step in (which plays the "public"
//! internet):
//!
//! ```text
//!   public segment 203.0.113.0/24 (bridge `wpub` in the test namespace)
//!     203.0.113.1   watchparty-signal (0.0.0.0) + coturn (STUN + TURN)
//!     203.0.113.10  router 1 ── 10.0.1.0/24 ── home 1 (10.0.1.2)
//!     203.0.113.20  router 2 ── 10.0.2.0/24 ── home 2 (10.0.2.2)
//! ```
//!
//! Each router is its own namespace with nftables masquerade on its public
//! side and drops unsolicited new flows addressed to itself. Each home is
//! a namespace whose only way out is its router; the `watchparty` CLI runs
//! there through `nsenter`. Namespaces are held by `unshare --net sleep`
//! processes and die with them.
//!
//! NAT kinds:
//! - **endpoint-independent**: plain `masquerade` keeps the source port, so
//!   the address a STUN server saw (srflx) is the one peers can punch to;
//! - **symmetric**: `masquerade random` picks a new random port for every
//!   destination, so the srflx address is useless to the other peer and
//!   only the TURN relay carries the link.
//!
//! coturn is started by the test with `use-auth-secret` and the server's
//! `turn_secret`, from a temporary config file (mode 0600; the secret is not
//! on any command line), listening only on 203.0.113.1.
//!
//! What the link used is read from each peer's `status --json`: the type of
//! the selected candidate pair (`path`, `local_candidate`,
//! `remote_candidate`).

mod browser;
mod support;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use support::procs::{Peer, Server, first_media, login, login_at, step};
use watchparty_peer::native::relay::{
    GatherServer, Gatherer, MAX_RELAY_PERMISSIONS, RelayState, TurnAuth,
};
use watchparty_signal::ws::config::TurnSecret;
use watchparty_signal::ws::turn::turn_credential;

/// The server's and coturn's address on the public segment.
const PUBLIC: &str = "203.0.113.1";
/// coturn's port (STUN and TURN, UDP).
const TURN_PORT: u16 = 3478;
/// coturn's relayed ports: below Linux's ephemeral range (32768–60999), so
/// a firewall can tell them from every other local UDP socket.
const RELAY_PORTS: (u16, u16) = (30000, 30999);
/// Lifetime of the server's TURN credentials in these tests.
const TTL_SECS: u64 = 600;
/// Longest wait for a link to come up (through NAT and relay, on a busy
/// machine).
const CONNECT: Duration = Duration::from_secs(60);

/// One topology at a time: they share the bridge's name and addresses.
static TOPOLOGY: Mutex<()> = Mutex::new(());

fn in_netns() -> bool {
    watchparty_e2e::impair::in_private_netns()
}

/// Runs a command in the test namespace; panics with its output on failure.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, held by a sleeping process.
struct Ns {
    holder: Child,
}

impl Ns {
    fn new() -> Ns {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Ns { holder };
        // `unshare` execs `sleep` in the same process once the namespace
        // exists; wait until the process is in a namespace other than ours.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok() == Some(mine.clone()) {
            assert!(Instant::now() < deadline, "namespace holder never unshared");
            std::thread::sleep(Duration::from_millis(10));
        }
        ns
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs `program args` inside the namespace.
    fn run(&self, program: &str, args: &[&str]) {
        let pid = self.pid().to_string();
        let mut all = vec!["-t", &pid, "-n", "--", program];
        all.extend(args);
        run("nsenter", &all);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nat {
    EndpointIndependent,
    Symmetric,
}

/// The public bridge, two routers and two homes.
struct Topology {
    homes: Vec<Ns>,
    _routers: Vec<Ns>,
    _dir: tempfile::TempDir,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Topology {
    fn new(nats: [Nat; 2]) -> Topology {
        let lock = TOPOLOGY.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        remove_links();
        run("ip", &["link", "add", "wpub", "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{PUBLIC}/24"), "dev", "wpub"],
        );
        run("ip", &["link", "set", "wpub", "up"]);
        let mut homes = Vec::new();
        let mut routers = Vec::new();
        for (i, nat) in nats.iter().enumerate() {
            let n = i + 1;
            let router = Ns::new();
            let home = Ns::new();
            let (rpid, hpid) = (router.pid().to_string(), home.pid().to_string());
            let (wan, wan_br) = (format!("wpr{n}"), format!("wpr{n}b"));
            let (lan, lan_r) = (format!("wph{n}"), format!("wph{n}r"));
            // Router's public side, on the bridge.
            run(
                "ip",
                &["link", "add", &wan, "type", "veth", "peer", "name", &wan_br],
            );
            run("ip", &["link", "set", &wan_br, "master", "wpub", "up"]);
            run("ip", &["link", "set", &wan, "netns", &rpid]);
            router.run("ip", &["link", "set", "lo", "up"]);
            router.run(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("203.0.113.{}/24", 10 * n),
                    "dev",
                    &wan,
                ],
            );
            router.run("ip", &["link", "set", &wan, "up"]);
            // Router ↔ home.
            run(
                "ip",
                &["link", "add", &lan, "type", "veth", "peer", "name", &lan_r],
            );
            run("ip", &["link", "set", &lan_r, "netns", &rpid]);
            run("ip", &["link", "set", &lan, "netns", &hpid]);
            router.run(
                "ip",
                &["addr", "add", &format!("10.0.{n}.1/24"), "dev", &lan_r],
            );
            router.run("ip", &["link", "set", &lan_r, "up"]);
            home.run("ip", &["link", "set", "lo", "up"]);
            home.run(
                "ip",
                &["addr", "add", &format!("10.0.{n}.2/24"), "dev", &lan],
            );
            home.run("ip", &["link", "set", &lan, "up"]);
            home.run(
                "ip",
                &["route", "add", "default", "via", &format!("10.0.{n}.1")],
            );
            router.run("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
            // Masquerade; unsolicited new flows to the router itself are
            // dropped before conntrack confirms them (an unconfirmed entry
            // would otherwise steal the port a later outgoing flow needs).
            let masq = match nat {
                Nat::EndpointIndependent => "masquerade",
                Nat::Symmetric => "masquerade random",
            };
            let script = format!(
                "table ip wpnat {{\n\
                 chain post {{ type nat hook postrouting priority srcnat; oifname \"{wan}\" {masq}; }}\n\
                 chain input {{ type filter hook input priority filter; iifname \"{wan}\" ct state new drop; }}\n\
                 }}\n"
            );
            let file = dir.path().join(format!("nat{n}.nft"));
            std::fs::write(&file, script).unwrap();
            router.run("nft", &["-f", file.to_str().unwrap()]);
            let _ = hpid;
            homes.push(home);
            routers.push(router);
        }
        Topology {
            homes,
            _routers: routers,
            _dir: dir,
            _lock: lock,
        }
    }

    fn home(&self, i: usize) -> u32 {
        self.homes[i].pid()
    }
}

/// Removes the bridge and the routers' bridge-side veth ends from the test
/// namespace. Deleting one end of a veth deletes its peer; without this the
/// ends would linger until the kernel finished destroying the routers'
/// namespaces, and the next topology could not reuse the names.
fn remove_links() {
    for link in ["wpr1b", "wpr2b", "wpub"] {
        let _ = Command::new("ip").args(["link", "del", link]).output();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The namespaces (and the links left in them) go with their holders.
        remove_links();
    }
}

/// coturn on the public segment.
struct Coturn {
    child: Child,
    log: PathBuf,
}

impl Coturn {
    fn start(dir: &Path, secret: &str) -> Coturn {
        let conf = dir.join("turnserver.conf");
        let log = dir.join("coturn-log.txt");
        let text = format!(
            "listening-ip={PUBLIC}\nrelay-ip={PUBLIC}\nlistening-port={TURN_PORT}\n\
             min-port={}\nmax-port={}\nuse-auth-secret\nstatic-auth-secret={secret}\n\
             realm=watchparty.test\nfingerprint\nno-tls\nno-dtls\nno-cli\n\
             no-software-attribute\nsimple-log\nlog-file={}\npidfile={}\n",
            RELAY_PORTS.0,
            RELAY_PORTS.1,
            log.display(),
            dir.join("turn.pid").display()
        );
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&conf)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        drop(f);
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Coturn { child, log };
        c.wait_ready();
        c
    }

    /// A STUN Binding request answered: coturn listens.
    fn wait_ready(&self) {
        let sock = UdpSocket::bind((PUBLIC, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut req = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(b"wp-ready-tid");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            let _ = sock.send_to(&req, (PUBLIC, TURN_PORT));
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && n >= 20
                && buf[0..2] == [1, 1]
            {
                return;
            }
        }
        panic!("coturn did not answer STUN:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        // coturn may add a date to the log file's name (not with
        // `simple-log`); read every file that starts with our log's stem
        // (the config file holding the secret does not).
        let dir = self.log.parent().unwrap();
        let stem = self.log.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(!"turnserver.conf".starts_with(&stem));
        let mut out = String::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with(&stem) {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A secret nobody could guess from the source (so finding it in a log
/// means it leaked).
fn fresh_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("wp-turn-{:016x}", h.finish())
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// What the server hands out: STUN always, TURN when `turn`.
fn server_config(dir: &Path, secret: &str, turn: bool) -> PathBuf {
    let mut text = format!("[signaling]\nstun_urls = [\"stun:{PUBLIC}:{TURN_PORT}\"]\n");
    if turn {
        text.push_str(&format!(
            "turn_urls = [\"turn:{PUBLIC}:{TURN_PORT}?transport=udp\"]\n\
             turn_secret = \"{secret}\"\nturn_ttl_secs = {TTL_SECS}\n"
        ));
    }
    let path = dir.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A room across the two homes: server on the public segment, the host
/// (alice) in home 1, bob in home 2, both native CLIs on `0.0.0.0:0`.
struct NatRoom {
    server: Server,
    alice: Peer,
    bob: Peer,
    _dir: tempfile::TempDir,
}

impl NatRoom {
    fn start(topo: &Topology, config: PathBuf) -> NatRoom {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::setup(dir.path(), &["alice", "bob"]);
        server.url_host = PUBLIC.to_owned();
        server.config = Some(config);
        server.start();
        for u in ["alice", "bob"] {
            let d = dir.path().join(u);
            std::fs::create_dir_all(&d).unwrap();
            login(&d, &server, u);
        }
        let media = first_media(&dir.path().join("alice"));
        let host_args: Vec<String> = [
            "host",
            "--player",
            "virtual",
            "--bind",
            "0.0.0.0:0",
            "--media",
            &media.to_string(),
            "--invite",
            "bob:viewer",
        ]
        .map(String::from)
        .to_vec();
        let mut alice = Peer::spawn_in(
            "alice",
            &dir.path().join("alice"),
            &host_args,
            Some(topo.home(0)),
        );
        let created = alice.wait_event("room_created");
        let link = created["link"].as_str().unwrap().to_owned();
        alice.wait_event("joined");
        let join_args: Vec<String> = ["join", &link, "--player", "virtual", "--bind", "0.0.0.0:0"]
            .map(String::from)
            .to_vec();
        let mut bob = Peer::spawn_in(
            "bob",
            &dir.path().join("bob"),
            &join_args,
            Some(topo.home(1)),
        );
        bob.wait_event("joined");
        step("room across two NATs started");
        NatRoom {
            server,
            alice,
            bob,
            _dir: dir,
        }
    }
}

/// The one neighbour in a status.
fn neighbour(s: &Value) -> &Value {
    &s["peers"][0]
}

fn link_up(s: &Value) -> bool {
    let p = neighbour(s);
    p["state"] == "connected" && p["channels_open"].as_u64() >= Some(3) && !p["path"].is_null()
}

/// Both sides connected; returns their statuses.
fn wait_linked(room: &mut NatRoom) -> [Value; 2] {
    let a = room.alice.status_until("a link to bob", CONNECT, link_up);
    let b = room.bob.status_until("a link to alice", CONNECT, link_up);
    [a, b]
}

/// Playback commands from the host reach the follower over the link.
fn host_controls_follower(room: &mut NatRoom) {
    room.alice.send("seek 42");
    room.alice.send("play");
    room.bob.status_until("the host's play", CONNECT, |s| {
        s["playback"]["paused"] == false
            && s["playback"]["position_ms"]
                .as_f64()
                .is_some_and(|p| p >= 42_000.0)
    });
}

/// A native room across two NATs of kind `nats`, with coturn running and
/// the server offering STUN, and TURN when `turn`. Dropped in field order:
/// the processes first, the namespaces last.
struct Scene {
    room: NatRoom,
    secret: String,
    turn: Coturn,
    _dir: tempfile::TempDir,
    _topo: Topology,
}

fn scene(nats: [Nat; 2], turn: bool) -> Scene {
    let topo = Topology::new(nats);
    let dir = tempfile::tempdir().unwrap();
    let secret = fresh_secret();
    let coturn = Coturn::start(dir.path(), &secret);
    let room = NatRoom::start(&topo, server_config(dir.path(), &secret, turn));
    Scene {
        room,
        secret,
        turn: coturn,
        _dir: dir,
        _topo: topo,
    }
}

#[test]
fn endpoint_independent_nat_connects_directly_via_stun() {
    if !in_netns() {
        eprintln!("SKIPPED: needs the private namespace of `cargo xtask test`");
        return;
    }
    // STUN only: a link can only be direct.
    let mut sc = scene([Nat::EndpointIndependent, Nat::EndpointIndependent], false);
    let room = &mut sc.room;
    let [a, b] = wait_linked(room);
    for s in [&a, &b] {
        let p = neighbour(s);
        assert_eq!(p["path"], "direct", "{s}");
        // The other home's public (NATed) address: learnt from STUN or
        // from its checks; never its private host address.
        assert!(
            p["remote_candidate"] == "srflx" || p["remote_candidate"] == "prflx",
            "{s}"
        );
        let offered: Vec<&str> = s["ice"]["local_candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(offered.contains(&"srflx"), "{s}");
        assert_eq!(s["ice"]["turn_offered"], false, "{s}");
    }
    host_controls_follower(room);
}

#[test]
fn symmetric_nat_on_both_sides_connects_through_the_turn_relay() {
    if !in_netns() {
        eprintln!("SKIPPED: needs the private namespace of `cargo xtask test`");
        return;
    }
    let started = unix_now();
    let mut sc = scene([Nat::Symmetric, Nat::Symmetric], true);
    let (room, secret) = (&mut sc.room, sc.secret.clone());
    let [a, b] = wait_linked(room);
    for s in [&a, &b] {
        assert_eq!(neighbour(s)["path"], "relay", "{s}");
        assert_eq!(s["ice"]["relays"], serde_json::json!(["allocated"]), "{s}");
    }
    host_controls_follower(room);

    // The server's ephemeral credentials never reach a log: neither the
    // shared secret nor any credential it could have minted for these
    // users during the test.
    let ended = unix_now();
    let ids: Vec<i64> = [&a, &b]
        .iter()
        .map(|s| s["you"].as_i64().unwrap())
        .collect();
    let logs = [
        ("server", room.server.log()),
        ("alice", room.alice.log()),
        ("bob", room.bob.log()),
    ];
    let ttl = i64::try_from(TTL_SECS).unwrap();
    for (who, log) in &logs {
        assert!(
            !log.is_empty() || *who != "server",
            "the server log is empty"
        );
        assert!(
            !log.contains(&secret),
            "the TURN secret is in the {who} log"
        );
        for t in started..=ended {
            for id in &ids {
                let (_, cred) = turn_credential(&TurnSecret::new(secret.as_str()), t + ttl, *id);
                assert!(
                    !log.contains(&cred),
                    "a TURN credential is in the {who} log"
                );
            }
        }
    }
    assert!(
        !sc.turn.log_text().contains(&secret),
        "coturn logged the shared secret"
    );
}

#[test]
fn symmetric_nat_without_turn_explains_the_failure() {
    if !in_netns() {
        eprintln!("SKIPPED: needs the private namespace of `cargo xtask test`");
        return;
    }
    let mut sc = scene([Nat::Symmetric, Nat::Symmetric], false);
    let room = &mut sc.room;
    let advice = "the server offers no TURN relay; ask the host to configure one";
    // Within the documented timeout (LINK_FAILURE_TIMEOUT, 30 s) plus the
    // time the room took to start on a busy machine.
    let limit = watchparty_peer::ice::LINK_FAILURE_TIMEOUT + Duration::from_secs(30);
    for p in [&mut room.alice, &mut room.bob] {
        let ev = p.wait_for_within("link_failed", limit, |v| v["event"] == "link_failed");
        let msg = ev["message"].as_str().unwrap();
        assert!(msg.contains(advice), "{ev}");
        assert!(msg.contains("(host)") && msg.contains("(srflx)"), "{ev}");
        let other = if p.name == "alice" { "bob" } else { "alice" };
        assert!(
            msg.contains(&format!("Could not connect to {other}")),
            "{ev}"
        );
        let s = p.status();
        let n = neighbour(&s);
        assert_ne!(n["state"], "connected", "{s}");
        assert!(
            n["problem"].as_str().is_some_and(|t| t.contains(advice)),
            "{s}"
        );
        assert!(p.log().contains(advice), "not in the log:\n{}", p.log());
    }
}

/// Drives a [`Gatherer`] against coturn over a real socket until it is done.
fn allocate(auth: TurnAuth) -> RelayState {
    allocate_keep(auth).0
}

/// [`allocate`], also returning the gatherer.
fn allocate_keep(auth: TurnAuth) -> (RelayState, Gatherer) {
    let sock = UdpSocket::bind((PUBLIC, 0)).unwrap();
    let base = sock.local_addr().unwrap();
    let server: SocketAddr = format!("{PUBLIC}:{TURN_PORT}").parse().unwrap();
    let mut g = Gatherer::new(
        base,
        &[GatherServer {
            addr: server,
            turn: Some(auth),
        }],
        Instant::now(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    while !g.done() && Instant::now() < deadline {
        while let Some((to, bytes)) = g.poll_transmit() {
            sock.send_to(&bytes, to).unwrap();
        }
        let wait = g
            .poll_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        sock.set_read_timeout(Some(wait)).unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            g.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        g.handle_timeout(Instant::now());
    }
    let state = g.relays().map(|(_, r)| r.clone()).next().unwrap();
    (state, g)
}

#[test]
fn coturn_takes_the_servers_ephemeral_credentials_and_refuses_expired_ones() {
    if !in_netns() {
        eprintln!("SKIPPED: needs the private namespace of `cargo xtask test`");
        return;
    }
    let _topo = Topology::new([Nat::EndpointIndependent, Nat::EndpointIndependent]);
    let dir = tempfile::tempdir().unwrap();
    let secret = fresh_secret();
    let _turn = Coturn::start(dir.path(), &secret);
    let secret = TurnSecret::new(secret.as_str());
    let mint = |expiry: i64| {
        let (username, credential) = turn_credential(&secret, expiry, 7);
        TurnAuth {
            username,
            credential,
        }
    };
    let now = unix_now();
    let (fresh, mut g) = allocate_keep(mint(now + 600));
    let RelayState::Allocated(relayed) = fresh else {
        panic!("{fresh:?}");
    };
    // MAX_RELAY_PERMISSIONS crossed: the first datagram to each new address
    // asks coturn for a permission (and is dropped); beyond the limit no
    // more permissions are asked for.
    while g.poll_transmit().is_some() {}
    let t = Instant::now();
    for i in 0..MAX_RELAY_PERMISSIONS {
        let port = 1000 + u16::try_from(i).unwrap();
        let to = SocketAddr::from(([198, 51, 100, 1], port));
        assert!(!g.send(t, relayed, to, b"x"));
        assert!(
            g.poll_transmit().is_some(),
            "no permission request for {to}"
        );
        while g.poll_transmit().is_some() {}
    }
    let over = SocketAddr::from(([198, 51, 100, 2], 9));
    assert!(!g.send(t, relayed, over, b"x"));
    assert!(g.poll_transmit().is_none(), "a permission beyond the limit");
    assert_eq!(
        g.stats().relay_dropped,
        u64::try_from(MAX_RELAY_PERMISSIONS).unwrap() + 1
    );
    let expired = allocate(mint(now - 60));
    assert_eq!(
        expired,
        RelayState::Failed(
            "the TURN server refused our credentials (expired or wrong secret)".into()
        )
    );
    let forged = allocate(TurnAuth {
        username: format!("{}:7", now + 600),
        credential: "bm90IHRoZSByaWdodCBtYWM=".into(),
    });
    assert!(matches!(forged, RelayState::Failed(_)), "{forged:?}");
}

/// In the test namespace (where the browser runs): UDP between local
/// sockets and the homes only to and from coturn (its listening and relayed
/// ports). The browser can then reach the homes only through the relay —
/// a network that allows UDP to the TURN server and nothing else.
struct UdpOnlyToTurn {
    _dir: tempfile::TempDir,
}

impl UdpOnlyToTurn {
    fn install() -> UdpOnlyToTurn {
        let dir = tempfile::tempdir().unwrap();
        let ports = format!("{{ {TURN_PORT}, {}-{} }}", RELAY_PORTS.0, RELAY_PORTS.1);
        let script = format!(
            "table inet wpturnonly {{\n\
             chain out {{ type filter hook output priority filter; \
             ip daddr 203.0.113.0/24 ip daddr != {PUBLIC} udp sport != {ports} drop; }}\n\
             chain in {{ type filter hook input priority filter; \
             ip saddr 203.0.113.0/24 ip saddr != {PUBLIC} udp dport != {ports} drop; }}\n\
             }}\n"
        );
        let file = dir.path().join("turnonly.nft");
        std::fs::write(&file, script).unwrap();
        run("nft", &["-f", file.to_str().unwrap()]);
        UdpOnlyToTurn { _dir: dir }
    }
}

impl Drop for UdpOnlyToTurn {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", "wpturnonly"])
            .output();
    }
}

/// A browser host (alice, in the test namespace behind [`UdpOnlyToTurn`])
/// and a native follower (bob, the CLI in home 2 behind a symmetric NAT);
/// the server offers STUN, and TURN when `turn`.
struct WebRoom {
    alice: browser::Browser,
    bob: Peer,
    _site: browser::Site,
    _fw: UdpOnlyToTurn,
    _turn: Coturn,
    _dir: tempfile::TempDir,
    _topo: Topology,
}

async fn web_room(turn: bool) -> WebRoom {
    browser::require_room_client();
    let topo = Topology::new([Nat::Symmetric, Nat::Symmetric]);
    let dir = tempfile::tempdir().unwrap();
    let secret = fresh_secret();
    let coturn = Coturn::start(dir.path(), &secret);
    let fw = UdpOnlyToTurn::install();
    let site = browser::Site::start_configured(&["alice", "bob"], &browser::clip(), true, |c| {
        c.signaling.stun_urls = vec![format!("stun:{PUBLIC}:{TURN_PORT}")];
        if turn {
            c.signaling.turn_urls = vec![format!("turn:{PUBLIC}:{TURN_PORT}?transport=udp")];
            c.signaling.turn_secret = Some(TurnSecret::new(secret));
            c.signaling.turn_ttl_secs = TTL_SECS;
        }
    })
    .await;
    let port = site.base.rsplit(':').next().unwrap().to_owned();
    let public_base = format!("http://{PUBLIC}:{port}");
    let alice = browser::Browser::start("alice").await;
    browser::sign_in(&alice, &site, "alice").await;
    browser::create_room(&alice, &site, &[("bob", "viewer")]).await;
    let link = alice
        .property(&alice.find("#invite-link").await, "value")
        .await;
    let link = link.as_str().unwrap().replace(&site.base, &public_base);
    step("browser host: room created");
    // bob: the native CLI in home 2, behind a symmetric NAT.
    let bob_dir = dir.path().join("bob");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let home = topo.home(1);
    let bob = tokio::task::block_in_place(|| {
        login_at(&bob_dir, &public_base, "bob");
        let args: Vec<String> = ["join", &link, "--player", "virtual", "--bind", "0.0.0.0:0"]
            .map(String::from)
            .to_vec();
        let mut bob = Peer::spawn_in("bob", &bob_dir, &args, Some(home));
        bob.wait_event("joined");
        bob
    });
    WebRoom {
        alice,
        bob,
        _site: site,
        _fw: fw,
        _turn: coturn,
        _dir: dir,
        _topo: topo,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_native_behind_symmetric_nat_connect_through_the_turn_relay() {
    if !in_netns() || !browser::browser_available() {
        eprintln!("SKIPPED: needs the private namespace and Chromium of `cargo xtask test`");
        return;
    }
    // Bound as a whole: the server, coturn and the namespaces live as long
    // as the room.
    let mut room = web_room(true).await;
    let s =
        tokio::task::block_in_place(|| room.bob.status_until("a link to alice", CONNECT, link_up));
    assert_eq!(neighbour(&s)["path"], "relay", "{s}");
    browser::wait_connected(&room.alice, 1).await;
    step("browser and native linked through the relay");
    browser::click(&room.alice, "#btn-play").await;
    tokio::task::block_in_place(|| {
        room.bob.status_until("the host's play", CONNECT, |s| {
            s["playback"]["paused"] == false
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_the_web_page_explains_the_failed_link() {
    if !in_netns() || !browser::browser_available() {
        eprintln!("SKIPPED: needs the private namespace and Chromium of `cargo xtask test`");
        return;
    }
    let room = web_room(false).await;
    // Within the documented timeout, plus the page's start on a busy
    // machine: the member row says who, what was tried and what to do.
    let limit = watchparty_peer::ice::LINK_FAILURE_TIMEOUT + Duration::from_secs(40);
    let text = room
        .alice
        .wait_until(
            "the failed link explained next to bob",
            "const e = document.querySelector('li.member .sync.problem'); \
             return e && e.textContent",
            limit,
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(text.starts_with("Could not connect to bob"), "{text}");
    assert!(
        text.contains("the server offers no TURN relay; ask the host to configure one"),
        "{text}"
    );
    assert!(text.contains("(host)"), "{text}");
}
