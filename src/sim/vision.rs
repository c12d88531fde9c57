//! The simulator's own knowledge of Vision archives: where each kind lives, its
//! CSV header, and how its rows read. Written from `spec/binance.md` and
//! binance-public-data's download scripts, and on purpose apart from the
//! client's code (`sources::vision`): a misreading shared by the client and the
//! simulator would pass every test and fail against the real exchange.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use chrono::NaiveDate;

use super::market::SymbolMarket;
use crate::binance::metrics_snapshot_time;
use crate::event::{AggTrade, Decimal, FundingRate, Kline, KlineKind, Metrics, VisionKind};

/// The folder Vision keeps a kind in (also the kind's name).
fn folder(kind: VisionKind) -> &'static str {
    match kind {
        VisionKind::Klines => "klines",
        VisionKind::MarkPriceKlines => "markPriceKlines",
        VisionKind::IndexPriceKlines => "indexPriceKlines",
        VisionKind::PremiumIndexKlines => "premiumIndexKlines",
        VisionKind::AggTrades => "aggTrades",
        VisionKind::BookTicker => "bookTicker",
        VisionKind::Metrics => "metrics",
        VisionKind::BookDepth => "bookDepth",
        VisionKind::FundingRate => "fundingRate",
    }
}

/// The folder of `symbol`'s archives of `kind`, under the USD-M base.
pub fn folder_path(kind: VisionKind, symbol: &str) -> String {
    match kind {
        VisionKind::FundingRate => format!("monthly/fundingRate/{symbol}"),
        k if k.is_kline() => format!("daily/{}/{symbol}/1m", folder(k)),
        k => format!("daily/{}/{symbol}", folder(k)),
    }
}

/// The archive's name without `.zip` (the CSV inside is this + `.csv`). Every
/// 1m kline kind is named `{S}-1m-{day}`, like the trade klines.
pub fn stem(kind: VisionKind, symbol: &str, period: &str) -> String {
    if kind.is_kline() {
        format!("{symbol}-1m-{period}")
    } else {
        format!("{symbol}-{}-{period}", folder(kind))
    }
}

/// The header line of the kinds the simulator writes.
pub fn header(kind: VisionKind) -> &'static str {
    match kind {
        VisionKind::AggTrades => {
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
        }
        VisionKind::BookTicker => {
            "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
        }
        VisionKind::Metrics => {
            "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio"
        }
        VisionKind::FundingRate => "calc_time,funding_interval_hours,last_funding_rate",
        VisionKind::BookDepth => "timestamp,percentage,depth,notional",
        _ => "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore",
    }
}

/// Reads every row of the archive at `file` (of `kind`) into `m`. Metrics
/// points are kept at their snapshot time, which is what REST's statistics
/// endpoints stamp them with.
pub fn load(file: &Path, kind: VisionKind, m: &mut SymbolMarket) -> anyhow::Result<()> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(file)?)?;
    let mut text = String::new();
    zip.by_index(0)?.read_to_string(&mut text)?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let file_day = name
        .strip_suffix(".zip")
        .and_then(|s| s.get(s.len().saturating_sub(10)..))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    for (n, line) in text.lines().enumerate() {
        // A header (newer files) starts with a letter; data rows with a digit.
        if line.is_empty() || line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        read_row(kind, &fields, file_day, m).with_context(|| format!("line {}", n + 1))?;
    }
    Ok(())
}

fn read_row(
    kind: VisionKind,
    f: &[&str],
    file_day: Option<NaiveDate>,
    m: &mut SymbolMarket,
) -> anyhow::Result<()> {
    let need = |n: usize| {
        if f.len() < n {
            bail!("{} fields, expected {n}", f.len())
        }
        Ok(())
    };
    let int = |i: usize| f[i].parse::<i64>().map_err(|e| anyhow!("field {i}: {e}"));
    let dec = |i: usize| Decimal::parse(f[i].as_bytes()).map_err(|e| anyhow!("field {i}: {e}"));
    let opt = |i: usize| match f.get(i) {
        None | Some(&"") => Ok(None),
        Some(_) => dec(i).map(Some),
    };
    match kind {
        VisionKind::Klines
        | VisionKind::MarkPriceKlines
        | VisionKind::IndexPriceKlines
        | VisionKind::PremiumIndexKlines => {
            need(11)?;
            let kline_kind = match kind {
                VisionKind::Klines => KlineKind::Trade,
                VisionKind::MarkPriceKlines => KlineKind::Mark,
                VisionKind::IndexPriceKlines => KlineKind::Index,
                _ => KlineKind::Premium,
            };
            let (open_time, close_time) = (int(0)?, int(6)?);
            let k = Kline {
                kind: kline_kind,
                interval_ms: close_time + 1 - open_time,
                open_time,
                open: dec(1)?,
                high: dec(2)?,
                low: dec(3)?,
                close: dec(4)?,
                volume: dec(5)?,
                close_time,
                quote_volume: dec(7)?,
                trade_count: u64::try_from(int(8)?)?,
                taker_buy_volume: dec(9)?,
                taker_buy_quote_volume: dec(10)?,
                closed: true,
            };
            m.klines.insert((k.kind, k.open_time), k);
        }
        VisionKind::AggTrades => {
            need(7)?;
            m.agg_trades.push(AggTrade {
                agg_trade_id: u64::try_from(int(0)?)?,
                price: dec(1)?,
                quantity: dec(2)?,
                first_trade_id: u64::try_from(int(3)?)?,
                last_trade_id: u64::try_from(int(4)?)?,
                transact_time: int(5)?,
                is_buyer_maker: f[6].eq_ignore_ascii_case("true"),
            });
        }
        VisionKind::Metrics => {
            need(8)?;
            let label = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
                .context("create_time")?
                .and_utc()
                .timestamp_millis();
            let day = file_day.context("a metrics archive is named by its day")?;
            m.metrics.push(Metrics {
                create_time: metrics_snapshot_time(day, label),
                sum_open_interest: opt(2)?,
                sum_open_interest_value: opt(3)?,
                count_toptrader_long_short_ratio: opt(4)?,
                sum_toptrader_long_short_ratio: opt(5)?,
                count_long_short_ratio: opt(6)?,
                sum_taker_long_short_vol_ratio: opt(7)?,
            });
        }
        VisionKind::FundingRate => {
            need(3)?;
            m.funding.push(FundingRate {
                funding_time: int(0)?,
                rate: dec(2)?,
                interval_hours: Some(u32::try_from(int(1)?)?),
                mark_price: None,
            });
        }
        VisionKind::BookTicker | VisionKind::BookDepth => {}
    }
    Ok(())
}
