//! What a sendmail-compatible program does to a message before submitting it: recipients from
//! the To, Cc and Bcc headers (`sendmail -t`), Bcc removed, a missing header added.
//!
//! ```
//! use mail_account::headers::{has_header, header_recipients, remove_header};
//!
//! let message = b"From: a@example.org\r\nTo: Bob <b@example.org>, c@example.org\r\n\
//!                 Bcc: hidden@example.org,\r\n  also-hidden@example.org\r\n\r\nbody\r\n";
//! assert_eq!(
//!     header_recipients(message),
//!     ["b@example.org", "c@example.org", "hidden@example.org", "also-hidden@example.org"]
//! );
//! let sent = remove_header(message, "bcc");
//! assert!(!has_header(&sent, "Bcc"));
//! assert!(sent.ends_with(b"c@example.org\r\n\r\nbody\r\n"));
//! ```

/// The length of the header section, up to and including the empty line that ends it (or
/// the whole input when there is no body).
pub fn header_len(message: &[u8]) -> usize {
    let mut start = 0;
    while start < message.len() {
        let end = memchr::memchr(b'\n', &message[start..]).map_or(message.len(), |i| start + i + 1);
        let line = &message[start..end];
        if line == b"\n" || line == b"\r\n" {
            return end;
        }
        start = end;
    }
    message.len()
}

/// Splits the header section into fields, each with its continuation lines.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    while start < header.len() {
        let end = memchr::memchr(b'\n', &header[start..]).map_or(header.len(), |i| start + i + 1);
        let continuation = matches!(header[start], b' ' | b'\t');
        match fields.last_mut() {
            Some(last) if continuation => last.1 = end,
            _ => fields.push((start, end)),
        }
        start = end;
    }
    fields.into_iter().map(|(s, e)| &header[s..e]).collect()
}

fn field_name(field: &[u8]) -> &[u8] {
    let colon = memchr::memchr(b':', field).unwrap_or(field.len());
    field[..colon].trim_ascii_end()
}

/// True when the header section has a field `name` (case-insensitive).
pub fn has_header(message: &[u8], name: &str) -> bool {
    let header = &message[..header_len(message)];
    fields(header)
        .iter()
        .any(|f| field_name(f).eq_ignore_ascii_case(name.as_bytes()))
}

/// The message without the header fields `name` (case-insensitive), continuation lines
/// included; the body is untouched.
pub fn remove_header(message: &[u8], name: &str) -> Vec<u8> {
    let split = header_len(message);
    let (header, body) = message.split_at(split);
    let mut out = Vec::with_capacity(message.len());
    for field in fields(header) {
        if !field_name(field).eq_ignore_ascii_case(name.as_bytes()) {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(body);
    out
}

/// The addresses of the To, Cc and Bcc headers, in that order, duplicates removed (groups
/// included; display names dropped). Parsed by [`mail_parser`], leniently.
pub fn header_recipients(message: &[u8]) -> Vec<String> {
    let header = &message[..header_len(message)];
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(header) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
    {
        for addr in list.iter() {
            if let Some(address) = addr.address()
                && !address.is_empty()
                && !out.iter().any(|seen| seen.eq_ignore_ascii_case(address))
            {
                out.push(address.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{has_header, header_len, header_recipients, remove_header};

    #[test]
    fn recipients_from_groups_display_names_and_folded_lines() {
        let message = b"To: \"Doe, John\" <john@example.org>,\n\tundisclosed:;\nCc: team: a@example.org, b@example.org;\nBCC: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\nSubject: To: fake@example.org\n\nTo: body@example.org\n";
        assert_eq!(
            header_recipients(message),
            [
                "john@example.org",
                "a@example.org",
                "b@example.org",
                "yamada@example.jp"
            ]
        );
    }

    #[test]
    fn bcc_is_removed_with_its_continuation_and_only_in_the_header() {
        let message = b"To: a@example.org\nBcc: x@example.org,\n y@example.org\nSubject: s\n\nBcc: stays in the body\n";
        let sent = remove_header(message, "BCC");
        assert_eq!(
            sent,
            b"To: a@example.org\nSubject: s\n\nBcc: stays in the body\n"
        );
        assert!(!has_header(&sent, "bcc"));
        assert!(has_header(&sent, "subject"));
        assert_eq!(header_len(b"no body"), 7);
        assert_eq!(remove_header(b"", "Bcc"), b"");
    }
}
