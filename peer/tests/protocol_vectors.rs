//! The test vectors in `docs/protocol.md` are exactly what this crate
//! produces, and they verify and decode through the public API.
//!
//! To print the vectors (e.g. after a deliberate format change):
//! `cargo test -p watchparty-peer --no-default-features --test protocol_vectors -- --ignored --nocapture`

use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::cert::{
    CertVerifier, CertificateBody, SignedCertificate, invite_fragment, invite_fragment_with_secret,
};
use watchparty_peer::channels::{self, ChannelId};
use watchparty_peer::clock::ClockPing;
use watchparty_peer::crypto::{Domain, SigningKey};
use watchparty_peer::frame::{self, Header};
use watchparty_peer::ids::{
    ContentHash, DisplayName, Epoch, MediaId, PositionMs, RateMilli, Role, RoomId, RoomMs, Seq,
    UnixSeconds, UserId,
};
use watchparty_peer::message::{
    Admitted, ChatText, DtlsBinding, EarlierChat, Fingerprint, Kind, Latency, MediaItem, Message,
    Refusal, RefuseReason, ReportedLatency,
};
use watchparty_peer::session::{ChannelOpen, Event, Output, Session, SessionConfig};
use watchparty_peer::signaling::{BoundedVec, OffererRule, RosterEntry, ServerMessage};
use watchparty_peer::time::LocalTime;

const DOC: &str = include_str!("../../docs/protocol.md");

fn seed(start: u8) -> [u8; 32] {
    core::array::from_fn(|i| start + i as u8)
}

fn host() -> SigningKey {
    SigningKey::from_seed(&seed(0x00)).unwrap()
}
fn member() -> SigningKey {
    SigningKey::from_seed(&seed(0x20)).unwrap()
}
fn server() -> SigningKey {
    SigningKey::from_seed(&seed(0x40)).unwrap()
}
fn room() -> RoomId {
    "00112233445566778899aabbccddeeff".parse().unwrap()
}
fn header(seq: u64, issued_at: i64) -> Header {
    Header {
        room: room(),
        epoch: Epoch(1),
        seq: Seq::new(seq).unwrap(),
        issued_at: RoomMs(issued_at),
    }
}

