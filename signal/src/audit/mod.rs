//! The audit trail (issue #21): an append-only record of who did what to
//! whom, when, from where and with what result.
//!
//! Every record ([`Entry`]) has a time, an [`Actor`] (a user id; for a login
//! with a name no account has, the keyed hash of that name; the operator of
//! the command line; or the server itself), an [`AuditAction`], an
//! [`AuditOutcome`], an optional [`Target`] (user, room or library) with the
//! room or library it happened in, a short `detail` chosen by the server, the
//! client address ([`crate::client_ip`] rules) and the request id. A record
//! never holds a password, token, room password or chat text (chat never
//! reaches the server at all).
//!
//! A handler queues the record once its action has committed
//! ([`Auditor::record`], no database work on the request's path); a writer
//! task ([`Auditor::spawn_writer`]) writes the queue as one multi-row
//! `INSERT` at least every [`FLUSH_INTERVAL`], so the hot paths (login,
//! join) keep their transactions as they were: writing the record inside
//! the join's `BEGIN IMMEDIATE` transaction cost 20–40 % of join throughput
//! under load (docs/benchmarks.md). At most [`MAX_PENDING_RECORDS`] wait;
//! beyond, records are counted as suppressed. [`Auditor::flush`] writes the
//! queue at once (the admin read, the cleanup pass, shutdown); a crash can
//! lose the records of the last [`FLUSH_INTERVAL`].
//!
//! Failed and throttled logins and refresh-token reuse come from requests
//! nobody signed in to; their records draw on one global budget
//! ([`UNSIGNED_RECORD_BURST`], [`UNSIGNED_RECORD_REFILL`]) so a flood cannot
//! fill the disk. Records over it are counted, not written; the cleanup pass
//! writes one `audit_suppressed` record with the count. The alert counters
//! ([`alerts`]) see every event, written or not.
//!
//! Reading: [`store::query`] (the admin API and `watchparty-signal audit`).
//! Retention: [`store::prune`] in the room cleanup pass.

pub mod alerts;
pub mod config;
pub mod store;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use ring::hmac;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use tokio::sync::Notify;
use utoipa::ToSchema;

pub use config::AuditConfig;

use crate::db::now_secs;
use crate::keys::SymmetricKey;
use crate::rooms::model::RoomId;
use crate::throttle::RateLimiter;

/// Records of requests nobody signed in to (failed or throttled logins,
/// refresh-token reuse) written at once before the budget applies.
pub const UNSIGNED_RECORD_BURST: u32 = 300;
/// Refill of that budget: one record every 2 s (at most 43 200 a day).
pub const UNSIGNED_RECORD_REFILL: Duration = Duration::from_secs(2);
/// Longest request id kept in a record (characters of `[A-Za-z0-9._-]`;
/// anything else in a client-chosen `x-request-id` is dropped).
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// Hex characters of the keyed username hash kept (128 bits).
pub const NAME_HASH_CHARS: usize = 32;
/// Longest time a queued record waits before the writer task writes it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Most records waiting to be written; past it new records are counted as
/// suppressed, not kept.
pub const MAX_PENDING_RECORDS: usize = 10_000;

