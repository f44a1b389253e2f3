//! Fuzz target `range_header`: see `checks::range_header` (shared with the regression test
//! `signal/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::range_header(data));
