//! [`Error`], what stops a [`Session`](super::Session) call.

use std::io;

use mail_common::FailureKind;
use mail_common::sasl::Mechanism;
use mail_common::transport::{Cancelled, DriveError, TransportError};

use crate::{AuthFailure, Misuse, NotSent, Phase, ProtocolError, Reply, SessionFailure, Stage};

/// Set-up, I/O or a deadline: the connection is gone ([`Error::Connection`]). Whether a
/// message in flight was delivered is then unknown unless its report says so.
pub type ConnectionError = mail_common::transport::ConnectionError<Phase>;

/// A deadline that passed: TCP connect or TLS handshake, or a [`crate::Timeouts`] limit for
/// the step of the session the client was in ([`Phase`]: greeting, EHLO, MAIL, RCPT, the body
/// blocks, the final reply, ...).
pub type Timeout = mail_common::Timeout<Phase>;

/// Why a [`Session`](super::Session) call failed. A server refusal of one recipient or one
/// message is not an error: see [`crate::SendReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection is gone: set-up or I/O failed, or a deadline passed ([`Timeout`]).
    /// Fatal.
    #[error(transparent)]
    Connection(ConnectionError),
    /// The server broke the protocol (or closed the connection unexpectedly). Fatal.
    #[error("SMTP protocol error: {0}")]
    Protocol(ProtocolError),
    /// The server refused a step of the session; [`Error::class`] says whether trying again
    /// later may help.
    #[error("{stage} refused: {reply}")]
    Refused {
        /// What was refused.
        stage: Stage,
        /// The server's reply.
        reply: Reply,
    },
    /// STARTTLS is required but the server does not offer it. Nothing else was sent. Fatal.
    #[error("the server does not offer STARTTLS (required)")]
    StartTlsNotOffered,
    /// AUTH failed (wrong credentials: 535; mechanism too weak: 534; temporary: 454). The
    /// session stays usable. (A server that could not prove it knows the password is
    /// [`Error::Protocol`] with [`ProtocolError::Auth`], which ends it.)
    #[error("AUTH {} failed: {failure}", mechanism.name())]
    Auth {
        /// The mechanism tried.
        mechanism: Mechanism,
        /// Why.
        failure: AuthFailure,
    },
    /// The request was refused before anything was sent (see [`Misuse`]); the session goes
    /// on, except after a failure in the middle of a message body, which closes it.
    #[error(transparent)]
    Misuse(Misuse),
    /// Reading the caller's message body failed. The connection was closed without ending the
    /// data, so the server discards the partial message.
    #[error("reading the message body failed: {0}")]
    LocalIo(#[source] io::Error),
    /// The session is closed (after QUIT, a 421, or an earlier fatal error).
    #[error("the session is closed")]
    Closed,
    /// An earlier call was cancelled part way (its future was dropped): the session was
    /// closed, and this is the answer to every later call. Connect again. Whether the server
    /// acted on the cancelled call (delivered a message, for `send`) is unknown.
    #[error(transparent)]
    Cancelled(Cancelled),
    /// What [`crate::SendReport::ensure_sent`] turns a report that is not sent into. The
    /// session goes on.
    #[error(transparent)]
    NotSent(NotSent),
}

impl Error {
    /// The server reply behind this error, if there is one.
    pub const fn reply(&self) -> Option<&Reply> {
        match self {
            Self::Refused { reply, .. }
            | Self::Auth {
                failure:
                    AuthFailure::Refused(reply)
                    | AuthFailure::Cancelled { reply, .. }
                    | AuthFailure::TokenRefused { reply, .. },
                ..
            } => Some(reply),
            Self::NotSent(not_sent) => not_sent.reply(),
            _ => None,
        }
    }

    /// For server refusals: whether retrying later may help.
    pub fn class(&self) -> Option<mail_common::FailureClass> {
        self.reply().and_then(Reply::failure_class)
    }

    /// True when trying again later may succeed: a 4yz reply, a timeout, or a connection
    /// failure. False for 5yz replies, protocol errors, misuse and TLS certificate failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Closed => true,
            Self::Connection(error) => error.is_transient(),
            Self::NotSent(not_sent) => not_sent.is_transient(),
            _ => self
                .class()
                .is_some_and(mail_common::FailureClass::is_transient),
        }
    }

    /// What kind of failure this is.
    pub const fn kind(&self) -> FailureKind {
        match self {
            Self::Connection(error) => error.kind(),
            Self::Auth { .. } => FailureKind::Auth,
            Self::StartTlsNotOffered => FailureKind::Tls,
            // A message needing an extension this server lacks: the server cannot take it.
            Self::Refused { .. }
            | Self::NotSent(_)
            | Self::Misuse(Misuse::ContentNeedsExtension(_)) => FailureKind::Refused,
            Self::Misuse(_) => FailureKind::Config,
            Self::LocalIo(_) => FailureKind::LocalIo,
            _ => FailureKind::Protocol,
        }
    }

    /// [`Error::Refused`] for a refusal that ended the session, else [`Error::Closed`].
    pub(super) fn from_session_failure(failure: Option<&SessionFailure>) -> Self {
        failure
            .and_then(SessionFailure::refusal)
            .map_or(Self::Closed, |(stage, reply)| Self::Refused {
                stage,
                reply: reply.clone(),
            })
    }
}

impl From<TransportError> for Error {
    fn from(error: TransportError) -> Self {
        Self::Connection(error.into())
    }
}

impl From<DriveError<ProtocolError>> for Error {
    fn from(error: DriveError<ProtocolError>) -> Self {
        match error {
            DriveError::Io(error) => Self::Connection(ConnectionError::Io(error)),
            DriveError::Protocol(ProtocolError::Timeout { phase }) => {
                Self::Connection(Timeout::Server { phase }.into())
            }
            // Fatal in the core (as in POP3); the adapter keeps naming them as before.
            DriveError::Protocol(ProtocolError::StartTlsNotOffered) => Self::StartTlsNotOffered,
            DriveError::Protocol(ProtocolError::StartTlsRefused(reply)) => Self::Refused {
                stage: Stage::StartTls,
                reply,
            },
            DriveError::Protocol(error) => Self::Protocol(error),
            DriveError::Transport(error) => error.into(),
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

impl From<crate::Rejected<crate::Envelope>> for Error {
    fn from(rejected: crate::Rejected<crate::Envelope>) -> Self {
        Self::Misuse(rejected.reason)
    }
}

impl From<NotSent> for Error {
    fn from(not_sent: NotSent) -> Self {
        Self::NotSent(not_sent)
    }
}
