//! `bml run-once`, `bml backfill-range`, `bml backfill-years`: keeping the
//! lake complete by the planner (`orchestrate`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::ingest::{parse_time, VISION_BASE};
use super::{exit, Outcome, Ui};
use crate::lake::Lake;
use crate::orchestrate::daemon::{self, DaemonOptions};
use crate::orchestrate::plan::Bands;
use crate::orchestrate::{self, Summary, Symbols, Window};
use crate::sources::vision::Store;
use crate::sources::{live, rest};
use crate::time::{utc_minute, DAY_MS, MINUTE_MS};

/// Where the sources are, and how hard to use them: the same in every
/// command that keeps the lake.
#[derive(Debug, Args)]
pub(super) struct SourceArgs {
    /// Symbols, comma-separated (e.g. BTCUSDT,ETHUSDT), or ALL: every USD-M
    /// perpetual the exchange lists as trading, each from its listing day.
    #[arg(long, env = "BML_SYMBOLS", value_delimiter = ',', required = true)]
    symbols: Vec<String>,
    /// REST base URL (point it at `bml sim serve`: http://ADDR).
    #[arg(
        long,
        env = "BML_REST_BASE",
        default_value = "https://fapi.binance.com"
    )]
    rest_base: String,
    /// Vision base URL: the folder holding `daily/` and `monthly/` (point it
    /// at `bml sim serve`: http://ADDR/data/futures/um/).
    #[arg(long, env = "BML_VISION_BASE", default_value = VISION_BASE)]
    vision_base: String,
    /// REST ranges fetched at once (one governor paces them all).
    #[arg(long, env = "BML_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Look for every archive Vision did not have again now (by default one
    /// is looked for again an hour after the last look while its day is
    /// recent, a week after once it is not).
    #[arg(long)]
    recheck_vision: bool,
    /// Hours materialized in parallel (default: one per core).
    #[arg(long, env = "BML_JOBS", short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Band edge: an archive of a recent day (--vision-recent-days) that
    /// Vision did not have is looked for again this long after the last look.
    #[arg(long, env = "BML_VISION_RECHECK_MINUTES", default_value_t = 60, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..))]
    vision_recheck_minutes: u32,
    /// Band edge: a day counts as recent for this long after it ends (after
    /// it, a missing archive is looked for again weekly).
    #[arg(long, env = "BML_VISION_RECENT_DAYS", default_value_t = 7, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3660))]
    vision_recent_days: u32,
    /// Band edge: REST statistics ranges end this long before now (Binance
    /// does not say how soon a 5-minute point is served).
    #[arg(long, env = "BML_STATISTICS_SETTLE_MINUTES", default_value_t = 10, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(0..=1440))]
    statistics_settle_minutes: u32,
}

#[derive(Debug, Args)]
pub(super) struct RunOnceArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Keep this many days up to now complete (older history is
    /// `backfill-range`'s or `backfill-years`'s).
    #[arg(long, env = "BML_LOOKBACK_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3660))]
    lookback_days: u32,
}

#[derive(Debug, Args)]
pub(super) struct RunDaemonArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Keep this many days up to now complete (as run-once).
    #[arg(long, env = "BML_LOOKBACK_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3660))]
    lookback_days: u32,
    /// Seconds between minute jobs (each runs 2 s after a multiple of it on
    /// the exchange's clock).
    #[arg(long, env = "BML_POLL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_seconds: u64,
    /// Minutes between looks for partitions gone from the lake (a file
    /// deleted by hand): each look lists the lake once per symbol-month of
    /// the look-back, requests a bucket bills. 0: at every poll. The first
    /// job always looks.
    #[arg(long, env = "BML_LAKE_CHECK_MINUTES", default_value_t = 15, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(0..=1440))]
    lake_check_minutes: u32,
    /// WebSocket host; the routed bases /public and /market are appended
    /// (point it at `bml sim serve`: ws://ADDR).
    #[arg(long, env = "BML_WS_BASE", default_value = "wss://fstream.binance.com")]
    ws_base: String,
    /// Live streams, comma-separated. Default: all.
    #[arg(long, env = "BML_STREAMS", value_delimiter = ',', value_enum)]
    streams: Vec<live::StreamKind>,
    /// Live connections per group of streams, each with every stream of it.
    #[arg(long, env = "BML_REDUNDANCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    redundancy: u16,
    /// Stop after this many seconds (default: run until SIGTERM or SIGINT).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Serve Prometheus metrics on http://ADDR/metrics and health on
    /// http://ADDR/health. A bare port listens on 127.0.0.1 only; give a
    /// host (0.0.0.0:9464) to listen wider. Default: not served.
    #[arg(long, env = "BML_METRICS_ADDR", value_name = "[HOST:]PORT", value_parser = metrics_addr)]
    metrics_addr: Option<SocketAddr>,
}

