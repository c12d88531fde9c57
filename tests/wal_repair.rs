//! `bml wal repair` as an operator runs it: damage in the middle of the log
//! stops every replay with a message naming it and what to run; the repair
//! moves it to quarantine, says which archives it took from the log, the next
//! ingest fetches exactly those again, and the lake ends equal to a clean build.

mod support;

use std::path::Path;

use support::{bml, ingest_day, lake_files, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
const KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";

fn run(data: &Path, args: &[&str], code: i32) -> String {
    let out = bml(data, args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn a_damaged_frame_is_repaired_its_archive_fetched_again_and_the_lake_made_whole() {
    let day = vision_day_at_rates(DATE, 3, 5, Some((2.0, 20.0)));
    let clean = tempfile::tempdir().unwrap();
    ingest_day(clean.path(), day.path(), DATE, KINDS);
    run(clean.path(), &["materialize"], 0);
    let clean_lake = lake_files(&clean.path().join("lake"));

    let data = tempfile::tempdir().unwrap();
    ingest_day(data.path(), day.path(), DATE, KINDS);
    run(data.path(), &["materialize"], 0);
    // Bit rot in the middle of the log, inside the rows of some archive.
    let segment = support::last_segment(data.path()).unwrap();
    let mut image = std::fs::read(&segment).unwrap();
    let at = image.len() / 2;
    image[at] ^= 0x20;
    std::fs::write(&segment, &image).unwrap();

    let out = run(data.path(), &["materialize", "--from", "0"], 1);
    assert!(
        out.contains("corrupt log at offset") && out.contains("bml wal repair"),
        "{out}"
    );
    let out = run(data.path(), &["init-state"], 3);
    assert!(out.contains("bml wal repair"), "{out}");

    let out = run(data.path(), &["wal", "repair"], 0);
    assert!(out.contains("LOST  offsets"), "{out}");
    assert!(out.contains("quarantine/"), "{out}");
    let listed: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("fetched again"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(listed.len(), 1, "one archive held the damaged frame: {out}");
    assert!(listed[0].ends_with("-2024-03-01.zip"), "{out}");
    let out = run(data.path(), &["wal", "verify"], 0);
    assert!(out.contains("clean: "), "{out}");
    // The flip hit the archive's rows, not its marker: the marker is still in
    // the log, and what makes the archive count for nothing is the lost range.
    let file = listed[0].rsplit('/').next().unwrap();
    let markers = support::log_records(data.path())
        .into_iter()
        .filter(|(_, r, _)| {
            r.events.iter().any(
                |e| matches!(e, bml::event::Event::VisionFileIngested(m) if m.file.ends_with(file)),
            )
        })
        .count();
    assert_eq!(markers, 1, "the marker of {file} survived the damage");
    assert!(
        support::visible_events(data.path(), file).is_empty(),
        "no row of {file} counts any more"
    );
    let out = run(data.path(), &["wal", "repair"], 0);
    assert!(out.contains("nothing to repair"), "{out}");

    // The ledger was derived from the log before the repair: it is rebuilt,
    // and the lake is what the repaired log holds (the archive with lost rows
    // counts for nothing, not for part of itself).
    let out = run(data.path(), &["materialize"], 0);
    assert!(out.contains("ledger rebuilt from the log"), "{out}");
    let partial = lake_files(&data.path().join("lake"));
    assert_eq!(partial, support::lake_derived_afresh(data.path()));
    assert!(!clean_lake.is_empty());
    assert_ne!(
        partial, clean_lake,
        "that archive's columns are gone until fetched again"
    );
    let out = run(data.path(), &["status"], 0);
    assert!(
        out.contains("records taken out by `bml wal repair`"),
        "{out}"
    );

    // The next ingest fetches that archive again (and only it), and the lake
    // is whole again.
    let out = ingest_day(data.path(), day.path(), DATE, KINDS);
    assert!(out.contains("1 ingested"), "{out}");
    run(data.path(), &["materialize"], 0);
    assert_eq!(lake_files(&data.path().join("lake")), clean_lake);
}
