//! Step 5 of discovery against scripted hostile servers: the probe uses the protocol crates'
//! sessions, so it inherits their refusals (bytes injected before the TLS handshake, a missing
//! STARTTLS, a certificate for another name) and never sends more than it needs.

use std::{net::IpAddr, time::Duration};

use mail_account::{
    discover::dns::{DnsError, DnsResolver, MxRecord, SrvRecord},
    discover::probe::{ProbeFailure, ProbeOptions, ProbeTarget, probe_one},
    settings::{Protocol, Security},
};
use mail_common::transport::TrustRoots;
use mail_testground::hostile::{HostileServer, Pki, Step};

/// Every name is 127.0.0.1, where the scripted server listens.
struct Loopback;

impl DnsResolver for Loopback {
    async fn srv(&self, _: &str) -> Result<Vec<SrvRecord>, DnsError> {
        Ok(Vec::new())
    }
    async fn mx(&self, _: &str) -> Result<Vec<MxRecord>, DnsError> {
        Ok(Vec::new())
    }
    async fn ip(&self, _: &str) -> Result<Vec<IpAddr>, DnsError> {
        Ok(vec![IpAddr::from([127, 0, 0, 1])])
    }
}

fn options(pki: &Pki) -> ProbeOptions {
    let mut o = ProbeOptions::default();
    o.trust = TrustRoots::CaFile(pki.ca_file());
    o.connect_timeout = Duration::from_secs(5);
    o.io_timeout = Duration::from_secs(5);
    o
}

fn target(protocol: Protocol, server: &HostileServer, security: Security) -> ProbeTarget {
    ProbeTarget {
        protocol,
        host: "mail.probe.test".into(),
        port: server.port(),
        security,
    }
}

#[tokio::test]
async fn smtp_bytes_injected_after_the_starttls_go_ahead_fail_the_probe() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("220 mail.probe.test ESMTP\r\n"),
            Step::expect("EHLO"),
            Step::send("250-mail.probe.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
            Step::expect("STARTTLS"),
            // The go-ahead and a forged reply in one packet: read as if it came over TLS
            // unless the client discards it.
            Step::send("220 go ahead\r\n250-mail.probe.test\r\n250 AUTH PLAIN LOGIN\r\n"),
            Step::StartTls,
            Step::ExpectAny,
        ],
        pki.leaf_for("mail.probe.test"),
    )
    .await;
    let t = target(Protocol::Smtp, &server, Security::StartTls);
    let outcome = probe_one(&Loopback, &t, &options(&pki)).await;
    assert!(
        matches!(outcome, Err(ProbeFailure::Protocol(ref why)) if why.contains("injection")),
        "{outcome:?}"
    );
    let transcript = server.finish().await;
    assert!(transcript.encrypted.is_empty(), "{transcript:?}");
}

#[tokio::test]
async fn pop3_bytes_injected_after_the_stls_go_ahead_fail_the_probe() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("+OK POP3 ready\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
            Step::expect("STLS"),
            Step::send("+OK begin TLS\r\n+OK\r\nSASL PLAIN\r\n.\r\n"),
            Step::StartTls,
            Step::ExpectAny,
        ],
        pki.leaf_for("mail.probe.test"),
    )
    .await;
    let t = target(Protocol::Pop3, &server, Security::StartTls);
    let outcome = probe_one(&Loopback, &t, &options(&pki)).await;
    assert!(
        matches!(outcome, Err(ProbeFailure::Protocol(_))),
        "{outcome:?}"
    );
    let transcript = server.finish().await;
    assert!(transcript.encrypted.is_empty(), "{transcript:?}");
}

#[tokio::test]
async fn a_port_without_starttls_is_not_a_candidate() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("220 mail.probe.test ESMTP\r\n"),
            Step::expect("EHLO"),
            Step::send("250-mail.probe.test\r\n250 AUTH PLAIN LOGIN\r\n"),
            Step::ExpectAny,
        ],
        pki.leaf_for("mail.probe.test"),
    )
    .await;
    let t = target(Protocol::Smtp, &server, Security::StartTls);
    let outcome = probe_one(&Loopback, &t, &options(&pki)).await;
    assert_eq!(outcome, Err(ProbeFailure::NoStarttls));
    let transcript = server.finish().await;
    assert!(!transcript.plaintext_contains(b"AUTH"), "{transcript:?}");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_probe() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK POP3 ready\r\n"),
            Step::ExpectAny,
        ],
        pki.leaf_for("other.test"),
    )
    .await;
    let t = target(Protocol::Pop3, &server, Security::ImplicitTls);
    let outcome = probe_one(&Loopback, &t, &options(&pki)).await;
    assert!(matches!(outcome, Err(ProbeFailure::Tls(_))), "{outcome:?}");
    drop(server);
}

#[tokio::test]
async fn an_implicit_tls_probe_reports_the_mechanisms_offered() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK POP3 ready\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nSASL SCRAM-SHA-256 PLAIN\r\n.\r\n"),
            Step::expect("QUIT"),
            Step::send("+OK bye\r\n"),
        ],
        pki.leaf_for("mail.probe.test"),
    )
    .await;
    let t = target(Protocol::Pop3, &server, Security::ImplicitTls);
    let ok = probe_one(&Loopback, &t, &options(&pki)).await.unwrap();
    assert_eq!(ok.greeting, "POP3 ready");
    assert_eq!(ok.auth_mechanisms, ["SCRAM-SHA-256", "PLAIN", "USER"]);
    assert_eq!(ok.address, IpAddr::from([127, 0, 0, 1]));
    let transcript = server.finish().await;
    assert_eq!(transcript.lines, ["CAPA", "QUIT"]);
}
