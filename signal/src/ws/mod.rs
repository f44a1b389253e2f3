//! The signaling WebSocket, `GET /api/v1/rooms/{id}/signal`.
//!
//! Before the upgrade: the `Origin` allowlist ([`origin`]), the room id, the
//! global socket cap and the unauthenticated caps (global and per client IP).
//! After it: the first message must be `auth` within
//! `signaling.auth_timeout_ms` ([`conn`]); then `hello` (certificates, roster,
//! ICE servers, offerer rule) and the relay loop. Messages follow
//! `watchparty_peer::signaling` exactly; docs/protocol.md §8 and
//! docs/security.md list every rule and limit.
//!
//! The REST handlers call the hooks below so kicks, leaves, role changes,
//! handoffs, room ends and logouts reach connected members at once.

pub mod certs;
pub mod config;
pub mod conn;
pub mod hub;
pub mod origin;
pub mod rate;
pub mod turn;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use watchparty_peer::signaling::{EndReason, ServerMessage};

pub use config::SignalingConfig;
pub use hub::Hub;
use hub::{CLOSE_POLICY, CloseCmd, Refusal};

use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiPath};
use crate::rooms::model::{Role, RoomId};
use crate::state::AppState;

/// The route path.
pub const SIGNAL_PATH: &str = "/api/v1/rooms/{id}/signal";

/// Upgrade handler.
pub async fn signal(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let cfg = &state.config.signaling;
    let allowed = state.config.app_origins();
    if origin::check(&headers, &allowed) == origin::OriginCheck::Refused {
        tracing::info!(%ip, "signaling origin refused");
        return ApiError::Forbidden("origin not allowed".into()).into_response();
    }
    let room = match RoomId::parse(&id) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return ApiError::InvalidRequest("expected a WebSocket upgrade".into()).into_response();
        }
    };
    let (slot, unauth) = match state.hub.open(ip, cfg) {
        Ok(s) => s,
        Err(r) => {
            tracing::info!(%ip, refusal = ?r, "signaling socket refused");
            return match r {
                Refusal::Unauthenticated => ApiError::RateLimited {
                    retry_after_secs: 1,
                },
                _ => ApiError::Busy,
            }
            .into_response();
        }
    };
    let max = cfg.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_mul(2))
        .on_upgrade(move |socket| conn::run(state, socket, room, ip, slot, unauth))
}

/// Initial read buffer of one signaling socket. The WebSocket library's
/// default (128 KiB, allocated up front) made an idle socket cost ~140 KiB
/// (`docs/benchmarks.md`); signaling messages are mostly small, and a larger
/// frame reserves exactly its own length (still capped by
/// `max_message_bytes`), so a small initial buffer costs nothing in function.
/// Crossed by `ws_signal::slow_reader_is_disconnected` (30 000-byte offers).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

fn user_id(id: i64) -> Option<watchparty_peer::ids::UserId> {
    u64::try_from(id)
        .ok()
        .and_then(|v| watchparty_peer::ids::UserId::new(v).ok())
}

/// A member left (REST `leave`): closes its socket (1008) and tells the others.
pub fn on_member_left(state: &AppState, room: &RoomId, user: i64) {
    let online = state.hub.is_online(room.as_str(), user);
    state.hub.remove_member(
        room.as_str(),
        user,
        None,
        CloseCmd {
            code: CLOSE_POLICY,
            reason: "left the room",
        },
    );
    // A connected member's `member_left` is sent when its socket closes.
    if !online && let Some(u) = user_id(user) {
        state
            .hub
            .broadcast(room.as_str(), &ServerMessage::MemberLeft { user: u }, None);
    }
}

/// A member was removed by the host: `kicked` to everyone, then its socket closes (1008).
pub fn on_member_kicked(state: &AppState, room: &RoomId, user: i64) {
    if let Some(u) = user_id(user) {
        let msg = ServerMessage::Kicked { user: u };
        state.hub.broadcast(room.as_str(), &msg, Some(user));
        state.hub.remove_member(
            room.as_str(),
            user,
            Some(&msg),
            CloseCmd {
                code: CLOSE_POLICY,
                reason: "removed from the room",
            },
        );
    }
}

/// The room ended: `room_ended` to everyone, then all its sockets close (1008).
pub fn on_room_ended(state: &AppState, room: &RoomId) {
    state.hub.end_room(
        room.as_str(),
        &ServerMessage::RoomEnded {
            reason: EndReason::Closed,
        },
        CloseCmd {
            code: CLOSE_POLICY,
            reason: "room ended",
        },
    );
}

/// A session was logged out: its sockets close (1008).
pub fn on_logout(state: &AppState, session: &[u8; 16]) {
    close_session(state, session, "logged out");
}

/// A session was revoked because one of its used refresh tokens came back
/// (reuse detection: the token family may be stolen): its sockets close at
/// once (1008), as at logout, rather than at the next re-check.
pub fn on_refresh_reuse(state: &AppState, session: &[u8; 16]) {
    close_session(
        state,
        session,
        "signed out for safety: an old sign-in was used again",
    );
}

fn close_session(state: &AppState, session: &[u8; 16], reason: &'static str) {
    state.hub.close_session(
        session,
        CloseCmd {
            code: CLOSE_POLICY,
            reason,
        },
    );
}

/// An account was disabled or all its sessions revoked in this process:
/// its sockets close (1008). (The CLI runs in another process; sockets notice
/// within `signaling.revalidate_ms`.)
pub fn on_user_revoked(state: &AppState, user: i64) {
    state.hub.close_user(
        user,
        CloseCmd {
            code: CLOSE_POLICY,
            reason: "access revoked",
        },
    );
}

/// A member's role changed (REST role change or handoff): its certificate is
/// re-issued with the same key and pushed as `role_changed`. Members who never
/// connected have no key yet and get their certificate at `auth`.
pub async fn on_role_changed(state: &AppState, room: &RoomId, user: i64, role: Role) {
    let Some(old) = state.hub.cert(room.as_str(), user) else {
        return;
    };
    let epoch: i64 = match sqlx::query_scalar("SELECT epoch FROM rooms WHERE id = ?1")
        .bind(room.as_str())
        .fetch_one(&state.db)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "role change push failed");
            return;
        }
    };
    let body = old.claimed();
    let subject = certs::Subject {
        room,
        epoch,
        user,
        name: body.name.as_str(),
        role,
        key: body.key,
    };
    match certs::issue(state, &subject) {
        Ok(c) => {
            state.hub.set_cert(room.as_str(), user, c.clone());
            state.hub.broadcast(
                room.as_str(),
                &ServerMessage::RoleChanged { certificate: c },
                None,
            );
        }
        Err(e) => tracing::error!(error = %e, "certificate re-issue failed"),
    }
}
