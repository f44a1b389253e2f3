//! Catalog fields → protocol media item (`http::media_item_of`): an item
//! whose duration the server does not know must not get a duration of 0,
//! which would end it at position 0 and keep the `<video>` paused
//! (issue #7).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_peer::ids::PositionMs;
use watchparty_wasm_peer::http::{UNKNOWN_DURATION_MS, media_item_of};

wasm_bindgen_test_configure!(run_in_browser);

const HASH: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

fn duration(d: Option<i64>) -> u64 {
    media_item_of(7, HASH, d)
        .expect("valid fields")
        .duration
        .as_millis()
}

#[wasm_bindgen_test]
fn known_duration_is_kept() {
    assert_eq!(duration(Some(120_000)), 120_000);
    assert_eq!(duration(Some(1)), 1);
}

#[wasm_bindgen_test]
fn missing_zero_or_negative_duration_is_unknown_not_zero() {
    assert_eq!(UNKNOWN_DURATION_MS, 24 * 3600 * 1000);
    for d in [None, Some(0), Some(-1), Some(i64::MIN)] {
        assert_eq!(duration(d), UNKNOWN_DURATION_MS, "{d:?}");
    }
}

#[wasm_bindgen_test]
fn bad_fields_are_refused() {
    assert!(media_item_of(7, "not hex", Some(1000)).is_none());
    assert!(media_item_of(7, &HASH[..62], Some(1000)).is_none());
    // Above the protocol's largest position.
    let too_long = i64::try_from(PositionMs::MAX + 1).unwrap();
    assert!(media_item_of(7, HASH, Some(too_long)).is_none());
}
