//! The pipeline's guard against hidden dependencies.
//!
//! A developer's machine (and CI, which runs on it) has caches a newcomer's
//! machine lacks: downloaded crates, `cargo install`ed tools, Debian packages
//! installed by hand. A step that silently relies on one of them passes here
//! and fails on a fresh machine. So, after `setup` and `cargo fetch`, and
//! before the first step, [`check`] verifies that everything the selected
//! steps will call is present, and fails at once — naming what is missing
//! and the command that provides it — instead of letting a step fail halfway
//! (or, worse, download something on the fly). The steps themselves then run
//! with `CARGO_NET_OFFLINE=true` ([`OFFLINE_ENV`]), so a crate that the fetch
//! missed is an error, never a silent download.
//!
//! What a step needs is derived from the commands it runs (their programs
//! and cargo subcommands) plus the programs its tests start
//! ([`test_programs`]). The unit tests below check the other direction:
//! every such need is something `setup` installs, and every program that
//! the workspace's code starts by name is one `setup` installs or one that
//! every Debian system has.

use std::ffi::OsStr;
use std::path::Path;

use crate::run::{Cmd, Failure, cargo_program, find_program};
use crate::test::Step;

/// Environment for every step command: no cargo command in the pipeline
/// may reach the network (everything was fetched before the first step).
pub const OFFLINE_ENV: (&str, &str) = ("CARGO_NET_OFFLINE", "true");

/// The command that fills the local registry with every crate of
/// `Cargo.lock`, for all platforms (what `cargo metadata`, and so
/// cargo-deny, reads).
pub const FETCH_COMMAND: &str = "cargo fetch --locked";

/// Cargo subcommands that come with cargo itself.
const CARGO_BUILTINS: [&str; 5] = ["build", "test", "fetch", "metadata", "install"];

/// Cargo subcommands that are rustup components (checked by `setup`).
const RUSTUP_COMPONENTS: [(&str, &str); 2] = [("fmt", "rustfmt"), ("clippy", "clippy")];

#[cfg(test)]
/// Programs every Debian system has (coreutils, util-linux, procps, gzip,
/// the shell): tests may start them without `setup` naming them.
pub const BASE_PROGRAMS: [&str; 8] = [
    "sh", "date", "kill", "mkfifo", "gzip", "sleep", "true", "nsenter",
];

/// Something a step needs that may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A program, by name (looked up on `PATH`) or absolute path.
    Program(String),
    /// `cargo <sub>`, a cargo subcommand.
    CargoSub(String),
}

impl Need {
    fn present(&self) -> bool {
        match self {
            Self::Program(p) if p.starts_with('/') => Path::new(p).is_file(),
            Self::Program(p) => find_program(p).is_some(),
            Self::CargoSub(sub) if CARGO_BUILTINS.contains(&sub.as_str()) => true,
            Self::CargoSub(sub) => Cmd::cargo().args([sub, "--version"]).probe().is_some(),
        }
    }

    /// What provides it, for the error message.
    fn provider(&self) -> String {
        match self {
            Self::CargoSub(sub) => {
                if let Some((_, component)) = RUSTUP_COMPONENTS.iter().find(|(s, _)| s == sub) {
                    return format!(
                        "the rustup component {component}: rustup component add {component}"
                    );
                }
                match crate::hygiene::crate_for_sub(sub) {
                    Some(krate) => format!("the crate {krate}: cargo install --locked {krate}"),
                    None => "nothing in setup".to_owned(),
                }
            }
            Self::Program(p) => {
                if let Some(package) = crate::setup::package_for(p) {
                    return format!("the Debian package {package}: apt-get install {package}");
                }
                if crate::setup::WASM_BINDGEN_PROGRAMS.contains(&p.as_str()) {
                    return "wasm-bindgen-cli at the version in Cargo.lock: cargo xtask setup"
                        .to_owned();
                }
                if p == crate::setup::GECKODRIVER {
                    return format!(
                        "the crate geckodriver {}: cargo xtask setup",
                        crate::setup::GECKODRIVER_VERSION
                    );
                }
                if is_api_fuzzer(p) {
                    return "the API fuzzer's Python virtualenv (schemathesis, pinned in \
                            xtask/api-fuzzer-requirements.txt): cargo xtask setup"
                        .to_owned();
                }
                "nothing in setup".to_owned()
            }
        }
    }

