//! The server side of the SASL mechanisms both protocols offer: PLAIN, LOGIN and CRAM-MD5.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::{
    conn::{Conn, ConnError, Line, strip_eol},
    store::MailStore,
};

/// A mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mech {
    Plain,
    Login,
    CramMd5,
}

impl Mech {
    /// Parses a mechanism name (case-insensitive).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Self::Plain),
            "LOGIN" => Some(Self::Login),
            "CRAM-MD5" => Some(Self::CramMd5),
            _ => None,
        }
    }

    /// Whether the mechanism sends the password itself (readable without TLS).
    pub(crate) fn is_plaintext(self) -> bool {
        matches!(self, Self::Plain | Self::Login)
    }
}

/// How an exchange ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The credentials are right, for this user (as the client spelled it).
    Success(String),
    /// Wrong user name or password.
    Failed,
    /// The client sent `*`.
    Cancelled,
    /// Bad base64, a missing part, an overlong line, or a disallowed initial response.
    Malformed,
}

/// What the exchange needs from the session.
pub(crate) struct Exchange<'a> {
    /// The continuation prefix: `"334 "` for SMTP, `"+ "` for POP3.
    pub(crate) prompt: &'static str,
    pub(crate) store: &'a MailStore,
    /// The challenge string for CRAM-MD5 (an RFC 822 msg-id style `<...@host>`).
    pub(crate) cram_challenge: &'a str,
    pub(crate) line_limit: usize,
}

enum Reply {
    Data(Vec<u8>),
    Cancel,
    Bad,
}

fn decode(text: &str) -> Reply {
    match text.trim() {
        "*" => Reply::Cancel,
        "=" => Reply::Data(Vec::new()),
        t => STANDARD.decode(t).map_or(Reply::Bad, Reply::Data),
    }
}

impl Exchange<'_> {
    async fn challenge(&self, conn: &mut Conn, data: &[u8]) -> Result<Reply, ConnError> {
        let line = format!("{}{}\r\n", self.prompt, STANDARD.encode(data));
        conn.send(line.as_bytes()).await?;
        Ok(match conn.read_line(self.line_limit).await? {
            Line::TooLong => Reply::Bad,
            Line::Complete(raw) => match std::str::from_utf8(strip_eol(&raw)) {
                Ok(text) => decode(text),
                Err(_) => Reply::Bad,
            },
        })
    }

    /// Runs `mech` with the optional initial response (still base64) to its end.
    pub(crate) async fn run(
        &self,
        conn: &mut Conn,
        mech: Mech,
        initial: Option<&str>,
    ) -> Result<Outcome, ConnError> {
        let initial = initial.map(decode);
        macro_rules! data {
            ($reply:expr) => {
                match $reply {
                    Reply::Data(d) => d,
                    Reply::Cancel => return Ok(Outcome::Cancelled),
                    Reply::Bad => return Ok(Outcome::Malformed),
                }
            };
        }
        match mech {
            Mech::Plain => {
                let message = match initial {
                    Some(reply) => data!(reply),
                    None => data!(self.challenge(conn, b"").await?),
                };
                let mut parts = message.split(|&b| b == 0);
                let (Some(authz), Some(authc), Some(pass), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Ok(Outcome::Malformed);
                };
                let (Ok(authz), Ok(authc), Ok(pass)) = (
                    std::str::from_utf8(authz),
                    std::str::from_utf8(authc),
                    std::str::from_utf8(pass),
                ) else {
                    return Ok(Outcome::Failed);
                };
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
                    return Ok(Outcome::Failed);
                }
                Ok(self.verdict(authc, pass))
            }
            Mech::Login => {
                let user = match initial {
                    Some(reply) => data!(reply),
                    None => data!(self.challenge(conn, b"Username:").await?),
                };
                let pass = data!(self.challenge(conn, b"Password:").await?);
                let (Ok(user), Ok(pass)) = (String::from_utf8(user), String::from_utf8(pass))
                else {
                    return Ok(Outcome::Failed);
                };
                Ok(self.verdict(&user, &pass))
            }
            Mech::CramMd5 => {
                if initial.is_some() {
                    return Ok(Outcome::Malformed);
                }
                let reply = data!(self.challenge(conn, self.cram_challenge.as_bytes()).await?);
                let Ok(reply) = String::from_utf8(reply) else {
                    return Ok(Outcome::Failed);
                };
                let Some((user, digest)) = reply.rsplit_once(' ') else {
                    return Ok(Outcome::Malformed);
                };
                let Some(password) = self.store.password(user) else {
                    return Ok(Outcome::Failed);
                };
                let expected = cram_md5_digest(&password, self.cram_challenge);
                if digest.eq_ignore_ascii_case(&expected) {
                    Ok(Outcome::Success(user.to_owned()))
                } else {
                    Ok(Outcome::Failed)
                }
            }
        }
    }

    fn verdict(&self, user: &str, pass: &str) -> Outcome {
        if self.store.check_password(user, pass) {
            Outcome::Success(user.to_owned())
        } else {
            Outcome::Failed
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The CRAM-MD5 response digest (RFC 2195): lower-case hex of HMAC-MD5(password, challenge).
pub(crate) fn cram_md5_digest(password: &str, challenge: &str) -> String {
    let Ok(mut mac) = Hmac::<Md5>::new_from_slice(password.as_bytes()) else {
        return String::new();
    };
    mac.update(challenge.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The APOP digest (RFC 1939 section 7): lower-case hex of MD5(timestamp || password).
pub(crate) fn apop_digest(timestamp: &str, password: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(password.as_bytes());
    hex(&md5.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_digests() {
        // RFC 1939 section 7 example.
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        // RFC 2195 example.
        assert_eq!(
            cram_md5_digest(
                "tanstaaftanstaaf",
                "<1896.697170952@postoffice.reston.mci.net>"
            ),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
    }
}
