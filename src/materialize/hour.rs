//! One symbol-hour: its facts in, its minute rows out (`spec/schema.md`).
//!
//! [`HourFacts`] is everything an hour depends on, already reduced to one fact
//! per natural key. It includes the look-back the fill rules need (an hour of
//! book updates and as-of points before the hour, 8 h 1 min of funding), so an
//! hour's rows are a function of the log alone: replaying one hour gives what a
//! full replay gives. [`build_hour`] is pure and ignores input order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use super::book::BookMinute;
use super::exact::Exact;
use super::order_book;
use super::trades::TradeMinute;
use crate::event::{
    AggTrade, BookTicker, DepthDiff, DepthSnapshot, FundingRate, Kline, KlineKind, Liquidation,
    LongShortRatio, MarkPrice, Metrics, OpenInterest, PremiumIndex, RatioKind, Side, Timed,
};
use crate::ledger::{BookHealth, Finding};
use crate::schema::MinuteRow;
use crate::time::{HOUR_MS, MINUTE_MS};

/// Forward fills and as-of joins reach back at most this far.
const FILL_LIMIT_MS: i64 = 60 * MINUTE_MS;
/// A settled funding rate is carried at most this long.
const FUNDING_CARRY_MS: i64 = 8 * HOUR_MS + MINUTE_MS;

/// Everything one symbol-hour depends on: one fact per natural key.
#[derive(Debug, Clone, Default)]
pub struct HourFacts {
    /// Start of the hour, epoch ms (a multiple of [`HOUR_MS`]).
    pub hour_start: i64,
    /// 1-minute klines of every kind opening in the hour.
    pub klines: Vec<Kline>,
    /// aggTrades of the hour.
    pub agg_trades: Vec<AggTrade>,
    /// bookTicker updates from 60 minutes before the hour to its end.
    pub book_tickers: Vec<BookTicker>,
    /// Vision metrics points from 60 minutes before the hour to its end.
    pub metrics: Vec<Metrics>,
    /// Open-interest points, same window.
    pub open_interest: Vec<OpenInterest>,
    /// Long/short ratio points, same window.
    pub ratios: Vec<LongShortRatio>,
    /// Funding settlements from 8 h 1 min before the hour to its end.
    pub funding: Vec<FundingRate>,
    /// Mark price stream updates of the hour.
    pub mark_prices: Vec<MarkPrice>,
    /// premiumIndex polls of the hour.
    pub premium_polls: Vec<PremiumIndex>,
    /// Depth diffs from 60 minutes before the hour to its end, each with its
    /// local arrival time (ms), in final-update-id order.
    pub depth_diffs: Vec<(DepthDiff, i64)>,
    /// Depth snapshots, same window, in `lastUpdateId` order.
    pub depth_snapshots: Vec<DepthSnapshot>,
    /// Liquidations of the hour.
    pub liquidations: Vec<Liquidation>,
    /// Times a liquidation stream was connected (overlapping the hour).
    pub liquidation_coverage: Vec<Range<i64>>,
}

/// What one hour gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourOutput {
    /// Rows of the minutes that have every HARD_REQUIRED input, in time order.
    pub rows: Vec<MinuteRow>,
    /// Minutes not written, with the HARD_REQUIRED inputs they lack.
    pub incomplete: Vec<(i64, Vec<&'static str>)>,
    /// Invariant violations in written minutes.
    pub findings: Vec<Finding>,
    /// The L2 book's health, for an hour with depth diffs of its own.
    pub book: Option<BookHealth>,
}

