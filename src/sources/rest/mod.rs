//! The REST appender: history endpoints read page by page into the log.
//!
//! The range asked for is cut into tasks (a UTC day per endpoint; an hour for
//! aggTrades) that `concurrency` threads fetch through one [`Client`] and one
//! [`Governor`]. Each page becomes one record (all of its elements or none);
//! when a task has read its range to the end, a [`RestRangeComplete`] record
//! says so. A task that fails leaves no such record: its range is known to be
//! incomplete, and the run says which and why.

mod agg_trades;
pub mod client;
pub mod endpoints;
pub mod governor;
pub mod polls;

use std::borrow::BorrowMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use client::{Client, Listing, UnknownSymbol};
pub use endpoints::Kind;
pub use governor::Governor;
pub use polls::Poll;

use super::catalog::Catalog;
use super::Failure;
use crate::event::{Event, Record, RestRangeComplete, Source};
use crate::eventlog::{with_shared, EventLog};
use crate::progress::{Progress, Unit};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use endpoints::Paging;

/// What to fetch, from where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Upper-case symbols.
    pub symbols: Vec<String>,
    /// Range start (epoch ms, inclusive).
    pub start_ms: i64,
    /// Range end (epoch ms, exclusive).
    pub end_ms: i64,
    /// Endpoints to read.
    pub kinds: Vec<Kind>,
    /// REST base URL, e.g. `https://fapi.binance.com`.
    pub base_url: String,
    /// Tasks fetched at once.
    pub concurrency: usize,
    /// Fetch ranges the log already holds read to their end, too.
    pub refetch: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Tasks (endpoint × day or hour) planned, those already in the log included.
    pub tasks: u64,
    /// Ranges not fetched because the log already holds them read to their end.
    pub already: u64,
    /// Pages appended (one record each).
    pub pages: u64,
    /// Elements appended.
    pub rows: u64,
    /// Ranges read to the end (a coverage record each).
    pub complete: u64,
    /// Tasks that failed (their ranges stay incomplete): the message names
    /// the range and the URL; the kind says whether to try again.
    pub failed: Vec<Failure>,
    /// Ranges not asked for because the endpoint no longer serves them
    /// (aggTrades: 48 hours; statistics: 30 days), as `symbol endpoint
    /// start..end`: at planning, or when a task started too late.
    pub beyond_horizon: Vec<String>,
    /// Request weight spent.
    pub weight: u64,
    /// 429 and 418 answers (each paused every request for its Retry-After).
    pub refusals: u64,
    /// Requests retried.
    pub retries: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// One range of one endpoint for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Upper-case symbol.
    pub symbol: String,
    /// The endpoint.
    pub kind: Kind,
    /// Range start (epoch ms, inclusive).
    pub start_ms: i64,
    /// Range end (epoch ms, exclusive).
    pub end_ms: i64,
}

impl Task {
    fn describe(&self) -> String {
        format!(
            "{} {} {}..{}",
            self.symbol,
            self.kind.path(),
            time_text(self.start_ms),
            time_text(self.end_ms)
        )
    }
}

enum Message {
    Page(Record),
    Complete(Record),
    BeyondHorizon(String),
    Failed(Failure),
}

/// How a task ended, short of failing.
enum Ended {
    /// Read to its end: the coverage record.
    Complete(Record),
    /// By the time it started, the endpoint no longer served its range.
    BeyondHorizon,
}

