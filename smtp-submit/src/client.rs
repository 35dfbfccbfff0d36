//! The sans-IO client state machine.
//!
//! One queue of commands awaiting a reply (`outstanding`) maps replies to commands strictly in
//! order: every reply pops exactly one entry, a reply with nothing outstanding is fatal, so a
//! server that sends one reply too many can never shift the mapping. A second queue (`plan`)
//! holds transaction commands not yet sent: with PIPELINING the whole plan goes out at once (one
//! flight); without it one command waits for the previous reply. This is also what makes
//! RFC 2920 recovery exact: each command's reply is read and attributed, whatever happened to
//! the ones before it.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use mail_common::sasl::{self, AuthExchange, AuthLine, Credentials, Mechanism, SaslClient};
use mail_common::{Machine, Protocol, SetUp, StandardPorts, Transmit, check_arg};

use crate::auth::{AuthMethod, FRAMING};
use crate::body::{BodyEncoder, Framing, normalized_len};
use crate::capabilities::Capabilities;
use crate::config::{Config, Security};
use crate::content::ContentScan;
use crate::envelope::{
    Address, BodyType, Envelope, MailOptions, mail_params, original_recipient, rcpt_params, xtext,
};
use crate::error::{Argument, Extension, Misuse, Phase, ProtocolError, Rejected};
use crate::event::{
    AuthFailure, Event, MessageOutcome, RecipientOutcome, SessionFailure, TransactionFailure,
    TransactionId,
};
use crate::reply::{Category, Reply, ReplyReader};

/// RFC 3461 section 4.4: an ENVID is at most 100 characters.
const MAX_ENVID: usize = 100;
/// RFC 3461 section 4.2: an ORCPT value is at most 500 characters.
const MAX_ORCPT: usize = 500;

/// A command waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    Bdat {
        last: bool,
    },
    Quit,
    /// `NOOP` asked for by the caller.
    Noop,
    /// `RSET` asked for by the caller (the automatic one between transactions is `Rset`).
    UserRset,
}

impl Pending {
    const fn phase(self) -> Phase {
        match self {
            Self::Greeting => Phase::Greeting,
            Self::Ehlo | Self::Helo => Phase::Ehlo,
            Self::StartTls => Phase::StartTls,
            Self::Auth => Phase::Auth,
            Self::Rset | Self::UserRset => Phase::Rset,
            Self::Mail => Phase::Mail,
            Self::Rcpt(_) => Phase::Rcpt,
            Self::Data => Phase::DataInit,
            Self::DataEnd => Phase::DataTermination,
            Self::Bdat { .. } => Phase::Bdat,
            Self::Quit => Phase::Quit,
            Self::Noop => Phase::Noop,
        }
    }

    const fn in_transaction(self) -> bool {
        matches!(
            self,
            Self::Rset
                | Self::Mail
                | Self::Rcpt(_)
                | Self::Data
                | Self::DataEnd
                | Self::Bdat { .. }
        )
    }

