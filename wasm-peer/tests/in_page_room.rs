//! Two browser drivers in one page, wired through an in-memory signaling
//! shim (test only: it issues the server-signed certificates and relays
//! offers, answers and candidates the way the server does). The WebRTC
//! connection, the data channels and the sessions are real: the host's chat
//! reaches the viewer, the viewer's play is refused locally, and a control
//! frame the viewer forges with its own key is dropped by the host.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::{DisplayName, Epoch, Role, RoomId, UnixSeconds, UserId};
use watchparty_peer::session::UserCommand;
use watchparty_peer::signaling::{
    BoundedVec, ClientMessage, OffererRule, PROTOCOL_VERSION, RosterEntry, ServerMessage,
};
use watchparty_wasm_peer::http::Api;
use watchparty_wasm_peer::room::{Options, Shared, SignalMode, inject_server_message, start};
use watchparty_wasm_peer::timer::sleep;

wasm_bindgen_test_configure!(run_in_browser);

type Peers = Rc<RefCell<BTreeMap<u64, Weak<Shared>>>>;

fn uid(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_seed(&[b; 32]).unwrap()
}

/// The server's relay: what `from` sends to `to` arrives stamped with `from`.
fn relay(peers: &Peers, from: u64, msg: ClientMessage) {
    let (to, out) = match msg {
        ClientMessage::Offer { to, sdp } => (
            to,
            ServerMessage::Offer {
                from: uid(from),
                sdp,
            },
        ),
        ClientMessage::Answer { to, sdp } => (
            to,
            ServerMessage::Answer {
                from: uid(from),
                sdp,
            },
        ),
        ClientMessage::Ice { to, candidate } => (
            to,
            ServerMessage::Ice {
                from: uid(from),
                candidate,
            },
        ),
        _ => return,
    };
    let target = peers.borrow().get(&to.get()).and_then(Weak::upgrade);
    if let Some(t) = target {
        inject_server_message(&t, out);
    }
}

fn driver(
    peers: &Peers,
    user: u64,
    identity: SigningKey,
    server: &SigningKey,
    room: RoomId,
) -> Rc<Shared> {
    let doc = web_sys::window().unwrap().document().unwrap();
    let video: web_sys::HtmlMediaElement = doc.create_element("video").unwrap().unchecked_into();
    video.set_muted(true);
    let relay_peers = Rc::clone(peers);
    let opts = Options {
        signal: SignalMode::InPage(Rc::new(move |m| relay(&relay_peers, user, m))),
        api: Api {
            base: "http://127.0.0.1:9".into(),
            token: "t".into(),
        },
        room,
        pinned_host: None,
        admit_secret: None,
        server_key: Some(server.public_key()),
        ice_servers: Vec::new(),
        seed: user,
    };
    let shared = start(video, opts, identity).unwrap();
    peers.borrow_mut().insert(user, Rc::downgrade(&shared));
    shared
}

fn cert(
    server: &SigningKey,
    room: RoomId,
    user: u64,
    name: &str,
    role: Role,
    k: &SigningKey,
) -> SignedCertificate {
    let now = (js_sys::Date::now() / 1000.0) as u64;
    SignedCertificate::issue(
        server,
        CertificateBody {
            room,
            epoch: Epoch(1),
            user: uid(user),
            name: DisplayName::new(name).unwrap(),
            role,
            key: k.public_key(),
            not_after: UnixSeconds(now + 3600),
        },
    )
    .unwrap()
}

fn hello(
    server: &SigningKey,
    room: RoomId,
    you: u64,
    mine: &SignedCertificate,
    members: Vec<RosterEntry>,
) -> ServerMessage {
    ServerMessage::Hello {
        protocol: PROTOCOL_VERSION,
        room,
        you: uid(you),
        epoch: Epoch(1),
        server_key: server.public_key(),
        certificate: mine.clone(),
        members: BoundedVec::new(members).unwrap(),
        ice_servers: BoundedVec::empty(),
        offerer: OffererRule::Joiner,
    }
}

