//! The tokio adapter against the test ground's Postfix (SASL through Dovecot): STARTTLS and
//! implicit TLS, every offered SASL mechanism, BDAT and DATA, refusals as data, pipelined
//! sessions, SMTPUTF8/8BITMIME, large streamed bodies, the minimal-EHLO port and plaintext.
//!
//! Real deliveries go only to `grace` (and to the sink domain, which Postfix discards); each
//! message carries a unique token, found again in grace's Maildir and compared byte for byte.
#![cfg(feature = "tokio")]

mod tokio_support;

use std::time::{Duration, Instant};

use mail_testground::{
    self as tg, GRACE, POSTFIX_LEGACY, POSTFIX_PLAIN, POSTFIX_SUBMISSION, POSTFIX_SUBMISSIONS,
};
use smtp_submit::tokio::{ConnectionError, Error, Session, TransportError, TrustRoots};
use smtp_submit::{
    AuthFailure, AuthMethod, BodyType, Credentials, Envelope, Extension, Limits, MailOptions,
    Mechanism, MessageOutcome, Misuse, Security, TransactionFailure,
};
use tokio_support::*;

const STARTTLS: Security = Security::StartTls;
const IMPLICIT: Security = Security::ImplicitTls;

fn grace_maildir() -> std::path::PathBuf {
    user_maildir(&GRACE)
}

fn to_grace() -> Envelope {
    Envelope::new(Some(grace())).with_recipient(grace())
}

#[tokio::test]
async fn starttls_every_offered_mechanism() {
    let session = connect(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    assert!(session.is_tls());
    let offered = session.capabilities().auth_mechanisms().to_vec();
    session.quit().await.unwrap();
    for name in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        assert!(
            offered.iter().any(|m| m == name),
            "{name} not in {offered:?}"
        );
    }
    let mut tried = 0;
    for name in &offered {
        // The token mechanisms (XOAUTH2, OAUTHBEARER, offered through Dovecot's oauth2 passdb)
        // need a token, not grace's password: the sign-in tests cover them.
        let Some(mechanism) = Mechanism::from_name(name).filter(|m| !m.uses_token()) else {
            continue;
        };
        let mut session = connect(POSTFIX_SUBMISSION, STARTTLS, config()).await;
        let used = session
            .authenticate(&grace_credentials(), AuthMethod::Mechanism(mechanism))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, mechanism);
        assert_eq!(session.authenticated(), Some(mechanism));
        assert_eq!(session.noop().await.unwrap().code(), 250);
        session.quit().await.unwrap();
        tried += 1;
    }
    assert!(tried >= 5, "{tried} mechanisms tried");
}

#[tokio::test]
async fn implicit_tls_auto_auth_and_streamed_bdat_delivery() {
    let mut session = connect(POSTFIX_SUBMISSIONS, IMPLICIT, config()).await;
    assert!(session.is_tls());
    let caps = session.capabilities().clone();
    assert!(caps.pipelining() && caps.chunking() && caps.smtputf8() && caps.eight_bit_mime());
    let used = session
        .authenticate(&grace_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    assert_eq!(
        used,
        Mechanism::ScramSha256,
        "the strongest offered mechanism"
    );

    let token = new_token("bdat");
    let sent = message(&token, GRACE.address, "streamed BDAT", &tricky_body());
    let report = session
        .send(to_grace(), MailOptions::default(), &sent[..])
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().count(), 1);
    assert!(
        report.reply().unwrap().text().contains("queued"),
        "{report:?}"
    );
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
}

#[tokio::test]
async fn starttls_data_path_streamed_delivery() {
    let config = config().with_chunking(false);
    let mut session = connect_as_grace(POSTFIX_SUBMISSION, STARTTLS, config).await;
    let token = new_token("data");
    let sent = message(&token, GRACE.address, "streamed DATA", &tricky_body());
    let report = session
        .send(to_grace(), MailOptions::default(), trickle(sent.clone()))
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    // The same session goes on: a second message by DATA from bytes.
    let token2 = new_token("data-bytes");
    let sent2 = message(
        &token2,
        GRACE.address,
        "DATA from bytes",
        b".\r\n..\r\nend\r\n",
    );
    let report = session
        .send_bytes(to_grace(), MailOptions::default(), &sent2)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
    assert_delivered(&grace_maildir(), &token2, &sent2);
}

