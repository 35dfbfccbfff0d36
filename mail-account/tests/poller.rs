//! The poller against servers: how a check's failures are sorted into the schedule's rules
//! by scripted servers for what no test-ground server does on demand (`[IN-USE]`,
//! `[LOGIN-DELAY]`), and by the test ground's Dovecot for real logins (a wrong password
//! parks the account; the right one fetches). The schedule's timing itself is tested with
//! tokio's paused clock in the crate's unit tests (`poller::tests`).
//!
//! Test-ground user: `olivia` (shared with the sign-in tests, which use token logins): this
//! suite only reads her mailbox (keep on server), into its own scratch Maildir.

use std::path::PathBuf;
use std::time::Duration;

use mail_account::connect::{LoginSecret, ServerSettings};
use mail_account::deliver;
use mail_account::fetch::FetchOptions;
use mail_account::poller::{
    CheckOutcome, PollEvent, PolledAccount, Poller, PollerConfig, Retry, pop3_check,
};
use mail_account::settings::Security;
use mail_account::store::{RetentionPolicy, Store};
use mail_common::transport::TrustRoots;
use mail_testground::hostile::{HostileServer, Pki, Step};
use mail_testground::{DOVECOT_POP3S, OLIVIA};
use tokio::sync::{mpsc, watch};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mail-account-poller-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One check of a scripted server that refuses the login with `refusal`, announcing
/// `LOGIN-DELAY 900` in its capabilities.
async fn check_refused_login(refusal: &str) -> CheckOutcome {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK scripted\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nLOGIN-DELAY 900\r\n.\r\n"),
            Step::expect("USER"),
            Step::send("+OK\r\n"),
            Step::expect("PASS"),
            Step::send(format!("{refusal}\r\n")),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let dir = scratch("refused");
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let mut settings =
        ServerSettings::new("localhost", server.port(), Security::ImplicitTls, "someone");
    settings.trust_roots = TrustRoots::CaFile(pki.ca_file());
    let check = pop3_check(
        settings,
        LoginSecret::password("secret"),
        deliver::shared(store),
        FetchOptions::new(RetentionPolicy::DeleteAfterDownload),
    );
    let (_stop_tx, stop) = watch::channel(false);
    let outcome = check(stop).await;
    let transcript = server.finish().await;
    assert!(
        !transcript.plaintext_contains(b"DELE"),
        "nothing deleted: {transcript:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

#[tokio::test]
async fn an_in_use_refusal_is_retried_with_backoff() {
    let outcome = check_refused_login("-ERR [IN-USE] mailbox locked by another session").await;
    let CheckOutcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.retry, Retry::InUse, "{failure:?}");
}

#[tokio::test]
async fn a_login_delay_refusal_waits_for_the_announced_delay() {
    let outcome = check_refused_login("-ERR [LOGIN-DELAY] too soon, wait 15 minutes").await;
    let CheckOutcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        failure.retry,
        Retry::LoginDelay(Some(Duration::from_secs(900))),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_temporary_system_refusal_backs_off_and_a_refusal_without_code_parks() {
    let outcome = check_refused_login("-ERR [SYS/TEMP] try again later").await;
    assert!(
        matches!(&outcome, CheckOutcome::Failed(f) if f.retry == Retry::Backoff),
        "{outcome:?}"
    );
    let outcome = check_refused_login("-ERR invalid login").await;
    assert!(
        matches!(&outcome, CheckOutcome::Failed(f) if f.retry == Retry::Park),
        "{outcome:?}"
    );
}

fn dovecot_account(dir: &std::path::Path, password: &str) -> PolledAccount {
    let mut settings = ServerSettings::new(
        mail_testground::TLS_NAME,
        DOVECOT_POP3S.port,
        Security::ImplicitTls,
        OLIVIA.name,
    );
    settings.trust_roots = TrustRoots::CaFile(mail_testground::ca_file());
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let check = pop3_check(
        settings.clone(),
        LoginSecret::password(password),
        deliver::shared(store),
        // Olivia's mailbox is shared with another suite: only ever read it.
        FetchOptions::new(RetentionPolicy::KeepForever),
    );
    PolledAccount::new("olivia", &settings.host, Duration::from_secs(3600), check)
}

#[tokio::test]
async fn dovecot_a_wrong_password_parks_the_account_and_the_right_one_fetches() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let wrong = scratch("wrong");
    let right = scratch("right");
    let mut wrong_account = dovecot_account(&wrong, "not-olivias-password");
    wrong_account.name = "wrong".into();
    let accounts = vec![wrong_account, dovecot_account(&right, OLIVIA.password)];
    let (tx, mut rx) = mpsc::channel(64);
    let config =
        PollerConfig::default().with_backoff(Duration::from_secs(1), Duration::from_secs(1));
    let poller = Poller::start(accounts, config, tx);
    let (mut parked, mut fetched) = (None, None);
    while parked.is_none() || fetched.is_none() {
        match rx.recv().await.expect("the poller runs") {
            PollEvent::Parked { account, reason } => {
                assert_eq!(account, "wrong");
                parked = Some(reason);
            }
            PollEvent::Fetched {
                account, next_in, ..
            } => {
                assert_eq!(account, "olivia");
                assert!(next_in >= Duration::from_secs(3000), "{next_in:?}");
                fetched = Some(());
            }
            PollEvent::Failed {
                account, failure, ..
            } => {
                panic!("{account}: a failure that is not permanent: {failure:?}")
            }
            _ => {}
        }
    }
    let reason = parked.unwrap();
    assert!(
        reason.contains("[AUTH]") || reason.to_lowercase().contains("auth"),
        "the reason names the refusal: {reason}"
    );
    poller.shutdown().await;
    let mut stopped = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            PollEvent::Stopped { account } => stopped.push(account),
            PollEvent::Checking { account } => panic!("{account} checked again"),
            _ => {}
        }
    }
    assert_eq!(stopped, ["olivia"], "the parked account's task had ended");
    let _ = std::fs::remove_dir_all(&wrong);
    let _ = std::fs::remove_dir_all(&right);
}

