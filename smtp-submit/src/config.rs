//! Client configuration: security mode, memory limits and per-phase timeouts.
//!
//! Every knob has a documented default chosen to be safe first: TLS is required, credentials
//! never go over cleartext unless a loudly named option says so, memory is bounded and every
//! wait for the server has a deadline.

use std::time::Duration;

use crate::body::LineEndingPolicy;
use crate::envelope::ClientName;
use mail_common::sasl::NonceSource;

pub use mail_common::Security;

/// Bounds on memory and on what the server may send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest reply line accepted, CRLF excluded. Default 2048 (RFC 5321 asks for 512; real
    /// servers send longer texts).
    pub max_reply_line: usize,
    /// Most lines in one reply. Default 128.
    pub max_reply_lines: usize,
    /// Most lines in an EHLO reply. Default 64 (Postfix sends 12).
    pub max_ehlo_lines: usize,
    /// How many encoded body bytes may wait in the transmit buffer before
    /// [`Client::write_body`](crate::Client::write_body) stops accepting input. Default 64 KiB.
    pub send_window: usize,
    /// Size of a `BDAT` chunk, and the largest body sent as a single `BDAT n LAST`. Default 1 MiB.
    pub chunk_size: usize,
    /// Most SASL challenges answered in one `AUTH` exchange before the client cancels it with
    /// `*`. Default 16, as in `pop3-proto`; the mechanisms supported need at most 3, so a
    /// server that keeps challenging is stalling or probing.
    pub max_auth_challenges: usize,
    /// Most transactions in flight at once with PIPELINING (RFC 2920): whole messages
    /// ([`Client::send_mail_bytes`](crate::Client::send_mail_bytes)) started before the earlier
    /// ones are answered, so a run of messages is not one round trip each. 1 sends one
    /// transaction at a time. Default 32.
    pub max_pipelined_transactions: usize,
    /// Most encoded body bytes of the transactions in flight; the first transaction always
    /// goes, however large. Bounds what the client holds for messages not yet answered.
    /// Default 4 MiB.
    pub max_pipelined_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_reply_line: 2048,
            max_reply_lines: 128,
            max_ehlo_lines: 64,
            send_window: 64 * 1024,
            chunk_size: 1024 * 1024,
            max_auth_challenges: 16,
            max_pipelined_transactions: 32,
            max_pipelined_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_reply_line`].
    #[must_use]
    pub const fn with_max_reply_line(mut self, bytes: usize) -> Self {
        self.max_reply_line = bytes;
        self
    }
    /// Sets [`Limits::max_reply_lines`].
    #[must_use]
    pub const fn with_max_reply_lines(mut self, lines: usize) -> Self {
        self.max_reply_lines = lines;
        self
    }
    /// Sets [`Limits::max_ehlo_lines`].
    #[must_use]
    pub const fn with_max_ehlo_lines(mut self, lines: usize) -> Self {
        self.max_ehlo_lines = lines;
        self
    }
    /// Sets [`Limits::send_window`] (at least 1).
    #[must_use]
    pub const fn with_send_window(mut self, bytes: usize) -> Self {
        self.send_window = if bytes == 0 { 1 } else { bytes };
        self
    }
    /// Sets [`Limits::chunk_size`] (at least 1).
    #[must_use]
    pub const fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = if bytes == 0 { 1 } else { bytes };
        self
    }
    /// Sets [`Limits::max_auth_challenges`].
    #[must_use]
    pub const fn with_max_auth_challenges(mut self, challenges: usize) -> Self {
        self.max_auth_challenges = challenges;
        self
    }
    /// Sets [`Limits::max_pipelined_transactions`] (at least 1).
    #[must_use]
    pub const fn with_max_pipelined_transactions(mut self, count: usize) -> Self {
        self.max_pipelined_transactions = if count == 0 { 1 } else { count };
        self
    }
    /// Sets [`Limits::max_pipelined_bytes`].
    #[must_use]
    pub const fn with_max_pipelined_bytes(mut self, bytes: usize) -> Self {
        self.max_pipelined_bytes = bytes;
        self
    }
}

/// How long to wait for each reply. The defaults are the minimums of RFC 5321 section
/// 4.5.3.2, except for the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// The 220 greeting. Default 30 s, not RFC 5321's 5 minutes: those are written for relays,
    /// which retry later anyway. A submission client has a person waiting, and the common
    /// cause of a silent server is the wrong TLS mode (STARTTLS against port 465, which waits
    /// for a TLS handshake), which no wait cures; a real submission server greets within
    /// seconds, and 30 s leaves room for a slow reverse-DNS lookup on its side.
    pub greeting: Duration,
    /// EHLO, HELO, STARTTLS, AUTH, RSET and QUIT replies. Default 5 minutes.
    pub command: Duration,
    /// The `MAIL` reply. Default 5 minutes.
    pub mail: Duration,
    /// Each `RCPT` reply. Default 5 minutes.
    pub rcpt: Duration,
    /// The 354 reply to `DATA`. Default 2 minutes.
    pub data_init: Duration,
    /// Progress while body bytes wait to be written. Default 3 minutes.
    pub data_block: Duration,
    /// The reply after the end of data, and each `BDAT` reply. Default 10 minutes.
    pub data_termination: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        Self {
            greeting: Duration::from_secs(30),
            command: Duration::from_secs(5 * MINUTE),
            mail: Duration::from_secs(5 * MINUTE),
            rcpt: Duration::from_secs(5 * MINUTE),
            data_init: Duration::from_secs(2 * MINUTE),
            data_block: Duration::from_secs(3 * MINUTE),
            data_termination: Duration::from_secs(10 * MINUTE),
        }
    }
}

impl Timeouts {
    /// Sets [`Timeouts::greeting`].
    #[must_use]
    pub const fn with_greeting(mut self, timeout: Duration) -> Self {
        self.greeting = timeout;
        self
    }
    /// Sets [`Timeouts::command`].
    #[must_use]
    pub const fn with_command(mut self, timeout: Duration) -> Self {
        self.command = timeout;
        self
    }
    /// Sets [`Timeouts::mail`].
    #[must_use]
    pub const fn with_mail(mut self, timeout: Duration) -> Self {
        self.mail = timeout;
        self
    }
    /// Sets [`Timeouts::rcpt`].
    #[must_use]
    pub const fn with_rcpt(mut self, timeout: Duration) -> Self {
        self.rcpt = timeout;
        self
    }
    /// Sets [`Timeouts::data_init`].
    #[must_use]
    pub const fn with_data_init(mut self, timeout: Duration) -> Self {
        self.data_init = timeout;
        self
    }
    /// Sets [`Timeouts::data_block`].
    #[must_use]
    pub const fn with_data_block(mut self, timeout: Duration) -> Self {
        self.data_block = timeout;
        self
    }
    /// Sets [`Timeouts::data_termination`].
    #[must_use]
    pub const fn with_data_termination(mut self, timeout: Duration) -> Self {
        self.data_termination = timeout;
        self
    }

    /// Sets every wait for the server (greeting, each reply, body progress) to `timeout`: one
    /// "server timeout" setting, as mail clients offer.
    #[must_use]
    pub const fn with_server_waits(self, timeout: Duration) -> Self {
        self.with_greeting(timeout)
            .with_command(timeout)
            .with_mail(timeout)
            .with_rcpt(timeout)
            .with_data_init(timeout)
            .with_data_block(timeout)
            .with_data_termination(timeout)
    }
}

/// Everything a [`Client`](crate::Client) needs to know before the first byte.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The name sent with EHLO/HELO.
    pub client_name: ClientName,
    /// How the connection is protected. Default [`Security::ImplicitTls`] (port 465); with
    /// [`Security::StartTls`] the client upgrades before anything else and ends the session
    /// if the server does not offer or refuses STARTTLS.
    pub security: Security,
    /// Memory and input bounds.
    pub limits: Limits,
    /// Per-phase reply deadlines.
    pub timeouts: Timeouts,
    /// Bare CR/LF handling in message bodies. Default [`LineEndingPolicy::Normalize`].
    pub line_endings: LineEndingPolicy,
    /// Use PIPELINING when offered. Default true.
    pub pipelining: bool,
    /// Use CHUNKING (`BDAT`) when offered. Default true.
    pub chunking: bool,
    /// Where a SCRAM client nonce comes from when [`Client::authenticate`](crate::Client::authenticate)
    /// is given none (an empty slice). Default: the operating system's random source.
    pub nonce_source: NonceSource,
    cleartext_credentials: bool,
}

/// `EHLO localhost` ([`ClientName::localhost`]) over implicit TLS, with the defaults of
/// [`Config::new`].
impl Default for Config {
    fn default() -> Self {
        Self::new(ClientName::localhost(), Security::ImplicitTls)
    }
}

impl Config {
    /// A configuration with the defaults of [`Limits`] and [`Timeouts`], normalised line
    /// endings, PIPELINING and CHUNKING used when offered, and credentials refused without TLS.
    pub fn new(client_name: ClientName, security: Security) -> Self {
        Self {
            client_name,
            security,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            line_endings: LineEndingPolicy::default(),
            pipelining: true,
            chunking: true,
            nonce_source: NonceSource::system(),
            cleartext_credentials: false,
        }
    }

    /// Sets the name sent with EHLO/HELO.
    #[must_use]
    pub fn with_client_name(mut self, client_name: ClientName) -> Self {
        self.client_name = client_name;
        self
    }

    /// Sets [`Config::security`].
    #[must_use]
    pub const fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Sets the limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the timeouts.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the line-ending policy for bodies.
    #[must_use]
    pub const fn with_line_endings(mut self, policy: LineEndingPolicy) -> Self {
        self.line_endings = policy;
        self
    }

    /// Enables or disables PIPELINING (when the server offers it).
    #[must_use]
    pub const fn with_pipelining(mut self, enabled: bool) -> Self {
        self.pipelining = enabled;
        self
    }

    /// Enables or disables CHUNKING/`BDAT` (when the server offers it).
    #[must_use]
    pub const fn with_chunking(mut self, enabled: bool) -> Self {
        self.chunking = enabled;
        self
    }

    /// Sets [`Config::nonce_source`].
    #[must_use]
    pub const fn with_nonce_source(mut self, source: NonceSource) -> Self {
        self.nonce_source = source;
        self
    }

    /// Lets AUTH run without TLS, exposing the password (or a hash open to offline guessing)
    /// to anyone on the path. Only for test servers on loopback.
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
    fn server_waits_set_every_wait_for_the_server() {
        let limit = Duration::from_secs(7);
        let t = Timeouts::default().with_server_waits(limit);
        let waits = [
            t.greeting,
            t.command,
            t.mail,
            t.rcpt,
            t.data_init,
            t.data_block,
            t.data_termination,
        ];
        assert_eq!(waits, [limit; 7]);
    }
}
