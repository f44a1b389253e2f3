//! The web app's refresh-token cookie and the CSRF rule of the routes that
//! read it.
//!
//! A browser signs in with `"refresh_cookie": true`: the refresh token then
//! comes back only in a cookie (`HttpOnly; Secure; SameSite=Strict`,
//! `Path=/api/v1/auth`, lifetime = the session's), never in the JSON body, so
//! no script — an injected one included — can read the long-lived token. The
//! access token stays in the page's memory.
//!
//! Every request that sets or reads the cookie (cookie login, body-less
//! refresh, logout with the cookie) must pass [`check_csrf`]:
//!
//! 1. `X-Watchparty-CSRF: 1`. A page on another origin can send a custom
//!    header only after a CORS preflight, which this server never grants for
//!    that header (CORS is off by default; when on, the header is not in the
//!    allowed list), and HTML forms cannot set headers at all.
//! 2. `Origin` present and exactly one of the app's origins
//!    ([`crate::config::Config::app_origins`]: `[signaling] allowed_origins`,
//!    else the origin of `public_url`). Browsers send `Origin` on every
//!    `POST`, so an absent one means "not the web app".
//!
//! Together with `SameSite=Strict` (the browser does not attach the cookie to
//! any request started by another site) these are the OWASP "custom request
//! header" and "verify the origin" defences, each sufficient against a
//! cross-site attacker on its own. Non-browser clients (the `watchparty` CLI)
//! keep sending the refresh token in the JSON body and never meet the cookie.
//!
//! The cookie value is never logged (the request span holds only method and
//! path).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

use crate::config::Config;
use crate::error::ApiError;
use crate::ws::origin::{self, OriginCheck};

/// The CSRF header every cookie request carries (value [`CSRF_HEADER_VALUE`]).
pub const CSRF_HEADER: &str = "x-watchparty-csrf";
/// The only accepted value of [`CSRF_HEADER`].
pub const CSRF_HEADER_VALUE: &str = "1";
/// `Path` of the cookie: the auth routes (login sets it, refresh and logout
/// read it); no other route ever receives it.
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
/// Cookie name with `cookie_secure` (the default). The `__Secure-` prefix
/// makes browsers refuse the name from a non-secure origin, so a network
/// attacker on plain HTTP cannot plant one.
pub const REFRESH_COOKIE_NAME: &str = "__Secure-watchparty_refresh";
/// Cookie name with `cookie_secure = false` (the prefix requires `Secure`).
pub const REFRESH_COOKIE_NAME_INSECURE: &str = "watchparty_refresh";

/// The cookie's name under `config`.
pub fn cookie_name(config: &Config) -> &'static str {
    if config.cookie_secure {
        REFRESH_COOKIE_NAME
    } else {
        REFRESH_COOKIE_NAME_INSECURE
    }
}

/// Refuses a cookie request that lacks the CSRF header or comes from an
/// origin other than the app's (403 `forbidden`).
pub fn check_csrf(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(CSRF_HEADER).iter();
    let header_ok = values
        .next()
        .is_some_and(|v| v.as_bytes() == CSRF_HEADER_VALUE.as_bytes())
        && values.next().is_none();
    if !header_ok {
        return Err(ApiError::Forbidden(format!(
            "this request needs the header {CSRF_HEADER}: {CSRF_HEADER_VALUE}"
        )));
    }
    if origin::check(headers, &config.app_origins()) != OriginCheck::Allowed {
        return Err(ApiError::Forbidden(
            "this page's address is not the server's public address (public_url)".into(),
        ));
    }
    Ok(())
}

/// The refresh token from the request's cookie, if any (the first cookie of
/// that name: browsers send the one with the longest path first).
pub fn presented(config: &Config, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(config);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn attributes(config: &Config) -> String {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    format!("Path={REFRESH_COOKIE_PATH}; HttpOnly{secure}; SameSite=Strict")
}

/// `Set-Cookie` that stores `token` until `expires_at` (Unix seconds).
pub fn set(
    config: &Config,
    token: &str,
    expires_at: i64,
    now: i64,
) -> Result<HeaderValue, ApiError> {
    let max_age = expires_at.saturating_sub(now).max(0);
    HeaderValue::from_str(&format!(
        "{}={token}; Max-Age={max_age}; {}",
        cookie_name(config),
        attributes(config)
    ))
    .map_err(ApiError::internal)
}

/// `Set-Cookie` that deletes the cookie.
pub fn clear(config: &Config) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{}=; Max-Age=0; {}",
        cookie_name(config),
        attributes(config)
    ))
    .map_err(ApiError::internal)
}

/// Appends a `Set-Cookie` value to a response's headers.
pub fn append(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::new("/nonexistent");
        c.public_url = Some("https://party.example.org".into());
        c
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn csrf_needs_header_and_app_origin() {
        let c = config();
        let good = [(CSRF_HEADER, "1"), ("origin", "https://party.example.org")];
        assert!(check_csrf(&c, &headers(&good)).is_ok());
        for bad in [
            &[("origin", "https://party.example.org")][..],
            &[(CSRF_HEADER, "1")][..],
            &[(CSRF_HEADER, "0"), ("origin", "https://party.example.org")][..],
            &[(CSRF_HEADER, "1"), ("origin", "https://evil.example")][..],
            &[(CSRF_HEADER, "1"), ("origin", "null")][..],
            &[
                (CSRF_HEADER, "1"),
                (CSRF_HEADER, "1"),
                ("origin", "https://party.example.org"),
            ][..],
        ] {
            assert!(check_csrf(&c, &headers(bad)).is_err(), "{bad:?}");
        }
        // Without public_url (and no allowed_origins) no browser origin passes.
        let mut none = config();
        none.public_url = None;
        assert!(check_csrf(&none, &headers(&good)).is_err());
    }

    #[test]
    fn cookie_round_trip() {
        let c = config();
        let stored = set(&c, "abc_DEF-123", 1_000, 400).unwrap();
        assert_eq!(
            stored,
            "__Secure-watchparty_refresh=abc_DEF-123; Max-Age=600; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict"
        );
        let h = headers(&[(
            "cookie",
            "a=b; __Secure-watchparty_refresh=abc_DEF-123; c=d",
        )]);
        assert_eq!(presented(&c, &h).as_deref(), Some("abc_DEF-123"));
        assert_eq!(
            presented(&c, &headers(&[("cookie", "watchparty_refresh=x")])),
            None
        );
        assert_eq!(
            clear(&c).unwrap(),
            "__Secure-watchparty_refresh=; Max-Age=0; Path=/api/v1/auth; HttpOnly; Secure; SameSite=Strict"
        );
        let mut insecure = config();
        insecure.cookie_secure = false;
        assert_eq!(
            set(&insecure, "t", 10, 20).unwrap(),
            "watchparty_refresh=t; Max-Age=0; Path=/api/v1/auth; HttpOnly; SameSite=Strict"
        );
    }
}
