//! Configurable caps crossed over real sockets and a real SQLite file: the
//! library-scan entry cap, the password-hashing queue (wait and waiter cap),
//! and the row cap of the room list and the invitation inbox.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use watchparty_signal::config::Argon2Cost;
use watchparty_signal::media::scan::{ScanError, scan_library_limited};

type ItemSnapshot = Vec<(i64, String, i64, i64, Vec<u8>, i64)>;
type SubtitleSnapshot = Vec<(i64, i64, String, i64)>;

/// Every indexed row of the media tables, for before/after comparisons.
async fn snapshot(s: &Server) -> (ItemSnapshot, SubtitleSnapshot) {
    let items = sqlx::query_as(
        "SELECT id, rel_path, size_bytes, mtime, content_hash, present
           FROM media_items ORDER BY id",
    )
    .fetch_all(&s.state.db)
    .await
    .unwrap();
    let subs = sqlx::query_as("SELECT id, item_id, rel_path, present FROM subtitles ORDER BY id")
        .fetch_all(&s.state.db)
        .await
        .unwrap();
    (items, subs)
}

#[tokio::test]
async fn scan_over_the_entry_cap_fails_and_leaves_the_index_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // media_tree: root {films/, song.mp3, fake.mp4} + films/{movie.mp4,
    // movie.en.srt, movie.vtt} = 6 directory entries.
    let root = media_tree(&dir.path().join("lib"));
    let s = Server::start(&dir.path().join("data"), |_| {}).await;
    let lib = s.add_library("l", &root).await;
    let r = scan_library_limited(&s.state.db, lib, 6).await.unwrap();
    assert_eq!(
        (r.added, r.unchanged, r.subtitles),
        (0, 2, 2),
        "at the cap: {r:?}"
    );
    let before = snapshot(&s).await;
    assert_eq!(before.0.len(), 2);

    // 7 entries: one file removed, two added.
    std::fs::remove_file(root.join("song.mp3")).unwrap();
    std::fs::write(root.join("new1.mp4"), mp4_bytes(300)).unwrap();
    std::fs::write(root.join("new2.mp4"), mp4_bytes(400)).unwrap();
    let err = scan_library_limited(&s.state.db, lib, 6).await.unwrap_err();
    assert!(
        matches!(err, ScanError::TooManyEntries { limit: 6 }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("more than 6 directory entries") && msg.contains("unchanged"),
        "{msg}"
    );
    assert_eq!(snapshot(&s).await, before, "a failed scan writes nothing");

    // Raised cap: the change is indexed, and a second scan changes nothing.
    let r = scan_library_limited(&s.state.db, lib, 7).await.unwrap();
    assert_eq!((r.added, r.unchanged, r.missing), (2, 1, 1), "{r:?}");
    let after = snapshot(&s).await;
    let r = scan_library_limited(&s.state.db, lib, 7).await.unwrap();
    assert_eq!((r.added, r.updated, r.unchanged, r.missing), (0, 0, 3, 0));
    assert_eq!(snapshot(&s).await, after, "idempotent");
    s.stop().await;
}

/// A cost that keeps one hash busy for far longer than the queue waits below
/// (seconds in this build), so the hashing slot is reliably occupied.
const SLOW_ARGON2: Argon2Cost = Argon2Cost {
    memory_kib: 19_456,
    iterations: 40,
    parallelism: 1,
};

