//! `bml wal …` run as a user runs it: the real binary, a real log directory.

use std::path::Path;
use std::process::{Command, Output};

use bml_wal::{Options, SyncPolicy, Wal};

fn bml(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bml"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run bml")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A log of 50 records across several segments, with the writer still open.
fn small_log(data_dir: &Path) -> Wal {
    let wal = Wal::open(
        data_dir.join("wal"),
        Options {
            sync: SyncPolicy::Never,
            segment_bytes: 512,
        },
    )
    .unwrap();
    for i in 0..50u32 {
        wal.append(format!("record number {i}").as_bytes()).unwrap();
    }
    wal
}

#[test]
fn stat_shows_segments_and_offsets() {
    let data = tempfile::tempdir().unwrap();
    let _writer = small_log(data.path());
    let out = bml(data.path(), &["wal", "stat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("next offset    50"), "{stdout}");
    assert!(stdout.contains("00000000000000000000.wal"), "{stdout}");
}

#[test]
fn verify_is_clean_beside_a_live_writer_and_exits_3_on_damage() {
    let data = tempfile::tempdir().unwrap();
    let writer = small_log(data.path());
    let out = bml(data.path(), &["wal", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("clean: "),
        "{}",
        text(&out.stdout)
    );
    drop(writer);

    let first = data.path().join("wal/00000000000000000000.wal");
    let mut image = std::fs::read(&first).unwrap();
    image[60] ^= 0x01;
    std::fs::write(&first, image).unwrap();
    let out = bml(data.path(), &["wal", "verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("BAD  ") && stdout.contains("00000000000000000000.wal, byte 24"),
        "{stdout}"
    );
    assert!(stdout.contains("offsets 0..1 unreadable"), "{stdout}");

    let out = bml(data.path(), &["wal", "dump", "--raw"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("corrupt log at offset 0") && stderr.contains("byte 24"),
        "{stderr}"
    );
}

#[test]
fn raw_dump_prints_offsets_lengths_and_bytes() {
    let data = tempfile::tempdir().unwrap();
    let _writer = small_log(data.path());
    let out = bml(
        data.path(),
        &["wal", "dump", "--raw", "--from", "48", "--limit", "5"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let hex: String = b"record number 48"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        lines[0].trim_start().starts_with("48") && lines[0].contains(&hex),
        "{stdout}"
    );
}

#[test]
fn a_missing_log_is_a_plain_error() {
    let data = tempfile::tempdir().unwrap();
    let out = bml(data.path(), &["wal", "stat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no log at"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn init_state_creates_the_log_and_is_idempotent() {
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("fresh");
    for _ in 0..2 {
        let out = bml(&root, &["init-state"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("next offset 0"),
            "{}",
            text(&out.stdout)
        );
    }
    let out = bml(&root, &["wal", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

/// Damage in a sealed segment is reported by `init-state` and `status` (exit
/// 3, file, byte and offsets named, `bml wal verify` pointed at), not passed
/// over: a missing middle segment, and a zeroed 4 KiB block over frame headers.
#[test]
fn init_state_and_status_report_damage_in_sealed_segments() {
    for damage in ["missing segment", "zeroed block"] {
        let data = tempfile::tempdir().unwrap();
        drop(small_log(data.path()));
        let mut segments: Vec<_> = std::fs::read_dir(data.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        segments.sort();
        assert!(segments.len() >= 4, "{segments:?}");
        let victim = &segments[1];
        match damage {
            "missing segment" => std::fs::remove_file(victim).unwrap(),
            _ => {
                let mut bytes = std::fs::read(victim).unwrap();
                let end = bytes.len().min(24 + 4096);
                bytes[24..end].fill(0);
                std::fs::write(victim, bytes).unwrap();
            }
        }
        let out = bml(data.path(), &["init-state"]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(3), "{damage}: {all}");
        assert!(
            all.contains("damage in a sealed segment") && all.contains("bml wal verify"),
            "{damage}: {all}"
        );
        let out = bml(data.path(), &["status"]);
        let all = text(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{damage}: {all}");
        assert!(all.contains("offsets"), "{damage}: {all}");
    }
}

/// `bml wal dump | head -1`: the reader stopped early, which is not an error.
#[test]
fn a_closed_pipe_is_not_an_error() {
    let data = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(data.path().join("wal"), Options::default()).unwrap();
        let records: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| vec![b'x'; 64 + (i % 7) as usize])
            .collect();
        wal.append_batch(&records).unwrap();
    }
    let script = format!(
        "'{}' --data-dir '{}' wal dump --from 0 --limit 20000 --raw | head -1",
        env!("CARGO_BIN_EXE_bml"),
        data.path().display()
    );
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("Broken pipe"),
        "{}",
        text(&out.stderr)
    );
}

/// `verify --decode` decodes every record, in the columnar encoding too (a
/// chunk of aggTrades), and names one whose checksums hold but whose bytes
/// are no record this bml reads: exit 3.
#[test]
fn verify_decode_reads_every_record_and_names_one_that_does_not_decode() {
    use bml::event::{AggTrade, Decimal, Event, Record, Source};
    let data = tempfile::tempdir().unwrap();
    let wal = Wal::open(data.path().join("wal"), Options::default()).unwrap();
    let trades = (0..100)
        .map(|i| {
            Event::AggTrade(AggTrade {
                agg_trade_id: i,
                price: Decimal::new(600_001 + i as i64 % 3, 1).unwrap(),
                quantity: Decimal::new(12, 3).unwrap(),
                first_trade_id: 2 * i,
                last_trade_id: 2 * i + 1,
                transact_time: 1_709_251_200_000 + i as i64,
                is_buyer_maker: i.is_multiple_of(2),
            })
        })
        .collect();
    let record = Record {
        symbol: "BTCUSDT".into(),
        source: Source::Planner,
        received_ns: 1,
        events: trades,
    };
    wal.append(&record.encode()).unwrap();
    let out = bml(data.path(), &["wal", "verify", "--decode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("decoded: 1 records, 100 events"),
        "{}",
        text(&out.stdout)
    );
    let mut undecodable = record.encode();
    let last = undecodable.len() - 1;
    undecodable[last] ^= 0xff;
    wal.append(&undecodable).unwrap();
    drop(wal);
    let out = bml(data.path(), &["wal", "verify", "--decode"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("clean: ")
            && stdout.contains("BAD  record at offset 1: undecodable event columns"),
        "{stdout}"
    );
}
