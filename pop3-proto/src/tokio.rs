//! The tokio + rustls adapter (feature `tokio`): a [`Session`] that connects, sets up TLS,
//! logs in and runs commands.
//!
//! Every protocol decision (capabilities, `STLS`, the refusal to send credentials in the
//! clear, pipelining windows, limits, deadlines) is taken by the sans-IO [`Client`]; the socket
//! loop is [`mail_common::transport::Driver`]. This module adds what a client library needs on
//! top: connection set-up, events turned into return values, and the retrieval API (message
//! chunks written to any `AsyncWrite`, pipelined batches).
//!
//! # Errors
//!
//! Every method returns [`Error`], which keeps apart what a caller handles differently:
//!
//! - the server said no ([`Error::Refused`], [`Error::LoginFailed`], [`Error::GreetingRefused`]):
//!   data, with the RFC 2449/3206 response code and [`Error::class`] (retry later or not); the
//!   session goes on (except after a refused greeting);
//! - the caller asked for something the client refuses ([`Error::Misuse`]); nothing was sent
//!   and the session goes on;
//! - the caller's writer failed ([`Error::Output`]); the rest of the message was read and
//!   discarded, so the session goes on;
//! - the connection cannot be used any more ([`Error::Transport`], [`Error::Io`],
//!   [`Error::Timeout`], [`Error::Protocol`]); see [`Error::is_fatal`].
//!
//! # Cancel safety
//!
//! Deadlines are built in ([`SetupTimeouts`], [`crate::Timeouts`]). Each method says whether
//! its future may be dropped part way (a `tokio::time::timeout` around it): the commands are
//! cancel-safe, because the client tags every reply with its command and the next call reads
//! and discards what belongs to an abandoned one; a login is not, and after a cancelled login
//! every call returns [`Error::Cancelled`].
//!
//! # Example
//!
//! ```no_run
//! use pop3_proto::{Config, Credentials};
//! use pop3_proto::tokio::{ConnectOptions, Error, Session};
//!
//! # async fn fetch() -> Result<(), Error> {
//! // Implicit TLS on port 995, web PKI roots, default timeouts.
//! let options = ConnectOptions::implicit_tls("pop.example.com");
//! let mut session = Session::connect(options, Config::default()).await?;
//! session.login(Credentials::password("alice", "secret")).await?;
//!
//! let stat = session.stat().await?;
//! println!("{} messages, {} octets", stat.count, stat.size);
//! for entry in session.uidl().await? {
//!     // Any `AsyncWrite` (a `tokio::fs::File`, a socket, a hasher) receives the message
//!     // chunk by chunk: it is never held in memory as a whole.
//!     let mut out = tokio::io::sink();
//!     let octets = session.retr_to(entry.msg, &mut out).await?;
//!     println!("{}: {octets} octets", entry.uid);
//! }
//! // Several messages in one pipelined flight, each into its own writer.
//! let mut bodies = Vec::new();
//! let fetched = session
//!     .retr_many(1..=stat.count, |_msg| Vec::new(), |msg, body| bodies.push((msg, body)))
//!     .await?;
//! assert_eq!(fetched.len(), stat.count as usize);
//!
//! session.dele(1).await?;
//! session.quit().await?; // commits the deletion
//! # Ok(())
//! # }
//! ```

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use ::tokio::io::{AsyncWrite, AsyncWriteExt};
use bytes::Bytes;
use mail_common::sasl::Credentials;
pub use mail_common::transport::Cancelled;
use mail_common::transport::{self, CallTracker, DriveError, Driver, TlsConnector, Wrapping};
pub use mail_common::transport::{SetupPhase, SetupTimeouts, TransportError, TrustRoots};
use tracing::Instrument as _;

use crate::{
    AuthMethod, Capabilities, Client, Command, CommandId, Config, Event, FailureClass, Login,
    LoginFailure, Misuse, Phase, ProtocolError, Response, ScanEntry, Security, UidEntry,
};

/// Where and how to connect.
///
/// ```
/// use std::time::Duration;
/// use pop3_proto::Security;
/// use pop3_proto::tokio::{ConnectOptions, SetupTimeouts, TrustRoots};
///
/// let options = ConnectOptions::new("127.0.0.1", Security::Stls)
///     .with_port(11110)
///     .with_trust_roots(TrustRoots::CaFile("/etc/ssl/private-ca.pem".into()))
///     .with_tls_name("mail.example.net")
///     .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)));
/// assert_eq!(options.port, 11110);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port. [`ConnectOptions::new`] picks 995 for [`Security::Implicit`], else 110.
    pub port: u16,
    /// How the connection is protected. It replaces [`Config::security`] of the configuration
    /// passed to [`Session::connect`].
    pub security: Security,
    /// Which certificate authorities are trusted. Default: the web PKI.
    pub trust_roots: TrustRoots,
    /// The name the server certificate must be valid for; `None` means [`ConnectOptions::host`].
    pub tls_name: Option<String>,
    /// Deadlines for the TCP connection and the TLS handshake (implicit or after `STLS`). The
    /// protocol phases after them are bounded by [`Config::timeouts`].
    pub timeouts: SetupTimeouts,
    /// Local address to connect from; `None` lets the system choose.
    pub local_addr: Option<IpAddr>,
}

