//! Library rows and grants: the one place that writes `libraries` and
//! `library_grants`. The admin commands (`library add`, `grant`, `revoke`)
//! and the test and benchmark fixtures all go through these functions.

use std::path::Path;

use sqlx::SqlitePool;

use super::scan::{ScanError, scan_library};

/// Creates library `name` rooted at `root_path` (absolute, canonical, UTF-8)
/// with creation time `now` (Unix seconds); returns its id. A name already in
/// use fails with the database's unique violation.
pub async fn add(
    db: &SqlitePool,
    name: &str,
    root_path: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO libraries (name, root_path, created_at) VALUES (?1, ?2, ?3) RETURNING id",
    )
    .bind(name)
    .bind(root_path)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Gives `user_id` access to every item of `library_id` (grant time `now`,
/// Unix seconds). Granting again changes nothing.
pub async fn grant(
    db: &SqlitePool,
    user_id: i64,
    library_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO library_grants (user_id, library_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(library_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes back `user_id`'s grant on `library_id` (nothing when there is none).
pub async fn revoke(db: &SqlitePool, user_id: i64, library_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM library_grants WHERE user_id = ?1 AND library_id = ?2")
        .bind(user_id)
        .bind(library_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Creates library `name` at `root` (made canonical first; creation time
/// `now`) and scans it with the default entry cap; returns its id. The test
/// and benchmark fixtures set up their media with this.
pub async fn add_scanned(
    db: &SqlitePool,
    name: &str,
    root: &Path,
    now: i64,
) -> Result<i64, ScanError> {
    let root = std::fs::canonicalize(root).map_err(|e| ScanError::Root(root.to_owned(), e))?;
    let text = root.to_str().ok_or_else(|| {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "path is not UTF-8");
        ScanError::Root(root.clone(), e)
    })?;
    let id = add(db, name, text, now).await?;
    scan_library(db, id).await?;
    Ok(id)
}
