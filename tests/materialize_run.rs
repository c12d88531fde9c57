//! `bml materialize` end to end, as a user runs it: a generated Vision day
//! ingested into a log, derived into the lake, read back with DuckDB; replays
//! from any offset, from scratch and piecemeal all give the same bytes.

mod support;

use std::path::{Path, PathBuf};

use bml::ledger::Ledger;
use support::{bml, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
/// 2024-03-01T00:00Z.
const DAY: i64 = 1_709_251_200_000;
const HOUR_MS: i64 = 3_600_000;

/// A generated 3-hour day, small enough for a debug build.
fn day() -> tempfile::TempDir {
    vision_day_at_rates(DATE, 3, 11, Some((2.0, 5.0)))
}

fn run_ok(data: &Path, args: &[&str]) -> String {
    let out = bml(data, args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ingest(data: &Path, day: &Path, kinds: &str) {
    support::ingest_day(data, day, DATE, kinds);
}

const ALL_KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";

fn digest(data: &Path) -> [u8; 32] {
    Ledger::open(data).unwrap().digest().unwrap()
}

fn hour_dir(hour: i64) -> String {
    format!("symbol=BTCUSDT/year=2024/month=03/day=01/hour={hour:02}")
}

#[test]
fn materialize_writes_each_hour_once_and_a_second_run_rewrites_nothing() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path(), ALL_KINDS);
    let first = run_ok(data.path(), &["materialize"]);
    assert!(first.contains("3 written, 0 unchanged"), "{first}");
    let lake = data.path().join("lake");
    let files = support::lake_files(&lake);
    assert_eq!(files.len(), 3, "{files:?}");
    for hour in 0..3 {
        let expected = PathBuf::from("futures/um/minute")
            .join(hour_dir(hour))
            .join("part.parquet");
        assert!(files.contains_key(&expected), "{files:?}");
    }

    let status = run_ok(data.path(), &["status"]);
    assert!(status.contains("lag             0 records"), "{status}");
    assert!(status.contains("partitions      3 committed"), "{status}");
    assert!(status.contains("findings        0"), "{status}");
    let mark = run_ok(data.path(), &["show-watermark", "--symbol", "BTCUSDT"]);
    assert_eq!(mark.trim(), "BTCUSDT\t2024-03-01T02:59Z");

    let times = |lake: &Path| -> Vec<std::time::SystemTime> {
        support::lake_files(lake)
            .keys()
            .map(|p| std::fs::metadata(lake.join(p)).unwrap().modified().unwrap())
            .collect()
    };
    let before = times(&lake);
    let again = run_ok(data.path(), &["materialize"]);
    assert!(again.contains("0 hours"), "{again}");
    let everything = run_ok(data.path(), &["materialize", "--from", "0"]);
    assert!(
        everything.contains("0 written, 3 unchanged"),
        "{everything}"
    );
    assert_eq!(times(&lake), before, "nothing rewritten");
    assert_eq!(support::lake_files(&lake), files);
}

#[test]
fn from_n_rederives_the_hours_reached_at_or_after_n_exactly_as_a_full_replay() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path(), ALL_KINDS);
    run_ok(data.path(), &["materialize"]);
    let lake = data.path().join("lake");
    let full = support::lake_files(&lake);
    let full_digest = digest(data.path());
    let head = Ledger::open(data.path()).unwrap().checkpoint().unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let mut starts: Vec<u64> = (0..6).map(|_| rng.u64(0..head)).collect();
    starts.extend([0, head - 1, head]);
    for n in starts {
        let reached: Vec<(String, i64)> = Ledger::open(data.path())
            .unwrap()
            .hours_reached_since(n)
            .unwrap();
        std::fs::remove_dir_all(&lake).unwrap();
        let out = run_ok(data.path(), &["materialize", "--from", &n.to_string()]);
        let rebuilt = support::lake_files(&lake);
        // Every file rebuilt is byte-identical to the full replay's, and the
        // rebuilt ones are exactly the complete hours that records ≥ n reach.
        for (path, hash) in &rebuilt {
            assert_eq!(full.get(path), Some(hash), "--from {n}: {path:?}\n{out}");
        }
        let expected: Vec<PathBuf> = reached
            .iter()
            .filter(|(_, h)| *h < DAY + 3 * HOUR_MS)
            .map(|(_, h)| {
                PathBuf::from("futures/um/minute")
                    .join(hour_dir((h - DAY) / HOUR_MS))
                    .join("part.parquet")
            })
            .collect();
        assert_eq!(
            rebuilt.keys().cloned().collect::<Vec<_>>(),
            expected,
            "--from {n}"
        );
        assert_eq!(digest(data.path()), full_digest, "--from {n}");
        run_ok(data.path(), &["materialize", "--from", "0"]);
        assert_eq!(support::lake_files(&lake), full);
    }
    let past = bml(
        data.path(),
        &["materialize", "--from", &(head + 1).to_string()],
    );
    assert_eq!(past.status.code(), Some(2), "{}", text(&past));
    assert!(
        String::from_utf8_lossy(&past.stderr).contains("--from")
            && String::from_utf8_lossy(&past.stderr).contains("past the log's end"),
        "{}",
        text(&past)
    );
}

