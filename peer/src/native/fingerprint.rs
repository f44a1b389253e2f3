//! DTLS certificate fingerprints, as they appear in SDP (`a=fingerprint:`).
//!
//! The host signs its SDP, which carries its DTLS fingerprint; the transport
//! exposes both its own fingerprint and the one each remote peer announced, so
//! the session layer can bind the WebRTC connection to a signed identity.

use std::fmt;

use sha2::{Digest, Sha256};

/// A DTLS certificate fingerprint: hash function name and digest bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    hash_func: String,
    bytes: Vec<u8>,
}

impl Fingerprint {
    /// The SHA-256 fingerprint of a DER-encoded certificate.
    #[must_use]
    pub fn sha256_of_der(der: &[u8]) -> Self {
        Self {
            hash_func: "sha-256".to_owned(),
            bytes: Sha256::digest(der).to_vec(),
        }
    }

    /// The hash function name as written in SDP, e.g. `sha-256`.
    #[must_use]
    pub fn hash_func(&self) -> &str {
        &self.hash_func
    }

    /// The digest bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<&str0m::config::Fingerprint> for Fingerprint {
    fn from(f: &str0m::config::Fingerprint) -> Self {
        Self {
            // SDP hash names are case-insensitive (RFC 8122 §5); keep one form.
            hash_func: f.hash_func.to_ascii_lowercase(),
            bytes: f.bytes.clone(),
        }
    }
}

/// Formats as in SDP: `sha-256 AB:CD:…` (upper-case hex, colon separated).
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hash_func)?;
        for (i, b) in self.bytes.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The DTLS fingerprint an SDP (offer or answer) announces, if it parses and
/// has one. SHA-256 is preferred when several are listed, at session or media
/// level.
#[must_use]
pub fn fingerprint_of_sdp(sdp: &str) -> Option<Fingerprint> {
    // Offer and answer share one SDP grammar; parsing as an offer is enough to
    // read the attribute.
    let parsed = str0m::change::SdpOffer::from_sdp_string(sdp).ok()?;
    let session = parsed.session.fingerprint();
    let media = parsed.media_lines.iter().filter_map(|m| m.fingerprint());
    session
        .into_iter()
        .chain(media)
        .min_by_key(|f| !f.hash_func.eq_ignore_ascii_case("sha-256"))
        .map(|f| Fingerprint::from(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_sdp_form() {
        let f = Fingerprint {
            hash_func: "sha-256".into(),
            bytes: vec![0x0a, 0xff, 0x10],
        };
        assert_eq!(f.to_string(), "sha-256 0A:FF:10");
    }

    #[test]
    fn sha256_of_der_is_32_bytes() {
        let f = Fingerprint::sha256_of_der(b"not really a certificate");
        assert_eq!(f.hash_func(), "sha-256");
        assert_eq!(f.bytes().len(), 32);
        assert_ne!(f, Fingerprint::sha256_of_der(b"another"));
    }

    #[test]
    fn garbage_sdp_has_no_fingerprint() {
        assert_eq!(fingerprint_of_sdp("hello"), None);
        assert_eq!(fingerprint_of_sdp(""), None);
    }
}
