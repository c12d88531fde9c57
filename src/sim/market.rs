//! The simulated exchange's market: every fact it can answer with, per symbol.
//!
//! It is loaded from Binance Vision archives (`--from-vision DIR`, in Vision's own
//! layout, e.g. a day written by `../shared/tools/gen_vision_day.py`), so that whatever the
//! simulator serves over REST is cut from the very rows its Vision archives hold:
//! the same aggTrade has the same id, price and time on both channels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::vision;
use crate::event::{AggTrade, FundingRate, Kline, KlineKind, Metrics, VisionKind};
use crate::time::MINUTE_MS;

/// Everything known about one symbol, in time (or id) order.
#[derive(Debug, Default)]
pub struct SymbolMarket {
    /// 1m klines of each kind, by open time.
    pub klines: BTreeMap<(KlineKind, i64), Kline>,
    /// aggTrades by id (ids are consecutive within a day).
    pub agg_trades: Vec<AggTrade>,
    /// 5-minute metrics points (open interest, ratios), by snapshot time.
    pub metrics: Vec<Metrics>,
    /// Funding settlements, by time.
    pub funding: Vec<FundingRate>,
    /// Its bookTicker archives, in day order: the live tape reads them as it
    /// goes (too many rows to hold).
    pub book_ticker_archives: Vec<PathBuf>,
}

/// The whole market: symbols and the Vision directory they came from.
#[derive(Debug, Default)]
pub struct Market {
    /// Per upper-case symbol.
    pub symbols: BTreeMap<String, SymbolMarket>,
    /// Where the archives are (served as Vision), if any.
    pub vision_root: Option<PathBuf>,
    /// Recorded WebSocket traffic to replay instead of the market's own
    /// streams (`--from-capture`).
    pub capture: Option<super::capture::Capture>,
}

/// The kinds the REST side serves, loaded from their daily (or monthly) archives.
const LOADED: [VisionKind; 7] = [
    VisionKind::Klines,
    VisionKind::MarkPriceKlines,
    VisionKind::IndexPriceKlines,
    VisionKind::PremiumIndexKlines,
    VisionKind::AggTrades,
    VisionKind::Metrics,
    VisionKind::FundingRate,
];

impl Market {
    /// Loads every archive of `symbols` under `dir` (Vision's layout: the
    /// `data/futures/um/` prefix optional).
    pub fn from_vision(dir: &Path, symbols: &[String]) -> anyhow::Result<Market> {
        let root = [dir.join("data/futures/um"), dir.to_path_buf()]
            .into_iter()
            .find(|r| r.join("daily").is_dir())
            .with_context(|| format!("{}: no Vision `daily/` directory", dir.display()))?;
        let mut market = Market {
            symbols: BTreeMap::new(),
            vision_root: Some(root.clone()),
            capture: None,
        };
        for symbol in symbols {
            let mut m = SymbolMarket::default();
            for kind in LOADED {
                let folder = root.join(vision::folder_path(kind, symbol));
                for file in archives(&folder)? {
                    vision::load(&file, kind, &mut m)
                        .with_context(|| format!("loading {}", file.display()))?;
                }
            }
            m.agg_trades.sort_by_key(|t| t.agg_trade_id);
            m.agg_trades.dedup_by_key(|t| t.agg_trade_id);
            m.metrics.sort_by_key(|p| p.create_time);
            m.metrics.dedup_by_key(|p| p.create_time);
            m.funding.sort_by_key(|f| f.funding_time);
            m.book_ticker_archives =
                archives(&root.join(vision::folder_path(VisionKind::BookTicker, symbol)))?;
            m.funding.dedup_by_key(|f| f.funding_time);
            market.symbols.insert(symbol.clone(), m);
        }
        Ok(market)
    }

    /// The latest time the market has a fact for: the simulator's default "now".
    pub fn end_ms(&self) -> i64 {
        self.symbols
            .values()
            .filter_map(|m| m.klines.keys().map(|(_, t)| t + MINUTE_MS).max())
            .max()
            .unwrap_or(0)
    }
}

/// The `.zip` files of one folder, sorted (none if it does not exist).
fn archives(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "zip") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
