//! `watchparty-signal` binary.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("watchparty-signal: not built yet");
    std::process::exit(2);
}