/// Shutdown's promise: a fetch asked to stop ends after the message it is receiving, with
/// what arrived delivered and nothing deleted; the next run fetches the rest, each message
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_asked_to_stop_ends_after_the_current_message_and_deletes_nothing() {
    use mail_account::fetch::{FetchEvent, fetch_until};
    let mut builder =
        mail_testground::server::TestServer::builder().user("stop@poller.test", "secret");
    for n in 0..200 {
        builder = builder.message(
            "stop@poller.test",
            format!("Message-ID: <{n}@poller.test>\r\n\r\nbody {n}\r\n").into_bytes(),
        );
    }
    let server = builder.start().await.unwrap();
    let dir = scratch("stop");
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let store = deliver::shared(store);
    let mut settings = ServerSettings::new(
        "localhost",
        server.pop3s_addr().port(),
        Security::ImplicitTls,
        "stop@poller.test",
    );
    settings.trust_roots = server.trust_roots();
    let options = FetchOptions::new(RetentionPolicy::DeleteAfterDownload);
    let secret = LoginSecret::password("secret");

    // Stop as soon as the first batch is stored.
    let (stop_tx, stop) = watch::channel(false);
    let session = mail_account::connect::pop3_login(&settings, &secret)
        .await
        .unwrap();
    let report = fetch_until(
        session,
        &store,
        &options,
        std::time::SystemTime::now(),
        |event| {
            if matches!(event, FetchEvent::Stored { .. }) {
                stop_tx.send_replace(true);
            }
        },
        &stop,
    )
    .await
    .unwrap();
    assert!(report.stopped, "{report:?}");
    assert!(
        report.fetched >= 1 && report.fetched < 200,
        "stopped early: {report:?}"
    );
    assert_eq!(report.deleted, 0);
    assert_eq!(
        server.mailbox("stop@poller.test").map(|m| m.len()),
        Some(200),
        "nothing deleted on the server"
    );
    let first = report.fetched;

    // The next run fetches the rest and deletes everything.
    let (_keep_going, stop) = watch::channel(false);
    let session = mail_account::connect::pop3_login(&settings, &secret)
        .await
        .unwrap();
    let report = fetch_until(
        session,
        &store,
        &options,
        std::time::SystemTime::now(),
        |_| {},
        &stop,
    )
    .await
    .unwrap();
    assert!(!report.stopped);
    assert_eq!(first + report.fetched, 200, "each message once");
    assert_eq!(report.deleted, 200);
    let files = std::fs::read_dir(dir.join("Maildir/new")).unwrap().count();
    assert_eq!(files, 200);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a successful check the server's announced `LOGIN-DELAY` reaches the schedule (which
/// then never checks sooner; the rule itself is tested on the paused clock).
#[tokio::test]
async fn a_successful_check_reports_the_servers_login_delay() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK scripted\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nLOGIN-DELAY 900\r\n.\r\n"),
            Step::expect("USER"),
            Step::send("+OK\r\n"),
            Step::expect("PASS"),
            Step::send("+OK logged in\r\n"),
            Step::expect("LIST"),
            Step::send("+OK 0 messages\r\n.\r\n"),
            Step::expect("UIDL"),
            Step::send("+OK\r\n.\r\n"),
            Step::expect("QUIT"),
            Step::send("+OK bye\r\n"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let dir = scratch("delay-ok");
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let mut settings =
        ServerSettings::new("localhost", server.port(), Security::ImplicitTls, "someone");
    settings.trust_roots = TrustRoots::CaFile(pki.ca_file());
    let check = pop3_check(
        settings,
        LoginSecret::password("secret"),
        deliver::shared(store),
        FetchOptions::new(RetentionPolicy::KeepForever),
    );
    let (_stop_tx, stop) = watch::channel(false);
    let outcome = check(stop).await;
    let _ = server.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
    let CheckOutcome::Fetched { login_delay, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(login_delay, Some(Duration::from_secs(900)));
}
