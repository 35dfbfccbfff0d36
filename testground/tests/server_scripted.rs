//! Scripted raw TCP/TLS clients against the embedded test server.

mod common;

use common::{
    Client, OTHER, OTHER_PASS, PASS, USER, b64, plain_ir, pop3_logged_in, server,
    smtp_authenticated, unstuff,
};
use mail_common::transport::{TrustRoots, tls_connector};
use mail_testground::server::TestServer;
use md5::{Digest, Md5};
use tokio_rustls::TlsConnector;

/// The EHLO AUTH line: the mechanisms Dovecot (and Postfix through it) offer.
const ALL_AUTH: &str = "AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256";

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A connector trusting only a different, freshly generated CA.
async fn foreign_connector() -> TlsConnector {
    let other = TestServer::builder().start().await.unwrap();
    other.tls_connector()
}

#[tokio::test]
async fn tls_handshake_validates_against_the_generated_ca() {
    let server = server().await;
    assert!(server.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // Our own connector, for every name the leaf is issued to.
    for name in ["localhost", "127.0.0.1"] {
        let mut c = Client::tls(server.pop3s_addr(), &server.tls_connector(), name)
            .await
            .unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
        assert!(c.line().await.starts_with("+OK "));
    }

    // mail_common's connector with the CA written to a file, and with the in-memory store.
    let path = server.ca_file().unwrap();
    assert_eq!(server.ca_file().unwrap(), path, "written once");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), server.ca_pem());
    for roots in [TrustRoots::CaFile(path.clone()), server.trust_roots()] {
        let connector = tls_connector(&roots).unwrap();
        let mut c = Client::tls(server.submissions_addr(), &connector, "localhost")
            .await
            .unwrap();
        let (code, lines) = c.smtp_reply().await;
        assert_eq!(code, 220, "{lines:?}");
        let ehlo = c.smtp("EHLO client.test", 250).await;
        assert!(ehlo.iter().any(|l| l == ALL_AUTH), "{ehlo:?}");
        assert!(
            !ehlo.iter().any(|l| l == "STARTTLS"),
            "no STARTTLS under TLS: {ehlo:?}"
        );
    }

    // A client that trusts only the web PKI, or another CA, or checks a wrong name, fails.
    let webpki = tls_connector(&TrustRoots::WebPki).unwrap();
    assert!(
        Client::tls(server.pop3s_addr(), &webpki, "localhost")
            .await
            .is_err()
    );
    let foreign = foreign_connector().await;
    assert!(
        Client::tls(server.pop3s_addr(), &foreign, "localhost")
            .await
            .is_err()
    );
    assert!(
        Client::tls(
            server.pop3s_addr(),
            &server.tls_connector(),
            "mail.example.com"
        )
        .await
        .is_err()
    );

    // The CA file goes away with the server.
    drop(server);
    assert!(!path.exists());
}

