//! The tokio + rustls adapter (feature `tokio`): a [`Session`] that connects, authenticates and
//! submits mail, driving the sans-IO [`Client`] over [`mail_common::connection::Connection`].
//!
//! - [`Session::connect`] opens TCP (and TLS for [`Security::ImplicitTls`](crate::Security)),
//!   reads the greeting, sends EHLO and, for [`Security::StartTls`](crate::Security), STARTTLS
//!   and EHLO again over TLS. The mode is [`Config::security`], given once.
//! - [`Session::send`] streams the body from any [`AsyncRead`]: one read buffer and the core's
//!   send window (or one `BDAT` chunk) are in memory, never the whole message.
//!   [`Session::send_bytes`] sends a message held in memory, in one round trip when the server
//!   offers PIPELINING and CHUNKING.
//! - A refused recipient next to accepted ones is data: [`SendReport`] lists every recipient's
//!   outcome. [`Error`] is for what stops a call.
//!
//! Every session runs in a `tracing` span (`smtp`) and every call in a child span. Credentials
//! are never logged: AUTH lines are redacted by the core.
//!
//! # Cancel safety
//!
//! Deadlines are built in ([`Timeouts`](crate::Timeouts) and [`SetupTimeouts`]). The calls are
//! *not* cancel-safe: each is a conversation of several commands, and dropping its future part
//! way leaves it unfinished. The session notices: every later call returns
//! [`Error::Cancelled`] (and the connection is closed). Whether the server acted on the
//! cancelled call is unknown. [`Session::connect`] and [`Session::quit`] may be dropped at any
//! point.
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

