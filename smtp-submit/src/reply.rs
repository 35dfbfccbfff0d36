//! SMTP replies: line framing, the `nom` line parser, multi-line assembly and classification.
//!
//! Kept apart from the client so fuzz targets and benchmarks can drive it directly. Framing comes
//! first (bounded by [`LineReader`]), then each *complete* line is parsed with `nom` complete
//! parsers; a partial line is never parsed. Every line of a reply must carry the same code
//! (RFC 5321 section 4.2.1), the code must lie in `200..=599` and be followed by `-`
//! (continuation), a space (last line) or nothing (last line without text). Anything else is
//! [`MalformedReply`], which the client treats as fatal: once replies cannot be trusted, neither
//! can their mapping to pipelined commands.
//!
//! ```
//! use smtp_submit::reply::{Category, ReplyReader};
//! let mut reader = ReplyReader::new(512);
//! reader.extend(b"250-2.1.5 Recipient ok,\r\n250 2.1.5 but mind the quota");
//! assert!(reader.next_reply(16).unwrap().is_none()); // the last line is incomplete
//! reader.extend(b"\r\n");
//! let reply = reader.next_reply(16).unwrap().unwrap();
//! assert_eq!(reply.code(), 250);
//! assert_eq!(reply.category(), Category::PositiveCompletion);
//! assert_eq!(reply.enhanced().map(|e| e.to_string()).as_deref(), Some("2.1.5"));
//! assert_eq!(reply.lines(), ["2.1.5 Recipient ok,", "2.1.5 but mind the quota"]);
//! assert_eq!(reply.text(), "Recipient ok,\nbut mind the quota");
//! ```

use std::fmt;

use mail_common::{FailureClass, LineError, LineReader};
use nom::{
    IResult, Parser,
    bytes::complete::take_while_m_n,
    character::complete::{char, one_of},
};

/// What a reply says about the command it answers (first digit of the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Category {
    /// 2yz: the command succeeded.
    PositiveCompletion,
    /// 3yz: go on (354 after `DATA`, 334 during `AUTH`).
    PositiveIntermediate,
    /// 4yz: refused for now; the same command may succeed later.
    TransientNegative,
    /// 5yz: refused; repeating the command will not help.
    PermanentNegative,
}

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatusCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject (0..=999): 1 addressing, 2 mailbox, 3 mail system, 4 network, 5 protocol,
    /// 6 content, 7 security.
    pub subject: u16,
    /// The detail (0..=999).
    pub detail: u16,
}

impl fmt::Display for EnhancedStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedStatusCode>,
    lines: Vec<String>,
}

impl Reply {
    /// The three-digit reply code (200..=599).
    pub const fn code(&self) -> u16 {
        self.code
    }

    /// True when this refusal of a `RCPT` means "too many recipients in this transaction"
    /// (RFC 5321 section 4.5.3.1.10): `452` without an enhanced code or with `4.5.3` (not,
    /// say, `4.3.1` "insufficient storage"), or the `552 5.5.3` of servers that follow RFC
    /// 821's mistake. The remedy is another transaction for the remaining recipients, in the
    /// same session.
    pub fn is_too_many_recipients(&self) -> bool {
        let confirmed = |class| match self.enhanced {
            None => true,
            Some(code) => code.class == class && code.subject == 5 && code.detail == 3,
        };
        match self.code {
            452 => confirmed(4),
            552 => self.enhanced.is_some() && confirmed(5),
            _ => false,
        }
    }

    /// The enhanced status code, when the first line starts with one whose class matches the
    /// reply code (servers that advertise ENHANCEDSTATUSCODES put one on every 2xx/4xx/5xx).
    pub const fn enhanced(&self) -> Option<EnhancedStatusCode> {
        self.enhanced
    }

    /// The text of each line after the code and separator, as received (invalid UTF-8 replaced
    /// by U+FFFD).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The human-readable text: the lines joined with `\n`, each without its enhanced status
    /// code prefix.
    pub fn text(&self) -> String {
        let prefix = self.enhanced.map(|e| e.to_string());
        let mut text = String::new();
        for (index, line) in self.lines.iter().enumerate() {
            if index > 0 {
                text.push('\n');
            }
            let stripped = prefix
                .as_deref()
                .and_then(|p| line.strip_prefix(p))
                .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                .map_or(line.as_str(), |rest| rest.trim_start_matches(' '));
            text.push_str(stripped);
        }
        text
    }

    /// The category given by the first digit.
    pub const fn category(&self) -> Category {
        match self.code / 100 {
            2 => Category::PositiveCompletion,
            3 => Category::PositiveIntermediate,
            4 => Category::TransientNegative,
            _ => Category::PermanentNegative,
        }
    }

    /// True for 2yz and 3yz replies.
    pub const fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// For a 4yz or 5yz reply, whether retrying later may help; `None` for positive replies.
    pub const fn failure_class(&self) -> Option<FailureClass> {
        match self.category() {
            Category::TransientNegative => Some(FailureClass::Transient),
            Category::PermanentNegative => Some(FailureClass::Permanent),
            Category::PositiveCompletion | Category::PositiveIntermediate => None,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {enhanced}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {}", text.replace('\n', " / "))?;
        }
        Ok(())
    }
}

