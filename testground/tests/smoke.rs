//! Smoke tests of the test ground itself: every port answers, TLS validates against the private
//! CA (and only against it, and only for the right name), and the plaintext ports upgrade.

use std::time::Duration;

use mail_common::transport::{
    MailStream, SetupTimeouts, TransportError, TrustRoots, Wrapping, connect, server_name,
    tls_connector,
};
use mail_testground::{
    ALL_ENDPOINTS, Endpoint, HOST, PortTls, Protocol, TLS_NAME, require_running,
    tls_connector_for_tests,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

/// Reads one complete reply: a POP3 status line, or an SMTP reply up to its last line.
async fn read_reply(stream: &mut MailStream, protocol: Protocol) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(LIMIT, stream.read(&mut byte))
            .await
            .expect("reply within the time limit")
            .expect("read");
        assert_eq!(n, 1, "server closed the connection; got so far: {buf:?}");
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n") {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let last_line = text.trim_end().rsplit("\r\n").next().unwrap_or_default();
            let complete = match protocol {
                Protocol::Pop3 => true,
                Protocol::Smtp => last_line.as_bytes().get(3) != Some(&b'-'),
            };
            if complete {
                return text;
            }
        }
    }
}

async fn open(endpoint: Endpoint) -> MailStream {
    let wrapping = match endpoint.tls {
        PortTls::Implicit => Wrapping::ImplicitTls,
        PortTls::Upgrade => Wrapping::Plain,
    };
    connect(
        HOST,
        endpoint.port,
        wrapping,
        &tls_connector_for_tests(),
        TLS_NAME,
        SetupTimeouts::uniform(LIMIT),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", endpoint.name))
}

fn assert_greeting(endpoint: Endpoint, greeting: &str) {
    match endpoint.protocol {
        Protocol::Pop3 => assert!(
            greeting.starts_with("+OK "),
            "{}: {greeting}",
            endpoint.name
        ),
        Protocol::Smtp => assert!(
            greeting.starts_with("220 "),
            "{}: {greeting}",
            endpoint.name
        ),
    }
}

/// Upgrades a plaintext port with STLS / STARTTLS and checks the server still speaks over TLS.
async fn upgrade(endpoint: Endpoint, mut stream: MailStream) -> MailStream {
    let (command, positive) = match endpoint.protocol {
        Protocol::Pop3 => ("STLS\r\n", "+OK"),
        Protocol::Smtp => {
            stream.write_all(b"EHLO smoke.test\r\n").await.unwrap();
            let ehlo = read_reply(&mut stream, Protocol::Smtp).await;
            assert!(ehlo.contains("STARTTLS"), "{}: {ehlo}", endpoint.name);
            ("STARTTLS\r\n", "220")
        }
    };
    stream.write_all(command.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream, endpoint.protocol).await;
    assert!(reply.starts_with(positive), "{}: {reply}", endpoint.name);
    let mut tls = stream
        .upgrade(
            &tls_connector_for_tests(),
            server_name(TLS_NAME).unwrap(),
            LIMIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", endpoint.name));
    assert!(tls.is_tls());
    let (probe, expect) = match endpoint.protocol {
        Protocol::Pop3 => ("CAPA\r\n", "+OK"),
        Protocol::Smtp => ("EHLO smoke.test\r\n", "250"),
    };
    tls.write_all(probe.as_bytes()).await.unwrap();
    let reply = read_reply(&mut tls, endpoint.protocol).await;
    assert!(reply.starts_with(expect), "{}: {reply}", endpoint.name);
    tls
}

#[tokio::test]
async fn every_port_greets_and_every_tls_port_validates() {
    require_running();
    for endpoint in ALL_ENDPOINTS {
        let mut stream = open(endpoint).await;
        assert_eq!(stream.is_tls(), endpoint.tls == PortTls::Implicit);
        let greeting = read_reply(&mut stream, endpoint.protocol).await;
        assert_greeting(endpoint, &greeting);
        let stream = match endpoint.tls {
            PortTls::Upgrade => upgrade(endpoint, stream).await,
            PortTls::Implicit => stream,
        };
        let summary = stream.tls_summary().expect("TLS is up");
        assert!(summary.contains("TLS"), "{}: {summary}", endpoint.name);
    }
}

#[tokio::test]
async fn certificate_is_checked_against_the_ca_and_the_name() {
    require_running();
    let port = mail_testground::DOVECOT_POP3S.port;
    // The web PKI does not know the private CA.
    let webpki = tls_connector(&TrustRoots::WebPki).unwrap();
    let err = connect(
        HOST,
        port,
        Wrapping::ImplicitTls,
        &webpki,
        TLS_NAME,
        SetupTimeouts::uniform(LIMIT),
    )
    .await
    .expect_err("an unknown CA must be refused");
    assert!(matches!(err, TransportError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // The right CA but the wrong name.
    let err = connect(
        HOST,
        port,
        Wrapping::ImplicitTls,
        &tls_connector_for_tests(),
        "wrong.example",
        SetupTimeouts::uniform(LIMIT),
    )
    .await
    .expect_err("a certificate for another name must be refused");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // The certificate also covers the IP address.
    open_by_ip(port).await;
}

async fn open_by_ip(port: u16) {
    let stream = connect(
        HOST,
        port,
        Wrapping::ImplicitTls,
        &tls_connector_for_tests(),
        "127.0.0.1",
        SetupTimeouts::uniform(LIMIT),
    )
    .await
    .expect("the certificate is valid for 127.0.0.1");
    assert!(stream.is_tls());
}

#[test]
fn a_missing_ca_file_is_a_clear_error() {
    let Err(err) = tls_connector(&TrustRoots::CaFile("/nonexistent/ca.pem".into())) else {
        panic!("a missing CA file must be an error");
    };
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

/// The servers added for issue 16 are the implementations their names say, with the traits the
/// suites rely on: mailutils greets with an APOP timestamp and offers no SASL; Courier announces
/// UTF8; Dovecot submission offers CHUNKING but not SMTPUTF8.
#[tokio::test]
async fn the_added_servers_are_the_ones_named() {
    use mail_testground::{COURIER_POP3S, DOVECOT_SUBMISSIONS, MAILUTILS_POP3S};
    require_running();
    let mut mailutils = open(MAILUTILS_POP3S).await;
    let greeting = read_reply(&mut mailutils, Protocol::Pop3).await;
    assert!(
        greeting.contains('<') && greeting.contains('>'),
        "{greeting}"
    );
    let capa = pop3_capa(&mut mailutils).await;
    assert!(
        capa.contains("\r\nUSER\r\n") && !capa.contains("SASL"),
        "{capa}"
    );

    let mut courier = open(COURIER_POP3S).await;
    read_reply(&mut courier, Protocol::Pop3).await;
    let capa = pop3_capa(&mut courier).await;
    assert!(
        capa.contains("\r\nUTF8 USER\r\n") && capa.contains("Courier"),
        "{capa}"
    );

    let mut submission = open(DOVECOT_SUBMISSIONS).await;
    let banner = read_reply(&mut submission, Protocol::Smtp).await;
    assert!(banner.contains("Dovecot"), "{banner}");
    submission.write_all(b"EHLO smoke.test\r\n").await.unwrap();
    let ehlo = read_reply(&mut submission, Protocol::Smtp).await;
    assert!(
        ehlo.contains("CHUNKING") && ehlo.contains("PIPELINING") && !ehlo.contains("SMTPUTF8"),
        "{ehlo}"
    );
}

/// Sends CAPA and reads the multi-line answer up to its terminating dot line.
async fn pop3_capa(stream: &mut MailStream) -> String {
    stream.write_all(b"CAPA\r\n").await.unwrap();
    let mut text = String::new();
    loop {
        let line = read_reply(stream, Protocol::Pop3).await;
        text.push_str(&line);
        if line == ".\r\n" {
            return text;
        }
    }
}
