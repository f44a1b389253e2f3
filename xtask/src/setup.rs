//! `cargo xtask setup`: make sure everything the build and the tests need is
//! installed, installing only what is missing.
//!
//! * Rust: the `wasm32-unknown-unknown` target, `rustfmt`, `clippy` (rustup).
//! * Debian packages: `gcc` (linker, native C code), `clang` and `llvm`
//!   (ring's C code for wasm32), `chromium` and `chromium-driver` (browser
//!   tests), `firefox-esr` (the same tests in Firefox), `nftables` and
//!   `iproute2` (network namespace tests), `util-linux` (`unshare`,
//!   `nsenter`), `coturn` (the STUN/TURN server of the NAT tests).
//!   Installing them needs root; without root the exact command is printed
//!   and setup fails.
//!   Also `mpv` and `ffmpeg` (the native player and its test clips),
//!   `pulseaudio` (with `pulseaudio-utils`) and `xvfb` (the acoustic
//!   measure: a private sound server recording each player, and a display
//!   for headed Chromium when asked for), `fonts-noto-color-emoji` (the web
//!   app's symbols in Chromium) and `python3-venv` (for the next point).
//! * A Python virtualenv `<target dir>/venv` with the API fuzzer
//!   schemathesis and its dependencies at the versions pinned in
//!   `xtask/api-fuzzer-requirements.txt`, from PyPI (see [`crate::venv`]).
//! * `wasm-bindgen-cli` at exactly the `wasm-bindgen` version in `Cargo.lock`
//!   (`cargo install`, deliberately without `--locked`: with it the install
//!   fails against today's registry), geckodriver (drives Firefox; the
//!   crate `geckodriver` at [`GECKODRIVER_VERSION`], `--locked`) and
//!   cargo-deny (see [`crate::hygiene`]). Both are compiled from source (prebuilt binaries
//!   would come from outside the package registries), with a quick release
//!   profile ([`FAST_INSTALL_PROFILE`]) and while apt installs the packages.
//!
//! Every check is a file lookup or a `--version` call, so a second run is a
//! quick no-op.

use std::path::PathBuf;
use std::time::Instant;

use crate::run::{Cmd, Failure, find_program, is_root, root};

/// The Rust target the browser code compiles to.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Where the browser tests expect Chromium and its driver (Debian's paths;
/// `wasm-peer/webdriver.json` names the same binary).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where the browser tests expect Firefox ESR (Debian's `firefox-esr`;
/// `wasm-peer/webdriver.json` names the same binary).
pub const FIREFOX: &str = "/usr/bin/firefox-esr";
/// The program that drives Firefox over WebDriver, installed by `cargo
/// install` into `$CARGO_HOME/bin`.
pub const GECKODRIVER: &str = "geckodriver";
/// The geckodriver release setup installs: the one the browser tests run
/// against Debian's Firefox ESR 153 with. Bump it (and rerun the tests)
/// when a new Firefox ESR needs a newer one.
pub const GECKODRIVER_VERSION: &str = "0.37.1";
/// The colour emoji font Chromium draws the web app's symbols (⏸ ⏮ ⏭) and
/// reactions with; without it the pages (and the screenshots in docs/)
/// show empty boxes.
pub const EMOJI_FONT: &str = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf";

/// A program (or, by absolute path, a file) we need and the Debian package
/// that provides it.
struct SystemTool {
    program: &'static str,
    package: &'static str,
    why: &'static str,
}

const SYSTEM_TOOLS: &[SystemTool] = &[
    SystemTool {
        program: "cc",
        package: "gcc",
        why: "linker; C code of aws-lc-sys (str0m's crypto)",
    },
    SystemTool {
        program: "clang",
        package: "clang",
        why: "compiles ring's C code for wasm32",
    },
    SystemTool {
        program: "llvm-ar",
        package: "llvm",
        why: "archives ring's C code for wasm32",
    },
    SystemTool {
        program: CHROMIUM,
        package: "chromium",
        why: "browser tests",
    },
    SystemTool {
        program: CHROMEDRIVER,
        package: "chromium-driver",
        why: "drives Chromium in browser tests",
    },
    SystemTool {
        program: FIREFOX,
        package: "firefox-esr",
        why: "browser tests in Firefox (driven by geckodriver)",
    },
    SystemTool {
        program: "nft",
        package: "nftables",
        why: "network-namespace tests (packet loss, blocking)",
    },
    SystemTool {
        program: "ip",
        package: "iproute2",
        why: "configures the tests' private network namespace",
    },
    SystemTool {
        program: "unshare",
        package: "util-linux",
        why: "creates the tests' private network namespace",
    },
    SystemTool {
        program: "turnserver",
        package: "coturn",
        why: "STUN/TURN server of the NAT and relay tests",
    },
    SystemTool {
        program: "mpv",
        package: "mpv",
        why: "native peer's player backend; its tests drive a real mpv",
    },
    SystemTool {
        program: "ffmpeg",
        package: "ffmpeg",
        why: "generates the test clip the mpv tests play",
    },
    SystemTool {
        program: "pulseaudio",
        package: "pulseaudio",
        why: "the acoustic measure's private sound server (one sink per player)",
    },
    SystemTool {
        program: "parec",
        package: "pulseaudio-utils",
        why: "records every player's sink in the acoustic measure",
    },
    SystemTool {
        program: "Xvfb",
        package: "xvfb",
        why: "a display for headed Chromium in the acoustic measure \
              (WATCHPARTY_ACOUSTIC_XVFB=1, when headless sends no sound)",
    },
    SystemTool {
        program: EMOJI_FONT,
        package: "fonts-noto-color-emoji",
        why: "draws the web app's symbols and reactions in the browser tests and screenshots",
    },
    SystemTool {
        program: crate::venv::PYTHON,
        package: "python3-venv",
        why: "makes the virtualenv of the API fuzzer (schemathesis)",
    },
];

