//! The command line: argument parsing, logging setup, exit codes. Thin by design:
//! each command calls into a stage and prints what it returns.

mod audit;
mod bars;
mod check;
mod config;
mod ingest;
mod keep;
mod materialize;
mod order_book;
#[cfg(feature = "sim")]
mod sim;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::lake::{Lake, Layout};
use crate::time::HOUR_MS;

/// Exit codes, documented in `docs/operations.md`.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// It failed (I/O error, bad input, …); stderr says why.
    pub const FAILED: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// A check ran to the end and found damage or findings (e.g. `wal verify`).
    pub const FOUND_PROBLEMS: u8 = 3;
}

/// The help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// bml, the Binance Minute Lake: a complete, correct 1-minute history of Binance
/// USD-M futures, kept as an event-sourced write-ahead log and derived Parquet.
#[derive(Debug, Parser)]
#[command(name = "bml", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Where bml keeps its state: the log in `<data-dir>/wal/`, the ledger in
    /// `<data-dir>/ledger.redb`, and by default the lake in `<data-dir>/lake/`.
    #[arg(long, global = true, env = "BML_DATA_DIR", default_value = "./data", help_heading = GLOBAL)]
    data_dir: PathBuf,

    /// The lake root (Parquet partitions); default `<data-dir>/lake`. Changing it
    /// makes the next `materialize` write every partition under the new root.
    #[arg(long, global = true, env = "BML_LAKE_DIR", help_heading = GLOBAL)]
    lake_dir: Option<PathBuf>,

    /// The lake as a URL instead of --lake-dir: `s3://bucket/prefix` for
    /// S3-compatible object storage (credentials from the standard AWS
    /// environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION;
    /// else the AWS_PROFILE profile of ~/.aws/credentials and ~/.aws/config;
    /// else instance or container roles), or `file:///dir`. The same hive keys as
    /// on disk; each partition is one atomic PUT.
    #[arg(long, global = true, env = "BML_LAKE_URL", value_name = "URL",
          value_parser = parse_lake_url, conflicts_with = "lake_dir", help_heading = GLOBAL)]
    lake_url: Option<String>,

    /// How the lake's hours are laid out in files: `hour`, one file per
    /// symbol-hour (`…/day=DD/hour=HH/part.parquet`); or `day`, one file per
    /// closed symbol-day (`…/day=DD/part.parquet`, its hours as row groups),
    /// the hours of a day not yet closed as `…/day=DD/part-HH.parquet`.
    /// Default: the layout the lake was last written in (`hour` for a new
    /// one). Changing it re-derives the lake in the new layout and removes
    /// the old files.
    #[arg(long, global = true, env = "BML_LAYOUT", value_parser = ["hour", "day"],
          help_heading = GLOBAL)]
    layout: Option<String>,

    /// In the `day` layout, how long after its end a day is closed and gets
    /// its one file (its hours are derived by then, late Vision archives
    /// included).
    #[arg(long, global = true, env = "BML_DAY_SETTLE_HOURS", default_value_t = 48,
          value_name = "HOURS", help_heading = GLOBAL)]
    day_settle_hours: u32,

    /// An S3-compatible server to use instead of AWS for an `s3://` lake
    /// (MinIO, Ceph, R2, …); default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
    /// the AWS profile's endpoint_url, else AWS itself. A plain `http://`
    /// endpoint is allowed because it is named here.
    #[arg(long, global = true, env = "BML_S3_ENDPOINT", value_name = "URL", help_heading = GLOBAL)]
    s3_endpoint: Option<String>,

    /// More log output on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,

    /// Only warnings and errors on stderr; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data dir, an empty log and the ledger, or check existing ones
    /// (idempotent). Reports what recovery had to repair after a crash.
    InitState,
    /// Fetch from a source and append to the log (nothing else: no Parquet).
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Bring the lake up to date: find what the last days (--lookback-days) are
    /// missing, fetch it from whichever source can fill it (Vision for ended
    /// days, REST for the rest), materialize, and report what no source can
    /// fill. A second run right after fetches nothing. Exits 1 if a fetch failed.
    RunOnce(keep::RunOnceArgs),
    /// Keep the lake current in one process: catch up as run-once, then keep
    /// the live streams up and run the minute job every --poll-seconds (fetch
    /// what the last minutes lack, materialize). Stops cleanly on SIGTERM or
    /// SIGINT (exit 0).
    RunDaemon(keep::RunDaemonArgs),
    /// As run-once, over a fixed range: repair every missing or incomplete
    /// hour of it (bounded by --max-missing-hours), re-derive partitions gone
    /// from the lake, list what no source can fill.
    BackfillRange(keep::BackfillRangeArgs),
    /// backfill-range over the last N years.
    BackfillYears(keep::BackfillYearsArgs),
    /// Derive the lake (one Parquet file per symbol-hour) and the ledger from the
    /// log. Deterministic and idempotent: partitions whose bytes would not change
    /// are not rewritten.
    Materialize(materialize::MaterializeArgs),
    /// Prove the lake against the log: every checksum and offset of the log;
    /// every partition derived afresh from the log (as of the ledger's
    /// checkpoint) and compared with its file and its ledger entry; files the
    /// log does not name (strays, temporaries); the ledger's watermarks and
    /// binding. Exit 3 when it finds a problem (--repair: when one is left).
    Audit(audit::AuditArgs),
    /// Print each symbol's watermark: the last minute such that every minute from
    /// its first stored one up to it is committed.
    ShowWatermark(materialize::WatermarkArgs),
    /// Summarize the state: log head, checkpoint, lag, partitions by status,
    /// findings, watermarks.
    Status,
    /// The L2 order book at an instant, as the materializer rebuilds it from the
    /// log's depth diffs and snapshots (JSON; exit code 3 if it was not in sync).
    OrderBook(order_book::OrderBookArgs),
    /// Inspect the write-ahead log: its segments, its integrity, its records,
    /// the offset of a time (also `bml log …`).
    #[command(subcommand, alias = "log")]
    Wal(wal::WalCommand),
    /// The simulated exchange, for tests, benchmarks and a first offline run.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// The configuration in effect.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Try bml's assumptions about the exchange against a live one, read-only
    /// and cheap (about 70 request weight, a few small downloads and three
    /// WebSocket connections of at most 8 s): archive URLs, metrics labels,
    /// which end of an aggTrades window comes back, the statistics timestamp,
    /// the clock, the weight header and limits, the routed WebSocket bases and
    /// their payloads. Prints pass/note/FAIL per assumption; exit code 3 if any
    /// failed.
    CheckExchange(check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every setting's value and where it came from: a flag, its BML_*
    /// variable, the configuration file, or the built-in default
    /// (credentials in URLs redacted).
    Show,
}

