//! `bml ingest live`: the WebSocket collector. Every message of the subscribed
//! streams becomes a record in the log, with its local receive time; coverage
//! records say which (stream, connection) was live when, so that a LIVE_ONLY
//! column is "covered and 0" or "not covered, NULL" exactly.
//!
//! Shape: connection *slots* (per base, per group of at most
//! `--streams-per-connection` streams, `--redundancy` times over), each keeping
//! one connection up: reconnecting with backoff and jitter, rotating before the
//! exchange's 24-hour cut without a gap (the new connection's first message
//! arrives before the old one closes). Connections hand records to one writer
//! thread through a bounded channel; the writer appends and syncs at most
//! every 100 ms. Redundant copies of one message are one fact to the
//! materializer (natural keys), so a dropped connection loses nothing.

mod connection;
pub(crate) mod payload;
mod snapshots;
pub mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::event::Record;
use crate::eventlog::{with_shared, EventLog};
pub use streams::StreamKind;

/// What to collect, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Upper-case symbols.
    pub symbols: Vec<String>,
    /// The WebSocket host, e.g. `wss://fstream.binance.com` (bases appended).
    pub ws_base: String,
    /// Stream kinds.
    pub kinds: Vec<StreamKind>,
    /// `100ms`, `250ms` or `500ms`.
    pub depth_speed: String,
    /// The REST base the depth snapshots come from (with the depth stream).
    pub rest_base: String,
    /// Connections per stream group.
    pub redundancy: usize,
    /// Streams per connection at most.
    pub streams_per_connection: usize,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// Open a replacement connection this long after a connection opened.
    pub rotate_after: Duration,
    /// No message for this long ends a connection.
    pub silence_timeout: Duration,
    /// Stops the collector when it turns true (a daemon's shutdown), as
    /// `duration`, SIGINT and SIGTERM do.
    pub stop: Option<watch::Receiver<bool>>,
    /// Where the collector counts as it goes (the daemon's metrics read
    /// them while it runs).
    pub counters: Arc<Counters>,
}

/// Counters the summary reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Data messages handed to the writer.
    pub messages: AtomicU64,
    /// Messages dropped because the writer could not keep up.
    pub dropped: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Connections that ended with a failure (then reconnected).
    pub failures: AtomicU64,
    /// Rotations done.
    pub rotations: AtomicU64,
    /// Confirmed subscriptions that delivered nothing before their connection ended.
    pub silent_subscriptions: AtomicU64,
}

/// What a run did.
#[derive(Debug)]
pub struct Summary {
    /// Data messages appended.
    pub messages: u64,
    /// Records appended (data and coverage).
    pub records: u64,
    /// Messages dropped (each ended its connection's coverage).
    pub dropped: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections that failed.
    pub failures: u64,
    /// Rotations.
    pub rotations: u64,
    /// Confirmed subscriptions that delivered nothing (per connection).
    pub silent_subscriptions: u64,
    /// Depth snapshots appended.
    pub snapshots: u64,
    /// Depth diffs that did not continue the previous one (each asked for a
    /// new snapshot).
    pub depth_breaks: u64,
    /// Snapshot fetches that failed (each asked again).
    pub snapshot_failures: u64,
    /// The log's offsets written.
    pub offsets: std::ops::Range<u64>,
    /// Receive-to-durable time (local receive to the sync that made the
    /// record durable), 50th and 95th percentile, ms.
    pub durable_ms: (u64, u64),
    /// Wall time.
    pub elapsed: Duration,
}

/// Records waiting for the writer at most: memory stays bounded; beyond it a
/// connection drops the message and ends its coverage (recorded).
const QUEUE: usize = 1 << 16;
/// The writer syncs at least this often while records flow.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// Collects into the log of `data_dir` until `duration`, SIGINT or SIGTERM;
/// returns what was appended.
pub fn run(data_dir: &std::path::Path, options: &Options) -> anyhow::Result<Summary> {
    run_into(&Arc::new(Mutex::new(EventLog::open(data_dir)?)), options)
}