/// The programs wasm-bindgen-cli installs.
pub const WASM_BINDGEN_PROGRAMS: [&str; 2] = ["wasm-bindgen", "wasm-bindgen-test-runner"];

/// The Debian package that setup installs for `program`, if it installs one.
pub fn package_for(program: &str) -> Option<&'static str> {
    SYSTEM_TOOLS
        .iter()
        .find(|t| t.program == program)
        .map(|t| t.package)
}

/// Runs every check, installing what is missing.
///
/// On a fresh machine most of the time goes to two things that use
/// different resources: apt downloading and unpacking Debian packages, and
/// cargo compiling the cargo-installed tools. They run side by side (apt's
/// output goes to a log file, printed if it fails), except when the C
/// compiler itself is missing: the tools' builds need it, so then the
/// packages come first.
pub fn run() -> Result<(), Failure> {
    let started = Instant::now();
    let mut installed_something = false;
    installed_something |= rust_target()?;
    installed_something |= rust_components()?;
    let missing = missing_system_tools()?;
    let c_compiler_missing = missing.iter().any(|t| t.program == "cc");
    if c_compiler_missing || missing.is_empty() {
        installed_something |= install_system_packages(&missing, None)?;
        installed_something |= crate::venv::install(None)?;
        installed_something |= install_cargo_tools()?;
    } else {
        let log = crate::web::target_dir().join("setup-apt.log");
        if let Some(dir) = log.parent() {
            mkdir_all(dir)?;
        }
        // The virtualenv needs python3-venv, so it follows apt in the same thread.
        let (apt, cargo) = std::thread::scope(|scope| {
            let apt = scope.spawn(|| {
                let apt = install_system_packages(&missing, Some(&log))?;
                Ok(apt | crate::venv::install(Some(&log))?)
            });
            let cargo = install_cargo_tools();
            let apt = apt
                .join()
                .unwrap_or_else(|_| Err(Failure::new("the apt-get thread panicked")));
            (apt, cargo)
        });
        installed_something |= apt?;
        installed_something |= cargo?;
    }
    let secs = started.elapsed().as_secs_f32();
    if installed_something {
        println!("setup: done, missing pieces installed ({secs:.1} s)");
    } else {
        println!("setup: everything already present, nothing to do ({secs:.1} s)");
    }
    Ok(())
}

fn mkdir_all(dir: &std::path::Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))
}

/// Every tool that `cargo install` provides: wasm-bindgen-cli,
/// geckodriver and the dependency-hygiene tools.
fn install_cargo_tools() -> Result<bool, Failure> {
    Ok(wasm_bindgen_cli()? | geckodriver()? | crate::hygiene::install_tools()?)
}

