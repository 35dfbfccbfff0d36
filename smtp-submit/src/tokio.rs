//! The tokio + rustls adapter (feature `tokio`): a [`Session`] that connects, upgrades,
//! authenticates and submits mail, driving the sans-IO [`Client`] with
//! [`mail_common::transport::Driver`].
//!
//! - [`Session::connect`] opens TCP (and TLS for [`ConnectSecurity::ImplicitTls`]), reads the
//!   greeting, sends EHLO and, for [`ConnectSecurity::StartTls`], STARTTLS and EHLO again over
//!   TLS. A server that does not offer or refuses STARTTLS ends the session before anything else
//!   is sent.
//! - [`Session::authenticate`] runs AUTH with the strongest mechanism offered
//!   ([`AuthMethod::Auto`]) or the one asked for.
//! - [`Session::send`] streams the body from any [`AsyncRead`]: at most one read buffer and the
//!   core's send window (or one `BDAT` chunk) are in memory, never the whole message. With
//!   PIPELINING the envelope leaves in one flight; with CHUNKING too, a small message takes one
//!   round trip. [`Session::send_bytes`] sends a message held in memory.
//! - A refused recipient next to accepted ones is data: [`SendReport`] lists every recipient's
//!   outcome and the message's. [`Error`] is for what stops an operation: transport and TLS
//!   failures, deadlines, fatal protocol errors, and server refusals of the session itself
//!   (greeting, EHLO, STARTTLS, AUTH, NOOP, RSET).
//!
//! Every session runs in a `tracing` span (`smtp`, with host and port) and every operation in a
//! child span. Credentials are never logged: AUTH lines are redacted by the core and the adapter
//! records only the user name and the mechanism.
//!
//! # Cancel safety
//!
//! Deadlines are built in ([`Timeouts`](crate::Timeouts) and [`SetupTimeouts`]), so there is
//! rarely a reason to wrap a call in `tokio::time::timeout`. The futures of [`Session`] methods
//! are *not* cancel-safe: a call is a conversation of several commands, and dropping its future
//! part way leaves it unfinished (a message half-sent, an AUTH exchange open). The session
//! notices: every later call returns [`Error::Cancelled`] (and the connection is closed), which
//! says to connect again, never an error that reads as "busy, retry". Whether the server acted
//! on the cancelled call is unknown; after a cancelled `send`, the message may or may not have
//! been delivered. [`Session::connect`] may be dropped at any point (nothing is left behind), and
//! [`Session::quit`] after a cancelled call just closes the connection.
//!
//! # Example
//!
//! ```no_run
//! use smtp_submit::tokio::{ConnectOptions, ConnectSecurity, Session, TrustRoots};
//! use smtp_submit::{
//!     Address, AuthMethod, ClientName, Config, Credentials, Envelope, MailOptions, Security,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ConnectOptions::new("mail.example.org", 587, ConnectSecurity::StartTls)
//!     .with_trust_roots(TrustRoots::WebPki);
//! // The security mode of the configuration is taken from the options.
//! let config = Config::new(ClientName::new("client.example.org")?, Security::StartTls);
//! let mut session = Session::connect(&options, config).await?;
//! session
//!     .authenticate(&Credentials::password("alice@example.org", "secret"), AuthMethod::Auto)
//!     .await?;
//!
//! let envelope = Envelope::new(Some(Address::new("alice@example.org")?))
//!     .with_recipient(Address::new("bob@example.org")?)
//!     .with_recipient(Address::new("carol@example.org")?);
//! // Streamed: the file is never held whole in memory.
//! let file = tokio::fs::File::open("message.eml").await?;
//! let report = session.send(envelope, MailOptions::default(), file).await?;
//! for (address, reply) in report.rejected() {
//!     eprintln!("{address} refused: {reply}");
//! }
//! if report.is_sent() {
//!     println!("queued for {} recipient(s)", report.accepted().count());
//! }
//! session.quit().await?;
//! # Ok(())
//! # }
//! ```

use std::{collections::VecDeque, fmt, io, time::Duration, time::Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
use mail_common::sasl::{Credentials, Mechanism};
use mail_common::transport::{
    self, CallTracker, Cancelled, DriveError, Driver, SetupPhase, TlsConnector, Until, Wrapping,
};
pub use mail_common::transport::{SetupTimeouts, TransportError, TrustRoots};
use tracing::Instrument;

use crate::{
    Address, AuthFailure, AuthMethod, Capabilities, Client, Config, ContentScan, Envelope, Event,
    MailOptions, MessageOutcome, Misuse, Phase, ProtocolError, RecipientOutcome, Reply, Security,
    SessionFailure, TransactionFailure, TransactionId,
};

mod many;

/// Bytes read from the caller's body source per read.
const BODY_READ_CHUNK: usize = 64 * 1024;

/// How long a failing session may take to say QUIT before the connection is simply dropped.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectSecurity {
    /// TLS from the first byte (port 465, RFC 8314). The recommended mode.
    ImplicitTls,
    /// Plain TCP upgraded with STARTTLS (port 587). Required: a server that does not offer or
    /// refuses STARTTLS ends the session with an error before any credential or mail is sent.
    StartTls,
    /// No TLS at all: everything, mail included, crosses the network readable and modifiable.
    /// AUTH is still refused unless the [`Config`] also opts in with
    /// [`Config::allow_cleartext_credentials_dangerously`]. Only for test servers on loopback.
    PlaintextDangerously,
}

