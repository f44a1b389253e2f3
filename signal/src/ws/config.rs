//! Limits and settings of the signaling WebSocket (`[signaling]` in the TOML
//! file). Every limit has a documented default (docs/security.md) and a test
//! in `signal/tests/ws_*.rs` that crosses it.

use std::time::Duration;

use serde::Deserialize;
use watchparty_peer::signaling::{MAX_ICE_FIELD_LEN, MAX_ICE_URLS, MAX_SIGNAL_MESSAGE_LEN};

/// Default first-message (`auth`) deadline: 5 s.
pub const DEFAULT_AUTH_TIMEOUT_MS: u64 = 5_000;
/// Default largest WebSocket message: [`MAX_SIGNAL_MESSAGE_LEN`] (69 632 bytes,
/// 64 KiB of SDP-escaping room plus a 4 KiB envelope) so that every message
/// the protocol core accepts also fits through the socket.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = MAX_SIGNAL_MESSAGE_LEN;
/// Default token-bucket size of the per-connection message rate limit.
pub const DEFAULT_RATE_BURST: u32 = 60;
/// Default token-bucket refill of the per-connection rate limit (messages per second).
pub const DEFAULT_RATE_PER_SEC: u32 = 10;
/// Default number of rate-limit violations after which the socket is closed (1008).
pub const DEFAULT_RATE_STRIKES: u32 = 10;
/// Default relay budget of one sender, all receivers together
/// (`relay_bytes_burst`): 512 KiB at once, about eight maximal offers; a
/// session's offers, answers and candidates are a few KiB each.
pub const DEFAULT_RELAY_BYTES_BURST: u32 = 512 * 1024;
/// Default refill of one sender's relay budget (`relay_bytes_per_sec`): 64 KiB/s.
pub const DEFAULT_RELAY_BYTES_PER_SEC: u32 = 64 * 1024;
/// Default relay budget of one sender towards one receiver
/// (`relay_pair_bytes_burst`): 256 KiB at once.
pub const DEFAULT_RELAY_PAIR_BYTES_BURST: u32 = 256 * 1024;
/// Default refill of the per-receiver budget (`relay_pair_bytes_per_sec`): 32 KiB/s.
pub const DEFAULT_RELAY_PAIR_BYTES_PER_SEC: u32 = 32 * 1024;
/// Default most signaling sockets per user (all rooms together).
pub const DEFAULT_MAX_PER_USER: usize = 3;
/// Default most signaling sockets per room (equals the roster limit).
pub const DEFAULT_MAX_PER_ROOM: usize = watchparty_peer::signaling::MAX_ROSTER;
/// Default most signaling sockets in total (authenticated or not).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Default most sockets that have not authenticated yet (all IPs).
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 128;
/// Default most not-yet-authenticated sockets per client IP: a full room
/// ([`MAX_ROSTER`](watchparty_peer::signaling::MAX_ROSTER), 16) joining at
/// once from one address (one NAT, or the connect benchmark on loopback).
/// With 8, the 9th to 15th follower of a 16-peer room got 429 and retried
/// after a backoff (about 250 ms more connect time).
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_IP: usize = watchparty_peer::signaling::MAX_ROSTER;
/// Default server ping interval: 20 s.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 20_000;
/// Default silence (no frame at all, pongs included) after which a socket is closed: 60 s.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default per-connection send queue (messages).
pub const DEFAULT_SEND_QUEUE: usize = 64;
/// Default time one write may block before the reader is called slow: 10 s.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 10_000;
/// Default interval at which each socket re-checks its session, account and
/// membership in the database (catches `user disable` run from the CLI): 30 s.
pub const DEFAULT_REVALIDATE_MS: u64 = 30_000;
/// Default lifetime of a member certificate: 24 h.
pub const DEFAULT_CERT_TTL_SECS: u64 = 24 * 3600;
/// Default TURN credential lifetime (draft-uberti-behave-turn-rest): 24 h.
pub const DEFAULT_TURN_TTL_SECS: u64 = 24 * 3600;
/// Smallest accepted `max_message_bytes`: a maximal valid signaling message
/// must always fit.
pub const MIN_MAX_MESSAGE_BYTES: usize = MAX_SIGNAL_MESSAGE_LEN;
/// Hard ceiling for `max_message_bytes` (1 MiB).
pub const MAX_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A TURN shared secret (coturn `static-auth-secret`). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TurnSecret(String);

impl TurnSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        TurnSecret(s.into())
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

