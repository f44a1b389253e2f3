//! Adversarial frames against a follower `Session`: unsigned, signed by a
//! member or a stranger, replayed, other room or epoch, bit-flipped,
//! truncated, oversized — interleaved with valid host commands. None is
//! accepted, every valid one is, the room state never goes backwards, and
//! arbitrary bytes never panic.

use proptest::prelude::*;

mod support;

use support::session::{ROOM, ROOM_MS_AT_START, follower, k, sign_at, u};
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::channels;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::frame::MAX_FRAME_LEN;
use watchparty_peer::ids::{PositionMs, RoomId, RoomMs};
use watchparty_peer::message::Message;
use watchparty_peer::session::{Event, Output};
use watchparty_peer::time::LocalTime;

fn sign(key: &SigningKey, room: RoomId, epoch: u64, seq: u64, msg: &Message) -> Vec<u8> {
    sign_at(key, room, epoch, seq, ROOM_MS_AT_START, msg)
}

fn pause(pos: u64) -> Message {
    Message::Pause {
        position: PositionMs::new(pos).unwrap(),
        at: RoomMs(0),
    }
}

#[derive(Debug, Clone)]
enum Attack {
    Unsigned,
    ByMember,
    ByStranger,
    Replay,
    OtherRoom,
    OtherEpoch(u64),
    BitFlip(usize, u8),
    Truncate(usize),
    Oversized,
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        Just(Attack::Unsigned),
        Just(Attack::ByMember),
        Just(Attack::ByStranger),
        Just(Attack::Replay),
        Just(Attack::OtherRoom),
        prop_oneof![Just(0u64), 2u64..10].prop_map(Attack::OtherEpoch),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Attack::BitFlip(i, b)),
        any::<usize>().prop_map(Attack::Truncate),
        Just(Attack::Oversized),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn only_valid_host_frames_are_accepted(
        script in proptest::collection::vec((any::<bool>(), attack(), 0u64..1_000_000), 1..40)
    ) {
        let mut s = follower();
        let host = k(1);
        let mut seq = 0u64;
        let mut valid = 0u64;
        let mut attacks = 0u64;
        let mut last_valid: Option<Vec<u8>> = None;
        let mut last_pos: Option<u64> = None;
        let mut t = 2_000_000i64;
        for (is_valid, a, pos) in script {
            t += 10_000;
            let now = LocalTime::from_micros(t);
            if is_valid {
                let bytes = sign(&host, ROOM, 1, seq, &pause(pos));
                seq += 1;
                s.handle_frame(u(1), channels::CONTROL.id, &bytes, now);
                valid += 1;
                last_valid = Some(bytes);
                last_pos = Some(pos);
            } else {
                let next = sign(&host, ROOM, 1, seq, &pause(pos));
                let bytes = match a {
                    Attack::Unsigned => {
                        let mut b = next.clone();
                        let n = b.len();
                        b[n - 64..].fill(0);
                        b
                    }
                    Attack::ByMember => sign(&k(3), ROOM, 1, seq, &pause(pos)),
                    Attack::ByStranger => sign(&k(77), ROOM, 1, seq, &pause(pos)),
                    Attack::Replay => match &last_valid {
                        // a replay with different bytes under a used seq
                        Some(_) if seq > 0 => sign(&host, ROOM, 1, seq - 1, &pause(pos ^ 1)),
                        _ => sign(&k(77), ROOM, 1, seq, &pause(pos)),
                    },
                    Attack::OtherRoom => sign(&host, RoomId::from_bytes([8; 16]), 1, seq, &pause(pos)),
                    Attack::OtherEpoch(e) => sign(&host, ROOM, e, seq, &pause(pos)),
                    Attack::BitFlip(i, b) => {
                        let mut v = next.clone();
                        let i = i % v.len();
                        v[i] ^= b;
                        v
                    }
                    Attack::Truncate(i) => next[..i % next.len()].to_vec(),
                    Attack::Oversized => {
                        let mut v = next.clone();
                        v.resize(MAX_FRAME_LEN + 1, 0);
                        v
                    }
                };
                // from the member's link: a forwarder/attacker
                s.handle_frame(u(3), channels::CONTROL.id, &bytes, now);
                attacks += 1;
            }
            // the state is the last valid command's, never anything else
            let expect = last_pos.map(|p| p * 1000);
            let got = s.playback().map(|p| p.position.as_micros() as u64);
            prop_assert_eq!(got, expect);
        }
        prop_assert_eq!(s.stats().accepted, valid);
        prop_assert_eq!(s.drops().total(), attacks);
        let mut dropped_events = 0;
        while let Some(o) = s.poll_output() {
            if let Output::Event(Event::Dropped { .. }) = o {
                dropped_events += 1;
            }
        }
        prop_assert_eq!(dropped_events, attacks);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut s = follower();
        s.handle_frame(u(1), channels::CONTROL.id, &bytes, LocalTime::from_micros(2_000_000));
        prop_assert_eq!(s.stats().accepted, 0);
        prop_assert!(s.playback().is_none());
    }

    #[test]
    fn frames_with_valid_envelope_but_random_tail_never_panic(
        kind in 0u8..=0x40, tail in proptest::collection::vec(any::<u8>(), 104..400)
    ) {
        let mut s = follower();
        let mut bytes = vec![b'W', b'P', 1, kind];
        bytes.extend_from_slice(k(1).key_id().as_bytes());
        bytes.extend_from_slice(&tail);
        s.handle_frame(u(1), channels::CONTROL.id, &bytes, LocalTime::from_micros(2_000_000));
        prop_assert_eq!(s.stats().accepted, 0);
    }
}

