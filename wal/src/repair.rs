//! The explicit way past damage: [`repair`] moves every damaged byte range out
//! of the live log into quarantine and puts a *lost-range frame* where the
//! records were, so offsets stay dense and every reader can go on past them.
//! Nothing here runs on its own: opening a log never repairs anything but a
//! crash's torn tail.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, FrameHeader, FLAG_LOST_RANGES, LOST_BIT};
use crate::segment::{self, SegmentPath};
use crate::walk::{walk_pieces, Piece};
use crate::writer::{lock_dir, quarantine, remove_stale_temp_files, sync_dir};

/// Offsets a repair declared lost, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRange {
    /// The lost offsets.
    pub offsets: Range<u64>,
    /// The segment file that now holds the lost-range frame.
    pub segment: PathBuf,
    /// What happened, as written into the frame's note.
    pub note: String,
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Every range declared lost, in offset order.
    pub lost: Vec<LostRange>,
    /// Segment files written (rewritten, or created where one was missing).
    pub segments_written: Vec<PathBuf>,
    /// Files in `quarantine/` that hold the damaged bytes taken out.
    pub quarantined: Vec<PathBuf>,
}

/// Repairs the log in `dir`: takes the writer lock, then for every segment with damage (a frame that fails its checksums,
/// garbage between frames, a bad header, a sealed segment cut short, offsets
/// that do not follow on) writes a new copy with every verified frame kept,
/// the damaged bytes moved to `quarantine/<segment>.<byte>.bytes`, and
/// lost-range frames for the offsets they held; a missing segment becomes a new
/// one holding only a lost range. A torn tail of the last segment is moved to
/// quarantine and cut, as an open of the log would. Each segment is replaced atomically, so a
/// crash midway leaves a log that a second repair finishes. A clean log is left
/// untouched.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let lock = lock_dir(dir)?;
    remove_stale_temp_files(dir)?;
    let mut report = RepairReport::default();
    let segments = segment::list(dir)?;
    let mut expected = 0u64;
    for (i, seg) in segments.iter().enumerate() {
        if seg.base < expected {
            return Err(Error::Corrupt {
                segment: seg.path.clone(),
                position: 0,
                offset: seg.base,
                reason: format!(
                    "segment starts at offset {} but the one before it runs to {expected}; \
                     overlapping segments need a person to decide",
                    seg.base
                ),
            });
        }
        if seg.base > expected {
            let note = format!(
                "no segment holds offsets {expected}..{} (a segment file is missing)",
                seg.base
            );
            let path = dir.join(segment::file_name(expected));
            write_segment(dir, &path, expected, |out| {
                push_lost(out, expected..seg.base, &note)
            })?;
            report.lost.push(LostRange {
                offsets: expected..seg.base,
                segment: path.clone(),
                note,
            });
            report.segments_written.push(path);
        }
        let next_base = segments.get(i + 1).map(|s| s.base);
        expected = repair_segment(dir, seg, next_base, &mut report)?;
    }
    drop(lock);
    Ok(report)
}

