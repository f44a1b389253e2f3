//! `/api/v1/auth/*` and `/api/v1/me`.

use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{self, RefreshOutcome};
use crate::api::cookie;
use crate::audit::{Actor, AuditAction, AuditOutcome, Entry, RequestMeta, Target};
use crate::auth::{AuthUser, authenticate, bearer_from_headers};
use crate::client_ip::ClientIp;
use crate::db::now_secs;
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::state::{AppState, LoginKey};
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
    #[schema(value_type = String, pattern = "^[a-z0-9_.-]{3,32}$")]
    pub username: Username,
    /// 8–128 characters.
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    pub password: NewPassword,
    /// 1–50 characters, no control characters, none of `<>"'&`.
    #[schema(value_type = String, min_length = 1, max_length = 50, pattern = r#"^[^\x00-\x1f\x7f-\x9f<>"'&]*$"#)]
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
    /// The web app sets this: the refresh token is then returned only as an
    /// `HttpOnly` cookie, never in the body. Needs `X-Watchparty-CSRF: 1` and
    /// an `Origin` of the app (else 403). Default `false`.
    #[serde(default)]
    pub refresh_cookie: bool,
}

/// Tokens returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Access JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque rotating refresh token; each use returns a new one. Absent when
    /// it was set as the refresh cookie instead (web app).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
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
        .auth_hit(ip.0, Instant::now())
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
    refresh_token: Option<String>,
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

/// The token reply: the refresh token in the body, or (`in_cookie`) only in
/// the refresh cookie that lasts as long as the session.
fn token_reply(
    state: &AppState,
    in_cookie: bool,
    user_id: i64,
    session_id: &[u8; 16],
    refresh_token: String,
    expires_at: i64,
) -> ApiResult<(HeaderMap, ApiJson<TokenResponse>)> {
    let mut headers = HeaderMap::new();
    let in_body = if in_cookie {
        let value = cookie::set(&state.config, &refresh_token, expires_at, now_secs())?;
        cookie::append(&mut headers, value);
        None
    } else {
        Some(refresh_token)
    };
    let body = issue_tokens(state, user_id, session_id, in_body)?;
    Ok((headers, ApiJson(body)))
}

/// Self-registration (only when the server runs with open registration).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = UserView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "registration_closed"),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "busy: the password hashing queue is full; retry")))]
async fn register(
    State(state): State<AppState>,
    meta: RequestMeta,
    body: Result<ApiJson<RegisterRequest>, ApiError>,
) -> ApiResult<(StatusCode, ApiJson<UserView>)> {
    if !state.config.open_registration {
        return Err(ApiError::RegistrationClosed);
    }
    auth_ip_limit(&state, ClientIp(meta.ip))?;
    let ApiJson(req) = body?;
    let hash = state.hasher.hash(req.password.as_bytes()).await?;
    let id =
        accounts::create_user(&state.db, &req.username, &req.display_name, &hash, false).await?;
    tracing::info!(user_id = id, "user registered");
    let entry = Entry::ok(Actor::User(id), AuditAction::UserCreated)
        .target(Target::User(id))
        .detail("registered")
        .from_request(&meta);
    state.audit.record(entry);
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
/// `invalid_credentials` after the same amount of hashing work. With
/// `refresh_cookie` the refresh token is set as an `HttpOnly` cookie and left
/// out of the body (see docs/api.md, "The web app's refresh cookie").
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    params(("X-Watchparty-CSRF" = Option<String>, Header,
        description = "`1`; required with `refresh_cookie`, as is an `Origin` of the app")),
    responses(
        (status = 200, body = TokenResponse, headers(("Set-Cookie" = String,
            description = "with `refresh_cookie` only: `__Secure-watchparty_refresh=<token>; Max-Age=<session lifetime>; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict`"))),
        (status = 401, body = ErrorBody, description = "invalid_credentials"),
        (status = 403, body = ErrorBody, description = "refresh_cookie without the CSRF header or from another origin"),
        (status = 429, body = ErrorBody, description = "rate_limited (per IP or per account)"),
        (status = 503, body = ErrorBody, description = "busy: the password hashing queue is full; retry")))]
