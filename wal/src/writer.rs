//! The one writer of a log directory: open-time recovery, appends, durability.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, FRAME_TARGET_BODY, MAX_RECORD_LEN, SEGMENT_HEADER_LEN};
use crate::reader::{Reader, TailSignal};
use crate::segment::{self, SegmentPath};
use crate::walk::{walk_segment, Problem};

/// When an append counts as durable, and so when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` after every append, before it returns. Survives power loss.
    Always,
    /// Group commit: appends wait while others accumulate, then one `fdatasync`
    /// acknowledges them all. A sync starts once `max_bytes` are waiting or the
    /// oldest waiting append is `max_delay` old. Same guarantee as `Always`; far
    /// cheaper when many threads append at once.
    Group {
        /// Sync as soon as this many unsynced bytes are waiting.
        max_bytes: u64,
        /// Sync at the latest this long after the oldest unsynced append.
        max_delay: Duration,
    },
    /// Never sync on append. An append returns once the OS has its bytes: it
    /// survives the process being killed, not the machine losing power. For tests,
    /// benchmarks, and data that can be fetched again. [`Wal::sync`] still works.
    Never,
}

/// How a [`Wal`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Durability of appends.
    pub sync: SyncPolicy,
    /// A new segment starts once the current one reaches this size.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            segment_bytes: 128 << 20,
        }
    }
}

/// What opening the log had to repair. Only the torn tail is ever cut, and its
/// bytes are moved to a quarantine file first, never deleted: a short write holds
/// no acknowledged record (an append returns only after its bytes are whole).
/// A whole frame whose header verifies and whose body does not is not a short
/// write but bit rot of records that may have been acknowledged: it is never
/// cut, even at the very end; it is listed in `problems` and appends continue
/// after it (`repair` is the explicit way past it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The torn tail cut from the last segment: file, byte position, bytes cut,
    /// and the offset that appends continue from.
    pub truncated: Option<TornTail>,
    /// The last segment's header was incomplete (a crash while a segment was being
    /// created) and was written again.
    pub rewrote_header: bool,
    /// Damage found in the last segment: a whole frame that fails its body
    /// checksum, or bad bytes with valid frames after them. Not cut: readers
    /// reach it and get an error; `verify` lists it; `repair` quarantines it.
    pub problems: Vec<Problem>,
}

/// A torn tail that recovery cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte position the file was cut back to.
    pub position: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// The offset the next append gets.
    pub offset: u64,
    /// Where the cut bytes were moved: `quarantine/<segment>.<position>.bytes`
    /// beside the segments.
    pub quarantine: PathBuf,
}

/// The writer of a log directory. Cheap to clone; clones share one writer, so any
/// number of threads may append (that is when group commit pays off).
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    options: Options,
    recovery: Recovery,
    state: Mutex<State>,
    /// Signalled when `durable` moves or the writer is poisoned.
    synced: Condvar,
    tail: Arc<TailSignal>,
    /// Held for the writer's lifetime; the OS lock on it is what keeps writers out.
    _lock: File,
}

struct Active {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
}

