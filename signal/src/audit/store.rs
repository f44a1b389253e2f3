//! The `audit_log` table (migrations/0002_audit.sql): insert, filtered
//! newest-first reads with a keyset cursor, retention prune.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use utoipa::ToSchema;

use super::{Actor, Entry};

/// Default page of a read.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page of a read (`limit`).
pub const MAX_PAGE: u32 = 500;
/// Most records one prune statement deletes, so a pass never holds the
/// write lock long; the next cleanup pass continues.
pub const PRUNE_BATCH: i64 = 10_000;

/// Writes one record at `at` (Unix seconds).
pub async fn insert<'e, E>(exec: E, entry: &Entry, at: i64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let c = columns(entry);
    sqlx::query(
        "INSERT INTO audit_log (at, actor_kind, actor_user_id, actor_name_hash, action, outcome,
                                target_kind, target_id, room_id, library_id, detail, client_ip, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .bind(at)
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .bind(c.8)
    .bind(c.9)
    .bind(c.10)
    .bind(c.11)
    .execute(exec)
    .await?;
    Ok(())
}

/// Most rows one multi-row `INSERT` writes (13 parameters each, well under
/// SQLite's 32 766).
pub const INSERT_BATCH_ROWS: usize = 500;

/// The stored columns of an entry, in [`insert`]'s order after `at`.
type Columns<'a> = (
    &'static str,
    Option<i64>,
    Option<String>,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<&'a str>,
    Option<String>,
    Option<&'a str>,
);

fn columns(entry: &Entry) -> Columns<'_> {
    let (actor_user, name_hash) = match &entry.actor {
        Actor::User(id) => (Some(*id), None),
        Actor::Anonymous { name_hash } => (None, name_hash.clone()),
        Actor::Operator | Actor::System => (None, None),
    };
    let (target_kind, target_id) = match &entry.target {
        Some(t) => {
            let (k, id) = t.parts();
            (Some(k), Some(id))
        }
        None => (None, None),
    };
    (
        entry.actor.kind(),
        actor_user,
        name_hash,
        entry.action.as_str(),
        entry.outcome.as_str(),
        target_kind,
        target_id,
        entry.room.as_ref().map(|r| r.as_str().to_owned()),
        entry.library,
        entry.detail.as_deref(),
        entry.client_ip.map(|ip| ip.to_string()),
        entry.request_id.as_deref(),
    )
}

/// Writes `rows` (time, entry) in one statement.
pub async fn insert_many(db: &SqlitePool, rows: &[(i64, Entry)]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO audit_log (at, actor_kind, actor_user_id, actor_name_hash, action, outcome,
                                target_kind, target_id, room_id, library_id, detail, client_ip, request_id) ",
    );
    q.push_values(rows, |mut b, (at, entry)| {
        let c = columns(entry);
        b.push_bind(*at)
            .push_bind(c.0)
            .push_bind(c.1)
            .push_bind(c.2)
            .push_bind(c.3)
            .push_bind(c.4)
            .push_bind(c.5)
            .push_bind(c.6)
            .push_bind(c.7)
            .push_bind(c.8)
            .push_bind(c.9.map(str::to_owned))
            .push_bind(c.10)
            .push_bind(c.11.map(str::to_owned));
    });
    q.build().execute(db).await?;
    Ok(())
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditRecord {
    /// Id; increases with time (the cursor).
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// `user`, `anonymous`, `operator` or `system`.
    pub actor_kind: String,
    /// The acting user (`actor_kind` `user`).
    pub actor_user_id: Option<i64>,
    /// Keyed hash of a username no account had (failed logins).
    pub actor_name_hash: Option<String>,
    /// What happened (see docs/operations.md for the list).
    pub action: String,
    /// `success`, `failure` or `throttled`.
    pub outcome: String,
    /// `user`, `room` or `library`.
    pub target_kind: Option<String>,
    /// The target's id.
    pub target_id: Option<String>,
    /// The room it happened in.
    pub room_id: Option<String>,
    /// The library it happened in.
    pub library_id: Option<i64>,
    /// A word or figures chosen by the server.
    pub detail: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// Request id (as in the server log).
    pub request_id: Option<String>,
}

/// Whose records to read: an account's (as actor or target), or an
/// attempted name's (its keyed hash), or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMatch {
    /// The account's id.
    pub id: Option<i64>,
    /// The name's keyed hash.
    pub name_hash: Option<String>,
}

/// A read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only records at or after (Unix seconds).
    pub since: Option<i64>,
    /// Only these users' records.
    pub user: Option<UserMatch>,
    /// Only records about this room (as target or place).
    pub room: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records with an id below this (the cursor of the previous page).
    pub before: Option<i64>,
    /// Page size (1..=[`MAX_PAGE`]).
    pub limit: u32,
}

/// One page, newest first, and the cursor of the next (`None`: no more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditPage {
    /// Records, newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Reads one page.
