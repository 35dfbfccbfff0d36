//! The `AUTH` command exchange shared by POP3 and SMTP: see [`AuthExchange`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{OAuthErrorChallenge, SaslClient, SaslError};
use crate::Secret;

/// What distinguishes one protocol's `AUTH` framing from the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    max_line: usize,
    continuation: &'static str,
}

impl Framing {
    /// `max_line`: the longest command line the server must accept, CRLF included.
    /// `continuation`: the prefix of a server challenge line, used in log renderings.
    pub const fn new(max_line: usize, continuation: &'static str) -> Self {
        Self {
            max_line,
            continuation,
        }
    }

    /// The longest command line, CRLF included.
    pub const fn max_line(&self) -> usize {
        self.max_line
    }

    /// What a challenge line looks like in a log: the prefix and `[redacted]` (a challenge
    /// may be derived from the password or carry a token error).
    pub fn redacted_challenge(&self) -> String {
        format!("{}[redacted]", self.continuation)
    }
}

/// One line for the client to send, CRLF not included.
#[derive(Debug)]
pub struct AuthLine {
    /// The bytes. A [`Secret`]: most lines carry or derive from the credential.
    pub bytes: Secret<Vec<u8>>,
    /// What a log may show instead (`AUTH PLAIN [redacted]`, `[redacted]`, `*`).
    pub shown: String,
}

impl AuthLine {
    fn public(text: String) -> Self {
        Self {
            bytes: Secret::new(text.clone().into_bytes()),
            shown: text,
        }
    }
}

/// Why the client cancelled an exchange with `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthAbort {
    /// The SASL mechanism could not answer the server's challenge.
    #[error(transparent)]
    Sasl(SaslError),
    /// A challenge was not valid base64.
    #[error("the server's challenge is not base64")]
    InvalidChallenge,
    /// The server sent a non-empty challenge where an empty one was required (before the
    /// initial response that did not fit on the `AUTH` line).
    #[error("non-empty challenge where an empty one was required")]
    UnexpectedChallenge,
    /// More challenges than the protocol's configured cap (`max_auth_challenges`).
    #[error("more than {limit} challenges")]
    TooManyChallenges {
        /// The limit.
        limit: usize,
    },
}

/// Something the server did in an `AUTH` exchange that makes it untrustworthy: each protocol
/// reports it as its fatal error, so the session ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthViolation {
    /// The server failed to prove it knows the password (SCRAM server signature wrong, or
    /// success without it).
    #[error("the server could not be authenticated: {0}")]
    ServerNotAuthenticated(SaslError),
    /// The server accepted an exchange the client had cancelled with `*`.
    #[error("the server accepted a cancelled AUTH exchange")]
    CancelledAuthAccepted,
    /// The server sent another challenge after the client's `*`.
    #[error("the server sent a challenge after the client cancelled")]
    ChallengeAfterCancel,
}

/// What the exchange knows when the server refuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// Set when the client cancelled the exchange itself.
    pub aborted: Option<AuthAbort>,
    /// For XOAUTH2/OAUTHBEARER: the JSON error document the server sent as a challenge.
    pub oauth_error: Option<Box<OAuthErrorChallenge>>,
}

/// The `AUTH` command exchange around a [`SaslClient`], as POP3 (RFC 5034) and SMTP (RFC 4954)
/// both frame it.
///
/// The two RFCs describe one exchange and differ in two constants, which [`Framing`] carries:
/// the longest command line (POP3 255 octets, RFC 2449 section 4; SMTP 512, RFC 5321 section
/// 4.5.3.1.4) and the continuation prefix (`+ ` vs `334 `). Everything else is decided here,
/// once for both protocols:
///
/// - every client message is base64 on the wire; an empty initial response is `=`;
/// - the initial response goes on the `AUTH` line only when the whole line, CRLF included,
///   stays within the limit; otherwise `AUTH <mechanism>` goes alone and the initial response
///   answers the server's empty challenge (a non-empty one there is answered with `*`);
/// - a challenge that is not base64, that the mechanism cannot answer, or one more than the
///   configured cap is answered with `*` (cancel), and the server must then refuse;
/// - the verdict on the server: a SCRAM server signature that is wrong or missing, a server that
///   accepts a cancelled exchange, and a challenge after `*` are [`AuthViolation`]s, which each
///   protocol turns into its fatal error. A server that cannot prove it knows the password may
///   be an impostor that has just read a proof derived from it; a polite cancel would leave the
///   session, and everything the caller sends next, with that server.
///
/// The XOAUTH2/OAUTHBEARER JSON error challenge is answered inside [`SaslClient::step`] as the
/// mechanisms require (an empty response, or `%x01`, RFC 7628 section 3.2.3) and comes back,
/// decoded, in the [`Refusal`] that follows.
///
/// ```
/// use mail_common::sasl::{AuthExchange, Credentials, Framing, Mechanism, SaslClient};
///
/// let framing = Framing::new(255, "+ ");
/// let sasl = SaslClient::new(Mechanism::Login, &Credentials::password("alice", "secret"), &[])?;
/// let (mut exchange, line) = AuthExchange::start(framing, sasl, 16);
/// assert_eq!(line.bytes.expose().as_slice(), b"AUTH LOGIN");
/// let line = exchange.on_challenge(b"VXNlcm5hbWU6")?; // "Username:"
/// assert_eq!(line.bytes.expose().as_slice(), b"YWxpY2U=");
/// let line = exchange.on_challenge(b"UGFzc3dvcmQ6")?; // "Password:"
/// assert_eq!(line.bytes.expose().as_slice(), b"c2VjcmV0");
/// let cancelled = exchange.on_challenge(b"VXNlcm5hbWU6")?; // one too many for LOGIN
/// assert_eq!(cancelled.bytes.expose().as_slice(), b"*");
/// assert!(exchange.is_cancelled());
/// assert!(exchange.on_success().is_err()); // accepting a cancelled exchange is a violation
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `Debug` shows the mechanism and progress, never a credential.
#[derive(Debug)]
pub struct AuthExchange {
    framing: Framing,
    client: SaslClient,
    /// Base64 initial response that did not fit on the `AUTH` line, due after the empty
    /// challenge.
    deferred_initial: Option<Secret<Vec<u8>>>,
    challenges: usize,
    max_challenges: usize,
    cancelled: Option<AuthAbort>,
}