impl ConnectSecurity {
    const fn core(self) -> Security {
        match self {
            Self::ImplicitTls => Security::Implicit,
            Self::StartTls => Security::StartTls,
            Self::PlaintextDangerously => Security::Plaintext,
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (465 for implicit TLS, 587 for STARTTLS).
    pub port: u16,
    /// TLS mode.
    pub security: ConnectSecurity,
    /// Which certificate authorities to trust. Default: the web PKI.
    pub trust_roots: TrustRoots,
    /// The name the server certificate must be valid for. Default: [`ConnectOptions::host`].
    pub tls_name: Option<String>,
    /// Deadlines for the TCP connection and the TLS handshakes (implicit and after STARTTLS).
    /// The deadlines of the SMTP dialogue are [`Config::timeouts`].
    pub timeouts: SetupTimeouts,
}

impl ConnectOptions {
    /// Options for `host:port` with the web PKI roots and default set-up deadlines.
    pub fn new(host: impl Into<String>, port: u16, security: ConnectSecurity) -> Self {
        Self {
            host: host.into(),
            port,
            security,
            trust_roots: TrustRoots::default(),
            tls_name: None,
            timeouts: SetupTimeouts::default(),
        }
    }

    /// Implicit TLS on port 465 (submissions, RFC 8314), the recommended mode.
    pub fn implicit_tls(host: impl Into<String>) -> Self {
        Self::new(host, 465, ConnectSecurity::ImplicitTls)
    }

    /// STARTTLS on port 587 (submission, RFC 6409), required before anything else is sent.
    pub fn starttls(host: impl Into<String>) -> Self {
        Self::new(host, 587, ConnectSecurity::StartTls)
    }

    /// Connects to another port than the mode's default.
    #[must_use]
    pub const fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the trusted certificate authorities.
    #[must_use]
    pub fn with_trust_roots(mut self, roots: TrustRoots) -> Self {
        self.trust_roots = roots;
        self
    }

    /// Checks the certificate against `name` instead of the host (connecting by IP address to a
    /// server whose certificate names a host, for example).
    #[must_use]
    pub fn with_tls_name(mut self, name: impl Into<String>) -> Self {
        self.tls_name = Some(name.into());
        self
    }

    /// Sets the connection and handshake deadlines.
    #[must_use]
    pub const fn with_timeouts(mut self, timeouts: SetupTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    fn tls_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.host)
    }
}

/// A step of the session a server refusal belongs to (see [`Error::Refused`]).
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

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// A deadline that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// Connection set-up: TCP connect or a TLS handshake.
    Setup {
        /// Which step.
        phase: SetupPhase,
        /// The deadline that passed.
        after: Duration,
    },
    /// The server did not answer (or did not read the body) in time.
    Server {
        /// What the client was waiting for.
        phase: Phase,
    },
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup { phase, after } => write!(f, "{phase} timed out after {after:?}"),
            Self::Server { phase } => write!(f, "no progress from the server in phase {phase:?}"),
        }
    }
}

/// Why a [`Session`] operation failed.
///
/// A server refusal of one recipient or one message is not an error: see [`SendReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connection set-up failed: TCP connect, an unusable CA file, an invalid TLS name, the
    /// TLS handshake (unknown CA, wrong host name, a peer not speaking TLS), the wrong TLS mode
    /// for the port ([`TransportError::PlaintextGreeting`]: implicit TLS against a STARTTLS
    /// port), or no greeting in time ([`TransportError::NoGreeting`], which names the likely
    /// cause: STARTTLS against an implicit-TLS port).
    #[error(transparent)]
    Transport(TransportError),
    /// Reading or writing the established connection failed.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// A deadline passed; the session is unusable.
    #[error("timed out: {0}")]
    Timeout(Timeout),
    /// The server broke the protocol (or closed the connection unexpectedly); the session is
    /// unusable.
    #[error("SMTP protocol error: {0}")]
    Protocol(ProtocolError),
    /// The server refused a step of the session; [`Reply::failure_class`] says whether trying
    /// again later may help.
    #[error("{stage} refused: {reply}")]
    Refused {
        /// What was refused.
        stage: Stage,
        /// The server's reply.
        reply: Reply,
    },
    /// STARTTLS is required but the server does not offer it. Nothing else was sent.
    #[error("the server does not offer STARTTLS (required)")]
    StartTlsNotOffered,
    /// AUTH failed (wrong credentials: 535; mechanism too weak: 534; temporary: 454). The
    /// session stays usable unless the server could not prove it knows the password
    /// ([`AuthFailure::ServerNotVerified`]), which ends it.
    #[error("AUTH {} failed: {}", mechanism.name(), describe_auth_failure(failure))]
    Auth {
        /// The mechanism tried.
        mechanism: Mechanism,
        /// Why.
        failure: AuthFailure,
    },
    /// The request was refused before anything was sent (see [`Misuse`]); the session is fine,
    /// except after a failure in the middle of a message body, which closes it.
    #[error(transparent)]
    Misuse(Misuse),
    /// Reading the caller's message body failed. The connection was closed without ending the
    /// data, so the server discards the partial message.
    #[error("reading the message body failed: {0}")]
    Body(#[source] io::Error),
    /// The session is closed (after QUIT, a 421, or an earlier fatal error).
    #[error("the session is closed")]
    Closed,
    /// An earlier call was cancelled part way (its future was dropped), leaving the session in
    /// an unknown state: it was closed, and this is the answer to every later call. Connect
    /// again. Whether the server acted on the cancelled call (delivered a message, for
    /// `send`) is unknown.
    #[error(transparent)]
    Cancelled(Cancelled),
    /// The server refused the message, or some recipients were never attempted: what
    /// [`SendReport::ensure_sent`] turns a report that is not [`SendReport::is_sent`] into.
    /// The session is fine.
    #[error(transparent)]
    NotSent(NotSent),
}

fn describe_auth_failure(failure: &AuthFailure) -> String {
    match failure {
        AuthFailure::Refused(reply) => reply.to_string(),
        AuthFailure::Cancelled { error, reply } => format!("cancelled ({error}); server: {reply}"),
        AuthFailure::TokenRefused { error, reply } => {
            format!("token refused ({error}); server: {reply}")
        }
        AuthFailure::ServerNotVerified(error) => {
            format!("the server did not prove it knows the password ({error})")
        }
    }
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

    /// True when trying again later may succeed: a 4yz reply, a timeout, or a connection
    /// failure. False for 5yz replies, protocol errors, misuse and TLS certificate failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout(_) | Self::Closed => true,
            Self::NotSent(not_sent) => not_sent.is_transient(),
            Self::Transport(error) => matches!(
                error,
                TransportError::Connect { .. } | TransportError::NoGreeting { .. }
            ),
            _ => self
                .reply()
                .and_then(Reply::failure_class)
                .is_some_and(mail_common::FailureClass::is_transient),
        }
    }

    fn from_transport(error: TransportError) -> Self {
        match error {
            TransportError::Timeout { phase, after } => {
                Self::Timeout(Timeout::Setup { phase, after })
            }
            error => Self::Transport(error),
        }
    }

    fn from_drive(error: DriveError<ProtocolError>) -> Self {
        match error {
            DriveError::Io(error) => Self::Io(error),
            DriveError::Protocol(ProtocolError::Timeout { phase }) => {
                Self::Timeout(Timeout::Server { phase })
            }
            DriveError::Protocol(error) => Self::Protocol(error),
            DriveError::Transport(error) => Self::from_transport(error),
            other => Self::Io(io::Error::other(other.to_string())),
        }
    }

    fn from_session_failure(failure: Option<SessionFailure>) -> Self {
        let refused = |stage, reply| Self::Refused { stage, reply };
        match failure {
            Some(SessionFailure::GreetingRefused(reply)) => refused(Stage::Greeting, reply),
            Some(SessionFailure::EhloRefused(reply)) => refused(Stage::Ehlo, reply),
            Some(SessionFailure::HeloRefused(reply)) => refused(Stage::Helo, reply),
            Some(SessionFailure::StartTlsNotOffered) => Self::StartTlsNotOffered,
            Some(SessionFailure::StartTlsRefused(reply)) => refused(Stage::StartTls, reply),
            Some(SessionFailure::ServiceNotAvailable(reply)) => {
                refused(Stage::ServiceClosing, reply)
            }
            _ => Self::Closed,
        }
    }
}

