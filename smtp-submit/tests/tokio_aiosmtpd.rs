//! The tokio adapter against the test ground's aiosmtpd: no PIPELINING and no CHUNKING, so every
//! command waits for its reply and bodies go by DATA. aiosmtpd stores what it accepts in a
//! catch-all Maildir (the sink domain is discarded); local parts starting with `reject` get 550
//! at RCPT, `tempfail` 451.
#![cfg(feature = "tokio")]

mod tokio_support;

use mail_testground::{self as tg, AIOSMTPD_SUBMISSION, AIOSMTPD_SUBMISSIONS, GRACE};
use smtp_submit::tokio::Error;
use smtp_submit::{
    Address, AuthFailure, AuthMethod, Credentials, Envelope, MailOptions, Mechanism,
    RecipientOutcome, Security, TransactionFailure,
};
use tokio_support::*;

fn to_grace() -> Envelope {
    Envelope::new(Some(grace())).with_recipient(grace())
}

#[tokio::test]
async fn starttls_every_mechanism_and_streamed_data_delivery() {
    let session = connect(AIOSMTPD_SUBMISSION, Security::StartTls, config()).await;
    assert!(session.is_tls());
    let caps = session.capabilities().clone();
    assert!(!caps.pipelining() && !caps.chunking(), "{caps:?}");
    session.quit().await.unwrap();
    for name in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        assert!(caps.auth_mechanisms().iter().any(|m| m == name), "{caps:?}");
    }
    for mechanism in [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5] {
        let mut session = connect(AIOSMTPD_SUBMISSION, Security::StartTls, config()).await;
        let used = session
            .authenticate(&grace_credentials(), AuthMethod::Mechanism(mechanism))
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(used, mechanism);
        let token = new_token("aio-starttls");
        let sent = message(&token, GRACE.address, "aiosmtpd DATA", &tricky_body());
        let report = session
            .send(to_grace(), MailOptions::default(), trickle(sent.clone()))
            .await
            .unwrap();
        assert!(report.is_sent(), "{report:?}");
        session.quit().await.unwrap();
        assert_delivered(&aiosmtpd_maildir(), &token, &sent);
    }
}

#[tokio::test]
async fn starttls_wrong_password_and_no_auth() {
    let mut session = connect(AIOSMTPD_SUBMISSION, Security::StartTls, config()).await;
    // Without AUTH aiosmtpd refuses MAIL (530): the transaction fails, the session does not.
    let report = session
        .send_bytes(
            to_grace(),
            MailOptions::default(),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    let Some(TransactionFailure::MailRejected(reply)) = report.failure() else {
        panic!("{report:?}");
    };
    assert_eq!(reply.code(), 530, "{reply}");
    // No PIPELINING, so no RCPT was sent: the recipient is named once, with the refusal of
    // the sender as its outcome (not as a refusal of the recipient).
    assert_eq!(report.recipients.len(), 1, "{report:?}");
    assert_eq!(
        report.recipients[0].outcome,
        RecipientOutcome::SenderRefused(reply.clone())
    );
    assert_eq!(
        report.failure().unwrap().to_string(),
        format!("sender refused (MAIL FROM): {reply}")
    );

    let error = session
        .authenticate(
            &Credentials::password(GRACE.name, "not-the-password"),
            AuthMethod::Mechanism(Mechanism::Plain),
        )
        .await
        .unwrap_err();
    let Error::Auth {
        failure: AuthFailure::Refused(reply),
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(reply.code(), 535, "{reply}");
    session
        .authenticate(&grace_credentials(), AuthMethod::Auto)
        .await
        .unwrap();
    let report = session
        .send_bytes(
            Envelope::new(Some(grace())).with_recipient(sink("aio")),
            MailOptions::default(),
            b"Subject: after retry\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
}

#[tokio::test]
async fn implicit_tls_many_messages_in_lockstep_with_refusals() {
    let mut session = connect_as_grace(AIOSMTPD_SUBMISSIONS, Security::ImplicitTls, config()).await;
    assert!(session.is_tls());
    assert_eq!(
        session.authenticated(),
        Some(Mechanism::CramMd5),
        "strongest offered"
    );

    let rejected = Address::new(format!("reject-me@{}", tg::DOMAIN)).unwrap();
    let tempfail = Address::new(format!("tempfail-me@{}", tg::DOMAIN)).unwrap();
    let token = new_token("aio-mixed");
    let sent = message(&token, GRACE.address, "aiosmtpd mixed", b".dot\r\nbody\r\n");
    let envelope = Envelope::new(Some(grace()))
        .with_recipient(rejected.clone())
        .with_recipient(grace())
        .with_recipient(tempfail.clone());
    let report = session
        .send_bytes(envelope, MailOptions::default(), &sent)
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    assert_eq!(report.accepted().collect::<Vec<_>>(), [&grace()]);
    let refused: Vec<_> = report.rejected().collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0].0, &rejected);
    assert_eq!(refused[0].1.code(), 550);
    assert!(!refused[0].1.failure_class().unwrap().is_transient());
    assert_eq!(refused[1].0, &tempfail);
    assert_eq!(refused[1].1.code(), 451);
    assert!(refused[1].1.failure_class().unwrap().is_transient());

    for i in 0..10 {
        let body = format!("Subject: aio {i}\r\n\r\n.{i}\r\n");
        let envelope = Envelope::new(Some(grace())).with_recipient(sink(&format!("aio{i}")));
        let report = if i % 2 == 0 {
            session
                .send(envelope, MailOptions::default(), body.as_bytes())
                .await
        } else {
            session
                .send_bytes(envelope, MailOptions::default(), body.as_bytes())
                .await
        }
        .unwrap();
        assert!(report.is_sent(), "message {i}: {report:?}");
    }
    assert_eq!(session.noop().await.unwrap().code(), 250);
    assert_eq!(session.rset().await.unwrap().code(), 250);
    session.quit().await.unwrap();
    assert_delivered(&aiosmtpd_maildir(), &token, &sent);
}