impl AuthExchange {
    /// Starts the exchange: the `AUTH` line, with the initial response when it fits.
    /// `max_challenges` is the most challenges answered before the client cancels.
    pub fn start(
        framing: Framing,
        mut client: SaslClient,
        max_challenges: usize,
    ) -> (Self, AuthLine) {
        let command = format!("AUTH {}", client.mechanism().name());
        let initial = client.initial_response().map(|ir| {
            if ir.expose().is_empty() {
                // RFC 4954 section 4, RFC 5034 section 4: "=" is an empty initial response.
                Secret::new(b"=".to_vec())
            } else {
                encode(ir.expose())
            }
        });
        let mut deferred_initial = None;
        let line = match initial {
            // Keyword, space, response, CRLF.
            Some(ir) if command.len() + 1 + ir.expose().len() + 2 <= framing.max_line => {
                let mut bytes = command.clone().into_bytes();
                bytes.push(b' ');
                bytes.extend_from_slice(ir.expose());
                AuthLine {
                    bytes: Secret::new(bytes),
                    shown: format!("{command} [redacted]"),
                }
            }
            too_long_or_none => {
                deferred_initial = too_long_or_none;
                AuthLine::public(command)
            }
        };
        let exchange = Self {
            framing,
            client,
            deferred_initial,
            challenges: 0,
            max_challenges,
            cancelled: None,
        };
        (exchange, line)
    }

    /// The mechanism of this exchange.
    pub const fn mechanism(&self) -> super::Mechanism {
        self.client.mechanism()
    }

    /// The framing this exchange uses.
    pub const fn framing(&self) -> Framing {
        self.framing
    }

    /// True once the client sent `*`.
    pub const fn is_cancelled(&self) -> bool {
        self.cancelled.is_some()
    }

    /// Answers one server challenge with the line to send: a base64 response, or `*` when the
    /// client cancels ([`is_cancelled`](Self::is_cancelled) then says so, and the
    /// [`Refusal`] after the server's answer says why). `text` is what follows the
    /// continuation prefix, still base64 (surrounding white space is ignored). A SCRAM server
    /// signature that does not verify ends the exchange with
    /// [`AuthViolation::ServerNotAuthenticated`], without `*`.
    pub fn on_challenge(&mut self, text: &[u8]) -> Result<AuthLine, AuthViolation> {
        if self.cancelled.is_some() {
            return Err(AuthViolation::ChallengeAfterCancel);
        }
        self.challenges = self.challenges.saturating_add(1);
        let text = text.trim_ascii();
        let response = if self.challenges > self.max_challenges {
            Err(AuthAbort::TooManyChallenges {
                limit: self.max_challenges,
            })
        } else if let Some(initial) = self.deferred_initial.take() {
            if text.is_empty() {
                Ok(initial)
            } else {
                Err(AuthAbort::UnexpectedChallenge)
            }
        } else {
            STANDARD
                .decode(text)
                .map_err(|_| AuthAbort::InvalidChallenge)
                .and_then(|challenge| self.client.step(&challenge).map_err(AuthAbort::Sasl))
                .map(|response| encode(response.expose()))
        };
        match response {
            Ok(bytes) => Ok(AuthLine {
                bytes,
                shown: "[redacted]".to_owned(),
            }),
            Err(AuthAbort::Sasl(
                error @ (SaslError::ServerSignatureMismatch | SaslError::MissingServerSignature),
            )) => Err(AuthViolation::ServerNotAuthenticated(error)),
            Err(abort) => {
                self.cancelled = Some(abort);
                Ok(AuthLine::public("*".to_owned()))
            }
        }
    }