impl From<Misuse> for Error {
    fn from(misuse: Misuse) -> Self {
        Self::Misuse(misuse)
    }
}

/// The server's answer to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecipientReport {
    /// Index into the envelope's recipients.
    pub index: usize,
    /// The recipient.
    pub address: Address,
    /// Accepted or rejected, with the server's reply.
    pub outcome: RecipientOutcome,
    /// The transaction this outcome belongs to (several when a recipient limit split the
    /// envelope; see [`SendReport::transactions`]).
    pub transaction: TransactionId,
}

impl RecipientReport {
    /// True when the server accepted this recipient (its transaction may still have failed:
    /// see [`SendReport::delivered`]).
    pub const fn is_accepted(&self) -> bool {
        self.outcome.is_accepted()
    }

    /// The server's reply to this `RCPT TO`; none when it was never sent.
    pub const fn reply(&self) -> Option<&Reply> {
        self.outcome.reply()
    }
}

/// A message that was not sent ([`SendReport::ensure_sent`]): the report, and the reply that
/// decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    reply: Option<Reply>,
    report: Box<SendReport>,
}

impl NotSent {
    /// The reply that refused the message: the first recipient's refusal when every recipient
    /// was refused, else the reply that ended the first failed transaction; `None` when the only problem is recipients that were
    /// never attempted.
    pub const fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// True when trying again later may succeed: a 4yz refusal, or recipients never attempted
    /// (the session ended or a limit was reached).
    pub fn is_transient(&self) -> bool {
        self.reply.as_ref().is_none_or(|reply| {
            reply
                .failure_class()
                .is_some_and(mail_common::FailureClass::is_transient)
        })
    }

    /// The whole report.
    pub fn report(&self) -> &SendReport {
        &self.report
    }

    /// The whole report, by value.
    pub fn into_report(self) -> SendReport {
        *self.report
    }
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.report.failure() {
            Some(TransactionFailure::NoValidRecipients { .. }) => {
                f.write_str("the message was not sent: no recipient accepted")?;
                match self.report.rejected().next() {
                    Some((address, reply)) => write!(f, " ({address}: {reply})"),
                    None => Ok(()),
                }
            }
            Some(failure) => write!(f, "the message was not sent: {failure}"),
            None => write!(
                f,
                "the message was not sent to {} recipient(s): {}",
                self.report.not_attempted().count(),
                self.report.stopped.as_deref().unwrap_or("not attempted")
            ),
        }
    }
}

impl std::error::Error for NotSent {}

/// Everything the server said about one message.
///
/// One message may take several transactions: when the server answers `452 too many
/// recipients` (RFC 5321 section 4.5.3.1.10) or announces a smaller `LIMITS RCPTMAX` (RFC
/// 9422), [`Session::send_bytes`] and [`Session::send_rewindable`] send the rest in further
/// transactions of the same session. Each recipient appears exactly once, with the answer of
/// the transaction that settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a refused message is reported here, not as an error: check `is_sent()` or call `ensure_sent()`"]
pub struct SendReport {
    /// The first transaction.
    pub transaction: TransactionId,
    /// One entry per recipient, in envelope order. When `MAIL FROM` is refused, the recipients
    /// are [`RecipientOutcome::SenderRefused`]; the cause is in `outcome`.
    pub recipients: Vec<RecipientReport>,
    /// Sent (every transaction was), or the first failure.
    pub outcome: MessageOutcome,
    /// Every transaction with its outcome, in order.
    pub transactions: Vec<(TransactionId, MessageOutcome)>,
    /// Why later transactions were not attempted, when a later one could not start (the
    /// session ended, or a limit was reached); their recipients are
    /// [`RecipientOutcome::NotAttempted`].
    pub stopped: Option<String>,
}

impl SendReport {
    /// The report when [`SendReport::is_sent`], else [`Error::NotSent`] (which hands the report
    /// back): for callers that treat a refused message as an error.
    ///
    /// Recipients refused next to accepted ones do not make it an error (the message went to
    /// the others); [`SendReport::rejected`] lists them.
    ///
    /// ```no_run
    /// # async fn f(session: &mut smtp_submit::tokio::Session, envelope: smtp_submit::Envelope)
    /// # -> Result<(), smtp_submit::tokio::Error> {
    /// let body = b"Subject: hello\r\n\r\nHello.\r\n";
    /// session.send_bytes(envelope, Default::default(), body).await?.ensure_sent()?;
    /// # Ok(()) }
    /// ```
    pub fn ensure_sent(self) -> Result<Self, Error> {
        if self.is_sent() {
            return Ok(self);
        }
        // Every recipient refused: the recipient's refusal says why (`550 5.1.1 unknown user`);
        // the reply to a pipelined DATA only says that none was left (`554 no valid
        // recipients`, from Postfix).
        let first_refusal = self.rejected().next().map(|(_, reply)| reply);
        let reply = match self.failure() {
            Some(TransactionFailure::NoValidRecipients { reply }) => {
                first_refusal.or(reply.as_ref())
            }
            Some(failure) => failure.reply(),
            None => first_refusal,
        }
        .cloned();
        Err(Error::NotSent(NotSent {
            reply,
            report: Box::new(self),
        }))
    }

