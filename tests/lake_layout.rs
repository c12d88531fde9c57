//! The day layout (`--layout day`): a closed symbol-day is one file, its hours
//! as row groups; the hours of a day not yet closed are files of their own in
//! the day's directory. Read by DuckDB and pyarrow, a 3-day lake in the day
//! layout equals the hour layout row for row, in 24 times fewer files; the
//! files are byte-deterministic; switching a lake between layouts converges.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{bml, text};

const KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";
const DAYS: [&str; 3] = ["2024-03-01", "2024-03-02", "2024-03-03"];

/// Three generated days ingested into a new data dir.
fn three_days() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    for (i, date) in DAYS.iter().enumerate() {
        let day = support::vision_day_at_rates(date, 24, 3 + i as u32, Some((1.0, 2.0)));
        support::ingest_day(data.path(), day.path(), date, KINDS);
    }
    data
}

/// `bml materialize` of the data dir into `lake` with `options`; its stdout.
fn materialize(data: &Path, lake: &Path, options: &[&str]) -> String {
    let mut args = vec!["--lake-dir", lake.to_str().unwrap()];
    args.extend_from_slice(options);
    args.push("materialize");
    let out = bml(data, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every Parquet file of a lake: its path under the root → SHA-256.
fn parquet_files(lake: &Path) -> BTreeMap<PathBuf, String> {
    support::lake_files(lake)
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// DuckDB and pyarrow reading both lakes (`tests/readers/compare_layouts.py`).
fn compared(hour: &Path, day: &Path) -> Value {
    let out = support::python()
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/compare_layouts.py"))
        .args([hour, day])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn assert_same_rows(seen: &Value, files: [u64; 2]) {
    assert_eq!(seen["files"], serde_json::json!(files), "{seen}");
    for engine in ["duckdb", "pyarrow"] {
        assert_eq!(
            seen[engine]["rows"],
            serde_json::json!([4320, 4320]),
            "{seen}"
        );
        assert_eq!(seen[engine]["equal"], true, "{engine}: {seen}");
    }
}

#[test]
fn day_layout_equals_hour_layout_in_24_times_fewer_files_and_switching_converges() {
    let data = three_days();
    let lakes = tempfile::tempdir().unwrap();
    let (hour, day, open) = (
        lakes.path().join("hour"),
        lakes.path().join("day"),
        lakes.path().join("open"),
    );
    let closed = ["--layout", "day", "--day-settle-hours", "0"];

    materialize(data.path(), &hour, &[]);
    let hour_files = parquet_files(&hour);
    assert_eq!(hour_files.len(), 72);

    // Every day closed: three files, one per day, the same rows.
    materialize(data.path(), &day, &closed);
    let day_files = parquet_files(&day);
    assert_eq!(
        day_files
            .keys()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
        (1..=3)
            .map(|d| format!(
                "futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=0{d}/part.parquet"
            ))
            .collect::<Vec<_>>()
    );
    assert_same_rows(&compared(&hour, &day), [72, 3]);
    let again = materialize(data.path(), &day, &closed);
    assert!(again.contains("0 hours"), "nothing new: {again}");
    // Status and the audit read the layout the ledger recorded.
    for command in ["status", "audit"] {
        let out = bml(data.path(), &["--lake-dir", day.to_str().unwrap(), command]);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", text(&out));
    }

    // No day closed yet: an hour's file each, in its day's directory, every
    // file at the same depth (DuckDB refuses mixed hive keys).
    materialize(
        data.path(),
        &open,
        &["--layout", "day", "--day-settle-hours", "1000000"],
    );
    let open_files = parquet_files(&open);
    assert_eq!(open_files.len(), 72);
    assert!(open_files.keys().all(|p| p
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("part-")));
    assert_same_rows(&compared(&hour, &open), [72, 72]);
    // The days close: each becomes the same file as above, its hours' files gone.
    materialize(data.path(), &open, &closed);
    assert_eq!(parquet_files(&open), day_files);

    // Without --layout a lake keeps the layout it was written in.
    let kept = materialize(data.path(), &open, &[]);
    assert!(kept.contains("0 hours"), "{kept}");
    assert_eq!(parquet_files(&open), day_files);

    // Day → hour → day on one lake: byte for byte the lake of each layout.
    materialize(data.path(), &day, &["--layout", "hour"]);
    assert_eq!(parquet_files(&day), hour_files);
    materialize(data.path(), &day, &closed);
    assert_eq!(parquet_files(&day), day_files);
}
