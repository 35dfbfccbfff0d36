//! The one place tests get the test ground from: endpoints, the CA file, users and passwords.
//!
//! The test ground is a set of real mail servers on loopback (Dovecot POP3, GNU mailutils pop3d,
//! Courier POP3, Postfix submission with SASL through Dovecot, Dovecot's own submission service,
//! a second Postfix whose SASL is Cyrus SASL for `AUTH NTLM`, and aiosmtpd), installed, configured, started and stopped by
//! `testground/scripts/testground.sh`. Tests call [`require_running`] (or [`require`]) first:
//! when a server is down the test fails with a message naming the command that starts it.
//! Nothing is ever skipped silently.
//!
//! The crate is the workspace's one test-support crate (not published):
//!
//! - this root: the test ground's endpoints, users, CA and start-up checks;
//! - [`hostile`]: scripted servers for the attacks no real server performs;
//! - [`server`]: a small embedded POP3 + SMTP server (ephemeral ports, generated CA) for tests
//!   that need a server of their own and for the offline `mailctl demo`;
//! - [`pki`]: the throwaway certificate authority both of those use;
//! - [`transcript`]: the grammar of the POP3 and SMTP transcript suites and the protocol-free
//!   parts of their runners.
#![forbid(unsafe_code)]

pub mod hostile;
pub mod logs;
pub mod pki;
pub mod server;
pub mod transcript;

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use mail_common::transport::{TlsConnector, TrustRoots, tls_connector};

/// The command that starts every server of the test ground.
pub const START_COMMAND: &str = "bash testground/scripts/testground.sh all";

/// Host name the server certificate is issued for (it also covers 127.0.0.1 and ::1).
pub const TLS_NAME: &str = "localhost";

/// Loopback address the servers listen on.
pub const HOST: &str = "127.0.0.1";

/// The source address whose connections Dovecot treats as untrusted: from it, USER and the
/// plaintext SASL mechanisms are refused until STLS (Dovecot counts 127.0.0.1 -> 127.0.0.1 as
/// secure).
pub const STRICT_CLIENT_ADDR: &str = "127.0.0.2";

/// The mail domain of the test users.
pub const DOMAIN: &str = "testground.example";

/// A domain whose mail Postfix accepts and discards (for benchmarks).
pub const SINK_DOMAIN: &str = "sink.testground.example";

/// How a server port starts its TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortTls {
    /// TLS from the first byte.
    Implicit,
    /// Plain, with STARTTLS/STLS offered (and required for credentials where noted).
    Upgrade,
}

/// The protocol spoken on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// POP3.
    Pop3,
    /// SMTP.
    Smtp,
}

/// One listening port of the test ground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Which server and role, for messages.
    pub name: &'static str,
    /// Protocol.
    pub protocol: Protocol,
    /// TCP port on [`HOST`].
    pub port: u16,
    /// TLS mode.
    pub tls: PortTls,
}

