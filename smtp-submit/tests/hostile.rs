//! Scripted hostile servers against the real tokio adapter (`smtp_submit::tokio::Session`):
//! STARTTLS injection and stripping, bad certificates, malformed and oversized replies, stalls
//! at every phase, connections closed mid-body, replies that do not match the commands, and
//! arguments from the caller that try to smuggle commands.
//!
//! Each scenario asserts the safe outcome: a typed error naming the cause, no credential sent in
//! clear, no injected byte accepted as a reply, no body byte sent as a command, and nothing
//! reported as sent unless the server accepted it.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine as _;
use mail_testground::hostile::{HostileServer, Pki, ServerCert, Step, Transcript};
use smtp_submit::tokio::{
    ConnectOptions, ConnectionError, Error, Session, SetupTimeouts, Stage, Timeout, TransportError,
    TrustRoots,
};
use smtp_submit::{
    Address, Argument, AuthMethod, ClientName, Config, Credentials, Envelope, MailOptions,
    Mechanism, MessageOutcome, Misuse, Phase, ProtocolError, Recipient, Security, SendReport,
    Timeouts, TransactionFailure,
};

/// Every deadline of these tests: short, so stalls fail fast, but far above loopback latency.
const DEADLINE: Duration = Duration::from_millis(1500);
const USER: &str = "victim";
const PASSWORD: &str = "hostile-s3cret-pass";
const GREETING: &str = "220 hostile.example ESMTP\r\n";
/// Occurs in every test body and nowhere else: finds body bytes in a transcript.
const MARKER: &str = "BODY-MARKER-7731";

const SCENARIOS: &[&str] = &[
    "starttls_injection_same_packet",
    "starttls_injection_separate_write_immediately",
    "starttls_injection_separate_write_after_a_pause",
    "starttls_missing_from_ehlo",
    "starttls_refused_454",
    "starttls_refused_502",
    "ehlo_refused_no_helo_fallback_without_tls",
    "greeting_554",
    "greeting_421",
    "plaintext_without_opt_in_sends_no_credential",
    "ehlo_before_tls_is_forgotten",
    "implicit_unknown_ca",
    "implicit_wrong_host_name",
    "implicit_expired",
    "implicit_handshake_stall",
    "starttls_unknown_ca",
    "starttls_wrong_host_name",
    "starttls_expired",
    "starttls_handshake_stall",
    "line_longer_than_the_limit",
    "multiline_reply_that_never_ends",
    "multiline_reply_that_stops_without_final_line",
    "ehlo_with_thousands_of_lines",
    "invalid_utf8_and_nul_bytes",
    "reply_code_out_of_range",
    "inconsistent_multiline_codes",
    "intermediate_reply_to_mail",
    "stall_greeting",
    "stall_ehlo",
    "stall_starttls",
    "stall_auth",
    "stall_mail",
    "stall_rcpt",
    "stall_data",
    "stall_mid_body",
    "stall_end_of_data",
    "stall_bdat",
    "close_mid_body_data",
    "close_before_end_of_data_reply",
    "close_before_bdat_reply",
    "data_354_after_every_recipient_failed_in_memory",
    "data_354_after_every_recipient_failed_streamed",
    "bdat_250_with_wrong_count",
    "bdat_250_before_the_chunk",
    "duplicate_reply_shifts_into_data",
    "duplicate_reply_in_bdat_flight",
    "duplicate_reply_after_the_transaction",
    "unsolicited_421_while_idle",
    "caller_injection_ehlo_name",
    "caller_injection_address",
    "caller_injection_envid",
    "caller_injection_orcpt",
    "caller_injection_auth_credentials",
    "cancelled_send_mid_data",
    "scanned_file_declares_what_its_content_needs",
    "limits_rcptmax_splits_up_front",
    "too_many_recipients_452_continues_in_another_transaction",
    "limits_mailmax_stops_with_every_recipient_named",
    "one_flight_then_quit_without_waiting",
    "small_file_goes_in_one_flight",
];

#[test]
fn scenario_count() {
    eprintln!(
        "smtp-submit hostile-server scenarios (tokio adapter): {}",
        SCENARIOS.len()
    );
}

// ---- helpers ----

fn config() -> Config {
    let timeouts = Timeouts::default()
        .with_greeting(DEADLINE)
        .with_command(DEADLINE)
        .with_mail(DEADLINE)
        .with_rcpt(DEADLINE)
        .with_data_init(DEADLINE)
        .with_data_block(DEADLINE)
        .with_data_termination(DEADLINE);
    Config::new(
        ClientName::new("client.example").unwrap(),
        Security::ImplicitTls,
    )
    .with_timeouts(timeouts)
}

