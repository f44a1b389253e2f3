//! `cargo xtask demo`: a running watchparty on `http://127.0.0.1:8080/` with
//! demo users and a demo library, from a fresh clone.
//!
//! 1. setup (installs what is missing),
//! 2. the browser bundle (`web/pkg/`, see [`crate::web`]),
//! 3. the server in release mode,
//! 4. a fresh `target/demo/` with a config file, a database holding three
//!    users (one admin) with generated passwords, and a library of two short
//!    generated clips (ffmpeg test sources → WebM VP9 + Opus) with WebVTT
//!    subtitles,
//! 5. serves until Ctrl+C.
//!
//! Everything goes through the server's own admin commands
//! (`watchparty-signal user add`, `library add`, `media scan`, `grant`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{Cmd, Failure, root, search_path};
use crate::web;

/// Where the demo listens (also its public URL and the WebSocket origin).
pub const DEMO_ADDR: &str = "127.0.0.1:8080";
/// Demo users: (username, display name, admin).
pub const DEMO_USERS: [(&str, &str, bool); 3] = [
    ("admin", "Admin", true),
    ("alice", "Alice", false),
    ("bob", "Bob", false),
];
/// Name of the demo library.
pub const DEMO_LIBRARY: &str = "demo";
/// Length of each generated password (characters of a 32-symbol alphabet:
/// 5 bits each, 80 bits in all).
pub const DEMO_PASSWORD_LEN: usize = 16;
/// Longest wait for the server to answer `/healthz` after it starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Length of the main demo clip (seconds).
const CLIP_SECS: u32 = 60;
/// Length of the second (queue) clip (seconds).
const SHORT_CLIP_SECS: u32 = 20;

/// Runs the demo (blocks until the server stops).
pub fn run() -> Result<(), Failure> {
    if TcpListener::bind(DEMO_ADDR).is_err() {
        return Err(Failure::new(format!(
            "{DEMO_ADDR} is already in use: stop whatever listens there (an earlier demo?) and retry"
        )));
    }
    crate::setup::run()?;
    let pkg = web::build_bundle()?;
    println!("\n==> building the server (release)");
    Cmd::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "watchparty-signal",
            "--bin",
            "watchparty-signal",
        ])
        .run()?;
    let server = web::target_dir().join("release").join("watchparty-signal");
    let demo = root().join("target").join("demo");
    println!("\n==> preparing a fresh {}", demo.display());
    if demo.exists() {
        std::fs::remove_dir_all(&demo)
            .map_err(|e| Failure::new(format!("cannot clear {}: {e}", demo.display())))?;
    }
    let library = demo.join("library");
    mkdir(&library)?;
    mkdir(&demo.join("data"))?;
    make_clips(&library)?;
    let config = demo.join("watchparty.toml");
    write_config(&config, &demo.join("data"), &pkg)?;

    let admin = Admin {
        server: &server,
        config: &config,
    };
    let mut credentials = Vec::new();
    for (user, display, is_admin) in DEMO_USERS {
        let password = generate_password()?;
        let mut args = vec!["user", "add", user, "--display-name", display];
        if is_admin {
            args.push("--admin");
        }
        admin.run(&args, Some(&password))?;
        credentials.push((user, password, is_admin));
    }
    let lib_path = library.to_string_lossy().into_owned();
    admin.run(&["library", "add", DEMO_LIBRARY, &lib_path], None)?;
    admin.run(&["media", "scan", DEMO_LIBRARY], None)?;
    for (user, _, is_admin) in DEMO_USERS {
        if !is_admin {
            admin.run(&["grant", user, DEMO_LIBRARY], None)?;
        }
    }
    let cred_file = demo.join("credentials.txt");
    let text: String = credentials
        .iter()
        .map(|(u, p, _)| format!("{u} {p}\n"))
        .collect();
    write_private(&cred_file, &text)?;

    println!("\n==> starting the server on http://{DEMO_ADDR}/");
    let mut child = Command::new(&server)
        .args(["--config"])
        .arg(&config)
        .arg("serve")
        .env("PATH", search_path())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start {}: {e}", server.display())))?;
    if let Err(f) = wait_ready(&mut child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(f);
    }
    print_next_steps(&credentials, &cred_file, &demo);
    let status = child
        .wait()
        .map_err(|e| Failure::new(format!("waiting for the server failed: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::new(format!("the server stopped: {status}")))
    }
}

fn mkdir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))
}

/// The server's admin commands, on the demo config.
struct Admin<'a> {
    server: &'a Path,
    config: &'a Path,
}

impl Admin<'_> {
    /// Runs `watchparty-signal --config … <args>`, writing `stdin_line` (a
    /// password) to its standard input. The password is never shown.
    fn run(&self, args: &[&str], stdin_line: Option<&str>) -> Result<(), Failure> {
        let shown = args.join(" ");
        println!("$ watchparty-signal {shown}");
        let mut child = Command::new(self.server)
            .arg("--config")
            .arg(self.config)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::new(format!("cannot run watchparty-signal {shown}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let line = stdin_line.map(|l| format!("{l}\n")).unwrap_or_default();
            stdin
                .write_all(line.as_bytes())
                .map_err(|e| Failure::new(format!("writing to watchparty-signal: {e}")))?;
        }
        let status = child
            .wait()
            .map_err(|e| Failure::new(format!("waiting for watchparty-signal: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure::new(format!(
                "`watchparty-signal {shown}` failed ({status})"
            )))
        }
    }
}