async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<(HeaderMap, ApiJson<TokenResponse>)> {
    if req.refresh_cookie {
        cookie::check_csrf(&state.config, &headers)?;
    }
    let ip = ClientIp(meta.ip);
    // The attempted name, as far as the throttle keeps it; in the audit
    // trail only as its keyed hash.
    let attempted: String = req.username.chars().take(64).collect();
    let login_entry = |actor: Actor, outcome: AuditOutcome| {
        Entry::new(actor, AuditAction::Login, outcome).from_request(&meta)
    };
    let anonymous = || Actor::Anonymous {
        name_hash: Some(state.audit.name_hash(&attempted)),
    };
    if let Err(e) = auth_ip_limit(&state, ip) {
        let entry = login_entry(anonymous(), AuditOutcome::Throttled);
        state.audit.record(entry);
        return Err(e);
    }
    let user = match Username::parse(&req.username) {
        Ok(u) => accounts::find_user(&state.db, u.as_str()).await?,
        Err(_) => None,
    };
    // Failures count against the account when it exists, else against the
    // presented name in a table of their own (same policy, so a lock looks
    // the same either way, and unknown names cannot crowd accounts out).
    let key = match &user {
        Some(u) => LoginKey::Account(u.id),
        None => LoginKey::Unknown(attempted.clone()),
    };
    let actor = match &user {
        Some(u) => Actor::User(u.id),
        None => anonymous(),
    };
    if let Err(r) = state.limits.login_check(&key, Instant::now()) {
        tracing::warn!("login throttled for account");
        let entry = login_entry(actor, AuditOutcome::Throttled);
        state.audit.record(entry);
        return Err(ApiError::RateLimited {
            retry_after_secs: r.secs(),
        });
    }
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let verified = state.hasher.verify(req.password.as_bytes(), stored).await?;
    let user = match user {
        Some(u) if verified && req.password.plausible() && u.disabled == 0 => u,
        _ => {
            state.limits.login_failed(&key, Instant::now());
            tracing::info!(client_ip = %ip.0, "login failed");
            let entry = login_entry(actor, AuditOutcome::Failure);
            state.audit.record(entry);
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.limits.login_account.succeed(&user.id);
    let session =
        accounts::create_session(&state.db, user.id, ttl_secs(state.config.refresh_token_ttl))
            .await?;
    state
        .audit
        .record(login_entry(Actor::User(user.id), AuditOutcome::Success));
    tracing::info!(user_id = user.id, "login succeeded");
    token_reply(
        &state,
        req.refresh_cookie,
        user.id,
        &session.session_id,
        session.refresh_token,
        session.expires_at,
    )
}

/// Exchange a refresh token for new tokens (rotation).
///
/// Reusing an already-used refresh token revokes the whole session. Native
/// clients send the token in the JSON body and get the new one in the body.
/// The web app sends no body: the token comes from the refresh cookie (with
/// `X-Watchparty-CSRF: 1` and an `Origin` of the app, else 403), and the new
/// one goes back only in the cookie.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = Option<RefreshRequest>,
    params(
        ("X-Watchparty-CSRF" = Option<String>, Header,
            description = "`1`; required when the token comes from the cookie, as is an `Origin` of the app"),
        ("__Secure-watchparty_refresh" = Option<String>, Cookie,
            description = "the web app's refresh token, read only when there is no body")),
    responses(
        (status = 200, body = TokenResponse, headers(("Set-Cookie" = String,
            description = "cookie requests only: the rotated token, attributes as at login"))),
        (status = 401, body = ErrorBody, description = "unknown, used (the session is then revoked), expired or revoked token; a cookie request also gets the cookie deleted"),
        (status = 403, body = ErrorBody, description = "cookie request without the CSRF header or from another origin"),
        (status = 429, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Result<ApiJson<RefreshRequest>, ApiError>,
) -> Response {
    let (presented, in_cookie) = match body {
        Ok(ApiJson(req)) => (req.refresh_token, false),
        // No body at all: the web app's cookie.
        Err(_) if !headers.contains_key(CONTENT_TYPE) => {
            if let Err(e) = cookie::check_csrf(&state.config, &headers) {
                return e.into_response();
            }
            match cookie::presented(&state.config, &headers) {
                Some(t) => (t, true),
                None => return ApiError::Unauthorized.into_response(),
            }
        }
        Err(e) => return e.into_response(),
    };
    if let Err(e) = auth_ip_limit(&state, ClientIp(meta.ip)) {
        return e.into_response();
    }
    let refused = match accounts::rotate_refresh(&state.db, &presented).await {
        Ok(RefreshOutcome::Rotated {
            user_id,
            session_id,
            refresh_token,
            expires_at,
        }) => {
            return token_reply(
                &state,
                in_cookie,
                user_id,
                &session_id,
                refresh_token,
                expires_at,
            )
            .into_response();
        }
        Ok(RefreshOutcome::ReuseDetected {
            user_id,
            session_id,
        }) => {
            crate::ws::on_refresh_reuse(&state, &session_id);
            tracing::warn!(user_id, "refresh token reuse detected; session revoked");
            let entry = Entry::new(
                Actor::User(user_id),
                AuditAction::RefreshReuse,
                AuditOutcome::Failure,
            )
            .target(Target::User(user_id))
            .from_request(&meta);
            state.audit.record(entry);
            ApiError::Unauthorized
        }
        Ok(RefreshOutcome::Invalid) => ApiError::Unauthorized,
        Err(e) => return e.into_response(),
    };
    let mut response = refused.into_response();
    if in_cookie {
        // The cookie is worthless now: let the browser forget it.
        clear_cookie(&state, &mut response);
    }
    response
}

fn clear_cookie(state: &AppState, response: &mut Response) {
    match cookie::clear(&state.config) {
        Ok(v) => cookie::append(response.headers_mut(), v),
        Err(e) => tracing::error!(error = %e, "cannot build the cookie-clearing header"),
    }
}

/// Log out: revokes the session of the presented access token and/or of the
/// presented refresh cookie (its refresh token and all access tokens of the
/// session stop working at once), and deletes the cookie.
///
/// The cookie is read only with `X-Watchparty-CSRF: 1` and an `Origin` of the
/// app (else 403). 401 when neither credential names an active session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    params(
        ("X-Watchparty-CSRF" = Option<String>, Header,
            description = "`1`; required when the refresh cookie is sent, as is an `Origin` of the app"),
        ("__Secure-watchparty_refresh" = Option<String>, Cookie,
            description = "the web app's refresh token")),
    responses(
        (status = 204, headers(("Set-Cookie" = String,
            description = "when the cookie was sent: deletes it (`Max-Age=0`)"))),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "cookie sent without the CSRF header or from another origin")),
    security(("bearer" = []), ("refresh_cookie" = [])))]
