//! DTLS binding of a follower's direct link to the host (docs/protocol.md
//! §7.1 *Binding*): the one rule both drivers act on.
//!
//! The host signs a `Bind` naming the DTLS fingerprints of each direct
//! connection (on channel open; for every open link when it starts
//! hosting, and then once more on each such member's first direct `Status`
//! of the term). The follower compares
//! it with its own connection. In a room whose host key the follower pinned
//! (invite link), the link to the host counts as unproven until a `Bind`
//! verified on it: host control frames arriving over it are dropped
//! (`unbound_link`), no chat or reaction is sent over it, and if no `Bind`
//! verified within [`BIND_DEADLINE`] of the link becoming the host link, it
//! is closed ([`DisconnectReason::BindingMissing`]) and reported
//! ([`Event::BindingMissing`], [`super::SessionStats::bindings_missing`]).
//! A man in the middle that drops the `Bind` therefore gains nothing.

use crate::channels::{self, ChannelId};
use crate::ids::UserId;
use crate::message::{DtlsBinding, Kind, Message, SignerClass};
use crate::time::{LocalTime, TimeDelta};

use super::{DisconnectReason, Event, Output, Session};

/// Pinned room, follower: how long the link to the host may stay without a
/// verified `Bind` before it is closed. The honest host sends `Bind` as the
/// first frame on the link (or right when it starts hosting), so this only
/// runs out when someone removed it.
pub const BIND_DEADLINE: TimeDelta = TimeDelta::from_secs(10);

impl Session {
    /// The host link (follower, pinned host key) whose binding is required.
    fn binding_required_for(&self) -> Option<UserId> {
        if self.is_host || self.verifier.pinned_host().is_none() {
            return None;
        }
        self.host()
    }

    /// Whether `peer` is the host link of a pinned room and no `Bind`
    /// verified on it yet.
    pub(super) fn link_unbound(&self, peer: UserId) -> bool {
        self.binding_required_for() == Some(peer) && !self.links.get(&peer).is_some_and(|l| l.bound)
    }

    /// Whether a frame of `kind` from `from` must be dropped unapplied
    /// (`unbound_link`): host control other than `Bind` over an unbound
    /// host link.
    pub(super) fn refused_unbound(&self, from: UserId, kind: Kind) -> bool {
        kind != Kind::Bind
            && kind.signer() == SignerClass::Host
            && kind.channel().id == channels::CONTROL.id
            && self.link_unbound(from)
    }

    /// Whether sending on `channel` to `to` is withheld: no chat or reaction
    /// over an unbound host link.
    pub(super) fn withheld(&self, to: UserId, channel: ChannelId) -> bool {
        channel == channels::CHAT.id && self.link_unbound(to)
    }

    /// Starts the deadline of a host link that needs a binding, and clears
    /// it on links that no longer do (we became host, the host changed).
    /// Runs after every input.
    pub(super) fn arm_bind_deadlines(&mut self, now: LocalTime) {
        let required = self.binding_required_for();
        for (peer, link) in &mut self.links {
            if Some(*peer) == required && !link.bound {
                link.bind_deadline.get_or_insert(now + BIND_DEADLINE);
            } else {
                link.bind_deadline = None;
            }
        }
    }

    /// The earliest binding deadline.
    pub(super) fn next_bind_deadline(&self) -> Option<LocalTime> {
        self.links.values().filter_map(|l| l.bind_deadline).min()
    }

    /// Closes and reports every link whose binding deadline passed.
    pub(super) fn enforce_bind_deadlines(&mut self, now: LocalTime) {
        let expired: Vec<UserId> = self
            .links
            .iter()
            .filter(|(_, l)| l.bind_deadline.is_some_and(|d| d <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.links.remove(&peer);
            self.stats.bindings_missing = self.stats.bindings_missing.saturating_add(1);
            self.push(Output::Disconnect {
                peer,
                reason: DisconnectReason::BindingMissing,
            });
            self.event(Event::BindingMissing { host: peer });
        }
    }

    /// Host: signs a `Bind` for our direct connection to `peer` (nothing
    /// when the stack exposes no fingerprints).
    pub(super) fn send_bind(&mut self, peer: UserId, now: LocalTime) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let (Some(local), Some(remote)) = (link.local_fingerprint, link.remote_fingerprint) else {
            return;
        };
        let bind = Message::Bind(DtlsBinding {
            peer,
            host_fingerprint: local,
            peer_fingerprint: remote,
        });
        if let Ok(bytes) = self.sign(&bind, now) {
            self.send(peer, channels::CONTROL.id, bytes);
        }
    }

    /// Host: a member we were linked to when we started hosting sent its
    /// own `Status` directly: it knows our epoch now, so it gets the `Bind`
    /// again (the first may have reached it before our host certificate
    /// did, and been dropped as `unknown_epoch`). Once per link and term, so
    /// a `Status` flood draws no `Bind` flood.
    pub(super) fn rebind_on_status(&mut self, from: UserId, signer: UserId, now: LocalTime) {
        if !self.is_host || from != signer {
            return;
        }
        if let Some(l) = self.links.get_mut(&from)
            && l.rebind_on_status
        {
            l.rebind_on_status = false;
            self.send_bind(from, now);
        }
    }

    /// Follower: a `Bind` from the host about our direct connection.
    pub(super) fn on_bind(&mut self, b: &DtlsBinding, from: UserId) {
        let Some(host) = self.host() else { return };
        if Some(b.peer) != self.me || from != host || self.is_host {
            return; // not about our direct connection to the host
        }
        let Some(link) = self.links.get_mut(&host) else {
            return;
        };
        let (Some(remote), Some(local)) = (link.remote_fingerprint, link.local_fingerprint) else {
            return; // the stack exposes no fingerprints: nothing to compare
        };
        if remote == b.host_fingerprint && local == b.peer_fingerprint {
            let first = !link.bound;
            link.bound = true;
            link.bind_deadline = None;
            if first {
                self.event(Event::BindingVerified(host));
            }
        } else {
            self.links.remove(&host);
            self.push(Output::Disconnect {
                peer: host,
                reason: DisconnectReason::FingerprintMismatch,
            });
            let pinned = self.verifier.pinned_host().is_some();
            self.event(Event::BindingMismatch { host, pinned });
        }
    }
}
