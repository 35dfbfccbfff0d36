//! No secret in any log, and none in any `Debug`.
//!
//! Full sessions of both protocols run at TRACE level under a capturing `tracing` subscriber:
//! every password mechanism against the real servers (Dovecot POP3: USER/PASS, APOP, PLAIN,
//! LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256; Postfix submission: PLAIN, LOGIN, CRAM-MD5,
//! SCRAM-SHA-1, SCRAM-SHA-256), the OAuth mechanisms (XOAUTH2, OAUTHBEARER, accepted and
//! refused with an error challenge) and refused password logins against scripted servers. The
//! captured output must contain neither the password, nor its base64 forms, nor the token,
//! nor any base64 credential line the client actually sent, nor a SASL challenge of the server
//! (server replies are logged at DEBUG, challenges redacted). User: `judy` only (read-only on
//! POP3; SMTP mail goes to the discarding sink domain).

use std::time::Instant;

use base64::Engine as _;
use mail_common::sasl::{Credentials, Mechanism, SaslClient};
use mail_common::{Secret, Transmit};
use mail_testground::hostile::{HostileServer, Pki, Step};
use mail_testground::logs;
use mail_testground::{
    DOVECOT_POP3, DOVECOT_POP3S, HOST, JUDY, POSTFIX_SUBMISSION, SINK_DOMAIN, TLS_NAME,
};
use pop3_proto::tokio::{ConnectOptions as PopOptions, Session as PopSession, TrustRoots};
use pop3_proto::{AuthMethod as PopMethod, Login, Machine as _};
use smtp_submit::tokio::{ConnectOptions, Session as SmtpSession};
use smtp_submit::{Address, AuthMethod, ClientName, Envelope, MailOptions};

const TOKEN: &str = "ya29.hostile-oauth-token-5f2c9d81";
const WRONG_PASSWORD: &str = "judy-wrong-pass-77";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The secrets and every encoding of them a mechanism could put on the wire.
fn needles() -> Vec<String> {
    let mut needles = Vec::new();
    for password in [JUDY.password, WRONG_PASSWORD] {
        needles.extend([
            password.to_owned(),
            b64(password),
            b64(format!("\0{}\0{password}", JUDY.name)),
            b64(format!("{}\0{}\0{password}", JUDY.name, JUDY.name)),
        ]);
    }
    needles.extend([
        TOKEN.to_owned(),
        b64(TOKEN),
        b64(format!(
            "user={}\x01auth=Bearer {TOKEN}\x01\x01",
            JUDY.address
        )),
        b64(format!(
            "n,a={},\x01auth=Bearer {TOKEN}\x01\x01",
            JUDY.address
        )),
    ]);
    needles
}

fn assert_clean(what: &str, text: &str, needles: &[String]) {
    for needle in needles {
        assert!(
            !text.contains(needle.as_str()),
            "{what} reveals {needle:?}:\n{text}"
        );
    }
}

fn judy() -> Credentials {
    Credentials::password(JUDY.name, JUDY.password)
}

fn oauth() -> Credentials {
    Credentials::oauth2(JUDY.address, TOKEN)
}

// ---- real servers ----

fn pop_options(security: pop3_proto::Security) -> PopOptions {
    let port = if security == pop3_proto::Security::ImplicitTls {
        DOVECOT_POP3S.port
    } else {
        DOVECOT_POP3.port
    };
    PopOptions::new(HOST)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME)
}

async fn pop3_session(method: Option<PopMethod>, debug: &mut Vec<String>) {
    let security = if method.is_some() {
        pop3_proto::Security::ImplicitTls
    } else {
        pop3_proto::Security::StartTls
    };
    let mut session =
        PopSession::connect(&pop_options(security), pop3_proto::Config::new(security))
            .await
            .expect("connect to Dovecot");
    let login = match method {
        Some(method) => Login::using(method, judy()),
        None => Login::auto(judy()),
    };
    debug.push(format!("{login:?}"));
    let used = session
        .login_with(login)
        .await
        .unwrap_or_else(|e| panic!("{method:?}: {e}"));
    if let Some(method) = method {
        assert_eq!(used, method);
    }
    session.stat().await.unwrap();
    session.uidl().await.unwrap();
    session.noop().await.unwrap();
    debug.push(format!("{session:?} {session:#?}"));
    session.quit().await.unwrap();
}