#[tokio::test]
async fn smtp_starttls_auth_then_pop3_stls_fetch() {
    let server = server().await;

    // SMTP on the 587-style port: no AUTH before STARTTLS, and AUTH refused there.
    let mut smtp = Client::plain(server.submission_addr()).await;
    assert_eq!(smtp.smtp_reply().await.0, 220);
    let ehlo = smtp.smtp("EHLO client.test", 250).await;
    for cap in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(ehlo.iter().any(|l| l == cap), "{cap} missing from {ehlo:?}");
    }
    assert!(ehlo.iter().any(|l| l.starts_with("SIZE ")));
    assert!(!ehlo.iter().any(|l| l.starts_with("AUTH")), "{ehlo:?}");
    smtp.smtp(&format!("AUTH PLAIN {}", plain_ir(USER, PASS)), 538)
        .await;
    smtp.smtp("MAIL FROM:<demo@demo.example>", 530).await;
    smtp.smtp("STARTTLS", 220).await;
    smtp.upgrade(&server.tls_connector()).await.unwrap();
    smtp.smtp("MAIL FROM:<demo@demo.example>", 503).await; // EHLO again first
    let ehlo = smtp.smtp("EHLO client.test", 250).await;
    assert!(ehlo.iter().any(|l| l == ALL_AUTH), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l == "STARTTLS"));
    smtp.smtp(&format!("AUTH PLAIN {}", plain_ir(USER, PASS)), 235)
        .await;
    smtp.smtp("MAIL FROM:<demo@demo.example> BODY=8BITMIME SIZE=100", 250)
        .await;
    smtp.smtp("RCPT TO:<Other@Demo.Example>", 250).await;
    smtp.smtp("DATA", 354).await;
    let body = "From: demo@demo.example\r\nTo: other@demo.example\r\nSubject: hello\r\nMessage-ID: <m1@demo.example>\r\n\r\nHi there,\r\nsecond line \u{e9}\r\n";
    smtp.send(format!("{body}.\r\n")).await;
    let queued = smtp.smtp_reply().await;
    assert_eq!(queued.0, 250, "{queued:?}");
    smtp.smtp("QUIT", 221).await;
    assert!(smtp.closed().await);

    // The store has it, with a Received header on top.
    let mailbox = server.mailbox(OTHER).unwrap();
    assert_eq!(mailbox.len(), 1);
    let stored = String::from_utf8(mailbox[0].bytes().to_vec()).unwrap();
    assert!(
        stored.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby localhost"),
        "{stored}"
    );
    assert!(stored.contains("with ESMTPSA"), "{stored}");
    assert!(stored.ends_with(body), "{stored}");

    // POP3 on the 110-style port: STLS advertised, cleartext USER refused, then fetch.
    let mut pop = Client::plain(server.pop3_addr()).await;
    assert!(pop.line().await.starts_with("+OK"));
    pop.ok("CAPA", "+OK").await;
    let caps = String::from_utf8(pop.pop3_multiline().await).unwrap();
    assert!(
        caps.contains("STLS\r\n") && !caps.contains("USER\r\n"),
        "{caps}"
    );
    pop.ok(&format!("USER {OTHER}"), "-ERR [AUTH]").await;
    pop.ok(
        &format!("AUTH PLAIN {}", plain_ir(OTHER, OTHER_PASS)),
        "-ERR [AUTH]",
    )
    .await;
    pop.ok("STLS", "+OK").await;
    pop.upgrade(&server.tls_connector()).await.unwrap();
    pop.ok("CAPA", "+OK").await;
    let caps = String::from_utf8(pop.pop3_multiline().await).unwrap();
    for cap in [
        "USER",
        "SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256",
        "TOP",
        "UIDL",
        "PIPELINING",
        "RESP-CODES",
    ] {
        assert!(
            caps.contains(&format!("{cap}\r\n")),
            "{cap} missing from {caps}"
        );
    }
    assert!(!caps.contains("STLS"), "{caps}");
    pop.ok("STLS", "-ERR").await;
    pop.ok(&format!("USER {OTHER}"), "+OK").await;
    pop.ok(&format!("PASS {OTHER_PASS}"), "+OK").await;
    let size = mailbox[0].size();
    assert_eq!(pop.cmd("STAT").await, format!("+OK 1 {size}"));
    assert_eq!(
        pop.cmd("UIDL 1").await,
        format!("+OK 1 {}", mailbox[0].uid())
    );
    assert_eq!(pop.cmd("RETR 1").await, format!("+OK {size} octets"));
    let fetched = unstuff(&pop.pop3_multiline().await);
    assert_eq!(fetched, mailbox[0].bytes());
    pop.ok("TOP 1 1", "+OK").await;
    let top = String::from_utf8(pop.pop3_multiline().await).unwrap();
    assert!(top.ends_with("\r\n\r\nHi there,\r\n"), "{top}");
    pop.ok("QUIT", "+OK").await;
}

