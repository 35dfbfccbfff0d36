//! Low-level incremental decoder for `RETR`/`TOP` message bodies: dot-unstuffing and
//! terminator detection over the receive buffer, one piece at a time.
//!
//! [`crate::Client`] uses it internally; it is public for fuzz targets and benchmarks.
//!
//! Why a dedicated decoder rather than the line reader: message lines can be arbitrarily long
//! (unwrapped base64, HTML on one line), so bodies must not be framed line by line with a
//! length limit. The decoder looks at each line start only (one to three bytes), and hands out
//! everything between as [`Bytes`] split off the receive buffer, without copying. Work is
//! linear in the body size, memory is constant per message, and the `CRLF.CRLF` terminator is
//! found whatever the chunk boundaries.
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

use bytes::{Bytes, BytesMut};
use mail_common::LineReader;

/// Runs of content shorter than this are packed together (see [`BodyDecoder::decode`]).
const PACK_BELOW: usize = 256;
/// The largest packed chunk.
const PACK_LIMIT: usize = 16 * 1024;

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
        // Runs of content between dot-stuffed line starts are handed out as zero-copy slices of
        // the receive buffer. When such runs are short (a body where most lines start with a
        // dot), one slice per line would cost more than the bytes themselves, so short runs are
        // packed into one owned chunk of at most `PACK_LIMIT` bytes instead.
        let mut packed: Option<BytesMut> = None;
        let done = |packed: Option<BytesMut>, otherwise: Decoded| {
            packed.map_or(otherwise, |p| Decoded::Data(p.freeze()))
        };
        loop {
            let buf = rx.buffered();
            if buf.is_empty() {
                return Ok(done(packed, Decoded::NeedMore));
            }
            if self.at_line_start && buf[0] == b'.' {
                match (buf.get(1), buf.get(2)) {
                    (None, _) | (Some(b'\r'), None) => {
                        return Ok(done(packed, Decoded::NeedMore));
                    }
                    (Some(b'\r'), Some(b'\n')) => {
                        if packed.is_some() {
                            // The terminator stays in `rx` for the next call.
                            return Ok(done(packed, Decoded::End));
                        }
                        rx.advance(3);
                        return Ok(Decoded::End);
                    }
                    (Some(b'.'), _) => rx.advance(1),
                    _ => {}
                }
                // The rest of this line, leading dot or not, is content.
                self.at_line_start = false;
                continue;
            }
            let (span, ends_at_line_start) = Self::span(buf);
            let allowed = self.max_size - self.octets;
            if allowed == 0 {
                if packed.is_some() {
                    return Ok(done(packed, Decoded::NeedMore));
                }
                return Err(TooLarge {
                    limit: self.max_size,
                });
            }
            let take = usize::try_from(allowed).map_or(span, |allowed| span.min(allowed));
            let short = take < PACK_BELOW && take < buf.len();
            if !short && packed.is_some() {
                // A long run follows packed pieces: hand those out, the run goes zero-copy next.
                return Ok(done(packed, Decoded::NeedMore));
            }
            self.at_line_start = if take == span {
                ends_at_line_start
            } else {
                buf[take - 1] == b'\n'
            };
            self.octets += take as u64;
            if !short {
                return Ok(Decoded::Data(rx.split_to(take)));
            }
            let out = packed.get_or_insert_with(|| BytesMut::with_capacity(PACK_LIMIT));
            out.extend_from_slice(&buf[..take]);
            rx.advance(take);
            if out.len() >= PACK_LIMIT - PACK_BELOW || take < span {
                return Ok(done(packed, Decoded::NeedMore));
            }
        }
    }

    /// How many bytes from the front of `buf` can be delivered without looking at a line
    /// start that begins with a dot, and whether the span ends at a line start. `buf` starts
    /// inside a line or at a line start that is not a dot.
    fn span(buf: &[u8]) -> (usize, bool) {
        for lf in memchr::memchr_iter(b'\n', buf) {
            match buf.get(lf + 1) {
                None => return (buf.len(), true),
                Some(b'.') => return (lf + 1, true),
                Some(_) => {}
            }
        }
        (buf.len(), false)
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
