//! What lives where in a data dir: every path under it is built here, so the
//! layout is one list (`docs/operations.md` shows it to users).
//!
//! ```text
//! <data-dir>/
//!   wal/                   the log (bml-wal segments, `log-id`, `quarantine/`)
//!   ledger.redb            the ledger (derived from the log)
//!   index/vision-catalog.bin  what the log holds, cached (derived)
//!   status.json            the state the last materialize saved (derived)
//!   tmp/                   downloads in flight
//!   instance-id            this bml instance's id in the lakes it writes
//!   lake/                  the default lake root
//! ```

use std::path::{Path, PathBuf};

/// The log's directory.
pub fn wal(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The log's id file, beside its segments.
pub fn log_id(data_dir: &Path) -> PathBuf {
    wal(data_dir).join("log-id")
}

/// The ledger file.
pub fn ledger(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger.redb")
}

/// The coverage catalog's cache.
pub fn catalog(data_dir: &Path) -> PathBuf {
    data_dir.join("index").join("vision-catalog.bin")
}

/// The state the last materialize saved.
pub fn saved_status(data_dir: &Path) -> PathBuf {
    data_dir.join("status.json")
}

/// Where downloads are written until verified.
pub fn downloads(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

/// The instance's id file: the name its claims on a lake's symbols carry.
pub fn instance_id(data_dir: &Path) -> PathBuf {
    data_dir.join("instance-id")
}

/// The lake root when none is given.
pub fn default_lake(data_dir: &Path) -> PathBuf {
    data_dir.join("lake")
}

/// Why `path` cannot be a data dir or a lake root, if it cannot: it, or the
/// nearest of its ancestors that exists, is not a directory. Checked before any
/// command touches it, so that the answer names the path rather than what the
/// system said on the first file created under it ("File exists", "Not a
/// directory").
pub fn unusable(path: &Path) -> Option<String> {
    let existing = path.ancestors().find(|a| a.exists())?;
    if existing.is_dir() {
        return None;
    }
    Some(if existing == path {
        format!("{} is a file, not a directory", path.display())
    } else {
        format!(
            "{} cannot be made: {} is a file, not a directory",
            path.display(),
            existing.display()
        )
    })
}
