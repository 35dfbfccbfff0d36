//! The server side of the SASL mechanisms both protocols offer: PLAIN, LOGIN, CRAM-MD5,
//! SCRAM-SHA-1 and SCRAM-SHA-256 (what Dovecot offers, and Postfix through it).

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::{
    conn::{Conn, ConnError, Line, strip_eol},
    store::MailStore,
};

/// A mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mech {
    Plain,
    Login,
    CramMd5,
    ScramSha1,
    ScramSha256,
}

impl Mech {
    /// Parses a mechanism name (case-insensitive).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Self::Plain),
            "LOGIN" => Some(Self::Login),
            "CRAM-MD5" => Some(Self::CramMd5),
            "SCRAM-SHA-1" => Some(Self::ScramSha1),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
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
            Mech::ScramSha1 | Mech::ScramSha256 => {
                let first = match initial {
                    Some(reply) => data!(reply),
                    None => data!(self.challenge(conn, b"").await?),
                };
                let Some(first) = ClientFirst::parse(&first) else {
                    return Ok(Outcome::Malformed);
                };
                let hash = if mech == Mech::ScramSha1 {
                    ScramHash::Sha1
                } else {
                    ScramHash::Sha256
                };
                let nonce = format!("{}{}", first.nonce, server_nonce());
                let salt = hash.digest(format!("testserver salt for {}", first.user).as_bytes());
                let server_first = format!(
                    "r={nonce},s={},i={SCRAM_ITERATIONS}",
                    STANDARD.encode(&salt[..16])
                );
                let reply = data!(self.challenge(conn, server_first.as_bytes()).await?);
                let Ok(client_final) = String::from_utf8(reply) else {
                    return Ok(Outcome::Malformed);
                };
                let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
                    return Ok(Outcome::Malformed);
                };
                // No channel binding: c= repeats the GS2 header; r= is the combined nonce.
                if without_proof != format!("c={},r={nonce}", STANDARD.encode(first.gs2_header)) {
                    return Ok(Outcome::Malformed);
                }
                let Ok(proof) = STANDARD.decode(proof) else {
                    return Ok(Outcome::Malformed);
                };
                let Some(password) = self.store.password(&first.user) else {
                    return Ok(Outcome::Failed);
                };
                let auth_message = format!("{},{server_first},{without_proof}", first.bare);
                let Some(server_signature) =
                    hash.verify(&password, &salt[..16], auth_message.as_bytes(), &proof)
                else {
                    return Ok(Outcome::Failed);
                };
                // The server-final message as a last challenge, answered with an empty line,
                // as Dovecot sends it (POP3 has no other way; SMTP could use 235's text).
                let verifier = format!("v={}", STANDARD.encode(server_signature));
                match self.challenge(conn, verifier.as_bytes()).await? {
                    Reply::Data(empty) if empty.is_empty() => Ok(Outcome::Success(first.user)),
                    Reply::Cancel => Ok(Outcome::Cancelled),
                    Reply::Data(_) | Reply::Bad => Ok(Outcome::Malformed),
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

/// PBKDF2 iterations the server asks for: RFC 7677's recommended minimum.
const SCRAM_ITERATIONS: u32 = 4096;

/// A fresh server part of the SCRAM nonce (printable, no `,`).
fn server_nonce() -> String {
    let mut bytes = [0u8; 18];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique is enough for a test server.
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&serial.to_be_bytes());
    }
    STANDARD.encode(bytes)
}

/// The parts of a SCRAM client-first message the server needs.
struct ClientFirst<'a> {
    /// `n,,` or `y,,` (channel binding is not offered; an authzid is not supported).
    gs2_header: &'a str,
    /// Everything after the GS2 header.
    bare: &'a str,
    /// The user name, `=2C` and `=3D` decoded.
    user: String,
    nonce: &'a str,
}

impl<'a> ClientFirst<'a> {
    fn parse(message: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(message).ok()?;
        let gs2_header = text.get(..3).filter(|h| *h == "n,," || *h == "y,,")?;
        let bare = &text[3..];
        let mut attributes = bare.split(',');
        let user = attributes.next()?.strip_prefix("n=")?;
        let nonce = attributes.next()?.strip_prefix("r=")?;
        if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        Some(Self {
            gs2_header,
            bare,
            user: user.replace("=2C", ",").replace("=3D", "="),
            nonce,
        })
    }
}

#[derive(Clone, Copy)]
enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
                return Vec::new();
            };
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha1 => run::<Hmac<Sha1>>(key, data),
            Self::Sha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    /// RFC 5802 section 3: checks the client proof; returns the server signature if it is right.
    fn verify(
        self,
        password: &str,
        salt: &[u8],
        auth_message: &[u8],
        proof: &[u8],
    ) -> Option<Vec<u8>> {
        let mut salted = vec![0u8; self.digest(b"").len()];
        match self {
            Self::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(
                    password.as_bytes(),
                    salt,
                    SCRAM_ITERATIONS,
                    &mut salted,
                );
            }
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(
                    password.as_bytes(),
                    salt,
                    SCRAM_ITERATIONS,
                    &mut salted,
                );
            }
        }
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.digest(&client_key);
        let client_signature = self.hmac(&stored_key, auth_message);
        if proof.len() != client_signature.len() {
            return None;
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if self.digest(&recovered) != stored_key {
            return None;
        }
        let server_key = self.hmac(&salted, b"Server Key");
        Some(self.hmac(&server_key, auth_message))
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
