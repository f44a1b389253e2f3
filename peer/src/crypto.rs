//! Ed25519 signing and verification over `ring`, with explicit domain tags.
//!
//! Every signature in watchparty is made over `domain tag ‖ message`, where the
//! tag names what is being signed ([`Domain`]). A signature for one purpose
//! (a data-channel frame) can therefore never be replayed as another (a member
//! certificate), even if the signed bytes happened to collide.
//!
//! Keys are identified on the wire by a [`KeyId`]: the first 8 bytes of the
//! SHA-256 of the 32-byte public key. A key id is only a lookup hint; the full
//! public key is always taken from a certificate and the signature checked
//! against it.

use core::fmt;

use base64::Engine as _;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// Length of an Ed25519 seed (private key) in bytes.
pub const SEED_LEN: usize = 32;
/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

/// What a signature is for. The tag bytes are prepended to the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Data-channel frames (`frame.rs`): `"watchparty/frame/v1\0"`.
    Frame,
    /// Member certificates signed by the server (`cert.rs`):
    /// `"watchparty/cert/v1\0"`.
    Certificate,
}

impl Domain {
    /// The exact tag bytes (ASCII, NUL-terminated so no tag is a prefix of
    /// another).
    #[must_use]
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Self::Frame => b"watchparty/frame/v1\0",
            Self::Certificate => b"watchparty/cert/v1\0",
        }
    }
}

/// Builds the signing input `tag ‖ message`.
fn signing_input(domain: Domain, message: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let mut input = Vec::with_capacity(tag.len() + message.len());
    input.extend_from_slice(tag);
    input.extend_from_slice(message);
    input
}

/// Errors from key handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The random source failed.
    #[error("the random number generator failed")]
    Rng,
    /// `ring` refused the seed (cannot happen for 32-byte seeds; kept as an
    /// error instead of a panic).
    #[error("ring rejected the Ed25519 seed")]
    BadSeed,
    /// A key, signature or key id had the wrong length or encoding.
    #[error("wrong length or encoding for {0}")]
    Encoding(&'static str),
}

/// The signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Ed25519 signature verification failed")]
pub struct BadSignature;

/// An Ed25519 private key.
///
/// `Debug` never prints key material.
pub struct SigningKey {
    seed: [u8; SEED_LEN],
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key whose RFC 8032 seed is `seed`.
    ///
    /// # Errors
    /// [`CryptoError::BadSeed`] if ring refuses the seed (not expected for any
    /// 32-byte value).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CryptoError::BadSeed)?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        let bytes = pair.public_key().as_ref();
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(CryptoError::BadSeed);
        }
        public.copy_from_slice(bytes);
        Ok(Self {
            seed: *seed,
            pair,
            public: PublicKey(public),
        })
    }

    /// A fresh key from `rng` (`ring::rand::SystemRandom`; ring's trait is
    /// sealed, so other generators fill a seed and call
    /// [`SigningKey::from_seed`]).
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random source fails.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut seed = [0u8; SEED_LEN];
        rng.fill(&mut seed).map_err(|_| CryptoError::Rng)?;
        Self::from_seed(&seed)
    }

    /// The seed, for storing the key (e.g. the server's long-term key).
    /// Treat the result as a secret.
    #[must_use]
    pub fn expose_seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The key id of the public half.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs `domain tag ‖ message`.
    #[must_use]
    pub fn sign(&self, domain: Domain, message: &[u8]) -> Signature {
        self.sign_raw(&signing_input(domain, message))
    }

    fn sign_raw(&self, input: &[u8]) -> Signature {
        let sig = self.pair.sign(input);
        let mut out = [0u8; SIGNATURE_LEN];
        // ring's Ed25519 signatures are always 64 bytes.
        let bytes = sig.as_ref();
        let n = bytes.len().min(SIGNATURE_LEN);
        out[..n].copy_from_slice(&bytes[..n]);
        Signature(out)
    }
}

/// An Ed25519 public key (32 bytes, RFC 8032 encoding).
///
/// In JSON and invite links it is base64url without padding (43 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64url())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

