//! Time travel: `bml materialize --as-of OFFSET --lake-dir DIR` derives the
//! lake as the log stood when it ended at OFFSET, byte for byte the lake a
//! plain materialize wrote then; `bml wal offset-at TIME` finds that offset.

mod support;

use std::path::Path;

use support::{bml, ingest_day, lake_files, republish_klines, text};

const KINDS: &str = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,metrics";

fn materialize(data: &Path, extra: &[&str]) -> std::process::Output {
    bml(data, &[&["materialize"], extra].concat())
}

/// The number a command printed alone on stdout.
fn number(out: &std::process::Output) -> u64 {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `materialize --as-of OFFSET` into `lake`.
fn as_of(data: &Path, lake: &Path, offset: &str) -> std::process::Output {
    let lake = lake.to_str().unwrap();
    bml(
        data,
        &["--lake-dir", lake, "materialize", "--as-of", offset],
    )
}

#[test]
fn a_lake_derived_as_of_an_earlier_log_end_is_the_lake_of_that_time_byte_for_byte() {
    let first = support::vision_day("2024-03-01", 2, 11);
    let second = support::vision_day("2024-03-02", 2, 12);
    let data = tempfile::tempdir().unwrap();

    ingest_day(data.path(), first.path(), "2024-03-01", KINDS);
    let out = materialize(data.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let then = lake_files(&data.path().join("lake"));
    let end = bml::eventlog::head(data.path()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(std::time::Duration::from_millis(20));

    // Later: a re-published day 1 and a new day 2 change the lake.
    republish_klines(first.path(), "2024-03-01");
    ingest_day(data.path(), first.path(), "2024-03-01", "klines");
    ingest_day(data.path(), second.path(), "2024-03-02", KINDS);
    let out = materialize(data.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let now = lake_files(&data.path().join("lake"));
    assert!(now.len() > then.len());
    let changed = then.iter().filter(|(p, h)| now.get(*p) != Some(*h)).count();
    assert!(changed > 0, "the re-published archive changed no partition");

    // The offset of the time between the two is the first log's end.
    let at = bml(data.path(), &["wal", "offset-at", &between.to_string()]);
    assert_eq!(number(&at), end);
    let at = bml(data.path(), &["log", "offset-at", "2099-01-01"]);
    assert_eq!(number(&at), bml::eventlog::head(data.path()).unwrap());

    // As of that end: the first lake, byte for byte; the data dir untouched.
    let checkpoint = bml::ledger::Ledger::open(data.path())
        .unwrap()
        .checkpoint()
        .unwrap();
    let past = tempfile::tempdir().unwrap();
    let lake = past.path().join("lake");
    let out = as_of(data.path(), &lake, &end.to_string());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lake_files(&lake), then);
    assert_eq!(lake_files(&data.path().join("lake")), now);
    let ledger = bml::ledger::Ledger::open(data.path()).unwrap();
    assert_eq!(ledger.checkpoint().unwrap(), checkpoint);
    drop(ledger);

    // Again into the same dir, as of now: the files of the later lake.
    let head = bml::eventlog::head(data.path()).unwrap().to_string();
    let out = as_of(data.path(), &lake, &head);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lake_files(&lake), now);

    // Refused: past the log's end, or into the data dir's own lake.
    let past_end = (bml::eventlog::head(data.path()).unwrap() + 1).to_string();
    let out = as_of(data.path(), &lake, &past_end);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("past the log's end"), "{}", text(&out));
    let out = materialize(data.path(), &["--as-of", &end.to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--lake-dir"), "{}", text(&out));
    assert_eq!(lake_files(&data.path().join("lake")), now);
}
