//! Identifier and value newtypes shared by frames, certificates and
//! signaling.
//!
//! Each type can only hold a valid value: constructors parse and refuse,
//! so code that holds a [`DisplayName`] or a [`RoomId`] never re-checks it.
//! Wire integers are fixed-width big-endian (see `docs/protocol.md`); the JSON
//! forms are given on each type.

use core::fmt;
use core::str::FromStr;

use ring::rand::SecureRandom;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::time::{MediaPos, Rate, RoomTime};

/// A value that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct InvalidValue {
    /// Which type refused the value.
    pub what: &'static str,
    /// Why, in a few words.
    pub why: &'static str,
}

const fn invalid(what: &'static str, why: &'static str) -> InvalidValue {
    InvalidValue { what, why }
}

// ---------------------------------------------------------------- room id --

/// Length of a [`RoomId`] in bytes.
pub const ROOM_ID_LEN: usize = 16;

/// A room: 16 random bytes chosen by the server.
///
/// Text form (JSON, URLs): exactly 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId([u8; ROOM_ID_LEN]);

impl RoomId {
    /// Wraps raw bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; ROOM_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random room id (server side).
    ///
    /// # Errors
    /// [`InvalidValue`] if the random source fails.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, InvalidValue> {
        let mut bytes = [0u8; ROOM_ID_LEN];
        rng.fill(&mut bytes)
            .map_err(|_| invalid("room id", "random source failed"))?;
        Ok(Self(bytes))
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; ROOM_ID_LEN] {
        &self.0
    }
}

impl FromStr for RoomId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let bad = invalid("room id", "expected 32 lowercase hex digits");
        if s.len() != 2 * ROOM_ID_LEN || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad);
        }
        let mut out = [0u8; ROOM_ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad)?;
        Ok(Self(out))
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({self})")
    }
}

/// Serde through the text form of a type (`Display` / `FromStr`).
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(RoomId);

// ------------------------------------------------------ integers (epoch…) --

/// A host term. Every new host key (room creation, handoff, host reconnect)
/// opens a new, larger epoch; frames of older epochs are dropped.
/// JSON: a number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The next epoch, `None` at `u64::MAX`.
    #[must_use]
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

/// A per-signer, per-epoch frame sequence number, always below [`Seq::LIMIT`].
///
/// Senders start at 0 in each epoch and count up by one per frame; values at
/// or above [`Seq::LIMIT`] are never sent or accepted (the sender must open a
/// new epoch first, as TLS must rekey before its counter wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(u64);

impl Seq {
    /// The first sequence number of an epoch.
    pub const ZERO: Self = Self(0);
    /// Exclusive upper bound for usable sequence numbers (2^63).
    pub const LIMIT: u64 = 1 << 63;

    /// Parses a sequence number.
    ///
    /// # Errors
    /// [`InvalidValue`] at or above [`Seq::LIMIT`].
    pub const fn new(v: u64) -> Result<Self, InvalidValue> {
        if v >= Self::LIMIT {
            Err(invalid("sequence number", "at or above 2^63"))
        } else {
            Ok(Self(v))
        }
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The following sequence number, `None` once [`Seq::LIMIT`] is reached.
    #[must_use]
    pub fn next(self) -> Option<Self> {
        let n = self.0.checked_add(1)?;
        (n < Self::LIMIT).then_some(Self(n))
    }
}

/// Largest user id: 2^53 − 1, so that ids survive JavaScript numbers.
pub const MAX_USER_ID: u64 = (1 << 53) - 1;

/// A user account on the server (its database id). JSON: a number in
/// `0..=MAX_USER_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(u64);

impl UserId {
    /// Parses a user id.
    ///
    /// # Errors
    /// [`InvalidValue`] above [`MAX_USER_ID`].
    pub const fn new(id: u64) -> Result<Self, InvalidValue> {
        if id > MAX_USER_ID {
            Err(invalid("user id", "above 2^53-1"))
        } else {
            Ok(Self(id))
        }
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------- role --

/// A member's role in a room.
///
/// Wire byte: host 1, controller 2, viewer 3. JSON: `"host"`, `"controller"`,
/// `"viewer"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the room key; the only signer of control frames.
    Host,
    /// May ask the host for commands (`Request`), subject to the room policy.
    Controller,
    /// Watches; requests are refused.
    Viewer,
}

impl Role {
    /// The wire byte.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Host => 1,
            Self::Controller => 2,
            Self::Viewer => 3,
        }
    }

