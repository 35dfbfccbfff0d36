//! The blocking driver (feature `blocking`): runs a sans-IO core over `std::net::TcpStream` and
//! rustls, with no async runtime. Both protocol crates re-export it for their `Client`
//! (`pop3_proto::blocking::Connection`, `smtp_submit::blocking::Connection`).
//!
//! [`Connection::open`] takes the same [`ConnectOptions`] as the tokio adapters and runs the
//! whole set-up: TCP (with `TCP_NODELAY`, under the connect deadline), implicit TLS or the
//! STARTTLS/STLS upgrade the core asks for, until the core is ready. After that the caller gives
//! the core commands through [`Connection::machine`] and takes its events with
//! [`Connection::next_event`]; each call blocks until there is one.
//!
//! The STARTTLS injection defence is the same as the tokio driver's: the core fails on any byte
//! that arrived with or after the upgrade reply, and the driver never reads the plain socket
//! between that reply and the handshake, so later plaintext can only reach rustls.
//!
//! Unlike the tokio driver, this one does not read while it writes. Writes are bounded by the
//! core's next deadline, so a server that stops reading ends in the core's timeout error, not
//! a hang. The host's addresses are tried in turn in the order RFC 8305 asks (the families
//! alternating), each but the last for its share of the connect deadline (at least the
//! connection attempt delay), instead of being raced; the name lookup counts against the same
//! deadline.