#[tokio::test]
async fn wrong_password_is_a_535_reply_and_the_session_stays_usable() {
    let mut session = connect(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    for mechanism in [Mechanism::Plain, Mechanism::ScramSha256] {
        let error = session
            .authenticate(
                &Credentials::password(GRACE.name, "not-the-password"),
                AuthMethod::Mechanism(mechanism),
            )
            .await
            .unwrap_err();
        let Error::Auth {
            mechanism: tried,
            failure: AuthFailure::Refused(reply),
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*tried, mechanism);
        assert_eq!(reply.code(), 535, "{reply}");
        assert_eq!(reply.enhanced().unwrap().to_string(), "5.7.8");
        assert_eq!(error.reply().map(|r| r.code()), Some(535));
        assert!(!error.is_transient());
        assert!(!error.to_string().contains("not-the-password"), "{error}");
    }
    assert_eq!(session.noop().await.unwrap().code(), 250);
    session
        .authenticate(&grace_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(sink("after-retry")),
            MailOptions::default(),
            b"Subject: after a failed AUTH\r\n\r\nok\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
}

#[tokio::test]
async fn sending_without_auth_is_refused() {
    let mut session = connect(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    let report = session
        .send_bytes(
            to_grace(),
            MailOptions::default(),
            b"Subject: no auth\r\n\r\nnot delivered\r\n",
        )
        .await
        .unwrap();
    assert!(!report.is_sent(), "{report:?}");
    let refusal = match report.failure().unwrap() {
        TransactionFailure::MailRejected(reply) => reply.clone(),
        TransactionFailure::NoValidRecipients { .. } => report.rejected().next().unwrap().1.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(refusal.code() / 100, 5, "{refusal}");
    assert!(!refusal.failure_class().unwrap().is_transient());
    // The refusal did not hurt the session.
    assert_eq!(session.rset().await.unwrap().code(), 250);
    session.quit().await.unwrap();
}

#[tokio::test]
async fn unknown_recipient_refused_beside_an_accepted_one() {
    let mut session = connect_as_grace(POSTFIX_SUBMISSIONS, IMPLICIT, config()).await;
    let nobody = smtp_submit::Address::new(format!("nosuchuser@{}", tg::DOMAIN)).unwrap();
    let token = new_token("mixed");
    let sent = message(
        &token,
        GRACE.address,
        "mixed recipients",
        b"Only grace gets this.\r\n",
    );
    let envelope = Envelope::new(Some(grace()))
        .with_recipient(nobody.clone())
        .with_recipient(grace());
    let report = session
        .send_bytes(envelope, MailOptions::default(), &sent)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().collect::<Vec<_>>(), [&grace()]);
    let rejected: Vec<_> = report.rejected().collect();
    assert_eq!(rejected.len(), 1);
    let (address, reply) = rejected[0];
    assert_eq!(address, &nobody);
    assert_eq!(reply.code(), 550, "{reply}");
    assert_eq!(reply.enhanced().unwrap().to_string(), "5.1.1");
    assert!(!reply.failure_class().unwrap().is_transient());
    assert!(matches!(
        report.outcome,
        MessageOutcome::Sent { accepted: 1, .. }
    ));

    // Every recipient refused: a failed message, still data, and the next one goes through.
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(nobody),
            MailOptions::default(),
            b"Subject: nobody\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(
        matches!(
            report.failure(),
            Some(TransactionFailure::NoValidRecipients { .. })
        ),
        "{report:?}"
    );
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(sink("after-failure")),
            MailOptions::default(),
            b"Subject: after\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
}

#[tokio::test]
async fn fifty_pipelined_messages_on_one_session() {
    let mut session = connect_as_grace(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    assert!(session.capabilities().pipelining());
    let started = Instant::now();
    for i in 0..50 {
        let envelope = Envelope::new(Some(grace()))
            .with_recipient(sink(&format!("bulk{i}")))
            .with_recipient(sink(&format!("bulk{i}-cc")));
        let body = format!("Subject: bulk {i}\r\n\r\n.message {i}\r\n");
        let report = if i % 2 == 0 {
            session
                .send_bytes(envelope, MailOptions::default(), body.as_bytes())
                .await
        } else {
            session
                .send(envelope, MailOptions::default(), body.as_bytes())
                .await
        }
        .unwrap();
        assert!(report.is_sent(), "message {i}: {report:?}");
        assert_eq!(report.accepted().count(), 2);
        if i == 25 {
            session.noop().await.unwrap();
            session.rset().await.unwrap();
        }
    }
    eprintln!("50 messages in {:?}", started.elapsed());
    session.quit().await.unwrap();
}

#[tokio::test]
async fn smtputf8_and_8bitmime() {
    let mut session = connect_as_grace(POSTFIX_SUBMISSIONS, IMPLICIT, config()).await;
    let token = new_token("utf8");
    let body = "Grüße aus Köln — ☃ snowman\r\n.ünïcödé line starting with a dot\r\n日本語\r\n";
    let sent = message(&token, GRACE.address, "Grüße ☃", body.as_bytes());
    let envelope = Envelope::new(Some(grace()))
        .with_recipient(grace())
        .with_recipient(smtp_submit::Address::new(format!("jürgen@{}", tg::SINK_DOMAIN)).unwrap());
    let options = MailOptions::default()
        .with_smtputf8()
        .with_body_type(BodyType::EightBitMime);
    let report = session.send(envelope, options, &sent[..]).await.unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().count(), 2, "{report:?}");
    // The same bytes through send_bytes: BODY=8BITMIME is declared by itself.
    let token2 = new_token("utf8-bytes");
    let sent2 = message(&token2, GRACE.address, "8bit bytes", "é\r\n".as_bytes());
    let report = session
        .send_bytes(to_grace(), MailOptions::default(), &sent2)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
    assert_delivered(&grace_maildir(), &token2, &sent2);
}

async fn two_mib_streamed(chunking: bool, tag: &str) {
    let config = config()
        .with_chunking(chunking)
        .with_limits(Limits::default().with_chunk_size(256 * 1024));
    let mut session = connect_as_grace(POSTFIX_SUBMISSION, STARTTLS, config).await;
    assert!(session.capabilities().chunking());
    let token = new_token(tag);
    let sent = message(
        &token,
        GRACE.address,
        "two MiB",
        &generated_body(2 * 1024 * 1024),
    );
    let size = sent.len() as u64;
    let report = session
        .send(
            to_grace(),
            MailOptions::default().with_size(size),
            trickle(sent.clone()),
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
}

#[tokio::test]
async fn two_mib_streamed_with_bdat_chunks() {
    two_mib_streamed(true, "big-bdat").await;
}

#[tokio::test]
async fn two_mib_streamed_with_data() {
    two_mib_streamed(false, "big-data").await;
}

#[tokio::test]
async fn legacy_minimal_ehlo_falls_back_to_lockstep_data() {
    let mut session = connect_as_grace(POSTFIX_LEGACY, STARTTLS, config()).await;
    let caps = session.capabilities().clone();
    assert!(session.is_tls());
    assert!(!caps.pipelining() && !caps.chunking() && !caps.eight_bit_mime());
    assert!(!caps.smtputf8() && !caps.enhanced_status_codes() && !caps.dsn());

    let nobody = smtp_submit::Address::new(format!("nosuchuser@{}", tg::DOMAIN)).unwrap();
    let token = new_token("legacy");
    let sent = message(&token, GRACE.address, "legacy", &tricky_body());
    let envelope = Envelope::new(Some(grace()))
        .with_recipient(grace())
        .with_recipient(nobody);
    let report = session
        .send(envelope, MailOptions::default(), trickle(sent.clone()))
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    let (_, reply) = report.rejected().next().unwrap();
    assert_eq!(reply.code(), 550, "{reply}");
    // Postfix hides the ENHANCEDSTATUSCODES keyword here but still sends the codes; they are
    // parsed whatever the EHLO said.
    assert!(!reply.failure_class().unwrap().is_transient());

    // What the server does not offer is refused before anything is sent; the session goes on.
    let error = session
        .send_bytes(to_grace(), MailOptions::default(), "8-bit é\r\n".as_bytes())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Misuse(Misuse::ContentNeedsExtension(Extension::EightBitMime))
        ),
        "{error:?}"
    );
    let error = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(
                smtp_submit::Address::new(format!("jürgen@{}", tg::SINK_DOMAIN)).unwrap(),
            ),
            MailOptions::default(),
            b"x\r\n",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Misuse(Misuse::ExtensionNotOffered(Extension::SmtpUtf8))
        ),
        "{error:?}"
    );
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(sink("legacy")),
            MailOptions::default(),
            b"Subject: legacy 2\r\n\r\n.\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&grace_maildir(), &token, &sent);
}

