//! Runs that derive more hours than one ledger commit holds (64): a month of
//! generated days (thin rates) and the month's funding archive, whose
//! settlements reach every hour. Such a run used to hang forever (a second
//! ledger write transaction opened while the first was still open); the
//! watchdog fails it fast instead. One run over the month equals a day-by-day
//! build.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{bml_within, ingest_day, text};

const KINDS: &str = "klines,markPriceKlines,indexPriceKlines";
/// Every day of March 2024 but the last (30 days).
fn days() -> Vec<String> {
    (1..=30).map(|d| format!("2024-03-{d:02}")).collect()
}
const WATCHDOG: Duration = Duration::from_secs(120);

/// The month's funding archive: a settlement every 8 hours of March 2024.
fn funding_month(root: &Path) {
    let folder = root.join("data/futures/um/monthly/fundingRate/BTCUSDT");
    std::fs::create_dir_all(&folder).unwrap();
    let mut csv = "calc_time,funding_interval_hours,last_funding_rate\n".to_string();
    let march = 1_709_251_200_000i64;
    for i in 0..93 {
        csv.push_str(&format!(
            "{},8,0.000{}\n",
            march + i * 8 * 3_600_000 + 1,
            100 + i
        ));
    }
    support::write_archive(
        &folder.join("BTCUSDT-fundingRate-2024-03.zip"),
        &[("BTCUSDT-fundingRate-2024-03.csv", csv.as_bytes())],
    );
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn a_month_in_one_run_finishes_and_equals_a_day_by_day_build() {
    let names = days();
    let dirs: Vec<tempfile::TempDir> = names
        .iter()
        .enumerate()
        .map(|(i, d)| support::vision_day_at_rates(d, 24, 3 + i as u32, Some((0.1, 0.1))))
        .collect();
    funding_month(dirs[0].path());
    let ingest_all = |data: &Path, materialize_each_day: bool| {
        for (dir, day) in dirs.iter().zip(&names) {
            ingest_day(data, dir.path(), day, KINDS);
            if day == &names[0] {
                ingest_day(data, dir.path(), day, "fundingRate");
            }
            if materialize_each_day {
                let out = bml_within(data, &["materialize"], WATCHDOG);
                assert!(out.status.success(), "{}", text(&out));
            }
        }
    };
    let at_once = tempfile::tempdir().unwrap();
    ingest_all(at_once.path(), false);
    let out = bml_within(at_once.path(), &["materialize", "--jobs", "2"], WATCHDOG);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("720 written"), "{}", text(&out));

    let by_day = tempfile::tempdir().unwrap();
    ingest_all(by_day.path(), true);
    let (a, b) = (
        support::lake_files(&at_once.path().join("lake")),
        support::lake_files(&by_day.path().join("lake")),
    );
    assert_eq!(a.len(), 720);
    assert_eq!(a, b, "one run and a day-by-day build give the same bytes");
}
