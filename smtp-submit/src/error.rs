//! The two error tiers of the client (server refusals are the third tier and arrive as
//! [`Event`](crate::Event)s, not errors).
//!
//! - [`Misuse`]: the caller asked for something that cannot be done now or with these values.
//!   Nothing was queued; the session is unaffected.
//! - [`ProtocolError`]: the server broke the protocol, a limit was exceeded, the connection ended
//!   or a deadline passed. The client is poisoned: every later call returns the same error and
//!   nothing more is transmitted. Close the connection.

use mail_common::ForbiddenByte;
use mail_common::sasl::{AuthViolation, Mechanism, SaslError};

use crate::body::BareLineEnding;
use crate::content::Undeclared;
use crate::reply::{MalformedReply, Reply, ReplyError};

/// The step of the session a deadline or an unexpected event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the 220 greeting.
    Greeting,
    /// Waiting for the EHLO or HELO reply.
    Ehlo,
    /// Waiting for the STARTTLS reply.
    StartTls,
    /// Waiting for the driver's TLS handshake after STARTTLS.
    TlsHandshake,
    /// During AUTH.
    Auth,
    /// Waiting for the RSET reply.
    Rset,
    /// Waiting for the MAIL reply.
    Mail,
    /// Waiting for a RCPT reply.
    Rcpt,
    /// Waiting for the 354 reply to DATA.
    DataInit,
    /// Body bytes waiting to be written.
    DataBlock,
    /// Waiting for the reply after the end of data.
    DataTermination,
    /// Waiting for a BDAT reply.
    Bdat,
    /// Waiting for the QUIT reply.
    Quit,
    /// Waiting for the NOOP reply.
    Noop,
    /// Nothing outstanding.
    Idle,
}

/// What the client was waiting for, in words ("waiting for the greeting").
impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Greeting => "waiting for the greeting",
            Self::Ehlo => "waiting for the EHLO reply",
            Self::StartTls => "waiting for the STARTTLS reply",
            Self::TlsHandshake => "during the TLS handshake after STARTTLS",
            Self::Auth => "during AUTH",
            Self::Rset => "waiting for the RSET reply",
            Self::Mail => "waiting for the MAIL reply",
            Self::Rcpt => "waiting for a RCPT reply",
            Self::DataInit => "waiting for the 354 reply to DATA",
            Self::DataBlock => "while the server took no more of the message",
            Self::DataTermination => "waiting for the reply to the end of the message",
            Self::Bdat => "waiting for a BDAT reply",
            Self::Quit => "waiting for the QUIT reply",
            Self::Noop => "waiting for the NOOP reply",
            Self::Idle => "while idle",
        })
    }
}

/// The step of the session a server refusal belongs to: the greeting, a command of the session
/// set-up, NOOP or RSET, or the 421 that closes the service. [`SessionFailure::refusal`] says
/// which one a [`SessionFailure`] is; the tokio adapter's `Error::Refused` carries it. Its
/// `Display` is the word a message puts before "refused" ("EHLO refused: 550 ...").
///
/// [`SessionFailure`]: crate::SessionFailure
/// [`SessionFailure::refusal`]: crate::SessionFailure::refusal
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The greeting (typically 554: the server will not talk to this client).
    Greeting,
    /// EHLO.
    Ehlo,
    /// HELO, the fallback for servers that do not know EHLO.
    Helo,
    /// STARTTLS.
    StartTls,
    /// NOOP.
    Noop,
    /// RSET.
    Rset,
    /// The server closed the service (421) between commands.
    ServiceClosing,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Greeting => "greeting",
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::StartTls => "STARTTLS",
            Self::Noop => "NOOP",
            Self::Rset => "RSET",
            Self::ServiceClosing => "service",
        })
    }
}

