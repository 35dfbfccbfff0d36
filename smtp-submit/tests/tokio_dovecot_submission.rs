//! The tokio adapter against Dovecot's own submission service, the test ground's third SMTP
//! implementation (after Postfix and aiosmtpd): STARTTLS and implicit TLS, every offered SASL
//! mechanism, PIPELINING, BDAT and DATA, refusals as data. Unlike Postfix it offers neither
//! SMTPUTF8 nor DSN, and it relays each accepted message through Postfix (port 10024), which
//! delivers it into the Maildir Dovecot POP3 serves.
//!
//! Real deliveries go only to `liam` (and to the sink domain); each message carries a unique
//! token, found again in liam's Maildir and over Dovecot POP3, and compared byte for byte.
#![cfg(feature = "tokio")]

mod tokio_support;

use mail_testground::{self as tg, DOVECOT_POP3S, DOVECOT_SUBMISSION, DOVECOT_SUBMISSIONS, LIAM};
use smtp_submit::tokio::{Error, Session};
use smtp_submit::{
    Address, AuthFailure, AuthMethod, Credentials, Envelope, Extension, MailOptions, Mechanism,
    Misuse, Security, TransactionFailure,
};
use tokio_support::*;

const STARTTLS: Security = Security::StartTls;
const IMPLICIT: Security = Security::ImplicitTls;

fn liam() -> Address {
    Address::new(LIAM.address).unwrap()
}

fn liam_credentials() -> Credentials {
    Credentials::password(LIAM.name, LIAM.password)
}

fn to_liam() -> Envelope {
    Envelope::new(Some(liam())).with_recipient(liam())
}

async fn connect_as_liam(endpoint: tg::Endpoint, security: Security) -> Session {
    let mut session = connect(endpoint, security, config()).await;
    session
        .authenticate(&liam_credentials(), AuthMethod::Auto)
        .await
        .unwrap_or_else(|e| panic!("AUTH on {}: {e}", endpoint.name));
    session
}

/// The message carrying `token`, fetched back from liam's mailbox over Dovecot POP3S.
async fn fetch_back_over_pop3(token: &str) -> Vec<u8> {
    use pop3_proto::tokio::{ConnectOptions, Session as Pop3Session, TrustRoots};
    let options = ConnectOptions::new(tg::HOST)
        .with_port(DOVECOT_POP3S.port)
        .with_trust_roots(TrustRoots::CaFile(tg::ca_file()))
        .with_tls_name(tg::TLS_NAME);
    let needle = format!("Message-ID: <{token}@");
    // Delivery through Postfix is asynchronous: poll.
    for _ in 0..100 {
        let mut pop3 = Pop3Session::connect(&options, pop3_proto::Config::default())
            .await
            .unwrap();
        pop3.login(liam_credentials()).await.unwrap();
        let count = pop3.stat().await.unwrap().count;
        for msg in (1..=count).rev() {
            let mut bytes = Vec::new();
            pop3.retr_to(msg, &mut bytes).await.unwrap();
            if let Some(at) = find(&bytes, needle.as_bytes()) {
                pop3.quit().await.unwrap();
                return bytes[at..].to_vec();
            }
        }
        pop3.quit().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no message with {needle:?} in liam's POP3 mailbox");
}

#[tokio::test]
async fn capabilities_differ_from_postfix() {
    for (endpoint, security) in [
        (DOVECOT_SUBMISSION, STARTTLS),
        (DOVECOT_SUBMISSIONS, IMPLICIT),
    ] {
        let session = connect(endpoint, security, config()).await;
        assert!(session.is_tls());
        let caps = session.capabilities().clone();
        assert!(
            caps.pipelining() && caps.chunking() && caps.eight_bit_mime(),
            "{caps:?}"
        );
        assert!(
            !caps.smtputf8(),
            "Dovecot submission offers no SMTPUTF8: {caps:?}"
        );
        session.quit().await.unwrap();
    }
}

#[tokio::test]
async fn starttls_every_offered_mechanism() {
    let session = connect(DOVECOT_SUBMISSION, STARTTLS, config()).await;
    let offered = session.capabilities().auth_mechanisms().to_vec();
    session.quit().await.unwrap();
    let mut tried = 0;
    for name in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        assert!(
            offered.iter().any(|m| m == name),
            "{name} not in {offered:?}"
        );
        let mechanism = Mechanism::from_name(name).unwrap();
        let mut session = connect(DOVECOT_SUBMISSION, STARTTLS, config()).await;
        let used = session
            .authenticate(&liam_credentials(), AuthMethod::Mechanism(mechanism))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, mechanism);
        assert_eq!(session.noop().await.unwrap().code(), 250);
        session.quit().await.unwrap();
        tried += 1;
    }
    assert_eq!(tried, 5);
}

