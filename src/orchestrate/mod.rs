//! Keeping the lake current: plan what is missing ([`plan`]), fetch it from
//! whichever source can fill it, then materialize. `bml run-once` and the
//! `bml backfill-*` commands are one [`run`] over different ranges.
//!
//! A run goes in rounds: the first asks Vision for every ended day whose
//! archive the log lacks and REST for what Vision cannot hold; archives found
//! missing make the next round's plan send their series to REST. It stops when
//! a plan has nothing left to fetch (or nothing new: what failed is not asked
//! for again in the same run).

pub mod daemon;
pub mod metrics;
pub mod plan;

use std::borrow::BorrowMut;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::event::{Event, Record, Source, Unfillable};
use crate::eventlog::{with_shared, EventLog};
use crate::lake::{claims, Lake};
use crate::ledger::{BookHealth, Ledger};
use crate::materialize::run as materialize;
use crate::progress::Progress;
use crate::sources::catalog::Catalog;
use crate::sources::rest::{self, Client, Governor, Task};
use crate::sources::vision::{self, FileSpec, Store};
use crate::sources::Failure;
use crate::time::{HOUR_MS, MINUTE_MS};
use plan::{ArchiveState, Gap, Known, Wanted};

/// Rounds of plan and fetch at most: Vision, then REST for what Vision lacked,
/// then one more for anything a round's outcome changed.
const ROUNDS: usize = 3;

/// Which symbols to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbols {
    /// These (upper case).
    List(Vec<String>),
    /// Every USD-M perpetual `exchangeInfo` lists as trading.
    All,
}

/// Which times to keep complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last this many ms up to now (`run-once`).
    Last(i64),
    /// A fixed range, ms (`backfill-range`).
    Range(i64, i64),
}

/// What a run is asked to do.
pub struct Options {
    /// The symbols.
    pub symbols: Symbols,
    /// The times.
    pub window: Window,
    /// Fetch for this many symbol-hours at most (the newest first).
    pub max_missing_hours: Option<usize>,
    /// Look for every missing Vision archive again now, however recently it
    /// was looked for.
    pub recheck_vision: bool,
    /// REST base URL.
    pub rest_base: String,
    /// Where Vision's archives are.
    pub vision: Store,
    /// REST ranges fetched at once.
    pub concurrency: usize,
    /// The lake.
    pub lake: Lake,
    /// Hours materialized at once.
    pub jobs: usize,
    /// Where the bands meet.
    pub bands: plan::Bands,
    /// How often a keeper called again (a daemon's polls) lists the lake
    /// for partitions gone from it: each look is a LIST per symbol-month of
    /// the window, requests a bucket bills. The first call always looks.
    pub lake_check_every: std::time::Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// The symbols kept and the times, ms (cut at the last closed minute).
    pub symbols: Vec<String>,
    /// The times planned for.
    pub range: Range<i64>,
    /// Rounds that fetched something.
    pub rounds: usize,
    /// Archives ingested, by Vision kind.
    pub archives: BTreeMap<&'static str, u64>,
    /// Rows appended from Vision.
    pub vision_rows: u64,
    /// REST ranges read to their end, by endpoint.
    pub rest_ranges: BTreeMap<&'static str, u64>,
    /// Rows appended from REST.
    pub rest_rows: u64,
    /// Request weight spent, and 429/418 answers.
    pub weight: u64,
    /// 429 and 418 answers.
    pub refusals: u64,
    /// Archives Vision has not published (yet): REST stands in.
    pub awaited: Vec<FileSpec>,
    /// Fetches that failed, each naming what and why.
    pub failed: Vec<Failure>,
    /// What no source can fill.
    pub gaps: Vec<Gap>,
    /// Settled gaps (or parts) this run recorded in the log, each once: the
    /// materializer gives their hours an `unfillable` finding.
    pub gaps_recorded: usize,
    /// Symbol-hours the fetches reached.
    pub hours_fetched: usize,
    /// Symbol-hours left for a later run by `max_missing_hours`.
    pub hours_deferred: usize,
    /// Partitions the ledger names whose files were gone from the lake.
    pub partitions_missing: usize,
    /// The materialize that followed.
    pub materialized: Option<materialize::Summary>,
    /// Each symbol's watermark after it (the last minute of its unbroken run).
    pub watermarks: BTreeMap<String, Option<i64>>,
    /// Each symbol's order book in its newest hour with depth diffs (hour, ms).
    pub books: BTreeMap<String, (i64, BookHealth)>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// True when the run found nothing to fetch.
    pub fn fetched_nothing(&self) -> bool {
        self.rounds == 0
    }
}

