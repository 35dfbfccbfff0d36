//! Issue 16, item 6: `mailctl fetch` (through `connect::pop3_login` and `fetch::fetch`) enables
//! RFC 6856 UTF-8 mode when the server announces `UTF8`. Courier, for one, otherwise replaces
//! every message with raw UTF-8 headers by a "Cannot display Unicode content" notice, and serves
//! the original only after `UTF8`. The first test runs against the test ground's real Courier
//! (unpacked from Debian's packages, see `testground.sh`); scripted servers then pin down the
//! order (UTF8 before the login), a refusal, and a server without the capability.

use std::path::PathBuf;
use std::time::SystemTime;

use mail_account::connect::{LoginSecret, ServerSettings, pop3_login};
use mail_account::fetch::{FetchOptions, fetch};
use mail_account::settings::Security;
use mail_account::store::{RetentionPolicy, Store};
use mail_common::sasl::Credentials;
use mail_common::transport::TrustRoots;
use mail_testground::hostile::{HostileServer, Pki, Step, Transcript};
use mail_testground::{ALICE, COURIER_POP3S, HOST, TLS_NAME};

/// A message with raw (unencoded) UTF-8 in its header, as RFC 6532 allows.
const MESSAGE: &str = "From: S\u{e9}bastien <sebastien@example.org>\r\n\
                       To: alice@example.org\r\n\
                       Subject: Gr\u{fc}\u{df}e aus K\u{f6}ln, \u{65e5}\u{672c}\u{8a9e}\r\n\
                       \r\n\
                       Grüße.\r\n";

