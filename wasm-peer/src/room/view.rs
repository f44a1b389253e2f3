//! The JSON shapes the page sees: events (`onEvent`) and the status
//! snapshot (`status()`), documented in `/work/js-api.md` (kept with the
//! repo as docs/js-api.md when published). User ids are JSON numbers,
//! media ids strings.

use serde_json::{Value, json};
use watchparty_peer::acceptance::DropReason;
use watchparty_peer::ids::{Role, UserId};
use watchparty_peer::message::{Buffering, Policy, Readiness};
use watchparty_peer::session::{
    Event, RefusedHostChange, Session, ask_text, no_longer_waited_for_text, policy_text,
};
use watchparty_peer::signaling::{EndReason, ErrorCode};
use watchparty_peer::sync::SyncEvent;
use watchparty_peer::time::{LocalTime, TimeDelta};

/// `host`, `controller` or `viewer`.
#[must_use]
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Controller => "controller",
        Role::Viewer => "viewer",
    }
}

/// Milliseconds as a float.
#[must_use]
pub fn ms(d: TimeDelta) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// snake_case name of a serde-serialized unit enum value.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".to_owned())
}

/// The code of a server error, as in signaling (`room_full`, …).
#[must_use]
pub fn error_code(code: ErrorCode) -> String {
    serde_name(&code)
}

/// The room's playback now: `{playing, position_ms, rate}`.
#[must_use]
pub fn playback(session: &Session, now: LocalTime) -> Option<Value> {
    let s = session.playback()?;
    let room = session.sync().room_time(now)?;
    Some(json!({
        "playing": !s.paused,
        "position_ms": s.position_at(room).as_micros() as f64 / 1000.0,
        "rate": s.rate.as_f64(),
    }))
}

/// The policy as an object; `text` says it in plain words for everyone.
#[must_use]
pub fn policy(p: Policy) -> Value {
    json!({
        "text": policy_text(&p),
        "buffering": match p.buffering {
            Buffering::WaitForEveryone => "wait_for_everyone",
            Buffering::LaggardsCatchUp => "laggards_catch_up",
        },
        "wait_timeout_ms": p.wait_timeout_ms,
        "controllers": p.controllers.bits(),
    })
}

/// The host's pending asks, oldest first: `[{member, name, what,
/// position_ms, text}]` (`what`: `play`, `pause` or `seek`; `text`: "bob
/// asks to pause."). Empty on a follower.
#[must_use]
pub fn asks(session: &Session) -> Value {
    let list: Vec<Value> = session
        .pending_asks()
        .into_iter()
        .map(|a| {
            let name = session.member_label(a.member);
            json!({
                "member": a.member.get(), "name": name, "what": a.what.label(),
                "position_ms": a.what.position_ms(), "text": ask_text(&name, a.what),
            })
        })
        .collect();
    Value::Array(list)
}

/// The queue event: `{type: "queue", items: [media ids], index}`.
#[must_use]
pub fn queue(session: &Session) -> Value {
    let q = session.queue();
    let items: Vec<&str> = q.items().iter().map(|i| i.media.as_str()).collect();
    json!({ "type": "queue", "items": items, "index": q.current() })
}

fn readiness(r: Readiness) -> &'static str {
    match r {
        Readiness::Loading => "loading",
        Readiness::Ready => "ready",
        Readiness::Buffering => "buffering",
        Readiness::Ended => "ended",
        Readiness::Failed => "failed",
    }
}

