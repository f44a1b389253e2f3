//! Frame parse + verify + decode on arbitrary bytes must never panic, and
//! nothing that is not a correctly signed frame may verify.
//!
//! The input is used twice: as a frame verified against a fixed key (so the
//! envelope, size and signature paths run), and re-signed with that key after
//! fixing up the envelope (so the body and payload decoders run on arbitrary
//! bodies of every kind).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use watchparty_peer::crypto::{Domain, SigningKey};
use watchparty_peer::frame::{self, Envelope, MAX_FRAME_LEN};

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_seed(&[7; 32]).expect("fixed seed"))
}

fuzz_target!(|data: &[u8]| {
    let k = key();
    let public = k.public_key();

    // 1. As received: an arbitrary input practically never carries a valid
    //    signature; if it does verify, it must decode without panicking.
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.kind();
        if let Ok(verified) = env.verify(&public) {
            let _ = verified.decode();
        }
    }

    // 2. Re-signed: "WP", version 1, the fuzzer's kind byte, our key id, the
    //    fuzzer's body, a valid signature. Every body decoder sees arbitrary
    //    input behind a verifying signature.
    if data.is_empty() || data.len() + 76 > MAX_FRAME_LEN {
        return;
    }
    let mut f = Vec::with_capacity(data.len() + 76);
    f.extend_from_slice(b"WP\x01");
    f.push(data[0]);
    f.extend_from_slice(k.key_id().as_bytes());
    f.extend_from_slice(&data[1..]);
    let sig = k.sign(Domain::Frame, &f);
    f.extend_from_slice(sig.as_bytes());
    let _ = frame::receive(&f, |_, _| Some(public));
});