/// `PORT` (on 127.0.0.1) or `HOST:PORT`.
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("`{text}` is neither a port nor HOST:PORT (e.g. 9464, 127.0.0.1:9464)")
    })
}

#[derive(Debug, Args)]
pub(super) struct BackfillRangeArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Range start (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z], or epoch ms.
    #[arg(long, value_parser = parse_time)]
    start: i64,
    /// Range end, exclusive, same forms (YYYY-MM-DD is that day's midnight).
    #[arg(long, value_parser = parse_time)]
    end: i64,
    /// Fetch for this many missing symbol-hours at most, the newest first;
    /// the rest is left for the next run (and said so).
    #[arg(long, env = "BML_MAX_MISSING_HOURS", value_name = "N")]
    max_missing_hours: Option<usize>,
}

#[derive(Debug, Args)]
pub(super) struct BackfillYearsArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// How many years back from now (365 days each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    years: u32,
    /// Fetch for this many missing symbol-hours at most, the newest first;
    /// the rest is left for the next run (and said so).
    #[arg(long, env = "BML_MAX_MISSING_HOURS", value_name = "N")]
    max_missing_hours: Option<usize>,
}

pub(super) fn run_once(args: &RunOnceArgs, data_dir: &Path, lake: &Lake, ui: &Ui) -> Outcome {
    let window = Window::Last(i64::from(args.lookback_days) * DAY_MS);
    keep("run-once", &args.sources, window, None, data_dir, lake, ui)
}

pub(super) fn backfill_range(
    args: &BackfillRangeArgs,
    data_dir: &Path,
    lake: &Lake,
    ui: &Ui,
) -> Outcome {
    if args.end <= args.start {
        return super::usage("--end must be after --start");
    }
    let window = Window::Range(args.start, args.end);
    let max = args.max_missing_hours;
    keep(
        "backfill-range",
        &args.sources,
        window,
        max,
        data_dir,
        lake,
        ui,
    )
}

pub(super) fn backfill_years(
    args: &BackfillYearsArgs,
    data_dir: &Path,
    lake: &Lake,
    ui: &Ui,
) -> Outcome {
    let window = Window::Last(i64::from(args.years) * 365 * DAY_MS);
    let max = args.max_missing_hours;
    keep(
        "backfill-years",
        &args.sources,
        window,
        max,
        data_dir,
        lake,
        ui,
    )
}

