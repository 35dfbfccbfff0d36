//! What is on a POP3 server, without downloading bodies: number, size, unique-id, date,
//! sender and subject of each message, from `LIST`, `UIDL` and `TOP n 0`.
//!
//! Header fields are decoded by [`mail_parser`] (RFC 2047 encoded words in any charset it
//! knows, ISO-2022-JP, Shift_JIS and EUC-JP through `encoding_rs`). Real-world mail is often
//! broken, and a preview never fails because of one message: an encoded word with invalid
//! base64 or an unknown charset is shown as it was sent, raw 8-bit header bytes that are not
//! UTF-8 are decoded as the Japanese legacy charset they most likely are, and a header that
//! cannot be parsed at all leaves its fields empty.
//!
//! ```
//! use mail_account::preview::HeaderFields;
//!
//! let header = b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\n\
//!                Subject: =?Shift_JIS?B?g2WDWINn?=\r\n\
//!                Date: Tue, 14 Nov 2023 22:13:20 +0900\r\n\r\n";
//! let fields = HeaderFields::parse(header);
//! assert_eq!(fields.subject.as_deref(), Some("テスト"));
//! let from = fields.from.unwrap();
//! assert_eq!(from.name.as_deref(), Some("山田"));
//! assert_eq!(from.address.as_deref(), Some("yamada@example.jp"));
//! assert_eq!(fields.date.as_deref(), Some("2023-11-14T22:13:20+09:00"));
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pop3_proto::tokio as pop3;
use serde::Serialize;
use tokio::io::AsyncWrite;

use crate::connect::{ConnectError, LoginSecret, ServerSettings, pop3_error, pop3_login};

/// The sender of a message: display name and address, each if present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sender {
    /// The display name, decoded.
    pub name: Option<String>,
    /// The address.
    pub address: Option<String>,
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.address) {
            (Some(name), Some(address)) => write!(f, "{name} <{address}>"),
            (Some(text), None) | (None, Some(text)) => f.write_str(text),
            (None, None) => Ok(()),
        }
    }
}

/// The fields of a header that a preview shows, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HeaderFields {
    /// The Date header as RFC 3339 (`2023-11-14T22:13:20+09:00`), when it parses.
    pub date: Option<String>,
    /// The first address of the From header.
    pub from: Option<Sender>,
    /// The Subject header, decoded.
    pub subject: Option<String>,
}

impl HeaderFields {
    /// Parses a message header (the body, if present, is ignored). Never fails: what cannot
    /// be decoded stays empty or is shown as sent.
    pub fn parse(header: &[u8]) -> Self {
        let header = lenient_header_text(header);
        let Some(message) = mail_parser::MessageParser::new().parse_headers(header.as_bytes())
        else {
            return Self::default();
        };
        let from = message
            .from()
            .and_then(|from| from.first())
            .map(|addr| Sender {
                name: addr.name().map(str::to_owned).filter(|n| !n.is_empty()),
                address: addr.address().map(str::to_owned).filter(|a| !a.is_empty()),
            })
            .filter(|sender| sender.name.is_some() || sender.address.is_some());
        Self {
            date: message.date().map(mail_parser::DateTime::to_rfc3339),
            from,
            subject: message.subject().map(str::to_owned),
        }
    }
}

/// The header as text for the parser. RFC 5322 headers are ASCII (encoded words carry the
/// rest), and UTF-8 is allowed by RFC 6532; anything else is a legacy client writing raw
/// bytes. Old Japanese mailers write raw ISO-2022-JP (7-bit, with escape sequences) or raw
/// Shift_JIS/EUC-JP, so those are tried, in that order, before a lossy UTF-8 reading.
fn lenient_header_text(header: &[u8]) -> std::borrow::Cow<'_, str> {
    let has_iso2022_escape = header
        .windows(3)
        .any(|w| matches!(w, [0x1b, b'$', b'B' | b'@'] | [0x1b, b'(', b'J' | b'B']));
    if has_iso2022_escape {
        let (text, _, _) = encoding_rs::ISO_2022_JP.decode(header);
        return text;
    }
    if let Ok(text) = std::str::from_utf8(header) {
        return text.into();
    }
    for encoding in [encoding_rs::SHIFT_JIS, encoding_rs::EUC_JP] {
        if let Some(text) = encoding.decode_without_bom_handling_and_without_replacement(header) {
            return text;
        }
    }
    String::from_utf8_lossy(header)
}

/// One message on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagePreview {
    /// The message number in this session.
    pub number: u32,
    /// Its size in octets as the server counts them.
    pub size: u64,
    /// The unique-id (`UIDL`), when the server has the command.
    pub uid: Option<String>,
    /// Date, sender and subject.
    #[serde(flatten)]
    pub fields: HeaderFields,
    /// True when the header was longer than [`PreviewOptions::max_header_bytes`] and only its
    /// beginning was read.
    pub header_truncated: bool,
    /// The server's text when it refused `TOP` for this message (the fields are then empty).
    pub refused: Option<String>,
}

/// Options of [`preview`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PreviewOptions {
    /// At most this many bytes of each header are kept (the rest is read and discarded), so a
    /// hostile server cannot make the preview grow without bound. Default 64 KiB.
    pub max_header_bytes: usize,
    /// Only the last (newest) this many messages; `None` for all.
    pub last: Option<usize>,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            last: None,
        }
    }
}

