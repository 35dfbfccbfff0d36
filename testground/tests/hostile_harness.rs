//! The scripted-server harness itself: scripts play in order, TLS works with the generated CA,
//! and bad certificates fail the way a client must see them fail.

use std::time::Duration;

use mail_common::transport::{
    SetupTimeouts, TransportError, TrustRoots, Wrapping, connect, tls_connector,
};
use mail_testground::hostile::{HostileServer, Pki, Step};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_script_plays_in_order_and_records_the_client() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("+OK ready\r\n"),
            Step::expect("USER"),
            Step::send("+OK\r\n"),
            Step::expect("PASS"),
            Step::send("-ERR [AUTH] no\r\n"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut io = BufReader::new(tcp);
    let mut line = String::new();
    io.read_line(&mut line).await.unwrap();
    assert_eq!(line, "+OK ready\r\n");
    io.get_mut().write_all(b"USER u\r\n").await.unwrap();
    line.clear();
    io.read_line(&mut line).await.unwrap();
    io.get_mut().write_all(b"PASS p\r\n").await.unwrap();
    line.clear();
    io.read_line(&mut line).await.unwrap();
    assert_eq!(line, "-ERR [AUTH] no\r\n");
    let transcript = server.finish().await;
    assert_eq!(transcript.lines, ["USER u", "PASS p"]);
    assert!(transcript.plaintext_contains(b"pass p"));
    assert!(transcript.stopped.is_none(), "{:?}", transcript.stopped);
}

#[tokio::test]
async fn an_unexpected_line_stops_the_script_with_the_reason() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![Step::send("220 hi\r\n"), Step::expect("EHLO")],
        pki.leaf_for("localhost"),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"HELO x\r\n").await.unwrap();
    let transcript = server.finish().await;
    let why = transcript.stopped.expect("the script stops");
    assert!(why.contains("expected \"EHLO\""), "{why}");
}

async fn tls_outcome(cert_kind: &str) -> Result<(), TransportError> {
    let pki = Pki::generate();
    let cert = match cert_kind {
        "good" => pki.leaf_for("localhost"),
        "expired" => pki.expired_leaf_for("localhost"),
        "wrong-name" => pki.leaf_for("mail.example.org"),
        _ => Pki::generate().leaf_for("localhost"),
    };
    let server =
        HostileServer::start(vec![Step::StartTls, Step::send("+OK over TLS\r\n")], cert).await;
    let connector = tls_connector(&TrustRoots::CaFile(pki.ca_file())).unwrap();
    let result = connect(
        "127.0.0.1",
        server.port(),
        Wrapping::ImplicitTls,
        &connector,
        "localhost",
        SetupTimeouts::uniform(LIMIT),
    )
    .await
    .map(drop);
    drop(server.finish().await);
    result
}

#[tokio::test]
async fn generated_certificates_are_accepted_or_refused_as_intended() {
    tls_outcome("good").await.expect("a good leaf validates");
    let expired = tls_outcome("expired").await.unwrap_err().to_string();
    assert!(expired.to_lowercase().contains("expired"), "{expired}");
    let wrong = tls_outcome("wrong-name").await.unwrap_err().to_string();
    assert!(wrong.contains("not valid for name"), "{wrong}");
    let unknown = tls_outcome("unknown-ca").await.unwrap_err().to_string();
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
}

#[tokio::test]
async fn a_stalled_handshake_hits_the_client_deadline() {
    let pki = Pki::generate();
    let server = HostileServer::start(vec![Step::StallHandshake], pki.leaf_for("localhost")).await;
    let connector = tls_connector(&TrustRoots::CaFile(pki.ca_file())).unwrap();
    let err = connect(
        "127.0.0.1",
        server.port(),
        Wrapping::ImplicitTls,
        &connector,
        "localhost",
        SetupTimeouts::uniform(Duration::from_millis(300)),
    )
    .await
    .map(drop)
    .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    drop(server.finish().await);
}