fn credentials() -> Credentials {
    Credentials::password(USER, PASSWORD)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn from() -> Address {
    Address::new("victim@client.example").unwrap()
}

fn to(local: &str) -> Address {
    Address::new(format!("{local}@hostile.example")).unwrap()
}

fn envelope(recipients: &[&str]) -> Envelope {
    recipients
        .iter()
        .fold(Envelope::new(Some(from())), |e, r| e.with_recipient(to(r)))
}

/// A body that also tries to smuggle a second transaction.
fn body() -> Vec<u8> {
    format!(
        "Subject: {MARKER}\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<a@b>\r\nDATA\r\n\
         {MARKER}\r\n.\r\n"
    )
    .into_bytes()
}

fn ehlo(keywords: &[&str]) -> String {
    let mut reply = String::from("250");
    reply.push(if keywords.is_empty() { ' ' } else { '-' });
    reply.push_str("hostile.example\r\n");
    for (i, keyword) in keywords.iter().enumerate() {
        let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
        reply.extend(["250", &sep.to_string(), keyword, "\r\n"]);
    }
    reply
}

/// Implicit TLS, greeting, EHLO with these keywords.
fn ready(keywords: &[&str]) -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::send(GREETING),
        Step::expect("EHLO client.example"),
        Step::send(ehlo(keywords)),
    ]
}

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

    async fn connect(&self, security: Security) -> Result<Session, Error> {
        self.connect_with(security, config()).await
    }

    async fn connect_with(&self, security: Security, config: Config) -> Result<Session, Error> {
        let options = ConnectOptions::new("127.0.0.1")
            .with_port(self.server.port())
            .with_trust_roots(TrustRoots::CaFile(self.pki.ca_file()))
            .with_tls_name("localhost")
            .with_timeouts(SetupTimeouts::uniform(DEADLINE));
        Session::connect(&options, config.with_security(security)).await
    }

    async fn finish(self) -> Transcript {
        let transcript = self.server.finish().await;
        assert_no_credential_in_clear(&transcript);
        transcript
    }
}

fn assert_no_credential_in_clear(t: &Transcript) {
    let plain = b64(format!("\0{USER}\0{PASSWORD}").as_bytes());
    let login = b64(PASSWORD.as_bytes());
    let needles: [&[u8]; 4] = [
        b"AUTH",
        PASSWORD.as_bytes(),
        plain.as_bytes(),
        login.as_bytes(),
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

fn assert_no_body(t: &Transcript) {
    assert!(
        !t.any_contains(MARKER.as_bytes()),
        "body bytes were sent: {:?}",
        String::from_utf8_lossy(&t.encrypted)
    );
}

fn protocol(error: &Error) -> &ProtocolError {
    match error {
        Error::Protocol(e) => e,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn server_timeout(error: &Error) -> Phase {
    match error {
        Error::Connection(ConnectionError::Timeout(Timeout::Server { phase })) => *phase,
        other => panic!("expected a server timeout, got {other:?}"),
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

fn failed(report: &SendReport) -> &TransactionFailure {
    report
        .failure()
        .unwrap_or_else(|| panic!("reported as sent: {report:?}"))
}

// ---- STARTTLS response injection ----

fn starttls_prelude() -> Vec<Step> {
    vec![
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send(ehlo(&["PIPELINING", "STARTTLS", "AUTH PLAIN"])),
        Step::expect("STARTTLS"),
    ]
}

#[tokio::test]
async fn starttls_injection_same_packet() {
    let mut script = starttls_prelude();
    script.push(Step::send("220 go ahead\r\n250 forged\r\n"));
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert_eq!(protocol(&error), &ProtocolError::InputAfterStartTls);
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["EHLO client.example", "STARTTLS"]);
}

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
async fn starttls_injection_separate_write_immediately() {
    let mut script = starttls_prelude();
    script.extend([
        Step::send("220 go ahead\r\n"),
        Step::send("250-forged\r\n250 AUTH PLAIN\r\n"),
        Step::StartTls,
    ]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    injection_refused(&error);
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty());
}

#[tokio::test]
async fn starttls_injection_separate_write_after_a_pause() {
    let mut script = starttls_prelude();
    script.extend([
        Step::send("220 go ahead\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("250 forged\r\n"),
        Step::StartTls,
    ]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    injection_refused(&error);
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty());
}

// ---- stripping ----

async fn starttls_session_fails(script: Vec<Step>) -> (Error, Transcript) {
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    (error, hostile.finish().await)
}

/// A refused or missing STARTTLS, when TLS is required, is fatal (as in POP3): the client sends
/// nothing more, not even QUIT.
fn nothing_after(t: &Transcript, before: &[&str]) {
    assert_eq!(t.lines, before);
}

#[tokio::test]
async fn starttls_missing_from_ehlo() {
    let script = vec![
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send(ehlo(&["PIPELINING", "AUTH PLAIN LOGIN"])),
    ];
    let (error, t) = starttls_session_fails(script).await;
    assert!(matches!(error, Error::StartTlsNotOffered), "{error:?}");
    nothing_after(&t, &["EHLO client.example"]);
}

async fn starttls_refused_with(reply: &str) -> Error {
    let mut script = starttls_prelude();
    script.push(Step::send(reply));
    let (error, t) = starttls_session_fails(script).await;
    nothing_after(&t, &["EHLO client.example", "STARTTLS"]);
    error
}

#[tokio::test]
async fn starttls_refused_454() {
    let error = starttls_refused_with("454 4.7.0 TLS not available\r\n").await;
    let Error::Refused { stage, reply } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*stage, reply.code()), (Stage::StartTls, 454));
    assert!(error.is_transient());
}

#[tokio::test]
async fn starttls_refused_502() {
    let error = starttls_refused_with("502 5.5.1 not implemented\r\n").await;
    let Error::Refused { stage, reply } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*stage, reply.code()), (Stage::StartTls, 502));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn ehlo_refused_no_helo_fallback_without_tls() {
    // HELO has no STARTTLS: falling back to it would mean going on in clear.
    let script = vec![
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send("502 5.5.2 EHLO? never heard of it\r\n"),
    ];
    let (error, t) = starttls_session_fails(script).await;
    assert!(matches!(error, Error::StartTlsNotOffered), "{error:?}");
    nothing_after(&t, &["EHLO client.example"]);
}

/// After a refusing greeting the client says QUIT, except after 421, which closes the
/// connection at once (RFC 5321 section 3.8).
async fn greeting_refused(line: &str) -> Error {
    let quit = !line.starts_with("421");
    let mut script = vec![Step::StartTls, Step::send(line)];
    if quit {
        script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    }
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert_eq!(t.lines, if quit { &["QUIT"][..] } else { &[] });
    assert!(t.encrypted.is_empty() || quit);
    error
}

#[tokio::test]
async fn greeting_554() {
    let error = greeting_refused("554 5.7.1 you are not welcome\r\n").await;
    let Error::Refused { stage, reply } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*stage, reply.code()), (Stage::Greeting, 554));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn greeting_421() {
    let error = greeting_refused("421 4.3.2 too busy\r\n").await;
    // Refused at the greeting like a 554, but without QUIT: the server is closing the channel.
    assert!(
        matches!(&error, Error::Refused { stage: Stage::Greeting, reply } if reply.code() == 421),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn plaintext_without_opt_in_sends_no_credential() {
    let script = vec![
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send(ehlo(&["AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256"])),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ];
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::Plaintext).await.unwrap();
    for method in [
        AuthMethod::Auto,
        AuthMethod::Mechanism(Mechanism::Plain),
        AuthMethod::Mechanism(Mechanism::Login),
        AuthMethod::Mechanism(Mechanism::ScramSha256),
    ] {
        let error = session
            .authenticate(&credentials(), method)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Misuse(Misuse::CleartextCredentials)),
            "{method:?}: {error:?}"
        );
    }
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["EHLO client.example", "QUIT"]);
}

