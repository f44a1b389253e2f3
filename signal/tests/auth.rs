//! Accounts, tokens, throttles, web hygiene — over real sockets and a real SQLite file.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use watchparty_signal::throttle::{AUTH_IP_BURST, LOGIN_FREE_FAILURES};

#[tokio::test]
async fn registration_is_off_by_default_and_works_when_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    let body = json!({"username": "newbie", "password": PASSWORD, "display_name": "New"});
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(r).await["error"], "registration_closed");
    s.stop().await;

    let s = Server::start(dir.path(), |c| c.open_registration = true).await;
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json(r).await;
    assert_eq!(v["username"], "newbie");
    assert_eq!(v["is_admin"], false);
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Validation: bad username, short password, display name with markup.
    for bad in [
        json!({"username": "Bad Name", "password": PASSWORD, "display_name": "x"}),
        json!({"username": "okname", "password": "short", "display_name": "x"}),
        json!({"username": "okname", "password": "x".repeat(129), "display_name": "x"}),
        json!({"username": "okname", "password": PASSWORD, "display_name": "<script>"}),
        json!({"username": "okname", "password": PASSWORD, "display_name": ""}),
        json!({"username": "okname", "password": PASSWORD, "display_name": "x".repeat(51)}),
    ] {
        let r = s
            .client
            .post(s.url("/api/v1/auth/register"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json(r).await["error"], "invalid_request");
    }
    let token = s.login("newbie").await;
    let me = json(s.call(Method::GET, "/api/v1/me", &token, None).await).await;
    assert_eq!(me["display_name"], "New");
    s.stop().await;
}

