//! `cargo xtask`: orchestration for watchparty.
//!
//! * `cargo xtask setup` — install what the build and tests need, only what
//!   is missing (see [`setup`]).
//! * `cargo xtask test` — every check, in order, stopping at the first
//!   failure (see [`test`]).
//! * `cargo xtask demo` — planned: arrives with the server and web app.
//!
//! Dependency-free on purpose: it must build in seconds on a fresh clone.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;
mod netns;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        Command::Test(selection) => test::run(&selection),
        Command::InNetns(selection) => netns::inner(&selection),
        Command::Demo => Err(run::Failure::new(
            "the demo is not available yet: it arrives with the signaling server and the web \
             app (`cargo xtask demo` will then start a server, a browser peer and a native \
             peer). Until then, `cargo xtask test` is the way to exercise the project.",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("\nxtask: {failure}");
            ExitCode::FAILURE
        }
    }
}
