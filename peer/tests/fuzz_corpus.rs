//! Fuzz corpus regression: the committed seeds of every peer fuzz target
//! (`peer/fuzz/corpus/<target>/seed-*`) and every crash reproducer
//! (`peer/fuzz/regressions/<target>/*`) replayed through the same functions
//! the fuzz targets call (`peer/fuzz/checks.rs`), on stable, in the normal
//! test run.
//!
//! The seeds are generated here, from real frames of a real room: the test
//! fails when the committed seeds differ from what this generator produces.
//! Regenerate with `WATCHPARTY_WRITE_SEEDS=1 cargo test -p watchparty-peer --test fuzz_corpus`.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use checks::{FOLLOWER, HOST, Op, Room, TARGETS};
use watchparty_peer::cert::SignedCertificate;
use watchparty_peer::channels;
use watchparty_peer::frame::Envelope;
use watchparty_peer::session::UserCommand;
use watchparty_peer::signaling::{ClientMessage, ServerMessage};
use watchparty_peer::time::{MediaPos, TimeDelta};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `(kind, body)` of a signed frame: what the re-signing ops take.
fn kind_and_body(frame: &[u8]) -> Vec<u8> {
    let env = Envelope::parse(frame).expect("our own frame parses");
    let mut v = vec![env.kind().to_byte()];
    v.extend_from_slice(&frame[12..frame.len() - 64]);
    v
}

/// `(channel id, frame)` pairs.
type Frames = Vec<(u16, Vec<u8>)>;

/// Real frames of the fixed room: what the host sends (bind, state, play,
/// clock pongs, chat) and what the follower sends (status, requests, clock
/// pings, chat).
fn room_frames() -> (Frames, Frames) {
    let mut room = Room::new();
    let mut host_frames: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut follower_frames: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut take = |room: &mut Room| {
        room.pump();
        host_frames.extend(room.to_follower.iter().map(|(c, b)| (c.get(), b.clone())));
        follower_frames.extend(room.to_host.iter().map(|(c, b)| (c.get(), b.clone())));
        room.deliver();
    };
    let now = room.now;
    room.host
        .command(UserCommand::Chat("hello room".into()), now)
        .expect("host chats");
    room.follower
        .command(UserCommand::Chat("hi host".into()), now)
        .expect("follower chats");
    room.follower
        .command(UserCommand::Reaction("👍".into()), now)
        .expect("follower reacts");
    take(&mut room);
    room.follower
        .command(UserCommand::Seek(MediaPos::from_millis(42_000)), now)
        .expect("controller requests a seek");
    take(&mut room);
    room.host
        .command(UserCommand::Pause, now)
        .expect("host pauses");
    room.follower
        .command(UserCommand::Play, now)
        .expect("controller requests play");
    take(&mut room);
    for _ in 0..4 {
        room.advance(TimeDelta::from_millis(1_100));
        take(&mut room);
    }
    (host_frames, follower_frames)
}