/// Lists the messages of a logged-in session with `LIST`, `UIDL` (when offered) and
/// `TOP n 0` for each. Messages are not marked or changed.
///
/// # Errors
///
/// Any error of `LIST` or a fatal session error. A refused `UIDL` or `TOP` is not an error:
/// the uid or the fields stay empty.
pub async fn preview(
    session: &mut pop3::Session,
    options: &PreviewOptions,
) -> Result<Vec<MessagePreview>, pop3::Error> {
    let mut listing = session.list().await?;
    if let Some(last) = options.last {
        let skip = listing.len().saturating_sub(last);
        listing.drain(..skip);
    }
    let uids: std::collections::HashMap<u32, String> = match session.uidl().await {
        Ok(entries) => entries.into_iter().map(|e| (e.msg, e.uid)).collect(),
        Err(pop3::Error::Refused { .. }) => std::collections::HashMap::new(),
        Err(error) => return Err(error),
    };
    let mut previews = Vec::with_capacity(listing.len());
    for entry in listing {
        let mut header = CappedBuffer::new(options.max_header_bytes);
        let (fields, refused) = match session.top_to(entry.msg, 0, &mut header).await {
            Ok(_) => (HeaderFields::parse(&header.data), None),
            Err(pop3::Error::Refused { response, .. }) => {
                (HeaderFields::default(), Some(response.text.clone()))
            }
            Err(error) => return Err(error),
        };
        previews.push(MessagePreview {
            number: entry.msg,
            size: entry.size,
            uid: uids.get(&entry.msg).cloned(),
            fields,
            header_truncated: header.truncated,
            refused,
        });
    }
    Ok(previews)
}

/// Logs in to `server`, [`preview`]s the mailbox and logs out (`QUIT`; nothing is deleted).
///
/// # Errors
///
/// [`ConnectError`] for the login or the session.
pub async fn preview_account(
    server: &ServerSettings,
    secret: &LoginSecret,
    options: &PreviewOptions,
) -> Result<Vec<MessagePreview>, ConnectError> {
    let mut session = pop3_login(server, secret).await?;
    let previews = preview(&mut session, options)
        .await
        .map_err(|error| pop3_error(server, error))?;
    // Nothing was deleted: the reply to QUIT changes nothing, so it is not waited for.
    session
        .quit_without_waiting()
        .await
        .map_err(|error| pop3_error(server, error))?;
    Ok(previews)
}

/// A writer that keeps the first `limit` bytes and discards the rest.
struct CappedBuffer {
    data: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl CappedBuffer {
    const fn new(limit: usize) -> Self {
        Self {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = this.limit.saturating_sub(this.data.len());
        if buf.len() > room {
            this.truncated = true;
        }
        this.data.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderFields;

    fn subject(header: &[u8]) -> Option<String> {
        HeaderFields::parse(header).subject
    }

    #[test]
    fn encoded_words_in_japanese_charsets_are_decoded() {
        // 日本語 in ISO-2022-JP, B-encoded (how Japanese mobile and ISP mailers send it).
        assert_eq!(
            subject(b"Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\r\n\r\n").as_deref(),
            Some("日本語")
        );
        // テスト in Shift_JIS, B- and Q-encoded.
        assert_eq!(
            subject(b"Subject: =?Shift_JIS?B?g2WDWINn?=\r\n\r\n").as_deref(),
            Some("テスト")
        );
        assert_eq!(
            subject(b"Subject: =?shift_jis?Q?=83e=83X=83g?=\r\n\r\n").as_deref(),
            Some("テスト")
        );
        // Two adjacent encoded words: the white space between them disappears (RFC 2047 6.2).
        assert_eq!(
            subject(b"Subject: =?UTF-8?B?5pel5pys?=\r\n =?UTF-8?B?6Kqe?=\r\n\r\n").as_deref(),
            Some("日本語")
        );
    }

    #[test]
    fn broken_encodings_do_not_break_the_header() {
        // Invalid base64 and an unknown charset: shown, never a failure; the other fields
        // still parse.
        let fields = HeaderFields::parse(
            b"From: a@example.org\r\nSubject: =?UTF-8?B?@@@not base64!?= x\r\n\r\n",
        );
        assert_eq!(
            fields.from.unwrap().address.as_deref(),
            Some("a@example.org")
        );
        assert!(fields.subject.unwrap().ends_with('x'));
        let fields = HeaderFields::parse(b"Subject: =?x-no-such-charset?Q?abc?=\r\n\r\n");
        assert!(fields.subject.is_some());
        // Raw 8-bit Shift_JIS and raw ISO-2022-JP, no encoded words at all.
        let mut raw = b"Subject: ".to_vec();
        raw.extend_from_slice(&[0x83, 0x65, 0x83, 0x58, 0x83, 0x67]);
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(subject(&raw).as_deref(), Some("テスト"));
        assert_eq!(
            subject(b"Subject: \x1b$BF|K\\8l\x1b(B\r\n\r\n").as_deref(),
            Some("日本語")
        );
        // Nothing that looks like a header at all.
        assert_eq!(
            HeaderFields::parse(b"\xff\xfe\x00"),
            HeaderFields::default()
        );
    }
}