impl ConnectOptions {
    /// Options for `host` with the given protection and its standard port.
    pub fn new(host: impl Into<String>, security: Security) -> Self {
        Self {
            host: host.into(),
            port: if security == Security::Implicit {
                995
            } else {
                110
            },
            security,
            trust_roots: TrustRoots::default(),
            tls_name: None,
            timeouts: SetupTimeouts::default(),
            local_addr: None,
        }
    }

    /// POP3S: TLS from the first byte, port 995 (RFC 8314, the recommended way).
    pub fn implicit_tls(host: impl Into<String>) -> Self {
        Self::new(host, Security::Implicit)
    }

    /// Port 110 upgraded with `STLS`; TLS is required.
    pub fn stls(host: impl Into<String>) -> Self {
        Self::new(host, Security::Stls)
    }

    /// Sets [`ConnectOptions::port`].
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets [`ConnectOptions::trust_roots`].
    #[must_use]
    pub fn with_trust_roots(mut self, roots: TrustRoots) -> Self {
        self.trust_roots = roots;
        self
    }

    /// Sets [`ConnectOptions::tls_name`].
    #[must_use]
    pub fn with_tls_name(mut self, name: impl Into<String>) -> Self {
        self.tls_name = Some(name.into());
        self
    }

    /// Sets [`ConnectOptions::timeouts`].
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: SetupTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets [`ConnectOptions::local_addr`].
    #[must_use]
    pub fn with_local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }
}

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

/// What went wrong with a [`Session`] call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connection set-up failed: name resolution, TCP, the CA file, the TLS handshake
    /// (certificate not trusted, wrong host name, a peer not speaking TLS), the wrong TLS mode
    /// for the port ([`TransportError::PlaintextGreeting`]: implicit TLS against an STLS port),
    /// or no greeting in time ([`TransportError::NoGreeting`], which names the likely cause:
    /// STLS or plaintext against an implicit-TLS port). Fatal.
    #[error(transparent)]
    Transport(TransportError),
    /// Reading or writing the connection failed. Fatal.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// A deadline passed ([`SetupTimeouts`] or [`crate::Timeouts`]). Fatal.
    #[error("{0} timed out")]
    Timeout(TimeoutPhase),
    /// The server broke the protocol or exceeded a [`crate::Limits`] bound; also `STLS`
    /// missing or refused when TLS is required, and a server that failed SCRAM's mutual
    /// authentication. Fatal.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The server refused the session in its greeting (e.g. `[SYS/TEMP]`, `[IN-USE]`).
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
    Output(#[source] io::Error),
    /// An earlier fatal error ended the session.
    #[error("the session failed earlier")]
    SessionFailed,
    /// An earlier [`Session::login`] or [`Session::login_with`] was cancelled part way (its
    /// future was dropped in the middle of the exchange): the session was closed, and this is
    /// the answer to every later call. Connect again.
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
                | Self::SessionFailed
                | Self::Cancelled(_)
        )
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
            _ => Self::SessionFailed,
        }
    }
}

/// Answer to `STAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Number of messages.
    pub count: u32,
    /// Their total size in octets.
    pub size: u64,
}

/// The outcome of one message of [`Session::retr_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fetched {
    /// The message was written to its writer, which was flushed.
    Message {
        /// The message number.
        msg: u32,
        /// Octets written (after dot-unstuffing).
        octets: u64,
    },
    /// The server refused it (e.g. deleted in this session, or no such message).
    Refused {
        /// The message number.
        msg: u32,
        /// The server's answer.
        response: Response,
    },
}

/// A step of a pipelined retrieval ([`Retrieval::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetrievalEvent {
    /// The server accepted `RETR msg`; its chunks follow.
    Start {
        /// The message number.
        msg: u32,
    },
    /// A piece of the message, dot-unstuffed, line ends as sent.
    Chunk {
        /// The message number.
        msg: u32,
        /// The bytes.
        data: Bytes,
    },
    /// The message is complete.
    End {
        /// The message number.
        msg: u32,
        /// Octets delivered in its chunks.
        octets: u64,
    },
    /// The server refused `RETR msg`; the retrieval goes on with the next message.
    Refused {
        /// The message number.
        msg: u32,
        /// The server's answer.
        response: Response,
    },
}

/// The id of the command an event answers, if it answers one.
const fn event_id(event: &Event) -> Option<CommandId> {
    match event {
        Event::LoggedIn { id, .. }
        | Event::LoginFailed { id, .. }
        | Event::Stat { id, .. }
        | Event::Listing { id, .. }
        | Event::Listed { id, .. }
        | Event::UidListing { id, .. }
        | Event::UidListed { id, .. }
        | Event::MessageStart { id, .. }
        | Event::MessageChunk { id, .. }
        | Event::MessageEnd { id, .. }
        | Event::Capabilities { id, .. }
        | Event::Done { id, .. }
        | Event::Refused { id, .. } => Some(*id),
        _ => None,
    }
}