/// A fatal error: the session cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reply line exceeded [`Limits::max_reply_line`](crate::Limits::max_reply_line).
    #[error("reply line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A reply exceeded [`Limits::max_reply_lines`](crate::Limits::max_reply_lines).
    #[error("reply with more than {limit} lines")]
    TooManyReplyLines {
        /// The limit.
        limit: usize,
    },
    /// The EHLO reply exceeded [`Limits::max_ehlo_lines`](crate::Limits::max_ehlo_lines).
    #[error("EHLO reply with more than {limit} lines")]
    TooManyEhloLines {
        /// The limit.
        limit: usize,
    },
    /// A reply does not follow the SMTP reply grammar.
    #[error("malformed reply: {0}")]
    MalformedReply(MalformedReply),
    /// A reply that makes no sense for the command it answers (e.g. 354 to RCPT).
    #[error("unexpected reply {code} ({phase})")]
    UnexpectedReply {
        /// The reply code.
        code: u16,
        /// What the client was waiting for.
        phase: Phase,
    },
    /// A reply arrived while no command was waiting for one: replies can no longer be matched
    /// to commands.
    #[error("unsolicited reply {code}: more replies than commands")]
    UnsolicitedReply {
        /// The reply code.
        code: u16,
    },
    /// Bytes arrived after the positive STARTTLS reply, before TLS was established: a response
    /// injection attempt (or a broken server).
    #[error("data received after the STARTTLS reply and before TLS (response injection)")]
    InputAfterStartTls,
    /// The server closed the connection when it should not have.
    #[error("connection closed by the server ({phase})")]
    UnexpectedEof {
        /// What the client was waiting for.
        phase: Phase,
    },
    /// A deadline passed.
    #[error("timed out ({phase})")]
    Timeout {
        /// What the client was waiting for.
        phase: Phase,
    },
    /// TLS is required ([`Security::StartTls`](crate::Security::StartTls)) but the server does
    /// not offer STARTTLS (or does not even know EHLO). No credential or mail was sent.
    ///
    /// Fatal, as `pop3-proto`'s `StlsNotOffered`: the caller asked for TLS, and a server (or a
    /// man in the middle stripping the keyword) that will not provide it leaves nothing safe
    /// to do on this connection. A retry over the same path would meet the same stripper.
    #[error("TLS required but the server does not offer STARTTLS")]
    StartTlsNotOffered,
    /// TLS is required but the server refused STARTTLS (454, 502, ...). No credential or mail
    /// was sent. Fatal for the same reason as [`ProtocolError::StartTlsNotOffered`]; the reply
    /// says whether the refusal is transient.
    #[error("TLS required but the server refused STARTTLS: {0}")]
    StartTlsRefused(Reply),
    /// The server broke the `AUTH` exchange in a way that makes it untrustworthy: it failed to
    /// prove it knows the password (SCRAM server signature missing or wrong: it may be an
    /// impostor that has just read a password-derived proof), accepted an exchange the client
    /// had cancelled, or sent a challenge after `*`. The same tier as in `pop3-proto`: nothing
    /// more is sent to such a server, not even QUIT.
    #[error(transparent)]
    Auth(AuthViolation),
}

impl ProtocolError {
    pub(crate) const fn from_reply_error(error: ReplyError, ehlo: bool) -> Self {
        match error {
            ReplyError::LineTooLong { limit } => Self::LineTooLong { limit },
            ReplyError::TooManyLines { limit } if ehlo => Self::TooManyEhloLines { limit },
            ReplyError::TooManyLines { limit } => Self::TooManyReplyLines { limit },
            ReplyError::Malformed(malformed) => Self::MalformedReply(malformed),
        }
    }
}

/// An SMTP extension a request depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Extension {
    /// SMTPUTF8 (internationalised addresses).
    SmtpUtf8,
    /// 8BITMIME (`BODY=8BITMIME`, or an 8-bit body).
    EightBitMime,
    /// DSN (`NOTIFY`, `ORCPT`, `RET`, `ENVID`).
    Dsn,
    /// REQUIRETLS.
    RequireTls,
    /// AUTH.
    Auth,
}

/// A free-text argument checked before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Argument {
    /// `ENVID=`.
    EnvelopeId,
    /// `ORCPT=` of the recipient at this index.
    OriginalRecipient(usize),
}

