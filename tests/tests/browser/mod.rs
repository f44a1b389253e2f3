//! Harness for the web-app tests: the real signaling server in-process
//! (real SQLite file, HTTP/WebSocket on 127.0.0.1, serving `web/` and the
//! wasm bundle), a real WebM clip made with ffmpeg, and headless Chromium
//! or Firefox driven over WebDriver ([`BrowserKind`]; a scenario written
//! once as `async fn(kind: BrowserKind)` runs in both with
//! [`in_each_browser!`]).
//!
//! Chromium never gathers 127.0.0.1 ICE candidates; the page is loaded from
//! 127.0.0.1 (a secure context), and WebRTC runs over the machine's other
//! address — in `cargo xtask test` the private namespace's 192.0.2.77.
#![allow(dead_code)]

pub mod native;
pub mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::validate::{DisplayName, Username};
pub use webdriver::{Autoplay, Browser, BrowserKind};

/// Password of every test user.
pub const PASSWORD: &str = "correct-horse-battery";
/// The bundle's JS module inside the pkg directory.
pub const BUNDLE_JS: &str = "watchparty_wasm_peer.js";
/// Length of the generated clip (s).
pub const CLIP_SECS: u32 = 120;
/// Sync tolerance between two pages measured at one instant (ms).
pub const SYNC_TOLERANCE_MS: f64 = 50.0;
/// Longest wait for a room to settle after a command.
pub const SETTLE: Duration = Duration::from_secs(40);
/// Longest wait for a page step (signed in, a page loaded, a control
/// enabled), generous for a busy 2-core machine.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Whether the Chromium tests can run here; prints why not.
pub fn browser_available() -> bool {
    BrowserKind::Chromium.available()
}

/// Declares the scenario `async fn $name(kind: BrowserKind)` (defined next
/// to it) as two tests, `$name::chromium` and `$name::firefox`: one code
/// path, run in each engine.
#[allow(unused_macros)] // Not every test target has scenarios for both engines.
macro_rules! in_each_browser {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn chromium() {
                super::$name($crate::browser::BrowserKind::Chromium).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firefox() {
                super::$name($crate::browser::BrowserKind::Firefox).await;
            }
        }
    };
}
#[allow(unused_imports)] // Not every test target has scenarios for both engines.
pub(crate) use in_each_browser;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `$WATCHPARTY_WEB_DIR` or `<workspace>/web`.
pub fn web_dir() -> PathBuf {
    std::env::var_os("WATCHPARTY_WEB_DIR")
        .map_or_else(|| workspace_root().join("web"), PathBuf::from)
}

/// `$WATCHPARTY_WEB_PKG_DIR` or `<web_dir>/pkg`.
pub fn pkg_dir() -> PathBuf {
    std::env::var_os("WATCHPARTY_WEB_PKG_DIR").map_or_else(|| web_dir().join("pkg"), PathBuf::from)
}

/// Panics unless the bundle is built and exports `RoomClient`.
pub fn require_room_client() {
    let dir = pkg_dir();
    assert!(
        dir.join(BUNDLE_JS).is_file(),
        "the browser bundle is missing in {} (the e2e step of `cargo xtask test` and \
         `cargo xtask demo` build it)",
        dir.display()
    );
    let js = std::fs::read_to_string(dir.join(BUNDLE_JS)).unwrap();
    assert!(
        js.contains("class RoomClient"),
        "the browser bundle in {} does not export RoomClient yet",
        dir.display()
    );
}

/// A WebM (VP8 + Opus) test clip, made once per target dir with ffmpeg.
pub fn clip() -> PathBuf {
    encode_clip(
        &format!("watchparty-e2e-clip-{CLIP_SECS}s"),
        &format!("testsrc2=size=320x180:rate=25:duration={CLIP_SECS}"),
        "150k",
        &tone(CLIP_SECS),
    )
}

/// A 440 Hz tone of `secs` (an ffmpeg lavfi source).
fn tone(secs: u32) -> String {
    format!("sine=frequency=440:sample_rate=48000:duration={secs}")
}

/// Length of [`marker_clip`] (s).
pub const MARKER_CLIP_SECS: u32 = 120;