fn keep(
    name: &str,
    sources: &SourceArgs,
    window: Window,
    max_missing_hours: Option<usize>,
    data_dir: &Path,
    lake: &Lake,
    ui: &Ui,
) -> Outcome {
    let options = keep_options(sources, window, max_missing_hours, lake)?;
    let summary = match orchestrate::run(data_dir, &options, &ui.bars()) {
        Ok(summary) => summary,
        Err(e) => return refused(e),
    };
    report(name, &summary, &mut std::io::stdout().lock())?;
    Ok(if summary.failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// An unknown symbol is a bad command line (exit 2); other errors pass.
fn refused(e: anyhow::Error) -> Outcome {
    match e.downcast_ref::<rest::UnknownSymbol>() {
        Some(unknown) => super::usage(&unknown.to_string()),
        None => Err(e),
    }
}

fn keep_options(
    sources: &SourceArgs,
    window: Window,
    max_missing_hours: Option<usize>,
    lake: &Lake,
) -> anyhow::Result<orchestrate::Options> {
    let symbols = if sources
        .symbols
        .iter()
        .any(|s| s.eq_ignore_ascii_case("ALL"))
    {
        Symbols::All
    } else {
        Symbols::List(sources.symbols.iter().map(|s| s.to_uppercase()).collect())
    };
    Ok(orchestrate::Options {
        symbols,
        window,
        max_missing_hours,
        recheck_vision: sources.recheck_vision,
        rest_base: sources.rest_base.clone(),
        vision: Store::http(&sources.vision_base)?,
        concurrency: usize::from(sources.concurrency),
        lake: lake.clone(),
        jobs: sources.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
        bands: Bands {
            recheck_recent_ms: i64::from(sources.vision_recheck_minutes) * MINUTE_MS,
            recent_ms: i64::from(sources.vision_recent_days) * DAY_MS,
            statistics_settle_ms: i64::from(sources.statistics_settle_minutes) * MINUTE_MS,
            ..Bands::default()
        },
        lake_check_every: Duration::ZERO,
    })
}

pub(super) fn run_daemon(args: &RunDaemonArgs, data_dir: &Path, lake: &Lake, ui: &Ui) -> Outcome {
    let window = Window::Last(i64::from(args.lookback_days) * DAY_MS);
    let mut keep = keep_options(&args.sources, window, None, lake)?;
    keep.lake_check_every = Duration::from_secs(60 * u64::from(args.lake_check_minutes));
    let Symbols::List(symbols) = &keep.symbols else {
        return super::usage(
            "run-daemon needs --symbols listed (ALL is for run-once and backfills)",
        );
    };
    let live = live::Options {
        symbols: symbols.clone(),
        ws_base: args.ws_base.clone(),
        kinds: if args.streams.is_empty() {
            live::StreamKind::ALL.to_vec()
        } else {
            args.streams.clone()
        },
        depth_speed: "100ms".into(),
        rest_base: args.sources.rest_base.clone(),
        redundancy: usize::from(args.redundancy),
        streams_per_connection: 200,
        duration: None,
        rotate_after: Duration::from_secs(23 * 3600),
        silence_timeout: Duration::from_secs(10),
        stop: None,
        counters: std::sync::Arc::default(),
    };
    let options = DaemonOptions {
        keep: &keep,
        live,
        poll: Duration::from_secs(args.poll_seconds),
        duration: args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))),
        metrics_addr: args.metrics_addr,
    };
    let mut first = true;
    let mut print = |summary: &Summary| {
        let mut out = std::io::stdout().lock();
        let written = if first {
            report("run-daemon: catch-up", summary, &mut out)
        } else {
            job_line(summary, &mut out)
        };
        first = false;
        if let Err(e) = written.and_then(|()| out.flush()) {
            tracing::warn!("stdout: {e}");
        }
    };
    let stopped = match daemon::run(data_dir, &options, &ui.bars(), &mut print) {
        Ok(stopped) => stopped,
        Err(e) => return refused(e),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "run-daemon stopped ({}): {} jobs, {} with a failed fetch (asked again by the next)",
        stopped.reason, stopped.jobs, stopped.failed_jobs
    )?;
    if let Some(live) = &stopped.live {
        writeln!(
            out,
            "  live: {} messages, {} records; {} connections, {} failed and reconnected; {} dropped",
            live.messages, live.records, live.connections, live.failures, live.dropped
        )?;
    }
    Ok(exit::OK)
}

