//! The REST client of the native peer: login and token refresh, media and
//! room listing, room creation and joining, signed stream URLs.
//!
//! Shapes follow `docs/api.md` (the server's `signal/src/api/`). The access
//! token only ever travels in the `Authorization` header; the client refreshes
//! it (rotating the refresh token) shortly before it expires and once after a
//! `401`. `Debug` of every token-holding type redacts the tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::signaling::Token;

/// Timeout of one REST request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Refresh the access token this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Largest response body read from the server (bytes).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server URL is not a usable `http(s)://` base URL.
    #[error("invalid server URL: {0}")]
    Url(String),
    /// Transport error (connect, TLS, timeout).
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error (`{"error", "message"}`).
    #[error("server refused ({status}): {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Stable error code (`docs/api.md`).
        code: String,
        /// Human-readable message.
        message: String,
    },
    /// The response was not what the API promises.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// No tokens: run `watchparty login`.
    #[error("not logged in")]
    NotLoggedIn,
    /// A custom CA file could not be read or parsed.
    #[error("CA file: {0}")]
    Ca(String),
}

/// Tokens from `POST /api/v1/auth/login` or `/refresh`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenPair {
    /// Bearer access token (short-lived).
    pub access_token: String,
    /// Refresh token (rotated on every refresh).
    pub refresh_token: String,
    /// Lifetime of the access token, seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A media item as listed by `GET /api/v1/media`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaInfo {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// `video` or `audio`.
    #[serde(default)]
    pub kind: String,
    /// Size in bytes.
    #[serde(default)]
    pub size_bytes: i64,
    /// Duration in milliseconds, if known.
    pub duration_ms: Option<i64>,
    /// SHA-256 of the content, hex.
    pub content_hash: String,
}

/// A member of a room view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomMember {
    /// User id.
    pub user_id: i64,
    /// Username.
    pub username: String,
    /// Role (`host`, `controller`, `viewer`).
    pub role: String,
    /// Status (`invited`, `joined`, …).
    pub status: String,
}

/// A room as returned by the rooms API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomInfo {
    /// 32 hex characters.
    pub id: String,
    /// Name.
    pub name: String,
    /// The host's user id.
    pub host_user_id: i64,
    /// The current media item.
    pub media_id: i64,
    /// `open` / `ended`.
    pub status: String,
    /// Host epoch.
    pub epoch: i64,
    /// Host room key (base64url), when registered.
    pub host_public_key: Option<String>,
    /// Our role.
    pub my_role: String,
    /// Members and invitees.
    #[serde(default)]
    pub members: Vec<RoomMember>,
}

/// `POST /api/v1/rooms` body.
#[derive(Debug, Clone, Serialize)]
pub struct CreateRoom {
    /// Room name.
    pub name: String,
    /// Media item id.
    pub media_id: i64,
    /// Only invited users may join.
    pub invite_only: bool,
    /// Room password (8–128 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Invitations.
    pub invites: Vec<Invite>,
    /// The host's room key (base64url), pinned by invite links.
    pub host_public_key: String,
}

/// One invitation of [`CreateRoom`].
#[derive(Debug, Clone, Serialize)]
pub struct Invite {
    /// Username.
    pub username: String,
    /// `controller` or `viewer`.
    pub role: String,
}

