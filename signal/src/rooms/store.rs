//! Room, membership, queue and invitation queries: every SQL statement on
//! `rooms`, `room_members` and `room_queue` that the HTTP handlers
//! ([`crate::api::rooms`]) and the signaling layer ([`crate::ws`]) run.
//!
//! Functions that run one statement take any executor (a pool or an open
//! transaction); those that run several take the connection of the caller's
//! transaction, so the caller decides what is atomic.

use sqlx::{Sqlite, SqliteConnection, SqlitePool};

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

/// Ids of the users with status `invited` or `joined`.
pub async fn member_ids<'e, E>(exec: E, room: &RoomId) -> Result<Vec<i64>, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    Ok(sqlx::query_scalar(
        "SELECT user_id FROM room_members WHERE room_id = ?1 AND status IN ('invited', 'joined')",
    )
    .bind(room.as_str())
    .fetch_all(exec)
    .await?)
}

/// The room's current item plus its queue, sorted, each id once.
pub async fn room_items(conn: &mut SqliteConnection, room: &RoomId) -> Result<Vec<i64>, ApiError> {
    let mut items: Vec<i64> = queue(&mut *conn, room).await?;
    let media: i64 = sqlx::query_scalar("SELECT media_id FROM rooms WHERE id = ?1")
        .bind(room.as_str())
        .fetch_one(&mut *conn)
        .await?;
    items.push(media);
    items.sort_unstable();
    items.dedup();
    Ok(items)
}

/// Creates or overwrites `user_id`'s membership row in `room` (role, status,
/// `updated_at = now`).
pub async fn set_member<'e, E>(
    exec: E,
    room: &RoomId,
    user_id: i64,
    role: Role,
    status: MemberStatus,
    now: i64,
) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query(
        "INSERT INTO room_members (room_id, user_id, role, status, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room_id, user_id)
         DO UPDATE SET role = excluded.role, status = excluded.status, updated_at = excluded.updated_at",
    )
    .bind(room.as_str())
    .bind(user_id)
    .bind(role.as_str())
    .bind(status.as_str())
    .bind(now)
    .execute(exec)
    .await?;
    Ok(())
}

/// How many members have joined `room`, not counting `user_id` (seat check).
pub async fn joined_count_except<'e, E>(
    exec: E,
    room: &RoomId,
    user_id: i64,
) -> Result<i64, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM room_members WHERE room_id = ?1 AND status = 'joined' AND user_id != ?2",
    )
    .bind(room.as_str())
    .bind(user_id)
    .fetch_one(exec)
    .await?)
}

/// How many open rooms `user_id` hosts.
pub async fn open_rooms_hosted_by<'e, E>(exec: E, user_id: i64) -> Result<i64, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    Ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM rooms WHERE host_user_id = ?1 AND status = 'open'",
        )
        .bind(user_id)
        .fetch_one(exec)
        .await?,
    )
}

/// A room to create ([`insert_room`]).
#[derive(Debug)]
pub struct NewRoom<'a> {
    /// Id.
    pub id: &'a RoomId,
    /// Name.
    pub name: &'a str,
    /// The host.
    pub host_user_id: i64,
    /// The first item, also the whole queue.
    pub media_id: i64,
    /// Whether only invited users may join.
    pub invite_only: bool,
    /// Argon2id PHC string of the room password, if any.
    pub password_hash: Option<String>,
    /// Policy.
    pub policy: &'a Policy,
    /// Most joined members.
    pub max_members: u32,
    /// The host's Ed25519 public key, if registered at creation.
    pub host_public_key: Option<Vec<u8>>,
    /// Creation time (Unix seconds), also the last activity.
    pub now: i64,
}

