//! What the client reports to its caller through [`Client::poll_event`](crate::Client::poll_event).
//!
//! Server refusals are events, not errors: a rejected recipient or message is a normal outcome
//! the caller acts on (retry later, bounce, drop the address), and the session stays usable.

use std::fmt;

use mail_common::sasl::{AuthAbort, Mechanism, OAuthErrorChallenge};

use crate::capabilities::Capabilities;
use crate::envelope::Address;
use crate::error::Stage;
use crate::reply::Reply;

/// Identifies one mail transaction (one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub(crate) u64);

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Something the caller must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server greeted positively (220); EHLO follows.
    Greeting(Reply),
    /// The server greeted with a refusal (554 "no service here", or 421 "service not
    /// available"): it will not serve this session. After a 554 the client sends QUIT (RFC 5321
    /// section 3.1); after a 421 the server closes the channel (section 3.8) and nothing is
    /// sent. Either way [`Event::Closed`] follows.
    GreetingRefused(Reply),
    /// The server accepted STARTTLS and nothing else is buffered: perform the TLS handshake on
    /// the connection, then call [`Client::tls_established`](crate::Client::tls_established).
    StartTls,
    /// The session is established (after EHLO, and after STARTTLS when required): the caller may
    /// authenticate and send mail.
    Ready(Capabilities),
    /// AUTH succeeded.
    Authenticated {
        /// The mechanism used.
        mechanism: Mechanism,
    },
    /// AUTH failed. There is no automatic retry with a weaker mechanism.
    AuthFailed {
        /// The mechanism tried.
        mechanism: Mechanism,
        /// Why.
        failure: AuthFailure,
    },
    /// The server answered one `RCPT TO`.
    Recipient {
        /// The transaction.
        transaction: TransactionId,
        /// Index into the envelope's recipients.
        index: usize,
        /// The recipient.
        address: Address,
        /// Accepted or rejected, with the server's reply.
        outcome: RecipientOutcome,
    },
    /// [`Client::write_body`](crate::Client::write_body) returned less than it was given and can
    /// now take more.
    BodyWritable {
        /// The transaction.
        transaction: TransactionId,
    },
    /// The transaction is over; a new one may start.
    MessageDone {
        /// The transaction.
        transaction: TransactionId,
        /// Sent or failed.
        outcome: MessageOutcome,
    },
    /// The server answered a `NOOP` sent by [`Client::noop`](crate::Client::noop).
    NoopReply(Reply),
    /// The server answered a `RSET` sent by [`Client::rset`](crate::Client::rset).
    RsetReply(Reply),
    /// The session cannot be used. The client sends QUIT when that is still sensible and then
    /// reports [`Event::Closed`].
    SessionFailed(SessionFailure),
    /// The session is over; close the connection.
    Closed,
}

/// The server's answer to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientOutcome {
    /// 2yz: the server will try to deliver to this recipient.
    Accepted(Reply),
    /// 4yz/5yz: this recipient will not get the message;
    /// [`Reply::failure_class`] says whether a retry may help.
    Rejected(Reply),
    /// Not attempted: `MAIL FROM` was refused (the cause, in
    /// [`TransactionFailure::MailRejected`]), and this is the server's reply to the `RCPT`
    /// pipelined behind it, usually `503 sender not yet given`. It says nothing about the
    /// recipient.
    SenderRefused(Reply),
    /// Never sent to the server (only in reports of [`RecipientBatches`] and
    /// [`PipelinedReports`], as the tokio adapter's): the session could not take another
    /// transaction (RFC 9422 `MAILMAX` reached, or the session ended). Try again on a new
    /// connection.
    ///
    /// [`RecipientBatches`]: crate::RecipientBatches
    /// [`PipelinedReports`]: crate::PipelinedReports
    NotAttempted,
}

impl RecipientOutcome {
    /// The server's reply to this `RCPT TO` (or, for [`RecipientOutcome::SenderRefused`]
    /// without PIPELINING, the refusal of `MAIL FROM`); none when it was not attempted.
    pub const fn reply(&self) -> Option<&Reply> {
        match self {
            Self::Accepted(reply) | Self::Rejected(reply) | Self::SenderRefused(reply) => {
                Some(reply)
            }
            Self::NotAttempted => None,
        }
    }

    /// True when the server accepted the recipient.
    pub const fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted(_))
    }
}

/// The outcome of a whole transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageOutcome {
    /// The server took responsibility for the message (for the accepted recipients).
    Sent {
        /// The final reply; its text usually carries the queue id.
        reply: Reply,
        /// How many recipients were accepted.
        accepted: usize,
    },
    /// Nothing was delivered.
    Failed(TransactionFailure),
}

/// Why a transaction delivered nothing: the first failure in the transaction, with the
/// server's words. Its `Display` is a sentence for people ("sender refused (MAIL FROM): 550
/// ...").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionFailure {
    /// `MAIL FROM` was refused.
    MailRejected(Reply),
    /// Every recipient was refused (see the [`Event::Recipient`] events). `reply` is the
    /// refusal of `DATA`/`BDAT` when one was sent.
    NoValidRecipients {
        /// The reply to DATA or BDAT, if any.
        reply: Option<Reply>,
    },
    /// `DATA` was refused although recipients were accepted.
    DataRejected(Reply),
    /// The message itself was refused (reply after the end of data, or to a `BDAT` chunk).
    MessageRejected(Reply),
    /// The server closed the session (421) during the transaction.
    ServiceClosing(Reply),
}

