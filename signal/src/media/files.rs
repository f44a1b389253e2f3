//! Safe resolution of stored relative paths inside a library root.
//!
//! Items are addressed by id only; the stored relative path is joined to the
//! library root, both are canonicalized (resolving every symlink), and the
//! result must still lie under the canonical root and be a regular file.
//! A symlink pointing out of the root, `..` components or absolute paths are
//! refused.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The relative path has `..`, a root, or a prefix component.
    #[error("relative path is not a plain descendant")]
    NotRelative,
    /// The path resolves outside the library root (symlink escape).
    #[error("path escapes the library root")]
    Escapes,
    /// The target is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// I/O error (missing file, permissions…).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolves `rel` (a `/`-separated relative path) under `root`.
pub fn resolve_in_root(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    let rel_path = Path::new(rel);
    if rel.is_empty()
        || rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(PathError::NotRelative);
    }
    let root = std::fs::canonicalize(root)?;
    let full = std::fs::canonicalize(root.join(rel_path))?;
    if !full.starts_with(&root) {
        return Err(PathError::Escapes);
    }
    if !std::fs::metadata(&full)?.is_file() {
        return Err(PathError::NotAFile);
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_symlink_escape_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        assert!(resolve_in_root(&root, "sub/a.mp4").is_ok());
        assert!(matches!(
            resolve_in_root(&root, "../secret.txt"),
            Err(PathError::NotRelative)
        ));
        assert!(matches!(
            resolve_in_root(&root, "/etc/passwd"),
            Err(PathError::NotRelative)
        ));
        assert!(matches!(
            resolve_in_root(&root, "sub"),
            Err(PathError::NotAFile)
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.mp4"))
                .unwrap();
            assert!(matches!(
                resolve_in_root(&root, "link.mp4"),
                Err(PathError::Escapes)
            ));
        }
    }
}
