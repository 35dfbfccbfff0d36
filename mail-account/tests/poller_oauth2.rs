//! The poller and OAuth 2.0 against real parts: the test ground's Dovecot validates the
//! account's bearer token with its oauth2 passdb at an `oauth-mock` authorization server started
//! here (forwarded from the fixed port Dovecot calls). Once the grant is revoked, the account is
//! parked with the reason and never checked again: retrying a revoked grant cannot succeed,
//! and providers lock out clients that keep trying.
//!
//! The tokens open olivia's mailbox (shared with other suites, so only ever read). The fixed
//! port is taken with [`mail_testground::take_oauth2_passdb_port`]: holding its listener is the
//! lock, so the tests that need it (in this binary and others) wait for each other. Each test's
//! listener closes with its runtime.

use std::sync::Arc;
use std::time::Duration;

use mail_account::connect::ServerSettings;
use mail_account::deliver;
use mail_account::fetch::FetchOptions;
use mail_account::oauth::{ClientIdentity, OAuth2Credential, OAuthClient, TokenFile};
use mail_account::poller::{
    PollEvent, PolledAccount, Poller, PollerConfig, Retry, pop3_oauth2_check,
};
use mail_account::settings::Security;
use mail_account::store::{RetentionPolicy, Store};
use mail_common::transport::TrustRoots;
use mail_testground::DOVECOT_POP3S;
use oauth_mock::MockServer;
use tokio::sync::mpsc;

