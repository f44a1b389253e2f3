//! Certificate parsing and verification on arbitrary bytes must never panic,
//! and no arbitrary input verifies under the server key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use watchparty_peer::cert::{CertVerifier, SignedCertificate};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::{RoomId, UnixSeconds};

fn verifier() -> &'static CertVerifier {
    static V: OnceLock<CertVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let server = SigningKey::from_seed(&[9; 32]).expect("fixed seed");
        CertVerifier::new(server.public_key(), RoomId::from_bytes([0; 16]))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = SignedCertificate::parse(data) {
        assert_eq!(cert.as_bytes(), data);
        let _ = verifier().verify(&cert, UnixSeconds(0));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SignedCertificate::from_base64url(text);
    }
});
