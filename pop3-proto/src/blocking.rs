//! The blocking driver (feature `blocking`): [`Client`] over `std::net` and rustls, no async
//! runtime. The driver is `mail_common::blocking`, shared with `smtp-submit`; this module
//! names it for POP3.
//!
//! [`Connection::open`] connects, reads the greeting, asks for the capabilities and, with
//! [`Security::StartTls`](crate::Security), upgrades with `STLS`; it returns once the client is
//! ready for a login (the greeting stays readable as [`Client::greeting`]). Commands then go to
//! [`Connection::machine`] and each [`Connection::next_event`] blocks until the client has an
//! event. A [`Batch`](crate::Batch) pipelines a run of `RETR`, `TOP` or `DELE`, as the tokio
//! adapter's `retr_many` and `dele_many` do.
//!
//! ```no_run
//! use std::time::Instant;
//! use pop3_proto::blocking::{ConnectOptions, Connection};
//! use pop3_proto::{Command, Config, Credentials, Event, Login, Security};
//!
//! let options = ConnectOptions::new("pop.example.org");
//! let mut conn = Connection::open(&options, Config::new(Security::ImplicitTls))?;
//! let login = Login::auto(Credentials::password("alice", "secret"));
//! conn.machine().login(Instant::now(), login).map_err(|r| r.reason)?;
//! let Event::LoggedIn { .. } = conn.next_event()? else { return Err("login failed".into()) };
//! conn.machine().send(Instant::now(), Command::Stat).map_err(|r| r.reason)?;
//! if let Event::Stat { count, .. } = conn.next_event()? {
//!     println!("{count} messages");
//! }
//! conn.machine().send(Instant::now(), Command::Quit).map_err(|r| r.reason)?;
//! while !matches!(conn.next_event()?, Event::Closed) {}
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use mail_common::blocking::{
    ConnectOptions, SetUp, SetupPhase, SetupTimeouts, StandardPorts, TransportError, TrustRoots,
};

use crate::Client;
#[cfg(doc)]
use crate::Event;

/// A POP3 connection driving [`Client`], from `open` to `QUIT`.
pub type Connection = mail_common::blocking::Connection<Client>;

/// What [`Connection`] reports; [`Error::Refused`](mail_common::blocking::Error::Refused)
/// carries [`Event::GreetingRefused`] (or [`Event::Closed`]).
pub type Error = mail_common::blocking::ErrorOf<Client>;
