//! A randomized torture run, as an operator's worst week would go: ingests and
//! materializes, some killed with SIGKILL at random instants, the log's tail
//! cut at random bytes, a bit flipped anywhere in the log, random bytes written
//! into the ledger, a byte flipped in a partition. After every step the
//! invariant: `bml materialize` either refuses with a named error (a damaged
//! ledger, which the documented `--rebuild-ledger` then repairs; a damaged log,
//! which the documented `bml wal repair` then repairs), or leaves the lake
//! equal to the lake a fresh data dir derives from a copy of the same log.
//! Damage that no replay reached is found by `bml wal verify` and repaired the
//! same way. The lake is never trusted beyond the log.
//!
//! Bounded for CI (`BML_TORTURE_STEPS`, default 30); the seed is printed and
//! can be set (`BML_TORTURE_SEED`) to replay a run.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{bml, lake_files, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
const KINDS: [&str; 7] = [
    "klines",
    "markPriceKlines",
    "indexPriceKlines",
    "premiumIndexKlines",
    "aggTrades",
    "bookTicker",
    "metrics",
];

/// Runs bml, killing it with SIGKILL after `kill_after` if given; returns the
/// exit code (`None` when killed).
fn run(data: &Path, args: &[&str], kill_after: Option<Duration>) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bml"))
        .args(["--quiet", "--data-dir"])
        .arg(data)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        let _ = child.kill();
    }
    child.wait().unwrap().code()
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn after_any_step_the_lake_is_what_the_log_holds_or_a_named_refusal() {
    let steps = support::env_u64("BML_TORTURE_STEPS", 30);
    let seed = support::env_u64("BML_TORTURE_SEED", fastrand::u64(..));
    println!("torture: {steps} steps, seed {seed} (BML_TORTURE_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let day = vision_day_at_rates(DATE, 2, 41, Some((1.5, 3.0)));
    let data = tempfile::tempdir().unwrap();
    let from_dir = day.path().to_str().unwrap().to_string();
    let mut tally = std::collections::BTreeMap::<&str, u32>::new();

    for step in 0..steps {
        let kill = rng.bool().then(|| Duration::from_millis(rng.u64(0..400)));
        let action = match rng.u32(0..11) {
            0..=3 => {
                let kinds: Vec<&str> = KINDS.iter().copied().filter(|_| rng.bool()).collect();
                let kinds = if kinds.is_empty() {
                    KINDS.join(",")
                } else {
                    kinds.join(",")
                };
                let args = [
                    "ingest",
                    "vision",
                    "--symbol",
                    "BTCUSDT",
                    "--start",
                    DATE,
                    "--kinds",
                    &kinds,
                    "--from-dir",
                    &from_dir,
                ];
                let code = run(data.path(), &args, kill);
                assert!(
                    matches!(code, None | Some(0)),
                    "step {step}: ingest exited {code:?}"
                );
                if kill.is_some() {
                    "ingest, killed"
                } else {
                    "ingest"
                }
            }
            4..=5 => {
                let code = run(data.path(), &["materialize"], kill);
                assert!(
                    matches!(code, None | Some(0 | 1)),
                    "step {step}: materialize {code:?}"
                );
                if kill.is_some() {
                    "materialize, killed"
                } else {
                    "materialize"
                }
            }
            6..=7 => {
                let Some(segment) = support::last_segment(data.path()) else {
                    continue;
                };
                let len = std::fs::metadata(&segment).unwrap().len();
                if len <= 24 {
                    continue;
                }
                let cut = rng.u64(24..len);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&segment)
                    .unwrap();
                file.set_len(cut).unwrap();
                "log tail cut"
            }
            8 => {
                let segments: Vec<_> = std::fs::read_dir(data.path().join("wal"))
                    .into_iter()
                    .flatten()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                    .collect();
                let Some(segment) =
                    (!segments.is_empty()).then(|| &segments[rng.usize(0..segments.len())])
                else {
                    continue;
                };
                let mut bytes = std::fs::read(segment).unwrap();
                let at = rng.usize(0..bytes.len());
                bytes[at] ^= 1 << rng.u32(0..8);
                std::fs::write(segment, bytes).unwrap();
                "log bit flipped"
            }
            9 => {
                let ledger = data.path().join("ledger.redb");
                let Ok(mut bytes) = std::fs::read(&ledger) else {
                    continue;
                };
                let at = rng.usize(0..bytes.len().saturating_sub(64).max(1));
                for b in bytes.iter_mut().skip(at).take(64) {
                    *b = rng.u8(..);
                }
                std::fs::write(&ledger, bytes).unwrap();
                "ledger garbled"
            }
            _ => {
                let lake = data.path().join("lake");
                let files: Vec<_> = lake_files(&lake).into_keys().collect();
                if files.is_empty() {
                    continue;
                }
                let path = lake.join(&files[rng.usize(0..files.len())]);
                let mut bytes = std::fs::read(&path).unwrap();
                let at = rng.usize(0..bytes.len());
                bytes[at] ^= 1 << rng.u32(0..8);
                std::fs::write(&path, bytes).unwrap();
                "partition byte flipped"
            }
        };
        *tally.entry(action).or_default() += 1;

        // The invariant, checked by runs nobody kills: a refusal names the
        // damage and the command that repairs it, which then does.
        let mut out = bml(data.path(), &["materialize", "--from", "0"]);
        for _ in 0..2 {
            if out.status.code() != Some(1) {
                break;
            }
            let all = text(&out);
            if all.contains("bml wal repair") {
                *tally.entry("refused: damaged log").or_default() += 1;
                repair(data.path(), step, action);
                out = bml(data.path(), &["materialize"]);
            } else {
                assert!(
                    all.contains("is damaged") && all.contains("--rebuild-ledger"),
                    "step {step} ({action}): an unnamed refusal: {all}"
                );
                *tally.entry("refused: damaged ledger").or_default() += 1;
                out = bml(data.path(), &["materialize", "--rebuild-ledger"]);
            }
        }
        assert_eq!(
            out.status.code(),
            Some(0),
            "step {step} ({action}): {}",
            text(&out)
        );
        // Damage in records no hour needed is not met by a replay: `verify`
        // finds it (every flip), and the repair is the same.
        let verified = bml(data.path(), &["wal", "verify"]);
        if verified.status.code() == Some(3) {
            *tally.entry("found by verify").or_default() += 1;
            repair(data.path(), step, action);
            out = bml(data.path(), &["materialize"]);
        }
        assert_eq!(
            out.status.code(),
            Some(0),
            "step {step} ({action}): {}",
            text(&out)
        );
        assert_eq!(
            lake_files(&data.path().join("lake")),
            support::lake_derived_afresh(data.path()),
            "step {step} ({action}): the lake is not what the log holds"
        );
    }
    println!("torture: {tally:?}");
}

/// `bml wal repair`, which must succeed and leave a log that verifies.
fn repair(data: &Path, step: u64, action: &str) {
    let out = bml(data, &["wal", "repair"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step {step} ({action}): {}",
        text(&out)
    );
    let out = bml(data, &["wal", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "step {step} ({action}): {}",
        text(&out)
    );
}
