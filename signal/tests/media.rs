//! Media scan, access rule, signed stream URLs, Range handling, path safety.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use watchparty_signal::media::scan::scan_library;
use watchparty_signal::tokens::StreamGrant;

struct Fixture {
    s: Server,
    _dir: tempfile::TempDir,
    lib_dir: std::path::PathBuf,
    lib: i64,
    other_lib: i64,
    movie: i64,
    user_token: String,
    admin_token: String,
    stranger_token: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lib_dir = media_tree(&dir.path().join("lib"));
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("secret.mp4"), mp4_bytes(2000)).unwrap();
    let s = Server::start(&data, |_| {}).await;
    let user = s.add_user("viewer1", false).await;
    s.add_user("root", true).await;
    s.add_user("stranger", false).await;
    let lib = s.add_library("films", &lib_dir).await;
    let other_lib = s.add_library("other", &other_dir).await;
    s.grant(user, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let user_token = s.login("viewer1").await;
    let admin_token = s.login("root").await;
    let stranger_token = s.login("stranger").await;
    Fixture {
        s,
        _dir: dir,
        lib_dir,
        lib,
        other_lib,
        movie,
        user_token,
        admin_token,
        stranger_token,
    }
}

async fn stream_url(f: &Fixture, token: &str, item: i64) -> Value {
    let r =
        f.s.call(
            Method::POST,
            &format!("/api/v1/media/{item}/stream-url"),
            token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await
}

#[tokio::test]
async fn scan_is_idempotent_and_checks_magic_bytes() {
    let f = fixture().await;
    let db = &f.s.state.db;
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM media_items WHERE library_id = ?1 AND present = 1",
        )
        .bind(f.lib)
        .fetch_one(db)
        .await
        .unwrap()
    };
    assert_eq!(
        count().await,
        2,
        "movie.mp4 and song.mp3; fake.mp4 rejected"
    );
    let r = scan_library(db, f.lib).await.unwrap();
    assert_eq!((r.added, r.updated, r.unchanged, r.missing), (0, 0, 2, 0));
    assert_eq!(r.rejected, 1);
    assert_eq!(r.subtitles, 2);
    // Content hash is the SHA-256 of the file.
    let hash: Vec<u8> = sqlx::query_scalar("SELECT content_hash FROM media_items WHERE id = ?1")
        .bind(f.movie)
        .fetch_one(db)
        .await
        .unwrap();
    let expected =
        watchparty_signal::media::scan::hash_file(&f.lib_dir.join("films/movie.mp4")).unwrap();
    assert_eq!(hash, expected.to_vec());
    // Changing and removing files.
    std::fs::write(f.lib_dir.join("films/movie.mp4"), mp4_bytes(12_000)).unwrap();
    std::fs::remove_file(f.lib_dir.join("song.mp3")).unwrap();
    let r = scan_library(db, f.lib).await.unwrap();
    assert_eq!((r.added, r.updated, r.unchanged, r.missing), (0, 1, 0, 1));
    assert_eq!(count().await, 1);
    assert_eq!(
        f.s.item_id("films/movie.mp4").await,
        f.movie,
        "ids are stable across scans"
    );
}

