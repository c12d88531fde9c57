//! The ledger (`<data-dir>/ledger.redb`): what the materializer has made of the
//! log. Per partition its file, rows, hashes, the log records that fed it and its
//! findings; per symbol its watermark; the checkpoint; and the materializer's own
//! bookkeeping (the offset index, Vision markers, live-stream intervals).
//!
//! It is derived state: deleting it and replaying the log rebuilds it identically
//! ([`Ledger::digest`] says what "identically" covers). Every change a run makes
//! goes through one [`Batch`], a redb write transaction: a crash keeps the ledger
//! as of the last commit, and the run that follows converges from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::Digest;

mod provenance;

pub use provenance::{ClassCoverage, Provenance, Tally, NOT_FETCHED, NO_COLLECTOR, SOURCES};

use crate::event::Sha256;
use crate::time::MINUTE_MS;

/// Scalars: `checkpoint`, `indexed_to`, `lake_root`, `log_binding`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (symbol, hour start) → the log offsets that reach the hour, ascending.
const INDEX: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("index");
/// (symbol, hour start) → [`Partition`].
const PARTITIONS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("partitions");
/// (symbol, hour start) → the hour's [`Finding`]s.
const FINDINGS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("findings");
/// symbol → watermark (the start of the last minute of the unbroken run).
const WATERMARKS: TableDefinition<&str, i64> = TableDefinition::new("watermarks");
/// (symbol, Vision file name) → the hours its rows reach.
const FILE_HOURS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("file_hours");
/// (Vision file name, marker offset) → [`VisionMarker`].
const MARKERS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("vision_markers");
/// (symbol, stream, connection) → [`StreamSpan`].
const STREAMS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("streams");
/// (symbol, connection, first heartbeat) → last heartbeat: the stretches a
/// connection delivered its heartbeat with no pause over `HEARTBEAT_GAP_MS`.
const HEARTBEATS: TableDefinition<(&str, u64, i64), i64> = TableDefinition::new("heartbeats");
/// (symbol, hour start) → [`BookHealth`], for hours with depth diffs.
const BOOKS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("books");
/// (symbol, hour start) -> postcard `Provenance`: where its inputs came from.
const PROVENANCE: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("provenance");
/// Offsets `bml wal repair` declared lost: first offset → one past the last.
const LOST: TableDefinition<u64, u64> = TableDefinition::new("lost");
/// (symbol, hour start) → the object store's ETag of the partition's object,
/// as its PUT returned it (lakes in object storage only).
const ETAGS: TableDefinition<(&str, i64), &str> = TableDefinition::new("etags");
/// (symbol, day start): closed days whose file the ledger names but whose
/// hour files may still be in the lake. A day's hour files go only after the
/// ledger durably names its file; a run killed in between leaves the day
/// here, and the next run finishes the sweep.
const SWEEPS: TableDefinition<(&str, i64), ()> = TableDefinition::new("day_sweeps");

/// One symbol-hour as materialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The file, relative to the lake root (none when no minute was complete).
    pub path: Option<String>,
    /// Rows written.
    pub rows: u32,
    /// Bit `i` set: minute `i` of the hour was written.
    pub minutes: u64,
    /// SHA-256 of the schema the file was written with.
    pub schema_hash: [u8; 32],
    /// SHA-256 of the file.
    pub content_hash: Option<[u8; 32]>,
    /// The log records that fed it.
    pub fed_by: FedBy,
    /// Sources that contributed: Vision files, REST endpoints, streams.
    pub sources: Vec<String>,
    /// Findings recorded for the hour.
    pub findings: u32,
}

impl Partition {
    /// The first and last minute written (epoch ms), if any.
    pub fn span(&self, hour_start: i64) -> Option<(i64, i64)> {
        (self.minutes != 0).then(|| {
            let minute = |i: u32| hour_start + i64::from(i) * MINUTE_MS;
            (
                minute(self.minutes.trailing_zeros()),
                minute(63 - self.minutes.leading_zeros()),
            )
        })
    }
}

/// The log records that fed a partition. (Encoded as three integers, as the
/// tuple it replaced was: ledgers written before stay readable.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedBy {
    /// The first offset.
    pub first: u64,
    /// The last offset.
    pub last: u64,
    /// How many records.
    pub count: u64,
}

