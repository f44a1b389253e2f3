//! Member certificates: the server vouches for a member's key.
//!
//! At join, the server signs (with its long-term Ed25519 key, domain
//! `"watchparty/cert/v1\0"`) a certificate binding a member's session public
//! key to `{room, epoch, user, display name, role, not-after}`. The host's
//! certificate has role [`Role::Host`]; its key signs control frames.
//!
//! A peer accepts a certificate only through a [`CertVerifier`]: the signature
//! must verify under the server key the peer knows, the room must be its room,
//! the certificate must not have expired, and — when the peer pinned the host
//! key from the invite link (`#k=…`, see [`parse_invite_fragment`]) — a host
//! certificate must carry exactly that key. The pin defends against a server
//! that would issue a host certificate for a key of its own.
//!
//! Byte layout (`docs/protocol.md` §5), big-endian:
//!
//! ```text
//! "WC" | version (1) | room id (16) | epoch (8) | user id (8) | role (1)
//!      | member public key (32) | not-after, Unix seconds (8)
//!      | display name (u16 length + UTF-8, ≤ 200 bytes)
//!      | Ed25519 signature (64) over "watchparty/cert/v1\0" ‖ all bytes before it
//! ```

use core::fmt;

use base64::Engine as _;

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{Domain, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, Signature, SigningKey};
use crate::ids::{DisplayName, Epoch, MAX_DISPLAY_NAME_CHARS, Role, RoomId, UnixSeconds, UserId};

/// Certificate magic bytes.
pub const CERT_MAGIC: [u8; 2] = *b"WC";
/// Certificate format version.
pub const CERT_VERSION: u8 = 1;
/// Maximum display name length in UTF-8 bytes (50 characters × 4).
pub const MAX_DISPLAY_NAME_BYTES: usize = MAX_DISPLAY_NAME_CHARS * 4;
/// Fixed part before the display name: magic, version, room, epoch, user,
/// role, key, not-after.
const FIXED_LEN: usize = 2 + 1 + 16 + 8 + 8 + 1 + PUBLIC_KEY_LEN + 8;
/// Largest encoded certificate in bytes (342).
pub const MAX_CERT_LEN: usize = FIXED_LEN + 2 + MAX_DISPLAY_NAME_BYTES + SIGNATURE_LEN;

/// What a certificate states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBody {
    /// The room.
    pub room: RoomId,
    /// For a host certificate, the host term it opens; for other members, the
    /// epoch current at issue.
    pub epoch: Epoch,
    /// The member's user account.
    pub user: UserId,
    /// Shown to other members.
    pub name: DisplayName,
    /// The member's role at issue.
    pub role: Role,
    /// The member's session key (for the host: the room key).
    pub key: PublicKey,
    /// Expiry (Unix seconds, inclusive).
    pub not_after: UnixSeconds,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Longer than [`MAX_CERT_LEN`].
    #[error("certificate longer than {MAX_CERT_LEN} bytes")]
    Oversized,
    /// Does not start with [`CERT_MAGIC`].
    #[error("not a certificate (bad magic)")]
    BadMagic,
    /// Unknown format version.
    #[error("unknown certificate version {0}")]
    UnknownVersion(u8),
    /// Structurally malformed.
    #[error("malformed certificate: {0}")]
    Malformed(DecodeError),
    /// Not base64url.
    #[error("certificate is not base64url")]
    BadEncoding,
    /// The signature does not verify under the server key.
    #[error("certificate signature does not verify under the server key")]
    BadSignature,
    /// For another room.
    #[error("certificate is for another room")]
    WrongRoom,
    /// Past its not-after time.
    #[error("certificate expired")]
    Expired,
    /// A host certificate whose key differs from the key pinned from the
    /// invite link.
    #[error("host key does not match the key pinned from the invite link")]
    HostKeyMismatch,
}

/// A certificate parsed from bytes, signature **not yet checked**. Its claims
/// are available as [`SignedCertificate::claimed`] for routing and display
/// by the server; peers must call [`CertVerifier::verify`] before trusting
/// anything in it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCertificate {
    body: CertificateBody,
    bytes: Vec<u8>,
}