#[tokio::test]
async fn dot_stuffing_both_ways() {
    let server = TestServer::builder()
        .user(USER, PASS)
        .message(
            USER,
            b"Subject: preloaded\n\n.leading dot\n..two dots\n.\nend".to_vec(),
        )
        .start()
        .await
        .unwrap();

    // Preloaded: line endings normalized, a final CRLF added, stuffed on the wire.
    let preloaded = &server.mailbox(USER).unwrap()[0];
    assert_eq!(
        preloaded.bytes(),
        b"Subject: preloaded\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
    );

    // Submitted: stuffed on the wire, stored un-stuffed.
    let mut smtp = smtp_authenticated(&server).await;
    smtp.smtp("MAIL FROM:<demo@demo.example>", 250).await;
    smtp.smtp("RCPT TO:<demo@demo.example>", 250).await;
    smtp.smtp("DATA", 354).await;
    smtp.send("Subject: dots\r\n\r\n..a\r\n...\r\n..\r\nQUIT\r\n.\r\n")
        .await;
    assert_eq!(smtp.smtp_reply().await.0, 250);
    smtp.smtp("NOOP", 250).await; // the QUIT inside the body was data, not a command
    let stored = server.mailbox(USER).unwrap()[1].bytes().to_vec();
    assert!(
        stored.ends_with(b"Subject: dots\r\n\r\n.a\r\n..\r\n.\r\nQUIT\r\n"),
        "{stored:?}"
    );

    let mut pop = pop3_logged_in(&server, USER, PASS).await;
    pop.ok("RETR 1", "+OK").await;
    let raw = pop.pop3_multiline().await;
    assert_eq!(
        raw,
        b"Subject: preloaded\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n"
    );
    pop.ok("RETR 2", "+OK").await;
    let raw = pop.pop3_multiline().await;
    assert!(
        raw.ends_with(b"\r\n\r\n..a\r\n...\r\n..\r\nQUIT\r\n"),
        "{raw:?}"
    );
    assert_eq!(unstuff(&raw), stored);
}

