//! Login verification: the module boundary only. **Not implemented yet.**
//!
//! Verification needs the tokio adapters of `pop3-proto` and `smtp-submit`, which are being
//! written at the same time as this crate. Once they exist, an implementation of [`Verifier`]
//! logs in to POP3 (CAPA, STLS when needed, AUTH, QUIT) and to SMTP (EHLO, STARTTLS, AUTH,
//! RSET/QUIT; nothing is sent) and reports exactly what failed as a [`VerifyFailure`], whose
//! [`VerifyFailure::advice`] is a sentence a person can act on.
//!
//! The types here are stable enough to build a UI against: the failure classes match the issue
//! (wrong password, app password required, POP disabled, OAuth2 required, certificate not valid
//! for the host, port blocked, server refuses cleartext).

use mail_common::Secret;

use crate::settings::{Account, Protocol};

/// What to log in with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LoginSecret {
    /// A password (or app password).
    Password(Secret<String>),
    /// An OAuth2 access token.
    OAuth2Token(Secret<String>),
}

/// Which server a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The incoming (POP3) server.
    Incoming,
    /// The outgoing (SMTP submission) server.
    Outgoing,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifySuccess {
    /// Which server.
    pub role: Role,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The SASL mechanism (or `USER`) that worked.
    pub mechanism: String,
    /// The TLS version and cipher suite.
    pub tls: Option<String>,
}

/// Why a login failed, classified for advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The server rejected the username or password.
    #[error("wrong username or password")]
    WrongPassword {
        /// The server's words.
        server_text: String,
    },
    /// The provider wants an app password rather than the account password.
    #[error("an app password is required")]
    AppPasswordRequired {
        /// The server's words.
        server_text: String,
    },
    /// POP access is switched off in the provider's web settings.
    #[error("POP access is disabled at the provider")]
    PopDisabled {
        /// The server's words.
        server_text: String,
    },
    /// Only OAuth2 is accepted.
    #[error("the server accepts only OAuth2")]
    OAuth2Required,
    /// The certificate is not valid for the host (or not from a trusted CA).
    #[error("the certificate of {host} is not valid: {reason}")]
    CertificateInvalid {
        /// The host name checked.
        host: String,
        /// What rustls reported.
        reason: String,
    },
    /// No answer before the deadline: a firewall or the provider blocks the port.
    #[error("{host}:{port} did not answer (port blocked?)")]
    PortBlocked {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// The server refuses authentication without TLS.
    #[error("the server refuses authentication without TLS")]
    CleartextRefused,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl VerifyFailure {
    /// Advice a person can act on.
    pub fn advice(&self) -> String {
        match self {
            Self::WrongPassword { .. } => "Check the username and password. Some providers \
                want the full address as username, others only the part before @."
                .into(),
            Self::AppPasswordRequired { .. } => "Create an app password in the provider's \
                account security settings and use it instead of the account password."
                .into(),
            Self::PopDisabled { .. } => "Switch POP access on in the provider's web mail \
                settings, then try again."
                .into(),
            Self::OAuth2Required => "This provider accepts only OAuth2 sign-in; configure an \
                OAuth2 token provider for the account."
                .into(),
            Self::CertificateInvalid { host, .. } => format!(
                "The server's certificate does not prove it is {host}. Check the host name; \
                 for a private CA, add its certificate as extra_ca_file."
            ),
            Self::PortBlocked { port, .. } => format!(
                "Nothing answered on port {port}. The network may block it; try the other \
                 submission port (465 or 587) or another network."
            ),
            Self::CleartextRefused => "Use implicit TLS or STARTTLS for this server.".into(),
            Self::Other(_) => "See the server's message above.".into(),
        }
    }
}

/// Logs in to an account's servers without sending mail. Implemented once the protocol adapters
/// exist (see the module documentation).
pub trait Verifier: Send + Sync {
    /// Logs in to the incoming server and logs out.
    fn verify_incoming(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send;

    /// Logs in to the outgoing server (EHLO, STARTTLS, AUTH) and quits without sending.
    fn verify_outgoing(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send;
}