impl fmt::Debug for SignedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCertificate")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl SignedCertificate {
    /// Signs `body` with the server key (server side).
    ///
    /// # Errors
    /// None in practice: a [`DisplayName`] always fits; kept as a
    /// `Result` so a future field cannot introduce a panic.
    pub fn issue(server: &SigningKey, body: CertificateBody) -> Result<Self, CertError> {
        let mut w = Writer::with_capacity(MAX_CERT_LEN);
        w.put(&CERT_MAGIC);
        w.u8(CERT_VERSION);
        w.put(body.room.as_bytes());
        w.u64(body.epoch.0);
        w.u64(body.user.get());
        w.u8(body.role.to_byte());
        w.put(body.key.as_bytes());
        w.u64(body.not_after.0);
        w.bytes(
            "display name",
            body.name.as_str().as_bytes(),
            MAX_DISPLAY_NAME_BYTES,
        )
        .map_err(|_| CertError::Oversized)?;
        let sig = server.sign(Domain::Certificate, &w.buf);
        w.put(sig.as_bytes());
        Ok(Self { body, bytes: w.buf })
    }

    /// Parses the structure of a certificate (not the signature).
    ///
    /// # Errors
    /// [`CertError`] for oversized, malformed or unknown-version input.
    pub fn parse(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(CertError::Oversized);
        }
        let signed_len = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or(CertError::Malformed(DecodeError::Truncated("signature")))?;
        let mut r = Reader::new(&bytes[..signed_len]);
        let m = |e| CertError::Malformed(e);
        if r.array::<2>("magic").map_err(m)? != CERT_MAGIC {
            return Err(CertError::BadMagic);
        }
        let version = r.u8("version").map_err(m)?;
        if version != CERT_VERSION {
            return Err(CertError::UnknownVersion(version));
        }
        let body = (|| -> Result<CertificateBody, DecodeError> {
            let room = RoomId::from_bytes(r.array("room id")?);
            let epoch = Epoch(r.u64("epoch")?);
            let user = UserId::new(r.u64("user id")?)?;
            let role = Role::from_byte(r.u8("role")?)?;
            let key = PublicKey::from_bytes(r.array("public key")?);
            let not_after = UnixSeconds(r.u64("not after")?);
            let name = DisplayName::new(r.str("display name", MAX_DISPLAY_NAME_BYTES)?)?;
            Ok(CertificateBody {
                room,
                epoch,
                user,
                name,
                role,
                key,
                not_after,
            })
        })()
        .map_err(m)?;
        r.finish().map_err(m)?;
        Ok(Self {
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// The claims, **unverified**.
    #[must_use]
    pub fn claimed(&self) -> &CertificateBody {
        &self.body
    }

    /// The exact certificate bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// base64url without padding (the JSON form).
    #[must_use]
    pub fn to_base64url(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    /// Parses the JSON form.
    ///
    /// # Errors
    /// [`CertError`] if not canonical base64url or not a well-formed
    /// certificate.
    pub fn from_base64url(s: &str) -> Result<Self, CertError> {
        // 4 characters per 3 bytes, rounded up.
        if s.len() > MAX_CERT_LEN.div_ceil(3) * 4 {
            return Err(CertError::Oversized);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| CertError::BadEncoding)?;
        Self::parse(&bytes)
    }

    fn split(&self) -> Option<(&[u8], Signature)> {
        let at = self.bytes.len().checked_sub(SIGNATURE_LEN)?;
        let (signed, sig) = self.bytes.split_at(at);
        Signature::from_slice(sig).ok().map(|s| (signed, s))
    }
}

impl serde::Serialize for SignedCertificate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64url())
    }
}

impl<'de> serde::Deserialize<'de> for SignedCertificate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_base64url(&s).map_err(serde::de::Error::custom)
    }
}

/// A certificate that passed [`CertVerifier::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    body: CertificateBody,
}

impl VerifiedCertificate {
    /// The verified statement.
    #[must_use]
    pub fn body(&self) -> &CertificateBody {
        &self.body
    }
}

