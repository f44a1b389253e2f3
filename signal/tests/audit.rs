//! The audit trail (issue #21) through the real API, over a real SQLite file:
//! a scripted session where every audited action leaves exactly one record
//! with the right actor, target and outcome; the admin endpoints (403 for
//! everyone else, filters, paging); no password, token, room password or
//! chat text anywhere in the table; retention and the record cap; the
//! alert threshold; the budget for records of unsigned requests.

mod common;
mod ws_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use watchparty_peer::signaling::ServerMessage;
use watchparty_signal::audit::config::{AlertPer, AlertRule};
use watchparty_signal::audit::store::{self, AuditRecord, Filter};
use watchparty_signal::audit::{Actor, AuditAction, AuditOutcome, Auditor, Entry, Target};
use watchparty_signal::db::now_secs;
use watchparty_signal::server::cleanup_once;

use common::*;
use ws_common::*;

const ROOM_PASSWORD: &str = "room-secret-pass-77";
const ROOM_PASSWORD_2: &str = "second-room-secret-88";
const WRONG_PASSWORD: &str = "wrong-guess-password-99";
const UNKNOWN_NAME: &str = "mallory-unknown";
const CHAT: &str = "chat-line-nobody-should-store";

/// Every record (the queue written first), oldest first.
async fn all(s: &Server) -> Vec<AuditRecord> {
    s.state.audit.flush(&s.state.db).await.unwrap();
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let filter = Filter {
            before,
            limit: store::MAX_PAGE,
            ..Filter::default()
        };
        let page = store::query(&s.state.db, &filter).await.unwrap();
        out.extend(page.records);
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    out
}

/// Reads the records written since the previous read.
struct Trail {
    last: i64,
}

impl Trail {
    async fn new(s: &Server) -> Trail {
        Trail {
            last: all(s).await.last().map_or(0, |r| r.id),
        }
    }

    async fn since(&mut self, s: &Server) -> Vec<AuditRecord> {
        let new: Vec<AuditRecord> = all(s)
            .await
            .into_iter()
            .filter(|r| r.id > self.last)
            .collect();
        if let Some(r) = new.last() {
            self.last = r.id;
        }
        new
    }

    /// Exactly one new record, of `action`, by `actor` (a user id; `None`:
    /// not a user), on `target`, with `outcome`.
    async fn one(
        &mut self,
        s: &Server,
        action: &str,
        actor: Option<i64>,
        target: Option<(&str, &str)>,
        outcome: &str,
    ) -> AuditRecord {
        let new = self.since(s).await;
        assert_eq!(new.len(), 1, "{action}: {new:#?}");
        let r = new.into_iter().next().unwrap();
        check(&r, action, actor, target, outcome);
        r
    }
}

fn check(
    r: &AuditRecord,
    action: &str,
    actor: Option<i64>,
    target: Option<(&str, &str)>,
    outcome: &str,
) {
    assert_eq!(r.action, action, "{r:#?}");
    assert_eq!(r.actor_user_id, actor, "{r:#?}");
    assert_eq!(
        (r.target_kind.as_deref(), r.target_id.as_deref()),
        target.map_or((None, None), |(k, id)| (Some(k), Some(id))),
        "{r:#?}"
    );
    assert_eq!(r.outcome, outcome, "{r:#?}");
}

async fn login_raw(s: &Server, name: &str, password: &str) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn admin_get(s: &Server, token: &str, query: &str) -> reqwest::Response {
    s.call(
        Method::GET,
        &format!("/api/v1/admin/audit{query}"),
        token,
        None,
    )
    .await
}

