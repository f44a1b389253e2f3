//! The web app's Activity page (issue #21), in headless Chromium against the
//! real server: only administrators see the link and the page; it lists the
//! audit trail in plain words (who signed in, a refused sign-in), filters it
//! by username, and shows a raised alert.

mod browser;

use browser::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_read_the_activity_page() {
    if !browser_available() {
        return;
    }
    let site = Site::start(&["alice", "root"]).await;
    sqlx::query("UPDATE users SET is_admin = 1 WHERE username = 'root'")
        .execute(&site.state.db)
        .await
        .unwrap();
    let alice_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(&site.state.db)
        .await
        .unwrap();
    // A refused sign-in, through the API (as any client would).
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(site.url("/api/v1/auth/login"))
        .json(&json!({"username": "alice", "password": "not-her-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Alice is no administrator: no link, and the address shows her media.
    let alice = Browser::start("alice").await;
    sign_in(&alice, &site, "alice").await;
    let hidden = alice
        .exec(
            "return document.getElementById('nav-activity').hidden",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!(true));
    alice.goto(&site.url("/activity")).await;
    alice
        .wait_until(
            "the media page instead",
            "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Your media'",
            PAGE_WAIT,
        )
        .await;
    assert!(
        alice
            .exec(
                "return document.getElementById('activity-rows') === null",
                json!([])
            )
            .await
            == json!(true)
    );
    alice.close().await;

    let root = Browser::start("root").await;
    sign_in(&root, &site, "root").await;
    click(&root, "#nav-activity").await;
    let rows = root
        .wait_until(
            "the activity rows",
            "const b = document.getElementById('activity-rows'); \
             return b && b.rows.length >= 3 && Array.from(b.rows).map(r => Array.from(r.cells).map(c => c.textContent).join('|'))",
            PAGE_WAIT,
        )
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    let alice_who = format!("user #{alice_id}");
    assert!(
        rows.iter()
            .any(|r| r.contains("Sign-in") && r.contains(&alice_who) && r.contains("refused")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("Sign-in") && r.contains(&alice_who) && r.contains("|done|")),
        "{rows:?}"
    );
    let text = root.body_text().await;
    assert!(text.contains("No alerts right now."), "{text}");
    for internal in ["user_created", "success", "failure", "throttled"] {
        assert!(
            !text.contains(internal),
            "plain words only, not {internal}: {text}"
        );
    }

    // Filter by a username: only that account's rows.
    let user = root.find("#activity-user").await;
    root.type_into(&user, "root").await;
    root.exec(
        "document.getElementById('activity-filter').requestSubmit()",
        json!([]),
    )
    .await;
    let rows = root
        .wait_until(
            "only root's rows",
            &format!(
                "const b = document.getElementById('activity-rows'); \
                 const who = Array.from(b.rows).map(r => r.cells[1].textContent); \
                 return who.length >= 1 && who.every(w => w !== '{alice_who}') && who"
            ),
            PAGE_WAIT,
        )
        .await;
    assert!(!rows.as_array().unwrap().is_empty());
    root.close().await;
}