/// Folds an hour's facts into its rows.
pub fn build_hour(facts: &HourFacts) -> HourOutput {
    let h = facts.hour_start;
    let klines = index_klines(&facts.klines, h);
    let trades = in_order(&facts.agg_trades, |t| (t.transact_time, t.agg_trade_id));
    let trades = by_minute(&trades, |t| t.transact_time);
    let books = in_order(&facts.book_tickers, |b| (b.time(), b.update_id));
    let books = by_minute(&books, Timed::time);
    let book_minutes: BTreeMap<i64, BookMinute> = books
        .iter()
        .filter_map(|(m, us)| Some((*m, BookMinute::fold(us)?)))
        .collect();
    let depth = depth_by_minute(facts);
    let order_book = (!depth.is_empty())
        .then(|| order_book::rebuild(h, &facts.depth_snapshots, &facts.depth_diffs));
    let mut out = HourOutput {
        book: order_book.as_ref().map(|b| b.health),
        ..HourOutput::default()
    };
    for minute in (h..h + HOUR_MS).step_by(MINUTE_MS as usize) {
        let kline = |kind| klines.get(&(kind, minute));
        let (Some(trade), Some(mark), Some(index)) = (
            kline(KlineKind::Trade),
            kline(KlineKind::Mark),
            kline(KlineKind::Index),
        ) else {
            let missing = [
                (KlineKind::Trade, "trade kline"),
                (KlineKind::Mark, "mark price kline"),
                (KlineKind::Index, "index price kline"),
            ]
            .into_iter()
            .filter(|(k, _)| kline(*k).is_none())
            .map(|(_, name)| name)
            .collect();
            out.incomplete.push((minute, missing));
            continue;
        };
        let minute_trades = trades.get(&minute).copied().unwrap_or_default();
        let mut row = MinuteRow {
            timestamp: minute,
            open: trade.open.to_f64(),
            high: trade.high.to_f64(),
            low: trade.low.to_f64(),
            close: trade.close.to_f64(),
            volume_btc: trade.volume.to_f64(),
            volume_usdt: trade.quote_volume.to_f64(),
            trade_count: trade.trade_count as i64,
            avg_trade_size_btc: Some(if trade.trade_count == 0 {
                0.0
            } else {
                trade.volume.to_f64() / trade.trade_count as f64
            }),
            taker_buy_vol_btc: Some(trade.taker_buy_volume.to_f64()),
            taker_buy_vol_usdt: Some(trade.taker_buy_quote_volume.to_f64()),
            mark_price_open: mark.open.to_f64(),
            mark_price_close: mark.close.to_f64(),
            index_price_open: index.open.to_f64(),
            index_price_close: index.close.to_f64(),
            premium_index: kline(KlineKind::Premium).map(|k| k.close.to_f64()),
            ..MinuteRow::default()
        };
        let folded = TradeMinute::fold(minute_trades);
        fill_trades(&mut row, &folded);
        if !minute_trades.is_empty() {
            check_invariants(&mut out.findings, trade, &folded, &row);
        }
        fill_book(&mut row, minute, &book_minutes);
        fill_as_of(&mut row, minute, facts);
        // A settlement counts from the minute holding its timestamp (one stamped
        // 00:00:00.001 shows at 00:00), and is carried 8 h 1 min at most.
        row.funding_rate = facts
            .funding
            .iter()
            .filter(|f| {
                f.funding_time < minute + MINUTE_MS && minute - f.funding_time <= FUNDING_CARRY_MS
            })
            .max_by_key(|f| f.funding_time)
            .map(|f| f.rate.to_f64());
        fill_predicted_funding(&mut row, minute, facts);
        if let Some(diffs) = depth.get(&minute) {
            fill_depth(&mut row, diffs);
        }
        row.price_impact_100k = order_book
            .as_ref()
            .and_then(|b| b.minutes[((minute - h) / MINUTE_MS) as usize].flatten());
        fill_liquidations(&mut row, minute, facts);
        out.rows.push(row);
    }
    out
}

fn index_klines(klines: &[Kline], h: i64) -> BTreeMap<(KlineKind, i64), &Kline> {
    klines
        .iter()
        .filter(|k| k.interval_ms == MINUTE_MS && (h..h + HOUR_MS).contains(&k.open_time))
        .map(|k| ((k.kind, k.open_time), k))
        .collect()
}

/// `items` in `order`: borrowed when they already are (the collector's
/// output), sorted into a copy otherwise.
fn in_order<T: Clone, K: Ord>(items: &[T], order: impl Fn(&T) -> K) -> Cow<'_, [T]> {
    if items.is_sorted_by_key(&order) {
        Cow::Borrowed(items)
    } else {
        let mut sorted = items.to_vec();
        sorted.sort_by_key(order);
        Cow::Owned(sorted)
    }
}

