//! Readers: from any offset, independent of the writer (another process is fine),
//! able to follow the live end of the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{split_record, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::segment::{self, Scan, Scanner, SegmentPath};

/// How often a reader with no in-process writer looks for new records.
const POLL: Duration = Duration::from_millis(5);

/// One record, borrowed from the reader until its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its offset.
    pub offset: u64,
    /// Its bytes, verified against the frame checksum.
    pub data: &'a [u8],
}

/// What a reader hands out at an offset: a record, or a range of offsets whose
/// records a repair could not keep (see `bml wal repair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A record.
    Record(Record<'a>),
    /// Offsets whose records were lost, and the repair's note saying how.
    Lost {
        /// The lost offsets (from the reader's position on).
        offsets: std::ops::Range<u64>,
        /// What was lost and why, as the repair wrote it.
        note: &'a str,
    },
}

/// Reads records in offset order, starting anywhere. A damaged record is an
/// error naming segment, byte position and offset, never skipped; calling again
/// retries the same place. A lost range left by a repair is an
/// [`Entry::Lost`] for [`Reader::next_entry`], and an error for
/// [`Reader::next`], whose callers expect every offset to hold a record.
pub struct Reader {
    dir: PathBuf,
    segments: Vec<SegmentPath>,
    /// Index into `segments` of the segment being read.
    seg: usize,
    scanner: Option<Scanner>,
    /// Byte position of the next frame in the current segment.
    pos: u64,
    /// Offset of the next record to hand out.
    next_offset: u64,
    /// Records below this are skipped (the offset the reader was opened at).
    from: u64,
    frame: Option<FrameCursor>,
    /// A lost-range frame reached and not yet handed out.
    lost: Option<LostCursor>,
    tail: Option<Arc<TailSignal>>,
    /// Frame starts seen so far: first offset → (segment base, byte position).
    landmarks: BTreeMap<u64, (u64, u64)>,
}

/// A verified lost-range frame: its offsets and where its note is.
struct LostCursor {
    end: u64,
    note_pos: u64,
    note_len: usize,
    position: u64,
}

/// Where we are inside the current, verified frame.
struct FrameCursor {
    body_pos: u64,
    body_len: usize,
    cursor: usize,
}

impl Reader {
    /// A reader whose first record will be `offset` (it waits there if the log is
    /// shorter). Opening never fails on damage: reading reaches it and says so.
    pub fn open(dir: impl AsRef<Path>, offset: u64) -> Result<Reader> {
        let dir = dir.as_ref().to_path_buf();
        let segments = segment::list(&dir)?;
        let seg = segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
        let next_offset = segments.get(seg).map_or(0, |s| s.base);
        Ok(Reader {
            dir,
            segments,
            seg,
            scanner: None,
            pos: SEGMENT_HEADER_LEN as u64,
            next_offset,
            from: offset,
            frame: None,
            lost: None,
            tail: None,
            landmarks: BTreeMap::new(),
        })
    }

    pub(crate) fn with_tail_signal(mut self, tail: Arc<TailSignal>) -> Reader {
        self.tail = Some(tail);
        self
    }

    /// The offset of the record the next call returns.
    pub fn position(&self) -> u64 {
        self.next_offset.max(self.from)
    }

