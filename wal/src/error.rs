//! Errors. Every variant names the place on disk it is about, because the person
//! reading it has to find that place.

use std::io;
use std::path::PathBuf;

use crate::format::HeaderError;

/// Anything that can go wrong with a log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("writing", "syncing", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another handle in this one) holds the writer lock.
    #[error("log directory {dir} is locked by another writer{}", holder_pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, if it could be read.
        holder_pid: Option<u32>,
    },

    /// A record that should be readable is damaged. Never skipped silently.
    #[error("corrupt log at offset {offset}: {segment}, byte {position}: {reason}")]
    Corrupt {
        /// The segment file holding the damage.
        segment: PathBuf,
        /// Byte position of the damaged frame within the segment.
        position: u64,
        /// The first record offset that cannot be read.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// Offsets whose records a repair could not keep (a lost-range frame).
    /// `Reader::next_entry` reads past them; `Reader::next` stops here.
    #[error("offsets {}..{} of the log were lost and repaired ({segment}, byte {position}): {note}", offsets.start, offsets.end)]
    Lost {
        /// The segment file holding the lost-range frame.
        segment: PathBuf,
        /// Byte position of that frame.
        position: u64,
        /// The lost offsets.
        offsets: std::ops::Range<u64>,
        /// The repair's note.
        note: String,
    },

    /// A segment header that cannot be trusted.
    #[error("bad segment header in {segment}: {reason}")]
    BadSegmentHeader {
        /// The segment file.
        segment: PathBuf,
        /// What is wrong with it.
        reason: HeaderError,
    },

    /// A record larger than [`crate::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// An earlier write or sync failed; the writer refuses further appends because
    /// it can no longer tell what reached the disk. Reopen the log to recover.
    #[error("log writer for {dir} stopped after an earlier failure: {cause}")]
    Poisoned {
        /// The log directory.
        dir: PathBuf,
        /// The failure that stopped it.
        cause: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches an action and a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            action,
            path: path.into(),
            source,
        })
    }
}
