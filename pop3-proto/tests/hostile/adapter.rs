//! Scripted hostile servers against the real tokio adapter (`pop3_proto::tokio::Session`): each
//! scenario plays an attack on loopback and asserts the safe outcome: a typed error naming the
//! cause, no credential sent in clear, no injected byte accepted as a reply, no partial message
//! reported as complete.

use std::time::Duration;

use base64::Engine as _;
use mail_common::sasl::Credentials;
use mail_testground::hostile::{HostileServer, Pki, ServerCert, Step, Transcript};
use pop3_proto::tokio::{
    ConnectOptions, ConnectionError, Error, Fetched, Session, SetupPhase, SetupTimeouts, Timeout,
    TransportError, TrustRoots,
};
use pop3_proto::{
    AuthMethod, Config, FailureClass, Login, Malformed, Misuse, Phase, ProtocolError, ResponseCode,
    Security, Timeouts,
};

/// Every deadline of these tests: short, so stalls fail fast, but far above loopback latency.
const DEADLINE: Duration = Duration::from_millis(1500);
const USER: &str = "victim";
const PASSWORD: &str = "hostile-s3cret-pass";
const GREETING: &str = "+OK hostile POP3 ready <1896.697170952@hostile.example>\r\n";

/// The scenarios of this file, for the count printed by [`scenario_count`].
const SCENARIOS: &[&str] = &[
    "stls_injection_same_packet",
    "stls_injection_separate_write_immediately",
    "stls_injection_separate_write_after_a_pause",
    "stls_missing_from_capa",
    "stls_refused_err",
    "stls_refused_sys_perm",
    "capa_refused_then_stls_refused",
    "capa_before_tls_is_forgotten",
    "greeting_sys_temp",
    "greeting_sys_perm",
    "plaintext_without_opt_in_sends_no_credential",
    "implicit_unknown_ca",
    "implicit_wrong_host_name",
    "implicit_expired",
    "implicit_handshake_stall",
    "stls_unknown_ca",
    "stls_wrong_host_name",
    "stls_expired",
    "stls_handshake_stall",
    "line_longer_than_the_limit",
    "capa_that_never_ends",
    "list_that_stops_without_terminator",
    "million_entry_list",
    "absurd_stat_numbers",
    "invalid_utf8_and_nul_bytes",
    "status_line_of_another_protocol",
    "stall_greeting",
    "stall_after_capa",
    "stall_after_user",
    "stall_after_pass",
    "stall_after_stat",
    "stall_mid_list",
    "stall_mid_body",
    "close_mid_body_retr",
    "close_mid_body_retr_many",
    "duplicate_reply_in_one_packet",
    "duplicate_reply_after_the_reply",
    "caller_injection_user",
    "caller_injection_pass",
    "caller_injection_apop",
    "caller_injection_pass_nul",
    "retr_many_refusal_is_data",
    "list_and_uidl_in_one_flight_then_quit_without_waiting",
    "list_and_uidl_keeps_the_listing_when_uidl_is_refused",
    "quit_without_waiting_waits_after_dele",
];

#[test]
fn scenario_count() {
    eprintln!(
        "pop3-proto hostile-server scenarios (tokio adapter): {}",
        SCENARIOS.len()
    );
}

// ---- helpers ----

fn config() -> Config {
    Config::default().with_timeouts(
        Timeouts::default()
            .with_greeting(DEADLINE)
            .with_reply(DEADLINE)
            .with_data(DEADLINE)
            .with_tls_handshake(DEADLINE),
    )
}