#[tokio::test]
async fn plaintext_needs_both_loud_opt_ins_for_credentials() {
    let plain = Security::Plaintext;
    let mut session = connect(POSTFIX_PLAIN, plain, config()).await;
    assert!(!session.is_tls());
    let error = session
        .authenticate(&grace_credentials(), AuthMethod::Auto)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Misuse(Misuse::CleartextCredentials)),
        "{error:?}"
    );
    session.quit().await.unwrap();

    let config = config().allow_cleartext_credentials_dangerously(true);
    let mut session = connect(POSTFIX_PLAIN, plain, config).await;
    session
        .authenticate(
            &grace_credentials(),
            AuthMethod::Mechanism(Mechanism::Plain),
        )
        .await
        .unwrap();
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(sink("plain")),
            MailOptions::default(),
            b"Subject: plaintext\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
}

#[tokio::test]
async fn transport_and_tls_failures_are_errors() {
    // Nothing listens on port 1.
    let options = options(POSTFIX_SUBMISSIONS);
    let config = || config().with_security(IMPLICIT);
    let mut closed = options.clone();
    closed.port = Some(1);
    let error = Session::connect(&closed, config()).await.unwrap_err();
    assert!(
        matches!(error, Error::Connection(ConnectionError::Transport(_))),
        "{error:?}"
    );
    assert!(error.is_transient());

    // The test ground's CA is not a web PKI root.
    let untrusted = options.clone().with_trust_roots(TrustRoots::WebPki);
    let error = Session::connect(&untrusted, config()).await.unwrap_err();
    assert!(
        matches!(error, Error::Connection(ConnectionError::Transport(_))),
        "{error:?}"
    );
    assert!(!error.is_transient());

    // A certificate for another name, implicit and after STARTTLS.
    let wrong_name = options.clone().with_tls_name("wrong.example");
    let error = Session::connect(&wrong_name, config()).await.unwrap_err();
    assert!(
        matches!(error, Error::Connection(ConnectionError::Transport(_))),
        "{error:?}"
    );
    let wrong_name = tokio_support::options(POSTFIX_SUBMISSION).with_tls_name("wrong.example");
    let error = Session::connect(&wrong_name, tokio_support::config())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Connection(ConnectionError::Transport(_))),
        "{error:?}"
    );

    // Implicit TLS against a port that speaks plain SMTP: the handshake fails or times out.
    let mut not_tls = tokio_support::options(POSTFIX_PLAIN);
    not_tls.timeouts = smtp_submit::tokio::SetupTimeouts::uniform(Duration::from_secs(3));
    let error = Session::connect(&not_tls, config()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Connection(ConnectionError::Transport(_) | ConnectionError::Timeout(_))
        ),
        "{error:?}"
    );
}

