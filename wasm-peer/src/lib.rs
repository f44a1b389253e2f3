//! watchparty browser peer.
//!
//! - [`api`]: the JavaScript API (`RoomClient`), see `/work/js-api.md`.
//! - [`room`]: the driver around the sans-I/O room session (signaling,
//!   negotiation, data channels, player, timers).
//! - [`signal`]: the signaling WebSocket; [`http`]: the few REST calls.
//! - [`player`]: the `HTMLMediaElement` adapter.
//! - [`rtc`]: thin, owned wrappers around `RTCPeerConnection` and
//!   pre-negotiated `RTCDataChannel`s whose ids come from the protocol core
//!   ([`watchparty_peer::channels`]).
//! - [`clock`], [`timer`]: `performance.now()` as the core's local time;
//!   `setTimeout` futures.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
pub mod clock;
pub mod error;
pub mod http;
pub mod player;
pub mod room;
pub mod rtc;
pub mod signal;
pub mod timer;

pub use error::RtcError;