pub async fn query(db: &SqlitePool, filter: &Filter) -> Result<AuditPage, sqlx::Error> {
    let limit = filter.limit.clamp(1, MAX_PAGE);
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, at, actor_kind, actor_user_id, actor_name_hash, action, outcome, target_kind,
                target_id, room_id, library_id, detail, client_ip, request_id
           FROM audit_log WHERE 1 = 1",
    );
    if let Some(since) = filter.since {
        q.push(" AND at >= ").push_bind(since);
    }
    if let Some(before) = filter.before {
        q.push(" AND id < ").push_bind(before);
    }
    if let Some(action) = &filter.action {
        q.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(room) = &filter.room {
        q.push(" AND ((target_kind = 'room' AND target_id = ")
            .push_bind(room.clone())
            .push(") OR room_id = ")
            .push_bind(room.clone())
            .push(")");
    }
    if let Some(user) = &filter.user {
        q.push(" AND (0");
        if let Some(id) = user.id {
            q.push(" OR actor_user_id = ")
                .push_bind(id)
                .push(" OR (target_kind = 'user' AND target_id = ")
                .push_bind(id.to_string())
                .push(")");
        }
        if let Some(hash) = &user.name_hash {
            q.push(" OR actor_name_hash = ").push_bind(hash.clone());
        }
        q.push(")");
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut records: Vec<AuditRecord> = q.build_query_as().fetch_all(db).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_before = if more {
        records.last().map(|r| r.id)
    } else {
        None
    };
    Ok(AuditPage {
        records,
        next_before,
    })
}

/// Deletes records older than `older_than` (Unix seconds) and the oldest
/// beyond `max_records`, at most [`PRUNE_BATCH`] of each; returns how many.
pub async fn prune(db: &SqlitePool, older_than: i64, max_records: u64) -> Result<u64, sqlx::Error> {
    let old = sqlx::query(
        "DELETE FROM audit_log WHERE id IN (
             SELECT id FROM audit_log WHERE at < ?1 ORDER BY id LIMIT ?2)",
    )
    .bind(older_than)
    .bind(PRUNE_BATCH)
    .execute(db)
    .await?
    .rows_affected();
    let keep = i64::try_from(max_records).unwrap_or(i64::MAX);
    let over = sqlx::query(
        "DELETE FROM audit_log WHERE id IN (
             SELECT id FROM audit_log
              WHERE id <= (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?1)
              ORDER BY id LIMIT ?2)",
    )
    .bind(keep)
    .bind(PRUNE_BATCH)
    .execute(db)
    .await?
    .rows_affected();
    Ok(old + over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditOutcome, Target};
    use crate::rooms::model::RoomId;

    async fn db() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("t.db")).await.unwrap();
        (dir, pool)
    }

    fn room() -> RoomId {
        RoomId::parse(&"ab".repeat(16)).unwrap()
    }

    #[tokio::test]
    async fn insert_query_filters_and_pages() {
        let (_dir, pool) = db().await;
        for i in 0..7 {
            let e = Entry::ok(Actor::User(1), AuditAction::RoomJoined).target(Target::Room(room()));
            insert(&pool, &e, 100 + i).await.unwrap();
        }
        let e = Entry::ok(Actor::User(1), AuditAction::RoomKicked)
            .target(Target::User(2))
            .in_room(&room())
            .detail("joined");
        insert(&pool, &e, 200).await.unwrap();
        let e = Entry::new(
            Actor::Anonymous {
                name_hash: Some("0".repeat(32)),
            },
            AuditAction::Login,
            AuditOutcome::Failure,
        );
        insert(&pool, &e, 300).await.unwrap();

        let all = |limit| Filter {
            limit,
            ..Filter::default()
        };
        let page = query(&pool, &all(100)).await.unwrap();
        assert_eq!(page.records.len(), 9);
        assert_eq!(page.next_before, None);
        assert_eq!(page.records[0].action, "login");
        // Pages of 4 cross every record exactly once, newest first.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = query(&pool, &Filter { before, ..all(4) }).await.unwrap();
            seen.extend(page.records.iter().map(|r| r.id));
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        let mut expected: Vec<i64> = page.records.iter().map(|r| r.id).collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(seen, expected);

        let of_user_2 = Filter {
            user: Some(UserMatch {
                id: Some(2),
                name_hash: None,
            }),
            ..all(100)
        };
        let page = query(&pool, &of_user_2).await.unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].detail.as_deref(), Some("joined"));
        let in_room = Filter {
            room: Some(room().to_string()),
            ..all(100)
        };
        assert_eq!(query(&pool, &in_room).await.unwrap().records.len(), 8);
        let by_name = Filter {
            user: Some(UserMatch {
                id: None,
                name_hash: Some("0".repeat(32)),
            }),
            ..all(100)
        };
        assert_eq!(query(&pool, &by_name).await.unwrap().records.len(), 1);
        let since = Filter {
            since: Some(200),
            action: Some("room_kicked".into()),
            ..all(100)
        };
        assert_eq!(query(&pool, &since).await.unwrap().records.len(), 1);
    }

    #[tokio::test]
    async fn one_prune_deletes_at_most_a_batch() {
        let (_dir, pool) = db().await;
        let mut tx = pool.begin().await.unwrap();
        let e = Entry::ok(Actor::System, AuditAction::RoomCleanedUp);
        for _ in 0..PRUNE_BATCH + 5 {
            insert(&mut *tx, &e, 1).await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(prune(&pool, 2, 100_000_000).await.unwrap(), 10_000);
        assert_eq!(prune(&pool, 2, 100_000_000).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn records_cannot_be_changed_and_prune_keeps_the_newest() {
        let (_dir, pool) = db().await;
        for i in 0..20 {
            let e = Entry::ok(Actor::System, AuditAction::RoomCleanedUp);
            insert(&pool, &e, i).await.unwrap();
        }
        let changed = sqlx::query("UPDATE audit_log SET outcome = 'failure'")
            .execute(&pool)
            .await;
        assert!(changed.is_err(), "append-only");
        // Older than 5: 0..=4 go.
        assert_eq!(prune(&pool, 5, 1_000_000).await.unwrap(), 5);
        // At most 10 kept: the 5 oldest of the remaining 15 go.
        assert_eq!(prune(&pool, 5, 10).await.unwrap(), 5);
        let page = query(
            &pool,
            &Filter {
                limit: 100,
                ..Filter::default()
            },
        )
        .await
        .unwrap();
        let ats: Vec<i64> = page.records.iter().map(|r| r.at).collect();
        assert_eq!(ats, (10..20).rev().collect::<Vec<_>>());
    }
}
