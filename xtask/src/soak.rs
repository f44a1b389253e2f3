//! `cargo xtask soak --minutes N`: the long versions of the hardening tests,
//! inside the private network namespace (see [`crate::netns`]):
//!
//! 1. crash safety — [`CRASH_CYCLES`] kill -9 cycles of the server binary
//!    during write load (`signal/tests/crash.rs`);
//! 2. load and soak — [`SOAK_ROOMS`] rooms × [`SOAK_MEMBERS`] members plus
//!    [`SOAK_HOSTILE`] hostile clients for N minutes in [`SOAK_ROUNDS`]
//!    rounds against the server binary, built with `--release` as it is
//!    deployed (`signal/tests/soak.rs`; summary JSON under
//!    `target/soak/`). The hostile clients include throttle filling (bogus
//!    refreshes, each from a new address) and slow bodies (declared request
//!    bodies never sent, more per address than its connection cap); the
//!    summary ends with whether legitimate traffic kept working;
//! 3. sync under network impairment — the full loss/delay grid and the
//!    partition (`tests/tests/impairment.rs`, including the ignored grid).
//!
//! The default `cargo xtask test` runs the same tests at small scale.

use crate::netns;
use crate::run::{Cmd, Failure};

/// Name of the internal subcommand run inside the namespace.
pub const IN_NETNS_SOAK: &str = "__in-netns-soak";
/// Kill/restart cycles of the crash test.
pub const CRASH_CYCLES: u32 = 50;
/// Rooms of the load driver.
pub const SOAK_ROOMS: u32 = 200;
/// Members per room (host included).
pub const SOAK_MEMBERS: u32 = 8;
/// Hostile clients.
pub const SOAK_HOSTILE: u32 = 50;
/// A guest stays connected 1–2 × this long per session (ms) before it
/// leaves and rejoins.
pub const SOAK_STAY_MS: u32 = 10_000;
/// The load time is split into this many rounds; all clients leave between
/// rounds and the server's RSS is read (a leak grows from round to round).
pub const SOAK_ROUNDS: u32 = 3;
/// Default soak length.
pub const DEFAULT_MINUTES: u32 = 10;
/// Longest soak accepted (the namespace's time limit is 120 minutes).
pub const MAX_MINUTES: u32 = 90;

/// `cargo xtask soak --minutes N`: fetch, then everything in the namespace.
pub fn run(minutes: u32) -> Result<(), Failure> {
    println!("==> fetching dependencies, so the soak can build offline");
    Cmd::cargo().args(["fetch"]).run()?;
    netns::reexec(&[IN_NETNS_SOAK.to_owned(), minutes.to_string()])
}

/// Inside the namespace.
pub fn inner(minutes: u32) -> Result<(), Failure> {
    netns::enter()?;
    let env = |cmd: Cmd| {
        netns::NETNS_ENV
            .iter()
            .fold(cmd, |cmd, (key, value)| cmd.env(key, value))
    };
    println!("\n==> soak 1/3: crash safety, {CRASH_CYCLES} kill -9 cycles");
    env(Cmd::cargo())
        .args([
            "test",
            "--offline",
            "-p",
            "watchparty-signal",
            "--test",
            "crash",
        ])
        .args(["--", "--nocapture"])
        .env("WATCHPARTY_CRASH_CYCLES", CRASH_CYCLES.to_string())
        .run()?;
    println!(
        "\n==> soak 2/3: load (release build), {SOAK_ROOMS} rooms × {SOAK_MEMBERS} members + \
         {SOAK_HOSTILE} hostile clients (junk, guessing, slowloris, throttle filling, slow \
         bodies) for {minutes} min in {SOAK_ROUNDS} rounds"
    );
    env(Cmd::cargo())
        .args([
            "test",
            "--offline",
            "--release",
            "-p",
            "watchparty-signal",
            "--test",
            "soak",
        ])
        .args(["--", "--nocapture"])
        .env(
            "WATCHPARTY_SOAK_SECS",
            (u64::from(minutes) * 60).to_string(),
        )
        .env("WATCHPARTY_SOAK_ROOMS", SOAK_ROOMS.to_string())
        .env("WATCHPARTY_SOAK_MEMBERS", SOAK_MEMBERS.to_string())
        .env("WATCHPARTY_SOAK_HOSTILE", SOAK_HOSTILE.to_string())
        .env("WATCHPARTY_SOAK_STAY_MS", SOAK_STAY_MS.to_string())
        .env("WATCHPARTY_SOAK_ROUNDS", SOAK_ROUNDS.to_string())
        .run()?;
    println!("\n==> soak 3/3: sync under loss, delay/jitter and partition (full grid)");
    env(Cmd::cargo())
        .args([
            "test",
            "--offline",
            "-p",
            "watchparty-e2e",
            "--test",
            "impairment",
        ])
        .args([
            "--",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .run()?;
    println!("\nxtask soak: OK");
    Ok(())
}

/// Parses `--minutes N` (also `--minutes=N`).
pub fn parse_minutes(args: &[String]) -> Result<u32, String> {
    let mut minutes = DEFAULT_MINUTES;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.split_once('=') {
            Some(("--minutes", v)) => v.to_owned(),
            None if arg == "--minutes" => iter
                .next()
                .cloned()
                .ok_or_else(|| "`--minutes` needs a number".to_owned())?,
            _ => return Err(format!("unknown option `{arg}` for `soak`")),
        };
        minutes = value
            .parse()
            .ok()
            .filter(|m| (1..=MAX_MINUTES).contains(m))
            .ok_or_else(|| format!("`--minutes` must be 1..={MAX_MINUTES}, got `{value}`"))?;
    }
    Ok(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn minutes() {
        assert_eq!(parse_minutes(&[]), Ok(DEFAULT_MINUTES));
        assert_eq!(parse_minutes(&args(&["--minutes", "3"])), Ok(3));
        assert_eq!(parse_minutes(&args(&["--minutes=7"])), Ok(7));
        assert!(parse_minutes(&args(&["--minutes", "0"])).is_err());
        assert!(parse_minutes(&args(&["--minutes", "91"])).is_err());
        assert!(parse_minutes(&args(&["--minutes"])).is_err());
        assert!(parse_minutes(&args(&["--hours", "1"])).is_err());
    }
}
