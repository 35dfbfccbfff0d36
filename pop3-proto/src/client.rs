//! The session state machine: bytes in, bytes and events out.
//!
//! One [`Client`] is one POP3 session. It owns the receive buffer, the transmit buffer, the
//! queue of commands not yet sent, the list of commands sent and not yet answered (matched to
//! replies strictly in order, RFC 2449 section 6.6), and the deadlines. Everything the
//! protocol requires before the caller may act (capabilities, `STLS`, capabilities again)
//! happens here, so a driver cannot skip it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use mail_common::{LineError, LineReader, Machine, Protocol, SetUp, StandardPorts, Transmit};

use crate::auth::{self, Exchange, Line, LoginPlan, Progress};
use crate::body::{BodyDecoder, Decoded};
use crate::capabilities::Capabilities;
use crate::command::{AuthMethod, Command, CommandId, Login};
use crate::config::{Config, Security};
use crate::error::{Malformed, Misuse, Phase, ProtocolError, Rejected};
use crate::event::{Event, ScanEntry, UidEntry};
use crate::parse::{self, Status};
use crate::response::Response;

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Waiting for the greeting.
    Greeting,
    /// The client's own `CAPA`/`STLS` are in progress.
    Negotiating,
    /// [`Event::StartTls`] was emitted; the driver is doing the handshake.
    AwaitingTls { since: Instant },
    /// [`Event::Ready`] was emitted; no login is pending.
    Authorization,
    /// A login is queued or in progress.
    Authenticating,
    /// Logged in.
    Transaction,
    /// `QUIT` is queued or sent.
    Quitting,
    /// `QUIT` was answered; the server closes the connection.
    QuitAnswered,
    /// The greeting was `-ERR`.
    GreetingRefused,
    /// [`Event::Closed`] was emitted.
    Closed,
}

/// What a sent command's reply will be read as.
#[derive(Debug, Clone, Copy)]
enum Awaiting {
    /// The automatic `CAPA` after the greeting or the TLS handshake.
    AutoCapa,
    Stls,
    Login(CommandId),
    Command(CommandId, Command),
}

#[derive(Debug)]
struct InFlight {
    awaiting: Awaiting,
    /// Response bytes budgeted for it (pipelining window).
    expected_bytes: u64,
}

impl InFlight {
    const fn is_barrier(&self) -> bool {
        match self.awaiting {
            Awaiting::Command(_, command) => command.is_barrier(),
            Awaiting::AutoCapa | Awaiting::Stls | Awaiting::Login(_) => true,
        }
    }
}

/// Accepted from the caller, not yet sent.
#[derive(Debug)]
enum Queued {
    Command(CommandId, Command),
    Login(CommandId, AuthMethod, LoginPlan),
}

/// Progress through the reply to the command at the head of the in-flight list.
#[derive(Debug)]
enum Reading {
    StatusLine,
    Capabilities {
        caps: Capabilities,
        lines: usize,
    },
    Listing(Vec<ScanEntry>),
    UidListing(Vec<UidEntry>),
    /// A `RETR`/`TOP` body of message `.1`.
    Body(BodyDecoder, u32),
}

