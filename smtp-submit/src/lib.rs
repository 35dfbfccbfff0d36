//! Sans-IO SMTP submission client: EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA, BDAT, PIPELINING.
//!
//! [`Client`] is a state machine: bytes from the server go in, bytes for the server and
//! [`Event`]s come out, deadlines are reported as data. It performs no I/O, reads no clock and
//! spawns nothing, so the same core runs under tokio, a blocking socket loop, or a test that
//! feeds a transcript.
//!
//! # What it does
//!
//! - **Session**: greeting, EHLO (HELO fallback for old servers, but never when TLS is still to be
//!   negotiated), capability parsing, and STARTTLS when [`Security::StartTls`] requires it. Any
//!   byte received after the STARTTLS reply and before the handshake is a fatal
//!   [`ProtocolError::InputAfterStartTls`] (response injection); after the handshake everything
//!   learnt is forgotten and EHLO is repeated.
//! - **AUTH** (RFC 4954) with the mechanisms of `mail_common::sasl`, the strongest by default,
//!   never a silent fallback, never without TLS unless explicitly allowed. The exchange itself
//!   (base64, the 512-octet line, `*`, the challenge cap, the SCRAM verdict) is
//!   `mail_common::sasl::AuthExchange`, shared with POP3.
//! - **Transactions**: with PIPELINING, `MAIL`, all `RCPT`s and `DATA` leave in one flight; with
//!   PIPELINING and CHUNKING a small message leaves in one flight with `BDAT n LAST`, one round
//!   trip per message. Whole messages are also pipelined across transactions (RFC 2920): the
//!   next message leaves before the replies to the one before arrive, within a window of
//!   [`Limits::max_pipelined_transactions`] and [`Limits::max_pipelined_bytes`], each opening
//!   with an `RSET` so a refusal of its predecessor cannot leak into it. Every reply is read and
//!   attributed to its command and its transaction (RFC 2920 section 3.1): per-recipient
//!   outcomes, an empty `.` when `DATA` was accepted but no recipient was, `RSET` before the next
//!   message after a failed one.
//! - **Body**: streamed with a bounded window; dots stuffed at every line start including byte 0,
//!   bare CR/LF normalised (or refused), so no input can end the data early (see [`LineEndingPolicy`]).
//! - **Envelope**: typed and validated ([`Address`], [`MailOptions`], [`Recipient`]); SIZE,
//!   8BITMIME, SMTPUTF8, DSN and REQUIRETLS are checked against the server before sending.
//!
//! # Driving the client
//!
//! After every call that feeds input or asks for something, drain the client: write what
//! [`Machine::poll_transmit`] offers and report it with [`Machine::advance_transmit`], take every
//! [`Client::poll_event`], then wait for input, end of stream or the instant of
//! [`Machine::poll_timeout`], and report it with [`Machine::handle_input`],
//! [`Machine::handle_eof`] or [`Machine::handle_timeout`].
//!
//! Errors come in three tiers, as in `pop3-proto`: [`Misuse`] (the request was refused, nothing
//! sent, the session is fine; a refused [`Envelope`] comes back in [`Rejected`]),
//! [`ProtocolError`] (fatal: close the connection; the client is poisoned and sends nothing
//! more) and server refusals, which are [`Event`]s carrying the [`Reply`] with its code,
//! enhanced status code and [`FailureClass`](mail_common::FailureClass). A server that cannot be
//! trusted with the session is fatal even when it answers politely: a missing or refused
//! STARTTLS when TLS is required ([`ProtocolError::StartTlsNotOffered`],
//! [`ProtocolError::StartTlsRefused`]) and a server that fails to prove it knows the password
//! ([`ProtocolError::Auth`]). A refused login, by contrast, is an event: the user may retry.
//!
//! # Example
//!
//! A scripted session over implicit TLS: one message to two recipients, one of whom is refused.
//!
//! ```
//! use std::time::Instant;
//! use smtp_submit::{
//!     Address, Client, ClientName, Config, Envelope, Event, Machine, MailOptions, MessageOutcome,
//!     RecipientOutcome, Security,
//! };
//!
//! /// Plays the driver's part: takes everything the client wants to send.
//! fn sent(client: &mut Client) -> String {
//!     let mut out = Vec::new();
//!     while let Some(bytes) = client.poll_transmit() {
//!         out.extend_from_slice(bytes);
//!         let written = bytes.len();
//!         client.advance_transmit(written);
//!     }
//!     String::from_utf8(out).unwrap()
//! }
//!
//! let now = Instant::now();
//! let config = Config::new(ClientName::new("client.example.org")?, Security::ImplicitTls);
//! let mut client = Client::new(config, now);
//! assert_eq!(sent(&mut client), ""); // SMTP servers speak first
//!
//! client.handle_input(now, b"220 mail.example.org ESMTP\r\n")?;
//! assert!(matches!(client.poll_event(), Some(Event::Greeting(reply)) if reply.code() == 220));
//! assert_eq!(sent(&mut client), "EHLO client.example.org\r\n");
//! client.handle_input(
//!     now,
//!     b"250-mail.example.org\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 1000000\r\n",
//! )?;
//! let Some(Event::Ready(capabilities)) = client.poll_event() else { panic!() };
//! assert!(capabilities.pipelining() && capabilities.chunking());
//!
//! let envelope = Envelope::new(Some(Address::new("alice@example.org")?))
//!     .with_recipient(Address::new("bob@example.org")?)
//!     .with_recipient(Address::new("nobody@example.org")?);
//! let id = client.send_mail_bytes(now, envelope, MailOptions::default(), b"Subject: hi\n\n.Hello\n")?;
//! // One flight, one round trip: bare LFs became CRLF, the leading dot needs no stuffing in BDAT.
//! assert_eq!(
//!     sent(&mut client),
//!     "MAIL FROM:<alice@example.org> SIZE=23\r\n\
//!      RCPT TO:<bob@example.org>\r\n\
//!      RCPT TO:<nobody@example.org>\r\n\
//!      BDAT 23 LAST\r\n\
//!      Subject: hi\r\n\r\n.Hello\r\n"
//! );
//! client.handle_input(
//!     now,
//!     b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n250 2.0.0 Ok: queued as 4F2A\r\n",
//! )?;
//! let mut refused = Vec::new();
//! let mut queue_id = String::new();
//! while let Some(event) = client.poll_event() {
//!     match event {
//!         Event::Recipient { address, outcome: RecipientOutcome::Rejected(reply), .. } => {
//!             refused.push((address.to_string(), reply.code(), reply.enhanced().unwrap().to_string()));
//!         }
//!         Event::MessageDone { transaction, outcome: MessageOutcome::Sent { reply, accepted } } => {
//!             assert_eq!((transaction, accepted), (id, 1));
//!             queue_id = reply.text();
//!         }
//!         _ => {}
//!     }
//! }
//! assert_eq!(refused, [("nobody@example.org".to_string(), 550, "5.1.1".to_string())]);
//! assert_eq!(queue_id, "Ok: queued as 4F2A");
//!
//! client.quit(now)?;
//! assert_eq!(sent(&mut client), "QUIT\r\n");
//! client.handle_input(now, b"221 2.0.0 Bye\r\n")?;
//! assert_eq!(client.poll_event(), Some(Event::Closed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # With tokio
//!
//! The `tokio` feature adds `smtp_submit::tokio::Session`, an adapter that connects
//! (implicit TLS, STARTTLS or an explicitly dangerous plaintext), authenticates, and streams
//! messages from any `AsyncRead`, driving this client with `mail_common::transport::Driver`.
//!
//! # Blocking
//!
//! The `blocking` feature adds `smtp_submit::blocking::Connection`: this client over
//! `std::net` and rustls, without an async runtime. `open` does the TLS or STARTTLS set-up,
//! then `next_event` blocks until the client has an event. The driver is
//! `mail_common::blocking`, the same one `pop3-proto` uses.
//!
//! # Low-level modules
//!
//! `reply` (reply framing and parsing), `capabilities` (EHLO keywords) and `body` (the DATA/BDAT
//! encoder) are reachable for the fuzz targets and
//! benchmarks through the hidden `_internal` feature; what applications need of them is
//! re-exported at the crate root.
#![forbid(unsafe_code)]