/// One frame per (channel, kind).
fn dedup(frames: &[(u16, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut seen = BTreeMap::new();
    for (c, f) in frames {
        let kind = Envelope::parse(f).expect("parses").kind() as u8;
        seen.entry((*c, kind)).or_insert_with(|| f.clone());
    }
    seen.into_values().collect()
}

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sctp-port:5000\r\n";

fn signaling_seeds() -> Vec<(String, Vec<u8>)> {
    let sdp = serde_json::to_string(SDP).expect("string");
    let key = serde_json::to_string(&checks::user_key(HOST).public_key()).expect("key");
    let client = [
        ("auth", r#"{"type":"auth","token":"aaaa.bbbb.cccc","protocol":1}"#.to_owned()),
        ("offer", format!(r#"{{"type":"offer","to":2,"sdp":{sdp}}}"#)),
        ("answer", format!(r#"{{"type":"answer","to":1,"sdp":{sdp}}}"#)),
        (
            "ice",
            r#"{"type":"ice","to":2,"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
                .to_owned(),
        ),
        ("register_host_key", format!(r#"{{"type":"register_host_key","key":{key}}}"#)),
        ("set_role", r#"{"type":"set_role","user":2,"role":"viewer"}"#.to_owned()),
        ("kick", r#"{"type":"kick","user":2}"#.to_owned()),
        ("handoff", r#"{"type":"handoff","to":2}"#.to_owned()),
        ("leave", r#"{"type":"leave"}"#.to_owned()),
    ];
    let mut out = Vec::new();
    for (name, json) in client {
        ClientMessage::from_json(&json).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        out.push((format!("client-{name}"), json.into_bytes()));
    }
    let hello = checks::hello(FOLLOWER).to_json().expect("hello");
    ServerMessage::from_json(&hello).expect("hello parses");
    out.push(("server-hello".to_owned(), hello.into_bytes()));
    let server = [
        (
            "offer",
            format!(r#"{{"type":"offer","from":1,"sdp":{sdp}}}"#),
        ),
        (
            "member_left",
            r#"{"type":"member_left","user":2}"#.to_owned(),
        ),
        ("kicked", r#"{"type":"kicked","user":2}"#.to_owned()),
    ];
    for (name, json) in server {
        ServerMessage::from_json(&json).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        out.push((format!("server-{name}"), json.into_bytes()));
    }
    out
}

/// Every seed, by target and file name.
fn generate() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let (h, f) = room_frames();
    let host = dedup(&h);
    let follower = dedup(&f);
    let mut seeds: BTreeMap<&'static str, Vec<(String, Vec<u8>)>> = BTreeMap::new();

    let frames = seeds.entry("frame_decode").or_default();
    for (i, fr) in host.iter().chain(&follower).enumerate() {
        frames.push((format!("raw-{i:02}"), fr.clone()));
        frames.push((format!("body-{i:02}"), kind_and_body(fr)));
    }

    seeds.insert("signaling_json", signaling_seeds());

    let certs = seeds.entry("certificate").or_default();
    if let ServerMessage::Hello { certificate, .. } = checks::hello(HOST) {
        certs.push(("host".to_owned(), certificate.as_bytes().to_vec()));
        certs.push((
            "host-b64".to_owned(),
            certificate.to_base64url().into_bytes(),
        ));
        SignedCertificate::parse(certificate.as_bytes()).expect("parses");
    }

    // session_input: one program per real frame kind, each in the position
    // it has in a real room, plus a program mixing everything.
    let chan = |c: u16| -> u8 {
        [channels::CONTROL.id, channels::CHAT.id, channels::CLOCK.id]
            .iter()
            .position(|x| x.get() == c)
            .map_or(3, |p| p as u8)
    };
    let host_raw: Vec<(u8, Vec<u8>)> = h.iter().map(|(c, fr)| (chan(*c), fr.clone())).collect();
    let follower_raw: Vec<(u8, Vec<u8>)> = f.iter().map(|(c, fr)| (chan(*c), fr.clone())).collect();
    let split = |f: &[u8]| {
        let kb = kind_and_body(f);
        (kb[0], kb[1..].to_vec())
    };
    let session = seeds.entry("session_input").or_default();
    let mut all = Vec::new();
    for (i, (c, fr)) in host_raw.iter().enumerate().take(12) {
        let (k, b) = split(fr);
        let ops = vec![Op::HostSigned(*c, k, b.clone()), Op::Tick(250)];
        session.push((format!("host-{i:02}"), Op::encode(&ops)));
        all.push(Op::RawToFollower(*c, fr.clone()));
        all.push(Op::OtherToFollower(*c, k, b));
    }
    for (i, (c, fr)) in follower_raw.iter().enumerate().take(12) {
        let (k, b) = split(fr);
        let ops = vec![Op::FollowerToHost(*c, k, b.clone()), Op::Tick(250)];
        session.push((format!("follower-{i:02}"), Op::encode(&ops)));
        all.push(Op::RawToHost(*c, fr.clone()));
        all.push(Op::OtherToHost(*c, k, b));
    }
    all.push(Op::Tick(1_000));
    all.push(Op::Signal(br#"{"type":"member_left","user":2}"#.to_vec()));
    all.push(Op::Tick(5_000));
    session.push(("mixed".to_owned(), Op::encode(&all)));
    seeds
}

#[test]
fn committed_seeds_match_the_generator() {
    let seeds = generate();
    let write = std::env::var_os("WATCHPARTY_WRITE_SEEDS").is_some();
    for (target, files) in &seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, bytes) in files {
            let path = dir.join(format!("seed-{name}"));
            if write {
                std::fs::write(&path, bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (regenerate with WATCHPARTY_WRITE_SEEDS=1)",
                    path.display()
                )
            });
            assert!(
                committed == *bytes,
                "{} differs from the generator (regenerate with WATCHPARTY_WRITE_SEEDS=1)",
                path.display()
            );
        }
        if write {
            // Stale seeds go only after the new ones are written, so the
            // replay test running alongside never sees an empty corpus.
            let wanted: Vec<String> = files.iter().map(|(n, _)| format!("seed-{n}")).collect();
            for p in seed_files(target) {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if !wanted.contains(&name) {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        let on_disk = seed_files(target).len();
        assert_eq!(
            on_disk,
            files.len(),
            "stale seed files in {}",
            dir.display()
        );
    }
    for target in TARGETS {
        assert!(seeds.contains_key(target), "no seeds for {target}");
    }
}

fn seed_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    v.sort();
    v
}

fn regression_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("regressions").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn seeds_and_regressions_replay_without_panic() {
    let mut replayed = 0;
    for target in TARGETS {
        let files: Vec<PathBuf> = seed_files(target)
            .into_iter()
            .chain(regression_files(target))
            .collect();
        assert!(!files.is_empty(), "no seeds for {target}");
        for path in files {
            let data = std::fs::read(&path).unwrap();
            assert!(checks::run(target, &data), "unknown target {target}");
            replayed += 1;
        }
    }
    println!("replayed {replayed} fuzz inputs");
}

/// The checks are not vacuous: the fixed room really plays, and a
/// host-signed program reaches the follower's session logic.
#[test]
fn session_fixture_is_live() {
    let room = Room::new();
    assert_eq!(room.follower.host(), room.host.user());
    assert!(
        room.follower.loaded().is_some(),
        "follower has the loaded item"
    );
    assert!(room.follower.playback().is_some_and(|p| !p.paused));
    let ops = Op::decode(&Op::encode(&[
        Op::Tick(7),
        Op::HostSigned(1, 3, vec![1, 2, 3]),
        Op::Signal(b"{}".to_vec()),
    ]));
    assert_eq!(
        ops,
        vec![
            Op::Tick(7),
            Op::HostSigned(1, 3, vec![1, 2, 3]),
            Op::Signal(b"{}".to_vec())
        ]
    );
}
