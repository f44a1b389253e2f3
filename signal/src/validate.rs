//! Parsed input types: once constructed, a value is known to be valid
//! ("parse, don't validate").

use serde::{Deserialize, Deserializer};
use watchparty_peer::ids::is_invisible_format;

use crate::error::ApiError;

/// Shortest account or room password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest account or room password, in characters (OWASP: allow at least 64).
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Username length bounds (characters from `[a-z0-9_.-]`).
pub const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;
/// Display-name length bounds in characters.
pub const DISPLAY_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=50;
/// Room-name length bounds in characters.
pub const ROOM_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=100;
/// Library-name length bounds in characters.
pub const LIBRARY_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=64;

/// A username: 3–32 characters from `[a-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Parses a username.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let ok = USERNAME_CHARS.contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if ok {
            Ok(Username(s.to_owned()))
        } else {
            Err(ApiError::InvalidRequest(
                "username must be 3-32 characters from a-z, 0-9, '_', '.', '-'".into(),
            ))
        }
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What people are told when a name holds an invisible or text-direction
/// character ([`watchparty_peer::ids::is_invisible_format`]).
pub const INVISIBLE_CHARS_MESSAGE: &str =
    "Names cannot contain invisible or text-direction characters.";

/// Checks the rule shared by display names and room names: length bounds, no
/// control characters and none of `<>"'&` (defence in depth; clients render text only),
/// and no invisible or text-direction characters (Unicode `Cf`, the same rule
/// peers apply to the names in member certificates).
fn check_label(
    s: &str,
    bounds: &std::ops::RangeInclusive<usize>,
    what: &str,
) -> Result<(), ApiError> {
    if s.chars().any(is_invisible_format) {
        return Err(ApiError::InvalidRequest(INVISIBLE_CHARS_MESSAGE.into()));
    }
    let n = s.chars().count();
    let trimmed_empty = s.trim().is_empty();
    let bad_char = s
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '&'));
    if !bounds.contains(&n) || trimmed_empty || bad_char {
        return Err(ApiError::InvalidRequest(format!(
            "{what} must be {}-{} characters, not blank, without control characters or any of <>\"'&",
            bounds.start(),
            bounds.end()
        )));
    }
    Ok(())
}

/// Declares a text newtype checked by [`check_label`].
macro_rules! label_type {
    ($(#[$doc:meta])* $name:ident, $bounds:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Parses the value.
            pub fn parse(s: &str) -> Result<Self, ApiError> {
                check_label(s, &$bounds, $what)?;
                Ok($name(s.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_type!(
    /// A display name: 1–50 characters, no control characters, none of `<>"'&`.
    DisplayName, DISPLAY_NAME_CHARS, "display_name"
);
label_type!(
    /// A room name: 1–100 characters, same character rules as display names.
    RoomName, ROOM_NAME_CHARS, "name"
);
label_type!(
    /// A library name: 1–64 characters, same character rules as display names.
    LibraryName, LIBRARY_NAME_CHARS, "library name"
);

/// A new password (account or room): 8–128 characters. `Debug` hides it.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    /// Parses a password for storing.
    pub fn parse(s: String) -> Result<Self, ApiError> {
        let n = s.chars().count();
        if (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
            Ok(NewPassword(s))
        } else {
            Err(ApiError::InvalidRequest(format!(
                "password must be {PASSWORD_MIN_CHARS}-{PASSWORD_MAX_CHARS} characters"
            )))
        }
    }

    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

impl<'de> Deserialize<'de> for NewPassword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NewPassword::parse(s).map_err(serde::de::Error::custom)
    }
}

/// A password presented for checking (login, room join). Any length is
/// accepted here (the body limit bounds it); `Debug` hides it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct PresentedPassword(String);

impl PresentedPassword {
    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the length could belong to a stored password at all.
    pub fn plausible(&self) -> bool {
        (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&self.0.chars().count())
    }
}

impl From<String> for PresentedPassword {
    fn from(s: String) -> Self {
        PresentedPassword(s)
    }
}

impl std::fmt::Debug for PresentedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "a.b-c_d", "0123456789abcdefghijklmnopqrstuv"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a b",
            "abc!",
            "é.ab",
            "0123456789abcdefghijklmnopqrstuvw",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names() {
        assert!(DisplayName::parse("Ann Smith ✓").is_ok());
        assert!(DisplayName::parse(&"x".repeat(50)).is_ok());
        for bad in [
            "",
            " ",
            "<b>",
            "a&b",
            "it's",
            "a\"b",
            "tab\there",
            "nul\0",
            &"x".repeat(51),
        ] {
            assert!(DisplayName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invisible_and_direction_characters_are_refused() {
        for bad in [
            "evil\u{202E}gnp.exe",
            "a\u{2066}b",
            "a\u{200E}b",
            "a\u{200F}b",
            "a\u{061C}b",
            "zero\u{200B}width",
            "a\u{200D}b",
            "\u{FEFF}bom",
        ] {
            for result in [
                DisplayName::parse(bad).map(|_| ()),
                RoomName::parse(bad).map(|_| ()),
            ] {
                match result {
                    Err(ApiError::InvalidRequest(m)) => assert_eq!(m, INVISIBLE_CHARS_MESSAGE),
                    other => panic!("{bad:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn passwords() {
        assert!(NewPassword::parse("x".repeat(7)).is_err());
        assert!(NewPassword::parse("x".repeat(8)).is_ok());
        assert!(NewPassword::parse("é".repeat(128)).is_ok());
        assert!(NewPassword::parse("x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", NewPassword::parse("secret-pass".into()).unwrap()),
            "NewPassword(***)"
        );
    }
}
