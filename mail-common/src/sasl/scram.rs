//! SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677) without channel binding: message
//! construction, strict parsing of the server's messages, the proof and the signature check.
//!
//! Deliberate limits:
//! - The GS2 header is always `n,,`: no channel binding (the `-PLUS` variants are not offered)
//!   and no authorization identity.
//! - SASLprep (RFC 4013) is not applied: the user name and password are used as their UTF-8
//!   bytes, unnormalised. That is exact for ASCII credentials; a non-ASCII password that a server
//!   normalises differently will simply fail to authenticate.
//! - The server's iteration count must lie in [`ITERATIONS`]. The count is chosen by the server
//!   (or by whoever sits between client and server before TLS is checked), and the client pays
//!   for every iteration: without a cap, one `i=4294967295` would pin a CPU core for hours.

use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::SaslError;
use crate::Secret;

/// The iteration counts this client accepts from a server (see the module docs for why there is
/// an upper bound; 0 is meaningless and forbidden by the grammar).
pub(super) const ITERATIONS: RangeInclusive<u32> = 1..=1_000_000;

/// GS2 header for "client does not support channel binding", no authzid.
const GS2_HEADER: &[u8] = b"n,,";
/// `c=` value of the client-final message: base64 of [`GS2_HEADER`].
const CHANNEL_BINDING: &[u8] = b"biws";

/// The hash function of a SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScramHash {
    /// SCRAM-SHA-1.
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => hmac_bytes::<Hmac<Sha1>>(key, data),
            Self::Sha256 => hmac_bytes::<Hmac<Sha256>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802: PBKDF2 with HMAC-H and one block of output.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha1 => {
                let mut out = vec![0; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            Self::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// HMAC over `data` with `key`, as bytes.
pub(super) fn hmac_bytes<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed), so this never fails.
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Escapes a user name as a SCRAM / GS2 `saslname`: `,` becomes `=2C` and `=` becomes `=3D`.
pub(super) fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The client's side of a SCRAM exchange before the server has spoken.
#[derive(Debug)]
pub(super) struct ScramClient {
    hash: ScramHash,
    /// `n=<saslname>,r=<c-nonce>`; public (user name and nonce only).
    client_first_bare: Vec<u8>,
    /// Where the client nonce starts inside `client_first_bare`.
    nonce_start: usize,
    password: Secret<String>,
}

/// The server signature that the server-final message must carry.
#[derive(Debug)]
pub(super) struct ExpectedSignature(Secret<Vec<u8>>);

impl ScramClient {
    /// Prepares an exchange. `client_nonce` must be printable ASCII without `,` (base64 is).
    pub(super) fn new(
        hash: ScramHash,
        username: &str,
        password: Secret<String>,
        client_nonce: &str,
    ) -> Self {
        let mut client_first_bare = b"n=".to_vec();
        client_first_bare.extend_from_slice(escape_saslname(username).as_bytes());
        client_first_bare.extend_from_slice(b",r=");
        let nonce_start = client_first_bare.len();
        client_first_bare.extend_from_slice(client_nonce.as_bytes());
        Self {
            hash,
            client_first_bare,
            nonce_start,
            password,
        }
    }

    fn client_nonce(&self) -> &[u8] {
        self.client_first_bare
            .get(self.nonce_start..)
            .unwrap_or_default()
    }

    /// The client-first message: GS2 header and client-first-bare.
    pub(super) fn client_first(&self) -> Vec<u8> {
        [GS2_HEADER, &self.client_first_bare].concat()
    }

    /// Answers the server-first message with the client-final message, and computes the server
    /// signature the server must prove in its final message.
    pub(super) fn client_final(
        &self,
        server_first: &[u8],
    ) -> Result<(Secret<Vec<u8>>, ExpectedSignature), SaslError> {
        let parsed = ServerFirst::parse(server_first)?;
        let client_nonce = self.client_nonce();
        // The server must extend our nonce with its own part; a server that merely echoes ours
        // (or ignores it) could be replaying an old exchange.
        if !(parsed.nonce.len() > client_nonce.len() && parsed.nonce.starts_with(client_nonce)) {
            return Err(SaslError::NonceMismatch);
        }
        if !ITERATIONS.contains(&parsed.iterations) {
            return Err(SaslError::BadIterationCount(parsed.iterations));
        }
        let salt = STANDARD
            .decode(parsed.salt)
            .map_err(|_| SaslError::MalformedChallenge("SCRAM salt is not valid base64"))?;

        let mut without_proof = Vec::with_capacity(8 + parsed.nonce.len());
        without_proof.extend_from_slice(b"c=");
        without_proof.extend_from_slice(CHANNEL_BINDING);
        without_proof.extend_from_slice(b",r=");
        without_proof.extend_from_slice(parsed.nonce);

        let auth_message = [
            self.client_first_bare.as_slice(),
            b",",
            server_first,
            b",",
            &without_proof,
        ]
        .concat();

        let h = self.hash;
        let salted = h.salted_password(self.password.expose().as_bytes(), &salt, parsed.iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let client_signature = h.hmac(&stored_key, &auth_message);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        let server_signature = h.hmac(&server_key, &auth_message);

        let mut client_final = without_proof;
        client_final.extend_from_slice(b",p=");
        client_final.extend_from_slice(STANDARD.encode(proof).as_bytes());
        Ok((
            Secret::new(client_final),
            ExpectedSignature(Secret::new(server_signature)),
        ))
    }
}

impl ExpectedSignature {
    /// Checks the server-final message: `v=<signature>` must carry exactly the expected
    /// signature; `e=<error>` is reported as [`SaslError::ServerError`].
    pub(super) fn verify(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let mut parts = server_final.split(|&b| b == b',');
        let (key, value) = attribute(parts.next().unwrap_or_default())?;
        for extension in parts {
            attribute(extension)?;
        }
        match key {
            b'v' => {
                let signature = STANDARD.decode(value).map_err(|_| {
                    SaslError::MalformedChallenge("SCRAM server signature is not valid base64")
                })?;
                if constant_time_eq(&signature, self.0.expose()) {
                    Ok(())
                } else {
                    Err(SaslError::ServerSignatureMismatch)
                }
            }
            b'e' => Err(server_error(value)),
            _ => Err(SaslError::MalformedChallenge(
                "SCRAM server-final message is neither v= nor e=",
            )),
        }
    }
}

/// The attributes of a server-first message, borrowed from it.
#[derive(Debug)]
struct ServerFirst<'a> {
    nonce: &'a [u8],
    salt: &'a [u8],
    iterations: u32,
}

impl<'a> ServerFirst<'a> {
    /// Parses `r=<nonce>,s=<salt>,i=<count>[,extensions]` strictly: the three attributes in this
    /// order, each exactly once and non-empty; `m=` (a mandatory extension) is refused; unknown
    /// optional extensions after `i=` are skipped.
    fn parse(message: &'a [u8]) -> Result<Self, SaslError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (index, part) in message.split(|&b| b == b',').enumerate() {
            let (key, value) = attribute(part)?;
            let (slot, position) = match key {
                b'm' => {
                    return Err(SaslError::MalformedChallenge(
                        "SCRAM server requires an unsupported mandatory extension (m=)",
                    ));
                }
                // Some servers fail at once instead of sending a server-first.
                b'e' if index == 0 => return Err(server_error(value)),
                b'r' => (&mut nonce, 0),
                b's' => (&mut salt, 1),
                b'i' => (&mut iterations, 2),
                _ if index >= 3 => continue,
                _ => {
                    return Err(SaslError::MalformedChallenge(
                        "SCRAM server-first message has an unknown attribute before i=",
                    ));
                }
            };
            if slot.is_some() {
                return Err(SaslError::MalformedChallenge(
                    "SCRAM server-first message repeats an attribute",
                ));
            }
            if index != position {
                return Err(SaslError::MalformedChallenge(
                    "SCRAM server-first attributes are not in the order r, s, i",
                ));
            }
            *slot = Some(value);
        }
        let nonce = nonce.ok_or(SaslError::MalformedChallenge(
            "SCRAM server nonce (r=) missing",
        ))?;
        let salt = salt.ok_or(SaslError::MalformedChallenge("SCRAM salt (s=) missing"))?;
        let iterations = iterations.ok_or(SaslError::MalformedChallenge(
            "SCRAM iteration count (i=) missing",
        ))?;
        // printable = %x21-2B / %x2D-7E (',' cannot occur after the split).
        if !nonce.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(SaslError::MalformedChallenge(
                "SCRAM server nonce contains non-printable bytes",
            ));
        }
        Ok(Self {
            nonce,
            salt,
            iterations: parse_count(iterations)?,
        })
    }
}

