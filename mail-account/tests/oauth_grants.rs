//! OAuth 2.0 grants against a real authorization server on loopback (the `oauth-mock` crate,
//! in-process): device grant approved through the server's test hook, authorization code +
//! PKCE through the loopback redirect (and a forged `state` refused), refresh with rotation
//! persisted, a revoked grant reported as `invalid_grant`, the token file mode, and no token
//! in Debug output or errors.

use std::sync::Arc;
use std::time::Duration;

use mail_account::oauth::{
    ClientIdentity, LoopbackOptions, OAuth2Credential, OAuthClient, OAuthError, StoredTokens,
    TokenFile,
};
use mail_common::transport::TrustRoots;
use oauth_mock::MockServer;

const CLIENT: &str = "mail-rs-test";
const SECRET: &str = "test-secret";
const SCOPES: [&str; 2] = ["openid", "email"];

/// A plain-HTTP client for the loopback servers (the "browser" and the revocation call).
fn browser_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy()
}

fn browser() -> reqwest::Client {
    browser_builder().build().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn server(redirect: &str) -> Arc<MockServer> {
    Arc::new(
        MockServer::builder()
            .with_client(CLIENT, SECRET, [redirect], SCOPES)
            .spawn_on_free_port()
            .await
            .unwrap(),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oauth-grants-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn client(server: &MockServer, token_file: &std::path::Path) -> OAuthClient {
    let base = server.base_url();
    let credential = OAuth2Credential {
        client_id: Some(CLIENT.into()),
        client_secret: Some(mail_common::Secret::new(SECRET.into())),
        token_url: format!("{base}/token"),
        authorization_url: Some(format!("{base}/authorize")),
        device_authorization_url: Some(format!("{base}/device_authorization")),
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        token_file: token_file.to_owned(),
    };
    let identity = ClientIdentity::resolve(None, None, Some(&credential)).unwrap();
    OAuthClient::new(credential, identity, &TrustRoots::WebPki).unwrap()
}

async fn device_sign_in(server: &Arc<MockServer>, file: &TokenFile) -> StoredTokens {
    let oauth = client(server, file.path());
    let approver = Arc::clone(server);
    oauth
        .device_grant(
            file,
            move |prompt| {
                assert!(prompt.verification_uri.starts_with(approver.base_url()));
                let code = prompt.user_code.clone();
                // The person approves on another device: the server's test hook.
                tokio::spawn(async move { approver.approve_device_code(&code).await.unwrap() });
            },
            Duration::from_secs(120),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_grant_then_cached_token_then_rotated_refresh_then_revocation() {
    let server = server("http://127.0.0.1:1/unused").await;
    let dir = scratch("device");
    let file = TokenFile::new(dir.join("tokens.json"));
    let tokens = device_sign_in(&server, &file).await;
    let first_refresh = tokens.refresh_token.clone().unwrap();
    assert!(tokens.expires_at.is_some());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    }
    assert_eq!(file.load().unwrap(), tokens);
    // Debug output shows no token.
    let debug = format!("{tokens:?} {:?}", client(&server, file.path()));
    assert!(!debug.contains(first_refresh.expose()), "{debug}");
    assert!(!debug.contains(tokens.access_token.as_ref().unwrap().expose()));

    // A valid cached access token is used as is.
    let oauth = client(&server, file.path());
    let cached = oauth.access_token(&file).await.unwrap();
    assert_eq!(
        cached.expose(),
        tokens.access_token.as_ref().unwrap().expose()
    );

    // Expired: refreshed, and the rotated refresh token is in the file before the new access
    // token is handed out.
    let mut expired = file.load().unwrap();
    expired.expires_at = Some(1);
    file.save(&expired).unwrap();
    let fresh = oauth.access_token(&file).await.unwrap();
    assert_ne!(fresh.expose(), cached.expose());
    let after = file.load().unwrap();
    assert_eq!(
        after.access_token.as_ref().unwrap().expose(),
        fresh.expose()
    );
    let rotated = after.refresh_token.clone().unwrap();
    assert_ne!(
        rotated.expose(),
        first_refresh.expose(),
        "refresh token rotated"
    );

    // The old refresh token is dead at the server (rotation): using it is invalid_grant.
    let stale = StoredTokens {
        refresh_token: Some(first_refresh.clone()),
        ..StoredTokens::default()
    };
    let error = oauth.refresh(&file, &stale).await.unwrap_err();
    assert!(
        matches!(error, OAuthError::GrantInvalid { .. }),
        "{error:?}"
    );
    assert!(error.needs_new_sign_in());
    assert!(!error.to_string().contains(first_refresh.expose()));

    // Revoked at the server: the next refresh is invalid_grant, and the file keeps the token
    // (nothing better to put there).
    let revoke = browser()
        .post(format!("{}/revoke", server.base_url()))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("token", rotated.expose().as_str())])
        .send()
        .await
        .unwrap();
    assert!(revoke.status().is_success());
    let mut expired = file.load().unwrap();
    expired.expires_at = Some(1);
    file.save(&expired).unwrap();
    let error = oauth.access_token(&file).await.unwrap_err();
    assert!(
        matches!(error, OAuthError::GrantInvalid { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("sign in again"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_through_the_loopback_redirect() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let server = server(&redirect).await;
    let dir = scratch("pkce");
    let file = TokenFile::new(dir.join("tokens.json"));
    let oauth = client(&server, file.path());
    let loopback = LoopbackOptions {
        port,
        path: "/callback".into(),
    };
    let tokens = oauth
        .authorization_code_grant(
            &file,
            &loopback,
            |url| {
                assert!(url.contains("code_challenge_method=S256"), "{url}");
                assert!(url.contains("state="), "{url}");
                let url = url.to_owned();
                // The "browser": the server approves at once and redirects to the loopback.
                tokio::spawn(async move {
                    let browser = browser();
                    let page = browser.get(&url).send().await.unwrap();
                    assert!(page.status().is_success(), "{}", page.status());
                });
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert_eq!(file.load().unwrap(), tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_with_a_wrong_state_is_refused() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let server = server(&redirect).await;
    let dir = scratch("state");
    let file = TokenFile::new(dir.join("tokens.json"));
    let oauth = client(&server, file.path());
    let loopback = LoopbackOptions {
        port,
        path: "/callback".into(),
    };
    let result = oauth
        .authorization_code_grant(
            &file,
            &loopback,
            |url| {
                let url = url.to_owned();
                tokio::spawn(async move {
                    // Follow the server's redirect by hand, with the state swapped: a forged
                    // (or stale) authorization response.
                    let browser = browser_builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap();
                    let answer = browser.get(&url).send().await.unwrap();
                    let location = answer.headers()["location"].to_str().unwrap().to_owned();
                    let mut forged = reqwest::Url::parse(&location).unwrap();
                    let pairs: Vec<(String, String)> = forged
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k == "state" {
                                "forged".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    forged.query_pairs_mut().clear().extend_pairs(pairs);
                    let page = browser.get(forged).send().await.unwrap();
                    assert_eq!(page.status(), 400);
                });
            },
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(result.unwrap_err(), OAuthError::StateMismatch);
    assert!(!file.path().exists(), "nothing saved");
}

#[test]
fn a_missing_client_id_is_a_settings_error_that_says_what_to_do() {
    let credential = OAuth2Credential {
        client_id: None,
        client_secret: None,
        token_url: "https://login.example/token".into(),
        authorization_url: None,
        device_authorization_url: None,
        scopes: Vec::new(),
        token_file: "t.json".into(),
    };
    // The variable is not set by the test environment (no test sets it).
    if std::env::var_os(mail_account::oauth::CLIENT_ID_ENV).is_none() {
        let error = ClientIdentity::resolve(None, None, Some(&credential)).unwrap_err();
        assert!(error.is_settings());
        let text = error.to_string();
        assert!(
            text.contains("--client-id") && text.contains("README"),
            "{text}"
        );
    }
    let identity = ClientIdentity::resolve(Some("flag-id"), None, Some(&credential)).unwrap();
    assert_eq!(identity.client_id, "flag-id");
    // Plain http is refused except on loopback.
    let mut http = credential;
    http.token_url = "http://login.example/token".into();
    let error = OAuthClient::new(http, identity, &TrustRoots::WebPki).unwrap_err();
    assert!(error.is_settings(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_client_is_reported_with_advice() {
    let server = server("http://127.0.0.1:1/unused").await;
    let dir = scratch("unknown-client");
    let file = TokenFile::new(dir.join("tokens.json"));
    let base = server.base_url();
    let credential = OAuth2Credential {
        client_id: Some("not-registered".into()),
        client_secret: None,
        token_url: format!("{base}/token"),
        authorization_url: None,
        device_authorization_url: Some(format!("{base}/device_authorization")),
        scopes: vec!["openid".into()],
        token_file: file.path().to_owned(),
    };
    let identity = ClientIdentity::resolve(None, None, Some(&credential)).unwrap();
    let oauth = OAuthClient::new(credential, identity, &TrustRoots::WebPki).unwrap();
    let error = oauth
        .device_grant(&file, |_| panic!("no prompt"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OAuthError::Refused { code, .. } if code == "invalid_client"),
        "{error:?}"
    );
    assert!(error.advice().unwrap().contains("client id"), "{error:?}");
    assert!(!file.path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_users_of_an_expired_token_refresh_once() {
    let server = server("http://127.0.0.1:1/unused").await;
    let dir = scratch("concurrent");
    let file = TokenFile::new(dir.join("tokens.json"));
    device_sign_in(&server, &file).await;
    let mut expired = file.load().unwrap();
    expired.expires_at = Some(1);
    file.save(&expired).unwrap();
    // Two users at once (a fetch and a send): with rotation, a second refresh with the same
    // refresh token would be invalid_grant. Under the lock, one refreshes, the other reuses it.
    let (fetch, send) = (client(&server, file.path()), client(&server, file.path()));
    let (a, b) = tokio::join!(fetch.access_token(&file), send.access_token(&file));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expose(), b.expose());
    assert_ne!(
        file.load().unwrap().refresh_token.unwrap().expose(),
        expired.refresh_token.unwrap().expose()
    );
}
