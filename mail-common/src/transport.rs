//! The tokio + rustls transport shared by the POP3 and SMTP adapters (feature `tokio`).
//!
//! - [`TrustRoots`] and [`tls_connector`]: the rustls client set-up (web PKI roots by default, or
//!   a caller's CA file or root store).
//! - [`connect`]: TCP with `TCP_NODELAY` (a pipelined flight must leave in one segment, not wait
//!   for a delayed ACK), then implicit TLS if asked, each step under a deadline. The TCP step
//!   races the host's addresses with Happy Eyeballs ([`crate::happy_eyeballs`]).
//! - [`Driver`]: runs any sans-IO [`Machine`] over a [`MailStream`], reading and writing at the
//!   same time, and performs the STARTTLS/STLS upgrade in place.
//!
//! The STARTTLS injection defence lives in the protocol cores: a core fails as soon as it holds a
//! byte that arrived after the positive reply. The driver adds the other half: it never reads
//! from the socket between that reply and the TLS handshake, so later plaintext can only reach
//! rustls, which rejects it.

use std::{
    fmt, io,
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf},
    net::TcpStream,
};
pub use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{Machine, Timeout};
// Shared with the blocking driver; named here, where the tokio code always had them.
use crate::setup::explain_failed_handshake;
pub use crate::setup::{
    SetupPhase, SetupTimeouts, TransportError, TrustRoots, is_implicit_tls_port, root_store,
    server_name,
};

/// Builds a TLS connector over [`crate::setup::client_config`].
pub fn tls_connector(roots: &TrustRoots) -> Result<TlsConnector, TransportError> {
    Ok(TlsConnector::from(crate::setup::client_config(roots)?))
}

/// TCP under TLS that remembers the first bytes the server sent, so a handshake that fails on
/// a plaintext greeting can say so. After the first 80 bytes it is a plain pass-through.
#[derive(Debug)]
pub struct SniffedTcp {
    tcp: TcpStream,
    first: Vec<u8>,
}

/// How many leading bytes [`SniffedTcp`] keeps: enough for a greeting's first line.
const SNIFF_LEN: usize = 80;

impl SniffedTcp {
    const fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            first: Vec::new(),
        }
    }

    /// The TCP stream.
    pub const fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }
}

impl AsyncRead for SniffedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.first.len() < SNIFF_LEN {
            let new = &buf.filled()[before..];
            let room = SNIFF_LEN - this.first.len();
            this.first.extend_from_slice(&new[..new.len().min(room)]);
        }
        polled
    }
}

impl AsyncWrite for SniffedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A connection that is either plain TCP or TLS over TCP.
#[derive(Debug)]
#[non_exhaustive]
pub enum MailStream {
    /// Plain TCP (before STARTTLS/STLS, or an explicit plaintext connection).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<SniffedTcp>>),
}

impl MailStream {
    /// True once TLS is established.
    pub const fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The negotiated TLS version and cipher suite, for diagnostics.
    pub fn tls_summary(&self) -> Option<String> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(tls) => {
                let (_, conn) = tls.get_ref();
                Some(format!(
                    "{:?} {:?}",
                    conn.protocol_version()?,
                    conn.negotiated_cipher_suite()?.suite()
                ))
            }
        }
    }

    /// Performs the TLS handshake on a plain stream (STARTTLS/STLS, or implicit TLS).
    pub async fn upgrade(
        self,
        connector: &TlsConnector,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        self.handshake(connector, server_name, timeout)
            .await
            .map_err(|(error, _)| error)
    }

    /// [`MailStream::upgrade`], also returning, on failure, the first bytes the server sent.
    async fn handshake(
        self,
        connector: &TlsConnector,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<Self, (TransportError, Vec<u8>)> {
        let tcp = match self {
            Self::Plain(tcp) => tcp,
            tls @ Self::Tls(_) => return Ok(tls),
        };
        let shown_name = server_name.to_str().into_owned();
        let connecting = connector
            .connect(server_name, SniffedTcp::new(tcp))
            .into_fallible();
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(tls)) => Ok(Self::Tls(Box::new(tls))),
            Ok(Err((source, sniffed))) => Err((
                TransportError::Tls {
                    server_name: shown_name,
                    source,
                },
                sniffed.first,
            )),
            Err(_) => Err((
                TransportError::Timeout {
                    phase: SetupPhase::TlsHandshake,
                    after: timeout,
                },
                Vec::new(),
            )),
        }
    }
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How the connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wrapping {
    /// TLS from the first byte (POP3S on 995, SMTP submissions on 465).
    ImplicitTls,
    /// Plain TCP; TLS may follow by STARTTLS/STLS through [`Driver::upgrade`].
    Plain,
}

