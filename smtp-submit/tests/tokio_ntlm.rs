//! `AUTH NTLM` ("Secure Password Authentication") through the tokio adapter against a real NTLM
//! verifier: the test ground's second Postfix instance, whose SASL is Cyrus SASL with a sasldb
//! (its NTLM plugin checks the NTLMv2 response against the stored password). It also offers
//! SCRAM-SHA-256, PLAIN and LOGIN, which shows that NTLM is used only when asked for.
//!
//! Only [`PAT`] exists there; mail for pat is delivered into pat's Maildir, found again by its
//! unique token.
#![cfg(feature = "tokio")]

mod tokio_support;

use mail_testground::{self as tg, PAT, POSTFIX_NTLM_SUBMISSION, POSTFIX_NTLM_SUBMISSIONS};
use smtp_submit::Security;
use smtp_submit::tokio::Error;
use smtp_submit::{
    Address, AuthFailure, AuthMethod, Credentials, Envelope, MailOptions, Mechanism,
};
use tokio_support::*;

fn pat_credentials(password: &str) -> Credentials {
    Credentials::password(PAT.name, password)
}

fn pat() -> Address {
    Address::new(PAT.address).unwrap()
}

#[tokio::test]
async fn starttls_ntlm_login_and_delivery() {
    let mut session = connect(POSTFIX_NTLM_SUBMISSION, Security::StartTls, config()).await;
    assert!(session.is_tls());
    let offered = session.capabilities().auth_mechanisms().to_vec();
    assert!(offered.iter().any(|m| m == "NTLM"), "{offered:?}");
    let used = session
        .authenticate(
            &pat_credentials(PAT.password),
            AuthMethod::Mechanism(Mechanism::Ntlm),
        )
        .await
        .expect("NTLM with the right password");
    assert_eq!(used, Mechanism::Ntlm);
    assert_eq!(session.authenticated(), Some(Mechanism::Ntlm));

    // Authenticated for real: the server relays for pat, which it refuses without AUTH.
    let token = new_token("ntlm-starttls");
    let sent = message(
        &token,
        PAT.address,
        "NTLM over STARTTLS",
        b"sent after AUTH NTLM\r\n",
    );
    let report = session
        .send_bytes(
            Envelope::new(Some(pat())).with_recipient(pat()),
            MailOptions::default(),
            &sent,
        )
        .await
        .unwrap();
    assert!(report.is_sent(), "{report:?}");
    session.quit().await.unwrap();
    assert_delivered(&tg::maildir(&PAT), &token, &sent);
}

#[tokio::test]
async fn implicit_tls_ntlm_login() {
    let mut session = connect(POSTFIX_NTLM_SUBMISSIONS, Security::ImplicitTls, config()).await;
    let used = session
        .authenticate(
            &pat_credentials(PAT.password),
            AuthMethod::Mechanism(Mechanism::Ntlm),
        )
        .await
        .expect("NTLM with the right password");
    assert_eq!(used, Mechanism::Ntlm);
    assert_eq!(session.noop().await.unwrap().code(), 250);
    session.quit().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_an_auth_failure_and_the_session_stays_usable() {
    let mut session = connect(POSTFIX_NTLM_SUBMISSION, Security::StartTls, config()).await;
    let err = session
        .authenticate(
            &pat_credentials("not-pat-pass"),
            AuthMethod::Mechanism(Mechanism::Ntlm),
        )
        .await
        .expect_err("a wrong password must be refused");
    match &err {
        Error::Auth {
            mechanism: Mechanism::Ntlm,
            failure: AuthFailure::Refused(reply),
        } => assert_eq!(reply.code(), 535, "{err}"),
        other => panic!("expected a 535 refusal of AUTH NTLM, got {other:?}"),
    }
    assert_eq!(session.authenticated(), None);
    // The refusal was about the credentials, not the exchange: the right ones work next.
    let used = session
        .authenticate(
            &pat_credentials(PAT.password),
            AuthMethod::Mechanism(Mechanism::Ntlm),
        )
        .await
        .expect("NTLM with the right password after a refusal");
    assert_eq!(used, Mechanism::Ntlm);
    session.quit().await.unwrap();
}

/// The same server offers NTLM, SCRAM-SHA-256, PLAIN and LOGIN: the automatic choice is the
/// strongest, never NTLM, and it works with the same sasldb password.
#[tokio::test]
async fn automatic_choice_never_picks_ntlm() {
    let mut session = connect(POSTFIX_NTLM_SUBMISSION, Security::StartTls, config()).await;
    let offered = session.capabilities().auth_mechanisms().to_vec();
    assert_eq!(offered, ["NTLM", "SCRAM-SHA-256", "PLAIN", "LOGIN"]);
    let used = session
        .authenticate(&pat_credentials(PAT.password), AuthMethod::Auto)
        .await
        .unwrap();
    assert_eq!(used, Mechanism::ScramSha256);
    session.quit().await.unwrap();

    // The comparison mechanisms check the same sasldb password as NTLM.
    for name in ["PLAIN", "LOGIN"] {
        let mut session = connect(POSTFIX_NTLM_SUBMISSION, Security::StartTls, config()).await;
        let mechanism = Mechanism::from_name(name).unwrap();
        let used = session
            .authenticate(
                &pat_credentials(PAT.password),
                AuthMethod::Mechanism(mechanism),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(used, mechanism);
        session.quit().await.unwrap();
    }
}
