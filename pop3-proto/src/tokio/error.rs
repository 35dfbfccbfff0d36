//! [`Error`], what a [`Session`](super::Session) call can fail with.

use std::io;

use mail_common::FailureKind;
use mail_common::transport::{Cancelled, DriveError, TransportError};

use crate::{Command, FailureClass, LoginFailure, Misuse, Phase, ProtocolError, Response};

/// A deadline that passed: TCP connect or TLS handshake, or the server silent past a
/// [`crate::Timeouts`] limit while it owed the greeting, a status line or the rest of a
/// listing or message ([`Phase`]).
pub type Timeout = mail_common::Timeout<Phase>;

/// Why the connection is gone; [`Error::Connection`].
pub type ConnectionError = mail_common::transport::ConnectionError<Phase>;

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
    /// Connecting, reading or writing failed, or the server was silent too long ([`Timeout`]).
    /// Fatal: connect again (and, after `DELE`, see [`super::Session::quit`]).
    #[error(transparent)]
    Connection(ConnectionError),
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
            Self::Connection(_)
                | Self::Protocol(_)
                | Self::GreetingRefused(_)
                | Self::Closed
                | Self::Cancelled(_)
        )
    }

    /// What kind of failure this is.
    pub const fn kind(&self) -> FailureKind {
        match self {
            Self::Connection(error) => error.kind(),
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
        Self::Connection(error.into())
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        match error {
            ProtocolError::Timeout { phase } => Self::Connection(Timeout::Server { phase }.into()),
            other => Self::Protocol(other),
        }
    }
}

impl From<DriveError<ProtocolError>> for Error {
    fn from(error: DriveError<ProtocolError>) -> Self {
        match error {
            DriveError::Io(e) => Self::Connection(ConnectionError::Io(e)),
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