/// The log's state as the planner sees it: the catalog of what was fetched,
/// and the live bookTicker spans from the ledger.
struct LogState<'a> {
    catalog: &'a Catalog,
    /// The local clock (ms): when an archive was last looked for is its time.
    local_now_ms: i64,
    /// Every missing archive counts as due for another look.
    recheck: bool,
    book_ticker: &'a BTreeMap<String, Vec<Range<i64>>>,
}

impl Known for LogState<'_> {
    fn archive(&self, spec: &FileSpec) -> ArchiveState {
        let file = spec.id();
        if self.catalog.ingested(&file).is_some() {
            ArchiveState::Ingested
        } else if let Some(checked_ms) = self.catalog.missing_checked(&file) {
            let checked_ago_ms = if self.recheck {
                i64::MAX
            } else {
                self.local_now_ms - checked_ms
            };
            ArchiveState::Missing { checked_ago_ms }
        } else {
            ArchiveState::Unknown
        }
    }

    fn rest_gaps(&self, symbol: &str, kind: rest::Kind, range: Range<i64>) -> Vec<Range<i64>> {
        self.catalog.rest_gaps(symbol, kind.path(), range)
    }

    fn book_ticker_gaps(&self, symbol: &str, range: Range<i64>) -> Vec<Range<i64>> {
        crate::time::uncovered(
            range,
            self.book_ticker.get(symbol).into_iter().flatten().cloned(),
        )
    }
}

/// Plans, fetches and materializes until the plan is empty.
pub fn run(data_dir: &Path, options: &Options, progress: &dyn Progress) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut keeper = Keeper::new(data_dir, options)?;
    let mut summary = keeper.summary();
    let mut log = EventLog::open(data_dir)?;
    keeper.fetch(&Mutex::new(&mut log), &mut summary, progress)?;
    drop(log);
    keeper.materialize(&mut summary, progress)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What stays between the fetches of one process (`run-once` makes one; the
/// daemon keeps one for its life): the exchange's client and its governor,
/// the symbols, and the catalog of what the log holds.
pub struct Keeper<'a> {
    data_dir: &'a Path,
    options: &'a Options,
    client: Client,
    wanted: Vec<Wanted>,
    catalog: Catalog,
    /// What failed in this process, not asked for again by it.
    failed_archives: BTreeSet<String>,
    failed_ranges: Vec<Task>,
    /// When this process last listed the lake for missing partitions.
    lake_checked: Option<std::time::Instant>,
}