/// Connects to `host:port` with `TCP_NODELAY`, then runs the TLS handshake for implicit TLS.
/// `tls_name` is the name the certificate is checked against (usually `host`).
pub async fn connect(
    host: &str,
    port: u16,
    wrapping: Wrapping,
    connector: &TlsConnector,
    tls_name: &str,
    timeouts: SetupTimeouts,
) -> Result<MailStream, TransportError> {
    connect_from(host, port, None, wrapping, connector, tls_name, timeouts).await
}

/// [`connect`], with the local end of the socket bound to `local` (any port) when given: for a
/// multi-homed client, or a test that must reach a server from a particular source address.
/// Only addresses of `local`'s family are tried.
pub async fn connect_from(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
    wrapping: Wrapping,
    connector: &TlsConnector,
    tls_name: &str,
    timeouts: SetupTimeouts,
) -> Result<MailStream, TransportError> {
    let name = server_name(tls_name)?;
    let dial = crate::happy_eyeballs::connect(host, port, local, timeouts.connection_attempt_delay);
    let tcp = match tokio::time::timeout(timeouts.connect, dial).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(TransportError::Connect {
                host: host.to_owned(),
                port,
                source,
            });
        }
        Err(_) => {
            return Err(TransportError::Timeout {
                phase: SetupPhase::Connect,
                after: timeouts.connect,
            });
        }
    };
    tcp.set_nodelay(true)
        .map_err(|source| TransportError::Connect {
            host: host.to_owned(),
            port,
            source,
        })?;
    let stream = MailStream::Plain(tcp);
    match wrapping {
        Wrapping::Plain => Ok(stream),
        Wrapping::ImplicitTls => stream
            .handshake(connector, name, timeouts.tls_handshake)
            .await
            .map_err(|(error, first)| explain_failed_handshake(error, &first, host, port)),
    }
}

/// Running a sans-IO machine over a stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError<E> {
    /// Reading or writing the socket failed.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// The protocol core reported a fatal error (which includes its own timeouts and EOF).
    #[error(transparent)]
    Protocol(E),
    /// The TLS upgrade failed.
    #[error(transparent)]
    Transport(TransportError),
    /// An earlier fatal error ended the session (see [`crate::connection::Connection`]).
    #[error("the session is closed")]
    Closed,
    /// An earlier call was cancelled part way (see [`CallTracker`]).
    #[error(transparent)]
    Cancelled(Cancelled),
}

/// Why a session's connection cannot be used any more: set-up failed, reading or writing
/// failed, or a deadline passed. Both adapters' errors carry it as `Error::Connection`, so a
/// caller handles the three the same way for POP3 and SMTP. `P` is the core's phase type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError<P> {
    /// Connection set-up failed: name resolution, TCP, the CA file, the TLS name, the TLS
    /// handshake, the wrong TLS mode for the port ([`TransportError::PlaintextGreeting`]), or
    /// no greeting in time ([`TransportError::NoGreeting`], which names the likely cause).
    #[error(transparent)]
    Transport(TransportError),
    /// Reading or writing the established connection failed.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// A deadline passed: a [`SetupTimeouts`] limit or one of the core's own.
    #[error("timed out: {0}")]
    Timeout(Timeout<P>),
}

impl<P> ConnectionError<P> {
    /// The deadline that passed, for a timeout.
    pub const fn timeout(&self) -> Option<&Timeout<P>> {
        match self {
            Self::Timeout(timeout) => Some(timeout),
            _ => None,
        }
    }

    /// What kind of failure this is.
    pub const fn kind(&self) -> crate::FailureKind {
        match self {
            Self::Transport(error) => error.kind(),
            Self::Io(_) => crate::FailureKind::Network,
            Self::Timeout(_) => crate::FailureKind::Timeout,
        }
    }

    /// True when trying again later may succeed: an I/O failure, a timeout, a refused or
    /// silent connection; false for certificate, CA file and name problems.
    pub const fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout(_) => true,
            Self::Transport(error) => matches!(
                error,
                TransportError::Connect { .. } | TransportError::NoGreeting { .. }
            ),
        }
    }
}

/// A set-up deadline becomes [`ConnectionError::Timeout`], like the core's own deadlines.
impl<P> From<TransportError> for ConnectionError<P> {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Timeout { phase, after } => {
                Self::Timeout(Timeout::Setup { phase, after })
            }
            error => Self::Transport(error),
        }
    }
}

impl<P> From<Timeout<P>> for ConnectionError<P> {
    fn from(timeout: Timeout<P>) -> Self {
        Self::Timeout(timeout)
    }
}

