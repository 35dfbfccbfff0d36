//! What the caller can ask for: transaction commands ([`Command`]) and logins ([`Login`]).
//!
//! Session set-up commands (`CAPA` after the greeting and after TLS, `STLS`) are not here:
//! the client issues them itself, so they cannot be forgotten or sent in the wrong order.

use std::fmt;

use mail_common::Secret;
use mail_common::sasl::{Credentials, Mechanism};

/// Identifies a command (or a login) in the events that answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub(crate) u64);

/// A command the caller queues with [`crate::Client::send`].
///
/// Message numbers start at 1. The values are kept in the events that answer the command,
/// so a `-ERR` can be matched to exactly what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// `STAT`: message count and maildrop size.
    Stat,
    /// `LIST` (all messages, `None`) or `LIST n`.
    List(Option<u32>),
    /// `UIDL` (all messages, `None`) or `UIDL n`.
    Uidl(Option<u32>),
    /// `RETR n`: the whole message, streamed.
    Retr {
        /// The message number.
        msg: u32,
        /// The expected size (from `LIST`), used only to budget the bytes in flight when
        /// pipelining; never trusted for anything else.
        size_hint: Option<u64>,
    },
    /// `TOP n lines`: the header and the first `lines` body lines, streamed.
    Top {
        /// The message number.
        msg: u32,
        /// Body lines wanted.
        lines: u32,
    },
    /// `DELE n`: mark for deletion; takes effect at `QUIT`.
    Dele(u32),
    /// `RSET`: unmark all deletions.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`: commit deletions and end the session.
    Quit,
    /// `CAPA`: ask for the capabilities again (they may change after login).
    Capa,
    /// `UTF8` (RFC 6856): switch to UTF-8 mode; only before login.
    Utf8,
}

/// Response bytes assumed for a message or listing of unknown size when budgeting the bytes in
/// flight: a typical mail, so a window of 1 MiB keeps a few dozen such commands in flight.
pub(crate) const UNKNOWN_SIZE_ESTIMATE: u64 = 64 * 1024;

impl Command {
    /// `RETR msg` without a size hint.
    pub const fn retr(msg: u32) -> Self {
        Self::Retr {
            msg,
            size_hint: None,
        }
    }

    /// `TOP msg lines`.
    pub const fn top(msg: u32, lines: u32) -> Self {
        Self::Top { msg, lines }
    }

    /// The message number argument, if any.
    pub(crate) const fn msg(self) -> Option<u32> {
        match self {
            Self::List(msg) | Self::Uidl(msg) => msg,
            Self::Retr { msg, .. } | Self::Top { msg, .. } | Self::Dele(msg) => Some(msg),
            Self::Stat | Self::Rset | Self::Noop | Self::Quit | Self::Capa | Self::Utf8 => None,
        }
    }

    /// Whether later commands must wait for this one's reply, and this one for all earlier
    /// replies: its answer changes the session (capabilities, UTF-8 mode, the end).
    pub(crate) const fn is_barrier(self) -> bool {
        matches!(self, Self::Quit | Self::Capa | Self::Utf8)
    }

    /// Response bytes to budget while it is in flight.
    pub(crate) fn expected_bytes(self) -> u64 {
        match self {
            Self::Retr {
                size_hint: Some(size),
                ..
            } => size,
            Self::Retr { .. } | Self::Top { .. } | Self::List(None) | Self::Uidl(None) => {
                UNKNOWN_SIZE_ESTIMATE
            }
            _ => 0,
        }
    }
}

/// The command line, without CRLF. Nothing in a [`Command`] is secret.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stat => f.write_str("STAT"),
            Self::List(None) => f.write_str("LIST"),
            Self::List(Some(msg)) => write!(f, "LIST {msg}"),
            Self::Uidl(None) => f.write_str("UIDL"),
            Self::Uidl(Some(msg)) => write!(f, "UIDL {msg}"),
            Self::Retr { msg, .. } => write!(f, "RETR {msg}"),
            Self::Top { msg, lines } => write!(f, "TOP {msg} {lines}"),
            Self::Dele(msg) => write!(f, "DELE {msg}"),
            Self::Rset => f.write_str("RSET"),
            Self::Noop => f.write_str("NOOP"),
            Self::Quit => f.write_str("QUIT"),
            Self::Capa => f.write_str("CAPA"),
            Self::Utf8 => f.write_str("UTF8"),
        }
    }
}

/// A way to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `USER` + `PASS` (RFC 1939): the password in the clear, inside TLS.
    UserPass,
    /// `APOP` (RFC 1939): an MD5 digest of the greeting timestamp and the password. Weak
    /// (MD5, the server stores the password), but never sends the password itself.
    Apop,
    /// `AUTH` (RFC 5034) with a SASL mechanism.
    Sasl(Mechanism),
}

/// The name a person knows: `USER/PASS`, `APOP`, or the SASL mechanism's registered name
/// (`SCRAM-SHA-256`).
///
/// ```
/// use pop3_proto::{AuthMethod, Mechanism};
/// assert_eq!(AuthMethod::Sasl(Mechanism::ScramSha256).to_string(), "AUTH SCRAM-SHA-256");
/// assert_eq!(AuthMethod::UserPass.to_string(), "USER/PASS");
/// ```
impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserPass => f.write_str("USER/PASS"),
            Self::Apop => f.write_str("APOP"),
            Self::Sasl(mechanism) => write!(f, "AUTH {}", mechanism.name()),
        }
    }
}

/// A login request for [`crate::Client::login`].
///
/// ```
/// use pop3_proto::{AuthMethod, Credentials, Login, Mechanism};
/// let auto = Login::auto(Credentials::password("alice", "secret")).with_nonce(*b"fresh random bytes!!");
/// let explicit = Login::using(AuthMethod::Sasl(Mechanism::Plain), Credentials::password("bob", "pw"));
/// assert!(!format!("{auto:?}{explicit:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub(crate) credentials: Credentials,
    pub(crate) method: Option<AuthMethod>,
    pub(crate) nonce: Option<Secret<Vec<u8>>>,
}

impl Login {
    /// Lets the client choose, once, from what the server announced: the strongest SASL
    /// mechanism the credentials suit ([`mail_common::sasl::choose`]); otherwise, for a
    /// password, USER/PASS when the server announced `USER` or did not answer `CAPA`, and APOP
    /// when the greeting had a timestamp. Inside TLS USER/PASS goes first and APOP is the last
    /// resort: a greeting timestamp does not promise that APOP works (GNU mailutils pop3d
    /// sends one and refuses APOP). On a connection without TLS (cleartext explicitly allowed)
    /// APOP goes first, so the password itself is not sent in the clear.
    ///
    /// If the chosen method fails, the failure is reported; the client never retries with a
    /// weaker method by itself.
    pub const fn auto(credentials: Credentials) -> Self {
        Self {
            credentials,
            method: None,
            nonce: None,
        }
    }

    /// Logs in with exactly this method, whether or not the server announced it.
    pub const fn using(method: AuthMethod, credentials: Credentials) -> Self {
        Self {
            credentials,
            method: Some(method),
            nonce: None,
        }
    }

    /// Fresh random bytes for SCRAM's client nonce (at least 18 recommended). Without them the
    /// client takes [`crate::Config::nonce_source`]'s, by default from the operating system.
    #[must_use]
    pub fn with_nonce(mut self, nonce: impl Into<Vec<u8>>) -> Self {
        self.nonce = Some(Secret::new(nonce.into()));
        self
    }

    /// The user name.
    pub fn username(&self) -> &str {
        self.credentials.username()
    }
}
