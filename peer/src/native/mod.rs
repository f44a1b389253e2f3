//! Native driver pieces (feature `native`): the str0m WebRTC transport.
//!
//! - [`rtc`]: the sans-I/O transport, many peer connections on one socket.
//! - [`udp`]: the thin tokio wrapper that owns the UDP socket and timers.
//! - [`candidates`]: which local addresses are announced as host candidates.
//! - [`relay`]: STUN (server-reflexive) and TURN (relayed) candidates and the
//!   relayed data path, sans I/O.
//! - [`fingerprint`]: DTLS fingerprints for the signed-SDP binding.
//! - [`player`]: player backends (virtual, mpv) for the driver.
//! - [`driver`]: the tokio task around the room `Session` (signaling, WebRTC,
//!   player, user commands, timers); [`signal_client`], [`api_client`],
//!   [`backoff`], [`config_store`] are its parts.

pub mod api_client;
pub mod backoff;
pub mod candidates;
pub mod config_store;
pub mod driver;
pub mod fingerprint;
pub mod player;
pub mod relay;
pub mod rtc;
pub mod signal_client;
mod str0m_log;
pub mod udp;

#[cfg(test)]
mod tests;