#[tokio::test]
async fn listing_and_item_access_follow_grants() {
    let f = fixture().await;
    let get = |tok: &str, path: &str| {
        let (s, tok, path) = (&f.s, tok.to_owned(), path.to_owned());
        async move { s.call(Method::GET, &path, &tok, None).await }
    };
    let libs = json(get(&f.user_token, "/api/v1/libraries").await).await;
    assert_eq!(libs.as_array().unwrap().len(), 1);
    assert_eq!(libs[0]["name"], "films");
    assert_eq!(libs[0]["item_count"], 2);
    assert!(
        libs[0].get("root_path").is_none(),
        "server paths are not exposed"
    );
    let admin_libs = json(get(&f.admin_token, "/api/v1/libraries").await).await;
    assert_eq!(admin_libs.as_array().unwrap().len(), 2);
    assert_eq!(
        json(get(&f.stranger_token, "/api/v1/libraries").await).await,
        serde_json::json!([])
    );

    let media = json(get(&f.user_token, "/api/v1/media").await).await;
    let mut titles: Vec<&str> = media
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    titles.sort_unstable();
    assert_eq!(titles, ["movie", "song"]);
    let movie = media
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["title"] == "movie")
        .unwrap();
    assert_eq!(movie["mime_type"], "video/mp4");
    assert_eq!(movie["size_bytes"], 10_000);
    assert_eq!(movie["subtitles"].as_array().unwrap().len(), 2);
    assert_eq!(
        json(get(&f.admin_token, "/api/v1/media").await)
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        json(get(&f.stranger_token, "/api/v1/media").await)
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Paging and filter.
    let page = json(
        get(
            &f.admin_token,
            &format!("/api/v1/media?limit=1&library={}", f.other_lib),
        )
        .await,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(
        get(&f.admin_token, "/api/v1/media?limit=501")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&f.admin_token, "/api/v1/media?limit=0").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&f.admin_token, "/api/v1/media?bogus=1").await.status(),
        StatusCode::BAD_REQUEST
    );

    let item = format!("/api/v1/media/{}", f.movie);
    assert_eq!(get(&f.user_token, &item).await.status(), StatusCode::OK);
    assert_eq!(get(&f.admin_token, &item).await.status(), StatusCode::OK);
    assert_eq!(
        get(&f.stranger_token, &item).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.user_token, "/api/v1/media/999999").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.user_token, "/api/v1/media/abc").await.status(),
        StatusCode::NOT_FOUND
    );
    let url = format!("/api/v1/media/{}/stream-url", f.movie);
    assert_eq!(
        f.s.call(Method::POST, &url, &f.stranger_token, None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.s.client
            .post(f.s.url(&url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn range_requests() {
    let f = fixture().await;
    let su = stream_url(&f, &f.user_token, f.movie).await;
    let url = f.s.url(su["url"].as_str().unwrap());
    assert!(
        su["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/api/v1/media/{}/stream?t=", f.movie))
    );
    let expires = su["expires_at"].as_i64().unwrap();
    assert!(expires - watchparty_signal::db::now_secs() <= 600);
    let content = std::fs::read(f.lib_dir.join("films/movie.mp4")).unwrap();
    let size = content.len() as u64;
    let get = |range: Option<&str>| {
        let mut req = f.s.client.get(&url);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    // Full.
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &content[..]);
    // Partial cases: (header, start, end).
    let cases: [(&str, u64, u64); 6] = [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=5000-5099", 5000, 5099),
        ("bytes=9999-", 9999, 9999),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=9990-20000", 9990, size - 1),
    ];
    for (h, start, end) in cases {
        let r = get(Some(h)).await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{h}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{size}").as_str(),
            "{h}"
        );
        assert_eq!(
            r.headers()["content-length"],
            (end - start + 1).to_string().as_str()
        );
        assert_eq!(r.headers()["etag"], etag.as_str());
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &content[start as usize..=end as usize],
            "{h}"
        );
    }
    // Unsatisfiable.
    for h in ["bytes=10000-", "bytes=20000-30000", "bytes=-0"] {
        let r = get(Some(h)).await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{h}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
        assert_eq!(json(r).await["error"], "range_not_satisfiable");
    }
    // Invalid or multi-range headers are ignored: whole body.
    for h in [
        "bytes=5-2",
        "bytes=abc",
        "items=0-1",
        "bytes=0-1,5-6",
        "bytes=--1",
    ] {
        let r = get(Some(h)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{h}");
        assert_eq!(r.bytes().await.unwrap().len() as u64, size);
    }
    // If-Range with a stale validator → full body; matching → partial.
    let r =
        f.s.client
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", "\"stale\"")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        f.s.client
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", &etag)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let r =
        f.s.client
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // HEAD works without a body.
    let r = f.s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
}

#[tokio::test]
async fn stream_tokens_are_bound_checked_and_access_is_rechecked() {
    let f = fixture().await;
    let su = stream_url(&f, &f.user_token, f.movie).await;
    let url = su["url"].as_str().unwrap().to_owned();
    let token = url.split("t=").nth(1).unwrap().to_owned();
    let song = f.s.item_id("song.mp3").await;
    let status = |path: String| {
        let s = &f.s;
        async move { s.client.get(s.url(&path)).send().await.unwrap().status() }
    };
    assert_eq!(status(url.clone()).await, StatusCode::OK);
    // Token for item A used on item B.
    assert_eq!(
        status(format!("/api/v1/media/{song}/stream?t={token}")).await,
        StatusCode::UNAUTHORIZED
    );
    // Missing (the token is the credential: 401, as for a bad one) / garbage / tampered.
    assert_eq!(
        status(format!("/api/v1/media/{}/stream", f.movie)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(format!("/api/v1/media/{}/subtitles/1", f.movie)).await,
        StatusCode::UNAUTHORIZED
    );
    // A malformed query string (the token twice) is a bad request.
    assert_eq!(
        status(format!(
            "/api/v1/media/{}/stream?t={token}&t={token}",
            f.movie
        ))
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(format!("/api/v1/media/{}/stream?t=abc", f.movie)).await,
        StatusCode::UNAUTHORIZED
    );
    let mut bad = token.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(
        status(format!("/api/v1/media/{}/stream?t={bad}", f.movie)).await,
        StatusCode::UNAUTHORIZED
    );
    // The access token is not a stream token.
    assert_eq!(
        status(format!(
            "/api/v1/media/{}/stream?t={}",
            f.movie, f.user_token
        ))
        .await,
        StatusCode::UNAUTHORIZED
    );
    // Expired (signed with the real key, exp in the past).
    let uid: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'viewer1'")
        .fetch_one(&f.s.state.db)
        .await
        .unwrap();
    let expired = f.s.state.stream_tokens.sign(&StreamGrant {
        user_id: uid,
        item_id: f.movie,
        exp: watchparty_signal::db::now_secs() - 1,
    });
    assert_eq!(
        status(format!("/api/v1/media/{}/stream?t={expired}", f.movie)).await,
        StatusCode::UNAUTHORIZED
    );
    // Subtitles with the same token: .srt is converted to WebVTT.
    for sub in su["subtitles"].as_array().unwrap() {
        let r =
            f.s.client
                .get(f.s.url(sub["url"].as_str().unwrap()))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/vtt; charset=utf-8");
        let text = r.text().await.unwrap();
        assert!(text.starts_with("WEBVTT"), "{text}");
        if sub["language"] == "en" {
            assert!(text.contains("00:00:01.000 --> 00:00:02.000"), "{text}");
        }
    }
    // Revoking the grant takes effect on the next request, even with a valid URL.
    sqlx::query("DELETE FROM library_grants")
        .execute(&f.s.state.db)
        .await
        .unwrap();
    assert_eq!(status(url.clone()).await, StatusCode::NOT_FOUND);
    let sub_url = su["subtitles"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(status(sub_url).await, StatusCode::NOT_FOUND);
    // Disabled users lose access too (admin path).
    let admin_url = stream_url(&f, &f.admin_token, f.movie).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status(admin_url.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE users SET disabled = 1 WHERE username = 'root'")
        .execute(&f.s.state.db)
        .await
        .unwrap();
    assert_eq!(status(admin_url).await, StatusCode::NOT_FOUND);
    let _ = f.lib;
}

#[tokio::test]
async fn traversal_and_symlink_escape_are_refused() {
    let f = fixture().await;
    let db = &f.s.state.db;
    // A symlink inside the library pointing outside: the scan never follows it…
    let outside = f.lib_dir.parent().unwrap().join("other/secret.mp4");
    std::os::unix::fs::symlink(&outside, f.lib_dir.join("escape.mp4")).unwrap();
    let r = scan_library(db, f.lib).await.unwrap();
    assert_eq!(r.added, 0, "symlinks are not indexed");
    // …and even a row pointing at it (or at ../) is refused when streaming.
    let hash = vec![0u8; 32];
    for (rel, size) in [
        ("escape.mp4", 2000i64),
        ("../other/secret.mp4", 2000),
        ("/etc/passwd", 10),
    ] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO media_items (library_id, rel_path, title, kind, mime_type, size_bytes, mtime,
                                      content_hash, present, scanned_at)
             VALUES (?1, ?2, 't', 'video', 'video/mp4', ?3, 0, ?4, 1, 0) RETURNING id",
        )
        .bind(f.lib)
        .bind(rel)
        .bind(size)
        .bind(&hash)
        .fetch_one(db)
        .await
        .unwrap();
        let su = stream_url(&f, &f.user_token, id).await;
        let r =
            f.s.client
                .get(f.s.url(su["url"].as_str().unwrap()))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{rel}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("secret"), "{rel}");
    }
    // Path-like ids never reach the filesystem.
    let r =
        f.s.call(
            Method::GET,
            "/api/v1/media/..%2F..%2Fetc%2Fpasswd",
            &f.user_token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