    /// Whether `cargo xtask setup` installs (or checks) it.
    pub fn provided_by_setup(&self) -> bool {
        match self {
            Self::CargoSub(sub) => {
                CARGO_BUILTINS.contains(&sub.as_str())
                    || RUSTUP_COMPONENTS.iter().any(|(s, _)| s == sub)
                    || crate::hygiene::crate_for_sub(sub).is_some()
            }
            Self::Program(p) => {
                crate::setup::package_for(p).is_some()
                    || crate::setup::WASM_BINDGEN_PROGRAMS.contains(&p.as_str())
                    || p == crate::setup::GECKODRIVER
                    || is_api_fuzzer(p)
            }
        }
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Program(p) => write!(f, "`{p}`"),
            Self::CargoSub(sub) => write!(f, "`cargo {sub}`"),
        }
    }
}

/// Whether `program` is the schemathesis of setup's virtualenv.
fn is_api_fuzzer(program: &str) -> bool {
    Path::new(program) == crate::venv::schemathesis()
}

/// The need behind one command: its cargo subcommand, or its program.
fn need_of(cmd: &Cmd) -> Need {
    if cmd.program() == cargo_program().as_os_str() {
        let sub = cmd
            .first_arg()
            .map(OsStr::to_string_lossy)
            .unwrap_or_default();
        return Need::CargoSub(sub.into_owned());
    }
    Need::Program(cmd.program().to_string_lossy().into_owned())
}

/// Programs a step's tests start (beyond the commands the step runs).
pub fn test_programs(step: Step) -> &'static [&'static str] {
    use crate::setup::{CHROMEDRIVER, CHROMIUM, EMOJI_FONT, FIREFOX, GECKODRIVER};
    match step {
        Step::Fmt | Step::Clippy | Step::ClippyWasm | Step::Deny => &[],
        // The isolated steps run under `unshare`, configured with `ip`; the
        // native tests drive mpv on clips made by ffmpeg; the whole-system
        // tests also drop packets with nft, build NAT routers in nested
        // namespaces (`nsenter`, util-linux like `unshare`), relay through
        // coturn (`turnserver`), and the acoustic test records the players
        // through its own PulseAudio daemon (`pulseaudio`, `parec`; Xvfb
        // only when asked for, so not required).
        Step::Native => &["unshare", "ip", "mpv", "ffmpeg"],
        Step::Wasm => &[
            "unshare",
            "ip",
            "wasm-bindgen-test-runner",
            CHROMIUM,
            CHROMEDRIVER,
            FIREFOX,
            GECKODRIVER,
        ],
        Step::E2e => &[
            "unshare",
            "ip",
            "nft",
            "turnserver",
            "mpv",
            "ffmpeg",
            "pulseaudio",
            "parec",
            CHROMIUM,
            CHROMEDRIVER,
            FIREFOX,
            GECKODRIVER,
            // Not a program: the font the pages' symbols and the
            // screenshots need (a file, checked like one).
            EMOJI_FONT,
        ],
    }
}

/// Everything `step` needs, without duplicates.
pub fn needs(step: Step) -> Vec<Need> {
    let mut needs: Vec<Need> = step.commands().iter().map(need_of).collect();
    needs.extend(
        test_programs(step)
            .iter()
            .map(|p| Need::Program((*p).to_owned())),
    );
    if step == Step::Native {
        // signal/tests/openapi_fuzz.rs runs the API fuzzer.
        needs.push(Need::Program(
            crate::venv::schemathesis().to_string_lossy().into_owned(),
        ));
    }
    let mut unique = Vec::new();
    for need in needs {
        if !unique.contains(&need) {
            unique.push(need);
        }
    }
    unique
}

