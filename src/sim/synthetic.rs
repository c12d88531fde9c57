//! A deterministic synthetic market, written as Binance Vision archives.
//!
//! `bml sim serve --seed N` without `--from-vision` serves a market made up
//! from the seed: per minute, aggTrades (a random walk on a 0.1 tick, log-normal
//! sizes with occasional whales, consecutive ids), the trade kline folded
//! exactly from them, bookTicker updates around them (until 2024-03-31, when
//! Vision stopped publishing them), mark and index price klines near the trade
//! price, the premium index kline between them; metrics (open interest and ratios) every
//! 5 minutes; a funding settlement every 8 hours. It is written in Vision's
//! exact layout (CSV with header in a zip, `.CHECKSUM` beside it), and the
//! simulator then loads it like any Vision directory: so REST and Vision serve
//! the same facts, and the same seed always gives the same bytes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{Datelike, NaiveDate};
use sha2::Digest;

use super::vision;
use crate::binance::{LAST_BOOK_TICKER_DAY, METRICS_LABELS_MOVED, METRICS_PERIOD_MS};
use crate::event::{Decimal, VisionKind};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// What to make up.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Upper-case symbols.
    pub symbols: Vec<String>,
    /// First day.
    pub first_day: NaiveDate,
    /// Days, from the first.
    pub days: u32,
    /// Seed of everything.
    pub seed: u64,
    /// Mean aggTrades per minute.
    pub trades_per_minute: u32,
}

/// Writes the market of `spec` under `dir` (Vision's `data/futures/um/` layout).
pub fn write_vision(dir: &Path, spec: &Spec) -> anyhow::Result<()> {
    for (n, symbol) in spec.symbols.iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(spec.seed.wrapping_mul(1_000_003) + n as u64);
        let mut state = State::new(&mut rng, 60_000.0 / (n as f64 + 1.0));
        let mut funding = Vec::new();
        for d in 0..spec.days {
            let day = spec.first_day + chrono::Days::new(u64::from(d));
            let tables = state.day(&mut rng, symbol, day, spec.trades_per_minute);
            for (kind, csv) in tables.archives {
                write_archive(dir, kind, symbol, &day.to_string(), &csv)?;
            }
            funding.extend(tables.funding);
        }
        // One monthly funding archive per month touched.
        let mut months: Vec<(i32, u32)> =
            funding.iter().map(|(d, _)| (d.year(), d.month())).collect();
        months.dedup();
        for (year, month) in months {
            let mut csv = vision::header(VisionKind::FundingRate).to_string() + "\n";
            for (_, line) in funding
                .iter()
                .filter(|(d, _)| (d.year(), d.month()) == (year, month))
            {
                csv.push_str(line);
            }
            write_archive(
                dir,
                VisionKind::FundingRate,
                symbol,
                &format!("{year}-{month:02}"),
                &csv,
            )?;
        }
    }
    Ok(())
}

/// The market's state carried from minute to minute.
struct State {
    /// Last trade price, in 0.1 ticks.
    price: i64,
    next_agg_id: u64,
    next_trade_id: u64,
    next_book_id: u64,
    /// Open interest, in 0.0001 contracts.
    open_interest: i64,
    ratio: f64,
}

/// One day's archives (kind, CSV text) and its funding rows (day, CSV line).
struct DayTables {
    archives: Vec<(VisionKind, String)>,
    funding: Vec<(NaiveDate, String)>,
}

impl State {
    fn new(rng: &mut fastrand::Rng, price: f64) -> State {
        State {
            price: (price * 10.0) as i64,
            next_agg_id: 1_000_000_000 + rng.u64(0..1_000_000),
            next_book_id: 3_000_000_000_000 + rng.u64(0..1_000_000),
            next_trade_id: 4_000_000_000 + rng.u64(0..1_000_000),
            open_interest: 800_000_000,
            ratio: 1.3,
        }
    }