/// What happened. Stored as the snake_case name, which is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A password login (success, failure or throttled).
    Login,
    /// An already-used refresh token came back; its session was revoked.
    RefreshReuse,
    /// A session was logged out.
    Logout,
    /// An account was created (command line or open registration).
    UserCreated,
    /// An account was disabled.
    UserDisabled,
    /// An account was made or unmade an administrator (`detail`: `on`/`off`).
    UserAdminChanged,
    /// An account's password was reset on the command line.
    UserPasswordReset,
    /// A library was registered.
    LibraryAdded,
    /// A library was scanned (`detail`: the counts).
    LibraryScanned,
    /// A user was granted a library.
    LibraryGranted,
    /// A user's grant on a library was revoked.
    LibraryRevoked,
    /// A room was created.
    RoomCreated,
    /// A user was invited to a room (`detail`: the role).
    RoomInvited,
    /// A user joined a room (or tried to: a wrong room password is a failure).
    RoomJoined,
    /// A member left a room.
    RoomLeft,
    /// An invitation was declined.
    RoomDeclined,
    /// A member's role changed (`detail`: the new role).
    RoomRoleChanged,
    /// A member was removed, or an invitation withdrawn (`detail`: what they were).
    RoomKicked,
    /// The host handed the room to a member (the target).
    RoomHandoff,
    /// The room password was set or removed (`detail`: `set`/`removed`).
    RoomPasswordChanged,
    /// Invite-only was switched (`detail`: `on`/`off`).
    RoomInviteOnlyChanged,
    /// The host ended a room.
    RoomEnded,
    /// The cleanup pass ended an idle room or deleted an old ended one
    /// (`detail`: `ended_idle`/`deleted`).
    RoomCleanedUp,
    /// A signaling socket was closed because its access was revoked
    /// (session, account or membership gone).
    SignalRevoked,
    /// Records over the budget for requests nobody signed in to, or over
    /// the queue's cap, were not written (`detail`: how many).
    AuditSuppressed,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 25] = [
        AuditAction::Login,
        AuditAction::RefreshReuse,
        AuditAction::Logout,
        AuditAction::UserCreated,
        AuditAction::UserDisabled,
        AuditAction::UserAdminChanged,
        AuditAction::UserPasswordReset,
        AuditAction::LibraryAdded,
        AuditAction::LibraryScanned,
        AuditAction::LibraryGranted,
        AuditAction::LibraryRevoked,
        AuditAction::RoomCreated,
        AuditAction::RoomInvited,
        AuditAction::RoomJoined,
        AuditAction::RoomLeft,
        AuditAction::RoomDeclined,
        AuditAction::RoomRoleChanged,
        AuditAction::RoomKicked,
        AuditAction::RoomHandoff,
        AuditAction::RoomPasswordChanged,
        AuditAction::RoomInviteOnlyChanged,
        AuditAction::RoomEnded,
        AuditAction::RoomCleanedUp,
        AuditAction::SignalRevoked,
        AuditAction::AuditSuppressed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::RefreshReuse => "refresh_reuse",
            AuditAction::Logout => "logout",
            AuditAction::UserCreated => "user_created",
            AuditAction::UserDisabled => "user_disabled",
            AuditAction::UserAdminChanged => "user_admin_changed",
            AuditAction::UserPasswordReset => "user_password_reset",
            AuditAction::LibraryAdded => "library_added",
            AuditAction::LibraryScanned => "library_scanned",
            AuditAction::LibraryGranted => "library_granted",
            AuditAction::LibraryRevoked => "library_revoked",
            AuditAction::RoomCreated => "room_created",
            AuditAction::RoomInvited => "room_invited",
            AuditAction::RoomJoined => "room_joined",
            AuditAction::RoomLeft => "room_left",
            AuditAction::RoomDeclined => "room_declined",
            AuditAction::RoomRoleChanged => "room_role_changed",
            AuditAction::RoomKicked => "room_kicked",
            AuditAction::RoomHandoff => "room_handoff",
            AuditAction::RoomPasswordChanged => "room_password_changed",
            AuditAction::RoomInviteOnlyChanged => "room_invite_only_changed",
            AuditAction::RoomEnded => "room_ended",
            AuditAction::RoomCleanedUp => "room_cleaned_up",
            AuditAction::SignalRevoked => "signal_revoked",
            AuditAction::AuditSuppressed => "audit_suppressed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether a record of this action with `outcome` comes from a request
    /// nobody signed in to (and so draws on the [`UNSIGNED_RECORD_BURST`] budget).
    fn unsigned(self, outcome: AuditOutcome) -> bool {
        match self {
            AuditAction::Login => outcome != AuditOutcome::Success,
            AuditAction::RefreshReuse => true,
            _ => false,
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done.
    Success,
    /// Refused (wrong password, reused token).
    Failure,
    /// Refused by a throttle or rate limit before it was tried.
    Throttled,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Throttled => "throttled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditOutcome::Success,
            AuditOutcome::Failure,
            AuditOutcome::Throttled,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user (signed in, or the account a failed login named).
    User(i64),
    /// Nobody signed in: a login with a name no account has, kept only as
    /// [`Auditor::name_hash`].
    Anonymous {
        /// Keyed hash of the attempted username.
        name_hash: Option<String>,
    },
    /// The operator, on the command line.
    Operator,
    /// The server itself (cleanup, signaling revalidation).
    System,
}

impl Actor {
    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Anonymous { .. } => "anonymous",
            Actor::Operator => "operator",
            Actor::System => "system",
        }
    }
}

