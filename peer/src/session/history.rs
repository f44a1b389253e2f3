//! Chat history for members that join late (docs/protocol.md §4.1
//! *Chat history*): the one rule both drivers act on.
//!
//! - Every session keeps the last chat frames it showed — its own, the
//!   live ones it accepted, and earlier ones it verified — as the exact
//!   member-signed bytes, at most [`CHAT_HISTORY_MAX`] messages and
//!   [`CHAT_HISTORY_MAX_BYTES`] bytes (oldest forgotten first), so a member
//!   that later hosts after a handoff has them too.
//! - The host offers them, oldest first, on every new link, right after its
//!   `Bind` and `Roster` (same ordered `control` channel): each one wrapped,
//!   unchanged, in a host-signed `ChatHistory`. Only messages whose
//!   author's key is still the one the room knows are offered (a member
//!   that reloaded signs with a new key; nothing vouches for the old one).
//! - The receiver checks the outer frame like any host control (signer,
//!   signature, room, epoch, replay, skew, binding), and the carried frame
//!   like a live `Chat` — envelope, a known certificate's key, signature,
//!   chat rules, room, admission — but without the freshness rules
//!   (replay window, skew, rate limit): it is old by nature. Its epoch may
//!   be an earlier one, never a later one. A carried frame that fails
//!   drops the `ChatHistory` for that rule's reason. More than
//!   [`CHAT_HISTORY_MAX`] on one link drop as `rate_limited`.
//! - A message already shown (live, or earlier on another link) is not
//!   shown again: digests of the chat frames shown are remembered
//!   ([`MAX_SEEN_CHATS`]), and a live copy arriving after the earlier one
//!   is an exact duplicate.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use crate::acceptance::DropReason;
use crate::channels;
use crate::frame::Envelope;
use crate::ids::{RoomMs, UserId};
use crate::message::{ChatText, EarlierChat, Kind, Message};
use crate::time::LocalTime;

use super::mesh::{FrameDigest, FrameKey, digest};
use super::{Event, Session, raw_key};

/// Most chat messages a session keeps, and the host offers on one new link.
pub const CHAT_HISTORY_MAX: usize = 50;

/// Most bytes of chat frames a session keeps (32 KiB: 50 messages of
/// ordinary length, at least 15 of the longest).
pub const CHAT_HISTORY_MAX_BYTES: usize = 32 * 1024;

/// Digests of chat frames shown that a session remembers, so a message is
/// shown once however it arrives (oldest forgotten first).
pub const MAX_SEEN_CHATS: usize = 256;

/// The chat frames kept for late joiners, and the digests of those shown.
#[derive(Default)]
pub(crate) struct ChatLog {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    seen: BTreeSet<FrameDigest>,
    seen_order: VecDeque<FrameDigest>,
}

impl fmt::Debug for ChatLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The frames hold chat text, which stays out of logs.
        write!(
            f,
            "ChatLog({} frames, {} bytes, {} seen)",
            self.frames.len(),
            self.bytes,
            self.seen.len()
        )
    }
}

impl ChatLog {
    /// Remembers a chat frame about to be shown; whether it is new (not
    /// shown before). A new one is kept for late joiners.
    pub(crate) fn show(&mut self, frame: &[u8]) -> bool {
        let d = digest(frame);
        if self.seen.contains(&d) {
            return false;
        }
        self.seen.insert(d);
        self.seen_order.push_back(d);
        while self.seen_order.len() > MAX_SEEN_CHATS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.frames.push_back(frame.to_vec());
        self.bytes = self.bytes.saturating_add(frame.len());
        while self.frames.len() > CHAT_HISTORY_MAX || self.bytes > CHAT_HISTORY_MAX_BYTES {
            let Some(old) = self.frames.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.len());
        }
        true
    }

    /// Whether a chat frame with digest `d` was shown.
    pub(crate) fn was_shown(&self, d: &FrameDigest) -> bool {
        self.seen.contains(d)
    }

    /// The kept frames, oldest first.
    pub(crate) fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(Vec::as_slice)
    }

    /// Number of frames kept and their total size.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.frames.len(), self.bytes)
    }
}

/// An earlier chat message that passed every check.
#[derive(Debug)]
pub(super) struct Earlier {
    user: UserId,
    text: ChatText,
    issued_at: RoomMs,
    key: FrameKey,
    digest: FrameDigest,
}

