//! Access tokens (JWT, HS256) and signed stream tokens (HMAC blobs).
//!
//! Access JWTs: header `alg = HS256` (the only algorithm accepted), `typ =
//! at+jwt` (RFC 9068; other token kinds must use a different `typ`), `kid` =
//! id of the server key. Claims `iss`, `aud`, `sub` (user id), `exp`, `iat`,
//! `sid` (session id); `iss/aud/sub/exp` are required by the validator
//! (`set_required_spec_claims`), leeway is [`LEEWAY_SECS`].
//!
//! Stream tokens are **not** JWTs: `base64url(user ‖ item ‖ exp ‖ HMAC-SHA256(
//! "wp/stream/v1\0" ‖ user ‖ item ‖ exp))` with a separate key, bound to one user
//! and one media item, valid ≤ 10 minutes.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::hmac;
use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::keys::SymmetricKey;

/// `iss` of every access token.
pub const ISSUER: &str = "watchparty-signal";
/// `aud` of every access token.
pub const AUDIENCE: &str = "watchparty-api";
/// JOSE `typ` of access tokens.
pub const ACCESS_TYP: &str = "at+jwt";
/// Clock-skew leeway for `exp`/`nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// The one JWT algorithm accepted.
pub const JWT_ALGORITHM: Algorithm = Algorithm::HS256;
/// Longest accepted Authorization header / token, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id, as a decimal string.
    pub sub: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Session id (32 lowercase hex characters).
    pub sid: String,
}

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccess {
    /// The user id.
    pub user_id: i64,
    /// The session id (16 bytes).
    pub session_id: [u8; 16],
}

/// Issues and verifies access tokens.
pub struct AccessTokens {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("kid", &self.kid)
            .finish()
    }
}

/// Why a token was refused (only for logs and tests; clients see `unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, bad signature, wrong alg, missing/wrong claim, expired…
    #[error("invalid token")]
    Invalid,
    /// The `kid` is missing or unknown.
    #[error("unknown key id")]
    UnknownKid,
    /// The `typ` is not the one of this token kind.
    #[error("wrong token type")]
    WrongType,
}

impl AccessTokens {
    /// Builds the issuer/validator for `key`.
    pub fn new(key: &SymmetricKey) -> Self {
        let mut validation = Validation::new(JWT_ALGORITHM);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        AccessTokens {
            kid: key.key_id(),
            encoding: EncodingKey::from_secret(key.as_bytes()),
            decoding: DecodingKey::from_secret(key.as_bytes()),
            validation,
        }
    }

    /// The `kid` put in issued tokens.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Issues a token for `user_id` in session `session_id`, valid `ttl_secs` from `now`.
    pub fn issue(
        &self,
        user_id: i64,
        session_id: &[u8; 16],
        now: i64,
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(JWT_ALGORITHM);
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_string(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            sid: hex::encode(session_id),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// Verifies a token: header (`kid`, `typ`, `alg`), signature, then claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedAccess, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKid);
        }
        if header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(TokenError::WrongType);
        }
        if header.alg != JWT_ALGORITHM {
            return Err(TokenError::Invalid);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let user_id: i64 = claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        let session_id: [u8; 16] = hex::decode(&claims.sid)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(TokenError::Invalid)?;
        Ok(VerifiedAccess {
            user_id,
            session_id,
        })
    }
}

/// Domain-separation prefix of stream-token MACs.
const STREAM_DOMAIN: &[u8] = b"wp/stream/v1\0";
const STREAM_FIELDS_LEN: usize = 24;
const STREAM_TAG_LEN: usize = 32;
/// Length of an encoded stream token in characters.
pub const STREAM_TOKEN_CHARS: usize = 75;

/// What a stream token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamGrant {
    /// The user the URL was issued to.
    pub user_id: i64,
    /// The media item.
    pub item_id: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
}

/// Signs and checks stream tokens.
pub struct StreamTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTokens")
    }
}

impl StreamTokens {
    /// Uses `key` (distinct from the JWT key).
    pub fn new(key: &SymmetricKey) -> Self {
        StreamTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
        }
    }

    fn fields(grant: &StreamGrant) -> [u8; STREAM_FIELDS_LEN] {
        let mut out = [0u8; STREAM_FIELDS_LEN];
        out[..8].copy_from_slice(&grant.user_id.to_be_bytes());
        out[8..16].copy_from_slice(&grant.item_id.to_be_bytes());
        out[16..].copy_from_slice(&grant.exp.to_be_bytes());
        out
    }

    fn mac_input(fields: &[u8]) -> Vec<u8> {
        let mut msg = Vec::with_capacity(STREAM_DOMAIN.len() + fields.len());
        msg.extend_from_slice(STREAM_DOMAIN);
        msg.extend_from_slice(fields);
        msg
    }

    /// Encodes a signed token.
    pub fn sign(&self, grant: &StreamGrant) -> String {
        let fields = Self::fields(grant);
        let tag = hmac::sign(&self.key, &Self::mac_input(&fields));
        let mut blob = Vec::with_capacity(STREAM_FIELDS_LEN + STREAM_TAG_LEN);
        blob.extend_from_slice(&fields);
        blob.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(blob)
    }

    /// Checks the MAC and expiry (`now` in Unix seconds). The caller must
    /// still check that `item_id` is the requested item and that access holds.
    pub fn verify(&self, token: &str, now: i64) -> Option<StreamGrant> {
        if token.len() != STREAM_TOKEN_CHARS {
            return None;
        }
        let blob = URL_SAFE_NO_PAD.decode(token).ok()?;
        if blob.len() != STREAM_FIELDS_LEN + STREAM_TAG_LEN {
            return None;
        }
        let (fields, tag) = blob.split_at(STREAM_FIELDS_LEN);
        hmac::verify(&self.key, &Self::mac_input(fields), tag).ok()?;
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            Some(i64::from_be_bytes(fields.get(r)?.try_into().ok()?))
        };
        let grant = StreamGrant {
            user_id: num(0..8)?,
            item_id: num(8..16)?,
            exp: num(16..24)?,
        };
        (grant.exp >= now).then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ServerKeys;

    #[test]
    fn access_round_trip_and_kid() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServerKeys::load_or_create(dir.path()).unwrap();
        let t = AccessTokens::new(&keys.jwt);
        let now = crate::db::now_secs();
        let tok = t.issue(42, &[7; 16], now, 600).unwrap();
        assert_eq!(
            t.verify(&tok),
            Ok(VerifiedAccess {
                user_id: 42,
                session_id: [7; 16]
            })
        );
        let other = tempfile::tempdir().unwrap();
        let keys2 = ServerKeys::load_or_create(other.path()).unwrap();
        let t2 = AccessTokens::new(&keys2.jwt);
        assert_eq!(t2.verify(&tok), Err(TokenError::UnknownKid));
    }

    #[test]
    fn stream_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServerKeys::load_or_create(dir.path()).unwrap();
        let s = StreamTokens::new(&keys.stream);
        let g = StreamGrant {
            user_id: 3,
            item_id: 9,
            exp: 1000,
        };
        let tok = s.sign(&g);
        assert_eq!(tok.len(), STREAM_TOKEN_CHARS);
        assert_eq!(s.verify(&tok, 1000), Some(g));
        assert_eq!(s.verify(&tok, 1001), None, "expired");
        let mut bytes = tok.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            s.verify(std::str::from_utf8(&bytes).unwrap(), 0),
            None,
            "tampered"
        );
        assert_eq!(s.verify("short", 0), None);
    }
}