#[test]
fn passwords_never_reach_the_logs() {
    use base64::Engine as _;
    let ((), log) = tg::logs::capture(tg::logs::Spans::Off, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for (endpoint, security, mechanism) in [
                (POSTFIX_SUBMISSIONS, IMPLICIT, Mechanism::Plain),
                (POSTFIX_SUBMISSION, STARTTLS, Mechanism::Login),
                (POSTFIX_SUBMISSION, STARTTLS, Mechanism::CramMd5),
                (POSTFIX_SUBMISSION, STARTTLS, Mechanism::ScramSha256),
            ] {
                let mut session = connect(endpoint, security, config()).await;
                session
                    .authenticate(&grace_credentials(), AuthMethod::Mechanism(mechanism))
                    .await
                    .unwrap();
                let _ = session
                    .authenticate(
                        &Credentials::password(GRACE.name, "wrong-secret-pw"),
                        AuthMethod::Auto,
                    )
                    .await;
                session.quit().await.unwrap();
                let mut session = connect(endpoint, security, config()).await;
                let _ = session
                    .authenticate(
                        &Credentials::password(GRACE.name, "wrong-secret-pw"),
                        AuthMethod::Mechanism(mechanism),
                    )
                    .await;
                session.quit().await.unwrap();
            }
        });
    });
    assert!(
        log.contains("[redacted]"),
        "AUTH lines are logged, redacted:\n{log}"
    );
    assert!(log.contains("auth"), "{log}");
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [GRACE.password, "wrong-secret-pw"] {
        let plain = format!("\0{}\0{secret}", GRACE.name);
        for needle in [
            secret.to_owned(),
            b64(secret.as_bytes()),
            b64(plain.as_bytes()),
        ] {
            assert!(!log.contains(&needle), "{needle:?} found in the log");
        }
    }
}