/// A sans-IO POP3 client session.
///
/// Methods, grouped as in quinn-proto:
/// - handlers of what the outside world reports: the [`Machine`] methods
///   (`handle_input`, `handle_eof`, `handle_timeout`, `advance_transmit`) and
///   [`Client::tls_established`];
/// - mutators for what the application wants: [`Client::login`], [`Client::send`];
/// - polls for what the driver must do: [`Machine::poll_transmit`], [`Client::poll_event`],
///   [`Machine::poll_timeout`];
/// - getters: [`Client::capabilities`], [`Client::is_tls`], ...
///
/// After any handler or mutator, drain `poll_transmit`, `poll_event` and `poll_timeout` before
/// waiting for I/O again.
pub struct Client {
    config: Config,
    rx: LineReader,
    tx: Transmit,
    events: VecDeque<Event>,
    session: Session,
    queue: VecDeque<Queued>,
    in_flight: VecDeque<InFlight>,
    bytes_in_flight: u64,
    reading: Reading,
    login: Option<Exchange>,
    caps: Option<Capabilities>,
    greeting: Option<Response>,
    apop_timestamp: Option<String>,
    tls: bool,
    logged_in: bool,
    utf8: bool,
    /// A `DELE` was queued: the reply to `QUIT` is what commits it.
    dele_queued: bool,
    /// Message sizes from the last `LIST` (and `LIST n`s since): the size hint of a `RETR`
    /// sent without one, for budgeting the pipelining window.
    sizes: HashMap<u32, u64>,
    next_id: u64,
    greeting_deadline: Instant,
    /// When the client last sent a command into an idle connection or received bytes: reply and
    /// data deadlines count from here.
    last_progress: Instant,
    poisoned: Option<ProtocolError>,
}

