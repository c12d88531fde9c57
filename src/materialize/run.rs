//! `bml materialize`: from the log to the lake and the ledger.
//!
//! 1. Extend the offset index to the log's end ([`index::extend`]).
//! 2. Choose the hours to derive: those reached by a record at or after the
//!    starting offset (the checkpoint, or `--from N`), plus partitions written
//!    under another schema or lake root (stale).
//! 3. For each, read exactly the records its index entry lists, keep the visible
//!    ones, collect the hour's facts, build its rows, and commit the partition if
//!    its bytes changed; record it, its findings and its provenance in the ledger.
//! 4. Recompute the watermarks of the symbols touched; move the checkpoint to the
//!    log's end.
//!
//! Files are committed before the ledger says so, and the checkpoint moves last:
//! a crash anywhere leaves complete files, and the next run redoes the same hours
//! (rewriting nothing that is already right).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sha2::Digest;

use super::collect::Collector;
use super::hour::build_hour;
use super::index;
use crate::event::{
    Envelope, FactKind, RecordClass, Source, Visibility, LIQUIDATION_STREAM_SUFFIX,
};
use crate::eventlog::RecordReader;
use crate::lake::{self, claims, Lake, Layout};
use crate::ledger::{Batch, BookHealth, FedBy, Finding, Ledger, Partition, Provenance};
use crate::progress::{Progress, Unit};
use crate::schema::schema_hash;
use crate::time::{utc_minute, DAY_MS, HOUR_MS, MINUTE_MS};

/// Commit the ledger (lazily) after this many hours.
const HOURS_PER_COMMIT: usize = 64;

/// What to derive, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Re-derive the hours reached by records at this offset or later; `None`
    /// means from the checkpoint.
    pub from: Option<u64>,
    /// The lake.
    pub lake: Lake,
    /// How its hours are laid out in files (`None`: as the ledger recorded
    /// for this lake, else the hour layout).
    pub layout: Option<Layout>,
    /// In the day layout, the time before which a day counts as closed (a
    /// day ending at or before it is one file): the caller's clock less the
    /// settle time, or the time the ledger recorded (an audit must decide as
    /// the run it checks did).
    pub days_closed_before: i64,
    /// Hours derived at once, each on its own thread (at least 1). Memory grows
    /// with it: one hour's facts per job.
    pub jobs: usize,
    /// Start from an empty ledger (the old one deleted unread: it may be
    /// damaged), as a stale ledger is.
    pub rebuild_ledger: bool,
    /// Hours to derive again whatever the checkpoint says (a partition file
    /// found missing from the lake).
    pub rederive: BTreeSet<(String, i64)>,
    /// Time travel: derive the lake as the log stood when it ended at an
    /// offset, into `lake`, with a ledger of its own; the data dir's
    /// ledger and state are not touched.
    pub as_of: Option<AsOf>,
}

/// The log end and the ledger of a time-travel derivation.
#[derive(Debug, Clone)]
pub struct AsOf {
    /// Records at or after this offset are ignored.
    pub end: u64,
    /// A ledger file for it alone (new, or of an earlier derivation of the
    /// same lake root and end).
    pub ledger: PathBuf,
    /// Write the partition files. Without them the derivation fills only
    /// the ledger, each entry with its file's content hash: what an audit
    /// compares a lake with, at the cost of no second lake on disk.
    pub files: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The offset it started from.
    pub from: u64,
    /// The log's end, now the checkpoint.
    pub head: u64,
    /// Records newly indexed.
    pub indexed: u64,
    /// Symbol-hours derived.
    pub hours: u64,
    /// Partitions whose file was written (new or changed).
    pub written: u64,
    /// Partitions derived again with identical bytes (not rewritten).
    pub unchanged: u64,
    /// Hours some record reached that hold no complete minute, so no file:
    /// a REST range or a statistic that runs past the last kline, a funding
    /// time before the first one. Sorted.
    pub without_minute: Vec<(String, i64)>,
    /// Rows in the partitions derived.
    pub rows: u64,
    /// Findings recorded for the hours derived.
    pub findings: u64,
    /// Records decoded to derive them: a record reaching several hours (a
    /// REST page of 1 000 klines, say) is decoded once for each, unless its
    /// envelope shows it cannot matter to one (earlier book updates).
    pub records_read: u64,
    /// Events in those records.
    pub events_read: u64,
    /// Why the ledger was rebuilt from the log, if it was.
    pub rebuilt: Option<String>,
    /// Lake files no partition of the rebuilt ledger names, removed.
    pub orphans_removed: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a run refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// The replay was asked to start past the log's end.
    #[error("--from {from} is past the log's end (offset {head})")]
    StartPastEnd {
        /// The start asked for.
        from: u64,
        /// The log's next offset.
        head: u64,
    },
    /// Time travel was asked for a log end the log has not reached.
    #[error("--as-of {as_of} is past the log's end (offset {head})")]
    AsOfPastEnd {
        /// The offset asked for.
        as_of: u64,
        /// The log's next offset.
        head: u64,
    },
}

