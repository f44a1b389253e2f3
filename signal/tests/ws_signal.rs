//! The signaling WebSocket over loopback with real tokio-tungstenite clients:
//! origin policy, auth, membership, limits, relay, certificates, pushes and
//! revocation.

mod common;
mod ws_common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};
use watchparty_peer::cert::CertVerifier;
use watchparty_peer::ids::{Role, UnixSeconds, UserId};
use watchparty_peer::signaling::{ErrorCode, MAX_SIGNAL_MESSAGE_LEN, ServerMessage};
use ws_common::*;

fn uid(v: i64) -> UserId {
    UserId::new(v as u64).unwrap()
}

/// Ends the test room through REST (as its host).
async fn end_room(w: &World, host_token: &str) {
    let path = format!("/api/v1/rooms/{}/end", w.room);
    let r = w.s.call(Method::POST, &path, host_token, None).await;
    assert_eq!(r.status(), 204);
}

fn now() -> UnixSeconds {
    UnixSeconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

#[tokio::test]
async fn origin_policy_is_checked_before_the_upgrade() {
    let w = world(&[], |_| {}).await;
    for bad in [
        "null",
        "http://party.test.evil.com",
        "http://evil.test",
        "https://party.test",
        "http://party.test:81",
    ] {
        match w.open(&w.room, Some(bad)).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403, "{bad}"),
            other => panic!(
                "{bad}: expected 403, got {other:?}",
                other = other.map(|_| ())
            ),
        }
    }
    assert!(w.open(&w.room, Some("http://party.test")).await.is_ok());
    assert!(
        w.open(&w.room, None).await.is_ok(),
        "no Origin = non-browser client"
    );
    // permessage-deflate is never negotiated even when offered.
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(w.url(&w.room)).unwrap();
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
}

