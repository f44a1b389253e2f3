//! `/api/v1/rooms*` and `/api/v1/invites*`.
//!
//! Visibility rule: a room is visible to its host, controllers and viewers
//! (status `joined`) and to users with a pending invitation. Everybody else —
//! including admins, who have no special room powers — gets **404** for every
//! room route, so the existence of a room is never confirmed to outsiders.
//! Host-only routes answer 403 to visible non-hosts. Ended rooms answer 410 to
//! every mutation.
//!
//! The handlers speak HTTP only: the queries they run are named functions in
//! [`crate::rooms::store`] (and [`crate::accounts`] for the invitee lookup).

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{Actor, AuditAction, AuditOutcome, Entry, RequestMeta, Target};
use crate::auth::AuthUser;
use crate::db::{begin_immediate, now_secs};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::media::user_can_access;
use crate::rooms::model::{GuestRole, MemberStatus, Policy, Role, RoomId};
use crate::rooms::store::{self, InviteView, MemberView, Membership, NewRoom, RoomRow, RoomUpdate};
use crate::state::AppState;
use crate::validate::{NewPassword, PresentedPassword, RoomName, Username};

/// Longest room queue.
pub const MAX_QUEUE_LEN: usize = 100;
/// Most open rooms one user may host at once.
pub const MAX_OPEN_ROOMS_PER_HOST: i64 = 20;
/// Response header of the capped listings (`GET /api/v1/rooms`,
/// `GET /api/v1/invites`): `true` when rows beyond the cap (config
/// `list_max_rows`, default [`crate::config::DEFAULT_LIST_MAX_ROWS`]) were cut
/// off, else `false`. The listing keeps the newest rows; there is no paging.
pub const TRUNCATED_HEADER: &str = "x-truncated";

/// Cuts `rows` (fetched with `LIMIT cap + 1`) to `cap`; returns the header
/// saying whether anything was cut.
fn truncate_listing<T>(rows: &mut Vec<T>, cap: u32) -> [(HeaderName, HeaderValue); 1] {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let truncated = rows.len() > cap;
    rows.truncate(cap);
    [(
        HeaderName::from_static(TRUNCATED_HEADER),
        HeaderValue::from_static(if truncated { "true" } else { "false" }),
    )]
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_room, list_rooms))
        .routes(routes!(get_room, patch_room))
        .routes(routes!(join_room))
        .routes(routes!(leave_room))
        .routes(routes!(end_room))
        .routes(routes!(invite_member))
        .routes(routes!(change_role, kick_member))
        .routes(routes!(handoff))
        .routes(routes!(list_invites))
        .routes(routes!(accept_invite))
        .routes(routes!(decline_invite))
}

// ---------------------------------------------------------------- types

/// An invitation in a create request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteSpec {
    /// Who.
    #[schema(value_type = String, pattern = "^[a-z0-9_.-]{3,32}$")]
    pub username: Username,
    /// `controller` or `viewer`.
    pub role: GuestRole,
}

/// `POST /api/v1/rooms`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// 1–100 characters, not blank, no control or invisible characters, none of `<>"'&`.
    #[schema(value_type = String, min_length = 1, max_length = 100, pattern = r#"^[^\x00-\x1f\x7f-\x9f<>"'&]*$"#)]
    pub name: RoomName,
    /// The media item to watch.
    pub media_id: i64,
    /// Only invited users may join (default true).
    #[serde(default = "default_true")]
    pub invite_only: bool,
    /// Optional room password (8–128 characters).
    #[schema(value_type = Option<String>, min_length = 8, max_length = 128)]
    pub password: Option<NewPassword>,
    /// Invitations.
    #[serde(default)]
    pub invites: Vec<InviteSpec>,
    /// Policy (defaults apply to missing fields).
    #[serde(default)]
    pub policy: Policy,
    /// Seat limit (2..=server maximum; default the server maximum).
    #[schema(minimum = 2)]
    pub max_members: Option<u32>,
    /// The host's Ed25519 room public key (32 bytes, base64url without padding).
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    pub host_public_key: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `PATCH /api/v1/rooms/{id}`. Absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRoom {
    /// New name (rules as at creation).
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = r#"^[^\x00-\x1f\x7f-\x9f<>"'&]*$"#)]
    pub name: Option<RoomName>,
    /// New current item (must be accessible to every member and invitee).
    pub media_id: Option<i64>,
    /// New queue (same access rule for every item; at most 100).
    pub queue: Option<Vec<i64>>,
    /// New policy (replaces the whole policy).
    pub policy: Option<Policy>,
    /// Invite-only flag.
    pub invite_only: Option<bool>,
    /// New password; `""` removes the password.
    pub password: Option<String>,
}

