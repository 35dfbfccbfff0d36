//! The tokio + rustls adapter (feature `tokio`): a [`Session`] that connects, logs in and runs
//! commands, driving the sans-IO [`Client`] over [`mail_common::connection::Connection`]. The
//! retrieval calls write each message chunk by chunk into any `AsyncWrite` and pipeline many
//! `RETR`s when the server announces `PIPELINING`.
//!
//! Cancel safety: the commands are cancel-safe (the client tags every reply with its command,
//! and the next call discards what belongs to an abandoned one). A login is not: after a
//! cancelled login every call returns [`Error::Cancelled`]. Deadlines are built in
//! ([`crate::Timeouts`], [`SetupTimeouts`]).
//!
//! # Example
//!
//! ```no_run
//! use pop3_proto::{Config, Credentials};
//! use pop3_proto::tokio::{ConnectOptions, Error, Session};
//!
//! # async fn fetch() -> Result<(), Error> {
//! // Implicit TLS on port 995, web PKI roots, default timeouts.
//! let options = ConnectOptions::new("pop.example.com");
//! let mut session = Session::connect(&options, Config::default()).await?;
//! session.login(Credentials::password("alice", "secret")).await?;
//!
//! let stat = session.stat().await?;
//! println!("{} messages, {} octets", stat.count, stat.size);
//! // Any `AsyncWrite` (a file, a socket, a hasher) receives the message chunk by chunk.
//! session.retr_to(1, &mut tokio::io::sink()).await?;
//! session.dele(1).await?;
//! session.quit().await?; // commits the deletion
//! # Ok(())
//! # }
//! ```

mod error;
mod retrieve;

use std::{time::Duration, time::Instant};

pub use mail_common::connection::ConnectOptions;
use mail_common::connection::Connection;
use mail_common::sasl::Credentials;
pub use mail_common::transport::{
    Cancelled, SetupPhase, SetupTimeouts, TransportError, TrustRoots,
};
use tracing::Instrument as _;

pub use self::error::{ConnectionError, Error, Timeout};
pub use self::retrieve::{Fetched, MessageReader, Retrieval, RetrievalEvent};
use crate::{
    AuthMethod, Batch, BatchKind, Capabilities, Client, Command, CommandId, Config, Event, Login,
    Response, ScanEntry, UidEntry,
};

/// Answer to `STAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Number of messages.
    pub count: u32,
    /// Their total size in octets.
    pub size: u64,
}

/// A POP3 session: greeted, capabilities known, TLS in place as configured, ready for a login.
///
/// Dropping the session closes the connection without `QUIT`: messages marked with
/// [`Session::dele`] are then kept by the server (RFC 1939 section 6).
#[derive(Debug)]
pub struct Session {
    conn: Connection<Client>,
    reply_timeout: Duration,
    span: tracing::Span,
}

impl Session {
    /// Connects, reads the greeting, asks for the capabilities and, with
    /// [`Security::StartTls`](crate::Security), upgrades with `STLS` (then asks again over
    /// TLS). A server that does not offer or refuses `STLS` ends the attempt
    /// ([`Error::Protocol`]) before any credential could be sent.
    ///
    /// Cancel safety: cancel-safe. Dropping the future drops the half-open connection.
    pub async fn connect(options: &ConnectOptions, config: Config) -> Result<Self, Error> {
        let span = tracing::info_span!(
            "pop3.session",
            host = %options.host,
            port = ?options.port,
            security = ?config.security,
        );
        async {
            let reply_timeout = config.timeouts.reply;
            let conn = Connection::open(options, config).await?;
            let mut session = Self {
                conn,
                reply_timeout,
                span: tracing::Span::current(),
            };
            let capabilities = session
                .conn
                .set_up(|event| match event {
                    Event::GreetingRefused(response) => Some(Err(Error::GreetingRefused(response))),
                    Event::Ready(capabilities) => Some(Ok(capabilities)),
                    _ => None,
                })
                .await?;
            tracing::debug!(?capabilities, "ready");
            Ok(session)
        }
        .instrument(span)
        .await
    }