use std::{
    fmt,
    io::{self, Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

pub use crate::machine::{Protocol, SetUp};
pub use crate::setup::{
    ConnectOptions, SetupPhase, SetupTimeouts, StandardPorts, TransportError, TrustRoots,
};
use crate::setup::{client_config, explain_failed_handshake, interleave, server_name};
use crate::{Machine, Security};

/// What the blocking driver reports. `E` is the core's fatal error, `V` its event type, `U` its
/// misuse type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E, V, U> {
    /// Connecting or the TLS handshake failed, or no greeting came (with the likely cause).
    #[error(transparent)]
    Transport(TransportError),
    /// Reading or writing the socket failed.
    #[error("connection I/O failed: {0}")]
    Io(#[source] io::Error),
    /// The core reported a fatal error (which includes its own timeouts and end of stream).
    #[error(transparent)]
    Protocol(E),
    /// The server refused the session during set-up; the event says how.
    #[error("the server refused the session: {0:?}")]
    Refused(V),
    /// The core refused to be told that TLS was established (a bug of the core).
    #[error("the core refused the TLS hand-over: {0:?}")]
    Misuse(U),
    /// An earlier error or [`Connection::close`] ended the session.
    #[error("the session is closed")]
    Closed,
}

/// [`Error`] for the core `M`.
pub type ErrorOf<M> = Error<<M as Machine>::Error, <M as Machine>::Event, <M as Machine>::Misuse>;

/// Bytes asked of the socket per read: large enough for a TLS record burst.
const READ_CHUNK: usize = 64 * 1024;

/// How long closing may spend writing what is left (a QUIT, TLS close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A session's connection: a protocol core over TCP or TLS. Once an error was reported (or the
/// connection closed on purpose), every call answers [`Error::Closed`].
pub struct Connection<M> {
    machine: M,
    stream: Stream,
    tls: Arc<ClientConfig>,
    tls_name: ServerName<'static>,
    handshake_timeout: Duration,
    read_buf: Box<[u8]>,
    broken: bool,
}

/// Shows the state; the cores' `Debug` never shows buffer contents.
impl<M: fmt::Debug> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.machine)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: Protocol> Connection<M> {
    /// Connects to the server of `options`, builds the core from `config` and runs the set-up
    /// (greeting, capabilities, STARTTLS/STLS and the handshake when `config` asks for it)
    /// until the core is ready for a login.
    ///
    /// # Errors
    ///
    /// [`Error::Transport`] when connecting or a handshake fails, or no greeting comes in time
    /// ([`TransportError::NoGreeting`] names the likely cause: a port that expects implicit
    /// TLS); [`Error::Refused`] when the server refuses the session; [`Error::Protocol`] for a
    /// fatal error of the core (a missing or refused STARTTLS, bytes injected after its reply).
    pub fn open(options: &ConnectOptions, config: M::Config) -> Result<Self, ErrorOf<M>> {
        let security = crate::SetupConfig::security(&config);
        let port = options
            .port
            .unwrap_or_else(|| M::PORTS.for_security(security));
        let tls = client_config(&options.trust_roots).map_err(Error::Transport)?;
        let tls_name = server_name(options.tls_name()).map_err(Error::Transport)?;
        let host = options.host.as_str();
        let timeouts = options.timeouts;
        let tcp = connect(host, port, options.local_addr, &timeouts).map_err(Error::Transport)?;
        let implicit_tls = security == Security::ImplicitTls;
        let stream = if implicit_tls {
            handshake(tcp, &tls, tls_name.clone(), timeouts.tls_handshake).map_err(
                |(error, first)| {
                    Error::Transport(explain_failed_handshake(error, &first, host, port))
                },
            )?
        } else {
            Stream::Plain(tcp)
        };
        let greeting_wait = crate::SetupConfig::greeting_timeout(&config);
        let mut conn = Self {
            machine: M::start(config, Instant::now()),
            stream,
            tls,
            tls_name,
            handshake_timeout: timeouts.tls_handshake,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            broken: false,
        };
        loop {
            let event = match conn.next_event() {
                Ok(event) => event,
                Err(Error::Protocol(error)) if M::is_greeting_timeout(&error) => {
                    return Err(Error::Transport(TransportError::NoGreeting {
                        host: host.to_owned(),
                        port,
                        after: greeting_wait,
                        implicit_tls,
                    }));
                }
                Err(error) => return Err(error),
            };
            if M::wants_tls(&event) {
                conn.upgrade()?;
                if let Err(misuse) = conn.machine.tls_established(Instant::now()) {
                    conn.broken = true;
                    return Err(Error::Misuse(misuse));
                }
                continue;
            }
            match M::set_up(&event) {
                SetUp::Pending => {}
                SetUp::Ready => return Ok(conn),
                SetUp::Refused => {
                    // The core may have queued a QUIT; the server deserves it.
                    conn.close();
                    return Err(Error::Refused(event));
                }
            }
        }
    }
}

impl<M: Machine> Connection<M> {
    /// The core's next event, writing, reading and firing deadlines as needed.
    ///
    /// # Errors
    ///
    /// As [`Connection::run_until`].
    pub fn next_event(&mut self) -> Result<M::Event, ErrorOf<M>> {
        self.run_until(M::poll_event)
    }

    /// Writes, reads and handles deadlines until `done` returns `Some`. `done` is called before
    /// every wait, so an event already queued is returned without touching the socket.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when an earlier error ended the session; [`Error::Io`] or
    /// [`Error::Protocol`], which end it.
    pub fn run_until<T>(&mut self, done: impl FnMut(&mut M) -> Option<T>) -> Result<T, ErrorOf<M>> {
        if self.broken {
            return Err(Error::Closed);
        }
        let outcome = self.drive(done);
        if outcome.is_err() {
            self.broken = true;
        }
        outcome
    }

    fn drive<T>(&mut self, mut done: impl FnMut(&mut M) -> Option<T>) -> Result<T, ErrorOf<M>> {
        loop {
            if let Some(out) = done(&mut self.machine) {
                return Ok(out);
            }
            let now = Instant::now();
            let wait = match self.machine.poll_timeout() {
                Some(at) if at <= now => {
                    self.machine.handle_timeout(now).map_err(Error::Protocol)?;
                    continue;
                }
                Some(at) => Some(at - now),
                None => None,
            };
            // Socket timeouts end every wait at the core's deadline; the loop then fires it.
            if let Some(bytes) = self.machine.poll_transmit() {
                self.stream.tcp()?.set_write_timeout(wait)?;
                match self.stream.write(bytes) {
                    Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                    Ok(n) => self.machine.advance_transmit(n),
                    Err(e) if is_retry(&e) => {}
                    Err(e) => return Err(Error::Io(e)),
                }
                continue;
            }
            if self.stream.wants_flush() {
                self.stream.tcp()?.set_write_timeout(wait)?;
                match self.stream.flush() {
                    Ok(()) => {}
                    Err(e) if is_retry(&e) => continue,
                    Err(e) => return Err(Error::Io(e)),
                }
            }
            self.stream.tcp()?.set_read_timeout(wait)?;
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => self
                    .machine
                    .handle_eof(Instant::now())
                    .map_err(Error::Protocol)?,
                Ok(n) => self
                    .machine
                    .handle_input(Instant::now(), &self.read_buf[..n])
                    .map_err(Error::Protocol)?,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Replaces the plain stream by TLS, after the core's STARTTLS/STLS event.
    fn upgrade(&mut self) -> Result<(), ErrorOf<M>> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Closed) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.stream = other;
                return Ok(());
            }
        };
        match handshake(
            tcp,
            &self.tls,
            self.tls_name.clone(),
            self.handshake_timeout,
        ) {
            Ok(stream) => {
                self.stream = stream;
                Ok(())
            }
            Err((error, _)) => {
                self.broken = true;
                Err(Error::Transport(error))
            }
        }
    }

    /// Writes what the core has queued (a final `QUIT`) for at most a few seconds, then shuts
    /// the connection down (TLS: with close_notify) without reading. Errors are ignored: the
    /// session is over either way. Every later call answers [`Error::Closed`].
    ///
    /// To learn the server's answer to `QUIT` (a POP3 `QUIT` after `DELE` commits the
    /// deletions), wait for the core's closing event with [`Connection::next_event`] first.
    pub fn close(&mut self) {
        self.broken = true;
        let Ok(tcp) = self.stream.tcp() else { return };
        let _ = tcp.set_write_timeout(Some(CLOSE_GRACE));
        while let Some(bytes) = self.machine.poll_transmit() {
            match self.stream.write(bytes) {
                Ok(n) if n > 0 => self.machine.advance_transmit(n),
                _ => break,
            }
        }
        if let Stream::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
        }
        let _ = self.stream.flush();
        if let Ok(tcp) = self.stream.tcp() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
    }

    /// True once an error or [`Connection::close`] ended the session.
    pub const fn is_broken(&self) -> bool {
        self.broken
    }

    /// True once the connection is protected by TLS.
    pub const fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The core, for commands.
    pub const fn machine(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The core, read-only.
    pub const fn machine_ref(&self) -> &M {
        &self.machine
    }
}

