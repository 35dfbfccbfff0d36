//! What the server offers, from its EHLO reply (RFC 5321 section 4.1.1.1).
//!
//! Keywords are matched without regard to case. The extensions the client acts on get typed
//! fields; every keyword, known or not, is also kept with its parameters so callers can look at
//! extensions this crate does not implement. Lines that are not valid EHLO lines are skipped: a
//! server's odd advertisement must not cost the whole session, and an unrecognised line can only
//! ever *withhold* a feature.
//!
//! The announced `SIZE` is only compared against, never used to size a buffer.
//!
//! ```
//! use smtp_submit::capabilities::parse_ehlo_line;
//! assert_eq!(
//!     parse_ehlo_line("auth=LOGIN PLAIN"),
//!     Some(("AUTH".to_string(), vec!["LOGIN".to_string(), "PLAIN".to_string()]))
//! );
//! assert_eq!(parse_ehlo_line("-bad"), None);
//! ```

use nom::{IResult, Parser, bytes::complete::take_while1, combinator::verify};

use crate::reply::Reply;

/// One EHLO keyword line with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EhloKeyword {
    /// The keyword, upper-cased.
    pub keyword: String,
    /// The parameters, as sent.
    pub params: Vec<String>,
}

/// The server's capabilities after EHLO (or HELO, which offers none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    server_name: String,
    extended: bool,
    pipelining: bool,
    chunking: bool,
    size: bool,
    max_size: Option<u64>,
    eight_bit_mime: bool,
    smtputf8: bool,
    dsn: bool,
    enhanced_status_codes: bool,
    starttls: bool,
    require_tls: bool,
    auth: Vec<String>,
    keywords: Vec<EhloKeyword>,
}

fn keyword(input: &str) -> IResult<&str, &str> {
    verify(
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-'),
        |k: &str| k.starts_with(|c: char| c.is_ascii_alphanumeric()),
    )
    .parse(input)
}

/// Parses one EHLO keyword line (`ehlo-line` of RFC 5321, plus the pre-standard `AUTH=` form)
/// into the upper-cased keyword and its parameters. Returns `None` for lines that are not valid
/// EHLO lines.
pub fn parse_ehlo_line(line: &str) -> Option<(String, Vec<String>)> {
    let (rest, word) = keyword(line).ok()?;
    let params = if let Some(rest) = rest.strip_prefix(' ') {
        rest
    } else if let Some(rest) = rest.strip_prefix('=') {
        // Old servers advertise `AUTH=LOGIN PLAIN` for clients that predate RFC 2554.
        if !word.eq_ignore_ascii_case("AUTH") {
            return None;
        }
        rest
    } else if rest.is_empty() {
        rest
    } else {
        return None;
    };
    if params.chars().any(|c| c.is_ascii_control()) {
        return None;
    }
    Some((
        word.to_ascii_uppercase(),
        params
            .split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

impl Capabilities {
    /// Reads the capabilities from a positive EHLO reply. The first line is the server's name.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self {
            server_name: server_name(reply),
            extended: true,
            ..Self::default()
        };
        for line in reply.lines().iter().skip(1) {
            let Some((keyword, params)) = parse_ehlo_line(line) else {
                tracing::debug!(line = %line.escape_debug(), "skipping unparsable EHLO line");
                continue;
            };
            caps.learn(&keyword, &params);
            caps.keywords.push(EhloKeyword { keyword, params });
        }
        caps
    }

    /// The capabilities after a HELO greeting: no extension at all.
    pub fn from_helo(reply: &Reply) -> Self {
        Self {
            server_name: server_name(reply),
            ..Self::default()
        }
    }

    fn learn(&mut self, keyword: &str, params: &[String]) {
        match keyword {
            "PIPELINING" => self.pipelining = true,
            "CHUNKING" => self.chunking = true,
            "SIZE" => {
                self.size = true;
                // "SIZE" alone or "SIZE 0" means no fixed limit; an unparsable number is treated
                // the same (the server will still enforce its own limit).
                self.max_size = params
                    .first()
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 0);
            }
            "8BITMIME" => self.eight_bit_mime = true,
            "SMTPUTF8" => self.smtputf8 = true,
            "DSN" => self.dsn = true,
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes = true,
            "STARTTLS" => self.starttls = true,
            "REQUIRETLS" => self.require_tls = true,
            "AUTH" => {
                for mechanism in params {
                    let mechanism = mechanism.to_ascii_uppercase();
                    if !self.auth.contains(&mechanism) {
                        self.auth.push(mechanism);
                    }
                }
            }
            _ => {}
        }
    }

    /// The server's name (first word of the EHLO/HELO reply).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
    /// False when the session fell back to HELO (no extensions).
    pub const fn is_extended(&self) -> bool {
        self.extended
    }
    /// PIPELINING (RFC 2920).
    pub const fn pipelining(&self) -> bool {
        self.pipelining
    }
    /// CHUNKING, the `BDAT` command (RFC 3030).
    pub const fn chunking(&self) -> bool {
        self.chunking
    }
    /// SIZE (RFC 1870) is advertised.
    pub const fn size(&self) -> bool {
        self.size
    }
    /// The fixed message size limit in bytes, if the server announced one.
    pub const fn max_message_size(&self) -> Option<u64> {
        self.max_size
    }
    /// 8BITMIME (RFC 6152).
    pub const fn eight_bit_mime(&self) -> bool {
        self.eight_bit_mime
    }
    /// SMTPUTF8 (RFC 6531).
    pub const fn smtputf8(&self) -> bool {
        self.smtputf8
    }
    /// DSN (RFC 3461).
    pub const fn dsn(&self) -> bool {
        self.dsn
    }
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub const fn enhanced_status_codes(&self) -> bool {
        self.enhanced_status_codes
    }
    /// STARTTLS (RFC 3207).
    pub const fn starttls(&self) -> bool {
        self.starttls
    }
    /// REQUIRETLS (RFC 8689).
    pub const fn require_tls(&self) -> bool {
        self.require_tls
    }
    /// `RCPTMAX` of RFC 9422 `LIMITS`: the most recipients one transaction may have. Beyond
    /// it the server answers `452 too many recipients`; the client refuses such an envelope
    /// ([`Misuse::TooManyRecipients`](crate::Misuse::TooManyRecipients)) and the tokio adapter
    /// splits it into transactions up front.
    pub fn rcpt_max(&self) -> Option<usize> {
        self.limit("RCPTMAX")
    }
    /// `MAILMAX` of RFC 9422 `LIMITS`: the most transactions one session may have.
    pub fn mail_max(&self) -> Option<usize> {
        self.limit("MAILMAX")
    }
    /// One `NAME=value` of the `LIMITS` keyword; absent, zero or malformed values are no limit.
    fn limit(&self, name: &str) -> Option<usize> {
        self.params("LIMITS")?.iter().find_map(|param| {
            let (key, value) = param.split_once('=')?;
            let value: usize = value.parse().ok()?;
            (key.eq_ignore_ascii_case(name) && value > 0).then_some(value)
        })
    }
    /// The SASL mechanisms of the AUTH keyword(s), upper-cased, in the server's order.
    pub fn auth_mechanisms(&self) -> &[String] {
        &self.auth
    }
    /// Every keyword line, in the server's order.
    pub fn keywords(&self) -> &[EhloKeyword] {
        &self.keywords
    }
    /// The parameters of `keyword` (matched without regard to case), if it was advertised.
    pub fn params(&self, keyword: &str) -> Option<&[String]> {
        self.keywords
            .iter()
            .find(|k| k.keyword.eq_ignore_ascii_case(keyword))
            .map(|k| k.params.as_slice())
    }
}

