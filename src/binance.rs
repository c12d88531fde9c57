//! Facts about the exchange that more than one stage needs, each stated once,
//! with its source in `docs/binance-fidelity.md`. Code that *reads* the
//! exchange's formats lives with its stage (the client in `sources`, an
//! independent reading in `sim`); what is here are the dates and conventions
//! both must agree on.

use chrono::NaiveDate;

use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// The last day Vision published USD-M bookTicker archives.
pub const LAST_BOOK_TICKER_DAY: NaiveDate = date(2024, 3, 31);

/// From this day on, a Vision `metrics` row labelled T holds the snapshot taken
/// at T + 5 minutes (binance-public-data issue #491); before it, the snapshot
/// taken at T.
pub const METRICS_LABELS_MOVED: NaiveDate = date(2026, 6, 25);

/// The period of the metrics and statistics series.
pub const METRICS_PERIOD_MS: i64 = 5 * MINUTE_MS;

/// How far back the REST statistics series (openInterestHist and the three
/// long/short ratios) reach: only the latest 30 days are served.
pub const STATISTICS_HORIZON_MS: i64 = 30 * DAY_MS;

/// How far back bml reads aggTrades over REST: 48 hours (clients report it;
/// Binance's page says up to a year, so this is at worst conservative, and
/// Vision covers anything older).
pub const AGG_TRADES_REST_HORIZON_MS: i64 = 48 * HOUR_MS;

const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(d) => d,
        None => panic!("not a date"),
    }
}

/// The snapshot time of a Vision metrics row labelled `label_ms` in the daily
/// file of `file_day`: the time bml keys the point by (`spec/schema.md`, as-of
/// series).
/// The times (ms, UTC) a Vision archive's period covers: `YYYY-MM-DD` is
/// that day, `YYYY-MM` (monthly archives) that month.
pub fn vision_period(period: &str) -> Option<std::ops::Range<i64>> {
    let ms = |d: NaiveDate| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
    };
    if let Ok(day) = NaiveDate::parse_from_str(period, "%Y-%m-%d") {
        return Some(ms(day)..ms(day) + DAY_MS);
    }
    let first = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some(ms(first)..ms(next))
}

/// Request weight of a call to any of the four klines endpoints asking for
/// `limit` elements (`spec/binance.md`: [1, 100) → 1, [100, 500) → 2,
/// [500, 1000] → 5, more → 10; no limit means 500).
pub fn kline_weight(limit: Option<u32>) -> u32 {
    match limit {
        Some(0..=99) => 1,
        Some(100..=499) => 2,
        None | Some(500..=1000) => 5,
        Some(_) => 10,
    }
}

pub fn metrics_snapshot_time(file_day: NaiveDate, label_ms: i64) -> i64 {
    if file_day >= METRICS_LABELS_MOVED {
        label_ms + METRICS_PERIOD_MS
    } else {
        label_ms
    }
}

/// The day a Vision daily archive covers, read from the end of its name or path
/// (`…-2026-06-25.zip`); `None` for a monthly archive or another name.
pub fn vision_file_day(name: &str) -> Option<NaiveDate> {
    let stem = name.strip_suffix(".zip")?;
    let day = stem.get(stem.len().checked_sub(10)?..)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_moves_on_the_day_of_the_change() {
        let label = 1_782_345_600_000; // 2026-06-25 00:00 UTC
        let day = |d: &str| vision_file_day(d).unwrap();
        assert_eq!(
            metrics_snapshot_time(day("BTCUSDT-metrics-2026-06-24.zip"), label),
            label
        );
        assert_eq!(
            metrics_snapshot_time(
                day("daily/metrics/BTCUSDT/BTCUSDT-metrics-2026-06-25.zip"),
                label
            ),
            label + 300_000
        );
        assert_eq!(vision_file_day("BTCUSDT-fundingRate-2026-04.zip"), None);
        assert_eq!(vision_file_day("x.zip"), None);
    }
}