#[tokio::test]
async fn ehlo_before_tls_is_forgotten() {
    // Before TLS the server offers only PLAIN (an attacker could strip the rest); after TLS,
    // SCRAM-SHA-256 too: the automatic choice follows what was said over TLS.
    let mut script = vec![
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send(ehlo(&["STARTTLS", "AUTH PLAIN"])),
        Step::expect("STARTTLS"),
        Step::send("220 go ahead\r\n"),
        Step::StartTls,
        Step::expect("EHLO client.example"),
        Step::send(ehlo(&["AUTH SCRAM-SHA-256 PLAIN"])),
        Step::expect("AUTH SCRAM-SHA-256"),
        Step::send("535 5.7.8 no\r\n"),
    ];
    script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::StartTls).await.unwrap();
    let error = session
        .authenticate(&credentials(), AuthMethod::Auto)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Auth {
                mechanism: Mechanism::ScramSha256,
                ..
            }
        ),
        "{error:?}"
    );
    session.quit().await.unwrap();
    hostile.finish().await;
}

// ---- certificates ----

async fn implicit_with(cert: impl FnOnce(&Pki) -> ServerCert) -> Error {
    let hostile = Hostile::with_cert(vec![Step::StartTls, Step::send(GREETING)], cert).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert!(t.lines.is_empty() && t.encrypted.is_empty());
    error
}

#[tokio::test]
async fn implicit_unknown_ca() {
    let error = implicit_with(|_| Pki::generate().leaf_for("localhost")).await;
    assert!(tls_failure(&error).contains("UnknownIssuer"), "{error}");
    assert!(!error.is_transient());
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
                phase: mail_common::transport::SetupPhase::TlsHandshake,
                ..
            }))
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

async fn starttls_with(cert: impl FnOnce(&Pki) -> ServerCert) -> Error {
    let mut script = starttls_prelude();
    script.extend([Step::send("220 go ahead\r\n"), Step::StartTls]);
    let hostile = Hostile::with_cert(script, cert).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    let t = hostile.finish().await;
    assert!(t.encrypted.is_empty());
    error
}

#[tokio::test]
async fn starttls_unknown_ca() {
    let error = starttls_with(|_| Pki::generate().leaf_for("localhost")).await;
    assert!(tls_failure(&error).contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn starttls_wrong_host_name() {
    let error = starttls_with(|pki| pki.leaf_for("mail.attacker.example")).await;
    assert!(
        tls_failure(&error).contains("not valid for name"),
        "{error}"
    );
}

#[tokio::test]
async fn starttls_expired() {
    let error = starttls_with(|pki| pki.expired_leaf_for("localhost")).await;
    assert!(
        tls_failure(&error).to_lowercase().contains("expired"),
        "{error}"
    );
}

#[tokio::test]
async fn starttls_handshake_stall() {
    let mut script = starttls_prelude();
    script.extend([Step::send("220 go ahead\r\n"), Step::StallHandshake]);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Timeout(Timeout::Setup {
                phase: mail_common::transport::SetupPhase::TlsHandshake,
                ..
            }))
        ),
        "{error:?}"
    );
    hostile.finish().await;
}

// ---- malformed and oversized ----

async fn implicit_fails(script: Vec<Step>) -> Error {
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::ImplicitTls).await.unwrap_err();
    drop(hostile.finish().await);
    error
}

#[tokio::test]
async fn line_longer_than_the_limit() {
    let long = format!("220 {}\r\n", "x".repeat(5000));
    let error = implicit_fails(vec![Step::StartTls, Step::send(long)]).await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::LineTooLong { limit: 2048 }
    );
}

#[tokio::test]
async fn multiline_reply_that_never_ends() {
    let error = implicit_fails(vec![
        Step::StartTls,
        Step::SendRepeated {
            bytes: b"220-welcome, and welcome again\r\n".to_vec(),
            count: 100_000,
        },
    ])
    .await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::TooManyReplyLines { limit: 128 }
    );
}