/// Shows the session state, never buffer contents: the transmit buffer may hold a password.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session)
            .field("tls", &self.tls)
            .field("queued", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .field("login", &self.login)
            .field("received_bytes", &self.rx.len())
            .field("transmit_bytes", &self.tx.len())
            .field("events", &self.events.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a connection that was just opened (and, with [`Security::ImplicitTls`],
    /// whose TLS handshake is done). The first thing it expects is the greeting.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            rx: LineReader::new(config.limits.max_line),
            tx: Transmit::new(),
            events: VecDeque::new(),
            session: Session::Greeting,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            bytes_in_flight: 0,
            reading: Reading::StatusLine,
            login: None,
            caps: None,
            greeting: None,
            apop_timestamp: None,
            tls: config.security == Security::ImplicitTls,
            logged_in: false,
            utf8: false,
            dele_queued: false,
            sizes: HashMap::new(),
            next_id: 0,
            greeting_deadline: now + config.timeouts.greeting,
            last_progress: now,
            poisoned: None,
            config,
        }
    }

    // ---- getters ----

    /// The capabilities in force: `None` until the first `CAPA` is answered, and again
    /// between the TLS handshake and the `CAPA` that follows it.
    pub const fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// The server's greeting, positive or refused, once it has arrived (as in
    /// [`Event::Greeting`]): a driver that runs the set-up itself, such as the blocking one,
    /// keeps it here for the caller. Its text may name the software; never trust it for
    /// anything.
    pub const fn greeting(&self) -> Option<&Response> {
        self.greeting.as_ref()
    }

    /// Whether the connection is protected by TLS (implicit, or after `STLS`).
    pub const fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether a `DELE` was queued in this session, so the reply to `QUIT` is what commits
    /// the deletions (RFC 1939 section 6) and a driver must wait for it. Without one, `QUIT`
    /// in the transaction state removes nothing and its reply may be skipped.
    pub const fn quit_commits_deletions(&self) -> bool {
        self.dele_queued
    }

    /// Whether a login succeeded.
    pub const fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether the server accepted `UTF8`.
    pub const fn is_utf8(&self) -> bool {
        self.utf8
    }

    /// The fatal error that ended the session, if any.
    pub const fn error(&self) -> Option<&ProtocolError> {
        self.poisoned.as_ref()
    }

    /// Whether pipelining is in use: allowed by the configuration, announced by the server,
    /// and the session is logged in.
    pub fn is_pipelining(&self) -> bool {
        self.config.pipelining && self.logged_in && self.caps.as_ref().is_some_and(|c| c.pipelining)
    }

    /// The configuration, for the caller-side helpers ([`crate::Batch`]).
    pub(crate) const fn config(&self) -> &Config {
        &self.config
    }

    // ---- polls ----

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- mutators ----

    /// Queues a login. Allowed once [`Event::Ready`] has been seen and while not logged in.
    ///
    /// Refused (nothing queued, the login handed back) when the connection is not protected by
    /// TLS and cleartext credentials were not allowed, when an argument contains CR, LF or
    /// NUL, and when the method cannot work (see [`Misuse`]). The result arrives as
    /// [`Event::LoggedIn`] or [`Event::LoginFailed`].
    pub fn login(&mut self, now: Instant, login: Login) -> Result<CommandId, Rejected<Login>> {
        match self.prepare_login(&login) {
            Ok((method, plan)) => {
                let id = self.next_id();
                self.queue.push_back(Queued::Login(id, method, plan));
                self.session = Session::Authenticating;
                self.pump(now);
                Ok(id)
            }
            Err(reason) => Err(Rejected {
                reason,
                value: login,
            }),
        }
    }

    fn prepare_login(&self, login: &Login) -> Result<(AuthMethod, LoginPlan), Misuse> {
        self.check_usable()?;
        match self.session {
            Session::Authorization => {}
            Session::Authenticating => return Err(Misuse::Busy),
            Session::Transaction => return Err(Misuse::AlreadyAuthenticated),
            other => return Err(Self::unavailable(other)),
        }
        let cleartext_ok = match self.config.security {
            Security::Plaintext => self.config.cleartext_credentials_allowed(),
            _ => self.tls,
        };
        if !cleartext_ok {
            return Err(Misuse::CleartextCredentials);
        }
        self.check_queue_room()?;
        let caps = self.caps.clone().unwrap_or_default();
        auth::prepare(
            login,
            &caps,
            self.apop_timestamp.as_deref(),
            self.tls,
            self.config.nonce_source,
        )
    }

    /// Queues a command. It is sent at once, or when the pipelining window (or, without
    /// pipelining, the previous reply) allows. Its answer arrives as events carrying the
    /// returned id.
    ///
    /// A `RETR` without a size hint gets the size the last `LIST` gave for the message.
    pub fn send(
        &mut self,
        now: Instant,
        mut command: Command,
    ) -> Result<CommandId, Rejected<Command>> {
        if let Command::Retr {
            msg,
            size_hint: hint @ None,
        } = &mut command
        {
            *hint = self.sizes.get(msg).copied();
        }
        if let Err(reason) = self.check_command(command) {
            return Err(Rejected {
                reason,
                value: command,
            });
        }
        let id = self.next_id();
        self.queue.push_back(Queued::Command(id, command));
        self.dele_queued |= matches!(command, Command::Dele(_));
        if command == Command::Quit {
            self.session = Session::Quitting;
        }
        self.pump(now);
        Ok(id)
    }

    fn check_command(&self, command: Command) -> Result<(), Misuse> {
        self.check_usable()?;
        if command.msg() == Some(0) {
            return Err(Misuse::MessageNumberZero);
        }
        let allowed = match (self.session, command) {
            (Session::Authorization, Command::Capa | Command::Quit | Command::Utf8)
            | (Session::Authenticating, Command::Capa | Command::Quit) => Ok(()),
            (Session::Authorization, _) => Err(Misuse::NotLoggedIn),
            (Session::Authenticating, _) => Err(Misuse::Busy),
            (Session::Transaction, Command::Utf8) => Err(Misuse::AlreadyAuthenticated),
            (Session::Transaction, _) => Ok(()),
            (other, _) => Err(Self::unavailable(other)),
        };
        allowed.and_then(|()| self.check_queue_room())
    }

    /// Reports that the TLS handshake requested by [`Event::StartTls`] succeeded. The
    /// capabilities are forgotten and asked for again (RFC 2595 section 4).
    pub fn tls_established(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_usable()?;
        if !matches!(self.session, Session::AwaitingTls { .. }) {
            return Err(Misuse::NotAwaitingTls);
        }
        self.tls = true;
        self.caps = None;
        self.session = Session::Negotiating;
        self.send_internal(now, "CAPA", Awaiting::AutoCapa);
        Ok(())
    }

    fn check_usable(&self) -> Result<(), Misuse> {
        match &self.poisoned {
            Some(error) => Err(Misuse::Fatal(Box::new(error.clone()))),
            None => Ok(()),
        }
    }

    fn check_queue_room(&self) -> Result<(), Misuse> {
        let limit = self.config.limits.max_queued_commands;
        if self.queue.len() >= limit {
            Err(Misuse::QueueFull { limit })
        } else {
            Ok(())
        }
    }

    /// Why nothing can be queued in a state that is not set up yet or already over.
    const fn unavailable(session: Session) -> Misuse {
        match session {
            Session::Greeting | Session::Negotiating | Session::AwaitingTls { .. } => {
                Misuse::NotReady
            }
            _ => Misuse::Closed,
        }
    }

    const fn next_id(&mut self) -> CommandId {
        self.next_id += 1;
        CommandId(self.next_id)
    }

    // ---- sending ----

    fn transmit(&mut self, line: &Line) {
        tracing::debug!(target: "pop3_proto", "C: {}", line.shown);
        self.tx.push_all(&[line.bytes.expose(), b"\r\n"]);
    }

    fn send_internal(&mut self, now: Instant, command: &str, awaiting: Awaiting) {
        if self.in_flight.is_empty() {
            self.last_progress = now;
        }
        tracing::debug!(target: "pop3_proto", "C: {command}");
        self.tx.push_all(&[command.as_bytes(), b"\r\n"]);
        self.in_flight.push_back(InFlight {
            awaiting,
            expected_bytes: 0,
        });
    }

    /// Sends queued commands as far as the pipelining rules allow.
    fn pump(&mut self, now: Instant) {
        while let Some(next) = self.queue.front() {
            let (barrier, expected_bytes) = match next {
                Queued::Command(_, command) => (command.is_barrier(), command.expected_bytes()),
                Queued::Login(..) => (true, 0),
            };
            if !self.may_send(barrier, expected_bytes) {
                break;
            }
            if self.in_flight.is_empty() {
                self.last_progress = now;
            }
            let awaiting = match self.queue.pop_front() {
                Some(Queued::Command(id, command)) => {
                    self.transmit(&Line::public(command.to_string()));
                    Awaiting::Command(id, command)
                }
                Some(Queued::Login(id, method, plan)) => {
                    let (exchange, line) =
                        Exchange::start(method, plan, self.config.limits.max_auth_challenges);
                    self.transmit(&line);
                    self.login = Some(exchange);
                    Awaiting::Login(id)
                }
                None => break,
            };
            self.bytes_in_flight = self.bytes_in_flight.saturating_add(expected_bytes);
            self.in_flight.push_back(InFlight {
                awaiting,
                expected_bytes,
            });
        }
    }

    fn may_send(&self, barrier: bool, expected_bytes: u64) -> bool {
        let limits = &self.config.limits;
        match self.in_flight.back() {
            None => true,
            Some(last) => {
                !barrier
                    && !last.is_barrier()
                    && self.is_pipelining()
                    && self.in_flight.len() < limits.max_in_flight
                    && self.bytes_in_flight.saturating_add(expected_bytes)
                        <= limits.max_bytes_in_flight
            }
        }
    }

    // ---- receiving ----

    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        tracing::debug!(target: "pop3_proto", "fatal: {error}");
        self.poisoned = Some(error.clone());
        // Nothing more goes out, and no secret waits in a buffer of a dead session.
        self.tx = Transmit::new();
        self.queue.clear();
        self.login = None;
        // A handshake request not yet taken must not start a TLS session on a dead connection.
        self.events
            .retain(|event| !matches!(event, Event::StartTls));
        error
    }

    fn check_poisoned(&self) -> Result<(), ProtocolError> {
        self.poisoned.as_ref().map_or(Ok(()), |e| Err(e.clone()))
    }

    fn phase(&self) -> Phase {
        match self.session {
            Session::Greeting => Phase::Greeting,
            Session::AwaitingTls { .. } => Phase::TlsHandshake,
            _ if self.in_flight.is_empty() => Phase::Idle,
            _ if matches!(self.reading, Reading::StatusLine) => Phase::Reply,
            _ => Phase::Data,
        }
    }

    fn expects_input(&self) -> bool {
        self.session == Session::Greeting || !self.in_flight.is_empty()
    }

    /// Consumes everything buffered that can be consumed.
    fn process(&mut self, now: Instant) -> Result<(), ProtocolError> {
        loop {
            if let Reading::Body(decoder, msg) = &mut self.reading {
                let msg = *msg;
                let decoded = decoder.decode(&mut self.rx);
                let octets = decoder.octets();
                match decoded {
                    Ok(Decoded::Data(data)) => {
                        let id = self.head_id();
                        self.events.push_back(Event::MessageChunk { id, msg, data });
                    }
                    Ok(Decoded::End) => {
                        let id = self.head_id();
                        self.events.push_back(Event::MessageEnd { id, msg, octets });
                        self.complete_head(now);
                    }
                    Ok(Decoded::NeedMore) => return Ok(()),
                    Err(too_large) => {
                        return Err(ProtocolError::MessageTooLarge {
                            limit: too_large.limit,
                        });
                    }
                }
                continue;
            }
            if self.rx.is_empty() {
                return Ok(());
            }
            if !self.expects_input() {
                return Err(ProtocolError::UnsolicitedData);
            }
            let line = match self.rx.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(()),
                Err(LineError::TooLong { limit }) => {
                    return Err(ProtocolError::LineTooLong { limit });
                }
                Err(_) => {
                    return Err(ProtocolError::LineTooLong {
                        limit: self.config.limits.max_line,
                    });
                }
            };
            if matches!(self.reading, Reading::StatusLine) {
                self.on_status_line(now, &line)?;
            } else {
                self.on_listing_line(now, &line)?;
            }
        }
    }

    /// The id of the command being answered. Internal commands have none, and their replies
    /// never produce events with ids.
    fn head_id(&self) -> CommandId {
        match self.in_flight.front().map(|head| head.awaiting) {
            Some(Awaiting::Command(id, _) | Awaiting::Login(id)) => id,
            _ => CommandId(0),
        }
    }

    /// The reply to the head command is complete.
    fn complete_head(&mut self, now: Instant) {
        if let Some(done) = self.in_flight.pop_front() {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(done.expected_bytes);
        }
        self.reading = Reading::StatusLine;
        self.last_progress = now;
    }

    fn on_status_line(&mut self, now: Instant, line: &Bytes) -> Result<(), ProtocolError> {
        let malformed = |kind| ProtocolError::Malformed {
            kind,
            excerpt: parse::excerpt(line),
        };
        let status = parse::status_line(line);
        if let Ok(Status::Continuation(_)) = status {
            // A SASL challenge: it may be derived from the password, so it stays out of logs.
            tracing::debug!(target: "pop3_proto", "S: {}", auth::FRAMING.redacted_challenge());
        } else {
            // DEBUG, with the client's lines: `-vv` shows a failing exchange whole.
            tracing::debug!(target: "pop3_proto", "S: {}", parse::excerpt(line));
        }
        let status = status.map_err(malformed)?;
        if self.session == Session::Greeting {
            return self
                .on_greeting(now, status)
                .map_err(|()| malformed(Malformed::StatusLine));
        }
        let awaiting = match self.in_flight.front() {
            Some(head) => head.awaiting,
            None => return Err(ProtocolError::UnsolicitedData),
        };
        if let Awaiting::Login(id) = awaiting {
            return self.on_login_reply(now, id, status, line);
        }
        let (positive, text) = match status {
            Status::Ok(text) => (true, text),
            Status::Err(text) => (false, text),
            Status::Continuation(_) => return Err(malformed(Malformed::UnexpectedContinuation)),
        };
        match awaiting {
            Awaiting::AutoCapa => {
                if positive {
                    self.start_capabilities();
                } else {
                    // An RFC 1939-only server: nothing is known.
                    self.complete_head(now);
                    self.capabilities_known(now, Capabilities::default())?;
                }
            }
            Awaiting::Stls => {
                self.complete_head(now);
                if !positive {
                    return Err(ProtocolError::StlsRefused(parse::response(text)));
                }
                if !self.rx.is_empty() {
                    return Err(ProtocolError::InputAfterStartTls);
                }
                self.session = Session::AwaitingTls { since: now };
                self.events.push_back(Event::StartTls);
            }
            Awaiting::Command(id, command) if !positive => {
                self.complete_head(now);
                if command == Command::Quit {
                    self.session = Session::QuitAnswered;
                }
                let response = parse::response(text);
                self.events.push_back(Event::Refused {
                    id,
                    command,
                    response,
                });
            }
            Awaiting::Command(id, command) => self.on_positive(now, id, command, text, line)?,
            Awaiting::Login(_) => {}
        }
        Ok(())
    }

    fn on_greeting(&mut self, now: Instant, status: Status<'_>) -> Result<(), ()> {
        match status {
            Status::Ok(text) => {
                self.apop_timestamp = parse::apop_timestamp(text).map(str::to_owned);
                let greeting = parse::response(text);
                self.greeting = Some(greeting.clone());
                self.events.push_back(Event::Greeting(greeting));
                self.session = Session::Negotiating;
                self.send_internal(now, "CAPA", Awaiting::AutoCapa);
                Ok(())
            }
            Status::Err(text) => {
                let greeting = parse::response(text);
                self.greeting = Some(greeting.clone());
                self.events.push_back(Event::GreetingRefused(greeting));
                self.session = Session::GreetingRefused;
                Ok(())
            }
            Status::Continuation(_) => Err(()),
        }
    }

    fn start_capabilities(&mut self) {
        self.reading = Reading::Capabilities {
            caps: Capabilities {
                announced: true,
                ..Capabilities::default()
            },
            lines: 0,
        };
    }

    /// The automatic `CAPA` is answered: upgrade to TLS if required, else the session is ready.
    fn capabilities_known(
        &mut self,
        now: Instant,
        caps: Capabilities,
    ) -> Result<(), ProtocolError> {
        if self.config.security == Security::StartTls && !self.tls {
            // Without CAPA nothing is known, so STLS is worth a try; a server that lists its
            // capabilities without STLS is taken at its word.
            if caps.announced && !caps.stls {
                return Err(ProtocolError::StlsNotOffered);
            }
            self.caps = Some(caps);
            self.send_internal(now, "STLS", Awaiting::Stls);
        } else {
            self.caps = Some(caps.clone());
            self.session = Session::Authorization;
            self.events.push_back(Event::Ready(caps));
        }
        Ok(())
    }

    fn on_positive(
        &mut self,
        now: Instant,
        id: CommandId,
        command: Command,
        text: &[u8],
        line: &[u8],
    ) -> Result<(), ProtocolError> {
        let malformed = |kind| ProtocolError::Malformed {
            kind,
            excerpt: parse::excerpt(line),
        };
        let event = match command {
            Command::List(None) => {
                self.reading = Reading::Listing(Vec::new());
                return Ok(());
            }
            Command::Uidl(None) => {
                self.reading = Reading::UidListing(Vec::new());
                return Ok(());
            }
            Command::Capa => {
                self.start_capabilities();
                return Ok(());
            }
            Command::Retr { msg, .. } | Command::Top { msg, .. } => {
                self.reading =
                    Reading::Body(BodyDecoder::new(self.config.limits.max_message_size), msg);
                self.events.push_back(Event::MessageStart { id, msg });
                return Ok(());
            }
            Command::Stat => {
                let (count, size) = parse::stat(text).map_err(malformed)?;
                Event::Stat { id, count, size }
            }
            Command::List(Some(_)) => {
                let entry = parse::scan_entry(text).map_err(malformed)?;
                self.sizes.insert(entry.msg, entry.size);
                Event::Listed { id, entry }
            }
            Command::Uidl(Some(_)) => Event::UidListed {
                id,
                entry: uid_entry(text, line, self.config.limits.max_uid_len)?,
            },
            Command::Dele(_) | Command::Rset | Command::Noop | Command::Quit | Command::Utf8 => {
                match command {
                    Command::Quit => self.session = Session::QuitAnswered,
                    Command::Utf8 => self.utf8 = true,
                    _ => {}
                }
                Event::Done {
                    id,
                    command,
                    response: parse::response(text),
                }
            }
        };
        self.complete_head(now);
        self.events.push_back(event);
        Ok(())
    }

    fn on_listing_line(&mut self, now: Instant, line: &[u8]) -> Result<(), ProtocolError> {
        let malformed = |kind| ProtocolError::Malformed {
            kind,
            excerpt: parse::excerpt(line),
        };
        let limits = &self.config.limits;
        let content = parse::listing_line(line);
        match (&mut self.reading, content) {
            (Reading::Capabilities { caps, lines }, Some(content)) => {
                *lines += 1;
                if *lines > limits.max_capability_lines {
                    return Err(ProtocolError::TooManyCapabilities {
                        limit: limits.max_capability_lines,
                    });
                }
                if let Some(capability) = parse::capability(content) {
                    caps.add(capability);
                }
            }
            (Reading::Listing(entries), Some(content)) => {
                if entries.len() >= limits.max_listing_entries {
                    return Err(ProtocolError::TooManyEntries {
                        limit: limits.max_listing_entries,
                    });
                }
                entries.push(parse::scan_entry(content).map_err(malformed)?);
            }
            (Reading::UidListing(entries), Some(content)) => {
                if entries.len() >= limits.max_listing_entries {
                    return Err(ProtocolError::TooManyEntries {
                        limit: limits.max_listing_entries,
                    });
                }
                entries.push(uid_entry(content, line, limits.max_uid_len)?);
            }
            (_, None) => return self.finish_listing(now),
            (Reading::StatusLine | Reading::Body(..), Some(_)) => {}
        }
        Ok(())
    }

    /// The terminating `.` of a listing or capability list.
    fn finish_listing(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let id = self.head_id();
        let explicit = matches!(
            self.in_flight.front(),
            Some(InFlight {
                awaiting: Awaiting::Command(..),
                ..
            })
        );
        let reading = std::mem::replace(&mut self.reading, Reading::StatusLine);
        self.complete_head(now);
        match reading {
            Reading::Capabilities { caps, .. } if explicit => {
                self.caps = Some(caps.clone());
                self.events.push_back(Event::Capabilities {
                    id,
                    capabilities: caps,
                });
            }
            Reading::Capabilities { caps, .. } => self.capabilities_known(now, caps)?,
            Reading::Listing(entries) => {
                self.sizes = entries.iter().map(|e| (e.msg, e.size)).collect();
                self.events.push_back(Event::Listing { id, entries });
            }
            Reading::UidListing(entries) => {
                self.events.push_back(Event::UidListing { id, entries });
            }
            Reading::StatusLine | Reading::Body(..) => {}
        }
        Ok(())
    }

    fn on_login_reply(
        &mut self,
        now: Instant,
        id: CommandId,
        status: Status<'_>,
        line: &[u8],
    ) -> Result<(), ProtocolError> {
        let Some(exchange) = self.login.as_mut() else {
            return Err(ProtocolError::UnsolicitedData);
        };
        let method = exchange.method();
        let progress = exchange.on_reply(status, line)?;
        let event = match progress {
            Progress::Send(line) => {
                self.transmit(&line);
                self.last_progress = now;
                return Ok(());
            }
            Progress::Succeeded => {
                self.logged_in = true;
                if self.session == Session::Authenticating {
                    self.session = Session::Transaction;
                }
                Event::LoggedIn { id, method }
            }
            Progress::Failed(failure) => {
                if self.session == Session::Authenticating {
                    self.session = Session::Authorization;
                }
                Event::LoginFailed { id, failure }
            }
        };
        self.login = None;
        self.complete_head(now);
        self.events.push_back(event);
        Ok(())
    }
}

