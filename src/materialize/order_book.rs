//! The synchronized L2 book of one hour, rebuilt from the log alone
//! (`../shared/spec/binance.md`, "Local order book"; `spec/schema.md` #43).
//!
//! The input is a set: the hour's depth diffs and snapshots, plus those of the
//! hour before (the appender takes a snapshot at least every 30 minutes, so a
//! connected collector always left one there), one fact per update id. The walk
//! goes in update-id order, which is the exchange's order whatever order the log
//! holds them in; a snapshot's answer may have been logged before or after the
//! diff that brackets it. The rules:
//!
//! - out of sync, a diff syncs the book from a snapshot whose `lastUpdateId` it
//!   brackets (`U <= L <= u`) or continues (`pu == L`): the latest such
//!   snapshot, then the diff on top; diffs before any such snapshot are skipped;
//! - in sync, a diff applies when its `pu` is the previous diff's `u`; any other
//!   `pu` is a break: out of sync until a later snapshot is bracketed;
//! - quantity 0 removes a level; a book left crossed (best bid ≥ best ask) by a
//!   diff is a break too (something was applied wrongly or missed).
//!
//! A minute is in sync when the book is in sync after its last diff, or, for a
//! minute without diffs, when the diffs on either side chain (`pu` continuity
//! proves nothing happened in between). A missed diff shows as a break at the
//! next diff; the minutes before keep their values.

use std::collections::BTreeMap;

use crate::event::{Decimal, DepthDiff, DepthSnapshot, Level};
use crate::ledger::BookHealth;
use crate::time::{HOUR_MS, MINUTE_MS};

/// Notional bought by the price-impact walk (#43), USDT.
const IMPACT_NOTIONAL_USDT: f64 = 100_000.0;

/// What the rebuild says about one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct HourBook {
    /// Per minute of the hour: `None` when the book was not in sync at its end,
    /// else the price impact of buying 100 000 USDT (`None` inside when the
    /// known asks cannot fill it).
    pub minutes: [Option<Option<f64>>; 60],
    /// Counts for the ledger and `bml status`.
    pub health: BookHealth,
}

/// `10^(18 − scale)` for each scale: a lookup, not a loop, on the hot path.
const SCALE_TO_18: [i128; 19] = {
    let mut table = [1i128; 19];
    let mut scale = 0;
    while scale < 18 {
        table[scale] = 10i128.pow(18 - scale as u32);
        scale += 1;
    }
    table
};

/// A price as an integer that orders like the price: the mantissa at scale 18.
fn price_key(price: Decimal) -> i128 {
    i128::from(price.mantissa()) * SCALE_TO_18[usize::from(price.scale())]
}

/// Grid steps in a side's dense window.
const WINDOW: usize = 1 << 16;

/// One side of the book.
///
/// Near the top, prices sit on the grid of the snapshot's decimal places: a
/// window of [`WINDOW`] grid steps keeps their quantities in an array indexed
/// by step, so an update is an index and a store (a sorted vector spent most
/// of the rebuild finding levels and moving the others aside). Levels below
/// the window (deep ones diffs report, such as a bid at 1 000 USDT) wait in an
/// ordered map; when the top leaves the window, the window moves to it.
/// Positions are oriented so that higher is better: a bid's is its price in
/// grid steps, an ask's the negation. A price finer than the grid (never seen
/// from Binance) rebuilds the side on a finer grid.
#[derive(Debug, Clone)]
struct Side {
    ask: bool,
    /// Decimal places of the grid.
    scale: u8,
    /// Position of the window's slot 0.
    base: i128,
    /// Quantity per slot (zero: no level); empty until the side has a level.
    slots: Vec<Decimal>,
    /// The highest occupied slot.
    best: Option<usize>,
    /// The levels below the window: position → quantity.
    far: BTreeMap<i128, Decimal>,
}

impl Side {
    /// A side holding `levels`, on the grid of their decimal places.
    fn new(ask: bool, levels: &[Level]) -> Side {
        let scale = levels.iter().map(|l| l.0.scale()).max().unwrap_or(0);
        Side::on_grid(ask, scale, levels.iter().copied())
    }

