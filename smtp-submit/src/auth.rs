//! SMTP AUTH framing (RFC 4954) around the SASL mechanisms of `mail_common::sasl`.
//!
//! The mechanism supplies decoded messages; this module owns the wire: base64, the initial
//! response on the command line when the 512-octet line limit allows (`=` for an empty one),
//! otherwise answering the server's empty 334, and `*` to cancel when the client cannot go on.
//! Every line built here is wrapped in [`Secret`] because it carries or derives from the
//! credential.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_common::Secret;
use mail_common::sasl::{Credentials, Mechanism, OAuthErrorChallenge, SaslClient, SaslError};

use crate::reply::Reply;

/// RFC 5321 section 4.5.3.1.4: a command line, CRLF included, is at most 512 octets.
const MAX_COMMAND_LINE: usize = 512;

/// Which SASL mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// The strongest mechanism both the server and the credentials support
    /// (`mail_common::sasl::choose`). Never falls back to a weaker one after a failure.
    #[default]
    Auto,
    /// Exactly this mechanism; refused before sending if the server does not offer it.
    Mechanism(Mechanism),
}

/// An AUTH exchange in progress.
#[derive(Debug)]
pub(crate) struct AuthExchange {
    sasl: SaslClient,
    deferred_initial: Option<Secret<Vec<u8>>>,
    cancelled: Option<SaslError>,
}

/// What to do with a 334 challenge.
pub(crate) enum ChallengeAnswer {
    /// Send this line (base64 response + CRLF).
    Respond(Secret<Vec<u8>>),
    /// Send `*` to cancel.
    Cancel,
}

impl AuthExchange {
    /// Starts the exchange and builds the `AUTH` command line.
    pub(crate) fn start(
        mechanism: Mechanism,
        credentials: &Credentials,
        nonce: &[u8],
    ) -> Result<(Self, Secret<Vec<u8>>), SaslError> {
        let mut sasl = SaslClient::new(mechanism, credentials, nonce)?;
        let initial = sasl.initial_response();
        let mut line = format!("AUTH {}", mechanism.name()).into_bytes();
        let mut deferred_initial = None;
        if let Some(initial) = initial {
            let encoded = encode(initial.expose());
            if line.len() + 1 + encoded.expose().len() + 2 <= MAX_COMMAND_LINE {
                line.push(b' ');
                if encoded.expose().is_empty() {
                    line.push(b'=');
                } else {
                    line.extend_from_slice(encoded.expose());
                }
            } else {
                deferred_initial = Some(initial);
            }
        }
        line.extend_from_slice(b"\r\n");
        Ok((
            Self {
                sasl,
                deferred_initial,
                cancelled: None,
            },
            Secret::new(line),
        ))
    }

    pub(crate) const fn mechanism(&self) -> Mechanism {
        self.sasl.mechanism()
    }

    /// True once the client sent `*`.
    pub(crate) const fn is_cancelled(&self) -> bool {
        self.cancelled.is_some()
    }

    /// The error that made the client cancel.
    pub(crate) fn take_cancel_reason(&mut self) -> Option<SaslError> {
        self.cancelled.take()
    }

    /// Answers a 334 challenge.
    pub(crate) fn on_challenge(&mut self, reply: &Reply) -> ChallengeAnswer {
        let response = if let Some(initial) = self.deferred_initial.take() {
            // The server's empty 334 that asks for the initial response we could not fit.
            Ok(initial)
        } else {
            let text = reply.lines().first().map_or("", |line| line.trim());
            match BASE64.decode(text) {
                Ok(challenge) => self.sasl.step(&challenge),
                Err(_) => Err(SaslError::MalformedChallenge(
                    "challenge is not valid base64",
                )),
            }
        };
        match response {
            Ok(response) => {
                let mut line = encode(response.expose()).into_inner();
                line.extend_from_slice(b"\r\n");
                ChallengeAnswer::Respond(Secret::new(line))
            }
            Err(error) => {
                self.cancelled = Some(error);
                ChallengeAnswer::Cancel
            }
        }
    }

    /// For XOAUTH2/OAUTHBEARER: the server's decoded JSON error challenge, if it sent one.
    pub(crate) fn oauth_error(&self) -> Option<Box<OAuthErrorChallenge>> {
        self.sasl.server_error().cloned().map(Box::new)
    }

    /// The server reported success: let the mechanism check the server's proof.
    pub(crate) fn on_success(&mut self) -> Result<(), SaslError> {
        self.sasl.finish(None)
    }
}

fn encode(bytes: &[u8]) -> Secret<Vec<u8>> {
    Secret::new(BASE64.encode(bytes).into_bytes())
}
