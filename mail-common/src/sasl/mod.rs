//! Client-side SASL mechanisms as sans-IO step machines, shared by POP3 `AUTH` (RFC 5034) and
//! SMTP `AUTH` (RFC 4954).
//!
//! Two layers: [`SaslClient`] owns what goes inside an exchange (the mechanism messages, the
//! SCRAM proof and server-signature check) and [`choose`] the strongest mechanism both sides
//! support; [`AuthExchange`] owns the `AUTH` command framing both protocols share (base64 on
//! the wire, whether an initial response fits on the command line, `*` to cancel, the challenge
//! cap and the verdict on the server), parameterised by a [`Framing`]. The protocol crates only
//! read their replies and map the outcome to their events and errors.
//!
//! All byte strings here are *decoded* (not base64). Anything that contains or is derived from
//! a password or token comes back wrapped in [`Secret`].
//!
//! # Using a [`SaslClient`]
//!
//! 1. [`choose`] the mechanism (or take the one the user configured) and create the client with
//!    [`SaslClient::new`], passing fresh random bytes as the nonce (a [`NonceSource`] supplies
//!    them when the caller has none).
//! 2. [`SaslClient::initial_response`] gives the client's first message for PLAIN, SCRAM, XOAUTH2
//!    and OAUTHBEARER. Send it with the `AUTH` command (a zero-length response goes on the wire
//!    as `=`). If it does not fit on the command line, send `AUTH <mechanism>` alone and answer
//!    the server's empty challenge with the value you already took. A caller that never takes
//!    the initial response can instead answer that empty challenge with `step(b"")`, which
//!    returns the initial response then.
//! 3. Answer every server challenge (`334`/`+` continuation, decoded) with
//!    [`SaslClient::step`]. On any error, cancel the exchange (`*`): the client is then spent
//!    and every later call fails with [`SaslError::Aborted`].
//! 4. When the server reports success, call [`SaslClient::finish`] with the additional data of
//!    the success reply, if any. Only then is the exchange a success: for SCRAM, `finish` fails
//!    unless the server proved that it knows the password (the server-final `v=` message,
//!    received either as a last challenge, as Dovecot does, or as the additional data).
//!
//! # Example
//!
//! A SCRAM-SHA-256 exchange with the messages of RFC 7677, section 3:
//!
//! ```
//! use mail_common::sasl::{Credentials, Mechanism, SaslClient, choose};
//!
//! let credentials = Credentials::password("user", "pencil");
//! let mechanism = choose(["PLAIN", "scram-sha-256", "LOGIN"], &credentials).unwrap();
//! assert_eq!(mechanism, Mechanism::ScramSha256);
//!
//! // In real use these are fresh random bytes; these encode the RFC's nonce "rOprNGfwEbeRWgbNEkqO".
//! let nonce = [
//!     0xac, 0xea, 0x6b, 0x34, 0x67, 0xf0, 0x11, 0xb7, 0x91, 0x5a, 0x06, 0xcd, 0x12, 0x4a, 0x8e,
//! ];
//! let mut sasl = SaslClient::new(mechanism, &credentials, &nonce)?;
//!
//! let first = sasl.initial_response().unwrap();
//! assert_eq!(first.expose().as_slice(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
//!
//! let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
//!                      s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
//! let client_final = sasl.step(server_first)?;
//! assert_eq!(
//!     client_final.expose().as_slice(),
//!     &b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
//!        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..]
//! );
//!
//! // The server proves it knows the password, here as additional data of its success reply.
//! sasl.finish(Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))?;
//! # Ok::<(), mail_common::sasl::SaslError>(())
//! ```
//!
//! # Limits
//!
//! - SCRAM runs without channel binding (GS2 header `n,,`) and without SASLprep: user names and
//!   passwords are used as their UTF-8 bytes, unnormalised (exact for ASCII).
//! - SCRAM accepts iteration counts from 1 to 1,000,000 only: the count is chosen by the server,
//!   the client pays for it, and an unbounded count would let a hostile server burn the client's
//!   CPU for hours.
//! - No call panics or allocates more than a small multiple of the challenge it was given,
//!   whatever the server sends.

use std::mem;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Hmac;
use md5::Md5;

use crate::Secret;

mod exchange;
mod nonce;
mod ntlm;
mod oauth;
mod scram;
#[cfg(test)]
mod tests;

