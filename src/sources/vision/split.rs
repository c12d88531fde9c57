//! Vision's CSV split into lines and fields by hand.
//!
//! Vision never quotes a field and never writes an empty line inside a file, so
//! splitting is finding bytes: a record ends at `\n`, `\r` or `\r\n`, a field
//! at `,`. The csv crate did this through a general state machine, a fifth of
//! the ingest's CPU (`docs/performance.md`); this is the same split for the
//! csv crate's settings the ingest used (no quoting, no headers, any field
//! count): runs of line ends are one break, so empty lines yield nothing, and
//! a quote is an ordinary byte (the row's field parser then refuses it). The
//! csv crate stays in the tests as the oracle: `tests/vision_split.rs` and the
//! `vision_csv_split` fuzz target compare the two on arbitrary bytes.

/// Fields a [`Line`] keeps as slices; a longer line still counts its fields.
/// Vision's widest kind has 12.
const KEPT_FIELDS: usize = 16;

/// The non-empty lines of a buffer of whole lines, not yet split into fields.
#[derive(Debug, Clone)]
pub struct RawLines<'a> {
    rest: &'a [u8],
    line: u64,
}

impl<'a> RawLines<'a> {
    /// The lines of `text`, the first of which is line `first_line` (1-based:
    /// a line's number is one more than the `\n` bytes before it; the csv
    /// crate's positions did not count blank lines before a record).
    pub fn new(text: &'a [u8], first_line: u64) -> RawLines<'a> {
        RawLines {
            rest: text,
            line: first_line,
        }
    }
}

impl<'a> Iterator for RawLines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        loop {
            match self.rest.split_first() {
                None => return None,
                Some((b'\n', rest)) => {
                    self.line += 1;
                    self.rest = rest;
                }
                Some((b'\r', rest)) => self.rest = rest,
                Some(_) => break,
            }
        }
        let end = memchr::memchr2(b'\n', b'\r', self.rest).unwrap_or(self.rest.len());
        let (text, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(RawLine {
            text,
            number: self.line,
        })
    }
}

/// One line, its fields not found yet: the ingest's row parsers read the
/// commonest rows straight from the text (`rows::parse`) and split only the
/// others.
#[derive(Debug, Clone, Copy)]
pub struct RawLine<'a> {
    text: &'a [u8],
    number: u64,
}

impl<'a> RawLine<'a> {
    /// The line's bytes, without its line end.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// Its 1-based line number in the file.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The line split at its commas.
    pub fn split(&self) -> Line<'a> {
        let mut commas = [0; KEPT_FIELDS + 2];
        let count = find_commas(self.text, &mut commas);
        Line {
            text: self.text,
            number: self.number,
            commas,
            len: count + 1,
        }
    }
}

/// The non-empty lines of a buffer of whole lines, split into fields.
#[derive(Debug, Clone)]
pub struct Lines<'a>(RawLines<'a>);

impl<'a> Lines<'a> {
    /// The lines of `text`, the first of which is line `first_line` (see
    /// [`RawLines::new`]).
    pub fn new(text: &'a [u8], first_line: u64) -> Lines<'a> {
        Lines(RawLines::new(text, first_line))
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        self.0.next().map(|raw| raw.split())
    }
}

/// One line, split at its commas.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    text: &'a [u8],
    number: u64,
    /// Where its first [`KEPT_FIELDS`] commas are (the rest are found again if
    /// asked for); two more slots take [`find_commas`]' unconditional writes.
    commas: [u32; KEPT_FIELDS + 2],
    len: usize,
}

/// `0x80` in every byte of `word` that equals `byte`, nothing elsewhere
/// (the exact form of the zero-byte trick: no false match after a true one).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Notes where the first [`KEPT_FIELDS`] commas of `line` are; returns how
/// many it has. Eight bytes at a time, without a branch that depends on the
/// data in the common case (at most two commas in eight bytes): a field's
/// length varies from row to row, so such branches would be mispredicted at
/// every field.
fn find_commas(line: &[u8], commas: &mut [u32; KEPT_FIELDS + 2]) -> usize {
    let mut count = 0;
    let (words, tail) = line.as_chunks::<8>();
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    for (i, word) in words.iter().chain([&last]).enumerate() {
        let mut found = bytes_equal(u64::from_le_bytes(*word), b',');
        // A line is at most a chunk long, so its positions fit in a u32. The
        // writes past the count (no comma: position 8) are overwritten later.
        let base = (i * 8) as u32;
        commas[count.min(KEPT_FIELDS)] = base + found.trailing_zeros() / 8;
        count += usize::from(found != 0);
        found &= found.wrapping_sub(1);
        commas[count.min(KEPT_FIELDS + 1)] = base + found.trailing_zeros() / 8;
        count += usize::from(found != 0);
        found &= found.wrapping_sub(1);
        while found != 0 {
            if count < KEPT_FIELDS {
                commas[count] = base + found.trailing_zeros() / 8;
            }
            found &= found - 1;
            count += 1;
        }
    }
    count
}