impl Session {
    /// Host: offers the chat history to `peer`, a new link (after its
    /// `Bind` and `Roster`), oldest first.
    pub(super) fn send_history(&mut self, peer: UserId, now: LocalTime) {
        if !self.is_host {
            return;
        }
        let offered: Vec<EarlierChat> = self
            .chat_log
            .frames()
            .filter(|f| {
                Envelope::parse(f).is_ok_and(|env| self.lookup(env.signer(), now).is_some())
            })
            .take(CHAT_HISTORY_MAX)
            .filter_map(|f| EarlierChat::new(f.to_vec()).ok())
            .collect();
        for earlier in offered {
            if let Ok(bytes) = self.sign(&Message::ChatHistory(earlier), now) {
                self.send(peer, channels::CONTROL.id, bytes);
            }
        }
    }

    /// Rule 10 for a `ChatHistory` from `from`: the carried frame must be a
    /// `Chat` of this room that a known member signed, admitted; no
    /// freshness rules. `Ok(None)` when it was already shown.
    pub(super) fn check_earlier(
        &self,
        from: UserId,
        earlier: &EarlierChat,
        now: LocalTime,
    ) -> Result<Option<Earlier>, DropReason> {
        if self
            .links
            .get(&from)
            .is_none_or(|l| l.earlier_received >= CHAT_HISTORY_MAX)
        {
            return Err(DropReason::RateLimited);
        }
        let bytes = earlier.frame();
        let env = Envelope::parse(bytes).map_err(|e| DropReason::from(&e))?;
        if env.kind() != Kind::Chat {
            return Err(DropReason::Malformed);
        }
        let d = digest(bytes);
        if self.chat_log.was_shown(&d)
            || raw_key(&env, bytes).is_some_and(|k| self.dedupe.is_duplicate(&k, &d))
        {
            return Ok(None);
        }
        let signer = self
            .lookup(env.signer(), now)
            .ok_or(DropReason::UnknownSigner)?;
        let verified = env.verify(&signer.key).map_err(|e| DropReason::from(&e))?;
        let frame = verified.decode().map_err(|e| DropReason::from(&e))?;
        let h = *frame.header();
        if h.room != self.cfg.room {
            return Err(DropReason::WrongRoom);
        }
        if h.epoch > self.epoch {
            return Err(DropReason::UnknownEpoch);
        }
        if self.refused_not_admitted(&signer, Kind::Chat) {
            return Err(DropReason::NotAdmitted);
        }
        let Message::Chat(text) = frame.message() else {
            return Err(DropReason::Malformed);
        };
        Ok(Some(Earlier {
            user: signer.user,
            text: text.clone(),
            issued_at: h.issued_at,
            key: (frame.signer(), h.epoch, h.seq),
            digest: d,
        }))
    }

    /// An accepted `ChatHistory` from `from`: counts against the link's
    /// bound, and shows the message it carries unless it was shown before.
    pub(super) fn show_earlier(&mut self, from: UserId, earlier: Option<Earlier>, frame: &[u8]) {
        if let Some(l) = self.links.get_mut(&from) {
            l.earlier_received = l.earlier_received.saturating_add(1);
        }
        let Some(e) = earlier else {
            return;
        };
        // A live copy that arrives later is an exact duplicate.
        self.dedupe.insert(e.key, e.digest);
        if self.chat_log.show(frame) {
            self.event(Event::Chat {
                from: e.user,
                text: e.text,
                earlier: Some(e.issued_at),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_by_count_and_by_bytes() {
        let mut log = ChatLog::default();
        for i in 0..(CHAT_HISTORY_MAX + 7) {
            assert!(log.show(format!("frame {i}").as_bytes()));
        }
        assert_eq!(log.size().0, CHAT_HISTORY_MAX);
        assert_eq!(log.frames().next(), Some(&b"frame 7"[..]), "oldest first");
        let mut log = ChatLog::default();
        let big = vec![7u8; 2000];
        for i in 0..40u8 {
            let mut f = big.clone();
            f[0] = i;
            log.show(&f);
        }
        let (n, bytes) = log.size();
        assert!(bytes <= CHAT_HISTORY_MAX_BYTES);
        assert_eq!(n, CHAT_HISTORY_MAX_BYTES / 2000);
    }

    #[test]
    fn a_frame_is_shown_once_and_the_memory_is_bounded() {
        let mut log = ChatLog::default();
        assert!(log.show(b"a"));
        assert!(!log.show(b"a"));
        assert!(log.was_shown(&digest(b"a")));
        for i in 0..MAX_SEEN_CHATS {
            log.show(format!("{i}").as_bytes());
        }
        assert!(!log.was_shown(&digest(b"a")), "oldest forgotten");
        assert_eq!(log.seen.len(), MAX_SEEN_CHATS);
    }
}
