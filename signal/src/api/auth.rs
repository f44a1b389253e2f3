//! `/api/v1/auth/*` and `/api/v1/me`.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{self, RefreshOutcome};
use crate::auth::AuthUser;
use crate::client_ip::ClientIp;
use crate::db::now_secs;
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::validate::{DisplayName, NewPassword, PresentedPassword, Username};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Registration request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// `[a-z0-9_.-]{3,32}`.
    #[schema(value_type = String)]
    pub username: Username,
    /// 8–128 characters.
    #[schema(value_type = String)]
    pub password: NewPassword,
    /// 1–50 characters, no control characters, none of `<>"'&`.
    #[schema(value_type = String)]
    pub display_name: DisplayName,
}

/// A user as shown to themselves.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Administrator.
    pub is_admin: bool,
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    #[schema(value_type = String)]
    pub password: PresentedPassword,
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Access JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque rotating refresh token; each use returns a new one.
    pub refresh_token: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: &'static str,
}

/// Refresh request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: String,
}

fn auth_ip_limit(state: &AppState, ip: ClientIp) -> ApiResult<()> {
    state
        .limits
        .auth_ip
        .hit(&ip.0, Instant::now())
        .map_err(|r| ApiError::RateLimited {
            retry_after_secs: r.secs(),
        })
}

fn ttl_secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn issue_tokens(
    state: &AppState,
    user_id: i64,
    session_id: &[u8; 16],
    refresh_token: String,
) -> ApiResult<TokenResponse> {
    let ttl = state.config.access_token_ttl;
    let access_token = state
        .access_tokens
        .issue(user_id, session_id, now_secs(), ttl_secs(ttl))
        .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    })
}

/// Self-registration (only when the server runs with open registration).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = UserView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "registration_closed"),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<ApiJson<RegisterRequest>, ApiError>,
) -> ApiResult<(StatusCode, ApiJson<UserView>)> {
    if !state.config.open_registration {
        return Err(ApiError::RegistrationClosed);
    }
    auth_ip_limit(&state, ip)?;
    let ApiJson(req) = body?;
    let hash = state.hasher.hash(req.password.as_bytes()).await?;
    let id =
        accounts::create_user(&state.db, &req.username, &req.display_name, &hash, false).await?;
    tracing::info!(user_id = id, "user registered");
    Ok((
        StatusCode::CREATED,
        ApiJson(UserView {
            id,
            username: req.username.as_str().to_owned(),
            display_name: req.display_name.as_str().to_owned(),
            is_admin: false,
        }),
    ))
}

/// Log in with username and password.
///
/// Unknown users, wrong passwords and disabled accounts all get the same 401
/// `invalid_credentials` after the same amount of hashing work.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorBody, description = "invalid_credentials"),
        (status = 429, body = ErrorBody, description = "rate_limited (per IP or per account)")))]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<ApiJson<TokenResponse>> {
    auth_ip_limit(&state, ip)?;
    // The throttle key is the presented name, whether or not the account exists.
    let key: String = req.username.chars().take(64).collect();
    state
        .limits
        .login_account
        .check(&key, Instant::now())
        .map_err(|r| {
            tracing::warn!("login throttled for account");
            ApiError::RateLimited {
                retry_after_secs: r.secs(),
            }
        })?;
    let user = match Username::parse(&req.username) {
        Ok(u) => accounts::find_user(&state.db, u.as_str()).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let verified = state.hasher.verify(req.password.as_bytes(), stored).await?;
    let user = match user {
        Some(u) if verified && req.password.plausible() && u.disabled == 0 => u,
        _ => {
            state.limits.login_account.fail(&key, Instant::now());
            tracing::info!(client_ip = %ip.0, "login failed");
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.limits.login_account.succeed(&key);
    let session =
        accounts::create_session(&state.db, user.id, ttl_secs(state.config.refresh_token_ttl))
            .await?;
    tracing::info!(user_id = user.id, "login succeeded");
    Ok(ApiJson(issue_tokens(
        &state,
        user.id,
        &session.session_id,
        session.refresh_token,
    )?))
}

/// Exchange a refresh token for new tokens (rotation).
///
/// Reusing an already-used refresh token revokes the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<ApiJson<TokenResponse>> {
    auth_ip_limit(&state, ip)?;
    match accounts::rotate_refresh(&state.db, &req.refresh_token).await? {
        RefreshOutcome::Rotated {
            user_id,
            session_id,
            refresh_token,
        } => Ok(ApiJson(issue_tokens(
            &state,
            user_id,
            &session_id,
            refresh_token,
        )?)),
        RefreshOutcome::ReuseDetected { user_id } => {
            tracing::warn!(user_id, "refresh token reuse detected; session revoked");
            Err(ApiError::Unauthorized)
        }
        RefreshOutcome::Invalid => Err(ApiError::Unauthorized),
    }
}

/// Log out: revokes the session of the presented access token (its refresh
/// token and all access tokens of the session stop working at once).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    accounts::revoke_session(&state.db, &user.session_id).await?;
    crate::ws::on_logout(&state, &user.session_id);
    tracing::info!(user_id = user.id, "logout");
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn me(user: AuthUser) -> ApiJson<UserView> {
    ApiJson(UserView {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        is_admin: user.is_admin,
    })
}