#[tokio::test]
async fn multiline_reply_that_stops_without_final_line() {
    let error = implicit_fails(vec![
        Step::StartTls,
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send("250-hostile.example\r\n250-PIPELINING\r\n"),
        Step::Stall,
    ])
    .await;
    assert_eq!(server_timeout(&error), Phase::Ehlo);
}

#[tokio::test]
async fn ehlo_with_thousands_of_lines() {
    let error = implicit_fails(vec![
        Step::StartTls,
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send("250-hostile.example\r\n"),
        Step::SendRepeated {
            bytes: b"250-X-FILLER\r\n".to_vec(),
            count: 5000,
        },
        Step::send("250 SIZE 1000\r\n"),
    ])
    .await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::TooManyEhloLines { limit: 64 }
    );
}

#[tokio::test]
async fn invalid_utf8_and_nul_bytes() {
    // Reply text is data: invalid UTF-8 and NUL are kept (lossily) and harm nothing.
    let script = vec![
        Step::StartTls,
        Step::send(b"220 caf\xe9 \xff\0 ESMTP\r\n"),
        Step::expect("EHLO"),
        Step::send(b"250-hostile\xff\r\n250-X-\0\xfe\r\n250 PIPELINING\r\n"),
        Step::expect("NOOP"),
        Step::send(b"250 2.0.0 \xc3\x28\0 ok\r\n"),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ];
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    assert!(session.capabilities().pipelining());
    let reply = session.noop().await.unwrap();
    assert_eq!(reply.code(), 250);
    assert!(reply.text().contains('\u{fffd}'), "{reply:?}");
    session.quit().await.unwrap();
    hostile.finish().await;
}

#[tokio::test]
async fn reply_code_out_of_range() {
    for line in [
        "600 what\r\n",
        "199 too small\r\n",
        "099 tiny\r\n",
        "2500 four digits\r\n",
        "25 two digits\r\n",
        "2x0 letters\r\n",
        "\0\0\0 nul\r\n",
    ] {
        let error = implicit_fails(vec![Step::StartTls, Step::send(line)]).await;
        assert!(
            matches!(protocol(&error), ProtocolError::MalformedReply(_)),
            "{line:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn inconsistent_multiline_codes() {
    let error = implicit_fails(vec![
        Step::StartTls,
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::send("250-hostile.example\r\n550 but no\r\n"),
    ])
    .await;
    assert!(
        matches!(protocol(&error), ProtocolError::MalformedReply(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn intermediate_reply_to_mail() {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("354 go on, send it now\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body())
        .await
        .unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedReply {
            code: 354,
            phase: Phase::Mail
        }
    );
    drop(session);
    let t = hostile.finish().await;
    assert_no_body(&t);
}

// ---- stalls at every phase ----

async fn stalls_in(script: Vec<Step>, run: impl AsyncFnOnce(&mut Session) -> Error) -> Phase {
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = run(&mut session).await;
    drop(session);
    hostile.finish().await;
    server_timeout(&error)
}

#[tokio::test]
async fn stall_greeting() {
    let error = implicit_fails(vec![Step::StartTls, Step::Stall]).await;
    // The greeting wait names the server; over implicit TLS the mode is not the suspect.
    let Error::Connection(ConnectionError::Transport(TransportError::NoGreeting {
        port,
        after,
        implicit_tls: true,
        ..
    })) = &error
    else {
        panic!("expected NoGreeting, got {error:?}");
    };
    assert_ne!(*port, 0);
    assert_eq!(*after, DEADLINE);
    assert!(
        error.to_string().contains("after the TLS handshake"),
        "{error}"
    );
}

#[tokio::test]
async fn stall_ehlo() {
    let error = implicit_fails(vec![
        Step::StartTls,
        Step::send(GREETING),
        Step::expect("EHLO"),
        Step::Stall,
    ])
    .await;
    assert_eq!(server_timeout(&error), Phase::Ehlo);
}

#[tokio::test]
async fn stall_starttls() {
    let mut script = starttls_prelude();
    script.push(Step::Stall);
    let hostile = Hostile::start(script).await;
    let error = hostile.connect(Security::StartTls).await.unwrap_err();
    assert_eq!(server_timeout(&error), Phase::StartTls);
    hostile.finish().await;
}

#[tokio::test]
async fn stall_auth() {
    let mut script = ready(&["AUTH PLAIN"]);
    script.extend([Step::expect("AUTH PLAIN"), Step::Stall]);
    let phase = stalls_in(script, async |session| {
        session
            .authenticate(&credentials(), AuthMethod::Auto)
            .await
            .unwrap_err()
    })
    .await;
    assert_eq!(phase, Phase::Auth);
}

async fn send_error(session: &mut Session) -> Error {
    session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn stall_mail() {
    let mut script = ready(&[]);
    script.extend([Step::expect("MAIL FROM"), Step::Stall]);
    assert_eq!(stalls_in(script, send_error).await, Phase::Mail);
}

#[tokio::test]
async fn stall_rcpt() {
    let mut script = ready(&[]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::send("250 ok\r\n"),
        Step::expect("RCPT TO"),
        Step::Stall,
    ]);
    assert_eq!(stalls_in(script, send_error).await, Phase::Rcpt);
}

#[tokio::test]
async fn stall_data() {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n"),
        Step::Stall,
    ]);
    assert_eq!(stalls_in(script, send_error).await, Phase::DataInit);
}

#[tokio::test]
async fn stall_mid_body() {
    // The server stops reading in the middle of the body: the writes back up and the
    // data-block deadline fires.
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::HangFor(Duration::from_secs(8)),
    ]);
    // An endless body: whatever the socket buffers hold, the writes back up eventually.
    let phase = stalls_in(script, async |session| {
        session
            .send(
                envelope(&["a"]),
                MailOptions::default(),
                tokio::io::repeat(b'x'),
            )
            .await
            .unwrap_err()
    })
    .await;
    assert_eq!(phase, Phase::DataBlock);
}

#[tokio::test]
async fn stall_end_of_data() {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectDataEnd,
        Step::Stall,
    ]);
    assert_eq!(stalls_in(script, send_error).await, Phase::DataTermination);
}