/// `POST /api/v1/rooms/{id}/join`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRoom {
    /// Room password, when the room has one and the caller was not invited.
    #[schema(value_type = Option<String>)]
    pub password: Option<PresentedPassword>,
}

/// `POST /api/v1/rooms/{id}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMember {
    /// Who.
    #[schema(value_type = String, pattern = "^[a-z0-9_.-]{3,32}$")]
    pub username: Username,
    /// Role.
    pub role: GuestRole,
}

/// `PATCH /api/v1/rooms/{id}/members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    /// New role.
    pub role: GuestRole,
}

/// `POST /api/v1/rooms/{id}/handoff`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// The joined member who becomes host.
    pub user_id: i64,
}

/// A room as seen by a member or invitee.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    /// Id (32 hex characters).
    pub id: String,
    /// Name.
    pub name: String,
    /// Host user id.
    pub host_user_id: i64,
    /// Current media item.
    pub media_id: i64,
    /// Queue of media ids.
    pub queue: Vec<i64>,
    /// Invite-only.
    pub invite_only: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// Policy.
    pub policy: Policy,
    /// Seat limit.
    pub max_members: u32,
    /// `open` or `ended`.
    pub status: String,
    /// Host epoch (bumped on handoff).
    pub epoch: i64,
    /// Host's Ed25519 room public key (base64url), if registered.
    pub host_public_key: Option<String>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Caller's role.
    pub my_role: Role,
    /// Caller's status.
    pub my_status: MemberStatus,
    /// Joined members and pending invitations.
    pub members: Vec<MemberView>,
}

// ---------------------------------------------------------------- helpers

/// The caller's standing in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Joined(Role),
    Invited(Role),
    /// No row, or declined / left / kicked.
    Outside(Option<MemberStatus>),
}

fn standing(m: Option<&Membership>) -> Standing {
    match m {
        Some(Membership {
            status: MemberStatus::Joined,
            role,
        }) => Standing::Joined(*role),
        Some(Membership {
            status: MemberStatus::Invited,
            role,
        }) => Standing::Invited(*role),
        Some(m) => Standing::Outside(Some(m.status)),
        None => Standing::Outside(None),
    }
}

struct Ctx {
    room: RoomRow,
    me: Option<Membership>,
}

impl Ctx {
    fn standing(&self) -> Standing {
        standing(self.me.as_ref())
    }

    /// 404 unless joined or invited.
    fn visible(&self) -> ApiResult<Standing> {
        match self.standing() {
            Standing::Outside(_) => Err(ApiError::NotFound),
            s => Ok(s),
        }
    }

    /// 404 for outsiders, 403 for non-hosts, 410 when ended.
    fn host(&self) -> ApiResult<()> {
        match self.visible()? {
            Standing::Joined(Role::Host) if self.room.ended => Err(ApiError::RoomEnded),
            Standing::Joined(Role::Host) => Ok(()),
            _ => Err(ApiError::Forbidden("only the host may do this".into())),
        }
    }
}