#[test]
fn each_rule_drops_with_its_reason() {
    let host = k(1);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (b"XX-not-a-frame".to_vec(), DropReason::NotAFrame),
        (vec![b'W', b'P', 1, 6], DropReason::Truncated),
        (vec![b'W'; MAX_FRAME_LEN + 1], DropReason::Oversized),
        (vec![b'W', b'P', 9, 6], DropReason::UnknownVersion),
        (
            sign(&k(77), ROOM, 1, 0, &pause(1)),
            DropReason::UnknownSigner,
        ),
        (sign(&k(3), ROOM, 1, 0, &pause(1)), DropReason::NotHost),
        (
            sign(&host, RoomId::from_bytes([1; 16]), 1, 0, &pause(1)),
            DropReason::WrongRoom,
        ),
        (sign(&host, ROOM, 0, 0, &pause(1)), DropReason::StaleEpoch),
        (sign(&host, ROOM, 2, 0, &pause(1)), DropReason::UnknownEpoch),
    ];
    for (bytes, reason) in cases {
        let mut s = follower();
        s.handle_frame(
            u(1),
            channels::CONTROL.id,
            &bytes,
            LocalTime::from_micros(2_000_000),
        );
        assert_eq!(s.drops().get(reason), 1, "{reason:?}: {:?}", s.drops());
        assert_eq!(s.drops().total(), 1);
        assert!(s.playback().is_none(), "{reason:?} changed state");
    }
    // bad signature, replay, old sequence
    let mut s = follower();
    let now = LocalTime::from_micros(2_000_000);
    let mut bad = sign(&host, ROOM, 1, 0, &pause(1));
    let n = bad.len();
    bad[n - 1] ^= 1;
    s.handle_frame(u(1), channels::CONTROL.id, &bad, now);
    assert_eq!(s.drops().get(DropReason::BadSignature), 1);
    let a = sign(&host, ROOM, 1, 5, &pause(5));
    s.handle_frame(u(1), channels::CONTROL.id, &a, now);
    let replay = sign(&host, ROOM, 1, 5, &pause(6));
    s.handle_frame(u(3), channels::CONTROL.id, &replay, now);
    assert_eq!(s.drops().get(DropReason::Replay), 1);
    let older = sign(&host, ROOM, 1, 4, &pause(4));
    s.handle_frame(u(3), channels::CONTROL.id, &older, now);
    assert_eq!(s.drops().get(DropReason::OldSequence), 1);
    // an exact copy (mesh) is a silent duplicate, not an attack
    s.handle_frame(u(3), channels::CONTROL.id, &a, now);
    assert_eq!(s.stats().duplicates, 1);
    assert_eq!(s.playback().unwrap().position.as_micros(), 5_000);
}
