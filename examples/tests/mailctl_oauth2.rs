//! `mailctl` and OAuth 2.0: the provider data that offline discovery reports.

mod common;

use common::{mailctl, scratch};
use std::process::{Command, Output};

fn discover(address: &str) -> (String, serde_json::Value) {
    let run = |json: bool| -> Output {
        let mut command = mailctl();
        command.args(["discover", address, "--offline"]);
        if json {
            command.arg("--json");
        }
        command.output().expect("mailctl runs")
    };
    let text = run(false);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let json = run(true);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    (
        String::from_utf8_lossy(&text.stdout).into_owned(),
        serde_json::from_slice(&json.stdout).unwrap(),
    )
}

#[test]
fn offline_discover_shows_microsoft_oauth2_for_hotmail_and_outlook_jp() {
    for address in ["someone@hotmail.com", "taro@outlook.jp"] {
        let (text, json) = discover(address);
        assert!(
            text.contains(
                "oauth2:   issuer login.microsoftonline.com <- bundled curated entry outlook.com"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "oauth2:   device authorization https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
            ),
            "{text}"
        );
        assert!(text.contains("oauth2:   grant device-code"), "{text}");
        // The hint points at the way to get a token.
        assert!(text.contains("mailctl login ADDRESS"), "{text}");
        let oauth = &json["oauth2"]["value"];
        assert_eq!(
            oauth["token_url"],
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            oauth["scopes"]["pop3"],
            serde_json::json!([
                "https://outlook.office.com/POP.AccessAsUser.All",
                "offline_access"
            ])
        );
        assert_eq!(
            oauth["scopes"]["smtp"],
            serde_json::json!(["https://outlook.office.com/SMTP.Send", "offline_access"])
        );
        assert_eq!(oauth["grant"], "device-code");
        let source = &json["oauth2"]["source"];
        assert_eq!(source["kind"], "bundled-db", "{source}");
        assert_eq!(source["provider"], "outlook.com", "{source}");
    }
}

