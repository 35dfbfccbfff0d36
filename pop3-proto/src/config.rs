//! What the caller decides before the first byte: how the connection is protected, how much a
//! server may make us buffer, and how long we wait.
//!
//! Every number here is a bound on something a hostile or broken server could otherwise make
//! unbounded (memory, time). The defaults are chosen to never get in the way of a real server
//! while keeping the worst case small; each one documents its reasoning.

use std::time::Duration;

use mail_common::sasl::NonceSource;

pub use mail_common::Security;

/// Bounds on what the server can make the client hold or do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest status, listing, capability or SASL challenge line, terminator excluded.
    /// Default 8192: RFC 2449 caps the first response line at 512 octets, but SASL challenges
    /// (OAuth error documents, GSSAPI) are longer. Message body lines are *not* bounded by this:
    /// bodies are streamed, so an overlong body line costs no memory.
    pub max_line: usize,
    /// Most lines in one `CAPA` response. Default 128 (real servers send about 10; mpop
    /// stops at 50).
    pub max_capability_lines: usize,
    /// Most entries in one `LIST` or `UIDL` listing, which are collected before they are
    /// reported. Default 1 000 000: large enough for any real maildrop; the worst case is about
    /// 100 MB for a UIDL listing of 70-byte unique-ids.
    pub max_listing_entries: usize,
    /// Longest unique-id in a `UIDL` response. Default 70, the maximum of RFC 1939.
    pub max_uid_len: usize,
    /// Largest message body (after dot-unstuffing) accepted from `RETR`/`TOP`. Exceeding it is
    /// fatal, because the only way to re-synchronise would be to read and discard the rest of
    /// the body, which is exactly the traffic the limit is meant to avoid. Bodies are streamed,
    /// so this bounds transfer, not memory. Default 1 GiB.
    pub max_message_size: u64,
    /// Most commands sent and not yet answered while pipelining. Default 128: with small
    /// messages a smaller window leaves a link with a round trip of a few milliseconds idle
    /// between flights. Commands are a few bytes each, so the window costs the server nothing.
    pub max_in_flight: usize,
    /// Most response bytes expected from the commands in flight while pipelining (estimated
    /// from size hints, see [`crate::Command::Retr`]). Default 4 MiB: enough to keep a
    /// high-latency link busy, small enough that abandoning a session wastes little.
    pub max_bytes_in_flight: u64,
    /// Most commands accepted from the caller and not yet sent. Default 1024. Exceeding it is
    /// caller misuse and the command is handed back.
    pub max_queued_commands: usize,
    /// Most SASL challenges answered in one `AUTH` exchange before the client cancels it.
    /// Default 16; the mechanisms supported need at most 3.
    pub max_auth_challenges: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 8192,
            max_capability_lines: 128,
            max_listing_entries: 1_000_000,
            max_uid_len: 70,
            max_message_size: 1 << 30,
            max_in_flight: 128,
            max_bytes_in_flight: 4 << 20,
            max_queued_commands: 1024,
            max_auth_challenges: 16,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_line`].
    #[must_use]
    pub const fn with_max_line(mut self, value: usize) -> Self {
        self.max_line = value;
        self
    }

    /// Sets [`Limits::max_capability_lines`].
    #[must_use]
    pub const fn with_max_capability_lines(mut self, value: usize) -> Self {
        self.max_capability_lines = value;
        self
    }

    /// Sets [`Limits::max_listing_entries`].
    #[must_use]
    pub const fn with_max_listing_entries(mut self, value: usize) -> Self {
        self.max_listing_entries = value;
        self
    }

    /// Sets [`Limits::max_uid_len`].
    #[must_use]
    pub const fn with_max_uid_len(mut self, value: usize) -> Self {
        self.max_uid_len = value;
        self
    }

    /// Sets [`Limits::max_message_size`].
    #[must_use]
    pub const fn with_max_message_size(mut self, value: u64) -> Self {
        self.max_message_size = value;
        self
    }

    /// Sets [`Limits::max_in_flight`].
    #[must_use]
    pub const fn with_max_in_flight(mut self, value: usize) -> Self {
        self.max_in_flight = value;
        self
    }

    /// Sets [`Limits::max_bytes_in_flight`].
    #[must_use]
    pub const fn with_max_bytes_in_flight(mut self, value: u64) -> Self {
        self.max_bytes_in_flight = value;
        self
    }

    /// Sets [`Limits::max_queued_commands`].
    #[must_use]
    pub const fn with_max_queued_commands(mut self, value: usize) -> Self {
        self.max_queued_commands = value;
        self
    }

    /// Sets [`Limits::max_auth_challenges`].
    #[must_use]
    pub const fn with_max_auth_challenges(mut self, value: usize) -> Self {
        self.max_auth_challenges = value;
        self
    }
}

/// How long the client waits for the server in each phase of the session.
///
/// A deadline that passes is fatal ([`crate::ProtocolError::Timeout`]). While nothing is
/// outstanding no deadline runs: keeping an idle session alive (RFC 1939 servers log out after
/// at least 10 idle minutes) is the caller's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// From [`crate::Client::new`] to the complete greeting line. Default 60 s.
    pub greeting: Duration,
    /// From sending a command (or finishing the previous reply, when pipelining) to its status
    /// line. Default 60 s.
    pub reply: Duration,
    /// Longest silence inside a multi-line response (listing, capability list, message body).
    /// Default 60 s.
    pub data: Duration,
    /// From [`crate::Event::StartTls`] to [`crate::Client::tls_established`]: a handshake that
    /// never finishes must not hang the session (fetchmail CVE-2011-1947). Default 60 s.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        Self {
            greeting: MINUTE,
            reply: MINUTE,
            data: MINUTE,
            tls_handshake: MINUTE,
        }
    }
}

impl Timeouts {
    /// Sets [`Timeouts::greeting`].
    #[must_use]
    pub const fn with_greeting(mut self, value: Duration) -> Self {
        self.greeting = value;
        self
    }

    /// Sets [`Timeouts::reply`].
    #[must_use]
    pub const fn with_reply(mut self, value: Duration) -> Self {
        self.reply = value;
        self
    }

    /// Sets [`Timeouts::data`].
    #[must_use]
    pub const fn with_data(mut self, value: Duration) -> Self {
        self.data = value;
        self
    }

    /// Sets [`Timeouts::tls_handshake`].
    #[must_use]
    pub const fn with_tls_handshake(mut self, value: Duration) -> Self {
        self.tls_handshake = value;
        self
    }

    /// Sets every wait for the server (greeting, reply, data) to `value`: one "server timeout"
    /// setting, as mail clients offer. The STLS handshake deadline is left as it is.
    #[must_use]
    pub const fn with_server_waits(self, value: Duration) -> Self {
        self.with_greeting(value).with_reply(value).with_data(value)
    }
}

/// Everything a [`crate::Client`] is told at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How the connection is protected. Default [`Security::ImplicitTls`] (POP3S, port 995);
    /// with [`Security::StartTls`] the client upgrades with `STLS` (RFC 2595) before anything
    /// else and stops if the server does not offer or refuses it.
    pub security: Security,
    /// Resource bounds.
    pub limits: Limits,
    /// Per-phase deadlines.
    pub timeouts: Timeouts,
    /// Pipeline commands (RFC 2449) when the server announces `PIPELINING`. Default `true`;
    /// turn it off for servers that announce it and get it wrong.
    pub pipelining: bool,
    /// Where a SCRAM client nonce comes from when the login carries none
    /// ([`crate::Login::with_nonce`]). Default: the operating system's random source. Tests can
    /// set a fixed one for reproducible exchanges; [`NonceSource::none`] makes SCRAM without a
    /// caller's nonce a [`crate::Misuse::Sasl`] error instead.
    pub nonce_source: NonceSource,
    /// Private so that the only way to set it is the loudly named setter.
    cleartext_credentials: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self::new(Security::default())
    }
}

impl Config {
    /// A configuration with the given security mode and default limits and timeouts.
    pub fn new(security: Security) -> Self {
        Self {
            security,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            pipelining: true,
            nonce_source: NonceSource::system(),
            cleartext_credentials: false,
        }
    }

    /// Sets [`Config::security`].
    #[must_use]
    pub const fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Sets [`Config::limits`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`Config::timeouts`].
    #[must_use]
    pub const fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets [`Config::pipelining`].
    #[must_use]
    pub const fn with_pipelining(mut self, pipelining: bool) -> Self {
        self.pipelining = pipelining;
        self
    }

    /// Sets [`Config::nonce_source`].
    #[must_use]
    pub const fn with_nonce_source(mut self, source: NonceSource) -> Self {
        self.nonce_source = source;
        self
    }

    /// Allows credentials (passwords, tokens, and even APOP or SCRAM exchanges, which leak the
    /// user name and invite offline guessing) on a connection without TLS.
    ///
    /// Only meaningful with [`Security::Plaintext`]; intended for loopback tests and legacy
    /// servers on trusted networks. Anyone on the path can read or replay what is sent.
    #[must_use]
    pub const fn allow_cleartext_credentials_dangerously(mut self, allow: bool) -> Self {
        self.cleartext_credentials = allow;
        self
    }

    /// Whether [`Config::allow_cleartext_credentials_dangerously`] was set.
    pub const fn cleartext_credentials_allowed(&self) -> bool {
        self.cleartext_credentials
    }
}

/// What a driver needs to set the connection up.
impl mail_common::SetupConfig for Config {
    fn security(&self) -> Security {
        self.security
    }

    fn greeting_timeout(&self) -> Duration {
        self.timeouts.greeting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_waits_set_every_wait_for_the_server_but_not_the_handshake() {
        let limit = Duration::from_secs(7);
        let timeouts = Timeouts::default().with_server_waits(limit);
        assert_eq!(
            (timeouts.greeting, timeouts.reply, timeouts.data),
            (limit, limit, limit)
        );
        assert_eq!(timeouts.tls_handshake, Timeouts::default().tls_handshake);
    }
}