/// (name, hex) for every vector in the document, in document order.
fn vectors() -> Vec<(&'static str, String)> {
    let h = host();
    let m = member();
    let s = server();
    let mut v = vec![
        ("host-public-key", hex::encode(h.public_key().as_bytes())),
        ("host-key-id", hex::encode(h.key_id().as_bytes())),
        ("member-public-key", hex::encode(m.public_key().as_bytes())),
        ("member-key-id", hex::encode(m.key_id().as_bytes())),
        ("server-public-key", hex::encode(s.public_key().as_bytes())),
    ];
    let frame = |k: &SigningKey, hd: Header, msg: Message| {
        hex::encode(frame::encode(k, &hd, &msg).unwrap())
    };
    v.push((
        "frame-play",
        frame(
            &h,
            header(5, 120_000),
            Message::Play {
                position: PositionMs::new(90_500).unwrap(),
                at: RoomMs(120_250),
            },
        ),
    ));
    v.push((
        "frame-pause",
        frame(
            &h,
            header(6, 125_000),
            Message::Pause {
                position: PositionMs::new(95_250).unwrap(),
                at: RoomMs(125_150),
            },
        ),
    ));
    v.push((
        "frame-rate",
        frame(
            &h,
            header(7, 126_000),
            Message::Rate {
                rate: RateMilli::new(1_250).unwrap(),
                position: PositionMs::new(96_000).unwrap(),
                at: RoomMs(126_200),
            },
        ),
    ));
    v.push((
        "frame-load",
        frame(
            &h,
            header(8, 130_000),
            Message::Load(MediaItem {
                media: MediaId::new("movie-1").unwrap(),
                hash: ContentHash([0xcd; 32]),
                duration: PositionMs::new(5_400_000).unwrap(),
            }),
        ),
    ));
    v.push((
        "frame-bind",
        frame(
            &h,
            header(9, 131_000),
            Message::Bind(DtlsBinding {
                peer: UserId::new(7).unwrap(),
                host_fingerprint: Fingerprint::Sha256([0x11; 32]),
                peer_fingerprint: Fingerprint::Sha256([0x22; 32]),
            }),
        ),
    ));
    v.push((
        "frame-refuse-dismissed",
        frame(
            &h,
            header(10, 132_000),
            Message::Refuse(Refusal {
                member: UserId::new(7).unwrap(),
                request_seq: Seq::new(3).unwrap(),
                reason: RefuseReason::Dismissed,
            }),
        ),
    ));
    v.push(("frame-chat", hex::encode(frame_chat())));
    v.push((
        "frame-clock-ping",
        frame(
            &m,
            header(1, 121_500),
            Message::ClockPing(ClockPing {
                id: 3,
                origin: LocalTime::from_micros(5_000_123),
            }),
        ),
    ));
    v.push((
        "frame-announce",
        frame(&m, header(2, 122_000), Message::Announce(member_cert())),
    ));
    v.push((
        "frame-knock",
        frame(&m, header(3, 123_000), Message::Knock(knock_mac())),
    ));
    v.push((
        "frame-roster",
        frame(
            &h,
            header(11, 133_000),
            Message::Roster(vec![
                Admitted {
                    member: UserId::new(1).unwrap(),
                    key: h.public_key(),
                },
                Admitted {
                    member: UserId::new(2).unwrap(),
                    key: m.public_key(),
                },
            ]),
        ),
    ));
    v.push((
        "frame-chat-history",
        hex::encode(history(&h, 12, 134_000, frame_chat())),
    ));
    v.push((
        "frame-latency",
        frame(
            &m,
            header(4, 124_000),
            Message::Latency(Latency {
                round_trip: ReportedLatency::new(1_250).unwrap(),
                startup: ReportedLatency::new(85_000).unwrap(),
            }),
        ),
    ));
    v.push(("admit-secret", hex::encode(admit_secret().as_bytes())));
    v.push(("knock-mac", hex::encode(knock_mac())));
    v.push(("drop-knock-wrong-secret", hex::encode(wrong_knock())));
    v.push(("certificate-host", hex::encode(host_cert().as_bytes())));
    v.push(("certificate-member", hex::encode(member_cert().as_bytes())));
    for d in drop_vectors() {
        v.push((d.name, hex::encode(&d.bytes)));
    }
    v
}

/// `frame-chat`: the member's Chat `"hi\nthere"` (seq 0, issued at 121 000).
fn frame_chat() -> Vec<u8> {
    frame::encode(
        &member(),
        &header(0, 121_000),
        &Message::Chat(ChatText::new("hi\nthere").unwrap()),
    )
    .unwrap()
}

/// A `ChatHistory` signed by `key` (seq `seq`, issued at `issued_at`)
/// carrying `inner` unchanged (§4.1).
fn history(key: &SigningKey, seq: u64, issued_at: i64, inner: Vec<u8>) -> Vec<u8> {
    let msg = Message::ChatHistory(EarlierChat::new(inner).unwrap());
    frame::encode(key, &header(seq, issued_at), &msg).unwrap()
}

/// The room's admission secret: derived from the host's seed (§2.2).
fn admit_secret() -> AdmitSecret {
    AdmitSecret::derive(&host())
}

/// Member (user 2)'s knock MAC under [`admit_secret`].
fn knock_mac() -> [u8; 32] {
    admit_secret().knock_mac(room(), &member().public_key(), UserId::new(2).unwrap())
}

/// The member's `Knock` (seq 4) with a MAC made under another secret
/// (32 zero bytes).
fn wrong_knock() -> Vec<u8> {
    let mac = AdmitSecret::from_bytes([0; 32]).knock_mac(
        room(),
        &member().public_key(),
        UserId::new(2).unwrap(),
    );
    frame::encode(&member(), &header(4, 123_500), &Message::Knock(mac)).unwrap()
}

