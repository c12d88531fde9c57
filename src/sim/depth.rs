//! The simulated order book: made up, but one book, told the same way by the
//! depth stream and by the REST snapshot, so that a client that follows the
//! exchange's sync rules (`../shared/spec/binance.md`, "Local order book")
//! rebuilds exactly the book the simulator holds.
//!
//! The book of a symbol at tick `k` (every 100 ms) is a function of `k` and of
//! the last trade at or before the tick, `p`: 1 000 bids from `p` down and 1 000
//! asks from one price step above `p` up, sizes made up from the price; the 5
//! best levels of each side change size every tick. Diff `k` carries every
//! level that differs between ticks `k − 1` and `k` (size 0: gone). Update ids
//! are one sequence over all symbols, as on Binance: diff `k` of the `i`-th of
//! `n` symbols spans ids `(k·n + i)·10 … (k·n + i)·10 + 9`, its `pu` the final
//! id of diff `k − 1`. A snapshot taken during tick `k` holds the book of tick
//! `k − 1` with a `lastUpdateId` inside diff `k`'s span: diff `k`, already
//! sent, brackets it.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::market::SymbolMarket;
use super::tape::Message;
use crate::event::Decimal;

/// One diff per symbol every this long (`@depth@100ms`).
pub const TICK_MS: i64 = 100;
/// Levels per side.
const LEVELS: i64 = 1_000;
/// Levels at the top of each side whose size changes every tick.
const TOP: i64 = 5;
/// Update ids per diff.
const IDS: u64 = 10;
/// Sizes are in thousandths.
const SIZE_SCALE: u8 = 3;

/// A symbol's book: its place in the update-id sequence and its prices.
pub struct Book<'a> {
    symbol: String,
    /// `<symbol>@depth@100ms`.
    stream: std::sync::Arc<str>,
    /// The symbol's trades, in time order.
    market: &'a SymbolMarket,
    /// Its position among the market's `of` symbols.
    index: u64,
    of: u64,
    /// Decimal places of a price step (the most any trade price has).
    scale: u8,
}

