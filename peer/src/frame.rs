//! The signed binary envelope of every data-channel message.
//!
//! ```text
//! offset  size  field
//!      0     2  magic "WP" (0x57 0x50)
//!      2     1  version (1)
//!      3     1  kind (message.rs)
//!      4     8  signer key id (first 8 bytes of SHA-256 of the signer's key)
//!     12    16  room id            ┐
//!     28     8  epoch              │ body header
//!     36     8  seq                │
//!     44     8  issued-at, room ms │ (i64)
//!     52     n  payload            ┘ (kind-specific)
//!  52+n     64  Ed25519 signature
//! ```
//!
//! All integers big-endian. The signature is over
//! `"watchparty/frame/v1\0" ‖ frame[0 .. len − 64]` — the domain tag followed
//! by **every byte before the signature, exactly as received**, so the kind
//! and key id are bound as well as the body. A frame is the whole data-channel
//! message: there is no length field, the signature is the last 64 bytes.
//!
//! Receiving is three typed steps, so a frame can only be decoded after it
//! verified: [`Envelope::parse`] (size, magic, version, kind, key id; nothing
//! else is read) → [`Envelope::verify`] with the signer's key (looked up by
//! key id from a verified certificate) → [`Verified::decode`] (header and
//! payload). Nothing is ever re-serialized to verify.

use crate::codec::{DecodeError, Reader, TooLongToEncode, Writer};
use crate::crypto::{Domain, KEY_ID_LEN, KeyId, PublicKey, SIGNATURE_LEN, Signature, SigningKey};
use crate::ids::{Epoch, ROOM_ID_LEN, RoomId, RoomMs, Seq};
use crate::message::{Kind, Message, MessageError};

/// Frame magic bytes.
pub const MAGIC: [u8; 2] = *b"WP";
/// Frame format version.
pub const VERSION: u8 = 1;
/// Largest frame in bytes (16 KiB), far below the 64 KiB that browsers
/// deliver portably on data channels.
pub const MAX_FRAME_LEN: usize = 16 * 1024;
/// Envelope bytes before the body: magic, version, kind, key id.
pub const ENVELOPE_HEADER_LEN: usize = 2 + 1 + 1 + KEY_ID_LEN;
/// Body header bytes: room id, epoch, seq, issued-at.
pub const BODY_HEADER_LEN: usize = ROOM_ID_LEN + 8 + 8 + 8;
/// Smallest frame: envelope header, body header, empty payload, signature.
pub const MIN_FRAME_LEN: usize = ENVELOPE_HEADER_LEN + BODY_HEADER_LEN + SIGNATURE_LEN;
/// Largest payload that fits in a frame.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - MIN_FRAME_LEN;

/// Why a received frame was refused before acceptance rules ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes exceeds {MAX_FRAME_LEN}")]
    Oversized(usize),
    /// Does not start with [`MAGIC`].
    #[error("not a watchparty frame (bad magic)")]
    BadMagic,
    /// Shorter than its fixed parts.
    #[error("truncated frame")]
    Truncated,
    /// A version this peer does not speak.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// A kind this peer does not know.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The key offered for verification is not the one the key id names.
    #[error("verification key does not match the frame's signer key id")]
    SignerMismatch,
    /// The signature does not verify.
    #[error("bad frame signature")]
    BadSignature,
    /// The verified body is malformed.
    #[error("malformed frame body: {0}")]
    Malformed(DecodeError),
    /// The verified payload is malformed or breaks a content rule (chat).
    #[error(transparent)]
    Payload(MessageError),
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field exceeded its maximum.
    #[error(transparent)]
    Field(#[from] TooLongToEncode),
    /// The frame would exceed [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes would exceed {MAX_FRAME_LEN}")]
    Oversized(usize),
}

/// The body header, common to every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The room.
    pub room: RoomId,
    /// The host term.
    pub epoch: Epoch,
    /// Sender's sequence number in this epoch.
    pub seq: Seq,
    /// When the sender issued the frame, on the room clock (ms). Used as a
    /// sanity bound only, never as the replay guard.
    pub issued_at: RoomMs,
}