async fn load_ctx(state: &AppState, id: &str, user: &AuthUser) -> ApiResult<Ctx> {
    let id = RoomId::parse(id)?;
    let room = store::load_room(&state.db, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let me = store::membership(&state.db, &id, user.id).await?;
    Ok(Ctx { room, me })
}

async fn view(state: &AppState, room: &RoomRow, user_id: i64) -> ApiResult<RoomView> {
    let me = store::membership(&state.db, &room.id, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(RoomView {
        id: room.id.to_string(),
        name: room.name.clone(),
        host_user_id: room.host_user_id,
        media_id: room.media_id,
        queue: store::queue(&state.db, &room.id).await?,
        invite_only: room.invite_only,
        has_password: room.password_hash.is_some(),
        policy: room.policy,
        max_members: room.max_members,
        status: if room.ended { "ended" } else { "open" }.into(),
        epoch: room.epoch,
        host_public_key: room
            .host_public_key
            .as_ref()
            .map(|k| URL_SAFE_NO_PAD.encode(k)),
        created_at: room.created_at,
        my_role: me.role,
        my_status: me.status,
        members: store::members(&state.db, &room.id).await?,
    })
}

async fn reload_view(state: &AppState, id: &RoomId, user_id: i64) -> ApiResult<RoomView> {
    let room = store::load_room(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    view(state, &room, user_id).await
}

fn media_forbidden() -> ApiError {
    ApiError::Forbidden("the media is not accessible to every member of the room".into())
}

/// Every item in `items` must be accessible to every user in `users`.
async fn check_access_all(
    conn: &mut SqliteConnection,
    users: &[i64],
    items: &[i64],
) -> ApiResult<()> {
    for &item in items {
        for &user in users {
            if !user_can_access(&mut *conn, user, item).await? {
                return Err(media_forbidden());
            }
        }
    }
    Ok(())
}

/// Sets the caller's own membership status (leave, decline) in one
/// transaction, with the audit record of `action`.
async fn set_own_status(
    state: &AppState,
    meta: &RequestMeta,
    room: &RoomId,
    (user_id, role): (i64, Role),
    status: MemberStatus,
    action: AuditAction,
) -> ApiResult<()> {
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    store::set_member(&mut *tx, room, user_id, role, status, now).await?;
    tx.commit().await?;
    let entry = Entry::ok(Actor::User(user_id), action)
        .target(Target::Room(room.clone()))
        .from_request(meta);
    state.audit.record(entry);
    Ok(())
}

/// Seats a user in one `BEGIN IMMEDIATE` transaction: re-checks that the room
/// is open, the caller's media access and the seat count; then queues
/// `audit` (the join's record).
async fn take_seat(
    state: &AppState,
    room_id: &RoomId,
    user_id: i64,
    role: Role,
    audit: Entry,
) -> ApiResult<()> {
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let room = store::load_room(&mut *tx, room_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if room.ended {
        return Err(ApiError::RoomEnded);
    }
    // Re-check the membership under the write lock: a kick or a switch to
    // invite-only between the caller's first read and now must win.
    match store::membership(&mut *tx, room_id, user_id)
        .await?
        .map(|m| m.status)
    {
        Some(MemberStatus::Kicked) => {
            return Err(ApiError::Forbidden(
                "you were removed from this room".into(),
            ));
        }
        Some(MemberStatus::Invited | MemberStatus::Joined | MemberStatus::Left) => {}
        Some(MemberStatus::Declined) | None if room.invite_only => return Err(ApiError::NotFound),
        Some(MemberStatus::Declined) | None => {}
    }
    let items = store::room_items(&mut tx, room_id).await?;
    check_access_all(&mut tx, &[user_id], &items).await?;
    let joined = store::joined_count_except(&mut *tx, room_id, user_id).await?;
    if joined >= i64::from(room.max_members) {
        return Err(ApiError::RoomFull);
    }
    store::set_member(&mut *tx, room_id, user_id, role, MemberStatus::Joined, now).await?;
    store::touch(&mut *tx, room_id, now).await?;
    tx.commit().await?;
    state.audit.record(audit);
    Ok(())
}

fn parse_host_key(key: Option<&str>) -> ApiResult<Option<Vec<u8>>> {
    key.map(|k| {
        URL_SAFE_NO_PAD
            .decode(k)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                ApiError::InvalidRequest(
                    "host_public_key must be 32 bytes, base64url without padding".into(),
                )
            })
    })
    .transpose()
}

// ---------------------------------------------------------------- handlers

/// Create a room with its invitations (one transaction).
///
/// The media must be accessible to the host **and every invitee** (admins count
/// as having access to everything); otherwise 403 without naming anyone.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", request_body = CreateRoom,
    responses((status = 201, body = RoomView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "an invitee may not access the media"),
        (status = 404, body = ErrorBody, description = "the media item does not exist or the host may not see it"),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "busy: the password hashing queue is full; retry")),
    security(("bearer" = [])))]