/// Splits items in time order into their minutes.
fn by_minute<T>(items: &[T], time: impl Fn(&T) -> i64) -> BTreeMap<i64, &[T]> {
    let minute = |item: &T| time(item).div_euclid(MINUTE_MS) * MINUTE_MS;
    items
        .chunk_by(|a, b| minute(a) == minute(b))
        .map(|run| (minute(&run[0]), run))
        .collect()
}

fn fill_trades(row: &mut MinuteRow, t: &TradeMinute) {
    row.transact_time = t.last_transact_time;
    row.vwap_1m = Some(t.vwap(row.close));
    row.max_trade_size_btc = Some(t.max_quantity.map_or(0.0, |q| q.to_f64()));
    row.net_taker_vol_btc = Some(t.net_taker_volume());
    row.count_buy_trades = Some(t.count_buy_trades as i64);
    row.count_sell_trades = Some(t.count_sell_trades as i64);
    row.taker_buy_ratio = t.taker_buy_ratio();
    row.vol_buy_whale_btc = Some(t.whale_buy_quantity.to_f64());
    row.vol_sell_whale_btc = Some(t.whale_sell_quantity.to_f64());
    row.vol_buy_retail_btc = Some(t.retail_buy_quantity.to_f64());
    row.vol_sell_retail_btc = Some(t.retail_sell_quantity.to_f64());
    row.whale_trade_count = Some(t.whale_trades as i64);
    row.realized_vol_1m = Some(t.realized_vol);
}

/// The invariants of `spec/schema.md` for a minute with klines and aggTrades.
fn check_invariants(findings: &mut Vec<Finding>, kline: &Kline, t: &TradeMinute, row: &MinuteRow) {
    let minute = row.timestamp;
    let mut finding = |check: &str, detail: String| {
        findings.push(Finding {
            minute,
            check: check.to_string(),
            detail,
        });
    };
    if t.count_buy_trades + t.count_sell_trades != kline.trade_count {
        finding(
            "count_buy_trades + count_sell_trades == trade_count",
            format!(
                "{} + {} != {}",
                t.count_buy_trades, t.count_sell_trades, kline.trade_count
            ),
        );
    }
    if t.quantity.cmp_value(Exact::of(kline.volume)).is_ne() {
        finding(
            "sum(aggTrade quantity) == volume_btc",
            format!("{} != {}", t.quantity.to_f64(), kline.volume),
        );
    }
    if t.buy_quantity
        .cmp_value(Exact::of(kline.taker_buy_volume))
        .is_ne()
    {
        finding(
            "sum(buy quantity) == taker_buy_vol_btc",
            format!("{} != {}", t.buy_quantity.to_f64(), kline.taker_buy_volume),
        );
    }
    let (open, high, low, close) = (row.open, row.high, row.low, row.close);
    if !(low <= open && open <= high && low <= close && close <= high) {
        finding(
            "low <= open, close <= high",
            format!("o {open} h {high} l {low} c {close}"),
        );
    }
    if let Some(vwap) = row.vwap_1m {
        if !(low <= vwap && vwap <= high) {
            finding(
                "low <= vwap_1m <= high",
                format!("vwap {vwap} outside [{low}, {high}]"),
            );
        }
    }
}

/// #14 from the minute itself; #38–42 from it or carried from the newest
/// earlier minute with updates, at most 60 minutes back.
fn fill_book(row: &mut MinuteRow, minute: i64, books: &BTreeMap<i64, BookMinute>) {
    row.micro_price_close = books.get(&minute).and_then(|b| b.micro_price_close);
    let carried = books
        .range(minute - FILL_LIMIT_MS..=minute)
        .next_back()
        .map(|(_, b)| b);
    if let Some(b) = carried {
        row.avg_spread_usdt = Some(b.avg_spread);
        row.bid_ask_imbalance = b.imbalance;
        row.avg_bid_depth = Some(b.avg_bid_depth);
        row.avg_ask_depth = Some(b.avg_ask_depth);
        row.spread_pct = b.spread_pct;
    }
}

