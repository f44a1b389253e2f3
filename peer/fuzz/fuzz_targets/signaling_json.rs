//! Fuzz target `signaling_json`: see `checks::signaling_json` (shared with the regression test
//! `peer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::signaling_json(data));
