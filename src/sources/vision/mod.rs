//! The Vision appender: Binance Vision daily (and monthly funding) archives into
//! the log. Per archive: read its `.CHECKSUM`, skip it if the log holds that
//! SHA-256 already, fetch and hash it, check the zip holds exactly its CSV, then
//! stream rows into records (one symbol-hour and at most 4096 rows each), and
//! finish with a `VisionFileIngested` marker and one sync. Rows count only once
//! their marker is in the log, so a file is all-or-nothing whatever happens
//! midway (see `event::Visibility`).

mod archive;
pub mod rows;
pub mod split;

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{Datelike, NaiveDate};

pub use archive::{FileSpec, Store};

use super::catalog::Catalog;
use super::Failure;
use crate::event::{
    Event, Record, Sha256, Source, VisionFileIngested, VisionFileMissing, VisionKind,
};
use crate::eventlog::EventLog;
use crate::progress::{CountingRead, Progress, Unit};
use crate::time::HOUR_MS;
use archive::{Archive, Lookup};
use split::{Chunk, ChunkError, Chunker, RawLine};

/// Rows per record at most; records also never span an hour.
const ROWS_PER_RECORD: usize = 4096;

/// Every kind, in ingest order.
pub const ALL_KINDS: [VisionKind; 9] = [
    VisionKind::Klines,
    VisionKind::MarkPriceKlines,
    VisionKind::IndexPriceKlines,
    VisionKind::PremiumIndexKlines,
    VisionKind::AggTrades,
    VisionKind::BookTicker,
    VisionKind::Metrics,
    VisionKind::BookDepth,
    VisionKind::FundingRate,
];

/// Vision's name for a kind (its directory name), as used on the command line.
pub fn kind_name(kind: VisionKind) -> &'static str {
    match kind {
        VisionKind::Klines => "klines",
        VisionKind::MarkPriceKlines => "markPriceKlines",
        VisionKind::IndexPriceKlines => "indexPriceKlines",
        VisionKind::PremiumIndexKlines => "premiumIndexKlines",
        VisionKind::AggTrades => "aggTrades",
        VisionKind::BookTicker => "bookTicker",
        VisionKind::Metrics => "metrics",
        VisionKind::BookDepth => "bookDepth",
        VisionKind::FundingRate => "fundingRate",
    }
}

/// The archives covering `start..=end` for `symbols` and `kinds`: one per day for
/// daily kinds, one per month for funding. bookTicker days after 2024-03-31 are
/// left out (Vision never published them; that gap is known, not missing).
pub fn plan(
    symbols: &[String],
    start: NaiveDate,
    end: NaiveDate,
    kinds: &[VisionKind],
) -> Vec<FileSpec> {
    let last_book_ticker = crate::binance::LAST_BOOK_TICKER_DAY;
    let mut specs = Vec::new();
    for symbol in symbols {
        for &kind in kinds {
            let mut periods: Vec<String> = Vec::new();
            for day in start.iter_days().take_while(|d| *d <= end) {
                let period = match kind {
                    VisionKind::FundingRate => format!("{:04}-{:02}", day.year(), day.month()),
                    VisionKind::BookTicker if day > last_book_ticker => continue,
                    _ => day.format("%Y-%m-%d").to_string(),
                };
                if periods.last() != Some(&period) {
                    periods.push(period);
                }
            }
            specs.extend(periods.into_iter().map(|period| FileSpec {
                kind,
                symbol: symbol.to_uppercase(),
                period,
            }));
        }
    }
    specs
}