#[tokio::test]
async fn bdat_chunks_and_pipelining() {
    let server = server().await;
    let mut smtp = smtp_authenticated(&server).await;

    // A pipelined envelope, then chunks whose content holds a would-be DATA terminator.
    smtp.send("MAIL FROM:<demo@demo.example>\r\nRCPT TO:<nobody@demo.example>\r\nRCPT TO:<demo@demo.example>\r\n")
        .await;
    assert_eq!(smtp.smtp_reply().await.0, 250);
    assert_eq!(smtp.smtp_reply().await.0, 550);
    assert_eq!(smtp.smtp_reply().await.0, 250);
    let chunk1 = "Subject: chunked\r\n\r\nline one\r\n.\r\n";
    let chunk2 = "RSET\r\n.dot stays\r\nlast line without newline";
    smtp.send(format!("BDAT {}\r\n{chunk1}", chunk1.len()))
        .await;
    let (code, lines) = smtp.smtp_reply().await;
    assert_eq!(code, 250, "{lines:?}");
    smtp.smtp("DATA", 503).await; // no DATA once BDAT was used
    smtp.send(format!("BDAT {} LAST\r\n{chunk2}", chunk2.len()))
        .await;
    let (code, lines) = smtp.smtp_reply().await;
    assert_eq!(code, 250, "{lines:?}");
    assert!(lines[0].contains("queued as"), "{lines:?}");

    let stored = server.mailbox(USER).unwrap()[0].bytes().to_vec();
    let expected = format!("{chunk1}{chunk2}\r\n");
    assert!(
        stored.ends_with(expected.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&stored)
    );

    // BDAT with no transaction still consumes its bytes.
    smtp.send("BDAT 6 LAST\r\nQUIT\r\n").await;
    assert_eq!(smtp.smtp_reply().await.0, 503);
    smtp.smtp("NOOP", 250).await;

    // A zero-length last chunk ends a message too.
    smtp.smtp("MAIL FROM:<>", 250).await;
    smtp.smtp("RCPT TO:<other@demo.example>", 250).await;
    smtp.send("BDAT 3\r\nA\r\nBDAT 0 LAST\r\n").await;
    assert_eq!(smtp.smtp_reply().await.0, 250);
    assert_eq!(smtp.smtp_reply().await.0, 250);
    let received = server.mailbox(OTHER).unwrap()[0].bytes().to_vec();
    assert!(received.starts_with(b"Received: "));
    assert!(
        received.ends_with(b"+0000\r\nA\r\n"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );

    // A malformed BDAT size cannot be followed: the server says so and closes.
    smtp.smtp("BDAT many", 501).await;
    assert!(smtp.closed().await);
}

#[tokio::test]
async fn dele_takes_effect_only_on_quit() {
    let server = TestServer::builder()
        .user(USER, PASS)
        .message(USER, b"Subject: one\r\n\r\n1\r\n".to_vec())
        .message(USER, b"Subject: two\r\n\r\n2\r\n".to_vec())
        .message(USER, b"Subject: three\r\n\r\n3\r\n".to_vec())
        .start()
        .await
        .unwrap();
    let before = server.mailbox(USER).unwrap();

    // Marks are dropped with a connection that ends without QUIT, and undone by RSET.
    let mut pop = pop3_logged_in(&server, USER, PASS).await;
    pop.ok("DELE 2", "+OK").await;
    pop.ok("DELE 2", "-ERR").await;
    pop.ok("RETR 2", "-ERR").await;
    pop.ok("LIST", "+OK").await;
    let list = String::from_utf8(pop.pop3_multiline().await).unwrap();
    assert_eq!(
        list,
        format!("1 {}\r\n3 {}\r\n", before[0].size(), before[2].size())
    );
    pop.ok("RSET", "+OK").await;
    pop.ok("STAT", "+OK 3 ").await;
    pop.ok("DELE 1", "+OK").await;
    drop(pop);
    // The maildrop lock is released when the session ends; wait for that.
    let mut pop = loop {
        let mut c = Client::tls(server.pop3s_addr(), &server.tls_connector(), "localhost")
            .await
            .unwrap();
        c.line().await;
        c.ok(&format!("USER {USER}"), "+OK").await;
        let reply = c.cmd(&format!("PASS {PASS}")).await;
        if reply.starts_with("+OK") {
            break c;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(server.mailbox(USER).unwrap(), before);

    // A second session is refused while the maildrop is held.
    let mut second = Client::tls(server.pop3s_addr(), &server.tls_connector(), "localhost")
        .await
        .unwrap();
    second.line().await;
    second.ok(&format!("USER {USER}"), "+OK").await;
    second.ok(&format!("PASS {PASS}"), "-ERR [IN-USE]").await;

    // Mail delivered during the session is kept by QUIT; marked mail is removed.
    server
        .add_message(USER, b"Subject: four\r\n\r\n4\r\n")
        .unwrap();
    pop.ok("STAT", "+OK 3 ").await;
    pop.ok("DELE 1", "+OK").await;
    pop.ok("DELE 3", "+OK").await;
    pop.ok("DELE 4", "-ERR").await;
    pop.ok("DELE 0", "-ERR").await;
    pop.ok("DELE x", "-ERR").await;
    pop.ok("QUIT", "+OK").await;
    assert!(pop.closed().await);
    let after = server.mailbox(USER).unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[1]);
    assert!(after[1].bytes().ends_with(b"4\r\n"));
}

#[tokio::test]
async fn wrong_password_is_refused_everywhere() {
    let server = TestServer::builder()
        .user(USER, PASS)
        .start()
        .await
        .unwrap();
    let mut pop = Client::tls(server.pop3s_addr(), &server.tls_connector(), "localhost")
        .await
        .unwrap();
    pop.line().await;
    pop.ok("PASS x", "-ERR").await;
    pop.ok(&format!("USER {USER}"), "+OK").await;
    pop.ok("PASS wrong", "-ERR [AUTH]").await;
    pop.ok("STAT", "-ERR").await;
    pop.ok(
        &format!("AUTH PLAIN {}", plain_ir(USER, "wrong")),
        "-ERR [AUTH]",
    )
    .await;
    pop.ok(
        &format!("AUTH PLAIN {}", plain_ir("nobody", PASS)),
        "-ERR [AUTH]",
    )
    .await;
    pop.ok("AUTH PLAIN", "+ ").await;
    pop.ok("*", "-ERR").await;
    pop.ok("AUTH PLAIN !!notbase64", "-ERR").await;
    pop.ok("AUTH XOAUTH2", "-ERR").await;
    // AUTH LOGIN and CRAM-MD5, wrong then right.
    pop.ok("AUTH LOGIN", "+ ").await;
    pop.ok(&b64(USER), "+ ").await;
    pop.ok(&b64("wrong"), "-ERR [AUTH]").await;
    let challenge = pop.ok("AUTH CRAM-MD5", "+ ").await;
    let challenge = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &challenge[2..])
            .unwrap(),
    )
    .unwrap();
    let mac = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Md5>::new_from_slice(PASS.as_bytes()).unwrap();
        mac.update(challenge.as_bytes());
        hex(&mac.finalize().into_bytes())
    };
    pop.ok(&b64(&format!("{USER} {mac}")), "+OK").await;
    pop.ok("QUIT", "+OK").await;

    let mut smtp = Client::tls(
        server.submissions_addr(),
        &server.tls_connector(),
        "localhost",
    )
    .await
    .unwrap();
    smtp.smtp_reply().await;
    smtp.smtp("AUTH PLAIN", 503).await; // EHLO first
    let ehlo = smtp.smtp("EHLO client.test", 250).await;
    assert!(ehlo.iter().any(|l| l == ALL_AUTH), "{ehlo:?}");
    smtp.smtp(&format!("AUTH PLAIN {}", plain_ir(USER, "wrong")), 535)
        .await;
    smtp.smtp("AUTH LOGIN", 334).await;
    smtp.smtp(&b64(USER), 334).await;
    smtp.smtp(&b64("wrong"), 535).await;
    smtp.smtp("AUTH LOGIN", 334).await;
    smtp.smtp("*", 501).await;
    smtp.smtp("MAIL FROM:<demo@demo.example>", 530).await;
    smtp.smtp(&format!("AUTH LOGIN {}", b64(USER)), 334).await;
    smtp.smtp(&b64(PASS), 235).await;
    smtp.smtp("AUTH PLAIN", 503).await; // already authenticated
    smtp.smtp("MAIL FROM:<demo@demo.example>", 250).await;
}

