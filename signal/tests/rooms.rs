//! Rooms: the authorization matrix, seats, passwords, persistence, cleanup.

mod common;

use std::collections::HashMap;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use watchparty_signal::throttle::{ROOM_FREE_FAILURES, ROOM_IP_FREE_FAILURES};

const ACTORS: [&str; 6] = [
    "host",
    "controller",
    "viewer",
    "invited",
    "outsider",
    "admin",
];

struct World {
    s: Server,
    _dir: tempfile::TempDir,
    tokens: HashMap<&'static str, String>,
    ids: HashMap<&'static str, i64>,
    movie: i64,
    song: i64,
}

/// Users: host, controller, viewer, invited (not joined), outsider, admin
/// (not a member), target (a joined viewer that member routes act on), extra.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let s = Server::start_relaxed(&dir.path().join("data")).await;
    let lib = s.add_library("films", &lib_dir).await;
    let mut tokens = HashMap::new();
    let mut ids = HashMap::new();
    for name in [
        "host",
        "controller",
        "viewer",
        "invited",
        "outsider",
        "admin",
        "target",
        "extra",
    ] {
        let id = s.add_user(name, name == "admin").await;
        if name != "admin" {
            s.grant(id, lib).await;
        }
        ids.insert(name, id);
        tokens.insert(name, s.login(name).await);
    }
    let movie = s.item_id("films/movie.mp4").await;
    let song = s.item_id("song.mp3").await;
    World {
        s,
        _dir: dir,
        tokens,
        ids,
        movie,
        song,
    }
}

impl World {
    fn tok(&self, who: &str) -> &str {
        &self.tokens[who]
    }

