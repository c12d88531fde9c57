//! Read-only inspection of a log directory: [`verify`], [`check_sealed`] and
//! [`stat`]. None takes the writer lock, so all can run beside a live writer.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::segment::{self, Scanner, SegmentPath};
use crate::walk::{walk_segment, Problem, ProblemKind};

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files walked.
    pub segments: usize,
    /// Records in verified frames.
    pub records: u64,
    /// Offsets that a repair declared lost (lost-range frames).
    pub lost: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// One past the last readable offset.
    pub next_offset: u64,
    /// Everything wrong, in log order. Empty means the whole log verified.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when every byte of every segment verified.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks every segment, checks every checksum and the offset sequence, and lists
/// every problem. It reads the whole log: use it for audits, not on a hot path.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    verify_with_progress(dir, |_| {})
}

/// [`verify`], calling `progress` with the bytes checked so far after each segment
/// (for a progress bar: the total is [`Stat::bytes`]).
pub fn verify_with_progress(dir: &Path, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let segments = segment::list(dir)?;
    let mut report = VerifyReport {
        segments: segments.len(),
        records: 0,
        lost: 0,
        bytes: 0,
        next_offset: 0,
        problems: Vec::new(),
    };
    for (i, seg) in segments.iter().enumerate() {
        report.bytes += std::fs::metadata(&seg.path)
            .at("reading size of", &seg.path)?
            .len();
        if seg.base != report.next_offset {
            report.problems.push(Problem {
                segment: seg.path.clone(),
                position: 0,
                offsets: report.next_offset..seg.base.max(report.next_offset),
                kind: ProblemKind::OffsetGap { found: seg.base },
            });
        }
        let walk = walk_segment(&seg.path, seg.base)?;
        let next_base = segments.get(i + 1).map(|s| s.base);
        let mut end = walk.end_offset;
        if let Err(e) = walk.header {
            report.problems.push(Problem {
                segment: seg.path.clone(),
                position: 0,
                offsets: seg.base..next_base.unwrap_or(end).max(seg.base),
                kind: ProblemKind::BadSegmentHeader(e),
            });
        }
        report.records += walk.records;
        report.lost += walk.lost;
        report.problems.extend(walk.problems);
        if let Some(tail) = walk.tail {
            let (kind, offsets) = match next_base {
                None => (ProblemKind::TornTail { bytes: tail.bytes }, end..end),
                Some(next) => (ProblemKind::TruncatedSegment, end..next.max(end)),
            };
            // The lost offsets are accounted for here, not again as a gap.
            end = offsets.end;
            report.problems.push(Problem {
                segment: seg.path.clone(),
                position: tail.position,
                offsets,
                kind,
            });
        }
        report.next_offset = end.max(seg.base);
        progress(report.bytes);
    }
    Ok(report)
}

/// A cheap look at the sealed segments (all but the last): each header, the
/// chain of frame headers (not the bodies), and the offsets running on from one
/// segment to the next. It finds a missing or shortened segment and damage that
/// reaches a frame header in a few reads per frame, where [`verify`] reads every
/// byte; damage inside a frame body only [`verify`] finds.
pub fn check_sealed(dir: &Path) -> Result<Vec<Problem>> {
    let segments = segment::list(dir)?;
    let mut problems = Vec::new();
    let mut expected = segments.first().map_or(0, |s| s.base);
    for pair in segments.windows(2) {
        let (seg, next) = (&pair[0], &pair[1]);
        let problem = |position, offsets, kind| Problem {
            segment: seg.path.clone(),
            position,
            offsets,
            kind,
        };
        if seg.base != expected {
            let kind = ProblemKind::OffsetGap { found: seg.base };
            problems.push(problem(0, expected..seg.base.max(expected), kind));
        }
        let mut scanner = Scanner::open(&seg.path)?;
        match scanner.header()? {
            Ok(base) if base == seg.base => {}
            Ok(base) => {
                let kind =
                    ProblemKind::BadSegmentHeader(crate::format::HeaderError::WrongBase(base));
                problems.push(problem(0, seg.base..next.base, kind));
                expected = next.base;
                continue;
            }
            Err(e) => {
                problems.push(problem(
                    0,
                    seg.base..next.base,
                    ProblemKind::BadSegmentHeader(e),
                ));
                expected = next.base;
                continue;
            }
        }
        let len = scanner.file_len()?;
        let (mut pos, mut end) = (SEGMENT_HEADER_LEN as u64, seg.base);
        while pos < len {
            match scanner.header_at(pos)? {
                Some(h) if h.first_offset == end => {
                    end = h.end_offset();
                    pos += h.frame_len();
                }
                Some(h) => {
                    let kind = ProblemKind::OffsetGap {
                        found: h.first_offset,
                    };
                    problems.push(problem(pos, end..h.first_offset.max(end), kind));
                    end = h.end_offset();
                    pos += h.frame_len();
                }
                None => {
                    let kind = ProblemKind::DamagedFrame("frame header unreadable or cut short");
                    problems.push(problem(pos, end..next.base.max(end), kind));
                    end = next.base.max(end);
                    break;
                }
            }
        }
        expected = end;
    }
    if let Some(last) = segments.last() {
        if segments.len() > 1 && last.base != expected {
            problems.push(Problem {
                segment: last.path.clone(),
                position: 0,
                offsets: expected..last.base.max(expected),
                kind: ProblemKind::OffsetGap { found: last.base },
            });
        }
    }
    Ok(problems)
}

/// One segment in a [`Stat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStat {
    /// Offset of its first record.
    pub base: u64,
    /// Its file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The shape of a log: what [`stat`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Segments, by base offset.
    pub segments: Vec<SegmentStat>,
    /// The first offset held (0 for any log this crate wrote).
    pub first_offset: u64,
    /// The offset the next append will get.
    pub next_offset: u64,
    /// Bytes of all segments.
    pub bytes: u64,
}

/// Lists the segments and finds the next offset (by walking only the last segment).
pub fn stat(dir: &Path) -> Result<Stat> {
    let listed: Vec<SegmentPath> = segment::list(dir)?;
    let mut segments = Vec::with_capacity(listed.len());
    for seg in listed {
        let bytes = std::fs::metadata(&seg.path)
            .at("reading size of", &seg.path)?
            .len();
        segments.push(SegmentStat {
            base: seg.base,
            path: seg.path,
            bytes,
        });
    }
    let next_offset = match segments.last() {
        Some(last) => walk_segment(&last.path, last.base)?.end_offset,
        None => 0,
    };
    Ok(Stat {
        first_offset: segments.first().map_or(0, |s| s.base),
        bytes: segments.iter().map(|s| s.bytes).sum(),
        segments,
        next_offset,
    })
}