/// A data-quality finding (reported, never "fixed") or a conflict between
/// sources, as the audit shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The minute it is about (the hour's start for hour-wide ones).
    pub minute: i64,
    /// Which check: `incomplete minute`, `conflict`, or an invariant's name.
    pub check: String,
    /// The numbers or sources involved.
    pub detail: String,
}

/// A Vision archive's commit marker, as visibility needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionMarker {
    /// The archive's SHA-256.
    pub sha256: Sha256,
    /// Offset of its first row record.
    pub first_offset: u64,
    /// The SHA-256 of the earlier version it replaces.
    pub replaces: Option<Sha256>,
}

/// The times one live-stream connection is known to have been up: from its
/// earliest to its latest event, status or data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSpan {
    /// Earliest time seen (ms).
    pub first: i64,
    /// Latest time seen (ms).
    pub last: i64,
}

/// The synchronized L2 book of one symbol-hour, as the materializer rebuilt
/// it (`materialize::order_book`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookHealth {
    /// Minutes with depth diffs.
    pub minutes_with_diffs: u32,
    /// Minutes whose book was in sync at their end (#43 has a value or could
    /// not fill).
    pub minutes_in_sync: u32,
    /// Breaks in the hour: a `pu` that does not continue, or a crossed book.
    pub breaks: u32,
    /// Resyncs after those breaks (a later snapshot bracketed).
    pub resyncs: u32,
    /// Time from each break to its resync (or to the hour's end), summed (ms).
    pub resync_ms: i64,
}

/// Which log a ledger was derived from: the log's id, and the fingerprint of
/// the last record indexed (`eventlog::fingerprint` at `indexed_to - 1`). A log
/// that lost its tail and was appended to again reuses the offsets, but not
/// the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBinding {
    /// `eventlog::log_id`.
    pub log_id: String,
    /// The index end it was taken at.
    pub indexed_to: u64,
    /// SHA-256 of the record at `indexed_to - 1` (zeros when nothing is indexed).
    pub fingerprint: [u8; 32],
}

/// Why the ledger cannot be opened, where a caller has something better to do
/// than fail (show the last saved state; rebuild).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process (a running `materialize`) holds it.
    #[error("the ledger at {} is in use by another bml process (a materialize running?)", path.display())]
    InUse {
        /// The ledger file.
        path: PathBuf,
    },
    /// This user may not write it (a read-only data dir, another user's).
    #[error("the ledger at {} cannot be opened for writing: {why}", path.display())]
    NotWritable {
        /// The ledger file.
        path: PathBuf,
        /// What the system said.
        why: String,
    },
    /// It does not read back.
    #[error(
        "the ledger at {} is damaged ({why}); it is derived from the log: \
         `bml materialize --rebuild-ledger` rebuilds it",
        path.display()
    )]
    Damaged {
        /// The ledger file.
        path: PathBuf,
        /// What redb said.
        why: String,
    },
}

/// The ledger, open.
pub struct Ledger {
    db: Store,
    path: PathBuf,
}

/// The redb store, opened for writing (materialize) or for reading only
/// (`status` and `show-watermark` on a data dir this user cannot write).
enum Store {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Store {
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Store::ReadWrite(db) => db.begin_read(),
            Store::ReadOnly(db) => db.begin_read(),
        }
    }
}

/// Whether redb failed because the file may not be written (rather than being
/// damaged or locked).
fn not_writable(e: &redb::DatabaseError) -> bool {
    matches!(e, redb::DatabaseError::Storage(redb::StorageError::Io(io))
        if matches!(io.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem))
}

/// Why redb would not open the ledger for writing.
enum Refused {
    InUse,
    NotWritable(String),
    Damaged(String),
}

