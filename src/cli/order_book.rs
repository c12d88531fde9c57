//! `bml order-book`: the L2 book as the materializer rebuilds it from the log,
//! at one instant, as JSON (to look at, or to check against another client).

use std::io::Write;
use std::path::Path;

use clap::Args;
use serde_json::json;

use super::{exit, Outcome};
use crate::event::Level;
use crate::materialize::{order_book, run};
use crate::time::HOUR_MS;

#[derive(Debug, Args)]
pub(super) struct OrderBookArgs {
    /// The symbol.
    #[arg(long)]
    symbol: String,
    /// The instant (UTC): YYYY-MM-DDTHH:MM[:SS][Z], or epoch ms. The book is the
    /// one after the last depth diff stamped (`E`) at or before it.
    #[arg(long, value_parser = super::ingest::parse_time)]
    at: i64,
    /// Levels per side to print (0: all).
    #[arg(long, default_value_t = 20)]
    levels: usize,
}

/// Prints `{"symbol","at","in_sync","last_update_id","bids","asks"}`; exit 3
/// when the book was not in sync at that instant.
pub(super) fn run(args: &OrderBookArgs, data_dir: &Path) -> Outcome {
    let ledger = super::materialize::open_for_reading(data_dir)?;
    let head = crate::eventlog::head(data_dir)?;
    let indexed = ledger.indexed_to()?;
    if indexed < head {
        eprintln!(
            "note: the ledger has indexed the log to offset {indexed} of {head}; `bml materialize` takes in the rest"
        );
    }
    let symbol = args.symbol.to_uppercase();
    let hour = args.at.div_euclid(HOUR_MS) * HOUR_MS;
    let facts = run::hour_facts(data_dir, &ledger, &symbol, hour)?;
    let book = order_book::book_at(hour, &facts.depth_snapshots, &facts.depth_diffs, args.at);
    let levels = |side: &[Level]| {
        let n = if args.levels == 0 {
            side.len()
        } else {
            args.levels
        };
        side.iter()
            .take(n)
            .map(|(p, q)| [p.to_string(), q.to_string()])
            .collect::<Vec<_>>()
    };
    let answer = match &book {
        Some(b) => json!({
            "symbol": symbol, "at": args.at, "in_sync": true,
            "last_update_id": b.last_update_id,
            "bids": levels(&b.bids), "asks": levels(&b.asks),
        }),
        None => json!({"symbol": symbol, "at": args.at, "in_sync": false}),
    };
    writeln!(std::io::stdout().lock(), "{answer}")?;
    Ok(if book.is_some() {
        exit::OK
    } else {
        exit::FOUND_PROBLEMS
    })
}
