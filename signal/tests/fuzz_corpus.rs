//! Fuzz corpus regression: the committed seeds of every server fuzz target
//! (`signal/fuzz/corpus/<target>/seed-*`) and every crash reproducer
//! (`signal/fuzz/regressions/<target>/*`) replayed through the same
//! functions the fuzz targets call (`signal/fuzz/checks.rs`), on stable, in
//! the normal test run.
//!
//! The seeds are generated here: the test fails when the committed seeds
//! differ from what this generator produces. Regenerate with
//! `WATCHPARTY_WRITE_SEEDS=1 cargo test -p watchparty-signal --test fuzz_corpus`.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use checks::{NOW, TARGETS};
use watchparty_signal::tokens::StreamGrant;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn sized(size: u64, header: &str) -> Vec<u8> {
    let mut v = size.to_be_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v
}

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n";

/// Every seed, by target and file name.
fn generate() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut seeds: BTreeMap<&'static str, Vec<(String, Vec<u8>)>> = BTreeMap::new();

    let long = format!("bytes=0-{}", "9".repeat(300));
    let ranges = [
        ("closed", sized(1000, "bytes=0-99")),
        ("open", sized(1000, "bytes=100-")),
        ("suffix", sized(1000, "bytes=-500")),
        ("suffix-zero", sized(1000, "bytes=-0")),
        ("beyond", sized(1000, "bytes=1000-")),
        ("empty-file", sized(0, "bytes=-1")),
        ("multi", sized(1000, "bytes=0-0,5-9")),
        ("reversed", sized(1000, "Bytes=5-1")),
        ("unit", sized(1000, "items=0-1")),
        ("spaces", sized(1000, " bytes= 1 - 2 ")),
        ("huge", sized(u64::MAX, "bytes=18446744073709551614-")),
        ("overlong", sized(1000, &long)),
    ];
    seeds.insert(
        "range_header",
        ranges.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    );

    let tokens = checks::stream_tokens();
    let grant = StreamGrant {
        user_id: 7,
        item_id: 42,
        exp: NOW + 600,
    };
    let mut raw_grant = Vec::new();
    for n in [grant.user_id, grant.item_id, grant.exp] {
        raw_grant.extend_from_slice(&n.to_be_bytes());
    }
    raw_grant.push(3);
    let jwt = checks::access_tokens()
        .issue(7, &[1; 16], NOW, 900)
        .expect("issues");
    let media = vec![
        ("stream-valid".to_owned(), tokens.sign(&grant).into_bytes()),
        (
            "stream-expired".to_owned(),
            tokens
                .sign(&StreamGrant {
                    exp: NOW - 1,
                    ..grant
                })
                .into_bytes(),
        ),
        ("grant".to_owned(), raw_grant),
        ("jwt".to_owned(), jwt.into_bytes()),
    ];
    assert!(tokens.verify(std::str::from_utf8(&media[0].1).unwrap(), NOW) == Some(grant));
    seeds.insert("media_token", media);

    let sdp = serde_json::to_string(SDP).unwrap();
    let ws = [
        ("auth", r#"{"type":"auth","token":"aaaa.bbbb.cccc","protocol":1}"#.to_owned()),
        ("offer", format!(r#"{{"type":"offer","to":2,"sdp":{sdp}}}"#)),
        ("answer", format!(r#"{{"type":"answer","to":1,"sdp":{sdp}}}"#)),
        (
            "ice",
            r#"{"type":"ice","to":2,"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
                .to_owned(),
        ),
        ("kick", r#"{"type":"kick","user":2}"#.to_owned()),
        ("leave", r#"{"type":"leave"}"#.to_owned()),
        ("origin-listed", "https://party.example.org".to_owned()),
        ("origin-suffix", "https://party.example.org.evil.com".to_owned()),
        ("origin-null", "null".to_owned()),
    ];
    seeds.insert(
        "ws_client_message",
        ws.into_iter()
            .map(|(n, v)| (n.to_owned(), v.into_bytes()))
            .collect(),
    );
    seeds
}

fn listed(target: &str, sub: &str, filter: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(sub).join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && filter(p))
        .collect();
    v.sort();
    v
}

fn is_seed(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
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
            for p in listed(target, "corpus", is_seed) {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if !wanted.contains(&name) {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        let on_disk = listed(target, "corpus", is_seed).len();
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

#[test]
fn seeds_and_regressions_replay_without_panic() {
    let mut replayed = 0;
    for target in TARGETS {
        let files: Vec<PathBuf> = listed(target, "corpus", is_seed)
            .into_iter()
            .chain(listed(target, "regressions", |_| true))
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

/// The checks are not vacuous: they reject what they must.
#[test]
fn checks_catch_what_they_guard() {
    // The origin check's property holds for the listed origin and a suffix trick.
    checks::ws_client_message(b"https://party.example.org");
    checks::ws_client_message(b"https://party.example.org.evil.com");
    // A relayed offer keeps its SDP and gains the sender.
    let msg = watchparty_peer::signaling::ClientMessage::from_json(&format!(
        r#"{{"type":"offer","to":2,"sdp":{}}}"#,
        serde_json::to_string(SDP).unwrap()
    ))
    .unwrap();
    let me = watchparty_peer::ids::UserId::new(9).unwrap();
    let (to, out) = checks::relayed(msg, me).unwrap();
    assert_eq!(to.get(), 2);
    assert!(out.to_json().unwrap().contains(r#""from":9"#));
}