async fn create_room(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiJson(req): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, ApiJson<RoomView>)> {
    state
        .limits
        .room_create
        .hit(&user.id, Instant::now())
        .map_err(|r| ApiError::RateLimited {
            retry_after_secs: r.secs(),
        })?;
    req.policy.check()?;
    let server_max = state.config.room_max_members;
    let max_members = req.max_members.unwrap_or(server_max);
    if !(2..=server_max).contains(&max_members) {
        return Err(ApiError::InvalidRequest(format!(
            "max_members must be 2..={server_max}"
        )));
    }
    if req.invites.len() >= max_members as usize {
        return Err(ApiError::InvalidRequest(format!(
            "at most {} invitations (max_members - 1)",
            max_members - 1
        )));
    }
    let mut names: Vec<&str> = req.invites.iter().map(|i| i.username.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::InvalidRequest("duplicate invitation".into()));
    }
    if names.contains(&user.username.as_str()) {
        return Err(ApiError::InvalidRequest(
            "the host cannot invite themselves".into(),
        ));
    }
    let host_key = parse_host_key(req.host_public_key.as_deref())?;
    let password_hash = match &req.password {
        Some(p) => Some(state.hasher.hash(p.as_bytes()).await?),
        None => None,
    };
    let id = RoomId::generate()?;
    let now = now_secs();

    let mut tx = begin_immediate(&state.db).await?;
    let open_rooms = store::open_rooms_hosted_by(&mut *tx, user.id).await?;
    if open_rooms >= MAX_OPEN_ROOMS_PER_HOST {
        return Err(ApiError::Conflict(format!(
            "you already host {MAX_OPEN_ROOMS_PER_HOST} open rooms; end one first"
        )));
    }
    let mut invitees = Vec::with_capacity(req.invites.len());
    for inv in &req.invites {
        let uid = crate::accounts::enabled_user_id(&mut *tx, &inv.username)
            .await?
            .ok_or_else(|| ApiError::InvalidRequest("an invited user does not exist".into()))?;
        invitees.push((uid, Role::from(inv.role)));
    }
    // The host must see the media too (404 hides items the host cannot see).
    if !user_can_access(&mut *tx, user.id, req.media_id).await? {
        return Err(ApiError::NotFound);
    }
    let everyone: Vec<i64> = invitees.iter().map(|(u, _)| *u).collect();
    check_access_all(&mut tx, &everyone, &[req.media_id]).await?;
    let room = NewRoom {
        id: &id,
        name: req.name.as_str(),
        host_user_id: user.id,
        media_id: req.media_id,
        invite_only: req.invite_only,
        password_hash,
        policy: &req.policy,
        max_members,
        host_public_key: host_key,
        now,
    };
    store::insert_room(&mut tx, room).await?;
    store::set_member(
        &mut *tx,
        &id,
        user.id,
        Role::Host,
        MemberStatus::Joined,
        now,
    )
    .await?;
    let by_host = |action| Entry::ok(Actor::User(user.id), action).from_request(&meta);
    let mut records = vec![by_host(AuditAction::RoomCreated).target(Target::Room(id.clone()))];
    for (uid, role) in invitees {
        store::set_member(&mut *tx, &id, uid, role, MemberStatus::Invited, now).await?;
        records.push(
            by_host(AuditAction::RoomInvited)
                .target(Target::User(uid))
                .in_room(&id)
                .detail(role.as_str()),
        );
    }
    tx.commit().await?;
    records.into_iter().for_each(|r| state.audit.record(r));
    tracing::info!(room_id = %id, host = user.id, "room created");
    Ok((
        StatusCode::CREATED,
        ApiJson(reload_view(&state, &id, user.id).await?),
    ))
}

