//! ICE server list with ephemeral TURN credentials (coturn `use-auth-secret`,
//! draft-uberti-behave-turn-rest-00): `username = "<expiry unix secs>:<user id>"`,
//! `credential = base64(HMAC-SHA1(static-auth-secret, username))`. Minted per
//! member at `auth`, valid `turn_ttl_secs`, never logged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use watchparty_peer::signaling::{
    BoundedVec, IceCredential, IceServer, IceUrl, IceUsername, MAX_ICE_SERVERS,
};

use super::config::{SignalingConfig, TurnSecret};

/// The TURN REST credential for `user_id`, expiring at `expiry` (Unix seconds).
pub fn turn_credential(secret: &TurnSecret, expiry: i64, user_id: i64) -> (String, String) {
    let username = format!("{expiry}:{user_id}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    (username, STANDARD.encode(tag.as_ref()))
}

/// The ICE servers for `user_id` at `now` (Unix seconds). Entries that do not
/// fit the protocol's bounds were refused by configuration validation, so
/// they are skipped here rather than failing the connection.
pub fn ice_servers(
    config: &SignalingConfig,
    user_id: i64,
    now: i64,
) -> BoundedVec<IceServer, MAX_ICE_SERVERS> {
    let urls = |list: &[String]| -> Option<BoundedVec<IceUrl, { watchparty_peer::signaling::MAX_ICE_URLS }>> {
        let v: Vec<IceUrl> = list.iter().filter_map(|u| IceUrl::new(u.as_str()).ok()).collect();
        if v.is_empty() {
            None
        } else {
            BoundedVec::new(v).ok()
        }
    };
    let mut out = Vec::new();
    if let Some(u) = urls(&config.stun_urls) {
        out.push(IceServer {
            urls: u,
            username: None,
            credential: None,
        });
    }
    if let (Some(u), Some(secret)) = (urls(&config.turn_urls), &config.turn_secret) {
        let ttl = i64::try_from(config.turn_ttl_secs).unwrap_or(i64::MAX);
        let (name, cred) = turn_credential(secret, now.saturating_add(ttl), user_id);
        if let (Ok(username), Ok(credential)) = (IceUsername::new(name), IceCredential::new(cred)) {
            out.push(IceServer {
                urls: u,
                username: Some(username),
                credential: Some(credential),
            });
        }
    }
    BoundedVec::new(out).unwrap_or_else(|_| BoundedVec::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // Computed independently with Python's hmac/hashlib/base64:
        // base64(hmac.new(b"north-wind-secret", b"1700086400:42", sha1).digest())
        let (u, c) = turn_credential(&TurnSecret::new("north-wind-secret"), 1_700_086_400, 42);
        assert_eq!(u, "1700086400:42");
        assert_eq!(c, "rB+AgT42eBQRslkcBbXMEySUSrM=");
    }

    #[test]
    fn servers_and_ttl() {
        let config = SignalingConfig {
            stun_urls: vec!["stun:stun.example:3478".into()],
            turn_urls: vec!["turn:turn.example:3478?transport=udp".into()],
            turn_secret: Some(TurnSecret::new("s")),
            turn_ttl_secs: 600,
            ..SignalingConfig::default()
        };
        let list = ice_servers(&config, 7, 1000).into_vec();
        assert_eq!(list.len(), 2);
        assert!(list[0].username.is_none());
        let user = list[1].username.as_ref().unwrap().as_str();
        assert_eq!(user, "1600:7");
        let (_, expected) = turn_credential(&TurnSecret::new("s"), 1600, 7);
        assert_eq!(list[1].credential.as_ref().unwrap().as_str(), expected);
        assert!(
            ice_servers(&SignalingConfig::default(), 7, 0)
                .as_slice()
                .is_empty()
        );
    }
}
