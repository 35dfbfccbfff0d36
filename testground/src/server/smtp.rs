//! The SMTP submission server side (RFC 5321 and 6409, with STARTTLS from RFC 3207, AUTH from
//! RFC 4954, CHUNKING from RFC 3030, SMTPUTF8 from RFC 6531).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use super::{
    Shared,
    conn::{Conn, ConnError, Line, split_command, strip_eol},
    rfc5322_now,
    sasl::{Exchange, Mech, Outcome},
};

/// An open mail transaction (after MAIL).
struct Transaction {
    /// Local users accepted by RCPT, as the client spelled them.
    recipients: Vec<String>,
    /// The message as received so far (DATA: un-stuffed, CRLF; BDAT: the raw chunks).
    body: Vec<u8>,
    /// The message went over the size limit: the rest is read and thrown away.
    too_big: bool,
    /// BDAT was used, so DATA may no longer be.
    chunking: bool,
}

struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    /// The EHLO/HELO argument, and whether it was EHLO.
    helo: Option<(String, bool)>,
    authenticated: bool,
    tx: Option<Transaction>,
}

/// Serves one SMTP connection until QUIT, an error, or the peer leaving.
pub(crate) async fn run(conn: &mut Conn, shared: &Shared, peer: SocketAddr) {
    let mut session = Session {
        shared,
        peer,
        helo: None,
        authenticated: false,
        tx: None,
    };
    let _ = session.serve(conn).await;
}

/// What a command handler wants next.
enum Next {
    Continue,
    Close,
}

/// Parses `FROM:<path> params` / `TO:<path> params` (keyword case-insensitive, a space after the
/// colon tolerated). Returns the path without brackets and the parameter text.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg.get(keyword.len()..)?.trim_start().strip_prefix('<')?;
    let end = rest.find('>')?;
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    Some((&rest[..end], params.trim()))
}

/// Replaces control characters (a client's EHLO or address going into a header) with `?`.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn next_queue_id() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    format!("TS{:010X}", SERIAL.fetch_add(1, Ordering::Relaxed))
}