/// A frame signed by `key` over arbitrary header fields and payload
/// (bypasses the encoder's checks, e.g. for invalid chat text).
fn raw_frame(
    key: &SigningKey,
    kind: u8,
    room: [u8; 16],
    epoch: u64,
    seq: u64,
    issued_at: i64,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = frame::MAGIC.to_vec();
    b.push(frame::VERSION);
    b.push(kind);
    b.extend_from_slice(key.key_id().as_bytes());
    b.extend_from_slice(&room);
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&issued_at.to_be_bytes());
    b.extend_from_slice(payload);
    let sig = key.sign(Domain::Frame, &b);
    b.extend_from_slice(sig.as_bytes());
    b
}

/// A negative vector: bytes that a receiver in the §11 situation drops,
/// on which channel they arrive, and the reason (§7).
struct DropVector {
    name: &'static str,
    channel: ChannelId,
    reason: &'static str,
    bytes: Vec<u8>,
}

fn chat_payload(text: &str) -> Vec<u8> {
    let mut p = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    p.extend_from_slice(text.as_bytes());
    p
}

/// Every negative vector, in document order. Each breaks exactly one rule.
fn drop_vectors() -> Vec<DropVector> {
    let h = host();
    let m = member();
    let room = *room().as_bytes();
    let play = frame::encode(
        &h,
        &header(5, 120_000),
        &Message::Play {
            position: PositionMs::new(90_500).unwrap(),
            at: RoomMs(120_250),
        },
    )
    .unwrap();
    let play_payload = play[52..play.len() - 64].to_vec();
    let control = channels::CONTROL.id;
    let chat = channels::CHAT.id;
    let dv = |name, channel, reason, bytes| DropVector {
        name,
        channel,
        reason,
        bytes,
    };
    let mut not_a_frame = play.clone();
    not_a_frame[1] = b'X';
    let mut version = play.clone();
    version[2] = 2;
    let mut kind = play.clone();
    kind[3] = 0x7f;
    let mut bad_sig = play.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    // A member Chat issued at 121 000 with any room, epoch, seq and text.
    let mchat = |room: [u8; 16], epoch: u64, seq: u64, text: &str| {
        raw_frame(
            &m,
            Kind::Chat.to_byte(),
            room,
            epoch,
            seq,
            121_000,
            &chat_payload(text),
        )
    };
    let mut trailing = play_payload.clone();
    trailing.push(0);
    let unknown_signer = raw_frame(
        &server(),
        Kind::Chat.to_byte(),
        room,
        1,
        0,
        121_000,
        &chat_payload("hi"),
    );
    let mut forged_chat = frame_chat();
    let last = forged_chat.len() - 1;
    forged_chat[last] ^= 0x01;
    vec![
        dv("drop-not-a-frame", control, "not_a_frame", not_a_frame),
        dv("drop-unknown-version", control, "unknown_version", version),
        dv(
            "drop-truncated",
            control,
            "truncated",
            play[..frame::MIN_FRAME_LEN - 1].to_vec(),
        ),
        dv("drop-unknown-kind", control, "unknown_kind", kind),
        dv("drop-wrong-channel", chat, "wrong_channel", play.clone()),
        dv(
            "drop-unknown-signer",
            chat,
            "unknown_signer",
            unknown_signer.clone(),
        ),
        dv("drop-bad-signature", control, "bad_signature", bad_sig),
        dv(
            "drop-malformed",
            control,
            "malformed",
            raw_frame(&h, Kind::Play.to_byte(), room, 1, 10, 120_000, &trailing),
        ),
        dv(
            "drop-chat-invalid",
            chat,
            "chat_invalid",
            mchat(room, 1, 3, "a\rb"),
        ),
        dv(
            "drop-not-host",
            control,
            "not_host",
            raw_frame(&m, Kind::Play.to_byte(), room, 1, 4, 120_000, &play_payload),
        ),
        dv(
            "drop-wrong-room",
            chat,
            "wrong_room",
            mchat([0xff; 16], 1, 5, "hi"),
        ),
        dv(
            "drop-stale-epoch",
            chat,
            "stale_epoch",
            mchat(room, 0, 6, "hi"),
        ),
        dv(
            "drop-unknown-epoch",
            chat,
            "unknown_epoch",
            mchat(room, 2, 7, "hi"),
        ),
        dv("drop-replay", chat, "replay", mchat(room, 1, 0, "again")),
        dv(
            "drop-announce-not-own",
            control,
            "malformed",
            frame::encode(&m, &header(8, 122_000), &Message::Announce(host_cert())).unwrap(),
        ),
        dv(
            "drop-history-bad-signature",
            control,
            "bad_signature",
            history(&h, 13, 134_500, forged_chat),
        ),
        dv(
            "drop-history-unknown-signer",
            control,
            "unknown_signer",
            history(&h, 14, 135_000, unknown_signer),
        ),
        dv(
            "drop-history-wrong-room",
            control,
            "wrong_room",
            history(&h, 15, 135_500, mchat([0xff; 16], 1, 5, "hi")),
        ),
        dv(
            "drop-history-not-host",
            control,
            "not_host",
            history(&m, 9, 134_000, frame_chat()),
        ),
        dv(
            "drop-latency-too-long",
            control,
            "malformed",
            raw_frame(
                &m,
                Kind::Latency.to_byte(),
                room,
                1,
                5,
                124_500,
                &[0x00, 0x98, 0x96, 0x81, 0x00, 0x01, 0x4c, 0x08],
            ),
        ),
    ]
}