    /// Parses the wire byte.
    ///
    /// # Errors
    /// [`InvalidValue`] for any other byte.
    pub const fn from_byte(b: u8) -> Result<Self, InvalidValue> {
        match b {
            1 => Ok(Self::Host),
            2 => Ok(Self::Controller),
            3 => Ok(Self::Viewer),
            _ => Err(invalid("role", "unknown role byte")),
        }
    }
}

// ------------------------------------------------------------------- text --

/// Characters refused in every user-visible text besides the Unicode `Cc`
/// controls: the bidirectional embedding, override and isolate controls
/// (U+202A–U+202E, U+2066–U+2069), which can make text display in an order
/// different from its content ("Trojan Source").
#[must_use]
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is an invisible formatting character refused in names: any
/// Unicode format character (general category `Cf`). These include every
/// text-direction control — the bidi embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069), the direction marks U+200E, U+200F and
/// U+061C — and the zero-width characters U+200B–U+200D, U+2060 and U+FEFF,
/// which let one name look like another or reorder the text around it.
#[must_use]
pub fn is_invisible_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// Maximum length of a [`DisplayName`] in characters (Unicode scalar values).
pub const MAX_DISPLAY_NAME_CHARS: usize = 50;

/// A member's display name, as shown to other members.
///
/// Rules: 1 to [`MAX_DISPLAY_NAME_CHARS`] characters; no Unicode control
/// characters (`Cc`, which includes newline and tab); no format characters
/// (`Cf`, see [`is_invisible_format`]: bidi controls, zero-width ones); none of
/// `< > " ' &`; no leading or trailing whitespace. JSON: a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses a display name.
    ///
    /// # Errors
    /// [`InvalidValue`] naming the broken rule.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        const WHAT: &str = "display name";
        let count = s.chars().count();
        if count == 0 {
            return Err(invalid(WHAT, "empty"));
        }
        if count > MAX_DISPLAY_NAME_CHARS {
            return Err(invalid(WHAT, "longer than 50 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid(WHAT, "control character"));
        }
        if s.chars().any(is_invisible_format) {
            return Err(invalid(WHAT, "invisible or text-direction character"));
        }
        if s.chars().any(|c| matches!(c, '<' | '>' | '"' | '\'' | '&')) {
            return Err(invalid(WHAT, "one of < > \" ' &"));
        }
        if s.trim() != s {
            return Err(invalid(WHAT, "leading or trailing whitespace"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DisplayName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------ media --

/// Maximum length of a [`MediaId`] in bytes.
pub const MAX_MEDIA_ID_LEN: usize = 64;

/// A media item in the server's catalog: 1 to [`MAX_MEDIA_ID_LEN`] bytes of
/// ASCII letters, digits and `. _ - :`. JSON: a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(String);

impl MediaId {
    /// Parses a media id.
    ///
    /// # Errors
    /// [`InvalidValue`] if empty, too long or with another character.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() || s.len() > MAX_MEDIA_ID_LEN {
            return Err(invalid("media id", "length must be 1..=64"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        {
            return Err(invalid("media id", "character outside [A-Za-z0-9._:-]"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MediaId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::new(s)
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_via_str!(MediaId);

/// Length of a [`ContentHash`] in bytes.
pub const CONTENT_HASH_LEN: usize = 32;

/// SHA-256 of a media file's bytes, so peers can check that what they loaded
/// is the item the host chose. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; CONTENT_HASH_LEN]);

impl FromStr for ContentHash {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let bad = invalid("content hash", "expected 64 lowercase hex digits");
        if s.len() != 2 * CONTENT_HASH_LEN || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad);
        }
        let mut out = [0u8; CONTENT_HASH_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad)?;
        Ok(Self(out))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

serde_via_str!(ContentHash);

// ------------------------------------------------------ wire time values --

/// A media position (or duration) in whole milliseconds, as carried on the
/// wire. At most [`PositionMs::MAX`] (so it converts to microseconds without
/// overflow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionMs(u64);

impl PositionMs {
    /// The start of the media.
    pub const ZERO: Self = Self(0);
    /// Largest position: `i64::MAX / 1000` ms (about 292 000 years).
    pub const MAX: u64 = (i64::MAX / 1000) as u64;

    /// Parses a millisecond count.
    ///
    /// # Errors
    /// [`InvalidValue`] above [`PositionMs::MAX`].
    pub const fn new(ms: u64) -> Result<Self, InvalidValue> {
        if ms > Self::MAX {
            Err(invalid("position", "too large"))
        } else {
            Ok(Self(ms))
        }
    }

    /// Milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The position for the sync core (exact).
    #[must_use]
    pub const fn to_media_pos(self) -> MediaPos {
        MediaPos::from_millis(self.0)
    }

    /// A sync-core position rounded down to whole milliseconds.
    #[must_use]
    pub const fn from_media_pos(pos: MediaPos) -> Self {
        // MediaPos is non-negative i64 µs, so ms ≤ i64::MAX / 1000 = MAX.
        Self(pos.as_millis())
    }
}

/// An instant on the room clock in whole milliseconds (signed), as carried in
/// frame headers and in scheduled commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomMs(pub i64);

impl RoomMs {
    /// The instant for the sync core (exact, saturating at the i64 µs range).
    #[must_use]
    pub const fn to_room_time(self) -> RoomTime {
        RoomTime::from_millis(self.0)
    }

    /// A sync-core instant rounded down to whole milliseconds.
    #[must_use]
    pub const fn from_room_time(t: RoomTime) -> Self {
        Self(t.as_millis_floor())
    }
}

/// A playback rate in thousandths (`1000` = 1.0×), within
/// [`RateMilli::MIN`]..=[`RateMilli::MAX`] (0.063× to 16×, inside the range
/// browsers accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateMilli(u16);

impl RateMilli {
    /// Normal speed.
    pub const NORMAL: Self = Self(1000);
    /// Slowest rate on the wire.
    pub const MIN: u16 = 63;
    /// Fastest rate on the wire.
    pub const MAX: u16 = 16_000;

    /// Parses a rate in thousandths.
    ///
    /// # Errors
    /// [`InvalidValue`] outside `MIN..=MAX`.
    pub const fn new(milli: u16) -> Result<Self, InvalidValue> {
        if milli < Self::MIN || milli > Self::MAX {
            Err(invalid("rate", "outside 63..=16000 thousandths"))
        } else {
            Ok(Self(milli))
        }
    }

    /// Thousandths.
    #[must_use]
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The rate for the sync core.
    #[must_use]
    pub fn to_rate(self) -> Rate {
        // 63..=16000 thousandths is within Rate::MIN..=Rate::MAX, so the
        // fallback is unreachable; it avoids a panic path.
        Rate::from_milli(u32::from(self.0)).unwrap_or(Rate::NORMAL)
    }

    /// A sync-core rate rounded to thousandths and clamped to the wire range.
    #[must_use]
    pub fn from_rate(rate: Rate) -> Self {
        let m = rate
            .as_milli()
            .clamp(u32::from(Self::MIN), u32::from(Self::MAX));
        // Clamped to ≤ 16000, so the conversion cannot fail.
        Self(u16::try_from(m).unwrap_or(Self::MAX))
    }
}

/// Wall-clock time in seconds since the Unix epoch (certificate expiry).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixSeconds(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_id_text() {
        let id = RoomId::from_bytes([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s, "abababababababababababababababab");
        assert_eq!(s.parse::<RoomId>(), Ok(id));
        assert!(
            "ABABABABABABABABABABABABABABABAB"
                .parse::<RoomId>()
                .is_err()
        );
        assert!("abab".parse::<RoomId>().is_err());
        assert!(format!("{s}00").parse::<RoomId>().is_err());
        assert!(
            "zzababababababababababababababab"
                .parse::<RoomId>()
                .is_err()
        );
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
        let rng = ring::rand::SystemRandom::new();
        assert_ne!(
            RoomId::generate(&rng).unwrap(),
            RoomId::generate(&rng).unwrap()
        );
    }

    #[test]
    fn display_name_rules() {
        assert!(DisplayName::new("Ada").is_ok());
        assert!(DisplayName::new("Zoë 🎬 Ünïcode").is_ok());
        assert!(DisplayName::new(&"x".repeat(50)).is_ok());
        assert!(DisplayName::new(&"é".repeat(50)).is_ok());
        assert!(DisplayName::new(&"x".repeat(51)).is_err());
        assert!(DisplayName::new("").is_err());
        for bad in [
            "a\nb", "a\tb", "a\u{7f}", "a\u{85}b", "a<b", "a>b", "a\"b", "a'b", "a&b",
        ] {
            assert!(DisplayName::new(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "evil\u{202E}gnp.exe",
            "a\u{202A}b",
            "a\u{2066}b",
            "a\u{2069}b",
            "a\u{200E}b",
            "a\u{200F}b",
            "a\u{061C}b",
            "a\u{200B}b",
            "a\u{200C}b",
            "a\u{200D}b",
            "a\u{2060}b",
            "\u{FEFF}Ada",
            "a\u{00AD}b",
            "a\u{E0041}b",
        ] {
            assert_eq!(
                DisplayName::new(bad),
                Err(invalid(
                    "display name",
                    "invisible or text-direction character"
                )),
                "{bad:?}"
            );
        }
        // Neighbours that are visible stay allowed.
        assert!(DisplayName::new("a\u{2010}b\u{2070}").is_ok());
        assert!(DisplayName::new(" Ada").is_err());
        assert!(DisplayName::new("Ada ").is_err());
        assert!(serde_json::from_str::<DisplayName>("\"a<b\"").is_err());
    }

    #[test]
    fn user_id_bounds() {
        assert!(UserId::new(MAX_USER_ID).is_ok());
        assert!(UserId::new(MAX_USER_ID + 1).is_err());
        assert!(serde_json::from_str::<UserId>("9007199254740992").is_err());
        assert_eq!(serde_json::from_str::<UserId>("7").unwrap().get(), 7);
    }

    #[test]
    fn seq_limit() {
        assert_eq!(Seq::ZERO.next(), Some(Seq(1)));
        assert_eq!(Seq(Seq::LIMIT - 2).next(), Some(Seq(Seq::LIMIT - 1)));
        assert_eq!(Seq(Seq::LIMIT - 1).next(), None);
        assert!(Seq::new(Seq::LIMIT).is_err());
        assert_eq!(Seq::new(5).map(Seq::get), Ok(5));
    }

    #[test]
    fn media_id_rules() {
        assert!(MediaId::new("movie-01.mkv").is_ok());
        assert!(MediaId::new(&"a".repeat(64)).is_ok());
        assert!(MediaId::new(&"a".repeat(65)).is_err());
        assert!(MediaId::new("").is_err());
        assert!(MediaId::new("a b").is_err());
        assert!(MediaId::new("a/b").is_err());
    }

    #[test]
    fn rate_and_time_conversions() {
        assert!(RateMilli::new(62).is_err());
        assert!(RateMilli::new(16_001).is_err());
        for m in [RateMilli::MIN, 1000, 1500, RateMilli::MAX] {
            let r = RateMilli::new(m).unwrap();
            assert_eq!(r.to_rate().as_milli(), u32::from(m));
            assert_eq!(RateMilli::from_rate(r.to_rate()), r);
        }
        assert_eq!(RateMilli::from_rate(Rate::MIN).get(), RateMilli::MIN);
        let p = PositionMs::new(90_061).unwrap();
        assert_eq!(p.to_media_pos().as_micros(), 90_061_000);
        assert_eq!(PositionMs::from_media_pos(p.to_media_pos()), p);
        assert!(PositionMs::new(PositionMs::MAX).is_ok());
        assert!(PositionMs::new(PositionMs::MAX + 1).is_err());
        let t = RoomMs(-1_500);
        assert_eq!(t.to_room_time().as_micros(), -1_500_000);
        assert_eq!(
            RoomMs::from_room_time(RoomTime::from_micros(-1)),
            RoomMs(-1)
        );
    }

    #[test]
    fn role_bytes() {
        for r in [Role::Host, Role::Controller, Role::Viewer] {
            assert_eq!(Role::from_byte(r.to_byte()), Ok(r));
        }
        assert!(Role::from_byte(0).is_err());
        assert!(Role::from_byte(4).is_err());
        assert_eq!(
            serde_json::to_string(&Role::Controller).unwrap(),
            "\"controller\""
        );
    }
}