/// A session event as the page sees it; `None` for events that are only
/// driver business (`LoadMedia`) or reported otherwise.
#[must_use]
pub fn event(e: &Event, session: Option<&Session>, wall_ms: f64) -> Option<Value> {
    let me = session.and_then(Session::user);
    Some(match e {
        Event::Joined {
            you,
            role,
            host,
            epoch,
        } => json!({
            "type": "joined", "you": you.get(), "role": role_name(*role),
            "host": host.map(UserId::get), "epoch": epoch.0,
        }),
        Event::Dropped { from, reason } => {
            json!({ "type": "dropped", "from": from.get(), "reason": reason.label() })
        }
        Event::CertificateRefused { user, error } => json!({
            "type": "error", "code": "certificate_refused",
            "message": format!("a member certificate was refused ({error})"),
            "user": user.map(UserId::get),
        }),
        Event::ServerKeyMismatch => json!({
            "type": "error", "code": "server_key_mismatch",
            "message": "the server presented a different signing key",
        }),
        Event::MemberJoined(u) => json!({ "type": "member_joined", "user_id": u.get() }),
        Event::MemberLeft(u) => json!({ "type": "member_left", "user_id": u.get() }),
        Event::HostLeft(u) => json!({ "type": "host_left", "host": u.get() }),
        Event::HandoffAnnounced { new_host } => {
            json!({ "type": "handoff_announced", "host": new_host.get() })
        }
        Event::HostChanged { host, epoch, us } => {
            json!({ "type": "host_changed", "host": host.get(), "epoch": epoch.0, "us": us })
        }
        Event::HostChangeRefused(r) => refused_host_change(r),
        Event::HostReturned { host, epoch } => {
            json!({ "type": "host_returned", "host": host.get(), "epoch": epoch.0 })
        }
        Event::RoomResumed { adopted } => json!({ "type": "room_resumed", "adopted": adopted }),
        Event::RoleChanged { member, role } => json!({
            "type": "role_changed", "member": member.get(), "role": role_name(*role),
        }),
        Event::Kicked(u) => {
            json!({ "type": "kicked", "member": u.get(), "us": Some(*u) == me })
        }
        Event::CertificateExpired(u) => json!({
            "type": "error", "code": "certificate_expired",
            "message": "a member certificate expired", "user": u.get(),
        }),
        Event::LoadMedia(_) => return None,
        Event::QueueChanged => queue(session?),
        Event::PolicyChanged(p) => json!({ "type": "policy", "policy": policy(*p) }),
        // An earlier message (from the host's chat history) carries the
        // time it was sent: the room clock starts at the host's wall clock.
        Event::Chat {
            from,
            text,
            earlier,
        } => json!({
            "type": "chat", "from": from.get(), "text": text.as_str(),
            "at_ms": earlier.map_or(wall_ms, |t| t.0 as f64),
            "earlier": earlier.is_some(),
        }),
        Event::Reaction { from, emoji } => {
            json!({ "type": "reaction", "from": from.get(), "emoji": emoji.as_str() })
        }
        Event::AsksChanged => json!({ "type": "asks", "asks": asks(session?) }),
        Event::RequestRefused { reason } => json!({
            "type": "error", "code": "refused", "message": reason.to_string(),
        }),
        Event::BindingVerified(h) => json!({ "type": "binding_verified", "host": h.get() }),
        Event::BindingMismatch { host, pinned } => json!({
            "type": "error", "code": "binding_mismatch", "host": host.get(), "pinned": pinned,
            "message": "the connection to the host is not the one the host signed; closed",
        }),
        Event::BindingMissing { host } => json!({
            "type": "error", "code": "binding_missing", "host": host.get(),
            "message": "the connection to the host could not be verified in time; closed",
        }),
        Event::Waiting(users) => json!({
            "type": "waiting", "members": users.iter().map(|u| u.get()).collect::<Vec<_>>(),
        }),
        Event::WatchdogExpired(users) => json!({
            "type": "watchdog_expired",
            "members": users.iter().map(|u| u.get()).collect::<Vec<_>>(),
        }),
        Event::NoLongerWaitedFor(u) => {
            let name =
                session.map_or_else(|| format!("member {}", u.get()), |s| s.member_label(*u));
            json!({
                "type": "not_waited_for", "member": u.get(),
                "message": no_longer_waited_for_text(&name), "name": name,
            })
        }
        Event::Sync(s) => match s {
            SyncEvent::UserIntent { attached, .. } => {
                json!({ "type": "user_intent", "attached": attached })
            }
            SyncEvent::Buffering(b) => json!({ "type": "buffering", "buffering": b }),
            SyncEvent::Ended => json!({ "type": "ended" }),
            SyncEvent::ClockJump => json!({ "type": "clock", "state": "jump" }),
            SyncEvent::ClockReady => json!({ "type": "clock", "state": "ready" }),
        },
        Event::ServerError(code) => json!({
            "type": "error", "code": error_code(*code),
            "message": server_error_text(*code),
        }),
        Event::RoomEnded(reason) => json!({ "type": "room_ended", "reason": end_reason(*reason) }),
        #[allow(unreachable_patterns)]
        other => json!({ "type": "session", "detail": format!("{other:?}") }),
    })
}