impl Endpoint {
    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Dovecot POP3, plain with STLS.
pub const DOVECOT_POP3: Endpoint = Endpoint {
    name: "Dovecot POP3 (STLS)",
    protocol: Protocol::Pop3,
    port: 11110,
    tls: PortTls::Upgrade,
};
/// Dovecot POP3S, implicit TLS.
pub const DOVECOT_POP3S: Endpoint = Endpoint {
    name: "Dovecot POP3S",
    protocol: Protocol::Pop3,
    port: 11995,
    tls: PortTls::Implicit,
};
/// Postfix submission: STARTTLS required before AUTH and MAIL.
pub const POSTFIX_SUBMISSION: Endpoint = Endpoint {
    name: "Postfix submission (STARTTLS required)",
    protocol: Protocol::Smtp,
    port: 10587,
    tls: PortTls::Upgrade,
};
/// Postfix submissions: implicit TLS.
pub const POSTFIX_SUBMISSIONS: Endpoint = Endpoint {
    name: "Postfix submissions (implicit TLS)",
    protocol: Protocol::Smtp,
    port: 10465,
    tls: PortTls::Implicit,
};
/// Postfix, plain: STARTTLS optional, AUTH allowed in clear (for plaintext opt-in tests).
pub const POSTFIX_PLAIN: Endpoint = Endpoint {
    name: "Postfix plain (STARTTLS optional)",
    protocol: Protocol::Smtp,
    port: 10025,
    tls: PortTls::Upgrade,
};
/// Postfix with a minimal EHLO: no PIPELINING, CHUNKING, 8BITMIME, SMTPUTF8, DSN or
/// ENHANCEDSTATUSCODES (fallback paths).
pub const POSTFIX_LEGACY: Endpoint = Endpoint {
    name: "Postfix legacy EHLO",
    protocol: Protocol::Smtp,
    port: 10026,
    tls: PortTls::Upgrade,
};
/// aiosmtpd, plain: STARTTLS optional, AUTH allowed in clear. No PIPELINING, no CHUNKING.
pub const AIOSMTPD_PLAIN: Endpoint = Endpoint {
    name: "aiosmtpd plain",
    protocol: Protocol::Smtp,
    port: 12025,
    tls: PortTls::Upgrade,
};
/// aiosmtpd submission: STARTTLS required.
pub const AIOSMTPD_SUBMISSION: Endpoint = Endpoint {
    name: "aiosmtpd submission (STARTTLS required)",
    protocol: Protocol::Smtp,
    port: 12587,
    tls: PortTls::Upgrade,
};
/// aiosmtpd submissions: implicit TLS.
pub const AIOSMTPD_SUBMISSIONS: Endpoint = Endpoint {
    name: "aiosmtpd submissions (implicit TLS)",
    protocol: Protocol::Smtp,
    port: 12465,
    tls: PortTls::Implicit,
};

/// GNU mailutils pop3d, plain with STLS (IPv4 only). A second, independent POP3 implementation:
/// USER/PASS only (no SASL), an APOP timestamp in the greeting although APOP is not set up,
/// logins spelled [`mailutils_login`], and its own copies of the mailboxes
/// ([`mailutils_maildir`]).
pub const MAILUTILS_POP3: Endpoint = Endpoint {
    name: "mailutils POP3 (STLS)",
    protocol: Protocol::Pop3,
    port: 13110,
    tls: PortTls::Upgrade,
};
/// GNU mailutils pop3d, implicit TLS (IPv4 only).
pub const MAILUTILS_POP3S: Endpoint = Endpoint {
    name: "mailutils POP3S",
    protocol: Protocol::Pop3,
    port: 13995,
    tls: PortTls::Implicit,
};
/// Dovecot's submission service (a third SMTP implementation): STARTTLS required, AUTH through
/// the same users (PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256), PIPELINING, CHUNKING,
/// 8BITMIME, ENHANCEDSTATUSCODES; no SMTPUTF8, no DSN. Relays through Postfix, so mail for the
/// test users lands in the same Maildirs.
pub const DOVECOT_SUBMISSION: Endpoint = Endpoint {
    name: "Dovecot submission (STARTTLS required)",
    protocol: Protocol::Smtp,
    port: 14587,
    tls: PortTls::Upgrade,
};
/// Dovecot's submission service, implicit TLS.
pub const DOVECOT_SUBMISSIONS: Endpoint = Endpoint {
    name: "Dovecot submissions (implicit TLS)",
    protocol: Protocol::Smtp,
    port: 14465,
    tls: PortTls::Implicit,
};

/// Courier POP3 (IPv4 only), plain with STLS: a third POP3 implementation, unpacked from its
/// Debian packages and run in a private mount namespace. It announces `UTF8 USER` (RFC 6856) and,
/// unless the client sent `UTF8`, replaces each message with raw UTF-8 headers by a "Cannot
/// display Unicode content" notice. Logins are spelled [`courier_login`]; it serves its own
/// copy of [`ALICE`]'s mailbox ([`COURIER_USERS`]).
pub const COURIER_POP3: Endpoint = Endpoint {
    name: "Courier POP3 (STLS)",
    protocol: Protocol::Pop3,
    port: 15110,
    tls: PortTls::Upgrade,
};
/// Courier POP3S, implicit TLS (IPv4 only).
pub const COURIER_POP3S: Endpoint = Endpoint {
    name: "Courier POP3S",
    protocol: Protocol::Pop3,
    port: 15995,
    tls: PortTls::Implicit,
};

/// A second Postfix instance whose SMTP AUTH is Cyrus SASL with a sasldb instead of Dovecot:
/// the only server here that checks `AUTH NTLM` ("Secure Password Authentication") itself
/// (Debian's Dovecot does NTLM only through Samba's winbind). STARTTLS required; it offers
/// `NTLM SCRAM-SHA-256 PLAIN LOGIN` and knows only the [`NTLM_USERS`]; mail for them is
/// delivered into [`maildir`], the sink domain is discarded.
pub const POSTFIX_NTLM_SUBMISSION: Endpoint = Endpoint {
    name: "Postfix + Cyrus SASL submission (NTLM, STARTTLS required)",
    protocol: Protocol::Smtp,
    port: 16587,
    tls: PortTls::Upgrade,
};
/// [`POSTFIX_NTLM_SUBMISSION`] with implicit TLS.
pub const POSTFIX_NTLM_SUBMISSIONS: Endpoint = Endpoint {
    name: "Postfix + Cyrus SASL submissions (NTLM, implicit TLS)",
    protocol: Protocol::Smtp,
    port: 16465,
    tls: PortTls::Implicit,
};

/// A second Dovecot instance whose only password check for `AUTH NTLM` is Cyrus SASL's NTLM
/// plugin: Dovecot's NTLM mechanism hands the exchange to a helper (its winbind interface),
/// here `testground/scripts/ntlm_helper.py`, which drives libsasl2 with a sasldb. STLS; it
/// offers `NTLM PLAIN` and knows only the [`NTLM_USERS`], serving their Maildirs ([`maildir`]).
pub const DOVECOT_NTLM_POP3: Endpoint = Endpoint {
    name: "Dovecot + Cyrus SASL NTLM POP3 (STLS)",
    protocol: Protocol::Pop3,
    port: 17110,
    tls: PortTls::Upgrade,
};
/// [`DOVECOT_NTLM_POP3`] with implicit TLS.
pub const DOVECOT_NTLM_POP3S: Endpoint = Endpoint {
    name: "Dovecot + Cyrus SASL NTLM POP3S",
    protocol: Protocol::Pop3,
    port: 17995,
    tls: PortTls::Implicit,
};

/// Every endpoint of the test ground.
pub const ALL_ENDPOINTS: [Endpoint; 19] = [
    DOVECOT_POP3,
    DOVECOT_POP3S,
    POSTFIX_SUBMISSION,
    POSTFIX_SUBMISSIONS,
    POSTFIX_PLAIN,
    POSTFIX_LEGACY,
    AIOSMTPD_PLAIN,
    AIOSMTPD_SUBMISSION,
    AIOSMTPD_SUBMISSIONS,
    MAILUTILS_POP3,
    MAILUTILS_POP3S,
    DOVECOT_SUBMISSION,
    DOVECOT_SUBMISSIONS,
    COURIER_POP3,
    COURIER_POP3S,
    POSTFIX_NTLM_SUBMISSION,
    POSTFIX_NTLM_SUBMISSIONS,
    DOVECOT_NTLM_POP3,
    DOVECOT_NTLM_POP3S,
];

/// The users GNU mailutils pop3d serves, each from its own copy of the mailbox (the same
/// messages as Dovecot's): [`ALICE`] read-only, [`NOAH`] for destructive tests.
pub const MAILUTILS_USERS: [User; 2] = [ALICE, NOAH];

/// The users Courier POP3 serves, from its own copy of the mailbox: [`ALICE`], read-only.
pub const COURIER_USERS: [User; 1] = [ALICE];

/// A test user. Every server knows the same users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: &'static str,
    /// Password.
    pub password: &'static str,
    /// Mail address.
    pub address: &'static str,
    /// Messages in the mailbox after `testground.sh reset-mail`.
    pub initial_messages: usize,
}

