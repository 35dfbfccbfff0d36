//! The message body encoder: dot-stuffing for `DATA`, line-ending policy for `DATA` and `BDAT`.
//!
//! Why a module of its own: this is where SMTP smuggling and body command injection live. A
//! `DATA` transfer ends at the first `CRLF.CRLF` the server sees, so the encoder must make sure no
//! caller input can produce that sequence early, whatever the input and however it is split into
//! chunks:
//!
//! - every line start, *including byte 0 of the body*, that begins with `.` gets a second `.`
//!   (RFC 5321 section 4.5.2);
//! - a bare CR or bare LF is either rewritten to CRLF ([`LineEndingPolicy::Normalize`], the
//!   default) or refused with [`BareLineEnding`] ([`LineEndingPolicy::Reject`]). Without this, a
//!   body containing `\n.\n`, `\r\n.\n`, `\n.\r\n` or `\r.\r` can end the message early on a server
//!   that accepts bare line endings, and the rest of the body runs as commands;
//! - the end of data is `.\r\n` when the body already ended with CRLF and `\r\n.\r\n` otherwise,
//!   so a body ending in CRLF gets no extra blank line.
//!
//! `BDAT` (RFC 3030) frames the body by length, so nothing is stuffed, but line endings follow the
//! same policy and a missing final CRLF is added: `DATA` and `BDAT` deliver identical bytes.
//!
//! The encoder is incremental: a CR at the end of one chunk is held until the next byte shows
//! whether it was part of a CRLF. Runs of ordinary bytes are found with `memchr2` and copied with
//! one `extend_from_slice`, so clean CRLF text is copied in one piece per chunk. Where dots to
//! stuff come close together (lines of a few bytes, each starting with a dot), clean CRLF text
//! is encoded eight bytes at a time instead (`mail_common::scan`), which costs a few integer
//! operations per line rather than a `memchr2` call and two copies.
//!
//! ```
//! use smtp_submit::body::{BodyEncoder, Framing, LineEndingPolicy};
//! let mut encoder = BodyEncoder::new(Framing::Data, LineEndingPolicy::Normalize);
//! let mut out = Vec::new();
//! encoder.encode(b".hidden\n\r", &mut out).unwrap();
//! encoder.encode(b".\r\nQUIT", &mut out).unwrap();
//! encoder.finish(&mut out).unwrap();
//! assert_eq!(out, b"..hidden\r\n\r\n..\r\nQUIT\r\n.\r\n");
//! ```

use mail_common::scan::{self, WORD};
use memchr::memchr2;

/// Two dots to stuff less than this many bytes apart switch the encoder to [`stuff_words`],
/// where a line costs a few word operations instead of a `memchr2` call and two `memcpy`s;
/// it switches back after this many bytes without a line end.
const SHORT_LINE: usize = 32;
/// Input bytes [`stuff_words`] encodes per block of output room it zeroes.
const SHORT_BLOCK: usize = 512;

/// What to do with a CR that is not followed by LF, or an LF that is not preceded by CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineEndingPolicy {
    /// Rewrite each bare CR and bare LF to CRLF (the default). Unix-style messages just work and
    /// cannot smuggle a terminator.
    #[default]
    Normalize,
    /// Refuse the input with [`BareLineEnding`] at the first bare CR or LF, for callers that want
    /// to know their message is not canonical.
    Reject,
}

/// How the encoded body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// `DATA`: lines starting with `.` are stuffed and [`BodyEncoder::finish`] appends the
    /// end-of-data line.
    Data,
    /// `BDAT`: the server is told the length, so nothing is stuffed and no terminator is added.
    Bdat,
}

/// The body contained a bare CR or LF and the policy is [`LineEndingPolicy::Reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bare {} at byte {position} of the message body (line-ending policy: reject)", if *byte == b'\r' { "CR" } else { "LF" })]
pub struct BareLineEnding {
    /// `b'\r'` or `b'\n'`.
    pub byte: u8,
    /// Offset of that byte from the start of the body (over all chunks).
    pub position: u64,
}