#[tokio::test]
async fn implicit_tls_auto_auth_bdat_delivery_fetched_back_over_pop3() {
    let mut session = connect(DOVECOT_SUBMISSIONS, IMPLICIT, config()).await;
    let used = session
        .authenticate(&liam_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    assert_eq!(used, Mechanism::ScramSha256);
    let token = new_token("dovecot-bdat");
    let sent = message(&token, LIAM.address, "Dovecot BDAT", &tricky_body());
    let report = session
        .send(to_liam(), MailOptions::default(), &sent[..])
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().count(), 1);
    session.quit().await.unwrap();
    assert_delivered(&user_maildir(&LIAM), &token, &sent);
    let fetched = fetch_back_over_pop3(&token).await;
    assert_eq!(normalized(&fetched), normalized(&sent));
}

#[tokio::test]
async fn starttls_data_path_and_eight_bit_body() {
    let config = config().with_chunking(false);
    let mut session = connect(DOVECOT_SUBMISSION, STARTTLS, config).await;
    session
        .authenticate(&liam_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    let token = new_token("dovecot-data");
    let sent = message(&token, LIAM.address, "Dovecot DATA", &tricky_body());
    let report = session
        .send(to_liam(), MailOptions::default(), trickle(sent.clone()))
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    // 8-bit body (BODY=8BITMIME, which it offers) on the same session.
    let token2 = new_token("dovecot-8bit");
    let sent2 = message(
        &token2,
        LIAM.address,
        "8bit",
        "Grüße aus Köln\r\n.日本語\r\n".as_bytes(),
    );
    let report = session
        .send_bytes(to_liam(), MailOptions::default(), &sent2)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&user_maildir(&LIAM), &token, &sent);
    assert_delivered(&user_maildir(&LIAM), &token2, &sent2);
}