fn credentials() -> Credentials {
    Credentials::password(USER, PASSWORD)
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

/// A scripted server with its own CA.
struct Hostile {
    pki: Pki,
    server: HostileServer,
}

impl Hostile {
    async fn start(script: Vec<Step>) -> Self {
        Self::with_cert(script, |pki| pki.leaf_for("localhost")).await
    }

    async fn with_cert(script: Vec<Step>, cert: impl FnOnce(&Pki) -> ServerCert) -> Self {
        let pki = Pki::generate();
        let cert = cert(&pki);
        let server = HostileServer::start(script, cert).await;
        Self { pki, server }
    }

    fn options(&self) -> ConnectOptions {
        ConnectOptions::new("127.0.0.1")
            .with_port(self.server.port())
            .with_trust_roots(TrustRoots::CaFile(self.pki.ca_file()))
            .with_tls_name("localhost")
            .with_timeouts(SetupTimeouts::uniform(DEADLINE))
    }

    async fn connect(&self, security: Security) -> Result<Session, Error> {
        self.connect_with(security, config()).await
    }

    async fn connect_with(&self, security: Security, config: Config) -> Result<Session, Error> {
        Session::connect(&self.options(), config.with_security(security)).await
    }

    async fn finish(self) -> Transcript {
        let transcript = self.server.finish().await;
        assert_no_credential_in_clear(&transcript);
        transcript
    }
}

/// Nothing that could reveal the password went out before TLS.
fn assert_no_credential_in_clear(t: &Transcript) {
    let plain = format!("\0{USER}\0{PASSWORD}");
    let needles: [&[u8]; 7] = [
        b"PASS",
        b"USER ",
        b"APOP",
        b"AUTH",
        PASSWORD.as_bytes(),
        &b64(PASSWORD.as_bytes()),
        &b64(plain.as_bytes()),
    ];
    for needle in needles {
        assert!(
            !t.plaintext_contains(needle),
            "{:?} sent in clear: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&t.plaintext)
        );
    }
}

fn greeting() -> Step {
    Step::send(GREETING)
}

fn capa(lines: &str) -> [Step; 2] {
    [
        Step::expect("CAPA"),
        Step::send(format!("+OK capabilities\r\n{lines}.\r\n")),
    ]
}

/// Implicit TLS, greeting, CAPA (USER, UIDL, TOP), USER/PASS accepted.
fn logged_in(capabilities: &str) -> Vec<Step> {
    let mut script = vec![Step::StartTls, greeting()];
    script.extend(capa(capabilities));
    script.extend([
        Step::expect("USER victim"),
        Step::send("+OK\r\n"),
        Step::expect("PASS"),
        Step::send("+OK maildrop ready\r\n"),
    ]);
    script
}

async fn login(session: &mut Session) {
    session
        .login_with(Login::using(AuthMethod::UserPass, credentials()))
        .await
        .expect("scripted login");
}

fn protocol(error: &Error) -> &ProtocolError {
    match error {
        Error::Protocol(e) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn tls_failure(error: &Error) -> String {
    match error {
        Error::Connection(ConnectionError::Transport(TransportError::Tls { .. })) => {
            error.to_string()
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

// ---- STLS response injection ----

fn stls_prelude() -> Vec<Step> {
    let mut script = vec![greeting()];
    script.extend(capa("USER\r\nSTLS\r\n"));
    script.push(Step::expect("STLS"));
    script
}

#[tokio::test]
async fn stls_injection_same_packet() {
    let mut script = stls_prelude();
    script.push(Step::send("+OK begin TLS\r\n+OK forged\r\n"));
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert_eq!(protocol(&error), &ProtocolError::InputAfterStartTls);
    assert!(error.is_fatal());
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["CAPA", "STLS"]);
}

/// Injected bytes in a separate write reach the client either before the handshake started
/// (the core refuses them) or during it (rustls refuses them as a TLS record): never as a reply.
fn injection_refused(error: &Error) {
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::InputAfterStartTls)
                | Error::Connection(
                    ConnectionError::Transport(TransportError::Tls { .. }) | ConnectionError::Io(_)
                )
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn stls_injection_separate_write_immediately() {
    let mut script = stls_prelude();
    script.extend([
        Step::send("+OK begin TLS\r\n"),
        Step::send("+OK forged\r\n+OK forged too\r\n"),
        Step::StartTls,
    ]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    injection_refused(&error);
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty(), "no TLS session was established");
}

#[tokio::test]
async fn stls_injection_separate_write_after_a_pause() {
    let mut script = stls_prelude();
    script.extend([
        Step::send("+OK begin TLS\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("+OK forged\r\n"),
        Step::StartTls,
    ]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    injection_refused(&error);
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty(), "no TLS session was established");
}

// ---- stripping ----

#[tokio::test]
async fn stls_missing_from_capa() {
    let mut script = vec![greeting()];
    script.extend(capa("USER\r\nSASL PLAIN\r\n"));
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert_eq!(protocol(&error), &ProtocolError::StlsNotOffered);
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["CAPA"], "nothing after CAPA, not even STLS");
}

async fn stls_refused_with(reply: &str) -> (Error, Transcript) {
    let mut script = stls_prelude();
    script.push(Step::send(reply));
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    (error, hostile.finish().await)
}

#[tokio::test]
async fn stls_refused_err() {
    let (error, t) = stls_refused_with("-ERR not today\r\n").await;
    let ProtocolError::StlsRefused(response) = protocol(&error) else {
        panic!("{error:?}");
    };
    assert_eq!(response.text, "not today");
    assert_eq!(t.lines, ["CAPA", "STLS"]);
}

#[tokio::test]
async fn stls_refused_sys_perm() {
    let (error, _) = stls_refused_with("-ERR [SYS/PERM] TLS is broken here\r\n").await;
    let ProtocolError::StlsRefused(response) = protocol(&error) else {
        panic!("{error:?}");
    };
    assert_eq!(response.code, Some(ResponseCode::SysPerm));
    assert!(error.to_string().contains("refused STLS"), "{error}");
}

#[tokio::test]
async fn capa_refused_then_stls_refused() {
    // CAPA hidden: the client still insists on STLS, and stops when it is refused.
    let script = vec![
        greeting(),
        Step::expect("CAPA"),
        Step::send("-ERR what is CAPA\r\n"),
        Step::expect("STLS"),
        Step::send("-ERR no\r\n"),
    ];
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert!(
        matches!(protocol(&error), ProtocolError::StlsRefused(_)),
        "{error:?}"
    );
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["CAPA", "STLS"]);
}

#[tokio::test]
async fn capa_before_tls_is_forgotten() {
    // Before TLS the server offers SASL PLAIN (an attacker could inject it); after TLS only
    // USER. The login must follow the capabilities learnt over TLS, and only inside TLS.
    let mut script = vec![greeting()];
    script.extend(capa("SASL PLAIN\r\nSTLS\r\n"));
    script.extend([
        Step::expect("STLS"),
        Step::send("+OK begin TLS\r\n"),
        Step::StartTls,
    ]);
    script.extend(capa("USER\r\n"));
    // Automatic login: USER (inside TLS, APOP is only the last resort, issue 16); SASL PLAIN
    // is gone.
    script.extend([
        Step::expect("USER victim"),
        Step::send("+OK\r\n"),
        Step::expect("PASS "),
        Step::send("+OK\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::StartTls).await.unwrap();
    assert!(session.is_tls());
    assert!(session.capabilities().unwrap().sasl.is_empty());
    let method = session.login(credentials()).await;
    drop(session);
    let t = hostile.finish().await;
    assert!(
        matches!(method, Ok(AuthMethod::UserPass)),
        "{method:?} {t:?}"
    );
    assert_eq!(t.lines.len(), 5, "{:?}", t.lines);
    assert_eq!(t.lines[3], "USER victim", "{:?}", t.lines);
}

async fn greeting_refused(line: &str) -> Error {
    let hostile = Hostile::start(vec![Step::StartTls, Step::send(line)]).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert!(
        t.encrypted.is_empty(),
        "nothing sent after a refused greeting"
    );
    error
}

#[tokio::test]
async fn greeting_sys_temp() {
    let error = greeting_refused("-ERR [SYS/TEMP] overloaded, try later\r\n").await;
    let Error::GreetingRefused(response) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(response.code, Some(ResponseCode::SysTemp));
    assert_eq!(error.class(), Some(FailureClass::Transient));
    assert!(error.is_fatal());
}

#[tokio::test]
async fn greeting_sys_perm() {
    let error = greeting_refused("-ERR [SYS/PERM] go away\r\n").await;
    let Error::GreetingRefused(response) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(response.code, Some(ResponseCode::SysPerm));
    assert_eq!(error.class(), Some(FailureClass::Permanent));
}

#[tokio::test]
async fn plaintext_without_opt_in_sends_no_credential() {
    // The caller chose no TLS (a stripped server) but did not opt in to cleartext credentials:
    // every login method is refused before a byte is written.
    let mut script = vec![greeting()];
    script.extend(capa("USER\r\nSASL PLAIN CRAM-MD5 SCRAM-SHA-256\r\n"));
    script.push(Step::expect("QUIT"));
    script.push(Step::send("+OK bye\r\n"));
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::Plaintext).await.unwrap();
    for method in [
        AuthMethod::UserPass,
        AuthMethod::Apop,
        AuthMethod::Sasl(mail_common::sasl::Mechanism::Plain),
        AuthMethod::Sasl(mail_common::sasl::Mechanism::ScramSha256),
    ] {
        let error = session
            .login_with(Login::using(method, credentials()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Misuse(Misuse::CleartextCredentials)),
            "{method:?}: {error:?}"
        );
    }
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["CAPA", "QUIT"]);
}

// ---- certificates ----

async fn implicit_with(cert: impl FnOnce(&Pki) -> ServerCert) -> Error {
    let hostile = Hostile::with_cert(vec![Step::StartTls, greeting()], cert).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert!(t.lines.is_empty() && t.encrypted.is_empty());
    error
}

#[tokio::test]
async fn implicit_unknown_ca() {
    let error = implicit_with(|_| Pki::generate().leaf_for("localhost")).await;
    assert!(tls_failure(&error).contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn implicit_wrong_host_name() {
    let error = implicit_with(|pki| pki.leaf_for("mail.attacker.example")).await;
    assert!(
        tls_failure(&error).contains("not valid for name"),
        "{error}"
    );
}

#[tokio::test]
async fn implicit_expired() {
    let error = implicit_with(|pki| pki.expired_leaf_for("localhost")).await;
    assert!(
        tls_failure(&error).to_lowercase().contains("expired"),
        "{error}"
    );
}

#[tokio::test]
async fn implicit_handshake_stall() {
    let hostile = Hostile::start(vec![Step::StallHandshake]).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Setup {
                phase: SetupPhase::TlsHandshake,
                ..
            }))
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

async fn stls_with(cert: impl FnOnce(&Pki) -> ServerCert) -> Error {
    let mut script = stls_prelude();
    script.extend([Step::send("+OK begin TLS\r\n"), Step::StartTls]);
    let hostile = Hostile::with_cert(script, cert).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty());
    error
}

#[tokio::test]
async fn stls_unknown_ca() {
    let error = stls_with(|_| Pki::generate().leaf_for("localhost")).await;
    assert!(tls_failure(&error).contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn stls_wrong_host_name() {
    let error = stls_with(|pki| pki.leaf_for("mail.attacker.example")).await;
    assert!(
        tls_failure(&error).contains("not valid for name"),
        "{error}"
    );
}

#[tokio::test]
async fn stls_expired() {
    let error = stls_with(|pki| pki.expired_leaf_for("localhost")).await;
    assert!(
        tls_failure(&error).to_lowercase().contains("expired"),
        "{error}"
    );
}

#[tokio::test]
async fn stls_handshake_stall() {
    let mut script = stls_prelude();
    script.extend([Step::send("+OK begin TLS\r\n"), Step::StallHandshake]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Setup {
                phase: SetupPhase::TlsHandshake,
                ..
            }))
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

// ---- malformed and oversized ----

#[tokio::test]
async fn line_longer_than_the_limit() {
    let long = format!("+OK {}\r\n", "x".repeat(10_000));
    let hostile = Hostile::start(vec![Step::StartTls, Step::send(long)]).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::LineTooLong { limit: 8192 }
    );
    hostile.finish().await;
}

#[tokio::test]
async fn capa_that_never_ends() {
    let script = vec![
        Step::StartTls,
        greeting(),
        Step::expect("CAPA"),
        Step::send("+OK\r\n"),
        Step::SendRepeated {
            bytes: b"X-FILLER capability\r\n".to_vec(),
            count: 10_000,
        },
    ];
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::TooManyCapabilities { limit: 128 }
    );
    hostile.finish().await;
}

#[tokio::test]
async fn list_that_stops_without_terminator() {
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("LIST"),
        Step::send("+OK\r\n1 100\r\n2 200\r\n"),
        Step::Stall,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let error = session.list().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Data
            }))
        ),
        "{error:?}"
    );
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn million_entry_list() {
    let entries = "7 1000\r\n".repeat(1000);
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("LIST"),
        Step::send("+OK a million and one\r\n"),
        Step::SendRepeated {
            bytes: entries.into_bytes(),
            count: 1001,
        },
        Step::send(".\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let error = session.list().await.unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::TooManyEntries { limit: 1_000_000 }
    );
    drop(session);
    drop(hostile.server.finish().await);
}

#[tokio::test]
async fn absurd_stat_numbers() {
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("STAT"),
        // The largest representable values are data, not an error...
        Step::send("+OK 4294967295 18446744073709551615\r\n"),
        Step::expect("STAT"),
        // ...one more is.
        Step::send("+OK 4294967296 1\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let stat = session.stat().await.unwrap();
    assert_eq!((stat.count, stat.size), (u32::MAX, u64::MAX));
    let error = session.stat().await.unwrap_err();
    assert!(
        matches!(
            protocol(&error),
            ProtocolError::Malformed {
                kind: Malformed::NumberOutOfRange,
                ..
            }
        ),
        "{error:?}"
    );
    // Poisoned: nothing more is sent.
    assert!(matches!(session.noop().await.unwrap_err(), Error::Closed));
    drop(session);
    let t = hostile.finish().await;
    assert_eq!(t.lines.iter().filter(|l| *l == "STAT").count(), 2);
    assert!(!t.lines.iter().any(|l| l == "NOOP"));
}

#[tokio::test]
async fn invalid_utf8_and_nul_bytes() {
    // Free text may hold anything; structured fields may not.
    let mut script = vec![
        Step::StartTls,
        Step::send(b"+OK caf\xe9 \xff\xfe\0 ready\r\n"),
    ];
    script.extend([
        Step::expect("CAPA"),
        Step::send(b"+OK\r\nUSER\r\nX-\xff\0\r\n.\r\n"),
    ]);
    script.extend([
        Step::expect("USER victim"),
        Step::send("+OK\r\n"),
        Step::expect("PASS"),
        Step::send("+OK\r\n"),
        Step::expect("NOOP"),
        Step::send(b"+OK \xc3\x28 \0\r\n"),
        Step::expect("UIDL"),
        Step::send(b"+OK\r\n1 abc\xff\r\n.\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    session.noop().await.unwrap();
    let error = session.uidl().await.unwrap_err();
    assert!(
        matches!(
            protocol(&error),
            ProtocolError::Malformed {
                kind: Malformed::UidListing,
                ..
            }
        ),
        "{error:?}"
    );
    drop(session);

    // NUL inside a STAT reply.
    let mut script = logged_in("USER\r\n");
    script.extend([Step::expect("STAT"), Step::send("+OK 1\0 5\r\n")]);
    let hostile2 = Hostile::start(script).await;
    let mut session = hostile2.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let error = session.stat().await.unwrap_err();
    assert!(
        matches!(
            protocol(&error),
            ProtocolError::Malformed {
                kind: Malformed::Stat,
                ..
            }
        ),
        "{error:?}"
    );
    drop(session);
    hostile.finish().await;
    hostile2.finish().await;
}

#[tokio::test]
async fn status_line_of_another_protocol() {
    // An SMTP greeting (or any line that is neither +OK nor -ERR): the POP3 analogue of a
    // reply code out of range.
    let hostile = Hostile::start(vec![
        Step::StartTls,
        Step::send("220 smtp.example ESMTP\r\n"),
    ])
    .await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    assert!(
        matches!(
            protocol(&error),
            ProtocolError::Malformed {
                kind: Malformed::StatusLine,
                ..
            }
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

// ---- stalls at every phase ----

#[tokio::test]
async fn stall_greeting() {
    let hostile = Hostile::start(vec![Step::StartTls, Step::Stall]).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    // The greeting wait names the server; over implicit TLS the mode is not the suspect.
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Transport(TransportError::NoGreeting {
                implicit_tls: true,
                ..
            }))
        ),
        "{error:?}"
    );
    assert!(error.is_fatal());
    assert!(
        error.to_string().contains("after the TLS handshake"),
        "{error}"
    );
    hostile.finish().await;
}

#[tokio::test]
async fn stall_after_capa() {
    let hostile = Hostile::start(vec![
        Step::StartTls,
        greeting(),
        Step::expect("CAPA"),
        Step::Stall,
    ])
    .await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Reply
            }))
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

async fn stall_login_after(prefix: &str) {
    let mut script = vec![Step::StartTls, greeting()];
    script.extend(capa("USER\r\n"));
    script.push(Step::expect("USER"));
    if prefix == "PASS" {
        script.extend([Step::send("+OK\r\n"), Step::expect("PASS")]);
    }
    script.push(Step::Stall);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = session
        .login_with(Login::using(AuthMethod::UserPass, credentials()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Reply
            }))
        ),
        "{error:?}"
    );
    assert!(error.is_fatal());
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn stall_after_user() {
    stall_login_after("USER").await;
}

#[tokio::test]
async fn stall_after_pass() {
    stall_login_after("PASS").await;
}

#[tokio::test]
async fn stall_after_stat() {
    let mut script = logged_in("USER\r\n");
    script.extend([Step::expect("STAT"), Step::Stall]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let error = session.stat().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Reply
            }))
        ),
        "{error:?}"
    );
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn stall_mid_list() {
    let mut script = logged_in("USER\r\n");
    script.extend([Step::expect("LIST"), Step::send("+OK\r\n1 10"), Step::Stall]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let error = session.list().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Data
            }))
        ),
        "{error:?}"
    );
    drop(session);
    hostile.finish().await;
}

