//! Accounts, sessions and rotating refresh tokens (storage layer).
//!
//! A login creates a *session*; the session owns a family of refresh tokens
//! stored as SHA-256 hashes. Each refresh marks the presented token `used` and
//! issues a new one. Presenting a `used` token again (reuse: it was stolen or
//! replayed) revokes the whole session, which also invalidates its access
//! tokens at once (the auth extractor checks the session).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::db::{begin_immediate, now_secs};
use crate::error::ApiError;
use crate::validate::{DisplayName, Username};

/// Length of a refresh token before encoding (256 bits).
pub const REFRESH_TOKEN_BYTES: usize = 32;
/// Length of an encoded refresh token.
pub const REFRESH_TOKEN_CHARS: usize = 43;
/// Most sessions one user may hold; the oldest are revoked beyond this.
pub const MAX_SESSIONS_PER_USER: i64 = 20;

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// PHC string.
    pub password_hash: String,
    /// Admin flag (0/1).
    pub is_admin: i64,
    /// Disabled flag (0/1).
    pub disabled: i64,
}

/// Fresh random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ApiError::internal("random generator failure"))?;
    Ok(out)
}

fn hash_refresh(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Inserts a user. Returns `Conflict` when the username is taken.
pub async fn create_user(
    db: &SqlitePool,
    username: &Username,
    display_name: &DisplayName,
    password_hash: &str,
    is_admin: bool,
) -> Result<i64, ApiError> {
    let res = sqlx::query(
        "INSERT INTO users (username, display_name, password_hash, is_admin, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(username.as_str())
    .bind(display_name.as_str())
    .bind(password_hash)
    .bind(i64::from(is_admin))
    .bind(now_secs())
    .execute(db)
    .await;
    match res {
        Ok(r) => Ok(r.last_insert_rowid()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ApiError::Conflict("username is taken".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Looks a user up by username.
pub async fn find_user(db: &SqlitePool, username: &str) -> Result<Option<UserRow>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, username, display_name, password_hash, is_admin, disabled
           FROM users WHERE username = ?1",
    )
    .bind(username)
    .fetch_optional(db)
    .await?)
}

/// The id of the enabled user `username`, if there is one (invitations name
/// their invitee by username).
pub async fn enabled_user_id<'e, E>(exec: E, username: &Username) -> Result<Option<i64>, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    Ok(
        sqlx::query_scalar("SELECT id FROM users WHERE username = ?1 AND disabled = 0")
            .bind(username.as_str())
            .fetch_optional(exec)
            .await?,
    )
}

/// Looks a user up by id.
pub async fn find_user_by_id(db: &SqlitePool, id: i64) -> Result<Option<UserRow>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, username, display_name, password_hash, is_admin, disabled
           FROM users WHERE id = ?1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// A new session and its first refresh token.
#[derive(Debug)]
pub struct NewSession {
    /// Session id.
    pub session_id: [u8; 16],
    /// The refresh token (only ever returned to the client).
    pub refresh_token: String,
    /// When the session ends (Unix seconds).
    pub expires_at: i64,
}

/// Creates a session for `user_id` with a first refresh token; trims old sessions.
pub async fn create_session(
    db: &SqlitePool,
    user_id: i64,
    ttl_secs: i64,
) -> Result<NewSession, ApiError> {
    let session_id = random_bytes::<16>()?;
    let refresh_token = URL_SAFE_NO_PAD.encode(random_bytes::<REFRESH_TOKEN_BYTES>()?);
    let now = now_secs();
    let expires_at = now.saturating_add(ttl_secs);
    let mut tx = begin_immediate(db).await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, status, created_at, expires_at)
         VALUES (?1, ?2, 'active', ?3, ?4)",
    )
    .bind(session_id.as_slice())
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, status, created_at)
         VALUES (?1, ?2, 'active', ?3)",
    )
    .bind(hash_refresh(&refresh_token).as_slice())
    .bind(session_id.as_slice())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // Bound the sessions per user: revoke all but the newest MAX_SESSIONS_PER_USER.
    sqlx::query(
        "UPDATE sessions SET status = 'revoked'
          WHERE user_id = ?1 AND status = 'active' AND id NOT IN (
                SELECT id FROM sessions WHERE user_id = ?1 AND status = 'active'
                 ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
    )
    .bind(user_id)
    .bind(MAX_SESSIONS_PER_USER)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(NewSession {
        session_id,
        refresh_token,
        expires_at,
    })
}