/// Release-profile settings for the tools `cargo install` builds, given as
/// `CARGO_PROFILE_RELEASE_*` variables (which take precedence over the
/// tools' own manifests). cargo-deny asks for fat LTO with one codegen
/// unit, which on a 2-core machine is most of its build time; the tools
/// run for seconds on small inputs, so a quick build matters more than
/// the last percent of speed.
pub const FAST_INSTALL_PROFILE: [(&str, &str); 4] = [
    ("CARGO_PROFILE_RELEASE_LTO", "off"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1"),
    ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
];

/// `cargo install`, built with [`FAST_INSTALL_PROFILE`] in one target
/// directory shared by every tool (`target/tools`), so that crates the
/// tools have in common are compiled once.
pub fn cargo_install() -> Cmd {
    FAST_INSTALL_PROFILE
        .iter()
        .fold(Cmd::cargo(), |cmd, (key, value)| cmd.env(key, value))
        .args(["install", "--target-dir"])
        .args([crate::web::target_dir().join("tools")])
}

fn ok(what: &str) {
    println!("setup: ok       {what}");
}

fn installing(what: &str) {
    println!("setup: missing  {what}: installing");
}

fn rust_target() -> Result<bool, Failure> {
    let has_target = || {
        Cmd::new("rustc")
            .args(["--print", "sysroot"])
            .probe()
            .map(PathBuf::from)
            .is_some_and(|sysroot| {
                sysroot
                    .join("lib/rustlib")
                    .join(WASM_TARGET)
                    .join("lib")
                    .is_dir()
            })
    };
    let what = format!("Rust target {WASM_TARGET}");
    if has_target() {
        ok(&what);
        return Ok(false);
    }
    installing(&what);
    if find_program("rustup").is_none() {
        return Err(Failure::new(format!(
            "the Rust target {WASM_TARGET} is missing and there is no rustup to add it; \
             install it for your toolchain"
        )));
    }
    Cmd::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .run()?;
    if !has_target() {
        return Err(Failure::new(format!(
            "`rustup target add {WASM_TARGET}` ran but the target is still missing"
        )));
    }
    Ok(true)
}

fn rust_components() -> Result<bool, Failure> {
    let has = |sub: &str| Cmd::cargo().args([sub, "--version"]).probe().is_some();
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(sub, _)| !has(sub))
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        ok("rustfmt, clippy");
        return Ok(false);
    }
    installing(&missing.join(", "));
    if find_program("rustup").is_none() {
        return Err(Failure::new(format!(
            "missing Rust components {} and no rustup to add them",
            missing.join(", ")
        )));
    }
    Cmd::new("rustup")
        .args(["component", "add"])
        .args(&missing)
        .run()?;
    Ok(true)
}

fn tool_present(tool: &SystemTool) -> bool {
    if tool.program == crate::venv::PYTHON {
        // Debian's python3 without python3-venv cannot make a virtualenv.
        return Cmd::new(tool.program)
            .args(crate::venv::PYTHON_VENV_PROBE)
            .probe()
            .is_some();
    }
    if tool.program.starts_with('/') {
        PathBuf::from(tool.program).is_file()
    } else {
        find_program(tool.program).is_some()
    }
}

/// The system tools that are missing; fails at once when some are missing
/// and this process cannot install them (not root, or no apt-get), with the
/// command to run.
fn missing_system_tools() -> Result<Vec<&'static SystemTool>, Failure> {
    let missing: Vec<&SystemTool> = SYSTEM_TOOLS.iter().filter(|t| !tool_present(t)).collect();
    if missing.is_empty() {
        let packages: Vec<&str> = SYSTEM_TOOLS.iter().map(|t| t.package).collect();
        ok(&packages.join(", "));
        return Ok(missing);
    }
    for tool in &missing {
        println!(
            "setup: missing  {} (package {}; {})",
            tool.program, tool.package, tool.why
        );
    }
    let packages = package_list(&missing).join(" ");
    if find_program("apt-get").is_none() {
        return Err(Failure::new(format!(
            "no apt-get on this machine: install the equivalents of these Debian packages \
             yourself, then rerun: {packages}"
        )));
    }
    if !is_root() {
        return Err(Failure::new(format!(
            "installing system packages needs root. Run:\n\n    sudo apt-get update && \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}\n\n\
             then rerun this command."
        )));
    }
    Ok(missing)
}