/// A unique-id entry (`text`, from `line`) within the length limit.
fn uid_entry(text: &[u8], line: &[u8], max_uid_len: usize) -> Result<UidEntry, ProtocolError> {
    let entry = parse::uid_entry(text).map_err(|kind| ProtocolError::Malformed {
        kind,
        excerpt: parse::excerpt(line),
    })?;
    if entry.uid.len() > max_uid_len {
        return Err(ProtocolError::UidTooLong { limit: max_uid_len });
    }
    Ok(entry)
}

impl Machine for Client {
    type Error = ProtocolError;
    type Event = Event;
    type Misuse = Misuse;

    fn poll_event(&mut self) -> Option<Event> {
        Self::poll_event(self)
    }

    fn wants_tls(event: &Event) -> bool {
        matches!(event, Event::StartTls)
    }

    fn tls_established(&mut self, now: Instant) -> Result<(), Misuse> {
        Self::tls_established(self, now)
    }

    fn is_greeting_timeout(error: &ProtocolError) -> bool {
        matches!(
            error,
            ProtocolError::Timeout {
                phase: Phase::Greeting
            }
        )
    }

    fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.check_poisoned()?;
        if bytes.is_empty() {
            return Ok(());
        }
        if matches!(self.session, Session::AwaitingTls { .. }) {
            return Err(self.fail(ProtocolError::InputAfterStartTls));
        }
        self.rx.extend(bytes);
        self.last_progress = now;
        match self.process(now) {
            Ok(()) => {
                self.pump(now);
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    fn handle_eof(&mut self, _now: Instant) -> Result<(), ProtocolError> {
        self.check_poisoned()?;
        match self.session {
            Session::QuitAnswered | Session::GreetingRefused => {
                self.session = Session::Closed;
                self.events.push_back(Event::Closed);
                Ok(())
            }
            Session::Closed => Ok(()),
            _ => {
                let phase = self.phase();
                Err(self.fail(ProtocolError::UnexpectedEof { phase }))
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.check_poisoned()?;
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                let phase = self.phase();
                Err(self.fail(ProtocolError::Timeout { phase }))
            }
            _ => Ok(()),
        }
    }

    fn poll_transmit(&self) -> Option<&[u8]> {
        if self.poisoned.is_some() {
            return None;
        }
        self.tx.pending()
    }

    fn advance_transmit(&mut self, written: usize) {
        self.tx.advance(written);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.poisoned.is_some() {
            return None;
        }
        let timeouts = &self.config.timeouts;
        match self.session {
            Session::Greeting => Some(self.greeting_deadline),
            Session::AwaitingTls { since } => Some(since + timeouts.tls_handshake),
            _ => match self.phase() {
                Phase::Reply => Some(self.last_progress + timeouts.reply),
                Phase::Data => Some(self.last_progress + timeouts.data),
                _ => None,
            },
        }
    }
}

/// How both drivers (tokio and blocking) build and set up this client.
impl Protocol for Client {
    type Config = Config;

    /// POP3S (RFC 8314) and POP3 (RFC 1939).
    const PORTS: StandardPorts = StandardPorts {
        implicit_tls: 995,
        plain: 110,
    };

    fn start(config: Config, now: Instant) -> Self {
        Self::new(config, now)
    }

    fn set_up(event: &Event) -> SetUp {
        match event {
            Event::Ready(_) => SetUp::Ready,
            Event::GreetingRefused(_) | Event::Closed => SetUp::Refused,
            _ => SetUp::Pending,
        }
    }
}
