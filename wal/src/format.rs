//! The byte layout of segments and frames, as pure functions over byte slices.
//!
//! `docs/wal-format.md` is the prose twin of this module; the golden files in
//! `tests/golden.rs` pin both. Everything is little-endian. Nothing in here does I/O,
//! so the fuzz targets and the recovery scan share exactly one definition of "valid".

use std::fmt;

/// First bytes of every segment file. The high-bit first byte and the trailing
/// newline catch 7-bit and text-mode transfers, the way PNG's signature does.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89BMLWAL\n";

/// The on-disk format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of the segment header: magic, version, flags, base offset, CRC-32.
pub const SEGMENT_HEADER_LEN: usize = 24;

/// Bytes of a frame header: body length, record count, first offset, body CRC, header CRC.
pub const FRAME_HEADER_LEN: usize = 24;

/// Bytes of the length prefix in front of each record inside a frame body.
pub const RECORD_PREFIX_LEN: usize = 4;

/// The largest record the log accepts. Bounds what a reader must hold in memory.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// A batch is cut into frames of at most this many body bytes (a single larger
/// record still gets a frame of its own). Keeps reader buffers small.
pub const FRAME_TARGET_BODY: usize = 4 << 20;

/// The largest body a valid frame can have. Anything claiming more is damage.
pub const MAX_FRAME_BODY: u32 = (MAX_RECORD_LEN + RECORD_PREFIX_LEN) as u32;

/// Segment header flag: the segment may hold lost-range frames (written only by
/// a repair). A reader that predates them refuses the segment instead of
/// misreading it.
pub const FLAG_LOST_RANGES: u16 = 1;

/// Set in a frame header's count: the frame stands for `count` offsets whose
/// records were lost, and its body is a note saying how (see [`encode_lost_frame`]).
pub const LOST_BIT: u32 = 1 << 31;

/// The longest note a lost-range frame carries.
pub const MAX_LOST_NOTE: u32 = 64 << 10;

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short(usize),
    /// The header's own CRC-32 does not match (damage, or not a bml log at all).
    Checksum,
    /// The CRC matches but the magic does not: some other file format.
    Magic,
    /// A well-formed header from a format version this build does not know.
    Version(u16),
    /// Reserved flag bits set: written by a newer writer with features we lack.
    Flags(u16),
    /// A valid header naming another base offset than the file name does.
    WrongBase(u64),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short(n) => write!(
                f,
                "segment header is {n} bytes, expected {SEGMENT_HEADER_LEN}"
            ),
            HeaderError::Checksum => write!(f, "segment header checksum mismatch"),
            HeaderError::Magic => write!(f, "not a bml-wal segment (bad magic)"),
            HeaderError::Version(v) => write!(
                f,
                "unsupported format version {v} (this build reads {FORMAT_VERSION})"
            ),
            HeaderError::Flags(x) => write!(f, "unknown segment flags {x:#06x}"),
            HeaderError::WrongBase(b) => {
                write!(f, "header names base offset {b}, unlike the file name")
            }
        }
    }
}

/// Encodes the header of a segment whose first record has offset `base_offset`.
pub fn encode_segment_header(base_offset: u64) -> [u8; SEGMENT_HEADER_LEN] {
    encode_segment_header_with(base_offset, 0)
}

