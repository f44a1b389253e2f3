//! Fuzz target `frame_decode`: see `checks::frame_decode` (shared with the regression test
//! `peer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frame_decode(data));
