//! A simple text message with optional attachments: the headers a mail client adds (Date,
//! Message-ID, From with a display name), built by [`mail_builder`] (RFC 2047 encoded words
//! for non-ASCII headers, MIME multipart for attachments, RFC 2231 for non-ASCII file names).
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
//! assert!(text.contains("From: \"Alice Example\" <alice@example.org>\r\n"));
//! assert!(text.contains("Subject: =?utf-8?B?R3LDvMOfZQ==?=\r\n"));
//! assert!(text.contains("Message-ID: <test.1@example.org>\r\n"));
//! assert!(text.ends_with("\r\n\r\nHallo!\r\n"));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::Header as _;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;

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
    attachments: Vec<Attachment>,
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
            attachments: Vec::new(),
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

    /// A file attached to the message (a MIME part with `content_type`, base64 when binary,
    /// its file name RFC 2231-encoded when it is not ASCII).
    #[must_use]
    pub fn with_attachment(
        mut self,
        file_name: impl Into<String>,
        content_type: impl Into<String>,
        content: impl Into<Vec<u8>>,
    ) -> Self {
        self.attachments.push(Attachment {
            file_name: strip_line_breaks(&file_name.into()),
            content_type: strip_line_breaks(&content_type.into()),
            content: content.into(),
        });
        self
    }

    /// The message as sent: CRLF line ends, non-ASCII headers encoded (RFC 2047), the body as
    /// text/plain, or multipart/mixed with the attachments.
    pub fn to_bytes(mut self) -> Vec<u8> {
        let id = self.message_id().to_owned();
        let id = strip_line_breaks(id.trim().trim_start_matches('<').trim_end_matches('>'));
        let secs = self
            .date
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let to = Address::new_list(
            self.to
                .iter()
                .map(|to| Address::new_address(None::<&str>, strip_line_breaks(to)))
                .collect(),
        );
        let mut body: String = self.body.lines().flat_map(|l| [l, "\r\n"]).collect();
        if body.is_empty() {
            body.push_str("\r\n");
        }
        let mut builder = MessageBuilder::new()
            .date(Date::new(secs))
            .from(mailbox(self.display_name.as_deref(), &self.from))
            .to(to)
            .subject(strip_line_breaks(&self.subject))
            .message_id(MessageId::new(id))
            .text_body(body);
        for (name, value) in self.extra_headers {
            builder = builder.header(name, Text::new(value));
        }
        for attachment in self.attachments {
            builder = builder.attachment(
                attachment.content_type,
                attachment.file_name,
                attachment.content,
            );
        }
        // Writing into a Vec cannot fail.
        builder.write_to_vec().unwrap_or_default()
    }
}

/// A file attached to a [`SimpleMessage`].
#[derive(Clone, PartialEq, Eq)]
struct Attachment {
    file_name: String,
    content_type: String,
    content: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.content.len())
            .finish()
    }
}

fn mailbox<'a>(display_name: Option<&str>, address: &str) -> Address<'a> {
    Address::new_address(
        display_name
            .filter(|name| !name.is_empty())
            .map(strip_line_breaks),
        strip_line_breaks(address),
    )
}

/// A From/To header value as [`mail_builder`] writes it: `<address>`, or `"name" <address>`
/// with the name RFC 2047-encoded when it is not ASCII; line breaks removed.
///
/// ```
/// use mail_account::compose::mailbox_header;
/// assert_eq!(mailbox_header(None, "a@example.org"), "<a@example.org>");
/// assert_eq!(mailbox_header(Some("Doe, J"), "a@example.org"), "\"Doe, J\" <a@example.org>");
/// assert_eq!(mailbox_header(Some("山田"), "a@example.jp"), "=?utf-8?B?5bGx55Sw?= <a@example.jp>");
/// ```
pub fn mailbox_header(display_name: Option<&str>, address: &str) -> String {
    let mut out = Vec::new();
    // The value starts after "From: ", which is where folding counts from.
    mailbox(display_name, address).write_header(&mut out, "From: ".len());
    let text = String::from_utf8_lossy(&out);
    text.strip_suffix("\r\n").unwrap_or(&text).to_owned()
}

fn strip_line_breaks(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
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

/// `Tue, 14 Nov 2023 22:13:20 +0000` (RFC 5322 §3.3), in UTC. One implementation for the
/// workspace: the embedded test server stamps its `Received` headers with it too.
pub use mail_common::date::rfc5322_date;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use mail_parser::{MessageParser, MimeHeaders as _};

    use super::{SimpleMessage, mailbox_header, rfc5322_date};

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
        assert_eq!(
            mailbox_header(Some("Alice"), "a@example.org"),
            "\"Alice\" <a@example.org>"
        );
        assert_eq!(
            mailbox_header(Some("Doe, John"), "a@example.org"),
            "\"Doe, John\" <a@example.org>"
        );
        assert!(mailbox_header(Some("山田"), "a@example.jp").starts_with("=?"));
    }

    /// Every RFC 2047 encoded word in `text`.
    fn encoded_words(text: &str) -> Vec<&str> {
        let mut words = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("=?") {
            let after = &rest[start + 2..];
            // charset ? encoding ? text ?=
            let Some(end) = after
                .match_indices("?=")
                .map(|(i, _)| i)
                .find(|&i| after[..i].matches('?').count() >= 2)
            else {
                break;
            };
            words.push(&rest[start..start + 2 + end + 2]);
            rest = &after[end + 2..];
        }
        words
    }

    #[test]
    fn long_names_become_several_encoded_words_of_at_most_75_characters() {
        let name = "山田 太郎 (株式会社サンプル・システムズ 東日本営業本部 第一営業部)";
        let bytes = SimpleMessage::new("taro@example.jp", ["b@example.org"], "s", "b")
            .with_display_name(name)
            .to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let header = &text[..text.find("\r\n\r\n").unwrap()];
        let words = encoded_words(header);
        assert!(words.len() > 1, "{header}");
        assert!(words.iter().all(|w| w.len() <= 75), "{words:?}");
        assert!(header.lines().all(|l| l.len() <= 78), "{header}");
        let parsed = MessageParser::new().parse(&bytes).unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some(name));
        assert_eq!(from.address(), Some("taro@example.jp"));
    }

    #[test]
    fn attachments_are_mime_parts_with_rfc2231_names() {
        let pdf = b"%PDF-1.4\n\x00\xff binary".to_vec();
        let bytes = SimpleMessage::new("a@example.org", ["b@example.org"], "添付", "本文です\n")
            .with_attachment("見積書.pdf", "application/pdf", pdf.clone())
            .with_attachment("notes.txt", "text/plain", "plain notes\n")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("filename*="), "RFC 2231: {text}");
        let parsed = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("添付"));
        assert_eq!(parsed.body_text(0).as_deref(), Some("本文です\r\n"));
        assert_eq!(parsed.attachment_count(), 2);
        let first = parsed.attachment(0).unwrap();
        assert_eq!(first.attachment_name(), Some("見積書.pdf"));
        assert_eq!(first.content_type().unwrap().ctype(), "application");
        assert_eq!(first.content_type().unwrap().subtype(), Some("pdf"));
        assert_eq!(first.contents(), pdf.as_slice());
        assert_eq!(parsed.attachment(1).unwrap().contents(), b"plain notes\n");
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