impl<'a> Line<'a> {
    /// The line's bytes, without its line end.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// Its 1-based line number in the file.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// How many fields it has (one more than its commas).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: a line has at least one (maybe empty) field.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Field `i`, or empty past the line's end.
    #[inline]
    pub fn field(&self, i: usize) -> &'a [u8] {
        if i >= self.len {
            return &[];
        }
        if i >= KEPT_FIELDS {
            return self.fields().nth(i).unwrap_or_default();
        }
        let start = match i {
            0 => 0,
            _ => self.commas[i - 1] as usize + 1,
        };
        let end = if i + 1 == self.len {
            self.text.len()
        } else {
            self.commas[i] as usize
        };
        &self.text[start..end]
    }

    /// Every field, in order.
    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.text.split(|&b| b == b',')
    }
}

/// Cuts a byte stream into buffers of whole lines: what the ingest's reading
/// thread hands to its parsing thread.
#[derive(Debug)]
pub struct Chunker<R> {
    input: R,
    /// How many bytes a chunk holds: [`CHUNK_BYTES`] but in tests.
    capacity: usize,
    /// Bytes read after the last line end of the previous chunk.
    carry: Vec<u8>,
    /// The number of the line the next chunk starts on.
    line: u64,
    done: bool,
}

/// A buffer of whole lines and the number of its first line.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The chunker's capacity long once used (allocated zeroed once, then reused).
    buf: Vec<u8>,
    len: usize,
    first_line: u64,
}

impl Chunk {
    /// Its bytes: whole lines.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Its lines, not yet split into fields.
    pub fn lines(&self) -> RawLines<'_> {
        RawLines::new(self.bytes(), self.first_line)
    }
}

/// Bytes a chunk holds at most; a line must fit in one.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A line longer than a chunk: no Vision row is, so the input is not a Vision CSV.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("line {line} is longer than {limit} bytes: not a Vision CSV")]
    LineTooLong { line: u64, limit: usize },
    #[error("line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
}

impl<R: std::io::Read> Chunker<R> {
    pub fn new(input: R) -> Chunker<R> {
        Chunker::with_capacity(input, CHUNK_BYTES)
    }

    /// Chunks of `capacity` bytes: small ones let a test cross many chunk
    /// boundaries with little data.
    pub fn with_capacity(input: R, capacity: usize) -> Chunker<R> {
        Chunker {
            input,
            capacity: capacity.max(1),
            carry: Vec::new(),
            line: 1,
            done: false,
        }
    }

    /// Fills `chunk` (its old bytes are dropped, its buffer kept) with the
    /// next whole lines; false once the input is exhausted. At the end of the
    /// input the last line counts as whole, line end or not.
    pub fn next_into(&mut self, chunk: &mut Chunk) -> Result<bool, ChunkError> {
        if chunk.buf.len() != self.capacity {
            chunk.buf = vec![0; self.capacity];
        }
        let buf = &mut chunk.buf;
        let mut filled = self.carry.len();
        buf[..filled].copy_from_slice(&self.carry);
        self.carry.clear();
        chunk.first_line = self.line;
        while !self.done && filled < self.capacity {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => self.done = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ChunkError::Read {
                        line: self.line,
                        source,
                    })
                }
            }
        }
        chunk.len = filled;
        if !self.done {
            let Some(end) = memchr::memrchr2(b'\n', b'\r', &buf[..filled]) else {
                return Err(ChunkError::LineTooLong {
                    line: self.line,
                    limit: self.capacity,
                });
            };
            self.carry.extend_from_slice(&buf[end + 1..filled]);
            chunk.len = end + 1;
        }
        self.line += memchr::memchr_iter(b'\n', chunk.bytes()).count() as u64;
        Ok(chunk.len > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<(u64, Vec<String>)> {
        Lines::new(text.as_bytes(), 1)
            .map(|l| {
                let fields = (0..l.len())
                    .map(|i| String::from_utf8_lossy(l.field(i)).into_owned())
                    .collect();
                (l.number(), fields)
            })
            .collect()
    }

    #[test]
    fn lines_and_fields() {
        assert_eq!(
            split("1,2.5,x\n\n3\r\n,,\r4"),
            vec![
                (1, vec!["1".into(), "2.5".into(), "x".into()]),
                (3, vec!["3".into()]),
                (4, vec!["".into(), "".into(), "".into()]),
                (4, vec!["4".into()]),
            ]
        );
        assert!(split("\n\r\n").is_empty());
        let wide = (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let line = Lines::new(wide.as_bytes(), 1).next().unwrap();
        assert_eq!(
            (line.len(), line.field(17), line.field(20)),
            (20, &b"17"[..], &b""[..])
        );
    }

    #[test]
    fn a_line_longer_than_a_chunk_is_refused_by_number() {
        let text = format!("1,2\n3,4\n{}\n", "9".repeat(CHUNK_BYTES + 1));
        let mut chunker = Chunker::new(text.as_bytes());
        let mut chunk = Chunk::default();
        assert!(chunker.next_into(&mut chunk).unwrap());
        let err = chunker.next_into(&mut chunk).unwrap_err();
        assert!(
            matches!(err, ChunkError::LineTooLong { line: 3, .. }),
            "{err}"
        );
    }
}
