//! Signaling JSON decode in both directions must never panic, and anything
//! that decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchparty_peer::signaling::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = ClientMessage::from_json(text) {
        let json = m.to_json().expect("serializes");
        assert_eq!(ClientMessage::from_json(&json).ok(), Some(m));
    }
    if let Ok(m) = ServerMessage::from_json(text) {
        let json = m.to_json().expect("serializes");
        assert_eq!(ServerMessage::from_json(&json).ok(), Some(m));
    }
});
