//! The two error tiers that are not server refusals.
//!
//! - [`Rejected`] / [`Misuse`]: the caller asked for something impossible or unsafe right now.
//!   Nothing was queued, the value comes back, and the session goes on.
//! - [`ProtocolError`]: the server broke the protocol, a limit or deadline was exceeded, or
//!   the session is no longer trustworthy. The client is poisoned: every later handler call
//!   returns the same error and nothing more is transmitted.
//!
//! Server refusals (`-ERR`) are neither: they are [`crate::Event`]s.

use mail_common::ForbiddenByte;
use mail_common::sasl::{AuthViolation, SaslError};

use crate::response::Response;

/// Which wait was in progress when a deadline passed or the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the greeting.
    Greeting,
    /// Waiting for the status line of a command's reply.
    Reply,
    /// Inside a multi-line response (listing, capability list, message body).
    Data,
    /// Waiting for the driver to finish the TLS handshake after `STLS`.
    TlsHandshake,
    /// Nothing was outstanding.
    Idle,
}

/// What the client was waiting for, in words ("waiting for the greeting").
impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Greeting => "waiting for the greeting",
            Self::Reply => "waiting for a reply",
            Self::Data => "inside a multi-line reply",
            Self::TlsHandshake => "during the TLS handshake after STLS",
            Self::Idle => "while idle",
        })
    }
}

/// What was wrong with a line the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// Not a `+OK`/`-ERR` line (or, during `AUTH`, a `+ ` continuation).
    StatusLine,
    /// A `+ ` continuation outside an `AUTH` exchange.
    UnexpectedContinuation,
    /// The `STAT` reply is not `count size`.
    Stat,
    /// A scan listing (`LIST`) entry is not `msg size`.
    ScanListing,
    /// A unique-id listing (`UIDL`) entry is not `msg uid`, or the unique-id has bytes outside
    /// 0x21–0x7E.
    UidListing,
    /// A message number or size does not fit in its type (`u32` / `u64`).
    NumberOutOfRange,
}

/// What was wrong, in words ("not a +OK/-ERR status line").
impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StatusLine => "not a +OK/-ERR status line",
            Self::UnexpectedContinuation => "a \"+ \" continuation outside AUTH",
            Self::Stat => "a STAT reply that is not \"count size\"",
            Self::ScanListing => "a LIST entry that is not \"msg size\"",
            Self::UidListing => "a UIDL entry that is not \"msg uid\"",
            Self::NumberOutOfRange => "a number out of range",
        })
    }
}

/// A fatal condition: the session cannot continue and the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A response line was longer than [`crate::Limits::max_line`].
    #[error("response line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A `CAPA` response had more lines than [`crate::Limits::max_capability_lines`].
    #[error("capability list longer than {limit} lines")]
    TooManyCapabilities {
        /// The limit.
        limit: usize,
    },
    /// A listing had more entries than [`crate::Limits::max_listing_entries`].
    #[error("listing longer than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// A unique-id was longer than [`crate::Limits::max_uid_len`].
    #[error("unique-id longer than {limit} bytes")]
    UidTooLong {
        /// The limit.
        limit: usize,
    },
    /// A message body exceeded [`crate::Limits::max_message_size`]. The bytes up to the limit
    /// were delivered; the message must not be treated as complete.
    #[error("message body larger than {limit} bytes")]
    MessageTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The server sent a line that does not parse.
    #[error("malformed response ({kind}): {excerpt}")]
    Malformed {
        /// What was wrong.
        kind: Malformed,
        /// The start of the offending line, with non-printable bytes escaped.
        excerpt: String,
    },
    /// The server sent bytes while no reply was expected.
    #[error("the server sent data while no reply was expected")]
    UnsolicitedData,
    /// Bytes arrived after the positive reply to `STLS` and before the TLS handshake: they
    /// would be read as if protected by TLS (response injection, "NO STARTTLS").
    #[error("data received after the STLS reply, before TLS was established")]
    InputAfterStartTls,
    /// The connection ended before the session did.
    #[error("connection closed by the server ({phase})")]
    UnexpectedEof {
        /// What the client was waiting for.
        phase: Phase,
    },
    /// A deadline from [`crate::Timeouts`] passed.
    #[error("timed out ({phase})")]
    Timeout {
        /// What the client was waiting for.
        phase: Phase,
    },
    /// TLS is required ([`crate::Security::StartTls`]) but the server's capabilities do not
    /// include `STLS`. No credential was sent.
    #[error("TLS required but the server does not offer STLS")]
    StlsNotOffered,
    /// TLS is required ([`crate::Security::StartTls`]) but the server refused `STLS`. No
    /// credential was sent.
    #[error("TLS required but the server refused STLS: {}", .0.text)]
    StlsRefused(Response),
    /// The server broke the `AUTH` exchange in a way that makes it untrustworthy: it failed to
    /// prove it knows the password (SCRAM server signature missing or wrong: it may be an
    /// impostor), accepted an exchange the client had cancelled, or sent a challenge after
    /// `*`. The same tier as in `smtp-submit`: nothing a server that cannot prove itself sends
    /// can be trusted, so the session ends.
    #[error(transparent)]
    Auth(AuthViolation),
}