impl PublicKey {
    /// Wraps 32 key bytes. Whether they are a valid curve point is checked
    /// when a signature is verified (an invalid point never verifies).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a 32-byte slice.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] if the slice is not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; PUBLIC_KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::Encoding("public key"))
    }

    /// The raw key bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The key id: the first 8 bytes of SHA-256 of the key.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// base64url without padding (43 characters), as used in JSON and in
    /// invite links.
    #[must_use]
    pub fn to_base64url(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`PublicKey::to_base64url`] output. Exactly 43 characters of the
    /// URL-safe alphabet, no padding; non-canonical trailing bits are refused.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] otherwise.
    pub fn from_base64url(s: &str) -> Result<Self, CryptoError> {
        const ENCODED_LEN: usize = 43;
        if s.len() != ENCODED_LEN {
            return Err(CryptoError::Encoding("public key (base64url)"));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| CryptoError::Encoding("public key (base64url)"))?;
        Self::from_slice(&bytes)
    }

    /// Verifies `signature` over `domain tag ‖ message`.
    ///
    /// # Errors
    /// [`BadSignature`] if it does not verify (including a key that is not a
    /// valid curve point and a non-canonical signature).
    pub fn verify(
        &self,
        domain: Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), BadSignature> {
        verify_raw(&self.0, &signing_input(domain, message), &signature.0)
    }
}