async fn smtp_session(mechanism: Mechanism, debug: &mut Vec<String>) {
    let options = ConnectOptions::new(HOST)
        .with_port(POSTFIX_SUBMISSION.port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME);
    let config = smtp_submit::Config::new(
        ClientName::new("client.testground.example").unwrap(),
        smtp_submit::Security::StartTls,
    );
    let mut session = SmtpSession::connect(&options, config)
        .await
        .expect("connect to Postfix");
    let used = session
        .authenticate(&judy(), AuthMethod::Mechanism(mechanism))
        .await
        .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
    assert_eq!(used, mechanism);
    let sink = Address::new(format!("secrets@{SINK_DOMAIN}")).unwrap();
    let envelope = Envelope::new(Some(Address::new(JUDY.address).unwrap())).with_recipient(sink);
    let report = session
        .send_bytes(
            envelope,
            MailOptions::default(),
            b"Subject: secrets test\r\n\r\nnothing to see\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    debug.push(format!("{session:?} {session:#?} {report:?}"));
    session.quit().await.unwrap();
}

// ---- scripted servers: OAuth and refused logins ----

const OAUTH_ERROR: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;

/// A POP3 server (implicit TLS) that offers every mechanism and plays `exchange`.
fn pop3_script(exchange: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::StartTls,
        Step::send("+OK ready <1.2@hostile>\r\n"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nSASL PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n.\r\n"),
    ];
    script.extend(exchange);
    script.extend([Step::expect("QUIT"), Step::send("+OK bye\r\n")]);
    script
}

fn smtp_script(exchange: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::StartTls,
        Step::send("220 hostile ESMTP\r\n"),
        Step::expect("EHLO"),
        Step::send("250-hostile\r\n250 AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n"),
    ];
    script.extend(exchange);
    script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    script
}

/// The base64 payloads the client sent (AUTH initial responses and challenge answers).
fn sent_payloads(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| {
            let last = line.rsplit(' ').next()?;
            (line.starts_with("AUTH ") && line.split(' ').count() == 3
                || !line.contains(' ') && line.len() >= 8 && !line.eq_ignore_ascii_case("QUIT"))
            .then(|| last.to_owned())
        })
        .filter(|payload| {
            // The user name alone is no secret.
            payload != &b64(JUDY.name) && payload != &b64(JUDY.address)
        })
        .collect()
}

async fn pop3_hostile(
    method: PopMethod,
    credentials: Credentials,
    exchange: Vec<Step>,
    succeeds: bool,
    debug: &mut Vec<String>,
) -> Vec<String> {
    let pki = Pki::generate();
    let server = HostileServer::start(pop3_script(exchange), pki.leaf_for("localhost")).await;
    let options = PopOptions::new("127.0.0.1")
        .with_port(server.port())
        .with_trust_roots(TrustRoots::CaFile(pki.ca_file()))
        .with_tls_name("localhost");
    let mut session = PopSession::connect(&options, pop3_proto::Config::default())
        .await
        .unwrap();
    let result = session.login_with(Login::using(method, credentials)).await;
    debug.push(format!("{result:?} {session:?}"));
    if let Err(error) = &result {
        debug.push(format!("{error} {error:?}"));
    }
    assert_eq!(result.is_ok(), succeeds, "{method:?}: {result:?}");
    session.quit().await.unwrap();
    let t = server.finish().await;
    assert!(t.stopped.is_none(), "{method:?}: {:?}", t.stopped);
    sent_payloads(&t.lines)
}

async fn smtp_hostile(
    mechanism: Mechanism,
    credentials: Credentials,
    exchange: Vec<Step>,
    succeeds: bool,
    debug: &mut Vec<String>,
) -> Vec<String> {
    let pki = Pki::generate();
    let server = HostileServer::start(smtp_script(exchange), pki.leaf_for("localhost")).await;
    let options = ConnectOptions::new("127.0.0.1")
        .with_port(server.port())
        .with_trust_roots(TrustRoots::CaFile(pki.ca_file()))
        .with_tls_name("localhost");
    let config = smtp_submit::Config::new(
        ClientName::new("client.example").unwrap(),
        smtp_submit::Security::ImplicitTls,
    );
    let mut session = SmtpSession::connect(&options, config).await.unwrap();
    let result = session
        .authenticate(&credentials, AuthMethod::Mechanism(mechanism))
        .await;
    debug.push(format!("{result:?} {session:?}"));
    if let Err(error) = &result {
        debug.push(format!("{error} {error:?}"));
    }
    assert_eq!(result.is_ok(), succeeds, "{mechanism:?}: {result:?}");
    session.quit().await.unwrap();
    let t = server.finish().await;
    assert!(t.stopped.is_none(), "{mechanism:?}: {:?}", t.stopped);
    sent_payloads(&t.lines)
}

