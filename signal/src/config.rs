//! Server configuration: defaults, an optional TOML file, environment variables
//! and command-line flags, in increasing order of precedence.
//!
//! The flag/env layer is parsed by clap in [`crate::cli`]; this module holds the
//! resolved [`Config`], the TOML file shape and the merge.
//!
//! Layering: an area's own settings type and defaults live with the module
//! that owns them ([`crate::password`]: [`Argon2Cost`] and the hashing-queue
//! bounds; [`crate::client_ip`]: [`IpNet`]; [`crate::throttle`];
//! [`crate::ws::config`]; [`crate::audit::config`]). This module only composes
//! them, and none of them imports it back; the modules that read settings
//! (`state`, `listen`, `request_body`, …) import it, never the other way
//! round, so the module graph has no circle through the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::client_ip::IpNet;
/// The `[argon2]` table (owned by [`crate::password`]).
pub use crate::password::Argon2Cost;
use crate::password::{
    DEFAULT_HASH_CONCURRENCY, DEFAULT_HASH_QUEUE_MAX_WAITERS, DEFAULT_HASH_QUEUE_TIMEOUT,
    HASH_QUEUE_MAX_WAITERS_LIMIT, HashQueueLimits, MAX_HASH_QUEUE_TIMEOUT,
};

/// Default listen address (`--bind`, `WATCHPARTY_BIND`).
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default data directory (`--data-dir`, `WATCHPARTY_DATA_DIR`).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default web app directory (`--web-dir`, `WATCHPARTY_WEB_DIR`), served at `/`.
pub const DEFAULT_WEB_DIR: &str = "./web";
/// Default access-token lifetime: 10 minutes.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(10 * 60);
/// Longest access-token lifetime the server accepts in configuration: 15 minutes.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Default refresh-token (session) lifetime: 30 days.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default lifetime of a signed stream URL: 5 minutes.
pub const DEFAULT_STREAM_URL_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest stream-URL lifetime the server accepts: 10 minutes.
pub const MAX_STREAM_URL_TTL: Duration = Duration::from_secs(10 * 60);
/// Default maximum number of joined members per room.
pub const DEFAULT_ROOM_MAX_MEMBERS: u32 = 16;
/// Hard upper bound for `room_max_members` (matches the database CHECK).
pub const ROOM_MAX_MEMBERS_LIMIT: u32 = 64;
/// Default idle time after which an open room is ended: 6 hours.
pub const DEFAULT_ROOM_IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Default time ended rooms are kept before deletion: 7 days.
pub const DEFAULT_ENDED_ROOM_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default interval of the idle-room cleanup task.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Default most directory entries examined by one `media scan`.
pub const DEFAULT_SCAN_MAX_ENTRIES: usize = 200_000;
/// Upper bound for `scan_max_entries`.
pub const SCAN_MAX_ENTRIES_LIMIT: usize = 10_000_000;
/// Default most rows returned by `GET /api/v1/rooms` and `GET /api/v1/invites`
/// (newest first; the rest are cut off and `X-Truncated: true` is set).
pub const DEFAULT_LIST_MAX_ROWS: u32 = 200;
/// Upper bound for `list_max_rows`.
pub const LIST_MAX_ROWS_LIMIT: u32 = 1000;
/// Default longest time a client may take to send the complete header of a
/// request (`header_read_timeout_ms`): 10 s. The clock starts when the server
/// waits for a request, so it also ends idle keep-alive connections. Defends
/// against slowloris clients that trickle header bytes to hold a connection.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `header_read_timeout_ms` the server accepts: 120 s.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// TCP connections allowed on top of `[signaling] max_connections` when
/// `max_connections` is not set: 512 (plain HTTP requests, WebSocket
/// handshakes still in flight).
pub const DEFAULT_CONNECTION_HEADROOM: usize = 512;
/// Upper bound for `max_connections`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Default most open TCP connections from one client address
/// (`max_connections_per_ip`; an IPv6 client counts by its
/// `auth_ipv6_prefix_len` prefix): 256, a sixth of the default global cap, so
/// one address cannot take every slot (issue #22: 1 600 connections holding
/// unfinished bodies from one address made every other client get 503).
/// Connections from a trusted proxy count against the global cap only.
pub const DEFAULT_CONNECTIONS_PER_IP: usize = 256;
/// Default largest request header, request line included (`max_header_bytes`):
/// 32 KiB. It is also the connection's read buffer, so an unfinished header
/// holds at most this much memory; larger → `431` and the connection is closed.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Smallest accepted `max_header_bytes` (hyper's smallest read buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest accepted `max_header_bytes`: 1 MiB.
pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Default most header fields in one request (`max_headers`): 64 (browsers
/// send about 20); more → `431` and the connection is closed.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Allowed range of `max_headers`.
pub const MAX_HEADERS_RANGE: std::ops::RangeInclusive<usize> = 16..=1000;
/// Default longest time to receive a request body, from the end of its header
/// (`body_read_timeout_ms`): 20 s. A body not complete by then is answered
/// `408` and the connection is closed, so a request that declares a body and
/// sends it slowly (or never) cannot hold a connection.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Default longest pause between two pieces of a request body
/// (`body_idle_timeout_ms`): 5 s; longer → `408`, connection closed.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `body_read_timeout_ms` (and `body_idle_timeout_ms`) accepted: 300 s.
pub const MAX_BODY_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The resolved configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Holds `watchparty.db` and the generated keys.
    pub data_dir: PathBuf,
    /// Public base URL (e.g. `https://party.example.org`), used to build stream URLs.
    /// When unset, stream URLs are relative (`/api/v1/...`).
    pub public_url: Option<String>,
    /// Whether `POST /api/v1/auth/register` is enabled. Off by default.
    pub open_registration: bool,
    /// TLS certificate chain (PEM). TLS is on when both cert and key are set.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` header is honoured.
    pub trusted_proxies: Vec<IpNet>,
    /// Length in bits of the IPv6 prefix that the authentication endpoints'
    /// per-prefix limit keys on (on top of the per-address limit);
    /// [`crate::throttle::IPV6_PREFIX_LEN_RANGE`], default
    /// [`crate::throttle::DEFAULT_IPV6_PREFIX_LEN`] (one subscriber's /64).
    pub auth_ipv6_prefix_len: u8,
    /// Browser origins allowed by CORS. Empty = CORS off (no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Access-token lifetime (≤ [`MAX_ACCESS_TTL`]).
    pub access_token_ttl: Duration,
    /// Session / refresh-token lifetime.
    pub refresh_token_ttl: Duration,
    /// Whether the web app's refresh-token cookie carries `Secure` (and the
    /// `__Secure-` name prefix); default `true`. Browsers store such a cookie
    /// only from a secure context (HTTPS, or `http://localhost` /
    /// `http://127.0.0.1`), so only a plain-HTTP server reached by another
    /// address needs `false` — and then the token crosses the network in
    /// clear text. See docs/operations.md.
    pub cookie_secure: bool,
    /// Signed stream URL lifetime (≤ [`MAX_STREAM_URL_TTL`]).
    pub stream_url_ttl: Duration,
    /// Maximum joined members per room (2..=[`ROOM_MAX_MEMBERS_LIMIT`]).
    pub room_max_members: u32,
    /// Open rooms without activity for this long are ended.
    pub room_idle_timeout: Duration,
    /// Ended rooms are deleted after this long.
    pub ended_room_retention: Duration,
    /// How often the cleanup task runs.
    pub cleanup_interval: Duration,
    /// Argon2id cost (default: OWASP parameters).
    pub argon2: Argon2Cost,
    /// Concurrent password hashes (1..=64).
    pub hash_concurrency: usize,
    /// Longest wait for a hashing slot before 503 `busy` (positive, ≤ 60 s).
    pub hash_queue_timeout: Duration,
    /// Most requests waiting for a hashing slot (1..=[`HASH_QUEUE_MAX_WAITERS_LIMIT`]).
    pub hash_queue_max_waiters: usize,
    /// Most directory entries one library scan examines
    /// (1..=[`SCAN_MAX_ENTRIES_LIMIT`]); a bigger tree fails the scan unchanged.
    pub scan_max_entries: usize,
    /// Most rows in the room list and the invitation inbox (1..=[`LIST_MAX_ROWS_LIMIT`]).
    pub list_max_rows: u32,
    /// Longest time to receive a request header, and longest idle time of a
    /// keep-alive connection (positive, ≤ [`MAX_HEADER_READ_TIMEOUT`]); default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Most open TCP connections, upgraded WebSockets included (more than
    /// `signaling.max_connections`, ≤ [`MAX_CONNECTIONS_LIMIT`]). `None`:
    /// `signaling.max_connections` + [`DEFAULT_CONNECTION_HEADROOM`]; see
    /// [`Config::connection_limit`].
    pub max_connections: Option<usize>,
    /// Most open TCP connections from one client address (an IPv6 client by
    /// its `auth_ipv6_prefix_len` prefix; trusted proxies exempt), 1..=
    /// [`MAX_CONNECTIONS_LIMIT`]; default [`DEFAULT_CONNECTIONS_PER_IP`]. It
    /// takes effect only below [`Config::connection_limit`].
    pub max_connections_per_ip: usize,
    /// Largest request header in bytes, request line included
    /// ([`MIN_MAX_HEADER_BYTES`]..=[`MAX_MAX_HEADER_BYTES`]); default
    /// [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// Most header fields in one request ([`MAX_HEADERS_RANGE`]); default
    /// [`DEFAULT_MAX_HEADERS`].
    pub max_headers: usize,
    /// Longest time to receive a request body (positive, ≤
    /// [`MAX_BODY_READ_TIMEOUT`]); default [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Longest pause within a request body (positive, ≤ `body_read_timeout`);
    /// default [`DEFAULT_BODY_IDLE_TIMEOUT`].
    pub body_idle_timeout: Duration,
    /// The signaling WebSocket (`[signaling]` table; see [`crate::ws::config`]).
    pub signaling: crate::ws::SignalingConfig,
    /// The audit trail (`[audit]` table; see [`crate::audit::config`]).
    pub audit: crate::audit::AuditConfig,
    /// Static web app served at `/` (see [`crate::web`]); default [`DEFAULT_WEB_DIR`].
    pub web_dir: PathBuf,
    /// The wasm bundle served under `/pkg/`; default `<web_dir>/pkg`.
    pub web_pkg_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            public_url: None,
            open_registration: false,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            auth_ipv6_prefix_len: crate::throttle::DEFAULT_IPV6_PREFIX_LEN,
            cors_origins: Vec::new(),
            access_token_ttl: DEFAULT_ACCESS_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TTL,
            cookie_secure: true,
            stream_url_ttl: DEFAULT_STREAM_URL_TTL,
            room_max_members: DEFAULT_ROOM_MAX_MEMBERS,
            room_idle_timeout: DEFAULT_ROOM_IDLE_TIMEOUT,
            ended_room_retention: DEFAULT_ENDED_ROOM_RETENTION,
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            argon2: Argon2Cost::default(),
            hash_concurrency: DEFAULT_HASH_CONCURRENCY,
            hash_queue_timeout: DEFAULT_HASH_QUEUE_TIMEOUT,
            hash_queue_max_waiters: DEFAULT_HASH_QUEUE_MAX_WAITERS,
            scan_max_entries: DEFAULT_SCAN_MAX_ENTRIES,
            list_max_rows: DEFAULT_LIST_MAX_ROWS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: DEFAULT_CONNECTIONS_PER_IP,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            signaling: crate::ws::SignalingConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            web_dir: PathBuf::from(DEFAULT_WEB_DIR),
            web_pkg_dir: None,
        }
    }

    /// The password-hashing queue bounds (`hash_concurrency`,
    /// `hash_queue_timeout_ms`, `hash_queue_max_waiters`).
    pub fn hash_queue_limits(&self) -> HashQueueLimits {
        HashQueueLimits {
            concurrency: self.hash_concurrency,
            timeout: self.hash_queue_timeout,
            max_waiters: self.hash_queue_max_waiters,
        }
    }

    /// Directory served under `/pkg/`: `web_pkg_dir`, else `<web_dir>/pkg`.
    pub fn web_pkg_dir(&self) -> PathBuf {
        self.web_pkg_dir
            .clone()
            .unwrap_or_else(|| self.web_dir.join("pkg"))
    }

    /// The effective cap on open TCP connections: `max_connections`, else
    /// `signaling.max_connections` + [`DEFAULT_CONNECTION_HEADROOM`].
    pub fn connection_limit(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            self.signaling
                .max_connections
                .saturating_add(DEFAULT_CONNECTION_HEADROOM)
        })
    }

    /// Checks the cross-field rules and bounds; returns a message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.access_token_ttl.is_zero() || self.access_token_ttl > MAX_ACCESS_TTL {
            return Err(format!(
                "access_token_ttl_secs must be 1..={}",
                MAX_ACCESS_TTL.as_secs()
            ));
        }
        if self.stream_url_ttl.is_zero() || self.stream_url_ttl > MAX_STREAM_URL_TTL {
            return Err(format!(
                "stream_url_ttl_secs must be 1..={}",
                MAX_STREAM_URL_TTL.as_secs()
            ));
        }
        if self.refresh_token_ttl < self.access_token_ttl {
            return Err("refresh_token_ttl_secs must be at least access_token_ttl_secs".into());
        }
        if !(2..=ROOM_MAX_MEMBERS_LIMIT).contains(&self.room_max_members) {
            return Err(format!(
                "room_max_members must be 2..={ROOM_MAX_MEMBERS_LIMIT}"
            ));
        }
        if self.hash_concurrency == 0 || self.hash_concurrency > 64 {
            return Err("hash_concurrency must be 1..=64".into());
        }
        if self.hash_queue_timeout.is_zero() || self.hash_queue_timeout > MAX_HASH_QUEUE_TIMEOUT {
            return Err(format!(
                "hash_queue_timeout_ms must be 1..={}",
                MAX_HASH_QUEUE_TIMEOUT.as_millis()
            ));
        }
        if !(1..=HASH_QUEUE_MAX_WAITERS_LIMIT).contains(&self.hash_queue_max_waiters) {
            return Err(format!(
                "hash_queue_max_waiters must be 1..={HASH_QUEUE_MAX_WAITERS_LIMIT}"
            ));
        }
        if !(1..=SCAN_MAX_ENTRIES_LIMIT).contains(&self.scan_max_entries) {
            return Err(format!(
                "scan_max_entries must be 1..={SCAN_MAX_ENTRIES_LIMIT}"
            ));
        }
        if !crate::throttle::IPV6_PREFIX_LEN_RANGE.contains(&self.auth_ipv6_prefix_len) {
            return Err(format!(
                "auth_ipv6_prefix_len must be {}..={}",
                crate::throttle::IPV6_PREFIX_LEN_RANGE.start(),
                crate::throttle::IPV6_PREFIX_LEN_RANGE.end()
            ));
        }
        if !(1..=LIST_MAX_ROWS_LIMIT).contains(&self.list_max_rows) {
            return Err(format!("list_max_rows must be 1..={LIST_MAX_ROWS_LIMIT}"));
        }
        if self.header_read_timeout.is_zero() || self.header_read_timeout > MAX_HEADER_READ_TIMEOUT
        {
            return Err(format!(
                "header_read_timeout_ms must be 1..={}",
                MAX_HEADER_READ_TIMEOUT.as_millis()
            ));
        }
        if let Some(max) = self.max_connections
            && (max <= self.signaling.max_connections || max > MAX_CONNECTIONS_LIMIT)
        {
            return Err(format!(
                "max_connections must be more than [signaling] max_connections ({}) and at most {MAX_CONNECTIONS_LIMIT}",
                self.signaling.max_connections
            ));
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections_per_ip) {
            return Err(format!(
                "max_connections_per_ip must be 1..={MAX_CONNECTIONS_LIMIT}"
            ));
        }
        if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(format!(
                "max_header_bytes must be {MIN_MAX_HEADER_BYTES}..={MAX_MAX_HEADER_BYTES}"
            ));
        }
        if !MAX_HEADERS_RANGE.contains(&self.max_headers) {
            return Err(format!(
                "max_headers must be {}..={}",
                MAX_HEADERS_RANGE.start(),
                MAX_HEADERS_RANGE.end()
            ));
        }
        if self.body_read_timeout.is_zero() || self.body_read_timeout > MAX_BODY_READ_TIMEOUT {
            return Err(format!(
                "body_read_timeout_ms must be 1..={}",
                MAX_BODY_READ_TIMEOUT.as_millis()
            ));
        }
        if self.body_idle_timeout.is_zero() || self.body_idle_timeout > self.body_read_timeout {
            return Err("body_idle_timeout_ms must be 1..=body_read_timeout_ms".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key must be given together".into());
        }
        if self.cleanup_interval.is_zero() {
            return Err("cleanup_interval_secs must be positive".into());
        }
        self.signaling.validate()?;
        self.audit.validate()?;
        argon2::Params::new(
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism,
            None,
        )
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        for origin in &self.cors_origins {
            if origin == "*" || !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(format!(
                    "cors origin {origin:?} must be an explicit http(s) origin (no wildcard)"
                ));
            }
        }
        Ok(())
    }

    /// The browser origins the web app runs on: `[signaling]
    /// allowed_origins`, else the origin of `public_url` (none when both are
    /// unset). The signaling WebSocket and the refresh-cookie routes admit
    /// browser requests only from these.
    pub fn app_origins(&self) -> Vec<crate::ws::origin::Origin> {
        crate::ws::origin::allowlist(&self.signaling.allowed_origins, self.public_url.as_deref())
    }

    /// Whether TLS is configured.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("watchparty.db")
    }
}

