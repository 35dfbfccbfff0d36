//! What a message's content obliges the client to declare in `MAIL FROM` (see [`ContentScan`]).

use crate::envelope::{BodyType, MailOptions};

/// Where the scanner stands in the current header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineStart {
    /// At the start of a line.
    Start,
    /// The line so far is a lone CR (maybe the CR of the blank line).
    Cr,
    /// The line so far is field-name characters.
    Name,
    /// A header field (after its colon) or a continuation line.
    Field,
}

/// RFC 5322 `ftext`: printable ASCII except the colon.
const fn is_ftext(byte: u8) -> bool {
    matches!(byte, 33..=57 | 59..=126)
}

/// An incremental scan of a message (RFC 5322 header section, blank line, body) for what it
/// needs declared.
///
/// What a message's content obliges the client to declare in `MAIL FROM`.
///
/// - An octet above 127 anywhere in the message needs `BODY=8BITMIME` (RFC 6152 section 3:
///   without it the content must be 7-bit).
/// - Raw UTF-8 in the header section (RFC 6532) needs `SMTPUTF8` (RFC 6531 section 3.4), and
///   `BODY=8BITMIME` with it.
///
/// [`ContentScan`] finds out incrementally, chunk by chunk, so a message never has to be held
/// whole: header lines are found with `memchr` and checked with the vectorised
/// [`slice::is_ascii`]; once in the body only `is_ascii` runs, and nothing once an 8-bit byte
/// has been seen.
///
/// ```
/// use smtp_submit::{BodyType, ContentScan, MailOptions};
///
/// let mut scan = ContentScan::new();
/// scan.feed(b"Subject: caf\xc3\xa9\r\n");
/// scan.feed(b"\r\nhello\r\n");
/// assert!(scan.needs_smtputf8() && scan.needs_8bitmime());
/// let options = scan.declare(MailOptions::default());
/// assert!(options.smtputf8);
/// assert_eq!(options.body, Some(BodyType::EightBitMime));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentScan {
    in_body: bool,
    line: LineStart,
    eight_bit_body: bool,
    utf8_header: bool,
}

impl Default for ContentScan {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentScan {
    /// A scan at the start of a message.
    pub const fn new() -> Self {
        Self {
            in_body: false,
            line: LineStart::Start,
            eight_bit_body: false,
            utf8_header: false,
        }
    }

    /// Scans the next bytes of the message.
    ///
    /// The header section ends at the blank line, or (as Postfix's cleanup reads it) at the
    /// first line that is not a header field, which then belongs to the body.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !self.in_body {
            let Some((&byte, rest)) = data.split_first() else {
                return;
            };
            match (self.line, byte) {
                (LineStart::Start | LineStart::Cr, b'\n') => {
                    self.in_body = true;
                    data = rest;
                }
                (LineStart::Start, b'\r') => {
                    self.line = LineStart::Cr;
                    data = rest;
                }
                (LineStart::Start, b' ' | b'\t') | (LineStart::Name, b':') => {
                    self.line = LineStart::Field;
                    data = rest;
                }
                (LineStart::Start | LineStart::Name, byte) if is_ftext(byte) => {
                    self.line = LineStart::Name;
                    data = rest;
                }
                (LineStart::Field, _) => {
                    // The rest of a field line: jump to its end.
                    let newline = memchr::memchr(b'\n', data);
                    let line = newline.map_or(data, |at| &data[..at]);
                    if !self.utf8_header && !line.is_ascii() {
                        self.utf8_header = true;
                    }
                    match newline {
                        Some(at) => {
                            self.line = LineStart::Start;
                            data = &data[at + 1..];
                        }
                        None => return,
                    }
                }
                // Not a header field: the body starts with this line.
                _ => self.in_body = true,
            }
        }
        if !self.eight_bit_body && !data.is_ascii() {
            self.eight_bit_body = true;
        }
    }

    /// True when the content seen so far has an octet above 127 (body or header).
    pub const fn needs_8bitmime(&self) -> bool {
        self.eight_bit_body || self.utf8_header
    }

    /// True when the header section seen so far has raw UTF-8 (an octet above 127).
    pub const fn needs_smtputf8(&self) -> bool {
        self.utf8_header
    }

    /// `options` with what the content needs declared added: `BODY=8BITMIME` unless a body
    /// type is already set, and `SMTPUTF8`.
    #[must_use]
    pub fn declare(&self, mut options: MailOptions) -> MailOptions {
        if self.needs_8bitmime() && options.body.is_none() {
            options.body = Some(BodyType::EightBitMime);
        }
        if self.needs_smtputf8() {
            options.smtputf8 = true;
        }
        options
    }

    /// What the scanned content needs that `options` does not declare, if anything.
    pub(crate) fn undeclared(
        self,
        options_body: Option<BodyType>,
        smtputf8: bool,
    ) -> Option<Undeclared> {
        if self.needs_smtputf8() && !smtputf8 {
            Some(Undeclared::Utf8Header)
        } else if self.needs_8bitmime() && options_body != Some(BodyType::EightBitMime) {
            Some(Undeclared::EightBit)
        } else {
            None
        }
    }
}

/// Content that needs a declaration the transaction does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Undeclared {
    /// An octet above 127 without `BODY=8BITMIME`.
    EightBit,
    /// Raw UTF-8 in the header section without `SMTPUTF8`.
    Utf8Header,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(message: &[u8], piece: usize) -> ContentScan {
        let mut scan = ContentScan::new();
        for chunk in message.chunks(piece.max(1)) {
            scan.feed(chunk);
        }
        scan
    }

    #[test]
    fn finds_what_each_message_needs_whatever_the_chunking() {
        let cases: [(&[u8], bool, bool); 11] = [
            (b"Subject: hi\r\n\r\nplain\r\n", false, false),
            (b"Subject: hi\r\n\r\ncaf\xc3\xa9\r\n", true, false),
            (b"Subject: caf\xc3\xa9\r\n\r\nplain\r\n", true, true),
            (b"Subject: hi\n\ncaf\xc3\xa9\n", true, false),
            // No blank line: all header section.
            (b"Subject: hi\r\nX: caf\xc3\xa9", true, true),
            // A folded header line.
            (b"Subject: hi\r\n \xc3\xa9\r\n\r\n", true, true),
            // A line that is no header field starts the body.
            (b"caf\xc3\xa9\r\n", true, false),
            (b"Subject: hi\r\nplain text \xc3\xa9\r\n", true, false),
            (b"Subject: hi\r\n\xc3\xa9: x\r\n", true, false),
            (b"x\r\n", false, false),
            (b"", false, false),
        ];
        for (message, eight_bit, utf8) in cases {
            for piece in 1..=message.len().max(1) {
                let scan = scan_in_pieces(message, piece);
                assert_eq!(
                    (scan.needs_8bitmime(), scan.needs_smtputf8()),
                    (eight_bit, utf8),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(message)
                );
            }
        }
    }

    #[test]
    fn declare_keeps_an_explicit_body_type() {
        let mut scan = ContentScan::new();
        scan.feed(b"A: b\r\n\r\n\xff");
        let options = scan.declare(MailOptions::default().with_body_type(BodyType::SevenBit));
        assert_eq!(options.body, Some(BodyType::SevenBit));
        assert_eq!(
            scan.undeclared(options.body, options.smtputf8),
            Some(Undeclared::EightBit)
        );
    }
}