    fn day(
        &mut self,
        rng: &mut fastrand::Rng,
        symbol: &str,
        day: NaiveDate,
        per_minute: u32,
    ) -> DayTables {
        let header = |kind| vision::header(kind).to_string() + "\n";
        let kline_kinds = [
            VisionKind::Klines,
            VisionKind::MarkPriceKlines,
            VisionKind::IndexPriceKlines,
            VisionKind::PremiumIndexKlines,
        ];
        let mut csv: Vec<String> = kline_kinds.iter().map(|&k| header(k)).collect();
        let mut trades = header(VisionKind::AggTrades);
        // Vision stopped publishing bookTicker archives after 2024-03-31; the
        // market still has a best bid and ask (the live stream plays it), so
        // those days' rows are written too (the simulator withholds them from
        // its Vision side) from their own generator: the other facts stay
        // what they were before they were written.
        let published_book = day <= LAST_BOOK_TICKER_DAY;
        let mut book_only =
            fastrand::Rng::with_seed(rng.get_seed() ^ day.num_days_from_ce() as u64);
        let mut book = header(VisionKind::BookTicker);
        let mut metrics = header(VisionKind::Metrics);
        let mut funding = Vec::new();
        let start = day
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis();
        let price = |ticks: i64| Decimal::new(ticks, 1).expect("scale 1");
        for minute in (start..start + DAY_MS).step_by(MINUTE_MS as usize) {
            // Trades, and the trade kline folded from them exactly.
            let t = self.trades_of_minute(rng, minute, per_minute, &mut trades);
            let (open, high, low) = (t.open, t.high, t.low);
            let path = t.path;
            let book_rng = if published_book {
                &mut *rng
            } else {
                &mut book_only
            };
            self.book_minute(book_rng, minute, open, &path, &mut book);
            let close = self.price;
            let qty = |m: i64| Decimal::new(m, 3).expect("scale 3");
            let notional = |m: i64| Decimal::new(m, 4).expect("scale 4");
            let end = minute + MINUTE_MS - 1;
            csv[0].push_str(&format!(
                "{minute},{},{},{},{},{},{end},{},{},{},{},0\n",
                price(open),
                price(high),
                price(low),
                price(close),
                qty(t.volume),
                notional(t.quote),
                t.count,
                qty(t.buy_volume),
                notional(t.buy_quote),
            ));
            // Mark and index near the trade price; premium between them.
            let [mark, index, premium] = reference_lines(rng, minute, [open, high, low, close]);
            csv[1].push_str(&mark);
            csv[2].push_str(&index);
            csv[3].push_str(&premium);

            // Metrics every 5 minutes: the snapshot at the end of the period,
            // labelled by Vision at its time, or (files from 2026-06-25 on) at
            // the start of the period.
            if (minute / MINUTE_MS) % 5 == 4 {
                metrics.push_str(&self.metrics_row(rng, symbol, day, minute, close));
            }
            if (minute - start) % (8 * HOUR_MS) == 0 {
                let rate =
                    Decimal::new(10_000 + (normal(rng) * 3_000.0) as i64, 8).expect("scale 8");
                funding.push((day, format!("{minute},8,{rate}\n")));
            }
        }
        let mut archives: Vec<(VisionKind, String)> = kline_kinds.into_iter().zip(csv).collect();
        archives.push((VisionKind::AggTrades, trades));
        archives.push((VisionKind::BookTicker, book));
        archives.push((VisionKind::Metrics, metrics));
        DayTables { archives, funding }
    }

    /// One minute's aggTrades (appended to `trades` as Vision rows), and what
    /// the trade kline folds from them.
    fn trades_of_minute(
        &mut self,
        rng: &mut fastrand::Rng,
        minute: i64,
        per_minute: u32,
        trades: &mut String,
    ) -> MinuteTrades {
        let price = |ticks: i64| Decimal::new(ticks, 1).expect("scale 1");
        let n = (f64::from(per_minute) + f64::from(per_minute).sqrt() * normal(rng))
            .round()
            .max(1.0) as usize;
        let mut times: Vec<i64> = (0..n).map(|_| minute + rng.i64(0..MINUTE_MS)).collect();
        times.sort_unstable();
        let mut t = MinuteTrades {
            open: self.price,
            high: self.price,
            low: self.price,
            path: Vec::with_capacity(n),
            ..MinuteTrades::default()
        };
        for (i, &time) in times.iter().enumerate() {
            if i > 0 {
                self.price += (normal(rng) * 3.0).round() as i64;
            }
            t.path.push((time, self.price));
            t.high = t.high.max(self.price);
            t.low = t.low.min(self.price);
            // Quantity in 0.001: log-normal around 0.02, a whale now and then.
            let mut qty = ((normal(rng) * 1.2 - 3.9).exp() * 1000.0).round().max(1.0) as i64;
            if rng.f64() < 0.01 {
                qty *= 100;
            }
            let underlying = [1, 1, 1, 2, 3][rng.usize(0..5)];
            let maker_buyer = rng.bool();
            let (first, last) = (self.next_trade_id, self.next_trade_id + underlying - 1);
            trades.push_str(&format!(
                "{},{},{},{first},{last},{time},{maker_buyer}\n",
                self.next_agg_id,
                price(self.price),
                Decimal::new(qty, 3).expect("scale 3"),
            ));
            self.next_agg_id += 1;
            self.next_trade_id += underlying;
            t.volume += qty;
            t.quote += self.price * qty;
            t.count += underlying;
            if !maker_buyer {
                t.buy_volume += qty;
                t.buy_quote += self.price * qty;
            }
        }
        t
    }

    /// The metrics row of the 5-minute period ending after `minute`: the
    /// snapshot at the end of the period, labelled by Vision at its time, or
    /// (files from 2026-06-25 on) at the start of the period.
    fn metrics_row(
        &mut self,
        rng: &mut fastrand::Rng,
        symbol: &str,
        day: NaiveDate,
        minute: i64,
        close: i64,
    ) -> String {
        self.open_interest += (normal(rng) * 2_000_000.0) as i64;
        self.ratio = (self.ratio + normal(rng) * 0.01).clamp(0.5, 3.0);
        let snapshot = minute + MINUTE_MS;
        let label = if day >= METRICS_LABELS_MOVED {
            snapshot - METRICS_PERIOD_MS
        } else {
            snapshot
        };
        let stamp = chrono::DateTime::from_timestamp_millis(label)
            .expect("in range")
            .format("%Y-%m-%d %H:%M:%S");
        let oi = Decimal::new(self.open_interest, 4).expect("scale 4");
        let value = self.open_interest as f64 / 1e4 * close as f64 / 10.0;
        let ratio = |r: f64| format!("{r:.5}");
        format!(
            "{stamp},{symbol},{oi},{value:.5},{},{},{},{}\n",
            ratio(self.ratio),
            ratio(self.ratio * 0.85),
            ratio(self.ratio * 1.2),
            ratio(1.0 + normal(rng) * 0.05),
        )
    }

