//! A simple text message: the headers a mail client adds (Date, Message-ID, From with a
//! display name, MIME for UTF-8), for test messages and quick notes. Not a MIME library.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use mail_account::compose::SimpleMessage;
//!
//! let message = SimpleMessage::new("alice@example.org", ["bob@example.org"], "Grüße", "Hallo!\n")
//!     .with_display_name("Alice Example")
//!     .with_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
//!     .with_message_id("<test.1@example.org>");
//! let text = String::from_utf8(message.to_bytes()).unwrap();
//! assert!(text.starts_with("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
//! assert!(text.contains("From: Alice Example <alice@example.org>\r\n"));
//! assert!(text.contains("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
//! assert!(text.ends_with("\r\n\r\nHallo!\r\n"));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A plain-text message with the usual headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleMessage {
    from: String,
    display_name: Option<String>,
    to: Vec<String>,
    subject: String,
    body: String,
    date: SystemTime,
    message_id: Option<String>,
    extra_headers: Vec<(String, String)>,
}

impl SimpleMessage {
    /// A message dated now, with a generated Message-ID.
    pub fn new<I, S>(
        from: impl Into<String>,
        to: I,
        subject: impl Into<String>,
        body: impl Into<String>,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            from: from.into(),
            display_name: None,
            to: to.into_iter().map(Into::into).collect(),
            subject: subject.into(),
            body: body.into(),
            date: SystemTime::now(),
            message_id: None,
            extra_headers: Vec::new(),
        }
    }

    /// The name shown beside the From address.
    #[must_use]
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The Date header's time.
    #[must_use]
    pub const fn with_date(mut self, date: SystemTime) -> Self {
        self.date = date;
        self
    }

    /// A given Message-ID (with its angle brackets).
    #[must_use]
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// An extra header (name and unfolded value; CR and LF are removed from both).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((
            strip_line_breaks(&name.into()),
            strip_line_breaks(&value.into()),
        ));
        self
    }

    /// The Message-ID this message carries (generated once, on first use).
    pub fn message_id(&mut self) -> &str {
        if self.message_id.is_none() {
            self.message_id = Some(new_message_id(&self.from));
        }
        self.message_id.as_deref().unwrap_or_default()
    }

    /// The message as sent: CRLF line ends, UTF-8 headers encoded (RFC 2047), body 8-bit
    /// when it is not ASCII.
    pub fn to_bytes(mut self) -> Vec<u8> {
        let id = self.message_id().to_owned();
        let mut out = String::new();
        let mut header = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        };
        header("Date", &rfc5322_date(self.date));
        // Line breaks are removed before encoding: the folds encode_phrase adds stay.
        header(
            "From",
            &mailbox_header(self.display_name.as_deref(), &self.from),
        );
        header("To", &strip_line_breaks(&self.to.join(", ")));
        header("Subject", &encode_word(&strip_line_breaks(&self.subject)));
        header("Message-ID", &strip_line_breaks(&id));
        header("MIME-Version", "1.0");
        let ascii = self.body.is_ascii();
        header(
            "Content-Type",
            if ascii {
                "text/plain; charset=us-ascii"
            } else {
                "text/plain; charset=utf-8"
            },
        );
        header(
            "Content-Transfer-Encoding",
            if ascii { "7bit" } else { "8bit" },
        );
        for (name, value) in &self.extra_headers {
            header(name, value);
        }
        out.push_str("\r\n");
        for line in self.body.lines() {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

/// A From/To header value: `address`, or `name <address>` with the name quoted when it holds
/// specials and RFC 2047-encoded when it is not ASCII; line breaks removed.
///
/// ```
/// use mail_account::compose::mailbox_header;
/// assert_eq!(mailbox_header(None, "a@example.org"), "a@example.org");
/// assert_eq!(mailbox_header(Some("Doe, J"), "a@example.org"), "\"Doe, J\" <a@example.org>");
/// assert_eq!(mailbox_header(Some("山田"), "a@example.jp"), "=?UTF-8?B?5bGx55Sw?= <a@example.jp>");
/// ```
pub fn mailbox_header(display_name: Option<&str>, address: &str) -> String {
    match display_name.filter(|name| !name.is_empty()) {
        Some(name) => format!(
            "{} <{}>",
            encode_phrase(&strip_line_breaks(name)),
            strip_line_breaks(address)
        ),
        None => strip_line_breaks(address),
    }
}

fn strip_line_breaks(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
}

/// RFC 2047 B-encoding for non-ASCII header text; ASCII passes as is.
///
/// An encoded word may be at most 75 characters (RFC 2047 section 2), so longer text becomes
/// several words, split between characters, on folded lines (decoders join adjacent encoded
/// words without the white space between them).
fn encode_word(text: &str) -> String {
    /// 45 bytes are 60 base64 characters: with `=?UTF-8?B?` and `?=`, 72 of the 75.
    const MAX_BYTES: usize = 45;
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (index, c) in text.char_indices() {
        if index + c.len_utf8() - start > MAX_BYTES {
            words.push(&text[start..end]);
            start = index;
        }
        end = index + c.len_utf8();
    }
    words.push(&text[start..]);
    words
        .iter()
        .map(|chunk| format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk)))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// A display name: encoded when not ASCII, quoted when it holds specials.