/// A certificate of the vectors' room, epoch 1, not-after 1 900 000 000,
/// issued by the server key.
fn issue(user: u64, name: &str, role: Role, key: &SigningKey) -> SignedCertificate {
    SignedCertificate::issue(
        &server(),
        CertificateBody {
            room: room(),
            epoch: Epoch(1),
            user: UserId::new(user).unwrap(),
            name: DisplayName::new(name).unwrap(),
            role,
            key: key.public_key(),
            not_after: UnixSeconds(1_900_000_000),
        },
    )
    .unwrap()
}

fn host_cert() -> SignedCertificate {
    issue(1, "Ada", Role::Host, &host())
}

fn member_cert() -> SignedCertificate {
    issue(2, "Bob", Role::Viewer, &member())
}

/// The receiver of §11: user 3 (a viewer; its key is irrelevant to the
/// vectors), a follower of the vectors' room at epoch 1 that holds
/// `certificate-host` (user 1, pinned) and `certificate-member` (user 2),
/// has a channel to the host and no clock estimate yet (so skew is checked
/// against its wall clock), at Unix time 124 (the vectors' issued-at are
/// 120 000 to 131 000 ms).
fn receiver() -> Session {
    receiver_pinned(true)
}

/// The receiver of §11, pinning the host key or not.
fn receiver_pinned(pinned: bool) -> Session {
    let me = SigningKey::from_seed(&seed(0x60)).unwrap();
    let mine = issue(3, "Cy", Role::Viewer, &me);
    let now = LocalTime::from_millis(1_000);
    let wall = UnixSeconds(124);
    let mut s = Session::new(
        SessionConfig::new(room()),
        me,
        server().public_key(),
        pinned.then(|| host().public_key()),
        now,
        wall,
    )
    .unwrap();
    let members = [host_cert(), member_cert()]
        .into_iter()
        .map(|certificate| RosterEntry {
            certificate,
            online: true,
        })
        .collect();
    s.handle_signal(
        ServerMessage::Hello {
            protocol: 1,
            room: room(),
            you: UserId::new(3).unwrap(),
            epoch: Epoch(1),
            server_key: server().public_key(),
            certificate: mine,
            members: BoundedVec::new(members).unwrap(),
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        },
        now,
    );
    s.channel_open(
        ChannelOpen {
            peer: UserId::new(1).unwrap(),
            local_fingerprint: None,
            remote_fingerprint: None,
        },
        now,
    );
    while s.poll_output().is_some() {}
    s
}