/// Signs `message` with `key` under `header` and returns the frame bytes.
///
/// # Errors
/// [`EncodeError`] if a field or the whole frame is too long.
pub fn encode(
    key: &SigningKey,
    header: &Header,
    message: &Message,
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(MIN_FRAME_LEN + 64);
    w.put(&MAGIC);
    w.u8(VERSION);
    w.u8(message.kind().to_byte());
    w.put(key.key_id().as_bytes());
    w.put(header.room.as_bytes());
    w.u64(header.epoch.0);
    w.u64(header.seq.get());
    w.i64(header.issued_at.0);
    message.encode(&mut w)?;
    let total = w.buf.len() + SIGNATURE_LEN;
    if total > MAX_FRAME_LEN {
        return Err(EncodeError::Oversized(total));
    }
    let sig = key.sign(Domain::Frame, &w.buf);
    w.put(sig.as_bytes());
    Ok(w.buf)
}

/// A frame whose envelope parsed; its signature is **not yet verified** and
/// its body not read.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    bytes: &'a [u8],
    kind: Kind,
    signer: KeyId,
}

impl<'a> Envelope<'a> {
    /// Checks, in order: size ≤ [`MAX_FRAME_LEN`], magic, version, minimum
    /// size, known kind; reads the signer key id.
    ///
    /// # Errors
    /// The first failed check.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(FrameError::Oversized(bytes.len()));
        }
        match bytes {
            [a, b, ..] if [*a, *b] != MAGIC => return Err(FrameError::BadMagic),
            [_, _, v, ..] if *v != VERSION => return Err(FrameError::UnknownVersion(*v)),
            _ => {}
        }
        if bytes.len() < MIN_FRAME_LEN {
            return Err(FrameError::Truncated);
        }
        let kind_byte = bytes[3];
        let kind = Kind::from_byte(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&bytes[4..ENVELOPE_HEADER_LEN]);
        Ok(Self {
            bytes,
            kind,
            signer: KeyId::from_bytes(id),
        })
    }

    /// The kind (unverified).
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The key id of the claimed signer (unverified; use it to look up the key).
    #[must_use]
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    /// Verifies the signature with `key`, which must be the key `signer()`
    /// names.
    ///
    /// # Errors
    /// [`FrameError::SignerMismatch`] or [`FrameError::BadSignature`].
    pub fn verify(self, key: &PublicKey) -> Result<Verified<'a>, FrameError> {
        if key.key_id() != self.signer {
            return Err(FrameError::SignerMismatch);
        }
        // parse() guaranteed len >= MIN_FRAME_LEN > SIGNATURE_LEN.
        let (signed, sig) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        let sig = Signature::from_slice(sig).map_err(|_| FrameError::Truncated)?;
        key.verify(Domain::Frame, signed, &sig)
            .map_err(|_| FrameError::BadSignature)?;
        Ok(Verified {
            bytes: self.bytes,
            kind: self.kind,
            signer: self.signer,
        })
    }
}

/// A frame whose signature verified. Only [`Envelope::verify`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'a> {
    bytes: &'a [u8],
    kind: Kind,
    signer: KeyId,
}

impl<'a> Verified<'a> {
    /// The exact frame bytes (to forward to other peers unchanged).
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The signer's key id.
    #[must_use]
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    /// Decodes the body header and the payload.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for a bad header, [`FrameError::Payload`]
    /// for a bad payload (including invalid chat text).
    pub fn decode(&self) -> Result<Frame, FrameError> {
        let body = &self.bytes[ENVELOPE_HEADER_LEN..self.bytes.len() - SIGNATURE_LEN];
        let mut r = Reader::new(body);
        let header = (|| -> Result<Header, DecodeError> {
            Ok(Header {
                room: RoomId::from_bytes(r.array("room id")?),
                epoch: Epoch(r.u64("epoch")?),
                seq: Seq::new(r.u64("seq")?)?,
                issued_at: RoomMs(r.i64("issued at")?),
            })
        })()
        .map_err(FrameError::Malformed)?;
        let payload = &body[BODY_HEADER_LEN..];
        let message = Message::decode(self.kind, payload).map_err(FrameError::Payload)?;
        Ok(Frame {
            signer: self.signer,
            header,
            message,
            bytes: self.bytes.to_vec(),
        })
    }
}

/// A verified, decoded frame. Only [`Verified::decode`] makes one, so holding
/// a `Frame` proves its signature verified under the signer's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    signer: KeyId,
    header: Header,
    message: Message,
    bytes: Vec<u8>,
}

