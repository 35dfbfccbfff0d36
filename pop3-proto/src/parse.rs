//! Low-level parsers for single POP3 response lines.
//!
//! These are the pieces [`crate::Client`] is built from, exposed for fuzz targets, benchmarks
//! and tools that frame lines themselves; most users never need them. Every function takes one
//! complete line (or the text after its status indicator) without the CRLF, never panics,
//! never allocates in proportion to a number the server sent, and reports what was wrong as a
//! [`Malformed`] kind.
//!
//! They follow the RFCs where that costs nothing and are lenient where real servers differ:
//! status indicators are matched ignoring case, text after a `STAT` or `LIST` size is ignored
//! (RFC 1939 allows it), a capability with unexpected arguments is kept as
//! [`Capability::Other`] instead of failing the session.

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while1};
use nom::character::complete::{digit1, space0, space1};
use nom::combinator::{all_consuming, eof, recognize, rest, value};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use crate::capabilities::{Capability, Expire, OtherCapability, Policy};
use crate::error::Malformed;
use crate::event::{ScanEntry, UidEntry};
use crate::response::{Response, ResponseCode};

type Parsed<'a, T> = IResult<&'a [u8], T, ()>;

/// A status line, split into its indicator and the text after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'a> {
    /// `+OK [text]`.
    Ok(&'a [u8]),
    /// `-ERR [text]`.
    Err(&'a [u8]),
    /// `+ [base64]`: a SASL challenge (RFC 5034); only meaningful during `AUTH`.
    Continuation(&'a [u8]),
}

#[derive(Clone, Copy)]
enum Indicator {
    Ok,
    Err,
    Continuation,
}

/// Splits a status line. The indicator is matched ignoring case and must be followed by a
/// space or the end of the line.
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::parse::{Status, status_line};
/// assert_eq!(status_line(b"+OK 2 320"), Ok(Status::Ok(b"2 320")));
/// assert_eq!(status_line(b"-ERR"), Ok(Status::Err(b"")));
/// assert_eq!(status_line(b"+ "), Ok(Status::Continuation(b"")));
/// assert!(status_line(b"+OKAY").is_err());
/// # }
/// ```
pub fn status_line(line: &[u8]) -> Result<Status<'_>, Malformed> {
    let indicator = alt((
        value(Indicator::Ok, tag_no_case(&b"+OK"[..])),
        value(Indicator::Err, tag_no_case(&b"-ERR"[..])),
        value(Indicator::Continuation, tag(&b"+"[..])),
    ));
    let text = alt((preceded(tag(&b" "[..]), rest), eof));
    let parsed: Parsed<'_, _> = all_consuming((indicator, text)).parse(line);
    let (_, (indicator, text)) = parsed.map_err(|_| Malformed::StatusLine)?;
    Ok(match indicator {
        Indicator::Ok => Status::Ok(text),
        Indicator::Err => Status::Err(text),
        Indicator::Continuation => Status::Continuation(text),
    })
}

/// RFC 2449 `rchar`: printable ASCII except `/` (the level separator) and `]`.
const fn is_code_char(byte: u8) -> bool {
    matches!(byte, 0x21..=0x2E | 0x30..=0x5C | 0x5E..=0x7F)
}

/// Splits status text into its response code (RFC 2449 `[level/level...]`) and the rest.
/// Text that does not start with a well-formed code has none.
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::parse::response;
/// use pop3_proto::ResponseCode;
/// let r = response(b"[SYS/TEMP] try later");
/// assert_eq!((r.code, r.text.as_str()), (Some(ResponseCode::SysTemp), "try later"));
/// assert_eq!(response(b"[not a code] x").code, None);
/// # }
/// ```
pub fn response(text: &[u8]) -> Response {
    let text = text.trim_ascii_start();
    let code = delimited(
        tag(&b"["[..]),
        recognize(separated_list1(tag(&b"/"[..]), take_while1(is_code_char))),
        tag(&b"]"[..]),
    );
    let parsed: Parsed<'_, &[u8]> = terminated(code, space0).parse(text);
    match parsed {
        Ok((rest, code)) => Response {
            code: Some(ResponseCode::from_text(&String::from_utf8_lossy(code))),
            text: String::from_utf8_lossy(rest).into_owned(),
        },
        Err(_) => Response {
            code: None,
            text: String::from_utf8_lossy(text).into_owned(),
        },
    }
}

/// The APOP timestamp in greeting text (RFC 1939 section 7): the first `<...>`, brackets
/// included, if it looks like a message-id.
///
/// Only printable ASCII without further angle brackets, with an `@`, is accepted: a lax check
/// lets an attacker choose the MD5 input and recover the password (CVE-2007-1558).
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::parse::apop_timestamp;
/// let greeting = b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>";
/// assert_eq!(apop_timestamp(greeting), Some("<1896.697170952@dbc.mtview.ca.us>"));
/// assert_eq!(apop_timestamp(b"ready <no-at-sign>"), None);
/// # }
/// ```
pub fn apop_timestamp(text: &[u8]) -> Option<&str> {
    let start = memchr::memchr(b'<', text)?;
    let after = text.get(start + 1..)?;
    let inner = after.get(..memchr::memchr(b'>', after)?)?;
    let valid = inner.contains(&b'@')
        && inner
            .iter()
            .all(|&b| (0x21..=0x7E).contains(&b) && b != b'<' && b != b'>');
    if !valid {
        return None;
    }
    let whole = text.get(start..start + inner.len() + 2)?;
    std::str::from_utf8(whole).ok()
}

/// Converts decimal digits, reporting overflow of the target type instead of wrapping.
fn number<T: TryFrom<u64>>(digits: &[u8]) -> Result<T, Malformed> {
    let value = digits.iter().try_fold(0_u64, |acc, &digit| {
        acc.checked_mul(10)?
            .checked_add(u64::from(digit.wrapping_sub(b'0')))
    });
    value
        .and_then(|v| T::try_from(v).ok())
        .ok_or(Malformed::NumberOutOfRange)
}

/// `number SP number`, then the end or a space and anything (RFC 1939 leaves what follows
/// a `STAT` or scan-listing size to the server).
fn two_numbers(text: &[u8], kind: Malformed) -> Result<(u32, u64), Malformed> {
    let parsed: Parsed<'_, _> = all_consuming(terminated(
        (preceded(space0, digit1), preceded(space1, digit1)),
        alt((eof, preceded(space1, rest))),
    ))
    .parse(text);
    let (_, (first, second)) = parsed.map_err(|_| kind)?;
    Ok((number(first)?, number(second)?))
}