impl<'a> Keeper<'a> {
    /// Connects to the exchange (its clock, budget and listings) and reads
    /// the catalog.
    pub fn new(data_dir: &'a Path, options: &'a Options) -> anyhow::Result<Keeper<'a>> {
        let (client, _) = Client::connect(&options.rest_base, Arc::new(Governor::default()))?;
        let wanted = wanted(&client, &options.symbols)?;
        // Refused before anything is fetched if another instance keeps one
        // of the symbols in this lake.
        let me = claims::instance(data_dir)?;
        claims::claim(&options.lake, wanted.iter().map(|w| w.symbol.as_str()), &me)?;
        Ok(Keeper {
            data_dir,
            options,
            client,
            wanted,
            catalog: Catalog::load(data_dir)?,
            failed_archives: BTreeSet::new(),
            failed_ranges: Vec::new(),
            lake_checked: None,
        })
    }

    /// An empty summary for the symbols kept.
    pub fn summary(&self) -> Summary {
        Summary {
            symbols: self.wanted.iter().map(|w| w.symbol.clone()).collect(),
            ..Summary::default()
        }
    }

    /// Ends fetches at once when `stop` is set (requests fail unsent, no new
    /// range or archive starts); what they left unfinished is fetched again
    /// by a later run.
    pub fn stop_on(&mut self, stop: Arc<std::sync::atomic::AtomicBool>) {
        self.client.stop_on(stop);
    }

    /// The exchange's clock now.
    pub fn server_now(&self) -> i64 {
        self.client.server_now()
    }

    /// Plans and fetches into `log` until the plan is empty (at most
    /// [`ROUNDS`] rounds) or the client is told to stop, counting into
    /// `summary`. The log is held for one REST page, or one Vision archive,
    /// at a time.
    pub fn fetch<L: BorrowMut<EventLog> + Send>(
        &mut self,
        log: &Mutex<L>,
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let now = self.client.server_now();
        let range = match self.options.window {
            Window::Last(ms) => now - ms..now,
            Window::Range(start, end) => start..end,
        };
        summary.range = range.start..range.end.min(now.div_euclid(MINUTE_MS) * MINUTE_MS);
        let book_ticker = live_book_ticker(self.data_dir, &summary.symbols)?;
        let mut budget = self.options.max_missing_hours.unwrap_or(usize::MAX);
        let mut last = plan::Plan::default();
        for round in 0..ROUNDS {
            if self.client.stopped() {
                break;
            }
            let known = LogState {
                catalog: &self.catalog,
                local_now_ms: crate::time::now_ns() / crate::time::NS_PER_MS,
                recheck: self.options.recheck_vision && round == 0,
                book_ticker: &book_ticker,
            };
            let mut next = plan::plan(
                &self.wanted,
                range.clone(),
                self.client.server_now(),
                &self.options.bands,
                &known,
            );
            next.vision
                .retain(|s| !self.failed_archives.contains(&s.id()));
            next.rest.retain(|t| !self.failed_ranges.contains(t));
            let (next, deferred) = next.bounded(budget);
            summary.hours_deferred = deferred;
            last = next;
            if last.is_empty() {
                break;
            }
            summary.rounds += 1;
            budget = budget.saturating_sub(last.hours.len());
            summary.hours_fetched += last.hours.len();
            self.fetch_vision(log, &last.vision, summary, progress)?;
            self.fetch_rest(log, &last.rest, summary, progress)?;
            let next = with_shared(log, |log| Ok(log.next_offset()))?;
            self.catalog.save(self.data_dir, next)?;
        }
        summary.gaps_recorded = self.record_unfillable(log, &last.gaps)?;
        summary.gaps = merge_gaps(last.gaps);
        summary.awaited = last.awaited;
        Ok(())
    }

    /// Appends the settled gaps the log does not record yet (one record per
    /// symbol); returns how many ranges it recorded.
    fn record_unfillable<L: BorrowMut<EventLog> + Send>(
        &mut self,
        log: &Mutex<L>,
        gaps: &[Gap],
    ) -> anyhow::Result<usize> {
        let mut by_symbol: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
        for gap in gaps.iter().filter(|g| g.settled) {
            for part in self
                .catalog
                .unfillable_unrecorded(&gap.symbol, gap.kind, gap.range.clone())
            {
                by_symbol
                    .entry(&gap.symbol)
                    .or_default()
                    .push(Event::Unfillable(Unfillable {
                        series: gap.kind,
                        start_ms: part.start,
                        end_ms: part.end,
                        reason: gap.reason.clone(),
                    }));
            }
        }
        if by_symbol.is_empty() {
            return Ok(0);
        }
        let mut recorded = 0;
        let next = with_shared(log, |log| {
            for (symbol, events) in &by_symbol {
                for event in events {
                    if let Event::Unfillable(u) = event {
                        self.catalog
                            .note_unfillable(symbol, u.series, u.start_ms..u.end_ms);
                    }
                }
                recorded += events.len();
                log.push(&Record {
                    symbol: (*symbol).to_string(),
                    source: Source::Planner,
                    received_ns: crate::time::now_ns(),
                    events: events.clone(),
                })?;
            }
            log.commit()?;
            Ok(log.next_offset())
        })?;
        self.catalog.save(self.data_dir, next)?;
        Ok(recorded)
    }

    fn fetch_vision<L: BorrowMut<EventLog> + Send>(
        &mut self,
        log: &Mutex<L>,
        specs: &[FileSpec],
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        let downloads = crate::data_dir::downloads(self.data_dir);
        let mut fetched = Vec::new();
        for spec in specs {
            if self.client.stopped() {
                break;
            }
            let one = with_shared(log, |log| {
                let one = vision::ingest(
                    log,
                    &mut self.catalog,
                    &self.options.vision,
                    std::slice::from_ref(spec),
                    &downloads,
                    progress,
                );
                log.commit()?;
                Ok(one)
            })?;
            fetched.extend(one.files);
        }
        for ((file, outcome), spec) in fetched.iter().zip(specs) {
            match outcome {
                vision::Outcome::Ingested { rows, .. } => {
                    *summary
                        .archives
                        .entry(vision::kind_name(spec.kind))
                        .or_default() += 1;
                    summary.vision_rows += rows;
                }
                vision::Outcome::Failed(failure) => {
                    self.failed_archives.insert(file.clone());
                    summary.failed.push(failure.clone());
                }
                vision::Outcome::AlreadyIngested | vision::Outcome::Missing => {}
            }
        }
        Ok(())
    }

    fn fetch_rest<L: BorrowMut<EventLog> + Send>(
        &mut self,
        log: &Mutex<L>,
        ranges: &[Task],
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        let fetched = rest::fetch(
            log,
            &mut self.catalog,
            &self.client,
            ranges,
            self.options.concurrency,
            progress,
        )?;
        summary.rest_rows += fetched.rows;
        summary.weight += fetched.weight;
        summary.refusals += fetched.refusals;
        if !fetched.failed.is_empty() {
            // A range not read to its end now failed somewhere in it: it is
            // not asked for again by this process (the next one will); the
            // others of the round are done.
            let catalog = &self.catalog;
            self.failed_ranges.extend(
                ranges
                    .iter()
                    .filter(|t| {
                        let range = t.start_ms..t.end_ms;
                        !catalog
                            .rest_gaps(&t.symbol, t.kind.path(), range)
                            .is_empty()
                    })
                    .cloned(),
            );
            summary.failed.extend(fetched.failed);
        }
        for task in ranges {
            *summary.rest_ranges.entry(task.kind.name()).or_default() += 1;
        }
        Ok(())
    }

    /// Derives what the log gained (and the partitions of the summary's
    /// range gone from the lake: looked for on the first call, then every
    /// `lake_check_every`), then notes each symbol's watermark.
    pub fn materialize(
        &mut self,
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> anyhow::Result<()> {
        let rederive = if self
            .lake_checked
            .is_none_or(|t| t.elapsed() >= self.options.lake_check_every)
        {
            self.lake_checked = Some(std::time::Instant::now());
            missing_partitions(self.data_dir, &self.options.lake, summary)?
        } else {
            BTreeSet::new()
        };
        summary.partitions_missing = rederive.len();
        let materialized = materialize::run(
            self.data_dir,
            &materialize::Options {
                from: None,
                lake: self.options.lake.clone(),
                layout: self.options.lake.layout(),
                days_closed_before: self
                    .options
                    .lake
                    .days_closed_before(chrono::Utc::now().timestamp_millis()),
                jobs: self.options.jobs,
                rebuild_ledger: false,
                rederive,
                as_of: None,
            },
            progress,
        )?;
        summary.materialized = Some(materialized);
        let ledger = Ledger::open(self.data_dir)?;
        let partitions = ledger.partitions()?;
        for symbol in &summary.symbols {
            let mark = materialize::watermark(&partitions, symbol);
            summary.watermarks.insert(symbol.clone(), mark);
            if let Some(book) = ledger.last_book(symbol)? {
                summary.books.insert(symbol.clone(), book);
            }
        }
        Ok(())
    }
}