/// A body source that fails after `good` bytes.
struct FailingSource {
    data: Vec<u8>,
    at: usize,
    good: usize,
}

impl tokio::io::AsyncRead for FailingSource {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at >= self.good {
            return std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")));
        }
        let end = (self.at + 1000)
            .min(self.good)
            .min(buf.remaining() + self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..end]);
        self.at = end;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_body_source_abandons_the_message() {
    for chunking in [false, true] {
        let mut session = connect_as_grace(
            POSTFIX_SUBMISSION,
            STARTTLS,
            config().with_chunking(chunking),
        )
        .await;
        let token = new_token("abandoned");
        let sent = message(
            &token,
            GRACE.address,
            "never delivered",
            &generated_body(200_000),
        );
        let source = FailingSource {
            data: sent,
            at: 0,
            good: 100_000,
        };
        let error = session
            .send(to_grace(), MailOptions::default(), source)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::LocalIo(_)), "{error:?}");
        assert!(matches!(session.noop().await, Err(Error::Closed)));
        session.quit().await.unwrap();
        // The server saw the connection end inside the data: nothing is delivered.
        let needle = format!("Message-ID: <{token}@");
        tokio::time::sleep(Duration::from_secs(2)).await;
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(grace_maildir().join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                assert!(
                    find(&bytes, needle.as_bytes()).is_none(),
                    "partial message delivered"
                );
            }
        }
    }
}

/// An endless source of 76-column text lines, stopping after `len` bytes, without holding
/// the message.
struct Lines {
    left: u64,
}