/// The text of a positive `STAT` reply: `(message count, maildrop size)`.
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// assert_eq!(pop3_proto::parse::stat(b"2 320"), Ok((2, 320)));
/// # }
/// ```
pub fn stat(text: &[u8]) -> Result<(u32, u64), Malformed> {
    two_numbers(text, Malformed::Stat)
}

/// A scan listing: one line of `LIST`, or the text of a positive `LIST n` reply.
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::{ScanEntry, parse::scan_entry};
/// assert_eq!(scan_entry(b"1 120 extra"), Ok(ScanEntry { msg: 1, size: 120 }));
/// # }
/// ```
pub fn scan_entry(text: &[u8]) -> Result<ScanEntry, Malformed> {
    let (msg, size) = two_numbers(text, Malformed::ScanListing)?;
    Ok(ScanEntry { msg, size })
}

/// A unique-id listing: one line of `UIDL`, or the text of a positive `UIDL n` reply. The
/// unique-id must be printable ASCII (RFC 1939: 0x21–0x7E); its length is not checked here
/// (see [`crate::Limits::max_uid_len`]).
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::parse::uid_entry;
/// let entry = uid_entry(b"1 000000016b027d9f").unwrap();
/// assert_eq!((entry.msg, entry.uid.as_str()), (1, "000000016b027d9f"));
/// # }
/// ```
pub fn uid_entry(text: &[u8]) -> Result<UidEntry, Malformed> {
    let uid_char = |b: u8| (0x21..=0x7E).contains(&b);
    let parsed: Parsed<'_, _> = all_consuming(terminated(
        (
            preceded(space0, digit1),
            preceded(space1, take_while1(uid_char)),
        ),
        space0,
    ))
    .parse(text);
    let (_, (msg, uid)) = parsed.map_err(|_| Malformed::UidListing)?;
    Ok(UidEntry {
        msg: number(msg)?,
        // Printable ASCII, so the conversion is exact.
        uid: String::from_utf8_lossy(uid).into_owned(),
    })
}