/// Collects into `log`, which other appenders of the process may share (the
/// writer holds it for one batch at a time), until `duration`, `stop`,
/// SIGINT or SIGTERM; returns what was appended.
pub fn run_into(log: &Arc<Mutex<EventLog>>, options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let first = with_shared(log, |log| Ok(log.next_offset()))?;
    let (records, inbox) = mpsc::channel::<Record>(QUEUE);
    let (requests, requested) = std::sync::mpsc::channel();
    let fetcher = if options.kinds.contains(&StreamKind::Depth) {
        let governor = Arc::new(crate::sources::rest::Governor::default());
        let (client, _) = crate::sources::rest::Client::connect(&options.rest_base, governor)
            .with_context(|| {
                format!(
                    "connecting to {} for the depth snapshots",
                    options.rest_base
                )
            })?;
        client.check_symbols(&options.symbols)?;
        Some(snapshots::Fetcher::start(
            client,
            requested,
            records.clone(),
        )?)
    } else {
        None
    };
    let mut watch = snapshots::Watch::new(requests);
    let shared = log.clone();
    let writer = std::thread::Builder::new()
        .name("live-writer".into())
        .spawn(move || {
            let written = write(&shared, &mut watch, inbox)?;
            Ok::<_, anyhow::Error>((written, watch.breaks))
        })?;
    let counters = options.counters.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let context = connection::Context {
        records,
        silence_timeout: options.silence_timeout,
        counters: counters.clone(),
    };
    let collected = runtime.block_on(collect(context, options));
    drop(runtime);
    let snapshot_failures = fetcher.map_or(0, snapshots::Fetcher::stop);
    collected?;
    let ((written, latency), depth_breaks) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the log writer panicked"))??;
    let next = with_shared(log, |log| Ok(log.next_offset()))?;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(Summary {
        messages: n(&counters.messages),
        records: written.records,
        dropped: n(&counters.dropped),
        connections: n(&counters.connections),
        failures: n(&counters.failures),
        rotations: n(&counters.rotations),
        silent_subscriptions: n(&counters.silent_subscriptions),
        snapshots: written.snapshots,
        depth_breaks,
        snapshot_failures,
        offsets: first..next,
        durable_ms: (latency.quantile(0.50), latency.quantile(0.95)),
        elapsed: started.elapsed(),
    })
}

/// What the writer appended.
#[derive(Debug, Default)]
struct Written {
    records: u64,
    snapshots: u64,
}

/// Appends what comes (showing each record to `watch` first), syncing
/// whenever the queue runs dry or every 100 ms; returns what was appended,
/// and how long it waited to be durable, once every sender is gone.
fn write(
    log: &Mutex<EventLog>,
    watch: &mut snapshots::Watch,
    mut inbox: mpsc::Receiver<Record>,
) -> anyhow::Result<(Written, Histogram)> {
    let mut written = Written::default();
    let mut latency = Histogram::default();
    let mut received = Vec::new();
    while let Some(mut record) = inbox.blocking_recv() {
        with_shared(log, |log| {
            let batch = Instant::now();
            loop {
                watch.see(&record);
                if matches!(record.events[..], [crate::event::Event::DepthSnapshot(_)]) {
                    written.snapshots += 1;
                }
                received.push(record.received_ms());
                log.push(&record)?;
                if batch.elapsed() >= SYNC_EVERY {
                    break;
                }
                let Ok(next) = inbox.try_recv() else { break };
                record = next;
            }
            log.commit()
        })?;
        let durable = chrono::Utc::now().timestamp_millis();
        written.records += received.len() as u64;
        for r in received.drain(..) {
            latency.add(u64::try_from(durable - r).unwrap_or(0));
        }
    }
    with_shared(log, EventLog::commit)?;
    Ok((written, latency))
}

/// Milliseconds counted in 1 ms buckets up to 60 s (beyond: the last bucket).
struct Histogram {
    buckets: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; 60_001],
            total: 0,
        }
    }
}

impl Histogram {
    fn add(&mut self, ms: u64) {
        let i = usize::try_from(ms)
            .unwrap_or(usize::MAX)
            .min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.total += 1;
    }

    /// The smallest value at or below which a fraction `q` of the counts lie.
    fn quantile(&self, q: f64) -> u64 {
        let rank = (self.total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank.max(1) {
                return ms as u64;
            }
        }
        0
    }
}

