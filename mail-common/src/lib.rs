//! Pieces shared by the `pop3-proto` and `smtp-submit` crates, so neither protocol carries a copy.
//!
//! - [`secret`]: [`Secret`], a wrapper whose `Debug` never shows the value (passwords, tokens).
//! - [`line`](mod@line): [`LineReader`], bounded CRLF line framing over a receive buffer (memchr-based).
//! - [`scan`]: word-at-a-time byte search and copy for the dot-stuffing codecs, where lines
//!   are too short for `memchr`'s per-call set-up to pay off.
//! - [`arg`]: [`check_arg`], the "no CR, LF or NUL in a command argument" rule, applied before
//!   anything is sent.
//! - [`class`]: [`FailureClass`], the transient/permanent classification of a server refusal,
//!   and [`FailureKind`], what both adapters' errors answer with `kind()`.
//! - [`security`](mod@security): [`Security`], how a connection is protected.
//! - [`machine`]: the [`Machine`] trait every sans-IO core implements, and [`Transmit`], the
//!   outgoing buffer with partial-write accounting.
//! - [`sasl`]: client-side SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256, XOAUTH2,
//!   OAUTHBEARER) as sans-IO step machines; the protocols wrap them in AUTH commands.
//! - `happy_eyeballs` (feature `tokio`): RFC 8305 connection racing over a host's IPv6 and IPv4
//!   addresses, so a black-holed address costs one short delay, not the connect deadline.
//! - `transport` (feature `tokio`): TCP + rustls connection set-up, STARTTLS/STLS upgrade and the
//!   trust-root choice.
//! - `connection` (feature `tokio`): what both tokio adapters' sessions are built on: the
//!   `ConnectOptions`, the set-up loop, the broken flag and the cancelled-call check.
//!
//! Nothing outside `transport` and `connection` performs I/O, reads a clock or spawns a task.
#![forbid(unsafe_code)]

pub mod arg;
pub mod class;
#[cfg(feature = "tokio")]
pub mod connection;
#[cfg(feature = "tokio")]
pub mod happy_eyeballs;
pub mod line;
pub mod machine;
pub mod sasl;
pub mod scan;
pub mod secret;
pub mod security;
#[cfg(feature = "tokio")]
pub mod transport;

pub use arg::{ForbiddenByte, check_arg};
pub use class::{FailureClass, FailureKind};
pub use line::{LineError, LineReader};
pub use machine::{Machine, Transmit};
pub use secret::Secret;
pub use security::Security;

/// The examples of the crate's README.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