    /// Two book updates per trade: the best bid at the last trade's price (the
    /// minute's open before the first), the ask one or two ticks above, sizes
    /// log-normal; `event_time` a few milliseconds after `transaction_time`.
    fn book_minute(
        &mut self,
        rng: &mut fastrand::Rng,
        minute: i64,
        open: i64,
        trades: &[(i64, i64)],
        csv: &mut String,
    ) {
        let mut times: Vec<i64> = (0..2 * trades.len().max(1))
            .map(|_| minute + rng.i64(0..MINUTE_MS))
            .collect();
        times.sort_unstable();
        let mut last = 0;
        for time in times {
            while last < trades.len() && trades[last].0 <= time {
                last += 1;
            }
            let bid = if last == 0 { open } else { trades[last - 1].1 };
            let ask = bid + 1 + i64::from(rng.u8(0..10) == 0);
            let size = |rng: &mut fastrand::Rng| {
                let m = ((normal(rng) - 0.5).exp() * 1000.0).round().max(1.0) as i64;
                Decimal::new(m, 3).expect("scale 3")
            };
            let (bid_qty, ask_qty) = (size(rng), size(rng));
            self.next_book_id += rng.u64(1..40);
            csv.push_str(&format!(
                "{},{},{bid_qty},{},{ask_qty},{time},{}\n",
                self.next_book_id,
                Decimal::new(bid, 1).expect("scale 1"),
                Decimal::new(ask, 1).expect("scale 1"),
                time + rng.i64(0..5),
            ));
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Writes one archive (a zip holding `{stem}.csv`) and its `.CHECKSUM`, with
/// no timestamps in the zip, so the bytes depend on the contents only.
fn write_archive(
    dir: &Path,
    kind: VisionKind,
    symbol: &str,
    period: &str,
    csv: &str,
) -> anyhow::Result<()> {
    let stem = vision::stem(kind, symbol, period);
    let path = dir
        .join("data/futures/um")
        .join(vision::folder_path(kind, symbol))
        .join(format!("{stem}.zip"));
    std::fs::create_dir_all(path.parent().expect("archives are in folders"))?;
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        zip.start_file(format!("{stem}.csv"), options)?;
        zip.write_all(csv.as_bytes())?;
        zip.finish()?;
    }
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    std::fs::write(
        path.with_extension("zip.CHECKSUM"),
        format!("{sha}  {stem}.zip\n"),
    )?;
    Ok(())
}

/// What one minute's trades fold into (prices in ticks of 0.1, quantities in
/// 0.001, notionals in 0.0001).
#[derive(Default)]
struct MinuteTrades {
    open: i64,
    high: i64,
    low: i64,
    volume: i64,
    quote: i64,
    count: u64,
    buy_volume: i64,
    buy_quote: i64,
    /// (time, price) of each trade, for the book around it.
    path: Vec<(i64, i64)>,
}

/// The minute's mark, index and premium kline rows: mark and index near the
/// trade prices `ohlc`, the premium between them.
fn reference_lines(rng: &mut fastrand::Rng, minute: i64, ohlc: [i64; 4]) -> [String; 3] {
    let [open, high, low, close] = ohlc;
    let price = |ticks: i64| Decimal::new(ticks, 1).expect("scale 1");
    let end = minute + MINUTE_MS - 1;
    let near = |rng: &mut fastrand::Rng| -> [i64; 4] {
        let mut p = [open, high, low, close].map(|p| p + (normal(rng) * 2.0).round() as i64);
        p[1] = p.iter().copied().max().expect("four");
        p[2] = p.iter().copied().min().expect("four");
        p
    };
    let (mark, index) = (near(rng), near(rng));
    let premium = |i: usize| {
        let value = (mark[i] - index[i]) as f64 / index[i] as f64;
        Decimal::new((value * 1e8).round() as i64, 8).expect("scale 8")
    };
    let mut premiums = [premium(0), premium(1), premium(2), premium(3)];
    let (lo, hi) = (
        *premiums.iter().min_by_key(|d| d.mantissa()).expect("four"),
        *premiums.iter().max_by_key(|d| d.mantissa()).expect("four"),
    );
    (premiums[1], premiums[2]) = (hi, lo);
    let line = |p: [Decimal; 4]| {
        format!(
            "{minute},{},{},{},{},0.000,{end},0.0000,0,0.000,0.0000,0\n",
            p[0], p[1], p[2], p[3]
        )
    };
    [
        line(mark.map(price)),
        line(index.map(price)),
        line(premiums),
    ]
}
