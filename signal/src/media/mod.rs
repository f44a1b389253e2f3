//! Media libraries, items, grants and the access rule.
//!
//! Rule: a user may see and stream an item iff the item is present and the
//! user is an enabled admin or holds a grant on the item's library. The rule is
//! evaluated in SQL ([`accessible_item`], [`user_can_access`]) on every request.
//! Libraries and grants are written by [`library`] only.

pub mod files;
pub mod kinds;
pub mod library;
pub mod probe;
pub mod range;
pub mod scan;
pub mod subtitles;

use serde::Serialize;
use sqlx::SqlitePool;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A stored media item.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    /// Id.
    pub id: i64,
    /// Library id.
    pub library_id: i64,
    /// Path relative to the library root, `/`-separated.
    pub rel_path: String,
    /// Title (from the file name).
    pub title: String,
    /// `video` or `audio`.
    pub kind: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes at scan time.
    pub size_bytes: i64,
    /// Modification time (Unix seconds) at scan time.
    pub mtime: i64,
    /// Duration if known.
    pub duration_ms: Option<i64>,
    /// SHA-256 of the content.
    pub content_hash: Vec<u8>,
    /// The library root folder.
    pub root_path: String,
}

/// Columns selected for [`ItemRow`] (`m` = media_items, `l` = libraries), as a
/// literal so queries are assembled at compile time with `concat!`.
macro_rules! item_columns {
    () => {
        "SELECT m.id, m.library_id, m.rel_path, m.title, m.kind, m.mime_type, \
         m.size_bytes, m.mtime, m.duration_ms, m.content_hash, l.root_path "
    };
}

/// A subtitle track.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SubtitleRow {
    /// Id.
    pub id: i64,
    /// Language tag from the file name (e.g. `en`), if any.
    pub language: Option<String>,
    /// Source format: `vtt` or `srt` (always served as WebVTT).
    pub format: String,
    /// Path relative to the library root.
    #[serde(skip)]
    pub rel_path: String,
}

/// Public view of a media item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaItem {
    /// Id.
    pub id: i64,
    /// Library id.
    pub library_id: i64,
    /// Title.
    pub title: String,
    /// `video` or `audio`.
    pub kind: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Duration in milliseconds, if known.
    pub duration_ms: Option<i64>,
    /// SHA-256 of the content, hex.
    pub content_hash: String,
    /// Sidecar subtitles.
    pub subtitles: Vec<SubtitleRow>,
}

impl ItemRow {
    /// Public view with the given subtitles.
    pub fn view(&self, subtitles: Vec<SubtitleRow>) -> MediaItem {
        MediaItem {
            id: self.id,
            library_id: self.library_id,
            title: self.title.clone(),
            kind: self.kind.clone(),
            mime_type: self.mime_type.clone(),
            size_bytes: self.size_bytes,
            duration_ms: self.duration_ms,
            content_hash: hex::encode(&self.content_hash),
            subtitles,
        }
    }

    /// Strong ETag derived from the content hash and size.
    pub fn etag(&self) -> String {
        let hash = hex::encode(self.content_hash.get(..16).unwrap_or(&self.content_hash));
        format!("\"{hash}-{}\"", self.size_bytes)
    }
}

/// Loads item `item_id` if `user_id` (currently enabled) may access it.
pub async fn accessible_item(
    db: &SqlitePool,
    user_id: i64,
    item_id: i64,
) -> Result<Option<ItemRow>, ApiError> {
    Ok(sqlx::query_as(concat!(
        item_columns!(),
        "FROM media_items m
           JOIN libraries l ON l.id = m.library_id
           JOIN users u ON u.id = ?2
          WHERE m.id = ?1 AND m.present = 1 AND u.disabled = 0
            AND (u.is_admin = 1 OR EXISTS (
                 SELECT 1 FROM library_grants g
                  WHERE g.library_id = m.library_id AND g.user_id = u.id))"
    ))
    .bind(item_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?)
}

/// Whether `user_id` (enabled) may access item `item_id`.
pub async fn user_can_access<'e, E>(exec: E, user_id: i64, item_id: i64) -> Result<bool, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1
           FROM media_items m JOIN users u ON u.id = ?2
          WHERE m.id = ?1 AND m.present = 1 AND u.disabled = 0
            AND (u.is_admin = 1 OR EXISTS (
                 SELECT 1 FROM library_grants g
                  WHERE g.library_id = m.library_id AND g.user_id = u.id))",
    )
    .bind(item_id)
    .bind(user_id)
    .fetch_optional(exec)
    .await?;
    Ok(row.is_some())
}

/// Items visible to the user, ordered by id, after `after`, at most `limit`.
pub async fn list_items(
    db: &SqlitePool,
    user_id: i64,
    library_id: Option<i64>,
    after: i64,
    limit: i64,
) -> Result<Vec<ItemRow>, ApiError> {
    Ok(sqlx::query_as(concat!(
        item_columns!(),
        "FROM media_items m
           JOIN libraries l ON l.id = m.library_id
           JOIN users u ON u.id = ?1
          WHERE m.present = 1 AND u.disabled = 0 AND m.id > ?2
            AND (?3 IS NULL OR m.library_id = ?3)
            AND (u.is_admin = 1 OR EXISTS (
                 SELECT 1 FROM library_grants g
                  WHERE g.library_id = m.library_id AND g.user_id = u.id))
          ORDER BY m.id LIMIT ?4"
    ))
    .bind(user_id)
    .bind(after)
    .bind(library_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Present subtitles of an item.
pub async fn subtitles_of(db: &SqlitePool, item_id: i64) -> Result<Vec<SubtitleRow>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT id, language, format, rel_path FROM subtitles
          WHERE item_id = ?1 AND present = 1 ORDER BY id",
    )
    .bind(item_id)
    .fetch_all(db)
    .await?)
}

/// A library as seen by a user.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct LibraryView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Number of present items.
    pub item_count: i64,
}

/// Libraries visible to the user.
pub async fn list_libraries(db: &SqlitePool, user_id: i64) -> Result<Vec<LibraryView>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT l.id, l.name,
                (SELECT count(*) FROM media_items m WHERE m.library_id = l.id AND m.present = 1)
                  AS item_count
           FROM libraries l JOIN users u ON u.id = ?1
          WHERE u.disabled = 0 AND (u.is_admin = 1 OR EXISTS (
                SELECT 1 FROM library_grants g WHERE g.library_id = l.id AND g.user_id = u.id))
          ORDER BY l.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// A user who may watch an item (the room-creation page offers only these as invitees).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AudienceMember {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
}

/// Enabled users other than `except_user` who may access the items of
/// `library_id` (admins and holders of a grant), by username, at most `limit`.
pub async fn audience(
    db: &SqlitePool,
    library_id: i64,
    except_user: i64,
    limit: i64,
) -> Result<Vec<AudienceMember>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.username, u.display_name FROM users u
          WHERE u.disabled = 0 AND u.id <> ?2
            AND (u.is_admin = 1 OR EXISTS (
                 SELECT 1 FROM library_grants g
                  WHERE g.library_id = ?1 AND g.user_id = u.id))
          ORDER BY u.username LIMIT ?3",
    )
    .bind(library_id)
    .bind(except_user)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