/// Repairs one segment if it needs it; returns the offset after its last one.
fn repair_segment(
    dir: &Path,
    seg: &SegmentPath,
    next_base: Option<u64>,
    report: &mut RepairReport,
) -> Result<u64> {
    let mut pieces = Vec::new();
    let header = walk_pieces(&seg.path, seg.base, |piece| pieces.push(piece))?;
    let mut end = seg.base;
    let mut clean = header.is_ok();
    for piece in &pieces {
        match piece {
            Piece::Frame { header, .. } if header.first_offset == end => end = header.end_offset(),
            _ => clean = false,
        }
    }
    // A whole segment that ends early is followed by a missing one: the
    // caller gives that range a segment of its own.
    if clean {
        return Ok(end);
    }
    let file = File::open(&seg.path).at("opening segment", &seg.path)?;
    let name = file_name(&seg.path);
    let mut lost = Vec::new();
    let mut quarantined = Vec::new();
    let mut plan = Vec::new();
    let mut expected = seg.base;
    // Why the offsets up to the next kept frame are missing, if damage said so.
    let mut pending = header
        .err()
        .map(|e| format!("{name}: bad segment header ({e}); its verified frames were kept"));
    for piece in pieces {
        match piece {
            Piece::Frame { position, header } if header.first_offset >= expected => {
                if header.first_offset > expected {
                    let note = pending.take().unwrap_or_else(|| {
                        format!("{name}, byte {position}: no frame holds these offsets")
                    });
                    lost.push((expected..header.first_offset, note));
                    plan.push(Step::Lost(expected..header.first_offset));
                }
                plan.push(Step::Copy(position, header));
                expected = header.end_offset();
            }
            Piece::Frame { position, header } => {
                let kept = quarantine(dir, &seg.path, position, Some(header.frame_len()))?;
                pending.get_or_insert(format!(
                    "{name}, byte {position}: a frame repeating offsets {}..{} (moved to {})",
                    header.first_offset,
                    header.end_offset(),
                    quarantine_name(&kept)
                ));
                quarantined.push(kept);
            }
            Piece::Damage {
                position,
                bytes,
                frame,
                why,
            } => {
                let kept = quarantine(dir, &seg.path, position, Some(bytes))?;
                let note = format!(
                    "{name}, byte {position}: {why} ({bytes} bytes moved to {})",
                    quarantine_name(&kept)
                );
                quarantined.push(kept);
                match frame {
                    Some(h) if h.first_offset == expected => {
                        lost.push((expected..h.end_offset(), note));
                        plan.push(Step::Lost(expected..h.end_offset()));
                        expected = h.end_offset();
                    }
                    _ => {
                        pending.get_or_insert(note);
                    }
                }
            }
            Piece::Tail(tail) => {
                let kept = quarantine(dir, &seg.path, tail.position, None)?;
                pending.get_or_insert(format!(
                    "{name}, byte {}: the segment ends inside a frame ({} bytes moved to {})",
                    tail.position,
                    tail.bytes,
                    quarantine_name(&kept)
                ));
                quarantined.push(kept);
            }
        }
    }
    if let Some(next) = next_base.filter(|&n| n > expected) {
        let note = pending
            .take()
            .unwrap_or_else(|| format!("{name}: the segment ends before offset {next}"));
        lost.push((expected..next, note));
        plan.push(Step::Lost(expected..next));
        expected = next;
    }
    let notes: Vec<String> = lost.iter().map(|(_, n)| n.clone()).collect();
    write_segment(dir, &seg.path, seg.base, |out| {
        let mut notes = notes.iter();
        for step in &plan {
            match step {
                Step::Copy(position, header) => {
                    let start = out.len();
                    out.resize(start + header.frame_len() as usize, 0);
                    file.read_exact_at(&mut out[start..], *position)
                        .at("reading segment", &seg.path)?;
                }
                Step::Lost(range) => {
                    push_lost(out, range.clone(), notes.next().map_or("", |n| n.as_str()))?;
                }
            }
        }
        Ok(())
    })?;
    report.segments_written.push(seg.path.clone());
    report.quarantined.extend(quarantined);
    report
        .lost
        .extend(lost.into_iter().map(|(offsets, note)| LostRange {
            offsets,
            segment: seg.path.clone(),
            note,
        }));
    Ok(expected)
}

/// One part of a segment being rewritten.
enum Step {
    /// Keep the verified frame at this byte position.
    Copy(u64, FrameHeader),
    /// Put lost-range frames for these offsets.
    Lost(Range<u64>),
}

/// Appends lost-range frames for `range` (one per 2³¹ − 1 offsets).
fn push_lost(out: &mut Vec<u8>, range: Range<u64>, note: &str) -> Result<()> {
    let mut start = range.start;
    while start < range.end {
        let count = (range.end - start).min(u64::from(LOST_BIT - 1));
        format::encode_lost_frame(out, start, count as u32, note);
        start += count;
    }
    Ok(())
}

/// Writes the segment `path` (first offset `base`, lost ranges allowed) from
/// what `fill` appends after the header: to a temporary file, synced, renamed
/// over, directory synced.
fn write_segment(
    dir: &Path,
    path: &Path,
    base: u64,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut out = format::encode_segment_header_with(base, FLAG_LOST_RANGES).to_vec();
    fill(&mut out)?;
    replace_segment(dir, path, &out)
}

/// Puts `bytes` in place as the segment `path`, atomically: written to a
/// temporary file, synced, renamed over, directory synced.
pub(crate) fn replace_segment(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{}.tmp", file_name(path)));
    let mut file = File::create(&tmp).at("creating", &tmp)?;
    file.write_all(bytes).at("writing", &tmp)?;
    file.sync_all().at("syncing", &tmp)?;
    fs::rename(&tmp, path).at("renaming into place", path)?;
    sync_dir(dir)
}

/// `quarantine/<file>`: where a note says the bytes went, relative to the log
/// directory (so the note reads the same wherever the log is moved).
fn quarantine_name(path: &Path) -> String {
    format!("quarantine/{}", file_name(path))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}
