//! The daemon's metrics (Prometheus' text format, `GET /metrics`) and health
//! (`GET /health`), served on `--metrics-addr`. What each metric means is in
//! docs/operations.md ("Metrics").
//!
//! The minute job sets what it learns (watermarks, rows, weight, gaps, the
//! book) after each run; what moves between jobs (lag, the log head, the live
//! collector's counters) is read when a scrape asks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Summary;
use crate::eventlog::EventLog;
use crate::sources::live;
use crate::time::MINUTE_MS;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SymbolLabel {
    symbol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabel {
    series: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The metrics, and what `/health` answers from.
pub struct Metrics {
    registry: Registry,
    lag: Family<SymbolLabel, FloatGauge>,
    watermark: Family<SymbolLabel, Gauge>,
    events: Family<SourceLabel, Counter>,
    weight: Counter,
    refusals: Counter,
    jobs: Counter,
    failed_jobs: Counter,
    job_seconds: FloatGauge,
    gap_minutes: Family<SeriesLabel, Gauge>,
    log_head: Gauge,
    book_sync: Family<SymbolLabel, FloatGauge>,
    book_breaks: Family<SymbolLabel, Gauge>,
    live_connections: Counter,
    live_failures: Counter,
    live_dropped: Counter,
    state: Mutex<State>,
    log: Arc<Mutex<EventLog>>,
    live: Arc<live::Counters>,
    poll: Duration,
}

/// What the scrape-time values and `/health` are read from.
struct State {
    /// Each symbol's watermark (the last complete minute's open, ms).
    watermarks: BTreeMap<String, Option<i64>>,
    /// The exchange's clock minus the local one, ms.
    clock_offset_ms: i64,
    /// When the last minute job ended; none before the catch-up has.
    last_job: Option<Instant>,
    /// Whether it had a failed fetch.
    last_job_failed: bool,
    /// Live counters already added to the registry's counters.
    live_seen: [u64; 4],
}

impl Metrics {
    /// Empty metrics for a daemon that polls every `poll`, reading the log
    /// head from `log` and the collector's counts from `live`.
    pub fn new(poll: Duration, log: Arc<Mutex<EventLog>>, live: Arc<live::Counters>) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("bml"),
            lag: Family::default(),
            watermark: Family::default(),
            events: Family::default(),
            weight: Counter::default(),
            refusals: Counter::default(),
            jobs: Counter::default(),
            failed_jobs: Counter::default(),
            job_seconds: FloatGauge::default(),
            gap_minutes: Family::default(),
            log_head: Gauge::default(),
            book_sync: Family::default(),
            book_breaks: Family::default(),
            live_connections: Counter::default(),
            live_failures: Counter::default(),
            live_dropped: Counter::default(),
            state: Mutex::new(State {
                watermarks: BTreeMap::new(),
                clock_offset_ms: 0,
                last_job: None,
                last_job_failed: false,
                live_seen: [0; 4],
            }),
            log,
            live,
            poll,
        };
        let r = &mut m.registry;
        r.register(
            "lake_lag_seconds",
            "Seconds from the close of each symbol's last complete minute to now (exchange clock)",
            m.lag.clone(),
        );
        r.register(
            "lake_watermark_seconds",
            "Open time (Unix seconds) of each symbol's last complete minute",
            m.watermark.clone(),
        );
        r.register(
            "events",
            "Records appended to the log, by source (live: data messages)",
            m.events.clone(),
        );
        r.register(
            "rest_weight",
            "REST request weight spent by the minute jobs",
            m.weight.clone(),
        );
        r.register(
            "rest_refusals",
            "429 and 418 answers to the minute jobs (each one slowed the governor)",
            m.refusals.clone(),
        );
        r.register(
            "jobs",
            "Minute jobs run, the catch-up included",
            m.jobs.clone(),
        );
        r.register(
            "failed_jobs",
            "Minute jobs with a failed fetch (the next job asks again)",
            m.failed_jobs.clone(),
        );
        r.register(
            "last_job_seconds",
            "Wall time of the last minute job",
            m.job_seconds.clone(),
        );
        r.register(
            "gap_minutes",
            "Minutes in the kept window no source can fill, by series (the run report gives reasons)",
            m.gap_minutes.clone(),
        );
        r.register(
            "log_head_offset",
            "The log's next offset",
            m.log_head.clone(),
        );
        r.register(
            "book_sync_ratio",
            "Share of the minutes with depth diffs whose L2 book was in sync, in each symbol's newest such hour",
            m.book_sync.clone(),
        );
        r.register(
            "book_breaks",
            "Depth-diff breaks in each symbol's newest hour with diffs",
            m.book_breaks.clone(),
        );
        r.register(
            "live_connections",
            "WebSocket connections opened",
            m.live_connections.clone(),
        );
        r.register(
            "live_connection_failures",
            "WebSocket connections that failed (then reconnected)",
            m.live_failures.clone(),
        );
        r.register(
            "live_dropped",
            "Live messages dropped because the log writer could not keep up",
            m.live_dropped.clone(),
        );
        m
    }

    /// Takes in one minute job's summary; `server_now_ms` is the exchange's
    /// clock at its end.
    pub fn job_done(&self, summary: &Summary, server_now_ms: i64) {
        self.jobs.inc();
        if !summary.failed.is_empty() {
            self.failed_jobs.inc();
        }
        self.job_seconds.set(summary.elapsed.as_secs_f64());
        self.events
            .get_or_create(&SourceLabel { source: "rest" })
            .inc_by(summary.rest_rows);
        self.events
            .get_or_create(&SourceLabel { source: "vision" })
            .inc_by(summary.vision_rows);
        self.weight.inc_by(summary.weight);
        self.refusals.inc_by(summary.refusals);
        self.gap_minutes.clear();
        for gap in &summary.gaps {
            let minutes = (gap.range.end - gap.range.start) / MINUTE_MS;
            self.gap_minutes
                .get_or_create(&SeriesLabel {
                    series: gap.series(),
                })
                .inc_by(minutes);
        }
        for (symbol, (_, book)) in &summary.books {
            let label = SymbolLabel {
                symbol: symbol.clone(),
            };
            let ratio = if book.minutes_with_diffs == 0 {
                0.0
            } else {
                f64::from(book.minutes_in_sync) / f64::from(book.minutes_with_diffs)
            };
            self.book_sync.get_or_create(&label).set(ratio);
            self.book_breaks
                .get_or_create(&label)
                .set(i64::from(book.breaks));
        }
        if let Ok(mut state) = self.state.lock() {
            state.watermarks.clone_from(&summary.watermarks);
            state.clock_offset_ms = server_now_ms - local_now_ms();
            state.last_job = Some(Instant::now());
            state.last_job_failed = !summary.failed.is_empty();
        }
    }

    /// The metrics now, in Prometheus' text format.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// What moves between jobs: lag, the log head (unless the log is busy
    /// this instant), the live collector's counts.
    fn refresh(&self) {
        if let Ok(log) = self.log.try_lock() {
            self.log_head
                .set(i64::try_from(log.next_offset()).unwrap_or(i64::MAX));
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = local_now_ms() + state.clock_offset_ms;
        for (symbol, mark) in &state.watermarks {
            let label = SymbolLabel {
                symbol: symbol.clone(),
            };
            if let Some(mark) = mark {
                let lag = (now - (mark + MINUTE_MS)).max(0);
                self.lag.get_or_create(&label).set(lag as f64 / 1000.0);
                self.watermark.get_or_create(&label).set(mark / 1000);
            }
        }
        let live = [
            &self.live.messages,
            &self.live.connections,
            &self.live.failures,
            &self.live.dropped,
        ];
        let counters = [
            self.events
                .get_or_create(&SourceLabel { source: "live" })
                .clone(),
            self.live_connections.clone(),
            self.live_failures.clone(),
            self.live_dropped.clone(),
        ];
        for ((now, seen), counter) in live.iter().zip(&mut state.live_seen).zip(counters) {
            let now = now.load(Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(*seen));
            *seen = now;
        }
    }

    /// `/health`: healthy once the catch-up is done and while minute jobs
    /// keep ending (the last within three polls and a minute); the JSON
    /// says what was looked at.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let Ok(state) = self.state.lock() else {
            return (false, serde_json::json!({"status": "unknown"}));
        };
        let limit = self.poll * 3 + Duration::from_secs(60);
        let (healthy, status) = match state.last_job {
            None => (false, "catching up"),
            Some(at) if at.elapsed() > limit => (false, "minute jobs stalled"),
            Some(_) => (true, "ok"),
        };
        let body = serde_json::json!({
            "status": status,
            "last_job_seconds_ago": state.last_job.map(|at| at.elapsed().as_secs_f64()),
            "last_job_failed": state.last_job_failed,
            "stalled_after_seconds": limit.as_secs(),
        });
        (healthy, body)
    }
}

fn local_now_ms() -> i64 {
    crate::time::now_ns() / crate::time::NS_PER_MS
}

/// Binds `addr` now (so that a taken port fails the daemon at its start) and
/// serves `/metrics` and `/health` on `runtime` until it shuts down.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    use axum::http::{header, StatusCode};
    use axum::routing::get;

    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let for_metrics = metrics.clone();
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = for_metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    let (healthy, body) = metrics.health();
                    let code = if healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (
                        code,
                        [(header::CONTENT_TYPE, "application/json")],
                        body.to_string(),
                    )
                }
            }),
        );
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}
