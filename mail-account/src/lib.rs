//! Mail account settings and discovery (POP3 + SMTP submission), and account-level fetch and send.
//!
//! - [`settings`]: the account model ([`Account`], [`ManualSettings`]) and its TOML form, with
//!   unknown keys refused by name and passwords kept in [`mail_common::Secret`].
//! - [`discover`]: automatic discovery from an address, in order: the bundled provider database,
//!   the provider's autoconfig file, DNS SRV, MX (reduced with the Public Suffix List), and
//!   probing guessed hosts. Every value reports its source and every network request is listed.
//!   Submission is never chosen on port 25; plaintext is never chosen.
//! - [`providers`]: the bundled database (generated from the Thunderbird ISPDB, MPL-2.0, plus
//!   curated entries and hints).
//! - [`autoconfig`]: the `config-v1.1.xml` parser.
//!   Under it: [`discover::dns`], [`discover::http`] (the injectable resolver and HTTP client,
//!   with hickory and reqwest/rustls defaults) and [`discover::probe`] (step 5, greeting +
//!   CAPA/EHLO probes over TLS with the protocol crates' sessions).
//! - [`domain`]: addresses, UTS-46 and PSL helpers.
//! - [`compose`]: a simple text message with the headers a mail client adds.
//! - [`headers`]: recipients from To/Cc/Bcc and Bcc removal, for sendmail-style submission.
//! - [`connect`]: from settings to a logged-in POP3 or authenticated SMTP session.
//! - [`deliver`]: the commit protocol of a delivery target (stage, make durable, acknowledge)
//!   as a trait, implemented by the Maildir [`store::Store`].
//! - [`fetch`]: the crash-safe POP3 fetch engine (a session into a [`deliver::Delivery`]).
//! - [`poller`]: many accounts checked on their own schedules in one runtime, with limits per
//!   host, jitter, backoff, `LOGIN-DELAY`/`[IN-USE]` honoured and permanent failures parked.
//! - [`preview`]: what is on a POP3 server (`LIST`, `UIDL`, `TOP n 0`), with header fields
//!   decoded (RFC 2047, Japanese legacy charsets, broken real-world encodings).
//! - [`roundtrip`]: send a test message to oneself and find it over POP3 by its Message-ID.
//! - [`verify`]: login verification (log in to both servers, send nothing).
//! - [`diagnose`]: one classification of failures: the coarse [`diagnose::FailureKind`] (exit
//!   statuses) and the advice-giving [`diagnose::VerifyFailure`] (wrong password, app password,
//!   POP disabled, OAuth2, certificate, port blocked, cleartext refused).
//! - `keyring` (feature `keyring`): passwords from the OS keyring (Keychain, Windows
//!   Credential Manager, Secret Service) for `[credential.keyring]` settings.
//!
//! Cargo features (all on by default): `discover` (DNS, HTTPS autoconfig, probes), `store`
//! (the Maildir/journal/mbox/MDA store, std only), `session` (both protocol adapters: connect,
//! verify, diagnose, fetch, poller, preview, roundtrip, compose, headers, OAuth 2.0 tokens;
//! implies `store`). With none of them the crate is data and lookup only: `settings`,
//! `providers`, `autoconfig` (its types) and `domain`.
#![forbid(unsafe_code)]

pub mod autoconfig;
#[cfg(feature = "session")]
pub mod compose;
#[cfg(feature = "session")]
pub mod connect;
#[cfg(feature = "store")]
pub mod deliver;
#[cfg(feature = "session")]
pub mod diagnose;
#[cfg(feature = "discover")]
pub mod discover;
pub mod domain;
#[cfg(feature = "session")]
pub mod fetch;
#[cfg(feature = "session")]
pub mod headers;
#[cfg(feature = "keyring")]
pub mod keyring;
pub mod oauth;
#[cfg(feature = "session")]
pub mod poller;
#[cfg(feature = "session")]
pub mod preview;
pub mod providers;
#[cfg(feature = "session")]
pub mod roundtrip;
pub mod settings;
/// Crash-safe local storage for a POP3 fetch: Maildir delivery, state journal, retention.
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "session")]
pub mod verify;

#[cfg(feature = "store")]
mod date;

#[cfg(feature = "discover")]
pub use discover::{Discoverer, DiscoveryOptions, DiscoveryReport, Source, discover_offline};
pub use domain::EmailAddress;
pub use settings::{Account, ManualSettings};

/// The examples of the crate's README.md, compiled and run as doc tests (they use the
/// default features).
#[cfg(all(doctest, feature = "discover", feature = "store", feature = "session"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
