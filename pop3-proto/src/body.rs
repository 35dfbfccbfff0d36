//! Low-level incremental decoder for `RETR`/`TOP` message bodies: dot-unstuffing and
//! terminator detection over the receive buffer, one piece at a time.
//!
//! [`crate::Client`] uses it internally; it is public for fuzz targets and benchmarks.
//!
//! Why a dedicated decoder rather than the line reader: message lines can be arbitrarily long
//! (unwrapped base64, HTML on one line), so bodies must not be framed line by line with a
//! length limit. The decoder only has work where an LF is followed by a dot (found with
//! `memmem`), and hands out everything between as [`Bytes`] split off the receive buffer,
//! without copying. Where such line starts are dense (runs shorter than 256 bytes), the runs
//! are packed into owned chunks instead, eight bytes at a time with `mail_common::scan`, so a
//! body of short dotted lines does not pay per-line costs. Work is linear in the body size,
//! memory is constant per message, and the `CRLF.CRLF` terminator is found whatever the chunk
//! boundaries.
//!
//! Rules, for each line:
//! - `.` CRLF at a line start ends the body (a bare `.` LF does not: a server that sends CRLF
//!   cannot then cut the message short with a lone LF, the CVE-2002-2338 class).
//! - `..` at a line start loses its first dot (the server's byte-stuffing).
//! - A `.` followed by anything else is kept as sent. RFC 1939 tells clients to drop it, but a
//!   correct server never sends such a line, so it comes from a server that does not stuff,
//!   and keeping the dot preserves the original line. Python's poplib does the same.
//! - Everything else, CRLF and bare CR or LF included, is delivered byte for byte: the body is
//!   8-bit clean and its octet count is exact.
//!
//! A line start is the start of the body and the byte after any LF.

use std::sync::LazyLock;

use bytes::Bytes;
use mail_common::LineReader;
use mail_common::scan::{self, WORD};
use memchr::memmem::Finder;

/// Runs of content shorter than this are packed together (see [`BodyDecoder::decode`]).
const PACK_BELOW: usize = 256;
/// The largest packed chunk.
const PACK_LIMIT: usize = 16 * 1024;

/// An LF followed by a dot: the only place where the decoder has anything to do.
static LINE_START_DOT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n."));

/// What one call of [`BodyDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, unstuffed, CRLFs kept.
    Data(Bytes),
    /// The terminator was consumed; the body is complete.
    End,
    /// More input is needed.
    NeedMore,
}

/// The body exceeded the size given to [`BodyDecoder::new`]. The bytes up to the limit were
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message body larger than {limit} bytes")]
pub struct TooLarge {
    /// The limit.
    pub limit: u64,
}

/// Decodes one multi-line body from the front of a [`LineReader`]'s buffer.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    at_line_start: bool,
    octets: u64,
    max_size: u64,
}

/// What a line start that begins with a dot turned out to be.
enum DotLine {
    /// Too few bytes buffered to tell.
    Undecided,
    /// `.` CRLF: the end of the body.
    Terminator,
    /// `..`: the first dot is stuffing and goes.
    Stuffed,
    /// Anything else: the dot is content.
    Kept,
}

impl DotLine {
    /// Classifies the line start at the front of `rest`, which begins with a dot.
    fn at(rest: &[u8]) -> Self {
        match rest.get(1..3) {
            Some([b'\r', b'\n']) => Self::Terminator,
            _ => match rest.get(1) {
                None => Self::Undecided,
                Some(b'.') => Self::Stuffed,
                Some(b'\r') if rest.len() == 2 => Self::Undecided,
                Some(_) => Self::Kept,
            },
        }
    }
}

/// How [`copy_run`] ended.
enum RunEnd {
    /// At the LF at this index, followed by a line start with a dot; the run through the LF was
    /// copied.
    LineDot(usize),
    /// The run is at least [`PACK_BELOW`] bytes long; better handed out as a slice.
    Long,
    /// No line start with a dot before the end of the allowed range; all of it was copied.
    Exhausted,
}