#[tokio::test]
async fn unknown_recipient_is_refused() {
    let server = server().await;
    let mut smtp = smtp_authenticated(&server).await;
    smtp.smtp("RCPT TO:<demo@demo.example>", 503).await; // MAIL first
    smtp.smtp("MAIL FROM:<demo@demo.example>", 250).await;
    smtp.smtp("MAIL FROM:<demo@demo.example>", 503).await; // nested
    let refused = smtp.smtp("RCPT TO:<nobody@demo.example>", 550).await;
    assert!(refused[0].starts_with("5.1.1 "), "{refused:?}");
    smtp.smtp("RCPT TO:<>", 501).await;
    smtp.smtp("RCPT TO:nobody", 501).await;
    smtp.smtp("DATA", 554).await;
    smtp.smtp("RSET", 250).await;
    smtp.smtp("MAIL FROM:<demo@demo.example> FOO=bar", 555)
        .await;
    smtp.smtp("MAIL FROM:<dém@demo.example>", 553).await;
    smtp.smtp("MAIL FROM:<dém@demo.example> SMTPUTF8", 250)
        .await;
    smtp.smtp("RCPT TO:<OTHER@demo.example>", 250).await;
    smtp.smtp("DATA", 354).await;
    smtp.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(smtp.smtp_reply().await.0, 250);
    smtp.smtp("FROB", 502).await;
    assert_eq!(server.mailbox(OTHER).unwrap().len(), 1);
    assert_eq!(server.mailbox(USER).unwrap().len(), 0);
}

#[tokio::test]
async fn apop_login() {
    let server = server().await;
    // APOP sends no password, so it is allowed on the plain port too.
    let mut pop = Client::plain(server.pop3_addr()).await;
    let greeting = pop.line().await;
    let start = greeting.find('<').unwrap();
    let end = greeting.rfind('>').unwrap();
    let timestamp = &greeting[start..=end];
    assert!(timestamp.ends_with("@localhost>"), "{greeting}");
    let digest = |password: &str| hex(&Md5::digest(format!("{timestamp}{password}").as_bytes()));
    pop.ok(&format!("APOP {USER} {}", digest("wrong")), "-ERR [AUTH]")
        .await;
    pop.ok(
        &format!("APOP nobody@demo.example {}", digest(PASS)),
        "-ERR [AUTH]",
    )
    .await;
    pop.ok("APOP", "-ERR").await;
    pop.ok(
        &format!("APOP {USER} {}", digest(PASS).to_uppercase()),
        "+OK",
    )
    .await;
    pop.ok("STAT", "+OK 0 0").await;
    pop.ok("QUIT", "+OK").await;

    // Each greeting has a fresh timestamp.
    let mut again = Client::plain(server.pop3_addr()).await;
    assert_ne!(again.line().await, greeting);
}