/// Runs every session; returns the base64 payloads the scripted servers saw.
async fn all_sessions(debug: &mut Vec<String>) -> (usize, Vec<String>) {
    mail_testground::require(&[DOVECOT_POP3, DOVECOT_POP3S, POSTFIX_SUBMISSION]);
    let mut sessions = 0;
    for method in [
        PopMethod::UserPass,
        PopMethod::Apop,
        PopMethod::Sasl(Mechanism::Plain),
        PopMethod::Sasl(Mechanism::Login),
        PopMethod::Sasl(Mechanism::CramMd5),
        PopMethod::Sasl(Mechanism::ScramSha1),
        PopMethod::Sasl(Mechanism::ScramSha256),
    ] {
        pop3_session(Some(method), debug).await;
        sessions += 1;
    }
    pop3_session(None, debug).await; // STLS, automatic choice
    sessions += 1;
    for mechanism in [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
    ] {
        smtp_session(mechanism, debug).await;
        sessions += 1;
    }

    let json = b64(OAUTH_ERROR);
    let mut payloads = Vec::new();
    for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
        let method = PopMethod::Sasl(mechanism);
        let name = mechanism.name();
        let accepted = vec![
            Step::expect(&format!("AUTH {name} ")),
            Step::send("+OK welcome\r\n"),
        ];
        payloads.extend(pop3_hostile(method, oauth(), accepted, true, debug).await);
        let refused = vec![
            Step::expect(&format!("AUTH {name} ")),
            Step::send(format!("+ {json}\r\n")),
            Step::ExpectAny,
            Step::send("-ERR [AUTH] invalid token\r\n"),
        ];
        payloads.extend(pop3_hostile(method, oauth(), refused, false, debug).await);

        let accepted = vec![
            Step::expect(&format!("AUTH {name} ")),
            Step::send("235 2.7.0 welcome\r\n"),
        ];
        payloads.extend(smtp_hostile(mechanism, oauth(), accepted, true, debug).await);
        let refused = vec![
            Step::expect(&format!("AUTH {name} ")),
            Step::send(format!("334 {json}\r\n")),
            Step::ExpectAny,
            Step::send("535 5.7.8 invalid token\r\n"),
        ];
        payloads.extend(smtp_hostile(mechanism, oauth(), refused, false, debug).await);
        sessions += 4;
    }

    // Refused password logins: the failure paths must not print what was tried.
    let wrong = Credentials::password(JUDY.name, WRONG_PASSWORD);
    let user_pass = vec![
        Step::expect("USER judy"),
        Step::send("+OK\r\n"),
        Step::expect("PASS "),
        Step::send("-ERR [AUTH] invalid password\r\n"),
    ];
    pop3_hostile(PopMethod::UserPass, wrong.clone(), user_pass, false, debug).await;
    let plain = vec![
        Step::expect("AUTH PLAIN "),
        Step::send("-ERR [AUTH] invalid password\r\n"),
    ];
    payloads.extend(
        pop3_hostile(
            PopMethod::Sasl(Mechanism::Plain),
            wrong.clone(),
            plain,
            false,
            debug,
        )
        .await,
    );
    let login = vec![
        Step::expect("AUTH LOGIN"),
        Step::send("+ VXNlcm5hbWU6\r\n"),
        Step::ExpectAny,
        Step::send("+ UGFzc3dvcmQ6\r\n"),
        Step::ExpectAny,
        Step::send("-ERR [AUTH] invalid password\r\n"),
    ];
    payloads.extend(
        pop3_hostile(
            PopMethod::Sasl(Mechanism::Login),
            wrong.clone(),
            login,
            false,
            debug,
        )
        .await,
    );
    let plain = vec![
        Step::expect("AUTH PLAIN "),
        Step::send("535 5.7.8 invalid password\r\n"),
    ];
    payloads.extend(smtp_hostile(Mechanism::Plain, wrong.clone(), plain, false, debug).await);
    let login = vec![
        Step::expect("AUTH LOGIN"),
        Step::send("334 VXNlcm5hbWU6\r\n"),
        Step::ExpectAny,
        Step::send("334 UGFzc3dvcmQ6\r\n"),
        Step::ExpectAny,
        Step::send("535 5.7.8 invalid password\r\n"),
    ];
    payloads.extend(smtp_hostile(Mechanism::Login, wrong, login, false, debug).await);
    sessions += 5;
    (sessions, payloads)
}

#[test]
fn no_secret_in_trace_output_of_full_sessions() {
    let mut debug = Vec::new();
    let ((sessions, payloads), logs) = logs::capture(logs::Spans::Full, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(all_sessions(&mut debug))
    });
    // Every level is captured (the protocol lines are at DEBUG, so `-vv` shows them).
    assert!(
        logs.contains(" DEBUG "),
        "the subscriber captured DEBUG events"
    );
    assert!(
        logs.contains("C: USER judy"),
        "USER/PASS was logged (redacted): {}",
        logs.lines()
            .filter(|l| l.contains("C: "))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The server's side is logged too (at DEBUG, what `mailctl -vv` shows), except SASL
    // challenges: the OAuth error challenge the scripted servers send must not appear.
    for reply in [
        "S: 235",
        "S: 250",
        "S: +OK",
        "S: 334 [redacted]",
        "S: + [redacted]",
    ] {
        assert!(
            logs.lines()
                .any(|line| line.contains(" DEBUG ") && line.contains(reply)),
            "no {reply:?} at DEBUG in the log"
        );
    }
    let mut needles = needles();
    needles.push(b64(OAUTH_ERROR));
    assert!(
        payloads.len() >= 10,
        "the scripted servers saw the credential lines: {payloads:?}"
    );
    needles.extend(payloads);
    assert_clean("the TRACE log", &logs, &needles);
    assert_clean(
        "Debug of sessions, logins, errors",
        &debug.join("\n"),
        &needles,
    );
    eprintln!(
        "secrets: {sessions} full sessions at TRACE ({} bytes of log), {} secret forms checked: none found",
        logs.len(),
        needles.len()
    );
}

