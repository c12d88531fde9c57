//! Power cuts, simulated: the data dir made what a power cut would leave at a
//! random instant. The log's appender records each completed sync point
//! (`BML_TEST_SYNC_TRACE`); at the instant after sync point i, every segment is
//! cut back to its length at i, then left so, or garbled past it (random bytes,
//! or a prefix of what was written later and not synced, in full or with some
//! of its 4 KiB pages never written), and segments created later are gone. The ledger and the lake are left as a full run made them:
//! ahead of the log, the worst case. After recovery (and `bml wal repair`
//! when `init-state` reports a damaged unsynced frame) and a `materialize`: no
//! record acknowledged by sync point i is lost or changed, and the lake is what
//! the log holds (equal to a fresh derivation from it), never more.
//!
//! `BML_POWER_CUTS` (default 200) instants; the seed is printed
//! (`BML_POWER_SEED` replays it).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{bml, lake_derived_afresh, lake_files, text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
const KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics,bookDepth";

/// One sync point: the next offset, and each segment's synced length.
struct SyncPoint {
    next_offset: u64,
    segments: BTreeMap<String, u64>,
}

fn sync_points(trace: &Path) -> Vec<SyncPoint> {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let next_offset = fields.next().unwrap().parse().unwrap();
            let segments = fields
                .map(|f| {
                    let (name, len) = f.rsplit_once(':').unwrap();
                    (name.to_string(), len.parse().unwrap())
                })
                .collect();
            SyncPoint {
                next_offset,
                segments,
            }
        })
        .collect()
}

/// Every offset of the log in `data`: its bytes, or `None` where a repair
/// declared it lost.
fn records(data: &Path) -> Vec<Option<Vec<u8>>> {
    let mut reader = bml_wal::Reader::open(data.join("wal"), 0).unwrap();
    let mut all = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        match entry {
            bml_wal::Entry::Record(r) => all.push(Some(r.data.to_vec())),
            bml_wal::Entry::Lost { offsets, .. } => {
                all.extend(offsets.map(|_| None));
            }
        }
    }
    all
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else if path.file_name().unwrap() != "LOCK" {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn a_power_cut_loses_no_acknowledged_record_and_nothing_derived_outruns_the_log() {
    let cuts = support::env_u64("BML_POWER_CUTS", 200);
    let seed = support::env_u64("BML_POWER_SEED", fastrand::u64(..));
    println!("power cuts: {cuts}, seed {seed} (BML_POWER_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    // A full run, its sync points traced: the ledger and lake at its end.
    let day = vision_day_at_rates(DATE, 1, 51, Some((0.5, 0.5)));
    let full = tempfile::tempdir().unwrap();
    let data = full.path().join("data");
    let trace = full.path().join("sync-trace");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
        .env(bml::eventlog::SYNC_TRACE_ENV, &trace)
        .args(["--quiet", "--data-dir"])
        .arg(&data)
        .args([
            "ingest", "vision", "--symbol", "BTCUSDT", "--start", DATE, "--kinds", KINDS,
        ])
        .arg("--from-dir")
        .arg(day.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(bml(&data, &["materialize"]).status.success());
    let points = sync_points(&trace);
    assert!(points.len() >= 8, "{} sync points", points.len());
    let original = records(&data);
    let segment_bytes: BTreeMap<String, Vec<u8>> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();

    let mut variants = BTreeMap::<&str, u32>::new();
    let (mut rebuilt, mut repaired) = (0, 0);
    for cut in 0..cuts {
        let point = &points[rng.usize(0..points.len())];
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&data, dir.path());
        let variant = [
            "synced only",
            "garbage past it",
            "part of what came later",
            "later pages, some never written",
        ][rng.usize(0..4)];
        *variants.entry(variant).or_default() += 1;
        for (name, bytes) in &segment_bytes {
            let path = dir.path().join("wal").join(name);
            let Some(&synced) = point.segments.get(name) else {
                std::fs::remove_file(&path).unwrap();
                continue;
            };
            let mut kept = bytes[..synced as usize].to_vec();
            match variant {
                "garbage past it" => kept.extend((0..rng.usize(1..300)).map(|_| rng.u8(..))),
                "part of what came later" => {
                    let later = &bytes[synced as usize..];
                    kept.extend_from_slice(&later[..rng.usize(0..=later.len())]);
                }
                "later pages, some never written" => {
                    // The file's size reached the disk, but not every 4 KiB
                    // page written after the sync did (they read as zeros).
                    let later = &bytes[synced as usize..];
                    kept.extend_from_slice(&later[..rng.usize(0..=later.len())]);
                    let mut pos = synced as usize;
                    while pos < kept.len() {
                        let page_end = ((pos / 4096 + 1) * 4096).min(kept.len());
                        if rng.u32(0..3) == 0 {
                            kept[pos..page_end].fill(0);
                        }
                        pos = page_end;
                    }
                }
                _ => {}
            }
            std::fs::write(&path, kept).unwrap();
        }
        let what = format!(
            "cut {cut}: sync point at offset {}, {variant}",
            point.next_offset
        );

        let out = bml(dir.path(), &["init-state"]);
        if out.status.code() == Some(3) {
            // A whole unsynced frame with a page missing is not cut on open
            // (it cannot be told from bit rot); the documented repair takes
            // it out.
            assert!(
                text(&out).contains("bml wal repair"),
                "{what}: {}",
                text(&out)
            );
            let out = bml(dir.path(), &["wal", "repair"]);
            assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
            repaired += 1;
        } else {
            assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        }
        let survived = records(dir.path());
        assert!(
            survived.len() as u64 >= point.next_offset,
            "{what}: {} records left, {} acknowledged",
            survived.len(),
            point.next_offset
        );
        for (offset, bytes) in survived.iter().enumerate() {
            match bytes {
                Some(bytes) => assert_eq!(
                    Some(bytes),
                    original[offset].as_ref(),
                    "{what}: record {offset} changed"
                ),
                None => assert!(
                    offset as u64 >= point.next_offset,
                    "{what}: acknowledged record {offset} lost"
                ),
            }
        }
        let out = bml(dir.path(), &["materialize"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        rebuilt += u32::from(text(&out).contains("ledger rebuilt"));
        assert_eq!(
            lake_files(&dir.path().join("lake")),
            lake_derived_afresh(dir.path()),
            "{what}: the lake is not what the log holds"
        );
    }
    println!(
        "power cuts: {variants:?}; the ledger was rebuilt after {rebuilt}; the log repaired \
         after {repaired}"
    );
}
