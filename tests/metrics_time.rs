//! Metrics points count at their snapshot time. On 2026-06-25 Vision moved the
//! label of a metrics row from the snapshot's time to the start of its period
//! (the row labelled T is the snapshot at T + 5 min; binance-public-data issue
//! #491). A day on each side of the change, from the shared generator: no as-of
//! column of any minute may use a point whose snapshot is after the minute's
//! start, and each minute takes the newest snapshot at or before it.

mod support;

use std::collections::BTreeMap;

use support::{archive_path, bml, csv_of, data_rows, ingest_day, text};

const KINDS: &str = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,metrics";
const FIVE_MINUTES: i64 = 300_000;

const READ_BACK: &str = r#"
import json, sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1] + "/futures/um/minute", format="parquet", partitioning="hive").to_table(
    columns=["timestamp", "oi_contracts"])
ms = [int(x.timestamp() * 1000) for x in t.column("timestamp").to_pylist()]
print(json.dumps(list(zip(ms, t.column("oi_contracts").to_pylist()))))
"#;

/// The snapshot time and open interest of every row of a day's metrics file,
/// by this test's own reading of the convention.
fn snapshots(day_dir: &std::path::Path, date: &str) -> Vec<(i64, f64)> {
    let csv = csv_of(&archive_path(day_dir, "metrics", date));
    let shift = if date >= "2026-06-25" {
        FIVE_MINUTES
    } else {
        0
    };
    data_rows(&csv)
        .iter()
        .map(|row| {
            let f: Vec<&str> = row.split(',').collect();
            let label = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_millis();
            (label + shift, f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn as_of_columns_never_see_a_snapshot_after_the_minute_on_either_side_of_the_change() {
    let before = support::vision_day_at_rates("2026-06-24", 24, 7, Some((0.2, 0.2)));
    let after = support::vision_day_at_rates("2026-06-25", 2, 8, Some((0.2, 0.2)));
    let data = tempfile::tempdir().unwrap();
    ingest_day(data.path(), before.path(), "2026-06-24", KINDS);
    ingest_day(data.path(), after.path(), "2026-06-25", KINDS);
    let out = bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let mut points: BTreeMap<i64, f64> = BTreeMap::new();
    for (dir, date) in [(&before, "2026-06-24"), (&after, "2026-06-25")] {
        for (snapshot, oi) in snapshots(dir.path(), date) {
            // Two files never hold two different snapshots at one time.
            assert!(
                points.insert(snapshot, oi).is_none(),
                "snapshot {snapshot} twice"
            );
        }
    }
    let read = support::python()
        .args(["-c", READ_BACK])
        .arg(data.path().join("lake"))
        .output()
        .expect("scripts/python");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let rows: Vec<(i64, Option<f64>)> = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(rows.len(), 26 * 60, "both days' minutes are written");

    let change = 1_782_345_600_000; // 2026-06-25 00:00 UTC
    for (minute, oi) in rows {
        let newest = points
            .range(..=minute)
            .next_back()
            .filter(|(t, _)| minute - **t <= 60 * 60_000);
        assert_eq!(oi, newest.map(|(_, v)| *v), "minute {minute}");
        if let Some(oi) = oi {
            let used = points.iter().find(|(_, v)| **v == oi).unwrap().0;
            assert!(
                *used <= minute,
                "minute {minute} saw the snapshot of {used}"
            );
        }
        // Across the change: 00:00 … 00:04 take the 00:00 snapshot of the
        // 06-24 file, not the 06-25 file's row labelled 00:00 (taken at 00:05).
        if (change..change + FIVE_MINUTES).contains(&minute) {
            assert_eq!(oi, points.get(&change).copied(), "minute {minute}");
        }
    }
}
