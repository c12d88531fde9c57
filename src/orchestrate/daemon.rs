//! `bml run-daemon`: one process that keeps the lake current. It catches up
//! first (a `run-once`), then keeps the live streams up and, every poll, runs
//! the minute job: plan, fetch what the last minutes lack (REST; Vision once
//! a day's archives appear), materialize. It stops cleanly on SIGTERM or
//! SIGINT: the collector records its disconnects, the log is synced, and no
//! partition is left half written (partitions are written whole, then
//! renamed).
//!
//! The live collector and the minute job append to one log: the collector's
//! writer holds it for one batch at a time, the job for its fetch. While the
//! job holds it, live records wait in the collector's bounded queue.
//!
//! With `--metrics-addr`, `/metrics` and `/health` are served from the
//! daemon's runtime from its start (`metrics`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::metrics::{self, Metrics};
use super::{Keeper, Options, Summary};
use crate::eventlog::EventLog;
use crate::progress::{Progress, Silent};
use crate::sources::live;

/// A tick runs this long after its poll boundary, so that the minute that
/// just ended is closed at the exchange too.
const TICK_DELAY: Duration = Duration::from_secs(2);

/// What the daemon is asked to do.
pub struct DaemonOptions<'a> {
    /// What to keep, and where from.
    pub keep: &'a Options,
    /// The live streams (their `stop` is the daemon's).
    pub live: live::Options,
    /// Time between minute jobs.
    pub poll: Duration,
    /// Stop after this long (default: run until SIGTERM or SIGINT).
    pub duration: Option<Duration>,
    /// Serve `/metrics` and `/health` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// What the daemon did, when it stopped.
#[derive(Debug, Default)]
pub struct DaemonSummary {
    /// Minute jobs run, the catch-up included.
    pub jobs: u64,
    /// Minute jobs in which a fetch failed (the next job asks again).
    pub failed_jobs: u64,
    /// What the live collector appended.
    pub live: Option<live::Summary>,
    /// Why it stopped.
    pub reason: String,
}

/// Runs until SIGTERM, SIGINT or `duration`; `report` sees each job's summary
/// (the catch-up's first).
pub fn run(
    data_dir: &std::path::Path,
    options: &DaemonOptions<'_>,
    progress: &dyn Progress,
    report: &mut dyn FnMut(&Summary),
) -> anyhow::Result<DaemonSummary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (stop, stopped) = watch::channel(false);
    let reason = Arc::new(Mutex::new(String::new()));
    // Told to the REST client too: a fetch in progress ends at once.
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (stop, reason, duration) = (stop.clone(), reason.clone(), options.duration);
        let stopping = stopping.clone();
        runtime.spawn(async move {
            let why = tokio::select! {
                () = live::shutdown_signal() => "signal",
                () = sleep_for(duration) => "duration reached",
            };
            if let Ok(mut r) = reason.lock() {
                *r = why.to_string();
            }
            stopping.store(true, Ordering::Relaxed);
            let _ = stop.send(true);
        });
    }
    let log = Arc::new(Mutex::new(EventLog::open(data_dir)?));
    let metrics = Arc::new(Metrics::new(
        options.poll,
        log.clone(),
        options.live.counters.clone(),
    ));
    if let Some(addr) = options.metrics_addr {
        let bound = metrics::serve(&runtime, addr, metrics.clone())?;
        tracing::info!("metrics on http://{bound}/metrics, health on http://{bound}/health");
    }
    let mut keeper = Keeper::new(data_dir, options.keep)?;
    keeper.stop_on(stopping);
    let mut summary = DaemonSummary::default();
    tracing::info!(symbols = ?keeper.summary().symbols, "catching up");
    job(&mut keeper, &log, &metrics, progress, report, &mut summary)?;

    let collector = {
        let (log, mut live) = (log.clone(), options.live.clone());
        live.stop = Some(stopped.clone());
        std::thread::Builder::new()
            .name("live".into())
            .spawn(move || live::run_into(&log, &live))?
    };
    let mut stopped = stopped;
    loop {
        let wait = until_next_tick(keeper.server_now(), options.poll);
        let stop_now = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(wait) => false,
                _ = stopped.wait_for(|s| *s) => true,
            }
        });
        if stop_now || collector.is_finished() {
            break;
        }
        job(&mut keeper, &log, &metrics, &Silent, report, &mut summary)?;
    }
    let _ = stop.send(true);
    summary.live = Some(
        collector
            .join()
            .map_err(|_| anyhow::anyhow!("the live collector panicked"))??,
    );
    crate::eventlog::with_shared(&log, EventLog::commit)?;
    summary.reason = reason.lock().map(|r| r.clone()).unwrap_or_default();
    if summary.reason.is_empty() {
        summary.reason = "the live collector stopped".into();
    }
    Ok(summary)
}

/// One minute job: fetch what is missing (holding the log), then materialize.
fn job(
    keeper: &mut Keeper<'_>,
    log: &Mutex<EventLog>,
    metrics: &Metrics,
    progress: &dyn Progress,
    report: &mut dyn FnMut(&Summary),
    summary: &mut DaemonSummary,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut done = keeper.summary();
    keeper
        .fetch(log, &mut done, progress)
        .context("the minute job's fetch")?;
    keeper
        .materialize(&mut done, progress)
        .context("the minute job's materialize")?;
    done.elapsed = started.elapsed();
    summary.jobs += 1;
    if !done.failed.is_empty() {
        summary.failed_jobs += 1;
    }
    metrics.job_done(&done, keeper.server_now());
    report(&done);
    Ok(())
}

/// How long until the next poll boundary (on the exchange's clock) plus
/// [`TICK_DELAY`].
fn until_next_tick(now_ms: i64, poll: Duration) -> Duration {
    let poll_ms = i64::try_from(poll.as_millis()).unwrap_or(i64::MAX).max(1);
    let next = (now_ms.div_euclid(poll_ms) + 1) * poll_ms;
    Duration::from_millis(u64::try_from(next - now_ms).unwrap_or(0)) + TICK_DELAY
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_just_after_each_poll_boundary() {
        let minute = Duration::from_secs(60);
        assert_eq!(until_next_tick(120_000, minute), Duration::from_secs(62));
        assert_eq!(
            until_next_tick(179_500, minute),
            Duration::from_millis(2_500)
        );
        assert_eq!(
            until_next_tick(10_000, Duration::from_secs(15)),
            Duration::from_secs(7)
        );
    }
}
