//! The tokio + rustls adapter (feature `tokio`): a [`Session`] that connects, authenticates and
//! submits mail, driving the sans-IO [`Client`] over [`mail_common::connection::Connection`].
//! A refused recipient next to accepted ones is data ([`crate::SendReport`]); [`Error`] is for what
//! stops a call. Credentials are never logged: AUTH lines are redacted by the core.
//!
//! Cancel safety: [`Session::connect`] and [`Session::quit`] may be dropped at any point. The
//! other calls are conversations of several commands: dropping one part way closes the
//! session, every later call returns [`Error::Cancelled`], and whether the server acted on the
//! cancelled call is unknown. Deadlines are built in ([`crate::Timeouts`], [`SetupTimeouts`]).
//!
//! # Example
//!
//! ```no_run
//! use smtp_submit::tokio::{ConnectOptions, Session};
//! use smtp_submit::{Address, AuthMethod, Config, Credentials, Envelope, MailOptions, Security};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // STARTTLS on the standard port, 587; `Config::default()` would be implicit TLS on 465.
//! let config = Config::default().with_security(Security::StartTls);
//! let mut session = Session::connect(&ConnectOptions::new("mail.example.org"), config).await?;
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
//! report.ensure_sent()?;
//! session.quit().await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod many;
mod send;

use std::time::{Duration, Instant};

pub use mail_common::connection::ConnectOptions;
use mail_common::connection::Connection;
use mail_common::sasl::{Credentials, Mechanism};
use mail_common::transport::Until;
pub use mail_common::transport::{
    Cancelled, SetupPhase, SetupTimeouts, TransportError, TrustRoots,
};
use tracing::Instrument;

pub use self::error::{ConnectionError, Error, Timeout};
pub use crate::Stage;
use crate::{AuthMethod, Capabilities, Client, Config, Event, Misuse, Reply};

/// How long a session the server refused may take to answer QUIT before it is just dropped.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// An SMTP submission session: past EHLO (and STARTTLS), ready to authenticate and send any
/// number of messages.
#[derive(Debug)]
pub struct Session {
    conn: Connection<Client>,
    capabilities: Capabilities,
    span: tracing::Span,
}

impl Session {
    /// Connects, reads the greeting, sends EHLO and, with [`Security::StartTls`](crate::Security),
    /// upgrades the connection and sends EHLO again over TLS. A server that does not offer or
    /// refuses STARTTLS ends the attempt before anything else is sent.
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the half-open connection.
    pub async fn connect(options: &ConnectOptions, config: Config) -> Result<Self, Error> {
        let span = tracing::info_span!(
            "smtp",
            host = %options.host,
            port = ?options.port,
            security = ?config.security,
        );
        async {
            let conn = Connection::open(options, config).await?;
            let mut session = Self {
                conn,
                capabilities: Capabilities::default(),
                span: tracing::Span::current(),
            };
            let ready = session
                .conn
                .set_up(|event| match event {
                    Event::Ready(capabilities) => Some(Ok(capabilities)),
                    Event::Closed => Some(Err(Error::Closed)),
                    event => event.refusal().map(|(stage, reply)| {
                        Err(Error::Refused {
                            stage,
                            reply: reply.clone(),
                        })
                    }),
                })
                .await;
            match ready {
                Ok(capabilities) => {
                    tracing::debug!(?capabilities, "session ready");
                    session.capabilities = capabilities;
                    Ok(session)
                }
                Err(error @ (Error::Refused { .. } | Error::StartTlsNotOffered)) => {
                    // The core sent QUIT; give the server a moment to answer it.
                    let _ = ::tokio::time::timeout(QUIT_GRACE, session.wait_closed()).await;
                    Err(error)
                }
                Err(error) => Err(error),
            }
        }
        .instrument(span)
        .await
    }

    // ---- getters ----

    /// The server's capabilities (from the last EHLO, over TLS when TLS is used).
    pub const fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// True when the connection is protected by TLS.
    pub const fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The mechanism of a successful [`Session::authenticate`].
    pub fn authenticated(&self) -> Option<Mechanism> {
        self.conn.machine_ref().authenticated()
    }

    /// The sans-IO client underneath, for inspection.
    pub fn client(&self) -> &Client {
        self.conn.machine_ref()
    }

    // ---- authentication ----

    /// [`Session::authenticate`] with [`AuthMethod::Auto`] (the name of the POP3 twin's call).
    pub async fn login(&mut self, credentials: &Credentials) -> Result<Mechanism, Error> {
        self.authenticate(credentials, AuthMethod::Auto).await
    }