#[tokio::test]
async fn stall_bdat() {
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect(&format!("BDAT {} LAST", body.len())),
        Step::ExpectBytes(body.len()),
        Step::send("250 ok\r\n250 ok\r\n"),
        Step::Stall,
    ]);
    assert_eq!(stalls_in(script, send_error).await, Phase::Bdat);
}

// ---- the connection closes mid-body: nothing is reported as sent ----

async fn closed_send(script: Vec<Step>, streamed: bool) -> Error {
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let result = if streamed {
        let line = format!("{MARKER} {}\r\n", "y".repeat(100));
        let big = line.repeat(20_000).into_bytes();
        session
            .send(envelope(&["a"]), MailOptions::default(), Cursor::new(big))
            .await
    } else {
        session
            .send_bytes(envelope(&["a"]), MailOptions::default(), &body())
            .await
    };
    drop(session);
    drop(hostile.finish().await);
    match result {
        Ok(report) => panic!("reported: {report:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn close_mid_body_data() {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectAny,
        Step::Close,
    ]);
    let error = closed_send(script, true).await;
    assert!(
        matches!(
            &error,
            Error::Protocol(ProtocolError::UnexpectedEof { .. })
                | Error::Connection(ConnectionError::Io(_))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn close_before_end_of_data_reply() {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectDataEnd,
        Step::Close,
    ]);
    let error = closed_send(script, false).await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedEof {
            phase: Phase::DataTermination
        }
    );
}

#[tokio::test]
async fn close_before_bdat_reply() {
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("BDAT"),
        Step::ExpectBytes(body.len()),
        Step::send("250 ok\r\n250 ok\r\n"),
        Step::Close,
    ]);
    let error = closed_send(script, false).await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedEof { phase: Phase::Bdat }
    );
}

// ---- replies that do not fit the commands ----

/// 354 to DATA although every recipient was refused (RFC 2920 section 3.1): the client ends
/// the data at once with a lone ".", sends no body byte, and reports the message as failed even
/// when the server claims to have accepted it.
async fn data_354_after_every_recipient_failed(streamed: bool, final_reply: &str) {
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO:<a@"),
        Step::expect("RCPT TO:<b@"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n550 5.1.1 no a\r\n450 4.2.1 no b\r\n354 go ahead\r\n"),
        Step::expect("."),
        Step::send(final_reply),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = if streamed {
        session
            .send(
                envelope(&["a", "b"]),
                MailOptions::default(),
                Cursor::new(body()),
            )
            .await
    } else {
        session
            .send_bytes(envelope(&["a", "b"]), MailOptions::default(), &body())
            .await
    }
    .unwrap();
    assert!(
        matches!(
            failed(&report),
            TransactionFailure::NoValidRecipients { .. }
        ),
        "{report:?}"
    );
    assert_eq!(report.rejected().count(), 2);
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_no_body(&t);
    assert_eq!(t.lines.len(), 7, "{:?}", t.lines);
    assert_eq!(&t.lines[4..], ["DATA", ".", "QUIT"]);
}

#[tokio::test]
async fn data_354_after_every_recipient_failed_in_memory() {
    data_354_after_every_recipient_failed(false, "554 5.5.1 no valid recipients\r\n").await;
}

#[tokio::test]
async fn data_354_after_every_recipient_failed_streamed() {
    // The server even claims success for the empty message.
    data_354_after_every_recipient_failed(true, "250 2.0.0 queued as FAKE\r\n").await;
}

/// The text of a BDAT reply is the server's business: a wrong octet count in it changes
/// nothing. The chunk on the wire is exactly as long as announced, and only a command follows.
#[tokio::test]
async fn bdat_250_with_wrong_count() {
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect(&format!("BDAT {} LAST", body.len())),
        Step::ExpectBytes(body.len()),
        Step::send("250 ok\r\n250 ok\r\n250 2.0.0 OK, 999999 octets received\r\n"),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body)
        .await
        .unwrap();
    assert!(report.is_sent());
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert!(t.stopped.is_none(), "{:?}", t.stopped);
    assert!(t.encrypted.ends_with(b"QUIT\r\n"));
}

/// A server that answers BDAT before reading the chunk (as if it had announced a shorter
/// count): the client still sends exactly the chunk it announced, then the next command.
#[tokio::test]
async fn bdat_250_before_the_chunk() {
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect(&format!("BDAT {} LAST", body.len())),
        Step::send("250 ok\r\n250 ok\r\n250 2.0.0 0 octets, thanks\r\n"),
        Step::ExpectBytes(body.len()),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body)
        .await
        .unwrap();
    assert!(report.is_sent());
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert!(t.stopped.is_none(), "{:?}", t.stopped);
}