#[test]
fn replaying_from_scratch_or_piecemeal_gives_the_same_lake_and_ledger() {
    let day = day();
    let whole = tempfile::tempdir().unwrap();
    ingest(whole.path(), day.path(), ALL_KINDS);
    run_ok(whole.path(), &["materialize"]);
    let files = support::lake_files(&whole.path().join("lake"));
    let ledger_digest = digest(whole.path());

    // Delete the ledger and the lake: a replay rebuilds both identically.
    std::fs::remove_file(whole.path().join("ledger.redb")).unwrap();
    std::fs::remove_dir_all(whole.path().join("lake")).unwrap();
    run_ok(whole.path(), &["materialize"]);
    assert_eq!(support::lake_files(&whole.path().join("lake")), files);
    assert_eq!(digest(whole.path()), ledger_digest);

    // One archive at a time, materializing after each: the same end state
    // (the log differs in order, the facts do not).
    let piecemeal = tempfile::tempdir().unwrap();
    for kind in ALL_KINDS.split(',').rev() {
        ingest(piecemeal.path(), day.path(), kind);
        run_ok(piecemeal.path(), &["materialize"]);
    }
    assert_eq!(support::lake_files(&piecemeal.path().join("lake")), files);
    assert_eq!(digest(piecemeal.path()), ledger_digest);
}

#[test]
fn a_schema_change_makes_partitions_stale_and_materialize_rederives_them() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path(), ALL_KINDS);
    run_ok(data.path(), &["materialize"]);
    {
        // Pretend the partitions were written by a build with another schema.
        let ledger = Ledger::open(data.path()).unwrap();
        let mut batch = ledger.batch().unwrap();
        for ((symbol, hour), mut p) in ledger.partitions().unwrap() {
            p.schema_hash = [7; 32];
            let findings = ledger.findings(&symbol, hour).unwrap();
            batch.put_partition(&symbol, hour, &p, &findings).unwrap();
        }
        batch.commit().unwrap();
    }
    // Three hours of rows, and two more reached by the metrics snapshot at
    // 03:00 (the last row of the generated file), which has no complete minute.
    let status = run_ok(data.path(), &["status"]);
    assert!(status.contains("5 stale"), "{status}");
    let out = run_ok(data.path(), &["materialize"]);
    assert!(out.contains("5 hours"), "{out}");
    let status = run_ok(data.path(), &["status"]);
    assert!(status.contains("0 stale"), "{status}");
}

/// A partition damaged in place (one byte flipped, same size) is not taken
/// for unchanged: the next replay writes it again, equal to the clean file.
#[test]
fn a_partition_damaged_in_place_is_written_again() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path(), ALL_KINDS);
    run_ok(data.path(), &["materialize"]);
    let lake = data.path().join("lake");
    let clean = support::lake_files(&lake);
    let (victim, _) = clean.iter().next().unwrap();
    let path = lake.join(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let out = run_ok(data.path(), &["materialize", "--from", "0"]);
    assert!(out.contains("1 written"), "{out}");
    assert_eq!(support::lake_files(&lake), clean);
}

#[test]
fn duckdb_reads_the_lake_with_hive_partitioning() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path(), ALL_KINDS);
    run_ok(data.path(), &["materialize"]);
    let script = r#"
import json, sys, duckdb
glob = sys.argv[1] + "/futures/um/minute/**/*.parquet"
con = duckdb.connect()
rel = f"read_parquet('{glob}', hive_partitioning = true)"
types = dict(con.execute(f"select column_name, column_type from (describe select * from {rel})").fetchall())
n, symbols, hours, first, last, gaps = con.execute(f"""
  select count(*), count(distinct symbol), count(distinct hour),
         epoch_ms(min(timestamp)), epoch_ms(max(timestamp)),
         count(*) filter (where low > least(open, close) or high < greatest(open, close))
  from {rel}""").fetchone()
row = con.execute(f"select open, high, low, close, volume_btc, trade_count, mark_price_open, funding_rate from {rel} order by timestamp limit 1").fetchone()
print(json.dumps({"types": types, "rows": n, "symbols": symbols, "hours": hours,
                  "first": first, "last": last, "bad_ohlc": gaps, "row": row}))
