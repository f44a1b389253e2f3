//! Accounts: login throughput and latency with [`CLIENTS`] concurrent
//! clients against the release server process with the production argon2
//! parameters; the server's peak RSS against the bound its hashing
//! semaphore sets (`hash_concurrency × memory`).
//!
//! The per-IP login limit would stop 50 clients sharing 127.0.0.1 after a
//! few requests, so the server trusts 127.0.0.1 as a proxy and each client
//! presents its own `X-Forwarded-For` address (a header value only; all
//! traffic is on loopback). Each client has its own account.
//!
//! Then join throughput: [`CLIENTS`]` - 1` clients join and leave one open
//! room over and over (each a committed `BEGIN IMMEDIATE` transaction, and
//! an audit record queued for the server's writer task, issue #21) while the
//! first client hosts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::password::DEFAULT_HASH_CONCURRENCY;

use crate::stats::{Figure, Stat, Target};
use crate::{Error, Options, procfs};

/// Concurrent clients.
pub const CLIENTS: usize = 50;

/// Longest single request.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

const PASSWORD: &str = "bench-password-123";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seats of the join room (the server's `room_max_members`).
const JOIN_ROOM_SEATS: u32 = 64;

async fn prepare(dir: &Path) -> Result<(), Error> {
    // One media item for the join room (every bench user is an admin, so
    // every user may watch it).
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib)?;
    let mut movie = b"\0\0\0\x18ftypisom".to_vec();
    movie.resize(4096, 7);
    std::fs::write(lib.join("movie.mp4"), movie)?;
    let mut config = Config::new(dir.join("data"));
    config.argon2 = Argon2Cost::default();
    let state = AppState::new(config).await.map_err(Error::msg)?;
    let hash = state
        .hasher
        .hash(PASSWORD.as_bytes())
        .await
        .map_err(Error::msg)?;
    for i in 0..CLIENTS {
        sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, is_admin, created_at) VALUES (?1, ?1, ?2, 1, 0)",
        )
        .bind(format!("login{i:02}"))
        .bind(&hash)
        .execute(&state.db)
        .await
        .map_err(Error::msg)?;
    }
    watchparty_signal::media::library::add_scanned(&state.db, "bench", &lib, 0)
        .await
        .map_err(Error::msg)?;
    state.db.close().await;
    std::fs::write(
        dir.join("signal.toml"),
        format!("trusted_proxies = [\"127.0.0.1/32\"]\nroom_max_members = {JOIN_ROOM_SEATS}\n"),
    )?;
    Ok(())
}

/// Runs the accounts figures: once as deployed, once with glibc's mmap
/// threshold fixed (a diagnostic: with it, freed argon2 blocks go back to the
/// OS instead of staying in per-thread malloc arenas).
pub async fn run(
    opts: &Options,
    out: &mut Vec<Figure>,
    _notes: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(bin) = &opts.signal_bin else {
        return Err(Error::msg("no --signal-bin given"));
    };
    let span = Duration::from_secs(if opts.quick { 8 } else { 20 });
    let dir = tempfile::tempdir()?;
    prepare(dir.path()).await?;
    run_once(bin, dir.path(), span, None, out).await?;
    let dir = tempfile::tempdir()?;
    prepare(dir.path()).await?;
    run_once(
        bin,
        dir.path(),
        span,
        Some(("MALLOC_MMAP_THRESHOLD_", "131072")),
        out,
    )
    .await
}

