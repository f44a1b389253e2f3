//! Limits not crossed elsewhere: sessions per user, open rooms per host, room
//! creation rate, subtitle size, scan depth.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use watchparty_signal::accounts::MAX_SESSIONS_PER_USER;
use watchparty_signal::api::rooms::MAX_OPEN_ROOMS_PER_HOST;
use watchparty_signal::media::scan::{MAX_SCAN_DEPTH, scan_library};
use watchparty_signal::media::subtitles::MAX_SUBTITLE_BYTES;
use watchparty_signal::throttle::ROOM_CREATE_BURST;

#[tokio::test]
async fn oldest_session_is_revoked_beyond_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_relaxed(dir.path()).await;
    s.add_user("many", false).await;
    let first = s.login("many").await;
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &first, None)
            .await
            .status(),
        StatusCode::OK
    );
    let mut last = String::new();
    for _ in 0..MAX_SESSIONS_PER_USER {
        last = s.login("many").await;
    }
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &first, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &last, None)
            .await
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn room_creation_rate_and_open_room_cap() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    // Default limits: burst ROOM_CREATE_BURST.
    let s = Server::start(&dir.path().join("a"), |_| {}).await;
    let lib = s.add_library("films", &lib_dir).await;
    let uid = s.add_user("host", false).await;
    s.grant(uid, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let t = s.login("host").await;
    for i in 0..ROOM_CREATE_BURST {
        let r = s
            .call(
                Method::POST,
                "/api/v1/rooms",
                &t,
                Some(json!({"name": "r", "media_id": movie})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "room {i}");
    }
    let r = s
        .call(
            Method::POST,
            "/api/v1/rooms",
            &t,
            Some(json!({"name": "r", "media_id": movie})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    s.stop().await;

    // Relaxed rate: the open-room cap applies.
    let s = Server::start_relaxed(&dir.path().join("b")).await;
    let lib = s.add_library("films", &lib_dir).await;
    let uid = s.add_user("host", false).await;
    s.grant(uid, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let t = s.login("host").await;
    let mut first = None;
    for _ in 0..MAX_OPEN_ROOMS_PER_HOST {
        let r = s
            .call(
                Method::POST,
                "/api/v1/rooms",
                &t,
                Some(json!({"name": "r", "media_id": movie})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        first.get_or_insert(json(r).await["id"].as_str().unwrap().to_owned());
    }
    let r = s
        .call(
            Method::POST,
            "/api/v1/rooms",
            &t,
            Some(json!({"name": "r", "media_id": movie})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let first = first.unwrap();
    assert_eq!(
        s.call(
            Method::POST,
            &format!("/api/v1/rooms/{first}/end"),
            &t,
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let r = s
        .call(
            Method::POST,
            "/api/v1/rooms",
            &t,
            Some(json!({"name": "r", "media_id": movie})),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "ending a room frees a slot"
    );
    s.stop().await;
}

#[tokio::test]
async fn oversized_subtitles_and_too_deep_files_are_not_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lib");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.mp4"), mp4_bytes(100)).unwrap();
    std::fs::write(
        root.join("a.vtt"),
        format!("WEBVTT\n\n{}", "x".repeat(MAX_SUBTITLE_BYTES as usize)),
    )
    .unwrap();
    std::fs::write(root.join("a.en.vtt"), "WEBVTT\n\n").unwrap();
    // A file exactly at the deepest walked level, and one below it.
    let mut deep = root.clone();
    for i in 0..MAX_SCAN_DEPTH {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(deep.join("deeper")).unwrap();
    std::fs::write(deep.join("ok.mp4"), mp4_bytes(100)).unwrap();
    std::fs::write(deep.join("deeper/too-deep.mp4"), mp4_bytes(100)).unwrap();
    let s = Server::start(&dir.path().join("data"), |_| {}).await;
    let lib = s.add_library("l", &root).await;
    let r = scan_library(&s.state.db, lib).await.unwrap();
    assert_eq!(r.subtitles, 1, "the oversized .vtt is skipped");
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM media_items ORDER BY title")
        .fetch_all(&s.state.db)
        .await
        .unwrap();
    assert_eq!(titles, ["a", "ok"]);
    s.stop().await;
}

#[tokio::test]
async fn sessions_expire_and_public_url_makes_absolute_stream_urls() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let s = Server::start(&dir.path().join("data"), |c| {
        c.access_token_ttl = std::time::Duration::from_secs(1);
        c.refresh_token_ttl = std::time::Duration::from_secs(1);
        c.public_url = Some("https://party.example.org/".into());
    })
    .await;
    let lib = s.add_library("films", &lib_dir).await;
    let uid = s.add_user("short", false).await;
    s.grant(uid, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let tokens = s.login_full("short").await;
    assert_eq!(tokens["expires_in"], 1);
    let access = tokens["access_token"].as_str().unwrap();
    let su = json(
        s.call(
            Method::POST,
            &format!("/api/v1/media/{movie}/stream-url"),
            access,
            None,
        )
        .await,
    )
    .await;
    let url = su["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://party.example.org/api/v1/media/{movie}/stream?t="
        )),
        "{url}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The session (refresh lifetime) is over: refresh and access both fail.
    let r = s
        .client
        .post(s.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", access, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}