impl Ledger {
    /// Opens the ledger of `data_dir`, creating it (and its tables) if needed.
    pub fn open(data_dir: &Path) -> anyhow::Result<Ledger> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Ledger::open_at(crate::data_dir::ledger(data_dir))
    }

    /// Opens the ledger file at `path` (one not in a data dir: the throwaway
    /// ledger of `materialize --as-of`), creating it if needed.
    pub fn open_at(path: std::path::PathBuf) -> anyhow::Result<Ledger> {
        // A damaged file can make redb fail, or panic, anywhere later; its
        // pages are checked once here so that damage is one plain error.
        let opened = std::panic::catch_unwind(|| {
            let mut db = Database::create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Refused::InUse,
                e if not_writable(&e) => Refused::NotWritable(e.to_string()),
                other => Refused::Damaged(other.to_string()),
            })?;
            match db.check_integrity() {
                Ok(true) => Ok(db),
                Ok(false) => Err(Refused::Damaged(
                    "some of its pages needed repair".to_string(),
                )),
                Err(e) => Err(Refused::Damaged(e.to_string())),
            }
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(Refused::InUse)) => return Err(LedgerError::InUse { path }.into()),
            Ok(Err(Refused::NotWritable(why))) => {
                return Err(LedgerError::NotWritable { path, why }.into())
            }
            Ok(Err(Refused::Damaged(why))) => return Err(LedgerError::Damaged { path, why }.into()),
            Err(_) => {
                let why = "reading it panicked".to_string();
                return Err(LedgerError::Damaged { path, why }.into());
            }
        };
        let ledger = Ledger {
            db: Store::ReadWrite(db),
            path,
        };
        let batch = ledger.batch()?;
        {
            let txn = &batch.txn;
            txn.open_table(META)?;
            txn.open_table(INDEX)?;
            txn.open_table(PARTITIONS)?;
            txn.open_table(FINDINGS)?;
            txn.open_table(WATERMARKS)?;
            txn.open_table(FILE_HOURS)?;
            txn.open_table(MARKERS)?;
            txn.open_table(STREAMS)?;
            txn.open_table(HEARTBEATS)?;
            txn.open_table(LOST)?;
            txn.open_table(BOOKS)?;
            txn.open_table(PROVENANCE)?;
            txn.open_table(ETAGS)?;
            txn.open_table(SWEEPS)?;
        }
        batch.commit()?;
        Ok(ledger)
    }

    /// Opens the existing ledger of `data_dir` for reading only: what `status`
    /// and `show-watermark` use where this user cannot write (a read-only data
    /// dir, a lake kept by another user). Writing through it fails.
    pub fn open_read_only(data_dir: &Path) -> anyhow::Result<Ledger> {
        let path = crate::data_dir::ledger(data_dir);
        let db = ReadOnlyDatabase::open(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::InUse { path: path.clone() },
            other => LedgerError::Damaged {
                path: path.clone(),
                why: other.to_string(),
            },
        })?;
        Ok(Ledger {
            db: Store::ReadOnly(db),
            path,
        })
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a set of changes that commit together.
    pub fn batch(&self) -> anyhow::Result<Batch> {
        let Store::ReadWrite(db) = &self.db else {
            anyhow::bail!("the ledger {} was opened read-only", self.path.display());
        };
        let txn = db
            .begin_write()
            .with_context(|| format!("writing the ledger {}", self.path.display()))?;
        Ok(Batch { txn })
    }

    /// The log offset below which every record is materialized.
    pub fn checkpoint(&self) -> anyhow::Result<u64> {
        self.meta_u64("checkpoint")
    }

    /// The log offset below which every record is in the offset index.
    pub fn indexed_to(&self) -> anyhow::Result<u64> {
        self.meta_u64("indexed_to")
    }

    /// The lake root the partitions were written under, if any run wrote one.
    pub fn lake_root(&self) -> anyhow::Result<Option<String>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let value = table.get("lake_root")?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// The layout the partitions were written in (`lake::Layout::name`);
    /// none before layouts existed: the hour layout.
    pub fn lake_layout(&self) -> anyhow::Result<Option<String>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let value = table.get("lake_layout")?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// In the day layout, the time before which the last run held a day
    /// closed (a day ending at or before it has one file).
    pub fn days_closed_before(&self) -> anyhow::Result<Option<i64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(value) = table.get("days_closed_before")? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value.value().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{}: meta key \"days_closed_before\" is not 8 bytes",
                self.path.display()
            )
        })?;
        Ok(Some(i64::from_le_bytes(bytes)))
    }

    /// The log this ledger was derived from, as of its last index commit.
    pub fn log_binding(&self) -> anyhow::Result<Option<LogBinding>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(value) = table.get("log_binding")? else {
            return Ok(None);
        };
        postcard::from_bytes(value.value())
            .map(Some)
            .with_context(|| {
                format!(
                    "{}: meta key \"log_binding\" is unreadable",
                    self.path.display()
                )
            })
    }

    fn meta_u64(&self, key: &str) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(value) = table.get(key)? else {
            return Ok(0);
        };
        let bytes: [u8; 8] = value.value().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{}: meta key {key:?} holds {} bytes, not 8",
                self.path.display(),
                value.value().len()
            )
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// The offsets that reach one symbol-hour.
    pub fn index(&self, symbol: &str, hour: i64) -> anyhow::Result<Vec<u64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INDEX)?;
        let value = table.get((symbol, hour))?;
        value.map_or(Ok(Vec::new()), |v| decode(v.value()))
    }

    /// The symbol-hours reached by a record at `from` or later, in order.
    pub fn hours_reached_since(&self, from: u64) -> anyhow::Result<Vec<(String, i64)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INDEX)?;
        let mut hours = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let offsets: Vec<u64> = decode(value.value())?;
            if offsets.last().is_some_and(|&last| last >= from) {
                let (symbol, hour) = key.value();
                hours.push((symbol.to_string(), hour));
            }
        }
        Ok(hours)
    }

    /// Every partition, by symbol and hour.
    pub fn partitions(&self) -> anyhow::Result<BTreeMap<(String, i64), Partition>> {
        self.by_hour(PARTITIONS)
    }

    /// Every entry of a table keyed by (symbol, hour start).
    fn by_hour<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<(&str, i64), &[u8]>,
    ) -> anyhow::Result<BTreeMap<(String, i64), T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let mut all = BTreeMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (symbol, hour) = key.value();
            all.insert((symbol.to_string(), hour), decode(value.value())?);
        }
        Ok(all)
    }

    /// One partition.
    pub fn partition(&self, symbol: &str, hour: i64) -> anyhow::Result<Option<Partition>> {
        self.at_hour(PARTITIONS, symbol, hour)
    }

    /// The findings of one symbol-hour.
    pub fn findings(&self, symbol: &str, hour: i64) -> anyhow::Result<Vec<Finding>> {
        Ok(self.at_hour(FINDINGS, symbol, hour)?.unwrap_or_default())
    }

    /// The provenance of a symbol's hours starting in `hours`, by hour start.
    pub fn symbol_provenance(
        &self,
        symbol: &str,
        hours: std::ops::Range<i64>,
    ) -> anyhow::Result<BTreeMap<i64, Provenance>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROVENANCE)?;
        let mut all = BTreeMap::new();
        for entry in table.range((symbol, hours.start)..(symbol, hours.end))? {
            let (key, value) = entry?;
            all.insert(key.value().1, decode(value.value())?);
        }
        Ok(all)
    }

    /// The provenance of one symbol-hour.
    pub fn provenance(&self, symbol: &str, hour: i64) -> anyhow::Result<Option<Provenance>> {
        self.at_hour(PROVENANCE, symbol, hour)
    }

    /// One entry of a table keyed by (symbol, hour start).
    fn at_hour<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<(&str, i64), &[u8]>,
        symbol: &str,
        hour: i64,
    ) -> anyhow::Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let value = table.get((symbol, hour))?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Watermarks by symbol.
    pub fn watermarks(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WATERMARKS)?;
        let mut all = BTreeMap::new();
        for entry in table.iter()? {
            let (symbol, minute) = entry?;
            all.insert(symbol.value().to_string(), minute.value());
        }
        Ok(all)
    }

    /// Every Vision commit marker: (file, marker offset, marker).
    pub fn vision_markers(&self) -> anyhow::Result<Vec<(String, u64, VisionMarker)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MARKERS)?;
        let mut all = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (file, offset) = key.value();
            all.push((file.to_string(), offset, decode(value.value())?));
        }
        Ok(all)
    }

    /// The ranges of offsets the log says were lost (left by `bml wal repair`).
    pub fn lost_ranges(&self) -> anyhow::Result<Vec<std::ops::Range<u64>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOST)?;
        let mut all = Vec::new();
        for entry in table.iter()? {
            let (start, end) = entry?;
            all.push(start.value()..end.value());
        }
        Ok(all)
    }

    /// The spans of a symbol's live-stream connections: (stream, span).
    pub fn stream_spans(&self, symbol: &str) -> anyhow::Result<Vec<(String, u64, StreamSpan)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STREAMS)?;
        let mut spans = Vec::new();
        for entry in table.range((symbol, "", 0)..)? {
            let (key, value) = entry?;
            let (s, stream, connection) = key.value();
            if s != symbol {
                break;
            }
            spans.push((stream.to_string(), connection, decode(value.value())?));
        }
        Ok(spans)
    }

    /// The heartbeat stretches of `symbol`'s connections: (connection, first
    /// heartbeat time, last heartbeat time).
    pub fn heartbeats(&self, symbol: &str) -> anyhow::Result<Vec<(u64, i64, i64)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(HEARTBEATS)?;
        let mut out = Vec::new();
        for entry in table.range((symbol, 0, i64::MIN)..)? {
            let (key, last) = entry?;
            let (s, connection, first) = key.value();
            if s != symbol {
                break;
            }
            out.push((connection, first, last.value()));
        }
        Ok(out)
    }

    /// The book health of `symbol`'s hours that had depth diffs, by hour.
    pub fn books(&self, symbol: &str) -> anyhow::Result<BTreeMap<i64, BookHealth>> {
        let txn = self.db.begin_read()?;
        // A ledger made before books were kept, opened read-only, has no table.
        let table = match txn.open_table(BOOKS) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            table => table?,
        };
        let mut out = BTreeMap::new();
        for entry in table.range((symbol, i64::MIN)..)? {
            let (key, value) = entry?;
            let (s, hour) = key.value();
            if s != symbol {
                break;
            }
            out.insert(hour, decode(value.value())?);
        }
        Ok(out)
    }

    /// The ETag each partition's object had when it was committed, for a
    /// lake in object storage.
    pub fn etags(&self) -> anyhow::Result<BTreeMap<(String, i64), String>> {
        let txn = self.db.begin_read()?;
        // A ledger made before ETags were kept, opened read-only, has no table.
        let table = match txn.open_table(ETAGS) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            table => table?,
        };
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (symbol, hour) = key.value();
            out.insert((symbol.to_owned(), hour), value.value().to_owned());
        }
        Ok(out)
    }

    /// The closed days whose hour files may still be in the lake (see
    /// `SWEEPS`), as (symbol, day start).
    pub fn pending_sweeps(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(SWEEPS) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            table => table?,
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, _) = entry?;
            let (symbol, day) = key.value();
            out.push((symbol.to_owned(), day));
        }
        Ok(out)
    }

    /// The ETag of one partition's object, if the ledger has it.
    pub fn etag(&self, symbol: &str, hour: i64) -> anyhow::Result<Option<String>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(ETAGS) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            table => table?,
        };
        Ok(table.get((symbol, hour))?.map(|v| v.value().to_owned()))
    }

    /// The book health of `symbol`'s newest hour with depth diffs.
    pub fn last_book(&self, symbol: &str) -> anyhow::Result<Option<(i64, BookHealth)>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(BOOKS) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            table => table?,
        };
        let last = table
            .range((symbol, i64::MIN)..=(symbol, i64::MAX))?
            .next_back();
        match last {
            Some(entry) => {
                let (key, value) = entry?;
                Ok(Some((key.value().1, decode(value.value())?)))
            }
            None => Ok(None),
        }
    }

    /// Every symbol-hour's provenance, by (symbol, hour start).
    pub fn provenances(&self) -> anyhow::Result<BTreeMap<(String, i64), Provenance>> {
        self.by_hour(PROVENANCE)
    }

    /// SHA-256 over what the lake's users see: every partition's file, rows,
    /// minutes, schema and content hash, sources and findings, the
    /// watermarks, the book health and the provenance. Two ledgers built from logs holding the same facts (in any
    /// order, duplicated, batched otherwise) have the same digest; the offsets
    /// that fed each partition are left out because they name log positions.
    pub fn digest(&self) -> anyhow::Result<[u8; 32]> {
        let mut hash = sha2::Sha256::new();
        for ((symbol, hour), p) in self.partitions()? {
            let seen = (
                &symbol,
                hour,
                &p.path,
                p.rows,
                p.minutes,
                p.schema_hash,
                p.content_hash,
                &p.sources,
                self.findings(&symbol, hour)?,
            );
            hash.update(postcard::to_stdvec(&seen)?);
        }
        hash.update(postcard::to_stdvec(&self.provenances()?)?);
        hash.update(postcard::to_stdvec(&self.watermarks()?)?);
        let symbols: std::collections::BTreeSet<String> =
            self.partitions()?.into_keys().map(|(s, _)| s).collect();
        for symbol in symbols {
            hash.update(postcard::to_stdvec(&self.books(&symbol)?)?);
        }
        Ok(hash.finalize().into())
    }
}