/// Copies `buf[from..]` to `out[at..]` up to and including the next LF that is followed by a
/// dot, but not past `end`. Eight bytes at a time while the buffer allows: `out` needs
/// [`PACK_BELOW`] + [`WORD`] bytes of room after `at`.
fn copy_run(buf: &[u8], from: usize, end: usize, out: &mut [u8], at: usize) -> RunEnd {
    let found = |lf: usize| {
        if lf < end {
            RunEnd::LineDot(lf)
        } else {
            RunEnd::Exhausted
        }
    };
    let mut i = from;
    // The word starting at `i + 1` must be in the buffer too: it holds the byte after each LF.
    while i < end && i + WORD < buf.len() {
        if i - from >= PACK_BELOW {
            return RunEnd::Long;
        }
        let word = scan::load(buf, i);
        scan::store(out, at + i - from, word);
        let line_dot =
            scan::equal_bytes(word, b'\n') & scan::equal_bytes(scan::load(buf, i + 1), b'.');
        if let Some(offset) = scan::first_set_byte(line_dot) {
            return found(i + offset);
        }
        i += WORD;
    }
    while i < end {
        if i - from >= PACK_BELOW {
            return RunEnd::Long;
        }
        out[at + i - from] = buf[i];
        if buf[i] == b'\n' && buf.get(i + 1) == Some(&b'.') {
            return found(i);
        }
        i += 1;
    }
    RunEnd::Exhausted
}

impl BodyDecoder {
    /// A decoder for a body that starts at the front of the buffer and may deliver at most
    /// `max_size` bytes.
    pub const fn new(max_size: u64) -> Self {
        Self {
            at_line_start: true,
            octets: 0,
            max_size,
        }
    }

    /// Body bytes delivered so far.
    pub const fn octets(&self) -> u64 {
        self.octets
    }

    /// Takes the next piece of the body out of `rx`.
    ///
    /// Call until it returns [`Decoded::NeedMore`] (then feed more bytes) or [`Decoded::End`]
    /// (then the bytes after the terminator are left in `rx` for whatever comes next).
    pub fn decode(&mut self, rx: &mut LineReader) -> Result<Decoded, TooLarge> {
        let buf = rx.buffered();
        if buf.is_empty() {
            return Ok(Decoded::NeedMore);
        }
        let mut start = 0;
        if self.at_line_start && buf[0] == b'.' {
            match DotLine::at(buf) {
                DotLine::Undecided => return Ok(Decoded::NeedMore),
                DotLine::Terminator => {
                    rx.advance(3);
                    return Ok(Decoded::End);
                }
                DotLine::Stuffed => start = 1,
                DotLine::Kept => {}
            }
        }
        let allowed = self.max_size - self.octets;
        if allowed == 0 {
            return Err(TooLarge {
                limit: self.max_size,
            });
        }
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        // Runs of content between dot-stuffed line starts are handed out as zero-copy slices of
        // the receive buffer. When such runs are short (a body where most lines start with a
        // dot), one slice per line would cost more than the bytes themselves, so short runs are
        // packed into one owned chunk of at most `PACK_LIMIT` bytes instead.
        let run_end = LINE_START_DOT.find(&buf[start..]).map(|lf| start + lf + 1);
        if let Some(run_end) = run_end
            && run_end - start < PACK_BELOW
        {
            return Ok(Decoded::Data(self.pack(rx, start, allowed)));
        }
        let take = (run_end.unwrap_or(buf.len()) - start).min(allowed);
        self.at_line_start = buf[start + take - 1] == b'\n';
        self.octets += take as u64;
        rx.advance(start);
        Ok(Decoded::Data(rx.split_to(take)))
    }

    /// Unstuffs short runs from `start` into one owned chunk, until a long run, the
    /// terminator, the end of the buffer, [`PACK_LIMIT`] or the size limit (`allowed` more
    /// bytes), and takes what it consumed out of `rx`.
    fn pack(&mut self, rx: &mut LineReader, start: usize, allowed: usize) -> Bytes {
        let buf = rx.buffered();
        let full = PACK_LIMIT - PACK_BELOW;
        let mut out = vec![0; PACK_LIMIT + BLOCK + SPAN_COPY];
        let mut written = 0;
        let mut from = start;
        // A line start with a dot that is yet to be classified.
        let mut dot_at = None;
        // Where the next call picks up: a line start whose dot is still to be classified, or
        // content.
        let mut at_line_start = false;
        loop {
            if let Some(dot) = dot_at.take() {
                match DotLine::at(&buf[dot..]) {
                    DotLine::Undecided | DotLine::Terminator => {
                        from = dot;
                        at_line_start = true;
                        break;
                    }
                    DotLine::Stuffed => from = dot + 1,
                    DotLine::Kept => from = dot,
                }
            }
            if written >= full || written >= allowed {
                break;
            }
            if allowed - written >= buf.len() - from {
                let words = unstuff_words(buf, from, &mut out, written, full);
                if words.to > from {
                    from = words.to;
                    written = words.written;
                    if words.long_run {
                        // `from` is content: after a stuffing dot or at a dot kept as content.
                        break;
                    }
                    if buf[from - 1] == b'\n' && buf[from] == b'.' {
                        dot_at = Some(from);
                    }
                    continue;
                }
            }
            let end = buf.len().min(from.saturating_add(allowed - written));
            match copy_run(buf, from, end, &mut out, written) {
                RunEnd::LineDot(lf) => {
                    written += lf + 1 - from;
                    from = lf + 1;
                    dot_at = Some(from);
                }
                RunEnd::Long => break,
                RunEnd::Exhausted => {
                    written += end - from;
                    from = end;
                    at_line_start = buf[end - 1] == b'\n';
                    break;
                }
            }
        }
        out.truncate(written);
        self.at_line_start = at_line_start;
        self.octets += written as u64;
        rx.advance(from);
        Bytes::from(out)
    }
}

