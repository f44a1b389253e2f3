//! The few REST calls a browser peer makes itself, with the access token in
//! the `Authorization` header (never in a URL):
//!
//! - `GET /api/v1/media/{id}` — an item's hash and duration, to build the
//!   signed [`MediaItem`] of a `load`/`queue` command;
//! - `POST /api/v1/media/{id}/stream-url` — the short-lived signed stream
//!   URL and subtitle URLs (the server's signed-token design: the token in
//!   those URLs is bound to this user and item and expires quickly);
//! - `PATCH`/`DELETE /api/v1/rooms/{id}/members/{user}` and
//!   `POST /api/v1/rooms/{id}/handoff` — role changes, kicks and handoffs
//!   (the signaling WebSocket refuses them).
//!
//! Response bodies are limited to [`MAX_RESPONSE_BYTES`]: a response whose
//! `Content-Length` is larger is refused before its body is read, and a body
//! that turns out larger is refused once read — both as
//! [`HttpError::TooLarge`].

use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs};
use watchparty_peer::message::MediaItem;
use web_sys::{Headers, Request, RequestInit, Response};

use crate::error::js_message;
use crate::player::SubtitleTrack;

/// Largest REST response body accepted, in bytes (over it:
/// [`HttpError::TooLarge`]).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A REST failure, with a message fit for the user (no token, no body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request could not be made (network, CORS).
    #[error("request failed: {0}")]
    Network(String),
    /// The server answered with an error status.
    #[error("server answered {status} for {what}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Which call.
        what: &'static str,
    },
    /// The response did not have the expected shape.
    #[error("unexpected response for {0}")]
    Invalid(&'static str),
    /// The response body is over [`MAX_RESPONSE_BYTES`].
    #[error("response for {what} is larger than {limit} bytes")]
    TooLarge {
        /// Which call.
        what: &'static str,
        /// The limit crossed ([`MAX_RESPONSE_BYTES`]).
        limit: usize,
    },
}

/// Refuses a body of `len` bytes over [`MAX_RESPONSE_BYTES`]; `len` is the
/// `Content-Length` the server declared (before reading) or the length read.
fn check_body_len(len: u64, what: &'static str) -> Result<(), HttpError> {
    if usize::try_from(len).map_or(true, |l| l > MAX_RESPONSE_BYTES) {
        return Err(HttpError::TooLarge {
            what,
            limit: MAX_RESPONSE_BYTES,
        });
    }
    Ok(())
}

/// The `Content-Length` header as a number (absent or malformed: `None`,
/// and the length read is checked instead).
fn declared_len(header: Option<&str>) -> Option<u64> {
    header.and_then(|h| h.trim().parse().ok())
}

/// What `stream-url` returns, ready for the player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSource {
    /// The media URL.
    pub url: String,
    /// Subtitles to offer.
    pub subtitles: Vec<SubtitleTrack>,
}

/// The REST base and token.
#[derive(Debug, Clone)]
pub struct Api {
    /// e.g. `https://watch.example` (no trailing slash).
    pub base: String,
    /// The access token.
    pub token: String,
}

#[derive(Deserialize)]
struct MediaInfo {
    id: i64,
    duration_ms: Option<i64>,
    content_hash: String,
}

#[derive(Deserialize)]
struct StreamUrlBody {
    url: String,
    #[serde(default)]
    subtitles: Vec<SubtitleBody>,
}

#[derive(Deserialize)]
struct SubtitleBody {
    language: Option<String>,
    url: String,
}

