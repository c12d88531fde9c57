//! `bml sim serve`: the simulated exchange.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{exit, Outcome};
use crate::sim::{self, market::Market, synthetic, Config, Faults};

#[derive(Debug, Subcommand)]
pub(super) enum SimCommand {
    /// Serve a simulated Binance USD-M exchange (REST and Vision archives) until
    /// killed: a replay of Vision archives, or a synthetic market from a seed. Prints `listening on http://ADDR` first. Point bml's sources at it
    /// with `--base-url http://ADDR` (REST) and `--base-url
    /// http://ADDR/data/futures/um/` (Vision).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// The market: Binance Vision archives in Vision's layout (e.g. written by
    /// tools/gen_vision_day.py). REST answers are cut from the same rows the
    /// archives hold, and the archives are served as Vision. Without it, a
    /// synthetic market is made up from --seed (see --start-date, --days).
    #[arg(long, value_name = "DIR")]
    from_vision: Option<PathBuf>,
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
    /// The simulated "now", epoch ms: the 48-hour aggTrades horizon and the
    /// 30-day statistics horizon count back from it. Default: the end of the data.
    #[arg(long)]
    now_ms: Option<i64>,
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
            let made_up;
            let dir = match &args.from_vision {
                Some(dir) => dir.as_path(),
                None => {
                    made_up = tempfile::tempdir()?;
                    synthetic::write_vision(
                        made_up.path(),
                        &synthetic::Spec {
                            symbols: args.symbols.clone(),
                            first_day: args.start_date,
                            days: args.days,
                            seed: args.seed,
                            trades_per_minute: args.trades_per_minute,
                        },
                    )?;
                    made_up.path()
                }
            };
            let market = Market::from_vision(dir, &args.symbols)?;
            sim::serve(
                market,
                Config {
                    addr: args.addr,
                    weight_limit: args.weight_limit,
                    weight_window_ms: i64::from(args.weight_window_s) * 1000,
                    now_ms: args.now_ms,
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
                    },
                },
            )?;
            Ok(exit::OK)
        }
    }
}