async fn logout(State(state): State<AppState>, meta: RequestMeta, headers: HeaderMap) -> Response {
    let from_cookie = match cookie::presented(&state.config, &headers) {
        Some(t) => match cookie::check_csrf(&state.config, &headers) {
            Ok(()) => Some(t),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let mut response = match end_sessions(&state, &meta, &headers, from_cookie.as_deref()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    if from_cookie.is_some() {
        clear_cookie(&state, &mut response);
    }
    response
}

/// Revokes the session named by the refresh cookie and the one of the bearer
/// token; `Unauthorized` when neither names an active session.
async fn end_sessions(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    from_cookie: Option<&str>,
) -> ApiResult<()> {
    let mut ended: Option<[u8; 16]> = None;
    if let Some(token) = from_cookie
        && let Some((user_id, session_id)) =
            accounts::active_session_of_refresh(&state.db, token).await?
    {
        end_session(state, meta, user_id, &session_id).await?;
        ended = Some(session_id);
    }
    if let Some(token) = bearer_from_headers(headers) {
        match authenticate(state, token).await {
            Ok(user) if ended != Some(user.session_id) => {
                end_session(state, meta, user.id, &user.session_id).await?;
                ended = Some(user.session_id);
            }
            Ok(_) => {}
            // A stale access token does not fail a logout the cookie did.
            Err(e) if ended.is_none() => return Err(e),
            Err(_) => {}
        }
    }
    ended.map(|_| ()).ok_or(ApiError::Unauthorized)
}

async fn end_session(
    state: &AppState,
    meta: &RequestMeta,
    user_id: i64,
    session_id: &[u8; 16],
) -> ApiResult<()> {
    accounts::revoke_session(&state.db, session_id).await?;
    crate::ws::on_logout(state, session_id);
    tracing::info!(user_id, "logout");
    let entry = Entry::ok(Actor::User(user_id), AuditAction::Logout)
        .target(Target::User(user_id))
        .from_request(meta);
    state.audit.record(entry);
    Ok(())
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
