//! The log as the rest of bml sees it: [`Record`]s in, `(offset, Record)` out.
//! A thin typed layer over `bml-wal`, which knows nothing of events.

use std::ops::{ControlFlow, Range};
use std::path::Path;

use anyhow::Context;
use bml_wal::{Options, SyncPolicy, Wal};

use crate::event::{
    decode_envelope, is_compacted, peek_class, Buffers, Envelope, Record, RecordClass, Source,
    Visibility,
};

/// Append a batch once this many encoded bytes are waiting: one frame, one write.
const BATCH_BYTES: usize = 1 << 20;

/// The offset the log's next record will get: 0 when there is no log yet,
/// an error naming the log when it cannot be read (never a silent 0).
pub fn head(data_dir: &Path) -> anyhow::Result<u64> {
    let dir = crate::data_dir::wal(data_dir);
    if !dir.exists() {
        return Ok(0);
    }
    Ok(bml_wal::stat(&dir)
        .with_context(|| format!("reading the log at {}", dir.display()))?
        .next_offset)
}

/// The log's identity: a random id written beside its segments the first time
/// it is asked for (by `init-state`, an appender, or a materializer meeting a
/// log from before ids). A ledger remembers the id of the log it was derived
/// from, so a log replaced or recreated under it is noticed.
pub fn log_id(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(id) = existing_log_id(data_dir)? {
        return Ok(id);
    }
    renew_log_id(data_dir)
}

/// Gives the log a new id (a repair changed its content: nothing derived
/// from the old content may be trusted) and returns it.
pub fn renew_log_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = crate::data_dir::log_id(data_dir);
    let id = format!("{:032x}", fastrand::u128(..));
    std::fs::create_dir_all(crate::data_dir::wal(data_dir))
        .with_context(|| format!("creating {}", crate::data_dir::wal(data_dir).display()))?;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{id}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The log's id if it has one (reads only; see [`log_id`]).