/// Runs a sans-IO [`Machine`] over a [`MailStream`].
///
/// The protocol adapters call [`Driver::run_until`] with a closure that polls the core's events;
/// the driver writes, reads and fires deadlines until the closure returns `Some`.
pub struct Driver<M> {
    reader: Option<ReadHalf<MailStream>>,
    writer: Option<WriteHalf<MailStream>>,
    machine: M,
    read_buf: Box<[u8]>,
    tls: bool,
    /// Everything the machine offered was written, but not flushed yet (TLS keeps records in
    /// its own buffer). The flush races input and deadlines like a write does: a peer that
    /// stops reading must not hang the driver outside the machine's deadlines.
    flush_pending: bool,
}

impl<M: fmt::Debug> fmt::Debug for Driver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

/// Bytes asked of the socket per read: large enough for a TLS record burst.
const READ_CHUNK: usize = 64 * 1024;

impl<M: Machine> Driver<M> {
    /// Wraps a connected stream and a fresh machine.
    pub fn new(stream: MailStream, machine: M) -> Self {
        let tls = stream.is_tls();
        let (reader, writer) = tokio::io::split(stream);
        Self {
            reader: Some(reader),
            writer: Some(writer),
            machine,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            tls,
            flush_pending: false,
        }
    }

    /// The machine, for polling events and issuing commands.
    pub fn machine(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The machine, read-only.
    pub fn machine_ref(&self) -> &M {
        &self.machine
    }

    fn halves(
        &mut self,
    ) -> (
        &mut ReadHalf<MailStream>,
        &mut WriteHalf<MailStream>,
        &mut M,
        &mut [u8],
        &mut bool,
    ) {
        (
            self.reader
                .as_mut()
                .expect("stream present outside upgrade"),
            self.writer
                .as_mut()
                .expect("stream present outside upgrade"),
            &mut self.machine,
            &mut self.read_buf,
            &mut self.flush_pending,
        )
    }

    /// Writes, reads and handles deadlines until `done` returns `Some`.
    ///
    /// `done` is called before every wait, after the machine has been fed, so an event that is
    /// already queued is returned without touching the socket.
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

    /// [`Driver::run_until`], also racing `other` (for example a read from the caller's message
    /// source while the body already queued is written): returns [`Until::Other`] as soon as
    /// `other` completes, between two steps of the machine, never in the middle of one.
    ///
    /// `other` is dropped when `done` returns first, so it should be cancel-safe (an
    /// `AsyncReadExt::read` is).
    pub async fn run_until_or<T, U>(
        &mut self,
        mut done: impl FnMut(&mut M) -> Option<T>,
        other: impl Future<Output = U>,
    ) -> Result<Until<T, U>, DriveError<M::Error>> {
        let mut other = std::pin::pin!(other);
        loop {
            if let Some(out) = done(&mut self.machine) {
                return Ok(Until::Done(out));
            }
            let (reader, writer, machine, read_buf, flush_pending) = self.halves();
            let deadline = machine.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Read while writing: a server may answer (or refuse) before it has read everything
            // we queued, and waiting for the write to finish first could deadlock both sides.
            // Flushing is raced the same way, so a stalled peer runs into the machine's deadline.
            let pending = machine.poll_transmit();
            let flush = *flush_pending;
            let outcome = tokio::select! {
                biased;
                written = async {
                    match pending {
                        Some(bytes) => writer.write(bytes).await,
                        None if flush => writer.flush().await.map(|()| 0),
                        None => std::future::pending().await,
                    }
                } => Step::Wrote(written),
                read = reader.read(read_buf) => Step::Read(read),
                out = &mut other => return Ok(Until::Other(out)),
                () = sleep => Step::Deadline,
            };
            let now = std::time::Instant::now();
            match outcome {
                Step::Wrote(Ok(n)) if pending.is_some() => {
                    machine.advance_transmit(n);
                    *flush_pending = machine.poll_transmit().is_none();
                }
                Step::Wrote(Ok(_)) => *flush_pending = false,
                Step::Wrote(Err(e)) | Step::Read(Err(e)) => return Err(DriveError::Io(e)),
                Step::Read(Ok(0)) => machine.handle_eof(now).map_err(DriveError::Protocol)?,
                Step::Read(Ok(n)) => machine
                    .handle_input(now, &read_buf[..n])
                    .map_err(DriveError::Protocol)?,
                Step::Deadline => machine.handle_timeout(now).map_err(DriveError::Protocol)?,
            }
        }
    }

    /// Replaces the plain stream by TLS (after the core's STARTTLS/STLS event). The caller then
    /// tells the core that TLS is established.
    pub async fn upgrade(
        &mut self,
        connector: &TlsConnector,
        tls_name: &str,
        timeout: Duration,
    ) -> Result<(), DriveError<M::Error>> {
        let name = server_name(tls_name).map_err(DriveError::Transport)?;
        let (Some(reader), Some(writer)) = (self.reader.take(), self.writer.take()) else {
            unreachable!("stream present outside upgrade");
        };
        let stream = reader.unsplit(writer);
        let upgraded = stream
            .upgrade(connector, name, timeout)
            .await
            .map_err(DriveError::Transport)?;
        let (reader, writer) = tokio::io::split(upgraded);
        self.reader = Some(reader);
        self.writer = Some(writer);
        self.tls = true;
        self.flush_pending = false;
        Ok(())
    }

    /// True once the stream is TLS.
    pub const fn is_tls(&self) -> bool {
        self.tls
    }

    /// Shuts the write side down (after QUIT), ignoring errors from a peer that already left.
    pub async fn shutdown(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.shutdown().await;
        }
    }