/// Whom or what it was done to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user.
    User(i64),
    /// A room.
    Room(RoomId),
    /// A library.
    Library(i64),
}

impl Target {
    /// Stored (kind, id).
    pub fn parts(&self) -> (&'static str, String) {
        match self {
            Target::User(id) => ("user", id.to_string()),
            Target::Room(id) => ("room", id.to_string()),
            Target::Library(id) => ("library", id.to_string()),
        }
    }
}

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// Result.
    pub outcome: AuditOutcome,
    /// To whom or what.
    pub target: Option<Target>,
    /// The room it happened in (when the target is a member).
    pub room: Option<RoomId>,
    /// The library it happened in (a grant's library).
    pub library: Option<i64>,
    /// A word or figures chosen by the server; never client text.
    pub detail: Option<String>,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// Request id.
    pub request_id: Option<String>,
}

impl Entry {
    /// A record with no target, detail or request context.
    pub fn new(actor: Actor, action: AuditAction, outcome: AuditOutcome) -> Self {
        Entry {
            actor,
            action,
            outcome,
            target: None,
            room: None,
            library: None,
            detail: None,
            client_ip: None,
            request_id: None,
        }
    }

    /// A successful action by `actor`.
    pub fn ok(actor: Actor, action: AuditAction) -> Self {
        Self::new(actor, action, AuditOutcome::Success)
    }

    /// Sets the target.
    #[must_use]
    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// Sets the room it happened in.
    #[must_use]
    pub fn in_room(mut self, room: &RoomId) -> Self {
        self.room = Some(room.clone());
        self
    }

    /// Sets the library it happened in.
    #[must_use]
    pub fn in_library(mut self, library: i64) -> Self {
        self.library = Some(library);
        self
    }

    /// Sets the detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the client address and request id of `meta`.
    #[must_use]
    pub fn from_request(mut self, meta: &RequestMeta) -> Self {
        self.client_ip = Some(meta.ip);
        self.request_id.clone_from(&meta.request_id);
        self
    }
}

/// Extractor: the client address (trusted-proxy rules) and the request id
/// (`x-request-id`, set by the request-id layer when the client sent none).
/// The extractor itself is in [`crate::api::extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client address.
    pub ip: IpAddr,
    /// Request id, cleaned by [`clean_request_id`].
    pub request_id: Option<String>,
}

/// Keeps at most [`MAX_REQUEST_ID_CHARS`] characters of `[A-Za-z0-9._-]`.
pub fn clean_request_id(raw: &str) -> Option<String> {
    let id: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_REQUEST_ID_CHARS)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Queues and writes records, keeps the unsigned-request budget and the
/// alert counters.
#[derive(Debug)]
pub struct Auditor {
    name_key: hmac::Key,
    unsigned: RateLimiter<()>,
    suppressed: AtomicU64,
    /// Records waiting to be written, with their time (Unix seconds).
    pending: Mutex<Vec<(i64, Entry)>>,
    /// Wakes the writer when the queue holds a full batch.
    wake: Notify,
    /// Held while a batch is written, so batches keep their order.
    writing: tokio::sync::Mutex<()>,
    /// Alert counters (see [`alerts`]).
    pub alerts: alerts::AlertTracker,
}