impl Api {
    /// Resolves a URL the server returned: absolute URLs stay, paths are
    /// joined to the REST base.
    #[must_use]
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        what: &'static str,
    ) -> Result<Option<String>, HttpError> {
        let headers = Headers::new().map_err(|e| HttpError::Network(js_message(&e)))?;
        headers
            .set("Authorization", &format!("Bearer {}", self.token))
            .map_err(|_| HttpError::Network("token is not a valid header value".into()))?;
        let init = RequestInit::new();
        init.set_method(method);
        if let Some(b) = &body {
            headers
                .set("Content-Type", "application/json")
                .map_err(|e| HttpError::Network(js_message(&e)))?;
            init.set_body(&JsValue::from_str(b));
        }
        init.set_headers(&headers);
        let url = format!("{}{path}", self.base);
        let request = Request::new_with_str_and_init(&url, &init)
            .map_err(|e| HttpError::Network(js_message(&e)))?;
        let window = web_sys::window().ok_or(HttpError::Network("no window".into()))?;
        let response: Response = JsFuture::from(window.fetch_with_request(&request))
            .await
            .map_err(|e| HttpError::Network(js_message(&e)))?
            .unchecked_into();
        if !response.ok() {
            return Err(HttpError::Status {
                status: response.status(),
                what,
            });
        }
        if response.status() == 204 {
            return Ok(None);
        }
        let declared = response.headers().get("content-length").ok().flatten();
        if let Some(len) = declared_len(declared.as_deref()) {
            check_body_len(len, what)?;
        }
        let text = JsFuture::from(response.text().map_err(|_| HttpError::Invalid(what))?)
            .await
            .map_err(|_| HttpError::Invalid(what))?
            .as_string()
            .ok_or(HttpError::Invalid(what))?;
        check_body_len(u64::try_from(text.len()).unwrap_or(u64::MAX), what)?;
        Ok(Some(text))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        what: &'static str,
    ) -> Result<T, HttpError> {
        let text = self
            .call(method, path, None, what)
            .await?
            .ok_or(HttpError::Invalid(what))?;
        serde_json::from_str(&text).map_err(|_| HttpError::Invalid(what))
    }

    /// `GET {base}{path}` as JSON (used by the tests to reach the body limit
    /// without a server; the typed calls below go through the same path).
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, HttpError> {
        self.json("GET", path, "request").await
    }

    /// The signed-protocol item for catalog item `id`.
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn media_item(&self, id: i64) -> Result<MediaItem, HttpError> {
        let info: MediaInfo = self
            .json("GET", &format!("/api/v1/media/{id}"), "media item")
            .await?;
        media_item_of(info.id, &info.content_hash, info.duration_ms)
            .ok_or(HttpError::Invalid("media item"))
    }

    /// A signed stream URL and subtitles for catalog item `id`.
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn stream_source(&self, id: i64) -> Result<StreamSource, HttpError> {
        let body: StreamUrlBody = self
            .json(
                "POST",
                &format!("/api/v1/media/{id}/stream-url"),
                "stream url",
            )
            .await?;
        let subtitles = body
            .subtitles
            .into_iter()
            .enumerate()
            .map(|(i, s)| SubtitleTrack {
                url: self.absolute(&s.url),
                label: s
                    .language
                    .clone()
                    .unwrap_or_else(|| format!("Subtitles {}", i + 1)),
                language: s.language.filter(|l| is_language_tag(l)),
            })
            .collect::<Vec<_>>();
        Ok(StreamSource {
            url: self.absolute(&body.url),
            subtitles,
        })
    }

    /// Changes a member's role (host only).
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn set_role(&self, room: &str, user: u64, role: &str) -> Result<(), HttpError> {
        let body = serde_json::json!({ "role": role }).to_string();
        self.call(
            "PATCH",
            &format!("/api/v1/rooms/{room}/members/{user}"),
            Some(body),
            "role change",
        )
        .await
        .map(drop)
    }

    /// Removes a member (host only).
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn kick(&self, room: &str, user: u64) -> Result<(), HttpError> {
        self.call(
            "DELETE",
            &format!("/api/v1/rooms/{room}/members/{user}"),
            None,
            "kick",
        )
        .await
        .map(drop)
    }

    /// Hands the room to a member (host only).
    ///
    /// # Errors
    /// [`HttpError`].
    pub async fn handoff(&self, room: &str, user: u64) -> Result<(), HttpError> {
        let body = serde_json::json!({ "user_id": user }).to_string();
        self.call(
            "POST",
            &format!("/api/v1/rooms/{room}/handoff"),
            Some(body),
            "handoff",
        )
        .await
        .map(drop)
    }
}

/// Duration given to an item whose duration the server does not know (its
/// scanner does not probe media, so `duration_ms` is usually absent): 24 h,
/// the same as the native CLI's `UNKNOWN_DURATION_MS`.
///
/// The protocol needs a duration, and the room timeline clamps positions to
/// it and reports the item ended once reached. A duration of 0 would make
/// every item "ended" at position 0: the sync core would then never tell
/// the `<video>` to play or seek (issue #7). The element's own end of file
/// still ends playback.
pub const UNKNOWN_DURATION_MS: u64 = 24 * 3600 * 1000;

/// A protocol media item from the REST fields (hex hash, optional
/// duration); `None` when they do not fit. A missing, zero or negative
/// duration becomes [`UNKNOWN_DURATION_MS`].
#[must_use]
pub fn media_item_of(id: i64, content_hash: &str, duration_ms: Option<i64>) -> Option<MediaItem> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(content_hash, &mut hash).ok()?;
    let duration = match duration_ms.map(u64::try_from) {
        Some(Ok(ms)) if ms > 0 => ms,
        _ => UNKNOWN_DURATION_MS,
    };
    Some(MediaItem {
        media: MediaId::new(&id.to_string()).ok()?,
        hash: ContentHash(hash),
        duration: PositionMs::new(duration).ok()?,
    })
}

/// A plausible BCP 47 tag (letters, digits, `-`; 2–35 chars).
fn is_language_tag(s: &str) -> bool {
    (2..=35).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_limit_are_too_large() {
        let limit = MAX_RESPONSE_BYTES as u64;
        assert_eq!(check_body_len(limit, "x"), Ok(()));
        assert_eq!(
            check_body_len(limit + 1, "media item"),
            Err(HttpError::TooLarge {
                what: "media item",
                limit: MAX_RESPONSE_BYTES
            })
        );
        assert!(check_body_len(u64::MAX, "x").is_err());
        let e = check_body_len(limit + 1, "stream url").unwrap_err();
        assert_eq!(
            e.to_string(),
            "response for stream url is larger than 262144 bytes"
        );
    }

    #[test]
    fn content_length_is_read_when_well_formed() {
        assert_eq!(declared_len(Some("262145")), Some(262_145));
        assert_eq!(declared_len(Some(" 12 ")), Some(12));
        assert_eq!(declared_len(Some("-1")), None);
        assert_eq!(declared_len(Some("lots")), None);
        assert_eq!(declared_len(None), None);
    }
}
