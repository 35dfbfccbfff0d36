//! A small embedded POP3 + SMTP server on loopback, for tests and the offline `mailctl demo`.
//!
//! **Not a production server.** It speaks enough of POP3 (RFC 1939, 2449, 2595, 5034) and SMTP
//! submission (RFC 5321, 6409, 3207, 4954, 3030, 6531) to exercise a real client over real TCP
//! and real TLS: a throwaway CA and a leaf certificate for `localhost`, `127.0.0.1` and `::1`
//! are generated at start, and the CA is exposed so that the client under test can trust it.
//!
//! Four listeners, each on an ephemeral loopback port:
//!
//! | listener | method | protocol |
//! | --- | --- | --- |
//! | [`TestServer::pop3s_addr`] | implicit TLS (port 995 style) | POP3 |
//! | [`TestServer::pop3_addr`] | plain, with `STLS` (port 110 style) | POP3 |
//! | [`TestServer::submissions_addr`] | implicit TLS (port 465 style) | SMTP submission |
//! | [`TestServer::submission_addr`] | plain, with `STARTTLS` (port 587 style) | SMTP submission |
//!
//! All four share one [`MailStore`]: a message submitted over SMTP to a local user (with a
//! `Received` header added) can be fetched over POP3 at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mail_testground::server::StartError> {
//! use mail_testground::server::TestServer;
//!
//! let server = TestServer::builder()
//!     .user("demo@demo.example", "secret")
//!     .message("demo@demo.example", b"Subject: hi\r\n\r\nhello\r\n".to_vec())
//!     .start()
//!     .await?;
//! let roots = server.trust_roots(); // for mail_common::transport::tls_connector
//! let pop3s = server.pop3s_addr(); // connect and check the certificate against "localhost"
//! # let _ = (roots, pop3s);
//! assert_eq!(server.mailbox("demo@demo.example").unwrap().len(), 1);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Bounded against a hostile client: command lines are limited
//! ([`TestServerBuilder::max_line_length`]), message bodies are limited
//! ([`TestServerBuilder::max_message_size`]; an oversized message is read and thrown away, not
//! stored), recipients and connections are capped, and every read has an idle deadline.

mod conn;
mod pop3;
mod sasl;
mod smtp;
mod store;

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mail_common::transport::TrustRoots;

use crate::pki::Pki;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use store::{MailStore, StoredMessage};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind a listener on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate the test certificate: {0}")]
    Certificate(String),
    /// The TLS configuration was refused by rustls.
    #[error("cannot configure TLS: {0}")]
    Tls(String),
    /// A preloaded message names a user that was not declared with
    /// [`TestServerBuilder::user`].
    #[error("message preloaded for unknown user {0:?}")]
    UnknownUser(String),
    /// The background runtime or thread of [`TestServerBuilder::start_blocking`] could not be
    /// created.
    #[error("cannot start the server's runtime thread: {0}")]
    Runtime(io::Error),
}

/// Settings shared by every session.
pub(crate) struct Shared {
    pub(crate) store: MailStore,
    pub(crate) hostname: String,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) max_line: usize,
    pub(crate) max_message: usize,
    pub(crate) max_recipients: usize,
    pub(crate) allow_plaintext_auth: bool,
    pub(crate) require_smtp_auth: bool,
    pub(crate) cram_md5: bool,
    pub(crate) scram: bool,
    pub(crate) idle: Duration,
}

impl Shared {
    /// Whether `mech` is switched on (before the TLS / plaintext checks).
    pub(crate) fn offers(&self, mech: sasl::Mech) -> bool {
        match mech {
            sasl::Mech::CramMd5 => self.cram_md5,
            sasl::Mech::ScramSha1 | sasl::Mech::ScramSha256 => self.scram,
            sasl::Mech::Plain | sasl::Mech::Login => true,
        }
    }