/// [`encode_segment_header`] with `flags` (0, or [`FLAG_LOST_RANGES`]).
pub fn encode_segment_header_with(base_offset: u64, flags: u16) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..20].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header and returns its base offset.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let h = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(HeaderError::Short(bytes.len()))?;
    if crc32fast::hash(&h[0..20]) != le_u32(&h[20..24]) {
        return Err(HeaderError::Checksum);
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let version = le_u16(&h[8..10]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let flags = le_u16(&h[10..12]);
    if flags & !FLAG_LOST_RANGES != 0 {
        return Err(HeaderError::Flags(flags));
    }
    Ok(le_u64(&h[12..20]))
}

/// A frame header whose own checksum verified. Its body is not verified yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of body following the header.
    pub body_len: u32,
    /// Offsets the frame stands for (at least one): its records, or the
    /// records it says were lost.
    pub count: u32,
    /// A lost-range frame: its body is a note, not records.
    pub lost: bool,
    /// Offset of the first record; the others follow densely.
    pub first_offset: u64,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

impl FrameHeader {
    /// Header plus body, in bytes.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// One past the offset of the last record in the frame.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }
}

/// Decodes a frame header. `None` means "not a valid header here": short input,
/// checksum mismatch, or fields no writer could have produced.
pub fn decode_frame_header(bytes: &[u8]) -> Option<FrameHeader> {
    let h = bytes.get(..FRAME_HEADER_LEN)?;
    let count = le_u32(&h[4..8]);
    let header = FrameHeader {
        body_len: le_u32(&h[0..4]),
        count: count & !LOST_BIT,
        lost: count & LOST_BIT != 0,
        first_offset: le_u64(&h[8..16]),
        body_crc: le_u32(&h[16..20]),
    };
    // Cheap plausibility first: the resync scan calls this at every byte position.
    let sized = if header.lost {
        header.body_len <= MAX_LOST_NOTE
    } else {
        header.body_len <= MAX_FRAME_BODY
            && u64::from(header.body_len) >= RECORD_PREFIX_LEN as u64 * u64::from(header.count)
    };
    let plausible = header.count >= 1
        && sized
        && header
            .first_offset
            .checked_add(u64::from(header.count))
            .is_some();
    if !plausible || crc32fast::hash(&h[0..20]) != le_u32(&h[20..24]) {
        return None;
    }
    Some(header)
}

/// Checks a frame body against its header: the CRC, and that the record lengths
/// tile the body exactly. Only a body that passes is ever handed to a caller.
pub fn verify_frame_body(header: &FrameHeader, body: &[u8]) -> bool {
    if body.len() != header.body_len as usize || crc32fast::hash(body) != header.body_crc {
        return false;
    }
    if header.lost {
        return true;
    }
    let (mut pos, mut seen) = (0usize, 0u32);
    while pos < body.len() {
        match split_record(body, pos) {
            Some((_, next)) => pos = next,
            None => return false,
        }
        seen += 1;
    }
    seen == header.count
}

/// The record whose length prefix starts at `pos` in `body`, and the position
/// just past it. `None` when the prefix or the record runs past the body.
pub fn split_record(body: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let prefix = body.get(pos..pos.checked_add(RECORD_PREFIX_LEN)?)?;
    let start = pos + RECORD_PREFIX_LEN;
    let end = start.checked_add(le_u32(prefix) as usize)?;
    Some((body.get(start..end)?, end))
}

/// Reserves room for a frame header at the end of `out`; returns where it starts.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    start
}

