//! Room and membership queries (the interface the signaling layer builds on).

use sqlx::{Sqlite, SqlitePool};

use super::model::{MemberStatus, Policy, Role, RoomId};
use crate::error::ApiError;

/// A stored room.
#[derive(Debug, Clone)]
pub struct RoomRow {
    /// Id.
    pub id: RoomId,
    /// Name.
    pub name: String,
    /// Current host.
    pub host_user_id: i64,
    /// Current media item.
    pub media_id: i64,
    /// Whether only invited users may join.
    pub invite_only: bool,
    /// Argon2id PHC string of the room password, if any.
    pub password_hash: Option<String>,
    /// Policy.
    pub policy: Policy,
    /// Most joined members.
    pub max_members: u32,
    /// Whether the room has ended.
    pub ended: bool,
    /// Host epoch (bumped on handoff).
    pub epoch: i64,
    /// The host's registered Ed25519 public key, if any.
    pub host_public_key: Option<Vec<u8>>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last activity (Unix seconds).
    pub last_activity_at: i64,
}

type RoomTuple = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    String,
    i64,
    String,
    i64,
    Option<Vec<u8>>,
    i64,
    i64,
);

const ROOM_SELECT: &str = "SELECT id, name, host_user_id, media_id, invite_only, password_hash, \
     policy_json, max_members, status, epoch, host_public_key, created_at, last_activity_at \
     FROM rooms WHERE id = ?1";

fn room_from(t: RoomTuple) -> Result<RoomRow, ApiError> {
    Ok(RoomRow {
        id: RoomId::parse(&t.0).map_err(|_| ApiError::internal("bad room id in database"))?,
        name: t.1,
        host_user_id: t.2,
        media_id: t.3,
        invite_only: t.4 != 0,
        password_hash: t.5,
        policy: serde_json::from_str(&t.6).map_err(ApiError::internal)?,
        max_members: u32::try_from(t.7).map_err(ApiError::internal)?,
        ended: t.8 == "ended",
        epoch: t.9,
        host_public_key: t.10,
        created_at: t.11,
        last_activity_at: t.12,
    })
}

/// Loads a room.
pub async fn load_room<'e, E>(exec: E, id: &RoomId) -> Result<Option<RoomRow>, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let t: Option<RoomTuple> = sqlx::query_as(ROOM_SELECT)
        .bind(id.as_str())
        .fetch_optional(exec)
        .await?;
    t.map(room_from).transpose()
}

/// One membership row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
}

/// The caller's membership in a room, if any row exists.
pub async fn membership<'e, E>(
    exec: E,
    room: &RoomId,
    user_id: i64,
) -> Result<Option<Membership>, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT role, status FROM room_members WHERE room_id = ?1 AND user_id = ?2")
            .bind(room.as_str())
            .bind(user_id)
            .fetch_optional(exec)
            .await?;
    row.map(|(r, s)| {
        Ok(Membership {
            role: Role::from_db(&r)?,
            status: MemberStatus::from_db(&s)?,
        })
    })
    .transpose()
}

/// A member as listed in a room view.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// User id.
    pub user_id: i64,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MemberStatus,
}

/// Members with status `invited` or `joined`, host first.
pub async fn members(db: &SqlitePool, room: &RoomId) -> Result<Vec<MemberView>, ApiError> {
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, m.role, m.status
           FROM room_members m JOIN users u ON u.id = m.user_id
          WHERE m.room_id = ?1 AND m.status IN ('invited', 'joined')
          ORDER BY m.role = 'host' DESC, u.username",
    )
    .bind(room.as_str())
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(user_id, username, display_name, role, status)| {
            Ok(MemberView {
                user_id,
                username,
                display_name,
                role: Role::from_db(&role)?,
                status: MemberStatus::from_db(&status)?,
            })
        })
        .collect()
}

/// User ids of members with status `joined` (for signaling fan-out).
pub async fn joined_user_ids(db: &SqlitePool, room: &RoomId) -> Result<Vec<i64>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT user_id FROM room_members WHERE room_id = ?1 AND status = 'joined' ORDER BY user_id",
    )
    .bind(room.as_str())
    .fetch_all(db)
    .await?)
}

/// The room's queue (media ids in order).
pub async fn queue<'e, E>(exec: E, room: &RoomId) -> Result<Vec<i64>, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    Ok(
        sqlx::query_scalar("SELECT media_id FROM room_queue WHERE room_id = ?1 ORDER BY position")
            .bind(room.as_str())
            .fetch_all(exec)
            .await?,
    )
}

/// Records activity in a room (keeps it from idle cleanup).
pub async fn touch<'e, E>(exec: E, room: &RoomId, now: i64) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query("UPDATE rooms SET last_activity_at = ?2 WHERE id = ?1")
        .bind(room.as_str())
        .bind(now)
        .execute(exec)
        .await?;
    Ok(())
}

/// Ends open rooms idle since before `idle_before` and deletes rooms ended
/// before `ended_before`, in one transaction; then queues one
/// `room_cleaned_up` audit record per room. Returns (ended, deleted).
pub async fn cleanup(
    db: &SqlitePool,
    audit: &crate::audit::Auditor,
    now: i64,
    idle_before: i64,
    ended_before: i64,
) -> Result<(u64, u64), ApiError> {
    use crate::audit::{Actor, AuditAction, Entry, Target};
    let mut tx = crate::db::begin_immediate(db).await?;
    let ended: Vec<String> = sqlx::query_scalar(
        "UPDATE rooms SET status = 'ended', ended_at = ?1
          WHERE status = 'open' AND last_activity_at < ?2 RETURNING id",
    )
    .bind(now)
    .bind(idle_before)
    .fetch_all(&mut *tx)
    .await?;
    let deleted: Vec<String> = sqlx::query_scalar(
        "DELETE FROM rooms WHERE status = 'ended' AND ended_at < ?1 RETURNING id",
    )
    .bind(ended_before)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (ids, what) in [(&ended, "ended_idle"), (&deleted, "deleted")] {
        for id in ids {
            let room =
                RoomId::parse(id).map_err(|_| ApiError::internal("bad room id in database"))?;
            let entry = Entry::ok(Actor::System, AuditAction::RoomCleanedUp)
                .target(Target::Room(room))
                .detail(what);
            audit.record(entry);
        }
    }
    let count = |v: &Vec<String>| u64::try_from(v.len()).unwrap_or(u64::MAX);
    Ok((count(&ended), count(&deleted)))
}
