//! The authentication extractor.
//!
//! [`AuthUser`] reads `Authorization: Bearer <access JWT>`, verifies the token
//! ([`crate::tokens::AccessTokens::verify`]), then checks in the database that
//! the session is still active and the account not disabled, so logout,
//! refresh-token reuse and `user disable` take effect at once. The signaling
//! WebSocket (issue 5) can call [`authenticate`] with a token from elsewhere.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::db::now_secs;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Whether the user is an administrator (sees all media).
    pub is_admin: bool,
    /// The session the token belongs to.
    pub session_id: [u8; 16],
}

/// Verifies an access token and loads its user; any failure is `Unauthorized`.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let verified = state.access_tokens.verify(token).map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        ApiError::Unauthorized
    })?;
    let row: Option<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, u.is_admin
           FROM users u JOIN sessions s ON s.user_id = u.id
          WHERE u.id = ?1 AND s.id = ?2 AND s.status = 'active'
            AND s.expires_at > ?3 AND u.disabled = 0",
    )
    .bind(verified.user_id)
    .bind(verified.session_id.as_slice())
    .bind(now_secs())
    .fetch_optional(&state.db)
    .await?;
    let (id, username, display_name, is_admin) = row.ok_or(ApiError::Unauthorized)?;
    Ok(AuthUser {
        id,
        username,
        display_name,
        is_admin: is_admin != 0,
        session_id: verified.session_id,
    })
}

/// Extracts the bearer token from the Authorization header.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    bearer_from_headers(&parts.headers)
}

/// Extracts the bearer token from the Authorization header of `headers`.
pub fn bearer_from_headers(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized)?;
        authenticate(state, token).await
    }
}

/// The authenticated caller, who must be an administrator: anyone else gets
/// 403 `forbidden` (that administrators exist is no secret; `GET /api/v1/me`
/// shows the flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(ApiError::Forbidden("administrators only".into()));
        }
        Ok(AdminUser(user))
    }
}
