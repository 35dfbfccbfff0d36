//! `AUTH NTLM` ("Secure Password Authentication") through the tokio adapter against a real NTLM
//! verifier: the test ground's second Dovecot instance, whose NTLM mechanism hands the exchange
//! to Cyrus SASL's NTLM plugin (it checks the NTLMv2 response against the password in a
//! sasldb). It also offers PLAIN, which shows that NTLM is used only when asked for.
//!
//! User: [`QUINN`] (scratch, known only to the NTLM servers). Each test puts its own message,
//! named by a unique token, into quinn's Maildir and finds it again by that token.
//!
//! Dovecot runs one helper process for all NTLM exchanges, and the helper protocol has no
//! exchange id: two NTLM logins interleaved between the challenge and the response would check
//! one response against the other's challenge. The NTLM logins of this file take turns.

#[path = "support/login_refusal.rs"]
mod login_refusal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use mail_common::sasl::{Credentials, Mechanism};
use mail_testground::{DOVECOT_NTLM_POP3, DOVECOT_NTLM_POP3S, HOST, QUINN, TLS_NAME};
use pop3_proto::{
    AuthMethod, Config, Login, Security,
    tokio::{ConnectOptions, Error, Session, TrustRoots},
};
use tokio::sync::Mutex;

use self::login_refusal::assert_auth_refusal;

/// One NTLM exchange at a time (see the module documentation).
static NTLM_TURN: Mutex<()> = Mutex::const_new(());

fn options(security: Security) -> ConnectOptions {
    mail_testground::require(&[DOVECOT_NTLM_POP3, DOVECOT_NTLM_POP3S]);
    let port = match security {
        Security::ImplicitTls => DOVECOT_NTLM_POP3S.port,
        _ => DOVECOT_NTLM_POP3.port,
    };
    ConnectOptions::new(HOST)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME)
}

async fn connect(security: Security) -> Session {
    Session::connect(&options(security), Config::new(security))
        .await
        .unwrap_or_else(|e| panic!("connect {security:?}: {e}"))
}

fn quinn(password: &str) -> Credentials {
    Credentials::password(QUINN.name, password)
}

const NTLM: AuthMethod = AuthMethod::Sasl(Mechanism::Ntlm);

/// Puts a message carrying a new unique token into quinn's Maildir; returns the token and the
/// message as POP3 sends it (CRLF line ends).
fn new_message(tag: &str) -> (String, Vec<u8>) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let token = format!(
        "ntlm-{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let message = format!(
        "From: quinn@testground.example\r\nTo: quinn@testground.example\r\nSubject: {token}\r\n\r\nread after AUTH NTLM\r\n"
    );
    let maildir = mail_testground::maildir(&QUINN);
    let tmp: PathBuf = maildir.join("tmp").join(&token);
    std::fs::write(&tmp, &message).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, maildir.join("new").join(&token)).unwrap();
    (token, message.into_bytes())
}

/// Finds the message with `token` in the mailbox, checks its content and deletes it.
async fn read_and_delete(session: &mut Session, token: &str, expected: &[u8]) {
    let count = session.stat().await.unwrap().count;
    assert!(count >= 1, "the message just put there is missing");
    for msg in 1..=count {
        let message = session.retr(msg).await.unwrap();
        if message.windows(token.len()).any(|w| w == token.as_bytes()) {
            assert_eq!(message, expected);
            session.dele(msg).await.unwrap();
            return;
        }
    }
    panic!("no message with {token} among {count}");
}

#[tokio::test]
async fn stls_ntlm_login_reads_the_mailbox() {
    let (token, expected) = new_message("stls");
    let mut session = connect(Security::StartTls).await;
    assert!(session.is_tls());
    let offered = session.capabilities().expect("CAPA").sasl.clone();
    assert!(offered.iter().any(|m| m == "NTLM"), "{offered:?}");
    let used = {
        let _turn = NTLM_TURN.lock().await;
        session
            .login_with(Login::using(NTLM, quinn(QUINN.password)))
            .await
            .expect("NTLM with the right password")
    };
    assert_eq!(used, NTLM);
    assert!(session.is_logged_in());
    read_and_delete(&mut session, &token, &expected).await;
    session.quit().await.unwrap();
}

#[tokio::test]
async fn implicit_tls_ntlm_login_reads_the_mailbox() {
    let (token, expected) = new_message("pop3s");
    let mut session = connect(Security::ImplicitTls).await;
    let used = {
        let _turn = NTLM_TURN.lock().await;
        session
            .login_with(Login::using(NTLM, quinn(QUINN.password)))
            .await
            .expect("NTLM with the right password")
    };
    assert_eq!(used, NTLM);
    read_and_delete(&mut session, &token, &expected).await;
    session.quit().await.unwrap();
}

#[tokio::test]
async fn wrong_password_with_ntlm_is_an_auth_refusal_and_the_session_goes_on() {
    let mut session = connect(Security::ImplicitTls).await;
    let _turn = NTLM_TURN.lock().await;
    let error = session
        .login_with(Login::using(NTLM, quinn("not-the-password")))
        .await
        .unwrap_err();
    assert_auth_refusal(&error, NTLM, &session);
    // Still in the authorization state: NTLM with the right password works.
    let used = session
        .login_with(Login::using(NTLM, quinn(QUINN.password)))
        .await
        .expect("NTLM with the right password after a refusal");
    assert_eq!(used, NTLM);
    session.stat().await.unwrap();
    session.quit().await.unwrap();
}

#[tokio::test]
async fn a_user_unknown_to_the_sasldb_is_refused() {
    let mut session = connect(Security::ImplicitTls).await;
    let _turn = NTLM_TURN.lock().await;
    let error = session
        .login_with(Login::using(
            NTLM,
            Credentials::password("nobody", QUINN.password),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::LoginFailed(_)), "{error:?}");
    assert!(!error.is_fatal());
    session.quit().await.unwrap();
}

#[tokio::test]
async fn automatic_login_never_picks_ntlm() {
    let mut session = connect(Security::ImplicitTls).await;
    let offered = session.capabilities().expect("CAPA").sasl.clone();
    assert!(offered.iter().any(|m| m == "NTLM"), "{offered:?}");
    let used = session.login(quinn(QUINN.password)).await.unwrap();
    assert_eq!(used, AuthMethod::Sasl(Mechanism::Plain));
    session.quit().await.unwrap();
}
