//! One walk over a segment, frame by frame, telling damage from a torn tail.
//! Open-time recovery, `verify` and `stat` are all this walk plus a policy.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{FrameHeader, HeaderError, SEGMENT_HEADER_LEN};
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
                write!(f, "expected offset {}, found {found}", self.offsets.start)?;
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
    /// Offsets that lost-range frames (left by a repair) stand for.
    pub lost: u64,
    /// Damage with verified frames after it, and offset discontinuities.
    pub problems: Vec<Problem>,
    /// Trailing bytes that hold no verified frame.
    pub tail: Option<Tail>,
}

/// One stretch of a segment after its header, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A verified frame at a byte position (records, or a lost range).
    Frame { position: u64, header: FrameHeader },
    /// Bytes that hold no verified frame, with a verified frame after them. When
    /// they are one whole frame whose header verified, `frame` is that header.
    Damage {
        position: u64,
        bytes: u64,
        frame: Option<FrameHeader>,
        why: &'static str,
    },
    /// Trailing bytes with no verified frame after them.
    Tail(Tail),
}

/// Walks the segment at `path`, whose file name says its first offset is `base`.
pub(crate) fn walk_segment(path: &Path, base: u64) -> Result<SegmentWalk> {
    let mut walk = SegmentWalk {
        header: Ok(()),
        end_offset: base,
        records: 0,
        lost: 0,
        problems: Vec::new(),
        tail: None,
    };
    // Damage that is not one whole frame reaches up to the next verified frame.
    let mut open_damage: Option<usize> = None;
    walk.header = walk_pieces(path, base, |piece| match piece {
        Piece::Frame { position, header } => {
            if let Some(i) = open_damage.take() {
                let offsets = &mut walk.problems[i].offsets;
                offsets.end = header.first_offset.max(offsets.start);
            } else if header.first_offset != walk.end_offset {
                walk.problems.push(Problem {
                    segment: path.to_path_buf(),
                    position,
                    offsets: walk.end_offset..header.first_offset.max(walk.end_offset),
                    kind: ProblemKind::OffsetGap {
                        found: header.first_offset,
                    },
                });
            }
            walk.end_offset = header.end_offset();
            if header.lost {
                walk.lost += u64::from(header.count);
            } else {
                walk.records += u64::from(header.count);
            }
        }
        Piece::Damage {
            position,
            frame,
            why,
            ..
        } => {
            let end = frame.map_or(walk.end_offset, |h| h.end_offset().max(walk.end_offset));
            if frame.is_none() {
                open_damage = Some(walk.problems.len());
            }
            walk.problems.push(Problem {
                segment: path.to_path_buf(),
                position,
                offsets: walk.end_offset..end,
                kind: ProblemKind::DamagedFrame(why),
            });
            walk.end_offset = end;
        }
        Piece::Tail(tail) => walk.tail = Some(tail),
    })?;
    Ok(walk)
}

/// Calls `each` with every stretch of the segment at `path`, in file order, and
/// returns whether its header verified and names `base`. Verify, recovery and
/// repair all see a segment through this one walk, so they cannot disagree.
pub(crate) fn walk_pieces(
    path: &Path,
    base: u64,
    mut each: impl FnMut(Piece),
) -> Result<Result<(), HeaderError>> {
    let mut scanner = Scanner::open(path)?;
    let header = match scanner.header()? {
        Ok(b) if b == base => Ok(()),
        Ok(b) => Err(HeaderError::WrongBase(b)),
        Err(e) => Err(e),
    };
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut expected = base;
    loop {
        match scanner.frame_at(pos)? {
            Scan::Frame(h) => {
                each(Piece::Frame {
                    position: pos,
                    header: h,
                });
                expected = h.end_offset();
                pos += h.frame_len();
            }
            Scan::End => break,
            Scan::BadBody(h) => {
                each(Piece::Damage {
                    position: pos,
                    bytes: h.frame_len(),
                    frame: Some(h),
                    why: "frame body checksum mismatch",
                });
                expected = expected.max(h.end_offset());
                pos += h.frame_len();
            }
            damaged @ (Scan::Incomplete | Scan::Bad(_)) => {
                let why = match damaged {
                    Scan::Bad(why) => why,
                    _ => "incomplete frame",
                };
                match scanner.resync(pos + 1, expected)? {
                    Some((next, _)) => {
                        each(Piece::Damage {
                            position: pos,
                            bytes: next - pos,
                            frame: None,
                            why,
                        });
                        pos = next;
                    }
                    None => {
                        let len = scanner.file_len()?;
                        each(Piece::Tail(Tail {
                            position: pos,
                            bytes: len.saturating_sub(pos),
                        }));
                        break;
                    }
                }
            }
        }
    }
    Ok(header)
}