pub fn existing_log_id(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = crate::data_dir::log_id(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(Some(id.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What to run about damage in the log.
pub const DAMAGE_HINT: &str =
    "`bml wal verify` lists all damage; `bml wal repair` moves it to quarantine so the log reads on";

/// Says what opening the log had to do: a torn tail cut (a crash's short
/// write, its bytes moved to quarantine), damage kept in place (a whole frame
/// that fails its checksum is never cut: its records may have been
/// acknowledged).
pub fn report_recovery(recovery: &bml_wal::Recovery) {
    if let Some(torn) = &recovery.truncated {
        tracing::warn!(
            "{}, byte {}: cut a torn tail left by a crash ({} bytes, moved to {}); appends \
             continue at offset {}",
            torn.segment.display(),
            torn.position,
            torn.bytes,
            torn.quarantine.display(),
            torn.offset
        );
    }
    for problem in &recovery.problems {
        tracing::error!("damage in the log, kept in place: {problem} ({DAMAGE_HINT})");
    }
}

/// Damage in the log's sealed segments that a cheap look finds (headers, the
/// chain of frames and offsets; `bml_wal::check_sealed`), each as a message
/// naming file, byte and offsets, and what to run next. Appends go on beside
/// it; replays stop at it.
pub fn sealed_damage(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = crate::data_dir::wal(data_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let problems = bml_wal::check_sealed(&dir)
        .with_context(|| format!("checking the log at {}", dir.display()))?;
    Ok(problems
        .iter()
        .map(|p| format!("damage in a sealed segment of the log: {p} ({DAMAGE_HINT})"))
        .collect())
}

/// SHA-256 of the bytes of the record at `offset`; `None` if the log ends
/// before it. Two logs that agree here almost surely agree up to it: a ledger
/// keeps this for the last record it indexed.
pub fn fingerprint(data_dir: &Path, offset: u64) -> anyhow::Result<Option<[u8; 32]>> {
    use sha2::Digest;
    if offset >= head(data_dir)? {
        return Ok(None);
    }
    let mut reader = bml_wal::Reader::open(crate::data_dir::wal(data_dir), offset)?;
    reader.seek(offset).map_err(with_hint)?;
    let entry = reader
        .next_entry()
        .map_err(with_hint)?
        .with_context(|| format!("the log has no record at offset {offset}"))?;
    Ok(Some(match entry {
        bml_wal::Entry::Record(raw) => sha2::Sha256::digest(raw.data).into(),
        bml_wal::Entry::Lost { note, .. } => sha2::Sha256::digest(format!("lost:{note}")).into(),
    }))
}

/// The writer side: encodes records and appends them in batches.
pub struct EventLog {
    wal: Wal,
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    first_pending: u64,
    /// Size of the last encoded record: the next one is usually alike.
    last_len: usize,
    /// The encoder's zstd context and memory, reused record after record.
    buffers: Buffers,
}

/// Runs `append` on a log that several appenders of one process share (the
/// live collector and the minute job of `run-daemon`), holding it meanwhile.
/// `L` is the log or a borrow of it.
pub fn with_shared<L: std::borrow::BorrowMut<EventLog>, T>(
    log: &std::sync::Mutex<L>,
    append: impl FnOnce(&mut EventLog) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut guard = log.lock().map_err(|_| {
        anyhow::anyhow!("another appender of this process failed while writing the log")
    })?;
    append((*guard).borrow_mut())
}

impl EventLog {
    /// Opens the log of `data_dir` for appending. Appends are written to the OS
    /// at once and made durable by [`EventLog::commit`]: an appender commits at
    /// the points where its work is whole (a Vision file, a REST page).
    pub fn open(data_dir: &Path) -> anyhow::Result<EventLog> {
        let dir = crate::data_dir::wal(data_dir);
        log_id(data_dir)?;
        let segment_bytes = std::env::var(SEGMENT_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Options::default().segment_bytes);
        let wal = Wal::open(
            &dir,
            Options {
                sync: SyncPolicy::Never,
                segment_bytes,
            },
        )
        .with_context(|| format!("opening the log at {}", dir.display()))?;
        report_recovery(wal.recovery());
        for problem in sealed_damage(data_dir)? {
            tracing::error!("{problem}");
        }
        let next = wal.next_offset();
        Ok(EventLog {
            wal,
            pending: Vec::new(),
            pending_bytes: 0,
            first_pending: next,
            last_len: 256,
            buffers: Buffers::default(),
        })
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.first_pending + self.pending.len() as u64
    }

    /// Queues a record; returns its offset. It reaches the OS within a batch and
    /// is durable after the next [`EventLog::commit`].
    pub fn push(&mut self, record: &Record) -> anyhow::Result<u64> {
        let offset = self.next_offset();
        let mut bytes = Vec::with_capacity(self.last_len);
        record.encode_with(&mut self.buffers, &mut bytes);
        self.last_len = bytes.len();
        self.pending_bytes += bytes.len();
        self.pending.push(bytes);
        if self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(offset)
    }

    /// Writes queued records to the log (not synced).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let range: Range<u64> = self.wal.append_batch(&self.pending)?;
        debug_assert_eq!(range.start, self.first_pending);
        self.first_pending = range.end;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes queued records and syncs: everything pushed so far is durable.
    pub fn commit(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.wal.sync()?;
        if let Some(trace) = std::env::var_os(SYNC_TRACE_ENV) {
            self.trace_sync(Path::new(&trace))?;
        }
        Ok(())
    }

    /// Appends the sync point just completed to `trace`: the next offset, then
    /// each segment's name and length, as one line. Tests that simulate a power
    /// cut read it to know what the disk is guaranteed to hold.
    fn trace_sync(&self, trace: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let stat = bml_wal::stat(self.wal.dir())?;
        let mut line = self.next_offset().to_string();
        for segment in &stat.segments {
            let name = segment
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            line.push_str(&format!(" {name}:{}", segment.bytes));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(trace)
            .with_context(|| format!("opening the sync trace {}", trace.display()))?;
        writeln!(file, "{line}").with_context(|| format!("writing {}", trace.display()))
    }
}

/// Set to a number of bytes, appenders start a new log segment that often
/// (default 128 MiB): tests that need sealed segments from small logs
/// (`bml wal compact` works on sealed segments only); never needed in use.
pub const SEGMENT_BYTES_ENV: &str = "BML_TEST_SEGMENT_BYTES";

/// Set to a file path, every commit appends its sync point there (see
/// [`EventLog::commit`]); for power-cut tests, never needed in use.
pub const SYNC_TRACE_ENV: &str = "BML_TEST_SYNC_TRACE";

/// What a scan of the log meets.
pub enum Scanned {
    /// A record, decoded.
    Record(u64, Record),
    /// Offsets whose records `bml wal repair` declared lost. Whatever facts
    /// they held are gone from the log: coverage that relied on them no
    /// longer holds (see `event::Visibility::observe_lost`).
    Lost(Range<u64>),
}

/// Reads the log from `from` to its end, decoding only the records `wanted`
/// accepts by class (so a scan for coverage skips data cheaply); lost ranges
/// are always handed out. Damage stops the scan with an error that names it
/// and says what to run.
pub fn scan(
    data_dir: &Path,
    from: u64,
    wanted: impl Fn(RecordClass) -> bool,
    each: impl FnMut(Scanned) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    scan_range(data_dir, from..u64::MAX, wanted, each)
}

/// [`scan`] of the offsets in `range` only: the log as it stood when it
/// ended at `range.end` (a lost range is cut at it).
pub fn scan_range(
    data_dir: &Path,
    range: Range<u64>,
    wanted: impl Fn(RecordClass) -> bool,
    mut each: impl FnMut(Scanned) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    walk(data_dir, range, |raw| match raw {
        Raw::Lost(lost) => each(Scanned::Lost(lost)).map(ControlFlow::Continue),
        Raw::Record(offset, data) => {
            let class = peek_class(data).with_context(|| format!("record at offset {offset}"))?;
            if wanted(class) {
                let record =
                    Record::decode(data).with_context(|| format!("record at offset {offset}"))?;
                each(Scanned::Record(offset, record))?;
            }
            Ok(ControlFlow::Continue(()))
        }
    })
}

/// What a scan of envelopes meets.
pub enum ScannedEnvelope {
    /// A record's envelope, and the record decoded whole when the scan's
    /// `whole` asked for it.
    Record(u64, Envelope, Option<Box<Record>>),
    /// Offsets a repair declared lost ([`Scanned::Lost`]).
    Lost(Range<u64>),
}

/// [`scan_range`] that decodes each record's [`Envelope`] only (cheap from
/// event format 3 on), and the whole record where `whole` says so.
pub fn scan_envelopes(
    data_dir: &Path,
    range: Range<u64>,
    whole: impl Fn(RecordClass, &Envelope) -> bool,
    mut each: impl FnMut(ScannedEnvelope) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    walk(data_dir, range, |raw| match raw {
        Raw::Lost(lost) => each(ScannedEnvelope::Lost(lost)).map(ControlFlow::Continue),
        Raw::Record(offset, data) => {
            let context = || format!("record at offset {offset}");
            let (class, envelope) = decode_envelope(data).with_context(context)?;
            let record = if whole(class, &envelope) {
                Some(Box::new(Record::decode(data).with_context(context)?))
            } else {
                None
            };
            each(ScannedEnvelope::Record(offset, envelope, record)).map(ControlFlow::Continue)
        }
    })
}

/// What [`walk`] hands out: a record's bytes, or a lost range.
enum Raw<'a> {
    Record(u64, &'a [u8]),
    Lost(Range<u64>),
}

/// Reads the log's offsets in `range`, handing out each record's bytes
/// (skipping compacted ones) and each lost range (cut at `range.end`), until
/// `each` says to stop.
fn walk(
    data_dir: &Path,
    range: Range<u64>,
    mut each: impl FnMut(Raw) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()> {
    let dir = crate::data_dir::wal(data_dir);
    if !dir.exists() {
        return Ok(());
    }
    let mut reader = bml_wal::Reader::open(&dir, range.start)?;
    loop {
        let entry = match reader.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(()),
            Err(e) => return Err(with_hint(e)),
        };
        let flow = match entry {
            bml_wal::Entry::Record(raw) if raw.offset >= range.end => return Ok(()),
            bml_wal::Entry::Lost { offsets, .. } if offsets.start >= range.end => return Ok(()),
            bml_wal::Entry::Lost { offsets, .. } => {
                each(Raw::Lost(offsets.start..offsets.end.min(range.end)))?
            }
            bml_wal::Entry::Record(raw) if is_compacted(raw.data) => ControlFlow::Continue(()),
            bml_wal::Entry::Record(raw) => each(Raw::Record(raw.offset, raw.data))?,
        };
        if flow.is_break() {
            return Ok(());
        }
    }
}

/// The first offset whose record was received at or after `time_ns` (the
/// log as it stood then ends there); `None` when every record was received
/// before it. Reads from the start: receive times follow the appends.
pub fn offset_at(data_dir: &Path, time_ns: i64) -> anyhow::Result<Option<u64>> {
    let mut found = None;
    walk(data_dir, 0..u64::MAX, |raw| {
        let Raw::Record(offset, data) = raw else {
            return Ok(ControlFlow::Continue(()));
        };
        let (_, envelope) =
            decode_envelope(data).with_context(|| format!("record at offset {offset}"))?;
        if envelope.received_ns < time_ns {
            return Ok(ControlFlow::Continue(()));
        }
        found = Some(offset);
        Ok(ControlFlow::Break(()))
    })?;
    Ok(found)
}

/// A log error, with what to run when it is damage.
fn with_hint(e: bml_wal::Error) -> anyhow::Error {
    match e {
        bml_wal::Error::Corrupt { .. } | bml_wal::Error::BadSegmentHeader { .. } => {
            anyhow::anyhow!("{e} ({DAMAGE_HINT})")
        }
        e => e.into(),
    }
}

/// Reads records by offset, in any order (the materializer gathering an hour).
pub struct RecordReader {
    reader: bml_wal::Reader,
    buffers: crate::event::Buffers,
}

impl RecordReader {
    /// A reader over the log of `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<RecordReader> {
        let dir = crate::data_dir::wal(data_dir);
        let reader = bml_wal::Reader::open(&dir, 0)
            .with_context(|| format!("opening the log at {}", dir.display()))?;
        Ok(RecordReader {
            reader,
            buffers: crate::event::Buffers::default(),
        })
    }

    /// The envelope of the record at `offset`, its events left undecoded;
    /// `None` if it was compacted away or written before records had
    /// envelopes (reading one of those means decoding it).
    pub fn envelope(&mut self, offset: u64) -> anyhow::Result<Option<(RecordClass, Envelope)>> {
        let Some(data) = raw(&mut self.reader, offset)? else {
            return Ok(None);
        };
        crate::event::written_envelope(data).with_context(|| format!("record at offset {offset}"))
    }

    /// The record at `offset`, `None` if it was compacted away; an error if
    /// the log is damaged there or shorter. Give it back with
    /// [`RecordReader::recycle`] once read, for the next one's memory.
    pub fn read(&mut self, offset: u64) -> anyhow::Result<Option<Record>> {
        let Some(data) = raw(&mut self.reader, offset)? else {
            return Ok(None);
        };
        let record = Record::decode_with(data, &mut self.buffers)
            .with_context(|| format!("record at offset {offset}"))?;
        Ok(Some(record))
    }

    /// Takes back a record [`RecordReader::read`] returned.
    pub fn recycle(&mut self, record: Record) {
        self.buffers.recycle(record.events);
    }
}

/// The bytes of the record at `offset`, `None` if it was compacted away.
fn raw(reader: &mut bml_wal::Reader, offset: u64) -> anyhow::Result<Option<&[u8]>> {
    reader.seek(offset).map_err(with_hint)?;
    let raw = reader
        .next()
        .map_err(with_hint)?
        .with_context(|| format!("the log has no record at offset {offset}"))?;
    Ok((!is_compacted(raw.data)).then_some(raw.data))
}

/// Empties the records of the log of `data_dir` that no reader can ever see
/// (Vision rows that no marker committed: what killed or failed ingests
/// leave), in its sealed segments, keeping every offset (`bml wal compact`).
/// Holds the writer lock throughout, so no ingest is midway: every row
/// without its marker then belongs to an attempt that ended.
pub fn compact(data_dir: &Path) -> anyhow::Result<bml_wal::CompactReport> {
    let dir = crate::data_dir::wal(data_dir);
    let exclusive =
        bml_wal::lock(&dir).with_context(|| format!("locking the log at {}", dir.display()))?;
    let mut visibility = Visibility::new();
    let mut rows = Vec::new();
    scan_envelopes(
        data_dir,
        0..u64::MAX,
        |class, _| class == RecordClass::Coverage,
        |scanned| {
            match scanned {
                ScannedEnvelope::Record(offset, _, Some(record)) => {
                    visibility.observe(offset, &record);
                }
                ScannedEnvelope::Record(offset, envelope, None) => {
                    if let Source::Vision { file, sha256 } = envelope.source {
                        rows.push((offset, file, sha256));
                    }
                }
                ScannedEnvelope::Lost(_) => {}
            }
            Ok(())
        },
    )?;
    let mut dead: Vec<Range<u64>> = Vec::new();
    for (offset, file, sha256) in rows {
        if visibility.never_visible(offset, &file, sha256) {
            match dead.last_mut() {
                Some(last) if last.end == offset => last.end += 1,
                _ => dead.push(offset..offset + 1),
            }
        }
    }
    exclusive
        .blank(&dead)
        .with_context(|| format!("compacting the log at {}", dir.display()))
}