mod auth;
mod client;
mod config;
mod content;
mod envelope;
mod error;
mod event;
mail_common::internal_modules!(body, capabilities, reply);
#[cfg(feature = "blocking")]
pub mod blocking;
mod pipelined;
mod report;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use auth::AuthMethod;
pub use body::{BareLineEnding, LineEndingPolicy};
pub use capabilities::{Capabilities, EhloKeyword};
pub use client::Client;
pub use config::{Config, Limits, Security, Timeouts};
pub use content::{ContentScan, Undeclared};
pub use envelope::{
    Address, BodyType, ClientName, Envelope, InvalidValue, MAX_ADDRESS_LEN, MAX_CLIENT_NAME_LEN,
    MailOptions, Notify, Recipient, Ret, xtext,
};
pub use error::{Argument, Extension, Misuse, Phase, ProtocolError, Rejected, Stage};
pub use event::{
    AuthFailure, Event, MessageOutcome, RecipientOutcome, SessionFailure, TransactionFailure,
    TransactionId,
};
pub use mail_common::Machine;
pub use mail_common::sasl::{
    AuthAbort, AuthViolation, Credentials, Mechanism, NonceSource, OAuthErrorChallenge, SaslError,
};
pub use pipelined::PipelinedReports;
pub use reply::{Category, EnhancedStatusCode, MalformedReply, Reply};
pub use report::{NotSent, RecipientBatches, RecipientReport, ReportCollector, SendReport};

/// The examples of the crate's README.md, compiled and run as doc tests (they use both
/// drivers).
#[cfg(all(doctest, feature = "tokio", feature = "blocking"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