/// Why a reply line could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReply {
    /// The line does not start with three digits.
    #[error("reply line does not start with a three-digit code")]
    InvalidCode,
    /// The code is outside 200..=599.
    #[error("reply code {code} is outside 200..=599")]
    CodeOutOfRange {
        /// The code received.
        code: u16,
    },
    /// The code is followed by something other than `-`, a space or the end of the line.
    #[error("reply code {code} is not followed by '-' or a space")]
    MissingSeparator {
        /// The code received.
        code: u16,
    },
    /// A continuation line carries a different code than the first line of the reply.
    #[error("multi-line reply mixes codes {first} and {line}")]
    InconsistentCode {
        /// The code of the first line.
        first: u16,
        /// The code of the offending line.
        line: u16,
    },
}

/// A reply could not be read; every variant is fatal for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line exceeded the length limit.
    #[error("reply line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A multi-line reply exceeded the line-count limit.
    #[error("reply has more than {limit} lines")]
    TooManyLines {
        /// The limit in lines.
        limit: usize,
    },
    /// A line does not follow the reply grammar.
    #[error(transparent)]
    Malformed(#[from] MalformedReply),
}

/// One parsed reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// The reply code.
    pub code: u16,
    /// True when this is the last line of the reply (code followed by a space or nothing).
    pub last: bool,
    /// The text after the separator.
    pub text: &'a [u8],
}

fn three_digits(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while_m_n(3, 3, |b: u8| b.is_ascii_digit()).parse(input)
}

fn one_to_three_digits(input: &[u8]) -> IResult<&[u8], u16> {
    take_while_m_n(1, 3, |b: u8| b.is_ascii_digit())
        .map(digits_value)
        .parse(input)
}

fn digits_value(digits: &[u8]) -> u16 {
    digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
}

/// Parses one complete reply line (without its CRLF).
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine<'_>, MalformedReply> {
    let (rest, digits) = three_digits(line).map_err(|_| MalformedReply::InvalidCode)?;
    let code = digits_value(digits);
    if !(200..=599).contains(&code) {
        return Err(MalformedReply::CodeOutOfRange { code });
    }
    match rest.split_first() {
        None => Ok(ReplyLine {
            code,
            last: true,
            text: rest,
        }),
        Some((b' ', text)) => Ok(ReplyLine {
            code,
            last: true,
            text,
        }),
        Some((b'-', text)) => Ok(ReplyLine {
            code,
            last: false,
            text,
        }),
        Some(_) => Err(MalformedReply::MissingSeparator { code }),
    }
}

/// Parses an enhanced status code at the start of `text` (followed by a space or the end).
pub fn parse_enhanced_status_code(text: &[u8]) -> Option<EnhancedStatusCode> {
    let parsed: IResult<&[u8], _> = (
        one_of("245"),
        char('.'),
        one_to_three_digits,
        char('.'),
        one_to_three_digits,
    )
        .parse(text);
    let (rest, (class, _, subject, _, detail)) = parsed.ok()?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    Some(EnhancedStatusCode {
        class: class.to_digit(10).map_or(0, |d| d as u8),
        subject,
        detail,
    })
}

/// Assembles complete replies from received bytes, within limits.
#[derive(Debug)]
pub struct ReplyReader {
    lines: LineReader,
    partial_code: Option<u16>,
    partial: Vec<String>,
}

impl ReplyReader {
    /// A reader accepting lines up to `max_line` bytes (CRLF excluded).
    pub fn new(max_line: usize) -> Self {
        Self {
            lines: LineReader::new(max_line),
            partial_code: None,
            partial: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.lines.extend(bytes);
    }

    /// True when no byte is buffered and no reply is half assembled.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.partial_code.is_none()
    }

