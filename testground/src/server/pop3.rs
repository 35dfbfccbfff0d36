//! The POP3 server side (RFC 1939, with CAPA from RFC 2449, STLS from RFC 2595, AUTH from
//! RFC 5034).

use std::collections::HashSet;

use super::{
    Shared,
    conn::{Conn, ConnError, Line, split_command},
    sasl::{self, Exchange, Mech, Outcome},
    store::{MaildropLock, StoredMessage, uid_of},
};

const PLAINTEXT_REFUSED: &[u8] =
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
const AUTH_FAILED: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";

/// The TRANSACTION state: the maildrop as it was at login, and the deletion marks.
struct Transaction {
    lock: MaildropLock,
    messages: Vec<StoredMessage>,
    deleted: Vec<bool>,
}

impl Transaction {
    /// The message numbered `arg` (1-based), if it exists and is not marked deleted.
    fn get(&self, arg: &str) -> Result<(usize, &StoredMessage), &'static [u8]> {
        let n: usize = arg
            .parse()
            .map_err(|_| &b"-ERR Invalid message number\r\n"[..])?;
        let index = n.checked_sub(1).ok_or(&b"-ERR No such message\r\n"[..])?;
        let message = self
            .messages
            .get(index)
            .ok_or(&b"-ERR No such message\r\n"[..])?;
        if self.deleted[index] {
            return Err(b"-ERR Message is deleted\r\n");
        }
        Ok((n, message))
    }

    fn live(&self) -> impl Iterator<Item = (usize, &StoredMessage)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .map(|(i, m)| (i + 1, m))
    }
}

/// Serves one POP3 connection until QUIT, an error, or the peer leaving.
pub(crate) async fn run(conn: &mut Conn, shared: &Shared) {
    let _ = session(conn, shared).await;
}

/// Which mechanisms may be used now.
fn mechanisms(conn: &Conn, shared: &Shared) -> Vec<&'static str> {
    let mut mechs = Vec::new();
    if conn.is_tls() || shared.allow_plaintext_auth {
        mechs.extend(["PLAIN", "LOGIN"]);
    }
    mechs.extend(shared.hashed_mechanisms());
    mechs
}

fn capabilities(conn: &Conn, shared: &Shared, authenticated: bool) -> Vec<u8> {
    let mut out = b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n".to_vec();
    if !authenticated {
        if conn.is_tls() || shared.allow_plaintext_auth {
            out.extend_from_slice(b"USER\r\n");
        }
        let mechs = mechanisms(conn, shared);
        if !mechs.is_empty() {
            out.extend_from_slice(format!("SASL {}\r\n", mechs.join(" ")).as_bytes());
        }
        if !conn.is_tls() {
            out.extend_from_slice(b"STLS\r\n");
        }
    }
    out.extend_from_slice(b"IMPLEMENTATION mail-testground\r\n.\r\n");
    out
}

async fn session(conn: &mut Conn, shared: &Shared) -> Result<(), ConnError> {
    let timestamp = shared.timestamp();
    conn.send(format!("+OK mail-testground POP3 ready {timestamp}\r\n").as_bytes())
        .await?;
    let mut pending_user: Option<String> = None;
    let mut tx: Option<Transaction> = None;
    loop {
        let line = match conn.read_line(shared.max_line).await? {
            Line::TooLong => {
                conn.send(b"-ERR Line too long\r\n").await?;
                continue;
            }
            Line::Complete(line) => line,
        };
        let Some((verb, arg)) = split_command(&line) else {
            conn.send(b"-ERR Command is not UTF-8\r\n").await?;
            continue;
        };
        if verb == "CAPA" {
            conn.send(&capabilities(conn, shared, tx.is_some())).await?;
            continue;
        }
        let Some(t) = tx.as_mut() else {
            if verb == "QUIT" {
                conn.send(b"+OK Bye\r\n").await?;
                return Ok(());
            }
            let user =
                authorization(conn, shared, &timestamp, &verb, arg, &mut pending_user).await?;
            if let Some(user) = user {
                tx = login(conn, shared, &user).await?;
            }
            continue;
        };
        if verb == "QUIT" {
            let uids: HashSet<_> = t
                .messages
                .iter()
                .zip(&t.deleted)
                .filter(|(_, d)| **d)
                .map(|(m, _)| uid_of(m))
                .collect();
            shared.store.expunge(t.lock.user(), &uids);
            conn.send(format!("+OK Bye ({} messages deleted)\r\n", uids.len()).as_bytes())
                .await?;
            return Ok(());
        }
        let reply = transaction(t, &verb, arg);
        conn.send(&reply).await?;
    }
}