#[tokio::test]
async fn every_action_leaves_exactly_one_record_and_no_secret() {
    let w = world_with(&["bob", "carol", "dave"], |c| {
        c.signaling.revalidate_ms = 100;
        c.open_registration = true;
    })
    .await;
    let s = &w.s;
    let room1 = w.room.clone();
    let (host, bob, carol, dave) = (w.id("host"), w.id("bob"), w.id("carol"), w.id("dave"));
    let (bob_s, carol_s) = (bob.to_string(), carol.to_string());
    // What the world set up: room 1 with three invitations, all accepted.
    let setup = all(s).await;
    let count = |action: &str| setup.iter().filter(|r| r.action == action).count();
    assert_eq!(count("room_created"), 1);
    assert_eq!((count("room_invited"), count("room_joined")), (3, 3));
    let created = setup.iter().find(|r| r.action == "room_created").unwrap();
    check(
        created,
        "room_created",
        Some(host),
        Some(("room", &room1)),
        "success",
    );
    let mut secrets: Vec<String> = [
        PASSWORD,
        ROOM_PASSWORD,
        ROOM_PASSWORD_2,
        WRONG_PASSWORD,
        UNKNOWN_NAME,
        CHAT,
    ]
    .map(str::to_owned)
    .to_vec();
    let mut t = Trail::new(s).await;

    // Logins: success (with address and request id), unknown name, wrong
    // passwords, then the account's throttle.
    let root = s.add_user("root", true).await;
    let root_full = s.login_full("root").await;
    let root_t = root_full["access_token"].as_str().unwrap().to_owned();
    secrets.push(root_t.clone());
    secrets.push(root_full["refresh_token"].as_str().unwrap().to_owned());
    let r = t.one(s, "login", Some(root), None, "success").await;
    assert_eq!(r.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(r.request_id.as_ref().map(String::len), Some(16));
    assert_eq!(r.actor_kind, "user");
    let r = login_raw(s, UNKNOWN_NAME, WRONG_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t.one(s, "login", None, None, "failure").await;
    assert_eq!(r.actor_kind, "anonymous");
    let hash = r.actor_name_hash.clone().unwrap();
    assert_eq!(hash.len(), 32);
    for _ in 0..4 {
        let r = login_raw(s, "dave", WRONG_PASSWORD).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        t.one(s, "login", Some(dave), None, "failure").await;
    }
    let r = login_raw(s, "dave", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    t.one(s, "login", Some(dave), None, "throttled").await;

    // Refresh: rotation is not audited; reuse is.
    let full = s.login_full("carol").await;
    t.one(s, "login", Some(carol), None, "success").await;
    let first = full["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(first.clone());
    secrets.push(full["access_token"].as_str().unwrap().to_owned());
    let refresh = |token: String| {
        s.client
            .post(s.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": token}))
            .send()
    };
    let r = refresh(first.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    secrets.push(json(r).await["refresh_token"].as_str().unwrap().to_owned());
    assert!(t.since(s).await.is_empty());
    let r = refresh(first).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.one(
        s,
        "refresh_reuse",
        Some(carol),
        Some(("user", &carol_s)),
        "failure",
    )
    .await;

    // Logout.
    let bob_t = s.login("bob").await;
    secrets.push(bob_t.clone());
    t.one(s, "login", Some(bob), None, "success").await;
    let r = s
        .call(Method::POST, "/api/v1/auth/logout", &bob_t, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.one(s, "logout", Some(bob), Some(("user", &bob_s)), "success")
        .await;

    // Registration.
    let r = s
        .client
        .post(s.url("/api/v1/auth/register"))
        .json(&json!({"username": "erin", "password": PASSWORD, "display_name": "Erin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let erin = json(r).await["id"].as_i64().unwrap();
    let erin_s = erin.to_string();
    t.one(
        s,
        "user_created",
        Some(erin),
        Some(("user", &erin_s)),
        "success",
    )
    .await;
    let lib: i64 = sqlx::query_scalar("SELECT id FROM libraries")
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    s.grant(erin, lib).await;

    // Room 2: created with a password and one invitation.
    let host_t = s.login("host").await;
    secrets.push(host_t.clone());
    t.one(s, "login", Some(host), None, "success").await;
    let r = s
        .call(
            Method::POST,
            "/api/v1/rooms",
            &host_t,
            Some(json!({"name": "Second", "media_id": w.movie, "invite_only": false,
                        "password": ROOM_PASSWORD, "invites": [{"username": "carol", "role": "viewer"}]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let room2 = json(r).await["id"].as_str().unwrap().to_owned();
    let new = t.since(s).await;
    assert_eq!(new.len(), 2, "{new:#?}");
    check(
        &new[0],
        "room_created",
        Some(host),
        Some(("room", &room2)),
        "success",
    );
    check(
        &new[1],
        "room_invited",
        Some(host),
        Some(("user", &carol_s)),
        "success",
    );
    assert_eq!(new[1].room_id.as_deref(), Some(room2.as_str()));
    assert_eq!(new[1].detail.as_deref(), Some("viewer"));

    // Joining with a wrong room password, then the right one.
    let erin_t = s.login("erin").await;
    secrets.push(erin_t.clone());
    t.one(s, "login", Some(erin), None, "success").await;
    let join_path = format!("/api/v1/rooms/{room2}/join");
    let join = |password: &str| {
        s.call(
            Method::POST,
            &join_path,
            &erin_t,
            Some(json!({"password": password})),
        )
    };
    assert_eq!(join(WRONG_PASSWORD).await.status(), StatusCode::FORBIDDEN);
    t.one(
        s,
        "room_joined",
        Some(erin),
        Some(("room", &room2)),
        "failure",
    )
    .await;
    assert_eq!(join(ROOM_PASSWORD).await.status(), StatusCode::OK);
    t.one(
        s,
        "room_joined",
        Some(erin),
        Some(("room", &room2)),
        "success",
    )
    .await;

    // Declining.
    let carol_t = s.login("carol").await;
    secrets.push(carol_t.clone());
    t.one(s, "login", Some(carol), None, "success").await;
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/invites/{room2}/decline"),
            &carol_t,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.one(
        s,
        "room_declined",
        Some(carol),
        Some(("room", &room2)),
        "success",
    )
    .await;

    // Host changes: role, invite-only, password (removed, set), a rename
    // (not audited), an invitation.
    let host_call = |method: Method, path: String, body: Option<Value>| {
        let token = host_t.clone();
        async move { s.call(method, &path, &token, body).await }
    };
    let r = host_call(
        Method::PATCH,
        format!("/api/v1/rooms/{room2}/members/{erin}"),
        Some(json!({"role": "controller"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .one(
            s,
            "room_role_changed",
            Some(host),
            Some(("user", &erin_s)),
            "success",
        )
        .await;
    assert_eq!(
        (r.room_id.as_deref(), r.detail.as_deref()),
        (Some(room2.as_str()), Some("controller"))
    );
    let patch =
        |body: Value| host_call(Method::PATCH, format!("/api/v1/rooms/{room2}"), Some(body));
    assert_eq!(
        patch(json!({"invite_only": true})).await.status(),
        StatusCode::OK
    );
    let r = t
        .one(
            s,
            "room_invite_only_changed",
            Some(host),
            Some(("room", &room2)),
            "success",
        )
        .await;
    assert_eq!(r.detail.as_deref(), Some("on"));
    assert_eq!(
        patch(json!({"password": ""})).await.status(),
        StatusCode::OK
    );
    let r = t
        .one(
            s,
            "room_password_changed",
            Some(host),
            Some(("room", &room2)),
            "success",
        )
        .await;
    assert_eq!(r.detail.as_deref(), Some("removed"));
    assert_eq!(
        patch(json!({"password": ROOM_PASSWORD_2, "name": "Renamed"}))
            .await
            .status(),
        StatusCode::OK
    );
    let r = t
        .one(
            s,
            "room_password_changed",
            Some(host),
            Some(("room", &room2)),
            "success",
        )
        .await;
    assert_eq!(r.detail.as_deref(), Some("set"));
    assert_eq!(
        patch(json!({"name": "Again"})).await.status(),
        StatusCode::OK
    );
    assert!(t.since(s).await.is_empty(), "a rename is not audited");
    let r = host_call(
        Method::POST,
        format!("/api/v1/rooms/{room2}/members"),
        Some(json!({"username": "carol", "role": "viewer"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    t.one(
        s,
        "room_invited",
        Some(host),
        Some(("user", &carol_s)),
        "success",
    )
    .await;

    // Handoff, then the new host withdraws the invitation, the old host
    // leaves, the new host ends the room.
    let r = host_call(
        Method::POST,
        format!("/api/v1/rooms/{room2}/handoff"),
        Some(json!({"user_id": erin})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    t.one(
        s,
        "room_handoff",
        Some(host),
        Some(("user", &erin_s)),
        "success",
    )
    .await;
    let r = s
        .call(
            Method::DELETE,
            &format!("/api/v1/rooms/{room2}/members/{carol}"),
            &erin_t,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t
        .one(
            s,
            "room_kicked",
            Some(erin),
            Some(("user", &carol_s)),
            "success",
        )
        .await;
    assert_eq!(r.detail.as_deref(), Some("invited"));
    let r = host_call(Method::POST, format!("/api/v1/rooms/{room2}/leave"), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.one(
        s,
        "room_left",
        Some(host),
        Some(("room", &room2)),
        "success",
    )
    .await;
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/rooms/{room2}/end"),
            &erin_t,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    t.one(
        s,
        "room_ended",
        Some(erin),
        Some(("room", &room2)),
        "success",
    )
    .await;

    // Signaling: chat-like text relayed in an offer is never recorded; a
    // member whose account goes away has the socket closed, recorded once.
    let (mut host_ws, _, token) = w.join("host", 1).await;
    secrets.push(token);
    let (mut bob_ws, _, token) = w.join("bob", 2).await;
    secrets.push(token);
    assert_eq!(t.since(s).await.len(), 2, "two logins");
    send(
        &mut host_ws,
        json!({"type": "offer", "to": bob, "sdp": format!("v=0\r\n{CHAT}")}),
    )
    .await;
    loop {
        if let ServerMessage::Offer { sdp, .. } = recv(&mut bob_ws).await {
            assert!(sdp.as_str().contains(CHAT));
            break;
        }
    }
    sqlx::query("UPDATE users SET disabled = 1 WHERE id = ?1")
        .bind(bob)
        .execute(&s.state.db)
        .await
        .unwrap();
    assert_eq!(close_code(&mut bob_ws).await, Some(1008));
    let r = t
        .one(s, "signal_revoked", None, Some(("user", &bob_s)), "success")
        .await;
    assert_eq!(
        (r.actor_kind.as_str(), r.room_id.as_deref()),
        ("system", Some(room1.as_str()))
    );
    host_ws.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state.hub.is_online(&room1, host) {
        assert!(Instant::now() < deadline, "host socket still registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cleanup: room 1 idle (ended), room 2 long ended (deleted).
    sqlx::query("UPDATE rooms SET last_activity_at = 0 WHERE id = ?1")
        .bind(&room1)
        .execute(&s.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE rooms SET ended_at = 1 WHERE id = ?1")
        .bind(&room2)
        .execute(&s.state.db)
        .await
        .unwrap();
    cleanup_once(&s.state).await.unwrap();
    let new = t.since(s).await;
    assert_eq!(new.len(), 2, "{new:#?}");
    check(
        &new[0],
        "room_cleaned_up",
        None,
        Some(("room", &room1)),
        "success",
    );
    check(
        &new[1],
        "room_cleaned_up",
        None,
        Some(("room", &room2)),
        "success",
    );
    assert_eq!(
        (new[0].detail.as_deref(), new[1].detail.as_deref()),
        (Some("ended_idle"), Some("deleted"))
    );

    // The admin endpoints: administrators only.
    for path in ["/api/v1/admin/audit", "/api/v1/admin/audit/alerts"] {
        let r = s.call(Method::GET, path, &carol_t, None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(json(r).await["error"], "forbidden");
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = s.call(Method::GET, path, &root_t, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // Pages of 7 cross the whole trail once, newest first.
    let everything = all(s).await;
    let mut ids = Vec::new();
    let mut query = "?limit=7".to_owned();
    loop {
        let page = json(admin_get(s, &root_t, &query).await).await;
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 7);
        ids.extend(records.iter().map(|r| r["id"].as_i64().unwrap()));
        match page["next_before"].as_i64() {
            Some(b) => query = format!("?limit=7&before={b}"),
            None => break,
        }
    }
    let expected: Vec<i64> = everything.iter().rev().map(|r| r.id).collect();
    assert_eq!(ids, expected);
    // Filters: a user's records (actor or target), a room's, an action's,
    // a name nobody has (its failed login).
    let page = json(admin_get(s, &root_t, "?user=erin&limit=500").await).await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(
        records.len(),
        everything
            .iter()
            .filter(|r| r.actor_user_id == Some(erin)
                || (r.target_kind.as_deref() == Some("user")
                    && r.target_id.as_deref() == Some(&erin_s)))
            .count()
    );
    let page =
        json(admin_get(s, &root_t, &format!("?room={room2}&action=room_joined")).await).await;
    let outcomes: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "failure"]);
    let page = json(admin_get(s, &root_t, &format!("?user={UNKNOWN_NAME}")).await).await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["actor_name_hash"], hash);
    let since = now_secs() + 3600;
    let page = json(admin_get(s, &root_t, &format!("?since={since}")).await).await;
    assert!(page["records"].as_array().unwrap().is_empty());
    for bad in [
        "?limit=0",
        "?limit=501",
        "?room=xyz",
        "?user=Bad%20Name",
        "?action=nope",
        "?since=-1",
    ] {
        let r = admin_get(s, &root_t, bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // No secret anywhere in the table (every column of every row).
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('audit_log')")
            .fetch_all(&s.state.db)
            .await
            .unwrap();
    assert_eq!(
        columns.len(),
        14,
        "AuditRecord reads every column: {columns:?}"
    );
    let dump = serde_json::to_string(&all(s).await).unwrap();
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "{secret} is in the audit table"
        );
    }
    w.s.stop().await;
}

#[tokio::test]
async fn alerts_budget_retention_and_record_cap() {
    let capture = LogCapture::install("watchparty_signal=warn");
    let dir = tempfile::tempdir().unwrap();
    let rule = AlertRule {
        action: AuditAction::Login,
        outcome: Some(AuditOutcome::Failure),
        per: AlertPer::Ip,
        window_secs: 600,
        threshold: 3,
    };
    let mut config = test_config(&dir.path().join("data"));
    config.audit.alerts = vec![rule];
    config.audit.max_records = 1000;
    let mut state = watchparty_signal::AppState::new(config).await.unwrap();
    // A budget of 4 records for unsigned requests.
    let audit = Arc::new(Auditor::with_budget(
        &state.keys.audit,
        &state.config.audit,
        4,
        Duration::from_secs(3600),
    ));
    audit.spawn_writer(state.db.clone());
    state.audit = audit;
    let s = Server::start_with_state(state).await;
    s.add_user("root", true).await;
    let root_t = s.login("root").await;
    let alerts = || async {
        let r = s
            .call(Method::GET, "/api/v1/admin/audit/alerts", &root_t, None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        json(r).await.as_array().unwrap().clone()
    };
    for i in 0..2 {
        let r = login_raw(&s, &format!("nobody{i}"), WRONG_PASSWORD).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(alerts().await.is_empty(), "below the threshold");
    assert!(!capture.text().contains("audit alert"));
    let r = login_raw(&s, "nobody2", WRONG_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let raised = alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["key"], "127.0.0.1");
    assert_eq!(
        (raised[0]["count"].as_u64(), raised[0]["threshold"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(raised[0]["action"], "login");
    let log = capture.text();
    assert!(
        log.contains("audit alert") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains(WRONG_PASSWORD));

    // The budget: 4 records of failed logins written, the 5th and 6th
    // counted and noted by the cleanup pass.
    for i in 3..6 {
        login_raw(&s, &format!("nobody{i}"), WRONG_PASSWORD).await;
    }
    let failed = |records: &[AuditRecord]| {
        records
            .iter()
            .filter(|r| r.action == "login" && r.outcome == "failure")
            .count()
    };
    assert_eq!(failed(&all(&s).await), 4);
    assert_eq!(
        alerts().await[0]["count"].as_u64(),
        Some(6),
        "alerts count every event"
    );
    cleanup_once(&s.state).await.unwrap();
    let records = all(&s).await;
    let note = records
        .iter()
        .find(|r| r.action == "audit_suppressed")
        .unwrap();
    assert_eq!(note.detail.as_deref(), Some("2 records"));
    assert_eq!(note.actor_kind, "system");

    // Retention (90 days by default) and the cap (1000 here).
    let now = now_secs();
    let old = Entry::ok(Actor::System, AuditAction::RoomCleanedUp).target(Target::Library(1));
    store::insert(&s.state.db, &old, now - 91 * 86_400)
        .await
        .unwrap();
    store::insert(&s.state.db, &old, now - 89 * 86_400)
        .await
        .unwrap();
    cleanup_once(&s.state).await.unwrap();
    let kept: Vec<i64> = all(&s)
        .await
        .iter()
        .filter(|r| r.target_kind.as_deref() == Some("library"))
        .map(|r| r.at)
        .collect();
    assert_eq!(kept, [now - 89 * 86_400]);
    let mut tx = s.state.db.begin().await.unwrap();
    for _ in 0..1005 {
        store::insert(&mut *tx, &old, now).await.unwrap();
    }
    tx.commit().await.unwrap();
    cleanup_once(&s.state).await.unwrap();
    assert_eq!(all(&s).await.len(), 1000);
    s.stop().await;
}