/// Where the encoder stands between two chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    LineStart,
    MidLine,
    /// The last input byte was a CR whose fate depends on the next byte.
    HeldCr,
}

/// Incremental body encoder; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    framing: Framing,
    policy: LineEndingPolicy,
    at: At,
    consumed: u64,
}

impl BodyEncoder {
    /// A fresh encoder, positioned at the start of a body (so a `.` at byte 0 is stuffed).
    pub const fn new(framing: Framing, policy: LineEndingPolicy) -> Self {
        Self {
            framing,
            policy,
            at: At::LineStart,
            consumed: 0,
        }
    }

    /// Encodes `input` and appends the result to `out`.
    ///
    /// All or nothing: on error neither `out` nor the encoder has changed, so the caller may
    /// retry with corrected input. A trailing CR is held back until the next call shows whether
    /// an LF follows.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BareLineEnding> {
        let mark = out.len();
        let saved = self.at;
        out.reserve(input.len() + 8);
        match self.encode_inner(input, out) {
            Ok(()) => {
                self.consumed += input.len() as u64;
                Ok(())
            }
            Err(error) => {
                out.truncate(mark);
                self.at = saved;
                Err(error)
            }
        }
    }

    /// Ends the body: settles a held CR, adds the final CRLF when the body did not end with
    /// one, and for [`Framing::Data`] appends the end-of-data line. The encoder is then ready
    /// for a new body. On error nothing was appended and the encoder is unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BareLineEnding> {
        match self.at {
            At::LineStart => {}
            At::MidLine => out.extend_from_slice(b"\r\n"),
            At::HeldCr => {
                self.bare(b'\r', self.consumed - 1)?;
                out.extend_from_slice(b"\r\n");
            }
        }
        if self.framing == Framing::Data {
            out.extend_from_slice(b".\r\n");
        }
        self.at = At::LineStart;
        self.consumed = 0;
        Ok(())
    }

    fn bare(&self, byte: u8, position: u64) -> Result<(), BareLineEnding> {
        match self.policy {
            LineEndingPolicy::Normalize => Ok(()),
            LineEndingPolicy::Reject => Err(BareLineEnding { byte, position }),
        }
    }

    fn encode_inner(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BareLineEnding> {
        let stuff = self.framing == Framing::Data;
        let base = self.consumed;
        let position = |index: usize| base + index as u64;
        let mut i = 0;
        if self.at == At::HeldCr {
            let Some(&first) = input.first() else {
                return Ok(());
            };
            if first == b'\n' {
                i = 1;
            } else {
                self.bare(b'\r', self.consumed - 1)?;
            }
            out.extend_from_slice(b"\r\n");
            self.at = At::LineStart;
        }
        // `run` is the start of the input not yet copied to `out`: clean CRLF lines stay in the
        // run, so they are copied together.
        let mut run = i;
        let mut line_start = self.at == At::LineStart;
        // Where the last dot was stuffed: two within a short line of each other switch to the
        // word-at-a-time path.
        let mut last_stuffed: Option<usize> = None;
        while i < input.len() {
            if line_start && stuff && input[i] == b'.' {
                if last_stuffed.is_some_and(|last| i - last < SHORT_LINE) {
                    out.extend_from_slice(&input[run..i]);
                    run = i;
                    let (next, at_line_start) = stuff_words(input, i, out, stuff);
                    if next > i {
                        (i, run, line_start) = (next, next, at_line_start);
                        continue;
                    }
                }
                last_stuffed = Some(i);
                out.extend_from_slice(&input[run..i]);
                out.push(b'.');
                run = i;
            }
            let Some(offset) = memchr2(b'\r', b'\n', &input[i..]) else {
                line_start = false;
                break;
            };
            let end = i + offset;
            if input[end] == b'\n' {
                self.bare(b'\n', position(end))?;
                out.extend_from_slice(&input[run..end]);
                out.extend_from_slice(b"\r\n");
                i = end + 1;
                run = i;
            } else {
                match input.get(end + 1) {
                    Some(b'\n') => i = end + 2,
                    Some(_) => {
                        self.bare(b'\r', position(end))?;
                        out.extend_from_slice(&input[run..end]);
                        out.extend_from_slice(b"\r\n");
                        i = end + 1;
                        run = i;
                    }
                    None => {
                        out.extend_from_slice(&input[run..end]);
                        self.at = At::HeldCr;
                        return Ok(());
                    }
                }
            }
            line_start = true;
        }
        out.extend_from_slice(&input[run..]);
        self.at = if line_start {
            At::LineStart
        } else {
            At::MidLine
        };
        Ok(())
    }
}

