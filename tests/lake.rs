//! The lake read back as a user reads it: pyarrow opens the directory as a
//! hive-partitioned dataset. Plus byte determinism and atomic replacement.

mod support;

use bml::lake::{partition_path, write_partition};
use bml::materialize::collect::collect_hour;
use bml::materialize::hour::build_hour;

const DAY: &str = "2024-03-01";
const HOUR: i64 = 1_709_251_200_000;

const READ_BACK: &str = r#"
import json, sys
import pyarrow.dataset as ds, pyarrow.parquet as pq
root, part = sys.argv[1], sys.argv[2]
table = ds.dataset(root + "/futures/um/minute", format="parquet", partitioning="hive").to_table()
first = table.slice(0, 1).to_pylist()[0]
print(json.dumps({
    "rows": table.num_rows,
    "types": {f.name: str(f.type) for f in table.schema},
    "first": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in first.items()},
    "schema_hash": pq.read_metadata(part).metadata[b"bml.schema_hash"].decode(),
    "oi_at_0005": table.column("oi_contracts")[5].as_py(),
}))
"#;

#[test]
fn pyarrow_reads_the_partition_with_hive_keys_and_the_spec_types() {
    let facts = support::generated_hour(DAY, HOUR);
    let rows = build_hour(&facts).rows;
    let lake = tempfile::tempdir().unwrap();
    let written = write_partition(lake.path(), "BTCUSDT", HOUR, &rows).unwrap();
    assert_eq!(
        written.key,
        "futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01/hour=00/part.parquet"
    );
    let path = lake.path().join(&written.key);
    assert_eq!(path, partition_path(lake.path(), "BTCUSDT", HOUR));
    // The file's mode follows the umask like any file a program creates (a
    // reader running as another user can open it), not a temp file's 0600.
    {
        use std::os::unix::fs::PermissionsExt;
        let probe = lake.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&probe));
        std::fs::remove_file(probe).unwrap();
    }

    let out = support::python()
        .args(["-c", READ_BACK])
        .arg(lake.path())
        .arg(&path)
        .output()
        .expect("scripts/python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["rows"], 60);
    let types = &seen["types"];
    assert_eq!(types["timestamp"], "timestamp[ms, tz=UTC]");
    assert_eq!(types["open"], "double");
    assert_eq!(types["trade_count"], "int64");
    assert_eq!(types["next_funding_time"], "int64");
    assert_eq!(types["symbol"], "string");
    assert_eq!(types["hour"], "int32");
    let first = &seen["first"];
    assert_eq!(first["timestamp"], "2024-03-01T00:00:00+00:00");
    assert_eq!(first["open"], rows[0].open);
    assert_eq!(first["close"], rows[0].close);
    assert_eq!(first["trade_count"], rows[0].trade_count);
    assert_eq!(first["vwap_1m"], rows[0].vwap_1m.unwrap());
    // The day's first metrics snapshot is 00:05: minute 00:00 has none.
    assert!(first["oi_contracts"].is_null() && rows[0].oi_contracts.is_none());
    assert_eq!(seen["oi_at_0005"], rows[5].oi_contracts.unwrap());
    assert!(first["liq_long_count"].is_null() && first["funding_rate"].is_null());
    assert_eq!(seen["schema_hash"], hex::encode(bml::schema::schema_hash()));
}

#[test]
fn the_same_facts_give_the_same_bytes_and_a_rewrite_is_atomic() {
    let facts = support::generated_hour(DAY, HOUR);
    let lake = tempfile::tempdir().unwrap();
    let first = write_partition(lake.path(), "BTCUSDT", HOUR, &build_hour(&facts).rows).unwrap();

    // The same facts, shuffled and doubled, through the collector: identical file.
    let mut rng = fastrand::Rng::with_seed(21);
    let mut events: Vec<bml::event::Event> = facts
        .klines
        .iter()
        .cloned()
        .map(bml::event::Event::Kline)
        .collect();
    events.extend(
        facts
            .agg_trades
            .iter()
            .cloned()
            .map(bml::event::Event::AggTrade),
    );
    events.extend(
        facts
            .book_tickers
            .iter()
            .cloned()
            .map(bml::event::Event::BookTicker),
    );
    events.extend(
        facts
            .metrics
            .iter()
            .cloned()
            .map(bml::event::Event::Metrics),
    );
    events.extend(events.clone());
    rng.shuffle(&mut events);
    let records: Vec<bml::event::Record> = events
        .chunks(777)
        .map(|chunk| bml::event::Record {
            symbol: "BTCUSDT".into(),
            source: bml::event::Source::Rest {
                endpoint: "/x".into(),
            },
            received_ns: 0,
            events: chunk.to_vec(),
        })
        .collect();
    let (collected, _) = collect_hour(HOUR, &records);
    let second =
        write_partition(lake.path(), "BTCUSDT", HOUR, &build_hour(&collected).rows).unwrap();
    assert_eq!(
        first.content_hash, second.content_hash,
        "byte-identical partition"
    );
    assert_eq!(
        std::fs::read(lake.path().join(&second.key)).unwrap().len() as u64,
        second.bytes
    );

    let second_path = lake.path().join(&second.key);
    let dir = second_path.parent().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["part.parquet".to_string()],
        "no temporary file left behind"
    );
}
