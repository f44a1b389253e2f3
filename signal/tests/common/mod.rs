//! Shared harness: a real server on 127.0.0.1:0 over a real SQLite file in a
//! temporary directory, driven with reqwest.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::state::Limiters;
use watchparty_signal::throttle::{RateLimiter, THROTTLE_CAPACITY};
use watchparty_signal::validate::{DisplayName, Username};
use watchparty_signal::{AppState, accounts};

/// Cheap argon2 parameters for tests (never the default).
pub const TEST_ARGON2: Argon2Cost = Argon2Cost {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// The CSRF header of the refresh-cookie routes.
pub const CSRF_HEADER: &str = "x-watchparty-csrf";

/// The refresh cookie of a response as `name=value` (what a browser sends
/// back) and its full `Set-Cookie` line.
pub fn refresh_cookie(r: &Response) -> Option<(String, String)> {
    let line = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.contains("watchparty_refresh="))?;
    let pair = line.split(';').next().unwrap().to_owned();
    Some((pair, line))
}

/// A test password.
pub const PASSWORD: &str = "correct-horse-battery";

/// A running server.
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.argon2 = TEST_ARGON2;
    c
}

pub fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

impl Server {
    /// Starts a server with the test config, modified by `tweak`.
    pub async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = test_config(dir);
        tweak(&mut config);
        let state = AppState::new(config).await.unwrap();
        Self::start_with_state(state).await
    }

    /// Starts with relaxed room-creation and per-IP auth limits (for tests creating
    /// many rooms and sessions from one loopback address).
    pub async fn start_relaxed(dir: &Path) -> Server {
        Self::start_relaxed_with(dir, |_| {}).await
    }

    /// [`Server::start_relaxed`] with the config modified by `tweak`.
    pub async fn start_relaxed_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = test_config(dir);
        tweak(&mut config);
        let mut state = AppState::new(config).await.unwrap();
        let mut limits = Limiters::new();
        limits.room_create = RateLimiter::new(
            100_000,
            std::time::Duration::from_secs(1),
            THROTTLE_CAPACITY,
        );
        limits.auth_ip = RateLimiter::new(
            100_000,
            std::time::Duration::from_secs(1),
            THROTTLE_CAPACITY,
        );
        state.limits = Arc::new(limits);
        Self::start_with_state(state).await
    }

    pub async fn start_with_state(state: AppState) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let st = state.clone();
        let task = tokio::spawn(async move {
            watchparty_signal::server::serve(st, listener, async {
                let _ = rx.await;
            })
            .await
        });
        Server {
            base: format!("http://{addr}"),
            addr,
            state,
            client: client(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop; closes the pool.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.state.db.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a user directly in the database.
    pub async fn add_user(&self, name: &str, admin: bool) -> i64 {
        let hash = self.state.hasher.hash(PASSWORD.as_bytes()).await.unwrap();
        accounts::create_user(
            &self.state.db,
            &Username::parse(name).unwrap(),
            &DisplayName::parse(name).unwrap(),
            &hash,
            admin,
        )
        .await
        .unwrap()
    }

    /// Logs in; returns the JSON token response.
    pub async fn login_full(&self, name: &str) -> Value {
        let r = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login {name}");
        r.json().await.unwrap()
    }

    /// Logs in as the web app does (`refresh_cookie`, CSRF header, `origin`);
    /// returns the response.
    pub async fn cookie_login(&self, name: &str, origin: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .header(CSRF_HEADER, "1")
            .header("origin", origin)
            .json(&json!({"username": name, "password": PASSWORD, "refresh_cookie": true}))
            .send()
            .await
            .unwrap()
    }

    /// A body-less `POST` to an auth route carrying the refresh cookie
    /// `cookie` (`name=value`), and optionally the CSRF header, an `Origin`
    /// and a bearer token.
    pub async fn cookie_post(
        &self,
        path: &str,
        cookie: &str,
        csrf: bool,
        origin: Option<&str>,
        bearer: Option<&str>,
    ) -> Response {
        let mut req = self.client.post(self.url(path)).header("cookie", cookie);
        if csrf {
            req = req.header(CSRF_HEADER, "1");
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Logs in; returns the access token.
    pub async fn login(&self, name: &str) -> String {
        self.login_full(name).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Sends an authenticated JSON request.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// Creates a library rooted at `root`, scans it, returns its id.
    pub async fn add_library(&self, name: &str, root: &Path) -> i64 {
        watchparty_signal::media::library::add_scanned(&self.state.db, name, root, 0)
            .await
            .unwrap()
    }

    pub async fn grant(&self, user: i64, library: i64) {
        watchparty_signal::media::library::grant(&self.state.db, user, library, 0)
            .await
            .unwrap();
    }

    /// Id of the item at `rel_path`.
    pub async fn item_id(&self, rel_path: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM media_items WHERE rel_path = ?1")
            .bind(rel_path)
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }
}

/// A fake but magic-correct MP4 of `len` bytes with a recognisable pattern.
pub fn mp4_bytes(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let head = b"\0\0\0\x18ftypisom";
    v[..head.len()].copy_from_slice(head);
    v
}

/// Writes a media tree: `movie.mp4` (+ `movie.en.srt`, `movie.vtt`), `song.mp3`.
pub fn media_tree(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("films")).unwrap();
    std::fs::write(root.join("films/movie.mp4"), mp4_bytes(10_000)).unwrap();
    std::fs::write(
        root.join("films/movie.en.srt"),
        "1\r\n00:00:01,000 --> 00:00:02,000\r\nHello\r\n",
    )
    .unwrap();
    std::fs::write(
        root.join("films/movie.vtt"),
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHi\n",
    )
    .unwrap();
    let mut mp3 = b"ID3\x04\0\0\0\0\0\0".to_vec();
    mp3.extend(std::iter::repeat_n(7u8, 500));
    std::fs::write(root.join("song.mp3"), mp3).unwrap();
    // Right extension, wrong magic: must be rejected by the scan.
    std::fs::write(root.join("fake.mp4"), b"this is not a video file").unwrap();
    root.to_owned()
}

pub async fn json(r: Response) -> Value {
    r.json().await.unwrap()
}

/// Everything the process logs, captured by a global `tracing` subscriber so a
/// test can grep it for secrets. Install once per test binary.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs the global subscriber with `filter` (an `EnvFilter` directive)
    /// and returns the capture.
    pub fn install(filter: &str) -> LogCapture {
        let capture = LogCapture::default();
        let sink = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .init();
        capture
    }

    /// Everything logged so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