/// Feeds `bytes` from the host's connection; the drop reason, if any.
fn feed(s: &mut Session, channel: ChannelId, bytes: &[u8]) -> Option<&'static str> {
    s.handle_frame(
        UserId::new(1).unwrap(),
        channel,
        bytes,
        LocalTime::from_millis(2_000),
    );
    std::iter::from_fn(|| s.poll_output()).find_map(|o| match o {
        Output::Event(Event::Dropped { reason, .. }) => Some(reason.label()),
        _ => None,
    })
}

/// §11: the receiver accepts `frame-chat` and `frame-announce`, then drops
/// each negative vector for exactly the reason the document's table gives.
#[test]
fn document_negative_vectors_drop_for_their_reason() {
    let mut s = receiver();
    let doc: std::collections::BTreeMap<String, String> = doc_vectors().into_iter().collect();
    let bytes = |name: &str| hex::decode(&doc[name]).unwrap();
    assert_eq!(feed(&mut s, channels::CHAT.id, &bytes("frame-chat")), None);
    assert_eq!(
        feed(&mut s, channels::CONTROL.id, &bytes("frame-announce")),
        None
    );
    let accepted = s.stats().accepted;
    assert_eq!(accepted, 2);
    for d in drop_vectors() {
        let label = channels::by_id(d.channel).unwrap().label;
        let row = format!("| `{}` | `{label}` | `{}` |", d.name, d.reason);
        assert!(DOC.contains(&row), "the document lists {row}");
        assert_eq!(
            feed(&mut s, d.channel, &bytes(d.name)),
            Some(d.reason),
            "{}",
            d.name
        );
    }
    assert_eq!(s.stats().accepted, accepted, "nothing else was accepted");
}

/// §11.2: the host of the vectors' room (user 1, holding the admission
/// secret derived from its seed), at Unix time 124, with the member
/// online: drops `frame-chat` as `not_admitted` until the member's
/// `frame-knock`, refuses `drop-knock-wrong-secret`, then accepts the
/// same `frame-chat` and names the member in its `Roster`.
#[test]
fn document_admission_vectors() {
    let now = LocalTime::from_millis(1_000);
    let mut cfg = SessionConfig::new(room());
    cfg.admit_secret = Some(admit_secret());
    let mut s = Session::new(
        cfg,
        host(),
        server().public_key(),
        None,
        now,
        UnixSeconds(124),
    )
    .unwrap();
    s.handle_signal(
        ServerMessage::Hello {
            protocol: 1,
            room: room(),
            you: UserId::new(1).unwrap(),
            epoch: Epoch(1),
            server_key: server().public_key(),
            certificate: host_cert(),
            members: BoundedVec::new(vec![RosterEntry {
                certificate: member_cert(),
                online: true,
            }])
            .unwrap(),
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        },
        now,
    );
    while s.poll_output().is_some() {}
    let doc: std::collections::BTreeMap<String, String> = doc_vectors().into_iter().collect();
    let bytes = |name: &str| hex::decode(&doc[name]).unwrap();
    let from_member = |s: &mut Session, channel: ChannelId, b: &[u8]| {
        s.handle_frame(
            UserId::new(2).unwrap(),
            channel,
            b,
            LocalTime::from_millis(2_000),
        );
        std::iter::from_fn(|| s.poll_output()).find_map(|o| match o {
            Output::Event(Event::Dropped { reason, .. }) => Some(reason.label()),
            _ => None,
        })
    };
    assert_eq!(
        from_member(&mut s, channels::CHAT.id, &bytes("frame-chat")),
        Some("not_admitted")
    );
    assert_eq!(
        from_member(
            &mut s,
            channels::CONTROL.id,
            &bytes("drop-knock-wrong-secret")
        ),
        Some("not_admitted")
    );
    assert!(!s.is_admitted(UserId::new(2).unwrap()));
    assert_eq!(
        from_member(&mut s, channels::CONTROL.id, &bytes("frame-knock")),
        None
    );
    assert!(s.is_admitted(UserId::new(2).unwrap()));
    assert_eq!(
        from_member(&mut s, channels::CHAT.id, &bytes("frame-chat")),
        None
    );
    assert_eq!(s.stats().accepted, 2);
    assert_eq!(
        hex::encode(admit_secret().as_bytes()),
        doc["admit-secret"],
        "the document's secret"
    );
}