    fn on_grid(ask: bool, scale: u8, levels: impl Iterator<Item = Level>) -> Side {
        let mut side = Side {
            ask,
            scale,
            base: 0,
            slots: Vec::new(),
            best: None,
            far: BTreeMap::new(),
        };
        for (price, qty) in levels {
            if let Some(p) = side.position(price) {
                if !qty.is_zero() {
                    side.far.insert(p, qty);
                }
            }
        }
        if let Some((&top, _)) = side.far.last_key_value() {
            side.move_window(top);
        }
        side
    }

    /// `price` in oriented grid steps; `None` if it is finer than the grid.
    fn position(&self, price: Decimal) -> Option<i128> {
        let finer = self.scale.checked_sub(price.scale())?;
        let steps = i128::from(price.mantissa()) * SCALE_TO_18[usize::from(18 - finer)];
        Some(if self.ask { -steps } else { steps })
    }

    /// The price at a position.
    fn price(&self, position: i128) -> Decimal {
        let steps = if self.ask { -position } else { position };
        i64::try_from(steps)
            .ok()
            .and_then(|m| Decimal::new(m, self.scale).ok())
            .unwrap_or(Decimal::ZERO)
    }

    fn apply(&mut self, (price, qty): Level) {
        let Some(p) = self.position(price) else {
            // Finer than the grid: the same levels on the finer one.
            let levels: Vec<Level> = self.live().collect();
            *self = Side::on_grid(self.ask, price.scale(), levels.into_iter());
            return self.apply((price, qty));
        };
        let end = self.base + WINDOW as i128;
        if !self.slots.is_empty() && (self.base..end).contains(&p) {
            let i = (p - self.base) as usize;
            self.slots[i] = qty;
            if !qty.is_zero() {
                self.best = Some(self.best.map_or(i, |b| b.max(i)));
            } else if self.best == Some(i) {
                self.best = self.slots[..i].iter().rposition(|q| !q.is_zero());
            }
        } else if !self.slots.is_empty() && p >= end {
            // Above the window, so above every level: the new top.
            if !qty.is_zero() {
                self.move_window(p);
                self.apply((price, qty));
            }
        } else if qty.is_zero() {
            self.far.remove(&p);
        } else {
            self.far.insert(p, qty);
        }
        if self.best.is_none() {
            if let Some((&top, _)) = self.far.last_key_value() {
                self.move_window(top);
            }
        }
    }

    /// Moves the window so that `top`, the highest position of any level
    /// (or to be), is three quarters up it.
    fn move_window(&mut self, top: i128) {
        for (i, qty) in self.slots.iter().enumerate() {
            if !qty.is_zero() {
                self.far.insert(self.base + i as i128, *qty);
            }
        }
        self.slots.clear();
        self.slots.resize(WINDOW, Decimal::ZERO);
        self.base = top - (WINDOW as i128 * 3 / 4);
        self.best = None;
        for (p, qty) in self.far.split_off(&self.base) {
            let i = (p - self.base) as usize;
            self.slots[i] = qty;
            self.best = Some(i);
        }
    }

    /// The levels, best first.
    fn live(&self) -> impl Iterator<Item = Level> + '_ {
        let top = self.best.map_or(0, |b| b + 1);
        let window = (0..top)
            .rev()
            .filter(|&i| !self.slots[i].is_zero())
            .map(|i| (self.price(self.base + i as i128), self.slots[i]));
        let far = self.far.iter().rev().map(|(&p, &q)| (self.price(p), q));
        window.chain(far)
    }

    /// The best price, as a price key.
    fn best(&self) -> Option<i128> {
        let top = match self.best {
            Some(i) => self.base + i as i128,
            None => *self.far.last_key_value()?.0,
        };
        Some(price_key(self.price(top)))
    }
}

