//! `cargo xtask`: orchestration for watchparty.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("usage: cargo xtask <setup|test|demo>");
    std::process::exit(2);
}