/// The hours a run derives: those reached by records at or after `from`
/// (every hour when the lake `moved` or changed layout), those asked for, and
/// those written under another schema. In the day layout, a closed day is derived whole
/// (its file holds every hour), and so is a day closed since the last run.
fn hours_to_derive(
    ledger: &Ledger,
    from: u64,
    moved: bool,
    layout: &Days,
    rederive: &BTreeSet<(String, i64)>,
) -> anyhow::Result<BTreeSet<(String, i64)>> {
    let mut hours: BTreeSet<(String, i64)> = ledger
        .hours_reached_since(if moved { 0 } else { from })?
        .into_iter()
        .collect();
    hours.extend(rederive.iter().cloned());
    let current = schema_hash();
    let was_closed = ledger.days_closed_before()?;
    let mut days = BTreeSet::new();
    let partitions = ledger.partitions()?;
    for ((symbol, hour), p) in &partitions {
        let (symbol, hour) = (symbol.clone(), *hour);
        let newly_closed =
            layout.closed(hour) && was_closed.is_none_or(|t| day_of(hour) + DAY_MS > t);
        if newly_closed {
            days.insert((symbol.clone(), day_of(hour)));
        }
        if p.schema_hash != current {
            hours.insert((symbol, hour));
        }
    }
    days.extend(
        hours
            .iter()
            .filter(|(_, hour)| layout.closed(*hour))
            .map(|(symbol, hour)| (symbol.clone(), day_of(*hour))),
    );
    // Every hour of those days the ledger holds: the day's file is made of
    // them (an hour no record reached has no minute, and no place in it).
    hours.extend(
        partitions
            .into_keys()
            .filter(|(symbol, hour)| days.contains(&(symbol.clone(), day_of(*hour)))),
    );
    Ok(hours)
}

/// Whether the ledger's partitions were written in another layout.
fn relaid(ledger: &Ledger, layout: &Days) -> anyhow::Result<bool> {
    let was = ledger
        .lake_layout()?
        .unwrap_or_else(|| Layout::Hour.name().into());
    Ok(was != layout.layout.name())
}

fn day_of(time: i64) -> i64 {
    time.div_euclid(DAY_MS) * DAY_MS
}

/// The layout of a run, with the time before which days are closed.
#[derive(Debug, Clone, Copy)]
struct Days {
    layout: Layout,
    closed_before: Option<i64>,
}

impl Days {
    /// Whether the hour's day is one file.
    fn closed(&self, hour: i64) -> bool {
        self.layout == Layout::Day
            && self
                .closed_before
                .is_some_and(|t| day_of(hour) + DAY_MS <= t)
    }

    /// The key of the file holding the symbol-hour.
    fn key(&self, symbol: &str, hour: i64) -> String {
        lake::file_key(self.layout, self.closed(hour), symbol, hour)
    }
}

/// Which Vision rows count, from the markers and lost ranges in the ledger.
fn visibility(ledger: &Ledger) -> anyhow::Result<Visibility> {
    let mut visibility = Visibility::new();
    for (file, offset, m) in ledger.vision_markers()? {
        visibility.observe_marker(&file, m.sha256, m.first_offset, offset, m.replaces);
    }
    for lost in ledger.lost_ranges()? {
        visibility.observe_lost(lost);
    }
    Ok(visibility)
}

