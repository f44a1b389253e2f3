//! Browser smoke tests, run in headless Chromium by `wasm-bindgen-test-runner`
//! (`cargo xtask test`, step `wasm`).
//!
//! Two real `RTCPeerConnection`s in one page, built through this crate's
//! `rtc` module, exchange their offer/answer and trickled ICE candidates
//! directly (standing in for the signaling server) and talk over the
//! pre-negotiated data channels from `watchparty_peer::channels`.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use wasm_bindgen_futures::spawn_local;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_peer::channels::{self, ChannelSpec};
use watchparty_wasm_peer::RtcError;
use watchparty_wasm_peer::rtc::{
    DataChannel, DropCounts, IceCandidate, MAX_FRAME_BYTES, MAX_INBOX_FRAMES,
    MAX_PENDING_REMOTE_CANDIDATES, PeerConnection,
};
use watchparty_wasm_peer::timer::{sleep, timeout};

wasm_bindgen_test_configure!(run_in_browser);

/// Limit for each connection step; a broken setup fails instead of hanging.
const STEP_MS: u32 = 10_000;

/// Two connected peers and their channels, in `channels::ALL` order.
struct Pair {
    a_channels: Vec<DataChannel>,
    b_channels: Vec<DataChannel>,
    /// Errors from applying trickled candidates (asserted empty).
    ice_errors: Rc<RefCell<Vec<RtcError>>>,
    // Dropped last: channels first, then the connections.
    _a: Rc<PeerConnection>,
    _b: Rc<PeerConnection>,
}

/// Forwards every local candidate of `from` to `to` (trickle ICE).
/// Holds `to` weakly: the two connections never keep each other alive.
fn trickle(from: &PeerConnection, to: &Rc<PeerConnection>, errors: &Rc<RefCell<Vec<RtcError>>>) {
    let to = Rc::downgrade(to);
    let errors = Rc::clone(errors);
    from.on_ice_candidate(move |candidate| {
        let (Some(candidate), Some(to)) = (candidate, to.upgrade()) else {
            return;
        };
        let errors = Rc::clone(&errors);
        spawn_local(async move {
            if let Err(e) = to.add_remote_candidate(&candidate).await {
                errors.borrow_mut().push(e);
            }
        });
    });
}

fn open_all(pc: &PeerConnection, specs: &[ChannelSpec]) -> Vec<DataChannel> {
    specs
        .iter()
        .map(|spec| pc.open_channel(*spec).expect("create data channel"))
        .collect()
}

/// Connects two peers whose channels are `a_specs` and `b_specs`.
async fn connect(a_specs: &[ChannelSpec], b_specs: &[ChannelSpec]) -> Pair {
    let a = Rc::new(PeerConnection::new().expect("pc a"));
    let b = Rc::new(PeerConnection::new().expect("pc b"));
    let ice_errors = Rc::new(RefCell::new(Vec::new()));
    trickle(&a, &b, &ice_errors);
    trickle(&b, &a, &ice_errors);

    // Negotiated channels exist before the offer, so it carries the data section.
    let a_channels = open_all(&a, a_specs);
    let b_channels = open_all(&b, b_specs);

    let offer = timeout(STEP_MS, a.create_offer())
        .await
        .expect("offer in time")
        .expect("create offer");
    timeout(STEP_MS, b.set_remote_description(&offer))
        .await
        .expect("set offer in time")
        .expect("set offer");
    let answer = timeout(STEP_MS, b.create_answer())
        .await
        .expect("answer in time")
        .expect("create answer");
    timeout(STEP_MS, a.set_remote_description(&answer))
        .await
        .expect("set answer in time")
        .expect("set answer");

    for ch in a_channels.iter().chain(&b_channels) {
        timeout(STEP_MS, ch.opened())
            .await
            .unwrap_or_else(|e| panic!("channel {} did not open: {e}", ch.spec().label))
            .expect("channel open");
    }
    Pair {
        a_channels,
        b_channels,
        ice_errors,
        _a: a,
        _b: b,
    }
}

async fn recv(ch: &DataChannel) -> Vec<u8> {
    timeout(STEP_MS, ch.recv())
        .await
        .unwrap_or_else(|e| panic!("no frame on channel {}: {e}", ch.spec().label))
        .expect("recv")
}

/// A frame with zeros, high bytes and non-UTF-8 sequences, tagged by channel.
fn test_frame(spec: ChannelSpec) -> Vec<u8> {
    let mut frame = vec![0xC0, spec.id.get().to_le_bytes()[0], 0x00, 0xFF];
    frame.extend(0..=255u8);
    frame
}

#[wasm_bindgen_test]
async fn binary_frame_echoes_on_every_channel() {
    let pair = connect(&channels::ALL, &channels::ALL).await;
    for (a, b) in pair.a_channels.iter().zip(&pair.b_channels) {
        let frame = test_frame(a.spec());
        a.send(&frame).expect("a sends");
        let received = recv(b).await;
        assert_eq!(
            received,
            frame,
            "b got the exact bytes on {}",
            b.spec().label
        );
        b.send(&received).expect("b echoes");
        let echoed = recv(a).await;
        assert_eq!(echoed, frame, "a got the exact echo on {}", a.spec().label);
    }
    for ch in pair.a_channels.iter().chain(&pair.b_channels) {
        assert_eq!(ch.dropped(), DropCounts::default());
        assert_eq!(ch.queued(), 0);
    }
    assert!(
        pair.ice_errors.borrow().is_empty(),
        "{:?}",
        pair.ice_errors.borrow()
    );
}

