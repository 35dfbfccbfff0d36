//! Connection set-up shared by the tokio and the blocking drivers (feature `tokio` or
//! `blocking`): where to connect ([`ConnectOptions`]), which certificate authorities to trust
//! ([`TrustRoots`], [`root_store`], [`client_config`]), the set-up deadlines
//! ([`SetupTimeouts`]) and what can go wrong ([`TransportError`], with the diagnosis of a TLS
//! mode that does not match the port).
//!
//! The items are re-exported where the tokio code always had them (`transport`,
//! `connection`), so both paths name the same types.

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

pub use crate::machine::StandardPorts;
pub use crate::timeout::SetupPhase;

/// The default connection attempt delay, as RFC 8305 section 5 recommends.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Orders `addrs` for connection attempts (RFC 8305 section 4): alternating between the address
/// families, starting with the family of the first address, each family in its given order.
/// Both drivers try addresses in this order (the tokio one racing them, the blocking one in turn).
///
/// ```
/// use mail_common::setup::interleave;
/// let addrs: Vec<std::net::SocketAddr> = ["[::1]:25", "[::2]:25", "[::3]:25", "192.0.2.1:25"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// let order: Vec<String> = interleave(addrs).iter().map(ToString::to_string).collect();
/// assert_eq!(order, ["[::1]:25", "192.0.2.1:25", "[::2]:25", "[::3]:25"]);
/// ```
pub fn interleave(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_is_v6 = first.is_ipv6();
    let (mut preferred, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first_is_v6);
    let mut ordered = Vec::with_capacity(addrs.len());
    preferred.reverse();
    other.reverse();
    while !preferred.is_empty() || !other.is_empty() {
        ordered.extend(preferred.pop());
        ordered.extend(other.pop());
    }
    ordered
}

/// Where and how to connect, for either protocol's `Session::connect`.
///
/// ```
/// use std::time::Duration;
/// use mail_common::setup::ConnectOptions;
/// use mail_common::setup::{SetupTimeouts, TrustRoots};
///
/// let options = ConnectOptions::new("127.0.0.1")
///     .with_port(11110)
///     .with_trust_roots(TrustRoots::CaFile("/etc/ssl/private-ca.pem".into()))
///     .with_tls_name("mail.example.net")
///     .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)));
/// assert_eq!(options.port, Some(11110));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Host name or IP address.
    pub host: String,
    /// TCP port; `None` means the protocol's standard port for the configured security mode
    /// (POP3: 995 or 110; SMTP submission: 465 or 587).
    pub port: Option<u16>,
    /// Which certificate authorities are trusted. Default: the web PKI.
    pub trust_roots: TrustRoots,
    /// The name the server certificate must be valid for; `None` means
    /// [`ConnectOptions::host`]. For connecting by IP address to a server whose certificate
    /// names a host.
    pub tls_name: Option<String>,
    /// Deadlines for the TCP connection and the TLS handshakes (implicit or after the
    /// upgrade). The protocol phases after them are bounded by the protocol's timeouts.
    pub timeouts: SetupTimeouts,
    /// Local address to connect from; `None` lets the system choose.
    pub local_addr: Option<IpAddr>,
}

impl ConnectOptions {
    /// Options for `host` on the standard port, with the web PKI roots and default deadlines.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            trust_roots: TrustRoots::default(),
            tls_name: None,
            timeouts: SetupTimeouts::default(),
            local_addr: None,
        }
    }

    /// Sets [`ConnectOptions::port`].
    #[must_use]
    pub const fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets [`ConnectOptions::trust_roots`].
    #[must_use]
    pub fn with_trust_roots(mut self, roots: TrustRoots) -> Self {
        self.trust_roots = roots;
        self
    }

    /// Sets [`ConnectOptions::tls_name`].
    #[must_use]
    pub fn with_tls_name(mut self, name: impl Into<String>) -> Self {
        self.tls_name = Some(name.into());
        self
    }

    /// Sets [`ConnectOptions::timeouts`].
    #[must_use]
    pub const fn with_timeouts(mut self, timeouts: SetupTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets [`ConnectOptions::local_addr`].
    #[must_use]
    pub const fn with_local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// The name the certificate is checked against.
    pub fn tls_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.host)
    }
}