    /// The non-plaintext mechanisms switched on, weakest first (as Dovecot lists them).
    pub(crate) fn hashed_mechanisms(&self) -> Vec<&'static str> {
        let mut mechs = Vec::new();
        if self.cram_md5 {
            mechs.push("CRAM-MD5");
        }
        if self.scram {
            mechs.extend(["SCRAM-SHA-1", "SCRAM-SHA-256"]);
        }
        mechs
    }

    /// A fresh, unique token `<pid.serial.nanos@hostname>` for the APOP greeting and the
    /// CRAM-MD5 challenge.
    pub(crate) fn timestamp(&self) -> String {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "<{}.{serial}.{nanos}@{}>",
            std::process::id(),
            self.hostname
        )
    }
}

/// Which protocol and TLS method a listener serves.
#[derive(Debug, Clone, Copy)]
enum Service {
    Pop3s,
    Pop3,
    Submissions,
    Submission,
}

impl Service {
    fn implicit_tls(self) -> bool {
        matches!(self, Self::Pop3s | Self::Submissions)
    }
}

/// Builds a [`TestServer`]; see [`TestServer::builder`].
#[must_use]
pub struct TestServerBuilder {
    users: Vec<(String, String)>,
    messages: Vec<(String, Vec<u8>)>,
    hostname: String,
    bind_ip: IpAddr,
    max_line: usize,
    max_message: usize,
    max_recipients: usize,
    max_connections: usize,
    allow_plaintext_auth: bool,
    require_smtp_auth: bool,
    cram_md5: bool,
    scram: bool,
    idle: Duration,
}

impl fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords and message bodies stay out of debug output.
        f.debug_struct("TestServerBuilder")
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("messages", &self.messages.len())
            .field("hostname", &self.hostname)
            .field("bind_ip", &self.bind_ip)
            .field("max_line", &self.max_line)
            .field("max_message", &self.max_message)
            .field("max_recipients", &self.max_recipients)
            .field("max_connections", &self.max_connections)
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("require_smtp_auth", &self.require_smtp_auth)
            .field("cram_md5", &self.cram_md5)
            .field("scram", &self.scram)
            .field("idle", &self.idle)
            .finish()
    }
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            messages: Vec::new(),
            hostname: "localhost".to_owned(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_line: 4096,
            max_message: 10 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 64,
            allow_plaintext_auth: false,
            require_smtp_auth: true,
            cram_md5: true,
            scram: true,
            idle: Duration::from_secs(60),
        }
    }
}

impl TestServerBuilder {
    /// Adds a user (a mailbox for POP3, a login for both protocols, and a local recipient for
    /// SMTP). Names compare without regard to ASCII case.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// Preloads a message into `user`'s mailbox, as it is (only line endings are normalized to
    /// CRLF). The user must also be declared with [`user`](Self::user).
    pub fn message(mut self, user: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.messages.push((user.into(), bytes.into()));
        self
    }

    /// The host name in greetings, `Received` headers and APOP timestamps, also added to the
    /// certificate when it is a valid DNS name (default `localhost`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// The address the listeners bind to (default `127.0.0.1`; ports are always ephemeral).
    pub fn bind_ip(mut self, ip: IpAddr) -> Self {
        self.bind_ip = ip;
        self
    }

