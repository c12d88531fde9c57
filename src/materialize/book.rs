//! One minute's bookTicker updates folded into the book columns of
//! `spec/schema.md` (#14, 38–42), before any forward fill (that needs the
//! minutes before, and is the hour assembly's job).
//!
//! Means of quantities and spreads are exact sums divided once; means of
//! per-update ratios are float sums taken in `(time, update id)` order, so they
//! are deterministic too. An update whose bid and ask quantities are both 0 has
//! no imbalance: it is left out of that mean (the spec gives no value for it).

use super::exact::Exact;
use crate::event::BookTicker;

/// The aggregates of one minute's bookTicker updates.
#[derive(Debug, Clone, PartialEq)]
pub struct BookMinute {
    /// Updates folded (at least one).
    pub updates: u64,
    /// #14 `micro_price_close` from the minute's last update; `None` when its
    /// quantities sum to 0.
    pub micro_price_close: Option<f64>,
    /// #38 `avg_spread_usdt`: mean of ask − bid.
    pub avg_spread: f64,
    /// #39 `bid_ask_imbalance`: mean of (bid qty − ask qty) / (bid qty + ask qty).
    pub imbalance: Option<f64>,
    /// #40 `avg_bid_depth`: mean bid quantity.
    pub avg_bid_depth: f64,
    /// #41 `avg_ask_depth`: mean ask quantity.
    pub avg_ask_depth: f64,
    /// #42 `spread_pct`: mean of (ask − bid) / mid.
    pub spread_pct: Option<f64>,
}

impl BookMinute {
    /// Folds one minute's updates, free of duplicates and in
    /// `(BookTicker::time, update_id)` order; `None` when there are none.
    pub fn fold(updates: &[BookTicker]) -> Option<BookMinute> {
        let last = updates.last()?;
        let n = updates.len() as f64;
        // Every price as a mantissa at the minute's largest price scale, every
        // quantity at its largest quantity scale: the sums are then plain
        // integer sums, the same exact values `Exact` arithmetic gives, and a
        // float of an exact value does not depend on how it is scaled.
        let largest = |scale: fn(&BookTicker) -> u8| updates.iter().map(scale).max().unwrap_or(0);
        let p = largest(|u| u.bid_price.scale().max(u.ask_price.scale()));
        let q = largest(|u| u.bid_qty.scale().max(u.ask_qty.scale()));
        let at = |d, scale| Exact::of(d).rescaled(scale);
        let float = |mantissa, scale| Exact::new(mantissa, scale).to_f64();
        let sum = |a: i128, b: i128| a.checked_add(b).expect("book sum overflows 128 bits");
        let (mut spread, mut bid_qty, mut ask_qty) = (0i128, 0i128, 0i128);
        let (mut imbalance_sum, mut imbalance_n) = (0.0f64, 0u64);
        let (mut spread_pct_sum, mut spread_pct_n) = (0.0f64, 0u64);
        for u in updates {
            let (bid, ask) = (at(u.bid_price, p), at(u.ask_price, p));
            let (bid_q, ask_q) = (at(u.bid_qty, q), at(u.ask_qty, q));
            let gap = ask - bid;
            spread = sum(spread, gap);
            bid_qty = sum(bid_qty, bid_q);
            ask_qty = sum(ask_qty, ask_q);
            let depth = bid_q + ask_q;
            if depth != 0 {
                imbalance_sum += float(bid_q - ask_q, q) / float(depth, q);
                imbalance_n += 1;
            }
            let twice_mid = ask + bid;
            if twice_mid != 0 {
                spread_pct_sum += 2.0 * float(gap, p) / float(twice_mid, p);
                spread_pct_n += 1;
            }
        }
        let (spread, bid_qty, ask_qty) = (
            Exact::new(spread, p),
            Exact::new(bid_qty, q),
            Exact::new(ask_qty, q),
        );
        let last_depth = Exact::of(last.bid_qty) + Exact::of(last.ask_qty);
        let micro_price_close = (!last_depth.is_zero()).then(|| {
            let weighted = Exact::product(last.bid_price, last.ask_qty)
                + Exact::product(last.ask_price, last.bid_qty);
            weighted.to_f64() / last_depth.to_f64()
        });
        Some(BookMinute {
            updates: updates.len() as u64,
            micro_price_close,
            avg_spread: spread.to_f64() / n,
            imbalance: (imbalance_n > 0).then(|| imbalance_sum / imbalance_n as f64),
            avg_bid_depth: bid_qty.to_f64() / n,
            avg_ask_depth: ask_qty.to_f64() / n,
            spread_pct: (spread_pct_n > 0).then(|| spread_pct_sum / spread_pct_n as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::event::Decimal;
    use crate::event::Timed;

    fn update(id: u64, t: i64, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> BookTicker {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        BookTicker {
            update_id: id,
            bid_price: d(bid),
            bid_qty: d(bid_qty),
            ask_price: d(ask),
            ask_qty: d(ask_qty),
            transaction_time: t,
            event_time: t + 1,
        }
    }

    #[test]
    fn a_hand_computed_minute() {
        let updates = [
            update(1, 1000, "100.0", "3", "100.2", "1"),
            update(2, 2000, "100.1", "1", "100.2", "1"),
            update(3, 3000, "100.0", "0", "100.4", "0"),
        ];
        let m = BookMinute::fold(&updates).unwrap();
        assert_eq!(m.updates, 3);
        assert_eq!(m.micro_price_close, None, "last update has no quantity");
        assert!((m.avg_spread - (0.2 + 0.1 + 0.4) / 3.0).abs() < 1e-12);
        assert_eq!(m.imbalance, Some((0.5 + 0.0) / 2.0));
        assert_eq!((m.avg_bid_depth, m.avg_ask_depth), (4.0 / 3.0, 2.0 / 3.0));
        let pct = |bid: f64, ask: f64| (ask - bid) / ((ask + bid) / 2.0);
        let expected = (pct(100.0, 100.2) + pct(100.1, 100.2) + pct(100.0, 100.4)) / 3.0;
        assert!((m.spread_pct.unwrap() - expected).abs() < 1e-15);

        let m = BookMinute::fold(&updates[..1]).unwrap();
        assert_eq!(m.micro_price_close, Some((100.0 * 1.0 + 100.2 * 3.0) / 4.0));
        assert_eq!(BookMinute::fold(&[]), None);
        assert_eq!(
            Timed::time(&BookTicker {
                transaction_time: 0,
                ..updates[0].clone()
            }),
            1001
        );
    }
}
