//! The project's Python virtualenv: the API fuzzer (schemathesis) that
//! `signal/tests/openapi_fuzz.rs` runs against a real server.
//!
//! * Where: `<target dir>/venv` ([`dir`]), git-ignored like the rest of the
//!   target directory; made with Debian's Python ([`PYTHON`], whose `venv`
//!   and `ensurepip` come with the Debian package `python3-venv`, in
//!   setup's list).
//! * What: exactly the versions of `xtask/api-fuzzer-requirements.txt`
//!   ([`REQUIREMENTS`]), from PyPI, wheels only (nothing is compiled).
//! * Idempotent: after a successful install the requirements are copied
//!   into the virtualenv ([`STAMP`]); setup does nothing while that copy
//!   equals the file and `schemathesis --version` reports the pinned
//!   version. A changed file, a broken or half-made virtualenv, or another
//!   version is installed again.

use std::path::{Path, PathBuf};

use crate::run::{Cmd, Failure};

/// The interpreter the virtualenv is made with (Debian's, not whatever
/// `python3` is first on `PATH`).
pub const PYTHON: &str = "/usr/bin/python3";

/// Arguments for [`PYTHON`] that succeed only when it can make a
/// virtualenv with pip (Debian ships `venv`'s `ensurepip` separately, in
/// `python3-venv`).
pub const PYTHON_VENV_PROBE: [&str; 2] = ["-c", "import ensurepip, venv"];

/// The pinned requirements (every package, exact versions).
pub const REQUIREMENTS: &str = include_str!("../api-fuzzer-requirements.txt");

/// The copy of [`REQUIREMENTS`] written after a successful install.
const STAMP: &str = "watchparty-requirements.txt";

/// The virtualenv's directory.
pub fn dir() -> PathBuf {
    crate::web::target_dir().join("venv")
}

/// The schemathesis executable the tests run.
pub fn schemathesis() -> PathBuf {
    dir().join("bin").join("schemathesis")
}

/// The schemathesis version pinned in [`REQUIREMENTS`].
pub fn pinned_version() -> Option<&'static str> {
    REQUIREMENTS
        .lines()
        .find_map(|l| l.trim().strip_prefix("schemathesis=="))
}

/// What `schemathesis --version` prints for `version`.
fn version_line(version: &str) -> String {
    format!("schemathesis, version {version}")
}

/// Whether the virtualenv holds exactly the pinned requirements.
fn up_to_date(venv: &Path, version: &str) -> bool {
    let stamp = std::fs::read_to_string(venv.join(STAMP)).unwrap_or_default();
    stamp == REQUIREMENTS
        && Cmd::new(schemathesis())
            .args(["--version"])
            .probe()
            .is_some_and(|out| out == version_line(version))
}

/// Makes or updates the virtualenv (output to `log` when given); `true`
/// when something was installed. Needs [`PYTHON`] with `python3-venv`
/// (setup installs that package first).
pub fn install(log: Option<&Path>) -> Result<bool, Failure> {
    let version = pinned_version().ok_or_else(|| {
        Failure::new("xtask/api-fuzzer-requirements.txt pins no schemathesis version")
    })?;
    let venv = dir();
    let what = format!("schemathesis {version} (API fuzzer) in {}", venv.display());
    if up_to_date(&venv, version) {
        println!("setup: ok       {what}");
        return Ok(false);
    }
    println!("setup: missing  {what}: installing from PyPI (under a minute)");
    let run = |cmd: Cmd, name: &str| match log {
        Some(log) => cmd.run_logged(&log.with_file_name(format!("setup-venv-{name}.log"))),
        None => cmd.run(),
    };
    let python = venv.join("bin").join("python");
    // A virtualenv whose pip does not run (half made, or its Python
    // replaced) is made anew.
    let pip_runs = || {
        Cmd::new(&python)
            .args(["-m", "pip", "--version"])
            .probe()
            .is_some()
    };
    if !pip_runs() {
        run(
            Cmd::new(PYTHON)
                .args(["-m", "venv", "--clear"])
                .args([&venv]),
            "create",
        )?;
    }
    let requirements = venv.join("requirements.txt");
    write(&requirements, REQUIREMENTS)?;
    // A failed install must not leave a stamp that says otherwise.
    let _ = std::fs::remove_file(venv.join(STAMP));
    run(
        Cmd::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--only-binary", ":all:", "--requirement"])
            .args([&requirements]),
        "pip",
    )?;
    write(&venv.join(STAMP), REQUIREMENTS)?;
    if !up_to_date(&venv, version) {
        return Err(Failure::new(format!(
            "pip installed the requirements but `{} --version` does not say `{}`",
            schemathesis().display(),
            version_line(version)
        )));
    }
    println!("setup: installed {what}");
    Ok(true)
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requirements_pin_every_package_exactly() {
        assert!(pinned_version().is_some(), "no schemathesis pin");
        for line in REQUIREMENTS.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, version) = line.split_once("==").unwrap_or_default();
            assert!(
                !name.is_empty() && !version.is_empty() && !version.contains(['<', '>', '*', ';']),
                "not an exact pin: {line}"
            );
        }
    }
}
