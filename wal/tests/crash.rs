//! Crash safety with real processes: a child appends and prints every offset the
//! log acknowledged; the parent kills it with SIGKILL at a random instant, reopens
//! the log, and checks every acknowledged record is there with the right bytes.
//!
//! The child is this same test binary, started again with `CHILD_DIR` set: the
//! test function sees the variable and plays the appender instead.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bml_wal::{verify, Options, SyncPolicy, Wal};

const CHILD_DIR: &str = "BML_WAL_CRASH_CHILD_DIR";
const CHILD_POLICY: &str = "BML_WAL_CRASH_CHILD_POLICY";
const KILLS: u32 = 60;

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn sigkill_at_random_instants_never_loses_an_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let policy = std::env::var(CHILD_POLICY).unwrap();
        return append_until_killed(Path::new(&dir), &policy);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut acked: Vec<(u64, u32, u64)> = Vec::new(); // (offset, thread, seq)
    for kill in 0..KILLS {
        let policy = ["always", "group", "never"][kill as usize % 3];
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_at_random_instants_never_loses_an_acknowledged_record",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_POLICY, policy)
            .env("SEED", kill.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let collector = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ack ") && lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is appending, then kill it a random moment later.
        let first = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child acknowledged nothing");
        std::thread::sleep(Duration::from_micros(rng.u64(0..30_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        collector.join().unwrap();
        for line in std::iter::once(first).chain(lines_rx.try_iter()) {
            let mut parts = line
                .split_whitespace()
                .skip(1)
                .map(|p| p.parse::<u64>().unwrap());
            let (offset, thread, seq) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            acked.push((offset, thread as u32, seq));
        }

        // Reopen: recovery cuts any torn tail; every acknowledged record must read back.
        let wal = Wal::open(dir.path(), Options::default()).unwrap();
        assert!(
            wal.recovery().problems.is_empty(),
            "kill {kill}: {:?}",
            wal.recovery().problems
        );
        drop(wal);
        let records = support::read_from(dir.path(), 0).unwrap();
        assert_eq!(records.len() as u64, records.last().map_or(0, |r| r.0 + 1));
        for (offset, bytes) in &records {
            check_payload(bytes).unwrap_or_else(|e| panic!("kill {kill}: offset {offset}: {e}"));
        }
        for &(offset, thread, seq) in &acked {
            let bytes = &records
                .get(offset as usize)
                .unwrap_or_else(|| {
                    panic!("kill {kill} ({policy}): acknowledged offset {offset} lost")
                })
                .1;
            assert_eq!(
                &bytes[..12],
                &header(thread, seq),
                "kill {kill}: offset {offset} holds another record"
            );
        }
    }
    assert!(
        acked.len() > KILLS as usize,
        "the children acknowledged too little to mean anything"
    );
    assert!(verify(dir.path()).unwrap().is_clean());
}

/// The child: a few threads append self-describing records forever, in single
/// appends and batches, and print each acknowledgement.
fn append_until_killed(dir: &Path, policy: &str) {
    let sync = match policy {
        "always" => SyncPolicy::Always,
        "group" => SyncPolicy::Group {
            max_bytes: 32 << 10,
            max_delay: Duration::from_millis(1),
        },
        _ => SyncPolicy::Never,
    };
    let wal = Wal::open(
        dir,
        Options {
            sync,
            segment_bytes: 64 << 10,
        },
    )
    .unwrap();
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let threads: Vec<_> = (0..3u32)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed * 10 + u64::from(thread));
                let mut seq = rng.u64(..1 << 40);
                loop {
                    let batch: Vec<Vec<u8>> = (0..rng.usize(1..8))
                        .map(|_| {
                            seq += 1;
                            payload(thread, seq, rng.usize(0..2000))
                        })
                        .collect();
                    let offsets = wal.append_batch(&batch).unwrap();
                    let mut out = std::io::stdout().lock();
                    for (offset, record) in offsets.zip(&batch) {
                        let seq = u64::from_le_bytes(record[4..12].try_into().unwrap());
                        writeln!(out, "ack {offset} {thread} {seq}").unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn header(thread: u32, seq: u64) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&thread.to_le_bytes());
    h[4..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// thread, seq, then bytes derived from both: any record checks itself.
fn payload(thread: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut p = header(thread, seq).to_vec();
    p.extend(support::record(seq ^ u64::from(thread) << 56, len));
    p
}

fn check_payload(bytes: &[u8]) -> Result<(), String> {
    let thread = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
    let expected = payload(thread, seq, bytes.len() - 12);
    (expected == bytes)
        .then_some(())
        .ok_or_else(|| format!("payload of ({thread}, {seq}) damaged"))
}