impl Frame {
    /// The signer's key id.
    #[must_use]
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    /// The body header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload.
    #[must_use]
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.message.kind()
    }

    /// The exact bytes as received (for forwarding and for handing the latest
    /// `State` to late joiners).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the payload.
    #[must_use]
    pub fn into_message(self) -> Message {
        self.message
    }
}

/// Convenience: parse, verify with the key `lookup` returns for the signer's
/// key id, and decode. `lookup` returning `None` yields
/// [`ReceiveError::UnknownSigner`].
///
/// # Errors
/// [`ReceiveError`].
pub fn receive(
    bytes: &[u8],
    lookup: impl FnOnce(KeyId, Kind) -> Option<PublicKey>,
) -> Result<Frame, ReceiveError> {
    let env = Envelope::parse(bytes)?;
    let key = lookup(env.signer(), env.kind()).ok_or(ReceiveError::UnknownSigner(env.signer()))?;
    Ok(env.verify(&key)?.decode()?)
}

/// Why [`receive`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// No known key for the signer key id.
    #[error("unknown signer {0}")]
    UnknownSigner(KeyId),
    /// Envelope, signature or body error.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::strategies;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[0x11; 32]).unwrap()
    }

    fn header() -> Header {
        Header {
            room: RoomId::from_bytes([0xaa; 16]),
            epoch: Epoch(1),
            seq: Seq::new(7).unwrap(),
            issued_at: RoomMs(123_456),
        }
    }

    fn recv(bytes: &[u8], k: &PublicKey) -> Result<Frame, ReceiveError> {
        receive(bytes, |_, _| Some(*k))
    }

    #[test]
    fn layout_of_a_next_frame() {
        let k = key();
        let bytes = encode(&k, &header(), &Message::Next).unwrap();
        assert_eq!(bytes.len(), MIN_FRAME_LEN);
        assert_eq!(&bytes[..4], &[b'W', b'P', 1, 0x03]);
        assert_eq!(&bytes[4..12], k.key_id().as_bytes());
        assert_eq!(&bytes[12..28], &[0xaa; 16]);
        assert_eq!(&bytes[28..36], &1u64.to_be_bytes());
        assert_eq!(&bytes[36..44], &7u64.to_be_bytes());
        assert_eq!(&bytes[44..52], &123_456i64.to_be_bytes());
        let mut input = b"watchparty/frame/v1\0".to_vec();
        input.extend_from_slice(&bytes[..52]);
        let sig = Signature::from_slice(&bytes[52..]).unwrap();
        assert_eq!(
            k.public_key().verify(Domain::Frame, &bytes[..52], &sig),
            Ok(())
        );
        let f = recv(&bytes, &k.public_key()).unwrap();
        assert_eq!(f.header(), &header());
        assert_eq!(f.message(), &Message::Next);
        assert_eq!(f.bytes(), &bytes[..]);
    }

    #[test]
    fn envelope_errors_in_order() {
        let k = key();
        let good = encode(&k, &header(), &Message::Next).unwrap();
        assert_eq!(
            Envelope::parse(&vec![0; MAX_FRAME_LEN + 1]).err(),
            Some(FrameError::Oversized(MAX_FRAME_LEN + 1))
        );
        assert_eq!(Envelope::parse(b"XX").err(), Some(FrameError::BadMagic));
        assert_eq!(Envelope::parse(b"").err(), Some(FrameError::Truncated));
        assert_eq!(Envelope::parse(b"W").err(), Some(FrameError::Truncated));
        assert_eq!(Envelope::parse(b"WP").err(), Some(FrameError::Truncated));
        assert_eq!(
            Envelope::parse(b"WP\x02").err(),
            Some(FrameError::UnknownVersion(2))
        );
        assert_eq!(
            Envelope::parse(&good[..good.len() - 1]).err(),
            Some(FrameError::Truncated)
        );
        let mut bad = good.clone();
        bad[3] = 0x7f;
        assert_eq!(
            Envelope::parse(&bad).err(),
            Some(FrameError::UnknownKind(0x7f))
        );
        // Changing the kind byte to another known kind breaks the signature.
        let mut bad = good.clone();
        bad[3] = Kind::Previous.to_byte();
        assert_eq!(
            recv(&bad, &k.public_key()).err(),
            Some(FrameError::BadSignature.into())
        );
        // Verifying with a key that the key id does not name.
        let other = SigningKey::from_seed(&[0x12; 32]).unwrap().public_key();
        assert_eq!(
            recv(&good, &other).err(),
            Some(FrameError::SignerMismatch.into())
        );
        // A frame signed by another key but claiming our key id.
        let mut forged = encode(
            &SigningKey::from_seed(&[0x12; 32]).unwrap(),
            &header(),
            &Message::Next,
        )
        .unwrap();
        forged[4..12].copy_from_slice(k.key_id().as_bytes());
        assert_eq!(
            recv(&forged, &k.public_key()).err(),
            Some(FrameError::BadSignature.into())
        );
        assert_eq!(
            receive(&good, |_, _| None).err(),
            Some(ReceiveError::UnknownSigner(k.key_id()))
        );
    }

    #[test]
    fn max_size_frames() {
        let k = key();
        // The largest State (full queue, longest ids, all grants) fits.
        let item = crate::message::MediaItem {
            media: crate::ids::MediaId::new(&"m".repeat(64)).unwrap(),
            hash: crate::ids::ContentHash([1; 32]),
            duration: crate::ids::PositionMs::new(1).unwrap(),
        };
        let queue = crate::message::Queue::new(
            vec![item.clone(); crate::message::MAX_QUEUE_ITEMS],
            Some(0),
        )
        .unwrap();
        let state = crate::message::RoomState {
            loaded: Some(item),
            queue,
            timeline: crate::message::Timeline {
                paused: false,
                position: crate::ids::PositionMs::ZERO,
                at: RoomMs(0),
                rate: crate::ids::RateMilli::NORMAL,
            },
            policy: crate::message::Policy {
                buffering: crate::message::Buffering::WaitForEveryone,
                wait_timeout_ms: 1,
                controllers: crate::message::Permissions::ALL,
            },
            roles: vec![
                crate::message::RoleGrant {
                    member: crate::ids::UserId::new(1).unwrap(),
                    role: crate::ids::Role::Viewer
                };
                crate::message::MAX_ROLE_GRANTS
            ],
        };
        let bytes = encode(&k, &header(), &Message::State(Box::new(state))).unwrap();
        assert!(bytes.len() <= MAX_FRAME_LEN, "{}", bytes.len());
        assert!(recv(&bytes, &k.public_key()).is_ok());
        // The largest chat fits too.
        let chat = crate::message::ChatText::new(&"😀".repeat(500)).unwrap();
        let bytes = encode(&k, &header(), &Message::Chat(chat)).unwrap();
        assert!(bytes.len() <= MAX_FRAME_LEN);
    }

    proptest! {
        #[test]
        fn round_trip(m in strategies::message(), epoch in any::<u64>(), seq in 0..Seq::LIMIT, at in any::<i64>()) {
            let k = key();
            let h = Header { room: RoomId::from_bytes([3; 16]), epoch: Epoch(epoch), seq: Seq::new(seq).unwrap(), issued_at: RoomMs(at) };
            let bytes = encode(&k, &h, &m).unwrap();
            let f = recv(&bytes, &k.public_key()).unwrap();
            prop_assert_eq!(f.header(), &h);
            prop_assert_eq!(f.message(), &m);
            prop_assert_eq!(f.signer(), k.key_id());
        }

        #[test]
        fn bit_flips_never_verify(m in strategies::message(), idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = key();
            let mut bytes = encode(&k, &header(), &m).unwrap();
            let i = idx.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // Flipping the key id yields SignerMismatch; anything else fails
            // parsing or the signature. Nothing decodes.
            prop_assert!(recv(&bytes, &k.public_key()).is_err());
        }

        #[test]
        fn truncation_and_extension_never_verify(m in strategies::message(), cut in any::<prop::sample::Index>(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
            let k = key();
            let bytes = encode(&k, &header(), &m).unwrap();
            let n = cut.index(bytes.len());
            prop_assert!(recv(&bytes[..n], &k.public_key()).is_err());
            let mut longer = bytes.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(recv(&longer, &k.public_key()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let k = key().public_key();
            let _ = recv(&bytes, &k);
            // Also with a valid prefix so parsing gets further.
            let mut framed = b"WP\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = recv(&framed, &k);
        }
    }
}