/// The newest `(time, value)` stamped at or before `minute` and at most 60
/// minutes old, among items that have the value. Ties go to the larger value
/// bits: arbitrary, but never the input order.
fn as_of<T>(
    items: &[T],
    minute: i64,
    time: impl Fn(&T) -> i64,
    value: impl Fn(&T) -> Option<f64>,
) -> Option<(i64, f64)> {
    items
        .iter()
        .filter(|i| time(i) <= minute && minute - time(i) <= FILL_LIMIT_MS)
        .filter_map(|i| Some((time(i), value(i)?)))
        .max_by_key(|(t, v)| (*t, v.to_bits()))
}

/// Of a Vision point and a REST point, the newer; Vision on a tie (precedence).
fn newer(vision: Option<(i64, f64)>, rest: Option<(i64, f64)>) -> Option<(i64, f64)> {
    match (vision, rest) {
        (Some(v), Some(r)) if r.0 > v.0 => Some(r),
        (Some(v), _) => Some(v),
        (None, r) => r,
    }
}

/// #44–50: as-of the minute start, from Vision metrics or the REST series.
fn fill_as_of(row: &mut MinuteRow, minute: i64, f: &HourFacts) {
    let metrics = |pick: fn(&Metrics) -> Option<crate::event::Decimal>| {
        as_of(
            &f.metrics,
            minute,
            |m| m.create_time,
            |m| pick(m).map(|d| d.to_f64()),
        )
    };
    let ratios = |kind: RatioKind, pick: fn(&LongShortRatio) -> f64| {
        as_of(
            &f.ratios,
            minute,
            |r| r.time,
            |r| (r.kind == kind).then(|| pick(r)),
        )
    };
    let oi = as_of(
        &f.open_interest,
        minute,
        |p| p.time,
        |p| Some(p.contracts.to_f64()),
    );
    let oi_value = as_of(
        &f.open_interest,
        minute,
        |p| p.time,
        |p| p.value_usdt.map(|v| v.to_f64()),
    );
    row.oi_contracts = newer(metrics(|m| m.sum_open_interest), oi).map(|v| v.1);
    row.oi_value_usdt = newer(metrics(|m| m.sum_open_interest_value), oi_value).map(|v| v.1);
    row.global_ls_ratio_acct = newer(
        metrics(|m| m.count_long_short_ratio),
        ratios(RatioKind::GlobalAccount, |r| r.ratio.to_f64()),
    )
    .map(|v| v.1);

    // The top-trader shares come with a REST point; from metrics, r/(1+r), 1/(1+r).
    let top_vision = metrics(|m| m.count_toptrader_long_short_ratio);
    let top_rest = ratios(RatioKind::TopAccount, |r| r.ratio.to_f64());
    let rest_is_newer = match (top_vision, top_rest) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(v), Some(r)) => r.0 > v.0,
    };
    if rest_is_newer {
        row.top_trader_ls_ratio_acct = top_rest.map(|v| v.1);
        row.top_trader_long_pct = ratios(RatioKind::TopAccount, |r| r.long.to_f64()).map(|v| v.1);
        row.top_trader_short_pct = ratios(RatioKind::TopAccount, |r| r.short.to_f64()).map(|v| v.1);
    } else if let Some((_, r)) = top_vision {
        row.top_trader_ls_ratio_acct = Some(r);
        row.top_trader_long_pct = Some(r / (1.0 + r));
        row.top_trader_short_pct = Some(1.0 / (1.0 + r));
    }
    row.ls_ratio_divergence = row
        .top_trader_ls_ratio_acct
        .zip(row.global_ls_ratio_acct)
        .map(|(t, g)| t - g);
}

/// #57–58: the last value observed in the minute, from the mark price stream or
/// premiumIndex polls (the stream first when both share a millisecond).
fn fill_predicted_funding(row: &mut MinuteRow, minute: i64, f: &HourFacts) {
    let in_minute = |t: i64| (minute..minute + MINUTE_MS).contains(&t);
    let stream = f
        .mark_prices
        .iter()
        .filter(|m| in_minute(m.event_time))
        .max_by_key(|m| m.event_time)
        .map(|m| (m.event_time, 1, m.funding_rate, m.next_funding_time));
    let poll = f
        .premium_polls
        .iter()
        .filter(|p| in_minute(p.time))
        .max_by_key(|p| p.time)
        .map(|p| (p.time, 0, p.last_funding_rate, p.next_funding_time));
    if let Some((_, _, rate, next)) = stream.into_iter().chain(poll).max_by_key(|v| (v.0, v.1)) {
        row.predicted_funding = Some(rate.to_f64());
        row.next_funding_time = Some(next);
    }
}