/// A timed-out or interrupted socket call: the driver loop checks the deadline and retries.
fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl<E, V, U> From<io::Error> for Error<E, V, U> {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Plain TCP or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Only while the upgrade holds the TCP stream.
    Closed,
}

impl Stream {
    fn tcp(&self) -> io::Result<&TcpStream> {
        match self {
            Self::Plain(tcp) => Ok(tcp),
            Self::Tls(tls) => Ok(&tls.sock),
            Self::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// TLS keeps records in its own buffer until they are flushed.
    fn wants_flush(&self) -> bool {
        matches!(self, Self::Tls(tls) if tls.conn.wants_write())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf),
            Self::Tls(tls) => tls.read(buf),
            Self::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.write(buf),
            Self::Tls(tls) => tls.write(buf),
            Self::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush(),
            Self::Tls(tls) => tls.flush(),
            Self::Closed => Ok(()),
        }
    }
}

/// TCP that remembers the first bytes the server sent during a handshake, so one that fails on
/// a plaintext greeting can say so.
struct Sniffed<'a> {
    tcp: &'a TcpStream,
    first: Vec<u8>,
}

/// Enough for a greeting's first line.
const SNIFF_LEN: usize = 80;

impl Read for Sniffed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let room = SNIFF_LEN.saturating_sub(self.first.len());
        self.first.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
}