    /// The longest command line accepted, CRLF included (default 4096). A longer line is read
    /// and thrown away, and answered with an error.
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(64);
        self
    }

    /// The largest message accepted over SMTP, advertised as `SIZE` (default 10 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// The most recipients of one SMTP transaction (default 100).
    pub fn max_recipients(mut self, n: usize) -> Self {
        self.max_recipients = n.max(1);
        self
    }

    /// The most connections each listener serves at once; more are closed at once
    /// (default 64).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Whether cleartext authentication (POP3 `USER`/`PASS`, `AUTH PLAIN`, `AUTH LOGIN`) is
    /// allowed before TLS on the plain listeners (default `false`: refused, and SMTP does not
    /// advertise `AUTH` before `STARTTLS`).
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.allow_plaintext_auth = allow;
        self
    }

    /// Whether SMTP `MAIL` needs a successful `AUTH` first (default `true`).
    pub fn require_smtp_auth(mut self, require: bool) -> Self {
        self.require_smtp_auth = require;
        self
    }

    /// Whether `CRAM-MD5` is offered by both protocols (default `true`, as Dovecot and
    /// Postfix offer it).
    pub fn cram_md5(mut self, offer: bool) -> Self {
        self.cram_md5 = offer;
        self
    }

    /// Whether `SCRAM-SHA-1` and `SCRAM-SHA-256` are offered by both protocols (default
    /// `true`, as Dovecot and Postfix offer them). A client tested only against PLAIN works here
    /// and fails against real servers (issue 16), so the defaults are what real servers offer.
    pub fn scram(mut self, offer: bool) -> Self {
        self.scram = offer;
        self
    }

    /// How long a session waits for the client's next bytes, or for a write, before it closes
    /// the connection (default 60 s).
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle = limit;
        self
    }

    /// Generates the certificates, binds the four listeners and starts serving on the current
    /// tokio runtime.
    pub async fn start(self) -> Result<TestServer, StartError> {
        let store = MailStore::new();
        for (user, password) in &self.users {
            store.add_user(user, password);
        }
        for (user, bytes) in &self.messages {
            if store.add_message(user, bytes).is_none() {
                return Err(StartError::UnknownUser(user.clone()));
            }
        }
        let pki = Pki::try_generate().map_err(|e| StartError::Certificate(e.to_string()))?;
        let mut names = vec!["localhost", "127.0.0.1", "::1"];
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&self.hostname))
            && rcgen::CertificateParams::new(vec![self.hostname.clone()]).is_ok()
        {
            names.push(&self.hostname);
        }
        let acceptor = pki
            .try_leaf(&names, false)
            .map_err(|e| StartError::Certificate(e.to_string()))?
            .try_acceptor()
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let shared = Arc::new(Shared {
            store: store.clone(),
            hostname: self.hostname,
            acceptor,
            max_line: self.max_line,
            max_message: self.max_message,
            max_recipients: self.max_recipients,
            allow_plaintext_auth: self.allow_plaintext_auth,
            require_smtp_auth: self.require_smtp_auth,
            cram_md5: self.cram_md5,
            scram: self.scram,
            idle: self.idle,
        });
        let services = [
            Service::Pop3s,
            Service::Pop3,
            Service::Submissions,
            Service::Submission,
        ];
        let mut addrs = [SocketAddr::new(self.bind_ip, 0); 4];
        let mut listeners = Vec::with_capacity(4);
        for (slot, _) in addrs.iter_mut().zip(services) {
            let asked = *slot;
            let listener = TcpListener::bind(asked)
                .await
                .map_err(|source| StartError::Bind {
                    addr: asked,
                    source,
                })?;
            *slot = listener.local_addr().map_err(|source| StartError::Bind {
                addr: asked,
                source,
            })?;
            listeners.push(listener);
        }
        let tasks = listeners
            .into_iter()
            .zip(services)
            .map(|(listener, service)| {
                tokio::spawn(serve(
                    listener,
                    Arc::clone(&shared),
                    service,
                    self.max_connections,
                ))
            })
            .collect();
        Ok(TestServer {
            addrs,
            hostname: shared.hostname.clone(),
            pki,
            store,
            tasks,
        })
    }
}

impl TestServerBuilder {
    /// Starts the server on a tokio runtime of its own, in a background thread, for tests and
    /// examples that have no runtime (a blocking client). Dropping the returned handle stops
    /// the server and joins the thread.
    pub fn start_blocking(self) -> Result<BlockingTestServer, StartError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mail-testground-server".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = self.start().await;
                    let ok = started.is_ok();
                    let _ = ready_tx.send(started);
                    if ok {
                        // Until the handle is dropped (or dropped without a send).
                        let _ = stop_rx.await;
                    }
                });
            })
            .map_err(StartError::Runtime)?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(StartError::Runtime(io::Error::other(
                "the server thread ended before starting",
            )))
        });
        match started {
            Ok(server) => Ok(BlockingTestServer {
                server: Some(server),
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }
}

/// A [`TestServer`] running on its own runtime thread; see
/// [`TestServerBuilder::start_blocking`]. Dereferences to the [`TestServer`].
pub struct BlockingTestServer {
    server: Option<TestServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for BlockingTestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlockingTestServer")
            .field(&self.server)
            .finish()
    }
}

impl std::ops::Deref for BlockingTestServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        self.server
            .as_ref()
            .expect("the server is present until the handle is dropped")
    }
}