#[tokio::test]
async fn login_errors_are_generic_and_throttled_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    s.add_user("alice", false).await;
    s.add_user("bob", false).await;
    let attempt = |user: &'static str, pw: &'static str| {
        let s = &s;
        async move {
            let r = s
                .client
                .post(s.url("/api/v1/auth/login"))
                .json(&json!({"username": user, "password": pw}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let unknown = attempt("nobody", "wrong-password-1").await;
    let wrong = attempt("alice", "wrong-password-1").await;
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown, wrong,
        "unknown user and wrong password must look identical"
    );
    let v: Value = serde_json::from_str(&wrong.1).unwrap();
    assert_eq!(v["error"], "invalid_credentials");

    // alice: LOGIN_FREE_FAILURES failures are free, the next one locks the account.
    for _ in 1..LOGIN_FREE_FAILURES {
        assert_eq!(
            attempt("alice", "wrong-password-x").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt("alice", "wrong-password-x").await.0,
        StatusCode::UNAUTHORIZED
    );
    let locked = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        locked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );
    assert!(locked.headers().contains_key("retry-after"));
    // Another account is unaffected.
    assert_eq!(attempt("bob", PASSWORD).await.0, StatusCode::OK);
    // After the lock expires, the right password works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(attempt("alice", PASSWORD).await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn per_ip_limit_ignores_untrusted_forwarded_for_and_honours_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    let mut last = StatusCode::OK;
    for i in 0..=AUTH_IP_BURST {
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("10.9.{}.{}", i / 250, i % 250))
            .json(&json!({"username": format!("user{i}"), "password": "whatever-pass"}))
            .send()
            .await
            .unwrap();
        last = r.status();
        if i < AUTH_IP_BURST {
            assert_eq!(last, StatusCode::UNAUTHORIZED, "request {i}");
        }
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "rotating XFF from an untrusted peer gets no fresh bucket"
    );
    s.stop().await;

    // Behind a trusted proxy (127.0.0.1), each forwarded client has its own bucket.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    for i in 0..=AUTH_IP_BURST {
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{}", i + 1))
            .json(&json!({"username": format!("user{i}"), "password": "whatever-pass"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "request {i}");
    }
    // …but the same forwarded client is limited.
    let mut last = StatusCode::OK;
    for i in 0..=AUTH_IP_BURST {
        last = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({"username": format!("other{i}"), "password": "whatever-pass"}))
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    s.add_user("carol", false).await;
    let t1 = s.login_full("carol").await;
    assert!(t1["expires_in"].as_u64().unwrap() <= 900);
    let refresh = |tok: &Value| {
        let s = &s;
        let body = json!({"refresh_token": tok["refresh_token"]});
        async move {
            s.client
                .post(s.url("/api/v1/auth/refresh"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = refresh(&t1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t2 = json(r).await;
    assert_ne!(t2["refresh_token"], t1["refresh_token"]);
    let access2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &access2, None)
            .await
            .status(),
        StatusCode::OK
    );
    // Reuse of the old refresh token: refused, and the whole session is revoked.
    assert_eq!(refresh(&t1).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&t2).await.status(),
        StatusCode::UNAUTHORIZED,
        "family revoked"
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &access2, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "access tokens of the revoked session stop working at once"
    );
    // Garbage refresh tokens.
    for bad in ["", "x", &"A".repeat(43)] {
        let r = s
            .client
            .post(s.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Logout revokes the session; another session of the same user survives.
    let a = s.login_full("carol").await;
    let b = s.login("carol").await;
    let a_access = a["access_token"].as_str().unwrap();
    assert_eq!(
        s.call(Method::POST, "/api/v1/auth/logout", a_access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", a_access, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh(&a).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &b, None).await.status(),
        StatusCode::OK
    );
    // Disabling the account cuts every session.
    sqlx::query("UPDATE users SET disabled = 1 WHERE username = 'carol'")
        .execute(&s.state.db)
        .await
        .unwrap();
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &b, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "disabled users get the generic error"
    );
    s.stop().await;
}

/// The web app's origin in the cookie tests (the server's `public_url`).
const APP: &str = "https://party.example.org";

/// `Set-Cookie` of a fresh cookie login or refresh: exact attributes, a
/// 43-character token, `Max-Age` = the rest of the session (30 days at login).
fn assert_refresh_cookie_line(line: &str, ttl: u64) {
    let (pair, attrs) = line.split_once("; Max-Age=").unwrap();
    let token = pair.strip_prefix("__Secure-watchparty_refresh=").unwrap();
    assert_eq!(token.len(), 43, "{line}");
    let (max_age, rest) = attrs.split_once(';').unwrap();
    let max_age: u64 = max_age.parse().unwrap();
    assert!(max_age == ttl || max_age + 1 == ttl, "{line}");
    assert_eq!(
        rest, " Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict",
        "{line}"
    );
}

#[tokio::test]
async fn refresh_cookie_login_rotation_csrf_reuse_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| c.public_url = Some(APP.into())).await;
    s.add_user("erin", false).await;
    let ttl = 30 * 24 * 3600;

    // Asking for the cookie needs the CSRF header and the app's origin.
    for (csrf, origin) in [
        (false, Some(APP)),
        (true, None),
        (true, Some("https://evil.example")),
        (true, Some("null")),
    ] {
        let mut req = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": "erin", "password": PASSWORD, "refresh_cookie": true}));
        if csrf {
            req = req.header(CSRF_HEADER, "1");
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{csrf} {origin:?}");
        assert!(refresh_cookie(&r).is_none());
    }

    // Login: the refresh token only in the cookie, with the exact attributes.
    let r = s.cookie_login("erin", APP).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c1, line) = refresh_cookie(&r).unwrap();
    assert_refresh_cookie_line(&line, ttl);
    let t1 = json(r).await;
    assert!(t1.get("refresh_token").is_none(), "{t1}");
    let access1 = t1["access_token"].as_str().unwrap().to_owned();
    let me = |t: String| {
        let s = &s;
        async move { s.call(Method::GET, "/api/v1/me", &t, None).await.status() }
    };
    assert_eq!(me(access1.clone()).await, StatusCode::OK);

    // Refresh by cookie without the CSRF header, from a foreign or missing
    // origin: refused, and nothing rotates (the cookie still works after).
    for (csrf, origin) in [
        (false, Some(APP)),
        (true, Some("https://evil.example")),
        (true, Some("https://party.example.org.evil.example")),
        (true, Some("http://party.example.org")),
        (true, None),
    ] {
        let r = s
            .cookie_post("/api/v1/auth/refresh", &c1, csrf, origin, None)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{csrf} {origin:?}");
        assert!(refresh_cookie(&r).is_none());
    }
    // No cookie at all: 401.
    let r = s
        .client
        .post(s.url("/api/v1/auth/refresh"))
        .header(CSRF_HEADER, "1")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Refresh by cookie: a new access token, the cookie rotates.
    let r = s
        .cookie_post("/api/v1/auth/refresh", &c1, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c2, line) = refresh_cookie(&r).unwrap();
    assert_refresh_cookie_line(&line, ttl);
    assert_ne!(c2, c1, "rotated");
    let t2 = json(r).await;
    assert!(t2.get("refresh_token").is_none(), "{t2}");
    let access2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(access2.clone()).await, StatusCode::OK);
    let r = s
        .cookie_post("/api/v1/auth/refresh", &c2, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c3, _) = refresh_cookie(&r).unwrap();

    // Reuse of an old cookie value: refused, the cookie deleted, and the
    // whole session revoked (the newest cookie and every access token too).
    let r = s
        .cookie_post("/api/v1/auth/refresh", &c1, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (gone, line) = refresh_cookie(&r).unwrap();
    assert_eq!(gone, "__Secure-watchparty_refresh=");
    assert!(line.contains("Max-Age=0"), "{line}");
    let r = s
        .cookie_post("/api/v1/auth/refresh", &c3, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "session revoked");
    assert_eq!(me(access2).await, StatusCode::UNAUTHORIZED);

    // Logout with the cookie (and the page's access token): the session
    // ends and the cookie is deleted.
    let r = s.cookie_login("erin", APP).await;
    let (c, _) = refresh_cookie(&r).unwrap();
    let access = json(r).await["access_token"].as_str().unwrap().to_owned();
    // From a foreign origin: refused, nothing ends.
    let r = s
        .cookie_post(
            "/api/v1/auth/logout",
            &c,
            true,
            Some("https://evil.example"),
            Some(&access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(refresh_cookie(&r).is_none());
    assert_eq!(me(access.clone()).await, StatusCode::OK);
    let r = s
        .cookie_post("/api/v1/auth/logout", &c, true, Some(APP), Some(&access))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (gone, line) = refresh_cookie(&r).unwrap();
    assert_eq!(gone, "__Secure-watchparty_refresh=");
    assert_eq!(
        line,
        "__Secure-watchparty_refresh=; Max-Age=0; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict"
    );
    assert_eq!(me(access).await, StatusCode::UNAUTHORIZED);
    let r = s
        .cookie_post("/api/v1/auth/refresh", &c, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logout with the cookie alone (the page lost its access token) also
    // ends the session; a second logout has nothing left to end.
    let r = s.cookie_login("erin", APP).await;
    let (c, _) = refresh_cookie(&r).unwrap();
    let access = json(r).await["access_token"].as_str().unwrap().to_owned();
    let r = s
        .cookie_post("/api/v1/auth/logout", &c, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(access).await, StatusCode::UNAUTHORIZED);
    let r = s
        .cookie_post("/api/v1/auth/logout", &c, true, Some(APP), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(refresh_cookie(&r).is_some(), "the dead cookie is deleted");

    // Native clients are untouched: the JSON-body flow never sets a cookie.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "erin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(refresh_cookie(&r).is_none());
    let t = json(r).await;
    let r = s
        .client
        .post(s.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(refresh_cookie(&r).is_none());
    assert_eq!(json(r).await["refresh_token"].as_str().unwrap().len(), 43);
    s.stop().await;
}

#[tokio::test]
async fn refresh_cookie_without_secure_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| {
        c.public_url = Some("http://192.0.2.10:8080".into());
        c.cookie_secure = false;
    })
    .await;
    s.add_user("erin", false).await;
    let r = s.cookie_login("erin", "http://192.0.2.10:8080").await;
    assert_eq!(r.status(), StatusCode::OK);
    let (c, line) = refresh_cookie(&r).unwrap();
    assert!(c.starts_with("watchparty_refresh="), "{line}");
    assert!(
        line.ends_with("; Path=/api/v1/auth; HttpOnly; SameSite=Strict"),
        "{line}"
    );
    let r = s
        .cookie_post(
            "/api/v1/auth/refresh",
            &c,
            true,
            Some("http://192.0.2.10:8080"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn negative_jwt_cases_are_all_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    let uid = s.add_user("dave", false).await;
    let tokens = s.login_full("dave").await;
    let good = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &good, None)
            .await
            .status(),
        StatusCode::OK
    );

    let key = std::fs::read(dir.path().join("jwt-hs256.key")).unwrap();
    let kid = s.state.access_tokens.kid().to_owned();
    // The session id of the real token, so only the tested defect differs.
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let sid = payload["sid"].as_str().unwrap().to_owned();
    let now = watchparty_signal::db::now_secs();
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({"iss": "watchparty-signal", "aud": "watchparty-api", "sub": uid.to_string(),
                           "exp": now + 300, "iat": now, "sid": sid});
        f(&mut c);
        c
    };
    let sign = |alg: Algorithm, typ: Option<&str>, kid: Option<&str>, c: &Value| {
        let mut h = Header::new(alg);
        h.typ = typ.map(str::to_owned);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, c, &EncodingKey::from_secret(&key)).unwrap()
    };
    // Sanity: a token forged correctly with the real key is accepted (so the
    // negative cases below fail for the reason they test).
    let ok = sign(
        Algorithm::HS256,
        Some("at+jwt"),
        Some(&kid),
        &claims(&|_| {}),
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/me", &ok, None).await.status(),
        StatusCode::OK
    );

    let ed_doc =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ed = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::EdDSA);
            h.typ = Some("at+jwt".into());
            h.kid = Some(kid.clone());
            h
        },
        &claims(&|_| {}),
        &EncodingKey::from_ed_der(ed_doc.as_ref()),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        b64(&claims(&|_| {}))
    );
    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        (
            "wrong alg HS384",
            sign(
                Algorithm::HS384,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|_| {}),
            ),
        ),
        ("wrong alg EdDSA", ed),
        (
            "missing aud",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
        ),
        (
            "missing iss",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
        ),
        (
            "missing exp",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "missing sub",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| c["aud"] = json!("other-api")),
            ),
        ),
        (
            "wrong iss",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| c["iss"] = json!("evil")),
            ),
        ),
        (
            "expired beyond leeway",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| c["exp"] = json!(now - 11)),
            ),
        ),
        (
            "string exp",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| c["exp"] = json!((now + 300).to_string())),
            ),
        ),
        (
            "future nbf",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some(&kid),
                &claims(&|c| c["nbf"] = json!(now + 600)),
            ),
        ),
        (
            "refresh typ",
            sign(
                Algorithm::HS256,
                Some("refresh+jwt"),
                Some(&kid),
                &claims(&|_| {}),
            ),
        ),
        (
            "no typ",
            sign(Algorithm::HS256, None, Some(&kid), &claims(&|_| {})),
        ),
        (
            "unknown kid",
            sign(
                Algorithm::HS256,
                Some("at+jwt"),
                Some("0011223344556677"),
                &claims(&|_| {}),
            ),
        ),
        (
            "no kid",
            sign(Algorithm::HS256, Some("at+jwt"), None, &claims(&|_| {})),
        ),
        (
            "refresh token as access",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
        (
            "tampered signature",
            format!("{}x", &good[..good.len() - 1]),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("huge", "a".repeat(5000)),
    ];
    for (name, token) in cases {
        let r = s.call(Method::GET, "/api/v1/me", &token, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(json(r).await["error"], "unauthorized", "{name}");
    }
    let r = s.client.get(s.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no header");
    s.stop().await;
}

#[tokio::test]
async fn web_hygiene_headers_cors_body_limit_openapi_health() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    s.add_user("erin", false).await;
    let token = s.login("erin").await;
    let csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";
    let responses = vec![
        s.client.get(s.url("/healthz")).send().await.unwrap(),
        s.client.get(s.url("/no/such/route")).send().await.unwrap(),
        s.call(Method::GET, "/api/v1/me", &token, None).await,
        s.call(Method::GET, "/api/v1/me", "bad", None).await,
        s.client
            .get(s.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    ];
    for r in responses {
        let h = r.headers();
        assert_eq!(h["content-security-policy"], csp, "{}", r.url());
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-request-id"].len(), 16);
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "CORS is off by default"
        );
    }
    let r = s.client.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json(r).await,
        json!({"error": "not_found", "message": "not found"})
    );
    // CORS preflight is not answered with CORS headers when CORS is off.
    let r = s
        .client
        .request(Method::OPTIONS, s.url("/api/v1/me"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // Body limit: 64 KiB + 1 is refused with 413.
    let big = json!({"username": "x".repeat(64 * 1024), "password": "y"});
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(r).await["error"], "payload_too_large");
    // Malformed JSON → 400 with a JSON error.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_request");
    // Health.
    assert_eq!(
        json(s.client.get(s.url("/readyz")).send().await.unwrap()).await["status"],
        "ok"
    );
    // OpenAPI lists every route.
    let doc = json(
        s.client
            .get(s.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/libraries",
        "/api/v1/media",
        "/api/v1/media/{id}",
        "/api/v1/media/{id}/stream-url",
        "/api/v1/media/{id}/stream",
        "/api/v1/media/{id}/subtitles/{sub_id}",
        "/api/v1/media/{id}/audience",
        "/api/v1/rooms",
        "/api/v1/rooms/{id}",
        "/api/v1/rooms/{id}/join",
        "/api/v1/rooms/{id}/leave",
        "/api/v1/rooms/{id}/end",
        "/api/v1/rooms/{id}/members",
        "/api/v1/rooms/{id}/members/{user_id}",
        "/api/v1/rooms/{id}/handoff",
        "/api/v1/invites",
        "/api/v1/invites/{room_id}/accept",
        "/api/v1/invites/{room_id}/decline",
        "/api/v1/admin/audit",
        "/api/v1/admin/audit/alerts",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    assert_eq!(
        paths.len(),
        28,
        "a route was added without updating this list: {:?}",
        paths.keys()
    );
    s.stop().await;

    // CORS allowlist: exact origins only, explicit methods.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await;
    let pre = |origin: &'static str| {
        let s = &s;
        async move {
            s.client
                .request(Method::OPTIONS, s.url("/api/v1/me"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
                .await
                .unwrap()
        }
    };
    let ok = pre("https://app.example").await;
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("PATCH") && !methods.contains('*'),
        "{methods}"
    );
    for evil in [
        "https://app.example.evil.com",
        "null",
        "https://evil.example",
    ] {
        assert!(
            !pre(evil)
                .await
                .headers()
                .contains_key("access-control-allow-origin"),
            "{evil}"
        );
    }
    s.stop().await;
}