/// Encodes clean CRLF text from the line start `from` eight bytes at a time, appending to
/// `out`, and returns where it stopped and whether that is a line start whose dot (if any) is
/// not yet stuffed. Everything before that index has been encoded into `out`.
///
/// The steps are fixed words, whatever the line lengths, so the work on one word does not wait
/// for where the previous line ended: each word is stored whole into zeroed room, then for each
/// line start with a dot, a dot is written there and the rest of the word stored one byte
/// further right. Stops before a word with a bare CR or LF (the caller applies the line-ending
/// policy there), after [`SHORT_LINE`] bytes without a line end (long lines go faster through
/// `memchr2`), and when fewer than nine bytes are left.
#[inline(never)] // keeps the memchr2 loop of the caller as tight as before
fn stuff_words(input: &[u8], from: usize, out: &mut Vec<u8>, stuff: bool) -> (usize, bool) {
    let mut i = from;
    // Byte 0's "after a CR" and "after an LF" flags, carried from the previous word. `from` is
    // a line start: its dot needs stuffing, and an LF there is bare.
    let mut after_cr = 0;
    let mut after_lf = 1 << 7;
    let mut since_line_end = 0;
    'blocks: loop {
        // Output room for one block: a line of n >= 2 bytes becomes at most n + 1 <= 3n/2,
        // and the stores of the last word may reach two words further.
        let base = out.len();
        out.resize(base + SHORT_BLOCK * 3 / 2 + 8 * WORD, 0);
        let mut at = base;
        let block_end = i + SHORT_BLOCK;
        let stopped = loop {
            if i >= block_end {
                break false;
            }
            if i + WORD >= input.len() || since_line_end >= SHORT_LINE {
                break true;
            }
            let window: &[u8; WORD + 1] = input[i..=i + WORD].try_into().expect("nine bytes");
            let (word, after) = window.split_first_chunk::<WORD>().expect("eight bytes");
            let word = u64::from_le_bytes(*word);
            let cr = scan::equal_bytes(word, b'\r');
            let lf = scan::equal_bytes(word, b'\n');
            let lf_next = scan::next_byte_flags(lf, after[0] == b'\n');
            let bare = (lf & !((cr << 8) | after_cr)) | (cr & !lf_next);
            if bare != 0 {
                break true;
            }
            let stuffing = if stuff {
                ((lf << 8) | after_lf) & scan::equal_bytes(word, b'.')
            } else {
                0
            };
            let room: &mut [u8; 3 * WORD] = (&mut out[at..at + 3 * WORD])
                .try_into()
                .expect("twenty-four bytes");
            at += scan::insert_before(room, word, stuffing, b'.');
            since_line_end = if lf == 0 { since_line_end + WORD } else { 0 };
            after_cr = cr >> 56;
            after_lf = lf >> 56;
            i += WORD;
        };
        out.truncate(at);
        if stopped {
            break 'blocks;
        }
    }
    if i == from {
        return (from, true);
    }
    if after_cr != 0 && input[i] == b'\n' {
        // Do not leave the caller between the CR and the LF of a CRLF.
        out.push(b'\n');
        i += 1;
    }
    (i, input[i - 1] == b'\n')
}

/// The length of `body` after [`LineEndingPolicy::Normalize`] and the final CRLF, without
/// stuffing: the size of the message as the server stores it (what `SIZE=` and `BDAT` count).
pub fn normalized_len(body: &[u8]) -> u64 {
    let mut extra = 0u64;
    let mut i = 0;
    while let Some(offset) = memchr2(b'\r', b'\n', &body[i..]) {
        let end = i + offset;
        if body[end] == b'\r' && body.get(end + 1) == Some(&b'\n') {
            i = end + 2;
        } else {
            // A bare CR or LF becomes two bytes.
            extra += 1;
            i = end + 1;
        }
    }
    let ends_with_line_end = matches!(body.last(), None | Some(b'\n' | b'\r'));
    if !ends_with_line_end {
        extra += 2;
    }
    body.len() as u64 + extra
}