    /// The only 3yz reply this command may get.
    const fn intermediate_code(self) -> Option<u16> {
        match self {
            Self::Auth => Some(334),
            Self::Data => Some(354),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    /// EHLO, HELO or STARTTLS in flight.
    Handshake,
    AwaitingTls,
    Ready,
    /// QUIT sent.
    Closing,
    Closed,
}

/// The body of a transaction being started.
#[derive(Debug, Clone, Copy)]
enum Content<'a> {
    /// Given whole.
    Whole(&'a [u8]),
    /// Written later with `write_body`; scanned beforehand by the caller or not.
    Streamed(Option<ContentScan>),
}

/// A transaction command not sent yet.
#[derive(Debug)]
struct Planned {
    kind: Pending,
    line: String,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Data,
    Bdat,
}

#[derive(Debug)]
struct Transaction {
    id: TransactionId,
    recipients: Vec<Address>,
    transfer: Transfer,
    encoder: BodyEncoder,
    /// DATA: encoded body held until the 354; BDAT: the chunk being filled.
    body: Vec<u8>,
    /// The caller writes the body with `write_body` (not `send_mail_bytes`).
    streaming: bool,
    mail_accepted: bool,
    rcpt_replies: usize,
    accepted: usize,
    /// DATA: the 354 arrived, body bytes go straight to the transmit buffer.
    data_go: bool,
    finished: bool,
    /// `write_body` took less than offered; owe a `BodyWritable`.
    blocked: bool,
    /// The reply after the end-of-data line arrived (the server closed the transaction).
    data_ended: bool,
    failure: Option<TransactionFailure>,
    final_reply: Option<Reply>,
    /// What a streamed body has shown so far.
    scan: ContentScan,
    /// Commands of this transaction in `plan`, not sent yet.
    planned: usize,
    /// Commands of this transaction sent and still waiting for their reply.
    sent: usize,
    /// Encoded body size, counted against [`Limits::max_pipelined_bytes`] while in flight.
    ///
    /// [`Limits::max_pipelined_bytes`]: crate::Limits::max_pipelined_bytes
    bytes: usize,
    /// `BODY=` and `SMTPUTF8` as declared in `MAIL FROM`.
    declared: (Option<BodyType>, bool),
}

impl Transaction {
    /// Records a refusal of DATA or BDAT in the most specific terms available.
    fn fail_body(&mut self, reply: Reply, data_command: bool) {
        match &mut self.failure {
            Some(TransactionFailure::NoValidRecipients { reply: slot @ None }) => {
                *slot = Some(reply);
            }
            Some(_) => {}
            None if self.accepted == 0 => {
                self.failure = Some(TransactionFailure::NoValidRecipients { reply: Some(reply) });
            }
            None if data_command => self.failure = Some(TransactionFailure::DataRejected(reply)),
            None => self.failure = Some(TransactionFailure::MessageRejected(reply)),
        }
        self.body = Vec::new();
    }
}

#[derive(Debug, Clone, Copy)]
struct WriteStall {
    since: Instant,
    progress: u64,
}

/// The sans-IO SMTP submission client. See the [crate documentation](crate) for the driving
/// loop and an example.
///
/// Methods, grouped as in quinn-proto (and as on `pop3_proto::Client`):
/// - handlers of what the outside world reports: the [`Machine`] methods
///   (`handle_input`, `handle_eof`, `handle_timeout`, `advance_transmit`) and
///   [`Client::tls_established`];
/// - mutators for what the application wants: [`Client::authenticate`],
///   [`Client::send_mail`], [`Client::send_mail_scanned`], [`Client::send_mail_bytes`],
///   [`Client::write_body`], [`Client::finish_body`], [`Client::noop`], [`Client::rset`],
///   [`Client::quit`];
/// - polls for what the driver must do: [`Machine::poll_transmit`], [`Client::poll_event`],
///   [`Machine::poll_timeout`];
/// - getters: [`Client::capabilities`], [`Client::is_tls`], [`Client::authenticated`],
///   [`Client::error`].
///
/// After any handler or mutator, drain `poll_transmit`, `poll_event` and `poll_timeout` before
/// waiting for I/O again.
///
/// Its `Debug` output shows the session state but never buffered bytes (an `AUTH` line may be
/// waiting in the transmit buffer).
pub struct Client {
    config: Config,
    state: State,
    tls: bool,
    reader: ReplyReader,
    transmit: Transmit,
    events: VecDeque<Event>,
    outstanding: VecDeque<Pending>,
    plan: VecDeque<Planned>,
    /// When the front of `outstanding` started waiting for its reply.
    waiting_since: Instant,
    write_stall: Option<WriteStall>,
    write_progress: u64,
    capabilities: Option<Capabilities>,
    authenticated: Option<Mechanism>,
    auth: Option<AuthExchange>,
    /// Transactions in flight, oldest first. Their commands sit in `plan` and `outstanding`
    /// in the same order, one transaction's after the other's, so a reply belongs to the
    /// oldest transaction still waiting for one. Only the newest may have a body still being
    /// written (and then it is the only one).
    transactions: VecDeque<Transaction>,
    reset_needed: bool,
    next_transaction: u64,
    poisoned: Option<ProtocolError>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("security", &self.config.security)
            .field("tls", &self.tls)
            .field("outstanding", &self.outstanding)
            .field("planned", &self.plan.len())
            .field("transmit_bytes", &self.transmit.len())
            .field("capabilities", &self.capabilities)
            .field("authenticated", &self.authenticated)
            .field(
                "auth_in_progress",
                &self.auth.as_ref().map(AuthExchange::mechanism),
            )
            .field(
                "transactions",
                &self.transactions.iter().map(|tx| tx.id).collect::<Vec<_>>(),
            )
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a connection that was just opened (after the TLS handshake for
    /// [`Security::ImplicitTls`]). It waits for the greeting; nothing is sent before it.
    pub fn new(config: Config, now: Instant) -> Self {
        let mut outstanding = VecDeque::new();
        outstanding.push_back(Pending::Greeting);
        Self {
            reader: ReplyReader::new(config.limits.max_reply_line),
            tls: config.security == Security::ImplicitTls,
            config,
            state: State::Greeting,
            transmit: Transmit::new(),
            events: VecDeque::new(),
            outstanding,
            plan: VecDeque::new(),
            waiting_since: now,
            write_stall: None,
            write_progress: 0,
            capabilities: None,
            authenticated: None,
            auth: None,
            transactions: VecDeque::new(),
            reset_needed: false,
            next_transaction: 0,
            poisoned: None,
        }
    }

    /// The next event, if any. Drain after every call that feeds or asks for something.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The server's capabilities once the session is [`Event::Ready`].
    pub const fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    /// True when the connection is protected by TLS (implicit, or after STARTTLS).
    pub const fn is_tls(&self) -> bool {
        self.tls
    }

    /// The mechanism of a successful AUTH.
    pub const fn authenticated(&self) -> Option<Mechanism> {
        self.authenticated
    }

    /// The fatal error that poisoned the client, if any.
    pub const fn error(&self) -> Option<&ProtocolError> {
        self.poisoned.as_ref()
    }

    /// Reports that the TLS handshake requested by [`Event::StartTls`] completed. Everything
    /// learnt before is forgotten and EHLO is sent again (RFC 3207 section 4.2).
    pub fn tls_established(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_poisoned()?;
        if self.state != State::AwaitingTls {
            return Err(Misuse::NotAwaitingTls);
        }
        self.tls = true;
        self.capabilities = None;
        self.reader = ReplyReader::new(self.config.limits.max_reply_line);
        self.state = State::Handshake;
        self.send_ehlo(now);
        Ok(())
    }

    /// Starts AUTH. `nonce` is fresh randomness (at least 18 bytes) used by SCRAM; when it is
    /// empty, SCRAM takes one from [`Config::nonce_source`](crate::Config::nonce_source). Refused before anything is sent when there is no TLS (and
    /// no cleartext opt-in), when the mechanism is not offered, or while busy. The outcome is
    /// [`Event::Authenticated`] or [`Event::AuthFailed`].
    pub fn authenticate(
        &mut self,
        now: Instant,
        credentials: &Credentials,
        method: AuthMethod,
        nonce: &[u8],
    ) -> Result<Mechanism, Misuse> {
        self.check_ready()?;
        if self.authenticated.is_some() {
            return Err(Misuse::AlreadyAuthenticated);
        }
        if !self.tls && !self.config.cleartext_credentials_allowed() {
            return Err(Misuse::CleartextCredentials);
        }
        let offered = self
            .capabilities
            .as_ref()
            .map(Capabilities::auth_mechanisms)
            .unwrap_or_default();
        if offered.is_empty() {
            return Err(Misuse::ExtensionNotOffered(Extension::Auth));
        }
        let mechanism = match method {
            AuthMethod::Auto => sasl::choose(offered.iter().map(String::as_str), credentials)
                .ok_or_else(|| Misuse::NoSuitableMethod {
                    offered: offered.to_vec(),
                })?,
            AuthMethod::Mechanism(mechanism) => {
                if !offered.iter().any(|name| name == mechanism.name()) {
                    return Err(Misuse::MechanismNotOffered(mechanism));
                }
                mechanism
            }
        };
        let nonce = self
            .config
            .nonce_source
            .nonce_for(mechanism, nonce)
            .map_err(Misuse::Sasl)?;
        let sasl = SaslClient::new(mechanism, credentials, &nonce).map_err(Misuse::Sasl)?;
        let (exchange, line) =
            AuthExchange::start(FRAMING, sasl, self.config.limits.max_auth_challenges);
        self.push_auth_line(now, &line);
        self.expect(now, Pending::Auth);
        self.auth = Some(exchange);
        Ok(mechanism)
    }

    /// Starts a transaction whose body the caller then streams with [`Client::write_body`] and
    /// ends with [`Client::finish_body`]. With PIPELINING, `MAIL`, every `RCPT` (and `DATA`)
    /// leave in one flight. Outcomes arrive as [`Event::Recipient`] and [`Event::MessageDone`].
    ///
    /// A streamed body cannot be inspected before `MAIL`, so the rule is: `BODY=8BITMIME` is
    /// declared whenever the server offers it and `options` leaves the body type unset (RFC
    /// 6152 allows it for 7-bit content); `SMTPUTF8` must be asked for in `options` when the
    /// headers carry raw UTF-8. [`Client::write_body`] watches the content and refuses
    /// anything undeclared with [`Misuse::UndeclaredContent`] before it is sent; use a
    /// [`ContentScan`](crate::ContentScan) first when the source can be read twice.
    pub fn send_mail(
        &mut self,
        now: Instant,
        envelope: Envelope,
        options: MailOptions,
    ) -> Result<TransactionId, Rejected<Envelope>> {
        self.start_transaction(now, &envelope, options, Content::Streamed(None))
            .map_err(|reason| Rejected {
                reason,
                value: envelope,
            })
    }

    /// [`Client::send_mail`] for a body the caller has already scanned (a file read twice):
    /// what `scan` found is declared in `MAIL FROM` as for [`Client::send_mail_bytes`], and
    /// [`Misuse::ContentNeedsExtension`] is returned, with nothing sent, when the server lacks
    /// an extension the content needs. The streamed body is still watched.
    pub fn send_mail_scanned(
        &mut self,
        now: Instant,
        envelope: Envelope,
        options: MailOptions,
        scan: ContentScan,
    ) -> Result<TransactionId, Rejected<Envelope>> {
        self.start_transaction(now, &envelope, options, Content::Streamed(Some(scan)))
            .map_err(|reason| Rejected {
                reason,
                value: envelope,
            })
    }

    /// Sends a whole message held in memory. With PIPELINING and CHUNKING and a body of at most
    /// [`Limits::chunk_size`](crate::Limits::chunk_size) bytes, `MAIL`, every `RCPT`,
    /// `BDAT n LAST` and the body leave in one flight: one round trip per message. `SIZE=` is
    /// filled in when unset, and what the content needs is declared: `BODY=8BITMIME` for any
    /// 8-bit octet, `SMTPUTF8` for raw UTF-8 in the header section. When the server lacks the
    /// extension the content needs, [`Misuse::ContentNeedsExtension`] is returned and nothing
    /// is sent.
    /// The body is copied into the client; use [`Client::send_mail`] for large messages.
    pub fn send_mail_bytes(
        &mut self,
        now: Instant,
        envelope: Envelope,
        options: MailOptions,
        body: &[u8],
    ) -> Result<TransactionId, Rejected<Envelope>> {
        self.start_transaction(now, &envelope, options, Content::Whole(body))
            .map_err(|reason| Rejected {
                reason,
                value: envelope,
            })
    }

    /// Feeds body bytes of the transaction started with [`Client::send_mail`]. Returns how many
    /// bytes were taken, which may be fewer than offered (0 included) when the send window is
    /// full; [`Event::BodyWritable`] then says when to go on. Dots are stuffed and line endings
    /// handled per [`Config::line_endings`]. Content the transaction did not declare (an 8-bit
    /// octet without `BODY=8BITMIME`, UTF-8 in a header without `SMTPUTF8`) is refused with
    /// [`Misuse::UndeclaredContent`] before any of it is queued; the transaction cannot be
    /// completed then: close the connection, so the server discards it.
    pub fn write_body(&mut self, now: Instant, data: &[u8]) -> Result<usize, Misuse> {
        self.check_body_writable()?;
        let chunk_size = self.config.limits.chunk_size;
        let mut taken = 0;
        while taken < data.len() {
            let Some(tx) = self.transactions.back() else {
                break;
            };
            if tx.transfer == Transfer::Bdat && tx.body.len() >= chunk_size {
                self.flush_chunk_if_possible(now);
            }
            let room = self.body_room().min(data.len() - taken);
            if room == 0 {
                break;
            }
            let piece = &data[taken..taken + room];
            if let Some(tx) = self.transactions.back_mut() {
                let mut scan = tx.scan;
                scan.feed(piece);
                if let Some(undeclared) = scan.undeclared(tx.declared.0, tx.declared.1) {
                    // Report what was taken; the next call starts at the offending piece.
                    if taken > 0 {
                        return Ok(taken);
                    }
                    return Err(Misuse::UndeclaredContent(undeclared));
                }
                tx.scan = scan;
            }
            match self.encode_body(now, piece) {
                Ok(()) => taken += room,
                // Report what was taken; the next call starts at the offending byte and fails.
                Err(_) if taken > 0 => return Ok(taken),
                Err(error) => return Err(error),
            }
        }
        if taken < data.len()
            && let Some(tx) = self.transactions.back_mut()
        {
            tx.blocked = true;
        }
        Ok(taken)
    }

    /// Ends the body of the transaction started with [`Client::send_mail`]: the end-of-data line
    /// for `DATA`, `BDAT n LAST` for CHUNKING.
    pub fn finish_body(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_body_writable()?;
        let Some(tx) = self.transactions.back_mut() else {
            return Err(Misuse::NoBodyInProgress);
        };
        match tx.transfer {
            Transfer::Data if tx.data_go => {
                let was_empty = self.transmit.is_empty();
                self.transmit
                    .extend_with(|buf| tx.encoder.finish(buf))
                    .map_err(Misuse::BareLineEnding)?;
                tx.finished = true;
                tx.sent += 1;
                if was_empty {
                    self.start_write_stall(now);
                }
                self.expect(now, Pending::DataEnd);
            }
            Transfer::Data => {
                tx.encoder
                    .finish(&mut tx.body)
                    .map_err(Misuse::BareLineEnding)?;
                tx.finished = true;
            }
            Transfer::Bdat => {
                tx.encoder
                    .finish(&mut tx.body)
                    .map_err(Misuse::BareLineEnding)?;
                tx.finished = true;
                let payload = std::mem::take(&mut tx.body);
                self.plan_bdat(payload, true);
                self.pump(now);
            }
        }
        Ok(())
    }

    /// Sends `NOOP` (keeps an idle session alive, or checks that the server still answers).
    /// The reply arrives as [`Event::NoopReply`]. Refused while AUTH or a transaction is in
    /// progress.
    pub fn noop(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_ready()?;
        self.send_command(now, Pending::Noop, "NOOP");
        Ok(())
    }

    /// Sends `RSET`, clearing any transaction state the server may hold. The reply arrives as
    /// [`Event::RsetReply`]. Never needed for correctness (the client sends `RSET` by itself
    /// before the next `MAIL` after a failed transaction); refused while AUTH or a transaction
    /// is in progress.
    pub fn rset(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_ready()?;
        self.reset_needed = false;
        self.send_command(now, Pending::UserRset, "RSET");
        Ok(())
    }

    /// Ends the session politely. Refused while AUTH or a transaction is in progress.
    pub fn quit(&mut self, now: Instant) -> Result<(), Misuse> {
        self.check_ready()?;
        self.begin_quit(now);
        Ok(())
    }

    // ---- checks -------------------------------------------------------------------------

    fn check_poisoned(&self) -> Result<(), Misuse> {
        match &self.poisoned {
            Some(error) => Err(Misuse::Fatal(Box::new(error.clone()))),
            None => Ok(()),
        }
    }

    /// Ready, and neither AUTH nor a transaction in progress.
    fn check_ready(&self) -> Result<(), Misuse> {
        self.check_poisoned()?;
        match self.state {
            State::Ready if self.auth.is_some() || !self.transactions.is_empty() => {
                Err(Misuse::Busy)
            }
            State::Ready => Ok(()),
            State::Closing | State::Closed => Err(Misuse::Closed),
            State::Greeting | State::Handshake | State::AwaitingTls => Err(Misuse::NotReady),
        }
    }

    fn check_body_writable(&self) -> Result<(), Misuse> {
        self.check_poisoned()?;
        let Some(tx) = self.transactions.back().filter(|tx| tx.streaming) else {
            return Err(Misuse::NoBodyInProgress);
        };
        if tx.failure.is_some() {
            Err(Misuse::TransactionFailed)
        } else if tx.finished {
            Err(Misuse::BodyFinished)
        } else {
            Ok(())
        }
    }

    fn pipelining(&self) -> bool {
        self.config.pipelining
            && self
                .capabilities
                .as_ref()
                .is_some_and(Capabilities::pipelining)
    }

    // ---- transactions -------------------------------------------------------------------

    fn start_transaction(
        &mut self,
        now: Instant,
        envelope: &Envelope,
        mut options: MailOptions,
        content: Content<'_>,
    ) -> Result<TransactionId, Misuse> {
        self.check_can_start(matches!(content, Content::Whole(_)))?;
        let caps = self.capabilities.clone().unwrap_or_default();
        if envelope.recipients().is_empty() {
            return Err(Misuse::NoRecipients);
        }
        // RFC 9422 LIMITS: stay within what the server announced instead of collecting 452s.
        if let Some(max) = caps.rcpt_max()
            && envelope.recipients().len() > max
        {
            return Err(Misuse::TooManyRecipients {
                count: envelope.recipients().len(),
                max,
            });
        }
        if let Some(max) = caps.mail_max()
            && self.next_transaction >= max as u64
        {
            return Err(Misuse::TransactionLimit { max });
        }
        let (body, scanned) = match content {
            Content::Whole(body) => {
                let mut scan = ContentScan::new();
                scan.feed(body);
                (Some(body), Some(scan))
            }
            Content::Streamed(scan) => (None, scan),
        };
        if let Some(scan) = scanned {
            // Declare what the content needs (RFC 6152, RFC 6531), and refuse before anything
            // is sent when the server cannot take it.
            if scan.needs_smtputf8() && !caps.smtputf8() {
                return Err(Misuse::ContentNeedsExtension(Extension::SmtpUtf8));
            }
            if scan.needs_8bitmime() && !caps.eight_bit_mime() {
                return Err(Misuse::ContentNeedsExtension(Extension::EightBitMime));
            }
            options = scan.declare(options);
            if let Some(undeclared) = scan.undeclared(options.body, options.smtputf8) {
                return Err(Misuse::UndeclaredContent(undeclared));
            }
        } else if options.body.is_none() && caps.eight_bit_mime() {
            // A streamed body cannot be inspected before MAIL: declare 8BITMIME whenever it is
            // offered (RFC 6152 allows it for 7-bit content too). Without the offer, an 8-bit
            // octet in the stream stops the message before the end of data.
            options.body = Some(BodyType::EightBitMime);
        }
        if let Some(body) = body
            && options.size.is_none()
        {
            options.size = Some(normalized_len(body));
        }
        let smtputf8 = options.smtputf8 || envelope.is_internationalized();
        if smtputf8 && !caps.smtputf8() {
            return Err(Misuse::ExtensionNotOffered(Extension::SmtpUtf8));
        }
        match options.body {
            Some(BodyType::EightBitMime) if !caps.eight_bit_mime() => {
                return Err(Misuse::ExtensionNotOffered(Extension::EightBitMime));
            }
            // 7BIT is what the server assumes anyway; BODY= exists only with 8BITMIME.
            Some(BodyType::SevenBit) if !caps.eight_bit_mime() => options.body = None,
            _ => {}
        }
        let dsn = options.uses_dsn() || envelope.recipients().iter().any(|r| r.uses_dsn());
        if dsn && !caps.dsn() {
            return Err(Misuse::ExtensionNotOffered(Extension::Dsn));
        }
        if options.require_tls {
            if !caps.require_tls() {
                return Err(Misuse::ExtensionNotOffered(Extension::RequireTls));
            }
            if !self.tls {
                return Err(Misuse::RequireTlsWithoutTls);
            }
        }
        if let (Some(size), Some(limit)) = (options.size, caps.max_message_size())
            && size > limit
        {
            return Err(Misuse::MessageTooLarge { size, limit });
        }
        let envid = options
            .envid
            .as_deref()
            .map(|envid| encode_dsn_text(envid, Argument::EnvelopeId, MAX_ENVID, ""))
            .transpose()?;
        let mut rcpt_lines = Vec::with_capacity(envelope.recipients().len());
        for (index, recipient) in envelope.recipients().iter().enumerate() {
            let orcpt = original_recipient(recipient)
                .map(|orcpt| {
                    encode_dsn_text(
                        orcpt,
                        Argument::OriginalRecipient(index),
                        MAX_ORCPT,
                        "rfc822;",
                    )
                })
                .transpose()?;
            rcpt_lines.push(format!(
                "RCPT TO:<{}>{}",
                recipient.address(),
                rcpt_params(recipient, orcpt.as_deref())
            ));
        }
        let size = options.size.filter(|_| caps.size());
        let mail_line = format!(
            "MAIL FROM:<{}>{}",
            envelope.from().map(Address::as_str).unwrap_or_default(),
            mail_params(&options, size, smtputf8, envid.as_deref())
        );

        let transfer = if self.config.chunking && caps.chunking() {
            Transfer::Bdat
        } else {
            Transfer::Data
        };
        let framing = match transfer {
            Transfer::Data => Framing::Data,
            Transfer::Bdat => Framing::Bdat,
        };
        let mut encoder = BodyEncoder::new(framing, self.config.line_endings);
        // Encode a whole body first: a Reject-policy error must come before anything is queued.
        let encoded = match body {
            Some(body) => {
                let mut encoded = Vec::new();
                encoder
                    .encode(body, &mut encoded)
                    .and_then(|()| encoder.finish(&mut encoded))
                    .map_err(Misuse::BareLineEnding)?;
                Some(encoded)
            }
            None => None,
        };

        let bytes = encoded.as_ref().map_or(0, Vec::len);
        self.check_window(bytes)?;

        let declared = (options.body, smtputf8);
        let id = TransactionId(self.next_transaction);
        self.next_transaction += 1;
        tracing::debug!(transaction = %id, recipients = rcpt_lines.len(), "starting transaction");
        // Behind a transaction still in flight, whose fate is unknown: a refusal may leave the
        // server holding it (all recipients refused, a failed BDAT), and this MAIL would then
        // be refused as nested. RSET costs no round trip here and keeps each transaction
        // independent of its neighbours.
        let reset = std::mem::take(&mut self.reset_needed) || !self.transactions.is_empty();
        let streaming = encoded.is_none();
        self.transactions.push_back(Transaction {
            id,
            recipients: envelope.recipient_addresses(),
            transfer,
            encoder,
            body: Vec::new(),
            streaming,
            mail_accepted: false,
            rcpt_replies: 0,
            accepted: 0,
            data_go: false,
            finished: !streaming,
            blocked: false,
            data_ended: false,
            failure: None,
            final_reply: None,
            scan: ContentScan::new(),
            declared,
            planned: 0,
            sent: 0,
            bytes,
        });
        if reset {
            self.plan_command(Pending::Rset, "RSET".to_owned());
        }
        self.plan_command(Pending::Mail, mail_line);
        for (index, line) in rcpt_lines.into_iter().enumerate() {
            self.plan_command(Pending::Rcpt(index), line);
        }
        match (transfer, encoded) {
            (Transfer::Data, encoded) => {
                self.plan_command(Pending::Data, "DATA".to_owned());
                if let (Some(tx), Some(encoded)) = (self.transactions.back_mut(), encoded) {
                    tx.body = encoded;
                }
            }
            (Transfer::Bdat, Some(encoded)) => self.plan_bdat_chunks(encoded),
            (Transfer::Bdat, None) => {}
        }
        self.pump(now);
        Ok(id)
    }

    /// Ready for `MAIL`: no AUTH in progress, and either nothing in flight or (for a whole
    /// message, with PIPELINING) only transactions whose every command is planned already.
    fn check_can_start(&self, whole: bool) -> Result<(), Misuse> {
        self.check_poisoned()?;
        match self.state {
            State::Ready if self.auth.is_some() => Err(Misuse::Busy),
            State::Ready if self.transactions.is_empty() => Ok(()),
            // A streamed body keeps the newest transaction open, and it must stay the only
            // one: its chunks are planned as it is written.
            State::Ready
                if !whole
                    || !self.pipelining()
                    || self.transactions.back().is_some_and(|tx| !tx.finished) =>
            {
                Err(Misuse::Busy)
            }
            State::Ready => Ok(()),
            State::Closing | State::Closed => Err(Misuse::Closed),
            State::Greeting | State::Handshake | State::AwaitingTls => Err(Misuse::NotReady),
        }
    }

    /// The window of [`Limits::max_pipelined_transactions`] and
    /// [`Limits::max_pipelined_bytes`]; the first transaction always fits.
    ///
    /// [`Limits::max_pipelined_transactions`]: crate::Limits::max_pipelined_transactions
    /// [`Limits::max_pipelined_bytes`]: crate::Limits::max_pipelined_bytes
    fn check_window(&self, bytes: usize) -> Result<(), Misuse> {
        if self.transactions.is_empty() {
            return Ok(());
        }
        let limits = &self.config.limits;
        let in_flight: usize = self.transactions.iter().map(|tx| tx.bytes).sum();
        if self.transactions.len() >= limits.max_pipelined_transactions
            || in_flight.saturating_add(bytes) > limits.max_pipelined_bytes
        {
            return Err(Misuse::WindowFull {
                transactions: self.transactions.len(),
                bytes: in_flight,
            });
        }
        Ok(())
    }

    /// How many more transactions [`Client::send_mail_bytes`] would take now without
    /// [`Misuse::Busy`] or [`Misuse::WindowFull`], leaving bytes aside: 0 while a streamed
    /// body, AUTH or a transaction without PIPELINING is in progress, or before the session
    /// is ready.
    pub fn transactions_room(&self) -> usize {
        if self.check_can_start(true).is_err() {
            return 0;
        }
        if self.transactions.is_empty() {
            return self.config.limits.max_pipelined_transactions.max(1);
        }
        self.config
            .limits
            .max_pipelined_transactions
            .saturating_sub(self.transactions.len())
    }

    /// How many transactions are in flight (started, not yet reported by
    /// [`Event::MessageDone`]).
    pub fn transactions_in_flight(&self) -> usize {
        self.transactions.len()
    }

    /// Plans a command of the newest transaction.
    fn plan_command(&mut self, kind: Pending, line: String) {
        self.plan_for_newest(Planned {
            kind,
            line,
            payload: Vec::new(),
        });
    }

    fn plan_bdat(&mut self, payload: Vec<u8>, last: bool) {
        let line = format!("BDAT {}{}", payload.len(), if last { " LAST" } else { "" });
        self.plan_for_newest(Planned {
            kind: Pending::Bdat { last },
            line,
            payload,
        });
    }

    fn plan_for_newest(&mut self, planned: Planned) {
        if let Some(tx) = self.transactions.back_mut() {
            tx.planned += 1;
        }
        self.plan.push_back(planned);
    }

    /// Drops the commands of transaction `index` not sent yet. They are at the front of the
    /// plan: every older transaction has no command left to send (the plan keeps order).
    fn drop_planned(&mut self, index: usize) {
        let Some(tx) = self.transactions.get_mut(index) else {
            return;
        };
        let count = std::mem::take(&mut tx.planned).min(self.plan.len());
        self.plan.drain(..count);
    }

    /// The transaction the next transaction reply belongs to: the oldest still waiting for one.
    fn receiving(&self) -> Option<usize> {
        self.transactions.iter().position(|tx| tx.sent > 0)
    }

    /// Splits a whole encoded body into `BDAT` chunks of at most `chunk_size` bytes.
    fn plan_bdat_chunks(&mut self, mut encoded: Vec<u8>) {
        let chunk_size = self.config.limits.chunk_size;
        while encoded.len() > chunk_size {
            let rest = encoded.split_off(chunk_size);
            self.plan_bdat(encoded, false);
            encoded = rest;
        }
        self.plan_bdat(encoded, true);
    }

    /// Sends planned commands: all of them with PIPELINING, otherwise one per reply. Nothing
    /// goes behind a `DATA` awaiting its 354 (RFC 2920 section 3.1: DATA ends a group; the
    /// body, then the next transaction's commands, follow the 354).
    fn pump(&mut self, now: Instant) {
        while !self.plan.is_empty() {
            if !self.outstanding.is_empty() && !self.pipelining() {
                break;
            }
            if self.outstanding.contains(&Pending::Data) {
                break;
            }
            let Some(planned) = self.plan.pop_front() else {
                break;
            };
            if let Some(tx) = self.transactions.iter_mut().find(|tx| tx.planned > 0) {
                tx.planned -= 1;
                tx.sent += 1;
            }
            tracing::debug!("C: {}", planned.line);
            if self.transmit.is_empty() {
                self.start_write_stall(now);
            }
            self.transmit
                .push_all(&[planned.line.as_bytes(), b"\r\n", &planned.payload]);
            self.expect(now, planned.kind);
        }
    }

    /// How many more input bytes `write_body` may take now.
    fn body_room(&self) -> usize {
        let Some(tx) = self.transactions.back() else {
            return 0;
        };
        let limits = &self.config.limits;
        match tx.transfer {
            Transfer::Data if tx.data_go => limits.send_window.saturating_sub(self.transmit.len()),
            Transfer::Data => limits.send_window.saturating_sub(tx.body.len()),
            Transfer::Bdat if tx.body.len() < limits.chunk_size => {
                limits.chunk_size - tx.body.len()
            }
            Transfer::Bdat if self.can_flush_chunk() => limits.chunk_size,
            Transfer::Bdat => 0,
        }
    }

    /// A full BDAT chunk may be queued when no other chunk waits for its turn and the transmit
    /// buffer is below the window.
    fn can_flush_chunk(&self) -> bool {
        self.transmit.len() < self.config.limits.send_window
            && !self
                .plan
                .iter()
                .any(|p| matches!(p.kind, Pending::Bdat { .. }))
    }

    fn flush_chunk_if_possible(&mut self, now: Instant) {
        if !self.can_flush_chunk() {
            return;
        }
        let Some(tx) = self.transactions.back_mut() else {
            return;
        };
        let payload = std::mem::take(&mut tx.body);
        self.plan_bdat(payload, false);
        self.pump(now);
    }

    fn encode_body(&mut self, now: Instant, data: &[u8]) -> Result<(), Misuse> {
        let Some(tx) = self.transactions.back_mut() else {
            return Err(Misuse::NoBodyInProgress);
        };
        if tx.transfer == Transfer::Data && tx.data_go {
            // Encode straight into the transmit buffer: no intermediate copy. The encoder is
            // all-or-nothing, so on error the buffer is unchanged.
            let was_empty = self.transmit.is_empty();
            self.transmit
                .extend_with(|buf| tx.encoder.encode(data, buf))
                .map_err(Misuse::BareLineEnding)?;
            if was_empty && !self.transmit.is_empty() {
                self.start_write_stall(now);
            }
        } else {
            tx.encoder
                .encode(data, &mut tx.body)
                .map_err(Misuse::BareLineEnding)?;
        }
        Ok(())
    }

    /// Emits `BodyWritable` when a blocked writer may go on.
    fn update_writable(&mut self) {
        let room = self.body_room();
        if let Some(tx) = self.transactions.back_mut()
            && tx.blocked
            && tx.failure.is_none()
            && !tx.finished
            && room > 0
        {
            tx.blocked = false;
            self.events
                .push_back(Event::BodyWritable { transaction: tx.id });
        }
    }

    /// Ends transactions, oldest first, once every reply belonging to them has arrived.
    fn maybe_conclude(&mut self) {
        while let Some(tx) = self.transactions.front() {
            let done = tx.failure.is_some() || tx.final_reply.is_some();
            if !done || tx.planned > 0 || tx.sent > 0 {
                return;
            }
            let Some(tx) = self.transactions.pop_front() else {
                return;
            };
            let outcome = match (tx.failure, tx.final_reply) {
                (Some(failure), _) => {
                    // The server still holds the transaction unless MAIL failed or the end of
                    // data closed it: clear it before the next MAIL (one started already has
                    // its RSET).
                    self.reset_needed =
                        tx.mail_accepted && !tx.data_ended && self.transactions.is_empty();
                    MessageOutcome::Failed(failure)
                }
                (None, Some(reply)) => MessageOutcome::Sent {
                    reply,
                    accepted: tx.accepted,
                },
                (None, None) => return,
            };
            tracing::debug!(transaction = %tx.id, ?outcome, "transaction done");
            self.events.push_back(Event::MessageDone {
                transaction: tx.id,
                outcome,
            });
        }
    }

    // ---- wire helpers -------------------------------------------------------------------

    fn start_write_stall(&mut self, now: Instant) {
        self.write_stall = Some(WriteStall {
            since: now,
            progress: self.write_progress,
        });
    }

    fn push_wire(&mut self, now: Instant, bytes: &[u8]) {
        if self.transmit.is_empty() {
            self.start_write_stall(now);
        }
        self.transmit.push(bytes);
    }

    /// Queues a line of the AUTH exchange; only its redacted rendering is logged.
    fn push_auth_line(&mut self, now: Instant, line: &AuthLine) {
        tracing::debug!("C: {}", line.shown);
        if self.transmit.is_empty() {
            self.start_write_stall(now);
        }
        self.transmit.push_all(&[line.bytes.expose(), b"\r\n"]);
    }

    fn expect(&mut self, now: Instant, kind: Pending) {
        if self.outstanding.is_empty() {
            self.waiting_since = now;
        }
        self.outstanding.push_back(kind);
    }

    fn send_command(&mut self, now: Instant, kind: Pending, line: &str) {
        tracing::debug!("C: {line}");
        if self.transmit.is_empty() {
            self.start_write_stall(now);
        }
        self.transmit.push_all(&[line.as_bytes(), b"\r\n"]);
        self.expect(now, kind);
    }

    fn send_ehlo(&mut self, now: Instant) {
        let line = format!("EHLO {}", self.config.client_name.as_str());
        self.send_command(now, Pending::Ehlo, &line);
    }

    fn begin_quit(&mut self, now: Instant) {
        self.plan.clear();
        self.state = State::Closing;
        self.send_command(now, Pending::Quit, "QUIT");
    }

    fn fail_session(&mut self, now: Instant, failure: SessionFailure) {
        tracing::debug!(?failure, "session failed");
        self.events.push_back(Event::SessionFailed(failure));
        self.begin_quit(now);
    }

    fn close(&mut self) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.outstanding.clear();
            self.plan.clear();
            self.events.push_back(Event::Closed);
        }
    }

    fn poison(&mut self, error: ProtocolError) -> ProtocolError {
        tracing::debug!(%error, "fatal protocol error");
        self.poisoned = Some(error.clone());
        self.transmit = Transmit::new();
        self.outstanding.clear();
        self.plan.clear();
        self.write_stall = None;
        error
    }

    fn current_phase(&self) -> Phase {
        if let Some(front) = self.outstanding.front() {
            return front.phase();
        }
        match self.state {
            State::AwaitingTls => Phase::TlsHandshake,
            _ if !self.transactions.is_empty() => Phase::DataBlock,
            _ => Phase::Idle,
        }
    }

    fn timeout_of(&self, pending: Pending) -> Duration {
        let timeouts = &self.config.timeouts;
        match pending {
            Pending::Greeting => timeouts.greeting,
            Pending::Ehlo
            | Pending::Helo
            | Pending::StartTls
            | Pending::Auth
            | Pending::Rset
            | Pending::UserRset
            | Pending::Noop
            | Pending::Quit => timeouts.command,
            Pending::Mail => timeouts.mail,
            Pending::Rcpt(_) => timeouts.rcpt,
            Pending::Data => timeouts.data_init,
            Pending::DataEnd | Pending::Bdat { .. } => timeouts.data_termination,
        }
    }

    fn reply_deadline(&self) -> Option<(Instant, Phase)> {
        let front = *self.outstanding.front()?;
        Some((self.waiting_since + self.timeout_of(front), front.phase()))
    }

    fn stall_deadline(&self) -> Option<Instant> {
        self.write_stall
            .map(|stall| stall.since + self.config.timeouts.data_block)
    }

    // ---- replies ------------------------------------------------------------------------

    fn on_reply(&mut self, now: Instant, reply: Reply) -> Result<(), ProtocolError> {
        // DEBUG, with the client's lines: `-vv` shows a failing exchange whole. A SASL
        // challenge may be derived from the password (or carry a token error): never logged.
        if reply.code() == 334 {
            tracing::debug!("S: {}", FRAMING.redacted_challenge());
        } else {
            tracing::debug!("S: {reply}");
        }
        let Some(pending) = self.outstanding.pop_front() else {
            if reply.code() == 421 {
                self.service_closing(reply);
                return Ok(());
            }
            return Err(ProtocolError::UnsolicitedReply { code: reply.code() });
        };
        self.waiting_since = now;
        if reply.category() == Category::PositiveIntermediate
            && pending.intermediate_code() != Some(reply.code())
        {
            return Err(ProtocolError::UnexpectedReply {
                code: reply.code(),
                phase: pending.phase(),
            });
        }
        if pending == Pending::Data && reply.category() == Category::PositiveCompletion {
            // DATA is answered with 354 or a refusal; a 2yz means the replies are out of step.
            return Err(ProtocolError::UnexpectedReply {
                code: reply.code(),
                phase: pending.phase(),
            });
        }
        // A 421 greeting is a refused greeting like a 554 (`on_greeting`), not a session that
        // is closing after it began.
        if reply.code() == 421 && !matches!(pending, Pending::Quit | Pending::Greeting) {
            self.service_closing(reply);
            return Ok(());
        }
        match pending {
            Pending::Greeting => self.on_greeting(now, reply)?,
            Pending::Ehlo => self.on_ehlo(now, reply)?,
            Pending::Helo => {
                if reply.category() == Category::PositiveCompletion {
                    self.after_hello(now, Capabilities::from_helo(&reply))?;
                } else {
                    self.fail_session(now, SessionFailure::HeloRefused(reply));
                }
            }
            Pending::StartTls => self.on_starttls(reply)?,
            Pending::Auth => self.on_auth(now, reply)?,
            Pending::Quit => self.close(),
            Pending::Noop => self.events.push_back(Event::NoopReply(reply)),
            Pending::UserRset => self.events.push_back(Event::RsetReply(reply)),
            Pending::Rset => {
                if let Some(tx) = self.receiving() {
                    self.transactions[tx].sent -= 1;
                }
                if !reply.is_positive() {
                    tracing::warn!("RSET refused: {reply}");
                }
            }
            Pending::Mail
            | Pending::Rcpt(_)
            | Pending::Data
            | Pending::DataEnd
            | Pending::Bdat { .. } => {
                if let Some(tx) = self.receiving() {
                    self.transactions[tx].sent -= 1;
                    match pending {
                        Pending::Mail => self.on_mail(tx, reply),
                        Pending::Rcpt(index) => self.on_rcpt(tx, index, reply),
                        Pending::Data => self.on_data(now, tx, reply),
                        Pending::DataEnd => self.on_data_end(tx, reply),
                        Pending::Bdat { last } => self.on_bdat(tx, last, reply),
                        _ => {}
                    }
                }
            }
        }
        if pending.in_transaction() {
            self.maybe_conclude();
        }
        self.pump(now);
        self.update_writable();
        Ok(())
    }

    fn on_greeting(&mut self, now: Instant, reply: Reply) -> Result<(), ProtocolError> {
        match reply.code() {
            220 => {
                self.events.push_back(Event::Greeting(reply));
                self.state = State::Handshake;
                self.send_ehlo(now);
            }
            // RFC 5321 section 3.8: after a 421 the server closes the channel, so a QUIT
            // would go nowhere.
            421 => {
                tracing::debug!("greeting refused, server closing");
                self.events.push_back(Event::GreetingRefused(reply));
                self.close();
            }
            code if code >= 400 => {
                tracing::debug!("greeting refused");
                self.events.push_back(Event::GreetingRefused(reply));
                self.begin_quit(now);
            }
            code => {
                return Err(ProtocolError::UnexpectedReply {
                    code,
                    phase: Phase::Greeting,
                });
            }
        }
        Ok(())
    }

    const fn must_upgrade(&self) -> bool {
        matches!(self.config.security, Security::StartTls) && !self.tls
    }

    fn on_ehlo(&mut self, now: Instant, reply: Reply) -> Result<(), ProtocolError> {
        match reply.code() {
            200..=299 => return self.after_hello(now, Capabilities::from_ehlo(&reply)),
            // "Command not recognised": an old server. HELO offers no STARTTLS, so it is only an
            // option when TLS is not still to be negotiated.
            500 | 502 if self.must_upgrade() => return Err(ProtocolError::StartTlsNotOffered),
            500 | 502 => {
                let line = format!("HELO {}", self.config.client_name.as_str());
                self.send_command(now, Pending::Helo, &line);
            }
            _ => self.fail_session(now, SessionFailure::EhloRefused(reply)),
        }
        Ok(())
    }

    fn after_hello(
        &mut self,
        now: Instant,
        capabilities: Capabilities,
    ) -> Result<(), ProtocolError> {
        if self.must_upgrade() {
            if !capabilities.starttls() {
                return Err(ProtocolError::StartTlsNotOffered);
            }
            self.send_command(now, Pending::StartTls, "STARTTLS");
            return Ok(());
        }
        self.state = State::Ready;
        self.capabilities = Some(capabilities.clone());
        self.events.push_back(Event::Ready(capabilities));
        Ok(())
    }

    fn on_starttls(&mut self, reply: Reply) -> Result<(), ProtocolError> {
        match reply.code() {
            220 => {
                self.state = State::AwaitingTls;
                self.events.push_back(Event::StartTls);
            }
            code if code >= 400 => return Err(ProtocolError::StartTlsRefused(reply)),
            code => {
                return Err(ProtocolError::UnexpectedReply {
                    code,
                    phase: Phase::StartTls,
                });
            }
        }
        Ok(())
    }

    fn on_auth(&mut self, now: Instant, reply: Reply) -> Result<(), ProtocolError> {
        let Some(mut exchange) = self.auth.take() else {
            return Ok(());
        };
        let mechanism = exchange.mechanism();
        if reply.code() == 334 {
            let text = reply.lines().first().map_or("", String::as_str);
            let line = exchange
                .on_challenge(text.as_bytes())
                .map_err(ProtocolError::Auth)?;
            self.push_auth_line(now, &line);
            self.outstanding.push_front(Pending::Auth);
            self.auth = Some(exchange);
            return Ok(());
        }
        if reply.category() == Category::PositiveCompletion {
            exchange.on_success().map_err(ProtocolError::Auth)?;
            self.authenticated = Some(mechanism);
            self.events.push_back(Event::Authenticated { mechanism });
            return Ok(());
        }
        let refusal = exchange.into_refusal();
        let failure = match (refusal.aborted, refusal.oauth_error) {
            (Some(error), _) => AuthFailure::Cancelled { error, reply },
            (None, Some(error)) => AuthFailure::TokenRefused { error, reply },
            (None, None) => AuthFailure::Refused(reply),
        };
        self.events
            .push_back(Event::AuthFailed { mechanism, failure });
        Ok(())
    }

    fn on_mail(&mut self, tx: usize, reply: Reply) {
        let Some(t) = self.transactions.get_mut(tx) else {
            return;
        };
        if reply.category() == Category::PositiveCompletion {
            t.mail_accepted = true;
        } else {
            t.failure = Some(TransactionFailure::MailRejected(reply));
            t.body = Vec::new();
            // Lockstep: the rest of this transaction is pointless now.
            self.drop_planned(tx);
        }
    }

    fn on_rcpt(&mut self, tx_index: usize, index: usize, reply: Reply) {
        let Some(tx) = self.transactions.get_mut(tx_index) else {
            return;
        };
        tx.rcpt_replies += 1;
        let address = tx.recipients.get(index).cloned();
        let outcome = if reply.category() == Category::PositiveCompletion {
            tx.accepted += 1;
            RecipientOutcome::Accepted(reply)
        } else if matches!(tx.failure, Some(TransactionFailure::MailRejected(_))) {
            // Pipelined behind a refused MAIL FROM: the reply (503 "sender not yet given")
            // is a consequence of that refusal and says nothing about the recipient.
            RecipientOutcome::SenderRefused(reply)
        } else {
            RecipientOutcome::Rejected(reply)
        };
        if let Some(address) = address {
            self.events.push_back(Event::Recipient {
                transaction: tx.id,
                index,
                address,
                outcome,
            });
        }
        if tx.rcpt_replies == tx.recipients.len() && tx.accepted == 0 && tx.failure.is_none() {
            tx.failure = Some(TransactionFailure::NoValidRecipients { reply: None });
            tx.body = Vec::new();
            self.drop_planned(tx_index);
        }
    }

    fn on_data(&mut self, now: Instant, tx_index: usize, reply: Reply) {
        let Some(tx) = self.transactions.get_mut(tx_index) else {
            return;
        };
        if reply.code() != 354 {
            tx.fail_body(reply, true);
            return;
        }
        if tx.failure.is_some() || !tx.mail_accepted || tx.accepted == 0 {
            // RFC 2920 section 3.1: DATA was accepted with no recipient. End it with an empty
            // body so the server leaves DATA mode; nothing is delivered.
            if tx.failure.is_none() {
                tx.failure = Some(TransactionFailure::NoValidRecipients { reply: None });
            }
            tx.body = Vec::new();
            tx.sent += 1;
            tracing::debug!("C: . (empty body: no valid recipients)");
            self.push_wire(now, b".\r\n");
            self.expect(now, Pending::DataEnd);
            return;
        }
        tx.data_go = true;
        let finished = tx.finished;
        if finished {
            tx.sent += 1;
        }
        let body = std::mem::take(&mut tx.body);
        if !body.is_empty() {
            tracing::debug!(bytes = body.len(), "C: <body>");
            self.push_wire(now, &body);
        }
        if finished {
            self.expect(now, Pending::DataEnd);
        }
    }

    fn on_data_end(&mut self, tx: usize, reply: Reply) {
        let Some(tx) = self.transactions.get_mut(tx) else {
            return;
        };
        tx.data_ended = true;
        if tx.failure.is_some() {
            if !reply.is_positive() {
                tx.fail_body(reply, false);
            }
        } else if reply.category() == Category::PositiveCompletion {
            tx.final_reply = Some(reply);
        } else {
            tx.failure = Some(TransactionFailure::MessageRejected(reply));
        }
    }

    fn on_bdat(&mut self, tx_index: usize, last: bool, reply: Reply) {
        let Some(tx) = self.transactions.get_mut(tx_index) else {
            return;
        };
        if reply.category() == Category::PositiveCompletion {
            if last && tx.failure.is_none() {
                tx.final_reply = Some(reply);
            }
            return;
        }
        // RFC 3030 section 2: after a failed BDAT no further chunk may be sent.
        tx.fail_body(reply, false);
        self.drop_planned(tx_index);
    }

    /// 421: the server is going away. Transactions already reported stay as reported (the
    /// server took or refused them before saying goodbye); every one still in flight is lost.
    fn service_closing(&mut self, reply: Reply) {
        for tx in std::mem::take(&mut self.transactions) {
            self.events.push_back(Event::MessageDone {
                transaction: tx.id,
                outcome: MessageOutcome::Failed(TransactionFailure::ServiceClosing(reply.clone())),
            });
        }
        if let Some(exchange) = self.auth.take() {
            self.events.push_back(Event::AuthFailed {
                mechanism: exchange.mechanism(),
                failure: AuthFailure::Refused(reply.clone()),
            });
        }
        self.events
            .push_back(Event::SessionFailed(SessionFailure::ServiceNotAvailable(
                reply,
            )));
        self.transmit = Transmit::new();
        self.write_stall = None;
        self.close();
    }
}

/// Checks a free-text DSN value and xtext-encodes it behind `prefix`.
fn encode_dsn_text(
    value: &str,
    argument: Argument,
    max: usize,
    prefix: &str,
) -> Result<String, Misuse> {
    check_arg(value).map_err(|error| Misuse::InvalidArgument { argument, error })?;
    let encoded = format!("{prefix}{}", xtext(value));
    if encoded.len() > max {
        return Err(Misuse::ArgumentTooLong {
            argument,
            length: encoded.len(),
            max,
        });
    }
    Ok(encoded)
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
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        match self.state {
            State::AwaitingTls => return Err(self.poison(ProtocolError::InputAfterStartTls)),
            // The server said goodbye; whatever follows is of no consequence.
            State::Closed => return Ok(()),
            _ => {}
        }
        self.reader.extend(bytes);
        loop {
            let ehlo = self.outstanding.front() == Some(&Pending::Ehlo);
            let max_lines = if ehlo {
                self.config.limits.max_ehlo_lines
            } else {
                self.config.limits.max_reply_lines
            };
            let reply = match self.reader.next_reply(max_lines) {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                Err(error) => {
                    return Err(self.poison(ProtocolError::from_reply_error(error, ehlo)));
                }
            };
            if let Err(error) = self.on_reply(now, reply) {
                return Err(self.poison(error));
            }
            match self.state {
                // RFC 3207 section 6: nothing may follow the 220 in cleartext.
                State::AwaitingTls if !self.reader.is_empty() => {
                    return Err(self.poison(ProtocolError::InputAfterStartTls));
                }
                State::Closed => break,
                _ => {}
            }
        }
        Ok(())
    }

