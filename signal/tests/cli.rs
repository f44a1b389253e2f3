//! The real binary: admin sub-commands on a data dir, `serve` with config
//! layering, graceful shutdown on SIGTERM, and TLS.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_watchparty-signal");

/// Cheap argon2 via the config file (the CLI hashes with config values).
fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("{extra}\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n"),
    )
    .unwrap();
    path
}

fn admin(data: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("WATCHPARTY_BIND")
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
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not become ready at {url}");
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn admin_commands_then_serve_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lib_dir = media_tree(&dir.path().join("lib"));
    let port = free_port();
    let config = write_config(
        dir.path(),
        "bind = \"127.0.0.1:1\"\nopen_registration = true",
    );
    let secret = "cli-password-123";

    let (ok, out, err) = admin(
        &data,
        &config,
        &["user", "add", "alice", "--display-name", "Alice A"],
        Some(&format!("{secret}\n")),
    );
    assert!(ok, "{err}");
    assert!(out.contains("created user alice"));
    assert!(
        !out.contains(secret) && !err.contains(secret),
        "password never echoed"
    );
    let (ok, _, err) = admin(
        &data,
        &config,
        &["user", "add", "root", "--admin"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("password must be"), "{err}");
    let (ok, _, _) = admin(
        &data,
        &config,
        &["user", "add", "root", "--admin"],
        Some(&format!("{secret}\n")),
    );
    assert!(ok);
    let (ok, _, _) = admin(
        &data,
        &config,
        &["user", "add", "alice"],
        Some(&format!("{secret}\n")),
    );
    assert!(!ok, "duplicate user");
    let (ok, _, _) = admin(
        &data,
        &config,
        &["user", "add", "Bad Name"],
        Some(&format!("{secret}\n")),
    );
    assert!(!ok, "invalid username");
    let (_, out, _) = admin(&data, &config, &["user", "list"], None);
    assert!(
        out.contains("alice\tAlice A") && out.contains("root\troot\tadmin"),
        "{out}"
    );
    let (ok, out, err) = admin(
        &data,
        &config,
        &["library", "add", "films", lib_dir.to_str().unwrap()],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("created library films"));
    let (ok, _, _) = admin(
        &data,
        &config,
        &["library", "add", "nope", "/definitely/not/here"],
        None,
    );
    assert!(!ok);
    let (ok, out, _) = admin(&data, &config, &["media", "scan", "films"], None);
    assert!(ok && out.contains("2 added"), "{out}");
    let (ok, out, _) = admin(&data, &config, &["media", "scan", "films"], None);
    assert!(
        ok && out.contains("0 added, 0 updated, 2 unchanged"),
        "idempotent: {out}"
    );
    let (_, out, _) = admin(&data, &config, &["library", "list"], None);
    assert!(out.contains("films") && out.contains("2 items"), "{out}");
    let (ok, _, _) = admin(&data, &config, &["grant", "alice", "films"], None);
    assert!(ok);
    let (ok, _, _) = admin(&data, &config, &["grant", "ghost", "films"], None);
    assert!(!ok);

    // serve: --bind (flag) beats WATCHPARTY_BIND (env) beats the file's bind.
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("WATCHPARTY_BIND", "127.0.0.1:2")
        .env("WATCHPARTY_OPEN_REGISTRATION", "false")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &format!("{base}/readyz")).await;
    // Keys were generated on first start, with 0600.
    use std::os::unix::fs::PermissionsExt;
    for f in ["jwt-hs256.key", "stream-hmac.key", "server-ed25519.pk8"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // env (false) beat the file (true): registration is closed.
    let r = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"username": "zed", "password": secret, "display_name": "Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "alice", "password": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = json(r).await["access_token"].as_str().unwrap().to_owned();
    let media = json(
        client
            .get(format!("{base}/api/v1/media"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(media.as_array().unwrap().len(), 2);

    // user disable revokes sessions at once, even while serving.
    let (ok, _, _) = admin(&data, &config, &["user", "disable", "alice"], None);
    assert!(ok);
    let r = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    sigterm(&child);
    let status = wait_exit(&mut child);
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("shutdown signal received") && err.contains("stopped"),
        "{err}"
    );
    assert!(!err.contains(secret));
}

/// `scan_max_entries` from the config file: over it `media scan` fails with a
/// clear message and indexes nothing; at it the scan succeeds.
#[test]
fn media_scan_over_the_configured_entry_cap_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // 6 directory entries (see `media_tree`).
    let lib_dir = media_tree(&dir.path().join("lib"));
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "scan_max_entries = 5");
    let (ok, _, err) = admin(
        &data,
        &config,
        &["library", "add", "films", lib_dir.to_str().unwrap()],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = admin(&data, &config, &["media", "scan", "films"], None);
    assert!(!ok, "over the cap the scan fails");
    assert!(
        err.contains("more than 5 directory entries") && err.contains("index left unchanged"),
        "{err}"
    );
    let (_, out, _) = admin(&data, &config, &["library", "list"], None);
    assert!(out.contains("0 items"), "nothing indexed: {out}");
    let config = write_config(dir.path(), "scan_max_entries = 6");
    let (ok, out, err) = admin(&data, &config, &["media", "scan", "films"], None);
    assert!(ok && out.contains("2 added"), "{out} {err}");
}

#[tokio::test]
async fn tls_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    // In-process TLS server.
    let state = watchparty_signal::AppState::new(test_config(&data))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let task = tokio::spawn(async move {
        watchparty_signal::server::serve_tls(state, listener, &c, &k, h).await
    });
    let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", addr.port());
    wait_ready(&client, &url).await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // Plain HTTP to the TLS port does not get an answer from the API.
    let plain = client
        .get(format!("http://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    task.await.unwrap().unwrap();

    // The binary refuses a cert without a key.
    let config = write_config(dir.path(), "");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_cert and tls_key"));
}

/// Every admin sub-command leaves exactly one operator record; `audit`
/// prints them (table and `--json`) with its filters, and refuses bad ones.
#[test]
fn admin_commands_are_audited_and_audit_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lib_dir = media_tree(&dir.path().join("lib"));
    let config = write_config(dir.path(), "");
    let secret = "cli-audit-password-1";
    let lib = lib_dir.to_str().unwrap();
    let steps: [(&[&str], Option<&str>, &str); 9] = [
        (&["user", "add", "alice"], Some(secret), "user_created"),
        (
            &["user", "add", "bob", "--admin"],
            Some(secret),
            "user_created",
        ),
        (&["user", "admin", "alice"], None, "user_admin_changed"),
        (&["library", "add", "films", lib], None, "library_added"),
        (&["media", "scan", "films"], None, "library_scanned"),
        (&["grant", "alice", "films"], None, "library_granted"),
        (&["revoke", "alice", "films"], None, "library_revoked"),
        (
            &["user", "reset-password", "alice"],
            Some(secret),
            "user_password_reset",
        ),
        (&["user", "disable", "alice"], None, "user_disabled"),
    ];
    for (args, stdin, _) in &steps {
        let input = stdin.map(|s| format!("{s}\n"));
        let (ok, _, err) = admin(&data, &config, args, input.as_deref());
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, out, err) = admin(&data, &config, &["audit", "--json"], None);
    assert!(ok, "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    actions.reverse();
    assert_eq!(actions, steps.map(|s| s.2), "one record each, newest first");
    for r in &records {
        assert_eq!(r["actor_kind"], "operator");
        assert_eq!(r["outcome"], "success");
        assert!(r["client_ip"].is_null() && r["request_id"].is_null());
    }
    assert_eq!(records[8]["detail"], serde_json::Value::Null);
    assert_eq!(records[7]["detail"], "admin", "bob was created an admin");
    assert_eq!(records[6]["detail"], "on");
    let scan = records[4]["detail"].as_str().unwrap();
    assert!(
        scan.starts_with("2 added, 0 updated, 0 unchanged"),
        "{scan}"
    );
    assert!(!out.contains(secret));
    // alice's records only: created, made admin, granted, revoked, reset, disabled.
    let (_, out, _) = admin(&data, &config, &["audit", "--user", "alice"], None);
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        out.lines()
            .all(|l| l.split('\t').nth(2) == Some("operator")),
        "{out}"
    );
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("\tuser_disabled\tsuccess\tuser "),
        "{out}"
    );
    // Paging: two at a time, the next page named on stderr.
    let (_, out, err) = admin(&data, &config, &["audit", "--limit", "2"], None);
    assert_eq!(out.lines().count(), 2);
    let before = err
        .lines()
        .find_map(|l| l.strip_prefix("more: --before "))
        .unwrap()
        .to_owned();
    let (_, out, _) = admin(
        &data,
        &config,
        &["audit", "--limit", "500", "--before", &before],
        None,
    );
    assert_eq!(out.lines().count(), 7);
    let (_, out, _) = admin(
        &data,
        &config,
        &["audit", "--action", "library_granted", "--since", "1h"],
        None,
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out, _) = admin(&data, &config, &["audit", "--since", "4102444800"], None);
    assert!(out.is_empty(), "nothing after 2100: {out}");
    for bad in [
        &["audit", "--action", "nope"][..],
        &["audit", "--room", "xyz"],
        &["audit", "--since", "yesterday"],
        &["audit", "--limit", "0"],
    ] {
        let (ok, _, err) = admin(&data, &config, bad, None);
        assert!(!ok, "{bad:?} {err}");
    }
}