/// Why a request of the caller was refused without sending anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// An argument contains CR, LF or NUL.
    #[error(transparent)]
    InvalidArgument(#[from] ForbiddenByte),
    /// A command line (`USER`, `PASS` or `APOP` with its argument) would be longer than the
    /// 255 octets, CRLF included, that RFC 2449 section 4 allows. The argument itself is not
    /// repeated here: it may be a password.
    #[error("{command} line longer than {limit} octets")]
    CommandTooLong {
        /// The command keyword.
        command: &'static str,
        /// The limit, CRLF included.
        limit: usize,
    },
    /// Message numbers start at 1.
    #[error("message numbers start at 1")]
    MessageNumberZero,
    /// The session is still being set up (greeting, capabilities, TLS); wait for
    /// [`crate::Event::Ready`].
    #[error("the session is not ready yet")]
    NotReady,
    /// The command needs a logged-in session.
    #[error("not logged in")]
    NotLoggedIn,
    /// A login is queued or in progress; wait for its result.
    #[error("a login is in progress")]
    Busy,
    /// The command is only valid before login (`UTF8`, a second login). Named as in
    /// `smtp-submit`, where a second AUTH is refused alike.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// `QUIT` was sent or the session has ended.
    #[error("the session is closed")]
    Closed,
    /// [`crate::Limits::max_queued_commands`] commands are already waiting.
    #[error("more than {limit} commands queued")]
    QueueFull {
        /// The limit.
        limit: usize,
    },
    /// The connection is not protected by TLS and cleartext credentials were not allowed
    /// ([`crate::Config::allow_cleartext_credentials_dangerously`]).
    #[error("refusing to send credentials without TLS")]
    CleartextCredentials,
    /// Automatic login found no method that both the server and the credentials support.
    #[error("no login method suits the server and these credentials (SASL offered: {offered:?})")]
    NoSuitableMethod {
        /// The SASL mechanisms the server offered.
        offered: Vec<String>,
    },
    /// APOP needs a timestamp in the greeting, and there was none.
    #[error("the greeting carries no APOP timestamp")]
    NoApopTimestamp,
    /// The method needs a password (USER/PASS, APOP) but the credentials are a token.
    #[error("this login method needs a password")]
    WrongCredentialKind,
    /// The SASL mechanism cannot start with these credentials.
    #[error(transparent)]
    Sasl(SaslError),
    /// [`crate::Client::tls_established`] was called while no TLS handshake was expected.
    #[error("no TLS handshake was expected")]
    NotAwaitingTls,
    /// The client is poisoned by an earlier fatal error.
    #[error("the session failed earlier: {0}")]
    Fatal(Box<ProtocolError>),
}

/// A request refused as [`Misuse`], with the caller's value handed back.
pub type Rejected<T> = mail_common::Rejected<T, Misuse>;