/// The hour's depth diffs by the minute of their `E`, each minute's in
/// `(E, u)` order.
fn depth_by_minute(facts: &HourFacts) -> BTreeMap<i64, Vec<&(DepthDiff, i64)>> {
    let hour = facts.hour_start..facts.hour_start + HOUR_MS;
    let mut minutes: BTreeMap<i64, Vec<&(DepthDiff, i64)>> = BTreeMap::new();
    for diff in facts
        .depth_diffs
        .iter()
        .filter(|(d, _)| hour.contains(&d.event_time))
    {
        let minute = diff.0.event_time.div_euclid(MINUTE_MS) * MINUTE_MS;
        minutes.entry(minute).or_default().push(diff);
    }
    for diffs in minutes.values_mut() {
        diffs.sort_by_key(|(d, _)| (d.event_time, d.final_update_id));
    }
    minutes
}

/// #1, 3–7 from the minute's depth diffs (bucketed by `E`, in `(E, u)` order).
fn fill_depth(row: &mut MinuteRow, mine: &[&(DepthDiff, i64)]) {
    let Some((last, arrival)) = mine.last() else {
        return;
    };
    row.event_time = Some(last.event_time);
    row.arrival_time = Some(*arrival);
    row.latency_engine = Some(p95(mine
        .iter()
        .map(|(d, _)| d.event_time - d.transaction_time)
        .collect()));
    row.latency_network = Some(p95(mine.iter().map(|(d, a)| a - d.event_time).collect()));
    row.update_id_start = mine.iter().map(|(d, _)| d.first_update_id as i64).min();
    row.update_id_end = mine.iter().map(|(d, _)| d.final_update_id as i64).max();
}

/// The 95th percentile by nearest rank: the ⌈0.95·n⌉-th smallest.
fn p95(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    let rank = (values.len() * 95).div_ceil(100).max(1);
    values[rank - 1]
}

/// A heartbeat lands a little after its second starts: coverage that begins
/// this soon after the minute starts still covers it.
const COVERAGE_START_SLACK_MS: i64 = 1_500;

/// #32–37. A minute is covered when a served liquidation subscription was
/// watched through all of it (its connection's heartbeat, see
/// `liquidation_coverage`), or when it delivered events in it; covered and
/// quiet is 0, uncovered is NULL.
fn fill_liquidations(row: &mut MinuteRow, minute: i64, f: &HourFacts) {
    let span = minute..minute + MINUTE_MS;
    let events: Vec<&Liquidation> = f
        .liquidations
        .iter()
        .filter(|l| span.contains(&l.trade_time))
        .collect();
    let covered = !events.is_empty()
        || f.liquidation_coverage
            .iter()
            .any(|c| c.start <= span.start + COVERAGE_START_SLACK_MS && span.end <= c.end);
    if !covered {
        return;
    }
    let (mut long, mut short, mut filled, mut orig) =
        (Exact::ZERO, Exact::ZERO, Exact::ZERO, Exact::ZERO);
    let (mut long_n, mut short_n) = (0i64, 0i64);
    for l in &events {
        let value = Exact::product(l.avg_price, l.filled_qty);
        match l.side {
            Side::Sell => {
                long = long + value;
                long_n += 1;
            }
            Side::Buy => {
                short = short + value;
                short_n += 1;
            }
        }
        filled = filled + Exact::of(l.filled_qty);
        orig = orig + Exact::of(l.orig_qty);
    }
    row.liq_long_vol_usdt = Some(long.to_f64());
    row.liq_short_vol_usdt = Some(short.to_f64());
    row.liq_long_count = Some(long_n);
    row.liq_short_count = Some(short_n);
    row.liq_avg_fill_price = (!filled.is_zero()).then(|| (long + short).to_f64() / filled.to_f64());
    row.liq_unfilled_ratio = (!orig.is_zero()).then(|| (orig - filled).to_f64() / orig.to_f64());
}
