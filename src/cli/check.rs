//! `bml check-exchange`: prints each assumption about the exchange and what the
//! exchange said to it.

use clap::Args;

use super::{exit, Outcome};
use crate::sources::check::{self, Target, Verdict};

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// REST base URL.
    #[arg(
        long,
        env = "BML_REST_BASE",
        default_value = "https://fapi.binance.com"
    )]
    rest_base: String,
    /// Vision base URL for USD-M futures.
    #[arg(
        long,
        env = "BML_VISION_BASE",
        default_value = "https://data.binance.vision/data/futures/um/"
    )]
    vision_base: String,
    /// WebSocket host; the routed bases /public and /market are appended.
    #[arg(long, env = "BML_WS_BASE", default_value = "wss://fstream.binance.com")]
    ws_base: String,
    /// The symbol to try.
    #[arg(long, default_value = "BTCUSDT")]
    symbol: String,
    /// The day whose archives to look for (YYYY-MM-DD); default: two days
    /// before the exchange's today.
    #[arg(long)]
    day: Option<chrono::NaiveDate>,
}

pub(super) fn run(args: &CheckArgs) -> Outcome {
    let checks = check::run(&Target {
        rest_base: args.rest_base.clone(),
        vision_base: args.vision_base.clone(),
        ws_base: args.ws_base.clone(),
        symbol: args.symbol.to_uppercase(),
        day: args.day,
    })?;
    for c in &checks {
        let word = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Note => "note",
            Verdict::Fail => "FAIL",
        };
        println!("{word:<5} {}: {}", c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    let noted = checks.iter().filter(|c| c.verdict == Verdict::Note).count();
    println!(
        "{} checks: {} pass, {noted} note, {failed} FAIL",
        checks.len(),
        checks.len() - failed - noted
    );
    Ok(if failed > 0 {
        exit::FOUND_PROBLEMS
    } else {
        exit::OK
    })
}
