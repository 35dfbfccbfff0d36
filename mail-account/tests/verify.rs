//! Login verification against the test ground's real Dovecot and Postfix.
//!
//! Only the user `ivan` is used (reserved for verification and discovery tests); nothing is
//! ever sent or deleted. Requires the test ground (`bash testground/scripts/testground.sh all`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use mail_account::connect::{ConnectError, LoginMethod, ServerSettings, pop3_login, smtp_login};
use mail_account::settings::{
    Account, AuthMethod, IncomingServer, OutgoingServer, Protocol, Retention, Security, TlsOptions,
    Username,
};
use mail_account::verify::{
    LoginSecret, NetworkVerifier, Role, Verifier, VerifyFailure, VerifyOptions, classify,
    verify_account, verify_pop3, verify_smtp,
};
use mail_common::sasl::Mechanism;
use mail_common::transport::TrustRoots;
use mail_testground::{
    DOVECOT_POP3, DOVECOT_POP3S, HOST, IVAN, POSTFIX_SUBMISSION, POSTFIX_SUBMISSIONS,
    STRICT_CLIENT_ADDR, TLS_NAME,
};
use pop3_proto::ResponseCode;

fn require() {
    mail_testground::require(&[
        DOVECOT_POP3,
        DOVECOT_POP3S,
        POSTFIX_SUBMISSION,
        POSTFIX_SUBMISSIONS,
    ]);
}

/// `ivan` on a test ground port, trusting only the test ground's CA.
fn server(port: u16, security: Security) -> ServerSettings {
    let mut server = ServerSettings::new(HOST, port, security, IVAN.name);
    server.trust_roots = TrustRoots::CaFile(mail_testground::ca_file());
    server.tls_name = Some(TLS_NAME.into());
    server.setup_timeout = Duration::from_secs(10);
    server
}

fn good() -> LoginSecret {
    LoginSecret::password(IVAN.password)
}

fn wrong() -> LoginSecret {
    LoginSecret::password("not-ivans-password")
}

fn strict_addr() -> IpAddr {
    STRICT_CLIENT_ADDR.parse().expect("an IP address")
}

// ---- good password ----------------------------------------------------------------------

#[tokio::test]
async fn pop3s_good_password() {
    require();
    let ok = verify_pop3(&server(DOVECOT_POP3S.port, Security::ImplicitTls), &good())
        .await
        .expect("login on POP3S");
    assert_eq!(ok.role, Role::Incoming);
    assert_eq!(ok.protocol, Protocol::Pop3);
    assert_eq!(
        ok.mechanism, "SCRAM-SHA-256",
        "the strongest offered mechanism"
    );
    assert_eq!(
        ok.tls.as_deref(),
        Some("implicit TLS, certificate valid for localhost")
    );
    assert!(ok.elapsed > Duration::ZERO);
}

#[tokio::test]
async fn pop3_stls_good_password() {
    require();
    let ok = verify_pop3(&server(DOVECOT_POP3.port, Security::StartTls), &good())
        .await
        .expect("login after STLS");
    assert_eq!(ok.mechanism, "SCRAM-SHA-256");
    assert_eq!(
        ok.tls.as_deref(),
        Some("STLS, certificate valid for localhost")
    );
}

#[tokio::test]
async fn pop3_user_pass_good_password() {
    require();
    let mut settings = server(DOVECOT_POP3S.port, Security::ImplicitTls);
    settings.login = LoginMethod::Pop3User;
    let ok = verify_pop3(&settings, &good()).await.expect("USER/PASS");
    assert_eq!(ok.mechanism, "USER");
}

#[tokio::test]
async fn submissions_good_password() {
    require();
    let ok = verify_smtp(
        &server(POSTFIX_SUBMISSIONS.port, Security::ImplicitTls),
        &good(),
    )
    .await
    .expect("AUTH on submissions");
    assert_eq!(ok.role, Role::Outgoing);
    assert_eq!(ok.protocol, Protocol::Smtp);
    assert!(!ok.mechanism.is_empty() && ok.mechanism != "none");
    assert_eq!(
        ok.tls.as_deref(),
        Some("implicit TLS, certificate valid for localhost")
    );
}