struct State {
    active: Active,
    next_offset: u64,
    durable: u64,
    unsynced_bytes: u64,
    unsynced_since: Option<Instant>,
    syncing: bool,
    poisoned: Option<String>,
    scratch: Vec<u8>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, takes the writer lock, and
    /// recovers the tail of the last segment.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).at("creating log directory", &dir)?;
        let lock = lock_dir(&dir)?;
        remove_stale_temp_files(&dir)?;
        let durable = options.sync != SyncPolicy::Never;
        let mut recovery = Recovery::default();
        let segments = segment::list(&dir)?;
        let (active, next_offset) = match segments.last() {
            None => (create_segment(&dir, 0, durable)?, 0),
            Some(last) => recover_last(&dir, last, durable, &mut recovery)?,
        };
        let state = State {
            active,
            next_offset,
            durable: next_offset,
            unsynced_bytes: 0,
            unsynced_since: None,
            syncing: false,
            poisoned: None,
            scratch: Vec::new(),
        };
        Ok(Wal {
            shared: Arc::new(Shared {
                dir,
                options,
                recovery,
                state: Mutex::new(state),
                synced: Condvar::new(),
                tail: Arc::new(TailSignal::new(next_offset)),
                _lock: lock,
            }),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What opening had to repair.
    pub fn recovery(&self) -> &Recovery {
        &self.shared.recovery
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.lock().next_offset
    }

    /// Every offset below this has been synced to stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.lock().durable
    }

    /// Appends one record and returns its offset once durable under the policy.
    pub fn append(&self, record: &[u8]) -> Result<u64> {
        Ok(self.append_batch([record])?.start)
    }

    /// Appends records with dense offsets (one write, at most one sync) and returns
    /// their offsets once durable under the policy. Up to 4 MiB of records go into
    /// one frame, which a crash keeps or loses whole; larger batches span frames.
    /// An empty batch writes nothing and returns an empty range.
    pub fn append_batch<I>(&self, records: I) -> Result<Range<u64>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut st = self.lock();
        self.check_poisoned(&st)?;
        let first = st.next_offset;
        let mut scratch = std::mem::take(&mut st.scratch);
        let encoded = encode_batch(&mut scratch, first, records);
        let count = match encoded {
            Ok(count) => count,
            Err(e) => {
                st.scratch = scratch;
                return Err(e);
            }
        };
        if count == 0 {
            st.scratch = scratch;
            return Ok(first..first);
        }
        let written = self.write_frames(&mut st, &scratch);
        scratch.clear();
        st.scratch = scratch;
        written?;
        let end = first + count;
        st.next_offset = end;
        self.shared.tail.advance(end);
        match self.shared.options.sync {
            SyncPolicy::Never => {}
            SyncPolicy::Always => {
                drop(self.wait_durable(st, end, |_| true)?);
            }
            SyncPolicy::Group {
                max_bytes,
                max_delay,
            } => {
                let due = move |st: &State| {
                    st.unsynced_bytes >= max_bytes
                        || st.unsynced_since.is_some_and(|t| t.elapsed() >= max_delay)
                };
                drop(self.wait_durable(st, end, due)?);
            }
        }
        Ok(first..end)
    }

    /// Syncs everything appended so far, whatever the policy.
    pub fn sync(&self) -> Result<()> {
        let st = self.lock();
        self.check_poisoned(&st)?;
        let end = st.next_offset;
        drop(self.wait_durable(st, end, |_| true)?);
        Ok(())
    }

