//! Native driver pieces (feature `native`): the str0m WebRTC transport.
//!
//! - [`rtc`]: the sans-I/O transport, many peer connections on one socket.
//! - [`udp`]: the thin tokio wrapper that owns the UDP socket and timers.
//! - [`candidates`]: which local addresses are announced as host candidates.
//! - [`fingerprint`]: DTLS fingerprints for the signed-SDP binding.
//! - [`player`]: player backends (virtual, mpv) for the driver.

pub mod candidates;
pub mod fingerprint;
pub mod player;
pub mod rtc;
pub mod udp;

#[cfg(test)]
mod tests;
