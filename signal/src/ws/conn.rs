//! One signaling socket: first-message auth, hello, then the relay loop with
//! rate limit, pings/idle close, bounded send queue and periodic revalidation.
//!
//! Logs carry only message types, sizes and ids — never SDP, candidates,
//! tokens or bodies.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::signaling::{
    BoundedVec, ClientMessage, ClientRelay, ErrorCode, ErrorMessage, MAX_ROSTER, OffererRule,
    PROTOCOL_VERSION, RosterEntry, ServerMessage, SignalError,
};

use super::certs::{self, Subject, peer_room, peer_user};
use super::hub::{
    CLOSE_FORBIDDEN, CLOSE_IDLE, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_UNAUTHORIZED,
    Refusal, Registration, Relay, SocketSlot, UnauthSlot,
};
use super::rate::{Overdrawn, RelayBudget, TokenBucket};
use crate::auth::{AuthUser, authenticate};
use crate::db::now_secs;
use crate::error::ApiError;
use crate::rooms::model::{MemberStatus, Role, RoomId};
use crate::rooms::store;
use crate::state::AppState;

/// What ended a socket (for the log line).
type Outcome = Result<(), &'static str>;

/// Runs one socket to completion.
pub async fn run(
    state: AppState,
    mut socket: WebSocket,
    room: RoomId,
    ip: IpAddr,
    slot: SocketSlot,
    mut unauth: UnauthSlot,
) {
    let _slot = slot;
    let cfg = &state.config.signaling;
    let Some((token, key)) = read_auth(&mut socket, cfg.auth_timeout(), &mut unauth).await else {
        return;
    };
    unauth.authenticating();
    let user = match authenticate(&state, token.as_str()).await {
        Ok(u) => u,
        Err(_) => {
            tracing::info!(%ip, room_id = %room, "signaling auth refused");
            let _ = send_error(
                &mut socket,
                ErrorCode::Unauthorized,
                "invalid or expired token",
            )
            .await;
            close(&mut socket, CLOSE_UNAUTHORIZED, "unauthorized").await;
            return;
        }
    };
    drop(token);
    drop(unauth);
    let reg = match admit(&state, &mut socket, &room, &user, key).await {
        Ok(r) => r,
        Err((code, reason)) => {
            tracing::info!(user_id = user.id, room_id = %room, code, reason, "signaling refused");
            close(&mut socket, code, reason).await;
            return;
        }
    };
    tracing::info!(user_id = user.id, room_id = %room, conn = reg.id, %ip, "signaling connected");
    let outcome = serve(&state, &mut socket, &room, &user, reg).await;
    tracing::info!(user_id = user.id, room_id = %room, outcome = ?outcome, "signaling closed");
}