fn package_list(tools: &[&SystemTool]) -> Vec<&'static str> {
    let mut packages: Vec<&str> = tools.iter().map(|t| t.package).collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Installs the packages of `missing` with apt-get (output to `log` when
/// given); `true` when something was installed.
fn install_system_packages(
    missing: &[&SystemTool],
    log: Option<&std::path::Path>,
) -> Result<bool, Failure> {
    if missing.is_empty() {
        return Ok(false);
    }
    let packages = package_list(missing);
    let run = |cmd: Cmd| match log {
        Some(log) => cmd.run_logged(log),
        None => cmd.run(),
    };
    run(Cmd::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600", "update"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Cmd::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = SYSTEM_TOOLS
        .iter()
        .filter(|t| !tool_present(t))
        .map(|t| t.program)
        .collect();
    if !still.is_empty() {
        return Err(Failure::new(format!(
            "apt-get install finished but these are still missing: {}",
            still.join(", ")
        )));
    }
    println!("setup: installed {}", packages.join(", "));
    Ok(true)
}

/// The version of package `name` in a `Cargo.lock` text.
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            return lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    None
}

fn wasm_bindgen_version_in_lock() -> Result<String, Failure> {
    let path = root().join("Cargo.lock");
    let read = || std::fs::read_to_string(&path).ok();
    if let Some(version) = read().and_then(|lock| locked_version(&lock, "wasm-bindgen")) {
        return Ok(version);
    }
    // No lock file (or a stale one): let cargo resolve and write it.
    Cmd::cargo()
        .args(["metadata", "--format-version", "1"])
        .probe();
    read()
        .and_then(|lock| locked_version(&lock, "wasm-bindgen"))
        .ok_or_else(|| Failure::new(format!("no wasm-bindgen entry in {}", path.display())))
}

fn wasm_bindgen_cli() -> Result<bool, Failure> {
    let version = wasm_bindgen_version_in_lock()?;
    let matches = |program: &str| {
        Cmd::new(program)
            .args(["--version"])
            .probe()
            .is_some_and(|out| out == format!("{program} {version}"))
    };
    let what = format!("wasm-bindgen-cli {version} (wasm-bindgen, wasm-bindgen-test-runner)");
    if matches("wasm-bindgen") && matches("wasm-bindgen-test-runner") {
        ok(&what);
        return Ok(false);
    }
    installing(&format!("{what}; this takes about 3 minutes"));
    // `--force`: a half-present install (one binary deleted) would otherwise
    // be reported as "already installed". Deliberately without `--locked`:
    // the CLI's own lock file pins a dependency version the registry no
    // longer offers.
    cargo_install()
        .args(["--force", "wasm-bindgen-cli", "--version"])
        .args([format!("={version}")])
        .run()?;
    if !(matches("wasm-bindgen") && matches("wasm-bindgen-test-runner")) {
        return Err(Failure::new(format!(
            "wasm-bindgen-cli {version} was installed but `wasm-bindgen --version` does not \
             report it; is another wasm-bindgen earlier on PATH?"
        )));
    }
    Ok(true)
}

/// The path of geckodriver (`$CARGO_HOME/bin` or `PATH`), or its bare name
/// when it is not installed (a run then fails naming it).
pub fn geckodriver_path() -> PathBuf {
    find_program(GECKODRIVER).unwrap_or_else(|| PathBuf::from(GECKODRIVER))
}

/// Whether `geckodriver --version` output names [`GECKODRIVER_VERSION`]
/// (its first line is `geckodriver 0.37.1 (<commit> <date>)`).
fn is_pinned_geckodriver(version_output: &str) -> bool {
    version_output
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        == Some(GECKODRIVER_VERSION)
}

fn geckodriver() -> Result<bool, Failure> {
    let matches = || {
        Cmd::new(GECKODRIVER)
            .args(["--version"])
            .probe()
            .is_some_and(|out| is_pinned_geckodriver(&out))
    };
    let what = format!("geckodriver {GECKODRIVER_VERSION}");
    if matches() {
        ok(&what);
        return Ok(false);
    }
    installing(&format!("{what}; this takes a few minutes"));
    cargo_install()
        .args(["--force", "--locked", "geckodriver", "--version"])
        .args([format!("={GECKODRIVER_VERSION}")])
        .run()?;
    if !matches() {
        return Err(Failure::new(format!(
            "geckodriver {GECKODRIVER_VERSION} was installed but `geckodriver --version` does \
             not report it; is another geckodriver earlier on PATH?"
        )));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wasm-bindgen-test-runner` starts the browsers `webdriver.json`
    /// names: they must be the ones setup installs.
    #[test]
    fn webdriver_json_names_the_browsers_setup_installs() {
        let path = root().join("wasm-peer").join("webdriver.json");
        let json = std::fs::read_to_string(&path).expect("wasm-peer/webdriver.json");
        for binary in [CHROMIUM, FIREFOX] {
            assert!(
                json.contains(&format!("\"binary\": \"{binary}\"")),
                "{} must name {binary}",
                path.display()
            );
        }
    }

    #[test]
    fn reads_the_geckodriver_version() {
        let out = format!(
            "geckodriver {GECKODRIVER_VERSION} (d1b6e0a2 2025-08-11 09:14 +0000)\n\nThe source \
             code of this program is available from"
        );
        assert!(is_pinned_geckodriver(&out));
        assert!(!is_pinned_geckodriver(
            "geckodriver 0.36.0 (abc 2025-01-01)"
        ));
        assert!(!is_pinned_geckodriver(""));
    }

    const LOCK: &str = r#"
[[package]]
name = "wasm-bindgen-futures"
version = "0.4.80"

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    #[test]
    fn finds_exact_package_version() {
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen-futures").as_deref(),
            Some("0.4.80")
        );
        assert_eq!(locked_version(LOCK, "wasm-bindgen-test"), None);
    }

    #[test]
    fn the_workspace_lock_pins_wasm_bindgen() {
        let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
        let version = locked_version(&lock, "wasm-bindgen").expect("wasm-bindgen in lock");
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            manifest.contains(&format!("wasm-bindgen = \"={version}\"")),
            "root Cargo.toml must pin wasm-bindgen to the locked {version}"
        );
    }
}