    /// A reader from `offset` that wakes as soon as this writer appends.
    pub fn reader(&self, offset: u64) -> Result<Reader> {
        Ok(Reader::open(&self.shared.dir, offset)?.with_tail_signal(self.shared.tail.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_poisoned(&self, st: &State) -> Result<()> {
        match &st.poisoned {
            Some(cause) => Err(Error::Poisoned {
                dir: self.shared.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Writes encoded frames at the end of the active segment (rolling first if it
    /// is full). A failed write is cut back so the file never keeps half a frame.
    fn write_frames(&self, st: &mut State, bytes: &[u8]) -> Result<()> {
        if st.active.len >= self.shared.options.segment_bytes
            && st.active.len > SEGMENT_HEADER_LEN as u64
        {
            self.roll(st)?;
        }
        let at = st.active.len;
        if let Err(source) = st.active.file.write_all_at(bytes, at) {
            let path = st.active.path.clone();
            if let Err(cut) = st.active.file.set_len(at) {
                st.poisoned = Some(format!(
                    "write failed ({source}) and cutting it back failed ({cut})"
                ));
                self.shared.synced.notify_all();
            }
            return Err(Error::Io {
                action: "appending to",
                path,
                source,
            });
        }
        st.active.len += bytes.len() as u64;
        st.unsynced_bytes += bytes.len() as u64;
        st.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Seals the active segment (synced, unless the policy never syncs) and starts
    /// the next one at `next_offset`.
    fn roll(&self, st: &mut State) -> Result<()> {
        let durable = self.shared.options.sync != SyncPolicy::Never;
        if durable {
            if let Err(e) = st.active.file.sync_data() {
                return Err(self.poison(st, "syncing", &st.active.path.clone(), e));
            }
            st.durable = st.next_offset;
            st.unsynced_bytes = 0;
            st.unsynced_since = None;
            self.shared.synced.notify_all();
        }
        st.active = create_segment(&self.shared.dir, st.next_offset, durable)?;
        Ok(())
    }

    /// Blocks until offsets below `end` are durable. Whoever finds a sync `due`
    /// and none running leads one (outside the lock, so others keep appending into
    /// the next group); everyone else waits for the leader's signal.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        end: u64,
        due: impl Fn(&State) -> bool,
    ) -> Result<MutexGuard<'a, State>> {
        loop {
            self.check_poisoned(&st)?;
            if st.durable >= end {
                return Ok(st);
            }
            if st.syncing {
                st = self
                    .shared
                    .synced
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            } else if due(&st) {
                st = self.lead_sync(st);
            } else {
                let wait = match (self.shared.options.sync, st.unsynced_since) {
                    (SyncPolicy::Group { max_delay, .. }, Some(since)) => {
                        max_delay.saturating_sub(since.elapsed())
                    }
                    _ => Duration::from_millis(1),
                };
                st = self
                    .shared
                    .synced
                    .wait_timeout(st, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }

    fn lead_sync<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.syncing = true;
        let target = st.next_offset;
        let file = st.active.file.clone();
        let path = st.active.path.clone();
        st.unsynced_bytes = 0;
        st.unsynced_since = None;
        drop(st);
        let result = file.sync_data();
        let mut st = self.lock();
        st.syncing = false;
        match result {
            Ok(()) => st.durable = st.durable.max(target),
            Err(e) => {
                self.poison(&mut st, "syncing", &path, e);
            }
        }
        self.shared.synced.notify_all();
        st
    }

    /// After a failed sync the page cache can no longer be trusted to match the
    /// disk (the kernel may have dropped the dirty pages), so the writer stops.
    fn poison(
        &self,
        st: &mut State,
        action: &'static str,
        path: &Path,
        source: std::io::Error,
    ) -> Error {
        st.poisoned = Some(format!("{action} {}: {source}", path.display()));
        self.shared.synced.notify_all();
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Encodes `records` as frames of about [`FRAME_TARGET_BODY`] bytes into `out`.
/// Checks every size first, so a rejected batch writes nothing.
fn encode_batch<I>(out: &mut Vec<u8>, first: u64, records: I) -> Result<u64>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    out.clear();
    let mut total = 0u64;
    let mut frame: Option<(usize, u64, u32)> = None;
    for record in records {
        let record = record.as_ref();
        if record.len() > MAX_RECORD_LEN {
            out.clear();
            return Err(Error::RecordTooLarge {
                len: record.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let (start, frame_first, count) = match frame {
            Some((start, _, _)) if out.len() - start + record.len() > FRAME_TARGET_BODY => {
                let (start, frame_first, count) = frame.take().unwrap_or_default();
                format::finish_frame(out, start, frame_first, count);
                (format::begin_frame(out), first + total, 0)
            }
            Some(open) => open,
            None => (format::begin_frame(out), first + total, 0),
        };
        format::push_record(out, record);
        frame = Some((start, frame_first, count + 1));
        total += 1;
    }
    if let Some((start, frame_first, count)) = frame {
        format::finish_frame(out, start, frame_first, count);
    }
    Ok(total)
}

pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .at("opening lock file", &path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).at("writing lock file", &path)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .at("writing lock file", &path)?;
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(Error::Locked {
                dir: dir.to_path_buf(),
                holder_pid: holder.trim().parse().ok(),
            })
        }
        Err(TryLockError::Error(e)) => Err(e).at("locking", &path),
    }
}

/// A crash while creating a segment can leave its temporary file behind.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let path = entry.at("listing", dir)?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).at("removing", &path)?;
        }
    }
    Ok(())
}

/// Creates the segment that starts at `base`, atomically: header written to a
/// temporary file, synced, renamed into place, directory synced. A segment file
/// therefore always has a whole header (when `durable`).
fn create_segment(dir: &Path, base: u64, durable: bool) -> Result<Active> {
    let path = dir.join(segment::file_name(base));
    let tmp = dir.join(format!("{}.tmp", segment::file_name(base)));
    {
        let mut file = File::create(&tmp).at("creating segment", &tmp)?;
        file.write_all(&format::encode_segment_header(base))
            .at("writing segment header", &tmp)?;
        if durable {
            file.sync_all().at("syncing", &tmp)?;
        }
    }
    fs::rename(&tmp, &path).at("renaming into place", &path)?;
    if durable {
        sync_dir(dir)?;
    }
    open_active(&path, SEGMENT_HEADER_LEN as u64)
}

fn open_active(path: &Path, len: u64) -> Result<Active> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at("opening segment", path)?;
    Ok(Active {
        path: path.to_path_buf(),
        file: Arc::new(file),
        len,
    })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("syncing directory", dir)
}

/// Copies `len` bytes of `segment` at `position` (to its end when `None`) to a
/// quarantine file beside the segments, `quarantine/<segment>.<position>.bytes`
/// (with a `.1`, `.2`, … suffix if that name is taken: a quarantine file is
/// never overwritten), durably, before recovery or repair takes them out of
/// the live log; returns its path.
pub(crate) fn quarantine(
    dir: &Path,
    segment: &Path,
    position: u64,
    len: Option<u64>,
) -> Result<PathBuf> {
    let folder = dir.join("quarantine");
    fs::create_dir_all(&folder).at("creating", &folder)?;
    let name = segment.file_name().unwrap_or_default().to_string_lossy();
    let mut path = folder.join(format!("{name}.{position}.bytes"));
    let mut n = 0;
    while path.exists() {
        n += 1;
        path = folder.join(format!("{name}.{position}.bytes.{n}"));
    }
    let mut from = File::open(segment).at("opening segment", segment)?;
    from.seek(std::io::SeekFrom::Start(position))
        .at("reading segment", segment)?;
    let mut to = File::create(&path).at("creating", &path)?;
    let copied = match len {
        Some(len) => std::io::copy(&mut (&mut from).take(len), &mut to),
        None => std::io::copy(&mut from, &mut to),
    };
    copied.at("writing", &path)?;
    to.sync_all().at("syncing", &path)?;
    sync_dir(&folder)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Recovers the last segment: rewrites a header lost mid-creation, cuts a torn
/// tail, notes damage it must not cut. Returns the active segment and next offset.
fn recover_last(
    dir: &Path,
    last: &SegmentPath,
    durable: bool,
    recovery: &mut Recovery,
) -> Result<(Active, u64)> {
    let walk = walk_segment(&last.path, last.base)?;
    let mut len = fs::metadata(&last.path)
        .at("reading size of", &last.path)?
        .len();
    if let Err(reason) = walk.header {
        if len > SEGMENT_HEADER_LEN as u64 {
            return Err(Error::BadSegmentHeader {
                segment: last.path.clone(),
                reason,
            });
        }
        // Nothing but a header-sized (or smaller) file: a crash while the segment
        // was being created with a policy that skips syncs. No record is lost.
        recovery.rewrote_header = true;
        return Ok((create_segment(dir, last.base, durable)?, last.base));
    }
    recovery.problems = walk.problems;
    if let Some(tail) = walk.tail {
        let quarantine = quarantine(dir, &last.path, tail.position, None)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&last.path)
            .at("opening segment", &last.path)?;
        file.set_len(tail.position)
            .at("cutting torn tail of", &last.path)?;
        file.sync_all().at("syncing", &last.path)?;
        len = tail.position;
        recovery.truncated = Some(TornTail {
            segment: last.path.clone(),
            position: tail.position,
            bytes: tail.bytes,
            offset: walk.end_offset,
            quarantine,
        });
    }
    Ok((open_active(&last.path, len)?, walk.end_offset))
}