/// A book in sync: both sides and how deep the last snapshot saw.
#[derive(Debug, Clone)]
struct Book {
    bids: Side,
    asks: Side,
    /// The deepest ask price of the snapshot (as a price key): beyond it the
    /// exchange's book is unknown, whatever diffs added there.
    deepest_ask: Option<i128>,
    last_u: u64,
}

impl Book {
    fn from_snapshot(s: &DepthSnapshot) -> Book {
        Book {
            bids: Side::new(false, &s.bids),
            asks: Side::new(true, &s.asks),
            deepest_ask: s.asks.iter().map(|l| price_key(l.0)).max(),
            last_u: s.last_update_id,
        }
    }

    fn apply(&mut self, d: &DepthDiff) {
        for &level in &d.bids {
            self.bids.apply(level);
        }
        for &level in &d.asks {
            self.asks.apply(level);
        }
        self.last_u = d.final_update_id;
    }

    fn crossed(&self) -> bool {
        matches!((self.bids.best(), self.asks.best()), (Some(b), Some(a)) if b >= a)
    }

    /// `(avg_exec_px − mid) / mid` for buying [`IMPACT_NOTIONAL_USDT`] from the
    /// asks, best first; `None` when the known asks run out first.
    fn price_impact(&self) -> Option<f64> {
        let bid = self.bids.live().next()?.0.to_f64();
        let ask = self.asks.live().next()?.0.to_f64();
        let mid = (bid + ask) / 2.0;
        let deepest = self.deepest_ask?;
        let (mut remaining, mut bought) = (IMPACT_NOTIONAL_USDT, 0.0);
        for (price, qty) in self.asks.live() {
            if price_key(price) > deepest {
                return None;
            }
            let (price, qty) = (price.to_f64(), qty.to_f64());
            if price * qty >= remaining {
                bought += remaining / price;
                let avg = IMPACT_NOTIONAL_USDT / bought;
                return Some((avg - mid) / mid);
            }
            remaining -= price * qty;
            bought += qty;
        }
        None
    }
}

/// The snapshot a diff syncs from, if any: the latest whose `lastUpdateId` the
/// diff brackets or continues. `snapshots` are in `lastUpdateId` order.
fn sync_point<'a>(snapshots: &'a [DepthSnapshot], d: &DepthDiff) -> Option<&'a DepthSnapshot> {
    let upto = snapshots.partition_point(|s| s.last_update_id <= d.final_update_id);
    let bracketed = snapshots[..upto]
        .last()
        .filter(|s| s.last_update_id >= d.first_update_id);
    bracketed.or_else(|| {
        snapshots
            .binary_search_by_key(&d.prev_final_update_id, |s| s.last_update_id)
            .ok()
            .map(|i| &snapshots[i])
    })
}

/// Rebuilds the book through the hour starting at `hour_start`. `snapshots`
/// are in `lastUpdateId` order and `diffs` (with their arrival, unused here)
/// in final-update-id order, one per id: the collector's output.
pub fn rebuild(
    hour_start: i64,
    snapshots: &[DepthSnapshot],
    diffs: &[(DepthDiff, i64)],
) -> HourBook {
    replay(hour_start, snapshots, diffs, i64::MAX).0
}

/// A rebuilt book, for a reader: its levels best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookView {
    /// The final update id of the last diff applied.
    pub last_update_id: u64,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
}

/// The book after the last diff (in update-id order) stamped at or before
/// `at`, as [`rebuild`] walks the hour; `None` if it was not in sync then.
pub fn book_at(
    hour_start: i64,
    snapshots: &[DepthSnapshot],
    diffs: &[(DepthDiff, i64)],
    at: i64,
) -> Option<BookView> {
    let book = replay(hour_start, snapshots, diffs, at).1?;
    let levels = |side: &Side| side.live().collect();
    Some(BookView {
        last_update_id: book.last_u,
        bids: levels(&book.bids),
        asks: levels(&book.asks),
    })
}

