//! `bml ingest …`: the appenders.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::{exit, usage, Outcome, Ui};
use crate::event::VisionKind;
use crate::eventlog::EventLog;
use crate::sources::catalog::Catalog;
use crate::sources::vision::{self, Store};
use crate::sources::{live, rest};

/// Vision's public base for USD-M futures.
pub(super) const VISION_BASE: &str = "https://data.binance.vision/data/futures/um/";

#[derive(Debug, Subcommand)]
pub(super) enum IngestCommand {
    /// Binance Vision archives (cold history) into the log. Each archive is
    /// checked against its .CHECKSUM before a row is appended, and is
    /// all-or-nothing; archives already in the log with the same SHA-256 are
    /// skipped, re-published ones are ingested again. Exits 1 if any archive failed.
    Vision(VisionArgs),
    /// REST history endpoints into the log, page by page, paced by one
    /// request-weight governor (never past the exchange's budget). Each range
    /// read to its end gets a coverage record; a range that failed does not, and
    /// is listed. Exits 1 if any range failed.
    Rest(RestArgs),
    /// Point-in-time REST polls for the hot band (premiumIndex, openInterest,
    /// ticker/bookTicker, depth): the exchange's state now, one record per answer.
    Poll(PollArgs),
    /// WebSocket streams into the log until --duration, SIGINT or SIGTERM:
    /// every message with its local receive time, and coverage records per
    /// (stream, connection) so that live-only columns are 0 only where a
    /// connection was live. Redundant connections (--redundancy) lose nothing
    /// when one drops; connections rotate before the exchange's 24-hour cut.
    Live(LiveArgs),
}

#[derive(Debug, Args)]
pub(super) struct LiveArgs {
    #[command(flatten)]
    symbols: SymbolList,
    /// WebSocket host; the routed bases /public and /market are appended (point
    /// it at `bml sim serve`: ws://ADDR).
    #[arg(long, env = "BML_WS_BASE", default_value = "wss://fstream.binance.com")]
    ws_base: String,
    /// Streams, comma-separated. Default: all.
    #[arg(long, env = "BML_STREAMS", value_delimiter = ',', value_enum)]
    streams: Vec<live::StreamKind>,
    /// Depth stream speed (0ms: undocumented, seen only in recordings; for
    /// replaying them).
    #[arg(long, default_value = "100ms", value_parser = ["100ms", "250ms", "500ms", "0ms"])]
    depth_speed: String,
    /// REST base URL for the depth snapshots the L2 book is rebuilt from (used
    /// with the depth stream; point it at `bml sim serve`: http://ADDR).
    #[arg(
        long,
        env = "BML_REST_BASE",
        default_value = "https://fapi.binance.com"
    )]
    rest_base: String,
    /// Connections per group of streams, each with every stream of the group.
    #[arg(long, env = "BML_REDUNDANCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    redundancy: u16,
    /// Streams per connection at most (official pages say 1024 or 200).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1024))]
    streams_per_connection: u16,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Replace each connection after this many seconds, without a gap (Binance
    /// cuts connections at 24 hours).
    #[arg(long, default_value_t = 23.0 * 3600.0, value_name = "SECONDS")]
    rotate_after: f64,
    /// A connection that receives nothing for this many seconds is dead.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    silence_timeout: f64,
}

#[derive(Debug, Args)]
pub(super) struct PollArgs {
    #[command(flatten)]
    target: RestTarget,
    /// Polls, comma-separated: premiumIndex, openInterest, bookTicker, depth
    /// (1000 levels). Default: all.
    #[arg(long, value_delimiter = ',', value_parser = poll_kind)]
    kinds: Vec<rest::Poll>,
}

/// Which symbols, from which REST base: what `ingest rest` and `ingest poll`
/// share.
#[derive(Debug, Args)]
pub(super) struct RestTarget {
    #[command(flatten)]
    symbols: SymbolList,
    /// REST base URL (point it at `bml sim serve`).
    #[arg(
        long,
        alias = "base-url",
        env = "BML_REST_BASE",
        default_value = "https://fapi.binance.com"
    )]
    rest_base: String,
}