impl tokio::io::AsyncRead for Lines {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        const LINE: &[u8] =
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n";
        while self.left > 0 && buf.remaining() >= LINE.len() {
            let take = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(LINE.len());
            buf.put_slice(&LINE[..take]);
            self.left -= take as u64;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn size_limit_checked_before_sending_and_enforced_by_the_server() {
    let mut session = connect_as_grace(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    let limit = session
        .capabilities()
        .max_message_size()
        .expect("Postfix announces SIZE");
    assert_eq!(limit, 52_428_800);

    // Declared too large: refused by the client before anything is sent, the value given back
    // as a typed misuse; the session goes on.
    let envelope = Envelope::new(Some(grace())).with_recipient(sink("too-large"));
    let error = session
        .send(
            envelope,
            MailOptions::default().with_size(limit + 1),
            &b"x"[..],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Misuse(Misuse::MessageTooLarge { size, .. }) if size == limit + 1),
        "{error:?}"
    );
    assert_eq!(session.noop().await.unwrap().code(), 250);

    // Undeclared and streamed past the limit: Postfix refuses it at the end with 552 5.3.4,
    // a reply (data), not an error; the session stays usable.
    let envelope = Envelope::new(Some(grace())).with_recipient(sink("streamed-too-large"));
    let header = &b"Subject: too large\r\n\r\n"[..];
    let body = tokio::io::AsyncReadExt::chain(
        header,
        Lines {
            left: limit + 1024 * 1024,
        },
    );
    let report = session
        .send(envelope, MailOptions::default(), body)
        .await
        .unwrap();
    match report.failure() {
        Some(TransactionFailure::MessageRejected(reply)) => {
            assert_eq!(reply.code(), 552, "{reply}");
            assert_eq!(reply.enhanced().unwrap().to_string(), "5.3.4", "{reply}");
        }
        other => panic!("expected a 552 refusal, got {other:?} in {report:?}"),
    }
    assert_eq!(session.noop().await.unwrap().code(), 250);
    session.quit().await.unwrap();
}

// ---- the wrong TLS mode for the port (issue 16, item 2) ----

#[tokio::test]
async fn implicit_tls_against_the_starttls_port_says_starttls_is_wanted() {
    // Postfix on 10587 greets in plaintext; rustls alone reported "received corrupt message of
    // type InvalidContentType".
    let error = Session::connect(
        &options(POSTFIX_SUBMISSION),
        config().with_security(Security::ImplicitTls),
    )
    .await
    .unwrap_err();
    let Error::Connection(ConnectionError::Transport(TransportError::PlaintextGreeting {
        host,
        port,
        greeting,
    })) = &error
    else {
        panic!("expected PlaintextGreeting, got {error:?}");
    };
    assert_eq!((host.as_str(), *port), (tg::HOST, POSTFIX_SUBMISSION.port));
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    let text = error.to_string();
    for words in ["127.0.0.1:10587", "plaintext greeting", "STARTTLS", "465"] {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}

#[tokio::test]
async fn starttls_against_the_implicit_tls_port_names_host_port_and_cause() {
    // Postfix on 10465 waits for a ClientHello and says nothing. A short greeting wait keeps
    // the test fast; the assertion is on the error, not on the time taken.
    let wait = Duration::from_secs(2);
    let config = config().with_timeouts(test_timeouts().with_greeting(wait));
    let error = Session::connect(&options(POSTFIX_SUBMISSIONS), config)
        .await
        .unwrap_err();
    let Error::Connection(ConnectionError::Transport(TransportError::NoGreeting {
        port,
        after,
        implicit_tls: false,
        ..
    })) = &error
    else {
        panic!("expected NoGreeting, got {error:?}");
    };
    assert_eq!((*port, *after), (POSTFIX_SUBMISSIONS.port, wait));
    let text = error.to_string();
    for words in ["127.0.0.1:10465", "implicit TLS", "465", "995"] {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}

#[test]
fn the_default_greeting_wait_suits_a_person_waiting() {
    // RFC 5321's 5 minutes are for relays; a submission client gives up after 30 s.
    assert_eq!(
        smtp_submit::Timeouts::default().greeting,
        Duration::from_secs(30)
    );
}

// ---- 8-bit content declared (issue 16, item 7) ----

fn liam() -> smtp_submit::Address {
    smtp_submit::Address::new(tg::LIAM.address).unwrap()
}

/// Every message file in `maildir` that holds `token`, whole (Postfix's headers included).
fn whole_copies(maildir: &std::path::Path, token: &str) -> Vec<Vec<u8>> {
    let mut copies = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            if find(&bytes, token.as_bytes()).is_some() {
                copies.push(bytes);
            }
        }
    }
    copies
}

async fn scratch_file(name: &str, content: &[u8]) -> tokio::fs::File {
    let path = std::env::temp_dir().join(format!("smtp-submit-{}-{name}", std::process::id()));
    tokio::fs::write(&path, content).await.unwrap();
    tokio::fs::File::open(&path).await.unwrap()
}

#[tokio::test]
async fn a_scanned_8bit_file_with_utf8_headers_is_declared_and_delivered() {
    tg::reset_mailboxes(&[tg::LIAM]);
    let mut session = connect(POSTFIX_PLAIN, STARTTLS, config()).await;
    session
        .authenticate(
            &Credentials::password(tg::LIAM.name, tg::LIAM.password),
            AuthMethod::Auto,
        )
        .await
        .unwrap();
    let token = new_token("eightbit");
    let sent = message(&token, tg::LIAM.address, "Grüße", "café ✓\r\n".as_bytes());
    let file = scratch_file("eightbit.eml", &sent).await;
    let report = session
        .send_rewindable(
            Envelope::new(Some(liam())).with_recipient(liam()),
            MailOptions::default(),
            file,
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    let maildir = user_maildir(&tg::LIAM);
    find_delivered(&maildir, &token, Duration::from_secs(20));
    let copies = whole_copies(&maildir, &token);
    assert_eq!(copies.len(), 1);
    let text = String::from_utf8_lossy(&copies[0]);
    // Postfix records an SMTPUTF8 transaction as "with UTF8SMTPSA" in its Received header.
    assert!(text.contains("with UTF8SMTPSA"), "{text}");
    assert!(find(&copies[0], &normalized(&sent)).is_some(), "{text}");
}

#[tokio::test]
async fn a_server_without_8bitmime_or_smtputf8_refuses_with_a_clear_error() {
    let mut session = connect_as_grace(POSTFIX_LEGACY, STARTTLS, config()).await;
    let cases: [(&[u8], Extension, &str); 2] = [
        (
            b"Subject: hi\r\n\r\ncaf\xc3\xa9\r\n",
            Extension::EightBitMime,
            "8BITMIME",
        ),
        (
            b"Subject: caf\xc3\xa9\r\n\r\nhi\r\n",
            Extension::SmtpUtf8,
            "SMTPUTF8",
        ),
    ];
    for (content, extension, words) in cases {
        let file = scratch_file("legacy.eml", content).await;
        let error = session
            .send_rewindable(to_grace(), MailOptions::default(), file)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Misuse(Misuse::ContentNeedsExtension(e)) if e == extension),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(words) && text.contains("nothing was sent"),
            "{text}"
        );
        // Whole bodies are held to the same rule.
        let error = session
            .send_bytes(to_grace(), MailOptions::default(), content)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Misuse(Misuse::ContentNeedsExtension(e)) if e == extension),
            "{error:?}"
        );
    }
    // The session is untouched: a 7-bit message still goes.
    assert_eq!(session.noop().await.unwrap().code(), 250);
    session.quit().await.unwrap();
}

