//! The lake on a local disk (or any mounted filesystem).
//!
//! Atomic: a partition is written to a temporary file in its own directory,
//! synced, renamed over the old file, and the directory synced; a crash leaves
//! the old file or the new one, never half of either. A killed writer may leave
//! a temporary (`.part.*.tmp`, `.part-HH.parquet.*.tmp`), which the next commit
//! of that file removes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Listed;

/// A lake under a directory.
#[derive(Debug, Clone)]
pub(super) struct Local {
    pub root: PathBuf,
}

impl Local {
    /// Temp file in the same directory → fsync → rename over → fsync the directory.
    pub fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let (path, tmp) = self.staged(key, bytes)?;
        tmp.persist(&path)
            .with_context(|| format!("renaming into {}", path.display()))?;
        sync_dir(parent(&path))
    }

    /// As `put`, but a link that fails if `key` exists (false then).
    pub fn create(&self, key: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        let (path, tmp) = self.staged(key, bytes)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => sync_dir(parent(&path)).map(|()| true),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.error).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// `bytes` in a synced temporary beside `key`'s path.
    fn staged(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(PathBuf, tempfile::NamedTempFile)> {
        let path = self.root.join(key);
        let dir = parent(&path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // 0666 before the umask, as any file a program creates: readers running as
        // another user must be able to open the lake (temp files default to 0600).
        let mut tmp = tempfile::Builder::new()
            .prefix(&temporary_prefix(&path))
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("syncing {}", tmp.path().display()))?;
        Ok((path, tmp))
    }

    pub fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.root.join(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<bool> {
        let path = self.root.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                let dir = parent(&path);
                // An hour's directory emptied (a day closed, the layout
                // changed) goes too; one that is not empty stays.
                if std::fs::remove_dir(dir).is_ok() {
                    sync_dir(parent(dir))?;
                } else {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Every file under the directory `dir` of the root, temporaries included.
    pub fn list(&self, dir: &str) -> anyhow::Result<Vec<Listed>> {
        let mut files = Vec::new();
        let mut stack = vec![self.root.join(dir)];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                let path = entry.path();
                let meta = entry
                    .metadata()
                    .with_context(|| format!("reading {}", path.display()))?;
                if meta.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    files.push(Listed {
                        key: rel.display().to_string(),
                        size: meta.len(),
                        etag: None,
                    });
                }
            }
        }
        Ok(files)
    }

    /// Removes the temporaries a killed writer left for `key` (one
    /// materializer runs at a time: the ledger's lock sees to it; other
    /// files' temporaries in the same directory are another worker's).
    pub fn remove_stale_temporaries(&self, key: &str) -> anyhow::Result<()> {
        let path = self.root.join(key);
        let prefix = temporary_prefix(&path);
        let dir = parent(&path);
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(&prefix) && super::is_temporary(name) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the stale {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Whether the file ends the way every Parquet file does (the footer's
    /// `PAR1` magic): a cheap look for a file cut short or damaged in place.
    pub fn ends_like_parquet(&self, key: &str) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(file) = std::fs::File::open(self.root.join(key)) else {
            return false;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let mut tail = [0u8; 4];
        len >= 12 && file.read_exact_at(&mut tail, len - 4).is_ok() && &tail == b"PAR1"
    }
}

/// The start of the names of `path`'s temporaries: `.part-07.parquet.` for
/// `part-07.parquet`; `.part.` for `part.parquet` (as bml wrote them before
/// the day layout, so that a sweep also finds those).
fn temporary_prefix(path: &Path) -> String {
    match path.file_name().and_then(|n| n.to_str()) {
        Some("part.parquet") | None => ".part.".into(),
        Some(name) => format!(".{name}."),
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().expect("a key names a file under the root")
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}
