//! A sans-IO POP3 client (RFC 1939, 2449, 2595, 3206, 5034, 6856).
//!
//! [`Client`] is a state machine: it never touches a socket or a clock, and the one random
//! input it may need (a SCRAM nonce the caller did not give) comes from the function in
//! [`Config::nonce_source`], which tests replace. The driver (a tokio task, a blocking loop, a
//! test) feeds it the bytes it reads and the current time, writes what it offers, and reacts to
//! its [`Event`]s. That keeps every protocol decision testable byte for byte, and lets one core
//! serve any I/O model.
//!
//! # What the client does by itself
//!
//! - After the greeting it asks for the capabilities (`CAPA`); with [`Security::StartTls`] it then
//!   upgrades with `STLS`, asks the driver to run the handshake ([`Event::StartTls`]), forgets
//!   the capabilities and asks again. Any byte received between the `STLS` reply and the
//!   handshake is fatal ([`ProtocolError::InputAfterStartTls`]). Only then comes
//!   [`Event::Ready`].
//! - It refuses to send any credential over a connection without TLS, unless told otherwise
//!   with a loudly named option ([`Config::allow_cleartext_credentials_dangerously`]).
//! - It pipelines commands when the server announces `PIPELINING` (RFC 2449), within a window
//!   of commands and expected bytes ([`Limits`]); otherwise it sends one command per reply.
//!   Commands the caller queues beyond the window wait inside the client.
//! - It streams `RETR`/`TOP` bodies out as [`Event::MessageChunk`]s, dot-unstuffed, without
//!   holding the message: memory does not grow with message size.
//! - It bounds everything a server could inflate ([`Limits`]) and every wait ([`Timeouts`]).
//!
//! # Driving it
//!
//! After any call that feeds or asks something, drain [`Machine::poll_transmit`] (then
//! [`Machine::advance_transmit`]), [`Client::poll_event`] and [`Machine::poll_timeout`]; then
//! wait for input, end of stream or the deadline.
//!
//! Errors come in three tiers: [`Rejected`] hands a request back to the caller ([`Misuse`]:
//! wrong state, CR/LF in an argument, no TLS for credentials) and nothing changes;
//! [`ProtocolError`] is fatal and poisons the client; a server's `-ERR` is an event
//! ([`Event::Refused`], [`Event::LoginFailed`], ...) carrying a typed [`ResponseCode`] and
//! its [`FailureClass`].
//!
//! # Example
//!
//! A scripted session over implicit TLS (the driver did the handshake before the greeting):
//!
//! ```
//! use std::time::Instant;
//! use pop3_proto::{Client, Command, Config, Credentials, Event, Login, Machine, Security};
//!
//! // What a driver does after each step: take what the client wants to send.
//! fn sent(client: &mut Client) -> String {
//!     let bytes = client.poll_transmit().unwrap_or_default().to_vec();
//!     client.advance_transmit(bytes.len());
//!     String::from_utf8(bytes).unwrap()
//! }
//!
//! let now = Instant::now();
//! let mut client = Client::new(Config::new(Security::ImplicitTls), now);
//!
//! client.handle_input(now, b"+OK POP3 ready\r\n")?;
//! assert!(matches!(client.poll_event(), Some(Event::Greeting(_))));
//! assert_eq!(sent(&mut client), "CAPA\r\n");
//!
//! client.handle_input(now, b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")?;
//! let Some(Event::Ready(caps)) = client.poll_event() else { panic!() };
//! assert!(caps.user && caps.uidl && !caps.pipelining);
//!
//! // No SASL offered, no APOP timestamp: automatic login picks USER/PASS.
//! client.login(now, Login::auto(Credentials::password("alice", "secret")))?;
//! assert_eq!(sent(&mut client), "USER alice\r\n");
//! client.handle_input(now, b"+OK\r\n")?;
//! assert_eq!(sent(&mut client), "PASS secret\r\n");
//! client.handle_input(now, b"+OK maildrop locked and ready\r\n")?;
//! assert!(matches!(client.poll_event(), Some(Event::LoggedIn { .. })));
//!
//! // Without PIPELINING the second command waits for the first reply.
//! let retr = client.send(now, Command::retr(1))?;
//! client.send(now, Command::Quit)?;
//! assert_eq!(sent(&mut client), "RETR 1\r\n");
//! client.handle_input(now, b"+OK 24 octets\r\nSubject: hi\r\n\r\n..dot\r\n.\r\n")?;
//! assert_eq!(client.poll_event(), Some(Event::MessageStart { id: retr, msg: 1 }));
//! let mut body = Vec::new();
//! while let Some(Event::MessageChunk { data, .. }) = client.poll_event() {
//!     body.extend_from_slice(&data); // the loop also consumes MessageEnd
//! }
//! assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
//!
//! assert_eq!(sent(&mut client), "QUIT\r\n");
//! client.handle_input(now, b"+OK bye\r\n")?;
//! client.handle_eof(now)?;
//! assert!(matches!(client.poll_event(), Some(Event::Done { command: Command::Quit, .. })));
//! assert_eq!(client.poll_event(), Some(Event::Closed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The tokio adapter
//!
//! With the `tokio` feature, `pop3_proto::tokio::Session` connects over
//! TCP and rustls, runs this client and offers `login`, `stat`, `list`, `uidl`, streaming
//! `retr_to`/`top_to`, pipelined `retr_many`, `dele`, `rset`, `noop` and `quit` as async
//! methods.
//!
//! # The blocking driver
//!
//! With the `blocking` feature, `pop3_proto::blocking::Connection` runs
//! this client over `std::net` and rustls without an async runtime: `open` does the TLS or
//! `STLS` set-up, then `next_event` blocks until the client has an event. [`Batch`] gives it
//! the tokio adapter's pipelined runs of `RETR`, `TOP` and `DELE`. The driver is
//! `mail_common::blocking`, the same one `smtp-submit` uses.
//!
//! # Low-level modules
//!
//! `parse` (single-line parsers) and `body` (the incremental body decoder) are reachable for
//! the fuzz targets and benchmarks through the hidden `_internal` feature; they are not part of
//! the API.
#![forbid(unsafe_code)]

mod auth;
mod batch;
mod capabilities;
mod client;
mod command;
mod config;
mod error;
mod event;
mod response;
mail_common::internal_modules!(body, parse);
#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use batch::{Batch, BatchKind};
pub use capabilities::{Capabilities, Capability, Expire, OtherCapability, Policy};
pub use client::Client;
pub use command::{AuthMethod, Command, CommandId, Login};
pub use config::{Config, Limits, Security, Timeouts};
pub use error::{Malformed, Misuse, Phase, ProtocolError, Rejected};
pub use event::{AuthAbort, Event, LoginFailure, ScanEntry, UidEntry};
pub use mail_common::sasl::{
    AuthViolation, Credentials, Mechanism, NonceSource, OAuthErrorChallenge, SaslError,
};
pub use mail_common::{FailureClass, Machine};
pub use response::{Response, ResponseCode};

/// The examples of the crate's README.md, compiled and run as doc tests (they use both
/// drivers).
#[cfg(all(doctest, feature = "tokio", feature = "blocking"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