/// How one archive went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Appended: rows and archive bytes.
    Ingested {
        /// Data rows.
        rows: u64,
        /// Archive size.
        bytes: u64,
        /// It replaced an ingest of a different SHA-256 (re-published upstream).
        replaced: bool,
    },
    /// The log already holds this archive with this SHA-256.
    AlreadyIngested,
    /// The archive does not exist (recorded in the log once).
    Missing,
    /// It failed; nothing of it is visible. The message names file, line,
    /// field or URL; the kind says whether to try again.
    Failed(Failure),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Each archive and how it went, in plan order.
    pub files: Vec<(String, Outcome)>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// The symbols of `specs` (the plan this summary ran) none of whose
    /// archives exists.
    pub fn symbols_without_archives(&self, specs: &[FileSpec]) -> Vec<String> {
        let mut symbols: Vec<String> = Vec::new();
        for spec in specs {
            if !symbols.contains(&spec.symbol) {
                symbols.push(spec.symbol.clone());
            }
        }
        symbols.retain(|symbol| {
            specs
                .iter()
                .zip(&self.files)
                .filter(|(spec, _)| &spec.symbol == symbol)
                .all(|(_, (_, outcome))| *outcome == Outcome::Missing)
        });
        symbols
    }

    /// Rows appended.
    pub fn rows(&self) -> u64 {
        self.ingested().map(|(rows, _)| rows).sum()
    }

    /// Archive bytes read.
    pub fn bytes(&self) -> u64 {
        self.ingested().map(|(_, bytes)| bytes).sum()
    }

    /// (rows, bytes) of each archive ingested.
    fn ingested(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.files.iter().filter_map(|(_, o)| match o {
            Outcome::Ingested { rows, bytes, .. } => Some((*rows, *bytes)),
            _ => None,
        })
    }

    /// Archives with the given outcome kind.
    pub fn count(&self, which: fn(&Outcome) -> bool) -> usize {
        self.files.iter().filter(|(_, o)| which(o)).count()
    }
}

/// Ingests the planned archives into `log`. A failing archive is reported and
/// skipped (nothing of it becomes visible); the others go on. The next archive
/// is fetched and hashed on another thread while this one is appended, so a
/// download overlaps the parsing of the archive before it.
pub fn ingest(
    log: &mut EventLog,
    catalog: &mut Catalog,
    store: &Store,
    specs: &[FileSpec],
    tmp_dir: &Path,
    progress: &dyn Progress,
) -> Summary {
    let started = Instant::now();
    sweep_downloads(tmp_dir);
    let overall = progress.bar("vision", specs.len() as u64, Unit::Items("archives"));
    let mut summary = Summary::default();
    let known: Vec<Option<Sha256>> = specs.iter().map(|s| catalog.ingested(&s.id())).collect();
    std::thread::scope(|scope| {
        // A rendezvous: at most one archive waits fetched beside the one appended.
        let (fetched, fetched_rx) = mpsc::sync_channel(0);
        scope.spawn(move || {
            for (spec, known) in specs.iter().zip(known) {
                if fetched.send(fetch(store, spec, known, tmp_dir)).is_err() {
                    return;
                }
            }
        });
        for (spec, prefetched) in specs.iter().zip(fetched_rx) {
            let file = spec.id();
            let outcome =
                match ingest_file(log, catalog, store, spec, prefetched, tmp_dir, progress) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let failure = Failure::of(&e);
                        tracing::error!(file = %file, kind = %failure.kind, "{}", failure.message);
                        Outcome::Failed(failure)
                    }
                };
            match &outcome {
                Outcome::Ingested {
                    rows,
                    replaced: true,
                    ..
                } => {
                    tracing::warn!(file = %file, rows, "re-ingested: Binance re-published this archive with a new SHA-256");
                }
                Outcome::Ingested { rows, .. } => tracing::info!(file = %file, rows, "ingested"),
                Outcome::AlreadyIngested => tracing::debug!(file = %file, "already in the log"),
                // Expected for days not published yet: the summary counts them.
                Outcome::Missing => tracing::info!(file = %file, "archive does not exist"),
                Outcome::Failed(_) => {}
            }
            summary.files.push((file, outcome));
            overall.inc(1);
        }
    });
    drop(overall);
    summary.elapsed = started.elapsed();
    summary
}

/// What the fetching thread found for one archive: its `.CHECKSUM`, and the
/// archive itself unless the checksum says the log holds it already (or
/// there is none).
struct Prefetched {
    checksum: anyhow::Result<Lookup<Sha256>>,
    archive: Option<anyhow::Result<Lookup<Archive>>>,
}

/// Looks up and fetches one archive. `known` is what the catalog held for it
/// when the run began; [`ingest_file`] decides again on the live catalog.
fn fetch(store: &Store, spec: &FileSpec, known: Option<Sha256>, tmp_dir: &Path) -> Prefetched {
    let checksum = store.checksum(spec);
    let wanted = matches!(&checksum, Ok(Lookup::Found(sha)) if known != Some(*sha));
    Prefetched {
        archive: wanted.then(|| store.archive(spec, tmp_dir)),
        checksum,
    }
}

/// Removes the downloads a killed run left in `tmp_dir`. Safe: the caller
/// holds the log's writer lock, so no other ingest of this data dir runs.
fn sweep_downloads(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_file() && name.to_string_lossy().starts_with(".tmp") {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a download a killed run left");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot remove a stale download: {e}");
                }
            }
        }
    }
}

