//! `bml wal compact` after killed and failed ingests: two `ingest vision`
//! runs failing on a malformed last row and ten killed with SIGKILL at random
//! instants leave rows no marker commits; compaction
//! empties them, the log comes back to within 5 % of a clean log's size, and
//! the lake (and its audit) is byte for byte what it was, also when the
//! compaction itself is killed midway and run again. A writer holding the log
//! makes it refuse.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{bml, lake_files, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
/// Segments of 256 KiB, so the killed attempts' rows land in sealed ones.
const SEGMENT_BYTES: &str = "262144";

fn bml_cmd(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bml"));
    cmd.args(["--quiet", "--data-dir"])
        .arg(data)
        .args(args)
        .env(bml::eventlog::SEGMENT_BYTES_ENV, SEGMENT_BYTES)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn run_killed(data: &Path, args: &[&str], after: Duration) {
    let mut child = bml_cmd(data, args).spawn().unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    child.wait().unwrap();
}

/// [`log_bytes`], 0 before the log exists.
fn log_bytes_or_zero(data: &Path) -> u64 {
    if data.join("wal").is_dir() {
        log_bytes(data)
    } else {
        0
    }
}

fn log_bytes(data: &Path) -> u64 {
    std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn compaction_after_killed_ingests_reclaims_the_dead_rows_and_changes_no_file() {
    let day = vision_day_at_rates(DATE, 2, 5, Some((20.0, 60.0)));
    let ingest = [
        "ingest",
        "vision",
        "--symbols",
        "BTCUSDT",
        "--start",
        DATE,
        "--from-dir",
        day.path().to_str().unwrap(),
    ];
    let clean = tempfile::tempdir().unwrap();
    assert!(bml_cmd(clean.path(), &ingest).status().unwrap().success());
    assert!(bml_cmd(clean.path(), &["materialize"])
        .status()
        .unwrap()
        .success());

    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let data = tempfile::tempdir().unwrap();
    // Two ingests of a copy of the day whose bookTicker archive has a
    // malformed last row: each appends the archive's rows, then fails on that
    // row, and its rows stay without a marker whatever the kills below do.
    let broken = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(day.path().join("data"))
        .arg(broken.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let book = support::archive_path(broken.path(), "bookTicker", DATE);
    support::rewrite_archive(&book, |csv| format!("{}x,1,2\n", csv.trim_end()));
    let mut broken_ingest = ingest;
    broken_ingest[7] = broken.path().to_str().unwrap();
    for _ in 0..2 {
        let failed = bml_cmd(data.path(), &broken_ingest).status().unwrap();
        assert!(!failed.success(), "the malformed archive fails");
    }
    // Each ingest is killed once it has appended a random amount more (so,
    // at a random row of the archive it is in, never before it wrote any):
    // the rows of that archive stay without their marker.
    for _ in 0..10 {
        let grown = log_bytes_or_zero(data.path()) + rng.u64(50_000..1_500_000);
        let mut child = bml_cmd(data.path(), &ingest).spawn().unwrap();
        while log_bytes_or_zero(data.path()) < grown && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    assert!(bml_cmd(data.path(), &ingest).status().unwrap().success());
    assert!(bml_cmd(data.path(), &["materialize"])
        .status()
        .unwrap()
        .success());
    let lake = lake_files(&data.path().join("lake"));
    assert_eq!(lake, lake_files(&clean.path().join("lake")));
    let (clean_bytes, killed_bytes) = (log_bytes(clean.path()), log_bytes(data.path()));
    println!("clean log {clean_bytes} bytes, after 10 killed ingests {killed_bytes}");
    assert!(killed_bytes > clean_bytes, "the kills left dead rows");

    // Killed midway a few times, then to its end: every segment is whole at
    // every instant (each is replaced by a rename).
    for _ in 0..3 {
        run_killed(
            data.path(),
            &["wal", "compact"],
            Duration::from_millis(rng.u64(0..40)),
        );
    }
    let out = bml(data.path(), &["wal", "compact"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("compacted: "), "{}", text(&out));
    let compacted = log_bytes(data.path());
    println!("compacted {compacted} bytes: {}", text(&out));
    assert!(
        compacted < killed_bytes,
        "{compacted} bytes, {killed_bytes} before"
    );
    assert!(
        compacted as f64 <= clean_bytes as f64 * 1.05,
        "{compacted} bytes after compaction, a clean log is {clean_bytes}"
    );

    let out = bml(data.path(), &["wal", "verify", "--decode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = bml(data.path(), &["wal", "dump", "--limit", "100000"]);
    assert!(text(&out).contains("COMPACTED"), "{}", text(&out));
    let out = bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lake_files(&data.path().join("lake")), lake);
    let out = bml(
        data.path(),
        &["materialize", "--from", "0", "--rebuild-ledger"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lake_files(&data.path().join("lake")), lake);
    let out = bml(data.path(), &["audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nothing left to do.
    let out = bml(data.path(), &["wal", "compact"]);
    assert!(
        text(&out).contains("compacted: 0 records"),
        "{}",
        text(&out)
    );

    // A writer holds the log: refused, naming it.
    let writer = bml::eventlog::EventLog::open(data.path()).unwrap();
    let out = bml(data.path(), &["wal", "compact"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("lock"), "{}", text(&out));
    drop(writer);
}
