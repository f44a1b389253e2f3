//! Browser WebRTC: one [`PeerConnection`] per remote peer, carrying the
//! pre-negotiated [`DataChannel`]s listed in [`watchparty_peer::channels`].
//!
//! Every event handler handed to the browser is a Rust closure owned by the
//! wrapper that installed it; dropping the wrapper detaches the handler and
//! then frees the closure (nothing is leaked with `Closure::forget`).

mod data_channel;
mod peer_connection;

pub use data_channel::{DataChannel, DropCounts, MAX_FRAME_BYTES, MAX_INBOX_FRAMES};
pub use peer_connection::{
    ConnectionState, IceCandidate, IceServer, MAX_ICE_SERVERS, MAX_PENDING_REMOTE_CANDIDATES,
    PeerConnection, SdpKind, SessionDescription, combine_ice_servers,
};
