//! Opening the SQLite database: explicit pragmas and embedded migrations.
//!
//! Settings (all explicit, see docs/operations.md):
//! - `journal_mode = WAL`: readers do not block the single writer.
//! - `synchronous = FULL`: every commit is durable even across power loss or an
//!   OS crash. Writes here are rare and small (logins, room edits), so the extra
//!   fsync per commit costs nothing noticeable, and accounts, sessions and room
//!   passwords must never silently roll back. (NORMAL would only lose the last
//!   commits on power loss, never on an application crash.)
//! - `foreign_keys = ON`, `busy_timeout` = [`BUSY_TIMEOUT`], create-if-missing.
//!
//! Read-modify-write sequences use [`begin_immediate`] (`BEGIN IMMEDIATE`) so the
//! write lock is taken up front and two writers never deadlock on a lock upgrade.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// How long a statement waits for a lock before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the pool.
pub const MAX_CONNECTIONS: u32 = 8;

/// The embedded migrations from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens (creating if missing) the database at `path` and runs pending migrations.
pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Starts a transaction with `BEGIN IMMEDIATE` (takes the write lock now).
pub async fn begin_immediate(
    pool: &SqlitePool,
) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Runs `SELECT 1`: whether the database answers (the readiness probe).
pub async fn ping(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(pool)
        .await
        .map(drop)
}

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
