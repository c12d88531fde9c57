//! kill -9 during `bml materialize`, at random instants: afterwards every
//! partition file is absent or exactly the bytes a clean run writes, the ledger
//! opens, and a rerun converges to the clean run's lake and ledger.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bml::ledger::Ledger;
use support::{bml, text, vision_day_at_rates};

const KILLS: usize = 24;

fn ingest(data: &Path, day: &Path) {
    support::ingest_day(data, day, "2024-03-01", ALL_KINDS);
}

/// Every daily kind the generator writes.
const ALL_KINDS: &str = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics,bookDepth";

/// Every file under the lake: relative path → bytes.
fn lake(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    bml::lake::files(root)
        .unwrap()
        .into_iter()
        .map(|rel| {
            let bytes = std::fs::read(root.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

fn materialize(data: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_bml"))
        .args(["--quiet", "--data-dir"])
        .arg(data)
        .args(["materialize", "--from", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Sends SIGKILL to `child` `after` its start (no destructor, no flush, no
/// cleanup runs); whether it was still running then.
fn killed_after(mut child: std::process::Child, after: std::time::Duration) -> bool {
    std::thread::sleep(after);
    let finished = child.try_wait().unwrap().is_some();
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    !finished
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn kill_9_at_random_instants_leaves_whole_partitions_and_a_rerun_converges() {
    let day = vision_day_at_rates("2024-03-01", 4, 21, Some((2.0, 5.0)));
    let clean = tempfile::tempdir().unwrap();
    ingest(clean.path(), day.path());
    let started = Instant::now();
    assert!(materialize(clean.path()).wait().unwrap().success());
    let full_run = started.elapsed();
    let reference = lake(&clean.path().join("lake"));
    let reference_digest = Ledger::open(clean.path()).unwrap().digest().unwrap();
    assert_eq!(reference.len(), 4);

    let data = tempfile::tempdir().unwrap();
    ingest(data.path(), day.path());
    let mut rng = fastrand::Rng::with_seed(99);
    let mut interrupted = 0;
    for kill in 0..KILLS {
        // Vary what the killed run has to redo: sometimes the ledger is gone
        // (everything re-indexed), sometimes partitions are.
        if rng.u8(..3) == 0 {
            let _ = std::fs::remove_file(data.path().join("ledger.redb"));
        }
        for path in lake(&data.path().join("lake")).keys() {
            if rng.bool() {
                let _ = std::fs::remove_file(data.path().join("lake").join(path));
            }
        }
        let after = full_run.mul_f64(rng.f64());
        if killed_after(materialize(data.path()), after) {
            interrupted += 1;
        }
        for (path, bytes) in lake(&data.path().join("lake")) {
            let name = path.file_name().unwrap().to_str().unwrap();
            if name == "part.parquet" {
                assert_eq!(
                    Some(&bytes),
                    reference.get(&path),
                    "kill {kill} after {after:?}: {path:?} is not the complete partition"
                );
            } else {
                assert!(
                    name.starts_with(".part.") && name.ends_with(".tmp"),
                    "kill {kill}: unexpected file {path:?}"
                );
            }
        }
        // The ledger opens after every kill (redb recovers to its last commit).
        Ledger::open(data.path()).unwrap().checkpoint().unwrap();
    }
    assert!(
        interrupted >= KILLS / 2,
        "only {interrupted} runs were cut short"
    );

    let out = bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = bml(data.path(), &["materialize", "--from", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        lake(&data.path().join("lake")),
        reference,
        "converged, no stray files"
    );
    assert_eq!(
        Ledger::open(data.path()).unwrap().digest().unwrap(),
        reference_digest
    );
}

/// The daily kinds without the book's depth: what closing days needs.
const DAY_KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";
const CLOSING_KILLS: usize = 10;
/// `--layout day` with every day closed.
const CLOSE: [&str; 4] = ["--layout", "day", "--day-settle-hours", "0"];

/// `bml materialize` of a data dir into its lake, closing every day.
fn close_days(data: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_bml"))
        .args(["--quiet", "--data-dir"])
        .arg(data)
        .args(CLOSE)
        .arg("materialize")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn kill_9_while_days_close_leaves_no_minute_missing_and_a_rerun_converges() {
    let dates = ["2024-03-01", "2024-03-02", "2024-03-03"];
    // Three days in the day layout, none closed yet: an hour's file each.
    let open_state = tempfile::tempdir().unwrap();
    for (i, date) in dates.iter().enumerate() {
        let day = vision_day_at_rates(date, 24, 31 + i as u32, Some((0.5, 1.0)));
        support::ingest_day(open_state.path(), day.path(), date, DAY_KINDS);
    }
    let out = bml(
        open_state.path(),
        &[
            "--layout",
            "day",
            "--day-settle-hours",
            "1000000",
            "materialize",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let open = lake(&open_state.path().join("lake"));
    assert_eq!(open.len(), 72);

    let reference = tempfile::tempdir().unwrap();
    copy(open_state.path(), reference.path());
    let started = Instant::now();
    assert!(close_days(reference.path()).wait().unwrap().success());
    let full_run = started.elapsed();
    let closed = lake(&reference.path().join("lake"));
    assert_eq!(closed.len(), 3);
    let reference_digest = Ledger::open(reference.path()).unwrap().digest().unwrap();

    let hour_files = |date: &str| -> Vec<PathBuf> {
        let day_file = day_file(date);
        open.keys()
            .filter(|p| p.parent() == day_file.parent())
            .cloned()
            .collect()
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut interrupted, mut mid_close) = (0, 0);
    for kill in 0..CLOSING_KILLS {
        let data = tempfile::tempdir().unwrap();
        copy(open_state.path(), data.path());
        let after = full_run.mul_f64(rng.f64());
        if killed_after(close_days(data.path()), after) {
            interrupted += 1;
        }
        let now = lake(&data.path().join("lake"));
        for (path, bytes) in &now {
            let name = path.file_name().unwrap().to_str().unwrap();
            if bml::lake::is_temporary(name) {
                continue;
            }
            assert!(
                open.get(path) == Some(bytes) || closed.get(path) == Some(bytes),
                "kill {kill} after {after:?}: {path:?} is neither an hour's nor a day's whole file"
            );
        }
        let ledger = Ledger::open(data.path()).unwrap();
        for date in dates {
            let (file, hours) = (day_file(date), hour_files(date));
            let all_hours = hours.iter().all(|h| now.contains_key(h));
            assert!(
                now.contains_key(&file) || all_hours,
                "kill {kill} after {after:?}: minutes of {date} are missing"
            );
            if !all_hours {
                // An hour's file goes only once the ledger names the day's.
                let named: Vec<Option<String>> = ledger
                    .partitions()
                    .unwrap()
                    .into_iter()
                    .filter(|(_, p)| {
                        p.path
                            .as_deref()
                            .is_some_and(|k| k.contains(date_dir(date).as_str()))
                    })
                    .map(|(_, p)| p.path)
                    .collect();
                assert_eq!(named.len(), 24, "kill {kill}: {date}");
                assert!(
                    named.iter().all(|p| p.as_deref() == file.to_str()),
                    "kill {kill} after {after:?}: {date}'s hour files went before the ledger named its file: {named:?}"
                );
            }
            if now.contains_key(&file) && hours.iter().any(|h| now.contains_key(h)) {
                mid_close += 1;
            }
        }
        drop(ledger);

        assert!(close_days(data.path()).wait().unwrap().success());
        assert_eq!(
            lake(&data.path().join("lake")),
            closed,
            "kill {kill}: converged, no hour file left"
        );
        assert_eq!(
            Ledger::open(data.path()).unwrap().digest().unwrap(),
            reference_digest
        );
    }
    eprintln!("{interrupted} of {CLOSING_KILLS} runs cut short, {mid_close} days cut mid-close");
    assert!(
        interrupted >= CLOSING_KILLS / 2,
        "only {interrupted} runs were cut short"
    );
}

/// `day=DD` of the lake's path for a date.
fn date_dir(date: &str) -> String {
    format!("day={}", &date[8..])
}

/// The day file of a date, relative to the lake root.
fn day_file(date: &str) -> PathBuf {
    PathBuf::from(format!(
        "futures/um/minute/symbol=BTCUSDT/year={}/month={}/{}/part.parquet",
        &date[..4],
        &date[5..7],
        date_dir(date)
    ))
}