fn ingest_file(
    log: &mut EventLog,
    catalog: &mut Catalog,
    store: &Store,
    spec: &FileSpec,
    prefetched: Prefetched,
    tmp_dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Outcome> {
    let file = spec.id();
    let expected = match prefetched.checksum? {
        Lookup::Found(sha) => sha,
        Lookup::Missing { location, status } => {
            return record_missing(log, catalog, spec, location, status)
        }
    };
    let previous = catalog.ingested(&file);
    if previous == Some(expected) {
        return Ok(Outcome::AlreadyIngested);
    }
    let fetched = match prefetched.archive {
        Some(fetched) => fetched,
        None => store.archive(spec, tmp_dir),
    };
    let archive = match fetched? {
        Lookup::Found(a) => a,
        Lookup::Missing { location, status } => {
            return record_missing(log, catalog, spec, location, status)
        }
    };
    if archive.sha256 != expected {
        bail!(
            "checksum mismatch for {}: .CHECKSUM says {}, the archive hashes to {}",
            archive.location,
            expected,
            archive.sha256
        );
    }
    let received_ns = crate::time::now_ns();
    let source = Source::Vision {
        file: file.clone(),
        sha256: archive.sha256,
    };
    let first_offset = log.next_offset();
    let rows = append_rows(log, spec, &archive, &source, received_ns, progress)?;
    let marker = Record {
        symbol: spec.symbol.clone(),
        source,
        received_ns,
        events: vec![Event::VisionFileIngested(VisionFileIngested {
            kind: spec.kind,
            period: spec.period.clone(),
            file: file.clone(),
            sha256: archive.sha256,
            rows,
            first_offset,
            replaces: previous,
        })],
    };
    log.push(&marker)?;
    log.commit()?;
    catalog.note_ingested(&file, archive.sha256);
    Ok(Outcome::Ingested {
        rows,
        bytes: archive.bytes,
        replaced: previous.is_some(),
    })
}

fn record_missing(
    log: &mut EventLog,
    catalog: &mut Catalog,
    spec: &FileSpec,
    url: String,
    http_status: u16,
) -> anyhow::Result<Outcome> {
    let file = spec.id();
    let now_ns = crate::time::now_ns();
    if !catalog.known_missing(&file) {
        log.push(&Record {
            symbol: spec.symbol.clone(),
            source: Source::Vision {
                file: file.clone(),
                sha256: Sha256([0; 32]),
            },
            received_ns: now_ns,
            events: vec![Event::VisionFileMissing(VisionFileMissing {
                kind: spec.kind,
                period: spec.period.clone(),
                url,
                http_status,
            })],
        })?;
        log.commit()?;
    }
    catalog.note_missing(&file, now_ns / crate::time::NS_PER_MS);
    Ok(Outcome::Missing)
}

/// Streams the archive's CSV into records; returns the number of data rows.
/// Three threads, so that two cores share the work: one inflates the CSV into
/// chunks of whole lines, one splits and parses them into records (one
/// symbol-hour, at most [`ROWS_PER_RECORD`] rows), and this one encodes and
/// appends the records. Chunks and records travel through bounded channels and
/// come back to be reused, so memory stays a few megabytes whatever the
/// archive's size.
fn append_rows(
    log: &mut EventLog,
    spec: &FileSpec,
    archive: &Archive,
    source: &Source,
    received_ns: i64,
    progress: &dyn Progress,
) -> anyhow::Result<u64> {
    let file = archive
        .reopen()
        .with_context(|| format!("reading {}", archive.location))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{}: not a readable zip (truncated?)", archive.location))?;
    let entry = archive::open_csv(&mut zip, spec, &archive.location)?;
    let csv_name = String::from_utf8_lossy(entry.name_raw()).into_owned();
    let bar = progress.bar(kind_name(spec.kind), entry.size(), Unit::Bytes);
    bar.note(&csv_name);
    let input = CountingRead::new(entry, bar.as_ref());
    let at = |line: u64| format!("{}: {csv_name}:{line}", archive.location);
    let template = Record {
        symbol: spec.symbol.clone(),
        source: source.clone(),
        received_ns,
        events: Vec::new(),
    };
    let rows = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let (chunks, chunks_rx) = mpsc::sync_channel(2);
        let (spent_chunks, spent_chunks_rx) = mpsc::channel();
        let (records, records_rx) = mpsc::sync_channel(8);
        let (spent_records, spent_records_rx) = mpsc::channel();
        scope.spawn(|| read_chunks(input, chunks, spent_chunks_rx, &at));
        scope.spawn(|| {
            let parser = Parser {
                spec,
                range: spec.time_range(),
                at: &at,
                template: &template,
                records,
                spent: spent_records_rx,
            };
            parser.run(chunks_rx, spent_chunks);
        });
        let mut rows = 0;
        for record in records_rx {
            let record: Record = record?;
            log.push(&record)?;
            rows += record.events.len() as u64;
            let _ = spent_records.send(record);
        }
        Ok(rows)
    })?;
    drop(bar);
    Ok(rows)
}

