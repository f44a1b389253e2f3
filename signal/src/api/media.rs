//! `/api/v1/libraries`, `/api/v1/media*`: catalogue, signed stream URLs, streaming.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::ContentBuilder;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::db::now_secs;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::media::files::resolve_in_root;
use crate::media::range::{self, RangeSpec};
use crate::media::subtitles::{MAX_SUBTITLE_BYTES, is_webvtt, srt_to_vtt};
use crate::media::{self, AudienceMember, ItemRow, LibraryView, MediaItem};
use crate::state::AppState;
use crate::tokens::{STREAM_TOKEN_CHARS, StreamGrant};

/// Default page size of `GET /api/v1/media`.
pub const DEFAULT_PAGE: i64 = 100;
/// Largest page size of `GET /api/v1/media`.
pub const MAX_PAGE: i64 = 500;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_libraries))
        .routes(routes!(list_media))
        .routes(routes!(get_media))
        .routes(routes!(stream_url))
        .routes(routes!(stream))
        .routes(routes!(subtitle))
        .routes(routes!(audience))
}

/// Other enabled users who may access this item (admins and holders of a
/// grant on its library), by username, at most `list_max_rows`
/// (`X-Truncated: true` when more exist). 404 when the caller may not see it.
#[utoipa::path(get, path = "/api/v1/media/{id}/audience", tag = "media",
    params(("id" = i64, Path, description = "media item id")),
    responses((status = 200, body = Vec<AudienceMember>,
               headers(("x-truncated" = String, description = "`true` when users beyond `list_max_rows` were left out"))),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn audience(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<(
    [(header::HeaderName, HeaderValue); 1],
    ApiJson<Vec<AudienceMember>>,
)> {
    let item = media::accessible_item(&state.db, user.id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let cap = state.config.list_max_rows;
    let mut rows = media::audience(&state.db, item.library_id, user.id, i64::from(cap) + 1).await?;
    let truncated = rows.len() > cap as usize;
    rows.truncate(cap as usize);
    let flag = HeaderValue::from_static(if truncated { "true" } else { "false" });
    Ok((
        [(header::HeaderName::from_static("x-truncated"), flag)],
        ApiJson(rows),
    ))
}

/// Libraries the caller may see (admins: all).
#[utoipa::path(get, path = "/api/v1/libraries", tag = "media",
    responses((status = 200, body = Vec<LibraryView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_libraries(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<ApiJson<Vec<LibraryView>>> {
    Ok(ApiJson(media::list_libraries(&state.db, user.id).await?))
}

/// Paging for `GET /api/v1/media`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MediaQuery {
    /// Only this library.
    pub library: Option<i64>,
    /// Return items with id greater than this (cursor).
    pub after: Option<i64>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

async fn with_subtitles(state: &AppState, item: &ItemRow) -> ApiResult<MediaItem> {
    Ok(item.view(media::subtitles_of(&state.db, item.id).await?))
}

/// Media items the caller may see, by ascending id.
#[utoipa::path(get, path = "/api/v1/media", tag = "media", params(MediaQuery),
    responses((status = 200, body = Vec<MediaItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_media(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<MediaQuery>,
) -> ApiResult<ApiJson<Vec<MediaItem>>> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let items =
        media::list_items(&state.db, user.id, q.library, q.after.unwrap_or(0), limit).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(with_subtitles(&state, item).await?);
    }
    Ok(ApiJson(out))
}

/// One media item (404 when it does not exist or the caller may not see it).
#[utoipa::path(get, path = "/api/v1/media/{id}", tag = "media",
    params(("id" = i64, Path, description = "media item id")),
    responses((status = 200, body = MediaItem), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_media(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<MediaItem>> {
    let item = media::accessible_item(&state.db, user.id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiJson(with_subtitles(&state, &item).await?))
}

/// A signed, short-lived URL for streaming one item.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamUrl {
    /// URL of the media bytes (`…/stream?t=…`); absolute when `public_url` is set.
    pub url: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Subtitle URLs (WebVTT), signed with the same token.
    pub subtitles: Vec<SubtitleUrl>,
}

/// A signed subtitle URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubtitleUrl {
    /// Subtitle id.
    pub id: i64,
    /// Language tag, if known.
    pub language: Option<String>,
    /// URL (WebVTT).
    pub url: String,
}

/// Mint a signed stream URL bound to the caller and this item.
#[utoipa::path(post, path = "/api/v1/media/{id}/stream-url", tag = "media",
    params(("id" = i64, Path, description = "media item id")),
    responses((status = 200, body = StreamUrl), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn stream_url(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<StreamUrl>> {
    let item = media::accessible_item(&state.db, user.id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let ttl = i64::try_from(state.config.stream_url_ttl.as_secs()).unwrap_or(0);
    let exp = now_secs().saturating_add(ttl);
    let token = state.stream_tokens.sign(&StreamGrant {
        user_id: user.id,
        item_id: item.id,
        exp,
    });
    let base = state
        .config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'))
        .unwrap_or("");
    let subtitles = media::subtitles_of(&state.db, item.id)
        .await?
        .into_iter()
        .map(|s| SubtitleUrl {
            url: format!(
                "{base}/api/v1/media/{}/subtitles/{}?t={token}",
                item.id, s.id
            ),
            id: s.id,
            language: s.language,
        })
        .collect();
    Ok(ApiJson(StreamUrl {
        url: format!("{base}/api/v1/media/{}/stream?t={token}", item.id),
        expires_at: exp,
        subtitles,
    }))
}

/// The `t=` query parameter of stream URLs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Signed stream token from `stream-url`. It is the credential of these
    /// routes (media elements cannot send an `Authorization` header), so a
    /// URL without it is refused like a bad token: 401.
    #[param(required = true, value_type = String)]
    pub t: Option<String>,
}

/// Checks a stream token for `item_id` and re-checks access now.
async fn authorize_stream(
    state: &AppState,
    item_id: i64,
    token: Option<&str>,
) -> ApiResult<ItemRow> {
    let token = token.ok_or(ApiError::Unauthorized)?;
    if token.len() != STREAM_TOKEN_CHARS {
        return Err(ApiError::Unauthorized);
    }
    let grant = state
        .stream_tokens
        .verify(token, now_secs())
        .ok_or(ApiError::Unauthorized)?;
    if grant.item_id != item_id {
        return Err(ApiError::Unauthorized);
    }
    // Access is re-checked on every request: grant revoked or user disabled → 404.
    media::accessible_item(&state.db, grant.user_id, item_id)
        .await?
        .ok_or(ApiError::NotFound)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Lists every MIME type an item can be served with
/// ([`crate::media::kinds::served_mime_types`]) as the content of the
/// stream route's 200 and 206 answers: the `Content-Type` is the item's.
pub(super) fn describe_stream_types(doc: &mut utoipa::openapi::OpenApi) {
    let Some(op) = doc
        .paths
        .paths
        .get_mut(STREAM_PATH)
        .and_then(|item| item.get.as_mut())
    else {
        return;
    };
    for status in [StatusCode::OK, StatusCode::PARTIAL_CONTENT] {
        if let Some(RefOr::T(answer)) = op.responses.responses.get_mut(status.as_str()) {
            answer.content = crate::media::kinds::served_mime_types()
                .into_iter()
                .map(|mime| (mime.to_owned(), ContentBuilder::new().build().into()))
                .collect();
        }
    }
}

/// The stream route.
const STREAM_PATH: &str = "/api/v1/media/{id}/stream";

/// Stream the item's bytes (HTTP Range supported). No Authorization header:
/// the signed `t=` token authenticates, and access is re-checked.
#[utoipa::path(get, path = "/api/v1/media/{id}/stream", tag = "media",
    params(("id" = i64, Path, description = "media item id"), StreamQuery,
        ("Range" = Option<String>, Header, description = "one bytes= range")),
    responses(
        (status = 200, description = "whole file (`Content-Type`: the item's, one of those listed)"),
        (status = 206, description = "the requested range (`Content-Type`: the item's)"),
        (status = 304, description = "If-None-Match matched"),
        (status = 400, body = ErrorBody, description = "malformed query string (e.g. `t` twice)"),
        (status = 401, body = ErrorBody, description = "`t` missing, invalid, expired or for another item"), (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody)))]
async fn stream(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let item = authorize_stream(&state, id, q.t.as_deref()).await?;
    let path =
        resolve_in_root(std::path::Path::new(&item.root_path), &item.rel_path).map_err(|e| {
            tracing::warn!(item_id = item.id, error = %e, "media path refused");
            ApiError::NotFound
        })?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    if i64::try_from(size).ok() != Some(item.size_bytes) {
        tracing::warn!(
            item_id = item.id,
            "media file changed since scan; rescan needed"
        );
        return Err(ApiError::NotFound);
    }
    let etag = item.etag();
    if header_str(&headers, header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        set(&mut resp, header::ETAG, &etag);
        return Ok(resp);
    }
    let mut spec = range::parse(header_str(&headers, header::RANGE), size);
    // If-Range with a different validator: send the whole (new) representation.
    if header_str(&headers, header::IF_RANGE).is_some_and(|v| v.trim() != etag) {
        spec = RangeSpec::Full;
    }
    let (status, start, len) = match spec {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeSpec::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ApiError::internal)?;
    }
    let body = Body::from_stream(ReaderStream::new(file.take(len)));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set(&mut resp, header::CONTENT_TYPE, &item.mime_type);
    set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
    set(&mut resp, header::ACCEPT_RANGES, "bytes");
    set(&mut resp, header::ETAG, &etag);
    set(&mut resp, header::CACHE_CONTROL, "private, no-store");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut resp,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(resp)
}

/// A sidecar subtitle as WebVTT (`.srt` converted). Same token and access rule as the stream.
#[utoipa::path(get, path = "/api/v1/media/{id}/subtitles/{sub_id}", tag = "media",
    params(("id" = i64, Path, description = "media item id"), ("sub_id" = i64, Path, description = "subtitle id"), StreamQuery),
    responses((status = 200, description = "WebVTT", content_type = "text/vtt"),
        (status = 400, body = ErrorBody, description = "malformed query string (e.g. `t` twice)"),
        (status = 401, body = ErrorBody, description = "`t` missing, invalid, expired or for another item"),
        (status = 404, body = ErrorBody)))]
async fn subtitle(
    State(state): State<AppState>,
    ApiPath((id, sub_id)): ApiPath<(i64, i64)>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let item = authorize_stream(&state, id, q.t.as_deref()).await?;
    let sub = media::subtitles_of(&state.db, item.id)
        .await?
        .into_iter()
        .find(|s| s.id == sub_id)
        .ok_or(ApiError::NotFound)?;
    let path =
        resolve_in_root(std::path::Path::new(&item.root_path), &sub.rel_path).map_err(|e| {
            tracing::warn!(item_id = item.id, error = %e, "subtitle path refused");
            ApiError::NotFound
        })?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let mut bytes = Vec::new();
    file.take(MAX_SUBTITLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(ApiError::internal)?;
    if bytes.len() as u64 > MAX_SUBTITLE_BYTES {
        return Err(ApiError::NotFound);
    }
    let text = String::from_utf8_lossy(&bytes);
    let vtt = if sub.format == "srt" {
        srt_to_vtt(&text)
    } else if is_webvtt(&text) {
        text.into_owned()
    } else {
        return Err(ApiError::NotFound);
    };
    let mut resp = Response::new(Body::from(vtt));
    set(&mut resp, header::CONTENT_TYPE, "text/vtt; charset=utf-8");
    set(&mut resp, header::CACHE_CONTROL, "private, no-store");
    Ok(resp)
}