/// Reads the endpoints into `log`; `progress` shows the ranges done and the
/// rows appended.
pub fn ingest(
    log: &mut EventLog,
    catalog: &mut Catalog,
    options: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let governor = Arc::new(Governor::default());
    let (client, server_time) = Client::connect(&options.base_url, governor)?;
    client.check_symbols(&options.symbols)?;
    let mut planned = Summary::default();
    let mut tasks = plan(options, server_time, &mut planned);
    let count = tasks.len() as u64;
    if !options.refetch {
        tasks.retain(|t| !catalog.rest_complete(&t.symbol, t.kind.path(), t.start_ms..t.end_ms));
    }
    let log = std::sync::Mutex::new(log);
    let mut summary = fetch(
        &log,
        catalog,
        &client,
        &tasks,
        options.concurrency,
        progress,
    )?;
    // The whole run's counts, `exchangeInfo` (and any 429 it drew) included.
    let (g, c) = (client.governor_stats(), client.stats());
    summary.weight = g.weight;
    summary.refusals = c.refusals;
    summary.retries = c.retries;
    summary.tasks = count;
    summary.already = count - tasks.len() as u64;
    summary.beyond_horizon.splice(0..0, planned.beyond_horizon);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Fetches `ranges` into `log` through `client`, `concurrency` at a time, each
/// cut as [`ingest`] cuts a range (UTC days; hours for aggTrades), and notes
/// each range read to its end in `catalog`. The log is held for one page at a
/// time: other appenders of the process (the live collector) share it.
/// Once the client is told to stop, no new range starts.
pub fn fetch<L: BorrowMut<EventLog> + Send>(
    log: &std::sync::Mutex<L>,
    catalog: &mut Catalog,
    client: &Client,
    ranges: &[Task],
    concurrency: usize,
    progress: &dyn Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let server_time = client.server_now();
    let (weight_before, client_before) = (client.governor_stats().weight, client.stats());
    let tasks: Vec<Task> = ranges.iter().flat_map(split).collect();
    let mut summary = Summary {
        tasks: tasks.len() as u64,
        ..Summary::default()
    };
    let bar = progress.bar("rest", tasks.len() as u64, Unit::Items("ranges"));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::sync_channel::<Message>(64);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..concurrency.max(1) {
            let (sender, next, tasks) = (sender.clone(), &next, &tasks);
            scope.spawn(move || {
                while let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if client.stopped() {
                        return;
                    }
                    let outcome = match fetch_task(client, task, server_time, &sender) {
                        Ok(Ended::Complete(coverage)) => Message::Complete(coverage),
                        Ok(Ended::BeyondHorizon) => Message::BeyondHorizon(task.describe()),
                        Err(e) => Message::Failed(Failure::of(&e.context(task.describe()))),
                    };
                    if sender.send(outcome).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        for message in receiver {
            match message {
                Message::Page(record) => {
                    summary.pages += 1;
                    summary.rows += record.events.len() as u64;
                    bar.note(&format!("{} rows", summary.rows));
                    with_shared(log, |log| log.push(&record))?;
                }
                Message::Complete(record) => {
                    summary.complete += 1;
                    for event in &record.events {
                        if let Event::RestRangeComplete(r) = event {
                            let range = r.start_ms..r.end_ms;
                            catalog.note_rest_complete(&record.symbol, &r.endpoint, range);
                        }
                    }
                    // The range's pages and its coverage are durable together.
                    with_shared(log, |log| {
                        log.push(&record)?;
                        log.commit()
                    })?;
                    bar.inc(1);
                }
                Message::BeyondHorizon(range) => {
                    tracing::warn!("{range}: past the endpoint's horizon by the time it started");
                    summary.beyond_horizon.push(range);
                    bar.inc(1);
                }
                Message::Failed(failure) => {
                    tracing::error!(kind = %failure.kind, "{}", failure.message);
                    summary.failed.push(failure);
                    bar.inc(1);
                }
            }
        }
        Ok(())
    })?;
    with_shared(log, EventLog::commit)?;
    let after = client.stats();
    summary.weight = client.governor_stats().weight - weight_before;
    summary.refusals = after.refusals - client_before.refusals;
    summary.retries = after.retries - client_before.retries;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A range cut into the tasks fetched one by one: UTC days, hours for
/// aggTrades (whose windows are paged by id), the whole range for funding
/// (whose pages hold 1 000 settlements).
fn split(range: &Task) -> Vec<Task> {
    let step = match range.kind {
        Kind::AggTrades => HOUR_MS,
        Kind::FundingRate => i64::MAX / 4,
        _ => DAY_MS,
    };
    let mut tasks = Vec::new();
    let mut chunk = range.start_ms;
    while chunk < range.end_ms {
        let chunk_end = chunk
            .div_euclid(step)
            .saturating_add(1)
            .saturating_mul(step)
            .min(range.end_ms);
        tasks.push(Task {
            start_ms: chunk,
            end_ms: chunk_end,
            ..range.clone()
        });
        chunk = chunk_end;
    }
    tasks
}

/// The tasks of `options` ([`split`]), inside what each endpoint serves at
/// `server_time`.
fn plan(options: &Options, server_time: i64, summary: &mut Summary) -> Vec<Task> {
    // Nothing after the last closed minute: a later kline would still be open.
    let end = options
        .end_ms
        .min(server_time.div_euclid(MINUTE_MS) * MINUTE_MS);
    let mut tasks = Vec::new();
    for symbol in &options.symbols {
        for &kind in &options.kinds {
            let mut start = options.start_ms;
            if let Some(horizon) = kind.horizon_ms() {
                let oldest = server_time - horizon;
                if start < oldest {
                    summary.beyond_horizon.push(format!(
                        "{symbol} {} {}..{}",
                        kind.path(),
                        time_text(start),
                        time_text(oldest.min(end))
                    ));
                    // Whole minutes, so that the coverage ranges stay aligned.
                    start = oldest.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
                }
            }
            tasks.extend(split(&Task {
                symbol: symbol.clone(),
                kind,
                start_ms: start,
                end_ms: end,
            }));
        }
    }
    tasks
}

/// Fetches one task's pages (sent as they come) and returns how it ended.
fn fetch_task(
    client: &Client,
    task: &Task,
    server_time: i64,
    sender: &mpsc::SyncSender<Message>,
) -> anyhow::Result<Ended> {
    // A long run drifts: the horizon is checked again as each task starts.
    if let Some(horizon) = task.kind.horizon_ms() {
        if task.start_ms < client.server_now() - horizon {
            return Ok(Ended::BeyondHorizon);
        }
    }
    let path = task.kind.path();
    let record = |events: Vec<Event>| Record {
        symbol: task.symbol.clone(),
        source: Source::Rest {
            endpoint: path.to_string(),
        },
        received_ns: crate::time::now_ns(),
        events,
    };
    let mut rows = 0u64;
    let mut send = |events: Vec<Event>| -> anyhow::Result<()> {
        rows += events.len() as u64;
        sender
            .send(Message::Page(record(events)))
            .ok()
            .context("the log writer stopped")
    };
    match task.kind.paging() {
        Paging::Time { limit, extra } => {
            by_time(client, task, limit, extra, server_time, &mut send)?;
        }
        Paging::AggTrades => agg_trades::fetch(client, task, &mut send)?,
    }
    Ok(Ended::Complete(record(vec![Event::RestRangeComplete(
        RestRangeComplete {
            endpoint: path.to_string(),
            start_ms: task.start_ms,
            end_ms: task.end_ms,
            rows,
        },
    )])))
}

/// Pages by time: `startTime` moves past the last element of each page.
fn by_time(
    client: &Client,
    task: &Task,
    limit: u32,
    extra: &[(&str, &str)],
    server_time: i64,
    send: &mut dyn FnMut(Vec<Event>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut cursor = task.start_ms;
    while cursor < task.end_ms {
        let limit = task.kind.page_limit(limit, task.end_ms - cursor);
        let mut query = vec![
            (task.kind.symbol_param(), task.symbol.clone()),
            ("startTime", cursor.to_string()),
            ("endTime", (task.end_ms - 1).to_string()),
            ("limit", limit.to_string()),
        ];
        query.extend(extra.iter().map(|&(k, v)| (k, v.to_string())));
        let page = client.get(task.kind.path(), &query, task.kind.cost(limit), |v| {
            task.kind.parse_page(v)
        })?;
        let full = page.len() as u32 == limit;
        let events: Vec<Event> = page
            .into_iter()
            .filter(|e| {
                e.time().is_some_and(|t| (cursor..task.end_ms).contains(&t))
                    && closed_by(e, server_time)
            })
            .collect();
        let Some(last) = events.last().and_then(Event::time) else {
            break;
        };
        send(events)?;
        cursor = last + 1;
        if !full {
            break;
        }
    }
    Ok(())
}

/// False for a kline the exchange still had open at `server_time`.
fn closed_by(event: &Event, server_time: i64) -> bool {
    !matches!(event, Event::Kline(k) if k.close_time >= server_time)
}

fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_else(|| ms.to_string())
}
