//! No password, token, signed URL or room password ever reaches a log line.
//! This test binary installs a global subscriber that captures everything the
//! server logs (at TRACE for our crate and the HTTP stack) and greps it.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture =
        LogCapture::install("watchparty_signal=trace,tower_http=trace,axum=trace,sqlx=debug");

    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let app = "https://party.example.org";
    let s = Server::start(&dir.path().join("data"), |c| {
        c.open_registration = true;
        c.signaling.allowed_origins = vec![app.into()];
    })
    .await;
    let lib = s.add_library("films", &lib_dir).await;
    let movie = s.item_id("films/movie.mp4").await;

    let user_pw = "Registration-Secret-77";
    let wrong_pw = "Wrong-Guess-Secret-88";
    let room_pw = "Room-Secret-Pass-99";
    let wrong_room_pw = "Room-Wrong-Pass-11";
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .json(&json!({"username": "logger", "password": user_pw, "display_name": "L"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let uid = json(r).await["id"].as_i64().unwrap();
    s.grant(uid, lib).await;
    let guest = s.add_user("guest", false).await;
    s.grant(guest, lib).await;

    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "logger", "password": wrong_pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let tokens = json(
        s.client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": "logger", "password": user_pw}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let refresh1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = json(
        s.client
            .post(s.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": refresh1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    // Reuse detection path logs a warning: it must not include the token.
    let r = s
        .client
        .post(s.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The web app's cookie: login, rotation, reuse and logout.
    let r = s.cookie_login("guest", app).await;
    let (cookie1, _) = refresh_cookie(&r).unwrap();
    let r = s
        .cookie_post("/api/v1/auth/refresh", &cookie1, true, Some(app), None)
        .await;
    let (cookie2, _) = refresh_cookie(&r).unwrap();
    let r = s
        .cookie_post("/api/v1/auth/refresh", &cookie1, true, Some(app), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s.cookie_login("guest", app).await;
    let (cookie3, _) = refresh_cookie(&r).unwrap();
    let r = s
        .cookie_post("/api/v1/auth/logout", &cookie3, true, Some(app), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cookie_value = |c: &str| c.split_once('=').unwrap().1.to_owned();
    let cookies = [
        cookie_value(&cookie1),
        cookie_value(&cookie2),
        cookie_value(&cookie3),
    ];
    let access = {
        // The session was revoked by the reuse; log in again.
        let t = json(
            s.client
                .post(s.url("/api/v1/auth/login"))
                .json(&json!({"username": "logger", "password": user_pw}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let _ = access;
        t["access_token"].as_str().unwrap().to_owned()
    };

    // Signed stream URL, fetched with a range and with a wrong token.
    let su = json(
        s.call(
            Method::POST,
            &format!("/api/v1/media/{movie}/stream-url"),
            &access,
            None,
        )
        .await,
    )
    .await;
    let url = su["url"].as_str().unwrap().to_owned();
    let stream_token = url.split("t=").nth(1).unwrap().to_owned();
    let r = s
        .client
        .get(s.url(&url))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let r = s
        .client
        .get(s.url(&format!(
            "/api/v1/media/{}/stream?t={stream_token}",
            movie + 1000
        )))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::OK);

    // Room with a password; a wrong and a right join.
    let room = json(
        s.call(
            Method::POST,
            "/api/v1/rooms",
            &access,
            Some(json!({"name": "Secret", "media_id": movie, "invite_only": false, "password": room_pw})),
        )
        .await,
    )
    .await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let guest_token = s.login("guest").await;
    let join = |pw: &'static str| {
        let (s, t, path) = (
            &s,
            guest_token.clone(),
            format!("/api/v1/rooms/{room_id}/join"),
        );
        async move {
            s.call(Method::POST, &path, &t, Some(json!({"password": pw})))
                .await
                .status()
        }
    };
    assert_eq!(join(wrong_room_pw).await, StatusCode::FORBIDDEN);
    assert_eq!(join(room_pw).await, StatusCode::OK);
    // A bad bearer token.
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &format!("{access}x"), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::POST, "/api/v1/auth/logout", &access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let mut hashes: Vec<String> = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_all(&s.state.db)
        .await
        .unwrap();
    hashes.push(
        sqlx::query_scalar("SELECT password_hash FROM rooms WHERE id = ?1")
            .bind(&room_id)
            .fetch_one(&s.state.db)
            .await
            .unwrap(),
    );
    s.stop().await;

    let logs = capture.text();
    // The capture works and carries request ids and events.
    assert!(logs.contains("login succeeded"), "{logs}");
    assert!(logs.contains("login failed"));
    assert!(logs.contains("refresh token reuse detected"));
    assert!(logs.contains("wrong room password"));
    assert!(logs.contains("request_id="));
    assert!(
        logs.contains(&format!("/api/v1/media/{movie}/stream")),
        "paths are logged"
    );
    let secrets = [
        ("user password", user_pw.to_owned()),
        ("wrong password", wrong_pw.to_owned()),
        ("room password", room_pw.to_owned()),
        ("wrong room password", wrong_room_pw.to_owned()),
        ("access token", access.clone()),
        (
            "access token signature",
            access.rsplit('.').next().unwrap().to_owned(),
        ),
        ("refresh token 1", refresh1.clone()),
        ("refresh token 2", refresh2.clone()),
        ("stream token", stream_token.clone()),
        ("stream query", "t=".to_owned() + &stream_token[..10]),
        ("refresh cookie 1", cookies[0].clone()),
        ("refresh cookie 2", cookies[1].clone()),
        ("refresh cookie 3", cookies[2].clone()),
    ];
    let secrets = secrets
        .into_iter()
        .chain(hashes.into_iter().map(|h| ("stored argon2 hash", h)));
    for (what, secret) in secrets {
        let line = logs.lines().find(|l| l.contains(&secret));
        assert!(line.is_none(), "{what} found in logs: {line:?}");
    }
}