/// Rooms the caller has joined (including hosted ones), newest first, at most
/// `list_max_rows` of them (`X-Truncated` says whether older ones were cut off).
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms",
    responses((status = 200, body = Vec<RoomView>,
               headers(("x-truncated" = String, description = "`true` when older rooms beyond `list_max_rows` were left out"))),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_rooms(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<([(HeaderName, HeaderValue); 1], ApiJson<Vec<RoomView>>)> {
    let cap = state.config.list_max_rows;
    let mut ids = store::joined_room_ids(&state.db, user.id, i64::from(cap) + 1).await?;
    let truncated = truncate_listing(&mut ids, cap);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(reload_view(&state, &RoomId::parse(&id)?, user.id).await?);
    }
    Ok((truncated, ApiJson(out)))
}

/// One room: members and invitees only (404 for everyone else, admins included).
#[utoipa::path(get, path = "/api/v1/rooms/{id}", tag = "rooms",
    params(("id" = String, Path, description = "room id (32 hex)")),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_room(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<ApiJson<RoomView>> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.visible()?;
    Ok(ApiJson(view(&state, &ctx.room, user.id).await?))
}

/// Host only: change name, media, queue, policy, invite-only, password.
#[utoipa::path(patch, path = "/api/v1/rooms/{id}", tag = "rooms", request_body = PatchRoom,
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = RoomView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "busy: the password hashing queue is full; retry")),
    security(("bearer" = [])))]
async fn patch_room(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PatchRoom>,
) -> ApiResult<ApiJson<RoomView>> {
    // The request is checked before the room: an invalid one is a 400
    // whatever state the room is in (ended: 410 only for valid requests).
    if let Some(p) = &req.policy {
        p.check()?;
    }
    if let Some(q) = &req.queue
        && q.len() > MAX_QUEUE_LEN
    {
        return Err(ApiError::InvalidRequest(format!(
            "queue holds at most {MAX_QUEUE_LEN} items"
        )));
    }
    // Password: "" removes it; otherwise it must be a valid new password.
    let new_password: Option<Option<NewPassword>> = match req.password {
        None => None,
        Some(p) if p.is_empty() => Some(None),
        Some(p) => Some(Some(NewPassword::parse(p)?)),
    };
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    // Hashed only for the host.
    let password_change: Option<Option<String>> = match new_password {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => Some(Some(state.hasher.hash(p.as_bytes()).await?)),
    };
    let room_id = ctx.room.id.clone();
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let room = store::load_room(&mut *tx, &room_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if room.ended {
        return Err(ApiError::RoomEnded);
    }
    if room.host_user_id != user.id {
        return Err(ApiError::Forbidden("only the host may do this".into()));
    }
    let mut new_items: Vec<i64> = req.queue.clone().unwrap_or_default();
    new_items.extend(req.media_id);
    if !new_items.is_empty() {
        let members = store::member_ids(&mut *tx, &room_id).await?;
        for &item in &new_items {
            // Items the host cannot see are "not found" to the host.
            if !user_can_access(&mut *tx, user.id, item).await? {
                return Err(ApiError::NotFound);
            }
        }
        check_access_all(&mut tx, &members, &new_items).await?;
    }
    let by_host = |action| {
        Entry::ok(Actor::User(user.id), action)
            .target(Target::Room(room_id.clone()))
            .from_request(&meta)
    };
    let mut records = Vec::new();
    if let Some(flag) = req.invite_only
        && flag != room.invite_only
    {
        let detail = if flag { "on" } else { "off" };
        records.push(by_host(AuditAction::RoomInviteOnlyChanged).detail(detail));
    }
    if let Some(hash) = &password_change {
        let what = if hash.is_some() { "set" } else { "removed" };
        records.push(by_host(AuditAction::RoomPasswordChanged).detail(what));
    }
    let update = RoomUpdate {
        name: req.name.as_ref().map(RoomName::as_str),
        media_id: req.media_id,
        queue: req.queue.as_deref(),
        policy: req.policy.as_ref(),
        invite_only: req.invite_only,
        password_hash: password_change,
    };
    store::update_room(&mut tx, &room_id, update).await?;
    store::touch(&mut *tx, &room_id, now).await?;
    tx.commit().await?;
    records.into_iter().for_each(|r| state.audit.record(r));
    Ok(ApiJson(reload_view(&state, &room_id, user.id).await?))
}

/// Join a room.
///
/// Invite-only rooms admit only users with an invitation (or who were members
/// before); others get 404. A room password is required from everyone who was
/// not invited; wrong passwords are throttled per room and per (room, IP).
/// Seats are limited to `max_members` (409 `room_full`), checked atomically.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/join", tag = "rooms", request_body = Option<JoinRoom>,
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "room_full"), (status = 410, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "busy: the password hashing queue is full; retry")),
    security(("bearer" = [])))]