/// Runs every slot until the end, then lets them record their disconnects.
async fn collect(context: connection::Context, options: &Options) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel::<Option<String>>(None);
    // Connection numbers are unique across runs: the run's start (ms), then a count.
    let run_id = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default() << 16;
    let numbers = Arc::new(AtomicU64::new(run_id));
    let mut slots = Vec::new();
    let groups = streams::groups(
        &options.symbols,
        &options.kinds,
        &options.depth_speed,
        options.streams_per_connection,
    );
    for (base, group) in groups {
        for _ in 0..options.redundancy.max(1) {
            let url = format!(
                "{}{}/stream",
                options.ws_base.trim_end_matches('/'),
                base.path()
            );
            let slot = Slot {
                context: context.clone(),
                url,
                streams: group.clone(),
                numbers: numbers.clone(),
                rotate_after: options.rotate_after,
            };
            slots.push(tokio::spawn(slot.keep(stopped.clone())));
        }
    }
    drop(context);
    let duration = options.duration.unwrap_or(Duration::MAX);
    let mut told = options.stop.clone();
    let reason = tokio::select! {
        () = sleep_for(duration) => "duration reached",
        () = shutdown_signal() => "shutdown (signal)",
        () = async {
            match told.as_mut() {
                Some(told) => { let _ = told.wait_for(|stop| *stop).await; }
                None => std::future::pending().await,
            }
        } => "stopped",
    };
    tracing::info!(reason, "stopping the collector");
    let _ = stop.send(Some(reason.to_owned()));
    for slot in slots {
        slot.await?;
    }
    Ok(())
}

async fn sleep_for(duration: Duration) {
    match tokio::time::Instant::now().checked_add(duration) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}

/// One connection kept up for one group of streams.
struct Slot {
    context: connection::Context,
    url: String,
    streams: Vec<String>,
    numbers: Arc<AtomicU64>,
    rotate_after: Duration,
}

/// The first pause before reconnecting; it doubles with each failure in a
/// row (to 30 s), and starts over after a connection that delivered data.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A connection in progress: its task, what stops it, and word of its first
/// data message.
struct Open {
    task: tokio::task::JoinHandle<connection::End>,
    stop: watch::Sender<Option<connection::Stop>>,
    delivered: oneshot::Receiver<String>,
}

impl Slot {
    /// Keeps a connection up until `stop` says otherwise.
    async fn keep(self, mut stop: watch::Receiver<Option<String>>) {
        let slot = Arc::new(self);
        let mut backoff = FIRST_BACKOFF;
        let mut current = slot.open();
        let mut rotate_at = tokio::time::Instant::now() + slot.rotate_after;
        loop {
            tokio::select! {
                end = &mut current.task => {
                    if current.delivered.try_recv().is_ok() {
                        backoff = FIRST_BACKOFF;
                    }
                    if let Ok(connection::End::Failed(why)) = &end {
                        slot.context.counters.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %slot.url, "connection ended: {why}; reconnecting");
                        let half = u64::try_from(backoff.as_millis() / 2).unwrap_or(u64::MAX);
                        let jitter = Duration::from_millis(fastrand::u64(0..=half));
                        tokio::select! {
                            () = tokio::time::sleep(backoff + jitter) => {}
                            _ = stop.changed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    if stop.borrow().is_some() {
                        return;
                    }
                    current = slot.open();
                    rotate_at = tokio::time::Instant::now() + slot.rotate_after;
                }
                () = tokio::time::sleep_until(rotate_at) => {
                    // Rotation: the new connection's first message, then the old one closes.
                    let mut next = slot.open();
                    let first = tokio::time::timeout(Duration::from_secs(30), &mut next.delivered).await;
                    let _ = current.stop.send(Some(connection::Stop {
                        reason: "rotated before the 24-hour limit".into(),
                        after: first.ok().and_then(Result::ok),
                    }));
                    let _ = (&mut current.task).await;
                    slot.context.counters.rotations.fetch_add(1, Ordering::Relaxed);
                    current = next;
                    rotate_at = tokio::time::Instant::now() + slot.rotate_after;
                }
                _ = stop.changed() => {
                    let reason = stop.borrow().clone().unwrap_or_default();
                    let _ = current.stop.send(Some(connection::Stop { reason, after: None }));
                    let _ = current.task.await;
                    return;
                }
            }
        }
    }

    /// Starts one connection.
    fn open(self: &Arc<Self>) -> Open {
        let (stop, stopped) = watch::channel(None);
        let (first, delivered) = oneshot::channel();
        let number = self.numbers.fetch_add(1, Ordering::Relaxed);
        let slot = self.clone();
        let task = tokio::spawn(async move {
            connection::run(
                &slot.context,
                &slot.url,
                &slot.streams,
                number,
                Some(first),
                stopped,
            )
            .await
        });
        Open {
            task,
            stop,
            delivered,
        }
    }
}