pub use exchange::{AuthAbort, AuthExchange, AuthLine, AuthViolation, Framing, Refusal};
pub use nonce::{FillRandom, NONCE_LEN, NonceSource};
pub use oauth::OAuthErrorChallenge;
use scram::{ExpectedSignature, ScramClient, ScramHash};

/// A SASL mechanism this crate can run as a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Mechanism {
    /// RFC 4616. Sends the password in the clear (inside TLS).
    Plain,
    /// The obsolete "LOGIN" mechanism (draft-murchison-sasl-login). Sends the password in the clear.
    Login,
    /// RFC 2195 challenge-response; the password is not sent, but the server must store it.
    CramMd5,
    /// RFC 5802 with SHA-1. Mutual authentication: the server signature is verified.
    ScramSha1,
    /// RFC 7677. Mutual authentication: the server signature is verified.
    ScramSha256,
    /// Google/Microsoft's OAuth 2.0 mechanism.
    XOAuth2,
    /// RFC 7628 OAuth 2.0 bearer tokens.
    OAuthBearer,
    /// NTLM (NTLMv2 responses): Windows Live Mail's "Secure Password Authentication". The
    /// password is not sent, but the server stores a password equivalent and a recorded exchange
    /// can be attacked offline: weaker than SCRAM, so [`choose`] never picks it; use it only
    /// when asked for.
    Ntlm,
}

/// The registered name (`SCRAM-SHA-256`), as people and servers know it.
///
/// ```
/// use mail_common::sasl::Mechanism;
/// assert_eq!(Mechanism::ScramSha256.to_string(), "SCRAM-SHA-256");
/// ```
impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Mechanism {
    /// Every mechanism, strongest first within each credential kind.
    pub const ALL: [Self; 8] = [
        Self::ScramSha256,
        Self::ScramSha1,
        Self::CramMd5,
        Self::Plain,
        Self::Login,
        Self::OAuthBearer,
        Self::XOAuth2,
        Self::Ntlm,
    ];

    /// The registered name, as sent in `AUTH <name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::CramMd5 => "CRAM-MD5",
            Self::ScramSha1 => "SCRAM-SHA-1",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::XOAuth2 => "XOAUTH2",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::Ntlm => "NTLM",
        }
    }

    /// Parses a mechanism name, ignoring ASCII case. Unknown names give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// True when the mechanism reveals the password to anyone who can read the exchange, so it
    /// must only run inside TLS (or by an explicit plaintext opt-in).
    pub const fn exposes_password(self) -> bool {
        matches!(self, Self::Plain | Self::Login)
    }

    /// True for the OAuth mechanisms, which take a token instead of a password.
    pub const fn uses_token(self) -> bool {
        matches!(self, Self::XOAuth2 | Self::OAuthBearer)
    }
}

/// What the user authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A user name and password, for PLAIN, LOGIN, CRAM-MD5 and SCRAM.
    Password {
        /// The authentication identity.
        username: String,
        /// The password.
        password: Secret<String>,
    },
    /// A user name and an OAuth 2.0 access token, for XOAUTH2 and OAUTHBEARER.
    OAuth2 {
        /// The account the token is for (usually the mail address).
        username: String,
        /// The bearer token.
        token: Secret<String>,
    },
}

impl Credentials {
    /// Password credentials.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Password {
            username: username.into(),
            password: Secret::new(password.into()),
        }
    }

    /// OAuth 2.0 bearer-token credentials.
    pub fn oauth2(username: impl Into<String>, token: impl Into<String>) -> Self {
        Self::OAuth2 {
            username: username.into(),
            token: Secret::new(token.into()),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Self::Password { username, .. } | Self::OAuth2 { username, .. } => username,
        }
    }

    /// True when `mechanism` can run with these credentials.
    pub const fn suits(&self, mechanism: Mechanism) -> bool {
        match self {
            Self::Password { .. } => !mechanism.uses_token(),
            Self::OAuth2 { .. } => mechanism.uses_token(),
        }
    }
}

/// Picks the strongest mechanism that the server offers and the credentials suit.
///
/// Order for passwords: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN; for tokens:
/// OAUTHBEARER, XOAUTH2. NTLM is never chosen (only by request). Offered names are matched
/// ignoring ASCII case; unknown ones are skipped.
/// Whether a password-exposing mechanism may run without TLS is the caller's decision.
pub fn choose<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    credentials: &Credentials,
) -> Option<Mechanism> {
    let offered: Vec<Mechanism> = offered
        .into_iter()
        .filter_map(Mechanism::from_name)
        .collect();
    Mechanism::ALL
        .into_iter()
        .filter(|m| *m != Mechanism::Ntlm)
        .find(|m| credentials.suits(*m) && offered.contains(m))
}

