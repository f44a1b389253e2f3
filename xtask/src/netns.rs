//! The private network namespace the isolated test steps run in.
//!
//! [`outer`] re-executes this xtask binary under `unshare --net` (plus
//! `--map-root-user` when not root). Inside, [`inner`] checks that the
//! namespace is fresh (only `lo`), then builds the smallest network in which
//! Chromium gathers ICE candidates: `lo` up, a veth pair whose one end holds
//! the test address [`TEST_ADDR`] (TEST-NET-1, RFC 5737), and a default
//! route through it. The other end of the pair has no address and no
//! forwarding, so nothing can leave: no route out of the namespace exists.
//! Chromium skips loopback when gathering candidates, and gathers nothing
//! without a default route; hence the veth.

use std::time::Duration;

use crate::cli::IN_NETNS;
use crate::run::{COMMAND_TIME_LIMIT, Cmd, Failure, find_program, is_root};
use crate::test::Selection;

/// Address of the namespace's only non-loopback interface. Tests see it in
/// `WATCHPARTY_TEST_ADDR`.
pub const TEST_ADDR: &str = "192.0.2.77";

/// Interface holding [`TEST_ADDR`], and its (address-less) peer end.
const VETH: (&str, &str) = ("wp0", "wp1");

/// Environment of every command run inside the namespace. Tests that need
/// isolation can check `WATCHPARTY_TEST_NETNS`; `CARGO_NET_OFFLINE` keeps any
/// nested cargo call from trying the (unreachable) network.
pub const NETNS_ENV: [(&str, &str); 3] = [
    ("WATCHPARTY_TEST_NETNS", "1"),
    ("WATCHPARTY_TEST_ADDR", TEST_ADDR),
    ("CARGO_NET_OFFLINE", "true"),
];

/// Runs `selection` inside a new private network namespace.
pub fn outer(selection: &Selection) -> Result<(), Failure> {
    let mut args = vec![IN_NETNS.to_owned()];
    args.extend(selection.to_args());
    reexec(&args)
}

/// Re-runs this xtask binary with `args` inside a new private network
/// namespace (the first argument names the internal subcommand).
pub fn reexec(args: &[String]) -> Result<(), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("cannot find the xtask binary to re-run: {e}")))?;
    let unshare = find_program("unshare").ok_or_else(|| {
        Failure::new("`unshare` (util-linux) is missing; run `cargo xtask setup`")
    })?;
    // An unprivileged user namespace gives a non-root user CAP_NET_ADMIN in
    // the new network namespace (needed for `ip`).
    let flags: &[&str] = if is_root() {
        &["--net"]
    } else {
        &["--net", "--map-root-user"]
    };
    // Preflight, so that "cannot create a namespace" is not mistaken for a
    // failing test.
    if Cmd::new(&unshare)
        .args(flags)
        .args(["--", "true"])
        .probe()
        .is_none()
    {
        let fix = if is_root() {
            "the process lacks CAP_SYS_ADMIN (in a container, allow namespaces)"
        } else {
            "unprivileged user namespaces may be disabled; run as root instead"
        };
        return Err(Failure::new(format!(
            "cannot create a private network namespace with `unshare {}`: {fix}",
            flags.join(" ")
        )));
    }
    println!("\n==> entering a private network namespace (address {TEST_ADDR}, no route out)");
    Cmd::new(&unshare)
        .args(flags)
        .args(["--"])
        .args([exe.as_os_str()])
        .args(args)
        .time_limit(COMMAND_TIME_LIMIT.saturating_mul(3))
        .run()
}

/// Inside the namespace: check it, configure it, run the steps.
pub fn inner(selection: &Selection) -> Result<(), Failure> {
    enter()?;
    for step in selection.steps() {
        step.run(&NETNS_ENV)?;
    }
    Ok(())
}

/// Inside a new namespace: check that it is fresh, then configure it.
pub fn enter() -> Result<(), Failure> {
    ensure_fresh_namespace()?;
    configure()
}

fn ip() -> Result<Cmd, Failure> {
    find_program("ip")
        .map(Cmd::new)
        .ok_or_else(|| Failure::new("`ip` (iproute2) is missing; run `cargo xtask setup`"))
}

/// Interface names in `ip -o link show` output (`2: wp0@wp1: <...> ...`).
fn link_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// Refuses to touch a namespace that has anything but `lo`: we would be
/// configuring (and sending test traffic through) a real network.
fn ensure_fresh_namespace() -> Result<(), Failure> {
    let listing = ip()?
        .args(["-o", "link", "show"])
        .probe()
        .ok_or_else(|| Failure::new("`ip -o link show` failed inside the namespace"))?;
    let names = link_names(&listing);
    if names != ["lo"] {
        return Err(Failure::new(format!(
            "`{IN_NETNS}` must run in a fresh network namespace (only `lo`), found: {}; \
             use `cargo xtask test`",
            names.join(", ")
        )));
    }
    Ok(())
}

fn configure() -> Result<(), Failure> {
    let (inside, peer) = VETH;
    let address = format!("{TEST_ADDR}/32");
    let setup: [&[&str]; 6] = [
        &["link", "set", "lo", "up"],
        &["link", "add", inside, "type", "veth", "peer", "name", peer],
        &["addr", "add", &address, "dev", inside],
        &["link", "set", inside, "up"],
        &["link", "set", peer, "up"],
        &["route", "add", "default", "dev", inside],
    ];
    for args in setup {
        ip()?
            .args(args)
            .time_limit(Duration::from_secs(10))
            .run()
            .map_err(|f| Failure::new(format!("configuring the test namespace failed: {f}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_names() {
        let listing = "1: lo: <LOOPBACK,UP> mtu 65536 qdisc noqueue\n\
                       2: wp1@wp0: <BROADCAST> mtu 1500\n\
                       3: wp0@wp1: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(listing), ["lo", "wp1", "wp0"]);
        assert_eq!(link_names("1: lo: <LOOPBACK> mtu 65536\n"), ["lo"]);
    }
}