#[tokio::test]
async fn smtputf8_is_refused_before_sending_because_it_is_not_offered() {
    let mut session = connect_as_liam(DOVECOT_SUBMISSIONS, IMPLICIT).await;
    let envelope = Envelope::new(Some(liam()))
        .with_recipient(Address::new(format!("jürgen@{}", tg::SINK_DOMAIN)).unwrap());
    let error = session
        .send_bytes(
            envelope,
            MailOptions::default().with_smtputf8(),
            b"Subject: x\r\n\r\nx\r\n",
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
    // Nothing was sent: the session goes on.
    assert_eq!(session.noop().await.unwrap().code(), 250);
    session.quit().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_535_reply_and_the_session_stays_usable() {
    let mut session = connect(DOVECOT_SUBMISSION, STARTTLS, config()).await;
    for mechanism in [Mechanism::Plain, Mechanism::ScramSha256] {
        let error = session
            .authenticate(
                &Credentials::password(LIAM.name, "not-the-password"),
                AuthMethod::Mechanism(mechanism),
            )
            .await
            .unwrap_err();
        let Error::Auth {
            failure: AuthFailure::Refused(reply),
            ..
        } = &error
        else {
            panic!("{mechanism:?}: {error:?}");
        };
        assert_eq!(reply.code(), 535, "{reply}");
        assert!(!error.is_transient());
    }
    session
        .authenticate(&liam_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    let report = session
        .send_bytes(
            Envelope::new(Some(liam())).with_recipient(sink("dovecot-after-retry")),
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
    // With DATA the refusal is clean: 530 to MAIL, the session goes on.
    let data_only = config().with_chunking(false);
    let mut session = connect(DOVECOT_SUBMISSION, STARTTLS, data_only).await;
    let report = session
        .send_bytes(
            to_liam(),
            MailOptions::default(),
            b"Subject: no auth\r\n\r\nnot delivered\r\n",
        )
        .await
        .unwrap();
    let Some(TransactionFailure::MailRejected(reply)) = report.failure() else {
        panic!("{report:?}");
    };
    assert_eq!(reply.code(), 530, "{reply}");
    assert_eq!(session.rset().await.unwrap().code(), 250);
    session.quit().await.unwrap();

    // With BDAT pipelined behind MAIL, Dovecot's pre-login process answers BDAT with 530 too,
    // but then reads the chunk's bytes as commands (one "500 5.5.x" per body line), which
    // RFC 3030 forbids. The client must not take those for replies to anything: either it
    // waits for MAIL's reply before sending the chunk (a clean 530), or it ends the session
    // on the unsolicited replies. Nothing is delivered either way.
    let mut session = connect(DOVECOT_SUBMISSION, STARTTLS, config()).await;
    let token = new_token("dovecot-noauth-bdat");
    let sent = message(
        &token,
        LIAM.address,
        "no auth",
        b"RSET\r\nnot delivered\r\n",
    );
    match session
        .send_bytes(to_liam(), MailOptions::default(), &sent)
        .await
    {
        Ok(report) => {
            let Some(TransactionFailure::MailRejected(reply)) = report.failure() else {
                panic!("{report:?}");
            };
            assert_eq!(reply.code(), 530, "{reply}");
        }
        Err(error) => {
            assert!(matches!(error, Error::Protocol(_)), "{error:?}");
        }
    }
    for sub in ["new", "cur"] {
        let delivered = std::fs::read_dir(user_maildir(&LIAM).join(sub))
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path()).is_ok_and(|b| find(&b, token.as_bytes()).is_some()));
        assert!(!delivered, "a message sent without AUTH was delivered");
    }
}

#[tokio::test]
async fn refused_recipients_beside_an_accepted_one() {
    let mut session = connect_as_liam(DOVECOT_SUBMISSION, STARTTLS).await;
    let nobody = Address::new(format!("nosuchuser@{}", tg::DOMAIN)).unwrap();
    let outside = Address::new("someone@example.com").unwrap();
    let token = new_token("dovecot-mixed");
    let sent = message(&token, LIAM.address, "mixed", b"Only liam gets this.\r\n");
    let envelope = Envelope::new(Some(liam()))
        .with_recipient(nobody.clone())
        .with_recipient(outside.clone())
        .with_recipient(liam());
    let report = session
        .send_bytes(envelope, MailOptions::default(), &sent)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().collect::<Vec<_>>(), [&liam()]);
    let rejected: Vec<_> = report.rejected().collect();
    assert_eq!(rejected.len(), 2, "{report:?}");
    for (address, reply) in rejected {
        assert!(
            *address == nobody || *address == outside,
            "{address:?}: {reply}"
        );
        assert_eq!(reply.code() / 100, 5, "{address:?}: {reply}");
    }
    session.quit().await.unwrap();
    assert_delivered(&user_maildir(&LIAM), &token, &sent);
}

#[tokio::test]
async fn twenty_pipelined_messages_on_one_session() {
    let mut session = connect_as_liam(DOVECOT_SUBMISSIONS, IMPLICIT).await;
    assert!(session.capabilities().pipelining());
    for i in 0..20 {
        let envelope = Envelope::new(Some(liam()))
            .with_recipient(sink(&format!("dovecot-bulk{i}")))
            .with_recipient(sink(&format!("dovecot-bulk{i}-cc")));
        let body = format!("Subject: bulk {i}\r\n\r\n.message {i}\r\n");
        let report = session
            .send_bytes(envelope, MailOptions::default(), body.as_bytes())
            .await
            .unwrap();
        assert!(report.is_sent(), "message {i}: {report:?}");
        assert_eq!(report.accepted().count(), 2);
    }
    session.quit().await.unwrap();
}