impl Write for Sniffed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Runs the TLS handshake on `tcp` within `limit`; on failure also returns the first bytes the
/// server sent.
fn handshake(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<Stream, (TransportError, Vec<u8>)> {
    let shown_name = name.to_str().into_owned();
    let failed = |source| TransportError::Tls {
        server_name: shown_name.clone(),
        source,
    };
    let timed_out = TransportError::Timeout {
        phase: SetupPhase::TlsHandshake,
        after: limit,
    };
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| (failed(io::Error::other(e)), Vec::new()))?;
    let deadline = Instant::now().checked_add(limit);
    let mut sniffed = Sniffed {
        tcp: &tcp,
        first: Vec::new(),
    };
    while conn.is_handshaking() {
        let left = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err((timed_out, sniffed.first)),
            },
            None => None,
        };
        let timeouts = tcp
            .set_read_timeout(left)
            .and_then(|()| tcp.set_write_timeout(left));
        if let Err(e) = timeouts {
            return Err((failed(e), sniffed.first));
        }
        match conn.complete_io(&mut sniffed) {
            Ok((0, 0)) if conn.is_handshaking() => {
                let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err((failed(eof), sniffed.first));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_retry(&e) => return Err((timed_out, sniffed.first)),
            Err(e) => return Err((failed(e), sniffed.first)),
        }
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

/// TCP to `host:port` with `TCP_NODELAY`, from `local` when given (then only addresses of its
/// family are tried), within the connect deadline, which covers the name lookup too.
fn connect(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
    timeouts: &SetupTimeouts,
) -> Result<TcpStream, TransportError> {
    connect_resolving(host, port, local, timeouts, |host, port| {
        (host, port).to_socket_addrs().map(Iterator::collect)
    })
}

/// The system resolver, for [`connect_resolving`].
type Resolve = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// [`connect`] with the name lookup given, so that a lookup that hangs can be tested.
fn connect_resolving(
    host: &str,
    port: u16,
    local: Option<IpAddr>,
    timeouts: &SetupTimeouts,
    resolve: Resolve,
) -> Result<TcpStream, TransportError> {
    let failed = |source| TransportError::Connect {
        host: host.to_owned(),
        port,
        source,
    };
    let timed_out = TransportError::Timeout {
        phase: SetupPhase::Connect,
        after: timeouts.connect,
    };
    let start = Instant::now();
    let resolved = match lookup(host, port, timeouts.connect, resolve) {
        Ok(Some(addrs)) => addrs,
        Ok(None) => return Err(timed_out),
        Err(error) => return Err(failed(error)),
    };
    let addrs = interleave(
        resolved
            .into_iter()
            .filter(|addr| local.is_none_or(|local| local.is_ipv4() == addr.is_ipv4())),
    );
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no address of the local address's family",
    );
    for (tried, addr) in addrs.iter().enumerate() {
        let left = timeouts.connect.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(timed_out);
        }
        // An address that drops packets costs its share of the deadline, not all of it.
        let untried = u32::try_from(addrs.len() - tried).unwrap_or(u32::MAX);
        let slot = if untried > 1 {
            (left / untried)
                .max(timeouts.connection_attempt_delay)
                .min(left)
        } else {
            left
        };
        match connect_one(*addr, local, slot) {
            Ok(tcp) => {
                tcp.set_nodelay(true).map_err(failed)?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    if last.kind() == io::ErrorKind::TimedOut && start.elapsed() >= timeouts.connect {
        return Err(timed_out);
    }
    Err(failed(last))
}

/// The addresses of `host`, or `None` when the lookup takes longer than `limit`. The system
/// resolver blocks with no deadline of its own, so it runs on a thread of its own, which is
/// left to finish (and is then discarded) when the wait gives up. An IP address needs no lookup.
fn lookup(
    host: &str,
    port: u16,
    limit: Duration,
    resolve: Resolve,
) -> io::Result<Option<Vec<SocketAddr>>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(vec![SocketAddr::new(ip, port)]));
    }
    let (answer, wait) = std::sync::mpsc::sync_channel(1);
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("mail-resolve".into())
        .spawn(move || {
            // The receiver is gone when the wait gave up; the answer is not needed then.
            let _ = answer.send(resolve(&name, port));
        })?;
    match wait.recv_timeout(limit) {
        Ok(addrs) => addrs.map(Some),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(io::Error::other("the name lookup failed"))
        }
    }
}

