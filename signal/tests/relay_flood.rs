//! Relay flooding (issue #22, item 5): four members each send 58 offers of
//! 32 KiB at a fifth member, who reads normally. Before the relay budgets,
//! the fifth member's send queue filled and *its* socket was closed (1008,
//! "slow reader") in one or two of three rounds. Now each sender's relays are
//! budgeted (in total and towards each receiver) and relays never take the
//! last quarter of a receiver's queue: the flooders are refused
//! (`rate_limited`) and cut, the target keeps its socket. Real server, real
//! WebSockets on loopback.

mod common;
mod ws_common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use watchparty_peer::signaling::{ErrorCode, ServerMessage};
use watchparty_signal::ws::config::DEFAULT_RELAY_PAIR_BYTES_BURST;
use ws_common::*;

const FLOODERS: [&str; 4] = ["flood1", "flood2", "flood3", "flood4"];
/// Offers each flooder sends per round (within the message-rate burst of 60).
const OFFERS: usize = 58;
/// SDP size of each offer.
const SDP_LEN: usize = 32 * 1024;
const ROUNDS: usize = 3;
/// A socket silent this long is taken to have nothing more to say.
const QUIET: Duration = Duration::from_secs(2);

/// What one side saw: offers received, `rate_limited` errors, close code.
#[derive(Debug, Default)]
struct Seen {
    offers: usize,
    refused: usize,
    closed: Option<u16>,
}

/// Reads `ws` until it closes or stays [`QUIET`].
async fn drain(ws: &mut Ws, seen: &mut Seen) {
    loop {
        match tokio::time::timeout(QUIET, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => match ServerMessage::from_json(t.as_str()) {
                Ok(ServerMessage::Offer { .. }) => seen.offers += 1,
                Ok(ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }) => seen.refused += 1,
                _ => {}
            },
            Ok(Some(Ok(Message::Close(f)))) => {
                seen.closed = Some(f.map_or(0, |f| u16::from(f.code)));
                return;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => {
                seen.closed = Some(0);
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooders_are_cut_and_their_target_keeps_its_socket() {
    let mut names = vec!["victim"];
    names.extend(FLOODERS);
    let w = world(&names, |_| {}).await;
    let victim_id = w.id("victim");
    let sdp = "a".repeat(SDP_LEN);
    for round in 0..ROUNDS {
        let (mut victim, _, _) = w.join("victim", 10).await;
        let mut flooders = Vec::new();
        for (i, f) in FLOODERS.iter().enumerate() {
            let (ws, _, _) = w.join(f, 20 + i as u8).await;
            flooders.push(ws);
        }
        // The victim reads normally throughout.
        let reader = tokio::spawn(async move {
            let mut seen = Seen::default();
            drain(&mut victim, &mut seen).await;
            (seen, victim)
        });
        let mut tasks = Vec::new();
        for mut ws in flooders {
            let offer = json!({"type": "offer", "to": victim_id, "sdp": sdp}).to_string();
            tasks.push(tokio::spawn(async move {
                use futures_util::SinkExt;
                for _ in 0..OFFERS {
                    if ws.send(Message::text(offer.clone())).await.is_err() {
                        break;
                    }
                }
                let mut seen = Seen::default();
                drain(&mut ws, &mut seen).await;
                seen
            }));
        }
        let mut flooders_seen = Vec::new();
        for t in tasks {
            flooders_seen.push(t.await.unwrap());
        }
        let (victim_seen, victim) = reader.await.unwrap();
        eprintln!(
            "round {}: the target received {} offers, closed: {:?}; flooders (offers refused, closed): {:?}",
            round + 1,
            victim_seen.offers,
            victim_seen.closed,
            flooders_seen
                .iter()
                .map(|s| (s.refused, s.closed))
                .collect::<Vec<_>>()
        );
        assert_eq!(victim_seen.closed, None, "the target's socket was closed");
        assert!(w.s.state.hub.is_online(&w.room, victim_id));
        // Each flooder got about its per-receiver burst through (plus what
        // refilled while it sent), and was refused (and cut off once its
        // violations added up) for the rest.
        let per_flooder = DEFAULT_RELAY_PAIR_BYTES_BURST as usize / SDP_LEN + 3;
        assert!(
            victim_seen.offers <= FLOODERS.len() * per_flooder,
            "{} offers delivered",
            victim_seen.offers
        );
        for s in &flooders_seen {
            assert!(s.refused > 0 || s.closed == Some(1008), "{s:?}");
        }
        drop(victim);
    }
}

/// `ws::hub::RELAY_QUEUE_RESERVE_PERCENT`: a receiver that pauses reading (its
/// socket buffers full) is not closed when relays fill its send queue; the
/// relays past three quarters of the queue are refused to their sender, and
/// the receiver gets everything queued once it reads again. (Before, the
/// full queue closed the receiver as a slow reader, 1008.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_relays_instead_of_closing_the_receiver() {
    let w = world(&["guest"], |c| {
        c.send_queue = 8;
        c.rate_burst = 100_000;
        c.rate_per_sec = 100_000;
        c.relay_bytes_burst = u32::MAX;
        c.relay_bytes_per_sec = u32::MAX;
        c.relay_pair_bytes_burst = u32::MAX;
        c.relay_pair_bytes_per_sec = u32::MAX;
    })
    .await;
    let (mut host, _, _) = w.join("host", 1).await;
    let (mut guest, _, _) = w.join("guest", 2).await; // not read for now
    let guest_id = w.id("guest");
    let offer = json!({"type": "offer", "to": guest_id, "sdp": "a".repeat(30_000)});
    let mut sent = 0;
    let refused = 'send: loop {
        assert!(sent < 5_000, "no relay was ever refused");
        send(&mut host, offer.clone()).await;
        sent += 1;
        while let Some(m) = maybe_recv(&mut host, Duration::from_millis(1)).await {
            if let ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } = m
            {
                break 'send sent;
            }
        }
    };
    assert!(w.s.state.hub.is_online(&w.room, guest_id));
    // The guest reads again: it gets what was queued and keeps its socket.
    let mut seen = Seen::default();
    drain(&mut guest, &mut seen).await;
    eprintln!(
        "first relay refused after {refused} offers of 30 000 bytes (queue 8); the receiver then read {} offers, closed: {:?}",
        seen.offers, seen.closed
    );
    assert_eq!(seen.closed, None);
    assert!(seen.offers > 0);
    assert!(w.s.state.hub.is_online(&w.room, guest_id));
}