/// Shape of the optional TOML file (`--config`). Every field is optional;
/// unknown fields are an error so typos do not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Config::bind`].
    pub bind: Option<SocketAddr>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::public_url`].
    pub public_url: Option<String>,
    /// See [`Config::open_registration`].
    pub open_registration: Option<bool>,
    /// See [`Config::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Config::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Config::trusted_proxies`].
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// See [`Config::auth_ipv6_prefix_len`].
    pub auth_ipv6_prefix_len: Option<u8>,
    /// See [`Config::cors_origins`].
    pub cors_origins: Option<Vec<String>>,
    /// Seconds; see [`Config::access_token_ttl`].
    pub access_token_ttl_secs: Option<u64>,
    /// Seconds; see [`Config::refresh_token_ttl`].
    pub refresh_token_ttl_secs: Option<u64>,
    /// See [`Config::cookie_secure`].
    pub cookie_secure: Option<bool>,
    /// Seconds; see [`Config::stream_url_ttl`].
    pub stream_url_ttl_secs: Option<u64>,
    /// See [`Config::room_max_members`].
    pub room_max_members: Option<u32>,
    /// Seconds; see [`Config::room_idle_timeout`].
    pub room_idle_timeout_secs: Option<u64>,
    /// Seconds; see [`Config::ended_room_retention`].
    pub ended_room_retention_secs: Option<u64>,
    /// Seconds; see [`Config::cleanup_interval`].
    pub cleanup_interval_secs: Option<u64>,
    /// See [`Config::argon2`].
    pub argon2: Option<Argon2Cost>,
    /// See [`Config::hash_concurrency`].
    pub hash_concurrency: Option<usize>,
    /// Milliseconds; see [`Config::hash_queue_timeout`].
    pub hash_queue_timeout_ms: Option<u64>,
    /// See [`Config::hash_queue_max_waiters`].
    pub hash_queue_max_waiters: Option<usize>,
    /// See [`Config::scan_max_entries`].
    pub scan_max_entries: Option<usize>,
    /// See [`Config::list_max_rows`].
    pub list_max_rows: Option<u32>,
    /// Milliseconds; see [`Config::header_read_timeout`].
    pub header_read_timeout_ms: Option<u64>,
    /// See [`Config::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`Config::max_connections_per_ip`].
    pub max_connections_per_ip: Option<usize>,
    /// See [`Config::max_header_bytes`].
    pub max_header_bytes: Option<usize>,
    /// See [`Config::max_headers`].
    pub max_headers: Option<usize>,
    /// Milliseconds; see [`Config::body_read_timeout`].
    pub body_read_timeout_ms: Option<u64>,
    /// Milliseconds; see [`Config::body_idle_timeout`].
    pub body_idle_timeout_ms: Option<u64>,
    /// See [`Config::signaling`].
    pub signaling: Option<crate::ws::SignalingConfig>,
    /// See [`Config::audit`].
    pub audit: Option<crate::audit::AuditConfig>,
    /// See [`Config::web_dir`].
    pub web_dir: Option<PathBuf>,
    /// See [`Config::web_pkg_dir`].
    pub web_pkg_dir: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }
}

