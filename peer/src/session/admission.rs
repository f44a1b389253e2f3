//! Admission to a pinned room (docs/protocol.md §2.2): the one rule both
//! drivers act on.
//!
//! A member certificate only says that the server let someone in, and
//! peers learn the server key from the server itself, so a hostile server
//! could certify a "member" of its own. In a room whose invite link carried
//! the host key *and* the room's admission secret, membership also needs
//! the host's approval:
//!
//! - a joiner holding the secret sends the host a member-signed `Knock`
//!   whose MAC binds the room, its session key and its user id (with its
//!   `Status`, until it sees itself admitted, and once more on every new
//!   direct link to the host);
//! - the host verifies it (a wrong MAC drops as `not_admitted`) and lists
//!   the member in its signed `Roster` (the host itself included, so a
//!   former host stays admitted after a handoff); the latest `Roster` of
//!   the highest epoch wins;
//! - the host, and every follower that pinned the host key and holds the
//!   secret, accepts member frames other than `Knock` and `ClockPing` only
//!   from members the roster names with exactly the signing key
//!   (`not_admitted` otherwise). Without a pin, nothing is enforced: the
//!   host key itself came from the server;
//! - the host's user may admit a member by hand ([`super::UserCommand::Approve`]),
//!   e.g. one that opened the room without the link.
//!
//! So that honest rooms drop nothing, a joiner not admitted yet and
//! without a direct link to the host sends only its `Knock` (its `Status`
//! follows as soon as a `Roster` names it), and every new member link
//! starts with the latest `Roster` (before any member frame forwarded on
//! it).

use crate::admit::AdmitSecret;
use crate::channels;
use crate::crypto::PublicKey;
use crate::ids::{Epoch, Seq, UserId};
use crate::message::{Admitted, Kind, MAX_ADMITTED, Message, SignerClass};
use crate::time::LocalTime;

use super::{CommandError, Session, Signer};

impl Session {
    /// The room's admission secret, when this session holds it (from the
    /// invite link, or derived by the host from its room key).
    #[must_use]
    pub fn admit_secret(&self) -> Option<AdmitSecret> {
        self.cfg.admit_secret
    }

    /// Whether this peer enforces admission: it holds the secret and is (or
    /// was, before its signed handoff) the host, or is a follower that
    /// pinned the host key.
    #[must_use]
    pub fn admission_enforced(&self) -> bool {
        self.cfg.admit_secret.is_some()
            && (self.is_host || self.hosted || self.verifier.pinned_host().is_some())
    }

    /// Whether the host's latest `Roster` (ours, as host) names `user` with
    /// the key its certificate carries. The host is always admitted.
    #[must_use]
    pub fn is_admitted(&self, user: UserId) -> bool {
        if self.host() == Some(user) {
            return true;
        }
        let key = if Some(user) == self.me {
            Some(self.identity.public_key())
        } else {
            self.members.get(&user).map(|m| m.key)
        };
        key.is_some_and(|k| self.admitted.get(&user) == Some(&k))
    }

    /// Whether a frame of `kind` by `signer` must be dropped
    /// (`not_admitted`): a member frame other than `Knock`/`ClockPing` from
    /// a member the roster does not name with exactly this key.
    pub(super) fn refused_not_admitted(&self, signer: &Signer, kind: Kind) -> bool {
        self.admission_enforced()
            && kind.signer() == SignerClass::Member
            && !matches!(kind, Kind::Knock | Kind::ClockPing)
            && !signer.is_host
            && self.admitted.get(&signer.user) != Some(&signer.key)
    }

    /// Host: whether a `Knock` carries the right MAC for its signer (rule
    /// 10; followers do not check it).
    pub(super) fn knock_valid(&self, signer: &Signer, mac: &[u8]) -> bool {
        match self.cfg.admit_secret {
            Some(s) if self.is_host => s.verify_knock(self.cfg.room, &signer.key, signer.user, mac),
            _ => true,
        }
    }

    /// Host: a verified `Knock` of `signer`, delivered by `from`: admit it
    /// (and tell everyone), or, already admitted with this key, hand the
    /// roster to a knocker that knocked directly (it missed it).
    pub(super) fn on_knock(&mut self, signer: &Signer, from: UserId, now: LocalTime) {
        if !self.is_host || self.cfg.admit_secret.is_none() {
            return;
        }
        if self.admitted.get(&signer.user) == Some(&signer.key) {
            if from == signer.user {
                self.send_roster(Some(from), now);
            }
            return;
        }
        self.admit_member(signer.user, signer.key, now);
    }

