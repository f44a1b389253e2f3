//! Asking the host (docs/protocol.md §4.2 *Asking the host*).
//!
//! A member may ask the host to play, pause or jump to a position when its
//! role or the room policy does not let it do that itself. The ask travels
//! as an ordinary `Request`; the host holds it (at most one per member, at
//! most [`MAX_PENDING_ASKS`] in all) until its user accepts it — the host
//! then signs the command itself, so control stays host-signed — or
//! dismisses it (`Refuse` with `dismissed`). Asks are limited per member by
//! [`super::DEFAULT_ASK_LIMIT`] on top of the request limit.

use std::collections::BTreeMap;

use crate::ids::{PositionMs, Seq, UserId};
use crate::message::{Buffering, Permissions, Policy, RequestedCommand};
use crate::time::{LocalTime, MediaPos};

use super::types::UserCommand;

/// Most asks the host holds for its decision at once (one per member; a
/// newer ask of a member replaces its older one). When full, an ask of a
/// member without one waiting is refused (`too many pending`).
pub const MAX_PENDING_ASKS: usize = 8;

/// What a member may ask the host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskFor {
    /// Play from where the room is.
    Play,
    /// Pause.
    Pause,
    /// Jump to this position.
    Seek(MediaPos),
}

impl AskFor {
    /// The ask a request stands for, if that command can be asked for
    /// (play, pause, seek); `None` for the rest (rate, load, queue moves),
    /// which only the policy can allow.
    #[must_use]
    pub fn from_request(cmd: &RequestedCommand) -> Option<Self> {
        match cmd {
            RequestedCommand::Play => Some(Self::Play),
            RequestedCommand::Pause => Some(Self::Pause),
            RequestedCommand::Seek { position } => Some(Self::Seek(position.to_media_pos())),
            _ => None,
        }
    }

    /// The request that carries this ask on the wire.
    #[must_use]
    pub fn to_request(self) -> RequestedCommand {
        match self {
            Self::Play => RequestedCommand::Play,
            Self::Pause => RequestedCommand::Pause,
            Self::Seek(p) => RequestedCommand::Seek {
                position: PositionMs::from_media_pos(p),
            },
        }
    }

    /// The command the host signs when it accepts.
    #[must_use]
    pub fn to_command(self) -> UserCommand {
        match self {
            Self::Play => UserCommand::Play,
            Self::Pause => UserCommand::Pause,
            Self::Seek(p) => UserCommand::Seek(p),
        }
    }

    /// `play`, `pause` or `seek` (for scripts and JSON).
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Play => "play",
            Self::Pause => "pause",
            Self::Seek(_) => "seek",
        }
    }

    /// The target of a seek, whole ms; `None` for play and pause.
    #[must_use]
    pub const fn position_ms(&self) -> Option<u64> {
        match self {
            Self::Seek(p) => Some(p.as_millis()),
            Self::Play | Self::Pause => None,
        }
    }

    /// Plain words after "asks to" / "Ask the host to": `pause`, `play`,
    /// `jump to 1:23`.
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            Self::Play => "play".to_owned(),
            Self::Pause => "pause".to_owned(),
            Self::Seek(p) => format!("jump to {}", clock_text(*p)),
        }
    }
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock_text(p: MediaPos) -> String {
    let secs = p.as_micros() / 1_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// An ask waiting for the host's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingAsk {
    /// Who asks.
    pub member: UserId,
    /// For what.
    pub what: AskFor,
    /// The `seq` of its request frame (named by the `Refuse` that
    /// dismisses it).
    pub request_seq: Seq,
    /// When it arrived (local time).
    pub at: LocalTime,
}

/// The host's pending asks, at most one per member and
/// [`MAX_PENDING_ASKS`] in all.
#[derive(Debug, Default)]
pub(crate) struct AskTable {
    asks: BTreeMap<UserId, PendingAsk>,
}

impl AskTable {
    /// Holds `ask`, replacing the member's earlier one. `false` when the
    /// table is full (and the member had none waiting).
    pub(crate) fn insert(&mut self, ask: PendingAsk) -> bool {
        if !self.asks.contains_key(&ask.member) && self.asks.len() >= MAX_PENDING_ASKS {
            return false;
        }
        self.asks.insert(ask.member, ask);
        true
    }

    /// Takes the member's ask out.
    pub(crate) fn remove(&mut self, member: UserId) -> Option<PendingAsk> {
        self.asks.remove(&member)
    }

    /// Forgets every ask; whether there were any.
    pub(crate) fn clear(&mut self) -> bool {
        let had = !self.asks.is_empty();
        self.asks.clear();
        had
    }

