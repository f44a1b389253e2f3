//! Commands from page script (`room.command({type, …})`), parsed before
//! anything is sent. Load and queue commands name catalog items; the driver
//! looks up their hash and duration over REST before the session signs.

use serde::Deserialize;
use watchparty_peer::ids::{Role, UserId};
use watchparty_peer::message::{Buffering, MAX_QUEUE_ITEMS, Permissions, Policy};
use watchparty_peer::session::AskFor;
use watchparty_peer::time::{MediaPos, Rate};

/// A user id or catalog id given as a number or a decimal string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IdRef {
    /// `7`
    Num(u64),
    /// `"7"`
    Str(String),
}

impl IdRef {
    fn get(&self) -> Result<u64, String> {
        match self {
            Self::Num(n) => Ok(*n),
            Self::Str(s) => s.parse().map_err(|_| format!("`{s}` is not an id")),
        }
    }

    /// As a user id.
    ///
    /// # Errors
    /// A message for the page.
    pub fn user(&self) -> Result<UserId, String> {
        UserId::new(self.get()?).map_err(|e| e.to_string())
    }

    /// As a catalog id.
    ///
    /// # Errors
    /// A message for the page.
    pub fn media(&self) -> Result<i64, String> {
        i64::try_from(self.get()?).map_err(|_| "media id out of range".to_owned())
    }
}

/// A command as page script writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JsCommand {
    /// Play.
    Play,
    /// Pause.
    Pause,
    /// Seek.
    Seek {
        /// Target, ms.
        position_ms: f64,
    },
    /// Rate.
    Rate {
        /// e.g. 1.0.
        rate: f64,
    },
    /// Load a catalog item.
    Load {
        /// Catalog id.
        media_id: IdRef,
    },
    /// Replace the queue.
    Queue {
        /// Catalog ids.
        media_ids: Vec<IdRef>,
    },
    /// Next item.
    Next,
    /// Previous item.
    Previous,
    /// Jump to an index.
    Jump {
        /// Queue index.
        index: u16,
    },
    /// Chat.
    Chat {
        /// ≤ 500 chars.
        text: String,
    },
    /// Reaction.
    Reaction {
        /// A short emoji.
        emoji: String,
    },
    /// Change a member's role (host).
    SetRole {
        /// The member.
        member: IdRef,
        /// `controller` or `viewer`.
        role: String,
    },
    /// Remove a member (host).
    Kick {
        /// The member.
        member: IdRef,
    },
    /// Hand the room over (host).
    Handoff {
        /// The member.
        member: IdRef,
    },
    /// Change the policy (host); absent fields keep their value.
    Policy {
        /// `wait_for_everyone` or `laggards_catch_up`.
        buffering: Option<String>,
        /// Watchdog, ms.
        wait_timeout_ms: Option<u32>,
        /// Permission bits for controllers.
        controllers: Option<u8>,
    },
    /// Stop following the room.
    FreeWatch,
    /// Follow the room again.
    Resync,
    /// Ask the host (`what`: `play`, `pause` or `seek` with `position_ms`).
    Ask {
        /// `play`, `pause` or `seek`.
        what: String,
        /// Target of a `seek`, ms.
        position_ms: Option<f64>,
    },
    /// Host: carry out a member's pending ask.
    AcceptAsk {
        /// The member who asked.
        member: IdRef,
    },
    /// Host: say no to a member's pending ask.
    DismissAsk {
        /// The member who asked.
        member: IdRef,
    },
    /// Host: admit a member by hand (it joined without the invite link's
    /// admission secret; docs/protocol.md §2.2).
    Approve {
        /// The member.
        member: IdRef,
    },
}

/// Parses a command from its JSON text.
///
/// # Errors
/// A message naming what is wrong (never echoing chat text).
pub fn parse(json: &str) -> Result<JsCommand, String> {
    let cmd: JsCommand = serde_json::from_str(json).map_err(|e| {
        let msg = e.to_string();
        // serde quotes offending values; keep only the rule.
        let rule = msg
            .split(['`', '"'])
            .next()
            .unwrap_or("invalid command")
            .trim();
        format!("invalid command: {rule}")
    })?;
    if let JsCommand::Queue { media_ids } = &cmd
        && media_ids.len() > MAX_QUEUE_ITEMS
    {
        return Err(format!("a queue holds at most {MAX_QUEUE_ITEMS} items"));
    }
    Ok(cmd)
}

/// A seek target from milliseconds.
///
/// # Errors
/// Negative or not finite.
pub fn position(ms: f64) -> Result<MediaPos, String> {
    if !ms.is_finite() || ms < 0.0 {
        return Err("position_ms must be a finite number >= 0".into());
    }
    Ok(MediaPos::from_secs_f64(ms / 1000.0))
}

/// A playback rate.
///
/// # Errors
/// Not finite or out of the protocol's range.
pub fn rate(r: f64) -> Result<Rate, String> {
    if !r.is_finite() || r <= 0.0 {
        return Err("rate must be a finite number > 0".into());
    }
    let clamped = Rate::from_f64_clamped(r);
    if (clamped.as_f64() - r).abs() > 1e-6 {
        return Err(format!(
            "rate must be within {}..={}",
            Rate::MIN.as_f64(),
            Rate::MAX.as_f64()
        ));
    }
    Ok(clamped)
}

/// What an `ask` command asks for.
///
/// # Errors
/// An unknown `what`, or a `seek` without a valid position.
pub fn ask(what: &str, position_ms: Option<f64>) -> Result<AskFor, String> {
    match (what, position_ms) {
        ("play", _) => Ok(AskFor::Play),
        ("pause", _) => Ok(AskFor::Pause),
        ("seek", Some(ms)) => Ok(AskFor::Seek(position(ms)?)),
        ("seek", None) => Err("asking to seek needs position_ms".into()),
        _ => Err("what must be `play`, `pause` or `seek`".into()),
    }
}

/// `controller` or `viewer`.
///
/// # Errors
/// Anything else.
pub fn guest_role(s: &str) -> Result<Role, String> {
    match s {
        "controller" => Ok(Role::Controller),
        "viewer" => Ok(Role::Viewer),
        _ => Err("role must be `controller` or `viewer`".into()),
    }
}

/// The current policy with the given fields changed.
///
/// # Errors
/// An unknown buffering mode or permission bit.
pub fn policy(
    current: Policy,
    buffering: Option<&str>,
    wait_timeout_ms: Option<u32>,
    controllers: Option<u8>,
) -> Result<Policy, String> {
    let mut p = current;
    if let Some(b) = buffering {
        p.buffering = match b {
            "wait_for_everyone" => Buffering::WaitForEveryone,
            "laggards_catch_up" => Buffering::LaggardsCatchUp,
            _ => return Err("buffering must be `wait_for_everyone` or `laggards_catch_up`".into()),
        };
    }
    if let Some(ms) = wait_timeout_ms {
        p.wait_timeout_ms = ms;
    }
    if let Some(bits) = controllers {
        p.controllers = Permissions::from_bits(bits).map_err(|e| e.to_string())?;
    }
    Ok(p)
}