/// Derives `hours` on `jobs` workers, each taking the next hour; this thread
/// records what they derived in the ledger in the order it arrives (entries
/// are keyed, so the order does not matter) and tells `done` of each.
fn derive_all(
    context: &Context<'_>,
    hours: &[(String, i64)],
    jobs: usize,
    mut done: impl FnMut(&str, i64, &Derived),
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::sync_channel(jobs * 2);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..jobs {
            let (sender, next) = (sender.clone(), &next);
            scope.spawn(move || {
                let mut reader = match RecordReader::open(context.data_dir) {
                    Ok(reader) => reader,
                    Err(e) => return drop(sender.send(Err(e))),
                };
                let mut collector = Collector::new(0);
                while let Some((symbol, hour)) = hours.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let derived = context.derive_hour(&mut reader, &mut collector, symbol, *hour);
                    if sender.send(derived.map(|d| (symbol, *hour, d))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        // The hours of each closed day still to arrive: its file is written
        // once all have, and only then do they go in the ledger.
        let mut waiting: BTreeMap<(&str, i64), usize> = BTreeMap::new();
        for (symbol, hour) in hours {
            if context.days.closed(*hour) {
                *waiting.entry((symbol.as_str(), day_of(*hour))).or_default() += 1;
            }
        }
        let mut arrived: BTreeMap<(&str, i64), Vec<(i64, Derived)>> = BTreeMap::new();
        let mut batch = context.ledger.batch()?;
        let mut since_commit = 0;
        // The closed days `batch` records, whose hour files go once it commits.
        let mut to_sweep: Vec<(&str, i64)> = Vec::new();
        for derived in receiver {
            let (symbol, hour, derived) = derived?;
            let ready = if derived.day_rows.is_some() {
                let day = (symbol.as_str(), day_of(hour));
                let have = arrived.entry(day).or_default();
                have.push((hour, derived));
                if have.len() < waiting[&day] {
                    continue;
                }
                let have = arrived.remove(&day).unwrap_or_default();
                if context.files {
                    batch.set_sweep_due(day.0, day.1, true)?;
                    to_sweep.push(day);
                }
                context.commit_day(symbol, day.1, have)?
            } else {
                vec![(hour, derived)]
            };
            for (hour, derived) in ready {
                batch.put_partition(symbol, hour, &derived.partition, &derived.findings)?;
                batch.set_book_health(symbol, hour, derived.book.as_ref())?;
                batch.set_provenance(symbol, hour, &derived.provenance)?;
                if let Some(etag) = &derived.etag {
                    batch.set_etag(symbol, hour, etag.as_deref())?;
                }
                done(symbol, hour, &derived);
                since_commit += 1;
            }
            if since_commit >= HOURS_PER_COMMIT {
                // Committed before the next begins: redb waits forever for a
                // second write transaction opened while its thread holds one.
                batch = context.commit(batch, &mut to_sweep)?;
                since_commit = 0;
            }
        }
        context.commit(batch, &mut to_sweep)?.commit_lazily()
    })
}

/// Runs the materializer over the log of `data_dir`.
pub fn run(data_dir: &Path, options: &Options, progress: &dyn Progress) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let log_head = crate::eventlog::head(data_dir)?;
    let (ledger, rebuilt, head) = match &options.as_of {
        Some(as_of) if as_of.end > log_head => bail!(MaterializeError::AsOfPastEnd {
            as_of: as_of.end,
            head: log_head
        }),
        Some(as_of) => {
            let ledger = Ledger::open_at(as_of.ledger.clone())?;
            let why = format!("derived as of offset {}", as_of.end);
            (ledger, Some(why), as_of.end)
        }
        None => {
            let (ledger, rebuilt) = open_bound_ledger(data_dir, options.rebuild_ledger)?;
            (ledger, rebuilt, log_head)
        }
    };
    let new_records = head.saturating_sub(ledger.indexed_to()?);
    let indexing = progress.bar("indexing", new_records, Unit::Items("records"));
    let end = options.as_of.as_ref().map(|a| a.end);
    let indexing_started = Instant::now();
    let extended = index::extend(data_dir, &ledger, end, |_| indexing.inc(1))?;
    drop(indexing);
    tracing::info!(
        "indexed {} records in {:.2?}",
        extended.records,
        indexing_started.elapsed()
    );
    let head = extended.head;
    let from = match options.from {
        Some(n) if n > head => bail!(MaterializeError::StartPastEnd { from: n, head }),
        Some(n) => n,
        None => ledger.checkpoint()?,
    };
    let lake_root = options.lake.location();
    let same_lake = ledger.lake_root()?.is_none_or(|root| root == lake_root);
    let recorded = ledger
        .lake_layout()?
        .and_then(|name| Layout::from_name(&name));
    let layout = options
        .layout
        .or(recorded.filter(|_| same_lake))
        .unwrap_or(Layout::Hour);
    let mut days = Days {
        layout,
        closed_before: (layout == Layout::Day).then_some(options.days_closed_before),
    };
    let relaid = relaid(&ledger, &days)?;
    if same_lake && !relaid && options.as_of.is_none() {
        // A closed day stays closed (a longer settle time reopens none).
        days.closed_before = days.closed_before.max(ledger.days_closed_before()?);
    }
    let moved = !same_lake || relaid;
    let hours = hours_to_derive(&ledger, from, moved, &days, &options.rederive)?;
    // A derivation of its own (`--as-of`, an audit's) writes a lake of its
    // own; the lake itself is shared with other instances, by symbol.
    let me = match options.as_of {
        Some(_) => None,
        None => {
            let me = claims::instance(data_dir)?;
            claims::claim(&options.lake, hours.iter().map(|(s, _)| s.as_str()), &me)?;
            Some(me)
        }
    };
    if options.as_of.is_none() {
        finish_sweeps(&ledger, &options.lake, same_lake)?;
    }
    let visibility = visibility(&ledger)?;
    let mut summary = Summary {
        from,
        head,
        indexed: extended.records,
        hours: hours.len() as u64,
        ..Summary::default()
    };
    let deriving = progress.bar("deriving", summary.hours, Unit::Items("hours"));
    let hours: Vec<(String, i64)> = hours.into_iter().collect();
    let context = Context {
        data_dir,
        ledger: &ledger,
        visibility: &visibility,
        lake: &options.lake,
        days,
        files: options.as_of.as_ref().is_none_or(|a| a.files),
    };
    derive_all(
        &context,
        &hours,
        options.jobs.max(1),
        |symbol, hour, derived| {
            summary.add(symbol, hour, derived);
            deriving.note(&format!("{symbol} {}", utc_minute(hour)));
            deriving.inc(1);
        },
    )?;
    summary.without_minute.sort();

    let mut batch = ledger.batch()?;
    let symbols: BTreeSet<&str> = hours.iter().map(|(s, _)| s.as_str()).collect();
    let partitions = ledger.partitions()?;
    for symbol in symbols {
        batch.set_watermark(symbol, watermark(&partitions, symbol))?;
    }
    batch.set_lake_root(&lake_root)?;
    batch.set_lake_layout(days.layout.name(), days.closed_before)?;
    batch.set_checkpoint(head)?;
    batch.commit()?;
    // A rebuilt ledger knows only what the log holds now; a new layout
    // names other files for the same hours.
    if rebuilt.is_some() || relaid {
        let others = match &me {
            Some(me) => claims::others(&options.lake, me)?,
            None => BTreeSet::new(),
        };
        summary.orphans_removed = remove_orphans(&options.lake, &partitions, &others)?;
    }
    if options.as_of.is_none() {
        super::state::save(
            data_dir,
            &super::state::read(data_dir, &ledger, Some(&options.lake))?,
        )?;
    }
    summary.rebuilt = rebuilt;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The ledger, if it describes the log; else (or when asked) a new one, with
/// the reason. A ledger that does not open names itself and the way out: it
/// is derived state, so deleting and rebuilding it loses nothing.
fn open_bound_ledger(data_dir: &Path, rebuild: bool) -> anyhow::Result<(Ledger, Option<String>)> {
    let path = crate::data_dir::ledger(data_dir);
    let remove = || match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the ledger {}", path.display()))
        }
        _ => Ok(()),
    };
    if rebuild {
        remove()?;
        return Ok((
            Ledger::open(data_dir)?,
            Some("a rebuild was asked for".into()),
        ));
    }
    let ledger = Ledger::open(data_dir)?;
    let Some(reason) = index::stale_reason(data_dir, &ledger)? else {
        return Ok((ledger, None));
    };
    tracing::warn!("the ledger does not describe this log ({reason}): rebuilding it from the log");
    drop(ledger);
    remove()?;
    Ok((Ledger::open(data_dir)?, Some(reason)))
}