impl Drop for BlockingTestServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, service: Service, max: usize) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if sessions.len() >= max {
                        drop(tcp);
                        continue;
                    }
                    sessions.spawn(session(tcp, peer, Arc::clone(&shared), service));
                }
                // Out of file descriptors or similar: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

async fn session(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, service: Service) {
    let tls = service.implicit_tls().then_some(&shared.acceptor);
    let Ok(mut conn) = conn::Conn::accept(tcp, tls, shared.idle).await else {
        return;
    };
    match service {
        Service::Pop3s | Service::Pop3 => pop3::run(&mut conn, &shared).await,
        Service::Submissions | Service::Submission => smtp::run(&mut conn, &shared, peer).await,
    }
    conn.close().await;
}

/// A running test server. Dropping it stops the listeners and ends every session (as does
/// [`shutdown`](Self::shutdown), which also waits for that).
pub struct TestServer {
    /// pop3s, pop3, submissions, submission.
    addrs: [SocketAddr; 4],
    hostname: String,
    pki: Pki,
    store: MailStore,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("pop3s", &self.addrs[0])
            .field("pop3", &self.addrs[1])
            .field("submissions", &self.addrs[2])
            .field("submission", &self.addrs[3])
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// A builder with no users, listening on `127.0.0.1`.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The POP3 listener with implicit TLS (port 995 style).
    pub fn pop3s_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The plain POP3 listener that offers `STLS` (port 110 style).
    pub fn pop3_addr(&self) -> SocketAddr {
        self.addrs[1]
    }

    /// The SMTP submission listener with implicit TLS (port 465 style).
    pub fn submissions_addr(&self) -> SocketAddr {
        self.addrs[2]
    }

    /// The plain SMTP submission listener that offers `STARTTLS` (port 587 style).
    pub fn submission_addr(&self) -> SocketAddr {
        self.addrs[3]
    }

    /// The configured host name (greetings, `Received` headers).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The name to check the server certificate against: `localhost` (the certificate is also
    /// valid for `127.0.0.1`, `::1` and the configured host name).
    pub fn tls_server_name(&self) -> &'static str {
        "localhost"
    }

    /// The generated CA certificate, PEM-encoded.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    /// The generated CA certificate, DER-encoded.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        self.pki.ca_der()
    }

    /// Writes the CA certificate to a PEM file in a fresh directory under the system temporary
    /// directory (once; later calls return the same path) for `--ca-file` style options. The
    /// directory is removed when the server is dropped.
    pub fn ca_file(&self) -> io::Result<PathBuf> {
        self.pki.try_ca_file()
    }

    /// A root store holding only the generated CA.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        let mut store = RootCertStore::empty();
        // Our own freshly generated CA always parses; an error would only leave the store
        // empty, which a test would notice at once.
        let _ = store.add(self.pki.ca_der().clone());
        Arc::new(store)
    }

    /// Trust roots holding only the generated CA, for `mail_common::transport`.
    pub fn trust_roots(&self) -> TrustRoots {
        TrustRoots::Store(self.root_store())
    }

    /// A TLS connector (ring provider, TLS 1.2 and 1.3) that trusts only the generated CA.
    pub fn tls_connector(&self) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// The shared mail store (add messages, look at mailboxes while the server runs).
    pub fn store(&self) -> &MailStore {
        &self.store
    }

    /// A snapshot of `user`'s mailbox; `None` for an unknown user.
    pub fn mailbox(&self, user: &str) -> Option<Vec<StoredMessage>> {
        self.store.mailbox(user)
    }

    /// Adds a message to `user`'s mailbox and returns its UID; `None` for an unknown user.
    pub fn add_message(&self, user: &str, bytes: &[u8]) -> Option<String> {
        self.store.add_message(user, bytes)
    }

    /// Stops the listeners, ends every session, and waits until they are gone. Messages marked
    /// deleted by a POP3 session that did not reach QUIT are kept.
    pub async fn shutdown(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The current time as an RFC 5322 date in UTC, e.g. `Tue, 01 Jul 2025 10:00:00 +0000`.
pub(crate) fn rfc5322_now() -> String {
    mail_common::date::rfc5322_date(SystemTime::now())
}