impl TransactionFailure {
    /// The server reply that ended the transaction, if one did.
    pub const fn reply(&self) -> Option<&Reply> {
        match self {
            Self::MailRejected(reply)
            | Self::DataRejected(reply)
            | Self::MessageRejected(reply)
            | Self::ServiceClosing(reply)
            | Self::NoValidRecipients { reply: Some(reply) } => Some(reply),
            Self::NoValidRecipients { reply: None } => None,
        }
    }
}

impl fmt::Display for TransactionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MailRejected(reply) => write!(f, "sender refused (MAIL FROM): {reply}"),
            Self::NoValidRecipients { reply: None } => f.write_str("no recipient accepted"),
            Self::NoValidRecipients { reply: Some(reply) } => {
                write!(f, "no recipient accepted (then: {reply})")
            }
            Self::DataRejected(reply) => write!(f, "DATA refused: {reply}"),
            Self::MessageRejected(reply) => write!(f, "message refused: {reply}"),
            Self::ServiceClosing(reply) => write!(f, "the server closed the session: {reply}"),
        }
    }
}

/// Why AUTH failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The server refused (535 bad credentials, 534 mechanism too weak, 454 temporary, 530 ...).
    Refused(Reply),
    /// The client cancelled the exchange with `*` (a malformed challenge, one challenge too
    /// many, ...). `reply` is the server's answer to the cancellation.
    Cancelled {
        /// Why the client cancelled.
        error: AuthAbort,
        /// The server's reply to `*`.
        reply: Reply,
    },
    /// XOAUTH2/OAUTHBEARER: the server refused the token. It first sent its JSON error as a
    /// challenge (answered as the mechanism requires: an empty line, or `%x01`), decoded here,
    /// then the refusal `reply` (typically `535 5.7.8`).
    TokenRefused {
        /// The server's error challenge: status and the scope the token needs.
        error: Box<OAuthErrorChallenge>,
        /// The final refusal.
        reply: Reply,
    },
}

/// The server's words, and the client's reason when it cancelled ("cancelled (...); server:
/// 535 ...").
impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(reply) => write!(f, "{reply}"),
            Self::Cancelled { error, reply } => write!(f, "cancelled ({error}); server: {reply}"),
            Self::TokenRefused { error, reply } => {
                write!(f, "token refused ({error}); server: {reply}")
            }
        }
    }
}

/// Why the session ended before it could be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionFailure {
    /// EHLO was refused with something other than "command not recognised".
    EhloRefused(Reply),
    /// HELO (the fallback after EHLO was not recognised) was refused.
    HeloRefused(Reply),
    /// The server is shutting down (421 after the greeting; a 421 greeting is
    /// [`Event::GreetingRefused`]).
    ServiceNotAvailable(Reply),
}

impl SessionFailure {
    /// The step the server refused and its reply: EHLO, HELO, or the service itself (421,
    /// [`Stage::ServiceClosing`]). `None` is for a failure that is not a refusal (none yet).
    #[must_use]
    pub const fn refusal(&self) -> Option<(Stage, &Reply)> {
        match self {
            Self::EhloRefused(reply) => Some((Stage::Ehlo, reply)),
            Self::HeloRefused(reply) => Some((Stage::Helo, reply)),
            Self::ServiceNotAvailable(reply) => Some((Stage::ServiceClosing, reply)),
        }
    }
}

impl Event {
    /// For an event that ends the session as a server refusal (the greeting refused, or
    /// [`Event::SessionFailed`] with a refusal), the refused step and the reply: what the
    /// blocking driver's `Error::Refused` carries, named as the tokio adapter's
    /// `Error::Refused` names it.
    #[must_use]
    pub const fn refusal(&self) -> Option<(Stage, &Reply)> {
        match self {
            Self::GreetingRefused(reply) => Some((Stage::Greeting, reply)),
            Self::SessionFailed(failure) => failure.refusal(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AuthFailure, Event, SessionFailure};
    use crate::Stage;
    use crate::reply::{Reply, ReplyReader};

    fn reply(text: &str) -> Reply {
        let mut reader = ReplyReader::new(512);
        reader.extend(text.as_bytes());
        reader.next_reply(10).unwrap().unwrap()
    }

    #[test]
    fn a_session_failure_names_the_refused_step_and_its_reply() {
        for (failure, stage, code) in [
            (
                SessionFailure::EhloRefused(reply("550 no\r\n")),
                Stage::Ehlo,
                550,
            ),
            (
                SessionFailure::HeloRefused(reply("501 no\r\n")),
                Stage::Helo,
                501,
            ),
            (
                SessionFailure::ServiceNotAvailable(reply("421 bye\r\n")),
                Stage::ServiceClosing,
                421,
            ),
        ] {
            let (got, got_reply) = failure.refusal().unwrap();
            assert_eq!((got, got_reply.code()), (stage, code));
        }
        assert_eq!(
            format!("{} refused", Stage::ServiceClosing),
            "service refused"
        );
    }

    #[test]
    fn an_event_that_ends_the_session_names_the_refused_step() {
        let greeting = Event::GreetingRefused(reply("554 no service\r\n"));
        assert_eq!(
            greeting.refusal().map(|(stage, r)| (stage, r.code())),
            Some((Stage::Greeting, 554))
        );
        let ehlo = Event::SessionFailed(SessionFailure::EhloRefused(reply("550 no\r\n")));
        assert_eq!(
            ehlo.refusal().map(|(stage, r)| (stage, r.code())),
            Some((Stage::Ehlo, 550))
        );
        assert_eq!(Event::Closed.refusal(), None);
    }

    #[test]
    fn a_refused_auth_reads_as_the_servers_reply() {
        let refused = AuthFailure::Refused(reply("535 5.7.8 bad credentials\r\n"));
        assert_eq!(refused.to_string(), "535 5.7.8 bad credentials");
    }
}