/// Removes the partition files of `lake` that no partition names (a
/// rebuilt ledger knows only what the log holds now), except those of the
/// symbols other instances keep there. Returns how many.
fn remove_orphans(
    lake: &Lake,
    partitions: &BTreeMap<(String, i64), Partition>,
    others: &BTreeSet<String>,
) -> anyhow::Result<u64> {
    let named: BTreeSet<&str> = partitions
        .values()
        .filter_map(|p| p.path.as_deref())
        .collect();
    let mut removed = 0;
    for found in lake.list_under(lake::DATASET)? {
        let theirs = claims::symbol_of(&found.key).is_some_and(|s| others.contains(s));
        if lake::is_partition(&found.key) && !named.contains(found.key.as_str()) && !theirs {
            lake.delete(&found.key)?;
            tracing::warn!(
                key = %found.key,
                lake = %lake.location(),
                "removed a partition the log no longer holds"
            );
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the files of a symbol-day's directory that the ledger names for
/// none of its hours: its hours' own files once the day's file holds them,
/// or the day's file once the day has no rows.
fn sweep_day(ledger: &Ledger, lake: &Lake, symbol: &str, day: i64) -> anyhow::Result<()> {
    let mut named = BTreeSet::new();
    for hour in (day..day + DAY_MS).step_by(HOUR_MS as usize) {
        if let Some(path) = ledger.partition(symbol, hour)?.and_then(|p| p.path) {
            named.insert(path);
        }
    }
    for found in lake.list_under(&lake::day_dir(symbol, day))? {
        if lake::is_partition(&found.key) && !named.contains(&found.key) {
            lake.delete(&found.key)?;
        }
    }
    Ok(())
}

/// Finishes the sweeps a killed run left due (see [`Context::commit`]); in
/// another lake than the ledger's there is nothing of its own to sweep.
fn finish_sweeps(ledger: &Ledger, lake: &Lake, same_lake: bool) -> anyhow::Result<()> {
    let due = ledger.pending_sweeps()?;
    if due.is_empty() {
        return Ok(());
    }
    let mut batch = ledger.batch()?;
    for (symbol, day) in &due {
        if same_lake {
            sweep_day(ledger, lake, symbol, *day)?;
        }
        batch.set_sweep_due(symbol, *day, false)?;
    }
    batch.commit()?;
    tracing::info!(days = due.len(), "finished the day sweeps a cut run left");
    Ok(())
}

/// What deriving an hour needs, shared by the workers.
struct Context<'a> {
    data_dir: &'a Path,
    ledger: &'a Ledger,
    visibility: &'a Visibility,
    lake: &'a Lake,
    days: Days,
    /// Write the partition files (else only hash them: `AsOf::files`).
    files: bool,
}

/// When liquidations were watched, as time ranges overlapping `hour`: the
/// heartbeat stretches of every connection that served the symbol's
/// liquidation stream (one second past each stretch's last heartbeat, which
/// vouches for its second), joined across connections.
fn liquidation_coverage(
    ledger: &Ledger,
    symbol: &str,
    hour: i64,
) -> anyhow::Result<Vec<std::ops::Range<i64>>> {
    let served: BTreeSet<u64> = ledger
        .stream_spans(symbol)?
        .into_iter()
        .filter(|(stream, _, _)| stream.ends_with(LIQUIDATION_STREAM_SUFFIX))
        .map(|(_, connection, _)| connection)
        .collect();
    Ok(crate::time::joined(
        ledger
            .heartbeats(symbol)?
            .into_iter()
            .filter(|(connection, _, _)| served.contains(connection))
            .map(|(_, first, last)| first..last + 1_000)
            .filter(|r| r.start < hour + HOUR_MS && hour < r.end),
    ))
}

/// What happened to an hour's file.
#[derive(Clone, Copy)]
enum File {
    Written,
    Unchanged,
    /// No complete minute: no file (any old one removed).
    None,
}

/// One symbol-hour derived: its ledger entry and what it took.
struct Derived {
    partition: Partition,
    findings: Vec<Finding>,
    provenance: Provenance,
    book: Option<BookHealth>,
    file: File,
    /// In the day layout, the rows of an hour of a closed day, for its day's
    /// file (written when every hour of it has arrived).
    day_rows: Option<Vec<crate::schema::MinuteRow>>,
    /// The object's ETag to record: `Some(None)` forgets any (no file, or a
    /// local lake), `None` keeps what the ledger has (the file unchanged).
    etag: Option<Option<String>>,
    records_read: u64,
    events_read: u64,
}

impl Summary {
    fn add(&mut self, symbol: &str, hour: i64, d: &Derived) {
        self.rows += u64::from(d.partition.rows);
        self.findings += d.findings.len() as u64;
        self.records_read += d.records_read;
        self.events_read += d.events_read;
        match d.file {
            File::Written => self.written += 1,
            File::Unchanged => self.unchanged += 1,
            File::None => self.without_minute.push((symbol.to_owned(), hour)),
        }
    }
}

/// Hands `collector` the visible records of `symbol` among `offsets`, for
/// the hour starting at `hour`; returns the offsets it took and the events read.
fn collect_records(
    reader: &mut RecordReader,
    collector: &mut Collector,
    visibility: &Visibility,
    offsets: &[u64],
    symbol: &str,
    hour: i64,
) -> anyhow::Result<(Vec<u64>, u64, u64)> {
    collector.start(hour);
    let envelopes = offsets
        .iter()
        .map(|&offset| reader.envelope(offset))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let admitted = |offset: u64, class, envelope: &Envelope| {
        envelope.symbol == symbol && visibility.admits_class(offset, class, &envelope.source)
    };
    let tail = book_tail_floor(
        offsets
            .iter()
            .zip(&envelopes)
            .filter_map(|(&offset, e)| e.as_ref().filter(|(c, e)| admitted(offset, *c, e)))
            .map(|(_, e)| e),
        hour,
    );
    let mut fed = Vec::with_capacity(offsets.len());
    let (mut records_read, mut events_read) = (0, 0);
    for (&offset, envelope) in offsets.iter().zip(&envelopes) {
        if let Some((class, envelope)) = envelope {
            if *class == RecordClass::Data && only_book_updates_before(envelope, tail) {
                if admitted(offset, *class, envelope) {
                    fed.push(offset);
                    collector.add_origin(envelope.received_ms(), &envelope.source);
                }
                continue;
            }
        }
        let Some(record) = reader.read(offset)? else {
            continue;
        };
        records_read += 1;
        events_read += record.events.len() as u64;
        if record.symbol == symbol && visibility.admits(offset, &record) {
            fed.push(offset);
            collector.add(&record);
        }
        reader.recycle(record);
    }
    Ok((fed, records_read, events_read))
}

/// The start of the latest minute before `hour` that the book updates of
/// `envelopes` (those wholly before it) reach: the book's forward fill
/// carries only the updates of the last minute before the hour that has any
/// (`Collector`'s book tail), and that minute is this one or later. `None`
/// if none is before the hour.
fn book_tail_floor<'a>(envelopes: impl Iterator<Item = &'a Envelope>, hour: i64) -> Option<i64> {
    envelopes
        .flat_map(|e| &e.runs)
        .filter(|run| run.kind == FactKind::BookTicker && run.last < hour)
        .map(|run| run.last.div_euclid(MINUTE_MS) * MINUTE_MS)
        .max()
}

/// Whether a record holds nothing but book updates from before the minute
/// `tail` starts: none of them can matter to the hour (its envelope says so,
/// so it is not decoded). About half of the events a day's derivation would
/// otherwise decode are such updates, read again for the next hour.
fn only_book_updates_before(envelope: &Envelope, tail: Option<i64>) -> bool {
    tail.is_some_and(|tail| {
        envelope.source != Source::Planner
            && !envelope.runs.is_empty()
            && envelope
                .runs
                .iter()
                .all(|run| run.kind == FactKind::BookTicker && run.last < tail)
    })
}

/// The facts of one symbol-hour as the last materialize indexed the log: what
/// `bml order-book` and other readers of one hour look at.
pub fn hour_facts(
    data_dir: &Path,
    ledger: &Ledger,
    symbol: &str,
    hour: i64,
) -> anyhow::Result<super::hour::HourFacts> {
    let mut reader = RecordReader::open(data_dir)?;
    let mut collector = Collector::new(hour);
    let offsets = ledger.index(symbol, hour)?;
    let visibility = visibility(ledger)?;
    collect_records(
        &mut reader,
        &mut collector,
        &visibility,
        &offsets,
        symbol,
        hour,
    )?;
    let (mut facts, _) = collector.finish();
    facts.liquidation_coverage = liquidation_coverage(ledger, symbol, hour)?;
    Ok(facts)
}

impl Context<'_> {
    /// Derives one symbol-hour: its partition entry and findings (the file, if any,
    /// is committed before this returns).
    fn derive_hour(
        &self,
        reader: &mut RecordReader,
        collector: &mut Collector,
        symbol: &str,
        hour: i64,
    ) -> anyhow::Result<Derived> {
        let (ledger, lake) = (self.ledger, self.lake);
        let key = self.days.key(symbol, hour);
        if self.files {
            lake.remove_stale_temporaries(&key)?;
        }
        let offsets = ledger.index(symbol, hour)?;
        let (fed, records_read, events_read) =
            collect_records(reader, collector, self.visibility, &offsets, symbol, hour)?;
        let sources = collector.sources();
        let mut unfillable: Vec<crate::event::Unfillable> =
            collector.unfillable().cloned().collect();
        let (mut facts, mut resolution) = collector.finish();
        unfillable.retain(|u| !filled_since(u, &facts));
        facts.liquidation_coverage = liquidation_coverage(ledger, symbol, hour)?;
        super::provenance::complete(&mut resolution.provenance, &facts, &unfillable);
        let out = build_hour(&facts);
        let had_klines = !facts.klines.is_empty();
        collector.reuse(facts);

        let mut findings = findings(&out, had_klines, &resolution.conflicts, hour);
        findings.extend(unfillable.iter().map(|u| unfillable_finding(u, hour)));
        let minutes = out.rows.iter().fold(0u64, |bits, row| {
            bits | 1 << ((row.timestamp - hour) / MINUTE_MS)
        });
        let mut partition = Partition {
            path: None,
            rows: out.rows.len() as u32,
            minutes,
            schema_hash: schema_hash(),
            content_hash: None,
            fed_by: FedBy {
                first: fed.first().copied().unwrap_or(0),
                last: fed.last().copied().unwrap_or(0),
                count: fed.len() as u64,
            },
            sources: sources.into_iter().collect(),
            findings: findings.len() as u32,
        };
        let derived = |partition, findings, file, etag, day_rows| Derived {
            partition,
            findings,
            provenance: resolution.provenance,
            book: out.book,
            file,
            etag,
            day_rows,
            records_read,
            events_read,
        };
        if self.days.closed(hour) {
            // Its day's file is written once every hour of it is derived.
            partition.path = (!out.rows.is_empty()).then_some(key);
            return Ok(derived(
                partition,
                findings,
                File::None,
                None,
                Some(out.rows),
            ));
        }
        if out.rows.is_empty() {
            if self.files {
                lake.delete(&key)?;
            }
            return Ok(derived(partition, findings, File::None, Some(None), None));
        }
        let bytes = lake::encode(&out.rows)?;
        let (file, content_hash, etag) = self.write_file(symbol, hour, &key, &bytes)?;
        partition.path = Some(key);
        partition.content_hash = Some(content_hash);
        Ok(derived(partition, findings, file, etag, None))
    }

    /// Writes the file of a closed day from its hours (derived, in any
    /// order), then removes the day's other files (its hours' own, from
    /// before it closed or from the hour layout): the new file first, so
    /// no minute is ever missing. Returns the hours with what was done.
    fn commit_day(
        &self,
        symbol: &str,
        day: i64,
        mut hours: Vec<(i64, Derived)>,
    ) -> anyhow::Result<Vec<(i64, Derived)>> {
        hours.sort_by_key(|(hour, _)| *hour);
        let key = lake::file_key(Layout::Day, true, symbol, day);
        let with_rows = hours
            .iter()
            .find(|(_, d)| d.day_rows.as_ref().is_some_and(|rows| !rows.is_empty()));
        let written = match with_rows {
            Some((first, _)) => {
                let groups: Vec<&[crate::schema::MinuteRow]> = hours
                    .iter()
                    .map(|(_, d)| d.day_rows.as_deref().unwrap_or_default())
                    .collect();
                let bytes = lake::encode_groups(&groups)?;
                Some(self.write_file(symbol, *first, &key, &bytes)?)
            }
            None => None,
        };
        for (_, derived) in &mut hours {
            let rows = derived.day_rows.take().unwrap_or_default();
            match &written {
                Some((file, hash, etag)) if !rows.is_empty() => {
                    derived.partition.content_hash = Some(*hash);
                    derived.file = *file;
                    derived.etag.clone_from(etag);
                }
                _ => derived.etag = Some(None),
            }
        }
        Ok(hours)
    }

    /// Commits `batch`, then sweeps the closed days it records (`to_sweep`):
    /// durably first, so that the ledger names each day's file before its
    /// hours' files leave the lake. Returns the next batch, which marks
    /// those sweeps done.
    fn commit(&self, batch: Batch, to_sweep: &mut Vec<(&str, i64)>) -> anyhow::Result<Batch> {
        if to_sweep.is_empty() {
            batch.commit_lazily()?;
            return self.ledger.batch();
        }
        batch.commit()?;
        for (symbol, day) in to_sweep.iter() {
            sweep_day(self.ledger, self.lake, symbol, *day)?;
        }
        let mut next = self.ledger.batch()?;
        for (symbol, day) in to_sweep.drain(..) {
            next.set_sweep_due(symbol, day, false)?;
        }
        Ok(next)
    }

    /// Writes a file (of an hour, or of a day: the ledger entry of `hour`
    /// says what was there) unless it already holds exactly these bytes;
    /// returns what was done, the hash, and the ETag to record.
    fn write_file(
        &self,
        symbol: &str,
        hour: i64,
        key: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(File, [u8; 32], Option<Option<String>>)> {
        let content_hash: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if !self.files {
            return Ok((File::Written, content_hash, Some(None)));
        }
        let previous = self.ledger.partition(symbol, hour)?;
        // Unchanged only if the ledger says so *and* the file holds exactly
        // these bytes: a file damaged in place (same size) is written again.
        let same = previous.as_ref().is_some_and(|p| {
            p.content_hash == Some(content_hash) && p.path.as_deref() == Some(key)
        }) && self.lake.get(key)?.is_some_and(|stored| stored == bytes);
        if same {
            return Ok((File::Unchanged, content_hash, None));
        }
        let stored = self.lake.put(key, bytes)?;
        Ok((File::Written, content_hash, Some(stored.etag)))
    }
}

/// An hour's findings: minutes not written for lack of an input (when the hour
/// has klines at all), the invariants' findings, and conflicts between sources.
fn findings(
    out: &super::hour::HourOutput,
    had_klines: bool,
    conflicts: &[super::collect::Conflict],
    hour: i64,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    if had_klines {
        findings.extend(out.incomplete.iter().map(|(minute, missing)| Finding {
            minute: *minute,
            check: "incomplete minute".into(),
            detail: format!("not written, missing: {}", missing.join(", ")),
        }));
    }
    findings.extend(out.findings.iter().cloned());
    findings.extend(conflicts.iter().map(|c| Finding {
        minute: hour,
        check: "conflict".into(),
        detail: format!(
            "{}: kept {}, dropped {}: {}",
            c.key,
            c.kept,
            c.dropped,
            c.fields.join("; ")
        ),
    }));
    findings
}

/// Whether the hour holds facts of `u`'s series inside its range after all
/// (an archive Vision published very late): then the finding no longer holds.
fn filled_since(u: &crate::event::Unfillable, facts: &super::hour::HourFacts) -> bool {
    use crate::event::{Timed, VisionKind};
    let inside = |t: i64| (u.start_ms..u.end_ms).contains(&t);
    match u.series {
        VisionKind::AggTrades => facts.agg_trades.iter().any(|e| inside(e.time())),
        VisionKind::BookTicker => facts.book_tickers.iter().any(|e| inside(e.time())),
        VisionKind::Metrics => facts.metrics.iter().any(|e| inside(e.time())),
        _ => false,
    }
}

/// An `unfillable` finding: the part of the hour the planner found no source
/// can fill, and why.
fn unfillable_finding(u: &crate::event::Unfillable, hour: i64) -> Finding {
    let start = u.start_ms.max(hour);
    let end = u.end_ms.min(hour + HOUR_MS);
    Finding {
        minute: start.div_euclid(MINUTE_MS) * MINUTE_MS,
        check: "unfillable".into(),
        detail: format!(
            "{} {} .. {}: {}",
            crate::sources::vision::kind_name(u.series),
            crate::time::utc_minute(start),
            crate::time::utc_minute(end),
            u.reason
        ),
    }
}

/// The start of the last minute of the symbol's unbroken run of written minutes,
/// counted from its first written minute.
pub fn watermark(partitions: &BTreeMap<(String, i64), Partition>, symbol: &str) -> Option<i64> {
    let mut mark: Option<i64> = None;
    for ((s, hour), p) in partitions.range((symbol.to_string(), i64::MIN)..) {
        if s != symbol {
            break;
        }
        if p.minutes == 0 {
            if mark.is_some() {
                break;
            }
            continue;
        }
        // The run enters an hour only at its first minute, right after the mark.
        let start = match mark {
            None => p.minutes.trailing_zeros(),
            Some(m) if m + MINUTE_MS == *hour => 0,
            Some(_) => break,
        };
        let run = (p.minutes >> start).trailing_ones();
        if run == 0 {
            break;
        }
        mark = Some(hour + i64::from(start + run - 1) * MINUTE_MS);
        if start + run < 60 {
            break;
        }
    }
    mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(list: &[(i64, u64)]) -> BTreeMap<(String, i64), Partition> {
        list.iter()
            .map(|&(h, minutes)| {
                let p = Partition {
                    path: None,
                    rows: minutes.count_ones(),
                    minutes,
                    schema_hash: [0; 32],
                    content_hash: None,
                    fed_by: FedBy::default(),
                    sources: Vec::new(),
                    findings: 0,
                };
                (("BTCUSDT".to_string(), h * HOUR_MS), p)
            })
            .collect()
    }

    const ALL: u64 = (1 << 60) - 1;

    #[test]
    fn the_watermark_is_the_end_of_the_first_unbroken_run() {
        let minute = |h: i64, m: i64| h * HOUR_MS + m * MINUTE_MS;
        assert_eq!(watermark(&hours(&[]), "BTCUSDT"), None);
        assert_eq!(watermark(&hours(&[(5, 0)]), "BTCUSDT"), None);
        assert_eq!(
            watermark(&hours(&[(5, ALL), (6, ALL)]), "BTCUSDT"),
            Some(minute(6, 59))
        );
        // The first stored minute may be inside an hour.
        assert_eq!(
            watermark(&hours(&[(5, ALL << 10 & ALL), (6, ALL)]), "BTCUSDT"),
            Some(minute(6, 59))
        );
        // A missing minute stops it; so does a missing hour or an hour without rows.
        assert_eq!(
            watermark(
                &hours(&[(5, ALL), (6, ALL & !(1 << 7)), (7, ALL)]),
                "BTCUSDT"
            ),
            Some(minute(6, 6))
        );
        assert_eq!(
            watermark(&hours(&[(5, ALL), (7, ALL)]), "BTCUSDT"),
            Some(minute(5, 59))
        );
        assert_eq!(
            watermark(&hours(&[(4, 0), (5, ALL), (6, 0), (7, ALL)]), "BTCUSDT"),
            Some(minute(5, 59))
        );
        assert_eq!(watermark(&hours(&[(5, ALL)]), "ETHUSDT"), None);
    }
}
