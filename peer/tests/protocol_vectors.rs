//! The test vectors in `docs/protocol.md` are exactly what this crate
//! produces, and they verify and decode through the public API.
//!
//! To print the vectors (e.g. after a deliberate format change):
//! `cargo test -p watchparty-peer --no-default-features --test protocol_vectors -- --ignored --nocapture`

use watchparty_peer::cert::{CertVerifier, CertificateBody, SignedCertificate, invite_fragment};
use watchparty_peer::clock::ClockPing;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::frame::{self, Header};
use watchparty_peer::ids::{
    ContentHash, DisplayName, Epoch, MediaId, PositionMs, RateMilli, Role, RoomId, RoomMs, Seq,
    UnixSeconds, UserId,
};
use watchparty_peer::message::{ChatText, DtlsBinding, Fingerprint, MediaItem, Message};
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
        "frame-chat",
        frame(
            &m,
            header(0, 121_000),
            Message::Chat(ChatText::new("hi\nthere").unwrap()),
        ),
    ));
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
    v.push(("certificate-host", hex::encode(host_cert().as_bytes())));
    v
}

fn host_cert() -> SignedCertificate {
    SignedCertificate::issue(
        &server(),
        CertificateBody {
            room: room(),
            epoch: Epoch(1),
            user: UserId::new(1).unwrap(),
            name: DisplayName::new("Ada").unwrap(),
            role: Role::Host,
            key: host().public_key(),
            not_after: UnixSeconds(1_900_000_000),
        },
    )
    .unwrap()
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
        if !name.starts_with("frame-") {
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
    let cert = host_cert();
    let v = CertVerifier::new(server().public_key(), room()).with_pinned_host(host().public_key());
    assert!(v.verify(&cert, UnixSeconds(1_800_000_000)).is_ok());
}

#[test]
fn document_invite_fragment() {
    let frag = invite_fragment(&host().public_key());
    assert!(DOC.contains(&format!("#{frag}")), "{frag}");
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
}