/// Inserts an open room at epoch 0 with `media_id` as its one-item queue.
/// Members (the host included) are added with [`set_member`].
pub async fn insert_room(conn: &mut SqliteConnection, room: NewRoom<'_>) -> Result<(), ApiError> {
    let policy_json = serde_json::to_string(room.policy).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO rooms (id, name, host_user_id, media_id, invite_only, password_hash,
                            policy_json, max_members, status, epoch, host_public_key,
                            created_at, last_activity_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', 0, ?9, ?10, ?10)",
    )
    .bind(room.id.as_str())
    .bind(room.name)
    .bind(room.host_user_id)
    .bind(room.media_id)
    .bind(i64::from(room.invite_only))
    .bind(room.password_hash)
    .bind(policy_json)
    .bind(i64::from(room.max_members))
    .bind(room.host_public_key)
    .bind(room.now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO room_queue (room_id, position, media_id) VALUES (?1, 0, ?2)")
        .bind(room.id.as_str())
        .bind(room.media_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ids of the rooms `user_id` has joined (hosted ones included), newest
/// first, at most `limit`.
pub async fn joined_room_ids(
    db: &SqlitePool,
    user_id: i64,
    limit: i64,
) -> Result<Vec<String>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT r.id FROM rooms r JOIN room_members m ON m.room_id = r.id
          WHERE m.user_id = ?1 AND m.status = 'joined'
          ORDER BY r.created_at DESC, r.id LIMIT ?2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Changes to a room's settings ([`update_room`]); `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct RoomUpdate<'a> {
    /// New name.
    pub name: Option<&'a str>,
    /// New current item.
    pub media_id: Option<i64>,
    /// New queue, replacing the old one.
    pub queue: Option<&'a [i64]>,
    /// New policy, replacing the old one.
    pub policy: Option<&'a Policy>,
    /// New invite-only flag.
    pub invite_only: Option<bool>,
    /// New password hash; `Some(None)` removes the password.
    pub password_hash: Option<Option<String>>,
}

/// Runs `sql`, an `UPDATE rooms SET <column> = ?2 WHERE id = ?1`, with `value`.
async fn set_room_column<'t, T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    room: &RoomId,
    value: T,
) -> Result<(), ApiError>
where
    T: sqlx::Encode<'t, Sqlite> + sqlx::Type<Sqlite>,
{
    sqlx::query(sql)
        .bind(room.as_str())
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes the fields set in `update` to `room`.
pub async fn update_room(
    conn: &mut SqliteConnection,
    room: &RoomId,
    update: RoomUpdate<'_>,
) -> Result<(), ApiError> {
    if let Some(name) = update.name {
        let sql = "UPDATE rooms SET name = ?2 WHERE id = ?1";
        set_room_column(&mut *conn, sql, room, name).await?;
    }
    if let Some(media) = update.media_id {
        let sql = "UPDATE rooms SET media_id = ?2 WHERE id = ?1";
        set_room_column(&mut *conn, sql, room, media).await?;
    }
    if let Some(queue) = update.queue {
        sqlx::query("DELETE FROM room_queue WHERE room_id = ?1")
            .bind(room.as_str())
            .execute(&mut *conn)
            .await?;
        for (pos, item) in queue.iter().enumerate() {
            sqlx::query("INSERT INTO room_queue (room_id, position, media_id) VALUES (?1, ?2, ?3)")
                .bind(room.as_str())
                .bind(i64::try_from(pos).map_err(ApiError::internal)?)
                .bind(item)
                .execute(&mut *conn)
                .await?;
        }
    }
    if let Some(policy) = update.policy {
        let json = serde_json::to_string(policy).map_err(ApiError::internal)?;
        let sql = "UPDATE rooms SET policy_json = ?2 WHERE id = ?1";
        set_room_column(&mut *conn, sql, room, json).await?;
    }
    if let Some(flag) = update.invite_only {
        let sql = "UPDATE rooms SET invite_only = ?2 WHERE id = ?1";
        set_room_column(&mut *conn, sql, room, i64::from(flag)).await?;
    }
    if let Some(hash) = update.password_hash {
        let sql = "UPDATE rooms SET password_hash = ?2 WHERE id = ?1";
        set_room_column(&mut *conn, sql, room, hash).await?;
    }
    Ok(())
}

/// Ends `room` at `now` if it is open; returns whether it was.
pub async fn end_room<'e, E>(exec: E, room: &RoomId, now: i64) -> Result<bool, ApiError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let ended = sqlx::query(
        "UPDATE rooms SET status = 'ended', ended_at = ?2 WHERE id = ?1 AND status = 'open'",
    )
    .bind(room.as_str())
    .bind(now)
    .execute(exec)
    .await?
    .rows_affected();
    Ok(ended > 0)
}

/// Makes the joined member `new_host` the host of `room`: the old host
/// becomes a controller, the epoch goes up by one, the registered host key
/// is cleared and the room counts as active at `now`.
pub async fn hand_off(
    conn: &mut SqliteConnection,
    room: &RoomId,
    old_host: i64,
    new_host: i64,
    now: i64,
) -> Result<(), ApiError> {
    let joined = MemberStatus::Joined;
    set_member(&mut *conn, room, old_host, Role::Controller, joined, now).await?;
    set_member(&mut *conn, room, new_host, Role::Host, joined, now).await?;
    sqlx::query(
        "UPDATE rooms SET host_user_id = ?2, epoch = epoch + 1, host_public_key = NULL,
                last_activity_at = ?3 WHERE id = ?1",
    )
    .bind(room.as_str())
    .bind(new_host)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A pending invitation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InviteView {
    /// Room id.
    pub room_id: String,
    /// Room name.
    pub room_name: String,
    /// Host username.
    pub host_username: String,
    /// Host display name.
    pub host_display_name: String,
    /// Offered role.
    pub role: Role,
    /// When the invitation was made or last changed.
    pub invited_at: i64,
}

/// `user_id`'s pending invitations to open rooms, newest first, at most `limit`.
pub async fn pending_invites(
    db: &SqlitePool,
    user_id: i64,
    limit: i64,
) -> Result<Vec<InviteView>, ApiError> {
    let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT r.id, r.name, h.username, h.display_name, m.role, m.updated_at
           FROM room_members m
           JOIN rooms r ON r.id = m.room_id
           JOIN users h ON h.id = r.host_user_id
          WHERE m.user_id = ?1 AND m.status = 'invited' AND r.status = 'open'
          ORDER BY m.updated_at DESC, r.id LIMIT ?2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(
            |(room_id, room_name, host_username, host_display_name, role, invited_at)| {
                Ok(InviteView {
                    room_id,
                    room_name,
                    host_username,
                    host_display_name,
                    role: Role::from_db(&role)?,
                    invited_at,
                })
            },
        )
        .collect()
}

/// The rooms one [`cleanup`] pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanedRooms {
    /// Open rooms ended for being idle.
    pub ended: Vec<RoomId>,
    /// Ended rooms deleted after their retention.
    pub deleted: Vec<RoomId>,
}

/// Ends open rooms idle since before `idle_before` and deletes rooms ended
/// before `ended_before`, in one transaction; returns which.
pub async fn cleanup(
    db: &SqlitePool,
    now: i64,
    idle_before: i64,
    ended_before: i64,
) -> Result<CleanedRooms, ApiError> {
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
    let ids = |v: Vec<String>| {
        v.iter()
            .map(|id| RoomId::parse(id).map_err(|_| ApiError::internal("bad room id in database")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(CleanedRooms {
        ended: ids(ended)?,
        deleted: ids(deleted)?,
    })
}
