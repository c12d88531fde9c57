//! `bml sim serve`: the simulated exchange.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{exit, Outcome};
use crate::sim::capture::Capture;
use crate::sim::ws::{Break, LiveConfig, WsFaults};
use crate::sim::{self, market::Market, synthetic, Behaviour, Config, Faults, WindowEnd};
use crate::time::HOUR_MS;

#[derive(Debug, Subcommand)]
pub(super) enum SimCommand {
    /// Serve a simulated Binance USD-M exchange (REST and Vision archives) until
    /// killed: a replay of Vision archives, or a synthetic market from a seed. Prints `listening on http://ADDR` first. Point bml's sources at it
    /// with `--rest-base http://ADDR`, `--vision-base
    /// http://ADDR/data/futures/um/` and `--ws-base ws://ADDR`.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// The market: Binance Vision archives in Vision's layout (e.g. written by
    /// ../shared/tools/gen_vision_day.py). REST answers are cut from the same rows the
    /// archives hold, and the archives are served as Vision. Without it, a
    /// synthetic market is made up from --seed (see --start-date, --days).
    #[arg(long, value_name = "DIR")]
    from_vision: Option<PathBuf>,
    /// Replay recorded WebSocket traffic instead of a market: hftbacktest
    /// captures (`<µs|ns> <json>` lines, gzip or not) or cryptofeed ones
    /// (`<seconds>: <json>`), byte for byte at their recorded pace (or
    /// --speed), and the recorded REST depth snapshot at /fapi/v1/depth.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "from_vision")]
    from_capture: Vec<PathBuf>,
    /// A synthetic market whose "now" is the real clock: --history-days of
    /// history behind now, served on REST and Vision as the real exchange
    /// would (archives of today and yesterday not published yet), live
    /// streams at now, at the real pace.
    #[arg(long, conflicts_with_all = ["from_vision", "from_capture", "start_date", "days", "now_ms", "ws_start", "speed"])]
    live_clock: bool,
    /// With --live-clock: days of history before today.
    #[arg(long, default_value_t = 3, requires = "live_clock", value_parser = clap::value_parser!(u32).range(1..=60))]
    history_days: u32,
    /// With --live-clock: how many ended days Vision has not published yet
    /// (1: yesterday's archives are missing, as on most mornings; 0: Vision
    /// is up to date).
    #[arg(long, default_value_t = 1, requires = "live_clock")]
    unpublished_days: u32,
    /// Synthetic market: its first day (UTC).
    #[arg(long, default_value = "2024-03-01", conflicts_with = "from_vision")]
    start_date: chrono::NaiveDate,
    /// Synthetic market: how many days.
    #[arg(long, default_value_t = 1, conflicts_with = "from_vision")]
    days: u32,
    /// Synthetic market: mean aggTrades per minute.
    #[arg(long, default_value_t = 300, conflicts_with = "from_vision")]
    trades_per_minute: u32,
    /// Symbols to serve, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "BTCUSDT")]
    symbols: Vec<String>,
    /// Request weight allowed per IP per window (Binance: 2400 per minute).
    #[arg(long, default_value_t = 2400)]
    weight_limit: u32,
    /// The weight window in seconds (Binance: 60). `exchangeInfo` states it and
    /// the used-weight header is named after it (`X-MBX-USED-WEIGHT-10S`), as
    /// Binance names its windows; shorter windows make tests quick.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    weight_window_s: u32,
    /// The exchange's clock at start, epoch ms; it runs on at the local pace.
    /// Horizons (aggTrades, the 30-day statistics) count back from it, weight
    /// windows align to it, `serverTime` and `Date` tell it. Default: the end
    /// of the data.
    #[arg(long)]
    now_ms: Option<i64>,
    /// Assumption: which trades a crowded aggTrades startTime/endTime window
    /// answers with (Binance does not document it; ccxt says the last).
    #[arg(long, value_enum, default_value_t = WindowEnd::Last)]
    agg_trades_window_end: WindowEnd,
    /// Assumption: aggTrades older than this many hours answer -4166 (clients
    /// report 48; the USD-M docs say one year); 0 serves any age.
    #[arg(long, default_value_t = 48)]
    agg_trades_horizon_hours: u32,
    /// Assumption: aggTrades with startTime but no endTime (or the reverse)
    /// answer -1128. Off: served from the one bound given.
    #[arg(long)]
    refuse_start_without_end: bool,
    /// Statistics endpoints stamp `timestamp` as JSON text, as the docs show it
    /// (default: a number, as recordings show).
    #[arg(long)]
    stats_timestamp_text: bool,
    /// fundingRate and fundingInfo requests allowed per IP per funding window
    /// (Binance: 500 per 5 minutes, apart from the weight budget).
    #[arg(long, default_value_t = 500)]
    funding_limit: u32,
    /// The funding window in seconds (Binance: 300).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    funding_window_s: u32,
    /// Seed of the synthetic market and of the fault injection.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Added latency per request, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests answered 500/503 (REST and Vision).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    fail_rate: f64,
    /// Fraction of REST requests answered 429 (Retry-After: 1).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    throttle_rate: f64,
    /// Fraction of REST answers whose connection drops mid-body.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    cut_rate: f64,
    /// Fraction of REST answers that are broken JSON or lack a field.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    malformed_rate: f64,
    /// Days (YYYY-MM-DD, comma-separated) whose Vision archives answer 404.
    #[arg(long, value_delimiter = ',')]
    missing_days: Vec<String>,
    /// Vision archives served with a damaged byte, so that they no longer match
    /// their .CHECKSUM (named as for --wrong-checksums).
    #[arg(long, value_delimiter = ',')]
    corrupt_archives: Vec<String>,
    /// Vision archives whose .CHECKSUM names another SHA-256, comma-separated:
    /// file names, or the end of their path where a name is shared
    /// (`markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip`).
    #[arg(long, value_delimiter = ',')]
    wrong_checksums: Vec<String>,
    /// Fraction of aggTrades pages by fromId that skip a page of trades, as
    /// if one had been lost (bml must notice the id gap).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    agg_trade_gap_rate: f64,
    /// Leave the X-MBX-USED-WEIGHT-… header out of every answer (an exchange
    /// unlike Binance, for `bml check-exchange` to notice).
    #[arg(long)]
    omit_weight_header: bool,
    /// Live streams: the market instant they start at (YYYY-MM-DDTHH:MM[:SS] UTC, or epoch ms);
    /// default: the market's first minute. They start when the server does.
    #[arg(long, value_parser = super::ingest::parse_time, help_heading = "Live streams")]
    ws_start: Option<i64>,
    /// Live streams: hold the tape until a client first subscribes (then 0.3 s
    /// more), so that it sees the market from its first message.
    #[arg(long, help_heading = "Live streams")]
    ws_wait: bool,
    /// Live streams: market time per wall-clock time (60: a minute a second).
    #[arg(long, default_value_t = 1.0, help_heading = "Live streams")]
    speed: f64,
    /// Live streams: seconds between the server's pings (Binance: 180).
    #[arg(long, default_value_t = 180, help_heading = "Live streams")]
    ws_ping_s: u64,
    /// Live streams: seconds a ping may go unanswered before the server drops
    /// the client (Binance: 600).
    #[arg(long, default_value_t = 600, help_heading = "Live streams")]
    ws_pong_timeout_s: u64,
    /// Live streams: seconds a connection lives (Binance: 86400); the server
    /// closes it then.
    #[arg(long, default_value_t = 86_400, help_heading = "Live streams")]
    ws_lifetime_s: u64,
    /// Live streams fault: every this many seconds, break the oldest open
    /// connection (one at a time) with the next of --ws-breaks.
    #[arg(long, help_heading = "Live streams")]
    ws_break_every_s: Option<f64>,
    /// Live streams fault: how --ws-break-every-s breaks connections, in turn:
    /// drop (no close frame), malformed (one broken JSON message).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "drop",
        help_heading = "Live streams"
    )]
    ws_breaks: Vec<Break>,
    /// Live streams fault: /market accepts and lists subscriptions, then sends
    /// nothing (as Binance's old unrouted base does for /market streams).
    #[arg(long, help_heading = "Live streams")]
    ws_silent_market: bool,
    /// Live streams fault: every connection goes silent (no data, no pings,
    /// still open) this many seconds after it opened.
    #[arg(long, help_heading = "Live streams")]
    ws_stall_after_s: Option<f64>,
    /// Live streams fault: never ping.
    #[arg(long, help_heading = "Live streams")]
    ws_no_pings: bool,
    /// Live streams fault: fraction of messages held back --ws-delay-ms and
    /// sent after later ones.
    #[arg(long, default_value_t = 0.0, value_parser = fraction, help_heading = "Live streams")]
    ws_delay_rate: f64,
    /// Live streams fault: how long --ws-delay-rate holds a message back.
    #[arg(long, default_value_t = 200, help_heading = "Live streams")]
    ws_delay_ms: u64,
    /// Live streams fault: the depth diffs at this market instant (same forms
    /// as --ws-start) are never sent, a `pu` break as after an engine restart.
    #[arg(long, value_parser = super::ingest::parse_time, help_heading = "Live streams")]
    depth_gap_at: Option<i64>,
    /// Live streams fault: after --depth-gap-at, /fapi/v1/depth answers 503 for
    /// this many seconds of market time (the book cannot resync until then).
    #[arg(long, default_value_t = 0.0, help_heading = "Live streams")]
    depth_outage_s: f64,
    /// Live streams fault: fraction of messages sent twice.
    #[arg(long, default_value_t = 0.0, value_parser = fraction, help_heading = "Live streams")]
    ws_duplicate_rate: f64,
}

