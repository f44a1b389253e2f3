//! `RoomClient` through its JavaScript API, in headless Chromium, without a
//! server: option checks give clear errors; a signaling URL nobody listens
//! on (loopback port 9) yields `connecting` then `retrying` events with a
//! retry delay, `status()` reports it, and `leave()` stops everything.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_wasm_peer::api::{RoomClient, generate_host_key, host_key_from_fragment};
use watchparty_wasm_peer::timer::sleep;

wasm_bindgen_test_configure!(run_in_browser);

const ROOM: &str = "0123456789abcdef0123456789abcdef";

fn set(o: &js_sys::Object, k: &str, v: &JsValue) {
    js_sys::Reflect::set(o, &JsValue::from_str(k), v).unwrap();
}

fn options(signal_url: &str) -> js_sys::Object {
    let doc = web_sys::window().unwrap().document().unwrap();
    let video = doc.create_element("video").unwrap();
    let o = js_sys::Object::new();
    set(&o, "signalUrl", &signal_url.into());
    set(&o, "apiBase", &"http://127.0.0.1:9".into());
    set(&o, "token", &"header.payload.signature".into());
    set(&o, "roomId", &ROOM.into());
    set(&o, "video", &video);
    o
}

fn join_error(o: &js_sys::Object) -> String {
    let e = RoomClient::join(o.clone().into()).expect_err("must be refused");
    e.unchecked_into::<js_sys::Error>().message().into()
}

#[wasm_bindgen_test]
fn bad_options_are_refused_with_clear_messages() {
    let o = options("http://127.0.0.1:9/api/v1/rooms/x/signal");
    assert!(join_error(&o).contains("ws:// or wss://"));
    let o = options("ws://127.0.0.1:9/signal?token=abc");
    assert!(join_error(&o).contains("must not carry a query"));
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "roomId", &"not-a-room".into());
    assert!(join_error(&o).contains("roomId"));
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "hostKey", &"***".into());
    assert!(join_error(&o).contains("hostKey"));
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "video", &JsValue::from_f64(3.0));
    assert!(join_error(&o).contains("video"));
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "identitySeed", &"AAAA".into());
    assert!(join_error(&o).contains("32 bytes"));
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "signalUrl", &"ws://127.0.0.1:9/".repeat(200).into());
    assert!(join_error(&o).contains("longer than"));
}

fn ice_servers(n: usize) -> JsValue {
    let list = js_sys::Array::new();
    for i in 0..n {
        let s = js_sys::Object::new();
        set(&s, "urls", &format!("stun:127.0.0.1:{}", 3478 + i).into());
        list.push(&s);
    }
    list.into()
}

#[wasm_bindgen_test]
fn more_ice_servers_than_the_limit_are_refused() {
    use watchparty_wasm_peer::rtc::MAX_ICE_SERVERS;
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "iceServers", &ice_servers(MAX_ICE_SERVERS + 1));
    let e = join_error(&o);
    assert!(
        e.contains("iceServers") && e.contains(&format!("at most {MAX_ICE_SERVERS}")),
        "{e}"
    );
    let o = options("ws://127.0.0.1:9/signal");
    let five = js_sys::Array::new();
    for i in 0..5 {
        five.push(&format!("turn:127.0.0.1:{i}").into());
    }
    let s = js_sys::Object::new();
    set(&s, "urls", &five);
    set(&o, "iceServers", &js_sys::Array::of1(&s));
    assert!(join_error(&o).contains("more than 4 URLs"));
    // At the limit the client joins.
    let o = options("ws://127.0.0.1:9/signal");
    set(&o, "iceServers", &ice_servers(MAX_ICE_SERVERS));
    let room = RoomClient::join(o.into()).expect("8 servers are fine");
    room.leave();
}

#[wasm_bindgen_test]
fn host_keys_round_trip_through_the_invite_fragment() {
    let k = generate_host_key().unwrap();
    let public: String = js_sys::Reflect::get(&k, &"publicKey".into())
        .unwrap()
        .as_string()
        .unwrap();
    let seed: String = js_sys::Reflect::get(&k, &"seed".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert_eq!(seed.len(), 43, "32 bytes base64url");
    let parsed = host_key_from_fragment(&format!("#k={public}")).unwrap();
    assert_eq!(parsed.as_deref(), Some(public.as_str()));
    assert_eq!(host_key_from_fragment("").unwrap(), None);
    assert!(host_key_from_fragment("#k=abc").is_err());
}

#[wasm_bindgen_test]
async fn unreachable_signaling_retries_and_leave_stops() {
    let events: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&events);
    let cb = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        let text = js_sys::JSON::stringify(&ev).unwrap().as_string().unwrap();
        sink.borrow_mut().push(text);
    });
    let o = options("ws://127.0.0.1:9/api/v1/rooms/x/signal");
    let room = RoomClient::join(o.into()).expect("valid options");
    room.on_event(Some(
        cb.as_ref().unchecked_ref::<js_sys::Function>().clone(),
    ));
    let mut waited = 0;
    while !events.borrow().iter().any(|e| e.contains("\"retrying\"")) {
        assert!(waited < 10_000, "no retrying event: {:?}", events.borrow());
        sleep(50).unwrap().await;
        waited += 50;
    }
    let retry = events
        .borrow()
        .iter()
        .find(|e| e.contains("\"retrying\""))
        .cloned()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&retry).unwrap();
    assert_eq!(v["type"], "connection");
    let ms = v["retry_ms"].as_u64().unwrap();
    assert!(
        (125..=250).contains(&ms),
        "first retry within the jittered base: {ms}"
    );
    assert!(
        !retry.contains("header.payload"),
        "the token never appears in events"
    );

    let status = room.status().unwrap();
    let s: serde_json::Value = serde_json::from_str(
        &js_sys::JSON::stringify(&status)
            .unwrap()
            .as_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(s["signaling"], false);
    assert_eq!(s["you"], serde_json::Value::Null);
    assert_eq!(s["player"]["paused"], true);

    // Commands before joining are refused with a message.
    let cmd = js_sys::Object::new();
    set(&cmd, "type", &"play".into());
    let e = room.command(cmd.into()).await.expect_err("not joined");
    let msg: String = e.unchecked_into::<js_sys::Error>().message().into();
    assert!(msg.contains("not in a room"), "{msg}");
    let bad = js_sys::Object::new();
    set(&bad, "type", &"teleport".into());
    let e = room.command(bad.into()).await.expect_err("unknown type");
    let msg: String = e.unchecked_into::<js_sys::Error>().message().into();
    assert!(msg.contains("invalid command"), "{msg}");

    room.leave();
    let after = room.status().expect_err("left");
    let msg: String = after.unchecked_into::<js_sys::Error>().message().into();
    assert!(msg.contains("left"), "{msg}");
    // No more events (reconnects) after leave.
    let n = events.borrow().len();
    sleep(600).unwrap().await;
    assert_eq!(events.borrow().len(), n, "events after leave");
}