impl Auditor {
    /// An auditor hashing names with `key`, with the alert rules of `config`.
    pub fn new(key: &SymmetricKey, config: &AuditConfig) -> Self {
        Self::with_budget(key, config, UNSIGNED_RECORD_BURST, UNSIGNED_RECORD_REFILL)
    }

    /// As [`Auditor::new`] with another unsigned-request budget (tests).
    pub fn with_budget(
        key: &SymmetricKey,
        config: &AuditConfig,
        burst: u32,
        refill: Duration,
    ) -> Self {
        Auditor {
            name_key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
            unsigned: RateLimiter::new(burst, refill, 1),
            suppressed: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
            alerts: alerts::AlertTracker::new(config.alerts.clone()),
        }
    }

    /// The keyed hash of a username: not reversible without the server's
    /// `audit-hmac.key`, equal for equal names.
    pub fn name_hash(&self, name: &str) -> String {
        name_hash_with(&self.name_key, name)
    }

    /// Counts `entry` for the alerts; whether it may be written.
    fn admit(&self, entry: &Entry) -> bool {
        let now = Instant::now();
        self.alerts.observe(entry, now, now_secs());
        if entry.action.unsigned(entry.outcome) && self.unsigned.hit(&(), now).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues `entry` (call it once the action has committed); the writer
    /// task writes it within [`FLUSH_INTERVAL`].
    pub fn record(&self, entry: Entry) {
        if !self.admit(&entry) {
            return;
        }
        let len = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() >= MAX_PENDING_RECORDS {
                drop(pending);
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.push((now_secs(), entry));
            pending.len()
        };
        if len >= store::INSERT_BATCH_ROWS {
            self.wake.notify_one();
        }
    }

    /// Writes every queued record now; returns how many. On a database
    /// error the batch is lost (and logged by the caller).
    pub async fn flush(&self, db: &SqlitePool) -> Result<usize, sqlx::Error> {
        let _writing = self.writing.lock().await;
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for chunk in batch.chunks(store::INSERT_BATCH_ROWS) {
            store::insert_many(db, chunk).await?;
        }
        Ok(batch.len())
    }

    /// The writer task: writes the queue every [`FLUSH_INTERVAL`], or at
    /// once when it holds a full batch.
    pub fn spawn_writer(self: &Arc<Self>, db: SqlitePool) -> tokio::task::JoinHandle<()> {
        let auditor = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                    () = auditor.wake.notified() => {}
                }
                if db.is_closed() {
                    return;
                }
                if let Err(e) = auditor.flush(&db).await {
                    tracing::error!(error = %e, "audit records not written");
                }
            }
        })
    }

    /// Records not written for the budget since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }
}

/// [`Auditor::name_hash`] with a key of its own (the `audit` sub-command).
pub fn name_hash(key: &SymmetricKey, name: &str) -> String {
    name_hash_with(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), name)
}

fn name_hash_with(key: &hmac::Key, name: &str) -> String {
    let tag = hmac::sign(key, name.as_bytes());
    let mut hex = hex::encode(tag.as_ref());
    hex.truncate(NAME_HASH_CHARS);
    hex
}