/// Resolves `over` (flags and environment; clap has already applied "flag
/// beats env") over `file` over the defaults, then validates.
pub fn resolve(over: FileConfig, file: FileConfig) -> Result<Config, String> {
    let file = FileConfig {
        bind: over.bind.or(file.bind),
        data_dir: over.data_dir.or(file.data_dir),
        public_url: over.public_url.or(file.public_url),
        open_registration: over.open_registration.or(file.open_registration),
        tls_cert: over.tls_cert.or(file.tls_cert),
        tls_key: over.tls_key.or(file.tls_key),
        trusted_proxies: over.trusted_proxies.or(file.trusted_proxies),
        cors_origins: over.cors_origins.or(file.cors_origins),
        web_dir: over.web_dir.or(file.web_dir),
        web_pkg_dir: over.web_pkg_dir.or(file.web_pkg_dir),
        ..file
    };
    let mut c = Config::new(
        file.data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    );
    if let Some(bind) = file.bind {
        c.bind = bind;
    }
    c.public_url = file.public_url;
    c.open_registration = file.open_registration.unwrap_or(false);
    c.tls_cert = file.tls_cert;
    c.tls_key = file.tls_key;
    c.trusted_proxies = file.trusted_proxies.unwrap_or_default();
    c.cors_origins = file.cors_origins.unwrap_or_default();
    if let Some(dir) = file.web_dir {
        c.web_dir = dir;
    }
    c.web_pkg_dir = file.web_pkg_dir;
    let secs = Duration::from_secs;
    if let Some(v) = file.access_token_ttl_secs {
        c.access_token_ttl = secs(v);
    }
    if let Some(v) = file.refresh_token_ttl_secs {
        c.refresh_token_ttl = secs(v);
    }
    if let Some(v) = file.cookie_secure {
        c.cookie_secure = v;
    }
    if let Some(v) = file.stream_url_ttl_secs {
        c.stream_url_ttl = secs(v);
    }
    if let Some(v) = file.room_max_members {
        c.room_max_members = v;
    }
    if let Some(v) = file.room_idle_timeout_secs {
        c.room_idle_timeout = secs(v);
    }
    if let Some(v) = file.ended_room_retention_secs {
        c.ended_room_retention = secs(v);
    }
    if let Some(v) = file.cleanup_interval_secs {
        c.cleanup_interval = secs(v);
    }
    if let Some(v) = file.argon2 {
        c.argon2 = v;
    }
    if let Some(v) = file.hash_concurrency {
        c.hash_concurrency = v;
    }
    if let Some(v) = file.signaling {
        c.signaling = v;
    }
    if let Some(v) = file.audit {
        c.audit = v;
    }
    if let Some(v) = file.hash_queue_timeout_ms {
        c.hash_queue_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.hash_queue_max_waiters {
        c.hash_queue_max_waiters = v;
    }
    if let Some(v) = file.scan_max_entries {
        c.scan_max_entries = v;
    }
    if let Some(v) = file.list_max_rows {
        c.list_max_rows = v;
    }
    if let Some(v) = file.auth_ipv6_prefix_len {
        c.auth_ipv6_prefix_len = v;
    }
    if let Some(v) = file.header_read_timeout_ms {
        c.header_read_timeout = Duration::from_millis(v);
    }
    c.max_connections = file.max_connections;
    if let Some(v) = file.max_connections_per_ip {
        c.max_connections_per_ip = v;
    }
    if let Some(v) = file.max_header_bytes {
        c.max_header_bytes = v;
    }
    if let Some(v) = file.max_headers {
        c.max_headers = v;
    }
    if let Some(v) = file.body_read_timeout_ms {
        c.body_read_timeout = Duration::from_millis(v);
    }
    if let Some(v) = file.body_idle_timeout_ms {
        c.body_idle_timeout = Duration::from_millis(v);
    }
    if let Some(url) = &c.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err("public_url must start with http:// or https://".into());
    }
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: FileConfig = toml::from_str(
            "bind = \"127.0.0.1:9000\"\nopen_registration = true\npublic_url = \"https://a.example\"",
        )
        .unwrap();
        let over = FileConfig {
            bind: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let c = resolve(over, file).unwrap();
        assert_eq!(c.bind.port(), 9100);
        assert!(c.open_registration);
        assert_eq!(c.public_url.as_deref(), Some("https://a.example"));
        let c = resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert!(!c.open_registration, "registration is off by default");
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
    }

    #[test]
    fn limits_are_enforced() {
        let file: FileConfig = toml::from_str("access_token_ttl_secs = 901").unwrap();
        assert!(resolve(FileConfig::default(), file).is_err());
        let file: FileConfig = toml::from_str("stream_url_ttl_secs = 601").unwrap();
        assert!(resolve(FileConfig::default(), file).is_err());
        let file: FileConfig = toml::from_str("room_max_members = 65").unwrap();
        assert!(resolve(FileConfig::default(), file).is_err());
        for bad in [
            "hash_queue_timeout_ms = 0",
            "hash_queue_timeout_ms = 60001",
            "hash_queue_max_waiters = 0",
            "scan_max_entries = 0",
            "list_max_rows = 0",
            "list_max_rows = 1001",
            "auth_ipv6_prefix_len = 31",
            "auth_ipv6_prefix_len = 129",
            "header_read_timeout_ms = 0",
            "header_read_timeout_ms = 120001",
            "max_connections = 1024",
            "max_connections = 1000001",
            "max_connections = 2000\n[signaling]\nmax_connections = 2000",
            "max_connections_per_ip = 0",
            "max_header_bytes = 8191",
            "max_header_bytes = 1048577",
            "max_headers = 15",
            "max_headers = 1001",
            "body_read_timeout_ms = 0",
            "body_read_timeout_ms = 300001",
            "body_idle_timeout_ms = 0",
            "body_idle_timeout_ms = 20001",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(resolve(FileConfig::default(), file).is_err(), "{bad}");
        }
        let file: FileConfig = toml::from_str(
            "hash_queue_timeout_ms = 250\nhash_queue_max_waiters = 3\nscan_max_entries = 7\nlist_max_rows = 5\nauth_ipv6_prefix_len = 56",
        )
        .unwrap();
        let c = resolve(FileConfig::default(), file).unwrap();
        assert_eq!(c.hash_queue_timeout, Duration::from_millis(250));
        assert_eq!(c.auth_ipv6_prefix_len, 56);
        assert_eq!(
            (
                c.hash_queue_max_waiters,
                c.scan_max_entries,
                c.list_max_rows
            ),
            (3, 7, 5)
        );
        let c = resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(c.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(c.connection_limit(), 1024 + DEFAULT_CONNECTION_HEADROOM);
        let file: FileConfig = toml::from_str(
            "header_read_timeout_ms = 1500\nmax_connections = 1025\n[signaling]\nmax_connections = 1024",
        )
        .unwrap();
        let c = resolve(FileConfig::default(), file).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(c.connection_limit(), 1025);
        let file: FileConfig = toml::from_str(
            "max_connections_per_ip = 9\nmax_header_bytes = 8192\nmax_headers = 16\nbody_read_timeout_ms = 900\nbody_idle_timeout_ms = 300",
        )
        .unwrap();
        let c = resolve(FileConfig::default(), file).unwrap();
        assert_eq!(
            (c.max_connections_per_ip, c.max_header_bytes, c.max_headers),
            (9, 8192, 16)
        );
        assert_eq!(
            (c.body_read_timeout, c.body_idle_timeout),
            (Duration::from_millis(900), Duration::from_millis(300))
        );
        let file: FileConfig = toml::from_str("[signaling]\nmax_connections = 8192").unwrap();
        let c = resolve(FileConfig::default(), file).unwrap();
        assert_eq!(c.connection_limit(), 8192 + DEFAULT_CONNECTION_HEADROOM);
        let file: FileConfig = toml::from_str("cors_origins = [\"*\"]").unwrap();
        assert!(resolve(FileConfig::default(), file).is_err());
        assert!(toml::from_str::<FileConfig>("bnid = \"x\"").is_err());
    }
}