#[tokio::test]
async fn limits_bound_a_hostile_client() {
    let server = TestServer::builder()
        .user(USER, PASS)
        .max_line_length(128)
        .max_message_size(1000)
        .start()
        .await
        .unwrap();
    let mut pop = Client::tls(server.pop3s_addr(), &server.tls_connector(), "localhost")
        .await
        .unwrap();
    pop.line().await;
    pop.ok(&"A".repeat(100_000), "-ERR Line too long").await;
    pop.send(b"\xff\xfe\0\r\n").await;
    assert!(pop.line().await.starts_with("-ERR"));
    pop.ok("NOOP", "-ERR").await;
    pop.ok("CAPA", "+OK").await;
    pop.pop3_multiline().await;

    let mut smtp = smtp_authenticated(&server).await;
    let ehlo = smtp.smtp("EHLO client.test", 250).await;
    assert!(ehlo.iter().any(|l| l == "SIZE 1000"), "{ehlo:?}");
    smtp.smtp(&format!("NOOP {}", "x".repeat(10_000)), 500)
        .await;
    smtp.smtp("MAIL FROM:<demo@demo.example> SIZE=1001", 552)
        .await;
    smtp.smtp("MAIL FROM:<demo@demo.example>", 250).await;
    smtp.smtp("RCPT TO:<demo@demo.example>", 250).await;
    smtp.smtp("DATA", 354).await;
    let big_line = "y".repeat(5000);
    smtp.send(format!(
        "Subject: big\r\n\r\n{big_line}\r\n{big_line}\r\n.\r\n"
    ))
    .await;
    assert_eq!(smtp.smtp_reply().await.0, 552);
    smtp.smtp("MAIL FROM:<demo@demo.example>", 250).await;
    smtp.smtp("RCPT TO:<demo@demo.example>", 250).await;
    smtp.send(format!("BDAT 2000 LAST\r\n{}", "z".repeat(2000)))
        .await;
    assert_eq!(smtp.smtp_reply().await.0, 552);
    smtp.smtp("NOOP", 250).await;
    assert_eq!(server.mailbox(USER).unwrap().len(), 0);
}

#[tokio::test]
async fn stls_discards_plaintext_sent_after_the_command() {
    let server = server().await;
    let connector = server.tls_connector();
    let mut pop = Client::plain(server.pop3_addr()).await;
    pop.line().await;
    pop.send("STLS\r\nUSER injected\r\n").await;
    assert!(pop.line().await.starts_with("+OK Begin TLS"));
    // The handshake may fail (the bytes reached the TLS layer) or succeed (they were
    // discarded); either way nothing was answered in the clear, and no USER is pending.
    if pop.upgrade(&connector).await.is_ok() {
        pop.ok(&format!("PASS {PASS}"), "-ERR No user name").await;
    }

    let mut smtp = Client::plain(server.submission_addr()).await;
    smtp.smtp_reply().await;
    smtp.smtp("EHLO client.test", 250).await;
    smtp.send("STARTTLS\r\nRSET\r\n").await;
    assert_eq!(smtp.smtp_reply().await.0, 220);
    if smtp.upgrade(&connector).await.is_ok() {
        smtp.smtp("MAIL FROM:<demo@demo.example>", 503).await; // EHLO forgotten, no stray reply
    }
}

