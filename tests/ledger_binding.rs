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

/// Another user, who may read the data dir but not write it (or a read-only
/// mount), gets `status`, `show-watermark` and the lake's files: the ledger is
/// opened for reading only, files and directories follow the umask.
#[test]
fn another_user_reads_status_watermarks_and_lake_of_a_data_dir_it_cannot_write() {
    let day = vision_day_at_rates(DATE, 2, 13, Some((1.0, 2.0)));
    let data = built(day.path());
    let live = run_ok(data.path(), &["status"]);
    // Only the temporary dir itself is opened up (tempfile makes it 0700);
    // everything under it is as bml made it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_reader = |args: &[&str]| {
        // As root, a real other user; otherwise this user without write access.
        let mut command = if is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_bml"));
            c
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
        };
        command
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .output()
            .unwrap()
    };
    if !is_root() {
        make_read_only(data.path(), true);
    }
    let status = as_reader(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert_eq!(String::from_utf8_lossy(&status.stdout), live);
    let marks = as_reader(&["show-watermark"]);
    assert_eq!(marks.status.code(), Some(0), "{}", text(&marks));
    assert!(
        String::from_utf8_lossy(&marks.stdout).starts_with("BTCUSDT\t2024-03-01T01:59Z"),
        "{}",
        text(&marks)
    );
    let materialize = as_reader(&["materialize", "--from", "0"]);
    assert_eq!(materialize.status.code(), Some(1), "{}", text(&materialize));
    assert!(
        text(&materialize).contains("cannot be opened for writing"),
        "{}",
        text(&materialize)
    );
    if !is_root() {
        make_read_only(data.path(), false);
    }
    for (file, _) in lake_files(&data.path().join("lake")) {
        let mode = std::fs::metadata(data.path().join("lake").join(&file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o044,
            0o044,
            "{file:?} is {mode:o}: others cannot read it"
        );
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Takes write permission away from everything under `dir` (or gives it back).
fn make_read_only(dir: &Path, read_only: bool) {
    let mode = if read_only { "a-w" } else { "u+w" };
    let out = std::process::Command::new("chmod")
        .args(["-R", mode])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