    /// Oldest first.
    pub(crate) fn list(&self) -> Vec<PendingAsk> {
        let mut v: Vec<PendingAsk> = self.asks.values().copied().collect();
        v.sort_by_key(|a| a.at);
        v
    }
}

/// One sentence for the host's list: "bob asks to pause."
#[must_use]
pub fn ask_text(name: &str, what: AskFor) -> String {
    format!("{name} asks to {}.", what.text())
}

/// The room's policy in plain words, for everyone in the room (the page
/// and `watchparty status` show it): who may control what, how to ask, and
/// what happens when someone is buffering.
#[must_use]
pub fn policy_text(p: &Policy) -> String {
    let mut can = Vec::new();
    let c = p.controllers;
    if c.contains(Permissions::PLAY_PAUSE) {
        can.push("play and pause");
    }
    if c.contains(Permissions::SEEK) {
        can.push("jump in the video");
    }
    if c.contains(Permissions::RATE) {
        can.push("change the speed");
    }
    if c.contains(Permissions::LOAD) {
        can.push("change the video and the queue");
    }
    let controllers = match can.as_slice() {
        [] => "Controllers can only ask the host, like viewers.".to_owned(),
        [one] => format!("Controllers can {one}."),
        [init @ .., last] => format!("Controllers can {} and {last}.", init.join(", ")),
    };
    let buffering = match p.buffering {
        Buffering::WaitForEveryone => format!(
            "When someone's video is loading, the room waits for them (up to {} s).",
            p.wait_timeout_ms.div_ceil(1000)
        ),
        Buffering::LaggardsCatchUp => {
            "When someone's video is loading, the room plays on and they catch up.".to_owned()
        }
    };
    format!(
        "The host controls playback. {controllers} Viewers watch and can ask the host to \
         pause, play or jump. {buffering}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MAX_WAIT_TIMEOUT_MS;

    fn user(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn ask(n: u64, at: i64) -> PendingAsk {
        PendingAsk {
            member: user(n),
            what: AskFor::Pause,
            request_seq: Seq::new(1).unwrap(),
            at: LocalTime::from_millis(at),
        }
    }

    #[test]
    fn one_ask_per_member_and_a_bounded_table() {
        let mut t = AskTable::default();
        for n in 1..=MAX_PENDING_ASKS as u64 {
            assert!(t.insert(ask(n, i64::try_from(n).unwrap())));
        }
        assert!(!t.insert(ask(100, 100)), "full");
        // A member with an ask waiting replaces it, even when full.
        let mut newer = ask(1, 200);
        newer.what = AskFor::Play;
        assert!(t.insert(newer));
        let list = t.list();
        assert_eq!(list.len(), MAX_PENDING_ASKS);
        assert_eq!(list.last().unwrap().what, AskFor::Play, "oldest first");
        assert!(t.remove(user(1)).is_some());
        assert!(t.remove(user(1)).is_none());
        assert!(t.insert(ask(100, 300)));
        assert!(t.clear());
        assert!(!t.clear());
    }

    #[test]
    fn asks_and_policy_read_as_plain_words() {
        assert_eq!(ask_text("bob", AskFor::Pause), "bob asks to pause.");
        assert_eq!(
            AskFor::Seek(MediaPos::from_millis(83_400)).text(),
            "jump to 1:23"
        );
        assert_eq!(
            AskFor::Seek(MediaPos::from_millis(3_723_000)).text(),
            "jump to 1:02:03"
        );
        let mut p = super::super::DEFAULT_POLICY;
        p.controllers = Permissions::PLAY_PAUSE;
        p.buffering = Buffering::WaitForEveryone;
        p.wait_timeout_ms = 10_000;
        assert_eq!(
            policy_text(&p),
            "The host controls playback. Controllers can play and pause. Viewers watch and \
             can ask the host to pause, play or jump. When someone's video is loading, the \
             room waits for them (up to 10 s)."
        );
        p.controllers = Permissions::from_bits(0x0f).unwrap();
        p.buffering = Buffering::LaggardsCatchUp;
        p.wait_timeout_ms = MAX_WAIT_TIMEOUT_MS;
        let text = policy_text(&p);
        assert!(
            text.contains(
                "Controllers can play and pause, jump in the video, change the speed and \
                 change the video and the queue."
            ),
            "{text}"
        );
        assert!(text.contains("plays on and they catch up"), "{text}");
        p.controllers = Permissions::from_bits(0).unwrap();
        assert!(policy_text(&p).contains("Controllers can only ask the host"));
    }
}
