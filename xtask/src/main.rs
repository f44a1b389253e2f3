//! `cargo xtask`: orchestration for watchparty.
//!
//! * `cargo xtask setup` — install what the build and tests need, only what
//!   is missing (see [`setup`]).
//! * `cargo xtask test` — every check, in order, stopping at the first
//!   failure (see [`test`]).
//! * `cargo xtask soak --minutes N` — long hardening run (see [`soak`]).
//! * `cargo xtask fuzz --seconds N` — every fuzz target for N seconds (see
//!   [`fuzz`]).
//! * `cargo xtask bench [--quick]` — benchmarks (measured inside a private
//!   network namespace), report in `docs/benchmarks.md` (see [`bench`]).
//! * `cargo xtask demo` — build everything and serve a demo on
//!   127.0.0.1:8080 with demo users and clips (see [`demo`]).
//!
//! Dependency-free on purpose: it must build in seconds on a fresh clone.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod bench;
mod cli;
mod demo;
mod fuzz;
mod hygiene;
mod netns;
mod preflight;
mod run;
mod setup;
mod soak;
mod test;
mod venv;
mod web;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.first().map(String::as_str);
    if bench.is_some_and(|a| a == "bench" || a == bench::IN_NETNS_BENCH) {
        let result = if bench == Some(bench::IN_NETNS_BENCH) {
            bench::inner(&args[1..])
        } else {
            bench::parse(&args[1..])
                .map_err(run::Failure::new)
                .and_then(|o| bench::run(&o))
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("\nxtask: {failure}");
                ExitCode::FAILURE
            }
        };
    }
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Command::Setup => setup::run().map(drop),
        Command::Test(run) => test::run_repeated(&run),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::InNetns(selection) => netns::inner(&selection),
        Command::Soak(minutes) => soak::run(minutes),
        Command::InNetnsSoak(minutes) => soak::inner(minutes),
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("\nxtask: {failure}");
            ExitCode::FAILURE
        }
    }
}