/// A data dir or lake root that is a file is a bad command line (exit 2),
/// said plainly before any command trips over it.
fn check_dirs(cli: &Cli) -> Option<ExitCode> {
    #[cfg(feature = "sim")]
    if matches!(cli.command, Command::Sim(_)) {
        return None;
    }
    if matches!(cli.command, Command::CheckExchange(_) | Command::Config(_)) {
        return None;
    }
    let dirs = [
        ("--data-dir", Some(&cli.data_dir)),
        ("--lake-dir", cli.lake_dir.as_ref()),
    ];
    for (option, dir) in dirs {
        if let Some(why) = dir.and_then(|d| crate::data_dir::unusable(d)) {
            eprintln!("error: {option}: {why}");
            return Some(ExitCode::from(exit::USAGE));
        }
    }
    None
}

/// The command line as `--help` shows it: the data-dir options are global, so
/// that they may stand anywhere, but hidden from the commands that use no data
/// dir (the simulated exchange, `check-exchange`).
fn command() -> clap::Command {
    // Read before parsing (`config::Config::load`), so not a field of `Cli`.
    let cli = Cli::command().arg(
        clap::Arg::new("config")
            .long("config")
            .global(true)
            .env("BML_CONFIG")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help_heading(GLOBAL)
            .help(
                "The configuration file (default: bml.toml in the working directory, if there is one; deploy/bml.toml is an example). Its keys are the \
                 long options' names (rest_base = \"…\"); flags and BML_* variables override \
                 it. `bml config show` prints what is in effect.",
            ),
    );
    // A subcommand that already has an argument is not given the global one, so
    // a hidden copy stands in for it (and its sub-subcommands inherit the copy).
    let hidden: Vec<clap::Arg> = cli
        .get_arguments()
        .filter(|a| a.is_global_set() && !["verbose", "quiet"].contains(&a.get_id().as_str()))
        .map(|a| a.clone().hide(true))
        .collect();
    let hide_dirs = |c: clap::Command| c.args(hidden.iter().cloned());
    let cli = cli.mut_subcommand("check-exchange", hide_dirs);
    #[cfg(feature = "sim")]
    let cli = cli.mut_subcommand("sim", hide_dirs);
    cli
}

/// What a command hands back: its exit code.
type Outcome = anyhow::Result<u8>;