/// How far [`unstuff_words`] got.
struct Words {
    /// Input consumed up to here.
    to: usize,
    /// Output written up to here.
    written: usize,
    /// Stopped at the start of a run of content of at least [`PACK_BELOW`] bytes, better
    /// handed out as a slice.
    long_run: bool,
}

/// Bytes [`unstuff_words`] classifies at once: one bit per byte of a `u64`.
const BLOCK: usize = 64;
/// The fixed length of the copy of each span between stuffing dots: shorter spans (all of them
/// in a body of short dotted lines) cost two 16-byte moves instead of a `memcpy` call.
const SPAN_COPY: usize = 32;

/// Gathers the flags of [`scan::equal_bytes`] (the high bit of each byte) into the low eight
/// bits, byte 0 to bit 0.
const fn byte_bits(mask: u64) -> u64 {
    (mask >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Unstuffs `buf[from..]` into `out[written..]`.
///
/// Why this shape: in a body of short dotted lines the work per line must be a handful of
/// instructions. Each block of 64 bytes is classified at once into bit masks (LF, dot), eight
/// bytes per step in plain integer registers, whatever the line lengths; then the spans between
/// stuffing dots are copied one after another, each with one fixed-size copy. The cost per line
/// is a bit scan and that copy, with no branch that depends on where lines end.
///
/// A line start at `from` itself counts as already classified; a dot kept as content is copied.
/// Stops at a line start with `.` CR (the terminator, or a line that needs more input to
/// classify: the caller's per-line path handles those), once `written` reaches `full`, before the
/// last byte of the buffer, and at the start of a run of [`PACK_BELOW`] bytes without a stuffing dot
/// (the byte after the last stuffing dot). `out` needs `full` + [`BLOCK`] + [`SPAN_COPY`] bytes;
/// the caller makes sure the output fits under the size limit.
fn unstuff_words(
    buf: &[u8],
    from: usize,
    out: &mut [u8],
    mut written: usize,
    full: usize,
) -> Words {
    let long_run = |to, written| Words {
        to,
        written,
        long_run: true,
    };
    // The input not yet copied starts at `span`.
    let mut span = from;
    let mut i = from;
    // Bit 0: the byte before the block is an LF.
    let mut after_lf = 0;
    let mut stopped = false;
    // The block, the byte after it, and the fixed-size copy of a span that starts in the block
    // must be in the buffer.
    while i + BLOCK + SPAN_COPY <= buf.len() && written + (i - span) < full {
        let block: &[u8; BLOCK + 1] = buf[i..=i + BLOCK].try_into().expect("65 bytes");
        let mut lf = 0;
        let mut dot = 0;
        for (k, word) in block[..BLOCK].chunks_exact(WORD).enumerate() {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            lf |= byte_bits(scan::equal_bytes(word, b'\n')) << (WORD * k);
            dot |= byte_bits(scan::equal_bytes(word, b'.')) << (WORD * k);
        }
        let dot_next = (dot >> 1) | (u64::from(block[BLOCK] == b'.') << 63);
        let line_dot = ((lf << 1) | after_lf) & dot;
        let mut stuffing = line_dot & dot_next;
        let mut stop = None;
        let mut other = line_dot & !dot_next;
        // Rare in a stuffed body: a dot kept as content is copied like any byte, but `.` CR is
        // for the per-line path; the stuffing before it is still done here.
        while other != 0 {
            let at = other.trailing_zeros() as usize;
            if block[at + 1] == b'\r' {
                stop = Some(i + at);
                stuffing &= (1 << at) - 1;
                break;
            }
            other &= other - 1;
        }
        while stuffing != 0 {
            let at = i + stuffing.trailing_zeros() as usize;
            let len = at - span;
            if len >= PACK_BELOW {
                return long_run(span, written);
            }
            if len <= SPAN_COPY {
                out[written..written + SPAN_COPY].copy_from_slice(&buf[span..span + SPAN_COPY]);
            } else {
                out[written..written + len].copy_from_slice(&buf[span..at]);
            }
            written += len;
            span = at + 1;
            stuffing &= stuffing - 1;
        }
        if let Some(at) = stop {
            i = at;
            stopped = true;
            break;
        }
        i += BLOCK;
        after_lf = lf >> 63;
        if i - span >= PACK_BELOW {
            return long_run(span, written);
        }
    }
    // The last bytes before the end of the buffer, one at a time, so a long run there is still
    // recognised as one.
    while !stopped && i + 1 < buf.len() && written + (i - span) < full {
        if i - span >= PACK_BELOW {
            return long_run(span, written);
        }
        if i > from && buf[i - 1] == b'\n' && buf[i] == b'.' {
            if buf[i + 1] == b'.' {
                out[written..written + (i - span)].copy_from_slice(&buf[span..i]);
                written += i - span;
                span = i + 1;
            } else if buf[i + 1] == b'\r' {
                break;
            }
        }
        i += 1;
    }
    let len = i - span;
    out[written..written + len].copy_from_slice(&buf[span..i]);
    Words {
        to: i,
        written: written + len,
        long_run: false,
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyDecoder, Decoded, TooLarge};
    use mail_common::LineReader;

    /// Feeds `wire` in pieces of `step` bytes; returns the body and what was left over.
    fn decode_in_steps(wire: &[u8], step: usize, max: u64) -> (Result<Vec<u8>, TooLarge>, Vec<u8>) {
        let mut rx = LineReader::new(16);
        let mut decoder = BodyDecoder::new(max);
        let mut body = Vec::new();
        let mut pieces = wire.chunks(step.max(1));
        loop {
            match decoder.decode(&mut rx) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::End) => {
                    assert_eq!(decoder.octets(), body.len() as u64);
                    return (Ok(body), rx.buffered().to_vec());
                }
                Ok(Decoded::NeedMore) => match pieces.next() {
                    Some(piece) => rx.extend(piece),
                    None => return (Ok(body), b"<incomplete>".to_vec()),
                },
                Err(e) => return (Err(e), body),
            }
        }
    }

    /// The rules of the module documentation, one byte at a time: the body and where the bytes
    /// after the terminator start, or `None` when the wire has no terminator.
    fn reference(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut body = Vec::new();
        let mut at_line_start = true;
        let mut i = 0;
        while i < wire.len() {
            if at_line_start && wire[i] == b'.' {
                match wire.get(i + 1..i + 3) {
                    Some(b"\r\n") => return Some((body, i + 3)),
                    _ if wire.get(i + 1) == Some(&b'.') => i += 1,
                    _ => {}
                }
            }
            body.push(wire[i]);
            at_line_start = wire[i] == b'\n';
            i += 1;
        }
        None
    }

    proptest::proptest! {
        /// Dot-dense and arbitrary wires, in any piece size, under any size limit: the packed
        /// word-at-a-time path and the zero-copy path agree with the byte-at-a-time rules,
        /// including where a piece ends inside `\n..`, `\n.\r\n` or an eight-byte word.
        #[test]
        fn matches_the_byte_at_a_time_rules(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b"..".to_vec()),
                    proptest::strategy::Just(b".".to_vec()),
                    proptest::strategy::Just(b".x".to_vec()),
                    proptest::strategy::Just(b"...".to_vec()),
                    proptest::strategy::Just(b".\r".to_vec()),
                    proptest::strategy::Just(b"x".repeat(300)),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
                ],
                0..60,
            ),
            endings in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(&b"\r\n"[..]),
                proptest::strategy::Just(&b"\n"[..]),
                proptest::strategy::Just(&b"\r"[..]),
            ], 1..8),
            // Large pieces too, so the 64-byte blocks of `unstuff_words` see every split.
            step in proptest::prop_oneof![1_usize..40, 40_usize..3000],
            limit in proptest::prop_oneof![proptest::strategy::Just(u64::MAX), 0_u64..400],
        ) {
            let mut wire = Vec::new();
            for (line, ending) in lines.iter().zip(endings.iter().cycle()) {
                wire.extend_from_slice(line);
                wire.extend_from_slice(ending);
            }
            wire.extend_from_slice(b"\r\n.\r\nNEXT");
            let (expected, after) = reference(&wire).expect("a terminator was appended");
            let (got, rest) = decode_in_steps(&wire, step, limit);
            if expected.len() as u64 <= limit {
                proptest::prop_assert_eq!(got, Ok(expected));
                proptest::prop_assert!(wire[after..].starts_with(&rest));
            } else {
                proptest::prop_assert_eq!(got, Err(TooLarge { limit }));
                proptest::prop_assert_eq!(&rest[..], &expected[..usize::try_from(limit).unwrap()]);
            }
        }
    }

    #[test]
    fn unstuffing_and_terminator_at_every_split() {
        let wire = b"Subject: x\r\n\r\n..hidden\r\n.keep\r\n...\r\n\r\n.\r\nNEXT";
        let body = b"Subject: x\r\n\r\n.hidden\r\n.keep\r\n..\r\n\r\n";
        for step in 1..=wire.len() {
            let (got, rest) = decode_in_steps(wire, step, u64::MAX);
            assert_eq!(got.unwrap(), body, "step {step}");
            // Only what was fed can be left over, and it is the start of "NEXT".
            assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn empty_body_and_lone_dots() {
        assert_eq!(decode_in_steps(b".\r\n", 1, 10).0.unwrap(), b"");
        // A bare LF after a dot does not terminate, and the dot line is kept.
        let (got, rest) = decode_in_steps(b".\nx\r\n.\r\n", 2, 100);
        assert_eq!(got.unwrap(), b".\nx\r\n");
        assert!(rest.is_empty());
        // ".\r" followed by something else is content.
        assert_eq!(
            decode_in_steps(b".\rx\r\n.\r\n", 1, 100).0.unwrap(),
            b".\rx\r\n"
        );
    }

    #[test]
    fn eight_bit_and_long_lines_pass_through() {
        let mut wire = vec![0_u8, 0xff, b'\r', b'x'];
        wire.extend(std::iter::repeat_n(b'a', 100_000));
        wire.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = decode_in_steps(&wire, 7777, u64::MAX);
        assert_eq!(got.unwrap(), &wire[..wire.len() - 3]);
    }

    #[test]
    fn size_limit_delivers_exactly_the_limit() {
        let wire = b"0123456789\r\n.\r\n";
        for step in 1..=wire.len() {
            let (got, delivered) = decode_in_steps(wire, step, 5);
            assert_eq!(got, Err(TooLarge { limit: 5 }));
            assert_eq!(delivered, b"01234");
            let (got, _) = decode_in_steps(wire, step, 12);
            assert_eq!(
                got.unwrap(),
                b"0123456789\r\n",
                "a body of exactly the limit is fine"
            );
        }
    }

    #[test]
    fn long_runs_are_slices_and_dot_dense_short_runs_are_packed() {
        let long = format!("{}\r\n", "x".repeat(300));
        let wire = format!("{long}..a\r\n..b\r\n..c\r\n{long}.\r\nNEXT");
        let mut rx = LineReader::new(16);
        rx.extend(wire.as_bytes());
        let mut decoder = BodyDecoder::new(10_000);
        let data = |bytes: &str| {
            Ok(Decoded::Data(bytes::Bytes::copy_from_slice(
                bytes.as_bytes(),
            )))
        };
        assert_eq!(decoder.decode(&mut rx), data(&long));
        assert_eq!(decoder.decode(&mut rx), data(".a\r\n.b\r\n"));
        // The last stuffed line runs into the long run: one slice.
        assert_eq!(decoder.decode(&mut rx), data(&format!(".c\r\n{long}")));
        assert_eq!(decoder.decode(&mut rx), Ok(Decoded::End));
        assert_eq!(rx.buffered(), b"NEXT");
    }

    #[test]
    fn packed_pieces_end_before_the_terminator_and_the_limit() {
        let mut rx = LineReader::new(16);
        rx.extend(b"..a\r\n..b\r\n.\r\n");
        let mut decoder = BodyDecoder::new(100);
        assert_eq!(
            decoder.decode(&mut rx),
            Ok(Decoded::Data(bytes::Bytes::from_static(b".a\r\n.b\r\n")))
        );
        assert_eq!(decoder.decode(&mut rx), Ok(Decoded::End));
        // A limit reached inside packed pieces: what fits is handed out, then the error.
        let mut rx = LineReader::new(16);
        rx.extend(b"..a\r\n..b\r\n.\r\n");
        let mut decoder = BodyDecoder::new(6);
        assert_eq!(
            decoder.decode(&mut rx),
            Ok(Decoded::Data(bytes::Bytes::from_static(b".a\r\n.b")))
        );
        assert_eq!(decoder.decode(&mut rx), Err(TooLarge { limit: 6 }));
    }
}