/// Handles a command of the AUTHORIZATION state; returns the user once credentials check out.
async fn authorization(
    conn: &mut Conn,
    shared: &Shared,
    timestamp: &str,
    verb: &str,
    arg: &str,
    pending_user: &mut Option<String>,
) -> Result<Option<String>, ConnError> {
    let cleartext_ok = conn.is_tls() || shared.allow_plaintext_auth;
    match verb {
        "STLS" => {
            if conn.is_tls() {
                conn.send(b"-ERR TLS is already active\r\n").await?;
            } else {
                conn.send(b"+OK Begin TLS negotiation now\r\n").await?;
                conn.upgrade(&shared.acceptor).await?;
                *pending_user = None;
            }
        }
        "USER" => {
            *pending_user = None;
            if !cleartext_ok {
                conn.send(PLAINTEXT_REFUSED).await?;
            } else if arg.is_empty() {
                conn.send(b"-ERR Missing user name\r\n").await?;
            } else {
                *pending_user = Some(arg.to_owned());
                conn.send(b"+OK\r\n").await?;
            }
        }
        "PASS" => {
            let Some(user) = pending_user.take() else {
                conn.send(b"-ERR No user name given (USER first)\r\n")
                    .await?;
                return Ok(None);
            };
            if !cleartext_ok {
                conn.send(PLAINTEXT_REFUSED).await?;
            } else if shared.store.check_password(&user, arg) {
                return Ok(Some(user));
            } else {
                conn.send(AUTH_FAILED).await?;
            }
        }
        "APOP" => {
            *pending_user = None;
            let Some((user, digest)) = arg.rsplit_once(' ') else {
                conn.send(b"-ERR Usage: APOP name digest\r\n").await?;
                return Ok(None);
            };
            let good = shared
                .store
                .password(user)
                .is_some_and(|p| sasl::apop_digest(timestamp, &p).eq_ignore_ascii_case(digest));
            if good {
                return Ok(Some(user.to_owned()));
            }
            conn.send(AUTH_FAILED).await?;
        }
        "AUTH" => {
            *pending_user = None;
            let mechs = mechanisms(conn, shared);
            if arg.is_empty() {
                let mut out = b"+OK\r\n".to_vec();
                for m in mechs {
                    out.extend_from_slice(m.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
                conn.send(&out).await?;
                return Ok(None);
            }
            let (name, initial) = match arg.split_once(' ') {
                Some((name, initial)) => (name, Some(initial)),
                None => (arg, None),
            };
            let mech = Mech::parse(name);
            let Some(mech) = mech.filter(|&m| shared.offers(m)) else {
                conn.send(b"-ERR Unsupported authentication mechanism\r\n")
                    .await?;
                return Ok(None);
            };
            if mech.is_plaintext() && !cleartext_ok {
                conn.send(PLAINTEXT_REFUSED).await?;
                return Ok(None);
            }
            let exchange = Exchange {
                prompt: "+ ",
                store: &shared.store,
                cram_challenge: timestamp,
                line_limit: shared.max_line,
            };
            match exchange.run(conn, mech, initial).await? {
                Outcome::Success(user) => return Ok(Some(user)),
                Outcome::Failed => conn.send(AUTH_FAILED).await?,
                Outcome::Cancelled => conn.send(b"-ERR Authentication cancelled\r\n").await?,
                Outcome::Malformed => {
                    conn.send(b"-ERR Malformed authentication response\r\n")
                        .await?;
                }
            }
        }
        "" => conn.send(b"-ERR Empty command\r\n").await?,
        "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" | "NOOP" => {
            conn.send(b"-ERR Not authenticated\r\n").await?;
        }
        _ => conn.send(b"-ERR Unknown command\r\n").await?,
    }
    Ok(None)
}

/// Takes the maildrop after a successful authentication.
async fn login(
    conn: &mut Conn,
    shared: &Shared,
    user: &str,
) -> Result<Option<Transaction>, ConnError> {
    let Some((lock, messages)) = shared.store.lock_maildrop(user) else {
        conn.send(b"-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n")
            .await?;
        return Ok(None);
    };
    let size: usize = messages.iter().map(StoredMessage::size).sum();
    conn.send(
        format!(
            "+OK Logged in, {} messages ({size} octets)\r\n",
            messages.len()
        )
        .as_bytes(),
    )
    .await?;
    Ok(Some(Transaction {
        lock,
        deleted: vec![false; messages.len()],
        messages,
    }))
}

/// Appends `body` dot-stuffed (a line starting with `.` gets another), then the terminator.
fn stuff_into(out: &mut Vec<u8>, body: &[u8]) {
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The header, the blank line, and the first `lines` lines of the body.
fn top(message: &[u8], lines: usize) -> &[u8] {
    let mut in_body = false;
    let mut body_lines = 0;
    let mut end = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_body {
            if body_lines == lines {
                break;
            }
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
        end += line.len();
    }
    &message[..end]
}

/// Handles a command of the TRANSACTION state (all but CAPA and QUIT).
fn transaction(t: &mut Transaction, verb: &str, arg: &str) -> Vec<u8> {
    let args: Vec<&str> = arg.split_whitespace().collect();
    let result: Result<Vec<u8>, &'static [u8]> = match (verb, args.as_slice()) {
        ("STAT", []) => {
            let (count, size) = t
                .live()
                .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size()));
            Ok(format!("+OK {count} {size}\r\n").into_bytes())
        }
        ("LIST", []) => {
            let mut out = b"+OK Scan listing follows\r\n".to_vec();
            for (n, m) in t.live() {
                out.extend_from_slice(format!("{n} {}\r\n", m.size()).as_bytes());
            }
            out.extend_from_slice(b".\r\n");
            Ok(out)
        }
        ("LIST", [n]) => t
            .get(n)
            .map(|(n, m)| format!("+OK {n} {}\r\n", m.size()).into_bytes()),
        ("UIDL", []) => {
            let mut out = b"+OK Unique-id listing follows\r\n".to_vec();
            for (n, m) in t.live() {
                out.extend_from_slice(format!("{n} {}\r\n", m.uid()).as_bytes());
            }
            out.extend_from_slice(b".\r\n");
            Ok(out)
        }
        ("UIDL", [n]) => t
            .get(n)
            .map(|(n, m)| format!("+OK {n} {}\r\n", m.uid()).into_bytes()),
        ("RETR", [n]) => t.get(n).map(|(_, m)| {
            let mut out = format!("+OK {} octets\r\n", m.size()).into_bytes();
            stuff_into(&mut out, m.bytes());
            out
        }),
        ("TOP", [n, lines]) => match lines.parse::<usize>() {
            Err(_) => Err(&b"-ERR Invalid line count\r\n"[..]),
            Ok(lines) => t.get(n).map(|(_, m)| {
                let mut out = b"+OK Top of message follows\r\n".to_vec();
                stuff_into(&mut out, top(m.bytes(), lines));
                out
            }),
        },
        ("DELE", [n]) => match t.get(n) {
            Ok((n, _)) => {
                t.deleted[n - 1] = true;
                Ok(format!("+OK Message {n} deleted\r\n").into_bytes())
            }
            Err(e) => Err(e),
        },
        ("RSET", []) => {
            t.deleted.iter_mut().for_each(|d| *d = false);
            Ok(format!("+OK {} messages\r\n", t.messages.len()).into_bytes())
        }
        ("NOOP", []) => Ok(b"+OK\r\n".to_vec()),
        ("STLS" | "USER" | "PASS" | "APOP" | "AUTH", _) => {
            Err(&b"-ERR Already authenticated\r\n"[..])
        }
        ("STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" | "NOOP", _) => {
            Err(&b"-ERR Wrong number of arguments\r\n"[..])
        }
        _ => Err(&b"-ERR Unknown command\r\n"[..]),
    };
    result.unwrap_or_else(|e| e.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        stuff_into(&mut out, b".a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(out, b"..a\r\nb\r\n...\r\n..\r\n.\r\n");
        let mut empty = Vec::new();
        stuff_into(&mut empty, b"");
        assert_eq!(empty, b".\r\n");
    }

    #[test]
    fn top_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(m, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(m, 99), m);
        assert_eq!(top(b"A: 1\r\n", 3), b"A: 1\r\n");
    }
}
