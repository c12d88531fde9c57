//! `bml audit`: each kind of damage to the lake, the ledger or the log is
//! found, named and exits 3; `--repair` mends the lake and the ledger, and a
//! second audit is clean. (Random logs auditing clean: the determinism
//! property, `tests/properties`.)

mod support;

use std::path::{Path, PathBuf};

use bml::ledger::Ledger;
use support::{bml, ingest_day, lake_files, text};

const KINDS: &str = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,metrics";
const DATE: &str = "2024-03-01";

fn audit(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = bml(data, &[&["audit"], extra].concat());
    (out.status.code(), text(&out))
}

fn audit_json(data: &Path) -> serde_json::Value {
    let out = bml(data, &["audit", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn materialize(data: &Path) {
    let out = bml(data, &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The partition file of `hour` (0 or 1) of the generated day.
fn partition(data: &Path, hour: u32) -> PathBuf {
    data.join(format!(
        "lake/futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01/hour={hour:02}/part.parquet"
    ))
}

/// The kinds of problem a JSON report names, sorted.
fn kinds(report: &serde_json::Value) -> Vec<String> {
    let mut kinds: Vec<String> = ["lake", "ledger"]
        .iter()
        .flat_map(|part| report[part]["problems"].as_array().unwrap().clone())
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn every_kind_of_damage_is_found_named_and_repaired() {
    let day = support::vision_day(DATE, 2, 21);
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    ingest_day(data, day.path(), DATE, KINDS);
    materialize(data);
    let older = std::fs::read(partition(data, 0)).unwrap();

    // A later log: Binance re-publishes the klines with one volume changed.
    support::republish_klines(day.path(), DATE);
    ingest_day(data, day.path(), DATE, "klines");
    materialize(data);
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("audit: clean"), "{said}");
    let good = lake_files(&data.join("lake"));

    // The damage.
    std::fs::write(partition(data, 0), &older).unwrap(); // written from an older log
    let hour1 = partition(data, 1);
    std::fs::remove_file(&hour1).unwrap(); // deleted
    let dir0 = partition(data, 0).parent().unwrap().to_path_buf();
    std::fs::write(dir0.join(".part.4242.tmp"), b"half a file").unwrap(); // stale temporary
    let stray =
        data.join("lake/futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01/hour=07");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("part.parquet"), &older).unwrap(); // stray
    {
        // A ledger entry with a wrong hash.
        let ledger = Ledger::open(data).unwrap();
        let hour0 = 1_709_251_200_000;
        let mut p = ledger.partition("BTCUSDT", hour0).unwrap().unwrap();
        let findings = ledger.findings("BTCUSDT", hour0).unwrap();
        p.content_hash = Some([7; 32]);
        let mut batch = ledger.batch().unwrap();
        batch
            .put_partition("BTCUSDT", hour0, &p, &findings)
            .unwrap();
        batch.commit().unwrap();
    }

    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(3), "{said}");
    for named in [
        "DIVERGENT",
        "hour=00/part.parquet",
        "MISSING",
        "hour=01/part.parquet",
        "STRAY",
        "hour=07/part.parquet",
        "TEMPORARY",
        ".part.4242.tmp",
        "LEDGER ENTRY",
        "content hash 070707070707… held",
    ] {
        assert!(said.contains(named), "{named} not in\n{said}");
    }
    let report = audit_json(data);
    assert_eq!(
        kinds(&report),
        ["divergent", "ledger entry", "missing", "stray", "temporary"]
    );
    assert_eq!(report["problems"], 5);
    assert_eq!(report["unrepaired"], 5);

    // A filtered audit sees only what it is asked about.
    let (code, said) = audit(
        data,
        &["--start", "2024-03-01T01:00", "--end", "2024-03-01T02:00"],
    );
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains("MISSING") && !said.contains("DIVERGENT"),
        "{said}"
    );

    let (code, said) = audit(data, &["--repair"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("5 repaired, 0 left"), "{said}");
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(lake_files(&data.join("lake")), good);
}

#[test]
fn a_damaged_log_is_named_and_the_lake_is_not_judged_by_it() {
    let day = support::vision_day(DATE, 1, 22);
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    ingest_day(
        data,
        day.path(),
        DATE,
        "klines,markPriceKlines,indexPriceKlines",
    );
    materialize(data);
    let segment = support::last_segment(data).expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();

    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("log     DAMAGED"), "{said}");
    assert!(
        said.contains(segment.file_name().unwrap().to_str().unwrap()),
        "{said}"
    );
    assert!(said.contains("lake    not checked"), "{said}");
    let (code, said) = audit(data, &["--repair"]);
    assert_eq!(code, Some(3), "the log is not audit's to repair: {said}");
}