/// A POP3 session over TCP (and TLS), driven by tokio.
///
/// Created by [`Session::connect`], which returns once the session is ready for a login: the
/// greeting was received, the capabilities are known and, as configured, TLS is in place.
/// Methods take `&mut self`, so commands are issued one at a time; [`Session::retr_many`] and
/// [`Session::retrieve`] pipeline many `RETR`s when the server allows it.
///
/// Dropping the session closes the connection without `QUIT`: messages marked with
/// [`Session::dele`] are then kept by the server (RFC 1939 section 6).
pub struct Session {
    driver: Driver<Client>,
    connector: TlsConnector,
    tls_name: String,
    handshake_timeout: Duration,
    reply_timeout: Duration,
    greeting: Response,
    /// Pipelined `RETR`s kept queued in the client: enough to fill its window.
    max_outstanding: usize,
    /// Sizes from `LIST`, used as size hints for the pipelining window.
    sizes: HashMap<u32, u64>,
    failed: bool,
    /// A `DELE` was sent: the reply to `QUIT` commits it, so it must be awaited.
    dele_sent: bool,
    /// Notices a login whose future was dropped part way.
    calls: CallTracker,
    span: tracing::Span,
}

/// Shows the session state; the client's `Debug` never shows buffer contents.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", self.driver.machine_ref())
            .field("tls_name", &self.tls_name)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, reads the greeting, asks for the capabilities and, with
    /// [`Security::Stls`], upgrades with `STLS` (then asks again over TLS).
    ///
    /// `options.security` replaces `config.security`. With [`Security::Stls`], a server that
    /// does not offer or refuses `STLS` ends the attempt ([`Error::Protocol`]) before any
    /// credential could be sent.
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the half-open connection.
    pub async fn connect(options: ConnectOptions, mut config: Config) -> Result<Self, Error> {
        let span = tracing::info_span!(
            "pop3.session",
            host = %options.host,
            port = options.port,
            security = ?options.security,
        );
        config.security = options.security;
        Self::connect_inner(options, config, span.clone())
            .instrument(span)
            .await
    }

    async fn connect_inner(
        options: ConnectOptions,
        config: Config,
        span: tracing::Span,
    ) -> Result<Self, Error> {
        let tls_name = options.tls_name.unwrap_or_else(|| options.host.clone());
        let connector = transport::tls_connector(&options.trust_roots)?;
        let wrapping = if options.security == Security::Implicit {
            Wrapping::ImplicitTls
        } else {
            Wrapping::Plain
        };
        let stream = transport::connect_from(
            &options.host,
            options.port,
            options.local_addr,
            wrapping,
            &connector,
            &tls_name,
            options.timeouts,
        )
        .await?;
        tracing::debug!(tls = ?stream.tls_summary(), "connected");
        let max_outstanding = (config.limits.max_in_flight.saturating_mul(2))
            .clamp(1, config.limits.max_queued_commands.max(1));
        let reply_timeout = config.timeouts.reply;
        let greeting_wait = config.timeouts.greeting;
        let client = Client::new(config, Instant::now());
        let mut session = Self {
            driver: Driver::new(stream, client),
            connector,
            tls_name,
            handshake_timeout: options.timeouts.tls_handshake,
            reply_timeout,
            greeting: Response {
                code: None,
                text: String::new(),
            },
            max_outstanding,
            sizes: HashMap::new(),
            failed: false,
            dele_sent: false,
            calls: CallTracker::new(),
            span,
        };
        loop {
            let event = session.next_event().await.map_err(|error| match error {
                // Name the server and the likely cause: a port that expects implicit TLS
                // waits silently for the handshake.
                Error::Timeout(TimeoutPhase::Greeting) => {
                    Error::Transport(TransportError::NoGreeting {
                        host: options.host.clone(),
                        port: options.port,
                        after: greeting_wait,
                        implicit_tls: wrapping == Wrapping::ImplicitTls,
                    })
                }
                error => error,
            })?;
            match event {
                Event::Greeting(response) => session.greeting = response,
                Event::GreetingRefused(response) => return Err(Error::GreetingRefused(response)),
                Event::StartTls => {
                    let upgraded = session
                        .driver
                        .upgrade(
                            &session.connector,
                            &session.tls_name,
                            session.handshake_timeout,
                        )
                        .await;
                    if let Err(error) = upgraded {
                        session.failed = true;
                        return Err(error.into());
                    }
                    session
                        .driver
                        .machine()
                        .tls_established(Instant::now())
                        .map_err(Error::Misuse)?;
                    tracing::debug!("STLS: TLS established");
                }
                Event::Ready(caps) => {
                    tracing::debug!(
                        sasl = ?caps.sasl,
                        pipelining = caps.pipelining,
                        "ready"
                    );
                    return Ok(session);
                }
                other => tracing::debug!(?other, "ignored event during set-up"),
            }
        }
    }

    // ---- getters ----

    /// The server's greeting (its text may name the software; never trust it for anything).
    pub const fn greeting(&self) -> &Response {
        &self.greeting
    }

    /// The capabilities in force (after TLS, when TLS was set up by `STLS`).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.driver.machine_ref().capabilities()
    }

    /// Whether the connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.driver.is_tls()
    }

    /// Whether a login succeeded.
    pub fn is_logged_in(&self) -> bool {
        self.driver.machine_ref().is_logged_in()
    }

    /// The sans-IO client, for its getters.
    pub fn client(&self) -> &Client {
        self.driver.machine_ref()
    }

    // ---- the loop ----

    /// The next event of the client, reading and writing as needed.
    async fn next_event(&mut self) -> Result<Event, Error> {
        if self.failed {
            return Err(Error::SessionFailed);
        }
        match self.driver.run_until(Client::poll_event).await {
            Ok(event) => Ok(event),
            Err(error) => {
                self.failed = true;
                let error = Error::from(error);
                tracing::debug!(%error, "session failed");
                Err(error)
            }
        }
    }

    /// Feeds the client whatever arrived while the session was idle, without waiting.
    ///
    /// A POP3 server never speaks unprompted: bytes that arrived after the last reply (a
    /// duplicated reply, a forged one) are a protocol error now, instead of being read as the
    /// answer to the next command.
    /// Refuses every call after a login whose future was dropped part way, closing the
    /// connection the first time.
    async fn check_cancelled(&mut self) -> Result<(), Error> {
        if let Err(cancelled) = self.calls.check() {
            if !self.failed {
                self.failed = true;
                self.driver.shutdown().await;
            }
            return Err(Error::Cancelled(cancelled));
        }
        Ok(())
    }

    async fn take_arrived(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::SessionFailed);
        }
        let taken = self
            .driver
            .run_until_or(|_| None::<std::convert::Infallible>, std::future::ready(()))
            .await;
        taken.map(drop).map_err(|error| {
            self.failed = true;
            let error = Error::from(error);
            tracing::debug!(%error, "session failed");
            error
        })
    }

    fn send(&mut self, command: Command) -> Result<CommandId, Error> {
        if self.failed {
            return Err(Error::SessionFailed);
        }
        self.dele_sent |= matches!(command, Command::Dele(_));
        self.driver
            .machine()
            .send(Instant::now(), command)
            .map_err(|rejected| Error::Misuse(rejected.reason))
    }

    /// Sends `command` and returns the event answering it; `-ERR` becomes [`Error::Refused`].
    /// Events of other commands (left over from an abandoned [`Retrieval`]) are skipped.
    async fn reply(&mut self, id: CommandId) -> Result<Event, Error> {
        loop {
            let event = self.next_event().await?;
            if event_id(&event) != Some(id) {
                tracing::trace!(?event, "skipped event of another command");
                continue;
            }
            return match event {
                Event::Refused {
                    command, response, ..
                } => Err(Error::Refused { command, response }),
                other => Ok(other),
            };
        }
    }

    /// Runs a command whose answer is one event.
    async fn simple(&mut self, command: Command) -> Result<Event, Error> {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", %command);
        async {
            self.check_cancelled().await?;
            self.take_arrived().await?;
            let id = self.send(command)?;
            self.reply(id).await
        }
        .instrument(span)
        .await
    }

    // ---- authorization state ----

    /// Logs in, letting the client choose the strongest method the server offers
    /// ([`Login::auto`]). Returns the method used.
    ///
    /// Credentials are never sent without TLS unless the configuration says
    /// [`Config::dangerously_allow_cleartext_credentials`]; otherwise this fails with
    /// [`Error::Misuse`] before anything is sent.
    ///
    /// Cancel safety: not cancel-safe (see [`Session::login_with`]).
    pub async fn login(&mut self, credentials: Credentials) -> Result<AuthMethod, Error> {
        self.login_with(Login::auto(credentials)).await
    }

    /// Logs in as `login` says (e.g. [`Login::using`] a particular method). A SCRAM nonce comes
    /// from [`crate::Config::nonce_source`] when the login carries none.
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the exchange is left open: the
    /// connection is closed and every later call returns [`Error::Cancelled`].
    pub async fn login_with(&mut self, login: Login) -> Result<AuthMethod, Error> {
        let span = tracing::info_span!(
            parent: &self.span,
            "pop3.login",
            user = %login.username(),
            method = ?login.method,
        );
        if let Err(cancelled) = self.calls.begin("login") {
            if !self.failed {
                self.failed = true;
                self.driver.shutdown().await;
            }
            return Err(Error::Cancelled(cancelled));
        }
        let result = async {
            self.take_arrived().await?;
            let id = self
                .driver
                .machine()
                .login(Instant::now(), login)
                .map_err(|rejected| Error::Misuse(rejected.reason))?;
            match self.reply(id).await? {
                Event::LoggedIn { method, .. } => {
                    tracing::info!(?method, "logged in");
                    Ok(method)
                }
                Event::LoginFailed { failure, .. } => {
                    tracing::info!(response = ?failure.response, "login failed");
                    Err(Error::LoginFailed(failure))
                }
                other => unreachable!("login answered by {other:?}"),
            }
        }
        .instrument(span)
        .await;
        self.calls.end();
        result
    }

    /// `CAPA`: asks for the capabilities again (they may change after login).
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn capa(&mut self) -> Result<Capabilities, Error> {
        match self.simple(Command::Capa).await? {
            Event::Capabilities { capabilities, .. } => Ok(capabilities),
            other => unreachable!("CAPA answered by {other:?}"),
        }
    }

    /// `UTF8` (RFC 6856): switches to UTF-8 mode; only before login.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn utf8(&mut self) -> Result<Response, Error> {
        self.done(Command::Utf8).await
    }

    // ---- transaction state ----

    /// `STAT`: the number of messages and their total size.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn stat(&mut self) -> Result<Stat, Error> {
        match self.simple(Command::Stat).await? {
            Event::Stat { count, size, .. } => Ok(Stat { count, size }),
            other => unreachable!("STAT answered by {other:?}"),
        }
    }

    /// `LIST`: number and size of every message not marked as deleted.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn list(&mut self) -> Result<Vec<ScanEntry>, Error> {
        match self.simple(Command::List(None)).await? {
            Event::Listing { entries, .. } => {
                self.sizes = entries.iter().map(|e| (e.msg, e.size)).collect();
                Ok(entries)
            }
            other => unreachable!("LIST answered by {other:?}"),
        }
    }

    /// `LIST msg`.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn list_one(&mut self, msg: u32) -> Result<ScanEntry, Error> {
        match self.simple(Command::List(Some(msg))).await? {
            Event::Listed { entry, .. } => {
                self.sizes.insert(entry.msg, entry.size);
                Ok(entry)
            }
            other => unreachable!("LIST n answered by {other:?}"),
        }
    }

    /// `UIDL`: the unique-id of every message not marked as deleted.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn uidl(&mut self) -> Result<Vec<UidEntry>, Error> {
        match self.simple(Command::Uidl(None)).await? {
            Event::UidListing { entries, .. } => Ok(entries),
            other => unreachable!("UIDL answered by {other:?}"),
        }
    }

    /// `LIST` and `UIDL` together: one round trip for both when the server announces
    /// `PIPELINING` (RFC 2449), else one after the other. The outer error is the `LIST`'s (or
    /// a fatal one); the inner one is the `UIDL`'s, so a server without `UIDL`
    /// ([`Error::Refused`]) still gives its listing.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, both commands still complete: the next
    /// call reads their replies and discards them before its own.
    pub async fn list_and_uidl(
        &mut self,
    ) -> Result<(Vec<ScanEntry>, Result<Vec<UidEntry>, Error>), Error> {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", command = "LIST+UIDL");
        async {
            self.check_cancelled().await?;
            self.take_arrived().await?;
            // Both are queued at once; the client sends UIDL behind LIST only when pipelining
            // is in use, otherwise once LIST is answered (lockstep, RFC 1939).
            let list_id = self.send(Command::List(None))?;
            let uidl_id = self.send(Command::Uidl(None))?;
            let entries = match self.reply(list_id).await? {
                Event::Listing { entries, .. } => entries,
                other => unreachable!("LIST answered by {other:?}"),
            };
            self.sizes = entries.iter().map(|e| (e.msg, e.size)).collect();
            let uids = match self.reply(uidl_id).await {
                Ok(Event::UidListing { entries, .. }) => Ok(entries),
                Ok(other) => unreachable!("UIDL answered by {other:?}"),
                Err(Error::Refused { command, response }) => {
                    Err(Error::Refused { command, response })
                }
                Err(error) => return Err(error),
            };
            Ok((entries, uids))
        }
        .instrument(span)
        .await
    }

    /// `UIDL msg`.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn uidl_one(&mut self, msg: u32) -> Result<UidEntry, Error> {
        match self.simple(Command::Uidl(Some(msg))).await? {
            Event::UidListed { entry, .. } => Ok(entry),
            other => unreachable!("UIDL n answered by {other:?}"),
        }
    }

    /// `RETR msg`, streamed into `out` chunk by chunk (dot-unstuffed, line ends as sent);
    /// `out` is flushed at the end. Returns the octets written.
    ///
    /// Memory does not grow with the message: each chunk is written before more is read.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the rest of the message is read and
    /// discarded by the next call; `out` may hold part of the message.
    pub async fn retr_to<W>(&mut self, msg: u32, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let command = Command::Retr {
            msg,
            size_hint: self.sizes.get(&msg).copied(),
        };
        self.body_to(command, out).await
    }

    /// `RETR msg` as an [`AsyncRead`](::tokio::io::AsyncRead): the message's bytes
    /// (dot-unstuffed, line ends as sent), then end of file once the terminator has arrived.
    /// A session error surfaces as an `io::Error` whose inner error is the [`Error`].
    ///
    /// Read it to the end before using the session again; a reader dropped early leaves the
    /// rest of the reply to be read and skipped by the next call.
    ///
    /// ```no_run
    /// # async fn f(session: &mut pop3_proto::tokio::Session) -> std::io::Result<()> {
    /// let mut reader = session.retr_reader(1)?;
    /// let mut message = Vec::new(); // or a file, a pipe, a hasher...
    /// tokio::io::copy(&mut reader, &mut message).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Fails at once (as an `io::Error`) when the command cannot be sent (the session failed
    /// earlier, or misuse such as not being logged in).
    pub fn retr_reader(&mut self, msg: u32) -> io::Result<MessageReader<'_>> {
        let command = Command::Retr {
            msg,
            size_hint: self.sizes.get(&msg).copied(),
        };
        self.calls
            .check()
            .map_err(|cancelled| io::Error::other(Error::Cancelled(cancelled)))?;
        let id = self.send(command).map_err(io::Error::other)?;
        Ok(MessageReader {
            state: ReaderState::Idle(self, id),
            pending: Bytes::new(),
        })
    }

    /// `RETR msg` into memory. Prefer [`Session::retr_to`] for messages of unknown size.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn retr(&mut self, msg: u32) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.retr_to(msg, &mut out).await?;
        Ok(out)
    }

    /// `TOP msg lines` (the header and the first `lines` body lines), streamed into `out`.
    ///
    /// Cancel safety: cancel-safe, like [`Session::retr_to`].
    pub async fn top_to<W>(&mut self, msg: u32, lines: u32, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.body_to(Command::top(msg, lines), out).await
    }

    /// `TOP msg lines` into memory.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn top(&mut self, msg: u32, lines: u32) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.top_to(msg, lines, &mut out).await?;
        Ok(out)
    }

    async fn body_to<W>(&mut self, command: Command, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", %command);
        async {
            self.check_cancelled().await?;
            self.take_arrived().await?;
            let id = self.send(command)?;
            let mut output_error = None;
            loop {
                match self.reply(id).await? {
                    Event::MessageStart { .. } => {}
                    Event::MessageChunk { data, .. } => {
                        if output_error.is_none() {
                            output_error = out.write_all(&data).await.err();
                        }
                    }
                    Event::MessageEnd { octets, .. } => {
                        if output_error.is_none() {
                            output_error = out.flush().await.err();
                        }
                        tracing::debug!(octets, "message received");
                        return output_error.map_or(Ok(octets), |e| Err(Error::Output(e)));
                    }
                    other => unreachable!("{command} answered by {other:?}"),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Retrieves `msgs` in pipelined flights (when the server announces `PIPELINING`),
    /// writing each message into the writer `open(msg)` returns. When a message is complete
    /// its writer is flushed and handed to `done(msg, writer)` (to close a file, rename it
    /// into place, keep a buffer). A refused message is reported in the result and the others
    /// go on.
    ///
    /// If a writer fails, no further `RETR` is sent, the replies already requested are read
    /// and discarded, and [`Error::Output`] is returned.
    ///
    /// ```no_run
    /// # async fn f(session: &mut pop3_proto::tokio::Session) -> Result<(), pop3_proto::tokio::Error> {
    /// let mut messages = Vec::new();
    /// session
    ///     .retr_many(1..=10, |_msg| Vec::new(), |msg, body| messages.push((msg, body)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the retrievals already sent complete and
    /// are discarded by the next call; which messages reached `done` is what `done` saw.
    pub async fn retr_many<I, F, W, D>(
        &mut self,
        msgs: I,
        mut open: F,
        mut done: D,
    ) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator<Item = u32>,
        F: FnMut(u32) -> W,
        W: AsyncWrite + Unpin,
        D: FnMut(u32, W),
    {
        let mut retrieval = self.retrieve(msgs);
        let mut fetched = Vec::new();
        let mut current: Option<W> = None;
        while let Some(event) = retrieval.next().await? {
            let result = match event {
                RetrievalEvent::Start { msg } => {
                    current = Some(open(msg));
                    Ok(())
                }
                RetrievalEvent::Chunk { data, .. } => match current.as_mut() {
                    Some(out) => out.write_all(&data).await,
                    None => Ok(()),
                },
                RetrievalEvent::End { msg, octets } => {
                    let flushed = match current.take() {
                        Some(mut out) => {
                            let flushed = out.flush().await;
                            if flushed.is_ok() {
                                done(msg, out);
                            }
                            flushed
                        }
                        None => Ok(()),
                    };
                    fetched.push(Fetched::Message { msg, octets });
                    flushed
                }
                RetrievalEvent::Refused { msg, response } => {
                    fetched.push(Fetched::Refused { msg, response });
                    Ok(())
                }
            };
            if let Err(error) = result {
                retrieval.abandon().await?;
                return Err(Error::Output(error));
            }
        }
        Ok(fetched)
    }

    /// Starts a pipelined retrieval of `msgs`, read step by step with [`Retrieval::next`]:
    /// the pull-style form of [`Session::retr_many`], for callers that do asynchronous work
    /// per message (open a file, commit it to a store).
    pub fn retrieve<I>(&mut self, msgs: I) -> Retrieval<'_>
    where
        I: IntoIterator<Item = u32>,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.retrieve");
        Retrieval {
            session: self,
            pending: msgs.into_iter().collect(),
            outstanding: VecDeque::new(),
            span,
        }
    }

    /// Every message of the maildrop into memory, with its number, in order: `STAT`, then
    /// [`Session::retr_many`] of `1..=count`, pipelined when the server announces it. A
    /// message the server refuses (one marked deleted in this session) is left out. Each
    /// message is held whole: for a maildrop of unknown size, write each one out with
    /// [`Session::retr_many`] or [`Session::retrieve`] instead.
    ///
    /// Cancel safety: cancel-safe, like [`Session::retr_many`].
    pub async fn retr_all(&mut self) -> Result<Vec<(u32, Vec<u8>)>, Error> {
        let count = self.stat().await?.count;
        let mut messages = Vec::with_capacity(count as usize);
        self.retr_many(
            1..=count,
            |_| Vec::new(),
            |msg, body| messages.push((msg, body)),
        )
        .await?;
        Ok(messages)
    }

    /// `DELE msg`: marks the message for deletion; [`Session::quit`] commits it.
    ///
    /// Cancel safety: cancel-safe, but whether the message was marked deleted is then unknown:
    /// [`Session::rset`] before [`Session::quit`] undoes every mark.
    pub async fn dele(&mut self, msg: u32) -> Result<Response, Error> {
        self.done(Command::Dele(msg)).await
    }

    /// `DELE` for each of `msgs`, pipelined when the server announces `PIPELINING` (one round
    /// trip for the lot instead of one each). Returns, in order, the messages the server
    /// refused to mark (already deleted, no such message); the others are marked, and
    /// [`Session::quit`] commits them.
    ///
    /// Cancel safety: cancel-safe, but which messages were marked deleted is then unknown:
    /// [`Session::rset`] before [`Session::quit`] undoes every mark.
    pub async fn dele_many<I>(&mut self, msgs: I) -> Result<Vec<(u32, Response)>, Error>
    where
        I: IntoIterator<Item = u32>,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.dele_many");
        async {
            self.check_cancelled().await?;
            let mut pending: VecDeque<u32> = msgs.into_iter().collect();
            let mut outstanding: VecDeque<(CommandId, u32)> = VecDeque::new();
            let mut refused = Vec::new();
            loop {
                while outstanding.len() < self.max_outstanding {
                    let Some(msg) = pending.pop_front() else {
                        break;
                    };
                    let id = self.send(Command::Dele(msg))?;
                    outstanding.push_back((id, msg));
                }
                let Some((head, msg)) = outstanding.pop_front() else {
                    return Ok(refused);
                };
                match self.reply(head).await {
                    Ok(_) => {}
                    Err(Error::Refused { response, .. }) => refused.push((msg, response)),
                    Err(error) => return Err(error),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `RSET`: unmarks every message marked for deletion.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn rset(&mut self) -> Result<Response, Error> {
        self.done(Command::Rset).await
    }

    /// `NOOP`.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn noop(&mut self) -> Result<Response, Error> {
        self.done(Command::Noop).await
    }

    async fn done(&mut self, command: Command) -> Result<Response, Error> {
        match self.simple(command).await? {
            Event::Done { response, .. } => Ok(response),
            other => unreachable!("{command} answered by {other:?}"),
        }
    }

    /// `QUIT`: ends the session. In the transaction state the server now deletes the messages
    /// marked with [`Session::dele`]; `-ERR` ([`Error::Refused`]) means it could not remove
    /// some of them.
    ///
    /// Cancel safety: dropping it drops the connection; whether the server committed the
    /// deletions (it does once it has read `QUIT`) is then unknown.
    pub async fn quit(mut self) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", command = "QUIT");
        async {
            if self.check_cancelled().await.is_err() {
                return Ok(());
            }
            self.take_arrived().await?;
            let id = self.send(Command::Quit)?;
            let answer = self.reply(id).await;
            if matches!(answer, Ok(_) | Err(Error::Refused { .. })) {
                // The server closes after its answer; wait for that, briefly, so the deletion
                // is committed before we return.
                let reply_timeout = self.reply_timeout;
                let closed = async {
                    while !matches!(self.next_event().await?, Event::Closed) {}
                    Ok::<(), Error>(())
                };
                match ::tokio::time::timeout(reply_timeout, closed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "after QUIT"),
                    Err(_) => tracing::debug!("the server did not close after QUIT"),
                }
            }
            self.driver.shutdown().await;
            answer.map(drop)
        }
        .instrument(span)
        .await
    }

    /// `QUIT` without waiting for its reply, when nothing was marked for deletion: the
    /// command is written and the connection closed at once, saving the round trip of the
    /// reply, which would change nothing (RFC 1939: `QUIT` in the transaction state only
    /// removes messages marked with `DELE`).
    ///
    /// Once any `DELE` was sent this is [`Session::quit`]: the reply is what commits the
    /// deletions, so it is awaited.
    ///
    /// Cancel safety: dropping it drops the connection.
    pub async fn quit_without_waiting(mut self) -> Result<(), Error> {
        if self.dele_sent {
            return self.quit().await;
        }
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", command = "QUIT");
        async {
            if self.check_cancelled().await.is_err() {
                return Ok(());
            }
            self.take_arrived().await?;
            self.send(Command::Quit)?;
            self.driver.send_pending_and_close().await;
            tracing::debug!("QUIT sent, not waiting for its reply (nothing marked for deletion)");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// A pipelined retrieval started by [`Session::retrieve`].
///
/// Dropping it early leaves the commands already handed to the client running; their replies
/// are read and skipped by the next session call. [`Retrieval::abandon`] stops sending and
/// drains them at once.
#[derive(Debug)]
pub struct Retrieval<'a> {
    session: &'a mut Session,
    pending: VecDeque<u32>,
    outstanding: VecDeque<(CommandId, u32)>,
    span: tracing::Span,
}

impl Retrieval<'_> {
    /// The next step, or `None` when every message has been answered.
    ///
    /// Cancel safety: cancel-safe. Dropped while waiting, no event is lost: the next call
    /// returns it.
    pub async fn next(&mut self) -> Result<Option<RetrievalEvent>, Error> {
        let span = self.span.clone();
        self.next_inner().instrument(span).await
    }

    async fn next_inner(&mut self) -> Result<Option<RetrievalEvent>, Error> {
        self.session.check_cancelled().await?;
        if self.outstanding.is_empty() && !self.pending.is_empty() {
            self.session.take_arrived().await?;
        }
        while self.outstanding.len() < self.session.max_outstanding {
            let Some(msg) = self.pending.pop_front() else {
                break;
            };
            let command = Command::Retr {
                msg,
                size_hint: self.session.sizes.get(&msg).copied(),
            };
            let id = self.session.send(command)?;
            self.outstanding.push_back((id, msg));
        }
        let Some(&(head, msg)) = self.outstanding.front() else {
            return Ok(None);
        };
        loop {
            let event = self.session.next_event().await?;
            if event_id(&event) != Some(head) {
                tracing::trace!(?event, "skipped event of another command");
                continue;
            }
            return Ok(Some(match event {
                Event::MessageStart { .. } => RetrievalEvent::Start { msg },
                Event::MessageChunk { data, .. } => RetrievalEvent::Chunk { msg, data },
                Event::MessageEnd { octets, .. } => {
                    self.outstanding.pop_front();
                    tracing::debug!(msg, octets, "message received");
                    RetrievalEvent::End { msg, octets }
                }
                Event::Refused { response, .. } => {
                    self.outstanding.pop_front();
                    tracing::debug!(msg, ?response, "RETR refused");
                    RetrievalEvent::Refused { msg, response }
                }
                other => unreachable!("RETR answered by {other:?}"),
            }));
        }
    }

    /// Sends no further `RETR` and reads (discarding) the replies of those already sent.
    ///
    /// Cancel safety: cancel-safe; the rest is discarded by the next call.
    pub async fn abandon(&mut self) -> Result<(), Error> {
        self.pending.clear();
        while self.next().await?.is_some() {}
        Ok(())
    }

    /// Messages not yet completely answered.
    pub fn remaining(&self) -> usize {
        self.pending.len() + self.outstanding.len()
    }
}

/// A message being read with [`Session::retr_reader`].
pub struct MessageReader<'a> {
    state: ReaderState<'a>,
    pending: Bytes,
}

type ReplyFuture<'a> =
    Pin<Box<dyn Future<Output = (&'a mut Session, Result<Event, Error>)> + Send + 'a>>;

enum ReaderState<'a> {
    Idle(&'a mut Session, CommandId),
    Waiting(ReplyFuture<'a>, CommandId),
    Done,
    Moving,
}

impl fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ReaderState::Idle(..) => "idle",
            ReaderState::Waiting(..) => "waiting",
            ReaderState::Done => "done",
            ReaderState::Moving => "moving",
        };
        f.debug_struct("MessageReader")
            .field("state", &state)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ::tokio::io::AsyncRead for MessageReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ::tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.state, ReaderState::Moving) {
                ReaderState::Idle(session, id) => {
                    let reply = Box::pin(async move {
                        let event = session.reply(id).await;
                        (session, event)
                    });
                    this.state = ReaderState::Waiting(reply, id);
                }
                ReaderState::Waiting(mut reply, id) => match reply.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = ReaderState::Waiting(reply, id);
                        return Poll::Pending;
                    }
                    Poll::Ready((session, Ok(Event::MessageChunk { data, .. }))) => {
                        this.pending = data;
                        this.state = ReaderState::Idle(session, id);
                    }
                    Poll::Ready((_, Ok(Event::MessageEnd { .. }))) => {
                        this.state = ReaderState::Done;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready((session, Ok(_))) => this.state = ReaderState::Idle(session, id),
                    Poll::Ready((_, Err(error))) => {
                        this.state = ReaderState::Done;
                        return Poll::Ready(Err(io::Error::other(error)));
                    }
                },
                ReaderState::Done | ReaderState::Moving => {
                    this.state = ReaderState::Done;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
