//! The web app: static files from a configured directory, served at `/`.
//!
//! * `/pkg/…` comes from the wasm bundle directory ([`crate::Config::web_pkg_dir`]).
//! * Any other `GET`/`HEAD` path outside `/api/` is looked up in
//!   [`crate::Config::web_dir`]; a path whose last segment has no `.` and no
//!   matching file is an app route (e.g. `/room/<id>`) and gets `index.html`.
//! * Everything else — unknown API paths, other methods, refused paths —
//!   gets the JSON `404 not_found`.
//!
//! Paths are parsed, never joined blindly: only segments of
//! `[A-Za-z0-9_-]` plus inner dots are looked up (no `..`, no hidden files, no
//! percent-escapes, no backslashes), and the resolved file must lie inside
//! the canonical root (a symlink pointing outside is refused).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest static file served (bytes); bigger files get 404 and a log line.
pub const MAX_STATIC_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Longest request path looked up in the web directory (bytes).
pub const MAX_STATIC_PATH_LEN: usize = 512;
/// Most path segments looked up in the web directory.
pub const MAX_STATIC_DEPTH: usize = 8;
/// URL prefix of the wasm bundle.
pub const PKG_PREFIX: &str = "/pkg/";
/// The app's entry page.
pub const INDEX_FILE: &str = "index.html";
/// `Cache-Control` of every static response: always revalidate, so a rebuilt
/// bundle is picked up at once.
pub const STATIC_CACHE_CONTROL: &str = "no-cache";

/// A request path accepted for lookup: a list of safe segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPath(Vec<String>);

impl StaticPath {
    /// Parses the path part of a URL (`/a/b.js`). `None` when any segment is
    /// unsafe or the path is too long/deep. `/` parses to no segments.
    pub fn parse(path: &str) -> Option<StaticPath> {
        if path.len() > MAX_STATIC_PATH_LEN {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        if rest.is_empty() {
            return Some(StaticPath(Vec::new()));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > MAX_STATIC_DEPTH {
            return None;
        }
        let mut out = Vec::with_capacity(segments.len());
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if seg.is_empty() && last {
                // Trailing slash: `/room/` is the directory itself.
                break;
            }
            if !safe_segment(seg) {
                return None;
            }
            out.push((*seg).to_owned());
        }
        Some(StaticPath(out))
    }

    /// Whether this looks like an app route (last segment without an extension).
    pub fn is_app_route(&self) -> bool {
        self.0.last().is_none_or(|s| !s.contains('.'))
    }

    /// The lowercase extension of the last segment, if any.
    pub fn extension(&self) -> Option<String> {
        let last = self.0.last()?;
        let (_, ext) = last.rsplit_once('.')?;
        Some(ext.to_ascii_lowercase())
    }

    fn join_onto(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for s in &self.0 {
            p.push(s);
        }
        p
    }
}

/// `[A-Za-z0-9_-]` and dots, not starting or ending with a dot, no `..`.
fn safe_segment(seg: &str) -> bool {
    !seg.is_empty()
        && !seg.starts_with('.')
        && !seg.ends_with('.')
        && !seg.contains("..")
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The `Content-Type` for a file extension.
pub fn content_type(ext: Option<&str>) -> &'static str {
    match ext {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("ts") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Reads `rel` under `root` if it is a regular file inside the canonical root.
async fn read_inside(root: &Path, rel: &StaticPath) -> Option<Vec<u8>> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let file = tokio::fs::canonicalize(rel.join_onto(&root)).await.ok()?;
    if !file.starts_with(&root) {
        tracing::warn!("static file resolves outside the web directory; refused");
        return None;
    }
    let meta = tokio::fs::metadata(&file).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.len() > MAX_STATIC_FILE_BYTES {
        tracing::warn!(
            size = meta.len(),
            limit = MAX_STATIC_FILE_BYTES,
            "static file too large; refused"
        );
        return None;
    }
    tokio::fs::read(&file).await.ok()
}

fn file_response(method: &Method, ext: Option<&str>, bytes: Vec<u8>) -> Response {
    let len = bytes.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(ext)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(STATIC_CACHE_CONTROL),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// The router fallback: static files and app routes, else JSON 404.
pub async fn fallback(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::NotFound.into_response();
    }
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound.into_response();
    }
    let Some(parsed) = StaticPath::parse(path) else {
        return ApiError::NotFound.into_response();
    };
    let config = &state.config;
    if let Some(rest) = path.strip_prefix(PKG_PREFIX) {
        let Some(rel) = StaticPath::parse(&format!("/{rest}")) else {
            return ApiError::NotFound.into_response();
        };
        return match read_inside(&config.web_pkg_dir(), &rel).await {
            Some(bytes) => file_response(&method, rel.extension().as_deref(), bytes),
            None => ApiError::NotFound.into_response(),
        };
    }
    if !parsed.0.is_empty()
        && let Some(bytes) = read_inside(&config.web_dir, &parsed).await
    {
        return file_response(&method, parsed.extension().as_deref(), bytes);
    }
    if parsed.is_app_route() {
        let index = StaticPath(vec![INDEX_FILE.to_owned()]);
        if let Some(bytes) = read_inside(&config.web_dir, &index).await {
            return file_response(&method, Some("html"), bytes);
        }
    }
    ApiError::NotFound.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_safe_paths() {
        assert_eq!(StaticPath::parse("/"), Some(StaticPath(vec![])));
        let p = StaticPath::parse("/pkg/watchparty_wasm_peer_bg.wasm").unwrap();
        assert_eq!(p.extension().as_deref(), Some("wasm"));
        assert!(!p.is_app_route());
        let r = StaticPath::parse("/room/0123456789abcdef0123456789abcdef").unwrap();
        assert!(r.is_app_route());
        assert!(StaticPath::parse("/room/").unwrap().is_app_route());
    }

    #[test]
    fn refuses_unsafe_paths() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/./x",
            "/.git/config",
            "/a/.hidden",
            "/%2e%2e/x",
            "/a\\..\\b",
            "/a//b",
            "/x.",
            "relative",
            "/a/b\0c",
        ] {
            assert_eq!(StaticPath::parse(bad), None, "{bad:?}");
        }
        let deep = "/a".repeat(MAX_STATIC_DEPTH + 1);
        assert_eq!(StaticPath::parse(&deep), None);
        let long = format!("/{}", "a".repeat(MAX_STATIC_PATH_LEN));
        assert_eq!(StaticPath::parse(&long), None);
        assert!(StaticPath::parse(&"/a".repeat(MAX_STATIC_DEPTH)).is_some());
    }

    #[test]
    fn mime_types() {
        assert_eq!(content_type(Some("wasm")), "application/wasm");
        assert_eq!(content_type(Some("js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(None), "application/octet-stream");
    }
}