    /// Writes what the machine has queued (a final `QUIT`), then closes the connection without
    /// reading anything: for a session whose last reply changes nothing for the caller, this
    /// saves the round trip of waiting for it. Errors are ignored: the session is over either way.
    ///
    /// Never use it where the reply carries an outcome (a POP3 `QUIT` after `DELE` commits the
    /// deletions, and only its reply says whether they were committed).
    pub async fn send_pending_and_close(&mut self) {
        let (_, writer, machine, _, _) = self.halves();
        while let Some(bytes) = machine.poll_transmit() {
            match writer.write(bytes).await {
                Ok(n) if n > 0 => machine.advance_transmit(n),
                _ => break,
            }
        }
        // `shutdown` flushes first (TLS: the records, then close_notify).
        self.shutdown().await;
    }
}

/// What ended [`Driver::run_until_or`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until<T, U> {
    /// The `done` closure returned this.
    Done(T),
    /// The other future completed with this.
    Other(U),
}

enum Step {
    Wrote(io::Result<usize>),
    Read(io::Result<usize>),
    Deadline,
}

/// Notices adapter calls whose future was dropped part way.
///
/// A protocol adapter call (send a message, log in) spans several steps of the sans-IO core. If
/// its future is dropped between two of them (a `tokio::time::timeout` around the call, a
/// `select!` branch that lost), the core is left half-way through an exchange. The adapter
/// calls [`CallTracker::begin`] when a call starts and [`CallTracker::end`] when it returns: a
/// call that began and never ended was cancelled, and every later call gets [`Cancelled`],
/// which says plainly that the session must be replaced, instead of an error about the core's
/// state ("busy") that reads as "wait and retry".
#[derive(Debug, Default, Clone)]
pub struct CallTracker {
    running: Option<&'static str>,
    cancelled: Option<&'static str>,
}

impl CallTracker {
    /// A tracker with no call under way.
    pub const fn new() -> Self {
        Self {
            running: None,
            cancelled: None,
        }
    }

    /// Records the start of `operation`. Fails when an earlier call was cancelled part way.
    pub const fn begin(&mut self, operation: &'static str) -> Result<(), Cancelled> {
        if let Some(earlier) = self.running.take() {
            self.cancelled = Some(earlier);
        }
        if let Some(operation) = self.cancelled {
            return Err(Cancelled { operation });
        }
        self.running = Some(operation);
        Ok(())
    }

    /// Fails when an earlier call was cancelled part way, without starting a call: for the
    /// calls of an adapter that are cancel-safe themselves but cannot run after a cancelled one.
    pub const fn check(&mut self) -> Result<(), Cancelled> {
        if let Some(earlier) = self.running.take() {
            self.cancelled = Some(earlier);
        }
        match self.cancelled {
            Some(operation) => Err(Cancelled { operation }),
            None => Ok(()),
        }
    }

    /// Records that the call under way returned (successfully or not).
    pub const fn end(&mut self) {
        self.running = None;
    }

    /// The call found cancelled, once [`CallTracker::begin`] has noticed it.
    pub const fn cancelled(&self) -> Option<Cancelled> {
        match self.cancelled {
            Some(operation) => Some(Cancelled { operation }),
            None => None,
        }
    }
}

/// An earlier call on the session was cancelled part way (its future was dropped), so the
/// session is in an unknown state and cannot be used any more: connect again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session is unusable: an earlier {operation} call was cancelled part way (its future \
     was dropped, e.g. by a timeout around it), so whether the server acted on it is unknown; \
     connect again"
)]
#[non_exhaustive]
pub struct Cancelled {
    /// The call that was cancelled.
    pub operation: &'static str,
}
