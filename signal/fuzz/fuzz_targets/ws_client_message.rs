//! Fuzz target `ws_client_message`: see `checks::ws_client_message` (shared with the regression test
//! `signal/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ws_client_message(data));