/// Plain RFC 8032 Ed25519 verification without a domain tag, over arbitrary
/// slices. Only the Wycheproof tests use it directly; everything in the
/// protocol goes through [`PublicKey::verify`].
fn verify_raw(public_key: &[u8], input: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(input, signature)
        .map_err(|_| BadSignature)
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64url())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_base64url(&s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Signature {
    /// Wraps 64 signature bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a 64-byte slice.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] if the slice is not 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; SIGNATURE_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::Encoding("signature"))
    }

    /// The raw signature bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

/// A short key identifier: the first 8 bytes of SHA-256 of the public key.
///
/// Shown as 16 lowercase hex digits (JSON, logs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Wraps 8 raw bytes (as read from a frame).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }

    /// Parses 16 lowercase hex digits.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] otherwise.
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let bad = CryptoError::Encoding("key id (hex)");
        if s.len() != 2 * KEY_ID_LEN || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad);
        }
        let mut out = [0u8; KEY_ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad)?;
        Ok(Self(out))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex::encode(self.0))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wycheproof::TestResult;
    use wycheproof::eddsa::{TestName, TestSet};

    /// RFC 8032 §7.1 TEST 1: seed, public key and the signature of the empty
    /// message.
    #[test]
    fn rfc8032_test1() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(key.public_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign_raw(b"");
        assert_eq!(
            hex::encode(sig.as_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(
            verify_raw(key.public_key().as_bytes(), b"", sig.as_bytes()),
            Ok(())
        );
    }

    /// Every Wycheproof Ed25519 vector through our verification path: valid
    /// ones verify, invalid ones do not (there are no "acceptable" ones for
    /// Ed25519, but they would be allowed either way).
    #[test]
    fn wycheproof_ed25519() {
        let set = TestSet::load(TestName::Ed25519).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            let pk: &[u8] = group.key.pk.as_ref();
            for test in &group.tests {
                let got = verify_raw(pk, test.msg.as_ref(), test.sig.as_ref());
                // Also through the typed wrapper when lengths allow it: a
                // wrong-length key or signature must already fail to parse.
                let typed = match (PublicKey::from_slice(pk), Signature::from_slice(&test.sig)) {
                    (Ok(k), Ok(s)) => verify_raw(k.as_bytes(), &test.msg, s.as_bytes()),
                    _ => Err(BadSignature),
                };
                assert_eq!(got, typed, "tc {}", test.tc_id);
                match test.result {
                    TestResult::Valid => {
                        valid += 1;
                        assert_eq!(
                            got,
                            Ok(()),
                            "tc {} ({}) must verify",
                            test.tc_id,
                            test.comment
                        );
                    }
                    TestResult::Invalid => {
                        invalid += 1;
                        assert_eq!(
                            got,
                            Err(BadSignature),
                            "tc {} ({}) must not verify",
                            test.tc_id,
                            test.comment
                        );
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
        assert!(
            valid > 50 && invalid > 50,
            "valid {valid}, invalid {invalid}"
        );
    }

    /// The Ed25519 edge cases of docs/protocol.md §2 (non-canonical `S`,
    /// small-order and non-canonical keys and `R`, the cofactorless
    /// equation): each row's result is exactly ours, and every kind of case
    /// is there.
    #[test]
    fn document_ed25519_edge_cases() {
        let doc = include_str!("../../docs/protocol.md");
        let table = doc
            .split("<!-- ed25519-edge-cases -->")
            .nth(1)
            .expect("edge-case table in docs/protocol.md");
        let hex32 = |cell: &str| -> [u8; 32] {
            let h = cell.trim().trim_matches('`');
            hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .unwrap_or_else(|| panic!("not 32 hex bytes: {cell}"))
        };
        let mut results = Vec::new();
        for line in table.lines().map(str::trim).skip(3) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 6, "{line}");
            let (key, r, s) = (hex32(cells[1]), hex32(cells[2]), hex32(cells[3]));
            let msg = match cells[4].trim() {
                "(empty)" => String::new(),
                m => m.trim_matches('`').to_owned(),
            };
            let mut sig = r.to_vec();
            sig.extend_from_slice(&s);
            let want = match cells[5].trim() {
                "valid" => Ok(()),
                "refused" => Err(BadSignature),
                other => panic!("result {other}"),
            };
            let got = verify_raw(&key, msg.as_bytes(), &sig);
            assert_eq!(got, want, "{}", cells[0].trim());
            // The typed path agrees.
            let typed = verify_raw(
                PublicKey::from_bytes(key).as_bytes(),
                msg.as_bytes(),
                Signature::from_slice(&sig).unwrap().as_bytes(),
            );
            assert_eq!(typed, got, "{}", cells[0].trim());
            results.push(got);
        }
        assert_eq!(results.len(), 10, "every edge case is listed");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
    }

    /// A signature with `S + L` in place of `S` (same value modulo the
    /// group order) is refused: `S` must be canonical (docs/protocol.md §2).
    #[test]
    fn non_canonical_s_is_refused() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let sig = key.sign_raw(b"non-canonical");
        let pk = key.public_key();
        assert_eq!(
            verify_raw(pk.as_bytes(), b"non-canonical", sig.as_bytes()),
            Ok(())
        );
        // L, little-endian.
        let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .unwrap();
        let mut bumped = *sig.as_bytes();
        let mut carry = 0u16;
        for (b, add) in bumped[32..].iter_mut().zip(&l) {
            let v = u16::from(*b) + u16::from(*add) + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        // S < L < 2^253, so S + L < 2^254 fits in 32 bytes.
        assert_eq!(carry, 0);
        assert_eq!(
            verify_raw(pk.as_bytes(), b"non-canonical", &bumped),
            Err(BadSignature)
        );
    }

    #[test]
    fn domain_separation() {
        let key = SigningKey::from_seed(&[7; 32]).unwrap();
        let sig = key.sign(Domain::Frame, b"hello");
        let pk = key.public_key();
        assert_eq!(pk.verify(Domain::Frame, b"hello", &sig), Ok(()));
        assert_eq!(
            pk.verify(Domain::Certificate, b"hello", &sig),
            Err(BadSignature)
        );
        assert_eq!(pk.verify(Domain::Frame, b"hellp", &sig), Err(BadSignature));
        // The tagged signature is a plain signature over tag ‖ message.
        let mut input = Domain::Frame.tag().to_vec();
        input.extend_from_slice(b"hello");
        assert_eq!(verify_raw(pk.as_bytes(), &input, sig.as_bytes()), Ok(()));
        let other = SigningKey::from_seed(&[8; 32]).unwrap().public_key();
        assert_eq!(
            other.verify(Domain::Frame, b"hello", &sig),
            Err(BadSignature)
        );
    }

    #[test]
    fn generate_uses_rng() {
        let rng = ring::rand::SystemRandom::new();
        let a = SigningKey::generate(&rng).unwrap();
        let b = SigningKey::generate(&rng).unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let again = SigningKey::from_seed(a.expose_seed()).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        assert!(!format!("{a:?}").contains(&hex::encode(a.expose_seed())));
    }

    #[test]
    fn key_id_and_encodings() {
        let pk = SigningKey::from_seed(&[1; 32]).unwrap().public_key();
        let id = pk.key_id();
        let digest = ring::digest::digest(&ring::digest::SHA256, pk.as_bytes());
        assert_eq!(id.as_bytes(), &digest.as_ref()[..8]);
        assert_eq!(KeyId::from_hex(&id.to_string()), Ok(id));
        assert!(KeyId::from_hex(&id.to_string().to_uppercase()).is_err());
        assert!(KeyId::from_hex("00").is_err());
        let b64 = pk.to_base64url();
        assert_eq!(b64.len(), 43);
        assert_eq!(PublicKey::from_base64url(&b64), Ok(pk));
        assert!(PublicKey::from_base64url(&format!("{b64}=")).is_err());
        assert!(PublicKey::from_base64url(&b64[..42]).is_err());
        // The last character carries 2 unused bits; setting them is refused.
        let zero = PublicKey::from_bytes([0; 32]).to_base64url();
        assert!(zero.ends_with('A'));
        assert!(PublicKey::from_base64url(&format!("{}B", &zero[..42])).is_err());
        // '+' and '/' belong to the standard alphabet, not base64url.
        assert!(PublicKey::from_base64url(&format!("+{}", &b64[1..])).is_err());
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
    }
}
