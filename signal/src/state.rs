//! The shared application state handed to every handler.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use sqlx::SqlitePool;

use crate::config::Config;
use crate::keys::{KeyError, ServerKeys};
use crate::password::{HashSetupError, PasswordHasherPool};
use crate::throttle::{
    AUTH_IP_BURST, AUTH_IP_REFILL, AUTH_PREFIX_BURST, AUTH_PREFIX_REFILL, DEFAULT_IPV6_PREFIX_LEN,
    FailureThrottle, LOGIN_BASE_LOCK, LOGIN_FREE_FAILURES, LOGIN_MAX_LOCK, ROOM_BASE_LOCK,
    ROOM_CREATE_BURST, ROOM_CREATE_REFILL, ROOM_FREE_FAILURES, ROOM_IP_FREE_FAILURES,
    ROOM_MAX_LOCK, RateLimiter, RetryAfter, THROTTLE_CAPACITY, ipv6_prefix,
};
use crate::tokens::{AccessTokens, StreamTokens};

/// Whose failures a login attempt counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginKey {
    /// An existing account (by id), disabled or not.
    Account(i64),
    /// A name no account has (at most 64 characters of it).
    Unknown(String),
}

/// Brute-force throttles and rate limiters (in memory; reset on restart).
#[derive(Debug)]
pub struct Limiters {
    /// Login failures per existing account. Only existing accounts enter it,
    /// so unknown names can never push an account's lock out.
    pub login_account: FailureThrottle<i64>,
    /// Login failures per unknown username, apart from the accounts' table
    /// and with the same policy, so a throttled name looks the same whether
    /// or not the account exists.
    pub login_unknown: FailureThrottle<String>,
    /// Requests to authentication endpoints per client IP.
    pub auth_ip: RateLimiter<IpAddr>,
    /// Requests to authentication endpoints per IPv6 prefix of the client
    /// (see [`Limiters::ipv6_prefix_len`]); IPv4 clients are not in it.
    pub auth_prefix: RateLimiter<Ipv6Addr>,
    /// Length of the prefix [`Limiters::auth_prefix`] keys on
    /// (`auth_ipv6_prefix_len`).
    pub ipv6_prefix_len: u8,
    /// Wrong room passwords per room.
    pub room_password: FailureThrottle<String>,
    /// Wrong room passwords per (room, client IP).
    pub room_password_ip: FailureThrottle<(String, IpAddr)>,
    /// Room creations per user.
    pub room_create: RateLimiter<i64>,
}

impl Limiters {
    /// The production limits (see the constants in [`crate::throttle`]).
    pub fn new() -> Self {
        Limiters {
            login_account: FailureThrottle::new(
                LOGIN_FREE_FAILURES,
                LOGIN_BASE_LOCK,
                LOGIN_MAX_LOCK,
                THROTTLE_CAPACITY,
            ),
            login_unknown: FailureThrottle::new(
                LOGIN_FREE_FAILURES,
                LOGIN_BASE_LOCK,
                LOGIN_MAX_LOCK,
                THROTTLE_CAPACITY,
            ),
            auth_ip: RateLimiter::new(AUTH_IP_BURST, AUTH_IP_REFILL, THROTTLE_CAPACITY),
            auth_prefix: RateLimiter::new(AUTH_PREFIX_BURST, AUTH_PREFIX_REFILL, THROTTLE_CAPACITY),
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
            room_password: FailureThrottle::new(
                ROOM_FREE_FAILURES,
                ROOM_BASE_LOCK,
                ROOM_MAX_LOCK,
                THROTTLE_CAPACITY,
            ),
            room_password_ip: FailureThrottle::new(
                ROOM_IP_FREE_FAILURES,
                ROOM_BASE_LOCK,
                ROOM_MAX_LOCK,
                THROTTLE_CAPACITY,
            ),
            room_create: RateLimiter::new(ROOM_CREATE_BURST, ROOM_CREATE_REFILL, THROTTLE_CAPACITY),
        }
    }
}

impl Limiters {
    /// Takes one request of an authentication endpoint from `ip`: from its
    /// own bucket and, for IPv6, from its prefix's.
    pub fn auth_hit(&self, ip: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        self.auth_ip.hit(&ip, now)?;
        match ipv6_prefix(ip, self.ipv6_prefix_len) {
            Some(prefix) => self.auth_prefix.hit(&prefix, now),
            None => Ok(()),
        }
    }

    /// `Err` while the login key is locked.
    pub fn login_check(&self, key: &LoginKey, now: Instant) -> Result<(), RetryAfter> {
        match key {
            LoginKey::Account(id) => self.login_account.check(id, now),
            LoginKey::Unknown(name) => self.login_unknown.check(name, now),
        }
    }

    /// Records a failed login.
    pub fn login_failed(&self, key: &LoginKey, now: Instant) {
        match key {
            LoginKey::Account(id) => self.login_account.fail(id, now),
            LoginKey::Unknown(name) => self.login_unknown.fail(name, now),
        }
    }
}

impl Default for Limiters {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a handler needs. Cheap to clone (all fields are shared).
#[derive(Clone, Debug)]
pub struct AppState {
    /// Resolved configuration.
    pub config: Arc<Config>,
    /// The SQLite pool.
    pub db: SqlitePool,
    /// Key material (JWT key, stream key, server Ed25519 key).
    pub keys: Arc<ServerKeys>,
    /// Access-token issuer/verifier.
    pub access_tokens: Arc<AccessTokens>,
    /// Stream-URL signer/verifier.
    pub stream_tokens: Arc<StreamTokens>,
    /// Password hashing (argon2id, bounded concurrency).
    pub hasher: PasswordHasherPool,
    /// Throttles and rate limiters.
    pub limits: Arc<Limiters>,
    /// Signaling sockets (see [`crate::ws`]).
    pub hub: Arc<crate::ws::Hub>,
    /// The audit trail's writer and alert counters (see [`crate::audit`]).
    pub audit: Arc<crate::audit::Auditor>,
}

/// Failures while building the state at startup.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Data directory problem.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Keys could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Argon2 setup failed.
    #[error(transparent)]
    Hash(#[from] HashSetupError),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Socket or server I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Creates the data directory (mode 0700 on Unix) if missing.
pub fn ensure_data_dir(path: &std::path::Path) -> Result<(), StartupError> {
    let err = |source| StartupError::DataDir {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(path).map_err(err)?;
    }
    Ok(())
}

impl AppState {
    /// Opens the database and keys in `config.data_dir` and builds the state.
    pub async fn new(config: Config) -> Result<Self, StartupError> {
        config.validate().map_err(StartupError::Config)?;
        ensure_data_dir(&config.data_dir)?;
        let keys = ServerKeys::load_or_create(&config.data_dir)?;
        let db = crate::db::open(&config.database_path()).await?;
        let hasher = PasswordHasherPool::new(config.argon2, config.hash_queue_limits())?;
        let limits = Limiters {
            ipv6_prefix_len: config.auth_ipv6_prefix_len,
            ..Limiters::new()
        };
        let audit = Arc::new(crate::audit::Auditor::new(&keys.audit, &config.audit));
        audit.spawn_writer(db.clone());
        Ok(AppState {
            audit,
            access_tokens: Arc::new(AccessTokens::new(&keys.jwt)),
            stream_tokens: Arc::new(StreamTokens::new(&keys.stream)),
            keys: Arc::new(keys),
            config: Arc::new(config),
            db,
            hasher,
            limits: Arc::new(limits),
            hub: Arc::new(crate::ws::Hub::default()),
        })
    }
}
