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

/// A generated day of `hours` (its three kline kinds only) ingested and
/// materialized: the day's dir and the data dir.
fn klines_lake(hours: u32, seed: u32) -> (tempfile::TempDir, tempfile::TempDir) {
    let day = support::vision_day(DATE, hours, seed);
    let data = tempfile::tempdir().unwrap();
    let kinds = "klines,markPriceKlines,indexPriceKlines";
    ingest_day(data.path(), day.path(), DATE, kinds);
    materialize(data.path());
    (day, data)
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
    let day = support::vision_day(DATE, 3, 21);
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    ingest_day(data, day.path(), DATE, KINDS);
    materialize(data);
    let older = std::fs::read(partition(data, 0)).unwrap();
    // `status` says which inputs the lake's minutes lack, and why.
    let status = text(&bml(data, &["status"]));
    assert!(
        status.contains(
            "inputs          BTCUSDT 2024-03-01T00Z to 2024-03-01T02Z, 180 minutes in the lake: "
        ),
        "{status}"
    );
    assert!(
        status.contains("bookTicker lacks 180 (no source in the log yet)"),
        "{status}"
    );
    assert!(
        status.contains("L2 book lacks 180 (no live collector covered it)"),
        "{status}"
    );
    assert!(!status.contains("trade klines lacks"), "{status}");

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
    let mut flipped = std::fs::read(partition(data, 2)).unwrap();
    flipped[100] ^= 0x01;
    std::fs::write(partition(data, 2), &flipped).unwrap(); // a flipped byte
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
        "hour=02/part.parquet",
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
        [
            "divergent",
            "divergent",
            "ledger entry",
            "missing",
            "stray",
            "temporary"
        ]
    );
    assert_eq!(report["problems"], 6);
    assert_eq!(report["unrepaired"], 6);

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
    assert!(said.contains("6 repaired, 0 left"), "{said}");
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(lake_files(&data.join("lake")), good);
}