/// The symbols an appender fetches (`--symbols`, `BML_SYMBOLS`).
#[derive(Debug, Args)]
pub(super) struct SymbolList {
    /// Symbols, comma-separated (e.g. BTCUSDT,ETHUSDT).
    #[arg(
        long,
        alias = "symbol",
        env = "BML_SYMBOLS",
        value_delimiter = ',',
        required = true
    )]
    symbols: Vec<String>,
}

impl SymbolList {
    /// Upper case, as the exchange spells them.
    fn upper(&self) -> Vec<String> {
        self.symbols.iter().map(|s| s.to_uppercase()).collect()
    }
}

#[derive(Debug, Args)]
pub(super) struct RestArgs {
    #[command(flatten)]
    target: RestTarget,
    /// Range start (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z], or epoch ms.
    #[arg(long, value_parser = parse_time)]
    start: i64,
    /// Range end, exclusive, same forms (YYYY-MM-DD is that day's midnight).
    #[arg(long, value_parser = parse_time)]
    end: i64,
    /// Endpoints, comma-separated, by the last segment of their path: klines,
    /// markPriceKlines, indexPriceKlines, premiumIndexKlines, aggTrades (last 48 h),
    /// fundingRate, openInterestHist, topLongShortAccountRatio,
    /// topLongShortPositionRatio, globalLongShortAccountRatio (last 30 days).
    /// Default: all.
    #[arg(long, value_delimiter = ',', value_parser = rest_kind)]
    kinds: Vec<rest::Kind>,
    /// Ranges fetched at once (one governor paces them all).
    #[arg(long, env = "BML_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Fetch again the ranges the log already holds read to their end
    /// (default: skip them, so that re-running a range appends nothing).
    #[arg(long)]
    refetch: bool,
}

/// The item of `all` called `text` (any case); else an error listing them all.
fn named<T: Copy>(text: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|k| name(*k).eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|k| name(*k)).collect();
            format!("unknown {text:?}; one of: {}", names.join(", "))
        })
}

fn vision_kind(text: &str) -> Result<VisionKind, String> {
    named(text, &vision::ALL_KINDS, vision::kind_name)
}

fn rest_kind(text: &str) -> Result<rest::Kind, String> {
    named(text, &rest::Kind::ALL, rest::Kind::name)
}

fn poll_kind(text: &str) -> Result<rest::Poll, String> {
    named(text, &rest::Poll::ALL, rest::Poll::name)
}

/// A UTC day on the command line.
fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a day: expected YYYY-MM-DD"))
}

/// A directory that exists.
fn existing_dir(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{text:?} is not a directory"))
    }
}

/// A time on the command line, as epoch ms.
pub(super) fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    let trimmed = text.trim_end_matches('Z');
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(trimmed, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| format!("{text:?} is not YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or epoch ms"))
}

#[derive(Debug, Args)]
pub(super) struct VisionArgs {
    #[command(flatten)]
    symbols: SymbolList,
    /// First day (UTC), YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    start: NaiveDate,
    /// Last day (UTC), YYYY-MM-DD, inclusive; defaults to --start.
    #[arg(long, value_parser = parse_day)]
    end: Option<NaiveDate>,
    /// Archive kinds, comma-separated, Vision's names: klines, markPriceKlines,
    /// indexPriceKlines, premiumIndexKlines, aggTrades, bookTicker, metrics,
    /// bookDepth, fundingRate (monthly). Default: all.
    #[arg(long, value_delimiter = ',', value_parser = vision_kind)]
    kinds: Vec<VisionKind>,
    /// Vision base URL for USD-M futures (point it at a mirror or a local simulator).
    #[arg(long, alias = "base-url", env = "BML_VISION_BASE", default_value = VISION_BASE, conflicts_with = "from_dir")]
    vision_base: String,
    /// Read archives from this directory instead of HTTP: Vision's own layout
    /// (daily/…, or data/futures/um/daily/…) or a flat folder of archive names
    /// (mark, index and premium klines need the layout: they share one name).
    #[arg(long, value_parser = existing_dir)]
    from_dir: Option<PathBuf>,
}

