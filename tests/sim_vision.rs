//! The simulator's Vision side and its faults, met by `bml ingest vision` over
//! 127.0.0.1: a missing day is recorded as missing, a damaged archive and a
//! wrong CHECKSUM are refused whole and named, 5xx are retried through.

mod support;

use bml::event::Event;
use support::{bml, text, Sim};

const DAY: &str = "2024-03-01";

fn ingest(sim: &Sim, data: &std::path::Path, kinds: &str) -> std::process::Output {
    let base_url = sim.vision_url();
    bml(
        data,
        &support::vision_ingest_args(DAY, &base_url, &["--kinds", kinds]),
    )
}

#[test]
fn a_missing_day_is_recorded_as_missing() {
    let day = support::vision_day_at_rates(DAY, 1, 11, Some((0.5, 1.0)));
    let sim = Sim::start(day.path(), &["--missing-days", DAY]);
    let data = tempfile::tempdir().unwrap();
    let out = ingest(&sim, data.path(), "klines,aggTrades");
    // Nothing of the range exists: that is said (exit 2), not taken for
    // success; the missing archives are recorded all the same.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no archive of BTCUSDT"),
        "{}",
        text(&out)
    );
    let missing: Vec<String> = support::log_records(data.path())
        .into_iter()
        .flat_map(|(_, r, _)| r.events)
        .filter_map(|e| match e {
            Event::VisionFileMissing(m) => Some(m.url),
            _ => None,
        })
        .collect();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing.iter().all(|u| u.starts_with(&sim.vision_url())));
}

#[test]
fn damaged_archives_and_wrong_checksums_are_refused_whole_and_errors_retried() {
    let day = support::vision_day_at_rates(DAY, 1, 12, Some((0.5, 1.0)));
    let sim = Sim::start(
        day.path(),
        &[
            "--corrupt-archives",
            "BTCUSDT-1m-2024-03-01.zip",
            "--wrong-checksums",
            "BTCUSDT-aggTrades-2024-03-01.zip",
            "--fail-rate",
            "0.3",
            "--seed",
            "5",
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let out = ingest(&sim, data.path(), "klines,aggTrades,metrics");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("checksum mismatch"), "{all}");
    for file in [
        "BTCUSDT-1m-2024-03-01.zip",
        "BTCUSDT-aggTrades-2024-03-01.zip",
    ] {
        assert!(all.contains(file), "{file} not named: {all}");
        assert!(support::visible_events(data.path(), &file.replace(".zip", "")).is_empty());
    }
    assert!(!support::visible_events(data.path(), "metrics").is_empty());
    assert!(sim.stats()["server_errors"].as_u64().unwrap() > 0);
}
