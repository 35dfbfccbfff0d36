//! Deterministic, realistic message bodies for the codec benches.
//!
//! - [`text_76`]: prose wrapped at 76 columns, CRLF, about one line in 200 starting with a dot
//!   (as quoted signatures and ellipses do);
//! - [`base64_attachment`]: a MIME part whose body is base64 in 76-column lines, the bulk of
//!   most large mail;
//! - [`dot_heavy`]: the worst case, every line short and starting with a dot, so every line
//!   start needs stuffing (encode) or unstuffing (decode).
//!
//! [`pop3_wire`] turns a body into what a POP3 server sends for `RETR` (byte-stuffed, ended by
//! `.CRLF`); [`lf_only`] makes the Unix-style input an SMTP encoder has to normalise.

/// A small deterministic generator (xorshift), so every run benches the same bytes.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "message",
    "server",
    "client",
    "mailbox",
    "delivery",
    "of",
    "and",
    "to",
    "a",
    "protocol",
    "attachment",
    "please",
    "find",
    "meeting",
    "tomorrow",
    "regards",
    "with",
    "for",
    "report",
    "quarterly",
    "numbers",
    "is",
    "on",
    "in",
    "that",
    "we",
    "will",
    "review",
    "draft",
    "budget",
    "schedule",
    "thanks",
    "Monday",
    "project",
    "update",
    "team",
    "notes",
    "agenda",
];

/// About `size` bytes of prose in lines of at most 76 columns, CRLF-terminated.
pub fn text_76(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(size + 80);
    let mut line = String::new();
    while out.len() < size {
        let word = WORDS[rng.below(WORDS.len())];
        if line.len() + word.len() + 1 > 76 {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line.clear();
            if rng.below(12) == 0 {
                out.extend_from_slice(b"\r\n"); // paragraph break
            }
            if rng.below(200) == 0 {
                line.push_str("..."); // an ellipsis at a line start: stuffed on the wire
            }
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out
}

/// About `size` bytes of a MIME part with a base64 body in 76-column lines.
pub fn base64_attachment(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(size + 80);
    out.extend_from_slice(
        b"--boundary42\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
          Content-Transfer-Encoding: base64\r\n\
          Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n",
    );
    while out.len() < size {
        for _ in 0..76 {
            out.push(ALPHABET[rng.below(64)]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// About `size` bytes in which every line starts with a dot: the stuffing worst case.
pub fn dot_heavy(size: usize) -> Vec<u8> {
    const LINES: &[&[u8]] = &[b".", b"..", b".leading dot line", b"...", b". x", b".a"];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::with_capacity(size + 80);
    while out.len() < size {
        out.extend_from_slice(LINES[rng.below(LINES.len())]);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What a POP3 server sends for a body (CRLF line ends): every line starting with `.` gets a
/// second one, and `.CRLF` ends it.
pub fn pop3_wire(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16 + 8);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The body with every CRLF turned into a bare LF (a Unix-style message file).
pub fn lf_only(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let text = text_76(100_000);
        assert!(text.len() >= 100_000);
        for line in text.split(|&b| b == b'\n') {
            assert!(line.len() <= 77, "{}", String::from_utf8_lossy(line));
        }
        assert!(text.windows(3).any(|w| w == b"\n.."));
        let b64 = base64_attachment(10_000);
        assert!(b64.ends_with(b"\r\n"));
        let dots = dot_heavy(1000);
        assert!(
            dots.split(|&b| b == b'\n')
                .all(|l| l.is_empty() || l[0] == b'.')
        );
        assert_eq!(pop3_wire(b".a\r\nb\r\n"), b"..a\r\nb\r\n.\r\n");
        assert_eq!(lf_only(b"a\r\nb\r\n"), b"a\nb\n");
    }
}
