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
    let f = Fields(f);
    match kind {
        VisionKind::Klines
        | VisionKind::MarkPriceKlines
        | VisionKind::IndexPriceKlines
        | VisionKind::PremiumIndexKlines => {
            let k = kline_row(kind, &f)?;
            m.klines.insert((k.kind, k.open_time), k);
        }
        VisionKind::AggTrades => m.agg_trades.push(agg_trade_row(&f)?),
        VisionKind::Metrics => m.metrics.push(metrics_row(&f, file_day)?),
        VisionKind::FundingRate => m.funding.push(funding_row(&f)?),
        VisionKind::BookTicker | VisionKind::BookDepth => {}
    }
    Ok(())
}

/// The fields of one CSV row, read by position.
struct Fields<'a>(&'a [&'a str]);

impl Fields<'_> {
    fn need(&self, n: usize) -> anyhow::Result<()> {
        if self.0.len() < n {
            bail!("{} fields, expected {n}", self.0.len())
        }
        Ok(())
    }

    fn int(&self, i: usize) -> anyhow::Result<i64> {
        self.0[i]
            .parse::<i64>()
            .map_err(|e| anyhow!("field {i}: {e}"))
    }

    fn uint(&self, i: usize) -> anyhow::Result<u64> {
        Ok(u64::try_from(self.int(i)?)?)
    }

    fn dec(&self, i: usize) -> anyhow::Result<Decimal> {
        Decimal::parse(self.0[i].as_bytes()).map_err(|e| anyhow!("field {i}: {e}"))
    }

    /// An optional decimal: absent or empty is `None`.
    fn opt(&self, i: usize) -> anyhow::Result<Option<Decimal>> {
        match self.0.get(i) {
            None | Some(&"") => Ok(None),
            Some(_) => self.dec(i).map(Some),
        }
    }
}

fn kline_row(kind: VisionKind, f: &Fields<'_>) -> anyhow::Result<Kline> {
    f.need(11)?;
    let kline_kind = match kind {
        VisionKind::Klines => KlineKind::Trade,
        VisionKind::MarkPriceKlines => KlineKind::Mark,
        VisionKind::IndexPriceKlines => KlineKind::Index,
        _ => KlineKind::Premium,
    };
    let (open_time, close_time) = (f.int(0)?, f.int(6)?);
    Ok(Kline {
        kind: kline_kind,
        interval_ms: close_time + 1 - open_time,
        open_time,
        open: f.dec(1)?,
        high: f.dec(2)?,
        low: f.dec(3)?,
        close: f.dec(4)?,
        volume: f.dec(5)?,
        close_time,
        quote_volume: f.dec(7)?,
        trade_count: f.uint(8)?,
        taker_buy_volume: f.dec(9)?,
        taker_buy_quote_volume: f.dec(10)?,
        closed: true,
    })
}

fn agg_trade_row(f: &Fields<'_>) -> anyhow::Result<AggTrade> {
    f.need(7)?;
    Ok(AggTrade {
        agg_trade_id: f.uint(0)?,
        price: f.dec(1)?,
        quantity: f.dec(2)?,
        first_trade_id: f.uint(3)?,
        last_trade_id: f.uint(4)?,
        transact_time: f.int(5)?,
        is_buyer_maker: f.0[6].eq_ignore_ascii_case("true"),
    })
}

fn metrics_row(f: &Fields<'_>, file_day: Option<NaiveDate>) -> anyhow::Result<Metrics> {
    f.need(8)?;
    let label = chrono::NaiveDateTime::parse_from_str(f.0[0], "%Y-%m-%d %H:%M:%S")
        .context("create_time")?
        .and_utc()
        .timestamp_millis();
    let day = file_day.context("a metrics archive is named by its day")?;
    Ok(Metrics {
        create_time: metrics_snapshot_time(day, label),
        sum_open_interest: f.opt(2)?,
        sum_open_interest_value: f.opt(3)?,
        count_toptrader_long_short_ratio: f.opt(4)?,
        sum_toptrader_long_short_ratio: f.opt(5)?,
        count_long_short_ratio: f.opt(6)?,
        sum_taker_long_short_vol_ratio: f.opt(7)?,
    })
}

fn funding_row(f: &Fields<'_>) -> anyhow::Result<FundingRate> {
    f.need(3)?;
    Ok(FundingRate {
        funding_time: f.int(0)?,
        rate: f.dec(2)?,
        interval_hours: Some(u32::try_from(f.int(1)?)?),
        mark_price: None,
    })
}
