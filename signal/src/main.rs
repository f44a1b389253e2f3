//! `watchparty-signal` binary.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

fn main() -> std::process::ExitCode {
    watchparty_signal::cli::main()
}
