//! What both tokio adapters' sessions are built on (feature `tokio`).
//!
//! - [`ConnectOptions`]: where to connect and how to check the server, the same for POP3 and
//!   SMTP. The security mode is not here: it is the protocol configuration's, so it is given
//!   once.
//! - [`Connection`]: a [`Driver`] plus what every session call needs around it: the set-up loop
//!   (greeting, STARTTLS/STLS, TLS handshake, ready), the flag that a fatal error ended the
//!   session, the check for a call cancelled part way, and taking bytes that arrived while the
//!   session was idle.

use std::{fmt, time::Duration, time::Instant};

pub use crate::setup::{ConnectOptions, StandardPorts};
use crate::transport::{
    self, CallTracker, DriveError, Driver, TlsConnector, TransportError, Until, Wrapping,
};
use crate::{Machine, Protocol, Security, SetupConfig};

/// A session's connection: the [`Driver`] of a protocol core and the state every adapter call
/// checks. Once a fatal error was seen (or the connection closed on purpose), every method
/// answers [`DriveError::Closed`]; after a call cancelled part way, [`DriveError::Cancelled`].
pub struct Connection<M> {
    driver: Driver<M>,
    connector: TlsConnector,
    tls_name: String,
    handshake_timeout: Duration,
    /// For naming the likely cause of a missing greeting.
    host: String,
    port: u16,
    implicit_tls: bool,
    greeting_wait: Duration,
    broken: bool,
    calls: CallTracker,
}

