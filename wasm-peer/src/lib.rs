//! watchparty browser peer.
//!
//! For now this crate holds the browser WebRTC layer ([`rtc`]): thin, owned
//! wrappers around `RTCPeerConnection` and pre-negotiated `RTCDataChannel`s
//! whose ids come from the protocol core ([`watchparty_peer::channels`]).
//! The WebSocket signaling client, the JS-facing API and the web page arrive
//! with the server and web app.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod error;
pub mod rtc;
pub mod timer;

pub use error::RtcError;