#[wasm_bindgen_test]
async fn frame_size_limit_is_enforced_both_ways() {
    let pair = connect(&[channels::CONTROL], &[channels::CONTROL]).await;
    let (a, b) = (&pair.a_channels[0], &pair.b_channels[0]);

    // Exactly at the limit: sent and received whole.
    let largest: Vec<u8> = (0..MAX_FRAME_BYTES).map(|i| (i % 251) as u8).collect();
    a.send(&largest).expect("frame at the limit is sent");
    assert_eq!(recv(b).await, largest);

    // One byte over: refused locally.
    let too_big = vec![7u8; MAX_FRAME_BYTES + 1];
    assert_eq!(
        a.send(&too_big),
        Err(RtcError::FrameTooLarge {
            len: MAX_FRAME_BYTES + 1,
            max: MAX_FRAME_BYTES
        })
    );

    // A peer that bypasses the check: dropped and counted on arrival, and so
    // is a text message; the channel keeps working (reliable + ordered, so
    // the marker arrives after both).
    a.as_raw()
        .send_with_u8_array(&too_big)
        .expect("raw oversize send");
    a.as_raw().send_with_str("text").expect("raw text send");
    a.send(b"marker").expect("marker");
    assert_eq!(recv(b).await, b"marker");
    assert_eq!(
        b.dropped(),
        DropCounts {
            oversize: 1,
            inbox_full: 0,
            not_binary: 1
        }
    );
}

#[wasm_bindgen_test]
async fn inbox_is_bounded() {
    const EXTRA: usize = 3;
    let pair = connect(&[channels::CONTROL], &[channels::CONTROL]).await;
    let (a, b) = (&pair.a_channels[0], &pair.b_channels[0]);

    for n in 0..MAX_INBOX_FRAMES + EXTRA {
        a.send(&u16::try_from(n).expect("small").to_be_bytes())
            .expect("send");
    }
    // Nobody reads b: wait until everything arrived or was dropped.
    timeout(STEP_MS, async {
        while b.queued() + (b.dropped().inbox_full as usize) < MAX_INBOX_FRAMES + EXTRA {
            sleep(10).expect("timer").await;
        }
    })
    .await
    .expect("all frames delivered");
    assert_eq!(b.queued(), MAX_INBOX_FRAMES);
    assert_eq!(b.dropped().inbox_full, EXTRA as u64);

    // The first MAX_INBOX_FRAMES are kept, in order; the overflow is gone.
    for n in 0..MAX_INBOX_FRAMES {
        assert_eq!(
            recv(b).await,
            u16::try_from(n).expect("small").to_be_bytes()
        );
    }
    a.send(b"after").expect("send after drain");
    assert_eq!(recv(b).await, b"after");
}

#[wasm_bindgen_test]
async fn mismatched_channel_ids_do_not_connect_traffic() {
    // a's `control` is stream 0, b only has stream 1: a frame a sends on
    // stream 0 has no receiver, and b's stream 1 sees nothing.
    let pair = connect(&[channels::CONTROL], &[channels::CHAT]).await;
    pair.a_channels[0].send(b"lost").expect("send");
    let got = timeout(500, pair.b_channels[0].recv()).await;
    assert_eq!(got, Err(RtcError::Timeout { ms: 500 }));
}

#[wasm_bindgen_test]
async fn early_remote_candidates_are_bounded() {
    let pc = PeerConnection::new().expect("pc");
    let candidate = |n: usize| IceCandidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122260223 192.0.2.77 {} typ host",
            40_000 + n
        ),
        sdp_mid: Some("0".to_owned()),
        sdp_m_line_index: Some(0),
    };
    // No remote description yet: candidates are kept for later, up to the limit.
    for n in 0..MAX_PENDING_REMOTE_CANDIDATES {
        assert_eq!(pc.add_remote_candidate(&candidate(n)).await, Ok(()));
    }
    assert_eq!(
        pc.pending_remote_candidates(),
        MAX_PENDING_REMOTE_CANDIDATES
    );
    assert_eq!(
        pc.add_remote_candidate(&candidate(MAX_PENDING_REMOTE_CANDIDATES))
            .await,
        Err(RtcError::TooManyPendingCandidates {
            max: MAX_PENDING_REMOTE_CANDIDATES
        })
    );
    assert_eq!(
        pc.pending_remote_candidates(),
        MAX_PENDING_REMOTE_CANDIDATES
    );
}

#[wasm_bindgen_test]
fn ed25519_sign_verify_round_trip() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse key");
    let message = b"watchparty control frame";
    let signature = key.sign(message);
    let public = UnparsedPublicKey::new(&ED25519, key.public_key().as_ref());

    assert!(public.verify(message, signature.as_ref()).is_ok());

    let mut tampered_message = message.to_vec();
    tampered_message[0] ^= 1;
    assert!(
        public
            .verify(&tampered_message, signature.as_ref())
            .is_err()
    );

    let mut tampered_signature = signature.as_ref().to_vec();
    tampered_signature[10] ^= 0x80;
    assert!(public.verify(message, &tampered_signature).is_err());

    let other = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("generate key")
            .as_ref(),
    )
    .expect("parse key");
    let other_public = UnparsedPublicKey::new(&ED25519, other.public_key().as_ref());
    assert!(other_public.verify(message, signature.as_ref()).is_err());
}
