//! The contract between a sans-IO protocol core and whatever drives it.
//!
//! Both `pop3_proto::Client` and `smtp_submit::Client` implement [`Machine`]. A driver (the tokio
//! adapter in `transport`, a blocking loop over `std::net::TcpStream`, or a test feeding a
//! transcript) repeats:
//!
//! 1. write what [`Machine::poll_transmit`] offers, then report how much went out with
//!    [`Machine::advance_transmit`];
//! 2. drain the protocol's events with [`Machine::poll_event`];
//! 3. wait for input, end of stream, or the instant from [`Machine::poll_timeout`], and report it
//!    with [`Machine::handle_input`], [`Machine::handle_eof`] or [`Machine::handle_timeout`].
//!
//! The core never reads the clock: every handler receives `now` from the driver, and deadlines
//! come back as data.

use std::time::Instant;

use crate::Security;

/// A sans-IO protocol state machine: bytes in, bytes out, deadlines as data.
pub trait Machine {
    /// A fatal error: the peer broke the protocol, a limit was exceeded, or a deadline passed.
    /// After an error the machine is poisoned and the connection should be closed.
    type Error;

    /// What the core reports to its driver: replies, set-up progress, the end of the session.
    type Event;

    /// The core's refusal of a request it was given in the wrong state (nothing was sent).
    type Misuse;

    /// The next event, if any. Drain it after every handler call.
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// True for the event that asks the driver to run the TLS handshake now (STARTTLS or STLS
    /// accepted); the driver then calls [`Machine::tls_established`].
    fn wants_tls(event: &Self::Event) -> bool;

    /// Reports that the TLS handshake the core asked for succeeded. Bytes that arrived before it
    /// were already refused by the core; capabilities are asked for again over TLS.
    fn tls_established(&mut self, now: Instant) -> Result<(), Self::Misuse>;

    /// True when `error` is the greeting's deadline passing: a driver then names the likely
    /// cause (a port that expects TLS from the first byte waits silently for the handshake).
    fn is_greeting_timeout(error: &Self::Error) -> bool;

    /// Feeds bytes received from the peer.
    fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Reports that the peer closed its sending side.
    fn handle_eof(&mut self, now: Instant) -> Result<(), Self::Error>;

    /// Reports that `now` has reached (or passed) the instant given by [`Machine::poll_timeout`].
    /// A spurious call before the deadline does nothing.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error>;

    /// Bytes waiting to be written, if any. The slice stays valid until the next call of a
    /// `&mut self` method.
    #[must_use]
    fn poll_transmit(&self) -> Option<&[u8]>;

    /// Reports that the first `written` bytes of [`Machine::poll_transmit`] were written.
    fn advance_transmit(&mut self, written: usize);

    /// The next instant at which [`Machine::handle_timeout`] must be called, if any.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}

/// What a driver reads from a core's configuration to set a connection up: the TLS mode (and
/// with it the default port) and how long the greeting may take (named in the error when none
/// comes).
pub trait SetupConfig {
    /// The security mode asked for.
    fn security(&self) -> Security;

    /// The greeting deadline.
    fn greeting_timeout(&self) -> std::time::Duration;
}

/// What both drivers (tokio and blocking) need of a protocol core besides [`Machine`]: how to
/// build it from its configuration, its standard ports, and which events end the set-up.
/// `pop3_proto::Client` and `smtp_submit::Client` implement it.
pub trait Protocol: Machine + Sized {
    /// The core's configuration.
    type Config: SetupConfig;

    /// The standard ports, used when a connection's port is not given.
    const PORTS: StandardPorts;

    /// Builds the core once the connection stands (its deadlines start at `now`).
    fn start(config: Self::Config, now: Instant) -> Self;

    /// Where `event` leaves the set-up.
    fn set_up(event: &Self::Event) -> SetUp;
}

/// Where an event leaves the session set-up, for [`Protocol::set_up`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetUp {
    /// Not done yet (a greeting, capabilities over plaintext).
    Pending,
    /// The session is ready for a login.
    Ready,
    /// The server refused the session (its greeting, EHLO) or closed it.
    Refused,
}

/// The standard ports of a protocol ([`Protocol::PORTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardPorts {
    /// With [`Security::ImplicitTls`].
    pub implicit_tls: u16,
    /// With [`Security::StartTls`] or [`Security::Plaintext`].
    pub plain: u16,
}

impl StandardPorts {
    /// The port for `security`.
    pub const fn for_security(self, security: Security) -> u16 {
        match security {
            Security::ImplicitTls => self.implicit_tls,
            _ => self.plain,
        }
    }
}

/// Outgoing bytes of a core, with cheap partial-write accounting.
///
/// Cores append whole commands (a pipelined flight is one contiguous slice, so a driver writes
/// it with one system call) and the driver removes what it wrote.
///
/// `Debug` shows only lengths: pending bytes may hold a password or a SASL response.
#[derive(Default)]
pub struct Transmit {
    buf: Vec<u8>,
    sent: usize,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("pending_len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Transmit {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            sent: 0,
        }
    }

    /// Appends bytes to send.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends several pieces as one.
    pub fn push_all(&mut self, pieces: &[&[u8]]) {
        for piece in pieces {
            self.buf.extend_from_slice(piece);
        }
    }

    /// Lets `fill` append directly to the buffer, saving a copy when the caller encodes in place
    /// (for example a dot-stuffing body encoder).
    pub fn extend_with<R>(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        fill(&mut self.buf)
    }

    /// Bytes not yet written, if any.
    pub fn pending(&self) -> Option<&[u8]> {
        let rest = &self.buf[self.sent..];
        (!rest.is_empty()).then_some(rest)
    }

    /// Number of bytes not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// True when everything has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `written` bytes as written (clamped to what is pending).
    pub fn advance(&mut self, written: usize) {
        self.sent = (self.sent + written).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Transmit;

    #[test]
    fn partial_writes() {
        let mut t = Transmit::new();
        assert_eq!(t.pending(), None);
        t.push_all(&[b"USER ", b"alice\r\n"]);
        t.advance(3);
        assert_eq!(t.pending(), Some(&b"R alice\r\n"[..]));
        t.push(b"PASS x\r\n");
        t.advance(100);
        assert!(t.is_empty());
        assert_eq!(t.pending(), None);
    }

    #[test]
    fn debug_hides_content() {
        let mut t = Transmit::new();
        t.push(b"PASS hunter2\r\n");
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("14"), "{shown}");
    }

    #[test]
    fn extend_with_appends_after_pending() {
        let mut t = Transmit::new();
        t.push(b"DATA\r\n");
        t.advance(2);
        let n = t.extend_with(|buf| {
            buf.extend_from_slice(b"body");
            4
        });
        assert_eq!(n, 4);
        assert_eq!(t.pending(), Some(&b"TA\r\nbody"[..]));
    }
}