/// Appends one record (length prefix and bytes) to the frame being built.
pub fn push_record(out: &mut Vec<u8>, record: &[u8]) {
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

/// Fills in the header of the frame that `begin_frame` started at `start`.
pub fn finish_frame(out: &mut [u8], start: usize, first_offset: u64, count: u32) {
    debug_assert!(count & !LOST_BIT >= 1);
    let body = &out[start + FRAME_HEADER_LEN..];
    let body_len = body.len() as u32;
    let body_crc = crc32fast::hash(body);
    let h = &mut out[start..start + FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&body_len.to_le_bytes());
    h[4..8].copy_from_slice(&count.to_le_bytes());
    h[8..16].copy_from_slice(&first_offset.to_le_bytes());
    h[16..20].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

/// Appends a lost-range frame: it stands for the `count` offsets from
/// `first_offset`, whose records a repair could not keep, and carries `note`
/// (cut to [`MAX_LOST_NOTE`] bytes) saying why. Offsets stay dense: a reader
/// hands the range out as lost instead of as records.
pub fn encode_lost_frame(out: &mut Vec<u8>, first_offset: u64, count: u32, note: &str) {
    debug_assert!((1..LOST_BIT).contains(&count));
    let mut end = note.len().min(MAX_LOST_NOTE as usize);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    let start = begin_frame(out);
    out.extend_from_slice(&note.as_bytes()[..end]);
    finish_frame(out, start, first_offset, count | LOST_BIT);
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends one frame holding `records` (offsets from `first_offset`) to `out` and
    /// returns how many records it holds. The caller keeps the body within
    /// [`MAX_FRAME_BODY`] and passes at least one record.
    fn encode_frame<'r>(
        out: &mut Vec<u8>,
        first_offset: u64,
        records: impl IntoIterator<Item = &'r [u8]>,
    ) -> u32 {
        let start = begin_frame(out);
        let mut count = 0;
        for record in records {
            push_record(out, record);
            count += 1;
        }
        finish_frame(out, start, first_offset, count);
        count
    }

    /// No single flipped bit of the frame `out` (whose header is `header`)
    /// leaves it decoding to the same, verified frame.
    fn assert_every_flip_is_noticed(out: &[u8], header: FrameHeader) {
        for bit in 0..out.len() * 8 {
            let mut bad = out.to_vec();
            bad[bit / 8] ^= 1 << (bit % 8);
            let ok = decode_frame_header(&bad)
                .is_some_and(|h| h == header && verify_frame_body(&h, &bad[FRAME_HEADER_LEN..]));
            assert!(!ok, "flipping bit {bit} went unnoticed");
        }
    }

    #[test]
    fn segment_header_round_trips() {
        for base in [0, 1, 1 << 40, u64::MAX] {
            assert_eq!(
                decode_segment_header(&encode_segment_header(base)),
                Ok(base)
            );
        }
    }

    #[test]
    fn frame_round_trips_and_rejects_damage() {
        let mut out = Vec::new();
        let records: [&[u8]; 3] = [b"a", b"", b"hello"];
        assert_eq!(encode_frame(&mut out, 7, records), 3);
        let header = decode_frame_header(&out).unwrap();
        assert_eq!(
            (header.first_offset, header.count, header.end_offset()),
            (7, 3, 10)
        );
        let body = &out[FRAME_HEADER_LEN..];
        assert!(verify_frame_body(&header, body));
        let (mut pos, mut got) = (0, Vec::new());
        while pos < body.len() {
            let (record, next) = split_record(body, pos).unwrap();
            got.push(record.to_vec());
            pos = next;
        }
        assert_eq!(got, vec![b"a".to_vec(), vec![], b"hello".to_vec()]);
        assert_every_flip_is_noticed(&out, header);
    }

    #[test]
    fn lost_frames_round_trip_and_reject_damage() {
        let mut out = Vec::new();
        encode_lost_frame(&mut out, 40, 3, "segment 7 was missing");
        let header = decode_frame_header(&out).unwrap();
        assert!(header.lost);
        assert_eq!(
            (header.first_offset, header.count, header.end_offset()),
            (40, 3, 43)
        );
        let body = &out[FRAME_HEADER_LEN..];
        assert!(verify_frame_body(&header, body));
        assert_eq!(body, b"segment 7 was missing");
        assert_every_flip_is_noticed(&out, header);
        let long = "x".repeat(MAX_LOST_NOTE as usize + 10);
        let mut out = Vec::new();
        encode_lost_frame(&mut out, 0, 1, &long);
        assert_eq!(out.len(), FRAME_HEADER_LEN + MAX_LOST_NOTE as usize);
        assert_eq!(
            decode_segment_header(&encode_segment_header_with(9, FLAG_LOST_RANGES)),
            Ok(9)
        );
        assert_eq!(
            decode_segment_header(&encode_segment_header_with(9, 2)),
            Err(HeaderError::Flags(2))
        );
    }
}
