//! Whether a refusal from the server is worth retrying later.

/// The class of a server refusal (an SMTP 4xx/5xx reply, a POP3 `-ERR`).
///
/// SMTP derives it from the reply code (RFC 5321 section 4.2.1) or the enhanced status code
/// (RFC 3463); POP3 from the response code (RFC 2449, RFC 3206): `[SYS/TEMP]`, `[IN-USE]` and
/// `[LOGIN-DELAY]` are transient, `[SYS/PERM]` and `[AUTH]` are permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// The same request may succeed later without any change (4xx, `[SYS/TEMP]`).
    Transient,
    /// Retrying the same request will fail again (5xx, `[SYS/PERM]`, `[AUTH]`).
    Permanent,
}

impl FailureClass {
    /// True for [`FailureClass::Transient`].
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Transient)
    }
}

/// What kind of failure ended an adapter call, for advice and for a command line's exit code.
/// Both tokio adapters' errors answer it with `kind()`, so callers classify once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The TCP connection failed (host unknown, refused, unreachable) or broke.
    Network,
    /// TLS failed: certificate not trusted, not valid for the name, expired, no STARTTLS, or
    /// implicit TLS against a port that greets in plaintext.
    Tls,
    /// The server rejected the credentials or the mechanism.
    Auth,
    /// The server broke the protocol (or a limit was exceeded).
    Protocol,
    /// The server did not answer in time.
    Timeout,
    /// The server refused a command (a reply, not a broken session).
    Refused,
    /// The request or the settings are unusable (refused by the client before sending).
    Config,
    /// The caller's own reader or writer failed (a message file, an output file).
    LocalIo,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Network => "network",
            Self::Tls => "TLS",
            Self::Auth => "authentication",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Refused => "server refused",
            Self::Config => "settings",
            Self::LocalIo => "local I/O",
        })
    }
}