/// A fraction of requests: a number from 0 to 1.
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a fraction from 0 to 1")),
    }
}

pub(super) fn run(cmd: &SimCommand) -> Outcome {
    match cmd {
        SimCommand::Serve(args) => {
            // A synthetic market is written as Vision archives and loaded like
            // any: one way in, so both channels serve the same facts.
            if !args.from_capture.is_empty() {
                let market = Market {
                    capture: Some(Capture::load(&args.from_capture)?),
                    ..Market::default()
                };
                sim::serve(market, config(args))?;
                return Ok(exit::OK);
            }
            let made_up;
            let (first_day, days) = if args.live_clock {
                // Today and tomorrow too, so that the streams run on past midnight.
                let today = chrono::Utc::now().date_naive();
                (
                    today - chrono::Days::new(u64::from(args.history_days)),
                    args.history_days + 2,
                )
            } else {
                (args.start_date, args.days)
            };
            let dir = match &args.from_vision {
                Some(dir) => dir.as_path(),
                None => {
                    made_up = tempfile::tempdir()?;
                    synthetic::write_vision(
                        made_up.path(),
                        &synthetic::Spec {
                            symbols: args.symbols.clone(),
                            first_day,
                            days,
                            seed: args.seed,
                            trades_per_minute: args.trades_per_minute,
                        },
                    )?;
                    made_up.path()
                }
            };
            let market = Market::from_vision(dir, &args.symbols)?;
            let mut config = config(args);
            if args.live_clock {
                // The clock is read once the market is made: it runs from here.
                let now = crate::time::now_ns() / crate::time::NS_PER_MS;
                config.now_ms = Some(now);
                config.live.start_ms = Some(now);
                config.publish_ended_only = true;
                let today = chrono::Utc::now().date_naive();
                for back in 1..=args.unpublished_days {
                    let day = today - chrono::Days::new(u64::from(back));
                    config.faults.missing_days.push(day.to_string());
                }
            }
            sim::serve(market, config)?;
            Ok(exit::OK)
        }
    }
}

