//! A thin W3C WebDriver client over reqwest, driving headless Chromium
//! through its own chromedriver process (one per browser, separate profile).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// Longest wait for chromedriver to answer `/status` (generous: it starts
/// slowly on a busy 2-core machine).
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout towards chromedriver.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Path of chromedriver (`$CHROMEDRIVER`), if configured.
pub fn chromedriver_path() -> Option<PathBuf> {
    std::env::var_os("CHROMEDRIVER").map(PathBuf::from)
}

fn chromium_path() -> PathBuf {
    std::env::var_os("WATCHPARTY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// One headless Chromium with its chromedriver.
pub struct Browser {
    pub name: String,
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// A WebDriver element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session whose
    /// media may play without a user gesture.
    pub async fn start(name: &str) -> Browser {
        Self::start_with_autoplay_policy(name, "no-user-gesture-required").await
    }

    /// Like [`Self::start`] with Chromium's `--autoplay-policy` set to
    /// `policy` (e.g. `document-user-activation-required`: unmuted media
    /// plays only after the page was clicked, as for a real visitor).
    pub async fn start_with_autoplay_policy(name: &str, policy: &str) -> Browser {
        Self::start_in_profile(name, policy, tempfile::tempdir().unwrap(), &[]).await
    }

    /// Like [`Self::start`], but the page's sound is not muted and goes
    /// where `audio_env` says (Chromium's process environment, e.g.
    /// `PULSE_SERVER` and `PULSE_SINK`; see `support/pulse.rs`).
    pub async fn start_with_audio(name: &str, audio_env: &[(String, String)]) -> Browser {
        Self::start_in_profile(
            name,
            "no-user-gesture-required",
            tempfile::tempdir().unwrap(),
            audio_env,
        )
        .await
    }

    /// Quits Chromium (as a person closing the browser) and starts it again on
    /// the same profile, cookies and storage included.
    pub async fn restart(mut self) -> Browser {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = std::mem::replace(&mut self._profile, tempfile::tempdir().unwrap());
        let name = self.name.clone();
        drop(self);
        Self::start_in_profile(&name, "no-user-gesture-required", profile, &[]).await
    }

    /// Opens a new tab, closes the current one and continues in the new tab.
    pub async fn replace_tab(&self) {
        let new = self.cmd("POST", "window/new", json!({"type": "tab"})).await;
        let handle = new["handle"].as_str().unwrap().to_owned();
        self.cmd("DELETE", "window", json!({})).await;
        self.cmd("POST", "window", json!({ "handle": handle }))
            .await;
    }

    /// Starts chromedriver (and so Chromium) with `audio_env` added to its
    /// environment; sound is muted unless `audio_env` is given, and
    /// Chromium is headless unless it names a `DISPLAY`.
    async fn start_in_profile(
        name: &str,
        policy: &str,
        profile: tempfile::TempDir,
        audio_env: &[(String, String)],
    ) -> Browser {
        let driver_bin = chromedriver_path().expect("CHROMEDRIVER is set");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .envs(audio_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--no-sandbox".to_owned(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-background-timer-throttling".into(),
            "--disable-renderer-backgrounding".into(),
            "--disable-features=WebRtcHideLocalIpsWithMdns".into(),
            format!("--autoplay-policy={policy}"),
            "--window-size=1280,860".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if audio_env.is_empty() {
            args.push("--mute-audio".into());
        }
        // Headed on the display the environment names (e.g. an Xvfb).
        if !audio_env.iter().any(|(k, _)| k == "DISPLAY") {
            args.push("--headless=new".into());
        }
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": chromium_path(),
                    "args": args
                }
            }}
        });
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session failed: {r}"))
            .to_owned();
        let b = Browser {
            name: name.to_owned(),
            http,
            base,
            session,
            driver,
            _profile: profile,
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

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "goog/cdp/execute",
            json!({"cmd": cmd, "params": params}),
        )
        .await
    }

    /// Runs `source` in every new document before the page's own scripts.
    pub async fn inject_on_new_document(&self, source: &str) {
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        )
        .await;
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

    /// Browser console log entries (Chromium's `goog:loggingPrefs`).
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

    /// Closes the session and stops chromedriver.
    pub async fn close(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        // Drop sends the DELETE again (harmless) and stops chromedriver.
        let _ = self.driver.kill();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort when a test panics before `close`: end the session (so
        // Chromium exits) with a blocking request, then stop chromedriver.
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
