//! Append and replay throughput of `bml-wal`, printed as the markdown table kept in
//! `docs/performance.md`. Run: `cargo bench -p bml-wal` (add `-- --quick` for a
//! short pass). Writes under `$BML_BENCH_DIR` (default `target/wal-bench`), on the
//! same disk as a real log would be, and compares with raw `File` writes there.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bml_wal::{Options, Reader, SyncPolicy, Wal};

struct Case {
    size: usize,
    policy: &'static str,
    shape: &'static str,
    records: u64,
    elapsed: Duration,
}

impl Case {
    fn row(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mb = self.records as f64 * self.size as f64 / 1e6;
        format!(
            "| {} | {} | {} | {:.0} | {:.0} |",
            human(self.size),
            self.policy,
            self.shape,
            self.records as f64 / secs,
            mb / secs
        )
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1024 => format!("{} KiB", s / 1024),
        s => format!("{s} B"),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let volume: usize = if quick { 64 << 20 } else { 512 << 20 };
    let root = std::env::var_os("BML_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wal-bench"))
        });
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();

    println!("| record | sync | appends | appends/s | MB/s |");
    println!("| --- | --- | --- | ---: | ---: |");
    let mut replay = Vec::new();
    for size in [100usize, 1024, 64 << 10] {
        let record = vec![0xA5u8; size];
        let count = (volume / size) as u64;
        let batch = ((1 << 20) / size).max(1);
        let threaded = (if quick { 4000 } else { 40_000 }).min(count);
        let synced_singles = if quick { 300 } else { 2000 };
        let group = |max_delay| SyncPolicy::Group {
            max_bytes: 1 << 20,
            max_delay,
        };
        // (policy, shape, appends, records per call, threads)
        let cases = [
            (SyncPolicy::Never, "single, 1 thread", count, 1, 1),
            (SyncPolicy::Never, "batches of 1 MiB", count, batch, 1),
            (group(Duration::ZERO), "single, 8 threads", threaded, 1, 8),
            (
                group(Duration::from_millis(1)),
                "single, 8 threads, 1 ms delay",
                threaded,
                1,
                8,
            ),
            (group(Duration::ZERO), "batches of 1 MiB", count, batch, 1),
            (SyncPolicy::Always, "single, 1 thread", synced_singles, 1, 1),
            (SyncPolicy::Always, "batches of 1 MiB", count, batch, 1),
        ];
        for (i, (sync, shape, appends, per_call, threads)) in cases.into_iter().enumerate() {
            let dir = root.join(format!("{size}-{i}"));
            println!(
                "{}",
                run(&dir, sync, size, shape, appends, per_call, threads, &record).row()
            );
            // Keep the unsynced batch log for the replay; the disk is shared with the next case.
            if i == 1 {
                replay.push((size, dir));
            } else {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
    println!();
    println!("| replay (page cache) | records/s | MB/s |");
    println!("| --- | ---: | ---: |");
    for (size, dir) in &replay {
        let (records, bytes, elapsed) = read_all(dir);
        if records == 0 {
            continue;
        }
        let secs = elapsed.as_secs_f64();
        println!(
            "| {} records | {:.0} | {:.0} |",
            human(*size),
            records as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
    }
    println!();
    println!("| raw `File` baseline, 64 KiB writes | MB/s |");
    println!("| --- | ---: |");
    println!(
        "| no sync | {:.0} |",
        raw_write(&root.join("raw-nosync"), volume, usize::MAX)
    );
    println!(
        "| fdatasync every 1 MiB | {:.0} |",
        raw_write(&root.join("raw-sync"), volume, 16)
    );
    println!(
        "| fdatasync at the end only | {:.0} |",
        raw_write(&root.join("raw-end"), volume, usize::MAX - 1)
    );
    let _ = fs::remove_dir_all(&root);
}

#[allow(clippy::too_many_arguments)]
fn run(
    dir: &Path,
    sync: SyncPolicy,
    size: usize,
    shape: &'static str,
    count: u64,
    batch: usize,
    threads: u64,
    record: &[u8],
) -> Case {
    let wal = Wal::open(
        dir,
        Options {
            sync,
            segment_bytes: 128 << 20,
        },
    )
    .unwrap();
    let policy = match sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Group { .. } => "group",
        SyncPolicy::Never => "never",
    };
    let per_thread = count / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let wal = wal.clone();
            s.spawn(move || {
                let batch_records: Vec<&[u8]> = vec![record; batch];
                let mut done = 0u64;
                while done < per_thread {
                    let n = (per_thread - done).min(batch as u64) as usize;
                    if n == 1 {
                        wal.append(record).unwrap();
                    } else {
                        wal.append_batch(&batch_records[..n]).unwrap();
                    }
                    done += n as u64;
                }
            });
        }
    });
    let elapsed = start.elapsed();
    Case {
        size,
        policy,
        shape,
        records: per_thread * threads,
        elapsed,
    }
}

fn read_all(dir: &Path) -> (u64, u64, Duration) {
    if !dir.exists() {
        return (0, 0, Duration::ZERO);
    }
    // Warm the page cache as a replay right after ingest would find it.
    let _ = Reader::open(dir, 0).map(|mut r| while let Ok(Some(_)) = r.next() {});
    let start = Instant::now();
    let mut reader = Reader::open(dir, 0).unwrap();
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some(r) = reader.next().unwrap() {
        records += 1;
        bytes += r.data.len() as u64;
    }
    (records, bytes, start.elapsed())
}

/// Writes `volume` bytes in 64 KiB writes; `sync_every` writes an fdatasync
/// (`usize::MAX`: never; `usize::MAX - 1`: once at the end, inside the timing).
fn raw_write(path: &Path, volume: usize, sync_every: usize) -> f64 {
    let block = vec![0x5Au8; 64 << 10];
    let mut file = File::create(path).unwrap();
    let start = Instant::now();
    for i in 1..=volume / block.len() {
        file.write_all(&block).unwrap();
        if sync_every < usize::MAX - 1 && i % sync_every == 0 {
            file.sync_data().unwrap();
        }
    }
    if sync_every == usize::MAX - 1 {
        file.sync_data().unwrap();
    }
    let mb = volume as f64 / 1e6 / start.elapsed().as_secs_f64();
    drop(file);
    let _ = fs::remove_file(path);
    mb
}