fn server_name(reply: &Reply) -> String {
    reply
        .lines()
        .first()
        .and_then(|line| line.split(' ').next())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::{Capabilities, parse_ehlo_line};
    use crate::reply::ReplyReader;

    fn ehlo(text: &str) -> Capabilities {
        let mut r = ReplyReader::new(1000);
        r.extend(text.as_bytes());
        Capabilities::from_ehlo(&r.next_reply(100).unwrap().unwrap())
    }

    #[test]
    fn postfix_advertisement() {
        let caps = ehlo(
            "250-mail.testground.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-VRFY\r\n\
             250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(caps.server_name(), "mail.testground.example");
        assert!(caps.pipelining() && caps.chunking() && caps.starttls() && caps.dsn());
        assert!(caps.eight_bit_mime() && caps.smtputf8() && caps.enhanced_status_codes());
        assert!(!caps.require_tls());
        assert_eq!(caps.max_message_size(), Some(52_428_800));
        assert_eq!(
            caps.auth_mechanisms(),
            ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
        );
        assert_eq!(caps.params("vrfy"), Some(&[][..]));
        assert_eq!(caps.keywords().len(), 11);
    }

    #[test]
    fn case_legacy_auth_and_junk() {
        let caps = ehlo(
            "250-srv greets you\r\n250-pipelining\r\n250-Auth=LOGIN\r\n250-AUTH login PLAIN\r\n\
             250-SIZE\r\n250-X-UNKNOWN a  b\r\n250-=junk\r\n250-BAD\x01CTL\r\n250 size 0\r\n",
        );
        assert_eq!(caps.server_name(), "srv");
        assert!(caps.pipelining());
        assert_eq!(caps.auth_mechanisms(), ["LOGIN", "PLAIN"]);
        assert!(caps.size());
        assert_eq!(caps.max_message_size(), None);
        assert_eq!(
            caps.params("x-unknown"),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert!(caps.params("=junk").is_none());
    }

    #[test]
    fn ehlo_lines() {
        assert_eq!(parse_ehlo_line("SIZE=5"), None);
        assert_eq!(
            parse_ehlo_line("8BITMIME"),
            Some(("8BITMIME".into(), vec![]))
        );
        assert_eq!(parse_ehlo_line(""), None);
        assert_eq!(parse_ehlo_line("ÄUTH"), None);
    }
}
