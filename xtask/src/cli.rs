//! Command-line parsing (std only).

use crate::test::{Selection, Step, TestRun};

/// Printed for `help` and on a usage error.
pub const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup                 install what is missing: wasm32 target, rustfmt/clippy,
                        clang, llvm, chromium, chromium-driver, firefox-esr,
                        nftables, iproute2, wasm-bindgen-cli (same version as
                        Cargo.lock), geckodriver
  test [options]        setup, then every check in order; stops at the first failure
      --only STEP[,..]  run only these steps (setup still runs first)
      --skip STEP[,..]  run all steps but these
      --list            list the steps and exit
      --repeat N        run the whole selection N times in a row (1-10), stopping
                        at the first failure
      --cpu-hog         keep every core busy (one spinning thread per core) for the
                        whole run: proves the tests hold on a loaded CI machine
  soak [--minutes N]    long hardening run in a private netns: 50 kill -9 cycles,
                        load (200 rooms x 8 + 50 hostile) for N minutes (default 10),
                        sync under the full loss/delay grid and a partition
  fuzz [options]        every cargo-fuzz target (nightly), then execs/coverage/crashes
      --seconds N       per target (default 60); a crash fails and is kept as a
                        regression input under <crate>/fuzz/regressions/
      --only T[,..]     only these targets
  demo                  setup, build the browser bundle and the server, create demo
                        users and clips under target/demo, serve on 127.0.0.1:8080
  bench [--quick]       benchmarks (release): control latency, connect time, sync,
                        micro, server capacity vs matchbox_server, accounts;
                        writes target/bench/results.json and docs/benchmarks.md
                        (--quick: under 3 min, report in target/bench/)
      --only S[,..]     sections: rooms, grid, micro, capacity, accounts, browser
                        (measured inside a private netns; grid: loss/delay)
  help                  this text

steps: fmt, clippy, clippy-wasm, deny, native, wasm, e2e
       (native, wasm and e2e run inside a private network namespace)";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
    /// `cargo xtask setup`.
    Setup,
    /// `cargo xtask test`.
    Test(TestRun),
    /// Internal: run network-namespace steps (we are already inside it).
    InNetns(Selection),
    /// `cargo xtask demo`.
    Demo,
    /// `cargo xtask fuzz`.
    Fuzz(crate::fuzz::FuzzArgs),
    /// `cargo xtask soak --minutes N`.
    Soak(u32),
    /// Internal: the soak inside the namespace.
    InNetnsSoak(u32),
}

/// Name of the internal subcommand `netns::outer` re-executes us with.
pub const IN_NETNS: &str = "__in-netns";

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err("missing command".to_owned());
    };
    match first.as_str() {
        "help" | "--help" | "-h" => no_more(rest).map(|()| Command::Help),
        "setup" => no_more(rest).map(|()| Command::Setup),
        "demo" => no_more(rest).map(|()| Command::Demo),
        "test" => parse_test(rest).map(Command::Test),
        "fuzz" => crate::fuzz::parse_args(rest).map(Command::Fuzz),
        IN_NETNS => parse_test(rest).and_then(|run| {
            if run == TestRun::once(run.selection.clone()) {
                Ok(Command::InNetns(run.selection))
            } else {
                Err("the internal netns command takes only a selection".to_owned())
            }
        }),
        "soak" => crate::soak::parse_minutes(rest).map(Command::Soak),
        crate::soak::IN_NETNS_SOAK => rest
            .first()
            .and_then(|m| m.parse().ok())
            .map(Command::InNetnsSoak)
            .ok_or_else(|| "internal soak command needs minutes".to_owned()),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn no_more(rest: &[String]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(format!("unexpected argument `{arg}`")),
    }
}