pub(super) fn run(cmd: &IngestCommand, data_dir: &Path, ui: &Ui) -> Outcome {
    match cmd {
        IngestCommand::Vision(args) => ingest_vision(args, data_dir, ui),
        IngestCommand::Rest(args) => ingest_rest(args, data_dir, ui),
        IngestCommand::Poll(args) => ingest_poll(args, data_dir),
        IngestCommand::Live(args) => ingest_live(args, data_dir),
    }
}

fn ingest_live(args: &LiveArgs, data_dir: &Path) -> Outcome {
    let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.001));
    let options = live::Options {
        symbols: args.symbols.upper(),
        ws_base: args.ws_base.clone(),
        kinds: if args.streams.is_empty() {
            live::StreamKind::ALL.to_vec()
        } else {
            args.streams.clone()
        },
        depth_speed: args.depth_speed.clone(),
        rest_base: args.rest_base.clone(),
        redundancy: usize::from(args.redundancy),
        streams_per_connection: usize::from(args.streams_per_connection),
        duration: args.duration.map(seconds),
        rotate_after: seconds(args.rotate_after),
        silence_timeout: seconds(args.silence_timeout),
        stop: None,
        counters: std::sync::Arc::default(),
    };
    let summary = live::run(data_dir, &options)?;
    writeln!(
        std::io::stdout().lock(),
        "live: {} messages, {} records (offsets {}..{}) in {:.1} s, receive to durable p50 {} ms, p95 {} ms; {} connections, {} failed and reconnected, {} rotated; {} messages dropped; {} confirmed subscriptions silent; {} depth snapshots, {} depth breaks, {} snapshot fetches failed",
        summary.messages,
        summary.records,
        summary.offsets.start,
        summary.offsets.end,
        summary.elapsed.as_secs_f64(),
        summary.durable_ms.0,
        summary.durable_ms.1,
        summary.connections,
        summary.failures,
        summary.rotations,
        summary.dropped,
        summary.silent_subscriptions,
        summary.snapshots,
        summary.depth_breaks,
        summary.snapshot_failures,
    )?;
    Ok(exit::OK)
}

fn ingest_poll(args: &PollArgs, data_dir: &Path) -> Outcome {
    let polls = if args.kinds.is_empty() {
        rest::Poll::ALL.to_vec()
    } else {
        args.kinds.clone()
    };
    let governor = std::sync::Arc::new(rest::Governor::new(
        2400,
        std::time::Duration::from_secs(60),
    ));
    let (client, _) = rest::Client::connect(&args.target.rest_base, governor)?;
    let symbols = args.target.symbols.upper();
    if let Some(code) = unknown_symbol(client.check_symbols(&symbols))? {
        return Ok(code);
    }
    let mut log = EventLog::open(data_dir)?;
    let appended = rest::polls::poll(&mut log, &client, &symbols, &polls)?;
    writeln!(
        std::io::stdout().lock(),
        "poll: {appended} answers appended"
    )?;
    Ok(exit::OK)
}

