//! Cheap regression tests for items of the seed security checklists that no
//! other test covered directly (docs/security.md, "Security regression
//! table").

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use watchparty_signal::validate::INVISIBLE_CHARS_MESSAGE;

/// Injection strings (SQL, and the NoSQL operator objects of the seed
/// review) are plain data: they never match a user or a room, and the
/// answers are the ordinary generic ones.
#[tokio::test]
async fn injection_strings_are_plain_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    s.add_user("alice", false).await;
    let token = s.login("alice").await;

    for username in ["' OR '1'='1", "alice' --", "alice\" OR \"1\"=\"1"] {
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": "' OR '1'='1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{username}");
    }
    // A JSON object where a string belongs is a type error, not an operator.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": {"$ne": null}, "password": {"$gt": ""}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_ne!(r.status(), StatusCode::OK);

    for room in [
        "'%20OR%201=1--",
        "%7B%22$ne%22:null%7D",
        "00000000000000000000000000000000'%20OR%20'1'='1",
    ] {
        let r = s
            .call(Method::GET, &format!("/api/v1/rooms/{room}"), &token, None)
            .await;
        assert!(
            r.status() == StatusCode::NOT_FOUND || r.status() == StatusCode::BAD_REQUEST,
            "{room}: {}",
            r.status()
        );
    }
    s.stop().await;
}

/// Names that hide text-direction or invisible characters (visual spoofing,
/// "Trojan Source") are refused with a plain sentence, whether a display name
/// at registration or a room name.
#[tokio::test]
async fn names_with_invisible_or_direction_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |c| c.open_registration = true).await;
    s.add_user("alice", false).await;
    let token = s.login("alice").await;
    let expect_refused = |r: reqwest::Response, what: String| async move {
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{what}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(INVISIBLE_CHARS_MESSAGE),
            "{what}: {message}"
        );
    };
    for name in [
        "evil\u{202E}gnp.exe",
        "a\u{2066}b\u{2069}",
        "a\u{200F}b",
        "a\u{061C}b",
        "zero\u{200B}width",
        "\u{FEFF}bom",
    ] {
        let r = s
            .client
            .post(s.url("/api/v1/auth/register"))
            .json(
                &json!({"username": "mallory", "password": "correct horse", "display_name": name}),
            )
            .send()
            .await
            .unwrap();
        expect_refused(r, format!("register {name:?}")).await;
        let body = json!({"name": name, "media_id": 1});
        let r = s
            .call(Method::POST, "/api/v1/rooms", &token, Some(body))
            .await;
        expect_refused(r, format!("room {name:?}")).await;
    }
    s.stop().await;
}

/// The web app never turns text into markup: no `innerHTML`-style sink and
/// no `eval` in its scripts (user text only ever becomes text nodes, so the
/// seed review's "sanitize chat before display" is not needed).
#[test]
fn web_app_has_no_html_sinks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/js");
    let mut scanned = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "js") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function(",
            ] {
                assert!(
                    !code.contains(sink),
                    "{}:{}: {sink}: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        scanned += 1;
    }
    assert!(scanned >= 1, "no scripts found in {}", dir.display());
}

/// A wrong field whose value serde quotes in its message, with multibyte
/// characters where the message is cut (`MAX_JSON_ERROR_BYTES`), is a 400:
/// the cut once fell inside a character and the panic dropped the
/// connection without an answer (found by `openapi_fuzz.rs`).
#[tokio::test]
async fn a_long_multibyte_value_in_a_wrong_field_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), |_| {}).await;
    for pad in 0..3 {
        let value = "x".repeat(pad) + &"\u{800}".repeat(100);
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": "alice", "password": "whatever1", "refresh_cookie": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "pad {pad}");
        let body: Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.len() <= watchparty_signal::error::MAX_JSON_ERROR_BYTES,
            "{message}"
        );
    }
    s.stop().await;
}