    /// The server reported success. Neither protocol carries additional data with success (a
    /// SCRAM server-final comes as a last challenge), so by now the mechanism must be complete
    /// and, for SCRAM, the server signature verified; a success before that is an
    /// [`AuthViolation::ServerNotAuthenticated`] (for the other mechanisms
    /// [`SaslError::Incomplete`]: a server that grants access before the client has said who
    /// it is does not behave like the server the user has an account with).
    pub fn on_success(&mut self) -> Result<(), AuthViolation> {
        if self.cancelled.is_some() {
            return Err(AuthViolation::CancelledAuthAccepted);
        }
        self.client
            .finish(None)
            .map_err(AuthViolation::ServerNotAuthenticated)
    }

    /// The server refused: what the exchange has to add to its reply.
    pub fn into_refusal(self) -> Refusal {
        Refusal {
            aborted: self.cancelled,
            oauth_error: self.client.server_error().cloned().map(Box::new),
        }
    }
}

fn encode(bytes: &[u8]) -> Secret<Vec<u8>> {
    Secret::new(STANDARD.encode(bytes).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::{AuthAbort, AuthExchange, AuthViolation, Framing};
    use crate::sasl::{Credentials, Mechanism, SaslClient};

    fn start(
        mechanism: Mechanism,
        max_line: usize,
        max_challenges: usize,
    ) -> (AuthExchange, Vec<u8>) {
        let credentials = Credentials::password("a", "b");
        let sasl = SaslClient::new(mechanism, &credentials, b"nonce").unwrap();
        let (exchange, line) =
            AuthExchange::start(Framing::new(max_line, "+ "), sasl, max_challenges);
        (exchange, line.bytes.into_inner())
    }

    #[test]
    fn initial_response_inline_up_to_the_limit_crlf_included() {
        // "AUTH PLAIN " + base64("\0a\0b") (8) + CRLF = 21 octets.
        let (_, line) = start(Mechanism::Plain, 21, 16);
        assert_eq!(line, b"AUTH PLAIN AGEAYg==");
        let (mut exchange, line) = start(Mechanism::Plain, 20, 16);
        assert_eq!(line, b"AUTH PLAIN");
        let answer = exchange.on_challenge(b" ").unwrap();
        assert_eq!(answer.bytes.expose().as_slice(), b"AGEAYg==");
        assert_eq!(answer.shown, "[redacted]");
        exchange.on_success().unwrap();
    }

    #[test]
    fn a_non_empty_challenge_where_the_deferred_response_is_due_is_cancelled() {
        let (mut exchange, _) = start(Mechanism::Plain, 20, 16);
        let answer = exchange.on_challenge(b"dGVzdA==").unwrap();
        assert_eq!(answer.bytes.expose().as_slice(), b"*");
        assert_eq!(
            exchange.into_refusal().aborted,
            Some(AuthAbort::UnexpectedChallenge)
        );
    }

    #[test]
    fn the_challenge_cap_counts_every_challenge() {
        let (mut exchange, line) = start(Mechanism::Login, 512, 2);
        assert_eq!(line, b"AUTH LOGIN");
        assert_eq!(
            exchange
                .on_challenge(b"")
                .unwrap()
                .bytes
                .expose()
                .as_slice(),
            b"YQ=="
        );
        assert_eq!(
            exchange
                .on_challenge(b"")
                .unwrap()
                .bytes
                .expose()
                .as_slice(),
            b"Yg=="
        );
        assert_eq!(
            exchange
                .on_challenge(b"")
                .unwrap()
                .bytes
                .expose()
                .as_slice(),
            b"*"
        );
        assert!(exchange.is_cancelled());
        assert_eq!(
            exchange.into_refusal().aborted,
            Some(AuthAbort::TooManyChallenges { limit: 2 })
        );
    }

    #[test]
    fn the_server_must_end_a_cancelled_exchange_with_a_refusal() {
        let (mut exchange, _) = start(Mechanism::CramMd5, 512, 16);
        assert_eq!(exchange.on_challenge(b"not base64!").unwrap().shown, "*");
        assert_eq!(
            exchange.on_challenge(b"PDE+").err(),
            Some(AuthViolation::ChallengeAfterCancel)
        );
        assert_eq!(
            exchange.on_success(),
            Err(AuthViolation::CancelledAuthAccepted)
        );
        assert_eq!(
            exchange.into_refusal().aborted,
            Some(AuthAbort::InvalidChallenge)
        );
    }

    #[test]
    fn scram_success_without_the_server_signature_is_a_violation() {
        let (mut exchange, line) = start(Mechanism::ScramSha256, 512, 16);
        assert!(line.starts_with(b"AUTH SCRAM-SHA-256 "));
        assert!(matches!(
            exchange.on_success(),
            Err(AuthViolation::ServerNotAuthenticated(_))
        ));
    }
}
