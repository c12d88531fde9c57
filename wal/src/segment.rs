//! Segment files: their names, the directory listing, and a scanner that finds
//! verified frames in one file. Recovery, `verify` and the reader all look at
//! bytes through [`Scanner`], so they cannot disagree about what is valid.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::format::{self, FrameHeader, HeaderError, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Suffix of segment files; the stem is the base offset, zero-padded to 20 digits
/// so that lexical and numeric order agree.
const SUFFIX: &str = ".wal";

/// How much a scanner reads at once. Large enough that per-read costs vanish.
const CHUNK: usize = 1 << 20;

/// The file name of the segment whose first record is `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SUFFIX)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// A segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentPath {
    pub base: u64,
    pub path: PathBuf,
}

/// The segments in `dir`, by base offset. Other files are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentPath>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let entry = entry.at("listing", dir)?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_file_name) {
            segments.push(SegmentPath {
                base,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.base);
    Ok(segments)
}

/// What lies at a byte position of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A whole frame whose header and body verified.
    Frame(FrameHeader),
    /// The file ends exactly here.
    End,
    /// Some bytes, but fewer than a whole frame: a write in flight, or a torn tail.
    Incomplete,
    /// A frame header that does not verify: damage, or a short write's garbage.
    Bad(&'static str),
    /// A whole frame whose header verifies and whose body does not: bit rot of
    /// records that were written whole (and may have been acknowledged), never
    /// a crash's short write.
    BadBody(FrameHeader),
}

/// Reads frames out of one segment file through a chunk buffer, using positioned
/// reads only, so that it never disturbs (or is disturbed by) a concurrent writer.
pub(crate) struct Scanner {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Bytes of `buf` that hold file data.
    filled: usize,
    /// The file's length when last asked (it only grows while the scanner lives).
    known_len: u64,
}

impl Scanner {
    pub fn open(path: &Path) -> Result<Scanner> {
        let file = File::open(path).at("opening segment", path)?;
        Ok(Scanner {
            file,
            path: path.to_path_buf(),
            buf: Vec::new(),
            buf_pos: 0,
            filled: 0,
            known_len: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current length of the file on disk.
    pub fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .at("reading size of", &self.path)?
            .len())
    }

    /// The base offset recorded in the segment header.
    pub fn header(&mut self) -> Result<Result<u64, HeaderError>> {
        let got = self.available(0, SEGMENT_HEADER_LEN)?;
        Ok(format::decode_segment_header(&self.buf[..got]))
    }

    /// Bytes `[pos, pos + len)`, which the last `frame_at` or `header` covered.
    pub fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let start = (pos - self.buf_pos) as usize;
        &self.buf[start..start + len]
    }

    /// Looks for a verified frame starting at byte `pos`.
    pub fn frame_at(&mut self, pos: u64) -> Result<Scan> {
        let got = self.available(pos, FRAME_HEADER_LEN)?;
        if got < FRAME_HEADER_LEN {
            self.forget_from(pos);
            return Ok(if got == 0 {
                Scan::End
            } else {
                Scan::Incomplete
            });
        }
        let Some(header) = format::decode_frame_header(self.slice(pos, FRAME_HEADER_LEN)) else {
            self.forget_from(pos);
            return Ok(Scan::Bad("frame header checksum mismatch"));
        };
        let frame_len = header.frame_len() as usize;
        if self.available(pos, frame_len)? < frame_len {
            self.forget_from(pos);
            return Ok(Scan::Incomplete);
        }
        let body = &self.slice(pos, frame_len)[FRAME_HEADER_LEN..];
        if !format::verify_frame_body(&header, body) {
            self.forget_from(pos);
            return Ok(Scan::BadBody(header));
        }
        Ok(Scan::Frame(header))
    }

    /// The frame header at byte `pos` if its own checksum holds and the whole
    /// frame is in the file, without reading (or verifying) the body: enough to
    /// step over a frame the caller will not hand out. `None` leaves the
    /// judgement (end, torn tail, damage) to [`Scanner::frame_at`].
    pub fn header_at(&mut self, pos: u64) -> Result<Option<FrameHeader>> {
        let end = self.buf_pos + self.filled as u64;
        let header = if pos >= self.buf_pos && pos + FRAME_HEADER_LEN as u64 <= end {
            format::decode_frame_header(self.slice(pos, FRAME_HEADER_LEN))
        } else {
            let mut bytes = [0u8; FRAME_HEADER_LEN];
            let mut got = 0;
            while got < FRAME_HEADER_LEN {
                let n = self
                    .file
                    .read_at(&mut bytes[got..], pos + got as u64)
                    .at("reading segment", &self.path)?;
                if n == 0 {
                    return Ok(None);
                }
                got += n;
            }
            format::decode_frame_header(&bytes)
        };
        let Some(header) = header else {
            return Ok(None);
        };
        if pos + header.frame_len() > self.known_len {
            self.known_len = self.file_len()?;
            if pos + header.frame_len() > self.known_len {
                return Ok(None);
            }
        }
        Ok(Some(header))
    }

    /// The first verified frame at or after byte `from` whose first offset is at
    /// least `min_offset`. This is how damage is told apart from a torn tail: a
    /// torn tail has no valid frame after it, damage in the middle does.
    pub fn resync(&mut self, from: u64, min_offset: u64) -> Result<Option<(u64, FrameHeader)>> {
        let mut pos = from;
        loop {
            let got = self.available(pos, FRAME_HEADER_LEN)?;
            if got < FRAME_HEADER_LEN {
                return Ok(None);
            }
            let start = (pos - self.buf_pos) as usize;
            let window = &self.buf[start..self.filled];
            let hit = (0..=window.len() - FRAME_HEADER_LEN).find(|&i| {
                format::decode_frame_header(&window[i..])
                    .is_some_and(|h| h.first_offset >= min_offset)
            });
            match hit {
                Some(i) => {
                    let candidate = pos + i as u64;
                    if let Scan::Frame(header) = self.frame_at(candidate)? {
                        return Ok(Some((candidate, header)));
                    }
                    pos = candidate + 1;
                }
                None => pos += (window.len() - FRAME_HEADER_LEN + 1) as u64,
            }
        }
    }

    /// Makes `[pos, pos + want)` resident if the file has it; returns how many of
    /// those bytes are available (less than `want` at the end of the file).
    fn available(&mut self, pos: u64, want: usize) -> Result<usize> {
        let end = self.buf_pos + self.filled as u64;
        if pos >= self.buf_pos && pos + want as u64 <= end {
            return Ok(want);
        }
        let size = want.max(CHUNK);
        if self.buf.len() < size {
            // Old contents are about to be replaced; a fresh zeroed allocation is
            // calloc's lazy zero pages rather than a memset of the whole chunk.
            self.buf = vec![0; size];
        }
        self.buf_pos = pos;
        self.filled = 0;
        while self.filled < size {
            let n = self
                .file
                .read_at(&mut self.buf[self.filled..size], pos + self.filled as u64)
                .at("reading segment", &self.path)?;
            if n == 0 {
                break;
            }
            self.filled += n;
        }
        Ok(self.filled.min(want))
    }

    /// Drops buffered bytes from `pos` on. Bytes past the last whole frame may be a
    /// write in flight or a tail that recovery will replace: never trust a stale copy.
    fn forget_from(&mut self, pos: u64) {
        if pos >= self.buf_pos {
            self.filled = self.filled.min((pos - self.buf_pos) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "42.wal",
            "0000000000000000004x.wal",
            "00000000000000000042.wal.tmp",
            "LOCK",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