/// §11.3: the §11.1 receiver without a pinned key (so its link to the host
/// needs no `Bind`), fresh: shows `frame-chat-history`'s message once,
/// marked earlier with its send time; `frame-chat` arriving live after it,
/// and the same `ChatHistory` again, are exact copies (not shown, not
/// dropped).
#[test]
fn document_chat_history_vectors() {
    let mut s = receiver_pinned(false);
    let doc: std::collections::BTreeMap<String, String> = doc_vectors().into_iter().collect();
    let bytes = |name: &str| hex::decode(&doc[name]).unwrap();
    let mut feed = |channel: ChannelId, b: &[u8]| {
        s.handle_frame(
            UserId::new(1).unwrap(),
            channel,
            b,
            LocalTime::from_millis(2_000),
        );
        std::iter::from_fn(|| s.poll_output())
            .filter_map(|o| match o {
                Output::Event(e @ (Event::Chat { .. } | Event::Dropped { .. })) => Some(e),
                _ => None,
            })
            .collect::<Vec<Event>>()
    };
    let shown = feed(channels::CONTROL.id, &bytes("frame-chat-history"));
    assert_eq!(
        shown,
        vec![Event::Chat {
            from: UserId::new(2).unwrap(),
            text: ChatText::new("hi\nthere").unwrap(),
            earlier: Some(RoomMs(121_000)),
        }]
    );
    assert_eq!(feed(channels::CHAT.id, &bytes("frame-chat")), vec![]);
    assert_eq!(
        feed(channels::CONTROL.id, &bytes("frame-chat-history")),
        vec![]
    );
    assert_eq!(s.stats().duplicates, 2, "steps 2 and 3 are exact copies");
}

/// Hex blocks of the document: a line `<!-- vector: NAME -->` followed by a
/// fenced block of hex lines.
fn doc_vectors() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- vector: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next().map(str::trim), Some("```text"), "{name}");
        let mut hex = String::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            hex.push_str(l.trim());
        }
        out.push((name.to_owned(), hex));
    }
    out
}

#[test]
fn document_vectors_match_the_implementation() {
    let ours: Vec<(String, String)> = vectors()
        .into_iter()
        .map(|(n, h)| (n.to_owned(), h))
        .collect();
    assert_eq!(doc_vectors(), ours);
}

#[test]
fn document_frames_verify_and_decode() {
    for (name, hex) in doc_vectors() {
        if !name.starts_with("frame-") || name.starts_with("drop-") {
            continue;
        }
        let bytes = hex::decode(&hex).unwrap();
        let keys = [host().public_key(), member().public_key()];
        let f = frame::receive(&bytes, |id, _| {
            keys.iter().copied().find(|k| k.key_id() == id)
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.header().room, room());
    }
    let v = CertVerifier::new(server().public_key(), room()).with_pinned_host(host().public_key());
    for name in ["certificate-host", "certificate-member"] {
        let hex = doc_vectors()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        let cert = SignedCertificate::parse(&hex::decode(hex).unwrap()).unwrap();
        assert!(
            v.verify(&cert, UnixSeconds(1_800_000_000)).is_ok(),
            "{name}"
        );
    }
}

#[test]
fn document_invite_fragment() {
    let frag = invite_fragment(&host().public_key());
    assert!(DOC.contains(&format!("#{frag}")), "{frag}");
    let with = invite_fragment_with_secret(&host().public_key(), &admit_secret());
    assert!(DOC.contains(&format!("#{with}")), "{with}");
}

#[test]
#[ignore = "prints the vectors for docs/protocol.md"]
fn print_vectors() {
    for (name, hex) in vectors() {
        println!("<!-- vector: {name} -->\n```text");
        for chunk in hex.as_bytes().chunks(64) {
            println!("{}", String::from_utf8_lossy(chunk));
        }
        println!("```\n");
    }
    println!("#{}", invite_fragment(&host().public_key()));
    println!(
        "#{}",
        invite_fragment_with_secret(&host().public_key(), &admit_secret())
    );
}