/// Changes to the ledger that commit together (a redb write transaction).
pub struct Batch {
    txn: WriteTransaction,
}

impl Batch {
    /// Makes the changes durable (and visible).
    pub fn commit(self) -> anyhow::Result<()> {
        self.txn.commit().context("committing the ledger")
    }

    /// Makes the changes visible but not yet durable: the next durable commit
    /// carries them. For the many small commits of a long run.
    pub fn commit_lazily(mut self) -> anyhow::Result<()> {
        self.txn
            .set_durability(Durability::None)
            .context("ledger durability")?;
        self.commit()
    }

    /// Sets the checkpoint.
    pub fn set_checkpoint(&mut self, offset: u64) -> anyhow::Result<()> {
        self.set_meta("checkpoint", &offset.to_le_bytes())
    }

    /// Sets how far the offset index reaches.
    pub fn set_indexed_to(&mut self, offset: u64) -> anyhow::Result<()> {
        self.set_meta("indexed_to", &offset.to_le_bytes())
    }

    /// Records which log, and how far into it, the ledger was derived from.
    pub fn set_log_binding(&mut self, binding: &LogBinding) -> anyhow::Result<()> {
        let bytes = postcard::to_stdvec(binding).context("encoding the log binding")?;
        self.set_meta("log_binding", &bytes)
    }