    // ---- getters ----

    /// The server's greeting (its text may name the software; never trust it for anything).
    pub fn greeting(&self) -> &Response {
        // Always there: a session exists only once the client is ready, after the greeting.
        static NONE: Response = Response {
            code: None,
            text: String::new(),
        };
        self.client().greeting().unwrap_or(&NONE)
    }

    /// The capabilities in force (after TLS, when TLS was set up by `STLS`).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.conn.machine_ref().capabilities()
    }

    /// Whether the connection is protected by TLS.
    pub const fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// Whether a login succeeded.
    pub fn is_logged_in(&self) -> bool {
        self.conn.machine_ref().is_logged_in()
    }

    /// The sans-IO client, for its getters.
    pub fn client(&self) -> &Client {
        self.conn.machine_ref()
    }

    // ---- authentication ----

    /// Logs in with the strongest method the server offers ([`Login::auto`]). Returns the
    /// method used.
    ///
    /// Credentials are never sent without TLS unless the configuration says
    /// [`Config::allow_cleartext_credentials_dangerously`]; otherwise this fails with
    /// [`Error::Misuse`] before anything is sent.
    ///
    /// Cancel safety: not cancel-safe (see [`Session::login_with`]).
    pub async fn login(&mut self, credentials: Credentials) -> Result<AuthMethod, Error> {
        self.login_with(Login::auto(credentials)).await
    }

    /// Logs in as `login` says (e.g. [`Login::using`] a particular method). A SCRAM nonce comes
    /// from [`Config::nonce_source`] when the login carries none.
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
        self.conn.begin("login").await?;
        let result = async {
            self.conn.take_arrived().await?;
            let now = Instant::now();
            let id = self
                .conn
                .machine()
                .login(now, login)
                .map_err(|r| r.reason)?;
            match self.reply(id).await? {
                Event::LoggedIn { method, .. } => Ok(method),
                Event::LoginFailed { failure, .. } => Err(Error::LoginFailed(failure)),
                other => unreachable!("login answered by {other:?}"),
            }
        }
        .instrument(span)
        .await;
        tracing::info!(outcome = ?result.as_ref().map_err(ToString::to_string), "login");
        self.conn.end();
        result
    }

    // ---- commands ----

    /// `CAPA`: asks for the capabilities again (they may change after login).
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own (so for every command below).
    pub async fn capa(&mut self) -> Result<Capabilities, Error> {
        match self.simple(Command::Capa).await? {
            Event::Capabilities { capabilities, .. } => Ok(capabilities),
            other => unreachable!("CAPA answered by {other:?}"),
        }
    }

    /// `UTF8` (RFC 6856): switches to UTF-8 mode; only before login.
    pub async fn utf8(&mut self) -> Result<Response, Error> {
        self.done(Command::Utf8).await
    }

    /// `STAT`: the number of messages and their total size.
    pub async fn stat(&mut self) -> Result<Stat, Error> {
        match self.simple(Command::Stat).await? {
            Event::Stat { count, size, .. } => Ok(Stat { count, size }),
            other => unreachable!("STAT answered by {other:?}"),
        }
    }

    /// `LIST`: number and size of every message not marked as deleted. The client keeps the
    /// sizes as the size hints of later `RETR`s.
    pub async fn list(&mut self) -> Result<Vec<ScanEntry>, Error> {
        match self.simple(Command::List(None)).await? {
            Event::Listing { entries, .. } => Ok(entries),
            other => unreachable!("LIST answered by {other:?}"),
        }
    }

    /// `LIST msg`.
    pub async fn list_one(&mut self, msg: u32) -> Result<ScanEntry, Error> {
        match self.simple(Command::List(Some(msg))).await? {
            Event::Listed { entry, .. } => Ok(entry),
            other => unreachable!("LIST n answered by {other:?}"),
        }
    }

    /// `UIDL`: the unique-id of every message not marked as deleted.
    pub async fn uidl(&mut self) -> Result<Vec<UidEntry>, Error> {
        match self.simple(Command::Uidl(None)).await? {
            Event::UidListing { entries, .. } => Ok(entries),
            other => unreachable!("UIDL answered by {other:?}"),
        }
    }

    /// `UIDL msg`.
    pub async fn uidl_one(&mut self, msg: u32) -> Result<UidEntry, Error> {
        match self.simple(Command::Uidl(Some(msg))).await? {
            Event::UidListed { entry, .. } => Ok(entry),
            other => unreachable!("UIDL n answered by {other:?}"),
        }
    }

    /// `LIST` and `UIDL` together: one round trip for both when the server announces
    /// `PIPELINING` (RFC 2449), else one after the other. The outer error is the `LIST`'s (or
    /// a fatal one); the inner one is the `UIDL`'s, so a server without `UIDL`
    /// ([`Error::Refused`]) still gives its listing.
    pub async fn list_and_uidl(
        &mut self,
    ) -> Result<(Vec<ScanEntry>, Result<Vec<UidEntry>, Error>), Error> {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", command = "LIST+UIDL");
        async {
            self.prepare().await?;
            // The client sends UIDL behind LIST only when pipelining is in use, otherwise once
            // LIST is answered (lockstep, RFC 1939).
            let list_id = self.send(Command::List(None))?;
            let uidl_id = self.send(Command::Uidl(None))?;
            let entries = match self.reply(list_id).await? {
                Event::Listing { entries, .. } => entries,
                other => unreachable!("LIST answered by {other:?}"),
            };
            let uids = match self.reply(uidl_id).await {
                Ok(Event::UidListing { entries, .. }) => Ok(entries),
                Ok(other) => unreachable!("UIDL answered by {other:?}"),
                Err(error @ Error::Refused { .. }) => Err(error),
                Err(error) => return Err(error),
            };
            Ok((entries, uids))
        }
        .instrument(span)
        .await
    }

    /// `DELE msg`: marks the message for deletion; [`Session::quit`] commits it.
    ///
    /// Cancel safety: cancel-safe, but whether the message was marked is then unknown:
    /// [`Session::rset`] before [`Session::quit`] undoes every mark (so for `dele_many`).
    pub async fn dele(&mut self, msg: u32) -> Result<Response, Error> {
        self.done(Command::Dele(msg)).await
    }

    /// `DELE` for each of `msgs`, pipelined when the server announces `PIPELINING`. Returns,
    /// in order, the messages the server refused to mark (already deleted, no such message).
    pub async fn dele_many<I>(&mut self, msgs: I) -> Result<Vec<(u32, Response)>, Error>
    where
        I: IntoIterator<Item = u32>,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.dele_many");
        async {
            self.conn.check().await?;
            let mut batch = Batch::new(BatchKind::Dele, msgs);
            let mut refused = Vec::new();
            while let Some((msg, event)) = self.batch_event(&mut batch).await? {
                if let Event::Refused { response, .. } = event {
                    refused.push((msg, response));
                }
            }
            Ok(refused)
        }
        .instrument(span)
        .await
    }

    /// `RSET`: unmarks every message marked for deletion.
    pub async fn rset(&mut self) -> Result<Response, Error> {
        self.done(Command::Rset).await
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<Response, Error> {
        self.done(Command::Noop).await
    }

    /// `QUIT`: ends the session. In the transaction state the server now deletes the messages
    /// marked with [`Session::dele`]; `-ERR` ([`Error::Refused`]) means it could not remove
    /// some of them.
    ///
    /// Cancel safety: dropping it drops the connection; whether the server committed the
    /// deletions (it does once it has read `QUIT`) is then unknown.
    pub async fn quit(mut self) -> Result<(), Error> {
        self.end(true).await
    }

    /// `QUIT` without waiting for its reply, when nothing was marked for deletion (RFC 1939:
    /// `QUIT` in the transaction state only removes messages marked with `DELE`), saving a
    /// round trip. Once any `DELE` was sent this is [`Session::quit`]: the reply is what
    /// commits the deletions.
    ///
    /// Cancel safety: dropping it drops the connection.
    pub async fn quit_without_waiting(mut self) -> Result<(), Error> {
        let wait = self.client().quit_commits_deletions();
        self.end(wait).await
    }

    // ---- helpers ----

    /// Refuses to run after a cancelled login, and feeds the client whatever arrived while
    /// the session was idle: a POP3 server never speaks unprompted, so such bytes are an
    /// error now instead of the answer to the next command.
    async fn prepare(&mut self) -> Result<(), Error> {
        self.conn.check().await?;
        Ok(self.conn.take_arrived().await?)
    }

    fn send(&mut self, command: Command) -> Result<CommandId, Error> {
        if self.conn.is_broken() {
            return Err(Error::Closed);
        }
        let now = Instant::now();
        Ok(self
            .conn
            .machine()
            .send(now, command)
            .map_err(|r| r.reason)?)
    }

    /// Refills `batch`, then waits for the next event it claims, with its message; `None` once
    /// the batch is done. Events of other commands (left over from an abandoned call) are
    /// skipped.
    async fn batch_event(&mut self, batch: &mut Batch) -> Result<Option<(u32, Event)>, Error> {
        if self.conn.is_broken() {
            return Err(Error::Closed);
        }
        batch.fill(self.conn.machine(), Instant::now())?;
        if batch.is_done() {
            return Ok(None);
        }
        loop {
            let event = self.conn.next_event().await?;
            if let Some(msg) = batch.claim(&event) {
                return Ok(Some((msg, event)));
            }
            tracing::trace!(?event, "skipped event of another command");
        }
    }

    /// The event answering `id`; `-ERR` becomes [`Error::Refused`]. Events of other commands
    /// (left over from an abandoned call) are skipped.
    async fn reply(&mut self, id: CommandId) -> Result<Event, Error> {
        loop {
            let event = self.conn.next_event().await?;
            if event.command_id() != Some(id) {
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
            self.prepare().await?;
            let id = self.send(command)?;
            self.reply(id).await
        }
        .instrument(span)
        .await
    }

    /// Runs a command answered by [`Event::Done`].
    async fn done(&mut self, command: Command) -> Result<Response, Error> {
        match self.simple(command).await? {
            Event::Done { response, .. } => Ok(response),
            other => unreachable!("{command} answered by {other:?}"),
        }
    }

    /// [`Session::quit`] (`wait`) or [`Session::quit_without_waiting`].
    async fn end(&mut self, wait: bool) -> Result<(), Error> {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", command = "QUIT");
        async {
            if self.conn.check().await.is_err() {
                return Ok(());
            }
            self.conn.take_arrived().await?;
            let id = self.send(Command::Quit)?;
            if !wait {
                self.conn.send_pending_and_close().await;
                tracing::debug!("QUIT sent, not waiting for its reply");
                return Ok(());
            }
            let answer = self.reply(id).await;
            let reply_timeout = self.reply_timeout;
            if matches!(answer, Ok(_) | Err(Error::Refused { .. })) {
                // The server closes after its answer; wait for that, briefly, so the deletion
                // is committed before we return.
                let closed = async {
                    while !matches!(self.conn.next_event().await?, Event::Closed) {}
                    Ok::<(), Error>(())
                };
                match ::tokio::time::timeout(reply_timeout, closed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "after QUIT"),
                    Err(_) => tracing::debug!("the server did not close after QUIT"),
                }
            }
            self.conn.close().await;
            answer.map(drop)
        }
        .instrument(span)
        .await
    }
}