fn parse_test(args: &[String]) -> Result<TestRun, String> {
    let mut only: Option<Vec<Step>> = None;
    let mut skip: Vec<Step> = Vec::new();
    let mut repeat = 1;
    let mut cpu_hog = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        match flag {
            "--list" if inline.is_none() => {
                for step in Step::ALL {
                    println!("{:<12} {}", step.name(), step.describe());
                }
                std::process::exit(0);
            }
            "--cpu-hog" if inline.is_none() => cpu_hog = true,
            "--repeat" => {
                let value = match inline {
                    Some(value) => value,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| "`--repeat` needs a number".to_owned())?,
                };
                repeat = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=crate::test::MAX_REPEAT).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "`--repeat` takes a number from 1 to {}, not `{value}`",
                            crate::test::MAX_REPEAT
                        )
                    })?;
            }
            "--only" | "--skip" => {
                let value = match inline {
                    Some(value) => value,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("`{flag}` needs a list of steps"))?,
                };
                let steps = parse_steps(&value)?;
                if flag == "--only" {
                    only.get_or_insert_with(Vec::new).extend(steps);
                } else {
                    skip.extend(steps);
                }
            }
            _ => return Err(format!("unknown option `{arg}` for `test`")),
        }
    }
    Ok(TestRun {
        selection: Selection::new(only.as_deref(), &skip),
        repeat,
        cpu_hog,
    })
}

fn parse_steps(list: &str) -> Result<Vec<Step>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|name| {
            Step::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
                format!("unknown step `{name}` (steps: {})", known.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_commands() {
        assert_eq!(parse(&args(&["setup"])), Ok(Command::Setup));
        assert_eq!(parse(&args(&["demo"])), Ok(Command::Demo));
        assert_eq!(parse(&args(&["help"])), Ok(Command::Help));
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["setup", "x"])).is_err());
        assert!(parse(&args(&["bogus"])).is_err());
    }

    #[test]
    fn test_defaults_to_every_step() {
        let Ok(Command::Test(run)) = parse(&args(&["test"])) else {
            panic!("test parses");
        };
        assert_eq!(run.selection.steps(), Step::ALL.to_vec());
        assert_eq!((run.repeat, run.cpu_hog), (1, false));
    }

    #[test]
    fn only_and_skip() {
        let Ok(Command::Test(run)) = parse(&args(&["test", "--only", "wasm,fmt"])) else {
            panic!("parses");
        };
        // Always in pipeline order, whatever the order given.
        assert_eq!(run.selection.steps(), vec![Step::Fmt, Step::Wasm]);

        let Ok(Command::Test(run)) = parse(&args(&["test", "--skip=e2e", "--skip", "clippy"]))
        else {
            panic!("parses");
        };
        assert_eq!(
            run.selection.steps(),
            vec![
                Step::Fmt,
                Step::ClippyWasm,
                Step::Deny,
                Step::Native,
                Step::Wasm
            ]
        );
    }

    #[test]
    fn repeat_and_cpu_hog() {
        let Ok(Command::Test(run)) = parse(&args(&["test", "--repeat", "3", "--cpu-hog"])) else {
            panic!("parses");
        };
        assert_eq!((run.repeat, run.cpu_hog), (3, true));
        let Ok(Command::Test(run)) = parse(&args(&["test", "--repeat=10"])) else {
            panic!("parses");
        };
        assert_eq!(run.repeat, 10);
        for bad in ["0", "11", "x", "-1"] {
            assert!(parse(&args(&["test", "--repeat", bad])).is_err(), "{bad}");
        }
        assert!(parse(&args(&["test", "--repeat"])).is_err());
        assert!(parse(&args(&["test", "--cpu-hog=1"])).is_err());
        assert!(parse(&args(&[IN_NETNS, "--repeat", "2"])).is_err());
    }

    #[test]
    fn bad_step_names_are_refused() {
        assert!(parse(&args(&["test", "--only", "wasm,nope"])).is_err());
        assert!(parse(&args(&["test", "--only"])).is_err());
        assert!(parse(&args(&["test", "--frobnicate"])).is_err());
    }
}