/// Outcome of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// Rotated: use the new token from now on.
    Rotated {
        /// The user.
        user_id: i64,
        /// The session.
        session_id: [u8; 16],
        /// The replacement refresh token.
        refresh_token: String,
        /// When the session ends (Unix seconds); rotation does not extend it.
        expires_at: i64,
    },
    /// Unknown, expired, revoked, or the user is disabled.
    Invalid,
    /// An already-used token was presented; its session is now revoked.
    ReuseDetected {
        /// The user whose session was revoked.
        user_id: i64,
        /// The revoked session (its sockets must close).
        session_id: [u8; 16],
    },
}

/// Rotates a refresh token (one `BEGIN IMMEDIATE` transaction).
pub async fn rotate_refresh(db: &SqlitePool, presented: &str) -> Result<RefreshOutcome, ApiError> {
    if presented.len() != REFRESH_TOKEN_CHARS {
        return Ok(RefreshOutcome::Invalid);
    }
    let hash = hash_refresh(presented);
    let now = now_secs();
    let mut tx = begin_immediate(db).await?;
    let row: Option<(Vec<u8>, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.id, rt.status, s.status, s.expires_at, s.user_id, u.disabled
           FROM refresh_tokens rt
           JOIN sessions s ON s.id = rt.session_id
           JOIN users u ON u.id = s.user_id
          WHERE rt.token_hash = ?1",
    )
    .bind(hash.as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((sid, token_status, session_status, expires_at, user_id, disabled)) = row else {
        return Ok(RefreshOutcome::Invalid);
    };
    let session_id: [u8; 16] = sid
        .try_into()
        .map_err(|_| ApiError::internal("session id length"))?;
    if token_status == "used" {
        sqlx::query("UPDATE sessions SET status = 'revoked' WHERE id = ?1")
            .bind(session_id.as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(RefreshOutcome::ReuseDetected {
            user_id,
            session_id,
        });
    }
    if session_status != "active" || expires_at <= now || disabled != 0 {
        return Ok(RefreshOutcome::Invalid);
    }
    let new_token = URL_SAFE_NO_PAD.encode(random_bytes::<REFRESH_TOKEN_BYTES>()?);
    sqlx::query("UPDATE refresh_tokens SET status = 'used' WHERE token_hash = ?1")
        .bind(hash.as_slice())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, status, created_at)
         VALUES (?1, ?2, 'active', ?3)",
    )
    .bind(hash_refresh(&new_token).as_slice())
    .bind(session_id.as_slice())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(RefreshOutcome::Rotated {
        user_id,
        session_id,
        refresh_token: new_token,
        expires_at,
    })
}

/// The active session a refresh token belongs to, whether the token is the
/// current one or an already-used one of the same session (logout by cookie:
/// whoever holds an old token of the family could revoke the session through
/// reuse detection anyway). `None` for unknown tokens and ended sessions.
pub async fn active_session_of_refresh(
    db: &SqlitePool,
    presented: &str,
) -> Result<Option<(i64, [u8; 16])>, ApiError> {
    if presented.len() != REFRESH_TOKEN_CHARS {
        return Ok(None);
    }
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT s.user_id, s.id
           FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
          WHERE rt.token_hash = ?1 AND s.status = 'active' AND s.expires_at > ?2",
    )
    .bind(hash_refresh(presented).as_slice())
    .bind(now_secs())
    .fetch_optional(db)
    .await?;
    row.map(|(user_id, sid)| {
        let sid: [u8; 16] = sid
            .try_into()
            .map_err(|_| ApiError::internal("session id length"))?;
        Ok((user_id, sid))
    })
    .transpose()
}

/// Revokes a session (logout).
pub async fn revoke_session(db: &SqlitePool, session_id: &[u8; 16]) -> Result<(), ApiError> {
    sqlx::query("UPDATE sessions SET status = 'revoked' WHERE id = ?1")
        .bind(session_id.as_slice())
        .execute(db)
        .await?;
    Ok(())
}

/// Revokes every session of a user (disable, password reset).
pub async fn revoke_all_sessions(db: &SqlitePool, user_id: i64) -> Result<(), ApiError> {
    sqlx::query("UPDATE sessions SET status = 'revoked' WHERE user_id = ?1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes expired sessions (and, by cascade, their refresh tokens).
pub async fn purge_sessions(db: &SqlitePool, now: i64) -> Result<u64, ApiError> {
    let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
        .bind(now)
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}