    /// True when the server took responsibility for the message in every transaction and
    /// every recipient was attempted.
    pub fn is_sent(&self) -> bool {
        matches!(self.outcome, MessageOutcome::Sent { .. })
            && !self
                .recipients
                .iter()
                .any(|r| r.outcome == RecipientOutcome::NotAttempted)
    }

    /// The final reply when sent (of the last transaction; its text usually carries the
    /// queue id).
    pub const fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            MessageOutcome::Sent { reply, .. } => Some(reply),
            MessageOutcome::Failed(_) => None,
        }
    }

    /// Why nothing was delivered in the first failed transaction, when one failed.
    pub const fn failure(&self) -> Option<&TransactionFailure> {
        match &self.outcome {
            MessageOutcome::Failed(failure) => Some(failure),
            MessageOutcome::Sent { .. } => None,
        }
    }

    /// The outcome of `transaction`.
    pub fn outcome_of(&self, transaction: TransactionId) -> Option<&MessageOutcome> {
        self.transactions
            .iter()
            .find(|(id, _)| *id == transaction)
            .map(|(_, outcome)| outcome)
    }

    /// True when `recipient` was accepted in a transaction the server took.
    pub fn delivered(&self, recipient: &RecipientReport) -> bool {
        recipient.is_accepted()
            && matches!(
                self.outcome_of(recipient.transaction),
                Some(MessageOutcome::Sent { .. })
            )
    }

    /// The recipients the server accepted (see [`SendReport::delivered`] for whether their
    /// transaction went through).
    pub fn accepted(&self) -> impl Iterator<Item = &Address> {
        self.recipients
            .iter()
            .filter(|r| r.is_accepted())
            .map(|r| &r.address)
    }

    /// The recipients the server refused (or did not get to: sender refused), with its
    /// replies.
    pub fn rejected(&self) -> impl Iterator<Item = (&Address, &Reply)> {
        self.recipients
            .iter()
            .filter(|r| !r.is_accepted())
            .filter_map(|r| Some((&r.address, r.reply()?)))
    }

    /// The recipients never sent to the server (see [`SendReport::stopped`]).
    pub fn not_attempted(&self) -> impl Iterator<Item = &Address> {
        self.recipients
            .iter()
            .filter(|r| r.outcome == RecipientOutcome::NotAttempted)
            .map(|r| &r.address)
    }

    /// Merges the reports of the transactions of one message; `recipients` are already mapped
    /// to the envelope's indexes, one per recipient.
    fn merge(
        transactions: Vec<(TransactionId, MessageOutcome)>,
        recipients: Vec<RecipientReport>,
        stopped: Option<String>,
    ) -> Self {
        let first_failure = transactions.iter().find_map(|(_, outcome)| match outcome {
            MessageOutcome::Failed(failure) => Some(failure.clone()),
            MessageOutcome::Sent { .. } => None,
        });
        let outcome = match (first_failure, transactions.last()) {
            (Some(failure), _) => MessageOutcome::Failed(failure),
            (None, Some((_, MessageOutcome::Sent { reply, .. }))) => MessageOutcome::Sent {
                reply: reply.clone(),
                accepted: recipients.iter().filter(|r| r.is_accepted()).count(),
            },
            (None, _) => {
                MessageOutcome::Failed(TransactionFailure::NoValidRecipients { reply: None })
            }
        };
        Self {
            transaction: transactions
                .first()
                .map_or(TransactionId(u64::MAX), |(id, _)| *id),
            recipients,
            outcome,
            transactions,
            stopped,
        }
    }
}

/// Gathers the events of one transaction into a [`SendReport`].
struct Collector {
    transaction: TransactionId,
    recipients: Vec<RecipientReport>,
}

impl Collector {
    const fn new(transaction: TransactionId) -> Self {
        Self {
            transaction,
            recipients: Vec::new(),
        }
    }

    /// Takes one event; returns the report once the transaction is over.
    fn take(&mut self, event: Event) -> Option<SendReport> {
        match event {
            Event::Recipient {
                transaction,
                index,
                address,
                outcome,
            } if transaction == self.transaction => {
                tracing::trace!(%address, accepted = outcome.is_accepted(), "RCPT answered");
                self.recipients.push(RecipientReport {
                    index,
                    address,
                    outcome,
                    transaction,
                });
                None
            }
            Event::MessageDone {
                transaction,
                outcome,
            } if transaction == self.transaction => {
                tracing::debug!(?outcome, "message done");
                self.recipients.sort_by_key(|r| r.index);
                Some(SendReport {
                    transaction,
                    recipients: std::mem::take(&mut self.recipients),
                    outcome: outcome.clone(),
                    transactions: vec![(transaction, outcome)],
                    stopped: None,
                })
            }
            _ => None,
        }
    }
}

/// Gives every recipient that got no `RCPT` reply because `MAIL FROM` was refused (no
/// PIPELINING) that refusal as its outcome, so each recipient appears once.
fn with_sender_refusal(mut report: SendReport, addresses: &[Address]) -> SendReport {
    let MessageOutcome::Failed(TransactionFailure::MailRejected(reply)) = &report.outcome else {
        return report;
    };
    let mut answered = vec![false; addresses.len()];
    for r in &report.recipients {
        if let Some(slot) = answered.get_mut(r.index) {
            *slot = true;
        }
    }
    for (index, address) in addresses.iter().enumerate() {
        if !answered[index] {
            report.recipients.push(RecipientReport {
                index,
                address: address.clone(),
                outcome: RecipientOutcome::SenderRefused(reply.clone()),
                transaction: report.transaction,
            });
        }
    }
    report.recipients.sort_by_key(|r| r.index);
    report
}

/// A body that can be sent again, for the further transactions a recipient limit needs.
enum Replay<'a, R> {
    /// Held in memory.
    Bytes(&'a [u8]),
    /// Read from `source`, rewound to `start` for each transaction; scanned already.
    Source {
        source: &'a mut R,
        start: u64,
        scan: ContentScan,
    },
}

/// Reads `source` to its end through a [`ContentScan`], then seeks back to where it started.
async fn scan_and_rewind<R>(source: &mut R) -> io::Result<ContentScan>
where
    R: AsyncRead + AsyncSeek + Unpin,
{
    let start = source.stream_position().await?;
    let mut scan = ContentScan::new();
    let mut buf = vec![0_u8; BODY_READ_CHUNK].into_boxed_slice();
    loop {
        let n = source.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
    }
    source.seek(io::SeekFrom::Start(start)).await?;
    Ok(scan)
}

