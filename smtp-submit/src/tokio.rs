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
//! The futures returned by [`Session`] methods are not cancel-safe: dropping one in the middle
//! (for example with `tokio::time::timeout`) can leave a command half-written. Deadlines are
//! already built in ([`Timeouts`](crate::Timeouts) and [`SetupTimeouts`]); after a cancelled
//! call, drop the session.
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

use std::{fmt, io, time::Duration, time::Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt};
use mail_common::sasl::{Credentials, Mechanism};
use mail_common::transport::{
    self, DriveError, Driver, SetupPhase, TlsConnector, TransportError, Until, Wrapping,
};
pub use mail_common::transport::{SetupTimeouts, TrustRoots};
use tracing::Instrument;

use crate::{
    Address, AuthFailure, AuthMethod, Capabilities, Client, Config, Envelope, Event, MailOptions,
    MessageOutcome, Misuse, Phase, ProtocolError, RecipientOutcome, Reply, Security,
    SessionFailure, TransactionFailure, TransactionId,
};

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
    /// Connection set-up failed: TCP connect, an unusable CA file, an invalid TLS name, or the
    /// TLS handshake (unknown CA, wrong host name, a peer not speaking TLS).
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
            _ => None,
        }
    }

    /// True when trying again later may succeed: a 4yz reply, a timeout, or a connection
    /// failure. False for 5yz replies, protocol errors, misuse and TLS certificate failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout(_) | Self::Closed => true,
            Self::Transport(error) => matches!(error, TransportError::Connect { .. }),
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
}

impl RecipientReport {
    /// True when the server accepted this recipient.
    pub const fn is_accepted(&self) -> bool {
        matches!(self.outcome, RecipientOutcome::Accepted(_))
    }

    /// The server's reply to this `RCPT TO`.
    pub const fn reply(&self) -> &Reply {
        match &self.outcome {
            RecipientOutcome::Accepted(reply) | RecipientOutcome::Rejected(reply) => reply,
        }
    }
}

/// Everything the server said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendReport {
    /// The transaction.
    pub transaction: TransactionId,
    /// One entry per recipient that got a reply, in envelope order. When `MAIL FROM` is refused
    /// no `RCPT` is answered and this is empty.
    pub recipients: Vec<RecipientReport>,
    /// Sent to the accepted recipients, or failed.
    pub outcome: MessageOutcome,
}

impl SendReport {
    /// True when the server took responsibility for the message (for the accepted recipients).
    pub const fn is_sent(&self) -> bool {
        matches!(self.outcome, MessageOutcome::Sent { .. })
    }

    /// The final reply when sent (its text usually carries the queue id).
    pub const fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            MessageOutcome::Sent { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// Why nothing was delivered, when nothing was.
    pub const fn failure(&self) -> Option<&TransactionFailure> {
        match &self.outcome {
            MessageOutcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// The recipients the server accepted.
    pub fn accepted(&self) -> impl Iterator<Item = &Address> {
        self.recipients
            .iter()
            .filter(|r| r.is_accepted())
            .map(|r| &r.address)
    }

    /// The recipients the server refused, with its replies.
    pub fn rejected(&self) -> impl Iterator<Item = (&Address, &Reply)> {
        self.recipients
            .iter()
            .filter(|r| !r.is_accepted())
            .map(|r| (&r.address, r.reply()))
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
                tracing::debug!(%address, accepted = matches!(outcome, RecipientOutcome::Accepted(_)), "RCPT answered");
                self.recipients.push(RecipientReport {
                    index,
                    address,
                    outcome,
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
                    outcome,
                })
            }
            _ => None,
        }
    }
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
            let mut session = Self {
                driver: Driver::new(stream, Client::new(config, Instant::now())),
                connector,
                tls_name: options.tls_name().to_owned(),
                tls_timeout: options.timeouts.tls_handshake,
                capabilities: Capabilities::default(),
                span: tracing::Span::current(),
                broken: false,
            };
            session.handshake().await?;
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

    /// Authenticates with `credentials`: the strongest mechanism both sides support
    /// ([`AuthMethod::Auto`]) or exactly the one asked for. There is no fallback to a weaker
    /// mechanism after a failure. Refused without sending anything when the connection has no
    /// TLS (unless the [`Config`] allows cleartext credentials).
    ///
    /// A refusal (535 for wrong credentials) is [`Error::Auth`] with the server's reply; the
    /// session stays usable, so another attempt may follow.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        method: AuthMethod,
    ) -> Result<Mechanism, Error> {
        let span = tracing::debug_span!(parent: &self.span, "auth", user = credentials.username());
        async {
            self.check_usable_and_take_arrived().await?;
            let mut nonce = [0_u8; 24];
            getrandom::fill(&mut nonce)
                .map_err(|e| Error::Io(io::Error::other(format!("no randomness: {e}"))))?;
            let mechanism =
                self.driver
                    .machine()
                    .authenticate(Instant::now(), credentials, method, &nonce)?;
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
        .await
    }

    /// Sends one message whose body is read from `body` as it goes out: the body is never held
    /// whole in memory. Works with `DATA` (dots stuffed, line endings normalised per
    /// [`Config::line_endings`]) and with `BDAT` when CHUNKING is offered.
    ///
    /// Returns when the server has answered every command of the transaction. Refused
    /// recipients and a refused message are in the [`SendReport`], not errors.
    ///
    /// For an 8-bit body, set [`BodyType::EightBitMime`](crate::BodyType::EightBitMime) in
    /// `options` (a streamed body is not inspected in advance); [`MailOptions::with_size`] lets
    /// the server refuse an oversized message before the body is sent.
    ///
    /// If reading `body` fails, the connection is closed without ending the data (the server
    /// discards the partial message) and [`Error::Body`] is returned; the session is then
    /// closed.
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
        self.send_streaming(envelope, options, body)
            .instrument(span)
            .await
    }

    async fn send_streaming<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        self.check_usable_and_take_arrived().await?;
        let id = self
            .driver
            .machine()
            .send_mail(Instant::now(), envelope, options)?;
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
        async {
            self.check_usable_and_take_arrived().await?;
            let id =
                self.driver
                    .machine()
                    .send_mail_bytes(Instant::now(), envelope, options, body)?;
            tracing::Span::current().record("transaction", tracing::field::display(id));
            let mut collector = Collector::new(id);
            self.wait(|event| collector.take(event)).await
        }
        .instrument(span)
        .await
    }

    /// Sends `NOOP` and returns the server's reply; a refusal is [`Error::Refused`].
    pub async fn noop(&mut self) -> Result<Reply, Error> {
        let span = tracing::debug_span!(parent: &self.span, "noop");
        async {
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
        .await
    }

    /// Sends `RSET` and returns the server's reply; a refusal is [`Error::Refused`]. Never
    /// needed between messages: the client resets by itself after a failed transaction.
    pub async fn rset(&mut self) -> Result<Reply, Error> {
        let span = tracing::debug_span!(parent: &self.span, "rset");
        async {
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
        .await
    }

    /// Sends `QUIT`, waits for the reply and closes the connection. A session that is already
    /// closed (by the server, or after an error) is just dropped.
    pub async fn quit(mut self) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "quit");
        async {
            if self.broken {
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

    // ---- helpers ------------------------------------------------------------------------

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