fn ingest_rest(args: &RestArgs, data_dir: &Path, ui: &Ui) -> Outcome {
    if args.end <= args.start {
        return usage("--end must be after --start");
    }
    let kinds = if args.kinds.is_empty() {
        rest::Kind::ALL.to_vec()
    } else {
        args.kinds.clone()
    };
    let options = rest::Options {
        symbols: args.target.symbols.upper(),
        start_ms: args.start,
        end_ms: args.end,
        kinds,
        base_url: args.target.rest_base.clone(),
        concurrency: usize::from(args.concurrency),
        refetch: args.refetch,
    };
    let mut log = EventLog::open(data_dir)?;
    let mut catalog = Catalog::load(data_dir)?;
    let summary = match rest::ingest(&mut log, &mut catalog, &options, &ui.bars()) {
        Ok(summary) => summary,
        Err(e) => return unknown_symbol(Err(e)).map(|code| code.unwrap_or(exit::FAILED)),
    };
    catalog.save(data_dir, log.next_offset())?;

    let mut out = std::io::stdout().lock();
    for failure in &summary.failed {
        writeln!(out, "FAILED ({})  {}", failure.kind, failure.message)?;
    }
    for range in &summary.beyond_horizon {
        writeln!(out, "skipped {range}: older than the endpoint serves")?;
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "rest: {} ranges: {} complete, {} failed, {} already in the log; {} pages, {} rows in {secs:.1} s ({:.0} pages/s, {:.0} rows/s); request weight {}, {} refusals (429/418), {} retries",
        summary.tasks,
        summary.complete,
        summary.failed.len(),
        summary.already,
        summary.pages,
        summary.rows,
        summary.pages as f64 / secs,
        summary.rows as f64 / secs,
        summary.weight,
        summary.refusals,
        summary.retries,
    )?;
    Ok(if summary.failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn ingest_vision(args: &VisionArgs, data_dir: &Path, ui: &Ui) -> Outcome {
    let end = args.end.unwrap_or(args.start);
    if end < args.start {
        return usage(&format!("--end {end} is before --start {}", args.start));
    }
    let kinds = if args.kinds.is_empty() {
        vision::ALL_KINDS.to_vec()
    } else {
        args.kinds.clone()
    };
    let store = match &args.from_dir {
        Some(dir) => Store::Dir(dir.clone()),
        None => Store::http(&args.vision_base)?,
    };
    let specs = vision::plan(&args.symbols.upper(), args.start, end, &kinds);
    let mut log = EventLog::open(data_dir)?;
    let mut catalog = Catalog::load(data_dir)?;
    let summary = vision::ingest(
        &mut log,
        &mut catalog,
        &store,
        &specs,
        &crate::data_dir::downloads(data_dir),
        &ui.bars(),
    );
    log.commit()?;
    catalog.save(data_dir, log.next_offset())?;

    let mut out = std::io::stdout().lock();
    let failed: Vec<&(String, vision::Outcome)> = summary
        .files
        .iter()
        .filter(|(_, o)| matches!(o, vision::Outcome::Failed(_)))
        .collect();
    for (file, outcome) in &failed {
        if let vision::Outcome::Failed(failure) = outcome {
            writeln!(
                out,
                "FAILED ({})  {file}: {}",
                failure.kind, failure.message
            )?;
        }
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "vision: {} archives: {} ingested, {} already in the log, {} missing, {} failed; {} rows, {} in {:.1} s ({:.0} rows/s)",
        summary.files.len(),
        summary.count(|o| matches!(o, vision::Outcome::Ingested { .. })),
        summary.count(|o| matches!(o, vision::Outcome::AlreadyIngested)),
        summary.count(|o| matches!(o, vision::Outcome::Missing)),
        failed.len(),
        summary.rows(),
        indicatif::BinaryBytes(summary.bytes()),
        secs,
        summary.rows() as f64 / secs
    )?;
    // A symbol none of whose archives exists is most likely misspelt: not a
    // success, and said apart from the summary.
    let unseen = summary.symbols_without_archives(&specs);
    for symbol in &unseen {
        eprintln!(
            "error: Vision has no archive of {symbol} for any day from {} to {end}: is the \
             symbol right (USD-M symbols look like BTCUSDT)? Or it was listed later, or the \
             days are not published yet (Vision publishes a day the day after)",
            args.start
        );
    }
    Ok(if !failed.is_empty() {
        exit::FAILED
    } else if !unseen.is_empty() {
        exit::USAGE
    } else {
        exit::OK
    })
}

/// A symbol the exchange does not list is a bad command line: said on stderr,
/// exit 2. `None` when `checked` is fine; other errors pass through.
fn unknown_symbol(checked: anyhow::Result<()>) -> anyhow::Result<Option<u8>> {
    match checked {
        Ok(()) => Ok(None),
        Err(e) => match e.downcast_ref::<rest::UnknownSymbol>() {
            Some(unknown) => {
                eprintln!("error: {unknown}");
                Ok(Some(exit::USAGE))
            }
            None => Err(e),
        },
    }
}
