//! Library scan: index video/audio files and sidecar subtitles, idempotently.
//!
//! The walk never follows symlinks, skips hidden entries, and is bounded by
//! [`MAX_SCAN_DEPTH`] and an entry cap (config `scan_max_entries`, default
//! [`DEFAULT_SCAN_MAX_ENTRIES`]). A tree with more entries fails the scan with
//! [`ScanError::TooManyEntries`] **before** the database is touched, so the
//! index stays exactly as the previous scan left it. A file is indexed when its
//! extension is known **and** its first bytes match ([`super::kinds`]). Files
//! whose size and mtime are unchanged since the last scan are not re-hashed.
//! Items and subtitles no longer found are marked absent (`present = 0`), not
//! deleted, so rooms referring to them keep their history. Running the scan
//! twice on an unchanged tree changes nothing.
//!
//! Durations: every new or changed file, and every known file whose duration
//! is still unknown, is probed with `ffprobe` ([`super::probe`], bounded by
//! [`super::probe::PROBE_TIMEOUT`]); without `ffprobe` the duration stays
//! `NULL` and a warning is logged — the scan never fails for it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use super::kinds::{self, MAGIC_LEN, MediaKind};
use super::probe::Prober;
use super::subtitles::MAX_SUBTITLE_BYTES;
pub use crate::config::DEFAULT_SCAN_MAX_ENTRIES;
use crate::db::{begin_immediate, now_secs};

/// Deepest directory nesting walked below the root.
pub const MAX_SCAN_DEPTH: usize = 32;
/// Longest relative path indexed (bytes).
pub const MAX_REL_PATH_LEN: usize = 1024;

/// Scan errors.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The library does not exist.
    #[error("no such library")]
    NoSuchLibrary,
    /// The root is not a readable directory.
    #[error("library root {0}: {1}")]
    Root(PathBuf, std::io::Error),
    /// The tree has more directory entries (hidden ones and non-media files
    /// included) than the cap; nothing was changed.
    #[error(
        "library has more than {limit} directory entries (scan_max_entries); the scan was \
         abandoned and the index left unchanged"
    )]
    TooManyEntries {
        /// The cap that was crossed.
        limit: usize,
    },
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The blocking walk task failed.
    #[error("scan task failed")]
    Task,
}

/// What a scan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// New items.
    pub added: u64,
    /// Items whose content changed.
    pub updated: u64,
    /// Items unchanged.
    pub unchanged: u64,
    /// Items marked absent.
    pub missing: u64,
    /// Subtitle tracks present after the scan.
    pub subtitles: u64,
    /// Files with a media extension whose magic bytes did not match.
    pub rejected: u64,
}

#[derive(Debug)]
struct FoundMedia {
    rel: String,
    title: String,
    kind: MediaKind,
    size: u64,
    mtime: i64,
    /// Filled in only when the stored size/mtime differ.
    hash: Option<[u8; 32]>,
    /// Probed when `hash` is filled in or the stored duration is unknown.
    duration_ms: Option<i64>,
}

/// What the previous scan stored for a path.
#[derive(Debug, Clone, Copy)]
struct Known {
    size: i64,
    mtime: i64,
    duration_known: bool,
}

#[derive(Debug)]
struct FoundSubtitle {
    media_rel: String,
    rel: String,
    language: Option<String>,
    format: &'static str,
}

#[derive(Debug, Default)]
struct Walk {
    media: Vec<FoundMedia>,
    subtitles: Vec<FoundSubtitle>,
    rejected: u64,
}

fn mtime_secs(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; MAGIC_LEN];
    let mut n = 0;
    while n < MAGIC_LEN {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    buf.truncate(n);
    Some(buf)
}

/// SHA-256 of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Splits `name` into (stem-with-language, extension), lowercase extension.
fn split_ext(name: &str) -> Option<(&str, String)> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| (stem, ext.to_ascii_lowercase()))
}