#[test]
fn offline_discover_shows_google_oauth2_for_gmail() {
    let (text, json) = discover("taro@gmail.com");
    assert!(
        text.contains("oauth2:   issuer accounts.google.com <- bundled curated entry gmail.com"),
        "{text}"
    );
    assert!(
        text.contains("oauth2:   POP3 scopes https://mail.google.com/"),
        "{text}"
    );
    assert!(
        text.contains("oauth2:   grant authorization-code-pkce"),
        "{text}"
    );
    let oauth = &json["oauth2"]["value"];
    assert_eq!(oauth["device_authorization_url"], serde_json::Value::Null);
    assert_eq!(
        oauth["authorization_url"],
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(oauth["grant"], "authorization-code-pkce");
}

#[test]
fn offline_discover_shows_ispdb_oauth2_blocks_and_nothing_for_password_providers() {
    let (text, json) = discover("someone@yandex.ru");
    assert!(
        text.contains("oauth2:   issuer oauth.yandex.com <- bundled ISPDB entry yandex.ru.xml"),
        "{text}"
    );
    assert_eq!(
        json["oauth2"]["value"]["scopes"]["smtp"],
        serde_json::json!(["mail:imap_full", "mail:smtp"])
    );
    let (text, json) = discover("frank@testground.example");
    assert!(!text.contains("oauth2:"), "{text}");
    assert_eq!(json["oauth2"], serde_json::Value::Null);
}

// ---- mailctl login against a real authorization server on loopback (oauth-mock) ----

const CLIENT: &str = "mailctl-test";
const SECRET: &str = "mailctl-test-secret";

struct Mock {
    runtime: tokio::runtime::Runtime,
    server: std::sync::Arc<oauth_mock::MockServer>,
}

impl Mock {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(async {
            oauth_mock::MockServer::builder()
                .with_client(
                    CLIENT,
                    SECRET,
                    ["http://127.0.0.1:1/unused"],
                    ["openid", "email"],
                )
                .spawn_on_free_port()
                .await
                .unwrap()
        });
        Self {
            runtime,
            server: std::sync::Arc::new(server),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    fn approve(&self, user_code: &str) {
        self.runtime
            .block_on(self.server.approve_device_code(user_code))
            .unwrap();
    }

    fn revoke(&self, token: &str) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = self.url("/revoke");
        let status = self.runtime.block_on(async move {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(url)
                .basic_auth(CLIENT, Some(SECRET))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(status.is_success(), "{status}");
    }
}

fn tokens(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn expire(path: &std::path::Path) {
    let mut value = tokens(path);
    value["expires_at"] = serde_json::json!(1);
    std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_with_the_device_grant_writes_an_oauth2_account_then_refresh_rotates_and_revocation_exits_4()
 {
    use std::io::BufRead as _;
    let mock = Mock::start();
    let dir = scratch("device");
    let account = dir.join("olivia.toml");
    let token_file = dir.join("olivia.toml.tokens.json");
    let mut child = mailctl()
        .args([
            "login",
            "olivia@testground.example",
            "--offline",
            "--grant",
            "device",
        ])
        .arg("--account")
        .arg(&account)
        .args(["--token-url", &mock.url("/token")])
        .args(["--device-url", &mock.url("/device_authorization")])
        .args(["--scope", "openid", "--scope", "email"])
        .args([
            "--client-id",
            CLIENT,
            "--client-secret-env",
            "TEST_CLIENT_SECRET",
        ])
        .args(["--timeout", "120"])
        .env("TEST_CLIENT_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut prompt = String::new();
    stderr.read_line(&mut prompt).unwrap();
    let code = prompt
        .split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {prompt:?}"))
        .to_owned();
    assert!(prompt.contains(&mock.url("/device")), "{prompt}");
    // The person approves on another device: the server's test hook.
    mock.approve(&code);
    let output = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(output.status.success(), "{prompt}{rest}");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("credential oauth2"), "{stdout}");

    let text = std::fs::read_to_string(&account).unwrap();
    assert!(text.contains("[credential.oauth2]"), "{text}");
    assert!(
        text.contains("auth = \"o-auth2\"") || text.contains("oauth2"),
        "{text}"
    );
    let first = tokens(&token_file);
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let access = first["access_token"].as_str().unwrap().to_owned();
    for shown in [&stdout, &prompt, &rest, &text] {
        assert!(!shown.contains(&refresh) && !shown.contains(&access));
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&account), 0o600);
        assert_eq!(mode(&token_file), 0o600);
    }

    // Expired access token: the next use refreshes, and the rotated refresh token is in the
    // file. (The shared test ground's Dovecot does not validate tokens, so the login itself
    // is not asserted here; TRACE output must not show a token either way.)
    expire(&token_file);
    let output = mailctl()
        .args(["-vvv", "verify", "--account"])
        .arg(&account)
        .args(["--wait", "5"])
        .output()
        .unwrap();
    let second = tokens(&token_file);
    let rotated = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, refresh, "refresh token rotated and persisted");
    assert!(second["expires_at"].as_u64().unwrap() > 1);
    let trace = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        trace.contains("refreshing the OAuth2 access token"),
        "{trace}"
    );
    let new_access = second["access_token"].as_str().unwrap();
    for token in [&refresh, &rotated, &access, &new_access.to_owned()] {
        assert!(
            !trace.contains(token.as_str()),
            "a token in the TRACE output"
        );
    }

    // Revoked grant: invalid_grant is an authentication failure (exit 4) with advice.
    mock.revoke(&rotated);
    expire(&token_file);
    let output = mailctl()
        .args(["verify", "--account"])
        .arg(&account)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("invalid_grant") && stderr.contains("mailctl login"),
        "{stderr}"
    );
}

#[test]
fn login_without_a_client_id_is_a_settings_error() {
    let dir = scratch("no-client");
    let output = mailctl()
        .args(["login", "someone@hotmail.com", "--offline", "--account"])
        .arg(dir.join("a.toml"))
        .env_remove("MAIL_OAUTH2_CLIENT_ID")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains("--client-id") && stderr.contains("README"),
        "{stderr}"
    );
    assert!(!dir.join("a.toml").exists());
}

// ---- end to end through the test ground: Dovecot's oauth2 passdb validates the tokens ----