#[cfg(test)]
mod tests {
    use super::{BareLineEnding, BodyEncoder, Framing, LineEndingPolicy, normalized_len};

    fn encode_all(framing: Framing, chunks: &[&[u8]]) -> Vec<u8> {
        let mut encoder = BodyEncoder::new(framing, LineEndingPolicy::Normalize);
        let mut out = Vec::new();
        for chunk in chunks {
            encoder.encode(chunk, &mut out).unwrap();
        }
        encoder.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn smuggling_payloads_are_neutralised() {
        for (input, expected) in [
            (&b"a\n.\nRSET\n"[..], &b"a\r\n..\r\nRSET\r\n.\r\n"[..]),
            (b"a\r\n.\nRSET", b"a\r\n..\r\nRSET\r\n.\r\n"),
            (b"a\n.\r\nRSET", b"a\r\n..\r\nRSET\r\n.\r\n"),
            (b"a\r.\rRSET", b"a\r\n..\r\nRSET\r\n.\r\n"),
            (b".\r\nRSET\r\nNOOP\r\n", b"..\r\nRSET\r\nNOOP\r\n.\r\n"),
        ] {
            assert_eq!(encode_all(Framing::Data, &[input]), expected, "{input:?}");
        }
    }

    #[test]
    fn terminator_depends_on_final_crlf() {
        assert_eq!(encode_all(Framing::Data, &[b"x\r\n"]), b"x\r\n.\r\n");
        assert_eq!(encode_all(Framing::Data, &[b"x"]), b"x\r\n.\r\n");
        assert_eq!(encode_all(Framing::Data, &[]), b".\r\n");
        assert_eq!(encode_all(Framing::Bdat, &[b"x"]), b"x\r\n");
        assert_eq!(encode_all(Framing::Bdat, &[]), b"");
    }

    #[test]
    fn held_cr_across_chunks() {
        assert_eq!(
            encode_all(Framing::Data, &[b"a\r", b"\n.b"]),
            b"a\r\n..b\r\n.\r\n"
        );
        assert_eq!(
            encode_all(Framing::Data, &[b"a\r", b".b"]),
            b"a\r\n..b\r\n.\r\n"
        );
        assert_eq!(
            encode_all(Framing::Data, &[b"a\r", b"", b"\r"]),
            b"a\r\n\r\n.\r\n"
        );
        assert_eq!(encode_all(Framing::Bdat, &[b".a\r"]), b".a\r\n");
    }

    #[test]
    fn reject_is_all_or_nothing_and_positions_count_across_chunks() {
        let mut encoder = BodyEncoder::new(Framing::Data, LineEndingPolicy::Reject);
        let mut out = Vec::new();
        encoder.encode(b"ok\r\nline\r", &mut out).unwrap();
        let before = out.clone();
        assert_eq!(
            encoder.encode(b"x", &mut out),
            Err(BareLineEnding {
                byte: b'\r',
                position: 8
            })
        );
        assert_eq!(out, before);
        encoder.encode(b"\nnext\n", &mut out).unwrap_err();
        assert_eq!(out, before);
        encoder.encode(b"\nnext\r\n", &mut out).unwrap();
        encoder.finish(&mut out).unwrap();
        assert_eq!(out, b"ok\r\nline\r\nnext\r\n.\r\n");
    }

    #[test]
    fn normalized_len_matches_bdat_encoding() {
        for body in [
            &b""[..],
            b"a",
            b"a\r",
            b"a\n",
            b"\r\r\n\n",
            b"x\r\ny",
            b"\n.\r",
        ] {
            let encoded = encode_all(Framing::Bdat, &[body]);
            assert_eq!(normalized_len(body), encoded.len() as u64, "{body:?}");
        }
    }
}