const CLIENT: &str = "mail-rs-test";
const SECRET: &str = "test-secret";
const SCOPES: [&str; 2] = ["openid", "email"];
/// The one user oauth-mock 1.1 issues tokens for; Dovecot compares the login name with the
/// token's email and maps it to olivia (testground/conf/dovecot-oauth2-passdb.conf.ext).
const MOCK_USER: &str = "mock.user@example.com";

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("poller-oauth2-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The authorization server, reachable by Dovecot through the fixed passdb port.
async fn authorization_server() -> Arc<MockServer> {
    let listener = tokio::task::spawn_blocking(|| {
        mail_testground::take_oauth2_passdb_port(Duration::from_secs(300))
    })
    .await
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let server = Arc::new(
        MockServer::builder()
            .with_client(CLIENT, SECRET, ["http://127.0.0.1:1/unused"], SCOPES)
            .spawn_on_free_port()
            .await
            .unwrap(),
    );
    let target = server.base_url().trim_start_matches("http://").to_owned();
    // Plain TCP relaying: the mock answers every request itself. The task (and the port) ends
    // with the test's runtime.
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    server
}

fn oauth_client(server: &MockServer, file: &TokenFile) -> OAuthClient {
    let base = server.base_url();
    let credential = OAuth2Credential {
        client_id: Some(CLIENT.into()),
        client_secret: Some(mail_common::Secret::new(SECRET.into())),
        token_url: format!("{base}/token"),
        authorization_url: None,
        device_authorization_url: Some(format!("{base}/device_authorization")),
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        token_file: file.path().to_owned(),
    };
    let identity = ClientIdentity::resolve(None, None, Some(&credential)).unwrap();
    OAuthClient::new(credential, identity, &TrustRoots::WebPki).unwrap()
}

/// Signs in with the device grant, approved through the server's test hook.
async fn sign_in(server: &Arc<MockServer>, file: &TokenFile) {
    let approver = Arc::clone(server);
    oauth_client(server, file)
        .device_grant(
            file,
            move |prompt| {
                let code = prompt.user_code.clone();
                tokio::spawn(async move { approver.approve_device_code(&code).await.unwrap() });
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
}

/// Revokes both tokens of the grant, as a provider does when the person withdraws the
/// application's access.
async fn revoke_grant(server: &MockServer, file: &TokenFile) {
    let stored = file.load().unwrap();
    revoke(
        server,
        [stored.access_token.unwrap(), stored.refresh_token.unwrap()],
    )
    .await;
}

async fn revoke(
    server: &MockServer,
    tokens: impl IntoIterator<Item = mail_common::Secret<String>>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for token in tokens {
        let status = http
            .post(format!("{}/revoke", server.base_url()))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[("token", token.expose().as_str())])
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }
}

/// olivia's account over Dovecot POP3S with the tokens of `file`, checked every second.
fn account(dir: &std::path::Path, server: &MockServer, file: &TokenFile) -> PolledAccount {
    let mut settings = ServerSettings::new(
        mail_testground::TLS_NAME,
        DOVECOT_POP3S.port,
        Security::ImplicitTls,
        MOCK_USER,
    );
    settings.trust_roots = TrustRoots::CaFile(mail_testground::ca_file());
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let check = pop3_oauth2_check(
        settings.clone(),
        oauth_client(server, file),
        file.clone(),
        deliver::shared(store),
        FetchOptions::new(RetentionPolicy::KeepForever),
    );
    PolledAccount::new(
        "olivia-oauth2",
        &settings.host,
        Duration::from_secs(1),
        check,
    )
}

/// Runs the poller until the first successful check, calls `revoke`, then expects the account
/// to be parked within a few checks; returns the reason. Afterwards the poller must end on
/// its own (its only account parked), with no further check.
async fn parked_after<F, Fut>(
    dir: &std::path::Path,
    server: &MockServer,
    file: &TokenFile,
    revoke: F,
) -> String
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let (tx, mut rx) = mpsc::channel(64);
    let config = PollerConfig::default()
        .with_backoff(Duration::from_millis(500), Duration::from_millis(500))
        .with_jitter(0.0);
    let mut poller = Poller::start(vec![account(dir, server, file)], config, tx);
    let mut revoke = Some(revoke);
    let reason = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rx.recv().await.expect("the poller runs") {
                PollEvent::Fetched { .. } => {
                    // The token worked through Dovecot's oauth2 passdb; now withdraw it.
                    if let Some(revoke) = revoke.take() {
                        revoke().await;
                    }
                }
                PollEvent::Parked { account, reason } => {
                    assert_eq!(account, "olivia-oauth2");
                    break reason;
                }
                PollEvent::Failed { failure, .. } => {
                    panic!("a revoked grant must park, not be retried: {failure:?}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("parked within 60 s");
    assert!(revoke.is_none(), "parked before the first successful check");
    // Parked means no further check: the account's task ends, and with it the poller.
    tokio::time::timeout(Duration::from_secs(5), poller.wait())
        .await
        .expect("the parked account's task ended");
    while let Ok(event) = rx.try_recv() {
        assert!(
            !matches!(event, PollEvent::Checking { .. } | PollEvent::Failed { .. }),
            "checked again after parking: {event:?}"
        );
    }
    reason
}

/// The access token has expired when the grant is revoked: the refresh before the next check
/// is answered `invalid_grant`, and the account is parked with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_parks_the_account_when_the_refresh_is_refused() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let server = authorization_server().await;
    let dir = scratch("refresh");
    let file = TokenFile::new(dir.join("tokens.json"));
    sign_in(&server, &file).await;
    let reason = parked_after(&dir, &server, &file, || async {
        revoke_grant(&server, &file).await;
        let mut stored = file.load().unwrap();
        stored.expires_at = Some(1);
        file.save(&stored).unwrap();
    })
    .await;
    assert!(
        reason.contains("invalid_grant") && reason.contains("sign in again"),
        "{reason}"
    );
    assert!(
        !reason.contains("POP3"),
        "no login with a token known to be dead: {reason}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Only the access token is revoked (the grant stands): the refused login is followed by a
/// refresh, the check backs off, and the next check logs in with the new token. Not parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_access_token_is_refreshed_and_the_next_check_succeeds() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let server = authorization_server().await;
    let dir = scratch("refreshed");
    let file = TokenFile::new(dir.join("tokens.json"));
    sign_in(&server, &file).await;
    let first_access = file.load().unwrap().access_token.unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let config = PollerConfig::default()
        .with_backoff(Duration::from_millis(500), Duration::from_millis(500))
        .with_jitter(0.0);
    let poller = Poller::start(vec![account(&dir, &server, &file)], config, tx);
    let mut fetched = 0;
    let mut refused = None;
    tokio::time::timeout(Duration::from_secs(60), async {
        while fetched < 2 {
            match rx.recv().await.expect("the poller runs") {
                PollEvent::Fetched { .. } => {
                    fetched += 1;
                    if fetched == 1 {
                        revoke(&server, [first_access.clone()]).await;
                    }
                }
                PollEvent::Failed { failure, .. } => {
                    assert_eq!(failure.retry, Retry::Backoff, "{failure:?}");
                    refused = Some(failure.reason);
                }
                PollEvent::Parked { reason, .. } => panic!("parked: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .expect("fetched again within 60 s");
    let refused = refused.expect("the revoked access token was refused once");
    assert!(
        refused.contains("refreshed for the next check"),
        "{refused}"
    );
    let now = file.load().unwrap().access_token.unwrap();
    assert_ne!(now.expose(), first_access.expose(), "a new access token");
    poller.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cached access token is still within its lifetime when the grant is revoked: Dovecot
/// asks the authorization server, which no longer knows the token, and refuses the login (as a
/// temporary failure: Dovecot 2.3 does not tell a refused token from a broken authorization
/// server). The check refreshes at once instead of presenting the dead token again until it
/// expires; the refresh is `invalid_grant`, and the account is parked with both reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_parks_the_account_when_dovecot_refuses_the_token() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let server = authorization_server().await;
    let dir = scratch("dovecot");
    let file = TokenFile::new(dir.join("tokens.json"));
    sign_in(&server, &file).await;
    let reason = parked_after(&dir, &server, &file, || revoke_grant(&server, &file)).await;
    assert!(
        reason.contains("invalid_grant") && reason.contains("sign in again"),
        "{reason}"
    );
    assert!(
        reason.contains("POP3") && reason.contains("OAUTHBEARER"),
        "the reason names the refused login too: {reason}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[IN-USE]` refuses the session, not the token: a token login refused with it keeps the
/// IN-USE rule and is not followed by a refresh (the token URL here is unreachable, so a
/// refresh would turn the outcome into a network failure).
#[tokio::test]
async fn an_in_use_refusal_of_a_token_login_triggers_no_refresh() {
    use mail_account::oauth::StoredTokens;
    use mail_account::poller::CheckOutcome;
    use mail_common::Secret;
    use mail_testground::hostile::{HostileServer, Pki, Step};
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK scripted\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nSASL OAUTHBEARER XOAUTH2\r\nUIDL\r\nRESP-CODES\r\n.\r\n"),
            Step::expect("AUTH"),
            Step::send("-ERR [IN-USE] another session holds the mailbox\r\n"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let dir = scratch("in-use");
    let file = TokenFile::new(dir.join("tokens.json"));
    let stored = StoredTokens {
        refresh_token: Some(Secret::new("refresh-token".into())),
        access_token: Some(Secret::new("access-token".into())),
        // Valid for ages: the check uses it as is.
        expires_at: Some(u64::from(u32::MAX) * 4),
    };
    file.save(&stored).unwrap();
    let credential = OAuth2Credential {
        client_id: Some(CLIENT.into()),
        client_secret: None,
        token_url: "http://127.0.0.1:1/token".into(),
        authorization_url: None,
        device_authorization_url: None,
        scopes: vec!["openid".into()],
        token_file: file.path().to_owned(),
    };
    let identity = ClientIdentity::resolve(None, None, Some(&credential)).unwrap();
    let client = OAuthClient::new(credential, identity, &TrustRoots::WebPki).unwrap();
    let (store, _) = Store::open(dir.join("Maildir"), dir.join("journal")).unwrap();
    let mut settings =
        ServerSettings::new("localhost", server.port(), Security::ImplicitTls, "someone");
    settings.trust_roots = TrustRoots::CaFile(pki.ca_file());
    let check = pop3_oauth2_check(
        settings,
        client,
        file.clone(),
        deliver::shared(store),
        FetchOptions::new(RetentionPolicy::KeepForever),
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let outcome = check(stop).await;
    server.finish().await;
    assert!(
        matches!(&outcome, CheckOutcome::Failed(f)
            if f.retry == Retry::InUse && !f.reason.contains("OAuth2")),
        "{outcome:?}"
    );
    assert_eq!(file.load().unwrap(), stored, "the tokens are untouched");
    let _ = std::fs::remove_dir_all(&dir);
}
