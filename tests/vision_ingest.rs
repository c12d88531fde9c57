//! `bml ingest vision` end to end: a generated Vision day served over real HTTP on
//! 127.0.0.1, fetched by the real binary, read back from the log. Then every kind
//! of bad input, and a kill midway: none may leave a partial file visible.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bml::event::{Event, KlineKind, RecordClass};
use support::{
    archive_path, bml, csv_of, data_rows, text, visible_events, vision_ingest_args, write_archive,
    write_checksum, VisionServer,
};

const DAY: &str = "2024-03-01";

fn ingest(data: &Path, server: &VisionServer, extra: &[&str]) -> std::process::Output {
    bml(
        data,
        &support::vision_ingest_args(DAY, &server.base_url(), extra),
    )
}

fn next_offset(data: &Path) -> u64 {
    bml_wal::stat(&data.join("wal")).unwrap().next_offset
}

#[test]
fn a_day_over_http_lands_in_the_log_exactly_once() {
    let day = support::vision_day(DAY, 1, 1);
    let server = VisionServer::start(day.path());
    let data = tempfile::tempdir().unwrap();

    let out = ingest(data.path(), &server, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("9 archives: 8 ingested, 0 already in the log, 1 missing, 0 failed"),
        "{stdout}"
    );

    // Every data row of every archive is in the log, once, and visible.
    for (kind, file_part) in [
        ("klines", "daily/klines/"),
        ("markPriceKlines", "daily/markPriceKlines/"),
        ("indexPriceKlines", "daily/indexPriceKlines/"),
        ("premiumIndexKlines", "daily/premiumIndexKlines/"),
        ("aggTrades", "aggTrades"),
        ("bookTicker", "bookTicker"),
        ("metrics", "metrics"),
        ("bookDepth", "bookDepth"),
    ] {
        let csv = csv_of(&archive_path(day.path(), kind, DAY));
        let events = visible_events(data.path(), file_part);
        assert_eq!(events.len(), data_rows(&csv).len(), "{kind}");
    }
    // Field by field against the first CSV row.
    let agg_csv = csv_of(&archive_path(day.path(), "aggTrades", DAY));
    let first: Vec<&str> = data_rows(&agg_csv)[0].split(',').collect();
    let Event::AggTrade(t) = &visible_events(data.path(), "aggTrades")[0] else {
        panic!("not an aggTrade")
    };
    assert_eq!(t.agg_trade_id.to_string(), first[0]);
    assert_eq!(t.price.to_string(), first[1]);
    assert_eq!(t.quantity.to_string(), first[2]);
    assert_eq!(
        (t.first_trade_id.to_string(), t.last_trade_id.to_string()),
        (first[3].into(), first[4].into())
    );
    assert_eq!(t.transact_time.to_string(), first[5]);
    assert_eq!(t.is_buyer_maker.to_string(), first[6]);
    let kline_csv = csv_of(&archive_path(day.path(), "premiumIndexKlines", DAY));
    let last: Vec<&str> = data_rows(&kline_csv).last().unwrap().split(',').collect();
    let Event::Kline(k) = visible_events(data.path(), "premiumIndexKlines")
        .pop()
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (k.kind, k.open_time.to_string(), k.close.to_string()),
        (KlineKind::Premium, last[0].into(), last[4].into())
    );

    // The missing monthly funding archive is recorded once, not on every run.
    let missing = |data: &Path| {
        support::log_records(data)
            .iter()
            .filter(|(_, r, _)| matches!(r.events[0], Event::VisionFileMissing(_)))
            .count()
    };
    assert_eq!(missing(data.path()), 1);

    // Re-running the range appends nothing.
    let before = next_offset(data.path());
    let out = ingest(data.path(), &server, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("0 ingested, 8 already in the log, 1 missing"));
    assert_eq!(next_offset(data.path()), before);
    assert_eq!(missing(data.path()), 1);

    // The catalog index is derived: damaged, it is rebuilt from the log, never trusted.
    let index = data.path().join("index/vision-catalog.bin");
    assert!(index.is_file());
    std::fs::write(&index, b"garbage").unwrap();
    let out = ingest(data.path(), &server, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 ingested, 8 already in the log"),
        "{}",
        text(&out)
    );
    assert_eq!(next_offset(data.path()), before);
    // An index from a longer log than this one (the log was replaced) is not trusted either.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fresh.path().join("index")).unwrap();
    std::fs::copy(&index, fresh.path().join("index/vision-catalog.bin")).unwrap();
    let out = ingest(fresh.path(), &server, &["--kinds", "klines"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 ingested"),
        "{}",
        text(&out)
    );

    // Binance re-publishes an archive: it is ingested again, and says what it replaces.
    let metrics = archive_path(day.path(), "metrics", DAY);
    support::rewrite_archive(&metrics, |csv| csv.replacen("BTCUSDT,", "BTCUSDT,1", 1));
    let out = ingest(data.path(), &server, &["--kinds", "metrics"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let markers: Vec<_> = support::log_records(data.path())
        .into_iter()
        .filter_map(|(_, r, _)| match &r.events[0] {
            Event::VisionFileIngested(m) if m.file.contains("metrics") => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(markers.len(), 2);
    assert_eq!(markers[1].replaces, Some(markers[0].sha256));
}

/// The next archive is fetched while one is appended: the server is asked for
/// the metrics archive (the kind after bookTicker) before the bookTicker
/// archive is in the log, as the run's own log lines time it.
#[test]
fn the_next_archive_is_fetched_while_one_is_appended() {
    let day = support::vision_day(DAY, 1, 3);
    let server = VisionServer::start(day.path());
    let data = tempfile::tempdir().unwrap();
    let base_url = server.base_url();
    let args = vision_ingest_args(DAY, &base_url, &["--kinds", "bookTicker,metrics"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
        .arg("--data-dir")
        .arg(data.path())
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let appended_at = stderr
        .lines()
        .find(|l| l.contains("ingested file=daily/bookTicker/"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no timed line for the bookTicker archive: {stderr}"));
    let asked_at = server
        .asked_at("BTCUSDT-metrics-2024-03-01.zip")
        .expect("the metrics archive was asked for");
    let asked_at = chrono::DateTime::<chrono::Utc>::from(asked_at);
    assert!(
        asked_at < appended_at,
        "the metrics archive was asked for at {asked_at}, after the bookTicker archive was in the log at {appended_at}"
    );
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn server_errors_are_retried_and_bad_archives_are_refused_whole() {
    let day = support::vision_day(DAY, 1, 2);
    let server = VisionServer::start(day.path());
    let data = tempfile::tempdir().unwrap();

    // A burst of 503s is retried through.
    server.fail_next(3);
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(server.requests() >= 5);

    let klines = archive_path(day.path(), "klines", DAY);
    let good_zip = std::fs::read(&klines).unwrap();
    let good_csv = csv_of(&klines);
    let csv_name = "BTCUSDT-1m-2024-03-01.csv";
    let fresh = || tempfile::tempdir().unwrap();

    // 1. The archive changed in transit: its bytes no longer match the CHECKSUM.
    let mut damaged = good_zip.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    std::fs::write(&klines, &damaged).unwrap();
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("checksum mismatch") && all.contains(&server.base_url()),
        "{all}"
    );
    assert!(
        all.contains("FAILED (bad data)"),
        "typed as bad data: {all}"
    );
    assert_nothing_of(data.path(), "BTCUSDT-1m-");

    // 2. A CHECKSUM naming another hash.
    std::fs::write(&klines, &good_zip).unwrap();
    let checksum = klines.with_file_name("BTCUSDT-1m-2024-03-01.zip.CHECKSUM");
    std::fs::write(
        &checksum,
        format!("{}  BTCUSDT-1m-2024-03-01.zip\n", "ab".repeat(32)),
    )
    .unwrap();
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&"ab".repeat(32)), "{}", text(&out));
    assert_nothing_of(data.path(), "BTCUSDT-1m-");

    // 3. One malformed CSV row (archive and CHECKSUM consistent): file:line and field named.
    let mut lines: Vec<String> = good_csv.lines().map(str::to_string).collect();
    let mut fields: Vec<String> = lines[30].split(',').map(str::to_string).collect();
    fields[2] = "12x.5".into();
    lines[30] = fields.join(",");
    write_archive(&klines, &[(csv_name, (lines.join("\n") + "\n").as_bytes())]);
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("{csv_name}:31")) && all.contains("field `high`"),
        "{all}"
    );
    assert!(
        all.contains("FAILED (bad data)"),
        "typed as bad data: {all}"
    );
    assert_nothing_visible_of(data.path(), "BTCUSDT-1m-");

    // 4. A truncated archive (its CHECKSUM made to match, as if published broken).
    std::fs::write(&klines, &good_zip[..good_zip.len() * 2 / 3]).unwrap();
    write_checksum(&klines);
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a readable zip"), "{}", text(&out));
    assert!(text(&out).contains("FAILED (bad data)"), "{}", text(&out));
    assert_nothing_of(data.path(), "BTCUSDT-1m-");

    // 5. An unexpected extra entry, and an entry escaping its directory.
    for (entries, expect) in [
        (
            vec![
                (csv_name, good_csv.as_bytes()),
                ("extra.csv", b"1,2".as_slice()),
            ],
            "expected one entry",
        ),
        (
            vec![("../BTCUSDT-1m-2024-03-01.csv", good_csv.as_bytes())],
            "escapes its directory",
        ),
    ] {
        write_archive(&klines, &entries);
        let data = fresh();
        let out = ingest(data.path(), &server, &["--kinds", "klines"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(expect), "{}", text(&out));
        assert_nothing_of(data.path(), "BTCUSDT-1m-");
    }

    // 6. Rows of another day (the next day's file published under this day's
    //    name): refused, the file named and the first stray row quoted.
    let next_day: Vec<String> = data_rows(&good_csv)
        .iter()
        .map(|row| {
            let mut f: Vec<String> = row.split(',').map(str::to_string).collect();
            for i in [0, 6] {
                f[i] = (f[i].parse::<i64>().unwrap() + 86_400_000).to_string();
            }
            f.join(",")
        })
        .collect();
    write_archive(
        &klines,
        &[(csv_name, (next_day.join("\n") + "\n").as_bytes())],
    );
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("{csv_name}:1"))
            && all.contains("another period")
            && all.contains(&next_day[0]),
        "{all}"
    );
    assert_nothing_visible_of(data.path(), "BTCUSDT-1m-");

    // 7. Two entries of the same name (the reader would keep the last).
    let twin = csv_name.replacen('B', "X", 1);
    write_archive(
        &klines,
        &[
            (&twin, good_csv.as_bytes()),
            (csv_name, b"1,2\n".as_slice()),
        ],
    );
    let bytes = std::fs::read(&klines).unwrap();
    let renamed = String::from_utf8_lossy(&bytes).contains(&twin);
    assert!(renamed, "the entry names are stored as text");
    let mut bytes = bytes;
    for at in 0..bytes.len() - twin.len() {
        if bytes[at..].starts_with(twin.as_bytes()) {
            bytes[at] = b'B';
        }
    }
    std::fs::write(&klines, &bytes).unwrap();
    write_checksum(&klines);
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("more than one entry named"), "{all}");
    assert_nothing_of(data.path(), "BTCUSDT-1m-");

    // 8. The CSV's compressed bytes damaged inside a well-formed zip (its
    //    CHECKSUM made to match, as if published broken): inflating or the
    //    entry's CRC-32 fails on the inflating thread; the file is named and
    //    whatever rows went before stay invisible.
    write_archive(&klines, &[(csv_name, good_csv.as_bytes())]);
    let mut damaged = std::fs::read(&klines).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(&klines, &damaged).unwrap();
    write_checksum(&klines);
    let data = fresh();
    let out = ingest(data.path(), &server, &["--kinds", "klines"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(csv_name) && all.contains("FAILED (bad data)"),
        "{all}"
    );
    assert_nothing_visible_of(data.path(), "BTCUSDT-1m-");
}

#[test]
fn downloads_a_killed_run_left_are_swept_by_the_next() {
    let day = support::vision_day(DAY, 1, 4);
    let server = VisionServer::start(day.path());
    let data = tempfile::tempdir().unwrap();
    let tmp = data.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let left = tmp.join(".tmpA1b2C3");
    std::fs::write(&left, vec![0u8; 19 << 10]).unwrap();
    let out = ingest(data.path(), &server, &["--kinds", "metrics"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!left.exists(), "the stale download is gone");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "and nothing else stayed"
    );
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn killed_mid_file_leaves_nothing_visible_and_a_rerun_completes_it() {
    let day = support::vision_day(DAY, 3, 3);
    let server = VisionServer::start(day.path());
    let data = tempfile::tempdir().unwrap();
    let base = server.base_url();
    let expected_rows = data_rows(&csv_of(&archive_path(day.path(), "bookTicker", DAY))).len();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
        .args(["--quiet", "--data-dir"])
        .arg(data.path())
        .args(support::vision_ingest_args(
            DAY,
            &base,
            &["--kinds", "bookTicker"],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once rows are flowing into the log, before the file is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let segment = data.path().join("wal/00000000000000000000.wal");
    while std::fs::metadata(&segment).map_or(0, |m| m.len()) < 2 << 20 {
        assert!(Instant::now() < deadline, "ingest never started writing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let records = support::log_records(data.path());
    assert!(
        records
            .iter()
            .any(|(_, r, _)| r.class() == RecordClass::Data),
        "rows were written"
    );
    assert_nothing_visible_of(data.path(), "bookTicker");
    assert!(!records
        .iter()
        .any(|(_, r, _)| matches!(r.events[0], Event::VisionFileIngested(_))));

    let out = ingest(data.path(), &server, &["--kinds", "bookTicker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        visible_events(data.path(), "bookTicker").len(),
        expected_rows,
        "every row exactly once"
    );
}

/// Nothing at all of this archive reached the log.
fn assert_nothing_of(data: &Path, file_part: &str) {
    let records = support::log_records(data);
    assert!(
        !records
            .iter()
            .any(|(_, r, _)| support::source_file(r).contains(file_part)),
        "records of {file_part} were appended"
    );
}

/// Rows may have reached the log, but none is visible and no marker commits them.
fn assert_nothing_visible_of(data: &Path, file_part: &str) {
    assert!(
        visible_events(data, file_part).is_empty(),
        "rows of {file_part} are visible"
    );
    let records = support::log_records(data);
    assert!(!records
        .iter()
        .any(|(_, r, _)| matches!(&r.events[0], Event::VisionFileIngested(m) if m.file.contains(file_part))));
}

/// An exchange nobody answers for: the archive fails as *unreachable* (try
/// again later), after the retry policy's attempts, naming the URL.
#[test]
fn an_unreachable_exchange_is_a_failure_of_its_own_kind() {
    let data = tempfile::tempdir().unwrap();
    let out = bml(
        data.path(),
        &vision_ingest_args("2024-03-01", "http://127.0.0.1:9", &["--kinds", "klines"]),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAILED (unreachable)")
            && all.contains("http://127.0.0.1:9/")
            && all.contains("gave up after 5 attempts"),
        "{all}"
    );
}

/// A symbol none of whose archives exists is not a success: exit 2, said
/// plainly, while the archives of a good symbol beside it are ingested.
#[test]
fn a_symbol_without_any_archive_is_a_bad_command_line() {
    let day = support::vision_day_at_rates(DAY, 1, 4, Some((0.25, 0.5)));
    let data = tempfile::tempdir().unwrap();
    let from_dir = day.path().to_str().unwrap();
    let args = [
        "ingest",
        "vision",
        "--symbol",
        "FOOBAR",
        "--symbol",
        "BTCUSDT",
        "--start",
        DAY,
        "--kinds",
        "klines",
        "--from-dir",
        from_dir,
    ];
    let out = bml(data.path(), &args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("no archive of FOOBAR") && all.contains("is the symbol right"),
        "{all}"
    );
    assert!(
        all.contains("1 ingested"),
        "the good symbol still lands: {all}"
    );
}