#[tokio::test]
async fn submission_starttls_good_password() {
    require();
    let ok = verify_smtp(
        &server(POSTFIX_SUBMISSION.port, Security::StartTls),
        &good(),
    )
    .await
    .expect("AUTH after STARTTLS");
    assert!(!ok.mechanism.is_empty() && ok.mechanism != "none");
    assert_eq!(
        ok.tls.as_deref(),
        Some("STARTTLS, certificate valid for localhost")
    );
}

fn ivan_account() -> Account {
    Account {
        address: IVAN.address.into(),
        display_name: None,
        check_interval: None,
        incoming: IncomingServer {
            protocol: Protocol::Pop3,
            host: HOST.into(),
            port: DOVECOT_POP3S.port,
            security: Security::ImplicitTls,
            username: Username::new("{local}"),
            auth: AuthMethod::Automatic,
            mechanism: None,
        },
        outgoing: OutgoingServer {
            host: HOST.into(),
            port: POSTFIX_SUBMISSION.port,
            security: Security::StartTls,
            username: Username::new("{local}"),
            auth: AuthMethod::Automatic,
            mechanism: None,
        },
        credential: None,
        retention: Retention::KeepOnServer,
        delivery: None,
        tls: TlsOptions {
            extra_ca_file: Some(mail_testground::ca_file()),
        },
    }
}

#[tokio::test]
async fn account_both_servers() {
    require();
    let account = ivan_account();
    let report = verify_account(&account, &good(), &VerifyOptions::default()).await;
    assert!(report.is_ok(), "{report:?}");
    let [(r1, incoming), (r2, outgoing)] = report.results();
    assert_eq!((r1, r2), (Role::Incoming, Role::Outgoing));
    assert_eq!(incoming.as_ref().unwrap().protocol, Protocol::Pop3);
    assert_eq!(outgoing.as_ref().unwrap().protocol, Protocol::Smtp);

    // The same through the trait.
    let verifier = NetworkVerifier::default();
    verifier
        .verify_incoming(&account, &good())
        .await
        .expect("trait, incoming");
    let failure = verifier
        .verify_outgoing(&account, &wrong())
        .await
        .expect_err("trait, wrong password");
    assert!(matches!(failure, VerifyFailure::WrongPassword { .. }));
}

// ---- wrong password ---------------------------------------------------------------------

#[tokio::test]
async fn pop3_wrong_password() {
    require();
    let failure = verify_pop3(&server(DOVECOT_POP3S.port, Security::ImplicitTls), &wrong())
        .await
        .expect_err("wrong password");
    let VerifyFailure::WrongPassword { server_text } = &failure else {
        panic!("{failure:?}");
    };
    assert!(server_text.starts_with("[AUTH]"), "{server_text}");
    assert!(failure.advice().contains("password"));
}

#[tokio::test]
async fn smtp_wrong_password() {
    require();
    let failure = verify_smtp(
        &server(POSTFIX_SUBMISSION.port, Security::StartTls),
        &wrong(),
    )
    .await
    .expect_err("wrong password");
    let VerifyFailure::WrongPassword { server_text } = &failure else {
        panic!("{failure:?}");
    };
    assert!(server_text.starts_with("535 5.7.8"), "{server_text}");
}

#[tokio::test]
async fn account_wrong_password_on_both() {
    require();
    let report = verify_account(&ivan_account(), &wrong(), &VerifyOptions::default()).await;
    assert!(!report.is_ok());
    for (role, result) in report.results() {
        assert!(
            matches!(result, Err(VerifyFailure::WrongPassword { .. })),
            "{role}: {result:?}"
        );
    }
}

// ---- certificates -----------------------------------------------------------------------

#[tokio::test]
async fn wrong_tls_name_is_certificate_invalid() {
    require();
    for (port, security, smtp) in [
        (DOVECOT_POP3S.port, Security::ImplicitTls, false),
        (DOVECOT_POP3.port, Security::StartTls, false),
        (POSTFIX_SUBMISSIONS.port, Security::ImplicitTls, true),
        (POSTFIX_SUBMISSION.port, Security::StartTls, true),
    ] {
        let mut settings = server(port, security);
        settings.tls_name = Some("wrong.example".into());
        let result = if smtp {
            verify_smtp(&settings, &good()).await
        } else {
            verify_pop3(&settings, &good()).await
        };
        let failure = result.expect_err("wrong name");
        let VerifyFailure::CertificateInvalid { host, reason } = &failure else {
            panic!("port {port}: {failure:?}");
        };
        assert_eq!(host, "wrong.example");
        assert!(reason.contains("not valid for this name"), "{reason}");
        assert!(failure.advice().contains("wrong.example"));
    }
}