#[test]
fn a_damaged_log_is_named_and_the_lake_is_not_judged_by_it() {
    let (_day, dir) = klines_lake(1, 22);
    let data = dir.path();
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

/// Reconciliation on the simulator: a day built from REST, then the same day
/// from Vision with a few facts made to differ in the archives: the report
/// counts exactly those as conflicting (every other fact both held as equal),
/// shows them field by field with Vision kept, and the coverage names both
/// sources for every minute.
/// A 2-hour day ingested from REST (the simulator), then from Vision with
/// two klines (volume) and three aggTrades (quantity) made to differ.
fn day_from_rest_then_altered_vision() -> (tempfile::TempDir, tempfile::TempDir) {
    let day = support::vision_day_at_rates(DATE, 2, 23, Some((2.0, 5.0)));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    {
        let sim = support::Sim::start(day.path(), &[]);
        let args = support::rest_ingest_args(
            DATE,
            "2024-03-01T02:00",
            sim.url(),
            &["--kinds", "klines,aggTrades"],
        );
        let out = bml(data, &args);
        assert!(text(&out).contains("0 failed"), "{}", text(&out));
    }
    support::alter_archive(day.path(), "klines", DATE, &[3, 70], 5);
    support::alter_archive(day.path(), "aggTrades", DATE, &[10, 11, 500], 2);
    ingest_day(data, day.path(), DATE, "klines,aggTrades");
    materialize(data);
    (day, dir)
}

#[test]
fn reconciliation_counts_exactly_the_facts_made_to_differ() {
    let (day, dir) = day_from_rest_then_altered_vision();
    let data = dir.path();
    let report = audit_json(data);
    let reconciled: Vec<(String, String, u64, u64)> = report["reconciliation"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["day"], DATE);
            (
                d["kind"].as_str().unwrap().to_string(),
                d["sources"].as_str().unwrap().to_string(),
                d["equal"].as_u64().unwrap(),
                d["conflicting"].as_u64().unwrap(),
            )
        })
        .collect();
    let trades = support::data_rows(&support::csv_of(&support::archive_path(
        day.path(),
        "aggTrades",
        DATE,
    )))
    .len() as u64;
    assert_eq!(
        reconciled,
        vec![
            ("aggTrade".into(), "vision+rest".into(), trades - 3, 3),
            ("kline".into(), "vision+rest".into(), 120 - 2, 2),
        ]
    );
    assert!(report["reconciliation"]["rule"]
        .as_str()
        .unwrap()
        .starts_with("Vision > REST > live"));
    let shown: Vec<&str> = report["reconciliation"]["first_conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 5, "{shown:?}");
    for detail in &shown {
        assert!(detail.contains(": kept vision:"), "{detail}");
        assert!(detail.contains(", dropped rest:"), "{detail}");
    }
    assert_eq!(
        shown.iter().filter(|d| d.contains("volume: ")).count(),
        2,
        "{shown:?}"
    );
    assert_eq!(
        shown.iter().filter(|d| d.contains("quantity: ")).count(),
        3,
        "{shown:?}"
    );

    // Coverage: both sources held the trade klines of all 120 minutes; the
    // live-only classes are gaps, for want of a collector.
    let coverage = report["coverage"].as_array().unwrap();
    assert_eq!(coverage.len(), 1, "one symbol-day");
    assert_eq!(coverage[0]["minutes"], 120);
    let class = |name: &str| {
        coverage[0]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == name)
            .unwrap()
            .clone()
    };
    let klines = class("trade klines");
    assert_eq!(
        (klines["vision"].as_u64(), klines["rest"].as_u64()),
        (Some(120), Some(120))
    );
    assert_eq!(klines["covered"], 120);
    assert_eq!(klines["gaps"], serde_json::json!([]));
    let book = class("L2 book");
    assert_eq!(
        book["gaps"],
        serde_json::json!([{ "minutes": 120, "reason": bml::audit::NO_COLLECTOR }])
    );
    let marks = class("mark klines");
    assert_eq!(
        marks["gaps"],
        serde_json::json!([{ "minutes": 120, "reason": bml::audit::NOT_FETCHED }])
    );
    // The table says the same in words.
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("BTCUSDT kline held by vision+rest: 118 equal, 2 conflicting"),
        "{said}"
    );
    assert!(said.contains("GAP  L2 book: 120 minutes"), "{said}");
}

