//! The `Origin` allowlist checked before the WebSocket upgrade (CSWSH defence).
//!
//! Policy:
//! - An `Origin` header is compared **byte for byte** with the allowlist
//!   (no wildcard, no substring, no suffix match): `https://app.example` does
//!   not admit `https://app.example.evil.com` nor `http://app.example`.
//! - `Origin: null` (sandboxed frames, `file:` pages, some redirects) is refused.
//! - A request **without** `Origin` is admitted: every browser sends `Origin`
//!   on WebSocket handshakes, so a missing header means a non-browser client
//!   (the native peer, the CLI), which cross-site hijacking cannot involve;
//!   such clients still have to authenticate with a token in the first message.
//! - Several `Origin` headers, or a non-ASCII one, are refused.

use axum::http::HeaderMap;
use axum::http::header::ORIGIN;

/// A serialized origin, `scheme://host[:port]`, lower-case scheme and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin as written in configuration: `http(s)://host[:port]`,
    /// nothing after the authority.
    pub fn parse(s: &str) -> Option<Origin> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))?;
        let ok = !rest.is_empty()
            && rest.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        (ok && s == s.to_ascii_lowercase()).then(|| Origin(s.to_owned()))
    }

    /// The origin of a public base URL (`https://host[:port]/any/path` →
    /// `https://host[:port]`).
    pub fn of_url(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        Origin::parse(&format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        ))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The effective allowlist: the configured origins, else the public URL's origin.
pub fn allowlist(configured: &[String], public_url: Option<&str>) -> Vec<Origin> {
    if configured.is_empty() {
        public_url.and_then(Origin::of_url).into_iter().collect()
    } else {
        configured.iter().filter_map(|o| Origin::parse(o)).collect()
    }
}

/// Outcome of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck {
    /// Listed origin.
    Allowed,
    /// No `Origin` header (non-browser client).
    Absent,
    /// Refused (`null`, unlisted, malformed or repeated).
    Refused,
}

/// Applies the policy to the request headers.
pub fn check(headers: &HeaderMap, allowed: &[Origin]) -> OriginCheck {
    let mut values = headers.get_all(ORIGIN).iter();
    let Some(first) = values.next() else {
        return OriginCheck::Absent;
    };
    if values.next().is_some() {
        return OriginCheck::Refused;
    }
    match first.to_str() {
        Ok(v) if allowed.iter().any(|a| a.as_str() == v) => OriginCheck::Allowed,
        _ => OriginCheck::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn exact_match_only() {
        let allowed = allowlist(&[], Some("https://party.example.org/base"));
        assert_eq!(allowed, vec![Origin("https://party.example.org".into())]);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ORIGIN, HeaderValue::from_str(v).unwrap());
            check(&h, &allowed)
        };
        assert_eq!(with("https://party.example.org"), OriginCheck::Allowed);
        for bad in [
            "null",
            "https://party.example.org.evil.com",
            "https://evil-party.example.org",
            "http://party.example.org",
            "https://party.example.org:444",
            "https://party.example.org/",
            "https://PARTY.example.org",
            "",
        ] {
            assert_eq!(with(bad), OriginCheck::Refused, "{bad}");
        }
        assert_eq!(check(&HeaderMap::new(), &allowed), OriginCheck::Absent);
        let mut two = HeaderMap::new();
        two.append(
            ORIGIN,
            HeaderValue::from_static("https://party.example.org"),
        );
        two.append(
            ORIGIN,
            HeaderValue::from_static("https://party.example.org"),
        );
        assert_eq!(check(&two, &allowed), OriginCheck::Refused);
        assert!(allowlist(&[], None).is_empty());
        assert!(Origin::parse("https://*.example").is_none());
    }
}
