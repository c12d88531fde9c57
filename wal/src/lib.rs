//! `bml-wal`: a segmented, checksummed, append-only write-ahead log.
//!
//! Records are opaque byte strings addressed by a dense `u64` offset starting at 0.
//! They live in segment files named by the offset of their first record; each
//! append writes one or more *frames* (a header with two CRC-32s, then length-
//! prefixed records). The byte layout is in `docs/wal-format.md`.
//!
//! The guarantees, and how they are kept:
//! - **An acknowledged record is never lost.** An append returns only once its
//!   bytes are whole in the file and synced under the chosen [`SyncPolicy`].
//! - **A crash leaves a log that opens.** Whatever a crash cut short is a *torn
//!   tail*: bytes after the last whole frame of the last segment. [`Wal::open`]
//!   cuts it and says so in [`Wal::recovery`].
//! - **Damage is never skipped.** A bad frame with valid frames after it is not a
//!   torn tail: opening still succeeds, readers stop at it with an error naming
//!   segment, byte and offset, and [`verify`] lists it.
//! - **Damage is repaired only when asked.** [`repair`] moves damaged bytes to
//!   quarantine and leaves a lost-range frame in their place, so offsets stay
//!   dense and readers go on past it ([`Reader::next_entry`]).
//! - **Dead records can be blanked.** [`Exclusive::blank`] replaces records the
//!   caller knows no reader wants by empty ones in sealed segments, offsets and
//!   every other record unchanged, each segment replaced atomically.
//! - **One writer.** An OS lock on `LOCK` in the directory; readers need no lock.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use bml_wal::{Options, Reader, Wal};
//! let wal = Wal::open(dir.path(), Options::default())?;
//! assert_eq!(wal.append(b"first")?, 0);
//! assert_eq!(wal.append_batch([&b"second"[..], b"third"])?, 1..3);
//! let mut reader = Reader::open(dir.path(), 1)?;
//! assert_eq!(reader.next()?.unwrap().data, b"second");
//! # Ok::<(), bml_wal::Error>(())
//! ```

#![warn(missing_docs)]

mod compact;
mod error;
mod format;
mod inspect;
mod reader;
mod repair;
mod segment;
mod walk;
mod writer;

pub use compact::{lock, CompactReport, Exclusive};
pub use error::{Error, Result};
pub use format::{HeaderError, FORMAT_VERSION, MAX_RECORD_LEN};
pub use inspect::{
    check_sealed, stat, verify, verify_with_progress, SegmentStat, Stat, VerifyReport,
};
pub use reader::{Entry, Reader, Record};
pub use repair::{repair, LostRange, RepairReport};
pub use walk::{Problem, ProblemKind};
pub use writer::{Options, Recovery, SyncPolicy, TornTail, Wal};