/// A SASL exchange failed on the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The credentials do not suit the mechanism (a password for XOAUTH2, a token for SCRAM).
    #[error("{mechanism} cannot run with these credentials")]
    WrongCredentialKind {
        /// The mechanism asked for.
        mechanism: Mechanism,
    },
    /// A credential or user name contains a byte the mechanism cannot carry (NUL in PLAIN,
    /// `\x01` in the OAuth mechanisms).
    #[error("a credential contains a byte that {mechanism} cannot carry")]
    UnencodableCredential {
        /// The mechanism asked for.
        mechanism: Mechanism,
    },
    /// The server sent a challenge that does not parse for this mechanism.
    #[error("malformed server challenge: {0}")]
    MalformedChallenge(&'static str),
    /// The server sent a challenge when the exchange was already complete.
    #[error("unexpected server challenge after the exchange was complete")]
    UnexpectedChallenge,
    /// SCRAM: the server nonce does not start with the client nonce.
    #[error("SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    /// SCRAM: the server asked for an absurd iteration count.
    #[error("SCRAM iteration count {0} outside the accepted range")]
    BadIterationCount(u32),
    /// SCRAM: the server's signature is wrong: the server does not know the password, so it is not
    /// the server the user has an account with.
    #[error(
        "SCRAM server signature does not verify: the server could not prove it knows the password"
    )]
    ServerSignatureMismatch,
    /// SCRAM: the server reported success without proving it knows the password.
    #[error("server reported success before proving it knows the password (no SCRAM server-final)")]
    MissingServerSignature,
    /// SCRAM: the server's final message was an error (`e=...`).
    #[error("SCRAM server error: {0}")]
    ServerError(String),
    /// The server reported success before the client had sent all its messages (a mechanism
    /// other than SCRAM; for SCRAM this is [`SaslError::MissingServerSignature`]).
    #[error("server reported success before the SASL exchange was complete")]
    Incomplete,
    /// SCRAM needs a client nonce, and the caller passed no bytes.
    #[error("the mechanism needs a client nonce: SCRAM a non-empty one, NTLM at least 8 bytes")]
    EmptyNonce,
    /// SCRAM needs a client nonce, the caller passed none, and the configured
    /// [`NonceSource`] could not produce one (the text says why).
    #[error("no SCRAM client nonce: the random source failed: {0}")]
    NonceUnavailable(String),
    /// The exchange already failed (or the server's reply was inconsistent with it); a spent
    /// client answers every further call with this.
    #[error("the SASL exchange was abandoned after an earlier error")]
    Aborted,
}

/// One client-side SASL exchange.
///
/// A sans-IO state machine: it is fed the decoded server challenges and produces the decoded
/// client responses. `Debug` shows the mechanism and state, never a password, token or proof.
///
/// States per mechanism (a challenge or `finish` that does not fit the state is an error, and any
/// error leaves the client spent):
///
/// | Mechanism | Client messages | `finish` accepted after |
/// |---|---|---|
/// | PLAIN | initial response (or the answer to an empty first challenge) | that message |
/// | LOGIN | 1st challenge → user name, 2nd → password | the password |
/// | CRAM-MD5 | the (non-empty) challenge → `user SP hex-digest` | the digest |
/// | SCRAM-* | client-first, then server-first → client-final, then server-final → empty | a verified server signature |
/// | XOAUTH2 | initial response; a JSON error challenge → empty response | the initial response |
/// | OAUTHBEARER | initial response; a JSON error challenge → `\x01` | the initial response |
///
/// For the OAuth mechanisms a server that sent a JSON error normally fails the exchange next;
/// should it report success anyway, `finish` accepts that (the server is the party that grants
/// access). Additional data with a success reply is ignored by all mechanisms except SCRAM.
#[derive(Debug)]
pub struct SaslClient {
    mechanism: Mechanism,
    state: State,
    /// The decoded JSON error an OAuth server sent as a challenge.
    server_error: Option<OAuthErrorChallenge>,
}