#[tokio::test]
async fn web_pki_only_is_certificate_invalid() {
    require();
    let mut pop = server(DOVECOT_POP3S.port, Security::ImplicitTls);
    pop.trust_roots = TrustRoots::WebPki;
    let mut smtp = server(POSTFIX_SUBMISSION.port, Security::StartTls);
    smtp.trust_roots = TrustRoots::WebPki;
    for failure in [
        verify_pop3(&pop, &good()).await.expect_err("private CA"),
        verify_smtp(&smtp, &good()).await.expect_err("private CA"),
    ] {
        let VerifyFailure::CertificateInvalid { host, reason } = &failure else {
            panic!("{failure:?}");
        };
        assert_eq!(host, TLS_NAME);
        assert!(reason.contains("trusted certificate authority"), "{reason}");
    }

    // The account's default trust (web PKI, no extra CA file) fails the same way.
    let mut account = ivan_account();
    account.tls.extra_ca_file = None;
    let report = verify_account(&account, &good(), &VerifyOptions::default()).await;
    for (role, result) in report.results() {
        assert!(
            matches!(result, Err(VerifyFailure::CertificateInvalid { .. })),
            "{role}: {result:?}"
        );
    }
}

// ---- the strict listener: no credentials in the clear ----------------------------------

/// Dovecot POP3 seen from 127.0.0.2: an untrusted network, no TLS.
fn strict_plaintext() -> ServerSettings {
    let mut settings = server(DOVECOT_POP3.port, Security::Plaintext);
    settings.local_addr = Some(strict_addr());
    settings
}

#[tokio::test]
async fn client_refuses_cleartext() {
    require();
    let failure = verify_pop3(&strict_plaintext(), &good())
        .await
        .expect_err("no credential without TLS");
    assert_eq!(failure, VerifyFailure::CleartextRefused);
    assert!(failure.advice().contains("TLS"));
    let error = pop3_login(&strict_plaintext(), &good())
        .await
        .expect_err("refused by the client");
    assert!(
        error
            .to_string()
            .contains("refusing to send credentials without TLS"),
        "{error}"
    );

    // SMTP too: the client does not send AUTH on a plaintext connection.
    let failure = verify_smtp(
        &server(POSTFIX_SUBMISSION.port, Security::Plaintext),
        &good(),
    )
    .await
    .expect_err("no credential without TLS");
    assert_eq!(failure, VerifyFailure::CleartextRefused);
}

#[tokio::test]
async fn dovecot_refuses_cleartext() {
    require();
    for (method, words) in [
        (LoginMethod::Pop3User, "Plaintext authentication disallowed"),
        (
            LoginMethod::Sasl(Mechanism::Plain),
            "Plaintext authentication disabled",
        ),
    ] {
        let mut settings = strict_plaintext();
        settings.allow_cleartext_credentials_dangerously = true;
        settings.login = method;
        let failure = verify_pop3(&settings, &good())
            .await
            .expect_err("Dovecot refuses plaintext from 127.0.0.2");
        assert_eq!(failure, VerifyFailure::CleartextRefused, "{method:?}");

        // It is the server that said no, in its words.
        let error = pop3_login(&settings, &good())
            .await
            .expect_err("refused by Dovecot");
        let ConnectError::Pop3 { error: inner, .. } = &error else {
            panic!("{error}");
        };
        let response = inner.response().expect("the server's -ERR");
        assert_eq!(response.code, Some(ResponseCode::Auth), "{error}");
        assert!(response.text.starts_with(words), "{error}");
        assert_eq!(classify(&error, &settings), VerifyFailure::CleartextRefused);
    }
}

#[tokio::test]
async fn postfix_hides_auth_without_tls() {
    require();
    let mut settings = server(POSTFIX_SUBMISSION.port, Security::Plaintext);
    settings.allow_cleartext_credentials_dangerously = true;
    let failure = verify_smtp(&settings, &good())
        .await
        .expect_err("no AUTH before STARTTLS");
    assert_eq!(failure, VerifyFailure::CleartextRefused);
    let error = smtp_login(&settings, Some(&good()))
        .await
        .expect_err("no AUTH offered");
    assert!(error.to_string().contains("does not offer"), "{error}");
    assert_eq!(classify(&error, &settings), VerifyFailure::CleartextRefused);
}