// ---- recipients past the server's limit (issue 16, item 8) ----

#[tokio::test]
async fn twelve_hundred_recipients_through_postfix_each_get_one_copy() {
    // Postfix's smtpd_recipient_limit (default 1000; the test ground keeps it) answers the
    // 1001st RCPT and later with "452 4.5.3 Error: too many recipients". The rest must go in
    // a second transaction of the same session. liam is last, so his copy proves it.
    tg::reset_mailboxes(&[tg::LIAM]);
    let mut session = connect(POSTFIX_SUBMISSION, STARTTLS, config()).await;
    session
        .authenticate(
            &Credentials::password(tg::LIAM.name, tg::LIAM.password),
            AuthMethod::Auto,
        )
        .await
        .unwrap();
    let mut envelope = Envelope::new(Some(liam()));
    for i in 0..1199 {
        envelope.add_recipient(sink(&format!("many{i}")));
    }
    envelope.add_recipient(liam());
    let token = new_token("twelve-hundred");
    let sent = message(
        &token,
        tg::LIAM.address,
        "1200 recipients",
        b"one copy each\r\n",
    );
    let report = session
        .send_bytes(envelope, MailOptions::default(), &sent)
        .await
        .unwrap();
    session.quit().await.unwrap();
    assert!(report.is_sent(), "{:?}", report.outcome);
    assert_eq!(report.transactions.len(), 2, "{:?}", report.transactions);
    assert_eq!(report.recipients.len(), 1200);
    let indexes: Vec<usize> = report.recipients.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..1200).collect::<Vec<_>>());
    assert!(
        report.recipients.iter().all(|r| report.delivered(r)),
        "{:?}",
        report.rejected().next()
    );
    let first = report.transactions[0].0;
    let in_first = report
        .recipients
        .iter()
        .filter(|r| r.transaction == first)
        .count();
    assert_eq!(in_first, 1000);
    let maildir = user_maildir(&tg::LIAM);
    find_delivered(&maildir, &token, Duration::from_secs(20));
    // Give a duplicate (there must be none) time to arrive before counting.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(whole_copies(&maildir, &token).len(), 1);
}