    /// The next complete reply, if one is buffered. A reply with more than `max_lines` lines is
    /// an error as soon as the extra line arrives. After an error the reader must not be used.
    pub fn next_reply(&mut self, max_lines: usize) -> Result<Option<Reply>, ReplyError> {
        let max_line = self.lines.max_line();
        loop {
            let Some(raw) = self.lines.next_line().map_err(|e| match e {
                LineError::TooLong { limit } => ReplyError::LineTooLong { limit },
                _ => ReplyError::LineTooLong { limit: max_line },
            })?
            else {
                return Ok(None);
            };
            let line = parse_reply_line(&raw)?;
            if let Some(first) = self.partial_code
                && first != line.code
            {
                return Err(MalformedReply::InconsistentCode {
                    first,
                    line: line.code,
                }
                .into());
            }
            if self.partial.len() >= max_lines {
                return Err(ReplyError::TooManyLines { limit: max_lines });
            }
            self.partial_code = Some(line.code);
            self.partial
                .push(String::from_utf8_lossy(line.text).into_owned());
            if line.last {
                self.partial_code = None;
                let lines = std::mem::take(&mut self.partial);
                let enhanced = lines
                    .first()
                    .and_then(|first| parse_enhanced_status_code(first.as_bytes()))
                    .filter(|e| u16::from(e.class) == line.code / 100);
                return Ok(Some(Reply {
                    code: line.code,
                    enhanced,
                    lines,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MalformedReply, ReplyError, ReplyReader, parse_enhanced_status_code};
    use super::{ReplyLine, parse_reply_line};

    fn reply(text: &[u8]) -> super::Reply {
        let mut reader = ReplyReader::new(512);
        reader.extend(text);
        reader.next_reply(8).unwrap().unwrap()
    }

    #[test]
    fn too_many_recipients() {
        for yes in [
            &b"452 4.5.3 Error: too many recipients\r\n"[..],
            b"452 too many recipients\r\n",
            b"552 5.5.3 too many recipients\r\n",
        ] {
            assert!(reply(yes).is_too_many_recipients(), "{yes:?}");
        }
        for no in [
            &b"452 4.3.1 Insufficient system storage\r\n"[..],
            b"552 message size exceeds fixed limit\r\n",
            b"550 5.1.1 no such user\r\n",
            b"450 4.2.0 mailbox busy\r\n",
        ] {
            assert!(!reply(no).is_too_many_recipients(), "{no:?}");
        }
    }

    #[test]
    fn line_grammar() {
        assert_eq!(
            parse_reply_line(b"250"),
            Ok(ReplyLine {
                code: 250,
                last: true,
                text: b""
            })
        );
        assert_eq!(parse_reply_line(b"250-x").map(|l| l.last), Ok(false));
        assert_eq!(
            parse_reply_line(b"250 x y").map(|l| l.text),
            Ok(&b"x y"[..])
        );
        assert_eq!(
            parse_reply_line(b"2500 x"),
            Err(MalformedReply::MissingSeparator { code: 250 })
        );
        assert_eq!(
            parse_reply_line(b"199 x"),
            Err(MalformedReply::CodeOutOfRange { code: 199 })
        );
        assert_eq!(
            parse_reply_line(b"600 x"),
            Err(MalformedReply::CodeOutOfRange { code: 600 })
        );
        for bad in [&b""[..], b"25", b"2a0 x", b" 250 x", b"\x00\x00\x00"] {
            assert_eq!(parse_reply_line(bad), Err(MalformedReply::InvalidCode));
        }
    }

    #[test]
    fn enhanced_codes() {
        let e = parse_enhanced_status_code(b"5.1.1 no such user").unwrap();
        assert_eq!((e.class, e.subject, e.detail), (5, 1, 1));
        assert_eq!(
            parse_enhanced_status_code(b"2.0.0").unwrap().to_string(),
            "2.0.0"
        );
        assert_eq!(
            parse_enhanced_status_code(b"4.999.123 x").unwrap().detail,
            123
        );
        for bad in [
            &b"3.0.0 x"[..],
            b"5.1 x",
            b"5.1.1x",
            b"5.1000.1 x",
            b"mail.example",
            b"",
        ] {
            assert_eq!(parse_enhanced_status_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn class_must_match_the_code() {
        let mut r = ReplyReader::new(100);
        r.extend(b"250 5.0.0 odd\r\n550 5.1.1 no\r\n354 2.0.0 go\r\n");
        assert_eq!(r.next_reply(4).unwrap().unwrap().enhanced(), None);
        let reply = r.next_reply(4).unwrap().unwrap();
        assert_eq!(reply.enhanced().unwrap().to_string(), "5.1.1");
        assert_eq!(reply.text(), "no");
        assert_eq!(r.next_reply(4).unwrap().unwrap().enhanced(), None);
    }

    #[test]
    fn text_strips_the_code_on_every_line() {
        let mut r = ReplyReader::new(100);
        r.extend(b"550-5.7.1 first\r\n550-second\r\n550 5.7.1 third\r\n");
        let reply = r.next_reply(4).unwrap().unwrap();
        assert_eq!(reply.text(), "first\nsecond\nthird");
        assert_eq!(reply.to_string(), "550 5.7.1 first / second / third");
    }

    #[test]
    fn limits_and_mixed_codes() {
        let mut r = ReplyReader::new(100);
        r.extend(b"250-a\r\n251 b\r\n");
        assert_eq!(
            r.next_reply(4),
            Err(ReplyError::Malformed(MalformedReply::InconsistentCode {
                first: 250,
                line: 251
            }))
        );
        let mut r = ReplyReader::new(100);
        r.extend(b"250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(r.next_reply(2), Err(ReplyError::TooManyLines { limit: 2 }));
        let mut r = ReplyReader::new(8);
        r.extend(b"250 123456789\r\n");
        assert_eq!(r.next_reply(2), Err(ReplyError::LineTooLong { limit: 8 }));
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let mut r = ReplyReader::new(100);
        r.extend(b"250 caf\xe9\x00\r\n");
        let reply = r.next_reply(1).unwrap().unwrap();
        assert_eq!(reply.lines(), ["caf\u{fffd}\u{0}"]);
        assert!(r.is_empty());
    }
}