    /// Authenticates with `credentials`: the strongest mechanism both sides support
    /// ([`AuthMethod::Auto`]) or exactly the one asked for, with no fallback after a failure.
    /// Refused without sending anything when the connection has no TLS (unless the [`Config`]
    /// allows cleartext credentials).
    ///
    /// A refusal (535 for wrong credentials) is [`Error::Auth`]; the session stays usable.
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        method: AuthMethod,
    ) -> Result<Mechanism, Error> {
        let span = tracing::debug_span!(parent: &self.span, "auth", user = credentials.username());
        self.guarded("AUTH", span, async |s| {
            s.take_arrived().await?;
            // An empty nonce: the core takes SCRAM's from `Config::nonce_source`.
            let mechanism =
                s.client_mut()
                    .authenticate(Instant::now(), credentials, method, &[])?;
            tracing::debug!(mechanism = mechanism.name(), "AUTH started");
            s.wait(|event| match event {
                Event::Authenticated { mechanism } => Some(Ok(mechanism)),
                Event::AuthFailed { mechanism, failure } => {
                    Some(Err(Error::Auth { mechanism, failure }))
                }
                _ => None,
            })
            .await?
        })
        .await
    }

    // ---- commands ----

    /// Sends `NOOP` and returns the server's reply; a refusal is [`Error::Refused`].
    pub async fn noop(&mut self) -> Result<Reply, Error> {
        self.simple(Stage::Noop).await
    }

    /// Sends `RSET` and returns the server's reply; a refusal is [`Error::Refused`]. Never
    /// needed between messages: the client resets by itself after a failed transaction.
    pub async fn rset(&mut self) -> Result<Reply, Error> {
        self.simple(Stage::Rset).await
    }

    /// Sends `QUIT`, waits for the reply and closes the connection. A session that is already
    /// closed is just dropped.
    ///
    /// Cancel safety: cancel-safe; dropping the future drops the connection.
    pub async fn quit(mut self) -> Result<(), Error> {
        self.end(true).await
    }

    /// Sends `QUIT` and closes the connection at once, saving the round trip of the `221`:
    /// once every transaction has its reply, the reply to `QUIT` changes nothing (RFC 5321
    /// 4.1.1.10).
    ///
    /// Cancel safety: cancel-safe; dropping the future drops the connection.
    pub async fn quit_without_waiting(mut self) -> Result<(), Error> {
        self.end(false).await
    }

    // ---- helpers ----

    fn client_mut(&mut self) -> &mut Client {
        self.conn.machine()
    }

    /// Runs a call that must not be cancelled part way: refused after a cancelled one, and
    /// recorded so that the next call notices if this one is dropped.
    async fn guarded<T>(
        &mut self,
        operation: &'static str,
        span: tracing::Span,
        call: impl AsyncFnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.conn.begin(operation).await?;
        let result = call(self).instrument(span).await;
        self.conn.end();
        result
    }

    /// `NOOP` or `RSET`.
    async fn simple(&mut self, stage: Stage) -> Result<Reply, Error> {
        let (operation, is_noop) = match stage {
            Stage::Noop => ("NOOP", true),
            _ => ("RSET", false),
        };
        let span = tracing::debug_span!(parent: &self.span, "command", command = operation);
        self.guarded(operation, span, async |s| {
            s.take_arrived().await?;
            let now = Instant::now();
            if is_noop {
                s.client_mut().noop(now)?;
            } else {
                s.client_mut().rset(now)?;
            }
            let reply = s
                .wait(|event| match event {
                    Event::NoopReply(reply) if is_noop => Some(reply),
                    Event::RsetReply(reply) if !is_noop => Some(reply),
                    _ => None,
                })
                .await?;
            if reply.is_positive() {
                Ok(reply)
            } else {
                Err(Error::Refused { stage, reply })
            }
        })
        .await
    }

    /// [`Session::quit`] (`wait`) or [`Session::quit_without_waiting`].
    async fn end(&mut self, wait: bool) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "quit");
        async {
            if self.conn.begin("QUIT").await.is_err() || self.conn.is_broken() {
                return Ok(());
            }
            match self.client_mut().quit(Instant::now()) {
                Ok(()) if wait => {
                    self.wait_closed().await?;
                    self.conn.close().await;
                }
                Ok(()) => self.conn.send_pending_and_close().await,
                Err(Misuse::Closed) => self.conn.close().await,
                Err(misuse) => return Err(misuse.into()),
            }
            tracing::debug!(wait, "session closed");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Feeds the client whatever arrived while the session was idle: a reply nobody asked for
    /// is then a protocol error, and a 421 sent while idle ends the session now
    /// ([`Stage::ServiceClosing`]), before the next command is written.
    async fn take_arrived(&mut self) -> Result<(), Error> {
        let taken = self.wait_or(|_| None::<std::convert::Infallible>, std::future::ready(()));
        match taken.await? {
            Until::Done(never) => match never {},
            Until::Other(()) => Ok(()),
        }
    }

    /// Drives the client until `pick` accepts an event. A session failure or the end of the
    /// session ends the wait with the matching error.
    async fn wait<T>(&mut self, pick: impl FnMut(Event) -> Option<T>) -> Result<T, Error> {
        let never = std::future::pending::<std::convert::Infallible>();
        match self.wait_or(pick, never).await? {
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
            .conn
            .run_until_or(
                |client| {
                    while let Some(event) = client.poll_event() {
                        match event {
                            Event::SessionFailed(reason) => failure = Some(reason),
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
            .await?;
        match outcome {
            Until::Done(Ok(out)) => Ok(Until::Done(out)),
            Until::Done(Err(failure)) => {
                tracing::debug!(?failure, "session ended");
                self.conn.close().await;
                Err(Error::from_session_failure(failure.as_ref()))
            }
            Until::Other(out) => Ok(Until::Other(out)),
        }
    }

    async fn wait_closed(&mut self) -> Result<(), Error> {
        let closed = self.conn.run_until(|client| {
            std::iter::from_fn(|| client.poll_event()).find(|event| *event == Event::Closed)
        });
        Ok(closed.await.map(drop)?)
    }
}