#[tokio::test]
async fn duplicate_reply_shifts_into_data() {
    // MAIL, RCPT, DATA in one flight; the RCPT reply comes twice. Strict in-order matching
    // makes the duplicate the reply to DATA, a 250 that DATA can never get: fatal, no body.
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = send_error(&mut session).await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnexpectedReply {
            code: 250,
            phase: Phase::DataInit
        }
    );
    drop(session);
    let t = hostile.finish().await;
    assert_no_body(&t);
}

#[tokio::test]
async fn duplicate_reply_in_bdat_flight() {
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("BDAT"),
        Step::ExpectBytes(body.len()),
        Step::send("250 ok\r\n250 ok\r\n250 queued\r\n250 queued again\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = send_error(&mut session).await;
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnsolicitedReply { code: 250 }
    );
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn duplicate_reply_after_the_transaction() {
    // The extra reply comes a moment later, while the session is idle: it must not become the
    // reply to the next command.
    let body = body();
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("BDAT"),
        Step::ExpectBytes(body.len()),
        Step::send("250 ok\r\n250 ok\r\n250 queued\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("250 queued again\r\n"),
        Step::ExpectAny,
        Step::send("250 fine\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body)
        .await
        .unwrap();
    assert!(report.is_sent());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = session.noop().await.unwrap_err();
    assert_eq!(
        protocol(&error),
        &ProtocolError::UnsolicitedReply { code: 250 }
    );
    drop(session);
    let t = hostile.finish().await;
    assert!(!t.lines.iter().any(|l| l == "NOOP"), "{:?}", t.lines);
}

#[tokio::test]
async fn unsolicited_421_while_idle() {
    // A 421 while idle is legitimate (the server is shutting down): the next call reports it.
    let mut script = ready(&[]);
    script.extend([
        Step::send("421 4.3.2 shutting down\r\n"),
        Step::Pause(DEADLINE),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = send_error(&mut session).await;
    assert!(
        matches!(&error, Error::Refused { stage: Stage::ServiceClosing, reply } if reply.code() == 421),
        "{error:?}"
    );
    drop(session);
    let t = hostile.finish().await;
    assert_no_body(&t);
    assert!(!t.lines.iter().any(|l| l.starts_with("MAIL")));
}

// ---- caller-side injection: refused before anything is written ----

#[test]
fn caller_injection_ehlo_name() {
    for name in ["client\r\nMAIL FROM:<x@y>", "client\n", "cli\0ent", "a b"] {
        assert!(ClientName::new(name).is_err(), "{name:?}");
    }
}

#[test]
fn caller_injection_address() {
    for address in [
        "a@b\r\nRCPT TO:<c@d>",
        "a@b\n",
        "a\r@b",
        "a@b\0",
        "a@b> NOTIFY=NEVER",
    ] {
        assert!(Address::new(address).is_err(), "{address:?}");
    }
}

/// A session that only says EHLO and QUIT: anything else in the transcript was injected.
async fn refused_transaction(envelope: Envelope, options: MailOptions) -> (Misuse, Transcript) {
    let mut script = ready(&["PIPELINING", "DSN", "AUTH PLAIN"]);
    script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let error = session
        .send_bytes(envelope, options, &body())
        .await
        .unwrap_err();
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["EHLO client.example", "QUIT"]);
    assert_no_body(&t);
    match error {
        Error::Misuse(misuse) => (misuse, t),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn caller_injection_envid() {
    for (envid, byte) in [("id\r\nRSET", b'\r'), ("id\n", b'\n'), ("i\0d", 0)] {
        let (misuse, _) =
            refused_transaction(envelope(&["a"]), MailOptions::default().with_envid(envid)).await;
        assert!(
            matches!(misuse, Misuse::InvalidArgument { argument: Argument::EnvelopeId, error } if error.byte == byte),
            "{misuse:?}"
        );
    }
}

#[tokio::test]
async fn caller_injection_orcpt() {
    for (orcpt, byte) in [("x@y\r\nDATA", b'\r'), ("x@y\n", b'\n'), ("x\0@y", 0)] {
        let envelope = Envelope::new(Some(from()))
            .with_recipient(to("ok"))
            .with_recipient(Recipient::new(to("b")).with_original_recipient(orcpt));
        let (misuse, _) = refused_transaction(envelope, MailOptions::default()).await;
        assert!(
            matches!(misuse, Misuse::InvalidArgument { argument: Argument::OriginalRecipient(1), error } if error.byte == byte),
            "{misuse:?}"
        );
    }
}

#[tokio::test]
async fn caller_injection_auth_credentials() {
    // A NUL cannot be carried by PLAIN: refused before AUTH is sent.
    let mut script = ready(&["AUTH PLAIN"]);
    script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    for credentials in [
        Credentials::password(USER, "pass\0word"),
        Credentials::password("vic\0tim", PASSWORD),
    ] {
        let error = session
            .authenticate(&credentials, AuthMethod::Mechanism(Mechanism::Plain))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Misuse(Misuse::Sasl(_))), "{error:?}");
    }
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines, ["EHLO client.example", "QUIT"]);

    // CR and LF in a password travel base64-encoded inside the one AUTH line: never a line
    // break on the wire.
    let password = "pw\r\nMAIL FROM:<x@y>\r\n";
    let encoded = b64(format!("\0{USER}\0{password}").as_bytes());
    let mut script = ready(&["AUTH PLAIN"]);
    script.extend([
        Step::expect(&format!("AUTH PLAIN {encoded}")),
        Step::send("235 2.7.0 ok\r\n"),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    session
        .authenticate(
            &Credentials::password(USER, password),
            AuthMethod::Mechanism(Mechanism::Plain),
        )
        .await
        .unwrap();
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines.len(), 3, "{:?}", t.lines);
    assert!(t.stopped.is_none(), "{:?}", t.stopped);
}

#[tokio::test]
async fn message_outcome_sent_only_after_the_final_reply() {
    // Sanity check of the report type the scenarios above rely on.
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::ExpectDataEnd,
        Step::send("250 2.0.0 queued\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body())
        .await
        .unwrap();
    assert!(matches!(
        report.outcome,
        MessageOutcome::Sent { accepted: 1, .. }
    ));
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn cancelled_send_mid_data() {
    // A timeout around `send_bytes` drops it while the server sits on the body (issue 16,
    // item 3). Every later call must say the session is unusable and why, not "busy".
    let mut script = ready(&["PIPELINING"]);
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::Stall,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    // Far shorter than the session's own deadlines (DEADLINE), so the drop always comes first.
    let cut = Duration::from_millis(200);
    let dropped = tokio::time::timeout(
        cut,
        session.send_bytes(envelope(&["a"]), MailOptions::default(), &body()),
    )
    .await;
    assert!(dropped.is_err(), "send_bytes finished: {dropped:?}");
    for _ in 0..2 {
        let error = session.noop().await.unwrap_err();
        let Error::Cancelled(cancelled) = &error else {
            panic!("expected Error::Cancelled, got {error:?}");
        };
        assert_eq!(cancelled.operation, "send_bytes");
        let text = error.to_string();
        assert!(text.contains("connect again"), "{text}");
        assert!(!text.contains("in progress"), "{text}");
    }
    let error = session
        .send_bytes(envelope(&["b"]), MailOptions::default(), &body())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Cancelled(_)), "{error:?}");
    // QUIT after a cancelled call just closes the connection.
    session.quit().await.unwrap();
    let t = hostile.finish().await;
    assert!(!t.any_contains(b"NOOP"), "{:?}", t.lines);
}

#[tokio::test]
async fn scanned_file_declares_what_its_content_needs() {
    // Issue 16, item 7: the MAIL FROM parameters as a server sees them.
    let mut script = ready(&["PIPELINING", "8BITMIME", "SMTPUTF8"]);
    for _ in 0..3 {
        script.extend([
            Step::expect("MAIL FROM"),
            Step::expect("RCPT TO"),
            Step::expect("DATA"),
            Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
            Step::ExpectDataEnd,
            Step::send("250 queued\r\n"),
        ]);
    }
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let files: [&[u8]; 3] = [
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhi\r\n",
        b"Subject: hi\r\n\r\ncaf\xc3\xa9\r\n",
        b"Subject: hi\r\n\r\nplain\r\n",
    ];
    for file in files {
        let report = session
            .send_rewindable(envelope(&["a"]), MailOptions::default(), Cursor::new(file))
            .await
            .unwrap();
        assert!(report.is_sent(), "{report:?}");
    }
    drop(session);
    let t = hostile.finish().await;
    let mail: Vec<&str> = t
        .lines
        .iter()
        .filter(|line| line.starts_with("MAIL FROM"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        mail,
        [
            "MAIL FROM:<victim@client.example> BODY=8BITMIME SMTPUTF8",
            "MAIL FROM:<victim@client.example> BODY=8BITMIME",
            "MAIL FROM:<victim@client.example>",
        ]
    );
}

/// The server side of one pipelined transaction (no CHUNKING): MAIL, `rcpt` RCPT replies,
/// DATA, body, final reply.
fn transaction(rcpt_replies: &[&str]) -> Vec<Step> {
    let mut steps = vec![Step::expect("MAIL FROM")];
    steps.extend(rcpt_replies.iter().map(|_| Step::expect("RCPT TO")));
    steps.push(Step::expect("DATA"));
    let mut replies = String::from("250 2.1.0 ok\r\n");
    for reply in rcpt_replies {
        replies.push_str(reply);
        replies.push_str("\r\n");
    }
    let any_accepted = rcpt_replies.iter().any(|r| r.starts_with('2'));
    if any_accepted {
        replies.push_str("354 go\r\n");
        steps.push(Step::send(replies));
        steps.push(Step::ExpectDataEnd);
        steps.push(Step::send("250 2.0.0 queued\r\n"));
    } else {
        replies.push_str("554 5.5.1 no valid recipients\r\n");
        steps.push(Step::send(replies));
    }
    steps
}

fn rcpt_lines(t: &Transcript) -> Vec<Vec<String>> {
    let mut transactions: Vec<Vec<String>> = Vec::new();
    for line in &t.lines {
        if line.starts_with("MAIL FROM") {
            transactions.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix("RCPT TO:<") {
            let local = rest.split('@').next().unwrap().to_owned();
            transactions.last_mut().unwrap().push(local);
        }
    }
    transactions
}

#[tokio::test]
async fn limits_rcptmax_splits_up_front() {
    // RFC 9422: LIMITS RCPTMAX=2 and five recipients make three transactions, no 452 needed.
    let mut script = ready(&["PIPELINING", "LIMITS RCPTMAX=2 MAILMAX=10"]);
    script.extend(transaction(&["250 ok", "250 ok"]));
    script.extend(transaction(&["250 ok", "250 ok"]));
    script.extend(transaction(&["250 ok"]));
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    assert_eq!(session.capabilities().rcpt_max(), Some(2));
    let report = session
        .send_bytes(
            envelope(&["r0", "r1", "r2", "r3", "r4"]),
            MailOptions::default(),
            &body(),
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.transactions.len(), 3);
    let indexes: Vec<usize> = report.recipients.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert!(report.recipients.iter().all(|r| report.delivered(r)));
    // A stream cannot be split: more than RCPTMAX is refused before anything is sent.
    let error = session
        .send(
            envelope(&["r0", "r1", "r2"]),
            MailOptions::default(),
            Cursor::new(body()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Misuse(Misuse::TooManyRecipients { count: 3, max: 2 })
        ),
        "{error:?}"
    );
    drop(session);
    let t = hostile.finish().await;
    assert_eq!(
        rcpt_lines(&t),
        [vec!["r0", "r1"], vec!["r2", "r3"], vec!["r4"]]
    );
}

#[tokio::test]
async fn too_many_recipients_452_continues_in_another_transaction() {
    // RFC 5321 section 4.5.3.1.10: Postfix past smtpd_recipient_limit. r2 and r3 get 452 and
    // go in a second transaction; r4 (550) is refused for good and not retried.
    let mut script = ready(&["PIPELINING", "ENHANCEDSTATUSCODES"]);
    let too_many = "452 4.5.3 Error: too many recipients";
    script.extend(transaction(&[
        "250 2.1.5 ok",
        "250 2.1.5 ok",
        too_many,
        too_many,
        "550 5.1.1 no such user",
    ]));
    script.extend(transaction(&["250 2.1.5 ok", "250 2.1.5 ok"]));
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_rewindable(
            envelope(&["r0", "r1", "r2", "r3", "r4"]),
            MailOptions::default(),
            Cursor::new(body()),
        )
        .await
        .unwrap();
    assert_eq!(report.transactions.len(), 2, "{report:?}");
    let outcome: Vec<(usize, bool, u16)> = report
        .recipients
        .iter()
        .map(|r| (r.index, report.delivered(r), r.reply().unwrap().code()))
        .collect();
    assert_eq!(
        outcome,
        [
            (0, true, 250),
            (1, true, 250),
            (2, true, 250),
            (3, true, 250),
            (4, false, 550)
        ]
    );
    assert_ne!(
        report.recipients[0].transaction,
        report.recipients[2].transaction
    );
    drop(session);
    let t = hostile.finish().await;
    assert_eq!(
        rcpt_lines(&t),
        [vec!["r0", "r1", "r2", "r3", "r4"], vec!["r2", "r3"]]
    );
    // The body went out twice, once per transaction.
    assert_eq!(t.lines.iter().filter(|l| l.starts_with("DATA")).count(), 2);
}

#[tokio::test]
async fn limits_mailmax_stops_with_every_recipient_named() {
    // MAILMAX=1 with RCPTMAX=1: the second recipient cannot be sent in this session; it is
    // reported as not attempted, the first as delivered.
    let mut script = ready(&["PIPELINING", "LIMITS MAILMAX=1 RCPTMAX=1"]);
    script.extend(transaction(&["250 ok"]));
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["r0", "r1"]), MailOptions::default(), &body())
        .await
        .unwrap();
    assert!(!report.is_sent());
    assert!(report.delivered(&report.recipients[0]));
    assert_eq!(
        report.recipients[1].outcome,
        smtp_submit::RecipientOutcome::NotAttempted
    );
    let why = report.stopped.as_deref().unwrap();
    assert!(why.contains("MAILMAX"), "{why}");
    drop(session);
    hostile.finish().await;
}

#[tokio::test]
async fn one_flight_then_quit_without_waiting() {
    // Issue 14: MAIL, RCPT and BDAT LAST leave in one flight (the server reads all three
    // before it answers), and QUIT is not waited for: a server that never answers it does not
    // hold the caller up (waiting would run into the deadline and fail).
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    let size = body().len();
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect(&format!("BDAT {size} LAST")),
        Step::ExpectBytes(size),
        Step::send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n"),
        Step::expect("QUIT"),
        Step::Stall,
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_bytes(envelope(&["a"]), MailOptions::default(), &body())
        .await
        .unwrap();
    assert!(report.failure().is_none(), "{report:?}");
    session.quit_without_waiting().await.unwrap();
    let t = hostile.finish().await;
    assert_eq!(t.lines.last().map(String::as_str), Some("QUIT"), "{t:?}");
}

#[tokio::test]
async fn small_file_goes_in_one_flight() {
    // Issue 14: a file (streamed, after its scan) leaves with MAIL and RCPT, not one round
    // trip later: the server reads everything before it answers anything, so a client that
    // waited for the RCPT reply before the body would stall here.
    let mut script = ready(&["PIPELINING", "CHUNKING"]);
    let size = body().len();
    script.extend([
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect(&format!("BDAT {size} LAST")),
        Step::ExpectBytes(size),
        Step::send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n"),
    ]);
    let hostile = Hostile::start(script).await;
    let mut session = hostile.connect(Security::ImplicitTls).await.unwrap();
    let report = session
        .send_rewindable(
            envelope(&["a"]),
            MailOptions::default(),
            Cursor::new(body()),
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    drop(session);
    let t = hostile.finish().await;
    assert!(t.stopped.is_none(), "{t:?}");
}