/// One line of a multi-line listing (not a message body): `None` for the terminating `.`,
/// otherwise the line with a stuffing dot removed.
pub fn listing_line(line: &[u8]) -> Option<&[u8]> {
    match line {
        b"." => None,
        [b'.', unstuffed @ ..] => Some(unstuffed),
        _ => Some(line),
    }
}

/// Recognises one `CAPA` line; `None` for a blank line.
///
/// ```
/// # #[cfg(feature = "_internal")] {
/// use pop3_proto::parse::capability;
/// use pop3_proto::Capability;
/// assert_eq!(capability(b"sasl plain Scram-SHA-256"),
///            Some(Capability::Sasl(vec!["PLAIN".into(), "SCRAM-SHA-256".into()])));
/// # }
/// ```
pub fn capability(line: &[u8]) -> Option<Capability> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    let name = words.next()?;
    let args: Vec<&str> = words.collect();
    let per_user = |arg: Option<&&str>| arg.is_some_and(|a| a.eq_ignore_ascii_case("USER"));
    let recognised = match name.to_ascii_uppercase().as_str() {
        "TOP" => Some(Capability::Top),
        "UIDL" => Some(Capability::Uidl),
        "USER" => Some(Capability::User),
        "STLS" => Some(Capability::Stls),
        "PIPELINING" => Some(Capability::Pipelining),
        "RESP-CODES" => Some(Capability::RespCodes),
        "AUTH-RESP-CODE" => Some(Capability::AuthRespCode),
        "SASL" => Some(Capability::Sasl(
            args.iter().map(|a| a.to_ascii_uppercase()).collect(),
        )),
        "LOGIN-DELAY" => args.first().and_then(|a| a.parse().ok()).map(|seconds| {
            Capability::LoginDelay(Policy {
                value: seconds,
                per_user: per_user(args.get(1)),
            })
        }),
        "EXPIRE" => args
            .first()
            .and_then(|a| {
                if a.eq_ignore_ascii_case("NEVER") {
                    Some(Expire::Never)
                } else {
                    a.parse().ok().map(Expire::Days)
                }
            })
            .map(|value| {
                Capability::Expire(Policy {
                    value,
                    per_user: per_user(args.get(1)),
                })
            }),
        "UTF8" => Some(Capability::Utf8 {
            user: per_user(args.first()),
        }),
        "IMPLEMENTATION" => Some(Capability::Implementation(args.join(" "))),
        _ => None,
    };
    Some(recognised.unwrap_or_else(|| {
        Capability::Other(OtherCapability {
            name: name.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        })
    }))
}