/// A refused host change (event `host_change_refused`, and `status()`'s
/// `refused_host_change`): who the server named, and a sentence for people.
#[must_use]
pub fn refused_host_change(r: &RefusedHostChange) -> Value {
    json!({
        "type": "host_change_refused", "user_id": r.claimed_host.get(),
        "name": r.name.as_str(), "epoch": r.epoch.0, "host": r.host.map(UserId::get),
        "you_are_host": r.we_are_host, "message": r.message(),
    })
}

/// `closed`, `expired`, `kicked` or `other`.
#[must_use]
pub fn end_reason(r: EndReason) -> String {
    serde_name(&r)
}

/// A short text for a server error code.
#[must_use]
pub fn server_error_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "your sign-in has expired; sign in again",
        ErrorCode::Forbidden => "the server did not allow that",
        ErrorCode::BadRequest => {
            "the server did not understand a message from this page; reload it"
        }
        ErrorCode::UnsupportedProtocol => "this page is older than the server; reload it",
        ErrorCode::NotFound => "that room or member no longer exists",
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::RateLimited => "too many messages at once; wait a moment and try again",
        ErrorCode::Internal => "the server had a problem; try again in a moment",
        ErrorCode::Other => "the server refused that",
    }
}

/// Plain words for a closed signaling connection (the close code and the
/// server's reason stay diagnostics: they are not for people).
#[must_use]
pub fn close_text(code: u16) -> &'static str {
    match code {
        1001 => "the server is restarting",
        1011 | 1013 => "the server is busy or had a problem",
        _ => "the connection to the server dropped",
    }
}

/// Drop counters by reason label (non-zero only).
#[must_use]
pub fn drops(session: &Session) -> Value {
    let mut map = serde_json::Map::new();
    for r in DropReason::ALL {
        let n = session.drops().get(*r);
        if n > 0 {
            map.insert(r.label().to_owned(), json!(n));
        }
    }
    Value::Object(map)
}

/// The per-peer sync facts the session knows: `(rtt_ms, offset_ms,
/// offset_uncertainty_ms, error_ms, readiness)` by user.
#[must_use]
pub fn peer_sync(session: &Session, now: LocalTime) -> Vec<(UserId, Value)> {
    session
        .peers(now)
        .into_iter()
        .map(|p| {
            let report = p.report.as_ref();
            (
                p.user,
                json!({
                    "linked": p.linked,
                    "bound": p.bound,
                    "admitted": p.admitted,
                    "is_host": p.is_host,
                    "rtt_ms": p.clock_round_trip.map(ms),
                    "offset_ms": p.clock.map(|c| ms(c.offset)),
                    "offset_uncertainty_ms": p.clock.map(|c| ms(c.uncertainty)),
                    "error_ms": report.and_then(|r| r.position_error).map(ms),
                    "readiness": report.map(|r| readiness(r.readiness)),
                    "buffering": report.is_some_and(|r| r.readiness == Readiness::Buffering),
                    "detached": report.is_some_and(|r| r.detached),
                    "waited_for": p.hold.map(|h| h.waited_for),
                    "hold_allowance_ms": p.hold.map(|h| ms(h.allowance)),
                    "accepted": p.counters.accepted,
                    "reported_rtt_ms": p.latency.map(|l| ms(l.round_trip.as_delta())),
                    "reported_startup_ms": p.latency.map(|l| ms(l.startup.as_delta())),
                }),
            )
        })
        .collect()
}
