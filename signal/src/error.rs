//! The one error type of the HTTP API and its JSON rendering.
//!
//! Every failure a client can see is an [`ApiError`]; it renders as
//! `{"error": code, "message": text}` with a stable machine-readable `code`
//! (see [`ApiError::code`]). Internal failures are logged with the request id
//! and rendered as a generic `internal` error; their details never reach the
//! client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_credentials`.
    pub error: &'static str,
    /// Human-readable explanation; never contains secrets or internals.
    pub message: String,
}

/// Every error the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Login failed; deliberately identical for unknown users and wrong passwords (401).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Missing, malformed, expired or revoked credentials (401 `unauthorized`).
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated but not allowed (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist or the caller may not know it exists (404).
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The room has no free seat (409 `room_full`).
    #[error("the room is full")]
    RoomFull,
    /// The room has ended and accepts nothing more (410 `room_ended`).
    #[error("the room has ended")]
    RoomEnded,
    /// Self-registration is turned off on this server (403 `registration_closed`).
    #[error("registration is closed on this server")]
    RegistrationClosed,
    /// Wrong or missing room password (403 `invalid_room_password`).
    #[error("wrong room password")]
    InvalidRoomPassword,
    /// Too many attempts; retry after the given number of seconds (429).
    #[error("too many requests")]
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// The request body is larger than the configured limit (413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request body did not arrive in time (408); see
    /// [`crate::request_body`].
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The requested byte range cannot be served (416); carries the full size.
    #[error("range not satisfiable")]
    RangeNotSatisfiable {
        /// Size of the full representation in bytes.
        size: u64,
    },
    /// The server is overloaded (e.g. the password hashing queue is full) (503).
    #[error("server busy, try again")]
    Busy,
    /// Anything unexpected. The inner error is logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Wraps any error as an internal error (logged, not shown).
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(err.into())
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidCredentials | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_)
            | ApiError::RegistrationClosed
            | ApiError::InvalidRoomPassword => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::RoomFull => StatusCode::CONFLICT,
            ApiError::RoomEnded => StatusCode::GONE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code (documented in docs/api.md).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::RoomFull => "room_full",
            ApiError::RoomEnded => "room_ended",
            ApiError::RegistrationClosed => "registration_closed",
            ApiError::InvalidRoomPassword => "invalid_room_password",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Busy => "busy",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            // The request id is part of the enclosing tracing span.
            tracing::error!(error = %err, "internal error");
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::InvalidRequest("expected Content-Type: application/json".into())
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::InvalidRequest("malformed JSON".into()),
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field and expected type, and may
                // echo the value sent (e.g. an unknown enum variant): keep it short.
                let mut text = e.body_text();
                clip(&mut text, MAX_JSON_ERROR_BYTES);
                ApiError::InvalidRequest(text)
            }
            _ => ApiError::InvalidRequest("unreadable request body".into()),
        }
    }
}

/// Longest message (bytes) of a 400 for a JSON body with a wrong field: the
/// rest of serde's text (which may quote the value sent) is cut off.
pub const MAX_JSON_ERROR_BYTES: usize = 200;

/// Cuts `text` to at most `max` bytes, at a character boundary (a cut inside
/// a character would panic).
fn clip(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(end);
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::NotFound
    }
}

impl From<QueryRejection> for ApiError {
    fn from(_: QueryRejection) -> Self {
        ApiError::InvalidRequest("invalid query string".into())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s (404).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` whose rejections are [`ApiError`]s (400).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_never_splits_a_character() {
        for pad in 0..4 {
            let mut text = "x".repeat(pad) + &"\u{800}".repeat(MAX_JSON_ERROR_BYTES);
            clip(&mut text, MAX_JSON_ERROR_BYTES);
            assert!(text.len() <= MAX_JSON_ERROR_BYTES && text.len() > MAX_JSON_ERROR_BYTES - 3);
        }
        let mut short = "short".to_owned();
        clip(&mut short, MAX_JSON_ERROR_BYTES);
        assert_eq!(short, "short");
    }
}
