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

use mail_common::scan::{self, HIGH_BITS, WORD};
use memchr::memchr2;

/// Two dots to stuff less than this many bytes apart switch the encoder to [`stuff_words`],
/// where a line costs a few word operations instead of a `memchr2` call and two `memcpy`s;
/// it switches back after this many bytes without a dot to stuff.
const SHORT_LINE: usize = 32;
/// Input bytes [`stuff_words`] encodes per block of output room it zeroes.
const BLOCK: usize = 512;
/// Output room for one block: a word of clean CRLF text holds at most three line starts (each
/// needs the CR and LF before it), and the stores of the last word reach two words further.
const ROOM: usize = BLOCK / WORD * (WORD + 3) + 2 * WORD;

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
                    let (next, at_line_start) = stuff_words(input, i, out);
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
/// Stops before a word with a bare CR or LF (the caller applies the line-ending policy there),
/// after [`SHORT_LINE`] bytes without a dot to stuff (long lines go faster through `memchr2`),
/// and when fewer than eight bytes are left. A CR ending the last word encoded is handed back
/// too, as its LF has not been seen.
#[inline(never)] // keeps the memchr2 loop of the caller as tight as before
fn stuff_words(input: &[u8], from: usize, out: &mut Vec<u8>) -> (usize, bool) {
    let mut i = from;
    // `from` is a line start: its dot is stuffed, and an LF there would be bare.
    let mut carry = Carry {
        not_cr: 1 << 7,
        not_lf: 0,
        last_stuffed: 0,
    };
    while input.len() - i >= WORD {
        let base = out.len();
        out.resize(base + ROOM, 0);
        let room: &mut [u8; ROOM] = (&mut out[base..]).try_into().expect("room for a block");
        let left = input.len() - i;
        let (words, written) = if let Some(bytes) = input.get(i..i + BLOCK + WORD) {
            let bytes = bytes.try_into().expect("a block and a word");
            stuff_block(bytes, BLOCK / WORD, room, &mut carry)
        } else {
            // The last block: padded, so that every load stays in fixed-size arrays.
            let mut padded = [0; BLOCK + WORD];
            padded[..left].copy_from_slice(&input[i..]);
            stuff_block(&padded, left / WORD, room, &mut carry)
        };
        out.truncate(base + written);
        i += words * WORD;
        if words < BLOCK / WORD {
            break;
        }
        carry.last_stuffed = carry.last_stuffed.wrapping_sub(words);
    }
    if carry.not_cr & 1 << 7 == 0 {
        // The caller decides on that CR, once it has seen the next byte.
        out.pop();
        i -= 1;
    }
    if i <= from {
        return (from, true);
    }
    (i, input[i - 1] == b'\n')
}

/// What [`stuff_block`] carries from one word to the next.
struct Carry {
    /// Bit 7 is clear if the previous word ended with a CR, which an LF must follow (as
    /// [`scan::differ_bytes`] makes them, the other bits mean nothing).
    not_cr: u64,
    /// Bit 7 is clear if the previous word ended with an LF: the next byte is a line start.
    not_lf: u64,
    /// The last word (counted from the start of the block, wrapping) with a dot stuffed.
    last_stuffed: usize,
}

/// Encodes up to `words` words from the front of `bytes` into `room` and returns how many
/// words that was and how many bytes it wrote. Stops early as [`stuff_words`] does. The word
/// after the last one is read (as scratch) but not encoded.
///
/// The steps are fixed words, whatever the line lengths, so the work on one word does not wait
/// for where the previous line ended. A stuffing dot is the dot at a line start written twice:
/// each word is stored whole, then for each such dot the input from that dot on is stored
/// again one byte further right. The fixed-size arrays in and out let the compiler drop most
/// bounds checks.
#[expect(
    clippy::inline_always,
    reason = "both call sites are hot, and the one for whole blocks runs a fixed number of words: \
              not inlined, the encoder runs 1.6 times slower"
)]
#[inline(always)]
fn stuff_block(
    bytes: &[u8; BLOCK + WORD],
    words: usize,
    room: &mut [u8; ROOM],
    carry: &mut Carry,
) -> (usize, usize) {
    let words = words.min(BLOCK / WORD);
    let mut at = 0;
    for k in 0..words {
        if k.wrapping_sub(carry.last_stuffed) > SHORT_LINE / WORD {
            return (k, at);
        }
        let start = k * WORD;
        let word = scan::load(bytes, start);
        // "Is not" flags, as they are combined before they are looked at.
        let not_cr = scan::differ_bytes(word, b'\r');
        let not_lf = scan::differ_bytes(word, b'\n');
        // Clean CRLF text: each LF follows a CR and each CR precedes an LF (a CR at byte 7 is
        // checked with the next word, or handed back).
        if (not_lf ^ ((not_cr << 8) | carry.not_cr)) & HIGH_BITS != 0 {
            return (k, at);
        }
        let not_line_start = (not_lf << 8) | carry.not_lf;
        let stuffing = !(not_line_start | scan::differ_bytes(word, b'.')) & HIGH_BITS;
        let slot: &mut [u8; 3 * WORD] = (&mut room[at..at + 3 * WORD])
            .try_into()
            .expect("twenty-four bytes");
        let flagged = scan::count_flags(stuffing);
        scan::store(slot, 0, word);
        if flagged <= 2 {
            // A missing flag counts as byte 8: its store lands past the bytes that count.
            let first = (stuffing.trailing_zeros() / 8) as usize;
            let rest = stuffing & stuffing.wrapping_sub(1);
            let second = (rest.trailing_zeros() / 8) as usize;
            scan::store(slot, first + 1, scan::load(bytes, start + first));
            scan::store(slot, second + 2, scan::load(bytes, start + second));
        } else {
            let mut rest = stuffing;
            let mut added = 1;
            while rest != 0 {
                let index = (rest.trailing_zeros() / 8) as usize;
                scan::store(slot, index + added, scan::load(bytes, start + index));
                added += 1;
                rest &= rest - 1;
            }
        }
        at += WORD + flagged;
        if flagged != 0 {
            carry.last_stuffed = k;
        }
        carry.not_cr = not_cr >> 56;
        carry.not_lf = not_lf >> 56;
    }
    (words, at)
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
