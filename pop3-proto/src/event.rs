//! What the client reports to its caller, drained with [`crate::Client::poll_event`].

use bytes::Bytes;
pub use mail_common::sasl::AuthAbort;
use mail_common::sasl::OAuthErrorChallenge;

use crate::capabilities::Capabilities;
use crate::command::{AuthMethod, Command, CommandId};
use crate::response::Response;

/// One line of a `LIST` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScanEntry {
    /// The message number.
    pub msg: u32,
    /// Its size in octets, as the server counts them (with CRLF line ends, before stuffing).
    pub size: u64,
}

/// One line of a `UIDL` response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UidEntry {
    /// The message number.
    pub msg: u32,
    /// The unique-id: printable ASCII, stable across sessions.
    pub uid: String,
}

/// A login that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginFailure {
    /// The method that was tried.
    pub method: AuthMethod,
    /// The server's `-ERR`, with its response code ([`Response::class`] tells whether to
    /// retry).
    pub response: Response,
    /// Set when the client cancelled the exchange itself.
    pub aborted: Option<AuthAbort>,
    /// For XOAUTH2/OAUTHBEARER: the JSON error document the server sent as a challenge,
    /// decoded (status, required scope), with the raw text kept in it.
    pub oauth_error: Option<Box<OAuthErrorChallenge>>,
}

/// Something the caller should know about.
///
/// A session produces: [`Event::Greeting`], then (with [`crate::Security::StartTls`])
/// [`Event::StartTls`], then [`Event::Ready`]; after [`crate::Client::login`]
/// [`Event::LoggedIn`] or [`Event::LoginFailed`]; one reply event per command; and
/// [`Event::Closed`] at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server greeted positively.
    Greeting(Response),
    /// The server greeted with `-ERR` (e.g. `[SYS/TEMP]`, `[IN-USE]`): it will not serve
    /// this session. Nothing more is sent; close the connection.
    GreetingRefused(Response),
    /// `STLS` was accepted and nothing else has been received. Run the TLS handshake on the
    /// connection, then call [`crate::Client::tls_established`].
    StartTls,
    /// The session is set up (TLS done when required, capabilities known): log in with
    /// [`crate::Client::login`].
    Ready(Capabilities),
    /// The login succeeded; transaction commands may be sent.
    LoggedIn {
        /// The login.
        id: CommandId,
        /// The method used.
        method: AuthMethod,
    },
    /// The login failed; the session is still in the authorization state and another login
    /// may be tried (nothing is retried automatically).
    LoginFailed {
        /// The login.
        id: CommandId,
        /// What happened.
        failure: LoginFailure,
    },
    /// Answer to [`Command::Stat`].
    Stat {
        /// The command.
        id: CommandId,
        /// Number of messages.
        count: u32,
        /// Total size in octets.
        size: u64,
    },
    /// Answer to `LIST` without argument.
    Listing {
        /// The command.
        id: CommandId,
        /// The entries, in the server's order.
        entries: Vec<ScanEntry>,
    },
    /// Answer to `LIST n`.
    Listed {
        /// The command.
        id: CommandId,
        /// The entry.
        entry: ScanEntry,
    },
    /// Answer to `UIDL` without argument.
    UidListing {
        /// The command.
        id: CommandId,
        /// The entries, in the server's order.
        entries: Vec<UidEntry>,
    },
    /// Answer to `UIDL n`.
    UidListed {
        /// The command.
        id: CommandId,
        /// The entry.
        entry: UidEntry,
    },
    /// `RETR`/`TOP` was accepted; [`Event::MessageChunk`]s follow.
    MessageStart {
        /// The command.
        id: CommandId,
        /// The message number.
        msg: u32,
    },
    /// A piece of the message, dot-unstuffed, line ends as sent. Concatenated, the chunks are
    /// the message.
    MessageChunk {
        /// The command.
        id: CommandId,
        /// The message number (as in [`Event::MessageStart`]).
        msg: u32,
        /// The bytes.
        data: Bytes,
    },
    /// The message is complete (its terminator was received).
    MessageEnd {
        /// The command.
        id: CommandId,
        /// The message number (as in [`Event::MessageStart`]).
        msg: u32,
        /// Total bytes delivered in the chunks.
        octets: u64,
    },
    /// Answer to an explicit [`Command::Capa`]; the client uses the new capabilities from now
    /// on (pipelining may have been switched on or off).
    Capabilities {
        /// The command.
        id: CommandId,
        /// The capabilities.
        capabilities: Capabilities,
    },
    /// Positive answer to a command without data: `DELE`, `RSET`, `NOOP`, `QUIT`, `UTF8`.
    Done {
        /// The command.
        id: CommandId,
        /// Which command.
        command: Command,
        /// The server's text.
        response: Response,
    },
    /// `-ERR` to a command. The session goes on (after `QUIT`, it ends anyway).
    Refused {
        /// The command.
        id: CommandId,
        /// Which command.
        command: Command,
        /// The server's text and response code.
        response: Response,
    },
    /// The server closed the connection after answering `QUIT` (or after refusing the
    /// greeting). The session is over.
    Closed,
}

impl Event {
    /// The command this event answers, if it answers one: what a driver that pipelines
    /// commands (or abandons one part way) matches replies with.
    pub const fn command_id(&self) -> Option<CommandId> {
        match self {
            Self::LoggedIn { id, .. }
            | Self::LoginFailed { id, .. }
            | Self::Stat { id, .. }
            | Self::Listing { id, .. }
            | Self::Listed { id, .. }
            | Self::UidListing { id, .. }
            | Self::UidListed { id, .. }
            | Self::MessageStart { id, .. }
            | Self::MessageChunk { id, .. }
            | Self::MessageEnd { id, .. }
            | Self::Capabilities { id, .. }
            | Self::Done { id, .. }
            | Self::Refused { id, .. } => Some(*id),
            _ => None,
        }
    }
}