/// `--html`: one self-contained page, opened in a real headless Chromium: it
/// draws a cell per hour and column class in the state the coverage gives
/// (its script counts them once drawn), the reconciliation table, and asks
/// nothing of the network. The screenshot is kept in
/// `target/test-artifacts/audit-page.png`.
#[test]
fn the_html_page_renders_in_a_real_browser() {
    let (_day, dir) = day_from_rest_then_altered_vision();
    let data = dir.path();
    let page = data.join("audit.html");
    let (code, said) = audit(data, &["--html", page.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    let html = std::fs::read_to_string(&page).unwrap();
    for outside in ["http://", "https://", " src=", " href=", "@import", "url("] {
        assert!(!html.contains(outside), "the page reaches out: {outside}");
    }
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("audit-page.png");
    let dom = support::headless_chromium(&page, &shot);
    // 11 classes x 24 hours; the day has 2 hours: trade klines and aggTrades
    // from both sources (Vision's colour), the other history classes not
    // fetched, the live-only classes without a collector.
    assert!(
        dom.contains("drawn: m 12, n 6, o 242, v 4"),
        "{}",
        dom[dom.find("drawn: ").unwrap_or(0)..]
            .chars()
            .take(200)
            .collect::<String>()
    );
    assert!(dom.contains("<span id=\"verdict\">clean</span>"));
    let reconciliation = &dom[dom.find("id=\"reconciliation\"").unwrap()..];
    assert!(reconciliation.contains("<td>aggTrade</td><td>vision+rest</td>"));
    assert!(reconciliation.contains("<td>kline</td><td>vision+rest</td><td>118</td><td>2</td>"));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

/// kill -9 of `audit --repair` at random instants: every partition file is
/// whole at every kill (the damaged one or the repaired one, never half),
/// the ledger opens, and a later `audit --repair` finishes the work: a last
/// audit is clean, the lake is byte-identical to the undamaged one, and no
/// scratch dir of a killed audit is left.
#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn kill_9_during_repair_leaves_whole_files_and_a_rerun_converges() {
    let day = support::vision_day_at_rates(DATE, 6, 31, Some((2.0, 5.0)));
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    ingest_day(data, day.path(), DATE, KINDS);
    materialize(data);
    let lake = data.join("lake");
    let good = lake_files(&lake);
    let good_bytes: std::collections::BTreeMap<PathBuf, Vec<u8>> = good
        .keys()
        .map(|rel| (rel.clone(), std::fs::read(lake.join(rel)).unwrap()))
        .collect();
    let started = std::time::Instant::now();
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    let full_run = started.elapsed();

    let mut rng = fastrand::Rng::with_seed(17);
    let mut interrupted = 0;
    for kill in 0..8 {
        for (rel, bytes) in &good_bytes {
            let path = lake.join(rel);
            match rng.u8(..3) {
                0 => drop(std::fs::remove_file(&path)),
                1 => {
                    let mut flipped = bytes.clone();
                    let at = rng.usize(..flipped.len());
                    flipped[at] ^= 0x40;
                    std::fs::write(&path, &flipped).unwrap();
                }
                _ => {}
            }
        }
        // What is on disk before the repair (a killed one may have left damage).
        let before: std::collections::BTreeMap<PathBuf, Vec<u8>> = lake_files(&lake)
            .keys()
            .map(|rel| (rel.clone(), std::fs::read(lake.join(rel)).unwrap()))
            .collect();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
            .args(["--quiet", "--data-dir"])
            .arg(data)
            .args(["audit", "--repair"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full_run.mul_f64(0.2 + rng.f64()));
        interrupted += usize::from(child.try_wait().unwrap().is_none());
        let _ = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
        for rel in lake_files(&lake).keys() {
            let name = rel.file_name().unwrap().to_str().unwrap();
            if name != "part.parquet" {
                assert!(
                    name.starts_with(".part."),
                    "kill {kill}: unexpected {rel:?}"
                );
                continue;
            }
            let bytes = std::fs::read(lake.join(rel)).unwrap();
            assert!(
                Some(&bytes) == good_bytes.get(rel) || Some(&bytes) == before.get(rel),
                "kill {kill}: {rel:?} is neither the damaged nor the repaired file"
            );
        }
        Ledger::open(data).unwrap().checkpoint().unwrap();
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} repairs were cut short"
    );
    let (code, said) = audit(data, &["--repair"]);
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("audit: clean"), "{said}");
    assert_eq!(lake_files(&lake), good);
    let scratch: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".audit-"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
}

/// A data dir restored from two backups of different ages (the log older
/// than the ledger): the audit names the binding, exits 3 and judges no
/// file against a log the ledger does not describe; `bml materialize`
/// rebuilds the ledger, and the audit is clean again.
#[test]
fn a_ledger_that_does_not_describe_the_log_is_named() {
    let (day, dir) = klines_lake(2, 21);
    let data = dir.path();
    let older_log = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let out = std::process::Command::new("cp")
            .args(["-a", "--"])
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    copy(&data.join("wal"), older_log.path());
    ingest_day(data, day.path(), DATE, "aggTrades,metrics");
    materialize(data);
    std::fs::remove_dir_all(data.join("wal")).unwrap();
    copy(&older_log.path().join("wal"), data);

    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("BINDING"), "{said}");
    assert!(said.contains("the log now ends before that"), "{said}");
    assert!(
        said.contains("lake    not checked: the ledger does not describe this log"),
        "{said}"
    );
    let report = audit_json(data);
    assert_eq!(kinds(&report), vec!["binding"]);

    materialize(data);
    let (code, said) = audit(data, &[]);
    assert_eq!(code, Some(0), "{said}");
}