/// The start of a line, printable, for error messages: at most 80 bytes, with control and
/// non-ASCII bytes escaped.
pub fn excerpt(line: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = line.get(..MAX).unwrap_or(line);
    let mut out = shown.escape_ascii().to_string();
    if line.len() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_line(b"+ok"), Ok(Status::Ok(b"")));
        assert_eq!(
            status_line(b"-err [AUTH] no"),
            Ok(Status::Err(b"[AUTH] no"))
        );
        assert_eq!(
            status_line(b"+ dGVzdA=="),
            Ok(Status::Continuation(b"dGVzdA=="))
        );
        assert_eq!(status_line(b"+"), Ok(Status::Continuation(b"")));
        for bad in [
            &b""[..],
            b"OK",
            b"+OK\0",
            b"-ERROR",
            b"* OK",
            b"\xff+OK",
            b"+OK\t1",
        ] {
            assert_eq!(status_line(bad), Err(Malformed::StatusLine), "{bad:?}");
        }
    }

    #[test]
    fn response_codes() {
        let r = response(b"[IN-USE]locked");
        assert_eq!(
            (r.code, r.text.as_str()),
            (Some(ResponseCode::InUse), "locked")
        );
        let r = response(b"  [SYS/TEMP/QUOTA] full");
        assert_eq!(r.code, Some(ResponseCode::Other("SYS/TEMP/QUOTA".into())));
        for no_code in [
            &b"[] x"[..],
            b"[a//b] x",
            b"[SYS/] x",
            b"[unterminated",
            b"plain",
        ] {
            let r = response(no_code);
            assert_eq!(r.code, None, "{no_code:?}");
        }
        assert_eq!(response(b"[a b] x").text, "[a b] x");
        assert_eq!(response(b"bad \xff utf8").text, "bad \u{fffd} utf8");
    }

    #[test]
    fn apop_timestamps() {
        let dovecot = b"Dovecot (Debian) ready. <390e.2.6b02851c.wpvgQSmbe0ig4naFfauS/g==@vm>";
        assert_eq!(
            apop_timestamp(dovecot),
            Some("<390e.2.6b02851c.wpvgQSmbe0ig4naFfauS/g==@vm>")
        );
        for bad in [
            &b"no timestamp"[..],
            b"<unterminated@x",
            b"<>",
            b"<a b@c>",
            b"<a\xff@c>",
            b"<a<b@c>",
            b"<a@b",
        ] {
            assert_eq!(apop_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_and_overflow() {
        assert_eq!(stat(b"0 0"), Ok((0, 0)));
        assert_eq!(
            stat(b"  4294967295 18446744073709551615 octets"),
            Ok((u32::MAX, u64::MAX))
        );
        assert_eq!(stat(b"4294967296 1"), Err(Malformed::NumberOutOfRange));
        assert_eq!(
            stat(b"1 18446744073709551616"),
            Err(Malformed::NumberOutOfRange)
        );
        assert_eq!(
            stat(b"1 99999999999999999999999999"),
            Err(Malformed::NumberOutOfRange)
        );
        for bad in [&b""[..], b"1", b"1 x", b"-1 2", b"1 2x", b"1,2"] {
            assert_eq!(stat(bad), Err(Malformed::Stat), "{bad:?}");
        }
        assert_eq!(scan_entry(b"3 x"), Err(Malformed::ScanListing));
    }

    #[test]
    fn uid_entries() {
        assert_eq!(
            uid_entry(b"2 QhdPYR:00WBw1Ph7x7 "),
            Ok(UidEntry {
                msg: 2,
                uid: "QhdPYR:00WBw1Ph7x7".into()
            })
        );
        for bad in [&b"1"[..], b"1 ", b"1 a b", b"1 a\xff", b"x a", b"1 a\0"] {
            assert_eq!(uid_entry(bad), Err(Malformed::UidListing), "{bad:?}");
        }
        assert_eq!(
            uid_entry(b"99999999999 a"),
            Err(Malformed::NumberOutOfRange)
        );
    }

    #[test]
    fn listing_lines() {
        assert_eq!(listing_line(b"."), None);
        assert_eq!(listing_line(b"..x"), Some(&b".x"[..]));
        assert_eq!(listing_line(b"1 2"), Some(&b"1 2"[..]));
    }

    #[test]
    fn odd_capabilities_are_kept() {
        assert_eq!(capability(b"   "), None);
        assert!(matches!(
            capability(b"LOGIN-DELAY soon"),
            Some(Capability::Other(_))
        ));
        assert!(matches!(capability(b"EXPIRE"), Some(Capability::Other(_))));
        assert_eq!(
            capability(b"EXPIRE 0"),
            Some(Capability::Expire(Policy {
                value: Expire::Days(0),
                per_user: false
            }))
        );
        assert!(matches!(
            capability(b"\xff\xfe"),
            Some(Capability::Other(_))
        ));
    }

    #[test]
    fn excerpts_are_printable_and_short() {
        assert_eq!(excerpt(b"a\r\0\xff"), "a\\r\\x00\\xff");
        let long = excerpt(&[b'x'; 500]);
        assert_eq!(long.len(), 83);
    }
}