/// What a wait in the body loop ended with.
enum Wake {
    Writable,
    Done(SendReport),
}

/// An SMTP submission session over tokio: connected, past EHLO (and STARTTLS), ready to
/// authenticate and send any number of messages. See the [module documentation](self).
pub struct Session {
    driver: Driver<Client>,
    connector: TlsConnector,
    tls_name: String,
    tls_timeout: Duration,
    capabilities: Capabilities,
    span: tracing::Span,
    /// A fatal error or an abandoned body: the connection is unusable.
    broken: bool,
    /// Notices a call whose future was dropped part way.
    calls: CallTracker,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", self.driver.machine_ref())
            .field("tls_name", &self.tls_name)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, reads the greeting, sends EHLO and, for [`ConnectSecurity::StartTls`],
    /// upgrades the connection and sends EHLO again over TLS.
    ///
    /// `config.security` is replaced by the mode of `options.security`; the EHLO name, limits,
    /// per-phase deadlines and PIPELINING/CHUNKING choices come from `config`.
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the half-open connection;
    /// nothing is left behind.
    pub async fn connect(options: &ConnectOptions, mut config: Config) -> Result<Self, Error> {
        let span = tracing::info_span!(
            "smtp",
            host = %options.host,
            port = options.port,
            security = ?options.security,
        );
        async {
            config.security = options.security.core();
            let connector =
                transport::tls_connector(&options.trust_roots).map_err(Error::from_transport)?;
            let wrapping = match options.security {
                ConnectSecurity::ImplicitTls => Wrapping::ImplicitTls,
                _ => Wrapping::Plain,
            };
            let stream = transport::connect(
                &options.host,
                options.port,
                wrapping,
                &connector,
                options.tls_name(),
                options.timeouts,
            )
            .await
            .map_err(Error::from_transport)?;
            tracing::debug!(tls = stream.tls_summary(), "connected");
            let greeting_wait = config.timeouts.greeting;
            let mut session = Self {
                driver: Driver::new(stream, Client::new(config, Instant::now())),
                connector,
                tls_name: options.tls_name().to_owned(),
                tls_timeout: options.timeouts.tls_handshake,
                capabilities: Capabilities::default(),
                span: tracing::Span::current(),
                broken: false,
                calls: CallTracker::new(),
            };
            session.handshake().await.map_err(|error| match error {
                // Name the server and the likely cause: a port that expects implicit TLS
                // waits silently for the handshake.
                Error::Timeout(Timeout::Server {
                    phase: Phase::Greeting,
                }) => Error::Transport(TransportError::NoGreeting {
                    host: options.host.clone(),
                    port: options.port,
                    after: greeting_wait,
                    implicit_tls: wrapping == Wrapping::ImplicitTls,
                }),
                error => error,
            })?;
            Ok(session)
        }
        .instrument(span)
        .await
    }

    async fn handshake(&mut self) -> Result<(), Error> {
        let mut failure = None;
        loop {
            let event = self
                .driver
                .run_until(Client::poll_event)
                .await
                .map_err(Error::from_drive)?;
            match event {
                Event::StartTls => {
                    tracing::debug!("STARTTLS accepted, TLS handshake");
                    self.driver
                        .upgrade(&self.connector, &self.tls_name, self.tls_timeout)
                        .await
                        .map_err(Error::from_drive)?;
                    self.driver.machine().tls_established(Instant::now())?;
                }
                Event::Ready(capabilities) => {
                    tracing::debug!(
                        server = capabilities.server_name(),
                        tls = self.driver.machine_ref().is_tls(),
                        pipelining = capabilities.pipelining(),
                        chunking = capabilities.chunking(),
                        auth = ?capabilities.auth_mechanisms(),
                        "session ready"
                    );
                    self.capabilities = capabilities;
                    return Ok(());
                }
                Event::SessionFailed(reason) => {
                    tracing::debug!(?reason, "session refused");
                    failure = Some(reason);
                    // The core sent QUIT; give the server a moment to answer it.
                    let _ = ::tokio::time::timeout(QUIT_GRACE, self.wait_closed()).await;
                    return Err(Error::from_session_failure(failure));
                }
                Event::Closed => return Err(Error::from_session_failure(failure.take())),
                other => tracing::trace!(?other, "event ignored"),
            }
        }
    }