/// The symbols to keep, each from its listing (`onboardDate`); an unknown one
/// is refused (`rest::UnknownSymbol`).
fn wanted(client: &Client, symbols: &Symbols) -> anyhow::Result<Vec<Wanted>> {
    let listings = client.listings();
    let names: Vec<String> = match symbols {
        Symbols::List(list) => {
            client.check_symbols(list)?;
            list.clone()
        }
        Symbols::All => listings
            .iter()
            .filter(|(_, l)| l.trading_perpetual)
            .map(|(s, _)| s.clone())
            .collect(),
    };
    Ok(names
        .into_iter()
        .map(|symbol| Wanted {
            from_ms: listings
                .get(&symbol)
                .and_then(|l| l.onboard_ms)
                .unwrap_or(i64::MIN),
            symbol,
        })
        .collect())
}

/// When each symbol's bookTicker was followed live, from the ledger: each
/// connection's span, joined.
fn live_book_ticker(
    data_dir: &Path,
    symbols: &[String],
) -> anyhow::Result<BTreeMap<String, Vec<Range<i64>>>> {
    let ledger = Ledger::open(data_dir)?;
    let mut all = BTreeMap::new();
    for symbol in symbols {
        let spans = ledger
            .stream_spans(symbol)?
            .into_iter()
            .filter(|(stream, _, _)| stream.ends_with("@bookTicker"))
            .map(|(_, _, span)| span.first..span.last + 1);
        all.insert(symbol.clone(), crate::time::joined(spans));
    }
    Ok(all)
}