fn connect_one(addr: SocketAddr, local: Option<IpAddr>, limit: Duration) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect_timeout(&addr, limit);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&addr.into(), limit)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    use super::*;
    use crate::setup::{greeting_excerpt, looks_like_plaintext_greeting};

    fn listener() -> (TcpListener, u16) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[test]
    fn connects_from_the_given_local_address() {
        let (listener, port) = listener();
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let tcp = connect("127.0.0.1", port, Some(local), &SetupTimeouts::default()).unwrap();
        assert!(tcp.nodelay().unwrap());
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), local);
    }

    #[test]
    fn a_local_address_of_the_other_family_leaves_nothing_to_try() {
        let (_listener, port) = listener();
        let local = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let error = connect("127.0.0.1", port, local, &SetupTimeouts::default()).unwrap_err();
        let TransportError::Connect { source, .. } = &error else {
            panic!("expected Connect, got {error:?}");
        };
        assert_eq!(source.kind(), io::ErrorKind::AddrNotAvailable);
    }

    #[test]
    fn a_host_name_is_looked_up() {
        let (listener, port) = listener();
        // `localhost` may come first as ::1, where nothing listens: 127.0.0.1 is tried next.
        let tcp = connect("localhost", port, None, &SetupTimeouts::default()).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer, tcp.local_addr().unwrap());
    }

    #[test]
    fn a_name_lookup_that_hangs_runs_into_the_connect_deadline() {
        let hanging: Resolve = |_, _| {
            std::thread::sleep(Duration::from_secs(3));
            Ok(Vec::new())
        };
        let timeouts = SetupTimeouts {
            connect: Duration::from_millis(200),
            ..SetupTimeouts::default()
        };
        let error = connect_resolving("mail.example", 110, None, &timeouts, hanging).unwrap_err();
        assert!(
            matches!(
                error,
                TransportError::Timeout {
                    phase: SetupPhase::Connect,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_failed_handshake_keeps_the_servers_first_bytes() {
        let (listener, port) = listener();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.write_all(b"+OK POP3 ready\r\n").unwrap();
            // Keep the connection open until the client gives up.
            let _ = tcp.read(&mut [0; 4096]);
        });
        let tcp = connect("127.0.0.1", port, None, &SetupTimeouts::default()).unwrap();
        let config = client_config(&TrustRoots::WebPki).unwrap();
        let name = server_name("localhost").unwrap();
        let Err((error, first)) = handshake(tcp, &config, name, Duration::from_secs(10)) else {
            panic!("a plaintext greeting completed a handshake");
        };
        assert!(matches!(error, TransportError::Tls { .. }), "{error:?}");
        assert!(looks_like_plaintext_greeting(&first), "{first:?}");
        assert_eq!(greeting_excerpt(&first), "+OK POP3 ready");
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_runs_into_the_handshake_deadline() {
        let (listener, port) = listener();
        let tcp = connect("127.0.0.1", port, None, &SetupTimeouts::default()).unwrap();
        let config = client_config(&TrustRoots::WebPki).unwrap();
        let name = server_name("localhost").unwrap();
        let limit = Duration::from_millis(200);
        let started = Instant::now();
        let Err((error, first)) = handshake(tcp, &config, name, limit) else {
            panic!("a silent server completed a handshake");
        };
        assert!(
            matches!(
                error,
                TransportError::Timeout {
                    phase: SetupPhase::TlsHandshake,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(first.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
