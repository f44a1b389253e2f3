//! The bodies of the server fuzz targets, shared with the normal test suite.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name; the
//! regression test `signal/tests/fuzz_corpus.rs` includes this file too and
//! replays the committed seeds (`fuzz/corpus/<name>/seed-*`) and every crash
//! reproducer (`fuzz/regressions/<name>/*`) through the same functions.
//!
//! Every function must return normally on any input; a panic (including a
//! failed `assert!`) is a finding.
#![allow(dead_code)]

use std::sync::OnceLock;

use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, HeaderValue};
use watchparty_peer::ids::UserId;
use watchparty_peer::signaling::{ClientMessage, MAX_SIGNAL_MESSAGE_LEN, ServerMessage};
use watchparty_signal::keys::SymmetricKey;
use watchparty_signal::media::range::{self, MAX_RANGE_HEADER_LEN, RangeSpec};
use watchparty_signal::tokens::{AccessTokens, STREAM_TOKEN_CHARS, StreamGrant, StreamTokens};
use watchparty_signal::ws::origin::{self, Origin, OriginCheck};

/// The fuzz target names, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 3] = ["range_header", "media_token", "ws_client_message"];

/// Runs the check called `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "range_header" => range_header(data),
        "media_token" => media_token(data),
        "ws_client_message" => ws_client_message(data),
        _ => return false,
    }
    true
}

// ------------------------------------------------------------ range_header --

/// `Range` header parsing: the first 8 bytes are the representation size
/// (big-endian; short inputs give small sizes), the rest is the header
/// value. Never panics; a partial range always lies inside the
/// representation; an over-long header is always ignored.
pub fn range_header(data: &[u8]) {
    let (size_bytes, header) = data.split_at(data.len().min(8));
    let mut size = [0u8; 8];
    size[8 - size_bytes.len()..].copy_from_slice(size_bytes);
    let size = u64::from_be_bytes(size);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    match range::parse(Some(header), size) {
        RangeSpec::Partial { start, end } => {
            assert!(start <= end, "{header:?}/{size}: start {start} > end {end}");
            assert!(end < size, "{header:?}/{size}: end {end} outside");
            assert!(header.len() <= MAX_RANGE_HEADER_LEN);
        }
        RangeSpec::Unsatisfiable => assert!(header.len() <= MAX_RANGE_HEADER_LEN),
        RangeSpec::Full => {}
    }
    assert_eq!(range::parse(None, size), RangeSpec::Full);
}

// ------------------------------------------------------------- media_token --

/// The fixed keys of the token checks (one for JWTs, one for stream URLs,
/// distinct as on a real server).
pub fn stream_tokens() -> &'static StreamTokens {
    static T: OnceLock<StreamTokens> = OnceLock::new();
    T.get_or_init(|| StreamTokens::new(&SymmetricKey::from_bytes([0x5a; 32])))
}

/// See [`stream_tokens`].
pub fn access_tokens() -> &'static AccessTokens {
    static T: OnceLock<AccessTokens> = OnceLock::new();
    T.get_or_init(|| AccessTokens::new(&SymmetricKey::from_bytes([0xa5; 32])))
}

/// "Now" for the stream-token checks (Unix seconds).
pub const NOW: i64 = 1_700_000_000;

/// Media-URL token checks. The input is tried as a stream token (`t=`) and
/// as an access JWT: neither verifier panics, and a stream token verifies
/// only if it is exactly what the server would sign for the grant it
/// carries, unexpired (no malleability, no forgery). The input is also read
/// as a grant (24 bytes), signed, and must round-trip.
pub fn media_token(data: &[u8]) {
    let tokens = stream_tokens();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(g) = tokens.verify(text, NOW) {
            assert_eq!(
                tokens.sign(&g),
                text,
                "accepted a token the server never signed"
            );
            assert!(g.exp >= NOW);
        }
        let _ = access_tokens().verify(text);
    }
    if data.len() >= 24 {
        let num = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i..i + 8]);
            i64::from_be_bytes(b)
        };
        let grant = StreamGrant {
            user_id: num(0),
            item_id: num(8),
            exp: num(16),
        };
        let token = tokens.sign(&grant);
        assert_eq!(token.len(), STREAM_TOKEN_CHARS);
        let back = tokens.verify(&token, NOW);
        assert_eq!(back, (grant.exp >= NOW).then_some(grant));
        // One flipped character never verifies (under the same expiry).
        let flip = data.get(24).map_or(0, |b| usize::from(*b)) % token.len();
        let mut bad = token.into_bytes();
        bad[flip] = if bad[flip] == b'A' { b'B' } else { b'A' };
        if let Ok(bad) = String::from_utf8(bad) {
            assert_eq!(tokens.verify(&bad, grant.exp.min(NOW)), None, "{bad}");
        }
    }
}

// ------------------------------------------------------- ws_client_message --

/// The allowlist of the origin checks.
fn allowed() -> &'static [Origin] {
    static A: OnceLock<Vec<Origin>> = OnceLock::new();
    A.get_or_init(|| origin::allowlist(&[], Some("https://party.example.org/app")))
}

/// The relay step of the server's signaling loop (`ws/conn.rs`, `handle`):
/// what the server forwards for a client message from `me`.
pub fn relayed(msg: ClientMessage, me: UserId) -> Option<(UserId, ServerMessage)> {
    match msg {
        ClientMessage::Offer { to, sdp } => Some((to, ServerMessage::Offer { from: me, sdp })),
        ClientMessage::Answer { to, sdp } => Some((to, ServerMessage::Answer { from: me, sdp })),
        ClientMessage::Ice { to, candidate } => Some((
            to,
            ServerMessage::Ice {
                from: me,
                candidate,
            },
        )),
        _ => None,
    }
}

/// Server side of the signaling WebSocket on arbitrary input: the text is
/// decoded as the server decodes it (`ClientMessage::from_json`), anything
/// it relays re-encodes within the receiver's message limit and decodes on
/// the receiving peer to the same message; the bytes as an `Origin` header
/// pass the CSWSH check only when they equal an allowlisted origin.
pub fn ws_client_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(msg) = ClientMessage::from_json(text)
            && let Ok(me) = UserId::new(u64::MAX >> 11)
            && let Some((_, out)) = relayed(msg, me)
        {
            let json = out.to_json().expect("a relayed message serializes");
            assert!(
                json.len() <= MAX_SIGNAL_MESSAGE_LEN,
                "relayed message of {} bytes exceeds the receiver's limit",
                json.len()
            );
            assert_eq!(ServerMessage::from_json(&json).ok(), Some(out));
        }
        let _ = Origin::parse(text);
        let _ = Origin::of_url(text);
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, value);
        let verdict = origin::check(&headers, allowed());
        let listed = allowed().iter().any(|o| o.as_str().as_bytes() == data);
        assert_eq!(verdict == OriginCheck::Allowed, listed, "{data:?}");
    }
}
