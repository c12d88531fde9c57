//! Milliseconds, the unit of every time in bml (the exchange's, the log's and
//! the lake's), and the spans the minute grid is built of. The one exception:
//! a log record's local receive time is kept in ns ([`now_ns`]).

/// One minute, in ms.
pub const MINUTE_MS: i64 = 60_000;
/// One hour, in ms.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day, in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Nanoseconds in a millisecond.
pub const NS_PER_MS: i64 = 1_000_000;

/// Now, epoch ns (UTC): a log record's receive time.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `ms` as a UTC minute, `2024-03-01T13:05Z` (the number itself if out of range).
pub fn utc_minute(ms: i64) -> String {
    utc(ms, "%Y-%m-%dT%H:%MZ")
}

/// The UTC hour holding `ms`, `2024-03-01T13Z` (ISO 8601's hour precision).
pub fn utc_hour(ms: i64) -> String {
    utc(ms, "%Y-%m-%dT%HZ")
}

/// The UTC day holding `ms`, `2024-03-01`.
pub fn utc_day(ms: i64) -> String {
    utc(ms, "%Y-%m-%d")
}

fn utc(ms: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format(format).to_string())
}

/// The parts of `range` that none of `covered` (sorted by start) covers, in
/// order.
pub fn uncovered(
    range: std::ops::Range<i64>,
    covered: impl IntoIterator<Item = std::ops::Range<i64>>,
) -> Vec<std::ops::Range<i64>> {
    let mut gaps = Vec::new();
    let mut cursor = range.start;
    for c in covered {
        if c.end <= cursor || c.start >= range.end {
            continue;
        }
        if c.start > cursor {
            gaps.push(cursor..c.start);
        }
        cursor = cursor.max(c.end);
    }
    if cursor < range.end {
        gaps.push(cursor..range.end);
    }
    gaps
}

/// `ranges` sorted and joined where they overlap or touch.
pub fn joined(ranges: impl IntoIterator<Item = std::ops::Range<i64>>) -> Vec<std::ops::Range<i64>> {
    let mut sorted: Vec<std::ops::Range<i64>> = ranges.into_iter().collect();
    sorted.sort_by_key(|r| (r.start, r.end));
    let mut joined: Vec<std::ops::Range<i64>> = Vec::new();
    for r in sorted {
        match joined.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => joined.push(r),
        }
    }
    joined
}