/// 100 messages (2,288,185 octets by LIST), including ~1 MiB messages 50 and 100, dot-lines,
/// 8-bit and UTF-8 content and empty bodies. Read-only for tests: never delete from it.
pub const ALICE: User = User {
    name: "alice",
    password: "alice-pass",
    address: "alice@testground.example",
    initial_messages: 100,
};
/// Empty at reset; SMTP tests deliver here and fetch back.
pub const BOB: User = User {
    name: "bob",
    password: "bob-pass",
    address: "bob@testground.example",
    initial_messages: 0,
};
/// 2,000 small messages, for throughput.
pub const CAROL: User = User {
    name: "carol",
    password: "carol-pass",
    address: "carol@testground.example",
    initial_messages: 2000,
};
/// Empty at reset; reserved for destructive tests (DELE).
pub const DAVE: User = User {
    name: "dave",
    password: "dave-pass",
    address: "dave@testground.example",
    initial_messages: 0,
};

/// 100 messages like [`ALICE`]; scratch for pop3-proto's destructive integration tests.
pub const ERIN: User = User {
    name: "erin",
    password: "erin-pass",
    address: "erin@testground.example",
    initial_messages: 100,
};
/// 100 messages like [`ALICE`]; scratch for the fetch engine and `mailctl` end-to-end tests.
pub const FRANK: User = User {
    name: "frank",
    password: "frank-pass",
    address: "frank@testground.example",
    initial_messages: 100,
};
/// Empty at reset; smtp-submit's integration tests deliver here.
pub const GRACE: User = User {
    name: "grace",
    password: "grace-pass",
    address: "grace@testground.example",
    initial_messages: 0,
};
/// 2,000 small messages; scratch for crash-safety (kill -9) and large destructive fetches.
pub const HEIDI: User = User {
    name: "heidi",
    password: "heidi-pass",
    address: "heidi@testground.example",
    initial_messages: 2000,
};
/// Empty at reset; account verification and discovery tests.
pub const IVAN: User = User {
    name: "ivan",
    password: "ivan-pass",
    address: "ivan@testground.example",
    initial_messages: 0,
};
/// Empty at reset; secret-leak and hostile suites that need a real server.
pub const JUDY: User = User {
    name: "judy",
    password: "judy-pass",
    address: "judy@testground.example",
    initial_messages: 0,
};