    /// The server's capabilities (from the last EHLO, over TLS when TLS is used).
    pub const fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// True when the connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.driver.is_tls()
    }

    /// The mechanism of a successful [`Session::authenticate`].
    pub fn authenticated(&self) -> Option<Mechanism> {
        self.driver.machine_ref().authenticated()
    }

    /// The sans-IO client underneath, for inspection.
    pub fn client(&self) -> &Client {
        self.driver.machine_ref()
    }

    /// Authenticates with the strongest mechanism both sides support and `credentials` suit:
    /// [`Session::authenticate`] with [`AuthMethod::Auto`] (the name of the POP3 twin,
    /// `pop3_proto::tokio::Session::login`).
    ///
    /// Cancel safety: not cancel-safe, like [`Session::authenticate`].
    pub async fn login(&mut self, credentials: &Credentials) -> Result<Mechanism, Error> {
        self.authenticate(credentials, AuthMethod::Auto).await
    }

    /// Authenticates with `credentials`: the strongest mechanism both sides support
    /// ([`AuthMethod::Auto`]) or exactly the one asked for. There is no fallback to a weaker
    /// mechanism after a failure. Refused without sending anything when the connection has no
    /// TLS (unless the [`Config`] allows cleartext credentials).
    ///
    /// A refusal (535 for wrong credentials) is [`Error::Auth`] with the server's reply; the
    /// session stays usable, so another attempt may follow.
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the session answers every later call
    /// with [`Error::Cancelled`]; whether the server accepted the credentials is unknown.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        method: AuthMethod,
    ) -> Result<Mechanism, Error> {
        let span = tracing::debug_span!(parent: &self.span, "auth", user = credentials.username());
        self.begin("AUTH").await?;
        let result = async {
            self.check_usable_and_take_arrived().await?;
            // An empty nonce: the core takes SCRAM's from `Config::nonce_source`.
            let mechanism =
                self.driver
                    .machine()
                    .authenticate(Instant::now(), credentials, method, &[])?;
            tracing::debug!(mechanism = mechanism.name(), "AUTH started");
            let outcome = self
                .wait(|event| match event {
                    Event::Authenticated { mechanism } => Some(Ok(mechanism)),
                    Event::AuthFailed { mechanism, failure } => {
                        Some(Err(Error::Auth { mechanism, failure }))
                    }
                    _ => None,
                })
                .await?;
            match &outcome {
                Ok(mechanism) => tracing::debug!(mechanism = mechanism.name(), "authenticated"),
                Err(error) => tracing::debug!(%error, "AUTH failed"),
            }
            outcome
        }
        .instrument(span)
        .await;
        self.calls.end();
        result
    }

    /// Sends one message whose body is read from `body` as it goes out: the body is never held
    /// whole in memory. Works with `DATA` (dots stuffed, line endings normalised per
    /// [`Config::line_endings`]) and with `BDAT` when CHUNKING is offered.
    ///
    /// Returns when the server has answered every command of the transaction. Refused
    /// recipients and a refused message are in the [`SendReport`], not errors.
    ///
    /// A stream is read once, so it takes one transaction: more recipients than the server's
    /// `LIMITS RCPTMAX` is [`Misuse::TooManyRecipients`], and recipients the server refuses
    /// with `452 too many recipients` stay refused (transient) in the report. For a message
    /// to more recipients, use [`Session::send_rewindable`] or [`Session::send_bytes`], which
    /// send the rest in further transactions.
    ///
    /// A streamed body is not inspected before `MAIL FROM`: `BODY=8BITMIME` is declared whenever
    /// the server offers it, and `SMTPUTF8` must be asked for in `options` when the headers
    /// carry raw UTF-8. Content the transaction did not declare stops the message before the
    /// end of data ([`Misuse::UndeclaredContent`]: nothing is delivered, the session is
    /// closed). For a file, [`Session::send_rewindable`] scans first and declares exactly what
    /// is needed. [`MailOptions::with_size`] lets the server refuse an oversized message before
    /// the body is sent.
    ///
    /// If reading `body` fails, the connection is closed without ending the data (the server
    /// discards the partial message) and [`Error::Body`] is returned; the session is then
    /// closed.
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the session answers every later call
    /// with [`Error::Cancelled`]; the message may or may not have been delivered.
    pub async fn send<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        let span = tracing::debug_span!(
            parent: &self.span,
            "send",
            recipients = envelope.recipients().len(),
            transaction = tracing::field::Empty,
        );
        self.begin("send").await?;
        let addresses: Vec<Address> = envelope
            .recipients()
            .iter()
            .map(|r| r.address().clone())
            .collect();
        let result = self
            .send_streaming(envelope, options, body, None)
            .instrument(span)
            .await
            .map(|report| with_sender_refusal(report, &addresses));
        self.calls.end();
        result
    }

    /// Sends one message from a source that can be read twice (a file): it is read through
    /// once to find what its content needs (8-bit octets: `BODY=8BITMIME`; raw UTF-8 in the
    /// header section: `SMTPUTF8`), rewound to where it was, and streamed as by
    /// [`Session::send`]. When the server lacks an extension the content needs, nothing is
    /// sent and the error is [`Misuse::ContentNeedsExtension`], which says what and why.
    ///
    /// Like [`Session::send_bytes`], a recipient limit is met with further transactions, the
    /// source being rewound for each.
    ///
    /// Memory stays bounded: the scan holds one read buffer, never the message. A failed read
    /// during the scan is [`Error::Body`] with nothing sent (the session stays usable).
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the session answers every later call
    /// with [`Error::Cancelled`]; the message may or may not have been delivered.
    pub async fn send_rewindable<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let span = tracing::debug_span!(
            parent: &self.span,
            "send",
            recipients = envelope.recipients().len(),
            transaction = tracing::field::Empty,
        );
        self.begin("send").await?;
        let result = async {
            let scan = scan_and_rewind(&mut body).await.map_err(Error::Body)?;
            tracing::debug!(
                eight_bit = scan.needs_8bitmime(),
                utf8_headers = scan.needs_smtputf8(),
                "message scanned"
            );
            let start = body.stream_position().await.map_err(Error::Body)?;
            let replay = Replay::Source {
                source: &mut body,
                start,
                scan,
            };
            self.send_split(envelope, options, replay).await
        }
        .instrument(span)
        .await;
        self.calls.end();
        result
    }

    async fn send_streaming<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
        scan: Option<ContentScan>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        self.check_usable_and_take_arrived().await?;
        let client = self.driver.machine();
        let id = match scan {
            Some(scan) => client.send_mail_scanned(Instant::now(), envelope, options, scan)?,
            None => client.send_mail(Instant::now(), envelope, options)?,
        };
        tracing::Span::current().record("transaction", tracing::field::display(id));
        let mut collector = Collector::new(id);
        let mut buf = vec![0_u8; BODY_READ_CHUNK].into_boxed_slice();
        // `buf[start..end]` was read from the source and not yet taken by the client.
        let (mut start, mut end) = (0, 0);
        let mut eof = false;
        let mut total = 0_u64;
        loop {
            let now = Instant::now();
            let mut failed = false;
            while start < end {
                match self.driver.machine().write_body(now, &buf[start..end]) {
                    Ok(0) => break,
                    Ok(taken) => start += taken,
                    Err(Misuse::TransactionFailed) => {
                        failed = true;
                        break;
                    }
                    Err(misuse) => return Err(self.abandon(Error::Misuse(misuse)).await),
                }
            }
            if start == end {
                (start, end) = (0, 0);
                if eof && !failed {
                    match self.driver.machine().finish_body(now) {
                        Ok(()) => {
                            tracing::debug!(bytes = total, "body complete");
                            break;
                        }
                        Err(Misuse::TransactionFailed) => failed = true,
                        Err(misuse) => return Err(self.abandon(Error::Misuse(misuse)).await),
                    }
                }
            }
            let want_read = !failed && !eof && start == end;
            let source = &mut body;
            let read_buf = &mut buf;
            let read = async move {
                if want_read {
                    source.read(read_buf).await
                } else {
                    std::future::pending().await
                }
            };
            let woke = self
                .wait_or(
                    |event| match event {
                        Event::BodyWritable { transaction } if transaction == id => {
                            Some(Wake::Writable)
                        }
                        event => collector.take(event).map(Wake::Done),
                    },
                    read,
                )
                .await?;
            match woke {
                Until::Other(Ok(0)) => eof = true,
                Until::Other(Ok(n)) => {
                    end = n;
                    total += n as u64;
                }
                Until::Other(Err(error)) => return Err(self.abandon(Error::Body(error)).await),
                Until::Done(Wake::Writable) => {}
                Until::Done(Wake::Done(report)) => return Ok(report),
            }
        }
        self.wait(|event| collector.take(event)).await
    }

    /// Sends a message held in memory. With PIPELINING and CHUNKING and a body of at most
    /// [`Limits::chunk_size`](crate::Limits::chunk_size) bytes, the whole message leaves in one
    /// flight: one round trip. `SIZE=` and (for 8-bit bodies) `BODY=8BITMIME` are filled in when
    /// `options` leaves them unset.
    ///
    /// More recipients than one transaction may take are sent in several transactions of this
    /// session: split up front by the server's `LIMITS RCPTMAX` (RFC 9422), and continued when
    /// it answers `452 too many recipients` (RFC 5321 section 4.5.3.1.10). Every recipient
    /// gets the message at most once and appears once in the [`SendReport`].
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the session answers every later call
    /// with [`Error::Cancelled`]; the message may or may not have been delivered.
    pub async fn send_bytes(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: &[u8],
    ) -> Result<SendReport, Error> {
        let span = tracing::debug_span!(
            parent: &self.span,
            "send",
            recipients = envelope.recipients().len(),
            bytes = body.len(),
            transaction = tracing::field::Empty,
        );
        self.begin("send_bytes").await?;
        let result = self
            .send_split(envelope, options, Replay::<io::Cursor<&[u8]>>::Bytes(body))
            .instrument(span)
            .await;
        self.calls.end();
        result
    }

    /// Sends `NOOP` and returns the server's reply; a refusal is [`Error::Refused`].
    ///
    /// Cancel safety: not cancel-safe. Dropped before the reply arrived, the session answers
    /// every later call with [`Error::Cancelled`].
    pub async fn noop(&mut self) -> Result<Reply, Error> {
        let span = tracing::debug_span!(parent: &self.span, "noop");
        self.begin("NOOP").await?;
        let result = async {
            self.check_usable_and_take_arrived().await?;
            self.driver.machine().noop(Instant::now())?;
            let reply = self
                .wait(|event| match event {
                    Event::NoopReply(reply) => Some(reply),
                    _ => None,
                })
                .await?;
            if reply.is_positive() {
                Ok(reply)
            } else {
                Err(Error::Refused {
                    stage: Stage::Noop,
                    reply,
                })
            }
        }
        .instrument(span)
        .await;
        self.calls.end();
        result
    }

    /// Sends `RSET` and returns the server's reply; a refusal is [`Error::Refused`]. Never
    /// needed between messages: the client resets by itself after a failed transaction.
    ///
    /// Cancel safety: not cancel-safe. Dropped before the reply arrived, the session answers
    /// every later call with [`Error::Cancelled`].
    pub async fn rset(&mut self) -> Result<Reply, Error> {
        let span = tracing::debug_span!(parent: &self.span, "rset");
        self.begin("RSET").await?;
        let result = async {
            self.check_usable_and_take_arrived().await?;
            self.driver.machine().rset(Instant::now())?;
            let reply = self
                .wait(|event| match event {
                    Event::RsetReply(reply) => Some(reply),
                    _ => None,
                })
                .await?;
            if reply.is_positive() {
                Ok(reply)
            } else {
                Err(Error::Refused {
                    stage: Stage::Rset,
                    reply,
                })
            }
        }
        .instrument(span)
        .await;
        self.calls.end();
        result
    }

    /// Sends `QUIT`, waits for the reply and closes the connection. A session that is already
    /// closed (by the server, or after an error) is just dropped.
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the connection; the server ends
    /// the session by itself (nothing uncommitted is at stake in SMTP after a transaction).
    pub async fn quit(mut self) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "quit");
        async {
            if self.begin("QUIT").await.is_err() || self.broken {
                return Ok(());
            }
            match self.driver.machine().quit(Instant::now()) {
                Ok(()) => {}
                Err(Misuse::Closed) => {
                    self.driver.shutdown().await;
                    return Ok(());
                }
                Err(misuse) => return Err(Error::Misuse(misuse)),
            }
            self.wait_closed().await?;
            self.driver.shutdown().await;
            tracing::debug!("session closed");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Sends `QUIT` and closes the connection at once, without waiting for the `221`: once
    /// every transaction has its reply, the reply to `QUIT` changes nothing (RFC 5321 4.1.1.10:
    /// the server ends the session either way, and what it accepted stays accepted). Saves
    /// the round trip of [`Session::quit`].
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the connection.
    pub async fn quit_without_waiting(mut self) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "quit");
        async {
            if self.begin("QUIT").await.is_err() || self.broken {
                return Ok(());
            }
            match self.driver.machine().quit(Instant::now()) {
                Ok(()) => {}
                Err(Misuse::Closed) => {
                    self.driver.shutdown().await;
                    return Ok(());
                }
                Err(misuse) => return Err(Error::Misuse(misuse)),
            }
            self.driver.send_pending_and_close().await;
            tracing::debug!("QUIT sent, not waiting for its reply");
            Ok(())
        }
        .instrument(span)
        .await
    }

    // ---- helpers ------------------------------------------------------------------------

    /// Sends one message in as many transactions as the server's recipient limits need (see
    /// [`Session::send_bytes`]). A recipient refused with "too many recipients" goes into the
    /// next transaction only after one that the server took, so every round settles at least
    /// one recipient and the loop ends; a recipient accepted once is never sent again.
    async fn send_split<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: Replay<'_, R>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let all = envelope.recipients().to_vec();
        if all.is_empty() {
            return self.one_transaction(envelope, options, &mut body).await;
        }
        let from = envelope.from().cloned();
        let per_transaction = self.capabilities.rcpt_max().unwrap_or(usize::MAX);
        let mut queue: VecDeque<usize> = (0..all.len()).collect();
        let mut settled: Vec<Option<RecipientReport>> = vec![None; all.len()];
        let mut transactions: Vec<(TransactionId, MessageOutcome)> = Vec::new();
        let mut stopped = None;
        while !queue.is_empty() {
            let batch: Vec<usize> = queue.drain(..queue.len().min(per_transaction)).collect();
            let mut part = Envelope::new(from.clone());
            for &index in &batch {
                part.add_recipient(all[index].clone());
            }
            let report = match self.one_transaction(part, options.clone(), &mut body).await {
                Ok(report) => report,
                Err(error) if transactions.is_empty() => return Err(error),
                Err(error) => {
                    // Earlier transactions went through: their outcomes must not be lost.
                    tracing::debug!(%error, "no further transaction");
                    stopped = Some(error.to_string());
                    for index in batch.into_iter().rev() {
                        queue.push_front(index);
                    }
                    break;
                }
            };
            let sent = report.is_sent();
            let mut deferred = Vec::new();
            for r in report.recipients {
                let index = batch[r.index];
                if sent
                    && matches!(&r.outcome, RecipientOutcome::Rejected(reply)
                        if reply.is_too_many_recipients())
                {
                    deferred.push(index);
                }
                settled[index] = Some(RecipientReport { index, ..r });
            }
            if let MessageOutcome::Failed(TransactionFailure::MailRejected(reply)) = &report.outcome
            {
                // Without PIPELINING no RCPT followed the refused MAIL: the refusal is theirs.
                for &index in &batch {
                    settled[index].get_or_insert_with(|| RecipientReport {
                        index,
                        address: all[index].address().clone(),
                        outcome: RecipientOutcome::SenderRefused(reply.clone()),
                        transaction: report.transaction,
                    });
                }
            }
            if !deferred.is_empty() {
                tracing::debug!(
                    count = deferred.len(),
                    "too many recipients: the rest go in another transaction"
                );
            }
            for index in deferred.into_iter().rev() {
                queue.push_front(index);
            }
            transactions.push((report.transaction, report.outcome));
        }
        let last = transactions.last().map(|(id, _)| *id);
        let recipients = settled
            .into_iter()
            .enumerate()
            .map(|(index, report)| {
                report.unwrap_or_else(|| RecipientReport {
                    index,
                    address: all[index].address().clone(),
                    outcome: RecipientOutcome::NotAttempted,
                    transaction: last.unwrap_or(TransactionId(u64::MAX)),
                })
            })
            .collect();
        Ok(SendReport::merge(transactions, recipients, stopped))
    }

    /// One transaction of [`Session::send_split`].
    async fn one_transaction<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: &mut Replay<'_, R>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        match body {
            Replay::Bytes(bytes) => {
                self.check_usable_and_take_arrived().await?;
                let id = self.driver.machine().send_mail_bytes(
                    Instant::now(),
                    envelope,
                    options,
                    bytes,
                )?;
                tracing::Span::current().record("transaction", tracing::field::display(id));
                let mut collector = Collector::new(id);
                self.wait(|event| collector.take(event)).await
            }
            Replay::Source {
                source,
                start,
                scan,
            } => {
                source
                    .seek(io::SeekFrom::Start(*start))
                    .await
                    .map_err(Error::Body)?;
                self.send_streaming(envelope, options, &mut **source, Some(*scan))
                    .await
            }
        }
    }

    /// Starts a public call. When an earlier one was cancelled part way, the session is closed
    /// and [`Error::Cancelled`] returned, now and for every later call.
    async fn begin(&mut self, operation: &'static str) -> Result<(), Error> {
        if let Err(cancelled) = self.calls.begin(operation) {
            if !self.broken {
                tracing::debug!(%cancelled, "closing the connection");
                self.broken = true;
                self.driver.shutdown().await;
            }
            return Err(Error::Cancelled(cancelled));
        }
        Ok(())
    }

    const fn check_usable(&self) -> Result<(), Error> {
        if self.broken {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Checks the session is usable and feeds the client whatever arrived while it was idle,
    /// without waiting. A reply nobody asked for (one too many in the last flight) is then a
    /// protocol error, instead of being read as the reply to the next command; a 421 sent while
    /// idle ends the session with [`Stage::ServiceClosing`].
    async fn check_usable_and_take_arrived(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        match self
            .wait_or(|_| None::<std::convert::Infallible>, std::future::ready(()))
            .await?
        {
            Until::Done(never) => match never {},
            Until::Other(()) => Ok(()),
        }
    }

    /// Drives the client until `pick` accepts an event. A session failure or the end of the
    /// session ends the wait with the matching error.
    async fn wait<T>(&mut self, pick: impl FnMut(Event) -> Option<T>) -> Result<T, Error> {
        match self
            .wait_or(pick, std::future::pending::<std::convert::Infallible>())
            .await?
        {
            Until::Done(out) => Ok(out),
            Until::Other(never) => match never {},
        }
    }

    /// [`Session::wait`], also racing `other`.
    async fn wait_or<T, U>(
        &mut self,
        mut pick: impl FnMut(Event) -> Option<T>,
        other: impl Future<Output = U>,
    ) -> Result<Until<T, U>, Error> {
        let mut failure = None;
        let outcome = self
            .driver
            .run_until_or(
                |client| {
                    while let Some(event) = client.poll_event() {
                        match event {
                            Event::SessionFailed(reason) => {
                                tracing::debug!(?reason, "session failed");
                                failure = Some(reason);
                            }
                            Event::Closed => return Some(Err(failure.take())),
                            event => {
                                if let Some(out) = pick(event) {
                                    return Some(Ok(out));
                                }
                            }
                        }
                    }
                    None
                },
                other,
            )
            .await;
        match outcome {
            Ok(Until::Done(Ok(out))) => Ok(Until::Done(out)),
            Ok(Until::Done(Err(failure))) => {
                self.broken = true;
                self.driver.shutdown().await;
                Err(Error::from_session_failure(failure))
            }
            Ok(Until::Other(out)) => Ok(Until::Other(out)),
            Err(error) => {
                self.broken = true;
                let error = Error::from_drive(error);
                tracing::debug!(%error, "session failed");
                Err(error)
            }
        }
    }

    async fn wait_closed(&mut self) -> Result<(), Error> {
        self.driver
            .run_until(|client| {
                while let Some(event) = client.poll_event() {
                    if event == Event::Closed {
                        return Some(());
                    }
                }
                None
            })
            .await
            .map_err(Error::from_drive)
    }

    /// Gives up on a message in the middle of its body: the only safe way out is to close the
    /// connection without ending the data, so the server discards what it got.
    async fn abandon(&mut self, error: Error) -> Error {
        tracing::debug!(%error, "abandoning the message: closing the connection");
        self.broken = true;
        self.driver.shutdown().await;
        error
    }
}
