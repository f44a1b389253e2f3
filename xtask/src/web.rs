//! The browser bundle: `watchparty-wasm-peer` built for `wasm32-unknown-unknown`
//! and run through `wasm-bindgen --target web` into `web/pkg/`, which the
//! signaling server serves under `/pkg/` (see docs/operations.md).
//!
//! Used by `cargo xtask demo` and before the `e2e` step.

use std::path::PathBuf;

use crate::run::{Cmd, Failure, root};
use crate::setup::WASM_TARGET;

/// The crate compiled to WebAssembly.
pub const BUNDLE_CRATE: &str = "watchparty-wasm-peer";
/// File stem of the wasm artefact and of the generated JS module.
pub const BUNDLE_STEM: &str = "watchparty_wasm_peer";

/// Where the bundle goes: `web/pkg/` (git-ignored), the server's default
/// `web_pkg_dir` when `web_dir` is `web/`.
pub fn pkg_dir() -> PathBuf {
    root().join("web").join("pkg")
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the
/// workspace root, where xtask runs cargo) or `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        None => root().join("target"),
    }
}

/// The commands that build the bundle (release, no wasm-opt: Debian's
/// binaryen breaks the module; see the toolchain notes).
pub fn bundle_commands(offline: bool) -> Vec<Cmd> {
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{BUNDLE_STEM}.wasm"));
    let mut build = Cmd::cargo().args(["build", "--release", "--lib", "-p", BUNDLE_CRATE]);
    if offline {
        build = build.args(["--offline"]);
    }
    vec![
        build.args(["--target", WASM_TARGET]),
        Cmd::new("wasm-bindgen")
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .args([pkg_dir(), wasm]),
    ]
}

/// Builds the bundle into [`pkg_dir`] and returns that directory.
pub fn build_bundle() -> Result<PathBuf, Failure> {
    println!(
        "\n==> building the browser bundle into {}",
        pkg_dir().display()
    );
    for cmd in bundle_commands(false) {
        cmd.run()
            .map_err(|f| Failure::new(format!("building the browser bundle failed: {f}")))?;
    }
    let js = pkg_dir().join(format!("{BUNDLE_STEM}.js"));
    if !js.is_file() {
        return Err(Failure::new(format!(
            "wasm-bindgen did not produce {}",
            js.display()
        )));
    }
    Ok(pkg_dir())
}
