//! Fuzz target `media_token`: see `checks::media_token` (shared with the regression test
//! `signal/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::media_token(data));