#[tokio::test]
async fn strict_listener_with_stls_works() {
    require();
    let mut settings = server(DOVECOT_POP3.port, Security::StartTls);
    settings.local_addr = Some(strict_addr());
    let ok = verify_pop3(&settings, &good())
        .await
        .expect("STLS from 127.0.0.2");
    assert_eq!(
        ok.tls.as_deref(),
        Some("STLS, certificate valid for localhost")
    );

    // The same through the account options.
    let mut account = ivan_account();
    account.incoming.port = DOVECOT_POP3.port;
    account.incoming.security = Security::StartTls;
    let mut options = VerifyOptions::default();
    options.local_addr = Some(strict_addr());
    let report = verify_account(&account, &good(), &options).await;
    assert!(report.is_ok(), "{report:?}");
}

// ---- blocked ports ----------------------------------------------------------------------

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("local address").port()
}

#[tokio::test]
async fn nothing_listening_is_port_blocked() {
    let port = closed_port();
    let failure = verify_pop3(&server(port, Security::ImplicitTls), &good())
        .await
        .expect_err("refused");
    assert_eq!(
        failure,
        VerifyFailure::PortBlocked {
            host: HOST.into(),
            port
        }
    );
    let failure = verify_smtp(&server(port, Security::StartTls), &good())
        .await
        .expect_err("refused");
    assert!(matches!(failure, VerifyFailure::PortBlocked { .. }));
    assert!(failure.advice().contains(&port.to_string()));
}

#[tokio::test]
async fn blackhole_is_port_blocked() {
    // A non-routable address: the connection attempt gets no answer (behind a transparent
    // proxy that accepts every connection, the greeting never comes).
    for (port, smtp) in [(110, false), (587, true)] {
        let mut settings = server(port, Security::StartTls);
        settings.host = "10.255.255.1".into();
        settings.setup_timeout = Duration::from_secs(1);
        settings.greeting_timeout = Some(Duration::from_secs(1));
        let started = Instant::now();
        let result = if smtp {
            verify_smtp(&settings, &good()).await
        } else {
            verify_pop3(&settings, &good()).await
        };
        let failure = result.expect_err("nothing answers");
        assert_eq!(
            failure,
            VerifyFailure::PortBlocked {
                host: "10.255.255.1".into(),
                port
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn silent_server_is_port_blocked() {
    // Accepts the connection and never says a word, like a firewall that swallows the port.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut settings = server(port, Security::ImplicitTls);
    settings.setup_timeout = Duration::from_secs(1);
    let failure = verify_pop3(&settings, &good())
        .await
        .expect_err("no TLS handshake");
    assert!(
        matches!(failure, VerifyFailure::PortBlocked { .. }),
        "{failure:?}"
    );
    let failure = verify_smtp(&settings, &good())
        .await
        .expect_err("no TLS handshake");
    assert!(
        matches!(failure, VerifyFailure::PortBlocked { .. }),
        "{failure:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn smtp_connects_from_a_chosen_local_address() {
    // Both adapters share the connect options, `local_addr` included.
    let mut settings = server(POSTFIX_SUBMISSION.port, Security::StartTls);
    settings.local_addr = Some(strict_addr());
    verify_smtp(&settings, &good())
        .await
        .expect("SMTP from the chosen local address");
}

#[tokio::test]
async fn implicit_tls_against_a_starttls_port_says_which_mode_the_port_wants() {
    // Issue 16, item 2: Postfix 10587 and Dovecot 11110 greet in plaintext.
    for (port, smtp) in [(POSTFIX_SUBMISSION.port, true), (DOVECOT_POP3.port, false)] {
        let settings = server(port, Security::ImplicitTls);
        let result = if smtp {
            verify_smtp(&settings, &good()).await
        } else {
            verify_pop3(&settings, &good()).await
        };
        let failure = result.expect_err("wrong TLS mode");
        let VerifyFailure::Other(text) = &failure else {
            panic!("{failure:?}");
        };
        assert!(
            text.contains("plaintext greeting") && text.contains("STARTTLS"),
            "{text}"
        );
    }
}