    /// Host: our user approves current member `member` by hand (one that
    /// joined without the invite link's secret), with the key of its
    /// certificate.
    ///
    /// # Errors
    /// [`CommandError::NotHost`] unless we host; [`CommandError::UnknownMember`]
    /// for someone not in the room; [`CommandError::InvalidState`] when the
    /// roster is full of members in the room.
    pub(super) fn approve(&mut self, member: UserId, now: LocalTime) -> Result<(), CommandError> {
        if !self.is_host {
            return Err(CommandError::NotHost);
        }
        let key = self.current_member_key(member)?;
        if self.admitted.get(&member) == Some(&key) {
            return Ok(());
        }
        if self.admit_member(member, key, now) {
            Ok(())
        } else {
            Err(CommandError::InvalidState)
        }
    }

    /// Host: lists (`user`, `key`) in our roster and tells everyone;
    /// whether it fit ([`MAX_ADMITTED`]: a member no longer in the room is
    /// forgotten first).
    fn admit_member(&mut self, user: UserId, key: PublicKey, now: LocalTime) -> bool {
        if !self.admitted.contains_key(&user) && self.admitted.len() >= MAX_ADMITTED {
            let host = self.me;
            let gone = self
                .admitted
                .keys()
                .copied()
                .find(|u| Some(*u) != host && !self.members.get(u).is_some_and(|m| m.current));
            match gone {
                Some(u) => {
                    self.admitted.remove(&u);
                }
                None => return false, // every entry is a member in the room
            }
        }
        self.admitted.insert(user, key);
        self.send_roster(None, now);
        true
    }

    /// Host: our signed `Roster`, to `to` or (None) to every neighbour.
    pub(super) fn send_roster(&mut self, to: Option<UserId>, now: LocalTime) {
        if !self.is_host || self.cfg.admit_secret.is_none() {
            return;
        }
        if let Some(me) = self.me {
            self.admitted.insert(me, self.identity.public_key());
        }
        let list: Vec<Admitted> = self
            .admitted
            .iter()
            .take(MAX_ADMITTED)
            .map(|(member, key)| Admitted {
                member: *member,
                key: *key,
            })
            .collect();
        let Ok(bytes) = self.sign(&Message::Roster(list), now) else {
            return;
        };
        match to {
            Some(peer) => self.send(peer, channels::CONTROL.id, bytes),
            None => self.broadcast(channels::CONTROL.id, &bytes, None),
        }
    }

    /// Follower: the host's `Roster` (epoch, seq): the newest replaces the
    /// admitted members. Whether it did. Once it names us, our withheld
    /// `Status` goes out at once (see [`Session::status_withheld`]).
    pub(super) fn on_roster(&mut self, list: &[Admitted], epoch: Epoch, seq: Seq) -> bool {
        if self.is_host || self.roster_version.is_some_and(|v| v >= (epoch, seq)) {
            return false;
        }
        let was = self.me.is_some_and(|me| self.is_admitted(me));
        self.roster_version = Some((epoch, seq));
        self.admitted = list.iter().map(|a| (a.member, a.key)).collect();
        if !was && self.me.is_some_and(|me| self.is_admitted(me)) && self.next_status_at.is_some() {
            self.next_status_at = Some(self.now);
        }
        true
    }

    /// Follower holding the secret, not admitted yet, without a direct
    /// link to the host: its `Status` would only be dropped by the
    /// neighbours (`not_admitted`), so only the `Knock` goes out (through
    /// them, to the host) until the host's `Roster` names us.
    pub(super) fn status_withheld(&self) -> bool {
        let host_linked = self.host().is_some_and(|h| self.links.contains_key(&h));
        self.cfg.admit_secret.is_some()
            && !host_linked
            && !self.me.is_some_and(|me| self.is_admitted(me))
    }

    /// Follower: a new link to a member starts with the latest host
    /// `Roster` we hold (on the ordered control channel, so the member
    /// knows who is admitted before any member frame we forward to it).
    pub(super) fn roster_to_new_link(&mut self, peer: UserId) {
        if self.is_host || Some(peer) == self.host() {
            return;
        }
        if let Some(roster) = self.last_roster_frame.clone() {
            self.send(peer, channels::CONTROL.id, roster);
        }
    }

    /// Follower holding the secret: the `Knock` to send before a `Status`
    /// (while not admitted, or once on a new link to the host), signed.
    pub(super) fn knock_frame(&mut self, now: LocalTime) -> Option<Vec<u8>> {
        let secret = self.cfg.admit_secret?;
        let me = self.me?;
        if self.is_host || (self.is_admitted(me) && !self.knock_due) {
            return None;
        }
        self.knock_due = false;
        let key: PublicKey = self.identity.public_key();
        let mac = secret.knock_mac(self.cfg.room, &key, me);
        self.sign(&Message::Knock(mac), now).ok()
    }
}
