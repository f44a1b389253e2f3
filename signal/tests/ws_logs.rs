//! The signaling relay never logs tokens, SDP, candidates or TURN credentials:
//! a global subscriber captures everything at TRACE and the text is grepped.

mod common;
mod ws_common;

use common::LogCapture;
use serde_json::json;
use watchparty_peer::signaling::ServerMessage;
use ws_common::*;

#[tokio::test]
async fn signaling_logs_hold_no_secrets_or_bodies() {
    let capture = LogCapture::install("watchparty_signal=trace,tower_http=trace,axum=trace");
    let w = world(&["guest"], |c| {
        c.turn_urls = vec!["turn:turn.party.test:3478".into()];
        c.turn_secret = Some(watchparty_signal::ws::config::TurnSecret::new(
            "TURN-SECRET-MARKER",
        ));
    })
    .await;
    let (mut host, _, host_token) = w.join("host", 1).await;
    let (mut guest, hello, guest_token) = w.join("guest", 2).await;
    let ServerMessage::Hello { ice_servers, .. } = hello else {
        unreachable!()
    };
    let turn_cred = ice_servers.as_slice()[0]
        .credential
        .as_ref()
        .unwrap()
        .as_str()
        .to_owned();
    send(
        &mut host,
        json!({"type": "offer", "to": w.id("guest"), "sdp": "v=0\r\no=SDP-BODY-MARKER"}),
    )
    .await;
    let _ = recv(&mut guest).await;
    send(&mut guest, json!({"type": "ice", "to": w.id("host"), "candidate": {"candidate": "candidate:CANDIDATE-MARKER 1 udp 1 10.9.8.7 5000 typ host"}})).await;
    loop {
        if let ServerMessage::Ice { .. } = recv(&mut host).await {
            break;
        }
    }
    // A malformed message with a secret-looking value.
    send(
        &mut guest,
        json!({"type": "auth", "token": 12345, "x": "BODY-VALUE-MARKER"}),
    )
    .await;
    let _ = recv(&mut guest).await;
    // Wait for the events to be logged (however busy the machine), then
    // check that no secret was.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let logged = |t: &str| t.contains("signaling connected") && t.contains("relayed");
    while !logged(&capture.text()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = capture.text();
    assert!(
        text.contains("signaling connected"),
        "connect events are logged"
    );
    assert!(
        text.contains("relayed"),
        "relay events are logged (type, size, ids)"
    );
    for secret in [
        host_token.as_str(),
        guest_token.as_str(),
        "SDP-BODY-MARKER",
        "CANDIDATE-MARKER",
        "10.9.8.7",
        "TURN-SECRET-MARKER",
        turn_cred.as_str(),
        "BODY-VALUE-MARKER",
    ] {
        assert!(!text.contains(secret), "log leaks {secret:?}");
    }
}