/// The inflating thread: the entry cut into chunks of whole lines. Ends by
/// reading the entry to its end, which makes the zip crate check the CSV's
/// CRC-32. Errors travel down the channel; a closed channel means stop.
fn read_chunks(
    input: impl Read,
    chunks: mpsc::SyncSender<anyhow::Result<Chunk>>,
    spent: mpsc::Receiver<Chunk>,
    at: &dyn Fn(u64) -> String,
) {
    let mut chunker = Chunker::new(input);
    loop {
        let mut chunk = spent.try_recv().unwrap_or_default();
        let sent = match chunker.next_into(&mut chunk) {
            Ok(true) => chunks.send(Ok(chunk)),
            Ok(false) => return,
            Err(e @ ChunkError::LineTooLong { line, .. }) => {
                chunks.send(Err(anyhow!("{}: {e}", at(line))))
            }
            Err(ChunkError::Read { line, source }) => chunks.send(Err(anyhow!(
                "{}: reading the zip entry: {source}",
                at(line)
            ))),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The parsing thread: chunks of lines into records of one symbol-hour and at
/// most [`ROWS_PER_RECORD`] rows.
struct Parser<'a> {
    spec: &'a FileSpec,
    /// The times the archive's period holds.
    range: Option<std::ops::RangeInclusive<i64>>,
    at: &'a dyn Fn(u64) -> String,
    template: &'a Record,
    records: mpsc::SyncSender<anyhow::Result<Record>>,
    spent: mpsc::Receiver<Record>,
}

impl Parser<'_> {
    fn run(&self, chunks: mpsc::Receiver<anyhow::Result<Chunk>>, spent: mpsc::Sender<Chunk>) {
        let mut record = self.empty_record();
        let mut hour = i64::MIN;
        let mut first = true;
        for chunk in chunks {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = self.records.send(Err(e));
                    return;
                }
            };
            for line in chunk.lines() {
                if std::mem::take(&mut first) && rows::is_header(&line) {
                    continue;
                }
                let event = match rows::parse(self.spec.kind, &line) {
                    Ok(event) => event,
                    Err(e) => {
                        let at = (self.at)(line.number());
                        let _ = self.records.send(Err(anyhow::Error::new(e).context(at)));
                        return;
                    }
                };
                let time = event.time().unwrap_or_default();
                if self.range.as_ref().is_some_and(|r| !r.contains(&time)) {
                    let _ = self.records.send(Err(self.outside(&line, time)));
                    return;
                }
                let event_hour = time.div_euclid(HOUR_MS);
                if record.events.len() == ROWS_PER_RECORD
                    || (event_hour != hour && !record.events.is_empty())
                {
                    let full = std::mem::replace(&mut record, self.empty_record());
                    if self.records.send(Ok(full)).is_err() {
                        return;
                    }
                }
                hour = event_hour;
                record.events.push(event);
            }
            let _ = spent.send(chunk);
        }
        if !record.events.is_empty() {
            let _ = self.records.send(Ok(record));
        }
    }

    /// A record to fill: one the appender is done with, or a new one.
    fn empty_record(&self) -> Record {
        match self.spent.try_recv() {
            Ok(mut record) => {
                record.events.clear();
                record
            }
            Err(_) => {
                let mut record = self.template.clone();
                record.events.reserve(ROWS_PER_RECORD);
                record
            }
        }
    }

    /// A row outside the archive's period: the file is not what its name says.
    fn outside(&self, line: &RawLine, time: i64) -> anyhow::Error {
        anyhow!(
            "{}: a row of another period than the archive's {} ({:?}, time {time})",
            (self.at)(line.number()),
            self.spec.period,
            String::from_utf8_lossy(line.text())
        )
    }
}