async fn run_once(
    bin: &Path,
    dir: &Path,
    span: Duration,
    env: Option<(&str, &str)>,
    out: &mut Vec<Figure>,
) -> Result<(), Error> {
    let suffix = if env.is_some() {
        "_mmap_threshold_fixed"
    } else {
        ""
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(bin);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let child = cmd
        .arg("--config")
        .arg(dir.join("signal.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("serve")
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--web-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Proc(child);
    let pid = server.0.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_LIMIT)
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .map_err(Error::msg)?;
    let url = format!("http://127.0.0.1:{port}/api/v1/auth/login");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if Instant::now() > end {
            return Err(Error::msg("server did not listen in time"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base_rss = procfs::rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let t0 = Instant::now();
    let stop = t0 + span;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u32;
            let body = json!({"username": format!("login{i:02}"), "password": PASSWORD});
            while Instant::now() < stop {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("x-forwarded-for", client_addr(LOGIN_PHASE, i))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut peak = base_rss;
    for t in tasks {
        let (l, e) = t.await.map_err(Error::msg)?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    peak = peak.max(procfs::peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
    let cost = Argon2Cost::default();
    let bound = base_rss + (DEFAULT_HASH_CONCURRENCY as f64) * f64::from(cost.memory_kib) / 1024.0;
    let params = json!({"clients": CLIENTS, "span_s": span.as_secs(), "argon2": format!("m={} KiB, t={}, p={}", cost.memory_kib, cost.iterations, cost.parallelism),
                        "hash_concurrency": DEFAULT_HASH_CONCURRENCY, "errors": errors, "server_env": env.map(|(k, v)| format!("{k}={v}"))});
    out.extend(Figure::single(
        "accounts",
        &format!("login_throughput{suffix}"),
        "logins/s",
        lat.len() as f64 / elapsed,
        params.clone(),
        None,
    ));
    out.extend(Figure::new(
        "accounts",
        &format!("login_latency{suffix}"),
        "ms",
        &lat,
        params.clone(),
        None,
    ));
    out.extend(Figure::single("accounts", &format!("login_peak_rss{suffix}"), "MiB", peak, json!({"baseline_mib": base_rss, "semaphore_bound_mib": bound,
        "bounded": peak <= bound + 16.0, "bound": "baseline + hash_concurrency × argon2 memory (+16 MiB slack for 50 in-flight requests)",
        "server_env": env.map(|(k, v)| format!("{k}={v}"))}),
        Some(Target::at_most(Stat::Median, bound + 16.0, "≤ semaphore bound + 16 MiB"))));
    eprintln!(
        "bench: accounts{suffix} {} logins in {elapsed:.1} s, peak rss {peak:.1} MiB (bound {bound:.1})",
        lat.len()
    );
    if env.is_none() {
        joins(&client, port, span, out).await?;
    }
    Ok(())
}

/// The `x-forwarded-for` address of client `i` in phase `phase` (see the
/// module comment). The join phase signs in from addresses of its own: the
/// login phase may have spent its addresses' per-IP budget.
fn client_addr(phase: u8, i: usize) -> String {
    format!("10.{phase}.{}.{}", i / 200, i % 200 + 1)
}

/// [`client_addr`] phase of the login figures.
const LOGIN_PHASE: u8 = 77;
/// [`client_addr`] phase of the join figures.
const JOIN_PHASE: u8 = 78;

/// Sends `req` and reads the JSON answer.
async fn answer(req: reqwest::RequestBuilder) -> Result<serde_json::Value, Error> {
    req.send()
        .await
        .map_err(Error::msg)?
        .json()
        .await
        .map_err(Error::msg)
}

/// Join throughput and latency: client 0 hosts an open room, the others
/// join and leave it until `span` has passed.
async fn joins(
    client: &reqwest::Client,
    port: u16,
    span: Duration,
    out: &mut Vec<Figure>,
) -> Result<(), Error> {
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let mut tokens = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let r = answer(
            client
                .post(format!("{base}/auth/login"))
                .header("x-forwarded-for", client_addr(JOIN_PHASE, i))
                .json(&json!({"username": format!("login{i:02}"), "password": PASSWORD})),
        )
        .await?;
        let token = r["access_token"]
            .as_str()
            .ok_or_else(|| Error::msg(format!("login{i:02} failed: {r}")))?;
        tokens.push(token.to_owned());
    }
    let items = answer(client.get(format!("{base}/media")).bearer_auth(&tokens[0])).await?;
    let media = items[0]["id"]
        .as_i64()
        .ok_or_else(|| Error::msg(format!("no media item: {items}")))?;
    let room = answer(
        client
            .post(format!("{base}/rooms"))
            .bearer_auth(&tokens[0])
            .json(&json!({"name": "bench", "media_id": media, "invite_only": false, "max_members": JOIN_ROOM_SEATS})),
    )
    .await?;
    let room = room["id"]
        .as_str()
        .ok_or_else(|| Error::msg(format!("room not created: {room}")))?
        .to_owned();
    let t0 = Instant::now();
    let stop = t0 + span;
    let mut tasks = Vec::new();
    for token in tokens.into_iter().skip(1) {
        let client = client.clone();
        let (join, leave) = (
            format!("{base}/rooms/{room}/join"),
            format!("{base}/rooms/{room}/leave"),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u32;
            while Instant::now() < stop {
                let t = Instant::now();
                match client.post(&join).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
                match client.post(&leave).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(Error::msg)?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let params = json!({"clients": CLIENTS - 1, "span_s": span.as_secs(), "errors": errors,
                        "loop": "join then leave, each one committed transaction plus a queued audit record"});
    out.extend(Figure::single(
        "accounts",
        "join_throughput",
        "joins/s",
        lat.len() as f64 / elapsed,
        params.clone(),
        None,
    ));
    out.extend(Figure::new(
        "accounts",
        "join_latency",
        "ms",
        &lat,
        params,
        None,
    ));
    eprintln!(
        "bench: accounts {} joins in {elapsed:.1} s ({errors} errors)",
        lat.len()
    );
    Ok(())
}
