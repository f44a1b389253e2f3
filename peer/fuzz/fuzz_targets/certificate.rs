//! Fuzz target `certificate`: see `checks::certificate` (shared with the regression test
//! `peer/tests/fuzz_corpus.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::certificate(data));