async fn join_room(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<ApiJson<RoomView>> {
    // The body is optional: empty means "no password".
    let body = body.map_err(|_| ApiError::PayloadTooLarge)?;
    let req: JoinRoom = if body.iter().all(u8::is_ascii_whitespace) {
        JoinRoom::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| ApiError::InvalidRequest("malformed JSON".into()))?
    };
    let ctx = load_ctx(&state, &id, &user).await?;
    let room = &ctx.room;
    let (role, needs_password) = match ctx.standing() {
        Standing::Joined(_) => {
            if room.ended {
                return Err(ApiError::RoomEnded);
            }
            return Ok(ApiJson(view(&state, room, user.id).await?));
        }
        Standing::Invited(role) => (role, false),
        Standing::Outside(Some(MemberStatus::Kicked)) => {
            return Err(ApiError::Forbidden(
                "you were removed from this room".into(),
            ));
        }
        Standing::Outside(Some(MemberStatus::Left)) => {
            (ctx.me.as_ref().map_or(Role::Viewer, |m| m.role), false)
        }
        Standing::Outside(_) if room.invite_only => return Err(ApiError::NotFound),
        Standing::Outside(_) => (Role::Viewer, room.password_hash.is_some()),
    };
    if room.ended {
        return Err(ApiError::RoomEnded);
    }
    let joining = |outcome| {
        Entry::new(Actor::User(user.id), AuditAction::RoomJoined, outcome)
            .target(Target::Room(room.id.clone()))
            .from_request(&meta)
    };
    if needs_password {
        let now = Instant::now();
        let room_key = room.id.to_string();
        let ip_key = (room_key.clone(), meta.ip);
        let throttled = state
            .limits
            .room_password
            .check(&room_key, now)
            .and_then(|()| state.limits.room_password_ip.check(&ip_key, now));
        if let Err(r) = throttled {
            let entry = joining(AuditOutcome::Throttled);
            state.audit.record(entry);
            return Err(ApiError::RateLimited {
                retry_after_secs: r.secs(),
            });
        }
        let ok = match &req.password {
            Some(presented) => {
                state
                    .hasher
                    .verify(presented.as_bytes(), room.password_hash.as_deref())
                    .await?
            }
            None => false,
        };
        if !ok {
            if req.password.is_some() {
                state.limits.room_password.fail(&room_key, Instant::now());
                state.limits.room_password_ip.fail(&ip_key, Instant::now());
                tracing::info!(room_id = %room.id, user_id = user.id, "wrong room password");
            }
            let entry = joining(AuditOutcome::Failure).detail("wrong room password");
            state.audit.record(entry);
            return Err(ApiError::InvalidRoomPassword);
        }
        state.limits.room_password_ip.succeed(&ip_key);
    }
    take_seat(
        &state,
        &room.id,
        user.id,
        role,
        joining(AuditOutcome::Success),
    )
    .await?;
    tracing::info!(room_id = %room.id, user_id = user.id, "joined room");
    Ok(ApiJson(reload_view(&state, &room.id, user.id).await?))
}

