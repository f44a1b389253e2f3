//! Media durations: the scan probes each file with `ffprobe` and the REST
//! catalogue returns `duration_ms`; without `ffprobe` the scan still succeeds
//! and the duration stays `null`, and a later scan with `ffprobe` fills it in.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::Value;
use watchparty_signal::media::probe::Prober;
use watchparty_signal::media::scan::{DEFAULT_SCAN_MAX_ENTRIES, scan_library_probed};

/// The test clip's duration as ffprobe reads it: 4 s of video, and its Opus
/// track's last 20 ms frame ends at 4.008 s.
const CLIP_MS: i64 = 4008;

fn clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-peer/tests/assets/clip.webm")
}

fn ffprobe_installed() -> bool {
    Prober::default().available()
}

async fn duration_via_rest(s: &Server, token: &str, item: i64) -> (Value, Value) {
    let one = json(
        s.call(Method::GET, &format!("/api/v1/media/{item}"), token, None)
            .await,
    )
    .await;
    let list = json(s.call(Method::GET, "/api/v1/media", token, None).await).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == item)
        .unwrap_or_else(|| panic!("item {item} not listed: {list}"))["duration_ms"]
        .clone();
    (one["duration_ms"].clone(), listed)
}

#[tokio::test]
async fn scan_stores_the_probed_duration_and_rest_returns_it() {
    if !ffprobe_installed() {
        eprintln!("ffprobe not installed (cargo xtask setup installs ffmpeg); skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    std::fs::copy(clip(), lib_dir.join("clip.webm")).unwrap();
    let s = Server::start(&dir.path().join("data"), |_| {}).await;
    s.add_user("root", true).await;
    s.add_library("films", &lib_dir).await;
    let token = s.login("root").await;
    let clip_id = s.item_id("clip.webm").await;
    let (one, listed) = duration_via_rest(&s, &token, clip_id).await;
    assert_eq!(one, CLIP_MS, "clip.webm is 4.008 s");
    assert_eq!(listed, CLIP_MS);
    // The fake MP4 (right magic, no real content) has no duration.
    let movie = s.item_id("films/movie.mp4").await;
    let (one, listed) = duration_via_rest(&s, &token, movie).await;
    assert!(one.is_null() && listed.is_null(), "{one} {listed}");
}

#[tokio::test]
async fn without_ffprobe_the_scan_succeeds_and_a_later_scan_fills_durations_in() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    std::fs::copy(clip(), lib_dir.join("clip.webm")).unwrap();
    let s = Server::start(&dir.path().join("data"), |_| {}).await;
    s.add_user("root", true).await;
    let root = std::fs::canonicalize(&lib_dir).unwrap();
    let lib = watchparty_signal::media::library::add(&s.state.db, "l", root.to_str().unwrap(), 0)
        .await
        .unwrap();
    let missing = Prober::new("/nonexistent/ffprobe", Duration::from_secs(1));
    let r = scan_library_probed(&s.state.db, lib, DEFAULT_SCAN_MAX_ENTRIES, missing)
        .await
        .unwrap();
    assert_eq!(r.added, 1, "{r:?}");
    let token = s.login("root").await;
    let id = s.item_id("clip.webm").await;
    let (one, _) = duration_via_rest(&s, &token, id).await;
    assert!(one.is_null(), "no ffprobe, no duration: {one}");
    if !ffprobe_installed() {
        return;
    }
    // The file is unchanged, but its unknown duration is probed again.
    let r = scan_library_probed(
        &s.state.db,
        lib,
        DEFAULT_SCAN_MAX_ENTRIES,
        Prober::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.unchanged, 1, "{r:?}");
    let (one, listed) = duration_via_rest(&s, &token, id).await;
    assert_eq!((one, listed), (Value::from(CLIP_MS), Value::from(CLIP_MS)));
    // A later scan without ffprobe keeps the stored duration.
    let missing = Prober::new("/nonexistent/ffprobe", Duration::from_secs(1));
    scan_library_probed(&s.state.db, lib, DEFAULT_SCAN_MAX_ENTRIES, missing)
        .await
        .unwrap();
    let (one, _) = duration_via_rest(&s, &token, id).await;
    assert_eq!(one, CLIP_MS);
}