/// Settings of the signaling WebSocket. Durations are in milliseconds (or
/// seconds where the name says so) so the TOML file stays plain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingConfig {
    /// Browser origins allowed to open the socket (exact match). Empty = the
    /// origin of `public_url` only (and no browser origin at all when
    /// `public_url` is unset).
    pub allowed_origins: Vec<String>,
    /// First-message deadline (close 4001 after it).
    pub auth_timeout_ms: u64,
    /// Largest message (text or binary, after reassembly); larger → close 1009.
    pub max_message_bytes: usize,
    /// Token-bucket size of the per-connection message rate.
    pub rate_burst: u32,
    /// Token-bucket refill (messages per second).
    pub rate_per_sec: u32,
    /// Violations (each answered with an `error`) before close 1008.
    pub rate_strikes: u32,
    /// Bytes one sender may relay at once (all receivers); a relay over it
    /// is refused with `rate_limited` and counts as a violation.
    pub relay_bytes_burst: u32,
    /// Refill of `relay_bytes_burst` (bytes per second).
    pub relay_bytes_per_sec: u32,
    /// Bytes one sender may relay at once to one receiver (as above).
    pub relay_pair_bytes_burst: u32,
    /// Refill of `relay_pair_bytes_burst` (bytes per second).
    pub relay_pair_bytes_per_sec: u32,
    /// Most sockets per user.
    pub max_per_user: usize,
    /// Most sockets per room.
    pub max_per_room: usize,
    /// Most sockets in total.
    pub max_connections: usize,
    /// Most unauthenticated sockets in total.
    pub max_unauthenticated: usize,
    /// Most unauthenticated sockets per client IP.
    pub max_unauthenticated_per_ip: usize,
    /// Server ping interval.
    pub ping_interval_ms: u64,
    /// Silence after which the socket is closed.
    pub idle_timeout_ms: u64,
    /// Queued outgoing messages per socket; a full queue disconnects the reader.
    pub send_queue: usize,
    /// Longest a single write may block.
    pub send_timeout_ms: u64,
    /// Session/membership re-check interval.
    pub revalidate_ms: u64,
    /// Member certificate lifetime (seconds).
    pub cert_ttl_secs: u64,
    /// STUN URLs handed to clients (`stun:` / `stuns:`).
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients (`turn:` / `turns:`), with credentials
    /// minted from `turn_secret`.
    pub turn_urls: Vec<String>,
    /// coturn `static-auth-secret` (`use-auth-secret`). Never logged.
    pub turn_secret: Option<TurnSecret>,
    /// TURN credential lifetime (seconds).
    pub turn_ttl_secs: u64,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        SignalingConfig {
            allowed_origins: Vec::new(),
            auth_timeout_ms: DEFAULT_AUTH_TIMEOUT_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            rate_burst: DEFAULT_RATE_BURST,
            rate_per_sec: DEFAULT_RATE_PER_SEC,
            rate_strikes: DEFAULT_RATE_STRIKES,
            relay_bytes_burst: DEFAULT_RELAY_BYTES_BURST,
            relay_bytes_per_sec: DEFAULT_RELAY_BYTES_PER_SEC,
            relay_pair_bytes_burst: DEFAULT_RELAY_PAIR_BYTES_BURST,
            relay_pair_bytes_per_sec: DEFAULT_RELAY_PAIR_BYTES_PER_SEC,
            max_per_user: DEFAULT_MAX_PER_USER,
            max_per_room: DEFAULT_MAX_PER_ROOM,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            max_unauthenticated_per_ip: DEFAULT_MAX_UNAUTHENTICATED_PER_IP,
            ping_interval_ms: DEFAULT_PING_INTERVAL_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            send_queue: DEFAULT_SEND_QUEUE,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            revalidate_ms: DEFAULT_REVALIDATE_MS,
            cert_ttl_secs: DEFAULT_CERT_TTL_SECS,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: DEFAULT_TURN_TTL_SECS,
        }
    }
}

impl SignalingConfig {
    /// First-message deadline.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }
    /// Ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// Write timeout.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }
    /// Revalidation interval.
    pub fn revalidate(&self) -> Duration {
        Duration::from_millis(self.revalidate_ms)
    }