const PARTIAL: &str = "Subject: partial\r\n\r\nfirst line\r\n..dot line\r\nsecond li";

#[tokio::test]
async fn stall_mid_body() {
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("RETR 1"),
        Step::send(format!("+OK 500 octets\r\n{PARTIAL}")),
        Step::Stall,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let mut out = Vec::new();
    let error = session.retr_to(1, &mut out).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Server {
                phase: Phase::Data
            }))
        ),
        "{error:?}"
    );
    assert_partial(&out);
    drop(session);
    hostile.finish().await;
}

/// The writer got a prefix of the (unstuffed) message, never its end.
fn assert_partial(out: &[u8]) {
    let unstuffed = PARTIAL.replace("\r\n..", "\r\n.");
    assert!(
        unstuffed.as_bytes().starts_with(out) && !out.ends_with(b"\r\n"),
        "{:?}",
        String::from_utf8_lossy(out)
    );
}

// ---- the connection closes mid-body ----

#[tokio::test]
async fn close_mid_body_retr() {
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("RETR 1"),
        Step::send(format!("+OK 500 octets\r\n{PARTIAL}")),
        Step::Close,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let mut out = Vec::new();
    let error = session.retr_to(1, &mut out).await.unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedEof { phase: Phase::Data }
    );
    assert!(error.is_fatal());
    assert!(!out.is_empty(), "the writer saw the start of the message");
    assert_partial(&out);
    drop(session);
    let t = hostile.finish().await;
    assert!(!t.lines.iter().any(|l| l.starts_with("DELE")));
}