/// Where an exchange stands. Everything that holds a password, a token, or a value derived from
/// one is a [`Secret`], so the derived `Debug` never shows it.
#[derive(Debug)]
enum State {
    /// PLAIN, XOAUTH2, OAUTHBEARER: the client's message has not gone out yet.
    FirstUnsent { message: Secret<Vec<u8>> },
    /// XOAUTH2, OAUTHBEARER: the message went out; a JSON error challenge may still come.
    OAuthSent,
    /// LOGIN: waiting for the first challenge (the user name prompt).
    LoginUsername {
        username: String,
        password: Secret<String>,
    },
    /// LOGIN: the user name went out; waiting for the password prompt.
    LoginPassword { password: Secret<String> },
    /// NTLM: waiting for the server's empty challenge (the negotiate message goes out then).
    NtlmStart {
        username: String,
        password: Secret<String>,
        client_challenge: [u8; 8],
    },
    /// NTLM: the negotiate message went out; waiting for the server's challenge message.
    NtlmNegotiated {
        username: String,
        password: Secret<String>,
        client_challenge: [u8; 8],
    },
    /// CRAM-MD5: waiting for the challenge.
    CramMd5 {
        username: String,
        password: Secret<String>,
    },
    /// SCRAM: the client-first message has not gone out yet.
    ScramFirstUnsent(ScramClient),
    /// SCRAM: the client-first went out; waiting for the server-first.
    ScramFirstSent(ScramClient),
    /// SCRAM: the client-final went out; waiting for the server-final.
    ScramFinalSent(ExpectedSignature),
    /// SCRAM: the server signature verified.
    ScramVerified(ExpectedSignature),
    /// Every client message went out (non-SCRAM mechanisms).
    Done,
    /// An error occurred; the client is spent.
    Failed,
}

impl SaslClient {
    /// Starts an exchange. `nonce` is fresh randomness from the caller (at least 18 bytes are
    /// recommended); only SCRAM uses it. The sans-IO cores take it from their caller because they
    /// read no clock and no random source themselves.
    ///
    /// SCRAM sends the nonce base64-encoded (standard alphabet) as its client nonce, and needs it
    /// to be non-empty ([`SaslError::EmptyNonce`]).
    ///
    /// Fails with [`SaslError::WrongCredentialKind`] when the credentials do not suit the
    /// mechanism, and with [`SaslError::UnencodableCredential`] for NUL in a PLAIN user name or
    /// password, NUL in a SCRAM user name, or `\x01` in an OAuth user name or token.
    pub fn new(
        mechanism: Mechanism,
        credentials: &Credentials,
        nonce: &[u8],
    ) -> Result<Self, SaslError> {
        let unencodable = SaslError::UnencodableCredential { mechanism };
        let state = match (mechanism, credentials) {
            (Mechanism::Plain, Credentials::Password { username, password }) => {
                let password = password.expose();
                if username.contains('\0') || password.contains('\0') {
                    return Err(unencodable);
                }
                // authzid (empty) NUL authcid NUL passwd
                let message = [b"\0", username.as_bytes(), b"\0", password.as_bytes()].concat();
                State::FirstUnsent {
                    message: Secret::new(message),
                }
            }
            (Mechanism::Login, Credentials::Password { username, password }) => {
                State::LoginUsername {
                    username: username.clone(),
                    password: password.clone(),
                }
            }
            (Mechanism::Ntlm, Credentials::Password { username, password }) => {
                // The NTLMv2 client challenge: 8 random bytes from the caller.
                let client_challenge = nonce
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .ok_or(SaslError::EmptyNonce)?;
                State::NtlmStart {
                    username: username.clone(),
                    password: password.clone(),
                    client_challenge,
                }
            }
            (Mechanism::CramMd5, Credentials::Password { username, password }) => State::CramMd5 {
                username: username.clone(),
                password: password.clone(),
            },
            (
                Mechanism::ScramSha1 | Mechanism::ScramSha256,
                Credentials::Password { username, password },
            ) => {
                if nonce.is_empty() {
                    return Err(SaslError::EmptyNonce);
                }
                if username.contains('\0') {
                    return Err(unencodable);
                }
                let hash = if mechanism == Mechanism::ScramSha1 {
                    ScramHash::Sha1
                } else {
                    ScramHash::Sha256
                };
                State::ScramFirstUnsent(ScramClient::new(
                    hash,
                    username,
                    password.clone(),
                    &STANDARD.encode(nonce),
                ))
            }
            (Mechanism::XOAuth2, Credentials::OAuth2 { username, token }) => {
                let token = token.expose();
                if username.contains('\x01') || token.contains('\x01') {
                    return Err(unencodable);
                }
                let message = [
                    b"user=",
                    username.as_bytes(),
                    b"\x01auth=Bearer ",
                    token.as_bytes(),
                    b"\x01\x01",
                ]
                .concat();
                State::FirstUnsent {
                    message: Secret::new(message),
                }
            }
            (Mechanism::OAuthBearer, Credentials::OAuth2 { username, token }) => {
                let token = token.expose();
                if username.contains('\x01') || token.contains('\x01') {
                    return Err(unencodable);
                }
                // GS2 header: no channel binding, the user name as authzid (omitted if empty,
                // since the grammar does not allow an empty `a=`).
                let gs2 = if username.is_empty() {
                    String::from("n,,")
                } else {
                    format!("n,a={},", scram::escape_saslname(username))
                };
                let message = [
                    gs2.as_bytes(),
                    b"\x01auth=Bearer ",
                    token.as_bytes(),
                    b"\x01\x01",
                ]
                .concat();
                State::FirstUnsent {
                    message: Secret::new(message),
                }
            }
            _ => return Err(SaslError::WrongCredentialKind { mechanism }),
        };
        Ok(Self {
            mechanism,
            state,
            server_error: None,
        })
    }

