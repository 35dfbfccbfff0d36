//! [`Error`], what a [`Session`](super::Session) call can fail with.

use std::{fmt, io};

use mail_common::FailureKind;
use mail_common::transport::{Cancelled, DriveError, SetupPhase, TransportError};

use crate::{Command, FailureClass, LoginFailure, Misuse, Phase, ProtocolError, Response};

/// Which wait took too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// The TCP connection.
    Connect,
    /// A TLS handshake (implicit, or after `STLS`).
    TlsHandshake,
    /// The server's greeting.
    Greeting,
    /// The status line of a reply.
    Reply,
    /// Silence inside a multi-line reply (listing, message body).
    Data,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "TCP connect",
            Self::TlsHandshake => "TLS handshake",
            Self::Greeting => "greeting",
            Self::Reply => "reply",
            Self::Data => "data",
        })
    }
}

/// What went wrong with a [`Session`](super::Session) call.
///
/// - the server said no ([`Error::Refused`], [`Error::LoginFailed`], [`Error::GreetingRefused`]):
///   data, with the RFC 2449/3206 response code and [`Error::class`]; the session goes on
///   (except after a refused greeting);
/// - the client refused the request before sending anything ([`Error::Misuse`]);
/// - the caller's writer failed ([`Error::LocalIo`]); the rest of the message was read and
///   discarded, so the session goes on;
/// - the connection cannot be used any more: see [`Error::is_fatal`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connection set-up failed: name resolution, TCP, the CA file, the TLS handshake, the
    /// wrong TLS mode for the port ([`TransportError::PlaintextGreeting`]), or no greeting in
    /// time ([`TransportError::NoGreeting`], which names the likely cause). Fatal.
    #[error(transparent)]
    Transport(TransportError),
    /// Reading or writing the connection failed. Fatal.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// A deadline passed ([`crate::tokio::SetupTimeouts`] or [`crate::Timeouts`]). Fatal.
    #[error("{0} timed out")]
    Timeout(TimeoutPhase),
    /// The server broke the protocol or exceeded a [`crate::Limits`] bound; also `STLS`
    /// missing or refused when TLS is required, and a server that failed SCRAM's mutual
    /// authentication. Fatal.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The server refused the session in its greeting (e.g. `[SYS/TEMP]`, `[IN-USE]`). Fatal.
    #[error("greeting refused: {}", .0.text)]
    GreetingRefused(Response),
    /// The login failed (`-ERR`, usually `[AUTH]`, or a cancelled SASL exchange). The session
    /// is still usable; nothing was retried.
    #[error("login with {method} failed: {text}", method = .0.method, text = .0.response.text)]
    LoginFailed(LoginFailure),
    /// The server answered a command with `-ERR`. The session goes on.
    #[error("{command} refused: {}", .response.text)]
    Refused {
        /// The command.
        command: Command,
        /// The server's text and response code.
        response: Response,
    },
    /// The client refused the request before sending anything (wrong state, CR/LF in an
    /// argument, no TLS for credentials, ...). The session goes on.
    #[error(transparent)]
    Misuse(Misuse),
    /// The caller's writer failed. The rest of the reply was read and discarded; the session
    /// goes on.
    #[error("writing the message failed: {0}")]
    LocalIo(#[source] io::Error),
    /// An earlier fatal error ended the session.
    #[error("the session is closed")]
    Closed,
    /// An earlier login was cancelled part way (its future was dropped): the session was
    /// closed, and this is the answer to every later call. Connect again.
    #[error(transparent)]
    Cancelled(Cancelled),
}

impl Error {
    /// The server's response, for refusals.
    pub const fn response(&self) -> Option<&Response> {
        match self {
            Self::GreetingRefused(response) | Self::Refused { response, .. } => Some(response),
            Self::LoginFailed(failure) => Some(&failure.response),
            _ => None,
        }
    }

    /// For server refusals: whether retrying later may help ([`Response::class`]).
    pub fn class(&self) -> Option<FailureClass> {
        self.response().map(Response::class)
    }

    /// Whether the session is over: only dropping it (and connecting again) is left.
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Transport(_)
                | Self::Io(_)
                | Self::Timeout(_)
                | Self::Protocol(_)
                | Self::GreetingRefused(_)
                | Self::Closed
                | Self::Cancelled(_)
        )
    }

    /// What kind of failure this is.
    pub const fn kind(&self) -> FailureKind {
        match self {
            Self::Transport(error) => error.kind(),
            Self::Io(_) => FailureKind::Network,
            Self::Timeout(_) => FailureKind::Timeout,
            Self::LoginFailed(_) => FailureKind::Auth,
            Self::Protocol(ProtocolError::StlsNotOffered | ProtocolError::StlsRefused(_)) => {
                FailureKind::Tls
            }
            Self::Refused { .. } | Self::GreetingRefused(_) => FailureKind::Refused,
            Self::Misuse(_) => FailureKind::Config,
            Self::LocalIo(_) => FailureKind::LocalIo,
            _ => FailureKind::Protocol,
        }
    }
}

impl From<TransportError> for Error {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Timeout { phase, .. } => Self::Timeout(match phase {
                SetupPhase::Connect => TimeoutPhase::Connect,
                _ => TimeoutPhase::TlsHandshake,
            }),
            other => Self::Transport(other),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        match error {
            ProtocolError::Timeout { phase } => Self::Timeout(match phase {
                Phase::Greeting => TimeoutPhase::Greeting,
                Phase::TlsHandshake => TimeoutPhase::TlsHandshake,
                Phase::Data => TimeoutPhase::Data,
                _ => TimeoutPhase::Reply,
            }),
            other => Self::Protocol(other),
        }
    }
}

impl From<DriveError<ProtocolError>> for Error {
    fn from(error: DriveError<ProtocolError>) -> Self {
        match error {
            DriveError::Io(e) => Self::Io(e),
            DriveError::Protocol(e) => e.into(),
            DriveError::Transport(e) => e.into(),
            DriveError::Cancelled(cancelled) => Self::Cancelled(cancelled),
            _ => Self::Closed,
        }
    }
}

impl From<Misuse> for Error {
    fn from(misuse: Misuse) -> Self {
        Self::Misuse(misuse)
    }
}
