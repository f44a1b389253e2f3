//! Reading the DTLS fingerprint out of SDP text (`a=fingerprint:`), for
//! WebRTC stacks that do not expose it otherwise (the browser): the session
//! binds a connection to the host-signed fingerprints
//! ([`crate::session::ChannelOpen`]).

use crate::message::Fingerprint;

/// Longest digest accepted in an `a=fingerprint:` line (SHA-512), in bytes.
const MAX_DIGEST_BYTES: usize = 64;

/// The first `a=fingerprint:<hash> <HEX:HEX:…>` of `sdp` (session or media
/// level), or `None` when there is none or it is malformed or uses an
/// algorithm the protocol does not carry.
#[must_use]
pub fn fingerprint(sdp: &str) -> Option<Fingerprint> {
    let line = sdp
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("a=fingerprint:"))?;
    let (alg, hex) = line.split_once(' ')?;
    let mut digest = Vec::with_capacity(MAX_DIGEST_BYTES);
    for pair in hex.trim().split(':') {
        if pair.len() != 2 || digest.len() >= MAX_DIGEST_BYTES {
            return None;
        }
        digest.push(u8::from_str_radix(pair, 16).ok()?);
    }
    Fingerprint::new(alg, &digest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3A:9F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E";

    #[test]
    fn reads_the_first_fingerprint() {
        let sdp = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 {FP}\r\na=fingerprint:sha-256 00\r\n"
        );
        let fp = fingerprint(&sdp).unwrap();
        assert_eq!(fp.digest().len(), 32);
        assert_eq!(fp.digest()[0], 0x3a);
        assert_eq!(fp.digest()[31], 0x0e);
    }

    #[test]
    fn refuses_malformed_or_unknown() {
        assert_eq!(fingerprint("v=0\r\n"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256 3A:9"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256 ZZ:00"), None);
        assert_eq!(fingerprint(&format!("a=fingerprint:md5 {FP}")), None);
        // Wrong length for sha-256.
        assert_eq!(fingerprint("a=fingerprint:sha-256 3A:9F"), None);
        let long = vec!["AA"; 200].join(":");
        assert_eq!(fingerprint(&format!("a=fingerprint:sha-512 {long}")), None);
    }
}