/// Accepts certificates for one room under one server key, optionally with a
/// pinned host key.
#[derive(Debug, Clone)]
pub struct CertVerifier {
    server: PublicKey,
    room: RoomId,
    pinned_host: Option<PublicKey>,
}

impl CertVerifier {
    /// A verifier for `room` trusting `server`.
    #[must_use]
    pub fn new(server: PublicKey, room: RoomId) -> Self {
        Self {
            server,
            room,
            pinned_host: None,
        }
    }

    /// Pins the host key (from the invite link). After an accepted `Handoff`
    /// signed by the pinned host, the session re-pins the new host's key.
    #[must_use]
    pub fn with_pinned_host(mut self, key: PublicKey) -> Self {
        self.pinned_host = Some(key);
        self
    }

    /// Replaces the pinned host key.
    pub fn pin_host(&mut self, key: PublicKey) {
        self.pinned_host = Some(key);
    }

    /// The pinned host key, if any.
    #[must_use]
    pub fn pinned_host(&self) -> Option<PublicKey> {
        self.pinned_host
    }

    /// Checks, in order: the signature under the server key (over the exact
    /// bytes), the room, the expiry (`now <= not_after`), and for a host
    /// certificate the pinned key.
    ///
    /// # Errors
    /// The first failed check.
    pub fn verify(
        &self,
        cert: &SignedCertificate,
        now: UnixSeconds,
    ) -> Result<VerifiedCertificate, CertError> {
        let (signed, sig) = cert.split().ok_or(CertError::BadSignature)?;
        self.server
            .verify(Domain::Certificate, signed, &sig)
            .map_err(|_| CertError::BadSignature)?;
        let body = &cert.body;
        if body.room != self.room {
            return Err(CertError::WrongRoom);
        }
        if now > body.not_after {
            return Err(CertError::Expired);
        }
        if body.role == Role::Host && self.pinned_host.is_some_and(|pin| pin != body.key) {
            return Err(CertError::HostKeyMismatch);
        }
        Ok(VerifiedCertificate { body: body.clone() })
    }
}

// ------------------------------------------------------------- invite pin --

/// The invite-link fragment parameter carrying the host key.
pub const INVITE_KEY_PARAM: &str = "k";
/// Longest fragment [`parse_invite_fragment`] looks at, in bytes, not
/// counting the leading `#` (the same limit with or without it).
pub const MAX_INVITE_FRAGMENT_LEN: usize = 512;

/// The fragment (without `#`) that pins `host` in an invite link:
/// `k=<base64url of the 32-byte key, no padding>`, e.g.
/// `https://watch.example/join/<room>#k=…`. Fragments are never sent to the
/// server.
#[must_use]
pub fn invite_fragment(host: &PublicKey) -> String {
    format!("{INVITE_KEY_PARAM}={}", host.to_base64url())
}

/// The fragment of an invite link that also carries the room's admission
/// secret (docs/protocol.md §2.2): `k=<host key>&a=<secret>`.
#[must_use]
pub fn invite_fragment_with_secret(host: &PublicKey, secret: &crate::admit::AdmitSecret) -> String {
    format!(
        "{}&{}={}",
        invite_fragment(host),
        crate::admit::INVITE_ADMIT_PARAM,
        secret.to_base64url()
    )
}

/// Reads the admission secret (`a=`) from an invite-link fragment (with or
/// without the leading `#`); `Ok(None)` when there is none. Same rules as
/// [`parse_invite_fragment`]: an over-long fragment, a second `a` or a
/// value that is not exactly 32 bytes of canonical base64url is an error.
///
/// # Errors
/// [`PinError`] (`BadSecret` for a malformed value).
pub fn parse_invite_secret(fragment: &str) -> Result<Option<crate::admit::AdmitSecret>, PinError> {
    fragment_param(
        fragment,
        crate::admit::INVITE_ADMIT_PARAM,
        PinError::BadSecret,
        crate::admit::AdmitSecret::from_base64url,
    )
}