/// Leave a room (not the host: hand off or end first).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/leave", tag = "rooms",
    params(("id" = String, Path, description = "room id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn leave_room(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let ctx = load_ctx(&state, &id, &user).await?;
    match ctx.visible()? {
        Standing::Joined(Role::Host) => Err(ApiError::Conflict(
            "the host cannot leave; hand off or end the room".into(),
        )),
        Standing::Joined(role) => {
            set_own_status(
                &state,
                &meta,
                &ctx.room.id,
                (user.id, role),
                MemberStatus::Left,
                AuditAction::RoomLeft,
            )
            .await?;
            crate::ws::on_member_left(&state, &ctx.room.id, user.id);
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::Conflict("you have not joined this room".into())),
    }
}

/// Host only: end the room. Ended rooms accept nothing more.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/end", tag = "rooms",
    params(("id" = String, Path, description = "room id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn end_room(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let ended = store::end_room(&mut *tx, &ctx.room.id, now).await?;
    tx.commit().await?;
    if ended {
        let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomEnded)
            .target(Target::Room(ctx.room.id.clone()))
            .from_request(&meta);
        state.audit.record(entry);
    }
    tracing::info!(room_id = %ctx.room.id, "room ended by host");
    crate::ws::on_room_ended(&state, &ctx.room.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Host only: invite a user (who must have access to the room's media and queue).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/members", tag = "rooms", request_body = InviteMember,
    params(("id" = String, Path, description = "room id")),
    responses((status = 201, body = RoomView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn invite_member(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<InviteMember>,
) -> ApiResult<(StatusCode, ApiJson<RoomView>)> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    let room_id = ctx.room.id.clone();
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let target = crate::accounts::enabled_user_id(&mut *tx, &req.username)
        .await?
        .ok_or_else(|| ApiError::InvalidRequest("the invited user does not exist".into()))?;
    if let Some(Membership {
        status: MemberStatus::Invited | MemberStatus::Joined,
        ..
    }) = store::membership(&mut *tx, &room_id, target).await?
    {
        return Err(ApiError::Conflict("already a member or invited".into()));
    }
    let active = store::member_ids(&mut *tx, &room_id).await?;
    if active.len() >= 2 * ctx.room.max_members as usize {
        return Err(ApiError::Conflict(
            "too many members and pending invitations".into(),
        ));
    }
    let items = store::room_items(&mut tx, &room_id).await?;
    check_access_all(&mut tx, &[target], &items).await?;
    store::set_member(
        &mut *tx,
        &room_id,
        target,
        req.role.into(),
        MemberStatus::Invited,
        now,
    )
    .await?;
    store::touch(&mut *tx, &room_id, now).await?;
    let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomInvited)
        .target(Target::User(target))
        .in_room(&room_id)
        .detail(Role::from(req.role).as_str())
        .from_request(&meta);
    tx.commit().await?;
    state.audit.record(entry);
    Ok((
        StatusCode::CREATED,
        ApiJson(reload_view(&state, &room_id, user.id).await?),
    ))
}

async fn guest_target(
    conn: &mut SqliteConnection,
    room: &RoomId,
    target: i64,
) -> ApiResult<Membership> {
    match store::membership(&mut *conn, room, target).await? {
        Some(
            m @ Membership {
                status: MemberStatus::Invited | MemberStatus::Joined,
                ..
            },
        ) => {
            if m.role == Role::Host {
                Err(ApiError::Conflict("use handoff to change the host".into()))
            } else {
                Ok(m)
            }
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Host only: change a member's or invitee's role (controller/viewer).
#[utoipa::path(patch, path = "/api/v1/rooms/{id}/members/{user_id}", tag = "rooms", request_body = ChangeRole,
    params(("id" = String, Path, description = "room id"), ("user_id" = i64, Path, description = "member user id")),
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn change_role(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath((id, target)): ApiPath<(String, i64)>,
    ApiJson(req): ApiJson<ChangeRole>,
) -> ApiResult<ApiJson<RoomView>> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    let room_id = ctx.room.id.clone();
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let m = guest_target(&mut tx, &room_id, target).await?;
    store::set_member(&mut *tx, &room_id, target, req.role.into(), m.status, now).await?;
    store::touch(&mut *tx, &room_id, now).await?;
    let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomRoleChanged)
        .target(Target::User(target))
        .in_room(&room_id)
        .detail(Role::from(req.role).as_str())
        .from_request(&meta);
    tx.commit().await?;
    state.audit.record(entry);
    crate::ws::on_role_changed(&state, &room_id, target, req.role.into()).await;
    Ok(ApiJson(reload_view(&state, &room_id, user.id).await?))
}

/// Host only: remove a member or withdraw an invitation. A kicked user cannot
/// rejoin unless invited again.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/members/{user_id}", tag = "rooms",
    params(("id" = String, Path, description = "room id"), ("user_id" = i64, Path, description = "member user id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn kick_member(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath((id, target)): ApiPath<(String, i64)>,
) -> ApiResult<StatusCode> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    let room_id = ctx.room.id.clone();
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let m = guest_target(&mut tx, &room_id, target).await?;
    store::set_member(
        &mut *tx,
        &room_id,
        target,
        m.role,
        MemberStatus::Kicked,
        now,
    )
    .await?;
    store::touch(&mut *tx, &room_id, now).await?;
    let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomKicked)
        .target(Target::User(target))
        .in_room(&room_id)
        .detail(m.status.as_str())
        .from_request(&meta);
    tx.commit().await?;
    state.audit.record(entry);
    tracing::info!(room_id = %room_id, user_id = target, "member removed by host");
    crate::ws::on_member_kicked(&state, &room_id, target);
    Ok(StatusCode::NO_CONTENT)
}

/// Host only: make a joined member the host. The old host becomes a
/// controller, the epoch is bumped and the registered host key is cleared
/// (the new host registers its own).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/handoff", tag = "rooms", request_body = Handoff,
    params(("id" = String, Path, description = "room id")),
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn handoff(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Handoff>,
) -> ApiResult<ApiJson<RoomView>> {
    let ctx = load_ctx(&state, &id, &user).await?;
    ctx.host()?;
    let room_id = ctx.room.id.clone();
    let now = now_secs();
    let mut tx = begin_immediate(&state.db).await?;
    let m = guest_target(&mut tx, &room_id, req.user_id).await?;
    if m.status != MemberStatus::Joined {
        return Err(ApiError::Conflict(
            "the new host must have joined the room".into(),
        ));
    }
    store::hand_off(&mut tx, &room_id, user.id, req.user_id, now).await?;
    let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomHandoff)
        .target(Target::User(req.user_id))
        .in_room(&room_id)
        .from_request(&meta);
    tx.commit().await?;
    state.audit.record(entry);
    tracing::info!(room_id = %room_id, new_host = req.user_id, "host handed off");
    crate::ws::on_role_changed(&state, &room_id, user.id, Role::Controller).await;
    Ok(ApiJson(reload_view(&state, &room_id, user.id).await?))
}

/// Pending invitations to open rooms, newest first, at most `list_max_rows`
/// of them (`X-Truncated` says whether older ones were cut off).
#[utoipa::path(get, path = "/api/v1/invites", tag = "invites",
    responses((status = 200, body = Vec<InviteView>,
               headers(("x-truncated" = String, description = "`true` when older invitations beyond `list_max_rows` were left out"))),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_invites(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<([(HeaderName, HeaderValue); 1], ApiJson<Vec<InviteView>>)> {
    let cap = state.config.list_max_rows;
    let mut invites = store::pending_invites(&state.db, user.id, i64::from(cap) + 1).await?;
    let truncated = truncate_listing(&mut invites, cap);
    Ok((truncated, ApiJson(invites)))
}

/// Accept an invitation: joins the room with the offered role (no password needed).
#[utoipa::path(post, path = "/api/v1/invites/{room_id}/accept", tag = "invites",
    params(("room_id" = String, Path, description = "room id")),
    responses((status = 200, body = RoomView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn accept_invite(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<ApiJson<RoomView>> {
    let ctx = load_ctx(&state, &id, &user).await?;
    match ctx.visible()? {
        Standing::Invited(role) => {
            let entry = Entry::ok(Actor::User(user.id), AuditAction::RoomJoined)
                .target(Target::Room(ctx.room.id.clone()))
                .detail("invitation")
                .from_request(&meta);
            take_seat(&state, &ctx.room.id, user.id, role, entry).await?;
            Ok(ApiJson(reload_view(&state, &ctx.room.id, user.id).await?))
        }
        _ => Err(ApiError::Conflict("no pending invitation".into())),
    }
}

/// Decline an invitation.
#[utoipa::path(post, path = "/api/v1/invites/{room_id}/decline", tag = "invites",
    params(("room_id" = String, Path, description = "room id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn decline_invite(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let ctx = load_ctx(&state, &id, &user).await?;
    match ctx.visible()? {
        Standing::Invited(role) => {
            set_own_status(
                &state,
                &meta,
                &ctx.room.id,
                (user.id, role),
                MemberStatus::Declined,
                AuditAction::RoomDeclined,
            )
            .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::Conflict("no pending invitation".into())),
    }
}
