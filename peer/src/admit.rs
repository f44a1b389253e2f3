//! Admission to a pinned room (docs/protocol.md §2.2): the secret the
//! host's invite link carries next to its key, and the proof a joiner
//! sends the host with it.
//!
//! The host derives the room's admission secret from its room key seed
//! ([`AdmitSecret::derive`]), so a host that reloads needs nothing new
//! stored. The secret travels only in the invite link's fragment (`a=`),
//! which never reaches the server. A joiner proves it holds the secret by
//! a member-signed `Knock` whose MAC ([`AdmitSecret::knock_mac`]) binds
//! the room, its session key and its user id; the host then lists it in
//! its signed `Roster`. A server can certify any "member", but not one
//! the host's roster names.

use base64::Engine as _;
use ring::hmac;

use crate::crypto::{PublicKey, SigningKey};
use crate::ids::{RoomId, UserId};

/// Length of an admission secret and of a knock MAC, bytes.
pub const ADMIT_SECRET_LEN: usize = 32;

/// The HMAC input that derives the admission secret from the room key
/// seed (the seed is the HMAC key).
pub const ADMIT_SECRET_LABEL: &[u8] = b"watchparty/admit-secret/v1";

/// The domain tag in front of a knock MAC's input (NUL-terminated, like
/// the signature tags of §2).
pub const KNOCK_LABEL: &[u8] = b"watchparty/knock/v1\0";

/// The invite-fragment parameter carrying the admission secret.
pub const INVITE_ADMIT_PARAM: &str = "a";

/// A room's admission secret. Its `Debug` form hides the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AdmitSecret([u8; ADMIT_SECRET_LEN]);

impl core::fmt::Debug for AdmitSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AdmitSecret(…)")
    }
}

impl AdmitSecret {
    /// The secret of the room whose host key is `room_key`:
    /// HMAC-SHA256(key = seed, [`ADMIT_SECRET_LABEL`]).
    #[must_use]
    pub fn derive(room_key: &SigningKey) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, room_key.expose_seed());
        Self::from_tag(&hmac::sign(&key, ADMIT_SECRET_LABEL))
    }

    fn from_tag(tag: &hmac::Tag) -> Self {
        let mut out = [0u8; ADMIT_SECRET_LEN];
        // HMAC-SHA256 tags are exactly 32 bytes.
        out.copy_from_slice(&tag.as_ref()[..ADMIT_SECRET_LEN]);
        Self(out)
    }

    /// The secret with these bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; ADMIT_SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; ADMIT_SECRET_LEN] {
        &self.0
    }

    /// The knock MAC of member `user` with session key `key` in `room`:
    /// HMAC-SHA256(key = secret, [`KNOCK_LABEL`] ‖ room id (16) ‖ member
    /// key (32) ‖ user id (u64, big-endian)).
    #[must_use]
    pub fn knock_mac(&self, room: RoomId, key: &PublicKey, user: UserId) -> [u8; ADMIT_SECRET_LEN] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        Self::from_tag(&hmac::sign(&k, &knock_input(room, key, user))).0
    }

    /// Whether `mac` is the knock MAC of (`room`, `key`, `user`), compared
    /// in constant time.
    #[must_use]
    pub fn verify_knock(&self, room: RoomId, key: &PublicKey, user: UserId, mac: &[u8]) -> bool {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        hmac::verify(&k, &knock_input(room, key, user), mac).is_ok()
    }

    /// base64url without padding (43 characters), as in invite links.
    #[must_use]
    pub fn to_base64url(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the base64url (no padding) form; `None` unless it is exactly
    /// 32 bytes in canonical encoding.
    #[must_use]
    pub fn from_base64url(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let arr: [u8; ADMIT_SECRET_LEN] = bytes.try_into().ok()?;
        // Refuse non-canonical trailing bits: the text must round-trip.
        let secret = Self(arr);
        (secret.to_base64url() == s).then_some(secret)
    }
}

/// What a knock MAC covers.
fn knock_input(room: RoomId, key: &PublicKey, user: UserId) -> Vec<u8> {
    let mut msg = Vec::with_capacity(KNOCK_LABEL.len() + 16 + 32 + 8);
    msg.extend_from_slice(KNOCK_LABEL);
    msg.extend_from_slice(room.as_bytes());
    msg.extend_from_slice(key.as_bytes());
    msg.extend_from_slice(&user.get().to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::from_bytes([0x11; 16])
    }

    #[test]
    fn derivation_is_deterministic_and_per_key() {
        let a = SigningKey::from_seed(&[1; 32]).unwrap();
        let b = SigningKey::from_seed(&[2; 32]).unwrap();
        assert_eq!(AdmitSecret::derive(&a), AdmitSecret::derive(&a));
        assert_ne!(AdmitSecret::derive(&a), AdmitSecret::derive(&b));
    }

    #[test]
    fn knock_mac_binds_room_key_and_user() {
        let s = AdmitSecret::derive(&SigningKey::from_seed(&[1; 32]).unwrap());
        let key = SigningKey::from_seed(&[3; 32]).unwrap().public_key();
        let other = SigningKey::from_seed(&[4; 32]).unwrap().public_key();
        let u = UserId::new(7).unwrap();
        let mac = s.knock_mac(room(), &key, u);
        assert!(s.verify_knock(room(), &key, u, &mac));
        assert!(!s.verify_knock(room(), &other, u, &mac));
        assert!(!s.verify_knock(room(), &key, UserId::new(8).unwrap(), &mac));
        assert!(!s.verify_knock(RoomId::from_bytes([0x12; 16]), &key, u, &mac));
        let wrong = AdmitSecret::from_bytes([9; 32]);
        assert!(!wrong.verify_knock(room(), &key, u, &mac));
        assert!(!s.verify_knock(room(), &key, u, &mac[..31]));
    }

    #[test]
    fn text_form_round_trips_and_refuses_non_canonical() {
        let s = AdmitSecret::from_bytes([0xab; 32]);
        let t = s.to_base64url();
        assert_eq!(t.len(), 43);
        assert_eq!(AdmitSecret::from_base64url(&t), Some(s));
        assert_eq!(AdmitSecret::from_base64url(&t[..42]), None);
        assert_eq!(AdmitSecret::from_base64url("AAAA"), None);
        // Same bytes, non-zero trailing bits in the last character.
        let mut bad = t.clone();
        bad.pop();
        bad.push('t');
        assert_eq!(AdmitSecret::from_base64url(&bad), None);
        assert!(!format!("{s:?}").contains("ab"));
    }
}