"#;
    let out = support::python()
        .args(["-c", script])
        .arg(data.path().join("lake"))
        .output()
        .expect("scripts/python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["rows"], 180);
    assert_eq!(seen["symbols"], 1);
    assert_eq!(seen["hours"], 3);
    assert_eq!(seen["first"], DAY);
    assert_eq!(seen["last"], DAY + 3 * HOUR_MS - 60_000);
    assert_eq!(seen["bad_ohlc"], 0);
    let types = &seen["types"];
    assert_eq!(types["timestamp"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(types["open"], "DOUBLE");
    assert_eq!(types["trade_count"], "BIGINT");
    assert_eq!(types["symbol"], "VARCHAR");

    // The first minute's kline, straight from the archive's CSV.
    let csv = support::csv_of(&support::archive_path(day.path(), "klines", DATE));
    let first = support::data_rows(&csv)[0];
    let fields: Vec<&str> = first.split(',').collect();
    let row = &seen["row"];
    for (i, column) in [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)] {
        let expected: f64 = fields[i].parse().unwrap();
        assert_eq!(row[column].as_f64().unwrap(), expected, "field {i}");
    }
    assert_eq!(row[5].as_i64().unwrap(), fields[8].parse::<i64>().unwrap());
    assert!(row[7].is_null(), "no funding archive, no settlement: NULL");
}

#[test]
fn the_summary_names_the_hours_without_a_complete_minute_and_counts_reads_per_hour() {
    let day = day();
    let data = tempfile::tempdir().unwrap();
    // Mark price klines alone: every hour is reached, no minute is complete.
    ingest(data.path(), day.path(), "markPriceKlines");
    let out = run_ok(data.path(), &["materialize"]);
    assert!(
        out.contains("3 hours: 0 written, 0 unchanged, 3 without a complete minute"),
        "{out}"
    );
    for hour in ["2024-03-01T00Z", "2024-03-01T01Z", "2024-03-01T02Z"] {
        assert!(out.contains(&format!("BTCUSDT {hour}")), "{hour}: {out}");
    }
    assert!(out.contains("trade, mark and index klines"), "{out}");
    assert!(out.contains("record reads"), "{out}");
    assert!(out.contains("read for each"), "{out}");
}

/// A record as event format version 1 (the receive time in ms) or 2 (in
/// ns) wrote it: the envelope's fields without time runs, then the events.
fn encoded_as(version: u8, record: &bml::event::Record) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Old<'a> {
        symbol: &'a str,
        source: &'a bml::event::Source,
        received: i64,
        events: &'a [bml::event::Event],
    }
    let mut out = vec![version, record.class() as u8];
    let old = Old {
        symbol: &record.symbol,
        source: &record.source,
        received: match version {
            1 => record.received_ms(),
            _ => record.received_ns,
        },
        events: &record.events,
    };
    out.extend(postcard::to_allocvec(&old).unwrap());
    out
}

/// A log written before event format 3 (no envelope runs; before format 2
/// receive times in ms), alone or with records of every version in between,
/// reads as it did: every record decodes with its receive time, and the lake
/// (index included: it reads envelopes only from version 3) is the
/// version-3 log's, byte for byte.
#[test]
fn a_log_of_older_event_formats_builds_the_same_lake() {
    let day = day();
    let v3 = tempfile::tempdir().unwrap();
    ingest(v3.path(), day.path(), ALL_KINDS);
    run_ok(v3.path(), &["materialize"]);
    let records = support::log_records(v3.path());
    for versions in [&[1][..], &[2], &[1, 2, 3]] {
        let data = tempfile::tempdir().unwrap();
        let wal = bml_wal::Wal::open(bml::data_dir::wal(data.path()), Default::default()).unwrap();
        for (i, (_, record, _)) in records.iter().enumerate() {
            let bytes = match versions[i % versions.len()] {
                3 => record.encode(),
                version => encoded_as(version, record),
            };
            wal.append(&bytes).unwrap();
        }
        drop(wal);
        run_ok(data.path(), &["materialize"]);
        let copied = support::log_records(data.path());
        assert_eq!(copied.len(), records.len());
        for ((_, was, _), (_, now, _)) in records.iter().zip(&copied) {
            assert_eq!(now.received_ms(), was.received_ms());
            assert_eq!(now.events, was.events);
        }
        assert_eq!(
            support::lake_files(&data.path().join("lake")),
            support::lake_files(&v3.path().join("lake")),
            "versions {versions:?}"
        );
    }
}