/// The walk of [`rebuild`], stopping at the first diff stamped after `until`:
/// the hour's book health and minutes, and the book where it stopped.
fn replay(
    hour_start: i64,
    snapshots: &[DepthSnapshot],
    diffs: &[(DepthDiff, i64)],
    until: i64,
) -> (HourBook, Option<Book>) {
    let hour = hour_start..hour_start + HOUR_MS;
    let mut minutes = [None; 60];
    let mut with_diffs = [false; 60];
    let mut set = |minute: i64, value: Option<Option<f64>>| {
        if hour.contains(&minute) {
            minutes[((minute - hour_start) / MINUTE_MS) as usize] = value;
        }
    };
    let mut book: Option<Book> = None;
    let mut broken_at: Option<i64> = None;
    let mut current: Option<i64> = None;
    let (mut breaks, mut resyncs, mut resync_ms) = (0u32, 0u32, 0i64);
    for (d, _) in diffs {
        let time = d.event_time;
        if time > until {
            break;
        }
        if hour.contains(&time) {
            with_diffs[((time - hour_start) / MINUTE_MS) as usize] = true;
        }
        let minute = time.div_euclid(MINUTE_MS) * MINUTE_MS;
        // A diff stamped before the minute already reached counts in it.
        let minute = current.map_or(minute, |c| minute.max(c));
        if current != Some(minute) {
            if let Some(c) = current {
                let impact = book.as_ref().map(Book::price_impact);
                set(c, impact);
                let chained = book
                    .as_ref()
                    .is_some_and(|b| d.prev_final_update_id == b.last_u);
                for gap in (c + MINUTE_MS..minute).step_by(MINUTE_MS as usize) {
                    set(gap, if chained { impact } else { None });
                }
            }
            current = Some(minute);
        }
        if let Some(b) = &mut book {
            if d.final_update_id <= b.last_u {
                continue;
            }
            if d.prev_final_update_id == b.last_u {
                b.apply(d);
                if !b.crossed() {
                    continue;
                }
            }
            book = None;
            if hour.contains(&time) {
                breaks += 1;
                broken_at = Some(time);
            }
        }
        if let Some(snapshot) = sync_point(snapshots, d) {
            let mut b = Book::from_snapshot(snapshot);
            b.apply(d);
            if !b.crossed() {
                book = Some(b);
                if let Some(at) = broken_at.take() {
                    resyncs += 1;
                    resync_ms += time - at;
                }
            }
        }
    }
    if let Some(c) = current {
        let impact = book.as_ref().map(Book::price_impact);
        set(c, impact);
    }
    if let Some(at) = broken_at {
        resync_ms += hour.end - at;
    }
    let hour_book = HourBook {
        health: BookHealth {
            minutes_with_diffs: with_diffs.iter().filter(|m| **m).count() as u32,
            minutes_in_sync: minutes.iter().filter(|m| m.is_some()).count() as u32,
            breaks,
            resyncs,
            resync_ms,
        },
        minutes,
    };
    (hour_book, book)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

    fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|(p, q)| {
                (
                    Decimal::parse(p.as_bytes()).unwrap(),
                    Decimal::parse(q.as_bytes()).unwrap(),
                )
            })
            .collect()
    }

    fn snap(last: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> DepthSnapshot {
        DepthSnapshot {
            last_update_id: last,
            event_time: H,
            transaction_time: H,
            bids: levels(bids),
            asks: levels(asks),
        }
    }

    /// A diff `U..=u` after `pu`, at `second` of the hour.
    fn diff(
        (first, last, prev): (u64, u64, u64),
        second: i64,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
    ) -> (DepthDiff, i64) {
        let time = H + second * 1000;
        let d = DepthDiff {
            event_time: time,
            transaction_time: time - 5,
            first_update_id: first,
            final_update_id: last,
            prev_final_update_id: prev,
            bids: levels(bids),
            asks: levels(asks),
        };
        (d, time + 20)
    }

    /// A book deep enough to fill 100 000 USDT: 10 asks of 200 at 100..=109.
    fn deep_snapshot(last: u64) -> DepthSnapshot {
        let asks: Vec<(String, String)> =
            (100..110).map(|p| (format!("{p}"), "200".into())).collect();
        let asks: Vec<(&str, &str)> = asks.iter().map(|(p, q)| (p.as_str(), q.as_str())).collect();
        snap(last, &[("99", "5"), ("98", "5")], &asks)
    }

    fn in_sync(book: &HourBook) -> Vec<usize> {
        (0..60).filter(|&m| book.minutes[m].is_some()).collect()
    }

    #[test]
    fn the_first_diff_brackets_the_snapshot_and_stale_ones_are_dropped() {
        let diffs = [
            diff((90, 95, 89), 1, &[("99", "7")], &[]),
            diff((96, 105, 95), 2, &[], &[("100", "50")]),
            diff((106, 110, 105), 70, &[("98", "0")], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &diffs);
        assert_eq!(in_sync(&book), vec![0, 1]);
        assert_eq!(book.health.breaks, 0);
        // Minute 0: asks 100×50 (5 000 USDT), then 101×200 (20 200), …: the
        // first 100 000 USDT take 50 at 100 and the rest from 101 upwards.
        let impact = book.minutes[0].unwrap().unwrap();
        let (mut remaining, mut bought) = (100_000.0 - 5_000.0, 50.0);
        for p in 101..110 {
            let notional = p as f64 * 200.0;
            if notional >= remaining {
                bought += remaining / p as f64;
                break;
            }
            remaining -= notional;
            bought += 200.0;
        }
        let mid = (99.0 + 100.0) / 2.0;
        assert_eq!(impact, (100_000.0 / bought - mid) / mid);
    }

    #[test]
    fn a_first_diff_continuing_the_snapshot_syncs_too() {
        let diffs = [diff((101, 104, 100), 1, &[], &[])];
        let book = rebuild(H, &[deep_snapshot(100)], &diffs);
        assert_eq!(in_sync(&book), vec![0]);
    }

    #[test]
    fn a_snapshot_older_than_every_diff_never_syncs() {
        let diffs = [
            diff((200, 210, 199), 1, &[], &[]),
            diff((211, 220, 210), 2, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &diffs);
        assert!(in_sync(&book).is_empty());
        assert_eq!(book.health.minutes_with_diffs, 1);
        assert_eq!(book.health.minutes_in_sync, 0);
    }

    #[test]
    fn a_pu_break_is_out_of_sync_until_a_later_snapshot_is_bracketed() {
        let diffs = [
            diff((96, 105, 95), 10, &[], &[]),
            diff((106, 110, 105), 70, &[], &[]),
            // 111..=119 lost: the break, seen at minute 2.
            diff((120, 125, 119), 130, &[], &[]),
            diff((126, 130, 125), 190, &[], &[]),
            // The new snapshot (300) is bracketed at minute 5.
            diff((290, 305, 285), 310, &[], &[]),
            diff((306, 310, 305), 370, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100), deep_snapshot(300)], &diffs);
        assert_eq!(in_sync(&book), vec![0, 1, 5, 6]);
        assert_eq!(
            book.health,
            BookHealth {
                minutes_with_diffs: 6,
                minutes_in_sync: 4,
                breaks: 1,
                resyncs: 1,
                resync_ms: 180_000,
            }
        );
    }

    #[test]
    fn a_break_never_resynced_counts_to_the_hours_end() {
        let diffs = [
            diff((96, 105, 95), 10, &[], &[]),
            diff((120, 125, 119), 3_000, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &diffs);
        assert_eq!(book.health.breaks, 1);
        assert_eq!(book.health.resyncs, 0);
        assert_eq!(book.health.resync_ms, HOUR_MS - 3_000_000);
    }

    #[test]
    fn a_diff_that_crosses_the_book_is_a_break() {
        let diffs = [
            diff((96, 105, 95), 10, &[], &[]),
            // A bid at 101 over the best ask 100: applied wrongly or missed.
            diff((106, 110, 105), 70, &[("101", "1")], &[]),
            diff((111, 115, 110), 130, &[("101", "0")], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &diffs);
        assert_eq!(in_sync(&book), vec![0]);
        assert_eq!(book.health.breaks, 1);
    }

    #[test]
    fn quiet_minutes_are_in_sync_only_when_the_chain_goes_on() {
        let chained = [
            diff((96, 105, 95), 10, &[], &[]),
            diff((106, 110, 105), 250, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &chained);
        assert_eq!(in_sync(&book), vec![0, 1, 2, 3, 4]);
        let broken = [
            diff((96, 105, 95), 10, &[], &[]),
            diff((107, 110, 106), 250, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100)], &broken);
        assert_eq!(in_sync(&book), vec![0]);
    }

    #[test]
    fn a_walk_past_the_snapshots_deepest_ask_cannot_fill() {
        let shallow = snap(100, &[("99", "5")], &[("100", "1"), ("101", "1")]);
        // A diff adds a deep level past the snapshot's last ask: still unknown.
        let diffs = [diff((96, 105, 95), 10, &[], &[("500", "1000")])];
        let book = rebuild(H, &[shallow], &diffs);
        assert_eq!(book.minutes[0], Some(None));
        assert_eq!(book.health.minutes_in_sync, 1);
    }

    /// A side under random updates (clustered at the top, removals, returns,
    /// jumps past its window, deep levels, one price finer than its grid)
    /// holds what an ordered map holds, best first, on both sides.
    #[test]
    fn a_side_holds_what_an_ordered_map_holds() {
        let mut rng = fastrand::Rng::with_seed(5);
        for ask in [false, true] {
            let mut side = Side::new(ask, &[(Decimal::new(50_000, 1).unwrap(), Decimal::ZERO)]);
            // Price in hundredths → quantity.
            let mut model: BTreeMap<i64, i64> = BTreeMap::new();
            let mut top = 500_000i64;
            for n in 0..30_000 {
                if rng.u8(..) == 0 {
                    top = (top + rng.i64(-120_000..120_000)).max(200_000);
                }
                top += rng.i64(-3..=3);
                let steps = if rng.u8(..) < 5 {
                    rng.i64(0..150_000)
                } else {
                    (rng.f64().powi(3) * 800.0) as i64
                };
                let tenths = if ask { top + steps } else { top - steps };
                let (price, hundredths) = if n == 15_000 {
                    (Decimal::new(tenths * 10 + 5, 2).unwrap(), tenths * 10 + 5)
                } else {
                    (Decimal::new(tenths, 1).unwrap(), tenths * 10)
                };
                let qty = if rng.u8(..) < 90 { 0 } else { rng.i64(1..1000) };
                side.apply((price, Decimal::new(qty, 3).unwrap()));
                if qty == 0 {
                    model.remove(&hundredths);
                } else {
                    model.insert(hundredths, qty);
                }
                assert_eq!(side.best().is_some(), !model.is_empty());
                if n % 97 != 0 && n != 29_999 {
                    continue;
                }
                let held: Vec<(i64, i64)> = side
                    .live()
                    .map(|(p, q)| {
                        (
                            p.mantissa() * 10i64.pow(2 - u32::from(p.scale())),
                            q.mantissa(),
                        )
                    })
                    .collect();
                let want: Vec<(i64, i64)> = if ask {
                    model.iter().map(|(p, q)| (*p, *q)).collect()
                } else {
                    model.iter().rev().map(|(p, q)| (*p, *q)).collect()
                };
                assert_eq!(held, want, "after update {n}");
            }
        }
    }

    #[test]
    fn the_look_back_hour_syncs_the_book_but_counts_nothing() {
        let before = |s: i64| s - 3_600;
        let diffs = [
            diff((96, 105, 95), before(10), &[], &[]),
            // A break in the hour before: not this hour's.
            diff((120, 125, 119), before(20), &[], &[]),
            diff((290, 305, 285), before(30), &[], &[]),
            diff((306, 310, 305), 5, &[], &[]),
        ];
        let book = rebuild(H, &[deep_snapshot(100), deep_snapshot(300)], &diffs);
        assert_eq!(in_sync(&book), vec![0]);
        assert_eq!(book.health.breaks, 0);
        assert_eq!(book.health.resyncs, 0);
    }
}