/// The hours of the run's symbols and range whose partition the ledger names
/// but whose file is gone from the lake: derived again.
fn missing_partitions(
    data_dir: &Path,
    lake: &Lake,
    summary: &Summary,
) -> anyhow::Result<BTreeSet<(String, i64)>> {
    let ledger = Ledger::open(data_dir)?;
    let first_hour = summary.range.start.div_euclid(HOUR_MS) * HOUR_MS;
    let mut named = Vec::new();
    for symbol in &summary.symbols {
        for hour in (first_hour..summary.range.end).step_by(HOUR_MS as usize) {
            if let Some(key) = ledger.partition(symbol, hour)?.and_then(|p| p.path) {
                named.push((symbol.clone(), hour, key));
            }
        }
    }
    if named.is_empty() {
        return Ok(BTreeSet::new());
    }
    // One listing per symbol-month (one page of a bucket's LIST: a month
    // is at most 744 hour files), not a look per hour.
    let months: BTreeSet<String> = named
        .iter()
        .map(|(symbol, hour, _)| crate::lake::month_dir(symbol, *hour))
        .collect();
    let mut found = BTreeSet::new();
    for month in months {
        found.extend(lake.list_under(&month)?.into_iter().map(|l| l.key));
    }
    Ok(named
        .into_iter()
        .filter(|(_, _, key)| !found.contains(key))
        .map(|(symbol, hour, _)| (symbol, hour))
        .collect())
}

/// Gaps joined where one ends as the next of the same symbol, series and
/// reason starts.
fn merge_gaps(mut gaps: Vec<Gap>) -> Vec<Gap> {
    gaps.sort_by(|a, b| {
        (&a.symbol, a.kind, &a.reason, a.range.start).cmp(&(
            &b.symbol,
            b.kind,
            &b.reason,
            b.range.start,
        ))
    });
    let mut merged: Vec<Gap> = Vec::new();
    for gap in gaps {
        match merged.last_mut() {
            Some(last)
                if last.symbol == gap.symbol
                    && last.kind == gap.kind
                    && last.reason == gap.reason
                    && last.settled == gap.settled
                    && gap.range.start <= last.range.end =>
            {
                last.range.end = last.range.end.max(gap.range.end);
            }
            _ => merged.push(gap),
        }
    }
    merged
}