/// Which certificate authorities a client trusts.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum TrustRoots {
    /// The Mozilla root program, as bundled by `webpki-roots`.
    #[default]
    WebPki,
    /// The web PKI roots plus the CA certificates in a PEM file (a private or corporate CA).
    WebPkiAndCaFile(PathBuf),
    /// Only the CA certificates in a PEM file.
    CaFile(PathBuf),
    /// A root store built by the caller.
    Store(Arc<RootCertStore>),
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebPki => f.write_str("WebPki"),
            Self::WebPkiAndCaFile(p) => f.debug_tuple("WebPkiAndCaFile").field(p).finish(),
            Self::CaFile(p) => f.debug_tuple("CaFile").field(p).finish(),
            Self::Store(s) => write!(f, "Store({} roots)", s.len()),
        }
    }
}

/// Connection set-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The CA file could not be read or holds no usable certificate.
    #[error("cannot use CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The host is not a valid DNS name or IP address for certificate checks.
    #[error("invalid server name {0:?} for TLS")]
    InvalidServerName(String),
    /// TCP connection failed.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A phase of the set-up took longer than allowed.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// What was under way.
        phase: SetupPhase,
        /// The limit that passed.
        after: Duration,
    },
    /// Implicit TLS was asked for, but the server spoke first, in plaintext: the port expects
    /// a plaintext greeting followed by STARTTLS (SMTP) or STLS (POP3), not TLS from the first
    /// byte.
    #[error(
        "{host}:{port} sent a plaintext greeting ({greeting:?}) where a TLS handshake was \
         expected: this port wants STARTTLS (STLS for POP3), not implicit TLS; connect with \
         STARTTLS/STLS, or use the implicit-TLS port (465 for SMTP submission, 995 for POP3)"
    )]
    PlaintextGreeting {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The start of what the server sent (printable ASCII, at most one line).
        greeting: String,
    },
    /// No greeting arrived in time. Without TLS first, the likeliest cause is a port that
    /// expects TLS from the first byte (465, 995): it waits for the client's handshake and
    /// says nothing.
    #[error("{}", describe_no_greeting(host, *port, *after, *implicit_tls))]
    NoGreeting {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// How long the client waited.
        after: Duration,
        /// Whether the connection used implicit TLS (the handshake had succeeded).
        implicit_tls: bool,
    },
    /// The TLS handshake failed (unknown CA, wrong host name, expired certificate, or the peer
    /// speaking something other than TLS).
    #[error("TLS handshake with {server_name} failed: {source}")]
    Tls {
        /// The name the certificate was checked against.
        server_name: String,
        /// The reason, as rustls reports it.
        source: io::Error,
    },
}

impl TransportError {
    /// What kind of failure this is.
    pub const fn kind(&self) -> crate::FailureKind {
        use crate::FailureKind;
        match self {
            Self::Tls { .. }
            | Self::PlaintextGreeting { .. }
            | Self::CaFile { .. }
            | Self::InvalidServerName(_) => FailureKind::Tls,
            Self::Timeout { .. } | Self::NoGreeting { .. } => FailureKind::Timeout,
            Self::Connect { .. } => FailureKind::Network,
        }
    }
}

/// True for the well-known ports that expect TLS from the first byte (RFC 8314): 465 (SMTP
/// submission), 995 (POP3), 993 (IMAP).
pub const fn is_implicit_tls_port(port: u16) -> bool {
    matches!(port, 465 | 995 | 993)
}

fn describe_no_greeting(host: &str, port: u16, after: Duration, implicit_tls: bool) -> String {
    let waited = format!("no greeting from {host}:{port} within {after:?}");
    if implicit_tls {
        return format!("{waited} (after the TLS handshake): the server is overloaded or stalled");
    }
    let why = if is_implicit_tls_port(port) {
        format!("port {port} is an implicit-TLS port")
    } else {
        "this port probably expects implicit TLS (like 465 for SMTP submission and 995 for \
         POP3)"
            .to_owned()
    };
    format!(
        "{waited}: {why}, where the server waits silently for a TLS handshake; connect with \
         implicit TLS instead of STARTTLS/STLS or plaintext"
    )
}