/// Parses a `--since` value: Unix seconds, or an age such as `90m`, `24h`,
/// `7d` (s, m, h, d) counted back from `now`.
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    let unit = text.chars().last().ok_or_else(|| "empty time".to_owned())?;
    let scale: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "cannot read {text:?}: give Unix seconds or an age like 24h or 7d"
            ));
        }
    };
    let n: i64 = text[..text.len() - 1]
        .parse()
        .map_err(|_| format!("cannot read {text:?}: give Unix seconds or an age like 24h or 7d"))?;
    Ok(now.saturating_sub(n.saturating_mul(scale)))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_the_serde_names_and_round_trip() {
        for a in AuditAction::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("nope"), None);
        for o in ["success", "failure", "throttled"] {
            assert_eq!(AuditOutcome::parse(o).unwrap().as_str(), o);
        }
    }

    #[test]
    fn name_hashes_are_keyed_and_stable() {
        let a = SymmetricKey::from_bytes([1; 32]);
        let b = SymmetricKey::from_bytes([2; 32]);
        let h = name_hash(&a, "mallory");
        assert_eq!(h.len(), NAME_HASH_CHARS);
        assert_eq!(h, name_hash(&a, "mallory"));
        assert_ne!(h, name_hash(&b, "mallory"));
        assert_ne!(h, name_hash(&a, "mallorz"));
        assert!(!h.contains("mallory"));
    }

    #[test]
    fn request_ids_are_cleaned_and_clipped() {
        assert_eq!(
            clean_request_id("ab12-x_y.z").as_deref(),
            Some("ab12-x_y.z")
        );
        assert_eq!(clean_request_id("<script> 1").as_deref(), Some("script1"));
        assert_eq!(clean_request_id("   "), None);
        let long = "a".repeat(MAX_REQUEST_ID_CHARS + 10);
        assert_eq!(clean_request_id(&long).unwrap().len(), MAX_REQUEST_ID_CHARS);
    }

    #[tokio::test]
    async fn records_of_unsigned_requests_stop_at_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("t.db")).await.unwrap();
        // The production burst; a refill too slow to matter while the test runs.
        let auditor = Auditor::with_budget(
            &SymmetricKey::from_bytes([3; 32]),
            &AuditConfig::default(),
            UNSIGNED_RECORD_BURST,
            Duration::from_secs(86_400),
        );
        let failed = Entry::new(
            Actor::Anonymous { name_hash: None },
            AuditAction::Login,
            AuditOutcome::Failure,
        );
        for _ in 0..UNSIGNED_RECORD_BURST + 3 {
            auditor.record(failed.clone());
        }
        // Signed-in actions never draw on the budget.
        auditor.record(Entry::ok(Actor::User(1), AuditAction::RoomJoined));
        assert_eq!(
            auditor.flush(&pool).await.unwrap(),
            usize::try_from(UNSIGNED_RECORD_BURST).unwrap() + 1
        );
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, i64::from(UNSIGNED_RECORD_BURST) + 1);
        assert_eq!(auditor.take_suppressed(), 3);
        assert_eq!(auditor.take_suppressed(), 0);
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_the_writer_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("t.db")).await.unwrap();
        let auditor = Arc::new(Auditor::new(
            &SymmetricKey::from_bytes([4; 32]),
            &AuditConfig::default(),
        ));
        let joined = Entry::ok(Actor::User(1), AuditAction::RoomJoined);
        for _ in 0..MAX_PENDING_RECORDS + 2 {
            auditor.record(joined.clone());
        }
        assert_eq!(auditor.take_suppressed(), 2);
        assert_eq!(auditor.flush(&pool).await.unwrap(), MAX_PENDING_RECORDS);
        // The writer task writes what is queued without being asked.
        let writer = auditor.spawn_writer(pool.clone());
        auditor.record(joined);
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        let limit = i64::try_from(MAX_PENDING_RECORDS).unwrap() + 1;
        while count().await < limit {
            tokio::time::sleep(FLUSH_INTERVAL).await;
        }
        writer.abort();
    }

    #[test]
    fn since_and_dates() {
        assert_eq!(parse_since("1700000000", 5), Ok(1_700_000_000));
        assert_eq!(parse_since("2h", 10_000), Ok(10_000 - 7200));
        assert_eq!(parse_since("7d", 1_000_000), Ok(1_000_000 - 7 * 86_400));
        assert!(parse_since("7w", 0).is_err());
        assert!(parse_since("", 0).is_err());
        assert!(parse_since("xh", 0).is_err());
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_798_761_599), "2026-12-31 23:59:59");
    }
}