/// The simulator's settings from the command line.
fn config(args: &ServeArgs) -> Config {
    Config {
        addr: args.addr,
        weight_limit: args.weight_limit,
        weight_window_ms: i64::from(args.weight_window_s) * 1000,
        now_ms: args.now_ms,
        behaviour: Behaviour {
            agg_trades_window_end: args.agg_trades_window_end,
            agg_trades_horizon_ms: (args.agg_trades_horizon_hours > 0)
                .then(|| i64::from(args.agg_trades_horizon_hours) * HOUR_MS),
            refuse_start_without_end: args.refuse_start_without_end,
            stats_timestamp_text: args.stats_timestamp_text,
            funding_limit: args.funding_limit,
            funding_window_ms: i64::from(args.funding_window_s) * 1000,
        },
        seed: args.seed,
        faults: Faults {
            latency: Duration::from_millis(args.latency_ms),
            server_errors: args.fail_rate,
            throttles: args.throttle_rate,
            cut_bodies: args.cut_rate,
            malformed: args.malformed_rate,
            missing_days: args.missing_days.clone(),
            corrupt_archives: args.corrupt_archives.clone(),
            wrong_checksums: args.wrong_checksums.clone(),
            agg_trade_gaps: args.agg_trade_gap_rate,
            omit_weight_header: args.omit_weight_header,
        },
        live: LiveConfig {
            start_ms: args.ws_start,
            speed: args.speed,
            ping_interval: Duration::from_secs(args.ws_ping_s.max(1)),
            pong_timeout: Duration::from_secs(args.ws_pong_timeout_s),
            lifetime: Duration::from_secs(args.ws_lifetime_s.max(1)),
            max_client_messages_per_s: 10,
            wait_for_subscriber: args.ws_wait,
            faults: WsFaults {
                break_every: args.ws_break_every_s.map(Duration::from_secs_f64),
                breaks: args.ws_breaks.clone(),
                silent_market: args.ws_silent_market,
                stall_after: args.ws_stall_after_s.map(Duration::from_secs_f64),
                no_pings: args.ws_no_pings,
                duplicates: args.ws_duplicate_rate,
                delayed: args.ws_delay_rate,
                delay: Duration::from_millis(args.ws_delay_ms),
            },
            depth_gap_at: args.depth_gap_at,
            depth_outage_ms: (args.depth_outage_s * 1000.0) as i64,
        },
        publish_ended_only: false,
    }
}
