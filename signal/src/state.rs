//! The shared application state handed to every handler.

use std::net::IpAddr;
use std::sync::Arc;

use sqlx::SqlitePool;

use crate::config::Config;
use crate::keys::{KeyError, ServerKeys};
use crate::password::{HashQueueLimits, HashSetupError, PasswordHasherPool};
use crate::throttle::{
    AUTH_IP_BURST, AUTH_IP_REFILL, FailureThrottle, LOGIN_BASE_LOCK, LOGIN_FREE_FAILURES,
    LOGIN_MAX_LOCK, ROOM_BASE_LOCK, ROOM_CREATE_BURST, ROOM_CREATE_REFILL, ROOM_FREE_FAILURES,
    ROOM_IP_FREE_FAILURES, ROOM_MAX_LOCK, RateLimiter, THROTTLE_CAPACITY,
};
use crate::tokens::{AccessTokens, StreamTokens};

/// Brute-force throttles and rate limiters (in memory; reset on restart).
#[derive(Debug)]
pub struct Limiters {
    /// Login failures per username (whether or not the account exists).
    pub login_account: FailureThrottle<String>,
    /// Requests to authentication endpoints per client IP.
    pub auth_ip: RateLimiter<IpAddr>,
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
            auth_ip: RateLimiter::new(AUTH_IP_BURST, AUTH_IP_REFILL, THROTTLE_CAPACITY),
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
        let hasher = PasswordHasherPool::new(config.argon2, HashQueueLimits::from_config(&config))?;
        Ok(AppState {
            access_tokens: Arc::new(AccessTokens::new(&keys.jwt)),
            stream_tokens: Arc::new(StreamTokens::new(&keys.stream)),
            keys: Arc::new(keys),
            config: Arc::new(config),
            db,
            hasher,
            limits: Arc::new(Limiters::new()),
            hub: Arc::new(crate::ws::Hub::default()),
        })
    }
}