/// 100 messages like [`ALICE`]; scratch for mailctl's everyday habits (fetch state, file modes).
pub const KATE: User = User {
    name: "kate",
    password: "kate-pass",
    address: "kate@testground.example",
    initial_messages: 100,
};
/// Empty at reset; SMTP interoperability tests deliver here.
pub const LIAM: User = User {
    name: "liam",
    password: "liam-pass",
    address: "liam@testground.example",
    initial_messages: 0,
};
/// 100 messages like [`ALICE`]; scratch for mailctl's everyday use (list, sendmail, MDA, mbox).
pub const MIA: User = User {
    name: "mia",
    password: "mia-pass",
    address: "mia@testground.example",
    initial_messages: 100,
};
/// 100 messages like [`ALICE`]; scratch for POP3 interoperability and latency tests.
pub const NOAH: User = User {
    name: "noah",
    password: "noah-pass",
    address: "noah@testground.example",
    initial_messages: 100,
};
/// Empty at reset; sign-in (OAuth2, NTLM) and poller tests.
pub const OLIVIA: User = User {
    name: "olivia",
    password: "olivia-pass",
    address: "olivia@testground.example",
    initial_messages: 0,
};

/// The SMTP user of the Cyrus SASL (NTLM) servers ([`POSTFIX_NTLM_SUBMISSION`]), known only to them:
/// its password is in their sasldb, not in Dovecot's users, so it is not in [`ALL_USERS`]. Its
/// Maildir ([`maildir`]) receives what is sent to it there.
pub const PAT: User = User {
    name: "pat",
    password: "pat-pass",
    address: "pat@testground.example",
    initial_messages: 0,
};

/// Empty at reset; a user of the Cyrus SASL (NTLM) servers like [`PAT`], scratch for
/// pop3-proto's `AUTH NTLM` tests against [`DOVECOT_NTLM_POP3`].
pub const QUINN: User = User {
    name: "quinn",
    password: "quinn-pass",
    address: "quinn@testground.example",
    initial_messages: 0,
};
/// Empty at reset; like [`QUINN`], scratch for mailctl's POP3 `AUTH NTLM` tests.
pub const RUBY: User = User {
    name: "ruby",
    password: "ruby-pass",
    address: "ruby@testground.example",
    initial_messages: 0,
};

/// The users of the Cyrus SASL (NTLM) servers.
pub const NTLM_USERS: [User; 3] = [PAT, QUINN, RUBY];

/// Every test user. Each test suite owns its scratch users, so suites never race on a mailbox.
pub const ALL_USERS: [User; 15] = [
    ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GRACE, HEIDI, IVAN, JUDY, KATE, LIAM, MIA, NOAH, OLIVIA,
];

