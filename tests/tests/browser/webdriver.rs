//! A thin W3C WebDriver client over reqwest, driving headless Chromium
//! (through chromedriver) or headless Firefox (through geckodriver): one
//! driver process per browser, each with its own profile.
//!
//! Firefox runs with the prefs of [`BrowserKind::Firefox`]'s capabilities:
//! host candidates with their real address (no mDNS obfuscation), loopback
//! candidates allowed, and autoplay as asked. Its timer and `currentTime`
//! precision stay at Firefox's defaults (whole milliseconds; `currentTime`
//! moves once per shown frame), as for a real visitor; the sync tolerances
//! are coarser (docs/browser-peer.md, "Firefox").

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for the driver to answer `/status` (generous: it starts
/// slowly on a busy 2-core machine).
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout towards the driver.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of the new-session request, which starts the browser: Firefox
/// starts more slowly than Chromium, and on a loaded 2-core machine it
/// took over [`REQUEST_TIMEOUT`].
const NEW_SESSION_TIMEOUT: Duration = Duration::from_secs(180);
/// W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver BiDi connection (Firefox only).
type Bidi =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The browser engine a page runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserKind {
    /// Headless Chromium through chromedriver.
    Chromium,
    /// Headless Firefox (ESR) through geckodriver.
    Firefox,
}

/// Whether a page may start unmuted media without a user gesture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Autoplay {
    /// Media plays without a gesture (Chromium's
    /// `--autoplay-policy=no-user-gesture-required`, Firefox's
    /// `media.autoplay.default=0`).
    Allowed,
    /// Unmuted media plays only after the page was clicked, as for a real
    /// visitor (Chromium's `document-user-activation-required`, Firefox's
    /// `media.autoplay.default=1`, "block audible").
    AfterActivation,
}

impl BrowserKind {
    /// Both engines, Chromium first.
    pub const ALL: [BrowserKind; 2] = [BrowserKind::Chromium, BrowserKind::Firefox];