    /// Checks bounds; returns a message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_MAX_MESSAGE_BYTES..=MAX_MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(format!(
                "signaling.max_message_bytes must be {MIN_MAX_MESSAGE_BYTES}..={MAX_MAX_MESSAGE_BYTES}"
            ));
        }
        let positive = [
            ("auth_timeout_ms", self.auth_timeout_ms),
            ("ping_interval_ms", self.ping_interval_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("send_timeout_ms", self.send_timeout_ms),
            ("revalidate_ms", self.revalidate_ms),
            ("cert_ttl_secs", self.cert_ttl_secs),
            ("turn_ttl_secs", self.turn_ttl_secs),
            ("rate_burst", u64::from(self.rate_burst)),
            ("rate_per_sec", u64::from(self.rate_per_sec)),
            ("rate_strikes", u64::from(self.rate_strikes)),
            ("relay_bytes_per_sec", u64::from(self.relay_bytes_per_sec)),
            (
                "relay_pair_bytes_per_sec",
                u64::from(self.relay_pair_bytes_per_sec),
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("signaling.{name} must be positive"));
            }
        }
        let counts = [
            ("max_per_user", self.max_per_user),
            ("max_per_room", self.max_per_room),
            ("max_connections", self.max_connections),
            ("max_unauthenticated", self.max_unauthenticated),
            (
                "max_unauthenticated_per_ip",
                self.max_unauthenticated_per_ip,
            ),
            ("send_queue", self.send_queue),
        ];
        for (name, v) in counts {
            if !(1..=1_000_000).contains(&v) {
                return Err(format!("signaling.{name} must be 1..=1000000"));
            }
        }
        // A maximal signaling message must always fit in both budgets.
        for (name, v) in [
            ("relay_bytes_burst", self.relay_bytes_burst),
            ("relay_pair_bytes_burst", self.relay_pair_bytes_burst),
        ] {
            if usize::try_from(v).is_ok_and(|v| v < MAX_SIGNAL_MESSAGE_LEN) {
                return Err(format!(
                    "signaling.{name} must be at least {MAX_SIGNAL_MESSAGE_LEN}"
                ));
            }
        }
        if self.max_per_room > watchparty_peer::signaling::MAX_ROSTER {
            return Err(format!(
                "signaling.max_per_room must be at most {}",
                watchparty_peer::signaling::MAX_ROSTER
            ));
        }
        if self.idle_timeout_ms <= self.ping_interval_ms {
            return Err("signaling.idle_timeout_ms must exceed ping_interval_ms".into());
        }
        for o in &self.allowed_origins {
            if crate::ws::origin::Origin::parse(o).is_none() {
                return Err(format!(
                    "signaling.allowed_origins entry {o:?} must be scheme://host[:port] (no wildcard, path or trailing slash)"
                ));
            }
        }
        let urls = |list: &[String], schemes: &[&str], name: &str| -> Result<(), String> {
            if list.len() > MAX_ICE_URLS {
                return Err(format!("signaling.{name}: at most {MAX_ICE_URLS} URLs"));
            }
            for u in list {
                if u.len() > MAX_ICE_FIELD_LEN
                    || !schemes.iter().any(|s| u.starts_with(s))
                    || !u.bytes().all(|b| (0x21..=0x7e).contains(&b))
                {
                    return Err(format!("signaling.{name}: invalid URL {u:?}"));
                }
            }
            Ok(())
        };
        urls(&self.stun_urls, &["stun:", "stuns:"], "stun_urls")?;
        urls(&self.turn_urls, &["turn:", "turns:"], "turn_urls")?;
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err("signaling.turn_urls need signaling.turn_secret".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bounds_are_enforced() {
        let c = SignalingConfig::default();
        assert!(c.validate().is_ok());
        assert!(c.max_message_bytes >= MAX_SIGNAL_MESSAGE_LEN);
        // A full room may authenticate at once from one address.
        assert!(c.max_unauthenticated_per_ip >= watchparty_peer::signaling::MAX_ROSTER);
        let bad = |f: &dyn Fn(&mut SignalingConfig)| {
            let mut c = SignalingConfig::default();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(&|c| c.max_message_bytes = MAX_SIGNAL_MESSAGE_LEN - 1));
        assert!(bad(&|c| c.auth_timeout_ms = 0));
        assert!(bad(&|c| c.relay_bytes_burst = 1024));
        assert!(bad(&|c| c.relay_pair_bytes_burst = 1024));
        assert!(bad(&|c| c.relay_pair_bytes_per_sec = 0));
        assert!(bad(&|c| c.max_per_room = 17));
        assert!(bad(&|c| c.idle_timeout_ms = c.ping_interval_ms));
        assert!(bad(&|c| c.allowed_origins = vec!["*".into()]));
        assert!(bad(
            &|c| c.allowed_origins = vec!["https://a.example/".into()]
        ));
        assert!(bad(&|c| c.turn_urls = vec!["turn:t.example".into()]));
        assert!(bad(&|c| c.stun_urls = vec!["http://x".into()]));
        let t: SignalingConfig =
            toml::from_str("turn_secret = \"s3cr3t\"\nturn_urls = [\"turn:t.example:3478\"]")
                .unwrap();
        assert!(t.validate().is_ok());
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(toml::from_str::<SignalingConfig>("bogus = 1").is_err());
    }
}
