//! The browser peer's limits, crossed through the real code in headless
//! Chromium:
//!
//! - the driver's inbox ([`MAX_INPUTS`]): inputs arriving while the driver
//!   runs are queued up to the limit, the rest dropped and counted
//!   (`status().counters.inputs_dropped`);
//! - page events per pump ([`MAX_PENDING_EVENTS`]): the page gets the first
//!   ones, the rest are dropped and counted (`counters.events_dropped`), and
//!   the next pump delivers again;
//! - REST bodies ([`MAX_RESPONSE_BYTES`]): a body one byte over is refused
//!   as `TooLarge` by the real `fetch` path (a `data:` URL serves the body,
//!   no server needed), one under is read.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::RoomId;
use watchparty_wasm_peer::http::{Api, HttpError, MAX_RESPONSE_BYTES};
use watchparty_wasm_peer::room::{
    Input, MAX_INPUTS, MAX_PENDING_EVENTS, Options, Shared, SignalMode, deliver, start,
};

wasm_bindgen_test_configure!(run_in_browser);

/// A driver with in-page signaling that goes nowhere (no peers needed).
fn lone_driver() -> Rc<Shared> {
    let doc = web_sys::window().unwrap().document().unwrap();
    let video: web_sys::HtmlMediaElement = doc.create_element("video").unwrap().unchecked_into();
    let opts = Options {
        signal: SignalMode::InPage(Rc::new(|_| {})),
        api: Api {
            base: "http://127.0.0.1:9".into(),
            token: "t".into(),
        },
        room: "0123456789abcdef0123456789abcdef"
            .parse::<RoomId>()
            .unwrap(),
        pinned_host: None,
        admit_secret: None,
        server_key: None,
        ice_servers: Vec::new(),
        seed: 1,
    };
    start(video, opts, SigningKey::from_seed(&[7; 32]).unwrap()).unwrap()
}

fn rest_failed(i: usize) -> Input {
    Input::RestFailed {
        what: "kick",
        message: format!("n{i}"),
    }
}

fn counter(shared: &Rc<Shared>, name: &str) -> u64 {
    shared.with_driver(|d| d.status()).unwrap()["counters"][name]
        .as_u64()
        .unwrap()
}

#[wasm_bindgen_test]
fn inbox_and_page_events_are_bounded_and_counted() {
    let shared = lone_driver();
    let events = Rc::new(RefCell::new(Vec::<String>::new()));
    let sink = Rc::clone(&events);
    let cb = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        sink.borrow_mut()
            .push(js_sys::JSON::stringify(&ev).unwrap().as_string().unwrap());
    });
    shared.set_on_event(Some(
        cb.as_ref().unchecked_ref::<js_sys::Function>().clone(),
    ));
    let events_dropped_before = counter(&shared, "events_dropped");
    assert_eq!(shared.inputs_dropped(), 0);

    // While the driver runs (as when a burst of browser callbacks fires
    // during a pump), every input is only queued: 7 over the inbox limit.
    let weak = Rc::downgrade(&shared);
    shared
        .with_driver(|_| {
            for i in 0..MAX_INPUTS + 7 {
                deliver(&weak, rest_failed(i));
            }
        })
        .unwrap();
    assert_eq!(shared.inputs_dropped(), 7, "inbox: the 7 over the limit");

    // The pump after it handled the MAX_INPUTS queued inputs, each emitting
    // one `error` event: the page got the first MAX_PENDING_EVENTS of them.
    let got = events.borrow().clone();
    assert_eq!(
        got.len(),
        MAX_PENDING_EVENTS,
        "events handed over in one pump"
    );
    assert!(
        got.iter().all(|e| e.contains("\"rest\"")),
        "only our events: {:?}",
        &got[..3]
    );
    assert!(got[0].contains("n0\""), "oldest first: {}", got[0]);
    assert!(
        got[MAX_PENDING_EVENTS - 1].contains(&format!("n{}\"", MAX_PENDING_EVENTS - 1)),
        "{}",
        got[MAX_PENDING_EVENTS - 1]
    );
    assert_eq!(
        counter(&shared, "events_dropped") - events_dropped_before,
        (MAX_INPUTS - MAX_PENDING_EVENTS) as u64,
        "events over the per-pump limit are counted"
    );

    // The limit is per pump: the next input's event reaches the page.
    events.borrow_mut().clear();
    deliver(&weak, rest_failed(99_999));
    assert_eq!(events.borrow().len(), 1);
    assert!(events.borrow()[0].contains("n99999"));
    assert_eq!(shared.inputs_dropped(), 7);
    shared.shutdown();
}

/// An API whose "server" is a `data:` URL answering with `body`.
fn data_api(body: &str) -> Api {
    Api {
        base: format!("data:application/json,{body}"),
        token: "t".into(),
    }
}

#[wasm_bindgen_test]
async fn rest_bodies_over_the_limit_are_refused() {
    // A JSON string filling the body to exactly the limit: accepted.
    let fill = MAX_RESPONSE_BYTES - "{\"a\":\"\"}".len();
    let at_limit = format!("{{\"a\":\"{}\"}}", "x".repeat(fill));
    assert_eq!(at_limit.len(), MAX_RESPONSE_BYTES);
    let v = data_api(&at_limit).get_json("").await.unwrap();
    assert_eq!(v["a"].as_str().unwrap().len(), fill);

    // One byte more: refused with a clear error, not parsed.
    let over = format!("{{\"a\":\"{}\"}}", "x".repeat(fill + 1));
    match data_api(&over).get_json("").await {
        Err(e @ HttpError::TooLarge { limit, .. }) => {
            assert_eq!(limit, MAX_RESPONSE_BYTES);
            assert!(e.to_string().contains("larger than 262144 bytes"), "{e}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