    /// The engine's name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Chromium => "Chromium",
            Self::Firefox => "Firefox",
        }
    }

    /// The variable naming the driver (set by `cargo xtask test`).
    pub fn driver_env(self) -> &'static str {
        match self {
            Self::Chromium => "CHROMEDRIVER",
            Self::Firefox => "GECKODRIVER",
        }
    }

    /// Path of the driver, if configured.
    pub fn driver_path(self) -> Option<PathBuf> {
        std::env::var_os(self.driver_env()).map(PathBuf::from)
    }

    /// Whether this browser's tests can run here; prints why not.
    pub fn available(self) -> bool {
        match self.driver_path() {
            Some(p) if p.is_file() => true,
            _ => {
                eprintln!(
                    "SKIPPED: ${} is not set or names no file (the e2e step of `cargo xtask \
                     test` sets it)",
                    self.driver_env()
                );
                false
            }
        }
    }

    fn binary(self) -> PathBuf {
        let (env, default) = match self {
            Self::Chromium => ("WATCHPARTY_CHROMIUM", "/usr/bin/chromium"),
            Self::Firefox => ("WATCHPARTY_FIREFOX", "/usr/bin/firefox-esr"),
        };
        std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }

    /// The driver's command line: WebDriver on `port`; for geckodriver
    /// also its BiDi WebSocket on `bidi_port` (its default, 9222, would
    /// collide between browsers).
    fn driver_args(self, port: u16, bidi_port: u16) -> Vec<String> {
        match self {
            Self::Chromium => vec![format!("--port={port}")],
            Self::Firefox => vec![
                format!("--port={port}"),
                format!("--websocket-port={bidi_port}"),
                "--log=warn".to_owned(),
            ],
        }
    }

    /// The new-session capabilities for a browser on `profile` (Chromium's
    /// user data directory; Firefox's profile directory).
    fn capabilities(
        self,
        autoplay: Autoplay,
        profile: &std::path::Path,
        audio_env: &[(String, String)],
    ) -> Value {
        match self {
            Self::Chromium => {
                let policy = match autoplay {
                    Autoplay::Allowed => "no-user-gesture-required",
                    Autoplay::AfterActivation => "document-user-activation-required",
                };
                let mut args: Vec<String> = [
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-background-timer-throttling",
                    "--disable-renderer-backgrounding",
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    "--window-size=1280,860",
                ]
                .map(str::to_owned)
                .to_vec();
                args.push(format!("--autoplay-policy={policy}"));
                args.push(format!("--user-data-dir={}", profile.display()));
                // Sound only where the test listens (support/pulse.rs).
                if audio_env.is_empty() {
                    args.push("--mute-audio".into());
                }
                // Headed on the display the environment names (an Xvfb).
                if !audio_env.iter().any(|(k, _)| k == "DISPLAY") {
                    args.push("--headless=new".into());
                }
                json!({
                    "browserName": "chrome",
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {
                        "binary": self.binary(),
                        "args": args
                    }
                })
            }
            Self::Firefox => {
                let autoplay_default = match autoplay {
                    Autoplay::Allowed => 0,
                    Autoplay::AfterActivation => 1,
                };
                json!({
                    "browserName": "firefox",
                    // The BiDi WebSocket (for scripts run before the page's own).
                    "webSocketUrl": true,
                    "moz:firefoxOptions": {
                        "binary": self.binary(),
                        "args": [
                            "-headless", "--width=1280", "--height=860",
                            "--profile", profile,
                        ],
                        "prefs": {
                            // 0 allowed, 1 audible media blocked until the
                            // document has been activated (clicked, typed in).
                            "media.autoplay.default": autoplay_default,
                            "media.autoplay.blocking_policy": 0,
                            // Real host addresses in candidates, not mDNS
                            // names nothing in the namespace resolves.
                            "media.peerconnection.ice.obfuscate_host_addresses": false,
                            // Loopback candidates too (everything runs on
                            // one machine).
                            "media.peerconnection.ice.loopback": true,
                        }
                    }
                })
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the driver).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One headless browser with its driver.
pub struct Browser {
    pub name: String,
    /// Its engine.
    pub kind: BrowserKind,
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    /// Firefox: the session's BiDi WebSocket address.
    bidi_url: Option<String>,
    /// Firefox: the BiDi connection, once opened (kept for the session).
    bidi: tokio::sync::Mutex<Option<Bidi>>,
    autoplay: Autoplay,
    /// Chromium's sound: where it goes (empty: muted).
    audio_env: Vec<(String, String)>,
    _profile: tempfile::TempDir,
}

/// A WebDriver element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium
    /// session whose media may play without a user gesture.
    pub async fn start(name: &str) -> Browser {
        Self::launch(BrowserKind::Chromium, name, Autoplay::Allowed).await
    }

    /// Starts a headless `kind` browser (its driver on a free port, a fresh
    /// profile) whose media may play as `autoplay` says.
    pub async fn launch(kind: BrowserKind, name: &str, autoplay: Autoplay) -> Browser {
        Self::start_in_profile(
            kind,
            name,
            autoplay,
            tempfile::tempdir().unwrap(),
            Vec::new(),
        )
        .await
    }

    /// Like [`Self::start`], but the page's sound is not muted and goes
    /// where `audio_env` says (Chromium's process environment, e.g.
    /// `PULSE_SERVER` and `PULSE_SINK`; see `support/pulse.rs`); headed on
    /// the display it names with `DISPLAY`, if any.
    pub async fn start_with_audio(name: &str, audio_env: &[(String, String)]) -> Browser {
        Self::start_in_profile(
            BrowserKind::Chromium,
            name,
            Autoplay::Allowed,
            tempfile::tempdir().unwrap(),
            audio_env.to_vec(),
        )
        .await
    }

    /// Quits the browser (as a person closing it) and starts it again on
    /// the same profile, cookies and storage included.
    pub async fn restart(mut self) -> Browser {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = std::mem::replace(&mut self._profile, tempfile::tempdir().unwrap());
        let (kind, name, autoplay) = (self.kind, self.name.clone(), self.autoplay);
        let audio_env = std::mem::take(&mut self.audio_env);
        drop(self);
        Self::start_in_profile(kind, &name, autoplay, profile, audio_env).await
    }

    /// Opens a new tab, closes the current one and continues in the new tab.
    pub async fn replace_tab(&self) {
        let new = self.cmd("POST", "window/new", json!({"type": "tab"})).await;
        let handle = new["handle"].as_str().unwrap().to_owned();
        self.cmd("DELETE", "window", json!({})).await;
        self.cmd("POST", "window", json!({ "handle": handle }))
            .await;
    }

    async fn start_in_profile(
        kind: BrowserKind,
        name: &str,
        autoplay: Autoplay,
        dir: tempfile::TempDir,
        audio_env: Vec<(String, String)>,
    ) -> Browser {
        let driver_bin = kind
            .driver_path()
            .unwrap_or_else(|| panic!("{} is set", kind.driver_env()));
        let (port, bidi_port) = (free_port(), free_port());
        // Firefox keeps its profile in `profile/` and writes caches and
        // settings under $HOME: both inside the browser's own directory.
        let (profile, home) = match kind {
            BrowserKind::Chromium => (dir.path().to_path_buf(), None),
            BrowserKind::Firefox => {
                let (profile, home) = (dir.path().join("profile"), dir.path().join("home"));
                std::fs::create_dir_all(&profile).unwrap();
                std::fs::create_dir_all(&home).unwrap();
                (profile, Some(home))
            }
        };
        let mut command = Command::new(&driver_bin);
        command
            .args(kind.driver_args(port, bidi_port))
            .envs(audio_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(home) = &home {
            command.env("HOME", home);
        }
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                started.elapsed() < DRIVER_READY_TIMEOUT,
                "{} did not start",
                driver_bin.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "capabilities": {"alwaysMatch": kind.capabilities(autoplay, &profile, &audio_env)}
        });
        let r: Value = http
            .post(format!("{base}/session"))
            .timeout(NEW_SESSION_TIMEOUT)
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new {} session failed: {r}", kind.label()))
            .to_owned();
        let bidi_url = r["value"]["capabilities"]["webSocketUrl"]
            .as_str()
            .map(str::to_owned);
        let b = Browser {
            name: name.to_owned(),
            kind,
            http,
            base,
            session,
            driver,
            bidi_url,
            bidi: tokio::sync::Mutex::new(None),
            autoplay,
            audio_env,
            _profile: dir,
        };
        b.cmd(
            "POST",
            "timeouts",
            json!({"script": 30_000, "pageLoad": 30_000, "implicit": 0}),
        )
        .await;
        b
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("[{}] {method} {path}: {e}", self.name))
            .json()
            .await
            .unwrap();
        if let Some(err) = r["value"]["error"].as_str() {
            panic!(
                "[{}] webdriver {method} {path} failed: {err}: {}",
                self.name, r["value"]["message"]
            );
        }
        r["value"].clone()
    }

    /// Navigates and waits for the load event.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.script("sync", script, args).await
    }

    /// Runs an async script: the body calls `arguments[arguments.length-1](value)`.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        self.script("async", script, args).await
    }

    async fn script(&self, kind: &str, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        self.cmd("POST", &format!("execute/{kind}"), body).await
    }

    /// A Chrome DevTools Protocol command through chromedriver (Chromium
    /// only).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        assert_eq!(
            self.kind,
            BrowserKind::Chromium,
            "[{}] CDP is Chromium's; this test step cannot run in {}",
            self.name,
            self.kind.label()
        );
        self.cmd(
            "POST",
            "goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await
    }

    /// Runs `source` in every new document before the page's own scripts
    /// (CDP in Chromium, WebDriver BiDi `script.addPreloadScript` in
    /// Firefox).
    pub async fn inject_on_new_document(&self, source: &str) {
        match self.kind {
            BrowserKind::Chromium => {
                self.cdp(
                    "Page.addScriptToEvaluateOnNewDocument",
                    json!({ "source": source }),
                )
                .await;
            }
            BrowserKind::Firefox => {
                self.bidi_command(
                    "script.addPreloadScript",
                    json!({ "functionDeclaration": format!("() => {{ {source}\n}}") }),
                )
                .await;
            }
        }
    }

    /// One WebDriver BiDi command (Firefox); returns its result.
    async fn bidi_command(&self, method: &str, params: Value) -> Value {
        let mut guard = self.bidi.lock().await;
        if guard.is_none() {
            let url = self
                .bidi_url
                .as_deref()
                .unwrap_or_else(|| panic!("[{}] no BiDi WebSocket in the session", self.name));
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .unwrap_or_else(|e| panic!("[{}] BiDi connection to {url}: {e}", self.name));
            *guard = Some(ws);
        }
        let Some(ws) = guard.as_mut() else {
            unreachable!("connected just above")
        };
        // Ids only need to be unique per connection: the lock serialises
        // the commands, so a fresh counter value each time suffices.
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = json!({"id": id, "method": method, "params": params});
        ws.send(Message::text(msg.to_string())).await.unwrap();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            while let Some(frame) = ws.next().await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == json!(id) {
                    return v;
                }
            }
            panic!("[{}] BiDi connection closed during {method}", self.name)
        })
        .await
        .unwrap_or_else(|_| panic!("[{}] no BiDi answer to {method}", self.name));
        assert_eq!(
            answer["type"], "success",
            "[{}] BiDi {method} failed: {answer}",
            self.name
        );
        answer["result"].clone()
    }

    /// Finds one element by CSS selector, waiting up to `timeout`.
    pub async fn wait_find(&self, css: &str, timeout: Duration) -> Element {
        let started = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let r: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = r["value"][ELEMENT_KEY].as_str() {
                return Element(id.to_owned());
            }
            assert!(
                started.elapsed() < timeout,
                "[{}] no element {css} within {timeout:?} (last answer {r}); page text: {}",
                self.name,
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Browser::wait_find`] with 60 s (the machine may be loaded).
    pub async fn find(&self, css: &str) -> Element {
        self.wait_find(css, Duration::from_secs(60)).await
    }

    pub async fn click(&self, el: &Element) {
        self.cmd("POST", &format!("element/{}/click", el.0), json!({}))
            .await;
    }

    /// Types into an element (clears it first).
    pub async fn type_into(&self, el: &Element, text: &str) {
        self.cmd("POST", &format!("element/{}/clear", el.0), json!({}))
            .await;
        self.cmd(
            "POST",
            &format!("element/{}/value", el.0),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn text(&self, el: &Element) -> String {
        self.cmd("GET", &format!("element/{}/text", el.0), json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn property(&self, el: &Element, name: &str) -> Value {
        self.cmd(
            "GET",
            &format!("element/{}/property/{name}", el.0),
            json!({}),
        )
        .await
    }

    pub async fn enabled(&self, el: &Element) -> bool {
        self.cmd("GET", &format!("element/{}/enabled", el.0), json!({}))
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Visible text of the whole page (for diagnostics).
    pub async fn body_text(&self) -> String {
        let url = format!("{}/session/{}/execute/sync", self.base, self.session);
        match self
            .http
            .post(url)
            .json(&json!({"script": "return document.body ? document.body.innerText : ''", "args": []}))
            .send()
            .await
        {
            Ok(r) => r
                .json::<Value>()
                .await
                .map(|v| v["value"].to_string())
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub async fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let v = self.exec(script, json!([])).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                started.elapsed() < timeout,
                "[{}] timed out waiting for {what}; page text: {}",
                self.name,
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "screenshot", json!({})).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap()
    }

    /// Browser console log entries (Chromium's `goog:loggingPrefs`; empty in
    /// Firefox, whose driver has no log endpoint).
    pub async fn console(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.base, self.session);
        let Ok(r) = self
            .http
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
        else {
            return Vec::new();
        };
        let v: Value = r.json().await.unwrap_or_default();
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes the session and stops the driver.
    pub async fn close(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        // Drop sends the DELETE again (harmless) and stops the driver.
        let _ = self.driver.kill();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort when a test panics before `close`: end the session (so
        // the browser exits) with a blocking request, then stop the driver.
        if let Some(addr) = self.base.strip_prefix("http://")
            && let Ok(mut conn) = std::net::TcpStream::connect(addr)
        {
            use std::io::{Read, Write};
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            if conn.write_all(req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
