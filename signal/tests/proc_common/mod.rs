//! Shared harness of the tests that run the real `watchparty-signal` binary
//! as a separate process (crash safety, load and soak): a data directory with
//! a scanned media library and users created through the admin CLI, a server
//! process that can be killed with SIGKILL and restarted on the same files,
//! and `/proc` readings of its memory and open file descriptors.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// The server binary cargo built for this package's tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_watchparty-signal");

/// Password of every user the harness creates.
pub const PASSWORD: &str = "correct-horse-battery";

/// Longest wait for a (re)started server to answer `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A data directory prepared for the binary: config file (cheap argon2: only
/// tests lower it), a library `films` with one video, users.
pub struct DataDir {
    pub root: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl DataDir {
    /// Writes the config (`extra` is prepended as TOML) and a media tree,
    /// registers and scans the library.
    pub fn new(root: &Path, extra: &str) -> DataDir {
        let data = root.join("data");
        let lib = root.join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        let mut mp4 = vec![0u8; 4096];
        mp4[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
        std::fs::write(lib.join("movie.mp4"), mp4).unwrap();
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!("{extra}\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n"),
        )
        .unwrap();
        let d = DataDir {
            root: root.to_owned(),
            data,
            config,
        };
        d.admin(&["library", "add", "films", lib.to_str().unwrap()], None);
        d.admin(&["media", "scan", "films"], None);
        d
    }

    /// Runs an admin sub-command; panics with its output when it fails.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("WATCHPARTY_BIND")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates user `name` (password [`PASSWORD`]) with access to `films`.
    pub fn add_user(&self, name: &str) {
        self.admin(&["user", "add", name], Some(&format!("{PASSWORD}\n")));
        self.admin(&["grant", name, "films"], None);
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data.join("watchparty.db")
    }
}

/// A free loopback port (released before the server binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts `serve` on `port` and waits until `/readyz` answers 200. Logs
    /// (level `warn`) are appended to `server.log` in the data root.
    pub async fn start(dir: &DataDir, port: u16) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.root.join("server.log"))
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&dir.data)
            .arg("--config")
            .arg(&dir.config)
            .args(["serve", "--bind", &addr.to_string()])
            .env_remove("WATCHPARTY_BIND")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut p = Proc { child, addr };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let client = client_from(None);
        let url = self.url("/readyz");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited before it was ready: {status}");
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready at {url}");
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL (no shutdown code runs) and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client, optionally bound to a source address (per-IP limits key
/// on the client address; loopback has all of 127.0.0.0/8).
pub fn client_from(source: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Logs in; returns the access token.
pub async fn login(client: &reqwest::Client, proc_url: &str, name: &str) -> String {
    let r = client
        .post(format!("{proc_url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login {name}");
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// The id of user `name` (from `user list`: id is the first column).
pub fn user_ids(dir: &DataDir) -> std::collections::HashMap<String, i64> {
    dir.admin(&["user", "list"], None)
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let id = cols.next()?.parse().ok()?;
            Some((cols.next()?.to_owned(), id))
        })
        .collect()
}