impl<'a> Book<'a> {
    /// The book of `symbol`, the `index`-th of `of` symbols.
    pub fn new(symbol: &str, market: &'a SymbolMarket, index: usize, of: usize) -> Book<'a> {
        let scale = market
            .agg_trades
            .iter()
            .map(|t| t.price.scale())
            .max()
            .unwrap_or(0);
        Book {
            symbol: symbol.to_owned(),
            stream: format!("{}@depth@100ms", symbol.to_lowercase()).into(),
            market,
            index: index as u64,
            of: of.max(1) as u64,
            scale,
        }
    }

    /// The last trade price at or before tick `k`, in price steps.
    fn reference(&self, k: i64) -> Option<i64> {
        let trades = &self.market.agg_trades;
        let n = trades.partition_point(|t| t.transact_time <= k * TICK_MS);
        let price = trades[..n].last()?.price;
        Some(price.mantissa() * 10i64.pow(u32::from(self.scale - price.scale())))
    }

    /// The final update id of diff `k`.
    fn final_id(&self, k: i64) -> u64 {
        (k.max(0) as u64 * self.of + self.index) * IDS + IDS - 1
    }

    fn price(&self, steps: i64) -> String {
        Decimal::new(steps, self.scale)
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    /// Diff `k` as a `depthUpdate` message; `None` before the first trade.
    fn diff(&self, k: i64) -> Option<Message> {
        let (before, now) = (self.reference(k - 1)?, self.reference(k)?);
        let (low, high) = (before.min(now), before.max(now));
        // The side's changed levels as JSON: `[["price","qty"],…]`.
        let changed = |side: Side, ranges: [(i64, i64); 2]| -> String {
            let mut levels = String::from("[");
            let mut seen = Vec::new();
            for (from, to) in ranges {
                // A jump of more than the book's depth replaces it: bounded.
                for x in (from + 1..=to).take(2 * LEVELS as usize) {
                    if seen.contains(&x) {
                        continue;
                    }
                    seen.push(x);
                    let (old, new) = (side.size(before, x, k - 1), side.size(now, x, k));
                    if old != new {
                        if levels.len() > 1 {
                            levels.push(',');
                        }
                        if let (Ok(price), Ok(qty)) = (
                            Decimal::new(x, self.scale),
                            Decimal::new(new.unwrap_or(0), SIZE_SCALE),
                        ) {
                            let _ = write!(levels, r#"["{price}","{qty}"]"#);
                        }
                    }
                }
            }
            levels.push(']');
            levels
        };
        let bids = changed(
            Side::Bid,
            [(low - TOP, high), (low - LEVELS, high - LEVELS)],
        );
        let asks = changed(
            Side::Ask,
            [(low, high + TOP), (low + LEVELS, high + LEVELS)],
        );
        let u = self.final_id(k);
        let time = k * TICK_MS;
        let data = format!(
            r#"{{"e":"depthUpdate","E":{time},"T":{},"s":"{}","U":{},"u":{u},"pu":{},"b":{bids},"a":{asks}}}"#,
            time - 3,
            self.symbol,
            u + 1 - IDS,
            self.final_id(k - 1),
        );
        Some(Message {
            time,
            stream: self.stream.clone(),
            data,
        })
    }

    /// `/fapi/v1/depth` at `now_ms` with `limit` levels a side.
    pub fn snapshot(&self, now_ms: i64, limit: i64) -> Value {
        let k = now_ms.div_euclid(TICK_MS);
        let p = self.reference(k - 1).unwrap_or(0);
        let side = |side: Side, steps: &mut dyn Iterator<Item = i64>| -> Vec<Value> {
            steps
                .take(limit as usize)
                .filter_map(|x| Some(json!([self.price(x), size(side.size(p, x, k - 1)?)])))
                .collect()
        };
        json!({
            "lastUpdateId": self.final_id(k) - IDS / 2,
            "E": now_ms,
            "T": now_ms,
            "bids": side(Side::Bid, &mut (0..LEVELS).map(|i| p - i)),
            "asks": side(Side::Ask, &mut (1..=LEVELS).map(|i| p + i)),
        })
    }
}

/// The diffs of every book during the minute starting at `minute`, but the
/// one at `gap_at` (the `--depth-gap-at` fault: a `pu` discontinuity, as
/// after an engine restart).
pub fn minute(books: &[Book<'_>], minute: i64, gap_at: Option<i64>, out: &mut Vec<Message>) {
    let gap = gap_at.map(|t| t.div_euclid(TICK_MS));
    for book in books {
        let ticks =
            minute.div_euclid(TICK_MS)..(minute + crate::time::MINUTE_MS).div_euclid(TICK_MS);
        out.extend(
            ticks
                .filter(|k| Some(*k) != gap)
                .filter_map(|k| book.diff(k)),
        );
    }
}

#[derive(Clone, Copy)]
enum Side {
    Bid,
    Ask,
}

impl Side {
    /// The size (thousandths) at price step `x` when the last trade is `p`,
    /// at tick `k`; `None`: no level there.
    fn size(self, p: i64, x: i64, k: i64) -> Option<i64> {
        let (inside, top) = match self {
            Side::Bid => (p - LEVELS < x && x <= p, x > p - TOP),
            Side::Ask => (p < x && x <= p + LEVELS, x <= p + TOP),
        };
        let base = 1 + x.rem_euclid(97) * 13;
        inside.then(|| if top { base + 1 + churn(x, k) } else { base })
    }
}

/// A made-up size change for the top levels: a mix of price and tick.
fn churn(x: i64, k: i64) -> i64 {
    let mixed = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (k as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    (mixed >> 40) as i64 % 500
}

fn size(thousandths: i64) -> String {
    Decimal::new(thousandths, SIZE_SCALE)
        .map(|d| d.to_string())
        .unwrap_or_default()
}