/// Runs the command line and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = match config::Config::load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", config::redact(&format!("{e:#}")));
            return ExitCode::from(exit::USAGE);
        }
    };
    let pristine = command();
    let configured = match config.apply(pristine.clone()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: {}", config::redact(&format!("{e:#}")));
            return ExitCode::from(exit::USAGE);
        }
    };
    let matches = configured.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose, cli.quiet);
    let ui = Ui { quiet: cli.quiet };
    if let Some(code) = check_dirs(&cli) {
        return code;
    }
    let data_dir = &cli.data_dir;
    let outcome = match &cli.command {
        Command::Ingest(cmd) => ingest::run(cmd, data_dir, &ui),
        Command::InitState => wal::init_state(data_dir),
        Command::Materialize(args) => {
            lake(&cli).and_then(|lake| materialize::materialize(args, data_dir, &lake, &ui))
        }
        Command::RunOnce(args) => {
            lake(&cli).and_then(|lake| keep::run_once(args, data_dir, &lake, &ui))
        }
        Command::RunDaemon(args) => {
            lake(&cli).and_then(|lake| keep::run_daemon(args, data_dir, &lake, &ui))
        }
        Command::BackfillRange(args) => {
            lake(&cli).and_then(|lake| keep::backfill_range(args, data_dir, &lake, &ui))
        }
        Command::BackfillYears(args) => {
            lake(&cli).and_then(|lake| keep::backfill_years(args, data_dir, &lake, &ui))
        }
        Command::ShowWatermark(args) => {
            lake(&cli).and_then(|lake| materialize::show_watermark(args, data_dir, &lake))
        }
        Command::Audit(args) => lake(&cli).and_then(|lake| audit::run(args, data_dir, &lake, &ui)),
        Command::Status => lake(&cli).and_then(|lake| materialize::status(data_dir, &lake)),
        Command::OrderBook(args) => order_book::run(args, &cli.data_dir),
        Command::Wal(cmd) => wal::run(cmd, &cli.data_dir, &ui),
        #[cfg(feature = "sim")]
        Command::Sim(cmd) => sim::run(cmd),
        Command::CheckExchange(args) => check::run(args),
        Command::Config(ConfigCommand::Show) => {
            config::show(&config, &pristine, &matches, &mut std::io::stdout().lock())
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        // A reader that stopped early (`bml wal dump | head`) is not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {}", config::redact(&format!("{e:#}")));
            ExitCode::from(exit::FAILED)
        }
    }
}

/// The lake: `--lake-url`, `--lake-dir`, or `<data-dir>/lake`. A directory is
/// made absolute, so that the ledger's lake root means the same lake from any
/// working directory (`status`, the next run).
fn lake(cli: &Cli) -> anyhow::Result<Lake> {
    let lake = match &cli.lake_url {
        Some(url) => Lake::open(url, cli.s3_endpoint.as_deref())?,
        None => {
            let dir = cli
                .lake_dir
                .clone()
                .unwrap_or_else(|| crate::data_dir::default_lake(&cli.data_dir));
            Lake::local(std::path::absolute(&dir).unwrap_or(dir))
        }
    };
    let layout = cli.layout.as_deref().and_then(Layout::from_name);
    Ok(lake.with_layout(layout, i64::from(cli.day_settle_hours) * HOUR_MS))
}

/// `--lake-url`: an `s3://bucket[/prefix]` or a `file:///dir` URL.
fn parse_lake_url(url: &str) -> Result<String, String> {
    match url.split_once("://") {
        Some(("s3", rest)) if !rest.is_empty() && !rest.starts_with('/') => Ok(url.to_owned()),
        Some(("s3", _)) => Err("an s3:// URL names its bucket: s3://bucket/prefix".into()),
        Some(("file", path)) if path.starts_with('/') => Ok(url.to_owned()),
        Some(("file", _)) => Err("a file:// URL needs an absolute path: file:///dir".into()),
        _ => Err("the lake is s3://bucket/prefix or file:///dir".into()),
    }
}

/// A command line that parses but asks for something impossible: said on
/// stderr, exit code 2 like clap's own.
fn usage(message: &str) -> Outcome {
    eprintln!("error: {message}");
    Ok(exit::USAGE)
}

/// How commands talk to the person at the terminal.
struct Ui {
    quiet: bool,
}

impl Ui {
    /// Where a stage shows its progress (nowhere when quiet).
    fn bars(&self) -> bars::Bars {
        bars::Bars::new(self.quiet)
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal, and never under NO_COLOR.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacted(std::io::stderr()))
        .with_ansi(colour)
        .init();
}

/// Stderr for log lines, with the credentials of any URL in them hidden
/// (`config::redact`). The formatter writes each line in one piece.
struct Redacted(std::io::Stderr);

impl std::io::Write for Redacted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(config::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