    /// Moves the reader so that its next record is `offset`. Frames before it are
    /// stepped over by their headers; frame starts seen on the way are remembered,
    /// so a reader that hops back and forth over the same part of the log (the
    /// materializer gathering one hour's records) goes straight to them.
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        if offset == self.position() {
            return Ok(());
        }
        if self.segments.last().is_none_or(|s| s.base <= offset) {
            self.segments = segment::list(&self.dir)?;
        }
        let Some(target) = self.segments.iter().rposition(|s| s.base <= offset) else {
            self.from = offset;
            return Ok(());
        };
        let base = self.segments[target].base;
        let (first, pos) = self
            .landmarks
            .range(..=offset)
            .next_back()
            .filter(|(_, &(b, _))| b == base)
            .map_or((base, SEGMENT_HEADER_LEN as u64), |(&first, &(_, pos))| {
                (first, pos)
            });
        let go_on = self.seg == target
            && self.scanner.is_some()
            && self.lost.is_none()
            && (first..=offset).contains(&self.next_offset);
        if !go_on {
            if self.seg != target || self.scanner.is_none() {
                self.seg = target;
                self.scanner = None;
                if !self.open_segment()? {
                    self.from = offset;
                    return Ok(());
                }
            }
            self.pos = pos;
            self.next_offset = first;
            self.frame = None;
            self.lost = None;
        }
        self.from = offset;
        Ok(())
    }

    /// The next record, or `None` at the live end of the log (for now). A lost
    /// range is an [`Error::Lost`] here, returned again on every call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
        if !self.advance()? {
            return Ok(None);
        }
        if let (Some(lost), Some(scanner)) = (&self.lost, &self.scanner) {
            let note = String::from_utf8_lossy(scanner.slice(lost.note_pos, lost.note_len));
            return Err(Error::Lost {
                segment: scanner.path().to_path_buf(),
                position: lost.position,
                offsets: self.position()..lost.end,
                note: note.into_owned(),
            });
        }
        self.next_record()
    }

    /// The next record or lost range, or `None` at the live end of the log.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>> {
        if !self.advance()? {
            return Ok(None);
        }
        if let Some(lost) = self.lost.take() {
            let offsets = self.position()..lost.end;
            self.next_offset = lost.end;
            let scanner = self.scanner.as_ref().expect("segment is open");
            let note = std::str::from_utf8(scanner.slice(lost.note_pos, lost.note_len))
                .unwrap_or("(the note is not UTF-8)");
            return Ok(Some(Entry::Lost { offsets, note }));
        }
        Ok(self.next_record()?.map(Entry::Record))
    }

    /// Hands out the record the cursor is at (after `advance` said there is one).
    fn next_record(&mut self) -> Result<Option<Record<'_>>> {
        let (Some(frame), Some(scanner)) = (self.frame.as_mut(), self.scanner.as_ref()) else {
            return Ok(None);
        };
        let body = scanner.slice(frame.body_pos, frame.body_len);
        let (data, end) = split_record(body, frame.cursor).expect("verified frame body");
        frame.cursor = end;
        let offset = self.next_offset;
        self.next_offset += 1;
        Ok(Some(Record { offset, data }))
    }

    /// Like [`Reader::next`], but waits up to `timeout` for a record to be appended.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record<'_>>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.advance()? {
                return self.next();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match &self.tail {
                Some(tail) => tail.wait_past(self.position(), left.min(POLL * 20)),
                None => std::thread::sleep(left.min(POLL)),
            }
        }
    }

    /// Moves to the next record to hand out; false at the live end.
    fn advance(&mut self) -> Result<bool> {
        loop {
            if self.lost.is_some() {
                return Ok(true);
            }
            if let (Some(frame), Some(scanner)) = (self.frame.as_mut(), self.scanner.as_ref()) {
                if frame.cursor < frame.body_len {
                    if self.next_offset >= self.from {
                        return Ok(true);
                    }
                    let body = scanner.slice(frame.body_pos, frame.body_len);
                    frame.cursor = split_record(body, frame.cursor)
                        .expect("verified frame body")
                        .1;
                    self.next_offset += 1;
                    continue;
                }
                self.frame = None;
            }
            if self.scanner.is_none() && !self.open_segment()? {
                return Ok(false);
            }
            let scanner = self.scanner.as_mut().expect("segment is open");
            let base = self.segments[self.seg].base;
            if let Some(h) = scanner.header_at(self.pos)? {
                if h.first_offset == self.next_offset {
                    self.landmarks.insert(h.first_offset, (base, self.pos));
                    if h.end_offset() <= self.from {
                        // Stepped over by its header alone: nothing of it is handed out.
                        self.pos += h.frame_len();
                        self.next_offset = h.end_offset();
                        continue;
                    }
                }
            }
            match scanner.frame_at(self.pos)? {
                Scan::Frame(h) => {
                    if h.first_offset != self.next_offset {
                        return Err(self.corrupt(format!(
                            "frame holds offsets {}..{}, expected {}",
                            h.first_offset,
                            h.end_offset(),
                            self.next_offset
                        )));
                    }
                    let body_pos = self.pos + FRAME_HEADER_LEN as u64;
                    let position = self.pos;
                    self.pos += h.frame_len();
                    if h.end_offset() <= self.from {
                        self.next_offset = h.end_offset();
                        continue;
                    }
                    if h.lost {
                        self.lost = Some(LostCursor {
                            end: h.end_offset(),
                            note_pos: body_pos,
                            note_len: h.body_len as usize,
                            position,
                        });
                        return Ok(true);
                    }
                    self.frame = Some(FrameCursor {
                        body_pos,
                        body_len: h.body_len as usize,
                        cursor: 0,
                    });
                }
                Scan::Bad(why) => return Err(self.corrupt(why.to_string())),
                Scan::BadBody(_) => return Err(self.corrupt("frame body checksum mismatch".into())),
                Scan::End | Scan::Incomplete => {
                    if !self.next_segment()? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Opens `segments[seg]` and checks its header; false if there is none yet.
    fn open_segment(&mut self) -> Result<bool> {
        if self.segments.is_empty() {
            self.segments = segment::list(&self.dir)?;
            self.seg = self
                .segments
                .iter()
                .rposition(|s| s.base <= self.from)
                .unwrap_or(0);
            match self.segments.get(self.seg) {
                Some(s) => self.next_offset = s.base,
                None => return Ok(false),
            }
        }
        let seg = &self.segments[self.seg];
        let mut scanner = Scanner::open(&seg.path)?;
        match scanner.header()? {
            Ok(base) if base == seg.base => {}
            Ok(base) => {
                return Err(Error::BadSegmentHeader {
                    segment: seg.path.clone(),
                    reason: crate::format::HeaderError::WrongBase(base),
                })
            }
            Err(reason) => {
                return Err(Error::BadSegmentHeader {
                    segment: seg.path.clone(),
                    reason,
                })
            }
        }
        self.scanner = Some(scanner);
        self.pos = SEGMENT_HEADER_LEN as u64;
        Ok(true)
    }

    /// At the end of the current segment: moves on if a later segment exists (the
    /// writer finishes a segment before creating the next, so this one is whole);
    /// false if this is the live end.
    fn next_segment(&mut self) -> Result<bool> {
        self.segments = segment::list(&self.dir)?;
        let Some(next) = self.segments.get(self.seg + 1).cloned() else {
            return Ok(false);
        };
        let scanner = self.scanner.as_mut().expect("segment is open");
        match scanner.frame_at(self.pos)? {
            Scan::Frame(_) => return Ok(true),
            Scan::End if next.base == self.next_offset => {}
            Scan::End => {
                return Err(self.corrupt(format!(
                    "segment ends at offset {} but the next one starts at {}",
                    self.next_offset, next.base
                )))
            }
            Scan::Incomplete => {
                return Err(self.corrupt("sealed segment ends inside a frame".into()))
            }
            Scan::Bad(why) => return Err(self.corrupt(why.to_string())),
            Scan::BadBody(_) => return Err(self.corrupt("frame body checksum mismatch".into())),
        }
        self.seg += 1;
        self.scanner = None;
        Ok(true)
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            segment: self
                .scanner
                .as_ref()
                .map(|s| s.path().to_path_buf())
                .unwrap_or_else(|| self.dir.clone()),
            position: self.pos,
            offset: self.next_offset,
            reason,
        }
    }
}

/// How a writer tells readers in the same process that records were appended,
/// so they need not poll.
pub(crate) struct TailSignal {
    next_offset: Mutex<u64>,
    cond: Condvar,
}

impl TailSignal {
    pub fn new(next_offset: u64) -> TailSignal {
        TailSignal {
            next_offset: Mutex::new(next_offset),
            cond: Condvar::new(),
        }
    }

    pub fn advance(&self, next_offset: u64) {
        *self
            .next_offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next_offset;
        self.cond.notify_all();
    }

    /// Waits until a record at or past `offset` exists, or `timeout` passes.
    fn wait_past(&self, offset: u64, timeout: Duration) {
        let guard = self
            .next_offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .cond
            .wait_timeout_while(guard, timeout, |next| *next <= offset)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}