/// Waits for the first message; it must be a valid `auth`. Closes and
/// returns `None` otherwise, and when the socket is evicted from a full
/// unauthenticated cap (see [`super::hub::UNAUTH_EVICT_AFTER`]).
async fn read_auth(
    socket: &mut WebSocket,
    deadline: Duration,
    unauth: &mut UnauthSlot,
) -> Option<(watchparty_peer::signaling::Token, Option<PublicKey>)> {
    let until = Instant::now() + deadline;
    loop {
        let next = tokio::select! {
            m = tokio::time::timeout_at(until, socket.recv()) => m,
            () = unauth.evicted() => {
                close(socket, CLOSE_UNAUTHORIZED, "no auth while the server is full").await;
                return None;
            }
        };
        let msg = match next {
            Err(_) => {
                close(socket, CLOSE_UNAUTHORIZED, "authentication timeout").await;
                return None;
            }
            Ok(None) => return None,
            Ok(Some(Err(e))) => {
                if is_too_big(e) {
                    close(socket, CLOSE_TOO_BIG, "message too big").await;
                }
                return None;
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return None,
            Message::Binary(_) => {
                close(socket, CLOSE_UNAUTHORIZED, "first message must be auth").await;
                return None;
            }
            Message::Text(t) => {
                return match ClientMessage::from_json(t.as_str()) {
                    Ok(ClientMessage::Auth {
                        token,
                        protocol,
                        key,
                    }) => {
                        if protocol.unwrap_or(1) != PROTOCOL_VERSION {
                            let _ = send_error(
                                socket,
                                ErrorCode::UnsupportedProtocol,
                                "unsupported protocol version",
                            )
                            .await;
                            close(socket, CLOSE_POLICY, "unsupported protocol").await;
                            return None;
                        }
                        Some((token, key))
                    }
                    Err(SignalError::TooLarge(_)) => {
                        close(socket, CLOSE_TOO_BIG, "message too big").await;
                        None
                    }
                    _ => {
                        close(socket, CLOSE_UNAUTHORIZED, "first message must be auth").await;
                        None
                    }
                };
            }
        }
    }
}

/// Authorizes and registers the socket, then sends `hello`.
async fn admit(
    state: &AppState,
    socket: &mut WebSocket,
    room_id: &RoomId,
    user: &AuthUser,
    key: Option<PublicKey>,
) -> Result<Registration, (u16, &'static str)> {
    let cfg = &state.config.signaling;
    let internal = |_| (CLOSE_POLICY, "internal error");
    let room = store::load_room(&state.db, room_id)
        .await
        .map_err(internal)?;
    let member = store::membership(&state.db, room_id, user.id)
        .await
        .map_err(internal)?;
    let (room, role) = match (room, member) {
        (Some(r), Some(m)) if !r.ended && m.status == MemberStatus::Joined => (r, m.role),
        _ => {
            let _ = send_error(
                socket,
                ErrorCode::Forbidden,
                "not a member of this open room",
            )
            .await;
            return Err((CLOSE_FORBIDDEN, "not a member"));
        }
    };
    let Some(key) = key else {
        let _ = send_error(
            socket,
            ErrorCode::BadRequest,
            "auth must carry the session key",
        )
        .await;
        return Err((CLOSE_POLICY, "auth without key"));
    };
    let (epoch, host_registered) = if role == Role::Host {
        let e = certs::register_host_key(state, room_id, user.id, &key)
            .await
            .map_err(|_| (CLOSE_FORBIDDEN, "not the host"))?;
        (e, true)
    } else {
        (room.epoch, false)
    };
    let subject = Subject {
        room: room_id,
        epoch,
        user: user.id,
        name: &user.display_name,
        role,
        key,
    };
    let cert = certs::issue(state, &subject).map_err(internal)?;
    let reg = state
        .hub
        .register(
            room_id.as_str(),
            user.id,
            user.session_id,
            cert.clone(),
            cfg,
        )
        .map_err(|r| match r {
            Refusal::PerRoom => (CLOSE_POLICY, "room connection limit"),
            _ => (CLOSE_POLICY, "connection limit"),
        });
    let reg = match reg {
        Ok(r) => r,
        Err(e) => {
            let _ = send_error(socket, ErrorCode::RateLimited, e.1).await;
            return Err(e);
        }
    };
    // The host's certificate from the persisted key when the host has not
    // connected since the server started.
    if role != Role::Host
        && state
            .hub
            .cert(room_id.as_str(), room.host_user_id)
            .is_none()
        && let Some(k) = room
            .host_public_key
            .as_deref()
            .and_then(|k| PublicKey::from_slice(k).ok())
        && let Ok(Some((name,))) =
            sqlx::query_as::<_, (String,)>("SELECT display_name FROM users WHERE id = ?1")
                .bind(room.host_user_id)
                .fetch_optional(&state.db)
                .await
        && let Ok(c) = certs::issue(
            state,
            &Subject {
                room: room_id,
                epoch: room.epoch,
                user: room.host_user_id,
                name: &name,
                role: Role::Host,
                key: k,
            },
        )
    {
        state.hub.set_cert(room_id.as_str(), room.host_user_id, c);
    }
    let hello = hello(state, room_id, user.id, epoch, cert.clone()).map_err(internal)?;
    send(socket, &hello, cfg.send_timeout())
        .await
        .map_err(|_| (CLOSE_POLICY, "send failed"))?;
    let joined = ServerMessage::MemberJoined {
        member: RosterEntry {
            certificate: cert.clone(),
            online: true,
        },
    };
    state
        .hub
        .broadcast(room_id.as_str(), &joined, Some(user.id));
    if host_registered {
        state.hub.broadcast(
            room_id.as_str(),
            &ServerMessage::HostChanged { certificate: cert },
            Some(user.id),
        );
    }
    let now = now_secs();
    if touch_due(room.last_activity_at, now, state.config.room_idle_timeout) {
        let _ = store::touch(&state.db, room_id, now).await;
    }
    Ok(reg)
}

/// A signaling join records room activity (`last_activity_at`, which keeps
/// the room from idle cleanup) only when the stored value is at least this
/// old (or a quarter of the idle timeout, if that is shorter). Writing it on
/// every join made each reconnect a database commit (an fsync) that
/// serialized with the REST writes: under reconnect churn the writes queued
/// behind each other (docs/security.md, load). Crossed by
/// `tests::join_touch_only_when_due`.
pub const JOIN_TOUCH_INTERVAL_SECS: i64 = 60;

fn touch_due(last_activity: i64, now: i64, idle_timeout: Duration) -> bool {
    let quarter = i64::try_from(idle_timeout.as_secs() / 4).unwrap_or(i64::MAX);
    now.saturating_sub(last_activity) >= JOIN_TOUCH_INTERVAL_SECS.min(quarter)
}

fn hello(
    state: &AppState,
    room: &RoomId,
    user: i64,
    epoch: i64,
    certificate: watchparty_peer::cert::SignedCertificate,
) -> Result<ServerMessage, ApiError> {
    let mut members: Vec<RosterEntry> = state
        .hub
        .roster(room.as_str())
        .into_iter()
        .map(|(_, c, online)| RosterEntry {
            certificate: c,
            online,
        })
        .collect();
    members.truncate(MAX_ROSTER);
    Ok(ServerMessage::Hello {
        protocol: PROTOCOL_VERSION,
        room: peer_room(room)?,
        you: peer_user(user)?,
        epoch: watchparty_peer::ids::Epoch(u64::try_from(epoch).unwrap_or(0)),
        server_key: state.keys.cert_signer.public_key(),
        certificate,
        members: BoundedVec::new(members).map_err(ApiError::internal)?,
        ice_servers: super::turn::ice_servers(&state.config.signaling, user, now_secs()),
        offerer: OffererRule::Joiner,
    })
}

/// The relay loop.
async fn serve(
    state: &AppState,
    socket: &mut WebSocket,
    room: &RoomId,
    user: &AuthUser,
    mut reg: Registration,
) -> Outcome {
    let cfg = &state.config.signaling;
    let mut bucket = TokenBucket::new(cfg.rate_burst, cfg.rate_per_sec, Instant::now());
    let mut budget = RelayBudget::new(
        (cfg.relay_bytes_burst, cfg.relay_bytes_per_sec),
        (cfg.relay_pair_bytes_burst, cfg.relay_pair_bytes_per_sec),
        Instant::now(),
    );
    let mut strikes: u32 = 0;
    let mut last_seen = Instant::now();
    let mut ping = interval(cfg.ping_interval());
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset();
    let mut recheck = interval(cfg.revalidate());
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    recheck.reset();
    let me = peer_user(user.id).map_err(|_| "bad user id")?;
    loop {
        tokio::select! {
            biased;
            changed = reg.kill.changed() => {
                let cmd = *reg.kill.borrow_and_update();
                if changed.is_err() {
                    return Err("registry dropped");
                }
                if let Some(cmd) = cmd {
                    // Flush what was queued before the order (e.g. `kicked`).
                    while let Ok(text) = reg.rx.try_recv() {
                        if send_text(socket, text, cfg.send_timeout()).await.is_err() {
                            break;
                        }
                    }
                    close(socket, cmd.code, cmd.reason).await;
                    return Err(cmd.reason);
                }
            }
            out = reg.rx.recv() => {
                let Some(text) = out else { return Err("queue closed") };
                if send_text(socket, text, cfg.send_timeout()).await.is_err() {
                    return Err("slow reader (write timeout)");
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= cfg.idle_timeout() {
                    close(socket, CLOSE_IDLE, "idle timeout").await;
                    return Err("idle timeout");
                }
                let sent = timeout(cfg.send_timeout(), socket.send(Message::Ping(Default::default()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err("ping failed");
                }
            }
            _ = recheck.tick() => {
                if !still_valid(state, room, user).await {
                    // A room that ended meanwhile is announced as such (the
                    // REST hook may not have reached this socket yet).
                    if matches!(store::load_room(&state.db, room).await, Ok(Some(r)) if r.ended) {
                        let end = ServerMessage::RoomEnded { reason: watchparty_peer::signaling::EndReason::Closed };
                        let _ = send(socket, &end, cfg.send_timeout()).await;
                    }
                    let entry = crate::audit::Entry::ok(
                        crate::audit::Actor::System,
                        crate::audit::AuditAction::SignalRevoked,
                    )
                    .target(crate::audit::Target::User(user.id))
                    .in_room(room);
                    state.audit.record(entry);
                    close(socket, CLOSE_POLICY, "access revoked").await;
                    return Err("access revoked");
                }
            }
            incoming = socket.recv() => {
                let msg = match incoming {
                    None => return Ok(()),
                    Some(Err(e)) => {
                        if is_too_big(e) {
                            close(socket, CLOSE_TOO_BIG, "message too big").await;
                            return Err("message too big");
                        }
                        return Err("read error");
                    }
                    Some(Ok(m)) => m,
                };
                last_seen = Instant::now();
                let text = match msg {
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => return Ok(()),
                    Message::Binary(b) => {
                        tracing::debug!(user_id = user.id, size = b.len(), "binary signaling message refused");
                        None
                    }
                    Message::Text(t) => Some(t),
                };
                if !bucket.take(Instant::now()) {
                    strikes += 1;
                    tracing::info!(user_id = user.id, room_id = %room, strikes, "signaling rate limit");
                    if strikes >= cfg.rate_strikes {
                        close(socket, CLOSE_POLICY, "rate limit").await;
                        return Err("rate limit");
                    }
                    queue_error(state, room, user.id, ErrorCode::RateLimited, "too many messages");
                    continue;
                }
                let Some(text) = text else {
                    queue_error(state, room, user.id, ErrorCode::BadRequest, "binary messages are not accepted");
                    continue;
                };
                match handle(state, room, user, (me, &mut budget), text).await {
                    Step::Continue => {}
                    Step::Close(code, reason) => {
                        close(socket, code, reason).await;
                        return Ok(());
                    }
                    Step::Strike => {
                        strikes += 1;
                        if strikes >= cfg.rate_strikes {
                            close(socket, CLOSE_POLICY, "too many bad messages").await;
                            return Err("too many bad messages");
                        }
                    }
                }
            }
        }
    }
}

enum Step {
    Continue,
    Strike,
    Close(u16, &'static str),
}

async fn handle(
    state: &AppState,
    room: &RoomId,
    user: &AuthUser,
    (me, budget): (watchparty_peer::ids::UserId, &mut RelayBudget),
    text: Utf8Bytes,
) -> Step {
    let size = text.len();
    // Offers, answers and ICE candidates, nearly all the traffic, take the
    // fast path: the SDP is checked in its JSON form and relayed as is.
    if let Some(fast) = ClientRelay::parse(text.as_str()) {
        let out = fast.relayed_json(me);
        return relay(
            state,
            (room, user, budget),
            (fast.to, fast.kind.as_str()),
            out,
            size,
        );
    }
    let msg = match ClientMessage::from_json(text.as_str()) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(user_id = user.id, size, "malformed signaling message");
            queue_error(state, room, user.id, ErrorCode::BadRequest, &e.to_string());
            return Step::Strike;
        }
    };
    let r = room.as_str();
    match msg {
        ClientMessage::Offer { to, sdp } => {
            let out = ServerMessage::Offer { from: me, sdp }.to_json();
            relay(state, (room, user, budget), (to, "offer"), out, size)
        }
        ClientMessage::Answer { to, sdp } => {
            let out = ServerMessage::Answer { from: me, sdp }.to_json();
            relay(state, (room, user, budget), (to, "answer"), out, size)
        }
        ClientMessage::Ice { to, candidate } => {
            let out = ServerMessage::Ice {
                from: me,
                candidate,
            }
            .to_json();
            relay(state, (room, user, budget), (to, "ice"), out, size)
        }
        ClientMessage::Auth { .. } => {
            queue_error(
                state,
                room,
                user.id,
                ErrorCode::BadRequest,
                "already authenticated",
            );
            Step::Strike
        }
        ClientMessage::RegisterHostKey { key } => {
            match certs::register_host_key(state, room, user.id, &key).await {
                Ok(epoch) => {
                    let cert = certs::issue(
                        state,
                        &Subject {
                            room,
                            epoch,
                            user: user.id,
                            name: &user.display_name,
                            role: Role::Host,
                            key,
                        },
                    );
                    match cert {
                        Ok(c) => {
                            state.hub.set_cert(r, user.id, c.clone());
                            tracing::info!(user_id = user.id, room_id = %room, epoch, "host key registered");
                            state.hub.broadcast(
                                r,
                                &ServerMessage::HostChanged { certificate: c },
                                None,
                            );
                            Step::Continue
                        }
                        Err(_) => {
                            queue_error(
                                state,
                                room,
                                user.id,
                                ErrorCode::Internal,
                                "internal error",
                            );
                            Step::Continue
                        }
                    }
                }
                Err(_) => {
                    queue_error(
                        state,
                        room,
                        user.id,
                        ErrorCode::Forbidden,
                        "only the host may register the room key",
                    );
                    Step::Strike
                }
            }
        }
        ClientMessage::SetRole { .. }
        | ClientMessage::Kick { .. }
        | ClientMessage::Handoff { .. } => {
            let is_host = matches!(
                store::membership(&state.db, room, user.id).await,
                Ok(Some(m)) if m.role == Role::Host
            );
            if is_host {
                queue_error(
                    state,
                    room,
                    user.id,
                    ErrorCode::BadRequest,
                    "use the REST API (PATCH/DELETE /api/v1/rooms/{id}/members/{user}, POST /api/v1/rooms/{id}/handoff); changes are pushed here",
                );
                Step::Continue
            } else {
                queue_error(
                    state,
                    room,
                    user.id,
                    ErrorCode::Forbidden,
                    "only the host may do this",
                );
                Step::Strike
            }
        }
        ClientMessage::Leave => Step::Close(CLOSE_NORMAL, "leave"),
    }
}

/// Session active, account enabled, membership joined, room open.
/// Relays `out` (the server's `offer`, `answer` or `ice`, already stamped
/// with the sender as `from`) to member `to`.
///
/// The sender's [`RelayBudget`] is charged first: a relay over it is refused
/// and counts as a violation, so a flooder is cut off (1008 after
/// `rate_strikes`) while its target keeps its socket.
fn relay(
    state: &AppState,
    (room, user, budget): (&RoomId, &AuthUser, &mut RelayBudget),
    (to, kind): (watchparty_peer::ids::UserId, &'static str),
    out: Result<String, SignalError>,
    size: usize,
) -> Step {
    let to_id = i64::try_from(to.get()).unwrap_or(-1);
    if to_id == user.id {
        queue_error(
            state,
            room,
            user.id,
            ErrorCode::BadRequest,
            "cannot address yourself",
        );
        return Step::Strike;
    }
    if let Err(over) = budget.take(to_id, size, Instant::now()) {
        tracing::info!(kind, size, from = user.id, to = to_id, room_id = %room, ?over, "relay refused: budget spent");
        let text = match over {
            Overdrawn::Sender => "too much signaling data; slow down",
            Overdrawn::Pair => "too much signaling data for that member; slow down",
        };
        queue_error(state, room, user.id, ErrorCode::RateLimited, text);
        return Step::Strike;
    }
    // Serializing these types does not fail; if it did, nothing is sent.
    let sent = out.map_or(Relay::TooLarge, |text| {
        state.hub.relay_to(room.as_str(), to_id, text)
    });
    match sent {
        Relay::Sent => {
            tracing::debug!(kind, size, from = user.id, to = to_id, room_id = %room, "relayed");
            Step::Continue
        }
        Relay::TooLarge => {
            tracing::debug!(kind, size, from = user.id, to = to_id, room_id = %room, "relay refused: too large once relayed");
            queue_error(
                state,
                room,
                user.id,
                ErrorCode::BadRequest,
                "message too large to relay",
            );
            Step::Strike
        }
        Relay::Busy => {
            tracing::debug!(kind, size, from = user.id, to = to_id, room_id = %room, "relay refused: receiver busy");
            queue_error(
                state,
                room,
                user.id,
                ErrorCode::RateLimited,
                "that member is receiving too much right now; try again shortly",
            );
            Step::Continue
        }
        Relay::NotDelivered => {
            tracing::debug!(kind, size, from = user.id, to = to_id, room_id = %room, "relay refused: not connected");
            queue_error(
                state,
                room,
                user.id,
                ErrorCode::NotFound,
                "that member is not connected to this room",
            );
            Step::Continue
        }
    }
}

async fn still_valid(state: &AppState, room: &RoomId, user: &AuthUser) -> bool {
    let row: Result<Option<(i64,)>, _> = sqlx::query_as(
        "SELECT 1 FROM sessions s
           JOIN users u ON u.id = s.user_id
           JOIN room_members m ON m.user_id = u.id AND m.room_id = ?3
           JOIN rooms r ON r.id = m.room_id
          WHERE s.id = ?1 AND u.id = ?2 AND s.status = 'active' AND s.expires_at > ?4
            AND u.disabled = 0 AND m.status = 'joined' AND r.status = 'open'",
    )
    .bind(user.session_id.as_slice())
    .bind(user.id)
    .bind(room.as_str())
    .bind(now_secs())
    .fetch_optional(&state.db)
    .await;
    // A database error keeps the socket (the next check retries).
    !matches!(row, Ok(None))
}

fn queue_error(state: &AppState, room: &RoomId, user: i64, code: ErrorCode, text: &str) {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while clean.len() > watchparty_peer::signaling::MAX_ERROR_MESSAGE_LEN {
        clean.pop();
    }
    if let Ok(message) = ErrorMessage::new(clean) {
        state
            .hub
            .send_to(room.as_str(), user, &ServerMessage::Error { code, message });
    }
}

async fn send_error(socket: &mut WebSocket, code: ErrorCode, text: &str) -> Result<(), ()> {
    let message = ErrorMessage::new(text).map_err(|_| ())?;
    send(
        socket,
        &ServerMessage::Error { code, message },
        Duration::from_secs(1),
    )
    .await
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage, limit: Duration) -> Result<(), ()> {
    let text = msg.to_json().map_err(|_| ())?;
    send_text(socket, text.into(), limit).await
}

async fn send_text(socket: &mut WebSocket, text: Arc<str>, limit: Duration) -> Result<(), ()> {
    match timeout(limit, socket.send(Message::Text(Utf8Bytes::from(&*text)))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends a close frame (bounded wait); the socket is dropped by the caller.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

fn is_too_big(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast::<tungstenite::Error>().map(|b| *b),
        Ok(tungstenite::Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_touch_only_when_due() {
        let idle = Duration::from_secs(6 * 3600);
        let t = 1_000_000;
        assert!(!touch_due(t, t, idle));
        assert!(!touch_due(t, t + JOIN_TOUCH_INTERVAL_SECS - 1, idle));
        assert!(touch_due(t, t + JOIN_TOUCH_INTERVAL_SECS, idle));
        // A short idle timeout shortens the interval (a quarter of it).
        let short = Duration::from_secs(40);
        assert!(!touch_due(t, t + 9, short));
        assert!(touch_due(t, t + 10, short));
    }
}