fn valid_language(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Walks `root` (blocking). `known` maps rel_path → (size, mtime) from the database.
fn walk(
    root: &Path,
    known: &HashMap<String, Known>,
    max_entries: usize,
    prober: &Prober,
) -> Result<Walk, ScanError> {
    let mut out = Walk::default();
    let mut entries = 0usize;
    // (directory, its relative path, depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_owned(), String::new(), 0)];
    while let Some((dir, rel_dir, depth)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut media_here: Vec<(String, String)> = Vec::new(); // (stem, rel)
        let mut subs_here: Vec<(String, String, &'static str)> = Vec::new(); // (file name, rel, fmt)
        for entry in read.flatten() {
            entries += 1;
            if entries > max_entries {
                return Err(ScanError::TooManyEntries { limit: max_entries });
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue; // non-UTF-8 names are not indexed
            };
            if name.starts_with('.') {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            if rel.len() > MAX_REL_PATH_LEN {
                continue;
            }
            // symlink_metadata: never follow symlinks during the walk.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_SCAN_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Some((stem, ext)) = split_ext(&name) else {
                continue;
            };
            if ext == "vtt" || ext == "srt" {
                if meta.len() <= MAX_SUBTITLE_BYTES {
                    let fmt = if ext == "vtt" { "vtt" } else { "srt" };
                    subs_here.push((name.clone(), rel, fmt));
                }
                continue;
            }
            let Some(kind) = kinds::by_extension(&ext) else {
                continue;
            };
            let path = entry.path();
            if !read_head(&path).is_some_and(|h| kind.matches(&h)) {
                out.rejected += 1;
                continue;
            }
            let size = meta.len();
            let mtime = mtime_secs(&meta);
            let before = known.get(&rel);
            let unchanged = before
                .is_some_and(|k| u64::try_from(k.size).ok() == Some(size) && k.mtime == mtime);
            let hash = if unchanged {
                None
            } else {
                match hash_file(&path) {
                    Ok(h) => Some(h),
                    Err(_) => continue,
                }
            };
            let duration_ms = if unchanged && before.is_some_and(|k| k.duration_known) {
                None // kept as stored
            } else {
                prober.duration_ms(&path)
            };
            media_here.push((stem.to_owned(), rel.clone()));
            out.media.push(FoundMedia {
                rel,
                title: stem.chars().filter(|c| !c.is_control()).collect(),
                kind,
                size,
                mtime,
                hash,
                duration_ms,
            });
        }
        // Sidecars: "<stem>.<ext>" or "<stem>.<lang>.<ext>" next to the media file.
        for (name, rel, fmt) in subs_here {
            let Some((sub_stem, _)) = split_ext(&name) else {
                continue;
            };
            for (stem, media_rel) in &media_here {
                let language = if sub_stem == stem {
                    Some(None)
                } else {
                    sub_stem
                        .strip_prefix(stem.as_str())
                        .and_then(|r| r.strip_prefix('.'))
                        .filter(|l| valid_language(l))
                        .map(|l| Some(l.to_owned()))
                };
                if let Some(language) = language {
                    out.subtitles.push(FoundSubtitle {
                        media_rel: media_rel.clone(),
                        rel: rel.clone(),
                        language,
                        format: fmt,
                    });
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Scans library `library_id` with the default entry cap
/// ([`DEFAULT_SCAN_MAX_ENTRIES`]) and updates the database.
pub async fn scan_library(db: &SqlitePool, library_id: i64) -> Result<ScanReport, ScanError> {
    scan_library_limited(db, library_id, DEFAULT_SCAN_MAX_ENTRIES).await
}

/// Scans library `library_id`, examining at most `max_entries` directory
/// entries, and updates the database in one transaction. Over the cap the scan
/// fails with [`ScanError::TooManyEntries`] and the database is not written.
pub async fn scan_library_limited(
    db: &SqlitePool,
    library_id: i64,
    max_entries: usize,
) -> Result<ScanReport, ScanError> {
    scan_library_probed(db, library_id, max_entries, Prober::default()).await
}

/// [`scan_library_limited`] with a given duration [`Prober`] (tests use one
/// without `ffprobe` to show the scan goes on without durations).
pub async fn scan_library_probed(
    db: &SqlitePool,
    library_id: i64,
    max_entries: usize,
    prober: Prober,
) -> Result<ScanReport, ScanError> {
    let root: Option<(String,)> = sqlx::query_as("SELECT root_path FROM libraries WHERE id = ?1")
        .bind(library_id)
        .fetch_optional(db)
        .await?;
    let root = PathBuf::from(root.ok_or(ScanError::NoSuchLibrary)?.0);
    let root = std::fs::canonicalize(&root).map_err(|e| ScanError::Root(root.clone(), e))?;
    let known_rows: Vec<(String, i64, i64, bool)> = sqlx::query_as(
        "SELECT rel_path, size_bytes, mtime, duration_ms IS NOT NULL
           FROM media_items WHERE library_id = ?1",
    )
    .bind(library_id)
    .fetch_all(db)
    .await?;
    let known: HashMap<String, Known> = known_rows
        .into_iter()
        .map(|(r, size, mtime, duration_known)| {
            (
                r,
                Known {
                    size,
                    mtime,
                    duration_known,
                },
            )
        })
        .collect();
    let walk_root = root.clone();
    let found = tokio::task::spawn_blocking(move || walk(&walk_root, &known, max_entries, &prober))
        .await
        .map_err(|_| ScanError::Task)?
        .inspect_err(|e| {
            if let ScanError::TooManyEntries { limit } = e {
                tracing::warn!(
                    library_id,
                    limit,
                    "library scan abandoned: entry cap crossed"
                );
            }
        })?;

    let now = now_secs();
    let mut report = ScanReport {
        rejected: found.rejected,
        ..ScanReport::default()
    };
    let mut tx = begin_immediate(db).await?;
    let before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM media_items WHERE library_id = ?1 AND present = 1",
    )
    .bind(library_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE media_items SET present = 0 WHERE library_id = ?1")
        .bind(library_id)
        .execute(&mut *tx)
        .await?;
    let mut ids: HashMap<String, i64> = HashMap::new();
    let mut seen_before = 0i64;
    for m in &found.media {
        let existing: Option<(i64, i64)> = sqlx::query_as(
            "SELECT id, present FROM media_items WHERE library_id = ?1 AND rel_path = ?2",
        )
        .bind(library_id)
        .bind(&m.rel)
        .fetch_optional(&mut *tx)
        .await?;
        let size = i64::try_from(m.size).unwrap_or(i64::MAX);
        let id = match (existing, m.hash) {
            (Some((id, _)), None) => {
                sqlx::query(
                    "UPDATE media_items SET present = 1, duration_ms = COALESCE(?2, duration_ms)
                      WHERE id = ?1",
                )
                .bind(id)
                .bind(m.duration_ms)
                .execute(&mut *tx)
                .await?;
                report.unchanged += 1;
                seen_before += 1;
                id
            }
            (Some((id, _)), Some(hash)) => {
                sqlx::query(
                    "UPDATE media_items SET present = 1, size_bytes = ?2, mtime = ?3,
                            content_hash = ?4, kind = ?5, mime_type = ?6, scanned_at = ?7,
                            duration_ms = ?8
                      WHERE id = ?1",
                )
                .bind(id)
                .bind(size)
                .bind(m.mtime)
                .bind(hash.as_slice())
                .bind(m.kind.kind)
                .bind(m.kind.mime)
                .bind(now)
                .bind(m.duration_ms)
                .execute(&mut *tx)
                .await?;
                report.updated += 1;
                seen_before += 1;
                id
            }
            // Known to the walk but gone from the table meanwhile: next scan indexes it.
            (None, None) => continue,
            (None, Some(hash)) => {
                let r = sqlx::query(
                    "INSERT INTO media_items (library_id, rel_path, title, kind, mime_type,
                            size_bytes, mtime, content_hash, present, scanned_at, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)",
                )
                .bind(library_id)
                .bind(&m.rel)
                .bind(&m.title)
                .bind(m.kind.kind)
                .bind(m.kind.mime)
                .bind(size)
                .bind(m.mtime)
                .bind(hash.as_slice())
                .bind(now)
                .bind(m.duration_ms)
                .execute(&mut *tx)
                .await?;
                report.added += 1;
                r.last_insert_rowid()
            }
        };
        ids.insert(m.rel.clone(), id);
    }
    report.missing = u64::try_from((before - seen_before).max(0)).unwrap_or(0);
    sqlx::query(
        "UPDATE subtitles SET present = 0
          WHERE item_id IN (SELECT id FROM media_items WHERE library_id = ?1)",
    )
    .bind(library_id)
    .execute(&mut *tx)
    .await?;
    for s in &found.subtitles {
        let Some(item_id) = ids.get(&s.media_rel) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO subtitles (item_id, rel_path, language, format, present)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (item_id, rel_path)
             DO UPDATE SET present = 1, language = excluded.language, format = excluded.format",
        )
        .bind(item_id)
        .bind(&s.rel)
        .bind(&s.language)
        .bind(s.format)
        .execute(&mut *tx)
        .await?;
        report.subtitles += 1;
    }
    tx.commit().await?;
    Ok(report)
}
