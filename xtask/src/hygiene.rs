//! Dependency hygiene: the `deny` step of `cargo xtask test` and the tools
//! it needs.
//!
//! * `cargo deny --offline check bans licenses sources` with `deny.toml`
//!   (licence allow-list, banned crates, crates.io as the only source).
//!   Needs no network: `--offline` keeps `cargo metadata` off the network and
//!   these three checks never fetch anything.
//! * When [`ADVISORY_DB_ENV`] names a local checkout of the RustSec advisory
//!   database (<https://github.com/rustsec/advisory-db>), also
//!   `cargo audit --no-fetch --db DIR` (nothing is fetched: the checkout is
//!   updated by whoever provides it). Ignored advisories, each with its
//!   reason, live in `.cargo/audit.toml`.
//!
//! Tools are installed with `cargo install --locked` (without `--locked`,
//! a dependency of cargo-audit 0.22 asks for a newer rustc).

use std::path::PathBuf;

use crate::run::{Cmd, Failure};

/// Environment variable naming a local RustSec advisory-db checkout; when
/// set, the `deny` step also runs `cargo audit` against it.
pub const ADVISORY_DB_ENV: &str = "WATCHPARTY_ADVISORY_DB";

/// A cargo subcommand installed from crates.io.
struct CargoTool {
    /// `cargo <sub>`.
    sub: &'static str,
    /// The crate to install.
    krate: &'static str,
    /// Needed only when this holds.
    needed: fn() -> bool,
}

const CARGO_TOOLS: &[CargoTool] = &[
    CargoTool {
        sub: "deny",
        krate: "cargo-deny",
        needed: || true,
    },
    CargoTool {
        sub: "audit",
        krate: "cargo-audit",
        needed: || advisory_db().is_some(),
    },
];

/// The crate that provides `cargo <sub>`, when it is one of the tools
/// setup installs.
pub fn crate_for_sub(sub: &str) -> Option<&'static str> {
    CARGO_TOOLS.iter().find(|t| t.sub == sub).map(|t| t.krate)
}

/// The advisory database directory, when [`ADVISORY_DB_ENV`] is set and
/// not empty.
pub fn advisory_db() -> Option<PathBuf> {
    std::env::var_os(ADVISORY_DB_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Installs the cargo tools that are needed and missing; `true` when
/// something was installed.
pub fn install_tools() -> Result<bool, Failure> {
    let mut installed = false;
    for tool in CARGO_TOOLS.iter().filter(|t| (t.needed)()) {
        let present = || Cmd::cargo().args([tool.sub, "--version"]).probe().is_some();
        if present() {
            println!("setup: ok       {}", tool.krate);
            continue;
        }
        println!(
            "setup: missing  {}: installing (cargo install --locked; a few minutes)",
            tool.krate
        );
        crate::setup::cargo_install()
            .args(["--locked", tool.krate])
            .run()?;
        if !present() {
            return Err(Failure::new(format!(
                "{} was installed but `cargo {} --version` fails; is ~/.cargo/bin on PATH?",
                tool.krate, tool.sub
            )));
        }
        installed = true;
    }
    Ok(installed)
}

/// The commands of the `deny` step.
pub fn commands() -> Vec<Cmd> {
    let mut cmds = vec![
        Cmd::cargo()
            .args(["deny", "--offline", "check", "--hide-inclusion-graph"])
            .args(["bans", "licenses", "sources"]),
    ];
    match advisory_db() {
        Some(db) => cmds.push(
            Cmd::cargo()
                .args(["audit", "--no-fetch", "--stale", "--db"])
                .args([db]),
        ),
        None => println!(
            "deny: {ADVISORY_DB_ENV} is not set, so `cargo audit` is skipped \
             (see docs/operations.md, \"Dependency hygiene\")"
        ),
    }
    cmds
}