fn encode_phrase(name: &str) -> String {
    if !name.is_ascii() {
        return encode_word(name);
    }
    if name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_owned()
    }
}

/// A fresh Message-ID under the domain of `from`.
pub fn new_message_id(from: &str) -> String {
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut random = [0u8; 12];
    // An all-zero id on a failing random source is still unique enough with the time part.
    let _ = getrandom::fill(&mut random);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("<{nanos:x}.{}@{domain}>", hex(&random))
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// `Tue, 14 Nov 2023 22:13:20 +0000` (RFC 5322 §3.3), in UTC.
pub fn rfc5322_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::from(month - 1)],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{SimpleMessage, encode_phrase, rfc5322_date};

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        let late = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(rfc5322_date(late), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn display_names_are_quoted_or_encoded() {
        assert_eq!(encode_phrase("Alice"), "Alice");
        assert_eq!(encode_phrase("Doe, John"), "\"Doe, John\"");
        assert_eq!(encode_phrase("山田"), "=?UTF-8?B?5bGx55Sw?=");
    }

    #[test]
    fn long_names_become_several_encoded_words_of_at_most_75_characters() {
        let name = "山田 太郎 (株式会社サンプル・システムズ 東日本営業本部 第一営業部)";
        let encoded = encode_phrase(name);
        let words: Vec<&str> = encoded.split("\r\n ").collect();
        assert!(words.len() > 1, "{encoded}");
        let mut decoded = Vec::new();
        for word in &words {
            assert!(word.len() <= 75, "{word}");
            let inner = word
                .strip_prefix("=?UTF-8?B?")
                .unwrap()
                .strip_suffix("?=")
                .unwrap();
            // Each word decodes on its own: no character is split between two words.
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, inner).unwrap();
            decoded.push(String::from_utf8(bytes).unwrap());
        }
        assert_eq!(decoded.concat(), name);
        let text = String::from_utf8(
            SimpleMessage::new("taro@example.jp", ["b@example.org"], "s", "b")
                .with_display_name(name)
                .to_bytes(),
        )
        .unwrap();
        assert!(
            text.contains(&format!("From: {encoded} <taro@example.jp>\r\n")),
            "{text}"
        );
    }

    #[test]
    fn header_injection_through_fields_is_removed() {
        let text = SimpleMessage::new(
            "a@example.org",
            ["b@example.org"],
            "hi\r\nBcc: evil@example.org",
            "x",
        )
        .with_header("X-Test", "1\r\nBcc: evil@example.org")
        .to_bytes();
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn generated_message_ids_differ() {
        let mut a = SimpleMessage::new("a@example.org", ["b@example.org"], "s", "b");
        let mut b = a.clone();
        b.message_id = None;
        assert_ne!(a.message_id().to_owned(), b.message_id().to_owned());
        assert!(a.message_id().ends_with("@example.org>"));
    }
}