/// The files of a Maildir directory (`new`, or `cur` of a server's mailbox), sorted by name.
fn maildir_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn courier_serves_the_original_messages_after_utf8() {
    mail_testground::require(&[COURIER_POP3S]);
    let login = mail_testground::courier_login(&ALICE);
    // The problem: a session that does not send UTF8 gets a notice instead of message 11,
    // whose header has raw UTF-8.
    let options = pop3_proto::tokio::ConnectOptions::new(HOST)
        .with_port(COURIER_POP3S.port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME);
    let mut plain = pop3_proto::tokio::Session::connect(&options, pop3_proto::Config::default())
        .await
        .unwrap();
    assert_eq!(plain.capabilities().unwrap().utf8, Some(true), "UTF8 USER");
    plain
        .login(Credentials::password(login.clone(), ALICE.password))
        .await
        .unwrap();
    let mut notice = Vec::new();
    plain.retr_to(11, &mut notice).await.unwrap();
    assert!(
        contains(&notice, b"Subject: Cannot display Unicode content"),
        "{}",
        String::from_utf8_lossy(&notice)
    );
    plain.quit().await.unwrap();

    // mailctl fetch's path: pop3_login enables UTF8, fetch stores the originals.
    let mut settings = ServerSettings::new(HOST, COURIER_POP3S.port, Security::ImplicitTls, login);
    settings.trust_roots = TrustRoots::CaFile(mail_testground::ca_file());
    settings.tls_name = Some(TLS_NAME.into());
    let session = pop3_login(&settings, &LoginSecret::password(ALICE.password))
        .await
        .unwrap();
    assert!(session.client().is_utf8());
    let dir = scratch("courier");
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let store = mail_account::deliver::shared(store);
    let report = fetch(
        session,
        &store,
        &FetchOptions::new(RetentionPolicy::KeepForever),
        SystemTime::now(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.fetched, 100, "{report:?}");
    // Byte for byte the generated messages (Dovecot's read-only copy of alice; the store
    // writes LF line ends, as the generator does).
    let mut stored = maildir_files(&dir.join("Maildir/new"));
    let mut generated = maildir_files(&mail_testground::maildir(&ALICE).join("cur"));
    stored.sort();
    generated.sort();
    assert!(
        stored == generated,
        "the stored messages differ from the generated ones"
    );
    let subject = "Subject: [tg] alice message 11 of 100 \u{2014} Gr\u{fc}\u{df}e";
    assert_eq!(
        stored
            .iter()
            .filter(|m| contains(m, subject.as_bytes()))
            .count(),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pop3-utf8-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Logs in and fetches everything from the scripted server; returns the stored messages.
async fn fetch_from(server: &HostileServer, pki: &Pki, tag: &str) -> Vec<Vec<u8>> {
    let mut settings =
        ServerSettings::new("127.0.0.1", server.port(), Security::ImplicitTls, "alice");
    settings.trust_roots = TrustRoots::CaFile(pki.ca_file());
    settings.tls_name = Some("localhost".into());
    let session = pop3_login(&settings, &LoginSecret::password("secret"))
        .await
        .unwrap_or_else(|e| panic!("login: {e}"));
    let dir = scratch(tag);
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let store = mail_account::deliver::shared(store);
    let report = fetch(
        session,
        &store,
        &FetchOptions::new(RetentionPolicy::KeepForever),
        SystemTime::now(),
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("fetch: {e}"));
    assert_eq!(report.fetched, 1, "{report:?}");
    let new = dir.join("Maildir/new");
    let stored = std::fs::read_dir(&new)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    stored
}

/// The script of a server that announces `capa` and answers `UTF8` (if `utf8_reply` is set),
/// then serves [`MESSAGE`].
fn script(capa: &str, utf8_reply: Option<&str>) -> Vec<Step> {
    let mut steps = vec![
        Step::StartTls,
        Step::send("+OK Hello there.\r\n"),
        Step::expect("CAPA"),
        Step::send(capa),
    ];
    if let Some(reply) = utf8_reply {
        steps.extend([Step::expect("UTF8"), Step::send(reply)]);
    }
    let size = MESSAGE.len();
    steps.extend([
        Step::expect("USER alice"),
        Step::send("+OK Password required.\r\n"),
        Step::expect("PASS "),
        Step::send("+OK logged in.\r\n"),
        Step::expect("LIST"),
        Step::send(format!(
            "+OK POP3 clients that break here, they violate STD53.\r\n1 {size}\r\n.\r\n"
        )),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 UID1-1700000000\r\n.\r\n"),
        Step::expect("RETR 1"),
        Step::send(format!("+OK {size} octets follow.\r\n{MESSAGE}.\r\n")),
        Step::expect("QUIT"),
        Step::send("+OK Bye-bye.\r\n"),
    ]);
    steps
}

fn assert_complete(transcript: &Transcript) {
    assert!(transcript.stopped.is_none(), "{transcript:?}");
}

fn assert_stored_as_sent(stored: &[Vec<u8>]) {
    assert_eq!(stored.len(), 1);
    // The store writes LF line ends; everything else is the server's bytes.
    assert_eq!(
        String::from_utf8_lossy(&stored[0]),
        MESSAGE.replace("\r\n", "\n")
    );
}

#[tokio::test]
async fn utf8_is_enabled_before_the_login_when_announced() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        script(
            "+OK Here's what I can do:\r\nTOP\r\nUSER\r\nUIDL\r\nUTF8 USER\r\n.\r\n",
            Some("+OK UTF8 enabled\r\n"),
        ),
        pki.leaf_for("localhost"),
    )
    .await;
    let stored = fetch_from(&server, &pki, "on").await;
    let transcript = server.finish().await;
    assert_complete(&transcript);
    assert_eq!(transcript.lines[..3], ["CAPA", "UTF8", "USER alice"]);
    assert_stored_as_sent(&stored);
}

#[tokio::test]
async fn a_refused_utf8_does_not_stop_the_fetch() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        script(
            "+OK\r\nUSER\r\nUIDL\r\nUTF8\r\n.\r\n",
            Some("-ERR not today\r\n"),
        ),
        pki.leaf_for("localhost"),
    )
    .await;
    let stored = fetch_from(&server, &pki, "refused").await;
    let transcript = server.finish().await;
    assert_complete(&transcript);
    assert_stored_as_sent(&stored);
}

#[tokio::test]
async fn no_utf8_without_the_capability() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        script("+OK\r\nUSER\r\nUIDL\r\n.\r\n", None),
        pki.leaf_for("localhost"),
    )
    .await;
    let stored = fetch_from(&server, &pki, "off").await;
    let transcript = server.finish().await;
    assert_complete(&transcript);
    assert!(!transcript.any_contains(b"UTF8"), "{transcript:?}");
    assert_stored_as_sent(&stored);
}
