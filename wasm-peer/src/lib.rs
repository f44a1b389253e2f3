//! watchparty browser peer.
