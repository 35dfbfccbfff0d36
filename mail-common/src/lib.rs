//! Pieces shared by the `pop3-proto` and `smtp-submit` crates, so neither protocol carries a copy.
//!
//! - [`secret`]: [`Secret`], a wrapper whose `Debug` never shows the value (passwords, tokens).
//! - [`line`](mod@line): [`LineReader`], bounded CRLF line framing over a receive buffer (memchr-based).
//! - [`scan`]: word-at-a-time byte search and copy for the dot-stuffing codecs, where lines
//!   are too short for `memchr`'s per-call set-up to pay off.
//! - [`arg`]: [`check_arg`], the "no CR, LF or NUL in a command argument" rule, applied before
//!   anything is sent.
//! - [`date`]: RFC 5322 date formatting for the mail the account layer and the test server
//!   compose.
//! - [`class`]: [`FailureClass`], the transient/permanent classification of a server refusal,
//!   and [`FailureKind`], what both adapters' errors answer with `kind()`.
//! - [`security`](mod@security): [`Security`], how a connection is protected.
//! - [`machine`]: the [`Machine`] trait every sans-IO core implements, and [`Transmit`], the
//!   outgoing buffer with partial-write accounting.
//! - [`sasl`]: client-side SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256, XOAUTH2,
//!   OAUTHBEARER) as sans-IO step machines; the protocols wrap them in AUTH commands.
//! - `setup` (feature `tokio` or `blocking`): what both drivers share for connection set-up:
//!   `ConnectOptions`, `TrustRoots` and the rustls configuration, `SetupTimeouts`,
//!   `TransportError` (with the diagnosis of a TLS mode that does not match the port).
//! - `blocking` (feature `blocking`): the driver over `std::net` and rustls, no async runtime,
//!   that both protocol crates re-export as `blocking::Connection`.
//! - `happy_eyeballs` (feature `tokio`): RFC 8305 connection racing over a host's IPv6 and IPv4
//!   addresses, so a black-holed address costs one short delay, not the connect deadline.
//! - `transport` (feature `tokio`): TCP + rustls connection set-up, STARTTLS/STLS upgrade and the
//!   trust-root choice.
//! - `connection` (feature `tokio`): what both tokio adapters' sessions are built on: the
//!   `ConnectOptions`, the set-up loop, the broken flag and the cancelled-call check.
//!
//! Nothing outside `transport`, `connection` and `blocking` performs I/O, reads a clock or spawns a task.
#![forbid(unsafe_code)]

pub mod arg;
#[cfg(feature = "blocking")]
pub mod blocking;
pub mod class;
#[cfg(feature = "tokio")]
pub mod connection;
pub mod date;
#[cfg(feature = "tokio")]
pub mod happy_eyeballs;
pub mod line;
pub mod machine;
pub mod sasl;
pub mod scan;
pub mod secret;
pub mod security;
#[cfg(any(feature = "tokio", feature = "blocking"))]
pub mod setup;
pub mod timeout;
#[cfg(feature = "tokio")]
pub mod transport;

pub use arg::{ForbiddenByte, check_arg};
pub use class::{FailureClass, FailureKind};
pub use line::{LineError, LineReader};
pub use machine::{Machine, Protocol, SetUp, SetupConfig, StandardPorts, Transmit};
pub use secret::Secret;
pub use security::Security;
pub use timeout::{SetupPhase, Timeout};

/// A request a sans-IO core refused without queuing anything, with the caller's value handed
/// back (an `Envelope`, a `Login`, a command), so nothing the caller built is lost. Each
/// protocol crate names it with its own reason type: `Rejected<T> = mail_common::Rejected<T,
/// Misuse>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected<T, R> {
    /// Why it was refused.
    pub reason: R,
    /// What the caller passed in, unchanged.
    pub value: T,
}

/// The examples of the crate's README.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Declares a crate's low-level modules (parsers, codecs): public, but hidden from the docs,
/// when that crate's `_internal` feature is on, so its fuzz targets and benchmarks can reach
/// them; private otherwise, so they are no part of its semver surface (the style of str0m's
/// `_internal_test_exports`). The feature's leading underscore marks it as not for users.
#[doc(hidden)]
#[macro_export]
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "_internal")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "_internal"))]
        #[allow(unreachable_pub)]
        mod $name;
    )*};
}