/// The demo config: the layered config file of docs/operations.md.
fn write_config(path: &Path, data: &Path, pkg: &Path) -> Result<(), Failure> {
    let web_dir = root().join("web");
    let text = format!(
        "# Generated by `cargo xtask demo`; recreated on every run.\n\
         bind = \"{DEMO_ADDR}\"\n\
         public_url = \"http://{DEMO_ADDR}\"\n\
         open_registration = true\n\
         data_dir = {}\n\
         web_dir = {}\n\
         web_pkg_dir = {}\n",
        toml_path(data)?,
        toml_path(&web_dir)?,
        toml_path(pkg)?,
    );
    std::fs::write(path, text)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

/// A TOML literal string (no escapes inside single quotes).
fn toml_path(p: &Path) -> Result<String, Failure> {
    let s = p
        .to_str()
        .ok_or_else(|| Failure::new(format!("path {} is not UTF-8", p.display())))?;
    if s.contains('\'') || s.contains('\n') {
        return Err(Failure::new(format!(
            "path {s:?} cannot be written into the config file"
        )));
    }
    Ok(format!("'{s}'"))
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

/// 80 random bits from the kernel as 16 characters.
fn generate_password() -> Result<String, Failure> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789-";
    let mut bytes = [0u8; DEMO_PASSWORD_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::new(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect())
}

/// Two clips from ffmpeg's test sources, with WebVTT subtitles.
fn make_clips(library: &Path) -> Result<(), Failure> {
    let clips = [
        ("test-pattern", "testsrc2", CLIP_SECS, 440),
        ("color-bars", "smptebars", SHORT_CLIP_SECS, 660),
    ];
    for (name, source, secs, tone) in clips {
        let out = library.join(format!("{name}.webm"));
        Cmd::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .args([format!("{source}=size=640x360:rate=30:duration={secs}")])
            .args(["-f", "lavfi", "-i"])
            .args([format!(
                "sine=frequency={tone}:sample_rate=48000:duration={secs}"
            )])
            .args([
                "-c:v",
                "libvpx-vp9",
                "-b:v",
                "250k",
                "-deadline",
                "realtime",
            ])
            .args(["-cpu-used", "8", "-row-mt", "1", "-g", "60"])
            .args(["-c:a", "libopus", "-b:a", "48k", "-shortest"])
            .args([&out])
            .run()?;
        let vtt = library.join(format!("{name}.en.vtt"));
        std::fs::write(&vtt, subtitles(name, secs))
            .map_err(|e| Failure::new(format!("cannot write {}: {e}", vtt.display())))?;
    }
    Ok(())
}

/// One cue every 5 seconds naming the second, so sync is visible in text too.
fn subtitles(name: &str, secs: u32) -> String {
    let mut out = String::from("WEBVTT\n\n");
    let mut t = 0;
    while t < secs {
        let end = (t + 5).min(secs);
        out.push_str(&format!(
            "{} --> {}\n{name}: second {t}\n\n",
            vtt_time(t),
            vtt_time(end)
        ));
        t = end;
    }
    out
}

/// `mm:ss.000` (clips are shorter than an hour).
fn vtt_time(secs: u32) -> String {
    format!("{:02}:{:02}.000", secs / 60, secs % 60)
}

/// Polls `GET /healthz` until it answers 200.
fn wait_ready(child: &mut std::process::Child) -> Result<(), Failure> {
    let started = Instant::now();
    let addr: SocketAddr = DEMO_ADDR
        .parse()
        .map_err(|_| Failure::new("bad demo address"))?;
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::new(format!(
                "the server exited during startup ({status})"
            )));
        }
        if healthz(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(Failure::new(format!(
        "the server did not answer on http://{DEMO_ADDR}/healthz within {} s",
        READY_TIMEOUT.as_secs()
    )))
}

fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {DEMO_ADDR}\r\nConnection: close\r\n\r\n");
    if conn.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn print_next_steps(credentials: &[(&str, String, bool)], cred_file: &Path, demo: &Path) {
    let url = format!("http://{DEMO_ADDR}/");
    println!("\n================================================================");
    println!(" watchparty demo is running: {url}");
    println!("================================================================");
    println!(
        " Users (passwords generated for this run, also in {}):",
        cred_file.display()
    );
    for (user, password, admin) in credentials {
        let note = if *admin {
            "  (admin: sees every library)"
        } else {
            ""
        };
        println!("   {user:<6} {password}{note}");
    }
    println!();
    println!(" Next steps:");
    println!("  1. Open {url} and sign in as alice.");
    println!("  2. Press \"Watch together\" on the test pattern, tick bob as invitee");
    println!("     (controller or viewer), and create the room.");
    println!("  3. In a second browser or a private window, sign in as bob,");
    println!("     open Invitations and accept: you land in the same room.");
    println!("     (Or send the room's invite link; it carries the host key after #k=.)");
    println!("  4. Play, seek, pause, chat: both pages stay in sync.");
    println!("  5. A native peer can join too:");
    println!("       cargo run -p watchparty-peer --features native --bin watchparty -- \\");
    println!("         login --server http://{DEMO_ADDR} --user bob");
    println!(
        "       cargo run -p watchparty-peer --features native --bin watchparty -- join '<invite link>'"
    );
    println!();
    println!(
        " Data: {} (recreated on every run). Stop with Ctrl+C.",
        demo.display()
    );
    println!(" The full test suite: cargo xtask test");
    println!("================================================================\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_long_enough() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.chars().count(), DEMO_PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn subtitles_cover_the_clip() {
        let vtt = subtitles("x", 12);
        assert!(vtt.starts_with("WEBVTT\n\n"));
        assert!(vtt.contains("00:10.000 --> 00:12.000\nx: second 10"));
        assert!(subtitles("y", 60).contains("00:55.000 --> 01:00.000\ny: second 55"));
    }

    #[test]
    fn config_paths_are_literal_strings() {
        assert_eq!(toml_path(Path::new("/a b/c")).unwrap(), "'/a b/c'");
        assert!(toml_path(Path::new("/it's")).is_err());
    }
}