/// The fixed loopback port Dovecot's oauth2 passdb calls (testground/conf/
/// dovecot-oauth2-passdb.conf.ext); only this test binary uses it, one test at a time (hold
/// [`dovecot_port`]'s lock), and those tests share olivia's mailbox.
const DOVECOT_OAUTH_PORT: u16 = 18080;

/// Serialises the tests that forward [`DOVECOT_OAUTH_PORT`] and use olivia's mailbox.
fn dovecot_port() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// The one user oauth-mock 1.1 issues tokens for; the test ground maps it to olivia.
const MOCK_USER: &str = "mock.user@example.com";

impl Mock {
    /// Forwards 127.0.0.1:`port` to the mock (whose own port is random), so Dovecot can use a
    /// fixed URL. Plain TCP relaying: the mock answers every request itself.
    fn forward(&self, port: u16) {
        let target = self
            .server
            .base_url()
            .trim_start_matches("http://")
            .to_owned();
        // Waits while a test of another binary (mail-account's poller_oauth2) holds the port.
        assert_eq!(port, mail_testground::OAUTH2_PASSDB_PORT);
        let listener =
            mail_testground::take_oauth2_passdb_port(std::time::Duration::from_secs(300));
        listener.set_nonblocking(true).unwrap();
        let _guard = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        self.runtime.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn device_login(mock: &Mock, account: &std::path::Path, extra: &[&str]) -> String {
    device_login_to(mock, &["--account".as_ref(), account.as_os_str()], extra)
}

/// `mailctl login` with the device grant, writing where `target` says (`--account FILE` or
/// `--save NAME ...`).
fn device_login_to(mock: &Mock, target: &[&std::ffi::OsStr], extra: &[&str]) -> String {
    use std::io::BufRead as _;
    let mut child = mailctl()
        .args([
            "login",
            "olivia@testground.example",
            "--offline",
            "--grant",
            "device",
        ])
        .args(target)
        .args(["--token-url", &mock.url("/token")])
        .args(["--device-url", &mock.url("/device_authorization")])
        .args(["--scope", "openid", "--scope", "email"])
        .args([
            "--client-id",
            CLIENT,
            "--client-secret-env",
            "TEST_CLIENT_SECRET",
        ])
        .args(extra)
        .env("TEST_CLIENT_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut prompt = String::new();
    stderr.read_line(&mut prompt).unwrap();
    let code = prompt
        .split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {prompt:?}"))
        .to_owned();
    mock.approve(&code);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{prompt}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn device_login_then_fetch_and_send_with_the_token_through_dovecot_and_postfix() {
    let _port = dovecot_port();
    let mock = Mock::start();
    mock.forward(DOVECOT_OAUTH_PORT);
    mail_testground::reset_mailboxes(&[mail_testground::OLIVIA]);
    let dir = scratch("e2e");
    let account = dir.join("olivia.toml");
    let token_file = dir.join("olivia.toml.tokens.json");
    device_login(
        &mock,
        &account,
        &["--ca-file", mail_testground::ca_file().to_str().unwrap()],
    );
    // The test ground's token owner is the mock's one user: the login name must be its address
    // (Dovecot compares it with the token's email, then opens olivia's mailbox).
    let text = std::fs::read_to_string(&account).unwrap();
    assert_eq!(text.matches("auth = \"oauth2\"").count(), 2, "{text}");
    std::fs::write(
        &account,
        text.replace(
            "username = \"{local}\"",
            &format!("username = \"{MOCK_USER}\""),
        ),
    )
    .unwrap();

    // Send over SMTP (Postfix submissions, SASL through Dovecot) with the token.
    let subject = format!("oauth2 e2e {}", std::process::id());
    let sent = run_ok(
        mailctl()
            .args(["-vvv", "send", "--account"])
            .arg(&account)
            .args(["--from", "olivia@testground.example"])
            .args(["--to", "olivia@testground.example"])
            .args(["--subject", &subject, "--body", "sent with an OAuth2 token"]),
    );
    let access = tokens(&token_file)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let trace = String::from_utf8_lossy(&sent.stderr);
    assert!(
        trace.contains("AUTH OAUTHBEARER") || trace.contains("OAUTHBEARER"),
        "{trace}"
    );
    assert!(
        !trace.contains(&access),
        "the access token in the TRACE output of send"
    );
    // Fetch over POP3 (Dovecot) with the token, until the message is delivered.
    let maildir = dir.join("Maildir");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        run_ok(
            mailctl()
                .args(["fetch", "--account"])
                .arg(&account)
                .arg("--maildir")
                .arg(&maildir),
        );
        let found = ["new", "cur"].iter().any(|sub| {
            std::fs::read_dir(maildir.join(sub)).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|m| m.contains(&subject)))
            })
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Expired access token: refreshed transparently, rotated refresh token persisted, and the
    // fetch works with the new token.
    let before = tokens(&token_file)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    expire(&token_file);
    let output = run_ok(
        mailctl()
            .args(["-vvv", "fetch", "--account"])
            .arg(&account)
            .arg("--maildir")
            .arg(&maildir),
    );
    let after = tokens(&token_file);
    let rotated = after["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, before);
    let trace = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        trace.contains("refreshing the OAuth2 access token"),
        "{trace}"
    );
    for token in [
        &before,
        &rotated,
        &after["access_token"].as_str().unwrap().to_owned(),
    ] {
        assert!(
            !trace.contains(token.as_str()),
            "a token in the TRACE output"
        );
    }

    // A valid token for another login name: Dovecot answers with its JSON error challenge, the
    // client answers it, and mailctl turns the refusal into advice (exit 4), over POP3 and SMTP.
    let mismatched = dir.join("mismatched.toml");
    std::fs::write(
        &mismatched,
        std::fs::read_to_string(&account).unwrap().replace(
            &format!("username = \"{MOCK_USER}\""),
            "username = \"olivia\"",
        ),
    )
    .unwrap();
    let fetch = mailctl()
        .args(["fetch", "--account"])
        .arg(&mismatched)
        .arg("--maildir")
        .arg(&maildir)
        .output()
        .unwrap();
    let send = mailctl()
        .args(["send", "--account"])
        .arg(&mismatched)
        .args(["--from", "olivia@testground.example"])
        .args(["--to", "olivia@testground.example"])
        .args(["--subject", "never sent", "--body", "x"])
        .output()
        .unwrap();
    for output in [fetch, send] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains("the server refused the OAuth2 token: check that POP/SMTP access is")
                && stderr.contains("mailctl login"),
            "{stderr}"
        );
    }