impl Session<'_> {
    async fn serve(&mut self, conn: &mut Conn) -> Result<(), ConnError> {
        let greeting = format!("220 {} ESMTP mail-testground\r\n", self.shared.hostname);
        conn.send(greeting.as_bytes()).await?;
        loop {
            let line = match conn.read_line(self.shared.max_line).await? {
                Line::TooLong => {
                    conn.send(b"500 5.5.2 Line too long\r\n").await?;
                    continue;
                }
                Line::Complete(line) => line,
            };
            let Some((verb, arg)) = split_command(&line) else {
                conn.send(b"500 5.5.2 Command is not UTF-8\r\n").await?;
                continue;
            };
            if let Next::Close = self.command(conn, &verb, arg).await? {
                return Ok(());
            }
        }
    }

    async fn command(&mut self, conn: &mut Conn, verb: &str, arg: &str) -> Result<Next, ConnError> {
        let reply: String = match verb {
            "EHLO" | "HELO" => self.hello(conn, verb == "EHLO", arg.trim()),
            "STARTTLS" => {
                if conn.is_tls() {
                    "503 5.5.1 TLS already active".into()
                } else if !arg.trim().is_empty() {
                    "501 5.5.4 Syntax: STARTTLS".into()
                } else {
                    conn.send(b"220 2.0.0 Ready to start TLS\r\n").await?;
                    conn.upgrade(&self.shared.acceptor).await?;
                    // RFC 3207 section 4.2: forget everything learnt in the clear.
                    self.helo = None;
                    self.authenticated = false;
                    self.tx = None;
                    return Ok(Next::Continue);
                }
            }
            "AUTH" => self.auth(conn, arg).await?,
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => return self.data(conn, arg).await,
            "BDAT" => return self.bdat(conn, arg).await,
            "RSET" => {
                self.tx = None;
                "250 2.0.0 Ok".into()
            }
            "NOOP" => "250 2.0.0 Ok".into(),
            "VRFY" => "252 2.0.0 Cannot VRFY user, but will accept message".into(),
            "HELP" => "214 2.0.0 mail-testground: see RFC 5321".into(),
            "QUIT" => {
                conn.send(b"221 2.0.0 Bye\r\n").await?;
                return Ok(Next::Close);
            }
            "" => "500 5.5.2 Error: bad syntax".into(),
            _ => "502 5.5.2 Error: command not recognized".into(),
        };
        conn.send(format!("{reply}\r\n").as_bytes()).await?;
        Ok(Next::Continue)
    }

    fn auth_offered(&self, conn: &Conn) -> bool {
        conn.is_tls() || self.shared.allow_plaintext_auth
    }

    fn hello(&mut self, conn: &Conn, extended: bool, domain: &str) -> String {
        if domain.is_empty() {
            return format!(
                "501 5.5.4 Syntax: {} hostname",
                if extended { "EHLO" } else { "HELO" }
            );
        }
        self.helo = Some((domain.to_owned(), extended));
        self.tx = None;
        let host = &self.shared.hostname;
        if !extended {
            return format!("250 {host}");
        }
        let mut lines = vec![
            format!("{host} Hello {}", header_safe(domain)),
            "PIPELINING".into(),
            format!("SIZE {}", self.shared.max_message),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if !conn.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered(conn) {
            let mut mechs = vec!["PLAIN", "LOGIN"];
            mechs.extend(self.shared.hashed_mechanisms());
            lines.push(format!("AUTH {}", mechs.join(" ")));
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    async fn auth(&mut self, conn: &mut Conn, arg: &str) -> Result<String, ConnError> {
        if self.helo.is_none() {
            return Ok("503 5.5.1 Error: send EHLO first".into());
        }
        if self.authenticated {
            return Ok("503 5.5.1 Error: already authenticated".into());
        }
        if self.tx.is_some() {
            return Ok("503 5.5.1 Error: AUTH not allowed during a mail transaction".into());
        }
        if !self.auth_offered(conn) {
            return Ok(
                "538 5.7.11 Encryption required for requested authentication mechanism".into(),
            );
        }
        let (name, initial) = match arg.trim().split_once(' ') {
            Some((name, initial)) => (name, Some(initial)),
            None => (arg.trim(), None),
        };
        let mech = Mech::parse(name).filter(|&m| self.shared.offers(m));
        let Some(mech) = mech else {
            return Ok("504 5.5.4 Unrecognized authentication type".into());
        };
        let challenge = self.shared.timestamp();
        let exchange = Exchange {
            prompt: "334 ",
            store: &self.shared.store,
            cram_challenge: &challenge,
            line_limit: self.shared.max_line,
        };
        Ok(match exchange.run(conn, mech, initial).await? {
            Outcome::Success(_) => {
                self.authenticated = true;
                "235 2.7.0 Authentication successful".into()
            }
            Outcome::Failed => "535 5.7.8 Authentication credentials invalid".into(),
            Outcome::Cancelled => "501 5.7.0 Authentication cancelled".into(),
            Outcome::Malformed => "501 5.5.2 Malformed authentication response".into(),
        })
    }

    fn mail(&mut self, arg: &str) -> String {
        if self.helo.is_none() {
            return "503 5.5.1 Error: send HELO/EHLO first".into();
        }
        if self.shared.require_smtp_auth && !self.authenticated {
            return "530 5.7.0 Authentication required".into();
        }
        if self.tx.is_some() {
            return "503 5.5.1 Error: nested MAIL command".into();
        }
        let Some((path, params)) = parse_path(arg, "FROM:") else {
            return "501 5.5.4 Syntax: MAIL FROM:<address>".into();
        };
        let mut utf8 = false;
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) if size > self.shared.max_message as u64 => {
                        return "552 5.3.4 Message size exceeds fixed limit".into();
                    }
                    Ok(_) => {}
                    Err(_) => return "501 5.5.4 Bad SIZE parameter".into(),
                },
                "BODY" => {
                    if !["7BIT", "8BITMIME"]
                        .iter()
                        .any(|b| b.eq_ignore_ascii_case(value))
                    {
                        return "555 5.5.4 Unsupported BODY type".into();
                    }
                }
                "SMTPUTF8" if value.is_empty() => utf8 = true,
                // RFC 4954 section 5: accepted and ignored.
                "AUTH" => {}
                _ => return format!("555 5.5.4 Unsupported parameter {}", header_safe(key)),
            }
        }
        if !utf8 && !path.is_ascii() {
            return "553 5.6.7 Non-ASCII address requires SMTPUTF8".into();
        }
        self.tx = Some(Transaction {
            recipients: Vec::new(),
            body: Vec::new(),
            too_big: false,
            chunking: false,
        });
        "250 2.1.0 Ok".into()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        let max = self.shared.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return "503 5.5.1 Error: need MAIL command".into();
        };
        let Some((path, params)) = parse_path(arg, "TO:") else {
            return "501 5.5.4 Syntax: RCPT TO:<address>".into();
        };
        if !params.is_empty() {
            return "555 5.5.4 Unsupported RCPT parameter".into();
        }
        if path.is_empty() {
            return "501 5.1.3 Bad recipient address syntax".into();
        }
        if tx.recipients.len() >= max {
            return "452 4.5.3 Error: too many recipients".into();
        }
        if !self.shared.store.has_user(path) {
            return format!(
                "550 5.1.1 <{}>: Recipient address rejected: User unknown",
                header_safe(path)
            );
        }
        tx.recipients.push(path.to_owned());
        "250 2.1.5 Ok".into()
    }

    async fn data(&mut self, conn: &mut Conn, arg: &str) -> Result<Next, ConnError> {
        let refusal = match self.tx.as_ref() {
            _ if !arg.trim().is_empty() => Some("501 5.5.4 Syntax: DATA"),
            None => Some("503 5.5.1 Error: need RCPT command"),
            Some(tx) if tx.chunking => Some("503 5.5.1 Error: DATA after BDAT"),
            Some(tx) if tx.recipients.is_empty() => Some("554 5.5.1 Error: no valid recipients"),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            conn.send(format!("{refusal}\r\n").as_bytes()).await?;
            return Ok(Next::Continue);
        }
        conn.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .await?;
        let max = self.shared.max_message;
        // A data line may be as long as the whole message; memory stays bounded by the limit.
        let line_limit = max.saturating_add(2).max(self.shared.max_line);
        let mut body = Vec::new();
        let mut too_big = false;
        loop {
            let line = match conn.read_line(line_limit).await? {
                Line::TooLong => {
                    too_big = true;
                    continue;
                }
                Line::Complete(line) => line,
            };
            let content = strip_eol(&line);
            if content == b"." {
                break;
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            if too_big || body.len() + content.len() + 2 > max {
                too_big = true;
                continue;
            }
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        let recipients = self.tx.take().map(|tx| tx.recipients).unwrap_or_default();
        let reply = if too_big {
            "552 5.3.4 Error: message too big".to_owned()
        } else {
            self.deliver(conn, &recipients, &body)
        };
        conn.send(format!("{reply}\r\n").as_bytes()).await?;
        Ok(Next::Continue)
    }

    async fn bdat(&mut self, conn: &mut Conn, arg: &str) -> Result<Next, ConnError> {
        let args: Vec<&str> = arg.split_whitespace().collect();
        let (size, last) = match args.as_slice() {
            [size] => (size.parse::<u64>().ok(), false),
            [size, last] if last.eq_ignore_ascii_case("LAST") => (size.parse::<u64>().ok(), true),
            _ => (None, false),
        };
        let Some(size) = size else {
            // The chunk length is unknown, so the byte stream cannot be followed any more.
            conn.send(b"501 5.5.4 Syntax: BDAT size [LAST]; closing connection\r\n")
                .await?;
            return Ok(Next::Close);
        };
        let max = self.shared.max_message as u64;
        let Some(tx) = self.tx.as_mut() else {
            conn.read_exact_into(size, None).await?;
            conn.send(b"503 5.5.1 Error: need MAIL command\r\n").await?;
            return Ok(Next::Continue);
        };
        tx.chunking = true;
        if tx.recipients.is_empty() {
            conn.read_exact_into(size, None).await?;
            self.tx = None;
            conn.send(b"554 5.5.1 Error: no valid recipients\r\n")
                .await?;
            return Ok(Next::Continue);
        }
        if tx.too_big || tx.body.len() as u64 + size > max {
            tx.too_big = true;
            conn.read_exact_into(size, None).await?;
        } else {
            conn.read_exact_into(size, Some(&mut tx.body)).await?;
        }
        let reply = match (last, tx.too_big) {
            (_, true) => {
                if last {
                    self.tx = None;
                }
                "552 5.3.4 Error: message too big".to_owned()
            }
            (false, false) => format!("250 2.0.0 {size} octets received"),
            (true, false) => {
                let body = std::mem::take(&mut tx.body);
                let recipients = std::mem::take(&mut tx.recipients);
                self.tx = None;
                self.deliver(conn, &recipients, &body)
            }
        };
        conn.send(format!("{reply}\r\n").as_bytes()).await?;
        Ok(Next::Continue)
    }

    /// Stores the message for every recipient, each copy with its own `Received` header, and
    /// returns the reply.
    fn deliver(&self, conn: &Conn, recipients: &[String], body: &[u8]) -> String {
        let id = next_queue_id();
        let (helo, extended) = self.helo.clone().unwrap_or_default();
        let with = format!(
            "{}{}{}",
            if extended { "ESMTP" } else { "SMTP" },
            if conn.is_tls() { "S" } else { "" },
            if self.authenticated { "A" } else { "" }
        );
        let date = rfc5322_now();
        for rcpt in recipients {
            let mut message = format!(
                "Received: from {} ([{}])\r\n\tby {} (mail-testground) with {with} id {id}\r\n\tfor <{}>; {date}\r\n",
                header_safe(&helo),
                self.peer.ip(),
                self.shared.hostname,
                header_safe(rcpt),
            )
            .into_bytes();
            message.extend_from_slice(body);
            self.shared.store.add_message(rcpt, &message);
        }
        format!("250 2.0.0 Ok: queued as {id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("FROM:<a@b>", "FROM:"), Some(("a@b", "")));
        assert_eq!(
            parse_path("from: <a@b> SIZE=5", "FROM:"),
            Some(("a@b", "SIZE=5"))
        );
        assert_eq!(parse_path("FROM:<>", "FROM:"), Some(("", "")));
        assert_eq!(parse_path("FROM:a@b", "FROM:"), None);
        assert_eq!(parse_path("FROM:<a@b>x", "FROM:"), None);
        assert_eq!(parse_path("TO:<a@b", "TO:"), None);
        assert_eq!(parse_path("é", "FROM:"), None);
        assert_eq!(parse_path("", "TO:"), None);
    }
}