#[tokio::test]
async fn plaintext_auth_when_allowed_and_smtp_without_auth() {
    let server = TestServer::builder()
        .user(USER, PASS)
        .allow_plaintext_auth(true)
        .require_smtp_auth(false)
        .hostname("mail.demo.example")
        .start()
        .await
        .unwrap();
    assert_eq!(server.hostname(), "mail.demo.example");
    // The certificate also names the configured host.
    let mut c = Client::tls(
        server.pop3s_addr(),
        &server.tls_connector(),
        "mail.demo.example",
    )
    .await
    .unwrap();
    assert!(c.line().await.starts_with("+OK"));

    let mut smtp = Client::plain(server.submission_addr()).await;
    assert_eq!(smtp.smtp_reply().await.0, 220);
    let ehlo = smtp.smtp("EHLO client.test", 250).await;
    assert!(ehlo.iter().any(|l| l == ALL_AUTH), "{ehlo:?}");
    smtp.smtp("HELO client.test", 250).await;
    smtp.smtp("MAIL FROM:<x@elsewhere.example>", 250).await;
    smtp.smtp("RCPT TO:<demo@demo.example>", 250).await;
    smtp.smtp("DATA", 354).await;
    smtp.send("no header\nbare LF line\r\n.\r\n").await;
    assert_eq!(smtp.smtp_reply().await.0, 250);
    let stored = server.mailbox(USER).unwrap()[0].bytes().to_vec();
    let stored = String::from_utf8(stored).unwrap();
    assert!(
        stored.contains("by mail.demo.example (mail-testground) with SMTP id"),
        "{stored}"
    );
    assert!(
        stored.ends_with("\r\nno header\r\nbare LF line\r\n"),
        "{stored}"
    );

    let mut pop = Client::plain(server.pop3_addr()).await;
    pop.line().await;
    pop.ok(&format!("AUTH PLAIN {}", plain_ir(USER, PASS)), "+OK")
        .await;
    pop.ok("LIST 1", "+OK 1 ").await;
    pop.ok("UIDL", "+OK").await;
    let uidl = String::from_utf8(pop.pop3_multiline().await).unwrap();
    assert_eq!(
        uidl,
        format!("1 {}\r\n", server.mailbox(USER).unwrap()[0].uid())
    );
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    let server = server().await;
    let addr = server.pop3_addr();
    let mut open = Client::plain(addr).await;
    open.line().await;
    server.shutdown().await;
    assert!(open.closed().await, "sessions end with the server");
    match tokio::net::TcpStream::connect(addr).await {
        Err(_) => {}
        Ok(tcp) => {
            // The port may be reused by someone else at once; it is not ours any more.
            let mut buf = [0u8; 1];
            let read = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                tokio::io::AsyncReadExt::read(&mut { tcp }, &mut buf),
            )
            .await;
            assert!(!matches!(read, Ok(Ok(1))), "no greeting after shutdown");
        }
    }
}

#[tokio::test]
async fn builder_rejects_mail_for_an_undeclared_user() {
    let err = TestServer::builder()
        .message("ghost@demo.example", b"x".to_vec())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ghost@demo.example"));
    let store = server().await.store().clone();
    assert_eq!(store.users(), vec![USER.to_owned(), OTHER.to_owned()]);
    assert!(store.has_user("DEMO@demo.example"));
    assert_eq!(store.add_message("ghost@demo.example", b"x"), None);
    assert_eq!(store.clear_mailbox(USER), Some(0));
}

#[test]
fn blocking_server_for_std_clients() {
    use std::io::{BufRead, BufReader, Write};

    let server = TestServer::builder()
        .user(USER, PASS)
        .message(USER, b"Subject: sync\r\n\r\nhi\r\n".to_vec())
        .allow_plaintext_auth(true)
        .start_blocking()
        .unwrap();
    let tcp = std::net::TcpStream::connect(server.pop3_addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    let mut writer = tcp;
    let mut line = String::new();
    let mut exchange = |command: &str| {
        if !command.is_empty() {
            writer
                .write_all(format!("{command}\r\n").as_bytes())
                .unwrap();
        }
        line.clear();
        reader.read_line(&mut line).unwrap();
        line.clone()
    };
    assert!(exchange("").starts_with("+OK"));
    assert!(exchange(&format!("USER {USER}")).starts_with("+OK"));
    assert!(exchange(&format!("PASS {PASS}")).starts_with("+OK"));
    assert!(exchange("STAT").starts_with("+OK 1 "));
    assert!(exchange("QUIT").starts_with("+OK"));
    let addr = server.pop3_addr();
    drop(server);
    assert!(
        std::net::TcpStream::connect(addr)
            .and_then(|mut s| {
                s.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
                let mut b = [0u8; 1];
                std::io::Read::read(&mut s, &mut b)
            })
            .map_or(true, |n| n == 0),
        "no greeting after drop"
    );
}