/// `POST /api/v1/media/{id}/stream-url` answer.
#[derive(Clone, Deserialize)]
pub struct StreamUrl {
    /// The signed URL (carries a short-lived stream token).
    pub url: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamUrl")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

/// Called with the new pair after every login/refresh (e.g. to save it).
pub type OnTokens = Box<dyn Fn(&TokenPair) + Send + Sync>;

struct TokenState {
    pair: Option<TokenPair>,
    /// When the access token was obtained.
    obtained: Instant,
    /// Called with the new pair after every login/refresh (persistence).
    on_update: Option<OnTokens>,
}

/// The REST client. Cheap to clone; clones share the tokens.
#[derive(Clone)]
pub struct ApiClient {
    base: reqwest::Url,
    http: reqwest::Client,
    tokens: Arc<Mutex<TokenState>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Parses an `http(s)://host[:port][/]` server base URL.
///
/// # Errors
/// [`ApiError::Url`] for another scheme, a missing host, credentials, a query
/// or a fragment.
pub fn parse_server_url(s: &str) -> Result<reqwest::Url, ApiError> {
    let u = reqwest::Url::parse(s).map_err(|e| ApiError::Url(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ApiError::Url("scheme must be http or https".into()));
    }
    if u.host_str().is_none() {
        return Err(ApiError::Url("missing host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ApiError::Url("credentials in the URL are refused".into()));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(ApiError::Url("no query or fragment allowed".into()));
    }
    Ok(u)
}

impl ApiClient {
    /// A client for the server at `base` (`https://host[:port]`), trusting the
    /// platform's roots plus, when given, the PEM certificates in `extra_ca`.
    ///
    /// # Errors
    /// [`ApiError::Url`], [`ApiError::Ca`], or a TLS setup error.
    pub fn new(base: &str, extra_ca: Option<&Path>) -> Result<Self, ApiError> {
        let base = parse_server_url(base)?;
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|e| ApiError::Ca(e.to_string()))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| ApiError::Ca(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            base,
            http: builder.build()?,
            tokens: Arc::new(Mutex::new(TokenState {
                pair: None,
                obtained: Instant::now(),
                on_update: None,
            })),
        })
    }

    /// The server base URL.
    #[must_use]
    pub fn base(&self) -> &reqwest::Url {
        &self.base
    }

    /// Uses saved tokens; `on_update` is called after each refresh (to save
    /// the rotated pair). Saved tokens are treated as possibly expired.
    pub async fn set_tokens(&self, pair: TokenPair, on_update: Option<OnTokens>) {
        let mut t = self.tokens.lock().await;
        t.pair = Some(pair);
        // Unknown age: refresh before first use.
        t.obtained = Instant::now()
            .checked_sub(Duration::from_secs(24 * 3600))
            .unwrap_or_else(Instant::now);
        t.on_update = on_update;
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ApiError> {
        self.base
            .join(path)
            .map_err(|e| ApiError::Url(e.to_string()))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, ApiError> {
        let status = resp.status();
        if let Some(len) = resp.content_length()
            && len > MAX_RESPONSE_BYTES as u64
        {
            return Err(ApiError::Decode(format!("response of {len} bytes")));
        }
        let bytes = resp.bytes().await?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(ApiError::Decode("response too large".into()));
        }
        if !status.is_success() {
            let (code, message) = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
                |_| ("unknown".into(), String::new()),
                |b| (b.error, b.message),
            );
            return Err(ApiError::Server {
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// `POST /api/v1/auth/login`. The password is sent in the body only.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn login(&self, username: &str, password: &str) -> Result<TokenPair, ApiError> {
        let resp = self
            .http
            .post(self.url("/api/v1/auth/login")?)
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await?;
        let pair: TokenPair = Self::read_json(resp).await?;
        let mut t = self.tokens.lock().await;
        t.pair = Some(pair.clone());
        t.obtained = Instant::now();
        if let Some(f) = &t.on_update {
            f(&pair);
        }
        Ok(pair)
    }

    async fn refresh_locked(&self, t: &mut TokenState) -> Result<(), ApiError> {
        let refresh = t
            .pair
            .as_ref()
            .map(|p| p.refresh_token.clone())
            .ok_or(ApiError::NotLoggedIn)?;
        let resp = self
            .http
            .post(self.url("/api/v1/auth/refresh")?)
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await?;
        let pair: TokenPair = Self::read_json(resp).await?;
        t.obtained = Instant::now();
        if let Some(f) = &t.on_update {
            f(&pair);
        }
        t.pair = Some(pair);
        Ok(())
    }

    /// A valid access token, refreshing first when it expires within
    /// [`REFRESH_MARGIN`] or when `force_refresh`.
    ///
    /// # Errors
    /// [`ApiError::NotLoggedIn`] or the refresh error.
    pub async fn access_token(&self, force_refresh: bool) -> Result<String, ApiError> {
        let mut t = self.tokens.lock().await;
        let pair = t.pair.as_ref().ok_or(ApiError::NotLoggedIn)?;
        let life = Duration::from_secs(pair.expires_in).saturating_sub(REFRESH_MARGIN);
        if force_refresh || t.obtained.elapsed() >= life {
            self.refresh_locked(&mut t).await?;
        }
        t.pair
            .as_ref()
            .map(|p| p.access_token.clone())
            .ok_or(ApiError::NotLoggedIn)
    }

    async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(path)?;
        for attempt in 0..2 {
            let token = self.access_token(attempt > 0).await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                continue;
            }
            return Ok(resp);
        }
        Err(ApiError::NotLoggedIn)
    }

    /// `GET /api/v1/media` (first page, up to 500 items).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn media(&self) -> Result<Vec<MediaInfo>, ApiError> {
        let r = self
            .authed(reqwest::Method::GET, "/api/v1/media?limit=500", None)
            .await?;
        Self::read_json(r).await
    }

    /// `GET /api/v1/media/{id}`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn media_item(&self, id: i64) -> Result<MediaInfo, ApiError> {
        let r = self
            .authed(reqwest::Method::GET, &format!("/api/v1/media/{id}"), None)
            .await?;
        Self::read_json(r).await
    }