/// The caller asked for something that cannot be done; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// The session is not ready for this (greeting, EHLO or STARTTLS still in progress).
    #[error("the session is not ready yet")]
    NotReady,
    /// Another AUTH exchange or mail transaction is in progress.
    #[error("an AUTH exchange or a mail transaction is in progress")]
    Busy,
    /// The window of pipelined transactions is full ([`Limits::max_pipelined_transactions`]
    /// or [`Limits::max_pipelined_bytes`]): start this one after the next
    /// [`Event::MessageDone`](crate::Event::MessageDone).
    ///
    /// [`Limits::max_pipelined_transactions`]: crate::Limits::max_pipelined_transactions
    /// [`Limits::max_pipelined_bytes`]: crate::Limits::max_pipelined_bytes
    #[error(
        "{transactions} transaction(s) of {bytes} bytes in flight: the pipelining window is full"
    )]
    WindowFull {
        /// Transactions in flight.
        transactions: usize,
        /// Their encoded body bytes.
        bytes: usize,
    },
    /// The session has ended (QUIT, a session failure, or 421).
    #[error("the session is closed")]
    Closed,
    /// [`Client::tls_established`](crate::Client::tls_established) without a pending STARTTLS.
    #[error("no STARTTLS handshake is pending")]
    NotAwaitingTls,
    /// The client was poisoned by this fatal error earlier.
    #[error("the session failed earlier: {0}")]
    Fatal(Box<ProtocolError>),
    /// A free-text argument contains CR, LF or NUL.
    #[error("{argument:?}: {error}")]
    InvalidArgument {
        /// Which argument.
        argument: Argument,
        /// The offending byte.
        error: ForbiddenByte,
    },
    /// A free-text argument is too long once encoded.
    #[error("{argument:?} is {length} characters long once encoded; the limit is {max}")]
    ArgumentTooLong {
        /// Which argument.
        argument: Argument,
        /// Its encoded length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope has no recipient.
    #[error("the envelope has no recipient")]
    NoRecipients,
    /// The server does not offer an extension this request needs.
    #[error("the server does not offer {0:?}")]
    ExtensionNotOffered(Extension),
    /// REQUIRETLS asked for on a connection without TLS.
    #[error("REQUIRETLS needs a TLS connection")]
    RequireTlsWithoutTls,
    /// The message's content needs an extension the server does not offer: 8-bit octets
    /// without 8BITMIME, raw UTF-8 headers without SMTPUTF8. Nothing was sent.
    #[error("{}", describe_content_needs(*.0))]
    ContentNeedsExtension(Extension),
    /// A streamed body holds content its `MAIL FROM` did not declare (an 8-bit octet without
    /// `BODY=8BITMIME`, raw UTF-8 in a header without `SMTPUTF8`). The data was not ended, so
    /// nothing is delivered; the transaction cannot go on: close the connection.
    #[error("{}", describe_undeclared(*.0))]
    UndeclaredContent(Undeclared),
    /// The envelope has more recipients than the server's `LIMITS RCPTMAX` (RFC 9422) allows
    /// in one transaction: split it (the tokio adapter does so by itself).
    #[error("{count} recipients exceed the server's limit of {max} per transaction (RCPTMAX)")]
    TooManyRecipients {
        /// Recipients in the envelope.
        count: usize,
        /// The server's `RCPTMAX`.
        max: usize,
    },
    /// The session has had as many transactions as the server's `LIMITS MAILMAX` (RFC 9422)
    /// allows: connect again for more.
    #[error("the server allows {max} transactions per session (MAILMAX); connect again")]
    TransactionLimit {
        /// The server's `MAILMAX`.
        max: usize,
    },
    /// The declared size exceeds the server's SIZE limit.
    #[error("message of {size} bytes exceeds the server's limit of {limit} bytes")]
    MessageTooLarge {
        /// The declared (or computed) size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// AUTH without TLS and without the explicit cleartext opt-in.
    #[error("refusing to send credentials without TLS")]
    CleartextCredentials,
    /// None of the offered mechanisms suits the credentials.
    #[error("no offered SASL mechanism suits these credentials (offered: {offered:?})")]
    NoSuitableMethod {
        /// The server's mechanisms.
        offered: Vec<String>,
    },
    /// The explicitly requested mechanism is not offered.
    #[error("the server does not offer {0}")]
    MechanismNotOffered(Mechanism),
    /// AUTH succeeded already; RFC 4954 forbids a second one.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// The SASL mechanism refused to start (wrong credential kind, unencodable credential).
    #[error("SASL: {0}")]
    Sasl(SaslError),
    /// No body is being written (no transaction, or it was started with
    /// [`Client::send_mail_bytes`](crate::Client::send_mail_bytes)).
    #[error("no message body is being written")]
    NoBodyInProgress,
    /// [`Client::finish_body`](crate::Client::finish_body) was already called.
    #[error("the body was already finished")]
    BodyFinished,
    /// The transaction has already failed; its outcome event follows.
    #[error("the transaction has failed; stop writing the body")]
    TransactionFailed,
    /// The body has a bare CR or LF and the policy is to reject it. Nothing of this write was
    /// consumed.
    #[error(transparent)]
    BareLineEnding(BareLineEnding),
}

fn describe_content_needs(extension: Extension) -> &'static str {
    match extension {
        Extension::SmtpUtf8 => {
            "the message has raw UTF-8 in its header section and the server does not offer \
             SMTPUTF8 (RFC 6531), so it cannot be sent as it is; nothing was sent: encode the \
             headers (RFC 2047) or use a server that offers SMTPUTF8"
        }
        _ => {
            "the message has 8-bit (non-ASCII) octets and the server does not offer 8BITMIME \
             (RFC 6152), so it cannot be sent as it is; nothing was sent: encode the body as \
             quoted-printable or base64 or use a server that offers 8BITMIME"
        }
    }
}

fn describe_undeclared(undeclared: Undeclared) -> &'static str {
    match undeclared {
        Undeclared::Utf8Header => {
            "the streamed message has raw UTF-8 in its header section but SMTPUTF8 was not \
             declared; the message was abandoned before the end of data, nothing is delivered: \
             declare it (MailOptions::with_smtputf8) or scan the message first"
        }
        _ => {
            "the streamed message has an 8-bit octet but BODY=8BITMIME was not declared; the \
             message was abandoned before the end of data, nothing is delivered: declare it \
             (MailOptions::with_body_type) or scan the message first"
        }
    }
}

impl From<ProtocolError> for Misuse {
    fn from(error: ProtocolError) -> Self {
        Self::Fatal(Box::new(error))
    }
}

/// A request refused as [`Misuse`], with the caller's value (an [`Envelope`](crate::Envelope))
/// handed back.
pub type Rejected<T> = mail_common::Rejected<T, Misuse>;
