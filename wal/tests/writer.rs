//! The writer's promises beyond plain appends: one writer per directory, readers
//! that follow the live end, group commit under concurrency, limits, failures.

mod support;

use std::time::Duration;

use bml_wal::{stat, Error, Options, Reader, SyncPolicy, Wal, MAX_RECORD_LEN};

fn options(sync: SyncPolicy, segment_bytes: u64) -> Options {
    Options {
        sync,
        segment_bytes,
    }
}

#[test]
fn a_second_writer_gets_a_clear_error_naming_the_directory_and_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Wal::open(dir.path(), Options::default()).unwrap();
    let err = Wal::open(dir.path(), Options::default())
        .err()
        .expect("second writer refused");
    match &err {
        Error::Locked { dir: d, holder_pid } => {
            assert_eq!(d, dir.path());
            assert_eq!(*holder_pid, Some(std::process::id()));
        }
        other => panic!("unexpected error {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(first);
    // A child another test of this binary is spawning holds a copy of every
    // descriptor between its fork and its exec (where the close-on-exec lock
    // file closes), and with it the lock: give that window a moment to pass.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Wal::open(dir.path(), Options::default()) {
            Ok(_) => break,
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("lock not released with the writer: {e}"),
        }
    }
}

#[test]
fn readers_follow_the_live_end_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(SyncPolicy::Never, 4096)).unwrap();
    const N: u64 = 5000;
    let signalled = wal.reader(0).unwrap();
    let polling = Reader::open(dir.path(), 0).unwrap();
    let followers: Vec<_> = [signalled, polling]
        .into_iter()
        .map(|mut reader| {
            std::thread::spawn(move || {
                let mut got = 0u64;
                while got < N {
                    let record = reader
                        .next_timeout(Duration::from_secs(20))
                        .unwrap()
                        .expect("record in time");
                    assert_eq!(record.offset, got);
                    assert_eq!(record.data, support::record(got, (got % 97) as usize));
                    got += 1;
                }
                assert!(reader
                    .next_timeout(Duration::from_millis(20))
                    .unwrap()
                    .is_none());
            })
        })
        .collect();
    for i in 0..N {
        wal.append(&support::record(i, (i % 97) as usize)).unwrap();
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for f in followers {
        f.join().unwrap();
    }
    assert!(stat(dir.path()).unwrap().segments.len() > 10);
}

#[test]
fn group_commit_acknowledges_every_thread_only_after_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let sync = SyncPolicy::Group {
        max_bytes: 16 << 10,
        max_delay: Duration::from_millis(2),
    };
    let wal = Wal::open(dir.path(), options(sync, 256 << 10)).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..200 {
                    let offset = wal.append(&support::record(t * 1000 + i, 100)).unwrap();
                    assert!(
                        wal.durable_offset() > offset,
                        "acknowledged before its sync"
                    );
                    mine.push((offset, t * 1000 + i));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all.iter().map(|a| a.0).collect::<Vec<_>>(),
        (0..800).collect::<Vec<_>>()
    );
    let read = support::read_from(dir.path(), 0).unwrap();
    for ((offset, seed), (read_offset, bytes)) in all.iter().zip(&read) {
        assert_eq!(offset, read_offset);
        assert_eq!(bytes, &support::record(*seed, 100));
    }
}

#[test]
fn large_batches_span_frames_and_oversized_records_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(SyncPolicy::Never, 128 << 20)).unwrap();
    let big: Vec<Vec<u8>> = (0..40).map(|i| support::record(i, 300 << 10)).collect();
    assert_eq!(wal.append_batch(&big).unwrap(), 0..40);
    assert_eq!(wal.append_batch(Vec::<Vec<u8>>::new()).unwrap(), 40..40);
    let too_big = vec![0u8; MAX_RECORD_LEN + 1];
    let err = wal.append_batch([&b"fine"[..], &too_big]).unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    assert_eq!(
        wal.append(b"after").unwrap(),
        40,
        "a refused batch writes nothing"
    );
    let read = support::read_from(dir.path(), 0).unwrap();
    assert_eq!(read.len(), 41);
    assert!(read[..40].iter().zip(&big).all(|(r, b)| &r.1 == b));
}

/// A write that fails midway (here: the file-size limit of `ulimit -f`, the same
/// path as a full disk) is cut back, so the log holds no half frame and the
/// writer can go on once there is room.
#[test]
fn a_failed_write_leaves_whole_frames_only() {
    const CHILD: &str = "BML_WAL_FSIZE_CHILD_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        let wal = Wal::open(&dir, options(SyncPolicy::Always, 1 << 30)).unwrap();
        let mut i = 0u64;
        let err = loop {
            match wal.append(&support::record(i, 1000)) {
                Ok(offset) => assert_eq!(offset, i),
                Err(e) => break e,
            }
            i += 1;
        };
        println!("acked {i}");
        println!("error {err}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 100; exec "$0" --exact a_failed_write_leaves_whole_frames_only --nocapture"#)
        .arg(&exe)
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let acked: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("acked "))
        .unwrap_or_else(|| panic!("child output: {stdout}"))
        .parse()
        .unwrap();
    let error = stdout
        .lines()
        .find_map(|l| l.strip_prefix("error "))
        .unwrap();
    assert!(acked > 10, "{stdout}");
    assert!(
        error.contains("appending to") && error.contains(".wal"),
        "{error}"
    );
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        wal.recovery(),
        &bml_wal::Recovery::default(),
        "a half frame was left behind"
    );
    assert_eq!(wal.next_offset(), acked);
    assert_eq!(wal.append(b"room again").unwrap(), acked);
}