/// Splits one `ALPHA "=" 1*value-char` attribute.
fn attribute(part: &[u8]) -> Result<(u8, &[u8]), SaslError> {
    match part {
        [key, b'=', value @ ..] if key.is_ascii_alphabetic() && !value.is_empty() => {
            if value.contains(&0) {
                Err(SaslError::MalformedChallenge(
                    "SCRAM attribute contains NUL",
                ))
            } else {
                Ok((*key, value))
            }
        }
        [_, b'=', ..] | [] | [_] => Err(SaslError::MalformedChallenge(
            "SCRAM attribute is empty or has no value",
        )),
        _ => Err(SaslError::MalformedChallenge(
            "SCRAM attribute is not of the form x=value",
        )),
    }
}

/// Parses an iteration count: decimal digits without a leading zero (except `0` itself, which is
/// then refused as a count). Values beyond `u32` saturate to `u32::MAX`, which is out of range.
fn parse_count(digits: &[u8]) -> Result<u32, SaslError> {
    if !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0') {
        return Err(SaslError::MalformedChallenge(
            "SCRAM iteration count is not a decimal number",
        ));
    }
    Ok(digits.iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

/// The longest server error text kept in [`SaslError::ServerError`].
const MAX_ERROR_TEXT: usize = 200;

/// Turns a server's `e=` value into an error whose text is safe to log: printable ASCII only,
/// bounded in length.
fn server_error(value: &[u8]) -> SaslError {
    let text = value
        .iter()
        .take(MAX_ERROR_TEXT)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    SaslError::ServerError(text)
}