fn login_request(s: &Server, name: &str) -> reqwest::RequestBuilder {
    s.client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": name, "password": PASSWORD}))
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn saturated_hashing_queue_answers_busy_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| {
        c.argon2 = SLOW_ARGON2;
        c.hash_concurrency = 1;
        c.hash_queue_max_waiters = 1;
        c.hash_queue_timeout = Duration::from_millis(300);
    })
    .await;
    s.add_user("alice", false).await;
    let hasher = s.state.hasher.clone();

    // A holds the only hashing slot.
    let a = tokio::spawn(login_request(&s, "alice").send());
    wait_until("login A hashing", || hasher.in_use() == 1).await;
    // B takes the only waiting place.
    let b = tokio::spawn(login_request(&s, "alice").send());
    wait_until("login B waiting", || hasher.waiting() == 1).await;
    // C finds the queue full: 503 `busy` without waiting.
    let c = login_request(&s, "alice").send().await.unwrap();
    assert_eq!(c.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = c.json().await.unwrap();
    assert_eq!(body["error"], "busy", "{body}");
    assert!(hasher.in_use() <= 1 && hasher.waiting() <= 1);
    // B crosses the 300 ms wait while A still hashes: 503 `busy`.
    let b = b.await.unwrap().unwrap();
    assert_eq!(b.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(b).await["error"], "busy");
    assert_eq!(hasher.waiting(), 0, "the timed-out waiter left the queue");
    // A was never disturbed.
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!((hasher.in_use(), hasher.waiting()), (0, 0));
    // Busy answers are not login failures: the account is not throttled.
    let d = login_request(&s, "alice").send().await.unwrap();
    assert_eq!(d.status(), StatusCode::OK);
    s.stop().await;
}

/// Rooms `0..n` hosted by `host` with `guest` invited; room `i` gets
/// `created_at` and invitation time `1000 + i` so "newest" is well defined.
async fn rooms_with_invites(s: &Server, host: &str, guest: &str, n: usize) -> Vec<String> {
    let lib_root = s.state.config.data_dir.join("../lib");
    let lib = s.add_library("films", &media_tree(&lib_root)).await;
    let hid = s.add_user(host, false).await;
    s.add_user(guest, false).await;
    let gid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = ?1")
        .bind(guest)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    s.grant(hid, lib).await;
    s.grant(gid, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let t = s.login(host).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = s
            .call(
                Method::POST,
                "/api/v1/rooms",
                &t,
                Some(json!({"name": format!("r{i}"), "media_id": movie,
                            "invites": [{"username": guest, "role": "viewer"}]})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "room {i}");
        let id = json(r).await["id"].as_str().unwrap().to_owned();
        let at = 1000 + i as i64;
        sqlx::query("UPDATE rooms SET created_at = ?2 WHERE id = ?1")
            .bind(&id)
            .bind(at)
            .execute(&s.state.db)
            .await
            .unwrap();
        sqlx::query("UPDATE room_members SET updated_at = ?2 WHERE room_id = ?1 AND user_id = ?3")
            .bind(&id)
            .bind(at)
            .bind(gid)
            .execute(&s.state.db)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn listing(s: &Server, path: &str, token: &str, key: &str) -> (Vec<String>, String) {
    let r = s.call(Method::GET, path, token, None).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let truncated = r.headers()["x-truncated"].to_str().unwrap().to_owned();
    let ids = json(r)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect();
    (ids, truncated)
}

#[tokio::test]
async fn room_list_and_invite_inbox_keep_the_newest_rows_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), |c| c.list_max_rows = 3).await;
    let rooms = rooms_with_invites(&s, "host", "guest", 4).await;
    let host = s.login("host").await;
    let guest = s.login("guest").await;
    let newest3 = vec![rooms[3].clone(), rooms[2].clone(), rooms[1].clone()];

    // One row over the cap: exactly `cap` rows, the newest, flagged truncated.
    assert_eq!(
        listing(&s, "/api/v1/rooms", &host, "id").await,
        (newest3.clone(), "true".to_owned())
    );
    assert_eq!(
        listing(&s, "/api/v1/invites", &guest, "room_id").await,
        (newest3.clone(), "true".to_owned())
    );

    // Accepting the oldest invitation leaves exactly `cap`: not truncated.
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/invites/{}/accept", rooms[0]),
            &guest,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        listing(&s, "/api/v1/invites", &guest, "room_id").await,
        (newest3, "false".to_owned())
    );
    assert_eq!(
        listing(&s, "/api/v1/rooms", &guest, "id").await,
        (vec![rooms[0].clone()], "false".to_owned())
    );
    s.stop().await;
}