#[tokio::test]
async fn auth_deadline_bad_token_non_member_and_ended_room() {
    let w = world(&["guest", "other"], |c| c.auth_timeout_ms = 300).await;
    // Silent socket: closed 4001 at the deadline.
    let mut ws = w.open(&w.room, None).await.unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(4001));
    assert!(t0.elapsed() >= Duration::from_millis(250));
    // Bad token, and a first message that is not auth.
    let mut ws = w.open(&w.room, None).await.unwrap();
    auth(&mut ws, "not.a.jwt", Some(1)).await;
    assert!(matches!(
        recv(&mut ws).await,
        ServerMessage::Error {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let mut ws = w.open(&w.room, None).await.unwrap();
    send(&mut ws, json!({"type": "leave"})).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
    // Expired token (valid signature, exp in the past beyond leeway).
    let (id, _) = (w.id("guest"), ());
    let past = watchparty_signal::db::now_secs() - 3600;
    let expired =
        w.s.state
            .access_tokens
            .issue(id, &[9; 16], past, 60)
            .unwrap();
    let mut ws = w.open(&w.room, None).await.unwrap();
    auth(&mut ws, &expired, Some(1)).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
    // Authenticated outsider: 4003.
    let outsider = w.s.add_user("outsider", false).await;
    let _ = outsider;
    let t = w.s.login("outsider").await;
    let mut ws = w.open(&w.room, None).await.unwrap();
    auth(&mut ws, &t, Some(1)).await;
    assert_eq!(close_code(&mut ws).await, Some(4003));
    // Ended room: 4003.
    let host = w.s.login("host").await;
    end_room(&w, &host).await;
    let t = w.s.login("guest").await;
    let mut ws = w.open(&w.room, None).await.unwrap();
    auth(&mut ws, &t, Some(1)).await;
    assert_eq!(close_code(&mut ws).await, Some(4003));
}

#[tokio::test]
async fn hello_certificates_verify_with_the_protocol_core_and_relay_stays_in_room() {
    let w = world(&["guest", "third"], |c| {
        c.stun_urls = vec!["stun:stun.party.test:3478".into()];
        c.turn_urls = vec!["turn:turn.party.test:3478".into()];
        c.turn_secret = Some(watchparty_signal::ws::config::TurnSecret::new(
            "turn-shared-secret",
        ));
    })
    .await;
    let (host_id, guest_id, third_id) = (w.id("host"), w.id("guest"), w.id("third"));
    let (mut host, hello_h, _) = w.join("host", 1).await;
    let ServerMessage::Hello {
        epoch,
        server_key,
        certificate,
        room,
        ..
    } = hello_h
    else {
        unreachable!()
    };
    assert_eq!(server_key, w.s.state.keys.cert_signer.public_key());
    let verifier = CertVerifier::new(server_key, room).with_pinned_host(key(1).public_key());
    let v = verifier.verify(&certificate, now()).unwrap();
    assert_eq!(v.body().role, Role::Host);
    assert_eq!(v.body().key, key(1).public_key());
    assert_eq!(epoch.0, 1, "host registration opened epoch 1");
    let db_epoch: i64 = sqlx::query_scalar("SELECT epoch FROM rooms WHERE id = ?1")
        .bind(&w.room)
        .fetch_one(&w.s.state.db)
        .await
        .unwrap();
    assert_eq!(db_epoch, 1, "epoch persisted");

    let (mut guest, hello_g, _) = w.join("guest", 2).await;
    let ServerMessage::Hello {
        you,
        members,
        ice_servers,
        certificate,
        ..
    } = hello_g
    else {
        unreachable!()
    };
    assert_eq!(you, uid(guest_id));
    let mine = verifier.verify(&certificate, now()).unwrap();
    assert_eq!(
        (mine.body().user, mine.body().role, mine.body().key),
        (uid(guest_id), Role::Viewer, key(2).public_key())
    );
    let host_entry = members
        .as_slice()
        .iter()
        .find(|m| m.certificate.claimed().user == uid(host_id))
        .unwrap();
    assert!(host_entry.online);
    assert_eq!(
        verifier
            .verify(&host_entry.certificate, now())
            .unwrap()
            .body()
            .role,
        Role::Host
    );
    // A forged certificate (other server key) is refused by the peer.
    let forged = CertVerifier::new(key(99).public_key(), room);
    assert!(forged.verify(&certificate, now()).is_err());
    let ice = ice_servers.into_vec();
    assert_eq!(ice.len(), 2);
    let turn_user = ice[1].username.as_ref().unwrap().as_str().to_owned();
    assert!(turn_user.ends_with(&format!(":{guest_id}")));
    assert!(
        matches!(recv(&mut host).await, ServerMessage::MemberJoined { member } if member.certificate.claimed().user == uid(guest_id))
    );

    // Offer/answer relay with server-stamped senders.
    send(
        &mut host,
        json!({"type": "offer", "to": guest_id, "sdp": "v=0\r\nfrom-host"}),
    )
    .await;
    match recv(&mut guest).await {
        ServerMessage::Offer { from, sdp } => {
            assert_eq!(from, uid(host_id));
            assert_eq!(sdp.as_str(), "v=0\r\nfrom-host");
        }
        m => panic!("{m:?}"),
    }
    send(
        &mut guest,
        json!({"type": "answer", "to": host_id, "sdp": "v=0\r\nanswer"}),
    )
    .await;
    assert!(
        matches!(recv(&mut host).await, ServerMessage::Answer { from, .. } if from == uid(guest_id))
    );
    send(&mut guest, json!({"type": "ice", "to": host_id, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}})).await;
    assert!(
        matches!(recv(&mut host).await, ServerMessage::Ice { from, .. } if from == uid(guest_id))
    );
    // Spoofed sender: a `from` field is refused, nothing is relayed.
    send(
        &mut guest,
        json!({"type": "offer", "to": host_id, "from": third_id, "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut guest).await,
        ServerMessage::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(
        maybe_recv(&mut host, Duration::from_millis(200))
            .await
            .is_none()
    );
    // Offline member (third has not connected) and a user outside the room: refused, not queued.
    send(
        &mut guest,
        json!({"type": "offer", "to": third_id, "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut guest).await,
        ServerMessage::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    let stranger = w.s.add_user("stranger", false).await;
    send(
        &mut guest,
        json!({"type": "offer", "to": stranger, "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut guest).await,
        ServerMessage::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    let (mut third, _, _) = w.join("third", 3).await;
    assert!(
        maybe_recv(&mut third, Duration::from_millis(200))
            .await
            .is_none(),
        "nothing was queued for third"
    );

    // Host re-registers its room key: new epoch, host_changed to everyone.
    send(
        &mut host,
        json!({"type": "register_host_key", "key": key(11).public_key().to_base64url()}),
    )
    .await;
    let hc = loop {
        if let ServerMessage::HostChanged { certificate } = recv(&mut guest).await {
            break certificate;
        }
    };
    assert_eq!(hc.claimed().epoch.0, 2);
    assert_eq!(hc.claimed().key, key(11).public_key());
    // A viewer cannot.
    send(
        &mut guest,
        json!({"type": "register_host_key", "key": key(12).public_key().to_base64url()}),
    )
    .await;
    assert!(matches!(
        recv(&mut guest).await,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let w = world(&[], |_| {}).await;
    let (mut host, _, _) = w.join("host", 1).await;
    let big = "x".repeat(MAX_SIGNAL_MESSAGE_LEN + 1);
    host.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut host).await, Some(1009));
    // Before auth as well.
    let mut ws = w.open(&w.room, None).await.unwrap();
    ws.send(Message::text("y".repeat(MAX_SIGNAL_MESSAGE_LEN + 1)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

#[tokio::test]
async fn rate_limit_errors_then_1008() {
    let w = world(&["guest"], |c| {
        c.rate_burst = 5;
        c.rate_per_sec = 1;
        c.rate_strikes = 3;
    })
    .await;
    let (mut host, _, _) = w.join("host", 1).await;
    let guest = w.id("guest");
    for _ in 0..5 {
        send(
            &mut host,
            json!({"type": "offer", "to": guest, "sdp": "v=0"}),
        )
        .await;
        assert!(matches!(
            recv(&mut host).await,
            ServerMessage::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ));
    }
    send(
        &mut host,
        json!({"type": "offer", "to": guest, "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut host).await,
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    ));
    for _ in 0..3 {
        let _ = host
            .send(Message::text(
                json!({"type": "offer", "to": guest, "sdp": "v=0"}).to_string(),
            ))
            .await;
    }
    assert_eq!(close_code(&mut host).await, Some(1008));
}

#[tokio::test]
async fn per_user_global_and_unauthenticated_caps() {
    let w = world(&["guest"], |c| {
        c.max_per_user = 1;
        c.max_connections = 4;
        c.max_unauthenticated_per_ip = 2;
    })
    .await;
    // Per user: a second room for the same host.
    let host_t = w.s.login("host").await;
    let r =
        w.s.call(
            Method::POST,
            "/api/v1/rooms",
            &host_t,
            Some(json!({"name": "Second", "media_id": w.movie})),
        )
        .await;
    let room2 = common::json(r).await["id"].as_str().unwrap().to_owned();
    let (_host, _, _) = w.join("host", 1).await;
    let mut ws = w.open(&room2, None).await.unwrap();
    auth(&mut ws, &host_t, Some(1)).await;
    assert!(matches!(
        recv(&mut ws).await,
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    ));
    assert_eq!(close_code(&mut ws).await, Some(1008));
    // Unauthenticated per IP: 2 holders, the 3rd is refused before the upgrade.
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(w.open(&w.room, None).await.unwrap());
    }
    match w.open(&w.room, None).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    drop(holders);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Global: 4 sockets in total (host, guest and 2 holders); the 5th gets 503.
    let (_guest, _, _) = w.join("guest", 2).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(w.open(&w.room, None).await.unwrap());
    }
    assert_eq!(w.s.state.hub.counts(), (4, 2));
    match w.open(&w.room, None).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(open);
}

#[tokio::test]
async fn idle_socket_closed_live_socket_kept() {
    let w = world(&["guest"], |c| {
        c.ping_interval_ms = 100;
        c.idle_timeout_ms = 400;
    })
    .await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut guest, _, _) = w.join("guest", 2).await;
    // The host keeps reading (so tungstenite answers pings); the guest does not read.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < deadline {
        let _ = maybe_recv(&mut host, Duration::from_millis(50)).await;
    }
    assert!(
        !w.s.state.hub.is_online(&w.room, w.id("guest")),
        "silent socket closed as idle"
    );
    // Its buffered stream ends with the 1001 close frame (or a reset, if the
    // client's automatic pong hits the closed socket first).
    let code = close_code(&mut guest).await;
    assert!(code == Some(1001) || code.is_none(), "{code:?}");
    assert!(
        w.s.state.hub.is_online(&w.room, w.id("host")),
        "live socket kept"
    );
    send(
        &mut host,
        json!({"type": "offer", "to": w.id("guest"), "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut host).await,
        ServerMessage::MemberLeft { .. } | ServerMessage::Error { .. }
    ));
}

#[tokio::test]
async fn slow_reader_is_disconnected() {
    let w = world(&["guest"], |c| {
        c.send_queue = 4;
        c.send_timeout_ms = 300;
        c.rate_burst = 100_000;
        c.rate_per_sec = 100_000;
        c.relay_bytes_burst = u32::MAX;
        c.relay_bytes_per_sec = u32::MAX;
        c.relay_pair_bytes_burst = u32::MAX;
        c.relay_pair_bytes_per_sec = u32::MAX;
    })
    .await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (_guest, _, _) = w.join("guest", 2).await; // never read again
    let _ = recv(&mut host).await; // member_joined
    let guest = w.id("guest");
    let sdp = "a".repeat(30_000);
    let mut sent = 0;
    while w.s.state.hub.is_online(&w.room, guest) && sent < 2_000 {
        send(&mut host, json!({"type": "offer", "to": guest, "sdp": sdp})).await;
        sent += 1;
        if sent % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !w.s.state.hub.is_online(&w.room, guest),
        "slow reader disconnected after {sent} offers"
    );
    println!("slow reader disconnected after {sent} offers of 30 000 bytes (queue 4)");
}

#[tokio::test]
async fn reconnect_replaces_the_old_socket() {
    let w = world(&["guest"], |_| {}).await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut old, _, _) = w.join("guest", 2).await;
    let (mut new, _, _) = w.join("guest", 2).await;
    assert_eq!(close_code(&mut old).await, Some(4002));
    send(
        &mut host,
        json!({"type": "offer", "to": w.id("guest"), "sdp": "v=0"}),
    )
    .await;
    loop {
        if let ServerMessage::Offer { from, .. } = recv(&mut new).await {
            assert_eq!(from, uid(w.id("host")));
            break;
        }
    }
}

#[tokio::test]
async fn kick_logout_role_change_end_and_revocation_close_sockets() {
    let w = world(&["alice", "bob", "carol", "dave"], |c| {
        c.revalidate_ms = 100
    })
    .await;
    let host_t = w.s.login("host").await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut a, _, _) = w.join("alice", 2).await;
    let (mut b, _, b_tok) = w.join("bob", 3).await;
    let (mut c, _, _) = w.join("carol", 4).await;
    let (mut d, _, _) = w.join("dave", 5).await;
    // Role change: pushed as role_changed with a re-issued certificate.
    let r =
        w.s.call(
            Method::PATCH,
            &format!("/api/v1/rooms/{}/members/{}", w.room, w.id("alice")),
            &host_t,
            Some(json!({"role": "controller"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    loop {
        if let ServerMessage::RoleChanged { certificate } = recv(&mut d).await {
            assert_eq!(certificate.claimed().role, Role::Controller);
            assert_eq!(certificate.claimed().user, uid(w.id("alice")));
            break;
        }
    }
    // Kick a: everyone hears `kicked`, a's socket closes 1008.
    let r =
        w.s.call(
            Method::DELETE,
            &format!("/api/v1/rooms/{}/members/{}", w.room, w.id("alice")),
            &host_t,
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(close_code(&mut a).await, Some(1008));
    loop {
        if let ServerMessage::Kicked { user } = recv(&mut d).await {
            assert_eq!(user, uid(w.id("alice")));
            break;
        }
    }
    // Logout closes b's socket at once.
    let r =
        w.s.call(Method::POST, "/api/v1/auth/logout", &b_tok, None)
            .await;
    assert_eq!(r.status(), 204);
    assert_eq!(close_code(&mut b).await, Some(1008));
    // Account disabled out of process (CLI-style, straight in the database): revalidation closes it.
    sqlx::query("UPDATE users SET disabled = 1 WHERE id = ?1")
        .bind(w.id("carol"))
        .execute(&w.s.state.db)
        .await
        .unwrap();
    assert_eq!(close_code(&mut c).await, Some(1008));
    // Room end: room_ended to everyone, then 1008.
    end_room(&w, &host_t).await;
    loop {
        if let ServerMessage::RoomEnded { .. } = recv(&mut d).await {
            break;
        }
    }
    assert_eq!(close_code(&mut d).await, Some(1008));
    assert_eq!(close_code(&mut host).await, Some(1008));
}

/// Reusing an already-used refresh token revokes its session; the session's
/// sockets then close at once with a plain reason, as at logout — by either
/// refresh path (a native client's JSON body, the web app's cookie), and long
/// before the periodic re-check (left at its default of 30 s here; the bound
/// below is 5 s). Another session of the same user stays signed in, and
/// another member's socket stays up.
#[tokio::test]
async fn refresh_token_reuse_closes_the_sessions_sockets_at_once() {
    const APP: &str = "http://party.test";
    let w = world(&["alice", "bob"], |_| {}).await;
    let open_as = |access: String, seed: u8| {
        let w = &w;
        async move {
            let mut ws = w.open(&w.room, None).await.unwrap();
            auth(&mut ws, &access, Some(seed)).await;
            assert!(matches!(recv(&mut ws).await, ServerMessage::Hello { .. }));
            ws
        }
    };
    let assert_closed_for_reuse = |closed: Option<(u16, String)>| {
        let (code, reason) = closed.expect("a close frame");
        assert_eq!(code, 1008);
        assert!(reason.contains("signed out"), "{reason}");
    };
    // Another member's socket and another session of alice's: untouched.
    let (mut other, _, _) = w.join("bob", 9).await;
    let alice_elsewhere = w.s.login("alice").await;

    // Native client: the refresh token in the JSON body.
    let t = w.s.login_full("alice").await;
    let mut ws = open_as(t["access_token"].as_str().unwrap().to_owned(), 2).await;
    let refresh = |token: Value| {
        let w = &w;
        async move {
            w.s.client
                .post(w.s.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(refresh(t["refresh_token"].clone()).await, 200);
    assert_eq!(refresh(t["refresh_token"].clone()).await, 401);
    assert_closed_for_reuse(close_frame(&mut ws).await);

    // Web app: the refresh token in the cookie.
    let r = w.s.cookie_login("alice", APP).await;
    assert_eq!(r.status(), 200);
    let (first, _) = common::refresh_cookie(&r).unwrap();
    let access = common::json(r).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = open_as(access, 3).await;
    let r =
        w.s.cookie_post("/api/v1/auth/refresh", &first, true, Some(APP), None)
            .await;
    assert_eq!(r.status(), 200);
    let r =
        w.s.cookie_post("/api/v1/auth/refresh", &first, true, Some(APP), None)
            .await;
    assert_eq!(r.status(), 401);
    assert_closed_for_reuse(close_frame(&mut ws).await);

    let r =
        w.s.call(Method::GET, "/api/v1/me", &alice_elsewhere, None)
            .await;
    assert_eq!(r.status(), 200);
    // The other member's socket is still up: it answers a ping.
    other.send(Message::Ping(vec![7].into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), other.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) if p.as_ref() == [7] => break,
            Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("another member disturbed: {other:?}"),
        }
    }
}

/// The server rewrites `to` into `from`, which can lengthen a message: a
/// client message of exactly [`MAX_SIGNAL_MESSAGE_LEN`] bytes must not be
/// relayed as a longer text the receiving peer would refuse. The sender gets
/// an error; the receiver gets nothing; the relay keeps working.
#[tokio::test]
async fn message_too_large_once_relayed_is_refused_not_forwarded() {
    let w = world(&["guest"], |_| {}).await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut guest, _, _) = w.join("guest", 2).await;
    let _ = maybe_recv(&mut host, Duration::from_millis(300)).await; // member_joined
    let guest_id = w.id("guest");
    let head = format!(r#"{{"type":"offer","to":{guest_id},"sdp":""#);
    let tail = r#""}"#;
    let room = MAX_SIGNAL_MESSAGE_LEN - head.len() - tail.len();
    let escapes = room / 6;
    let text = format!(
        "{head}{}{}{tail}",
        "\\u0001".repeat(escapes),
        "a".repeat(room - escapes * 6)
    );
    assert_eq!(text.len(), MAX_SIGNAL_MESSAGE_LEN);
    host.send(Message::text(text)).await.unwrap();
    assert!(matches!(
        recv(&mut host).await,
        ServerMessage::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(
        maybe_recv(&mut guest, Duration::from_millis(300))
            .await
            .is_none(),
        "an over-long relayed text reached the receiver"
    );
    send(
        &mut host,
        json!({"type": "offer", "to": guest_id, "sdp": "v=0"}),
    )
    .await;
    assert!(matches!(
        recv(&mut guest).await,
        ServerMessage::Offer { .. }
    ));
}

/// The registry keeps no entry for a room once it has no sockets and no
/// certificates: a room that ends after every member disconnected is
/// forgotten at once (it used to stay as an empty entry for good).
#[tokio::test]
async fn ended_room_without_sockets_leaves_no_registry_entry() {
    let w = world(&["guest"], |_| {}).await;
    let host_t = w.s.login("host").await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (guest, _, _) = w.join("guest", 2).await;
    drop(guest);
    host.close(None).await.unwrap();
    let offline = tokio::time::Instant::now() + Duration::from_secs(5);
    while w.s.state.hub.counts() != (0, 0) {
        assert!(
            tokio::time::Instant::now() < offline,
            "sockets not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Offline members' certificates keep the room's entry while it is open.
    assert_eq!(w.s.state.hub.entries(), (1, 0, 0, 0));
    end_room(&w, &host_t).await;
    assert_eq!(w.s.state.hub.entries(), (0, 0, 0, 0));
}