/// Regenerates the named users' mailboxes to their initial contents (`testground.sh reset-mail`),
/// mailutils' copy ([`mailutils_maildir`]) included for the users that have one.
///
/// Only for a suite's own scratch users, and only while no other test in the same binary uses them.
pub fn reset_mailboxes(users: &[User]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testground.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("reset-mail")
        .args(users.iter().map(|u| u.name))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "`{} reset-mail` failed: {status}",
        script.display()
    );
}

/// The test ground's state directory (`$TESTGROUND_DIR`, default `/tmp/testground`).
pub fn dir() -> PathBuf {
    std::env::var_os("TESTGROUND_DIR")
        .map_or_else(|| PathBuf::from("/tmp/testground"), PathBuf::from)
}

/// The private CA that issued the servers' certificate.
pub fn ca_file() -> PathBuf {
    dir().join("certs/ca.crt")
}

/// The test ground as a provider description (`conf/autoconfig-testground.xml`, Mozilla
/// autoconfig): Dovecot POP3S and Postfix submissions on 127.0.0.1 for `testground.example`.
/// Loopback servers have no place in the bundled provider table; discovery gets them from
/// this file (`mailctl --provider-file`, `DiscoveryOptions::extra_providers`).
pub fn provider_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/autoconfig-testground.xml")
}

/// The Maildir a user's mail is stored in (Dovecot serves it; Postfix delivers into it).
pub fn maildir(user: &User) -> PathBuf {
    dir().join("mail").join(user.name).join("Maildir")
}

/// The login name mailutils pop3d wants: `<user>@testground.example` (its virtual domains).
pub fn mailutils_login(user: &User) -> String {
    format!("{}@{DOMAIN}", user.name)
}

/// The Maildir mailutils pop3d serves for a user of [`MAILUTILS_USERS`] (its own copy, which
/// `reset-mail` regenerates together with Dovecot's).
pub fn mailutils_maildir(user: &User) -> PathBuf {
    dir().join("mailutils/mail").join(user.name).join("INBOX")
}

/// The login name Courier wants: `<user>@testground.example` (its userdb).
pub fn courier_login(user: &User) -> String {
    format!("{}@{DOMAIN}", user.name)
}

/// A TLS connector that trusts only the test ground's CA.
pub fn tls_connector_for_tests() -> TlsConnector {
    require_running();
    tls_connector(&TrustRoots::CaFile(ca_file()))
        .unwrap_or_else(|e| panic!("the test ground CA is unusable ({e}); run `{START_COMMAND}`"))
}

/// Fails the test, naming the start command, unless every listed endpoint accepts connections.
pub fn require(endpoints: &[Endpoint]) {
    let down: Vec<String> = endpoints
        .iter()
        .filter(|e| TcpStream::connect_timeout(&e.addr(), Duration::from_secs(2)).is_err())
        .map(|e| format!("{} on port {}", e.name, e.port))
        .collect();
    assert!(
        down.is_empty(),
        "the test ground is not running ({} down: {}). Start it with `{START_COMMAND}` \
         from the repository root, or run the whole suite with `bash testground/scripts/test-all.sh`.",
        down.len(),
        down.join(", ")
    );
    assert!(
        ca_file().is_file(),
        "the test ground CA {} is missing; run `{START_COMMAND}`",
        ca_file().display()
    );
}

/// [`require`] for every endpoint.
pub fn require_running() {
    require(&ALL_ENDPOINTS);
}

/// The fixed loopback port Dovecot's oauth2 passdb sends bearer tokens to for validation
/// (`testground/conf/dovecot-oauth2-passdb.conf.ext`): a test forwards it to the OAuth 2.0
/// server it started (whose own port is random). Its tokens open [`OLIVIA`]'s mailbox.
pub const OAUTH2_PASSDB_PORT: u16 = 18080;

/// Takes [`OAUTH2_PASSDB_PORT`] for the caller's authorization server, waiting up to `limit`
/// while another test holds it. Owning the listener is the lock: tests in other binaries (run
/// at the same time by another `cargo test`) wait for each other instead of failing, and the
/// port is free again when the listener is dropped. Blocks the calling thread.
pub fn take_oauth2_passdb_port(limit: Duration) -> std::net::TcpListener {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", OAUTH2_PASSDB_PORT)) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "port {OAUTH2_PASSDB_PORT} (Dovecot's oauth2 passdb) still taken after {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("port {OAUTH2_PASSDB_PORT} (Dovecot's oauth2 passdb): {e}"),
        }
    }
}