/// A failed implicit-TLS handshake, explained: when the server's first bytes were a plaintext
/// greeting, the port wants STARTTLS/STLS ([`TransportError::PlaintextGreeting`]); otherwise
/// the handshake's own error.
pub(crate) fn explain_failed_handshake(
    error: TransportError,
    first: &[u8],
    host: &str,
    port: u16,
) -> TransportError {
    if looks_like_plaintext_greeting(first) {
        TransportError::PlaintextGreeting {
            host: host.to_owned(),
            port,
            greeting: greeting_excerpt(first),
        }
    } else {
        error
    }
}

/// Whether the first bytes from a server that should have started a TLS handshake look like a
/// plaintext greeting (`220 ...` for SMTP, `+OK` for POP3, `* OK` for IMAP) rather than a TLS
/// record (whose first byte is a content type, 0x14 to 0x18).
pub(crate) fn looks_like_plaintext_greeting(first: &[u8]) -> bool {
    match first {
        [b'+' | b'-', b'O' | b'E', ..] | [b'*', b' ', ..] => true,
        [a, b, c, d, ..] => {
            a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && matches!(d, b' ' | b'-')
        }
        _ => false,
    }
}

/// The start of a plaintext greeting, for an error message: printable ASCII up to the end of
/// the first line, at most 80 characters.
pub(crate) fn greeting_excerpt(first: &[u8]) -> String {
    first
        .iter()
        .take_while(|&&b| b != b'\r' && b != b'\n')
        .take(80)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

fn load_ca_file(path: &Path, store: &mut RootCertStore) -> Result<(), TransportError> {
    let fail = |reason: String| TransportError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in the file".into()));
    }
    for cert in certs {
        store.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Builds a rustls root store for `roots`.
pub fn root_store(roots: &TrustRoots) -> Result<Arc<RootCertStore>, TransportError> {
    let webpki = || RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(match roots {
        TrustRoots::WebPki => Arc::new(webpki()),
        TrustRoots::WebPkiAndCaFile(path) => {
            let mut store = webpki();
            load_ca_file(path, &mut store)?;
            Arc::new(store)
        }
        TrustRoots::CaFile(path) => {
            let mut store = RootCertStore::empty();
            load_ca_file(path, &mut store)?;
            Arc::new(store)
        }
        TrustRoots::Store(store) => Arc::clone(store),
    })
}

/// Builds the rustls client configuration both drivers use: TLS 1.2 and 1.3, ring provider,
/// certificate and host name checked against `roots`.
pub fn client_config(roots: &TrustRoots) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Parses `host` as the name a server certificate must be valid for.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| TransportError::InvalidServerName(host.to_owned()))
}

/// Deadlines for connection set-up. The protocol phases after it have their deadlines in the
/// sans-IO cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetupTimeouts {
    /// TCP connect. Default 30 s: a blocked port (OP25B-style filtering) shows up as a timeout.
    pub connect: Duration,
    /// TLS handshake. Default 30 s.
    pub tls_handshake: Duration,
    /// Happy Eyeballs (RFC 8305) connection attempt delay: when a host has several addresses,
    /// the next one is tried this long after the previous attempt started if that has not
    /// completed (or at once if it failed), the first to connect wins. Default 250 ms, as the
    /// RFC recommends; it bounds what an address that drops packets (a broken IPv6 path) costs.
    /// `connect` stays the deadline for all attempts together. The tokio driver races the addresses (`happy_eyeballs`); the blocking one tries them in turn.
    pub connection_attempt_delay: Duration,
}

impl Default for SetupTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            tls_handshake: Duration::from_secs(30),
            connection_attempt_delay: DEFAULT_ATTEMPT_DELAY,
        }
    }
}

impl SetupTimeouts {
    /// Sets both deadlines to `limit` (the connection attempt delay keeps its default).
    pub const fn uniform(limit: Duration) -> Self {
        Self {
            connect: limit,
            tls_handshake: limit,
            connection_attempt_delay: DEFAULT_ATTEMPT_DELAY,
        }
    }

    /// Sets [`SetupTimeouts::connection_attempt_delay`].
    #[must_use]
    pub const fn with_connection_attempt_delay(mut self, delay: Duration) -> Self {
        self.connection_attempt_delay = delay;
        self
    }
}