    /// `GET /api/v1/rooms`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ApiError> {
        let r = self
            .authed(reqwest::Method::GET, "/api/v1/rooms", None)
            .await?;
        Self::read_json(r).await
    }

    /// `POST /api/v1/rooms`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn create_room(&self, req: &CreateRoom) -> Result<RoomInfo, ApiError> {
        let body = serde_json::to_value(req).map_err(|e| ApiError::Decode(e.to_string()))?;
        let r = self
            .authed(reqwest::Method::POST, "/api/v1/rooms", Some(body))
            .await?;
        Self::read_json(r).await
    }

    /// `POST /api/v1/rooms/{id}/join` (with the room password when set).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn join_room(
        &self,
        room: &str,
        password: Option<&str>,
    ) -> Result<RoomInfo, ApiError> {
        let body = match password {
            Some(p) => serde_json::json!({ "password": p }),
            None => serde_json::json!({}),
        };
        let r = self
            .authed(
                reqwest::Method::POST,
                &format!("/api/v1/rooms/{room}/join"),
                Some(body),
            )
            .await?;
        Self::read_json(r).await
    }

    /// `POST /api/v1/media/{id}/stream-url`. A relative URL is resolved
    /// against the server base.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn stream_url(&self, media: i64) -> Result<StreamUrl, ApiError> {
        let r = self
            .authed(
                reqwest::Method::POST,
                &format!("/api/v1/media/{media}/stream-url"),
                None,
            )
            .await?;
        let mut s: StreamUrl = Self::read_json(r).await?;
        if s.url.starts_with('/') {
            s.url = self.url(&s.url)?.to_string();
        }
        Ok(s)
    }

    /// `GET /api/v1/rooms/{id}`.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn room(&self, room: &str) -> Result<RoomInfo, ApiError> {
        let r = self
            .authed(reqwest::Method::GET, &format!("/api/v1/rooms/{room}"), None)
            .await?;
        Self::read_json(r).await
    }

    /// Host only: `DELETE /api/v1/rooms/{id}/members/{user_id}` (kick a
    /// member or withdraw an invitation; the server pushes `kicked`).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn kick_member(&self, room: &str, user: u64) -> Result<(), ApiError> {
        let r = self
            .authed(
                reqwest::Method::DELETE,
                &format!("/api/v1/rooms/{room}/members/{user}"),
                None,
            )
            .await?;
        Self::read_empty(r).await
    }

    /// Host only: `PATCH /api/v1/rooms/{id}/members/{user_id}` with
    /// `role` = `controller` or `viewer` (the server pushes `role_changed`).
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn set_member_role(
        &self,
        room: &str,
        user: u64,
        role: &str,
    ) -> Result<RoomInfo, ApiError> {
        let r = self
            .authed(
                reqwest::Method::PATCH,
                &format!("/api/v1/rooms/{room}/members/{user}"),
                Some(serde_json::json!({ "role": role })),
            )
            .await?;
        Self::read_json(r).await
    }

    /// Host only: `POST /api/v1/rooms/{id}/handoff` — `user` (a joined
    /// member) becomes host; the epoch is bumped and the room key cleared
    /// until the new host registers its own.
    ///
    /// # Errors
    /// [`ApiError`].
    pub async fn handoff(&self, room: &str, user: u64) -> Result<RoomInfo, ApiError> {
        let r = self
            .authed(
                reqwest::Method::POST,
                &format!("/api/v1/rooms/{room}/handoff"),
                Some(serde_json::json!({ "user_id": user })),
            )
            .await?;
        Self::read_json(r).await
    }

    /// A success status without a body (`204`), else the server's error.
    async fn read_empty(resp: reqwest::Response) -> Result<(), ApiError> {
        if resp.status().is_success() {
            return Ok(());
        }
        Self::read_json::<serde_json::Value>(resp).await.map(|_| ())
    }

    /// The signaling WebSocket URL of `room` (`ws(s)://…/api/v1/rooms/{id}/signal`).
    ///
    /// # Errors
    /// [`ApiError::Url`].
    pub fn signal_url(&self, room: &str) -> Result<reqwest::Url, ApiError> {
        signal_url(&self.base, room)
    }
}

