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
        let mut child = materialize(data.path());
        let after = full_run.mul_f64(rng.f64());
        std::thread::sleep(after);
        let finished = child.try_wait().unwrap().is_some();
        // SIGKILL: no destructor, no flush, no cleanup runs.
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
        if !finished {
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