/// Why an invite fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Longer than [`MAX_INVITE_FRAGMENT_LEN`].
    #[error("invite fragment too long")]
    TooLong,
    /// `k` (or `a`) given more than once.
    #[error("host key or admission secret given twice in the invite fragment")]
    Duplicate,
    /// `k` is not a base64url Ed25519 key.
    #[error("host key in the invite fragment is not a base64url Ed25519 key")]
    BadKey,
    /// `a` is not 32 bytes of canonical base64url.
    #[error("admission secret in the invite fragment is not 32 bytes of base64url")]
    BadSecret,
}

/// Reads the pinned host key from an invite-link fragment (with or without
/// the leading `#`). The fragment is `&`-separated `name=value` pairs; other
/// names are ignored. `Ok(None)` when there is no `k`.
///
/// # Errors
/// [`PinError`] for an over-long fragment, a duplicate `k` or a malformed key
/// (a malformed pin is never silently ignored).
pub fn parse_invite_fragment(fragment: &str) -> Result<Option<PublicKey>, PinError> {
    fragment_param(fragment, INVITE_KEY_PARAM, PinError::BadKey, |v| {
        PublicKey::from_base64url(v).ok()
    })
}

/// The value of parameter `name` of an invite fragment (with or without
/// the leading `#`), parsed by `parse` (`None` from it: `bad`); `Ok(None)`
/// when absent. Refuses an over-long fragment and a repeated `name`.
fn fragment_param<T>(
    fragment: &str,
    name: &str,
    bad: PinError,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, PinError> {
    let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
    if fragment.len() > MAX_INVITE_FRAGMENT_LEN {
        return Err(PinError::TooLong);
    }
    let mut found = None;
    for pair in fragment.split('&') {
        let (n, value) = pair.split_once('=').unwrap_or((pair, ""));
        if n != name {
            continue;
        }
        if found.is_some() {
            return Err(PinError::Duplicate);
        }
        found = Some(parse(value).ok_or(bad)?);
    }
    Ok(found)
}

#[cfg(test)]
pub(crate) mod strategies {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn signed_cert() -> impl Strategy<Value = SignedCertificate> {
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            crate::message::strategies::user(),
            "[A-Za-z][A-Za-z0-9 ]{0,20}[a-z]",
            0usize..3,
            any::<[u8; 32]>(),
            any::<u64>(),
        )
            .prop_map(|(room, epoch, user, name, role, key, exp)| {
                let server = SigningKey::from_seed(&[0x5e; 32]).unwrap();
                SignedCertificate::issue(
                    &server,
                    CertificateBody {
                        room: RoomId::from_bytes(room),
                        epoch: Epoch(epoch),
                        user,
                        name: DisplayName::new(&name).unwrap(),
                        role: [Role::Host, Role::Controller, Role::Viewer][role],
                        key: PublicKey::from_bytes(key),
                        not_after: UnixSeconds(exp),
                    },
                )
                .unwrap()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server() -> SigningKey {
        SigningKey::from_seed(&[0x5e; 32]).unwrap()
    }

    fn body(role: Role, key: PublicKey) -> CertificateBody {
        CertificateBody {
            room: RoomId::from_bytes([1; 16]),
            epoch: Epoch(3),
            user: UserId::new(42).unwrap(),
            name: DisplayName::new("Ada").unwrap(),
            role,
            key,
            not_after: UnixSeconds(1_000),
        }
    }

    #[test]
    fn issue_parse_verify() {
        let host = SigningKey::from_seed(&[0x40; 32]).unwrap().public_key();
        let cert = SignedCertificate::issue(&server(), body(Role::Host, host)).unwrap();
        let parsed = SignedCertificate::parse(cert.as_bytes()).unwrap();
        assert_eq!(parsed, cert);
        let v = CertVerifier::new(server().public_key(), RoomId::from_bytes([1; 16]));
        assert_eq!(
            v.verify(&parsed, UnixSeconds(1_000)).unwrap().body(),
            cert.claimed()
        );
        assert_eq!(
            v.verify(&parsed, UnixSeconds(1_001)),
            Err(CertError::Expired)
        );
        // Pinned to the right key, then to another.
        let pinned = v.clone().with_pinned_host(host);
        assert!(pinned.verify(&cert, UnixSeconds(0)).is_ok());
        let other = SigningKey::from_seed(&[0x41; 32]).unwrap().public_key();
        let wrong = v.clone().with_pinned_host(other);
        assert_eq!(
            wrong.verify(&cert, UnixSeconds(0)),
            Err(CertError::HostKeyMismatch)
        );
        // The pin only concerns host certificates.
        let viewer = SignedCertificate::issue(&server(), body(Role::Viewer, host)).unwrap();
        assert!(wrong.verify(&viewer, UnixSeconds(0)).is_ok());
        // Another room.
        let v2 = CertVerifier::new(server().public_key(), RoomId::from_bytes([2; 16]));
        assert_eq!(v2.verify(&cert, UnixSeconds(0)), Err(CertError::WrongRoom));
        // Another server key.
        let stranger = SigningKey::from_seed(&[0x66; 32]).unwrap();
        let forged = SignedCertificate::issue(&stranger, body(Role::Host, host)).unwrap();
        assert_eq!(
            v.verify(&forged, UnixSeconds(0)),
            Err(CertError::BadSignature)
        );
        // JSON form.
        let json = serde_json::to_string(&cert).unwrap();
        assert_eq!(
            serde_json::from_str::<SignedCertificate>(&json).unwrap(),
            cert
        );
        assert!(cert.as_bytes().len() <= MAX_CERT_LEN);
    }

    #[test]
    fn longest_name_fits() {
        let name = "😀".repeat(MAX_DISPLAY_NAME_CHARS);
        let mut b = body(Role::Viewer, PublicKey::from_bytes([0; 32]));
        b.name = DisplayName::new(&name).unwrap();
        let cert = SignedCertificate::issue(&server(), b).unwrap();
        assert_eq!(cert.as_bytes().len(), MAX_CERT_LEN);
        assert!(SignedCertificate::parse(cert.as_bytes()).is_ok());
        let mut longer = cert.as_bytes().to_vec();
        longer.push(0);
        assert_eq!(SignedCertificate::parse(&longer), Err(CertError::Oversized));
    }

    #[test]
    fn invisible_name_is_refused_before_the_signature() {
        // A certificate whose name hides a right-to-left override is refused
        // when parsed, before any signature check, so a correct signature
        // would not save it either.
        let mut b = body(Role::Viewer, PublicKey::from_bytes([0; 32]));
        b.name = DisplayName::new("abc").unwrap();
        let cert = SignedCertificate::issue(&server(), b).unwrap();
        let mut bad = cert.as_bytes().to_vec();
        let at = bad.windows(3).position(|w| w == b"abc").unwrap();
        bad[at..at + 3].copy_from_slice("\u{202E}".as_bytes());
        assert!(matches!(
            SignedCertificate::parse(&bad),
            Err(CertError::Malformed(_))
        ));
    }

    #[test]
    fn structure_errors() {
        let cert = SignedCertificate::issue(
            &server(),
            body(Role::Viewer, PublicKey::from_bytes([0; 32])),
        )
        .unwrap();
        let mut bad = cert.as_bytes().to_vec();
        bad[0] = b'X';
        assert_eq!(SignedCertificate::parse(&bad), Err(CertError::BadMagic));
        let mut bad = cert.as_bytes().to_vec();
        bad[2] = 2;
        assert_eq!(
            SignedCertificate::parse(&bad),
            Err(CertError::UnknownVersion(2))
        );
        assert!(matches!(
            SignedCertificate::parse(&[]),
            Err(CertError::Malformed(_))
        ));
        assert!(SignedCertificate::from_base64url("!!!").is_err());
    }

    proptest! {
        #[test]
        fn any_bit_flip_breaks_verification(idx in 0usize..MAX_CERT_LEN, bit in 0u8..8) {
            let host = PublicKey::from_bytes([9; 32]);
            let cert = SignedCertificate::issue(&server(), body(Role::Host, host)).unwrap();
            let mut bytes = cert.as_bytes().to_vec();
            let idx = idx % bytes.len();
            bytes[idx] ^= 1 << bit;
            let v = CertVerifier::new(server().public_key(), RoomId::from_bytes([1; 16]));
            if let Ok(parsed) = SignedCertificate::parse(&bytes) {
                prop_assert!(v.verify(&parsed, UnixSeconds(0)).is_err());
            }
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedCertificate::parse(&bytes);
        }

        #[test]
        fn round_trip(cert in strategies::signed_cert()) {
            prop_assert_eq!(SignedCertificate::parse(cert.as_bytes()), Ok(cert.clone()));
            prop_assert_eq!(SignedCertificate::from_base64url(&cert.to_base64url()), Ok(cert));
        }
    }

    #[test]
    fn invite_fragment_pin() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap().public_key();
        let frag = invite_fragment(&key);
        assert!(frag.starts_with("k="));
        assert_eq!(frag.len(), 2 + 43);
        assert_eq!(parse_invite_fragment(&frag), Ok(Some(key)));
        assert_eq!(parse_invite_fragment(&format!("#{frag}")), Ok(Some(key)));
        assert_eq!(
            parse_invite_fragment(&format!("#x=1&{frag}&y")),
            Ok(Some(key))
        );
        assert_eq!(parse_invite_fragment("#x=1"), Ok(None));
        assert_eq!(parse_invite_fragment(""), Ok(None));
        assert_eq!(
            parse_invite_fragment(&format!("{frag}&{frag}")),
            Err(PinError::Duplicate)
        );
        assert_eq!(parse_invite_fragment("k=abc"), Err(PinError::BadKey));
        assert_eq!(parse_invite_fragment("k"), Err(PinError::BadKey));
        assert_eq!(
            parse_invite_fragment(&"a".repeat(513)),
            Err(PinError::TooLong)
        );
    }

    /// The 512-byte limit counts the fragment after `#`: exactly
    /// [`MAX_INVITE_FRAGMENT_LEN`] bytes are read with or without the `#`,
    /// one more is refused either way (docs/protocol.md §2.1).
    #[test]
    fn invite_fragment_admission_secret() {
        use crate::admit::AdmitSecret;
        let key = SigningKey::from_seed(&[9; 32]).unwrap();
        let secret = AdmitSecret::derive(&key);
        let frag = invite_fragment_with_secret(&key.public_key(), &secret);
        assert_eq!(parse_invite_fragment(&frag), Ok(Some(key.public_key())));
        assert_eq!(parse_invite_secret(&frag), Ok(Some(secret)));
        assert_eq!(parse_invite_secret(&format!("#{frag}")), Ok(Some(secret)));
        assert_eq!(
            parse_invite_secret(&invite_fragment(&key.public_key())),
            Ok(None)
        );
        assert_eq!(
            parse_invite_secret(&format!("{frag}&a={}", secret.to_base64url())),
            Err(PinError::Duplicate)
        );
        assert_eq!(parse_invite_secret("a=AAAA"), Err(PinError::BadSecret));
        assert_eq!(parse_invite_secret("a"), Err(PinError::BadSecret));
        assert_eq!(
            parse_invite_secret(&"a".repeat(513)),
            Err(PinError::TooLong)
        );
    }

    #[test]
    fn invite_fragment_limit_does_not_count_the_hash() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap().public_key();
        let frag = invite_fragment(&key);
        let pad = |n: usize| format!("{frag}&x={}", "a".repeat(n - frag.len() - 3));
        let longest = pad(MAX_INVITE_FRAGMENT_LEN);
        assert_eq!(longest.len(), MAX_INVITE_FRAGMENT_LEN);
        assert_eq!(parse_invite_fragment(&longest), Ok(Some(key)));
        assert_eq!(parse_invite_fragment(&format!("#{longest}")), Ok(Some(key)));
        let over = pad(MAX_INVITE_FRAGMENT_LEN + 1);
        assert_eq!(parse_invite_fragment(&over), Err(PinError::TooLong));
        assert_eq!(
            parse_invite_fragment(&format!("#{over}")),
            Err(PinError::TooLong)
        );
    }
}