#[test]
fn debug_of_every_config_and_credential_type_redacts() {
    let ((), logs) = logs::capture(logs::Spans::Off, debug_redacts);
    assert!(logs.contains("PASS [redacted]"), "{logs}");
    assert_clean("the TRACE log of the sans-IO clients", &logs, &needles());
}

fn debug_redacts() {
    let needles = needles();
    let mut shown = Vec::new();
    let mut show = |value: &dyn std::fmt::Debug| {
        shown.push(format!("{value:?}"));
        shown.push(format!("{value:#?}"));
    };

    let password = judy();
    let token = oauth();
    show(&password);
    show(&token);
    show(&Secret::new(JUDY.password.to_owned()));
    let mut transmit = Transmit::new();
    transmit.push(format!("PASS {}\r\n", JUDY.password).as_bytes());
    show(&transmit);

    for (mechanism, credentials) in [
        (Mechanism::Plain, &password),
        (Mechanism::Login, &password),
        (Mechanism::CramMd5, &password),
        (Mechanism::ScramSha1, &password),
        (Mechanism::ScramSha256, &password),
        (Mechanism::XOAuth2, &token),
        (Mechanism::OAuthBearer, &token),
    ] {
        let mut client = SaslClient::new(mechanism, credentials, b"0123456789abcdefghij").unwrap();
        show(&client);
        let first = client.initial_response();
        show(&first);
        show(&client);
        if first.is_none() {
            let _ = client.step(b"Username:");
            show(&client);
            let answer = client.step(b"Password:");
            show(&answer);
            show(&client);
        }
    }

    // pop3-proto
    let config = pop3_proto::Config::default().allow_cleartext_credentials_dangerously(true);
    show(&config);
    show(&PopOptions::new("pop.example").with_trust_roots(TrustRoots::CaFile("/ca.pem".into())));
    let login = Login::using(PopMethod::UserPass, password.clone()).with_nonce(b"nonce".to_vec());
    show(&login);
    show(&Login::using(
        PopMethod::Sasl(Mechanism::XOAuth2),
        token.clone(),
    ));
    let now = Instant::now();
    let mut client = pop3_proto::Client::new(pop3_proto::Config::default(), now);
    client
        .handle_input(now, b"+OK hi <1.2@h>\r\n+OK\r\nUSER\r\n.\r\n")
        .unwrap();
    client
        .login(now, Login::using(PopMethod::UserPass, password.clone()))
        .unwrap();
    client.handle_input(now, b"+OK\r\n").unwrap();
    assert!(
        client.poll_transmit().is_some_and(|b| b
            .windows(JUDY.password.len())
            .any(|w| w == JUDY.password.as_bytes())),
        "the PASS line is waiting in the transmit buffer"
    );
    show(&client);
    let rejected = client
        .login(now, Login::using(PopMethod::Apop, password.clone()))
        .unwrap_err();
    show(&rejected);
    show(&rejected.to_string());

    // smtp-submit
    let config = smtp_submit::Config::new(
        ClientName::new("client.example").unwrap(),
        smtp_submit::Security::ImplicitTls,
    )
    .allow_cleartext_credentials_dangerously(true);
    show(&config);
    show(&ConnectOptions::new("smtp.example").with_port(465));
    let mut client = smtp_submit::Client::new(config, now);
    client
        .handle_input(now, b"220 hi\r\n250-hi\r\n250 AUTH PLAIN\r\n")
        .unwrap();
    while client.poll_event().is_some() {}
    client
        .authenticate(now, &password, AuthMethod::Auto, b"0123456789abcdefghij")
        .unwrap();
    assert!(client.poll_transmit().is_some(), "the AUTH line is waiting");
    show(&client);
    show(&AuthMethod::Mechanism(Mechanism::Plain));

    let text = shown.join("\n");
    assert_clean("Debug output", &text, &needles);
    assert!(text.contains("redacted"), "{text}");
    eprintln!(
        "secrets: Debug of {} values checked, none shows a secret",
        shown.len() / 2
    );
}
