//! Shared helpers for watchparty whole-system tests.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod acoustic;
pub mod impair;
