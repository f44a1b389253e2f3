//! watchparty signaling server: accounts, media access, rooms and the WebRTC
//! signaling relay ([`ws`]).
//!
//! Entry points: [`app`] builds the axum router for an [`AppState`];
//! [`server::run`] is `watchparty-signal serve`; [`cli`] holds the admin
//! sub-commands. See docs/api.md and docs/operations.md.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod db;
pub mod error;
pub mod keys;
pub mod listen;
pub mod media;
pub mod password;
pub mod request_body;
pub mod rooms;
pub mod server;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod validate;
pub mod web;
pub mod ws;

pub use api::app;
pub use config::Config;
pub use state::AppState;
