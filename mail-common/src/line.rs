//! Bounded line framing for line-based protocols (POP3 responses, SMTP replies).
//!
//! [`LineReader`] owns the receive buffer of a protocol state machine. Bytes are appended with
//! [`LineReader::extend`]; complete lines come out of [`LineReader::next_line`] without their
//! terminator. A line longer than the configured limit is an error as soon as the limit is passed,
//! so a peer that never sends a line feed cannot make the buffer grow without bound.
//!
//! Lines end at LF; one CR before the LF is removed too. Servers are required to send CRLF, but
//! accepting a bare LF costs nothing in safety on the receiving side and keeps old servers working.
//! A bare CR inside a line stays part of the line.
//!
//! Raw access ([`LineReader::buffered`], [`LineReader::split_to`]) lets a body decoder hand out
//! large spans as [`Bytes`] without copying them line by line.

use bytes::{Bytes, BytesMut};

/// A line was longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// More than `limit` bytes arrived without a line feed.
    #[error("line longer than the limit of {limit} bytes")]
    TooLong {
        /// The configured limit, in bytes, terminator excluded.
        limit: usize,
    },
}

/// The receive buffer of a line-based protocol, with a bound on line length.
///
/// ```
/// use mail_common::LineReader;
/// let mut reader = LineReader::new(512);
/// reader.extend(b"+OK ready\r\n+OK 2 mes");
/// assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"+OK ready"[..]));
/// assert_eq!(reader.next_line().unwrap(), None); // incomplete: wait for more bytes
/// reader.extend(b"sages\r\n");
/// assert_eq!(reader.next_line().unwrap().as_deref(), Some(&b"+OK 2 messages"[..]));
/// ```
#[derive(Debug)]
pub struct LineReader {
    buf: BytesMut,
    max_line: usize,
    /// How far the buffer is known to hold no LF, so a line arriving in many small pieces is
    /// scanned once in total rather than once per piece.
    scanned: usize,
}

impl LineReader {
    /// Creates a reader that accepts lines of at most `max_line` bytes (terminator excluded).
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
            scanned: 0,
        }
    }

    /// The line length limit.
    pub const fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete line out of the buffer, without its CRLF or LF.
    ///
    /// Returns `Ok(None)` when no complete line is buffered yet, and an error once more than
    /// `max_line` bytes are buffered without a line feed. After an error the buffer content is
    /// unspecified; the connection should be closed.
    pub fn next_line(&mut self) -> Result<Option<Bytes>, LineError> {
        let Some(lf) = self.find_lf() else {
            return if self.buf.len() > self.max_line + 1 {
                // The +1 admits a CR that is waiting for its LF.
                Err(LineError::TooLong {
                    limit: self.max_line,
                })
            } else {
                Ok(None)
            };
        };
        let mut line = self.buf.split_to(lf + 1);
        self.scanned = 0;
        line.truncate(lf);
        if line.last() == Some(&b'\r') {
            line.truncate(lf - 1);
        }
        if line.len() > self.max_line {
            return Err(LineError::TooLong {
                limit: self.max_line,
            });
        }
        Ok(Some(line.freeze()))
    }

    fn find_lf(&mut self) -> Option<usize> {
        let found = memchr::memchr(b'\n', &self.buf[self.scanned..]).map(|i| i + self.scanned);
        if found.is_none() {
            self.scanned = self.buf.len();
        }
        found
    }

    /// All buffered bytes not yet taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Number of buffered bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Removes and returns the first `n` buffered bytes without copying them.
    ///
    /// # Panics
    /// If `n` is larger than [`LineReader::len`].
    pub fn split_to(&mut self, n: usize) -> Bytes {
        self.scanned = self.scanned.saturating_sub(n);
        self.buf.split_to(n).freeze()
    }

    /// Discards the first `n` buffered bytes.
    ///
    /// # Panics
    /// If `n` is larger than [`LineReader::len`].
    pub fn advance(&mut self, n: usize) {
        // Moving the start pointer, not `split_to`: splitting turns the buffer into a shared one
        // (an allocation and atomic reference counts), which dominated dot-dense bodies.
        self.scanned = self.scanned.saturating_sub(n);
        bytes::Buf::advance(&mut self.buf, n);
    }
}

#[cfg(test)]
mod tests {
    use super::{LineError, LineReader};
    use proptest::prelude::*;

    fn drain(reader: &mut LineReader) -> Result<Vec<Vec<u8>>, LineError> {
        let mut out = Vec::new();
        while let Some(line) = reader.next_line()? {
            out.push(line.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn crlf_lf_and_inner_cr() {
        let mut r = LineReader::new(100);
        r.extend(b"a\r\nb\nc\rd\r\n\r\ntail");
        assert_eq!(
            drain(&mut r).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c\rd".to_vec(), Vec::new()]
        );
        assert_eq!(r.buffered(), b"tail");
    }

    #[test]
    fn limit_is_exact() {
        let mut r = LineReader::new(4);
        r.extend(b"abcd\r\n");
        assert_eq!(drain(&mut r).unwrap(), vec![b"abcd".to_vec()]);
        r.extend(b"abcde\r\n");
        assert_eq!(r.next_line(), Err(LineError::TooLong { limit: 4 }));
    }

    #[test]
    fn endless_line_fails_without_buffering_everything() {
        let mut r = LineReader::new(1000);
        let mut failed = false;
        for _ in 0..10_000 {
            r.extend(&[b'x'; 100]);
            if r.next_line().is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(r.len() <= 1100);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x')], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..10),
        ) {
            let mut whole = LineReader::new(1000);
            whole.extend(&data);
            let expected = drain(&mut whole).unwrap();

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut pieces = LineReader::new(1000);
            let mut got = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                pieces.extend(&data[start..cut]);
                got.extend(drain(&mut pieces).unwrap());
                start = cut;
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(pieces.buffered(), whole.buffered());
        }
    }
}