    /// The mechanism of this exchange.
    pub const fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The client's first message for mechanisms that start with one (PLAIN, SCRAM, XOAUTH2,
    /// OAUTHBEARER); `None` for mechanisms where the server speaks first (LOGIN, CRAM-MD5).
    /// Returns `Some` at most once, and only if `step(b"")` has not already produced it.
    pub fn initial_response(&mut self) -> Option<Secret<Vec<u8>>> {
        match mem::replace(&mut self.state, State::Failed) {
            State::FirstUnsent { message } => {
                self.state = self.after_first_message();
                Some(message)
            }
            State::ScramFirstUnsent(scram) => {
                let message = scram.client_first();
                self.state = State::ScramFirstSent(scram);
                Some(Secret::new(message))
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Answers one decoded server challenge.
    ///
    /// An empty challenge before the initial response was taken is answered with the initial
    /// response. For SCRAM, the server-final message given here (Dovecot sends it as a last
    /// challenge) is verified and answered with an empty response; [`finish`](Self::finish)
    /// then accepts the success reply. A challenge after the exchange is complete gives
    /// [`SaslError::UnexpectedChallenge`]. After any error the client is spent.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let state = mem::replace(&mut self.state, State::Failed);
        let (next, response) = self.answer(state, challenge)?;
        self.state = next;
        Ok(response)
    }

    fn answer(
        &mut self,
        state: State,
        challenge: &[u8],
    ) -> Result<(State, Secret<Vec<u8>>), SaslError> {
        Ok(match state {
            State::FirstUnsent { message } => {
                if !challenge.is_empty() {
                    return Err(SaslError::MalformedChallenge(
                        "expected an empty challenge before the client's first message",
                    ));
                }
                (self.after_first_message(), message)
            }
            State::ScramFirstUnsent(scram) => {
                if !challenge.is_empty() {
                    return Err(SaslError::MalformedChallenge(
                        "expected an empty challenge before the SCRAM client-first message",
                    ));
                }
                let message = scram.client_first();
                (State::ScramFirstSent(scram), Secret::new(message))
            }
            State::ScramFirstSent(scram) => {
                let (client_final, expected) = scram.client_final(challenge)?;
                (State::ScramFinalSent(expected), client_final)
            }
            State::ScramFinalSent(expected) => {
                expected.verify(challenge)?;
                (State::ScramVerified(expected), Secret::new(Vec::new()))
            }
            State::OAuthSent => {
                // The challenge is the server's JSON error; the server fails the exchange after
                // the client's dummy response.
                self.server_error = Some(OAuthErrorChallenge::parse(challenge));
                let response = if self.mechanism == Mechanism::OAuthBearer {
                    vec![0x01]
                } else {
                    Vec::new()
                };
                (State::Done, Secret::new(response))
            }
            State::LoginUsername { username, password } => (
                State::LoginPassword { password },
                Secret::new(username.into_bytes()),
            ),
            State::LoginPassword { password } => {
                (State::Done, Secret::new(password.into_inner().into_bytes()))
            }
            State::NtlmStart {
                username,
                password,
                client_challenge,
            } => {
                if !challenge.is_empty() {
                    return Err(SaslError::MalformedChallenge(
                        "expected an empty challenge before the NTLM negotiate message",
                    ));
                }
                (
                    State::NtlmNegotiated {
                        username,
                        password,
                        client_challenge,
                    },
                    Secret::new(ntlm::negotiate()),
                )
            }
            State::NtlmNegotiated {
                username,
                password,
                client_challenge,
            } => (
                State::Done,
                ntlm::authenticate(challenge, &username, &password, client_challenge)?,
            ),
            State::CramMd5 { username, password } => {
                if challenge.is_empty() {
                    return Err(SaslError::MalformedChallenge("empty CRAM-MD5 challenge"));
                }
                let digest =
                    scram::hmac_bytes::<Hmac<Md5>>(password.expose().as_bytes(), challenge);
                let mut response = Vec::with_capacity(username.len() + 1 + 2 * digest.len());
                response.extend_from_slice(username.as_bytes());
                response.push(b' ');
                for byte in digest {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    response.push(HEX[usize::from(byte >> 4)]);
                    response.push(HEX[usize::from(byte & 0x0f)]);
                }
                (State::Done, Secret::new(response))
            }
            State::ScramVerified(_) | State::Done => return Err(SaslError::UnexpectedChallenge),
            State::Failed => return Err(SaslError::Aborted),
        })
    }

    /// The state after the initial response of PLAIN or an OAuth mechanism went out.
    fn after_first_message(&self) -> State {
        if self.mechanism.uses_token() {
            State::OAuthSent
        } else {
            State::Done
        }
    }

    /// Called when the server reports success, with any additional data that came with the
    /// success reply (decoded). For SCRAM this fails unless the server signature has been verified.
    ///
    /// For SCRAM, `Some(server_final)` is verified (if the signature was already verified by
    /// [`step`](Self::step), additional data must verify too); `None` or empty data is accepted
    /// only after the signature was verified, else [`SaslError::MissingServerSignature`]. The
    /// other mechanisms ignore the data, and accept success only after the client sent all its
    /// messages (PLAIN: the credentials; LOGIN: the password; CRAM-MD5: the digest; OAuth: the
    /// initial response), else [`SaslError::Incomplete`]. Calling `finish` again after it
    /// succeeded succeeds again.
    pub fn finish(&mut self, additional_data: Option<&[u8]>) -> Result<(), SaslError> {
        let data = additional_data.filter(|data| !data.is_empty());
        let next = match mem::replace(&mut self.state, State::Failed) {
            State::ScramFinalSent(expected) => {
                expected.verify(data.ok_or(SaslError::MissingServerSignature)?)?;
                State::ScramVerified(expected)
            }
            State::ScramVerified(expected) => {
                if let Some(data) = data {
                    expected.verify(data)?;
                }
                State::ScramVerified(expected)
            }
            State::ScramFirstUnsent(_) | State::ScramFirstSent(_) => {
                return Err(SaslError::MissingServerSignature);
            }
            State::FirstUnsent { .. }
            | State::LoginUsername { .. }
            | State::LoginPassword { .. }
            | State::NtlmStart { .. }
            | State::NtlmNegotiated { .. }
            | State::CramMd5 { .. } => return Err(SaslError::Incomplete),
            State::OAuthSent | State::Done => State::Done,
            State::Failed => return Err(SaslError::Aborted),
        };
        self.state = next;
        Ok(())
    }

    /// True when a success reply without additional data would be accepted by
    /// [`finish`](Self::finish): the client sent all its messages and, for SCRAM, verified the
    /// server signature.
    pub const fn is_complete(&self) -> bool {
        matches!(
            self.state,
            State::OAuthSent | State::Done | State::ScramVerified(_)
        )
    }

    /// For the OAuth mechanisms: the JSON error document the server sent as a challenge, if any.
    /// Invalid UTF-8 in it is replaced by U+FFFD.
    pub fn server_error_json(&self) -> Option<&str> {
        self.server_error.as_ref().map(|error| error.raw.as_str())
    }

    /// For the OAuth mechanisms: the server's JSON error challenge, decoded (status, scope), if
    /// the server sent one. The server fails the exchange after the client's answer to it, so a
    /// caller reports the refusal together with this.
    pub fn server_error(&self) -> Option<&OAuthErrorChallenge> {
        self.server_error.as_ref()
    }
}