#[tokio::test]
async fn close_mid_body_retr_many() {
    let mut script = logged_in("USER\r\nPIPELINING\r\n");
    script.extend([
        Step::expect("RETR 1"),
        Step::expect("RETR 2"),
        Step::send(format!(
            "+OK\r\nSubject: whole\r\n\r\nbody\r\n.\r\n+OK\r\n{PARTIAL}"
        )),
        Step::Close,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let mut completed = Vec::new();
    let error = session
        .retr_many(
            [1, 2],
            |_| Vec::new(),
            |msg, body| completed.push((msg, body)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedEof { phase: Phase::Data }
    );
    // Only the complete message was handed over as complete.
    assert_eq!(completed, [(1, b"Subject: whole\r\n\r\nbody\r\n".to_vec())]);
    drop(session);
    let t = hostile.finish().await;
    assert!(!t.lines.iter().any(|l| l.starts_with("DELE")));
}

// ---- duplicate replies ----

#[tokio::test]
async fn duplicate_reply_in_one_packet() {
    let mut script = logged_in("USER\r\nPIPELINING\r\n");
    script.extend([
        Step::expect("RETR 1"),
        Step::expect("RETR 2"),
        // Two replies for RETR 1 (the second a forged message), then RETR 2's.
        Step::send(
            "+OK\r\nreal 1\r\n.\r\n+OK\r\nforged\r\n.\r\n+OK\r\nreal 2\r\n.\r\n-ERR extra\r\n",
        ),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let mut completed = Vec::new();
    let result = session
        .retr_many(
            [1, 2],
            |_| Vec::new(),
            |msg, body| completed.push((msg, body)),
        )
        .await;
    // Replies are matched in order; the one reply too many is fatal, and no forged body is
    // ever attributed to a message beyond the replies' order.
    let error = result.unwrap_err();
    assert_eq!(protocol(&error), &ProtocolError::UnsolicitedData);
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn duplicate_reply_after_the_reply() {
    // The extra reply arrives a moment after the real one, while the session is idle: it must
    // not be taken as the answer to the next command.
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("NOOP"),
        Step::send("+OK\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("+OK 1 1\r\n"),
        Step::ExpectAny,
        Step::send("+OK 5 500\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    session.noop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = session.stat().await.unwrap_err();
    assert_eq!(protocol(&error), &ProtocolError::UnsolicitedData);
    drop(session);
    drop(hostile.server.finish().await);
}

// ---- caller-side injection: refused before anything is written ----

async fn refused_login(login: Login, capabilities: &str) -> Misuse {
    let mut script = vec![Step::StartTls, greeting()];
    script.extend(capa(capabilities));
    script.extend([Step::expect("QUIT"), Step::send("+OK\r\n")]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = session.login_with(login).await.unwrap_err();
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["CAPA", "QUIT"], "nothing but QUIT after CAPA");
    match error {
        Error::Misuse(misuse) => misuse,
        other => panic!("{other:?}"),
    }
}

fn forbidden(misuse: &Misuse, byte: u8) {
    assert!(
        matches!(misuse, Misuse::InvalidArgument(f) if f.byte == byte),
        "{misuse:?}"
    );
}

#[tokio::test]
async fn caller_injection_user() {
    for (user, byte) in [
        ("victim\r\nDELE 1", b'\r'),
        ("victim\nDELE 1", b'\n'),
        ("victim\0", 0),
    ] {
        let login = Login::using(AuthMethod::UserPass, Credentials::password(user, PASSWORD));
        forbidden(&refused_login(login, "USER\r\n").await, byte);
    }
}

#[tokio::test]
async fn caller_injection_pass() {
    for (password, byte) in [("pw\r\nDELE 1", b'\r'), ("pw\nQUIT", b'\n')] {
        let login = Login::using(AuthMethod::UserPass, Credentials::password(USER, password));
        forbidden(&refused_login(login, "USER\r\n").await, byte);
    }
}

#[tokio::test]
async fn caller_injection_pass_nul() {
    let login = Login::using(
        AuthMethod::UserPass,
        Credentials::password(USER, "pw\0extra"),
    );
    forbidden(&refused_login(login, "USER\r\n").await, 0);
}

#[tokio::test]
async fn caller_injection_apop() {
    for (user, byte) in [("victim\r\nDELE 1", b'\r'), ("vic\ntim", b'\n'), ("v\0", 0)] {
        let login = Login::using(AuthMethod::Apop, Credentials::password(user, PASSWORD));
        forbidden(&refused_login(login, "").await, byte);
    }
}

#[tokio::test]
async fn retr_many_refusal_is_data() {
    // retr_many reports refusals and complete messages; a server refusal is data.
    let mut script = logged_in("USER\r\n");
    script.extend([
        Step::expect("RETR 1"),
        Step::send("-ERR [SYS/TEMP] locked\r\n"),
        Step::expect("RETR 2"),
        Step::send("+OK\r\nok\r\n.\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let fetched = session
        .retr_many([1, 2], |_| Vec::new(), |_, _| {})
        .await
        .unwrap();
    assert!(
        matches!(&fetched[0], Fetched::Refused { msg: 1, response } if response.code == Some(ResponseCode::SysTemp))
    );
    assert_eq!(fetched[1], Fetched::Message { msg: 2, octets: 4 });
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn list_and_uidl_in_one_flight_then_quit_without_waiting() {
    // Issue 14: with PIPELINING, UIDL is on the wire before LIST is answered (the server reads
    // both before it replies), and QUIT is not waited for: a server that never answers it
    // does not hold the caller up.
    let mut script = logged_in("USER\r\nUIDL\r\nPIPELINING\r\n");
    script.extend([
        Step::expect("LIST"),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 120\r\n2 340\r\n.\r\n+OK\r\n1 uid-a\r\n2 uid-b\r\n.\r\n"),
        Step::expect("QUIT"),
        Step::Stall,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let (listing, uids) = session.list_and_uidl().await.unwrap();
    assert_eq!(listing.len(), 2);
    assert_eq!(listing[1].size, 340);
    let uids = uids.unwrap();
    assert_eq!(uids[0].uid, "uid-a");
    // Waiting for the reply would run into the reply deadline and fail.
    session.quit_without_waiting().await.unwrap();
    let transcript = hostile.finish().await;
    assert_eq!(
        transcript.lines.last().map(String::as_str),
        Some("QUIT"),
        "{transcript:?}"
    );
}

#[tokio::test]
async fn list_and_uidl_keeps_the_listing_when_uidl_is_refused() {
    let mut script = logged_in("USER\r\nPIPELINING\r\n");
    script.extend([
        Step::expect("LIST"),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 120\r\n.\r\n-ERR no UIDL here\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    let (listing, uids) = session.list_and_uidl().await.unwrap();
    assert_eq!(listing.len(), 1);
    assert!(matches!(uids, Err(Error::Refused { .. })), "{uids:?}");
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn quit_without_waiting_waits_after_dele() {
    // With DELE, the reply to QUIT is what commits the deletion: it is awaited, and a server
    // that could not remove the message is reported.
    let mut script = logged_in("USER\r\nPIPELINING\r\n");
    script.extend([
        Step::expect("DELE 1"),
        Step::send("+OK marked\r\n"),
        Step::expect("QUIT"),
        Step::send("-ERR some deleted messages not removed\r\n"),
        Step::Close,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    login(&mut session).await;
    session.dele(1).await.unwrap();
    let quit = session.quit_without_waiting().await;
    assert!(matches!(quit, Err(Error::Refused { .. })), "{quit:?}");
    hostile.finish().await;
}