    // A 4 KiB token through Postfix's submission port: two-step AUTH (AUTH alone, then the
    // response after the empty 334). Postfix's 2048-byte line limit would truncate it inline
    // ("Invalid base64 data in initial response"); two-step, it reaches Dovecot, which asks the
    // authorization server and refuses the unknown token.
    let mut long = tokens(&token_file);
    long["access_token"] = serde_json::json!(format!("ya29.{}", "T".repeat(4091)));
    long["expires_at"] = serde_json::json!(4_000_000_000_u64);
    std::fs::write(&token_file, serde_json::to_vec(&long).unwrap()).unwrap();
    let output = mailctl()
        .args(["send", "--account"])
        .arg(&account)
        .args(["--from", "olivia@testground.example"])
        .args(["--to", "olivia@testground.example"])
        .args(["--subject", "never sent", "--body", "x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("Invalid base64"), "{stderr}");
    assert!(stderr.contains("AUTH OAUTHBEARER failed"), "{stderr}");
    assert!(
        !stderr.contains("TTTTTTTT"),
        "the token in an error message"
    );
}

/// `mailctl login --grant browser`: the printed address, opened by the test as a browser
/// would; `forge_state` swaps the `state` of the redirect back to mailctl.
fn browser_login(forge_state: bool) -> (Output, std::path::PathBuf) {
    use std::io::BufRead as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        oauth_mock::MockServer::builder()
            .with_client(CLIENT, SECRET, [redirect.as_str()], ["openid", "email"])
            .spawn_on_free_port()
            .await
            .unwrap()
    });
    let dir = scratch(if forge_state {
        "browser-forged"
    } else {
        "browser"
    });
    let account = dir.join("a.toml");
    let mut child = mailctl()
        .args([
            "login",
            "olivia@testground.example",
            "--offline",
            "--grant",
            "browser",
        ])
        .arg("--account")
        .arg(&account)
        .args(["--token-url", &format!("{}/token", server.base_url())])
        .args([
            "--authorization-url",
            &format!("{}/authorize", server.base_url()),
        ])
        .args(["--scope", "openid", "--scope", "email", "--no-browser"])
        .args([
            "--redirect-port",
            &port.to_string(),
            "--redirect-path",
            "/callback",
        ])
        .args([
            "--client-id",
            CLIENT,
            "--client-secret-env",
            "TEST_CLIENT_SECRET",
        ])
        .args(["--timeout", "60"])
        .env("TEST_CLIENT_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut url = String::new();
    while !url.starts_with("http") {
        url.clear();
        assert!(
            stderr.read_line(&mut url).unwrap() > 0,
            "no address printed"
        );
    }
    let url = url.trim().to_owned();
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("state="),
        "{url}"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async move {
        let browser = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let answer = browser.get(&url).send().await.unwrap();
        let mut location =
            reqwest::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
        if forge_state {
            let pairs: Vec<(String, String)> = location
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
            location.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let _ = browser.get(location).send().await;
    });
    let mut output = child.wait_with_output().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stderr, &mut rest).unwrap();
    output.stderr = rest;
    drop(server);
    (output, account)
}