use std::{io, time::Duration, time::Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
pub use mail_common::connection::ConnectOptions;
use mail_common::connection::{Connection, StandardPorts};
use mail_common::sasl::{Credentials, Mechanism};
use mail_common::transport::Until;
pub use mail_common::transport::{Cancelled, SetupTimeouts, TransportError, TrustRoots};
use tracing::Instrument;

pub use self::error::{Error, Stage, Timeout};
use crate::{
    AuthMethod, Capabilities, Client, Config, ContentScan, Envelope, Event, MailOptions, Misuse,
    RecipientBatches, Reply, ReportCollector, SendReport,
};

/// Submissions (RFC 8314) and submission (RFC 6409).
const PORTS: StandardPorts = StandardPorts {
    implicit_tls: 465,
    plain: 587,
};

/// Bytes read from the caller's body source per read.
const BODY_READ_CHUNK: usize = 64 * 1024;

/// How long a session the server refused may take to answer QUIT before it is just dropped.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// An SMTP submission session over tokio: connected, past EHLO (and STARTTLS), ready to
/// authenticate and send any number of messages. See the [module documentation](self).
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
            let greeting = config.timeouts.greeting;
            let conn = Connection::open(options, config.security, PORTS, greeting, |now| {
                Client::new(config, now)
            })
            .await?;
            let mut session = Self {
                conn,
                capabilities: Capabilities::default(),
                span: tracing::Span::current(),
            };
            let ready = session
                .conn
                .set_up(|event| match event {
                    Event::Ready(capabilities) => Some(Ok(capabilities)),
                    Event::SessionFailed(reason) => {
                        Some(Err(Error::from_session_failure(Some(reason))))
                    }
                    Event::Closed => Some(Err(Error::Closed)),
                    _ => None,
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
    ///
    /// Cancel safety: not cancel-safe, like [`Session::authenticate`].
    pub async fn login(&mut self, credentials: &Credentials) -> Result<Mechanism, Error> {
        self.authenticate(credentials, AuthMethod::Auto).await
    }

    /// Authenticates with `credentials`: the strongest mechanism both sides support
    /// ([`AuthMethod::Auto`]) or exactly the one asked for, with no fallback after a failure.
    /// Refused without sending anything when the connection has no TLS (unless the [`Config`]
    /// allows cleartext credentials).
    ///
    /// A refusal (535 for wrong credentials) is [`Error::Auth`]; the session stays usable.
    ///
    /// Cancel safety: not cancel-safe; whether the server accepted the credentials is then
    /// unknown.
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

    /// Sends one message whose body is read from `body` as it goes out, never held whole in
    /// memory: `DATA` (dots stuffed, line endings per [`Config::line_endings`]) or `BDAT` when
    /// CHUNKING is offered. Refused recipients and a refused message are in the
    /// [`SendReport`], not errors.
    ///
    /// A stream is read once, so it takes one transaction: more recipients than the server's
    /// `LIMITS RCPTMAX` is [`Misuse::TooManyRecipients`]; use [`Session::send_rewindable`] or
    /// [`Session::send_bytes`] for more. The body is not inspected before `MAIL FROM`:
    /// `BODY=8BITMIME` is declared whenever offered, `SMTPUTF8` must be asked for in
    /// `options`, and undeclared content stops the message before the end of data
    /// ([`Misuse::UndeclaredContent`], the session is closed).
    ///
    /// If reading `body` fails, the connection is closed without ending the data (the server
    /// discards the partial message) and [`Error::LocalIo`] is returned.
    ///
    /// Cancel safety: not cancel-safe; the message may or may not have been delivered.
    pub async fn send<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        let span = self.send_span(&envelope);
        self.guarded("send", span, async |s| {
            s.send_streaming(envelope, options, body, None).await
        })
        .await
    }

    /// Sends one message from a source that can be read twice (a file): it is scanned once to
    /// declare exactly what its content needs (`BODY=8BITMIME`, `SMTPUTF8`), rewound, and
    /// streamed as by [`Session::send`]. When the server lacks a needed extension nothing is
    /// sent ([`Misuse::ContentNeedsExtension`]). Like [`Session::send_bytes`], a recipient limit
    /// is met with further transactions, the source being rewound for each.
    ///
    /// A failed read during the scan is [`Error::LocalIo`] with nothing sent.
    ///
    /// Cancel safety: not cancel-safe; the message may or may not have been delivered.
    pub async fn send_rewindable<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let span = self.send_span(&envelope);
        self.guarded("send", span, async |s| {
            let scan = scan_and_rewind(&mut body).await.map_err(Error::LocalIo)?;
            let start = body.stream_position().await.map_err(Error::LocalIo)?;
            let replay = Replay::Source {
                source: &mut body,
                start,
                scan,
            };
            s.send_split(envelope, options, replay).await
        })
        .await
    }

    /// Sends a message held in memory. With PIPELINING and CHUNKING and a body of at most
    /// [`Limits::chunk_size`](crate::Limits::chunk_size) bytes, the whole message leaves in one
    /// flight. `SIZE=` and `BODY=8BITMIME` are filled in when `options` leaves them unset.
    ///
    /// More recipients than one transaction may take go in further transactions of this
    /// session ([`RecipientBatches`]); each recipient appears once in the [`SendReport`].
    ///
    /// Cancel safety: not cancel-safe; the message may or may not have been delivered.
    pub async fn send_bytes(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: &[u8],
    ) -> Result<SendReport, Error> {
        let span = self.send_span(&envelope);
        span.record("bytes", body.len());
        let replay = Replay::<io::Cursor<&[u8]>>::Bytes(body);
        self.guarded("send_bytes", span, async |s| {
            s.send_split(envelope, options, replay).await
        })
        .await
    }

    /// Sends `NOOP` and returns the server's reply; a refusal is [`Error::Refused`].
    ///
    /// Cancel safety: not cancel-safe.
    pub async fn noop(&mut self) -> Result<Reply, Error> {
        self.simple(Stage::Noop).await
    }

    /// Sends `RSET` and returns the server's reply; a refusal is [`Error::Refused`]. Never
    /// needed between messages: the client resets by itself after a failed transaction.
    ///
    /// Cancel safety: not cancel-safe.
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

    fn send_span(&self, envelope: &Envelope) -> tracing::Span {
        tracing::debug_span!(
            parent: &self.span,
            "send",
            recipients = envelope.recipients().len(),
            bytes = tracing::field::Empty,
            transaction = tracing::field::Empty,
        )
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

    /// Sends one message in as many transactions as the server's recipient limits need.
    async fn send_split<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: Replay<'_, R>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        if envelope.recipients().is_empty() {
            return self.one_transaction(envelope, options, &mut body).await;
        }
        let mut batches = RecipientBatches::new(&envelope, self.capabilities.rcpt_max());
        while let Some(part) = batches.next_envelope() {
            match self.one_transaction(part, options.clone(), &mut body).await {
                Ok(report) => batches.record(report),
                Err(error) if batches.is_first() => return Err(error),
                Err(error) => {
                    // Earlier transactions went through: their outcomes must not be lost.
                    tracing::debug!(%error, "no further transaction");
                    batches.stop(error.to_string());
                }
            }
        }
        Ok(batches.finish())
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
                self.take_arrived().await?;
                let sent = envelope.clone();
                let id =
                    self.client_mut()
                        .send_mail_bytes(Instant::now(), envelope, options, bytes)?;
                tracing::Span::current().record("transaction", tracing::field::display(id));
                let mut collector = ReportCollector::new(id, &sent);
                self.wait(|event| collector.take(event)).await
            }
            Replay::Source {
                source,
                start,
                scan,
            } => {
                let rewound = source.seek(io::SeekFrom::Start(*start)).await;
                rewound.map_err(Error::LocalIo)?;
                self.send_streaming(envelope, options, &mut **source, Some(*scan))
                    .await
            }
        }
    }

    /// The body pump: feeds the client what the source gives, as fast as the server takes it,
    /// reading the next piece while the last one is written.
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
        self.take_arrived().await?;
        let now = Instant::now();
        let sent = envelope.clone();
        let id = match scan {
            Some(scan) => self
                .client_mut()
                .send_mail_scanned(now, envelope, options, scan)?,
            None => self.client_mut().send_mail(now, envelope, options)?,
        };
        tracing::Span::current().record("transaction", tracing::field::display(id));
        let mut collector = ReportCollector::new(id, &sent);
        let mut buf = vec![0_u8; BODY_READ_CHUNK].into_boxed_slice();
        // `buf[start..end]` was read from the source and not yet taken by the client.
        let (mut start, mut end) = (0, 0);
        let mut eof = false;
        loop {
            let now = Instant::now();
            let mut failed = false;
            while start < end {
                match self.client_mut().write_body(now, &buf[start..end]) {
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
                    match self.client_mut().finish_body(now) {
                        Ok(()) => break,
                        Err(Misuse::TransactionFailed) => failed = true,
                        Err(misuse) => return Err(self.abandon(Error::Misuse(misuse)).await),
                    }
                }
            }
            let want_read = !failed && !eof && start == end;
            let (source, read_buf) = (&mut body, &mut buf);
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
                        Event::BodyWritable { transaction } if transaction == id => Some(None),
                        event => collector.take(event).map(Some),
                    },
                    read,
                )
                .await?;
            match woke {
                Until::Other(Ok(0)) => eof = true,
                Until::Other(Ok(n)) => end = n,
                Until::Other(Err(error)) => return Err(self.abandon(Error::LocalIo(error)).await),
                Until::Done(None) => {}
                Until::Done(Some(report)) => return Ok(report),
            }
        }
        self.wait(|event| collector.take(event)).await
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
                Err(Error::from_session_failure(failure))
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

    /// Gives up on a message in the middle of its body: the only safe way out is to close the
    /// connection without ending the data, so the server discards what it got.
    async fn abandon(&mut self, error: Error) -> Error {
        tracing::debug!(%error, "abandoning the message: closing the connection");
        self.conn.close().await;
        error
    }
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
    tracing::debug!(
        eight_bit = scan.needs_8bitmime(),
        utf8_headers = scan.needs_smtputf8(),
        "message scanned"
    );
    Ok(scan)
}