    fn handle_eof(&mut self, _now: Instant) -> Result<(), ProtocolError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        match self.state {
            State::Closing | State::Closed => {
                self.close();
                Ok(())
            }
            _ => {
                let phase = self.current_phase();
                Err(self.poison(ProtocolError::UnexpectedEof { phase }))
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        if let Some((deadline, phase)) = self.reply_deadline()
            && now >= deadline
        {
            return Err(self.poison(ProtocolError::Timeout { phase }));
        }
        if let (Some(stall), Some(deadline)) = (self.write_stall, self.stall_deadline())
            && now >= deadline
        {
            if stall.progress == self.write_progress {
                return Err(self.poison(ProtocolError::Timeout {
                    phase: Phase::DataBlock,
                }));
            }
            // Bytes went out since the timer started: start a new block.
            self.start_write_stall(now);
        }
        Ok(())
    }

    fn poll_transmit(&self) -> Option<&[u8]> {
        if self.poisoned.is_some() {
            return None;
        }
        self.transmit.pending()
    }

    fn advance_transmit(&mut self, written: usize) {
        if self.poisoned.is_some() {
            return;
        }
        self.transmit.advance(written);
        if written > 0 {
            self.write_progress += 1;
        }
        if self.transmit.is_empty() {
            self.write_stall = None;
        }
        self.update_writable();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.poisoned.is_some() || self.state == State::Closed {
            return None;
        }
        let reply = self.reply_deadline().map(|(deadline, _)| deadline);
        match (reply, self.stall_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How both drivers (tokio and blocking) build and set up this client.
impl Protocol for Client {
    type Config = Config;

    /// Submissions (RFC 8314) and submission (RFC 6409).
    const PORTS: StandardPorts = StandardPorts {
        implicit_tls: 465,
        plain: 587,
    };

    fn start(config: Config, now: Instant) -> Self {
        Self::new(config, now)
    }

    fn set_up(event: &Event) -> SetUp {
        match event {
            Event::Ready(_) => SetUp::Ready,
            Event::GreetingRefused(_) | Event::SessionFailed(_) | Event::Closed => SetUp::Refused,
            _ => SetUp::Pending,
        }
    }
}
