//! Flood: 50 hostile connections flood (garbage, oversized and unauthenticated
//! junk from 50 loopback addresses, reconnecting as they are closed) and 50
//! more hold unauthenticated sockets, while a legitimate host and guest
//! complete auth and an offer/answer relay. The latency is printed, not
//! asserted (benchmarks record it).

mod common;
mod ws_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use watchparty_peer::signaling::ServerMessage;
use ws_common::*;

async fn open_from(
    url: &str,
    addr: SocketAddr,
    from: Ipv4Addr,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let sock = TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::from((from, 0))).ok()?;
    let tcp = sock.connect(addr).await.ok()?;
    let req = url.into_client_request().ok()?;
    tokio_tungstenite::client_async(req, tcp)
        .await
        .ok()
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legit_member_gets_through_a_flood() {
    let w = world(&["guest"], |_| {}).await;
    let url = w.url(&w.room);
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    // 50 holders from 127.0.1.x: connect and stay silent.
    for i in 0..50u8 {
        let (url, addr, stop, refused) = (url.clone(), w.s.addr, stop.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let held = open_from(&url, addr, Ipv4Addr::new(127, 0, 1, i + 1)).await;
            if held.is_none() {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(held);
        }));
    }
    // 50 flooders from 127.0.2.x: junk as fast as possible, reconnect when closed.
    let sent = Arc::new(AtomicUsize::new(0));
    for i in 0..50u8 {
        let (url, addr, stop, sent) = (url.clone(), w.s.addr, stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let big = "z".repeat(70_000);
            while !stop.load(Ordering::Relaxed) {
                let Some(mut ws) = open_from(&url, addr, Ipv4Addr::new(127, 0, 2, i + 1)).await
                else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                for k in 0..200 {
                    let m = match k % 3 {
                        0 => Message::text("{\"type\":\"offer\",\"to\":1,\"sdp\":\"v=0\"}"),
                        1 => Message::text(big.clone()),
                        _ => Message::binary(vec![0u8; 512]),
                    };
                    if ws.send(m).await.is_err() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut guest, _, _) = w.join("guest", 2).await;
    let t_auth = t0.elapsed();
    send(
        &mut host,
        json!({"type": "offer", "to": w.id("guest"), "sdp": "v=0\r\nflood"}),
    )
    .await;
    let offer = loop {
        if let m @ ServerMessage::Offer { .. } = recv(&mut guest).await {
            break m;
        }
    };
    assert!(matches!(offer, ServerMessage::Offer { .. }));
    send(
        &mut guest,
        json!({"type": "answer", "to": w.id("host"), "sdp": "v=0\r\nok"}),
    )
    .await;
    loop {
        if let ServerMessage::Answer { .. } = recv(&mut host).await {
            break;
        }
    }
    let total = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "flood: legit auth of 2 members {:?}, auth + offer/answer relay {:?}; {} hostile messages sent; {} holders refused by the unauthenticated caps",
        t_auth,
        total,
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    let (all, unauth) = w.s.state.hub.counts();
    assert!(unauth <= watchparty_signal::ws::config::DEFAULT_MAX_UNAUTHENTICATED);
    assert!(all <= watchparty_signal::ws::config::DEFAULT_MAX_CONNECTIONS);
}