#[test]
fn login_with_the_browser_grant_pkce_and_loopback_redirect_and_a_forged_state_refused() {
    let (output, account) = browser_login(false);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        std::fs::read_to_string(&account)
            .unwrap()
            .contains("[credential.oauth2]")
    );

    let (output, account) = browser_login(true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("state does not match"), "{stderr}");
    assert!(!account.exists());
}

/// Repeats `mailctl fetch ARGS` into `maildir` until a message with `subject` is there.
fn fetch_until(args: &[&std::ffi::OsStr], maildir: &std::path::Path, subject: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        run_ok(
            mailctl()
                .arg("fetch")
                .args(args)
                .arg("--maildir")
                .arg(maildir),
        );
        let found = ["new", "cur"].iter().any(|sub| {
            std::fs::read_dir(maildir.join(sub)).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|m| m.contains(subject)))
            })
        });
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn login_save_writes_a_named_account_then_send_and_fetch_with_dash_a() {
    let _port = dovecot_port();
    let mock = Mock::start();
    mock.forward(DOVECOT_OAUTH_PORT);
    mail_testground::reset_mailboxes(&[mail_testground::OLIVIA]);
    let dir = scratch("save");
    let config = dir.join("xdg/mailctl/accounts.toml");
    let token_file = dir.join("xdg/mailctl/olivia.tokens.json");
    let with_config = |command: &mut Command| {
        command
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .env_remove("MAILCTL_CONFIG");
    };
    // Saved with --config at the XDG location (its directory created), which the commands
    // below then find without --config.
    let stdout = device_login_to(
        &mock,
        &[
            "--save".as_ref(),
            "olivia".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &["--ca-file", mail_testground::ca_file().to_str().unwrap()],
    );
    assert!(
        stdout.contains("account olivia in") && stdout.contains("olivia.tokens.json"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("default = \"olivia\"\n"), "{text}");
    assert!(
        text.contains("[accounts.olivia.credential.oauth2]"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "token-file = {:?}",
            token_file.display().to_string()
        )),
        "{text}"
    );
    let saved = tokens(&token_file);
    for token in ["access_token", "refresh_token"] {
        assert!(
            !text.contains(saved[token].as_str().unwrap()),
            "{token} in {text}"
        );
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&config), 0o600);
        assert_eq!(mode(&token_file), 0o600);
    }
    // The test ground's token owner is the mock's one user (see the test above).
    std::fs::write(
        &config,
        text.replace(
            "username = \"{local}\"",
            &format!("username = \"{MOCK_USER}\""),
        ),
    )
    .unwrap();
    // A second login under the same name is refused before any sign-in.
    let output = mailctl()
        .args([
            "login",
            "olivia@testground.example",
            "--offline",
            "--save",
            "olivia",
        ])
        .arg("--config")
        .arg(&config)
        .args(["--client-id", CLIENT])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains("already has an account \"olivia\""),
        "{stderr}"
    );
    // A client secret is not appended to a file others can read: refused before the sign-in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let output = mailctl()
            .args([
                "login",
                "olivia@testground.example",
                "--offline",
                "--save",
                "other",
            ])
            .arg("--config")
            .arg(&config)
            .args([
                "--client-id",
                CLIENT,
                "--client-secret-env",
                "TEST_CLIENT_SECRET",
            ])
            .env("TEST_CLIENT_SECRET", SECRET)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(10), "{stderr}");
        assert!(stderr.contains("readable by others"), "{stderr}");
        assert!(
            !std::fs::read_to_string(&config)
                .unwrap()
                .contains("[accounts.other")
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // mailctl accounts lists it (found the XDG way), with where its token comes from.
    let mut accounts = mailctl();
    with_config(&mut accounts);
    let output = run_ok(accounts.arg("accounts"));
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.contains("* olivia       olivia@testground.example")
            && listed.contains("password: oauth2, tokens in")
            && listed.contains("olivia.tokens.json"),
        "{listed}"
    );

    // Send (Postfix) and fetch (Dovecot) with -a NAME and the token.
    let subject = format!("oauth2 saved account {}", std::process::id());
    let mut send = mailctl();
    with_config(&mut send);
    let sent = run_ok(
        send.args(["-vvv", "send", "-a", "olivia"])
            .args(["--to", "olivia@testground.example"])
            .args([
                "--subject",
                &subject,
                "--body",
                "sent from a saved OAuth2 account",
            ]),
    );
    let trace = String::from_utf8_lossy(&sent.stderr);
    assert!(trace.contains("OAUTHBEARER"), "{trace}");
    assert!(!trace.contains(tokens(&token_file)["access_token"].as_str().unwrap()));
    fetch_until(
        &[
            "-a".as_ref(),
            "olivia".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &dir.join("Maildir"),
        &subject,
    );
}

