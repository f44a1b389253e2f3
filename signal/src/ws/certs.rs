//! Member and host certificates (format: `watchparty_peer::cert`, signed with
//! the server's long-term Ed25519 key) and host-key registration.
//!
//! A member's certificate binds its user id, display name, role and the
//! session key it sent in `auth`. The host's certificate binds the room key;
//! every host registration (the host's `auth` with a key, or
//! `register_host_key`) opens a new epoch, persisted in `rooms.epoch` with the
//! key in `rooms.host_public_key`.

use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::crypto::PublicKey;
use watchparty_peer::ids::{
    DisplayName, Epoch, Role as PeerRole, RoomId as PeerRoomId, UnixSeconds, UserId,
};

use crate::db::now_secs;
use crate::error::ApiError;
use crate::rooms::model::{Role, RoomId};
use crate::state::AppState;

/// The protocol-core room id of a server room id (32 hex characters).
pub fn peer_room(id: &RoomId) -> Result<PeerRoomId, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::internal("room id is not 32 hex characters"))
}

/// The protocol-core user id.
pub fn peer_user(id: i64) -> Result<UserId, ApiError> {
    u64::try_from(id)
        .ok()
        .and_then(|v| UserId::new(v).ok())
        .ok_or_else(|| ApiError::internal("user id out of protocol range"))
}

fn peer_role(r: Role) -> PeerRole {
    match r {
        Role::Host => PeerRole::Host,
        Role::Controller => PeerRole::Controller,
        Role::Viewer => PeerRole::Viewer,
    }
}

/// What a certificate is issued for.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Room.
    pub room: &'a RoomId,
    /// Epoch (the host term it opens, or the current one).
    pub epoch: i64,
    /// User.
    pub user: i64,
    /// Display name.
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// Certified key.
    pub key: PublicKey,
}

/// Signs a certificate valid for `signaling.cert_ttl_secs` from now.
pub fn issue(state: &AppState, s: &Subject<'_>) -> Result<SignedCertificate, ApiError> {
    let ttl = i64::try_from(state.config.signaling.cert_ttl_secs).unwrap_or(i64::MAX);
    let not_after = u64::try_from(now_secs().saturating_add(ttl)).unwrap_or(0);
    // Display names are checked at registration with the same 50-character
    // rule; fall back to the user id text rather than failing the connection.
    let name = DisplayName::new(s.name)
        .or_else(|_| DisplayName::new(&format!("user {}", s.user)))
        .map_err(ApiError::internal)?;
    let body = CertificateBody {
        room: peer_room(s.room)?,
        epoch: Epoch(u64::try_from(s.epoch).unwrap_or(0)),
        user: peer_user(s.user)?,
        name,
        role: peer_role(s.role),
        key: s.key,
        not_after: UnixSeconds(not_after),
    };
    SignedCertificate::issue(&state.keys.cert_signer, body).map_err(ApiError::internal)
}

/// Registers `key` as the room key of host `user`: bumps and persists the
/// epoch. Returns the new epoch, or `Forbidden` if `user` is not the host of
/// the open room.
///
/// Right after a REST handoff the room has no key and an epoch above 0 (a
/// room created without a key is at epoch 0, no term yet): the handoff already
/// opened the new epoch (the one the old host signed in its `Handoff`
/// frame), so the new host's first registration fills that epoch instead of
/// bumping again — otherwise its certificate would name another epoch than
/// the signed handoff and pinned followers would refuse it.
pub async fn register_host_key(
    state: &AppState,
    room: &RoomId,
    user: i64,
    key: &PublicKey,
) -> Result<i64, ApiError> {
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE rooms SET epoch = CASE WHEN host_public_key IS NULL AND epoch > 0 THEN epoch ELSE epoch + 1 END,
                host_public_key = ?3, last_activity_at = ?4
          WHERE id = ?1 AND host_user_id = ?2 AND status = 'open'
          RETURNING epoch",
    )
    .bind(room.as_str())
    .bind(user)
    .bind(key.as_bytes().as_slice())
    .bind(now_secs())
    .fetch_optional(&state.db)
    .await?;
    epoch.ok_or_else(|| ApiError::Forbidden("only the host may register the room key".into()))
}
