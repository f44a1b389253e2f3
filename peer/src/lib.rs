//! watchparty protocol core.
//!
//! Sans-I/O: every input carries `now` explicitly and every output is polled
//! out. Nothing in this crate (outside the `native` feature) reads a clock,
//! opens a socket, spawns a task or takes a lock.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod acceptance;
pub mod admit;
pub mod backoff;
pub mod cert;
pub mod channels;
pub mod clock;
mod codec;
pub mod correction;
pub mod crypto;
pub mod frame;
pub mod ice;
pub mod ids;
pub mod message;
#[cfg(feature = "native")]
pub mod native;
pub mod negotiation;
pub mod player;
pub mod prng;
pub mod sdp;
pub mod session;
pub mod signaling;
pub mod sim;
pub mod sync;
pub mod sync_config;
pub mod time;
pub mod timeline;
pub mod virtual_player;