/// A clip whose audio is the acoustic measure's marker track (a chirp and
/// an identity tone every second, `watchparty_e2e::acoustic`).
pub fn marker_clip() -> PathBuf {
    use watchparty_e2e::acoustic;
    encode_clip(
        // The version changes with the track's definition.
        &format!("watchparty-e2e-markers-{MARKER_CLIP_SECS}s-v1"),
        &format!("testsrc2=size=320x180:rate=25:duration={MARKER_CLIP_SECS}"),
        "150k",
        &acoustic::ffmpeg_marker_source(MARKER_CLIP_SECS, 48_000),
    )
}

/// Length of [`noise_clip`] (s).
pub const NOISE_CLIP_SECS: u32 = 120;

/// A clip of video noise at 4 Mbit/s (about 60 MB): too big for the
/// browser to have downloaded ahead, so a far seek needs the server.
pub fn noise_clip() -> PathBuf {
    encode_clip(
        &format!("watchparty-e2e-noise-{NOISE_CLIP_SECS}s"),
        &format!(
            "nullsrc=size=320x180:rate=25:duration={NOISE_CLIP_SECS},geq=random(1)*255:128:128"
        ),
        "4M",
        &tone(NOISE_CLIP_SECS),
    )
}

/// Encodes (once per target dir) a WebM clip of `video` at `bitrate` with
/// `audio` (both ffmpeg lavfi sources).
fn encode_clip(name: &str, video: &str, bitrate: &str, audio: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(format!("{name}.webm"));
    if out.is_file() {
        return out;
    }
    let tmp = dir.join(format!("{name}-{}.webm", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(video)
        .args(["-f", "lavfi", "-i"])
        .arg(audio)
        .args([
            "-c:v",
            "libvpx",
            "-b:v",
            bitrate,
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ])
        .args(["-g", "25", "-c:a", "libopus", "-b:a", "32k", "-shortest"])
        .arg(&tmp)
        .status()
        .expect("ffmpeg runs (cargo xtask setup installs it)");
    assert!(status.success(), "ffmpeg failed: {status}");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The server with a library `films` holding the clip, and users.
pub struct Site {
    pub base: String,
    pub state: AppState,
    pub lib: i64,
    pub media_id: i64,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Starts the server; every user in `users` gets access to the library.
    pub async fn start(users: &[&str]) -> Site {
        Self::start_with_clip(users, &clip()).await
    }

    /// [`Site::start`] with `clip` as the library's video.
    pub async fn start_with_clip(users: &[&str], clip: &std::path::Path) -> Site {
        Self::start_configured(users, clip, false, |_| {}).await
    }

    /// [`Site::start_with_clip`], listening on every address of the
    /// namespace when `all_addrs` (pages still load from 127.0.0.1), with
    /// `configure` applied to the server's configuration.
    pub async fn start_configured(
        users: &[&str],
        clip: &std::path::Path,
        all_addrs: bool,
        configure: impl FnOnce(&mut Config),
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::copy(clip, lib.join("clip.webm")).unwrap();
        std::fs::write(
            lib.join("clip.en.vtt"),
            "WEBVTT\n\n00:00.000 --> 00:05.000\nhello\n",
        )
        .unwrap();
        let bind = if all_addrs {
            "0.0.0.0:0"
        } else {
            "127.0.0.1:0"
        };
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut config = Config::new(dir.path().join("data"));
        config.argon2 = Argon2Cost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        config.public_url = Some(base.clone());
        config.web_dir = web_dir();
        config.web_pkg_dir = Some(pkg_dir());
        configure(&mut config);
        let state = AppState::new(config).await.unwrap();
        let st = state.clone();
        tokio::spawn(async move {
            watchparty_signal::server::serve(st, listener, std::future::pending()).await
        });
        let lib_id = watchparty_signal::media::library::add_scanned(&state.db, "films", &lib, 0)
            .await
            .unwrap();
        let media_id: i64 = sqlx::query_scalar("SELECT id FROM media_items WHERE library_id = ?1")
            .bind(lib_id)
            .fetch_one(&state.db)
            .await
            .unwrap();
        let site = Site {
            base,
            state,
            lib: lib_id,
            media_id,
            _dir: dir,
        };
        for u in users {
            site.add_user(u).await;
        }
        site
    }

    /// A user with access to the library.
    pub async fn add_user(&self, name: &str) -> i64 {
        let id = self.add_user_without_access(name).await;
        watchparty_signal::media::library::grant(&self.state.db, id, self.lib, 0)
            .await
            .unwrap();
        id
    }

    /// A user without any library.
    pub async fn add_user_without_access(&self, name: &str) -> i64 {
        let hash = self.state.hasher.hash(PASSWORD.as_bytes()).await.unwrap();
        watchparty_signal::accounts::create_user(
            &self.state.db,
            &Username::parse(name).unwrap(),
            &DisplayName::parse(name).unwrap(),
            &hash,
            false,
        )
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Signs `user` in through the sign-in form and waits for the media page.
pub async fn sign_in(b: &Browser, site: &Site, user: &str) {
    b.goto(&site.url("/login")).await;
    let u = b.find("#login-username").await;
    b.type_into(&u, user).await;
    let p = b.find("#login-password").await;
    b.type_into(&p, PASSWORD).await;
    let submit = b.find("#login-submit").await;
    b.click(&submit).await;
    b.wait_until(
        "signed in",
        "return !document.getElementById('nav').hidden",
        PAGE_WAIT,
    )
    .await;
}

/// A browser per user in `users` (profiles named after them), each signed
/// in, in the same order.
pub async fn signed_in<const N: usize>(site: &Site, users: [&str; N]) -> [Browser; N] {
    let mut out = Vec::with_capacity(N);
    for u in users {
        let b = Browser::start(u).await;
        sign_in(&b, site, u).await;
        out.push(b);
    }
    match out.try_into() {
        Ok(browsers) => browsers,
        // One browser was pushed per user, N in all.
        Err(_) => unreachable!("one browser per user"),
    }
}

/// Creates a room through the create form, inviting `invites` (username,
/// role); returns the room id.
pub async fn create_room(b: &Browser, site: &Site, invites: &[(&str, &str)]) -> String {
    b.goto(&site.url("/create")).await;
    b.find("#create-form").await;
    for (user, role) in invites {
        let cb = b.find(&format!("#inv-{user}")).await;
        b.click(&cb).await;
        b.exec(
            "document.getElementById('inv-role-' + arguments[0]).value = arguments[1]",
            json!([user, role]),
        )
        .await;
    }
    let submit = b.find("#create-submit").await;
    b.click(&submit).await;
    let path = b
        .wait_until(
            "the room page",
            "return /^\\/room\\/[0-9a-f]{32}$/.test(location.pathname) && location.pathname",
            PAGE_WAIT,
        )
        .await;
    path.as_str()
        .unwrap()
        .trim_start_matches("/room/")
        .to_owned()
}

/// Waits until the page's RoomClient reports a connected peer mesh with
/// `peers` neighbours and loaded media.
pub async fn wait_connected(b: &Browser, peers: usize) {
    b.wait_until(
        "the room client with its peers",
        &format!(
            "const r = window.__watchparty_room; if (!r) return false; \
             const s = r.status(); \
             const open = (s.peers || []).filter(p => p.state === 'connected' || p.state === 'open').length; \
             const v = document.getElementById('video'); \
             return open >= {peers} && v && v.readyState >= 1"
        ),
        SETTLE,
    )
    .await;
}

/// Types `text` into the chat box of `b` and sends it.
pub async fn send_chat(b: &Browser, text: &str) {
    let input = b.find("#chat-input").await;
    b.type_into(&input, text).await;
    click(b, "#chat-send").await;
}

/// Clicks the element `css` once it is enabled.
pub async fn click(b: &Browser, css: &str) {
    let el = b.find(css).await;
    b.wait_until(
        &format!("{css} enabled"),
        &format!("return !document.querySelector('{css}').disabled"),
        PAGE_WAIT,
    )
    .await;
    b.click(&el).await;
}

/// Moves the page's position slider (the same as dragging it) to `ms`.
pub async fn seek_from_page(b: &Browser, ms: f64) {
    b.exec(
        "const v = document.getElementById('video'); const s = document.getElementById('seek'); \
         s.value = String(Math.round(arguments[0] / (v.duration * 1000) * 1000)); \
         s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));",
        json!([ms]),
    )
    .await;
}

/// Snapshot of a page's player: `(position ms, wall ms, paused, rate)`.
pub const SAMPLE_JS: &str = "const v = document.getElementById('video'); \
     return {pos: v.currentTime * 1000, wall: performance.timeOrigin + performance.now(), \
     paused: v.paused, rate: v.playbackRate, seeking: v.seeking, ready: v.readyState};";

/// One page's sample, moved to wall instant `t` (ms).
pub fn position_at(s: &Value, t: f64) -> f64 {
    let pos = s["pos"].as_f64().unwrap();
    if s["paused"].as_bool().unwrap_or(true) {
        return pos;
    }
    pos + (t - s["wall"].as_f64().unwrap()) * s["rate"].as_f64().unwrap_or(1.0)
}

/// Samples every page at once; returns the samples and the spread of the
/// positions (ms) at the latest sampling instant.
pub async fn sample_all(pages: &[&Browser]) -> (Vec<Value>, f64) {
    let futs = pages.iter().map(|b| b.exec(SAMPLE_JS, json!([])));
    let samples = futures_util::future::join_all(futs).await;
    let t = samples
        .iter()
        .map(|s| s["wall"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let pos: Vec<f64> = samples.iter().map(|s| position_at(s, t)).collect();
    let spread =
        pos.iter().cloned().fold(f64::MIN, f64::max) - pos.iter().cloned().fold(f64::MAX, f64::min);
    (samples, spread)
}

/// Waits until every page is within [`SYNC_TOLERANCE_MS`] of the others,
/// `paused` as given, for three samples in a row; returns the last samples.
pub async fn wait_in_sync(pages: &[&Browser], paused: bool) -> Vec<Value> {
    let started = Instant::now();
    let mut good = 0;
    let mut last = (Vec::new(), f64::MAX);
    while started.elapsed() < SETTLE {
        last = sample_all(pages).await;
        let states_ok = last
            .0
            .iter()
            .all(|s| s["paused"].as_bool() == Some(paused) && s["seeking"] == false);
        if states_ok && last.1 <= SYNC_TOLERANCE_MS {
            good += 1;
            if good >= 3 {
                return last.0;
            }
        } else {
            good = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut diag = Vec::new();
    for b in pages {
        diag.push(format!("[{}] {}", b.name, b.exec(DIAG_JS, json!([])).await));
    }
    panic!(
        "pages not in sync within {SETTLE:?}: spread {:.1} ms, samples {:?}\n{}",
        last.1,
        last.0,
        diag.join("\n")
    );
}

/// A page's sync correction counters (`status().sync.actions`: seeks,
/// rate changes, …), or null before the room client exists.
pub const ACTIONS_JS: &str = "const r = window.__watchparty_room; \
     const a = r && r.status().sync.actions; return a || null;";

/// The page's message line and its RoomClient status (for failure messages).
pub const DIAG_JS: &str = "const m = document.getElementById('room-message'); \
     const r = window.__watchparty_room; let st = null; try { st = r && r.status(); } catch (e) { st = String(e); } \
     return JSON.stringify({message: m && !m.hidden ? m.textContent : null, status: st});";

/// A screenshot name for a page in `kind`: `base` for Chromium (the name
/// docs/ refers to), `base-firefox` for Firefox.
pub fn shot_name(base: &str, kind: BrowserKind) -> String {
    match kind {
        BrowserKind::Chromium => base.to_owned(),
        BrowserKind::Firefox => format!("{base}-firefox"),
    }
}

/// Saves a screenshot under `target/screenshots/<name>.png`; returns the path.
pub async fn save_screenshot(b: &Browser, name: &str) -> PathBuf {
    let dir = workspace_root().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    path
}

/// Env naming the file a room-life test appends its figures to (set by
/// `cargo xtask bench`, read by `watchparty-bench --room-life-samples`).
pub const ROOM_LIFE_OUT_ENV: &str = "WATCHPARTY_BENCH_ROOM_LIFE_OUT";

/// Records one room-life figure (`name`, in ms) as a JSON line in the file
/// `$WATCHPARTY_BENCH_ROOM_LIFE_OUT` names, when it is set (a bench run);
/// a plain test run only prints it.
pub fn record_room_life_figure(name: &str, ms: f64) {
    let Some(path) = std::env::var_os(ROOM_LIFE_OUT_ENV) else {
        return;
    };
    use std::io::Write;
    let line = format!("{}\n", json!({ "figure": name, "ms": ms }));
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// Writes a measurement's JSON `doc` to `out` (a bench run names it; a
/// plain test run writes nothing), saying where as `what`.
pub fn write_measurement(out: Option<&std::path::Path>, doc: &Value, what: &str) {
    let Some(out) = out else {
        return;
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(out, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    println!("{what}: {}", out.display());
}