/// One minute job in one line.
fn job_line(s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    let written = s.materialized.as_ref().map_or(0, |m| m.written);
    let oldest = s.watermarks.values().min().copied().flatten();
    writeln!(
        out,
        "{} job: {} REST ranges ({} rows), {} archives; {} partitions written{}; complete up to {}{}",
        utc_minute(s.range.end),
        s.rest_ranges.values().sum::<u64>(),
        s.rest_rows,
        s.archives.values().sum::<u64>(),
        written,
        if s.partitions_missing > 0 {
            format!(" ({} gone from the lake, derived again)", s.partitions_missing)
        } else {
            String::new()
        },
        oldest.map_or_else(|| "nothing yet".to_string(), utc_minute),
        if s.failed.is_empty() {
            String::new()
        } else {
            format!("; {} fetches FAILED (asked again next job)", s.failed.len())
        }
    )
}

/// Lines of gaps shown before "and N more".
const GAPS_SHOWN: usize = 12;

fn report(name: &str, s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{name}: {} symbols, {} .. {} (exchange clock), {:.1} s",
        s.symbols.len(),
        utc_minute(s.range.start),
        utc_minute(s.range.end),
        s.elapsed.as_secs_f64()
    )?;
    if s.fetched_nothing() {
        writeln!(
            out,
            "  nothing to fetch: every source already holds what it can"
        )?;
    } else {
        let counts = |m: &std::collections::BTreeMap<&str, u64>| {
            if m.is_empty() {
                return String::new();
            }
            let each: Vec<String> = m.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!(" ({})", each.join(", "))
        };
        writeln!(
            out,
            "  fetched for {} symbol-hours in {} rounds",
            s.hours_fetched, s.rounds
        )?;
        writeln!(
            out,
            "  vision: {} archives ingested{}, {} rows",
            s.archives.values().sum::<u64>(),
            counts(&s.archives),
            s.vision_rows
        )?;
        writeln!(
            out,
            "  rest: {} ranges read{}, {} rows; request weight {}, {} refusals (429/418)",
            s.rest_ranges.values().sum::<u64>(),
            counts(&s.rest_ranges),
            s.rest_rows,
            s.weight,
            s.refusals
        )?;
    }
    if !s.awaited.is_empty() {
        writeln!(
            out,
            "  {} archives not published by Vision yet (REST stands in; looked for again later)",
            s.awaited.len()
        )?;
    }
    if s.hours_deferred > 0 {
        writeln!(
            out,
            "  {} missing symbol-hours left for the next run (--max-missing-hours)",
            s.hours_deferred
        )?;
    }
    if s.partitions_missing > 0 {
        writeln!(
            out,
            "  {} partitions were gone from the lake: derived again",
            s.partitions_missing
        )?;
    }
    for failure in &s.failed {
        writeln!(out, "  FAILED ({})  {}", failure.kind, failure.message)?;
    }
    if let Some(m) = &s.materialized {
        writeln!(
            out,
            "  lake: {} hours derived: {} written, {} unchanged; {} rows, {} findings",
            m.hours, m.written, m.unchanged, m.rows, m.findings
        )?;
    }
    for (symbol, mark) in &s.watermarks {
        let mark = mark.map_or_else(|| "nothing yet".to_string(), utc_minute);
        writeln!(out, "  {symbol}: complete up to {mark}")?;
    }
    if s.gaps.is_empty() {
        writeln!(out, "  no gap that no source can fill")?;
    } else {
        let recorded = if s.gaps_recorded > 0 {
            format!(
                " ({} newly settled, recorded in the log: their hours carry an `unfillable` finding)",
                s.gaps_recorded
            )
        } else {
            String::new()
        };
        writeln!(out, "  {} gaps no source can fill{recorded}:", s.gaps.len())?;
        for gap in s.gaps.iter().take(GAPS_SHOWN) {
            writeln!(
                out,
                "    {} {} {} .. {}: {}",
                gap.symbol,
                gap.series(),
                utc_minute(gap.range.start),
                utc_minute(gap.range.end),
                gap.reason
            )?;
        }
        if s.gaps.len() > GAPS_SHOWN {
            writeln!(out, "    and {} more", s.gaps.len() - GAPS_SHOWN)?;
        }
    }
    Ok(())
}
