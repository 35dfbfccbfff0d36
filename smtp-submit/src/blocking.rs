//! The blocking driver (feature `blocking`): [`Client`] over `std::net` and rustls, no async
//! runtime. The driver is `mail_common::blocking`, shared with `pop3-proto`; this module names
//! it for SMTP submission.
//!
//! [`Connection::open`] connects, reads the greeting, sends EHLO and, with
//! [`Security::StartTls`](crate::Security), upgrades with STARTTLS and sends EHLO again; it
//! returns once the client is ready to authenticate and send. Commands then go to
//! [`Connection::machine`] and each [`Connection::next_event`] blocks until the client has an
//! event.
//!
//! ```no_run
//! use std::time::Instant;
//! use smtp_submit::blocking::{ConnectOptions, Connection};
//! use smtp_submit::{
//!     Address, AuthMethod, ClientName, Config, Credentials, Envelope, Event, MailOptions,
//!     Security,
//! };
//!
//! let options = ConnectOptions::new("smtp.example.org");
//! let config = Config::new(ClientName::new("client.example.org")?, Security::StartTls);
//! let mut conn = Connection::open(&options, config)?;
//! let now = Instant::now();
//! let credentials = Credentials::password("alice", "secret");
//! conn.machine().authenticate(now, &credentials, AuthMethod::Auto, &[])?;
//! let Event::Authenticated { .. } = conn.next_event()? else { return Err("login failed".into()) };
//! let envelope = Envelope::new(Some(Address::new("alice@example.org")?))
//!     .with_recipient(Address::new("bob@example.org")?);
//! let body = b"Subject: hi\r\n\r\nHello\r\n";
//! conn.machine().send_mail_bytes(now, envelope, MailOptions::default(), body).map_err(|r| r.reason)?;
//! loop {
//!     if let Event::MessageDone { outcome, .. } = conn.next_event()? {
//!         println!("{outcome:?}");
//!         break;
//!     }
//! }
//! conn.machine().quit(Instant::now())?;
//! while !matches!(conn.next_event()?, Event::Closed) {}
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use mail_common::blocking::{
    ConnectOptions, SetUp, SetupPhase, SetupTimeouts, StandardPorts, TransportError, TrustRoots,
};

use crate::Client;
#[cfg(doc)]
use crate::Event;

/// An SMTP submission connection driving [`Client`], from `open` to `QUIT`.
pub type Connection = mail_common::blocking::Connection<Client>;

/// What [`Connection`] reports; [`Error::Refused`](mail_common::blocking::Error::Refused)
/// carries [`Event::GreetingRefused`], [`Event::SessionFailed`] or [`Event::Closed`];
/// [`Event::refusal`] names the refused step as the tokio adapter's `Error::Refused` does.
pub type Error = mail_common::blocking::ErrorOf<Client>;
