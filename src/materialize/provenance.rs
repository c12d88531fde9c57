//! The provenance of an hour (`crate::ledger::Provenance`) beyond what its
//! facts' copies show ([`super::collect::Resolution`]): the minutes a live
//! liquidation connection covered, the minutes with no trade to expect, and
//! the minutes the planner recorded no source can fill.

use super::hour::HourFacts;
use crate::event::{KlineKind, Unfillable};
use crate::ledger::Provenance;
use crate::schema::ColumnClass;
use crate::time::{HOUR_MS, MINUTE_MS};

/// The index of the live source in `ClassCoverage::by_source`.
const LIVE: usize = 2;

/// Adds to `provenance` (as the collector left it) what the copies cannot
/// tell; `unfillable` are the ranges still without facts.
pub fn complete(provenance: &mut Provenance, facts: &HourFacts, unfillable: &[Unfillable]) {
    let hour = facts.hour_start;
    let coverage = &mut provenance.coverage;
    for range in &facts.liquidation_coverage {
        coverage[ColumnClass::Liquidations as usize].by_source[LIVE] |=
            minutes(hour, range.start, range.end);
    }
    for kline in &facts.klines {
        if kline.kind == KlineKind::Trade && kline.trade_count == 0 {
            coverage[ColumnClass::AggTrades as usize].quiet |=
                minutes(hour, kline.open_time, kline.open_time + 1);
        }
    }
    for u in unfillable {
        let Some(class) = u.series.column_class() else {
            continue;
        };
        let entry = &mut coverage[class as usize];
        entry.unfillable |= minutes(hour, u.start_ms, u.end_ms);
        if !entry.reason.split("; ").any(|r| r == u.reason) {
            if !entry.reason.is_empty() {
                entry.reason.push_str("; ");
            }
            entry.reason.push_str(&u.reason);
        }
    }
}

/// The minutes of the hour starting at `hour` that `[start, end)` touches.
fn minutes(hour: i64, start: i64, end: i64) -> u64 {
    let first = (start.max(hour) - hour).div_euclid(MINUTE_MS);
    let last = (end.min(hour + HOUR_MS) - hour - 1).div_euclid(MINUTE_MS);
    (first..=last)
        .filter(|m| (0..60).contains(m))
        .fold(0, |bits, m| bits | 1 << m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_touched() {
        let h = 1_709_251_200_000;
        assert_eq!(minutes(h, h, h + HOUR_MS), (1 << 60) - 1);
        assert_eq!(minutes(h, h - HOUR_MS, h + 1), 1);
        assert_eq!(minutes(h, h + 59 * MINUTE_MS + 5, h + 2 * HOUR_MS), 1 << 59);
        assert_eq!(minutes(h, h + 90_000, h + 120_001), 0b110);
        assert_eq!(minutes(h, h + HOUR_MS, h + 2 * HOUR_MS), 0);
        assert_eq!(minutes(h, h - 5, h), 0);
    }
}
