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

/// One side of the book, best level last (so that the busy top of the book
/// is at the cheap end of the vector). Asks are keyed by the negated price.
///
/// A removed level stays as a tombstone (quantity 0) where it was: levels come
/// and go at the same prices all the time, and moving the vector's tail for
/// each removal and each return was most of the rebuild's cost. Tombstones at
/// the top are dropped at once (so the last entry is the best level), the
/// others when they outnumber the live levels.
#[derive(Debug, Clone, Default)]
struct Side {
    /// `(key, price, quantity)`, keys ascending; quantity 0: a tombstone.
    levels: Vec<(i128, Decimal, Decimal)>,
    tombstones: usize,
    ask: bool,
}

impl Side {
    fn new(ask: bool, levels: &[Level]) -> Side {
        let mut side = Side {
            levels: Vec::with_capacity(levels.len() * 2),
            tombstones: 0,
            ask,
        };
        for &level in levels {
            side.apply(level);
        }
        side
    }

    fn key(&self, price: Decimal) -> i128 {
        if self.ask {
            -price_key(price)
        } else {
            price_key(price)
        }
    }

    fn apply(&mut self, (price, qty): Level) {
        let key = self.key(price);
        let found = self.find(key);
        match (found, qty.is_zero()) {
            (Ok(i), true) => {
                if !self.levels[i].2.is_zero() {
                    self.levels[i].2 = qty;
                    self.tombstones += 1;
                    self.tidy();
                }
            }
            (Ok(i), false) => {
                if self.levels[i].2.is_zero() {
                    self.tombstones -= 1;
                }
                self.levels[i] = (key, price, qty);
            }
            (Err(_), true) => {}
            (Err(i), false) => self.levels.insert(i, (key, price, qty)),
        }
    }

    /// Drops the tombstones at the top, and all of them once they outnumber
    /// the live levels.
    fn tidy(&mut self) {
        while self.levels.last().is_some_and(|l| l.2.is_zero()) {
            self.levels.pop();
            self.tombstones -= 1;
        }
        if self.tombstones > 64 + self.levels.len() / 2 {
            self.levels.retain(|l| !l.2.is_zero());
            self.tombstones = 0;
        }
    }

    /// The live levels, best first.
    fn live(&self) -> impl Iterator<Item = &(i128, Decimal, Decimal)> {
        self.levels.iter().rev().filter(|l| !l.2.is_zero())
    }

    /// Where `key` is (or would go). Near the top, where updates cluster, a
    /// book has a level at nearly every price step: the average step of the
    /// top levels guesses the place, and a gallop from the guess (1, 2, 4, …
    /// levels) brackets it, so a good guess costs a few comparisons and a bad
    /// one `O(log n)`.
    fn find(&self, key: i128) -> Result<usize, usize> {
        let levels = &self.levels;
        let n = levels.len();
        let Some(&(top, ..)) = levels.last() else {
            return Err(0);
        };
        if key >= top {
            return if key == top { Ok(n - 1) } else { Err(n) };
        }
        // From here the first level at or above `key` is in [0, n - 1].
        // A guess needs no exact arithmetic: floats (an integer division of
        // 128 bits costs more than the rest of the search).
        // Through 64 bits (a 128-bit integer to float is a library call):
        // keys are prices at scale 18, so the low 32 bits are far below a
        // price step, and both numbers lose them alike.
        let float = |x: i128| i64::try_from(x >> 32).map_or(f64::MAX, |x| x as f64);
        let m = (n - 1).min(64);
        let span = float(top - levels[n - 1 - m].0);
        let back = (float(top - key) * m as f64 / span.max(1.0)) as usize;
        let back = back.min(n - 1);
        let guess = n - 1 - back;
        let (low, high) = if levels[guess].0 < key {
            let (mut low, mut stride) = (guess + 1, 1);
            while low + stride - 1 < n - 1 && levels[low + stride - 1].0 < key {
                low += stride;
                stride *= 2;
            }
            (low, (low + stride - 1).min(n - 1))
        } else {
            let (mut high, mut stride) = (guess, 1);
            while high >= stride && levels[high - stride].0 >= key {
                high -= stride;
                stride *= 2;
            }
            ((high + 1).saturating_sub(stride), high)
        };
        let at = low + levels[low..=high].partition_point(|l| l.0 < key);
        if levels[at].0 == key {
            Ok(at)
        } else {
            Err(at)
        }
    }

    fn best(&self) -> Option<i128> {
        self.levels
            .last()
            .map(|l| if self.ask { -l.0 } else { l.0 })
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
        let bid = self.bids.levels.last()?.1.to_f64();
        let ask = self.asks.levels.last()?.1.to_f64();
        let mid = (bid + ask) / 2.0;
        let deepest = self.deepest_ask?;
        let (mut remaining, mut bought) = (IMPACT_NOTIONAL_USDT, 0.0);
        for &(key, price, qty) in self.asks.live() {
            if -key > deepest {
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
    let levels = |side: &Side| side.live().map(|l| (l.1, l.2)).collect();
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

    /// The guessing search finds what a plain binary search finds, on sides
    /// dense, sparse and lumpy.
    #[test]
    fn find_agrees_with_a_binary_search() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2_000 {
            let n = rng.usize(0..300);
            let spread = rng.i64(1..5_000);
            let mut keys: Vec<i128> = (0..n).map(|_| i128::from(rng.i64(0..spread))).collect();
            keys.sort_unstable();
            keys.dedup();
            let side = Side {
                levels: keys
                    .iter()
                    .map(|&k| (k, Decimal::ZERO, Decimal::ZERO))
                    .collect(),
                tombstones: 0,
                ask: false,
            };
            for _ in 0..50 {
                let key = i128::from(rng.i64(-10..5_100));
                assert_eq!(
                    side.find(key),
                    keys.binary_search(&key),
                    "{key} in {keys:?}"
                );
            }
        }
    }

    /// A side under random updates (clustered at the top, removals, returns)
    /// holds what an ordered map holds, best first, on both sides.
    #[test]
    fn a_side_holds_what_an_ordered_map_holds() {
        let mut rng = fastrand::Rng::with_seed(5);
        for ask in [false, true] {
            let mut side = Side::new(ask, &[]);
            let mut model: std::collections::BTreeMap<i64, i64> = Default::default();
            for _ in 0..20_000 {
                let top = 5_000 + rng.i64(-50..50);
                let steps = (rng.f64().powi(3) * 800.0) as i64;
                let price = if ask { top + steps } else { top - steps };
                let qty = if rng.u8(..) < 90 { 0 } else { rng.i64(1..1000) };
                side.apply((
                    Decimal::new(price, 1).unwrap(),
                    Decimal::new(qty, 3).unwrap(),
                ));
                if qty == 0 {
                    model.remove(&price);
                } else {
                    model.insert(price, qty);
                }
                let live: Vec<(i64, i64)> = side
                    .live()
                    .map(|l| (l.1.mantissa(), l.2.mantissa()))
                    .collect();
                let want: Vec<(i64, i64)> = if ask {
                    model.iter().map(|(p, q)| (*p, *q)).collect()
                } else {
                    model.iter().rev().map(|(p, q)| (*p, *q)).collect()
                };
                assert_eq!(live, want);
                assert_eq!(side.best().is_some(), !model.is_empty());
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