/// The newcomer's path: `ConnectOptions::new` (465 unless told otherwise),
/// `Config::default()` (EHLO localhost), `login`, `Envelope::mail_from(..).to(..)`, and
/// `ensure_sent` turning Postfix's refusal of the only recipient into `Error::NotSent` with the
/// report and the 550 inside; an accepted message passes through `ensure_sent` unchanged.
#[tokio::test]
async fn shortcuts_and_ensure_sent_against_postfix() {
    assert_eq!(smtp_submit::Config::default().security, IMPLICIT);
    let options = options(POSTFIX_SUBMISSIONS);
    let mut session = Session::connect(
        &smtp_submit::tokio::ConnectOptions::new(tg::HOST)
            .with_port(POSTFIX_SUBMISSIONS.port)
            .with_trust_roots(options.trust_roots.clone())
            .with_tls_name(tg::TLS_NAME),
        smtp_submit::Config::default().with_timeouts(test_timeouts()),
    )
    .await
    .unwrap();
    let used = session.login(&grace_credentials()).await.unwrap();
    assert_eq!(used, Mechanism::ScramSha256);

    let nobody = format!("nosuchuser@{}", tg::DOMAIN);
    let envelope = Envelope::mail_from(GRACE.address.parse().unwrap()).to(nobody.parse().unwrap());
    let error = session
        .send_bytes(
            envelope,
            MailOptions::default(),
            b"Subject: nobody\r\n\r\nx\r\n",
        )
        .await
        .unwrap()
        .ensure_sent()
        .map_err(Error::from)
        .unwrap_err();
    let Error::NotSent(not_sent) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(error.reply().map(|r| r.code()), Some(550), "{error}");
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("no recipient accepted"),
        "{error}"
    );
    assert!(matches!(
        not_sent.report().failure(),
        Some(TransactionFailure::NoValidRecipients { .. })
    ));

    let envelope = Envelope::mail_from(grace()).to(sink("ensure-sent"));
    let report = session
        .send_bytes(
            envelope,
            MailOptions::default(),
            b"Subject: sink\r\n\r\nx\r\n",
        )
        .await
        .unwrap()
        .ensure_sent()
        .unwrap();
    assert_eq!(report.accepted().count(), 1);
    session.quit().await.unwrap();
}
