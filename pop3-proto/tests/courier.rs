//! The tokio adapter against Courier POP3, the test ground's third POP3 server (feature
//! `tokio`): login, RFC 6856 UTF-8 mode, the whole mailbox byte for byte, pipelined retrieval.
//!
//! Courier announces `UTF8 USER` and, in a session without `UTF8`, replaces every message with
//! raw UTF-8 headers by a "Cannot display Unicode content" notice. It serves its own read-only
//! copy of `alice`. Needs `bash testground/scripts/testground.sh start`; fails (never skips)
//! when Courier is down.

use std::{collections::HashMap, path::PathBuf};

use mail_common::sasl::Credentials;
use mail_testground::{ALICE, COURIER_POP3, COURIER_POP3S, HOST, TLS_NAME};
use pop3_proto::{
    AuthMethod, Config, Security,
    tokio::{ConnectOptions, Fetched, Session, TrustRoots},
};

async fn connect(security: Security) -> Session {
    mail_testground::require(&[COURIER_POP3, COURIER_POP3S]);
    let port = match security {
        Security::ImplicitTls => COURIER_POP3S.port,
        _ => COURIER_POP3.port,
    };
    let options = ConnectOptions::new(HOST)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME);
    Session::connect(&options, Config::new(security))
        .await
        .unwrap_or_else(|e| panic!("connect {security:?}: {e}"))
}

fn credentials() -> Credentials {
    Credentials::password(mail_testground::courier_login(&ALICE), ALICE.password)
}

/// Alice's generated messages (Dovecot's read-only copy, the same bytes as Courier's), as POP3
/// sends them: LF becomes CRLF.
fn generated() -> Vec<Vec<u8>> {
    let cur = mail_testground::maildir(&ALICE).join("cur");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cur)
        .unwrap_or_else(|e| panic!("{}: {e}", cur.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let mut out = Vec::new();
            for b in std::fs::read(path).unwrap() {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn capabilities_and_automatic_login_over_stls_and_pop3s() {
    for security in [Security::StartTls, Security::ImplicitTls] {
        let mut session = connect(security).await;
        assert!(session.is_tls());
        let caps = session.capabilities().unwrap().clone();
        assert_eq!(caps.utf8, Some(true), "UTF8 USER: {caps:?}");
        assert!(
            caps.user && caps.uidl && caps.top && caps.pipelining,
            "{caps:?}"
        );
        assert!(!caps.stls, "post-TLS capabilities: {caps:?}");
        let method = session.login(credentials()).await.unwrap();
        assert_eq!(method, AuthMethod::UserPass, "{security:?}");
        assert_eq!(session.stat().await.unwrap().count, 100);
        session.quit().await.unwrap();
    }
}

/// Without UTF8 every message with raw UTF-8 in its header is replaced by a notice; with UTF8
/// the whole mailbox is the generated one, byte for byte (RETR one by one and pipelined).
#[tokio::test]
async fn utf8_mode_gives_the_whole_mailbox_byte_for_byte() {
    let expected = generated();
    assert_eq!(expected.len(), 100);
    let utf8_messages: Vec<usize> = (0..100)
        .filter(|&i| contains(&expected[i], b"charset=utf-8"))
        .collect();
    assert_eq!(utf8_messages.len(), 9, "every 11th message");

    let mut session = connect(Security::ImplicitTls).await;
    session.login(credentials()).await.unwrap();
    for &i in &utf8_messages {
        let mut got = Vec::new();
        session.retr_to(i as u32 + 1, &mut got).await.unwrap();
        assert!(
            contains(&got, b"Subject: Cannot display Unicode content"),
            "message {} without UTF8",
            i + 1
        );
    }
    session.quit().await.unwrap();

    let mut session = connect(Security::ImplicitTls).await;
    session.utf8().await.unwrap();
    session.login(credentials()).await.unwrap();
    assert!(session.client().is_utf8());
    for (i, want) in expected.iter().enumerate() {
        let mut got = Vec::new();
        session.retr_to(i as u32 + 1, &mut got).await.unwrap();
        assert!(got == *want, "message {} differs", i + 1);
    }
    session.quit().await.unwrap();

    let mut session = connect(Security::StartTls).await;
    session.utf8().await.unwrap();
    session.login(credentials()).await.unwrap();
    session.list().await.unwrap(); // size hints for the window
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
    let fetched = session
        .retr_many(
            1..=100,
            |_| Vec::new(),
            |msg, body| {
                bodies.insert(msg, body);
            },
        )
        .await
        .unwrap();
    assert_eq!(fetched.len(), 100);
    for (i, outcome) in fetched.iter().enumerate() {
        let msg = i as u32 + 1;
        assert!(
            matches!(outcome, Fetched::Message { msg: m, .. } if *m == msg),
            "{outcome:?}"
        );
        assert!(bodies[&msg] == expected[i], "message {msg} differs");
    }
    session.quit().await.unwrap();
}