/// `mailctl watch` with an OAuth2 account: it checks olivia's mailbox with the token through
/// Dovecot's oauth2 passdb; once the grant is revoked (both tokens, the access token still
/// within its recorded lifetime) the refused login is followed by a refresh, which is
/// `invalid_grant`, and the account is parked with that reason instead of being checked again
/// with the dead token. With no account left, watch ends on its own (a settings failure, 10).
#[test]
fn watch_parks_an_oauth2_account_whose_grant_is_revoked() {
    use std::io::BufRead as _;
    let _port = dovecot_port();
    let mock = Mock::start();
    mock.forward(DOVECOT_OAUTH_PORT);
    let dir = scratch("watch");
    let config = dir.join("accounts.toml");
    let token_file = dir.join("olivia.tokens.json");
    device_login_to(
        &mock,
        &[
            "--save".as_ref(),
            "olivia".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &["--ca-file", mail_testground::ca_file().to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "username = \"{local}\"",
            &format!("username = \"{MOCK_USER}\""),
        ),
    )
    .unwrap();
    let mut child = mailctl()
        .args(["watch", "--interval", "1", "--config"])
        .arg(&config)
        .arg("--maildir")
        .arg(dir.join("Maildir"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watch that never ends would hang the read below: kill it after two minutes.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next_line = || {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "watch ended early");
        line
    };
    // The first check logs in with the token.
    loop {
        let line = next_line();
        assert!(!line.contains("not checked again"), "{line}");
        if line.starts_with("olivia: ") && line.contains(" new (") {
            break;
        }
    }
    let saved = tokens(&token_file);
    for token in ["access_token", "refresh_token"] {
        mock.revoke(saved[token].as_str().unwrap());
    }
    let parked = loop {
        let line = next_line();
        if line.contains("not checked again") {
            break line;
        }
    };
    assert!(
        parked.starts_with("olivia: ") && parked.contains("invalid_grant"),
        "{parked}"
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("nothing left to watch"), "{stderr}");
    let access = saved["access_token"].as_str().unwrap();
    assert!(!stderr.contains(access) && !parked.contains(access));
}