/// Fails, naming each missing piece and what provides it, when a selected
/// step needs something that is not installed or a crate of `Cargo.lock`
/// that is not in the local registry.
pub fn check(steps: &[Step]) -> Result<(), Failure> {
    let mut missing = Vec::new();
    for &step in steps {
        for need in needs(step) {
            if !need.provided_by_setup() {
                // Present here perhaps, but installed by hand: a fresh
                // machine would not have it.
                missing.push(format!(
                    "step `{}` needs {need}, which `cargo xtask setup` does not install",
                    step.name()
                ));
            } else if !need.present() {
                missing.push(format!(
                    "step `{}` needs {need}, provided by {}",
                    step.name(),
                    need.provider()
                ));
            }
        }
    }
    let uses_cargo = steps
        .iter()
        .any(|&s| needs(s).iter().any(|n| matches!(n, Need::CargoSub(_))));
    if uses_cargo
        && Cmd::cargo()
            .args(["metadata", "--locked", "--offline", "--format-version", "1"])
            .probe()
            .is_none()
    {
        missing.push(format!(
            "the local cargo registry lacks crates of Cargo.lock (cargo metadata --offline \
             fails), provided by `{FETCH_COMMAND}`"
        ));
    }
    if missing.is_empty() {
        println!("preflight: ok — every tool and crate the selected steps need is present");
        return Ok(());
    }
    Err(Failure::new(format!(
        "preflight: the pipeline would need something it did not install:\n  - {}\n\
         `cargo xtask setup` should have installed it; run the command named above. If setup \
         reports everything present, setup's lists (xtask/src/setup.rs, xtask/src/hygiene.rs, \
         xtask/src/venv.rs) \
         lack it: add it there.",
        missing.join("\n  - ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::root;

    #[test]
    fn every_step_needs_only_what_setup_provides() {
        for step in Step::ALL {
            for need in needs(step) {
                assert!(
                    need.provided_by_setup(),
                    "step `{}` needs {need}, which `cargo xtask setup` does not install",
                    step.name()
                );
            }
        }
    }

    #[test]
    fn a_need_setup_does_not_know_is_reported() {
        assert!(!Need::Program("wasm-opt".to_owned()).provided_by_setup());
        assert!(!Need::CargoSub("nextest".to_owned()).provided_by_setup());
        assert!(Need::CargoSub("deny".to_owned()).provided_by_setup());
        assert!(Need::Program("mpv".to_owned()).provided_by_setup());
    }

    #[test]
    fn a_missing_tool_fails_the_check_with_its_provider() {
        let need = Need::Program("/nonexistent/watchparty-tool".to_owned());
        assert!(!need.present());
        assert_eq!(need.provider(), "nothing in setup");
        let deny = Need::CargoSub("deny".to_owned());
        assert_eq!(
            deny.provider(),
            "the crate cargo-deny: cargo install --locked cargo-deny"
        );
    }

    #[test]
    fn the_native_step_is_checked_for_the_api_fuzzer() {
        let fuzzer = Need::Program(crate::venv::schemathesis().to_string_lossy().into_owned());
        assert!(needs(Step::Native).contains(&fuzzer));
        assert!(fuzzer.provided_by_setup());
        assert!(fuzzer.provider().contains("cargo xtask setup"));
        assert_eq!(
            crate::setup::package_for(crate::venv::PYTHON),
            Some("python3-venv")
        );
    }

    #[test]
    fn the_deny_step_is_checked_for_cargo_deny() {
        assert!(needs(Step::Deny).contains(&Need::CargoSub("deny".to_owned())));
        assert!(needs(Step::Wasm).contains(&Need::Program(crate::setup::CHROMIUM.to_owned())));
    }

    #[test]
    fn the_browser_steps_are_checked_for_firefox_and_geckodriver() {
        for step in [Step::Wasm, Step::E2e] {
            let needs = needs(step);
            for program in [crate::setup::FIREFOX, crate::setup::GECKODRIVER] {
                let need = Need::Program(program.to_owned());
                assert!(needs.contains(&need), "step `{}` needs {need}", step.name());
                assert!(need.provided_by_setup());
            }
        }
        assert!(
            Need::Program(crate::setup::GECKODRIVER.to_owned())
                .provider()
                .contains("cargo xtask setup")
        );
    }

    /// Every program the workspace's code starts by a literal name
    /// (`Command::new("…")`) is installed by setup or part of every Debian
    /// system: a test that starts, say, `pulseaudio` must come with the
    /// package in setup's list.
    #[test]
    fn programs_started_by_the_workspace_are_installed_by_setup() {
        let mut found = Vec::new();
        for dir in ["signal", "peer", "wasm-peer", "tests", "bench"] {
            collect_started_programs(&root().join(dir), &mut found);
        }
        assert!(
            found.iter().any(|(_, p)| p == "ffmpeg"),
            "the scan found no program at all: {found:?}"
        );
        for (file, program) in found {
            let need = Need::Program(program.clone());
            assert!(
                need.provided_by_setup() || BASE_PROGRAMS.contains(&program.as_str()),
                "{file} starts `{program}`, which `cargo xtask setup` does not install: add its \
                 Debian package to SYSTEM_TOOLS in xtask/src/setup.rs"
            );
        }
    }

    fn collect_started_programs(dir: &Path, found: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    collect_started_programs(&path, found);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in text.split("Command::new(\"").skip(1) {
                if let Some(program) = piece.split('"').next() {
                    found.push((path.display().to_string(), program.to_owned()));
                }
            }
        }
    }
}
