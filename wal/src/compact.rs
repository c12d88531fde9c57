//! Reclaiming the bytes of records no reader will ever want: [`Exclusive::blank`]
//! rewrites sealed segments with chosen records replaced by empty ones. Offsets
//! stay dense and every other byte of every other record stays as it was, so
//! nothing that reads the log by offset notices, except that those records are
//! now zero bytes long. Which records are dead is the caller's knowledge (the
//! log knows nothing of what records mean); the caller decides it while
//! holding the writer lock ([`lock`]), so no append can make one of them live
//! meanwhile.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::repair::replace_segment;
use crate::segment::{self, SegmentPath};
use crate::walk::{walk_pieces, Piece};
use crate::writer::{lock_dir, remove_stale_temp_files};

/// The log's writer lock, held: no writer can append while it lives.
pub struct Exclusive {
    dir: PathBuf,
    _lock: File,
}

/// Takes the writer lock of the log in `dir` (failing with
/// [`Error::Locked`](crate::Error::Locked) while a writer holds it).
pub fn lock(dir: &Path) -> Result<Exclusive> {
    let lock = lock_dir(dir)?;
    remove_stale_temp_files(dir)?;
    Ok(Exclusive {
        dir: dir.to_path_buf(),
        _lock: lock,
    })
}

/// What [`Exclusive::blank`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Records that were not empty and now are.
    pub blanked: u64,
    /// Segment files rewritten.
    pub segments_written: Vec<PathBuf>,
    /// Their sizes before and after, summed.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Sealed segments left alone because they hold damage, with what it is
    /// (`repair` first, then compact).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Exclusive {
    /// Replaces every record at an offset in `offsets` (sorted, not
    /// overlapping) by an empty record, in sealed segments only (the last
    /// segment is where appends go; it is left as it is). Each rewritten
    /// segment is written to a temporary file, synced, and renamed over the
    /// old one, so a crash leaves every segment whole, compacted or not; a
    /// second run finishes the work. A segment with damage is skipped and
    /// named. Lost ranges are kept as they are.
    pub fn blank(&self, offsets: &[Range<u64>]) -> Result<CompactReport> {
        let mut report = CompactReport::default();
        let segments = segment::list(&self.dir)?;
        let Some((_, sealed)) = segments.split_last() else {
            return Ok(report);
        };
        for seg in sealed {
            self.blank_segment(seg, offsets, &mut report)?;
        }
        Ok(report)
    }

    fn blank_segment(
        &self,
        seg: &SegmentPath,
        offsets: &[Range<u64>],
        report: &mut CompactReport,
    ) -> Result<()> {
        let dead = |offset: u64| {
            let i = offsets.partition_point(|r| r.end <= offset);
            offsets.get(i).is_some_and(|r| r.contains(&offset))
        };
        let mut frames = Vec::new();
        let mut damage = None;
        let header = walk_pieces(&seg.path, seg.base, |piece| match piece {
            Piece::Frame { position, header } => frames.push((position, header)),
            Piece::Damage { position, why, .. } => {
                damage.get_or_insert(format!("byte {position}: {why}"));
            }
            Piece::Tail(tail) => {
                damage.get_or_insert(format!(
                    "byte {}: the segment ends inside a frame",
                    tail.position
                ));
            }
        })?;
        if let Err(e) = header {
            damage.get_or_insert(format!("bad segment header ({e})"));
        }
        if let Some(why) = damage {
            report.skipped.push((seg.path.clone(), why));
            return Ok(());
        }
        let touched =
            |h: &format::FrameHeader| !h.lost && (h.first_offset..h.end_offset()).any(dead);
        if !frames.iter().any(|(_, h)| touched(h)) {
            return Ok(());
        }
        let file = File::open(&seg.path).at("opening segment", &seg.path)?;
        let before = file.metadata().at("reading the size of", &seg.path)?.len();
        let mut out = vec![0; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut out, 0)
            .at("reading segment", &seg.path)?;
        let mut frame = Vec::new();
        let mut blanked = 0;
        for (position, header) in frames {
            frame.resize(header.frame_len() as usize, 0);
            file.read_exact_at(&mut frame, position)
                .at("reading segment", &seg.path)?;
            if !touched(&header) {
                out.extend_from_slice(&frame);
                continue;
            }
            let body = &frame[format::FRAME_HEADER_LEN..];
            let start = format::begin_frame(&mut out);
            let mut at = 0;
            for offset in header.first_offset..header.end_offset() {
                let (record, next) =
                    format::split_record(body, at).ok_or_else(|| Error::Corrupt {
                        segment: seg.path.clone(),
                        position,
                        offset,
                        reason: "the frame changed since it was verified".into(),
                    })?;
                if dead(offset) && !record.is_empty() {
                    blanked += 1;
                    format::push_record(&mut out, &[]);
                } else {
                    format::push_record(&mut out, record);
                }
                at = next;
            }
            format::finish_frame(&mut out, start, header.first_offset, header.count);
        }
        if blanked == 0 {
            return Ok(());
        }
        replace_segment(&self.dir, &seg.path, &out)?;
        report.blanked += blanked;
        report.bytes_before += before;
        report.bytes_after += out.len() as u64;
        report.segments_written.push(seg.path.clone());
        Ok(())
    }
}
