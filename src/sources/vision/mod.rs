//! The Vision appender: Binance Vision daily (and monthly funding) archives into
//! the log. Per archive: read its `.CHECKSUM`, skip it if the log holds that
//! SHA-256 already, fetch and hash it, check the zip holds exactly its CSV, then
//! stream rows into records (one symbol-hour and at most 4096 rows each), and
//! finish with a `VisionFileIngested` marker and one sync. Rows count only once
//! their marker is in the log, so a file is all-or-nothing whatever happens
//! midway (see `event::Visibility`).

mod archive;
pub mod rows;

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
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
/// skipped (nothing of it becomes visible); the others go on.
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
    for spec in specs {
        let file = spec.id();
        let outcome = match ingest_file(log, catalog, store, spec, tmp_dir, progress) {
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
    drop(overall);
    summary.elapsed = started.elapsed();
    summary
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
    tmp_dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Outcome> {
    let file = spec.id();
    let expected = match store.checksum(spec)? {
        Lookup::Found(sha) => sha,
        Lookup::Missing { location, status } => {
            return record_missing(log, catalog, spec, location, status)
        }
    };
    let previous = catalog.ingested(&file);
    if previous == Some(expected) {
        return Ok(Outcome::AlreadyIngested);
    }
    let archive = match store.archive(spec, tmp_dir)? {
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

/// Streams the archive's CSV into records; returns the number of data rows. Two
/// threads: one inflates and splits CSV rows, this one parses, encodes and appends
/// them. Rows travel in recycled batches through a bounded channel, so memory stays
/// a few batches whatever the archive's size.
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
    let range = spec.time_range();
    let rows = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let (full_tx, full_rx) = mpsc::sync_channel(4);
        let (empty_tx, empty_rx) = mpsc::channel();
        scope.spawn(|| split_csv(input, full_tx, empty_rx, &at));
        let mut sink = RowSink {
            log,
            record: Record {
                symbol: spec.symbol.clone(),
                source: source.clone(),
                received_ns,
                events: Vec::with_capacity(ROWS_PER_RECORD),
            },
            hour: i64::MIN,
            rows: 0,
        };
        let mut first = true;
        for batch in full_rx {
            let (records, filled): (Vec<csv::ByteRecord>, usize) = batch?;
            for record in &records[..filled] {
                if std::mem::take(&mut first) && rows::is_header(record) {
                    continue;
                }
                let line = record.position().map_or(0, |p| p.line());
                let event = rows::parse_row(spec.kind, record).with_context(|| at(line))?;
                let time = event.time().unwrap_or_default();
                if range.as_ref().is_some_and(|r| !r.contains(&time)) {
                    let row: Vec<String> = record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect();
                    bail!(
                        "{}: a row of another period than the archive's {} ({:?}, time {time})",
                        at(line),
                        spec.period,
                        row.join(",")
                    );
                }
                sink.push(event)?;
            }
            let _ = empty_tx.send(records);
        }
        sink.flush()?;
        Ok(sink.rows)
    })?;
    drop(bar);
    Ok(rows)
}

/// CSV rows per batch between the two threads.
const BATCH_ROWS: usize = 4096;

/// The splitting thread: CSV rows out of the (inflating) entry, in batches. Ends
/// by reading the entry to its end, which makes the zip crate check the CSV's
/// CRC-32. Errors travel down the channel; a closed channel means stop.
fn split_csv(
    input: impl Read,
    full: mpsc::SyncSender<anyhow::Result<(Vec<csv::ByteRecord>, usize)>>,
    empty: mpsc::Receiver<Vec<csv::ByteRecord>>,
    at: &dyn Fn(u64) -> String,
) {
    // Vision never quotes a field; without quote handling the splitter is faster,
    // and a stray quote still fails the row's field parser, loudly.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .quoting(false)
        .buffer_capacity(1 << 20)
        .from_reader(input);
    loop {
        let mut batch = empty
            .try_recv()
            .unwrap_or_else(|_| vec![csv::ByteRecord::new(); BATCH_ROWS]);
        let mut filled = 0;
        while filled < BATCH_ROWS {
            match reader.read_byte_record(&mut batch[filled]) {
                Ok(true) => filled += 1,
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let _ = full.send(Err(anyhow::anyhow!("{}: {e}", at(line))));
                    return;
                }
            }
        }
        let done = filled < BATCH_ROWS;
        if full.send(Ok((batch, filled))).is_err() {
            return;
        }
        if done {
            let mut rest = reader.into_inner();
            if let Err(e) = std::io::copy(&mut rest, &mut std::io::sink()) {
                let _ = full.send(Err(anyhow::anyhow!("{}: zip entry CRC check: {e}", at(0))));
            }
            return;
        }
    }
}

/// Groups events into records of one symbol-hour and at most
/// [`ROWS_PER_RECORD`] rows, and pushes them to the log.
struct RowSink<'a> {
    log: &'a mut EventLog,
    record: Record,
    hour: i64,
    rows: u64,
}

impl RowSink<'_> {
    fn push(&mut self, event: Event) -> anyhow::Result<()> {
        let hour = event.time().unwrap_or_default().div_euclid(HOUR_MS);
        if self.record.events.len() == ROWS_PER_RECORD
            || (hour != self.hour && !self.record.events.is_empty())
        {
            self.flush()?;
        }
        self.hour = hour;
        self.record.events.push(event);
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.record.events.is_empty() {
            self.log.push(&self.record)?;
            self.record.events.clear();
        }
        Ok(())
    }
}
