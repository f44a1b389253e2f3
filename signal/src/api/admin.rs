//! `/api/v1/admin/*`: the audit trail and its alerts, for administrators
//! only (403 `forbidden` for everyone else; see [`crate::auth::AdminUser`]).

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditAction;
use crate::audit::alerts::AlertView;
use crate::audit::store::{self, AuditPage, DEFAULT_PAGE, Filter, MAX_PAGE, UserMatch};
use crate::auth::AdminUser;
use crate::db::now_secs;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::rooms::model::RoomId;
use crate::state::AppState;
use crate::validate::Username;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(alerts))
}

/// Filters and paging of `GET /api/v1/admin/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records at or after this time (Unix seconds).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only records of this username: as actor or target, and failed logins
    /// that named it.
    #[param(pattern = "^[a-z0-9_.-]{3,32}$")]
    pub user: Option<String>,
    /// Only records about this room (as target or place).
    #[param(pattern = "^[0-9a-f]{32}$")]
    pub room: Option<String>,
    /// Only this action.
    #[param(inline)]
    pub action: Option<AuditAction>,
    /// Records with an id below this: the `next_before` of the previous page.
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The audit trail, newest first, one page at a time (`next_before` is the
/// cursor of the next page). Administrators only.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an administrator")),
    security(("bearer" = [])))]
async fn audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<ApiJson<AuditPage>> {
    let limit = q.limit.unwrap_or(i64::from(DEFAULT_PAGE));
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| (1..=MAX_PAGE).contains(l))
        .ok_or_else(|| ApiError::InvalidRequest(format!("limit must be 1..={MAX_PAGE}")))?;
    if q.since.is_some_and(|s| s < 0) {
        return Err(ApiError::InvalidRequest("since must be 0 or more".into()));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::InvalidRequest("before must be 1 or more".into()));
    }
    let room = q
        .room
        .as_deref()
        .map(|r| {
            RoomId::parse(r)
                .map(|r| r.to_string())
                .map_err(|_| ApiError::InvalidRequest("room must be a room id".into()))
        })
        .transpose()?;
    let user = match q.user.as_deref() {
        Some(name) => {
            let name = Username::parse(name)
                .map_err(|_| ApiError::InvalidRequest("user must be a username".into()))?;
            let id = crate::accounts::find_user(&state.db, name.as_str())
                .await?
                .map(|u| u.id);
            Some(UserMatch {
                id,
                name_hash: Some(state.audit.name_hash(name.as_str())),
            })
        }
        None => None,
    };
    // Queued records first, so the page is up to date.
    state.audit.flush(&state.db).await?;
    let filter = Filter {
        since: q.since,
        user,
        room,
        action: q.action.map(|a| a.as_str().to_owned()),
        before: q.before,
        limit,
    };
    Ok(ApiJson(store::query(&state.db, &filter).await?))
}

/// Alerts whose window has not ended (see docs/operations.md, "Audit
/// trail"), newest first. Administrators only.
#[utoipa::path(get, path = "/api/v1/admin/audit/alerts", tag = "admin",
    responses((status = 200, body = Vec<AlertView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an administrator")),
    security(("bearer" = [])))]
async fn alerts(State(state): State<AppState>, _admin: AdminUser) -> ApiJson<Vec<AlertView>> {
    ApiJson(state.audit.alerts.active(now_secs()))
}