fn status(s: &Rc<Shared>) -> serde_json::Value {
    s.with_driver(|d| d.status()).unwrap()
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let mut waited = 0;
    while !f() {
        assert!(waited < 15_000, "timed out waiting for {what}");
        sleep(50).unwrap().await;
        waited += 50;
    }
}

#[wasm_bindgen_test]
async fn two_in_page_peers_connect_chat_and_refuse_a_forged_command() {
    let server = key(9);
    let room: RoomId = "00112233445566778899aabbccddeeff".parse().unwrap();
    let (host_key, viewer_key) = (key(1), key(2));
    let host_cert = cert(&server, room, 1, "Hosty", Role::Host, &host_key);
    let viewer_cert = cert(&server, room, 2, "Viewy", Role::Viewer, &viewer_key);
    let peers: Peers = Rc::new(RefCell::new(BTreeMap::new()));
    let host = driver(&peers, 1, host_key, &server, room);
    let viewer = driver(&peers, 2, viewer_key, &server, room);

    let entry = |c: &SignedCertificate, online| RosterEntry {
        certificate: c.clone(),
        online,
    };
    inject_server_message(
        &host,
        hello(
            &server,
            room,
            1,
            &host_cert,
            vec![entry(&host_cert, true), entry(&viewer_cert, false)],
        ),
    );
    assert_eq!(status(&host)["is_host"], true);
    inject_server_message(
        &host,
        ServerMessage::MemberJoined {
            member: entry(&viewer_cert, true),
        },
    );
    // The joiner offers (rule `joiner`).
    inject_server_message(
        &viewer,
        hello(
            &server,
            room,
            2,
            &viewer_cert,
            vec![entry(&host_cert, true), entry(&viewer_cert, true)],
        ),
    );
    assert_eq!(status(&viewer)["role"], "viewer");
    wait("both connected", || {
        status(&host)["peers"][0]["state"] == "connected"
            && status(&viewer)["peers"][0]["state"] == "connected"
    })
    .await;

    // Host chat reaches the viewer, with the sender's name.
    let events = Rc::new(RefCell::new(Vec::<String>::new()));
    let sink = Rc::clone(&events);
    let cb = wasm_bindgen::closure::Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(
        move |ev: wasm_bindgen::JsValue| {
            sink.borrow_mut()
                .push(js_sys::JSON::stringify(&ev).unwrap().as_string().unwrap());
        },
    );
    viewer.set_on_event(Some(
        cb.as_ref().unchecked_ref::<js_sys::Function>().clone(),
    ));
    host.with_driver(|d| d.command(UserCommand::Chat("hello <b>room</b>".into())))
        .unwrap()
        .unwrap();
    wait("chat at the viewer", || {
        events.borrow().iter().any(|e| {
            e.contains("\"chat\"") && e.contains("hello <b>room</b>") && e.contains("Hosty")
        })
    })
    .await;

    // The viewer may not play; refused locally, nothing sent.
    let refused = viewer
        .with_driver(|d| d.command(UserCommand::Play))
        .unwrap();
    assert!(refused.is_err(), "{refused:?}");

    // A control frame the viewer signs itself is dropped by the host.
    let sent = viewer
        .with_driver(|d| d.forge_control(false, 1000))
        .unwrap()
        .unwrap();
    assert_eq!(sent, 1);
    wait("host drops the forged frame", || {
        status(&host)["dropped"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
    })
    .await;
    let s = status(&host);
    // Dropped because only the host may sign control frames.
    assert_eq!(s["dropped"]["not_host"], 1, "{s}");
    assert_eq!(s["counters"]["commands_applied"], 0, "{s}");
    assert_ne!(s["playback"]["playing"], true, "{s}");

    viewer.shutdown();
    host.shutdown();
}
