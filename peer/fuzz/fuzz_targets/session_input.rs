//! Fuzz target `session_input`: see `checks::session_input` (shared with the regression test
//! `peer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::session_input(data));
