//! One walk over a segment, frame by frame, telling damage from a torn tail.
//! Open-time recovery, `verify` and `stat` are all this walk plus a policy.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{HeaderError, SEGMENT_HEADER_LEN};
use crate::segment::{Scan, Scanner};

/// Something wrong found in the log. Each one names the file, the byte position
/// and the record offsets it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte position in that file where the problem starts.
    pub position: u64,
    /// The record offsets that cannot be read because of it (may be empty when
    /// the problem costs no record, e.g. a stray byte range between frames).
    pub offsets: Range<u64>,
    /// What it is.
    pub kind: ProblemKind,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The segment header is unreadable; none of its records are trusted.
    BadSegmentHeader(HeaderError),
    /// A frame that fails its checksums, with valid frames after it.
    DamagedFrame(&'static str),
    /// Bytes after the last whole frame of the last segment: what a crash mid-append
    /// leaves. The writer cuts them on its next open; they were never acknowledged.
    TornTail {
        /// How many bytes would be cut.
        bytes: u64,
    },
    /// A sealed (not last) segment ends inside a frame.
    TruncatedSegment,
    /// Records are missing or repeated: the next frame or segment does not start
    /// where the previous one ended.
    OffsetGap {
        /// The offset found where `offsets.start` was expected.
        found: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, byte {}: ", self.segment.display(), self.position)?;
        match &self.kind {
            ProblemKind::BadSegmentHeader(e) => write!(f, "{e}")?,
            ProblemKind::DamagedFrame(why) => write!(f, "damaged frame ({why})")?,
            ProblemKind::TornTail { bytes } => write!(
                f,
                "torn tail of {bytes} bytes (cut on the writer's next open)"
            )?,
            ProblemKind::TruncatedSegment => write!(f, "sealed segment ends inside a frame")?,
            ProblemKind::OffsetGap { found } => {
                write!(f, "expected offset {}, found {found}", self.offsets.start)?
            }
        }
        if !self.offsets.is_empty() {
            write!(
                f,
                "; offsets {}..{} unreadable",
                self.offsets.start, self.offsets.end
            )?;
        }
        Ok(())
    }
}

/// Bytes after the last verified frame of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Where they start.
    pub position: u64,
    /// How many there are.
    pub bytes: u64,
}

/// What a walk over one segment found.
#[derive(Debug)]
pub(crate) struct SegmentWalk {
    /// Whether the header verified and names the file name's base offset.
    pub header: Result<(), HeaderError>,
    /// One past the last offset of the last verified frame.
    pub end_offset: u64,
    /// Records in verified frames.
    pub records: u64,
    /// Damage with verified frames after it, and offset discontinuities.
    pub problems: Vec<Problem>,
    /// Trailing bytes that hold no verified frame.
    pub tail: Option<Tail>,
}

/// Walks the segment at `path`, whose file name says its first offset is `base`.
pub(crate) fn walk_segment(path: &Path, base: u64) -> Result<SegmentWalk> {
    let mut scanner = Scanner::open(path)?;
    let header = match scanner.header()? {
        Ok(b) if b == base => Ok(()),
        Ok(b) => Err(HeaderError::WrongBase(b)),
        Err(e) => Err(e),
    };
    let mut walk = SegmentWalk {
        header,
        end_offset: base,
        records: 0,
        problems: Vec::new(),
        tail: None,
    };
    let mut pos = SEGMENT_HEADER_LEN as u64;
    loop {
        match scanner.frame_at(pos)? {
            Scan::Frame(h) => {
                if h.first_offset != walk.end_offset {
                    walk.problems.push(Problem {
                        segment: path.to_path_buf(),
                        position: pos,
                        offsets: walk.end_offset..h.first_offset.max(walk.end_offset),
                        kind: ProblemKind::OffsetGap {
                            found: h.first_offset,
                        },
                    });
                }
                walk.end_offset = h.end_offset();
                walk.records += u64::from(h.count);
                pos += h.frame_len();
            }
            Scan::End => break,
            damaged @ (Scan::Incomplete | Scan::Bad(_)) => {
                let why = match damaged {
                    Scan::Bad(why) => why,
                    _ => "incomplete frame",
                };
                match scanner.resync(pos + 1, walk.end_offset)? {
                    Some((next, h)) => {
                        walk.problems.push(Problem {
                            segment: path.to_path_buf(),
                            position: pos,
                            offsets: walk.end_offset..h.first_offset,
                            kind: ProblemKind::DamagedFrame(why),
                        });
                        walk.end_offset = h.first_offset;
                        pos = next;
                    }
                    None => {
                        let len = scanner.file_len()?;
                        walk.tail = Some(Tail {
                            position: pos,
                            bytes: len.saturating_sub(pos),
                        });
                        break;
                    }
                }
            }
        }
    }
    Ok(walk)
}
