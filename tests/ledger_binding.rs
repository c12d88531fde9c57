//! A ledger is derived from one log, up to one record, and says so. When the log
//! is not that log any more (its tail lost and appended to again, another log
//! put in its place), or the ledger itself is damaged, the ledger is rebuilt
//! from the log, never trusted: the lake ends up equal to a clean build's.

mod support;

use std::path::Path;

use support::{bml, ingest_day, lake_files, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
const KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";

fn run_ok(data: &Path, args: &[&str]) -> String {
    let out = bml(data, args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A data dir with the day ingested and materialized.
fn built(day: &Path) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    ingest_day(data.path(), day, DATE, KINDS);
    run_ok(data.path(), &["materialize"]);
    data
}

#[test]
fn a_log_cut_back_and_appended_to_again_rebuilds_the_ledger() {
    let day = vision_day_at_rates(DATE, 3, 11, Some((2.0, 5.0)));
    let clean = built(day.path());
    let clean_lake = lake_files(&clean.path().join("lake"));

    let data = built(day.path());
    // Lose the last third of the log (as a power cut after an unsynced read
    // would), then ingest again: new records take the offsets the ledger
    // already indexed.
    let seg = support::last_segment(data.path()).unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();
    ingest_day(data.path(), day.path(), DATE, KINDS);
    let status = bml(data.path(), &["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    assert!(
        text(&status).contains("is not the one it indexed"),
        "{}",
        text(&status)
    );

    let out = run_ok(data.path(), &["materialize"]);
    assert!(out.contains("ledger rebuilt from the log"), "{out}");
    assert_eq!(lake_files(&data.path().join("lake")), clean_lake);
    // And now it matches: the next run changes nothing.
    let out = run_ok(data.path(), &["materialize"]);
    assert!(
        !out.contains("rebuilt") && out.contains("0 written"),
        "{out}"
    );
    assert_eq!(bml(data.path(), &["status"]).status.code(), Some(0));
}

#[test]
fn another_log_or_a_damaged_ledger_is_rebuilt_never_used() {
    let day = vision_day_at_rates(DATE, 2, 12, Some((1.0, 2.0)));
    let data = built(day.path());
    let clean_lake = lake_files(&data.path().join("lake"));

    // Another log in place of the first (its id differs).
    std::fs::write(data.path().join("wal/log-id"), "0123456789abcdef\n").unwrap();
    let out = run_ok(data.path(), &["materialize"]);
    assert!(out.contains("it was derived from log"), "{out}");
    assert_eq!(lake_files(&data.path().join("lake")), clean_lake);

    // 64 bytes of garbage inside the ledger: a named error that says the way
    // out (never a panic), then the way out works.
    let ledger = data.path().join("ledger.redb");
    let mut bytes = std::fs::read(&ledger).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let at = bytes.len() / 3;
    for b in &mut bytes[at..at + 64] {
        *b = rng.u8(..);
    }
    std::fs::write(&ledger, &bytes).unwrap();
    for command in [&["materialize"][..], &["status"], &["show-watermark"]] {
        let out = bml(data.path(), command);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {all}");
        assert!(
            all.contains("ledger.redb is damaged") && all.contains("--rebuild-ledger"),
            "{command:?}: {all}"
        );
    }
    let out = run_ok(data.path(), &["materialize", "--rebuild-ledger"]);
    assert!(out.contains("a rebuild was asked for"), "{out}");
    assert_eq!(lake_files(&data.path().join("lake")), clean_lake);
}

/// `status` and `show-watermark` answer while another process holds the
/// ledger (a materialize running), from the state the last run saved; and
/// `status` counts lake files the ledger names but the disk lacks.
#[test]
fn status_answers_while_the_ledger_is_held_and_counts_missing_and_damaged_files() {
    let day = vision_day_at_rates(DATE, 2, 13, Some((1.0, 2.0)));
    let data = built(day.path());
    let live = run_ok(data.path(), &["status"]);
    let held = bml::ledger::Ledger::open(data.path()).unwrap();
    let out = run_ok(data.path(), &["status"]);
    assert!(out.contains("the ledger is in use"), "{out}");
    let same = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("note"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(same(&out), same(&live));
    let marks = run_ok(data.path(), &["show-watermark"]);
    assert!(marks.starts_with("BTCUSDT\t2024-03-01T01:59Z"), "{marks}");
    drop(held);

    let lake = data.path().join("lake");
    let mut files = lake_files(&lake).into_keys();
    let (first, second) = (files.next().unwrap(), files.next().unwrap());
    std::fs::remove_file(lake.join(first)).unwrap();
    let cut = lake.join(second);
    let len = std::fs::metadata(&cut).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    file.set_len(len - 100).unwrap();
    let out = bml(data.path(), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("1 MISSING"), "{}", text(&out));
    assert!(text(&out).contains("1 DAMAGED"), "{}", text(&out));
    run_ok(data.path(), &["materialize", "--from", "0"]);
    assert_eq!(bml(data.path(), &["status"]).status.code(), Some(0));
}
