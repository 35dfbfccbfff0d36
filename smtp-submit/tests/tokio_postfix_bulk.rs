//! `Session::send_many` against the test ground's Postfix: many messages over one session with
//! transactions pipelined across (RFC 2920), every one delivered and found again in liam's
//! Maildir by its token; a refused recipient and a refused-before-sending message in the middle
//! of the run affect no other message.
//!
//! A separate test binary from `tokio_postfix.rs`, whose 8-bit tests reset liam's Maildir.
#![cfg(feature = "tokio")]

mod tokio_support;

use std::time::Duration;

use mail_testground::{self as tg, LIAM, POSTFIX_SUBMISSION, POSTFIX_SUBMISSIONS};
use smtp_submit::Security;
use smtp_submit::tokio::Error;
use smtp_submit::{
    Address, AuthMethod, Credentials, Envelope, MailOptions, MessageOutcome, Misuse,
    RecipientOutcome, TransactionFailure,
};
use tokio_support::*;

fn liam() -> Address {
    Address::new(LIAM.address).unwrap()
}

async fn run(endpoint: tg::Endpoint, security: Security, count: usize) {
    let mut session = connect(endpoint, security, config()).await;
    assert!(session.capabilities().pipelining() && session.capabilities().chunking());
    session
        .authenticate(
            &Credentials::password(LIAM.name, LIAM.password),
            AuthMethod::Auto,
        )
        .await
        .unwrap();
    let nobody = Address::new(format!("nosuchuser@{}", tg::DOMAIN)).unwrap();
    let tokens: Vec<String> = (0..count).map(|i| new_token(&format!("bulk{i}"))).collect();
    let bodies: Vec<Vec<u8>> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let body = format!(".message {i} of a pipelined run\r\n.\r\nend\r\n");
            message(token, LIAM.address, "bulk", body.as_bytes())
        })
        .collect();
    // Message 10 goes only to an unknown user (refused), message 20 has no recipient at all
    // (refused before anything is sent), message 30 to liam and the unknown user.
    let envelopes: Vec<Envelope> = (0..count)
        .map(|i| match i {
            10 => Envelope::new(Some(liam())).with_recipient(nobody.clone()),
            20 => Envelope::new(Some(liam())),
            30 => Envelope::new(Some(liam()))
                .with_recipient(liam())
                .with_recipient(nobody.clone()),
            _ => Envelope::new(Some(liam())).with_recipient(liam()),
        })
        .collect();
    let results = session
        .send_many(
            envelopes
                .iter()
                .cloned()
                .zip(bodies.iter())
                .map(|(envelope, body)| (envelope, MailOptions::default(), body.as_slice())),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), count);
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (10, Ok(report)) => {
                assert!(!report.is_sent());
                assert!(
                    matches!(
                        report.failure(),
                        Some(TransactionFailure::NoValidRecipients { .. })
                    ),
                    "{report:?}"
                );
                assert_eq!(report.rejected().next().unwrap().1.code(), 550);
            }
            (20, Err(Error::Misuse(Misuse::NoRecipients))) => {}
            (30, Ok(report)) => {
                assert!(report.is_sent(), "{report:?}");
                assert!(report.recipients[0].is_accepted());
                assert!(matches!(
                    &report.recipients[1].outcome,
                    RecipientOutcome::Rejected(reply) if reply.code() == 550
                ));
            }
            (_, Ok(report)) => {
                assert!(report.is_sent(), "message {i}: {report:?}");
                assert!(matches!(
                    report.outcome,
                    MessageOutcome::Sent { accepted: 1, .. }
                ));
            }
            (_, Err(error)) => panic!("message {i}: {error}"),
        }
    }
    // Queue ids: every accepted message got its own final reply.
    let mut queue_ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok()?.reply().map(|reply| reply.text()))
        .collect();
    let sent = queue_ids.len();
    queue_ids.sort();
    queue_ids.dedup();
    assert_eq!(queue_ids.len(), sent, "one queue id per message");
    session.quit().await.unwrap();

    let maildir = user_maildir(&LIAM);
    for (i, token) in tokens.iter().enumerate() {
        if i == 10 || i == 20 {
            continue;
        }
        let delivered = find_delivered(&maildir, token, Duration::from_secs(30));
        assert!(
            find(&delivered, format!(".message {i} of").as_bytes()).is_some(),
            "message {i} delivered with its own body"
        );
    }
}

#[tokio::test]
async fn fifty_messages_pipelined_over_starttls_all_arrive() {
    run(POSTFIX_SUBMISSION, Security::StartTls, 50).await;
}

#[tokio::test]
async fn pipelined_run_over_implicit_tls_all_arrive() {
    run(POSTFIX_SUBMISSIONS, Security::ImplicitTls, 35).await;
}