/// Shows the state; the core's `Debug` never shows buffer contents.
impl<M: Machine + fmt::Debug> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("client", self.driver.machine_ref())
            .field("tls_name", &self.tls_name)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Connection<M> {
    /// Connects (TCP, then TLS for [`Security::ImplicitTls`]: the mode `config` asks for) to
    /// `options.port` or the protocol's standard port, and starts the core from `config` once
    /// the connection stands (its deadlines start then). The greeting deadline of `config` is
    /// named in [`TransportError::NoGreeting`]. The blocking driver's `open` takes the same
    /// arguments.
    ///
    /// # Errors
    ///
    /// What [`transport::connect_from`] reports.
    pub async fn open(options: &ConnectOptions, config: M::Config) -> Result<Self, TransportError>
    where
        M: Protocol,
    {
        let security = config.security();
        let greeting_wait = config.greeting_timeout();
        let port = options
            .port
            .unwrap_or_else(|| M::PORTS.for_security(security));
        let connector = transport::tls_connector(&options.trust_roots)?;
        let implicit_tls = security == Security::ImplicitTls;
        let wrapping = if implicit_tls {
            Wrapping::ImplicitTls
        } else {
            Wrapping::Plain
        };
        let stream = transport::connect_from(
            &options.host,
            port,
            options.local_addr,
            wrapping,
            &connector,
            options.tls_name(),
            options.timeouts,
        )
        .await?;
        tracing::debug!(tls = stream.tls_summary(), "connected");
        Ok(Self {
            driver: Driver::new(stream, M::start(config, Instant::now())),
            connector,
            tls_name: options.tls_name().to_owned(),
            handshake_timeout: options.timeouts.tls_handshake,
            host: options.host.clone(),
            port,
            implicit_tls,
            greeting_wait,
            broken: false,
            calls: CallTracker::new(),
        })
    }

    /// Runs the session set-up: hands each event to `pick` until it returns `Some`, running the
    /// TLS handshake whenever the core asks for it. A greeting that does not come in time is
    /// [`TransportError::NoGreeting`], which names the likely cause.
    ///
    /// # Errors
    ///
    /// What `pick` returns, a failed handshake, or a fatal error of the core.
    pub async fn set_up<T, E>(
        &mut self,
        mut pick: impl FnMut(M::Event) -> Option<Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<DriveError<M::Error>> + From<M::Misuse>,
    {
        loop {
            let event = match self.next_event().await {
                Ok(event) => event,
                Err(DriveError::Protocol(error)) if M::is_greeting_timeout(&error) => {
                    return Err(DriveError::Transport(TransportError::NoGreeting {
                        host: self.host.clone(),
                        port: self.port,
                        after: self.greeting_wait,
                        implicit_tls: self.implicit_tls,
                    })
                    .into());
                }
                Err(error) => return Err(error.into()),
            };
            if M::wants_tls(&event) {
                tracing::debug!("upgrade accepted, TLS handshake");
                let upgraded = self
                    .driver
                    .upgrade(&self.connector, &self.tls_name, self.handshake_timeout)
                    .await;
                if let Err(error) = upgraded {
                    self.broken = true;
                    return Err(error.into());
                }
                self.driver.machine().tls_established(Instant::now())?;
            } else if let Some(out) = pick(event) {
                return out;
            }
        }
    }

    /// [`Driver::run_until_or`]; a fatal error marks the session closed.
    ///
    /// # Errors
    ///
    /// [`DriveError::Closed`] when an earlier error ended the session, else the driver's.
    pub async fn run_until_or<T, U>(
        &mut self,
        done: impl FnMut(&mut M) -> Option<T>,
        other: impl Future<Output = U>,
    ) -> Result<Until<T, U>, DriveError<M::Error>> {
        if self.broken {
            return Err(DriveError::Closed);
        }
        let outcome = self.driver.run_until_or(done, other).await;
        if outcome.is_err() {
            self.broken = true;
        }
        outcome
    }

    /// [`Connection::run_until_or`] without the other future.
    ///
    /// # Errors
    ///
    /// As [`Connection::run_until_or`].
    pub async fn run_until<T>(
        &mut self,
        done: impl FnMut(&mut M) -> Option<T>,
    ) -> Result<T, DriveError<M::Error>> {
        match self
            .run_until_or(done, std::future::pending::<std::convert::Infallible>())
            .await?
        {
            Until::Done(out) => Ok(out),
            Until::Other(never) => match never {},
        }
    }

    /// The core's next event, reading and writing as needed.
    ///
    /// # Errors
    ///
    /// As [`Connection::run_until_or`].
    pub async fn next_event(&mut self) -> Result<M::Event, DriveError<M::Error>> {
        self.run_until(M::poll_event).await
    }

    /// Feeds the core whatever arrived while the session was idle, without waiting. A reply
    /// nobody asked for (a duplicated or forged one) is then an error now, instead of being
    /// read as the answer to the next command. Events it produced stay queued in the core.
    ///
    /// # Errors
    ///
    /// As [`Connection::run_until_or`].
    pub async fn take_arrived(&mut self) -> Result<(), DriveError<M::Error>> {
        self.run_until_or(|_| None::<std::convert::Infallible>, std::future::ready(()))
            .await
            .map(drop)
    }

    /// Starts a call that must not be cancelled part way ([`CallTracker::begin`]); pair it with
    /// [`Connection::end`]. After a cancelled call the connection is closed.
    ///
    /// # Errors
    ///
    /// [`DriveError::Cancelled`] when an earlier call was cancelled.
    pub async fn begin(&mut self, operation: &'static str) -> Result<(), DriveError<M::Error>> {
        let checked = self.calls.begin(operation);
        self.refuse_cancelled(checked).await
    }

    /// Fails when an earlier call was cancelled part way, without starting one (for calls that
    /// are cancel-safe themselves). After a cancelled call the connection is closed.
    ///
    /// # Errors
    ///
    /// [`DriveError::Cancelled`] when an earlier call was cancelled.
    pub async fn check(&mut self) -> Result<(), DriveError<M::Error>> {
        let checked = self.calls.check();
        self.refuse_cancelled(checked).await
    }

    /// [`Connection::check`] without closing the connection, for a call that cannot wait.
    ///
    /// # Errors
    ///
    /// As [`Connection::check`].
    pub fn check_now(&mut self) -> Result<(), DriveError<M::Error>> {
        self.calls.check().map_err(DriveError::Cancelled)
    }

    async fn refuse_cancelled(
        &mut self,
        checked: Result<(), transport::Cancelled>,
    ) -> Result<(), DriveError<M::Error>> {
        if let Err(cancelled) = checked {
            if !self.broken {
                tracing::debug!(%cancelled, "closing the connection");
                self.close().await;
            }
            return Err(DriveError::Cancelled(cancelled));
        }
        Ok(())
    }

    /// Records that the call begun with [`Connection::begin`] returned.
    pub const fn end(&mut self) {
        self.calls.end();
    }

    /// Marks the session closed and shuts the connection down.
    pub async fn close(&mut self) {
        self.broken = true;
        self.driver.shutdown().await;
    }

    /// [`Driver::send_pending_and_close`], marking the session closed.
    pub async fn send_pending_and_close(&mut self) {
        self.broken = true;
        self.driver.send_pending_and_close().await;
    }

    /// True once an error or [`Connection::close`] ended the session.
    pub const fn is_broken(&self) -> bool {
        self.broken
    }

    /// The core, for commands.
    pub fn machine(&mut self) -> &mut M {
        self.driver.machine()
    }

    /// The core, read-only.
    pub fn machine_ref(&self) -> &M {
        self.driver.machine_ref()
    }

    /// True once the connection is protected by TLS.
    pub const fn is_tls(&self) -> bool {
        self.driver.is_tls()
    }
}
