//! The client address used for per-IP limits.
//!
//! `X-Forwarded-For` is honoured **only** when the TCP peer is a configured
//! trusted proxy; then the right-most address that is not itself a trusted
//! proxy is the client. Anything else (no header, unparsable entries, an
//! untrusted peer) falls back to the TCP peer address, so a client cannot pick
//! a fresh rate-limit bucket by rotating the header.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::config::{IpNet, unmap};
use crate::error::ApiError;
use crate::state::AppState;

/// Most `X-Forwarded-For` entries examined.
pub const MAX_FORWARDED_HOPS: usize = 16;

/// Resolves the client IP from the peer address and `X-Forwarded-For` values.
pub fn resolve(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = unmap(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(unmap(ip)) => continue,
            Ok(ip) => return unmap(ip),
            Err(_) => return peer,
        }
    }
    peer
}

/// Extractor: the client IP of this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("server not started with connect info"))?;
        let values: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(resolve(
            peer,
            &values,
            &state.config.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_header() {
        let trusted = vec!["10.0.0.1".parse().unwrap()];
        assert_eq!(
            resolve(ip("127.0.0.5"), &["1.2.3.4"], &trusted),
            ip("127.0.0.5")
        );
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("127.0.0.1"), &["6.6.6.6, 1.2.3.4, 10.0.0.7"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(resolve(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
        assert_eq!(
            resolve(ip("127.0.0.1"), &["garbage"], &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &["::ffff:9.9.9.9"], &trusted),
            ip("9.9.9.9")
        );
        // More than MAX_FORWARDED_HOPS trusted hops: stop looking, use the peer.
        let long = vec!["10.0.0.9"; MAX_FORWARDED_HOPS + 1].join(",");
        let long = format!("1.2.3.4,{long}");
        assert_eq!(
            resolve(ip("127.0.0.1"), &[long.as_str()], &trusted),
            ip("127.0.0.1")
        );
    }
}