    /// Records the lake root partitions are written under.
    pub fn set_lake_root(&mut self, root: &str) -> anyhow::Result<()> {
        self.set_meta("lake_root", root.as_bytes())
    }

    /// Records the layout the partitions are written in, and in the day
    /// layout the time before which a day counts as closed.
    pub fn set_lake_layout(
        &mut self,
        layout: &str,
        closed_before: Option<i64>,
    ) -> anyhow::Result<()> {
        self.set_meta("lake_layout", layout.as_bytes())?;
        match closed_before {
            Some(t) => self.set_meta("days_closed_before", &t.to_le_bytes()),
            None => {
                self.txn.open_table(META)?.remove("days_closed_before")?;
                Ok(())
            }
        }
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.txn.open_table(META)?.insert(key, value)?;
        Ok(())
    }

    /// Adds offsets to a symbol-hour's index entry (a set: adding twice is a no-op).
    pub fn index_add(&mut self, symbol: &str, hour: i64, offsets: &[u64]) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(INDEX)?;
        let mut all: Vec<u64> = match table.get((symbol, hour))? {
            Some(v) => decode(v.value())?,
            None => Vec::new(),
        };
        all.extend_from_slice(offsets);
        all.sort_unstable();
        all.dedup();
        table.insert((symbol, hour), postcard::to_stdvec(&all)?.as_slice())?;
        Ok(())
    }

    /// Stores a partition and its findings (replacing the previous ones).
    pub fn put_partition(
        &mut self,
        symbol: &str,
        hour: i64,
        partition: &Partition,
        findings: &[Finding],
    ) -> anyhow::Result<()> {
        self.txn
            .open_table(PARTITIONS)?
            .insert((symbol, hour), postcard::to_stdvec(partition)?.as_slice())?;
        let mut table = self.txn.open_table(FINDINGS)?;
        if findings.is_empty() {
            table.remove((symbol, hour))?;
        } else {
            table.insert((symbol, hour), postcard::to_stdvec(findings)?.as_slice())?;
        }
        Ok(())
    }

    /// Removes a partition, its findings, its provenance and its ETag.
    pub fn remove_partition(&mut self, symbol: &str, hour: i64) -> anyhow::Result<()> {
        self.txn.open_table(PARTITIONS)?.remove((symbol, hour))?;
        self.txn.open_table(ETAGS)?.remove((symbol, hour))?;
        self.txn.open_table(FINDINGS)?.remove((symbol, hour))?;
        self.txn.open_table(PROVENANCE)?.remove((symbol, hour))?;
        Ok(())
    }

    /// Stores where a symbol-hour's inputs came from (replacing the previous).
    pub fn set_provenance(
        &mut self,
        symbol: &str,
        hour: i64,
        provenance: &Provenance,
    ) -> anyhow::Result<()> {
        self.txn
            .open_table(PROVENANCE)?
            .insert((symbol, hour), postcard::to_stdvec(provenance)?.as_slice())?;
        Ok(())
    }

    /// Stores the book health of a symbol-hour (`None`: the hour has no depth
    /// diffs, and any earlier entry goes).
    pub fn set_book_health(
        &mut self,
        symbol: &str,
        hour: i64,
        health: Option<&BookHealth>,
    ) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(BOOKS)?;
        match health {
            Some(h) => table.insert((symbol, hour), postcard::to_stdvec(h)?.as_slice())?,
            None => table.remove((symbol, hour))?,
        };
        Ok(())
    }

    /// Stores the ETag of a symbol-hour's object (`None`: no object, or a
    /// lake on a local disk, and any earlier entry goes).
    pub fn set_etag(&mut self, symbol: &str, hour: i64, etag: Option<&str>) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(ETAGS)?;
        match etag {
            Some(e) => table.insert((symbol, hour), e)?,
            None => table.remove((symbol, hour))?,
        };
        Ok(())
    }

    /// Marks a closed day's sweep as due (`true`) or done (`false`).
    pub fn set_sweep_due(&mut self, symbol: &str, day: i64, due: bool) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(SWEEPS)?;
        if due {
            table.insert((symbol, day), ())?;
        } else {
            table.remove((symbol, day))?;
        }
        Ok(())
    }

    /// Sets a symbol's watermark (`None` removes it).
    pub fn set_watermark(&mut self, symbol: &str, minute: Option<i64>) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(WATERMARKS)?;
        match minute {
            Some(m) => table.insert(symbol, m)?,
            None => table.remove(symbol)?,
        };
        Ok(())
    }

    /// The hours a Vision file's rows reach, so far.
    pub fn file_hours(&self, symbol: &str, file: &str) -> anyhow::Result<Vec<i64>> {
        let table = self.txn.open_table(FILE_HOURS)?;
        let value = table.get((symbol, file))?;
        value.map_or(Ok(Vec::new()), |v| decode(v.value()))
    }

    /// Sets the hours a Vision file's rows reach.
    pub fn set_file_hours(
        &mut self,
        symbol: &str,
        file: &str,
        hours: &[i64],
    ) -> anyhow::Result<()> {
        self.txn
            .open_table(FILE_HOURS)?
            .insert((symbol, file), postcard::to_stdvec(hours)?.as_slice())?;
        Ok(())
    }

    /// Records a Vision commit marker.
    pub fn add_vision_marker(
        &mut self,
        file: &str,
        offset: u64,
        marker: &VisionMarker,
    ) -> anyhow::Result<()> {
        self.txn
            .open_table(MARKERS)?
            .insert((file, offset), postcard::to_stdvec(marker)?.as_slice())?;
        Ok(())
    }

    /// Records offsets the log says were lost.
    pub fn add_lost(&mut self, lost: std::ops::Range<u64>) -> anyhow::Result<()> {
        self.txn.open_table(LOST)?.insert(lost.start, lost.end)?;
        Ok(())
    }

    /// A connection's span so far.
    pub fn stream_span(
        &self,
        symbol: &str,
        stream: &str,
        connection: u64,
    ) -> anyhow::Result<Option<StreamSpan>> {
        let table = self.txn.open_table(STREAMS)?;
        let value = table.get((symbol, stream, connection))?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Adds the heartbeat stretch `first..=last` of a connection, joined with
    /// the stretches it overlaps or comes within `gap` of. The result does not
    /// depend on the order stretches are added in.
    pub fn add_heartbeats(
        &mut self,
        symbol: &str,
        connection: u64,
        (mut first, mut last): (i64, i64),
        gap: i64,
    ) -> anyhow::Result<()> {
        let mut table = self.txn.open_table(HEARTBEATS)?;
        let mut joined = Vec::new();
        let near = (symbol, connection, i64::MIN)..=(symbol, connection, last.saturating_add(gap));
        for entry in table.range(near)?.rev() {
            let (key, end) = entry?;
            let (start, end) = (key.value().2, end.value());
            if end < first.saturating_sub(gap) {
                break;
            }
            joined.push(start);
            first = first.min(start);
            last = last.max(end);
        }
        for start in joined {
            table.remove((symbol, connection, start))?;
        }
        table.insert((symbol, connection, first), last)?;
        Ok(())
    }

    /// Sets a connection's span.
    pub fn set_stream_span(
        &mut self,
        symbol: &str,
        stream: &str,
        connection: u64,
        span: StreamSpan,
    ) -> anyhow::Result<()> {
        self.txn.open_table(STREAMS)?.insert(
            (symbol, stream, connection),
            postcard::to_stdvec(&span)?.as_slice(),
        )?;
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).context("a ledger value does not decode (written by another bml?)")
}