    async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.s.call(method, path, self.tok(who), body).await
    }

    /// A fresh invite-only room: controller, viewer and target joined; invited pending.
    async fn room(&self) -> String {
        let r = self
            .call(
                "host",
                Method::POST,
                "/api/v1/rooms",
                Some(json!({
                    "name": "Movie night",
                    "media_id": self.movie,
                    "invites": [
                        {"username": "controller", "role": "controller"},
                        {"username": "viewer", "role": "viewer"},
                        {"username": "invited", "role": "viewer"},
                        {"username": "target", "role": "viewer"},
                    ],
                })),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let id = json(r).await["id"].as_str().unwrap().to_owned();
        for who in ["controller", "viewer", "target"] {
            let r = self
                .call(
                    who,
                    Method::POST,
                    &format!("/api/v1/invites/{id}/accept"),
                    None,
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{who} accepts");
        }
        id
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let w = world().await;
    let target = w.ids["target"];
    // (name, method, path template, body, expected status per actor in ACTORS order)
    type Row = (&'static str, Method, &'static str, Option<Value>, [u16; 6]);
    let rows: Vec<Row> = vec![
        (
            "get",
            Method::GET,
            "/api/v1/rooms/{id}",
            None,
            [200, 200, 200, 200, 404, 404],
        ),
        (
            "join",
            Method::POST,
            "/api/v1/rooms/{id}/join",
            None,
            [200, 200, 200, 200, 404, 404],
        ),
        (
            "leave",
            Method::POST,
            "/api/v1/rooms/{id}/leave",
            None,
            [409, 204, 204, 409, 404, 404],
        ),
        (
            "end",
            Method::POST,
            "/api/v1/rooms/{id}/end",
            None,
            [204, 403, 403, 403, 404, 404],
        ),
        (
            "patch",
            Method::PATCH,
            "/api/v1/rooms/{id}",
            Some(json!({"name": "Renamed"})),
            [200, 403, 403, 403, 404, 404],
        ),
        (
            "patch media",
            Method::PATCH,
            "/api/v1/rooms/{id}",
            Some(json!({"media_id": w.song, "queue": [w.song, w.movie]})),
            [200, 403, 403, 403, 404, 404],
        ),
        (
            "invite",
            Method::POST,
            "/api/v1/rooms/{id}/members",
            Some(json!({"username": "extra", "role": "viewer"})),
            [201, 403, 403, 403, 404, 404],
        ),
        (
            "role",
            Method::PATCH,
            "/api/v1/rooms/{id}/members/{target}",
            Some(json!({"role": "controller"})),
            [200, 403, 403, 403, 404, 404],
        ),
        (
            "kick",
            Method::DELETE,
            "/api/v1/rooms/{id}/members/{target}",
            None,
            [204, 403, 403, 403, 404, 404],
        ),
        (
            "handoff",
            Method::POST,
            "/api/v1/rooms/{id}/handoff",
            Some(json!({"user_id": target})),
            [200, 403, 403, 403, 404, 404],
        ),
        (
            "accept",
            Method::POST,
            "/api/v1/invites/{id}/accept",
            None,
            [409, 409, 409, 200, 404, 404],
        ),
        (
            "decline",
            Method::POST,
            "/api/v1/invites/{id}/decline",
            None,
            [409, 409, 409, 204, 404, 404],
        ),
    ];
    let mut cells = 0;
    for (name, method, template, body, expected) in &rows {
        for (actor, want) in ACTORS.iter().zip(expected) {
            let id = w.room().await;
            let path = template
                .replace("{id}", &id)
                .replace("{target}", &target.to_string());
            let r = w.call(actor, method.clone(), &path, body.clone()).await;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(status, *want, "{name} as {actor}: {text}");
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(v["error"].is_string() && v["message"].is_string());
            }
            cells += 1;
            // End the room so the host stays under the open-room cap (ignore 410).
            let host_now = if *name == "handoff" && *actor == "host" {
                "target"
            } else {
                "host"
            };
            w.call(
                host_now,
                Method::POST,
                &format!("/api/v1/rooms/{id}/end"),
                None,
            )
            .await;
        }
    }
    assert_eq!(cells, rows.len() * ACTORS.len());

    // Listings: rooms lists joined rooms; invites lists pending invitations.
    let id = w.room().await;
    for actor in ACTORS {
        let rooms = json(w.call(actor, Method::GET, "/api/v1/rooms", None).await).await;
        let listed = rooms
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str());
        assert_eq!(
            listed,
            ["host", "controller", "viewer"].contains(&actor),
            "rooms list as {actor}"
        );
        let invites = json(w.call(actor, Method::GET, "/api/v1/invites", None).await).await;
        let invited = invites
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == id.as_str());
        assert_eq!(invited, actor == "invited", "invites list as {actor}");
    }
    // Unauthenticated: 401 on every room route.
    for (_, method, template, body, _) in &rows {
        let path = template
            .replace("{id}", &id)
            .replace("{target}", &target.to_string());
        let mut req = w.s.client.request(method.clone(), w.s.url(&path));
        if let Some(b) = body {
            req = req.json(b);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
}

#[tokio::test]
async fn ended_rooms_accept_nothing() {
    let w = world().await;
    let id = w.room().await;
    assert_eq!(
        w.call(
            "host",
            Method::POST,
            &format!("/api/v1/rooms/{id}/end"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let target = w.ids["target"];
    let cases = [
        (
            "host",
            Method::PATCH,
            format!("/api/v1/rooms/{id}"),
            Some(json!({"name": "x y"})),
        ),
        (
            "host",
            Method::POST,
            format!("/api/v1/rooms/{id}/end"),
            None,
        ),
        (
            "host",
            Method::POST,
            format!("/api/v1/rooms/{id}/members"),
            Some(json!({"username": "extra", "role": "viewer"})),
        ),
        (
            "host",
            Method::DELETE,
            format!("/api/v1/rooms/{id}/members/{target}"),
            None,
        ),
        (
            "host",
            Method::POST,
            format!("/api/v1/rooms/{id}/handoff"),
            Some(json!({"user_id": target})),
        ),
        (
            "viewer",
            Method::POST,
            format!("/api/v1/rooms/{id}/join"),
            None,
        ),
        (
            "invited",
            Method::POST,
            format!("/api/v1/invites/{id}/accept"),
            None,
        ),
        (
            "invited",
            Method::POST,
            format!("/api/v1/rooms/{id}/join"),
            None,
        ),
    ];
    for (who, method, path, body) in cases {
        let r = w.call(who, method, &path, body).await;
        assert_eq!(r.status(), StatusCode::GONE, "{who} {path}");
        assert_eq!(json(r).await["error"], "room_ended");
    }
    let room = json(
        w.call("viewer", Method::GET, &format!("/api/v1/rooms/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(room["status"], "ended");
    // Ended rooms leave the invitation inbox.
    let inv = json(
        w.call("invited", Method::GET, "/api/v1/invites", None)
            .await,
    )
    .await;
    assert_eq!(inv, json!([]));
}

#[tokio::test]
async fn create_validation_and_media_intersection() {
    let w = world().await;
    let post =
        |who: &'static str, body: Value| w.call(who, Method::POST, "/api/v1/rooms", Some(body));
    // An invitee without access to the media → 403 naming nobody.
    w.s.add_user("lonely", false).await;
    let r = post("host", json!({"name": "n", "media_id": w.movie, "invites": [{"username": "lonely", "role": "viewer"}]})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let msg = json(r).await["message"].as_str().unwrap().to_owned();
    assert!(!msg.contains("lonely") && !msg.contains("films"), "{msg}");
    // Admin invitees count as having everything.
    let r = post("host", json!({"name": "n", "media_id": w.movie, "invites": [{"username": "admin", "role": "viewer"}]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A host without access cannot use the item at all.
    let t = w.s.login("lonely").await;
    let r =
        w.s.call(
            Method::POST,
            "/api/v1/rooms",
            &t,
            Some(json!({"name": "n", "media_id": w.movie})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Validation.
    for (bad, why) in [
        (json!({"name": "", "media_id": w.movie}), "empty name"),
        (
            json!({"name": "<b>", "media_id": w.movie}),
            "markup in name",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "max_members": 17}),
            "above server max",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "max_members": 1}),
            "below 2",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "password": "short"}),
            "short password",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "invites": [{"username": "viewer", "role": "viewer"}, {"username": "viewer", "role": "controller"}]}),
            "duplicate",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "invites": [{"username": "host", "role": "viewer"}]}),
            "self invite",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "invites": [{"username": "ghost", "role": "viewer"}]}),
            "unknown user",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "invites": [{"username": "viewer", "role": "host"}]}),
            "host role",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "max_members": 2, "invites": [{"username": "viewer", "role": "viewer"}, {"username": "invited", "role": "viewer"}]}),
            "more invites than seats",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "policy": {"buffer_wait_ms": 120001}}),
            "policy bound",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "host_public_key": "AAAA"}),
            "short host key",
        ),
        (
            json!({"name": "n", "media_id": w.movie, "surprise": 1}),
            "unknown field",
        ),
    ] {
        let r = post("host", bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
    }
    // Policy and host key round-trip.
    let key = "A".repeat(43);
    let r = post("host", json!({"name": "n", "media_id": w.movie, "policy": {"viewers_can_chat": false, "controllers": {"load": true}}, "host_public_key": key})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json(r).await;
    assert_eq!(v["policy"]["viewers_can_chat"], false);
    assert_eq!(v["policy"]["controllers"]["load"], true);
    assert_eq!(v["policy"]["controllers"]["play"], true);
    assert_eq!(v["host_public_key"], key.as_str());
    assert_eq!(v["epoch"], 0);
    assert_eq!(v["id"].as_str().unwrap().len(), 32);
    // PATCH to media an invitee cannot see → 403.
    let id = w.room().await;
    // Give only the host, controller, viewer, target access to a second library; invited lacks it.
    let dir2 = w._dir.path().join("lib2");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(dir2.join("extra.mp4"), mp4_bytes(500)).unwrap();
    let lib2 = w.s.add_library("second", &dir2).await;
    for who in ["host", "controller", "viewer", "target"] {
        w.s.grant(w.ids[who], lib2).await;
    }
    let extra = w.s.item_id("extra.mp4").await;
    let r = w
        .call(
            "host",
            Method::PATCH,
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"media_id": extra})),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "pending invitee lacks access"
    );
    w.call(
        "invited",
        Method::POST,
        &format!("/api/v1/invites/{id}/decline"),
        None,
    )
    .await;
    let r = w
        .call(
            "host",
            Method::PATCH,
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"media_id": extra, "queue": [extra, w.movie]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let queue: Vec<i64> = json(r).await["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(queue, vec![extra, w.movie]);
    // Inviting someone without access to the current media → 403.
    let r = w
        .call(
            "host",
            Method::POST,
            &format!("/api/v1/rooms/{id}/members"),
            Some(json!({"username": "extra", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Queue length limit.
    let long: Vec<i64> = vec![w.movie; 101];
    let r = w
        .call(
            "host",
            Method::PATCH,
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"queue": long})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn open_rooms_passwords_and_throttles() {
    let w = world().await;
    let r = w
        .call("host", Method::POST, "/api/v1/rooms", Some(json!({"name": "Open", "media_id": w.movie, "invite_only": false, "password": "room-secret-1"})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = json(r).await;
    assert_eq!(v["has_password"], true);
    assert!(v.get("password_hash").is_none());
    let id = v["id"].as_str().unwrap().to_owned();
    let join = |who: &'static str, pw: Option<&'static str>| {
        let body = pw.map(|p| json!({"password": p}));
        let path = format!("/api/v1/rooms/{id}/join");
        let w = &w;
        async move { w.call(who, Method::POST, &path, body).await.status() }
    };
    // Not invited, open room: needs the password.
    assert_eq!(join("outsider", None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        join("outsider", Some("wrong-pass")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        join("outsider", Some("room-secret-1")).await,
        StatusCode::OK
    );
    // Admin outsider gets in the same way (no special powers, but media access).
    assert_eq!(join("admin", Some("room-secret-1")).await, StatusCode::OK);
    // Per-(room, IP) throttle: ROOM_IP_FREE_FAILURES free wrong guesses, the next one
    // locks, then even the right password gets 429.
    for _ in 0..=ROOM_IP_FREE_FAILURES {
        assert_eq!(
            join("viewer", Some("wrong-pass")).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        join("viewer", Some("room-secret-1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Per-room throttle across IPs: drive the room counter past ROOM_FREE_FAILURES directly.
    let room_key = id.clone();
    for _ in 0..=ROOM_FREE_FAILURES {
        w.s.state
            .limits
            .room_password
            .fail(&room_key, std::time::Instant::now());
    }
    assert_eq!(
        join("controller", Some("room-secret-1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Kicked users cannot come back by themselves.
    let outsider = w.ids["outsider"];
    assert_eq!(
        w.call(
            "host",
            Method::DELETE,
            &format!("/api/v1/rooms/{id}/members/{outsider}"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        join("outsider", Some("room-secret-1")).await,
        StatusCode::FORBIDDEN
    );
    // Removing the password (host) lets the next user in without one.
    let r = w
        .call(
            "host",
            Method::PATCH,
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"password": ""})),
        )
        .await;
    assert_eq!(json(r).await["has_password"], false);
    assert_eq!(join("extra", None).await, StatusCode::OK);
}

#[tokio::test]
async fn seats_are_limited_and_the_last_seat_goes_to_exactly_one() {
    let w = world().await;
    // max_members 3: host + one invited joiner + one open-room joiner; then full.
    let r = w
        .call("host", Method::POST, "/api/v1/rooms", Some(json!({"name": "Small", "media_id": w.movie, "invite_only": false, "max_members": 3})))
        .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/rooms/{id}/join");
    assert_eq!(
        w.call("viewer", Method::POST, &path, None).await.status(),
        StatusCode::OK
    );
    // Two concurrent joins for the last seat.
    let (a, b) = tokio::join!(
        w.call("controller", Method::POST, &path, None),
        w.call("outsider", Method::POST, &path, None)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "exactly one wins the last seat");
    let loser = if a.status() == StatusCode::CONFLICT {
        a
    } else {
        b
    };
    assert_eq!(json(loser).await["error"], "room_full");
    let joined: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM room_members WHERE room_id = ?1 AND status = 'joined'",
    )
    .bind(&id)
    .fetch_one(&w.s.state.db)
    .await
    .unwrap();
    assert_eq!(joined, 3);
    // Leaving frees a seat.
    assert_eq!(
        w.call(
            "viewer",
            Method::POST,
            &format!("/api/v1/rooms/{id}/leave"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        w.call("target", Method::POST, &path, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        w.call("extra", Method::POST, &path, None).await.status(),
        StatusCode::CONFLICT
    );

    // Many concurrent joiners on a 16-seat room: never more than 16.
    let r = w
        .call(
            "host",
            Method::POST,
            "/api/v1/rooms",
            Some(json!({"name": "Big", "media_id": w.movie, "invite_only": false})),
        )
        .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/rooms/{id}/join");
    let mut tokens = Vec::new();
    for i in 0..20 {
        let name = format!("crowd{i}");
        w.s.add_user(&name, true).await;
        tokens.push(w.s.login(&name).await);
    }
    let handles: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let (client, url) = (w.s.client.clone(), w.s.url(&path));
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let ok = results.iter().filter(|s| **s == 200).count();
    let full = results.iter().filter(|s| **s == 409).count();
    assert_eq!((ok, full), (15, 5), "host + 15 = 16 seats");
}

#[tokio::test]
async fn handoff_bumps_epoch_and_rooms_persist_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let data = dir.path().join("data");
    let s = Server::start(&data, |_| {}).await;
    let lib = s.add_library("films", &lib_dir).await;
    for name in ["host", "guest"] {
        let id = s.add_user(name, false).await;
        s.grant(id, lib).await;
    }
    let movie = s.item_id("films/movie.mp4").await;
    let host = s.login("host").await;
    let guest = s.login_full("guest").await;
    let guest_access = guest["access_token"].as_str().unwrap().to_owned();
    let r = s
        .call(Method::POST, "/api/v1/rooms", &host, Some(json!({"name": "Keep", "media_id": movie, "invites": [{"username": "guest", "role": "controller"}], "password": "room-secret-1"})))
        .await;
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call(
            Method::POST,
            &format!("/api/v1/invites/{id}/accept"),
            &guest_access,
            None
        )
        .await
        .status(),
        StatusCode::OK
    );
    let guest_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'guest'")
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/rooms/{id}/handoff"),
            &host,
            Some(json!({"user_id": guest_id})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json(r).await;
    assert_eq!(v["epoch"], 1);
    assert_eq!(v["host_user_id"], guest_id);
    assert_eq!(v["my_role"], "controller");
    let before = json(
        s.call(Method::GET, &format!("/api/v1/rooms/{id}"), &host, None)
            .await,
    )
    .await;
    let pub_key_before = std::fs::read(data.join("server-ed25519.pk8")).unwrap();
    s.stop().await;

    // Reopen the same data dir: rooms, roles, sessions and keys survive.
    let s = Server::start(&data, |_| {}).await;
    let after = json(
        s.call(
            Method::GET,
            &format!("/api/v1/rooms/{id}"),
            &guest_access,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(after["my_role"], "host");
    let mut a = after.clone();
    let mut b = before.clone();
    for v in [&mut a, &mut b] {
        v.as_object_mut().unwrap().remove("my_role");
        v.as_object_mut().unwrap().remove("my_status");
    }
    assert_eq!(a, b, "room state identical after restart");
    assert_eq!(
        std::fs::read(data.join("server-ed25519.pk8")).unwrap(),
        pub_key_before
    );
    let r = s
        .client
        .post(s.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": guest["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "refresh tokens survive a restart"
    );
    s.stop().await;
}

#[tokio::test]
async fn idle_rooms_are_ended_and_old_ended_rooms_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let s = Server::start(&dir.path().join("data"), |c| {
        c.room_idle_timeout = std::time::Duration::from_secs(60);
        c.ended_room_retention = std::time::Duration::from_secs(120);
    })
    .await;
    let lib = s.add_library("films", &lib_dir).await;
    let uid = s.add_user("host", false).await;
    s.grant(uid, lib).await;
    let movie = s.item_id("films/movie.mp4").await;
    let host = s.login("host").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = s
            .call(
                Method::POST,
                "/api/v1/rooms",
                &host,
                Some(json!({"name": "r", "media_id": movie})),
            )
            .await;
        ids.push(json(r).await["id"].as_str().unwrap().to_owned());
    }
    let now = watchparty_signal::db::now_secs();
    // Room 0: idle 61 s → ended. Room 1: active → stays. Room 2: ended 121 s ago → deleted.
    sqlx::query("UPDATE rooms SET last_activity_at = ?2 WHERE id = ?1")
        .bind(&ids[0])
        .bind(now - 61)
        .execute(&s.state.db)
        .await
        .unwrap();
    sqlx::query("UPDATE rooms SET status = 'ended', ended_at = ?2 WHERE id = ?1")
        .bind(&ids[2])
        .bind(now - 121)
        .execute(&s.state.db)
        .await
        .unwrap();
    watchparty_signal::server::cleanup_once(&s.state)
        .await
        .unwrap();
    let status = |i: usize| {
        let (s, host, id) = (&s, host.clone(), ids[i].clone());
        async move {
            s.call(Method::GET, &format!("/api/v1/rooms/{id}"), &host, None)
                .await
        }
    };
    assert_eq!(json(status(0).await).await["status"], "ended");
    assert_eq!(json(status(1).await).await["status"], "open");
    assert_eq!(status(2).await.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