/// The signaling WebSocket URL of `room` on the server at `base`.
///
/// # Errors
/// [`ApiError::Url`].
pub fn signal_url(base: &reqwest::Url, room: &str) -> Result<reqwest::Url, ApiError> {
    let mut u = base
        .join(&format!("/api/v1/rooms/{room}/signal"))
        .map_err(|e| ApiError::Url(e.to_string()))?;
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    u.set_scheme(scheme)
        .map_err(|()| ApiError::Url("cannot set ws scheme".into()))?;
    Ok(u)
}

/// A source of access tokens for the signaling `auth` message.
pub trait TokenSource: Send + Sync + 'static {
    /// A valid token (`force_refresh` after the server refused the last one).
    fn token(
        &self,
        force_refresh: bool,
    ) -> impl std::future::Future<Output = Result<Token, ApiError>> + Send;
}

impl TokenSource for ApiClient {
    async fn token(&self, force_refresh: bool) -> Result<Token, ApiError> {
        let t = self.access_token(force_refresh).await?;
        Token::new(t).map_err(|e| ApiError::Decode(e.to_string()))
    }
}

/// A fixed token (tests, one-shot tools).
#[derive(Debug, Clone)]
pub struct StaticToken(pub Token);

impl TokenSource for StaticToken {
    async fn token(&self, _force_refresh: bool) -> Result<Token, ApiError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert!(parse_server_url("https://watch.example:8443").is_ok());
        assert!(parse_server_url("http://127.0.0.1:3000/").is_ok());
        for bad in [
            "ftp://x",
            "https://user:pw@x",
            "https://x/?t=1",
            "https://x/#k=1",
            "not a url",
        ] {
            assert!(parse_server_url(bad).is_err(), "{bad}");
        }
        let base = parse_server_url("https://watch.example:8443").unwrap();
        assert_eq!(
            signal_url(&base, "00ff").unwrap().as_str(),
            "wss://watch.example:8443/api/v1/rooms/00ff/signal"
        );
        let base = parse_server_url("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            signal_url(&base, "ab").unwrap().as_str(),
            "ws://127.0.0.1:3000/api/v1/rooms/ab/signal"
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let p = TokenPair {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
            expires_in: 600,
        };
        let s = format!("{p:?}");
        assert!(!s.contains("secret"), "{s}");
    }
}
