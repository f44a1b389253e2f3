//! Shared helpers for watchparty whole-system tests.
#![forbid(unsafe_code)]
