//! `mailctl send` and `mailctl fetch` with "Secure Password Authentication" (`--auth ntlm`, or
//! `mechanism = "ntlm"` in an account file) against the test ground's servers whose NTLM is
//! checked by Cyrus SASL, a real NTLMv2 verifier: the Postfix instance (it also offers
//! SCRAM-SHA-256, which the automatic choice takes) and the Dovecot POP3 instance (it also offers
//! PLAIN, which the automatic choice takes).
//!
//! Users: `pat` for sending, `ruby` for fetching, both known only to those instances; every
//! message carries a unique Message-ID and is found again in a Maildir.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{mailctl, run, scratch, text};
use mail_testground::{
    DOVECOT_NTLM_POP3, DOVECOT_NTLM_POP3S, PAT, POSTFIX_NTLM_SUBMISSION, POSTFIX_NTLM_SUBMISSIONS,
    RUBY,
};

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}.{}.{nanos}", std::process::id())
}

/// Writes a message with Message-ID `<id@testground.example>` into `dir`.
fn message_file(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.eml"));
    std::fs::write(
        &path,
        format!("Subject: NTLM {id}\nMessage-ID: <{id}@testground.example>\n\nsent with NTLM\n"),
    )
    .unwrap();
    path
}

/// Waits until the message with Message-ID `id` is in pat's Maildir.
fn wait_delivered(id: &str) {
    let maildir = mail_testground::maildir(&PAT);
    let needle = format!("<{id}@testground.example>");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = ["new", "cur"].iter().any(|sub| {
            std::fs::read_dir(maildir.join(sub)).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|m| m.contains(&needle)))
            })
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle} not delivered to {}",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mailctl -v send` over STARTTLS to the NTLM instance as pat with `password`, `--auth auth`.
fn send_with_flags(file: &Path, password: &str, auth: &str) -> Output {
    mail_testground::require(&[POSTFIX_NTLM_SUBMISSION]);
    run(mailctl()
        .args(["-v", "send", "--host", "127.0.0.1", "--tls", "starttls"])
        .args(["--port", &POSTFIX_NTLM_SUBMISSION.port.to_string()])
        .args(["--user", PAT.name, "--password-env", "TG_PASSWORD"])
        .args(["--auth", auth])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .args(["--from", PAT.address, "--to", PAT.address])
        .arg(file)
        .env("TG_PASSWORD", password)
        .env_remove("RUST_LOG"))
}

/// A refused NTLM login: exit status 4 and a last line that names the mechanism.
fn assert_ntlm_authentication_error(output: &Output) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("mailctl: authentication error:") && last.contains("NTLM"),
        "{stderr}"
    );
}

#[test]
fn send_with_auth_ntlm_flag() {
    let dir = scratch("flag");
    let id = unique("ntlm-flag");
    let output = send_with_flags(&message_file(&dir, &id), PAT.password, "ntlm");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("SMTP AUTH NTLM"), "{stderr}");
    wait_delivered(&id);

    // Without --auth the same server is used with SCRAM-SHA-256, not NTLM.
    let id = unique("ntlm-auto");
    let output = send_with_flags(&message_file(&dir, &id), PAT.password, "auto");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("SMTP AUTH SCRAM-SHA-256"), "{stderr}");
    assert!(!stderr.contains("AUTH NTLM"), "{stderr}");
    wait_delivered(&id);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_password_with_ntlm_is_an_authentication_error() {
    let dir = scratch("wrong");
    let output = send_with_flags(
        &message_file(&dir, &unique("ntlm-wrong")),
        "not-pat-pass",
        "ntlm",
    );
    assert_ntlm_authentication_error(&output);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_account_file_with_mechanism_ntlm() {
    mail_testground::require(&[POSTFIX_NTLM_SUBMISSIONS]);
    let dir = scratch("account");
    let account = dir.join("pat.toml");
    // The incoming server is never contacted by `send`; pat has no POP3 mailbox.
    std::fs::write(
        &account,
        format!(
            r#"address = "{address}"

[incoming]
host = "127.0.0.1"
port = 11995
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[outgoing]
host = "127.0.0.1"
port = {port}
security = "implicit-tls"
username = "{{local}}"
auth = "password-encrypted"
mechanism = "ntlm"

[credential]
env = "TG_PASSWORD"

[tls]
extra_ca_file = "{ca}"
"#,
            address = PAT.address,
            port = POSTFIX_NTLM_SUBMISSIONS.port,
            ca = mail_testground::ca_file().display()
        ),
    )
    .unwrap();
    let id = unique("ntlm-account");
    let output = run(mailctl()
        .args(["-v", "send", "-a"])
        .arg(&account)
        .args(["--to", PAT.address])
        .arg(message_file(&dir, &id))
        .env("TG_PASSWORD", PAT.password)
        .env_remove("RUST_LOG"));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("SMTP AUTH NTLM"), "{stderr}");
    wait_delivered(&id);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- fetch: POP3 AUTH NTLM (Dovecot + Cyrus SASL) ----

/// The fetch tests share ruby's mailbox, and Dovecot's NTLM helper serves one exchange at a
/// time (its protocol has no exchange id): they take turns.
static RUBY_LOCK: Mutex<()> = Mutex::new(());

/// Puts a message with Message-ID `<id@testground.example>` into ruby's Maildir on the server.
fn put_for_ruby(id: &str) {
    let maildir = mail_testground::maildir(&RUBY);
    let tmp = maildir.join("tmp").join(id);
    std::fs::write(
        &tmp,
        format!(
            "From: {addr}\nTo: {addr}\nSubject: NTLM fetch {id}\nMessage-ID: <{id}@testground.example>\n\nfetched with NTLM\n",
            addr = RUBY.address
        ),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, maildir.join("new").join(id)).unwrap();
}

/// Does the local Maildir `dir` hold the message with Message-ID `id`?
fn fetched(dir: &Path, id: &str) -> bool {
    let needle = format!("<{id}@testground.example>");
    ["new", "cur"].iter().any(|sub| {
        std::fs::read_dir(dir.join(sub)).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|m| m.contains(&needle)))
        })
    })
}

/// `mailctl -v fetch --delete` over implicit TLS from the NTLM instance as ruby with
/// `password`, `--auth auth`, into `dir`/Maildir.
fn fetch_with_flags(dir: &Path, password: &str, auth: &str) -> Output {
    mail_testground::require(&[DOVECOT_NTLM_POP3S]);
    run(mailctl()
        .args(["-v", "fetch", "--host", "127.0.0.1", "--tls", "implicit"])
        .args(["--port", &DOVECOT_NTLM_POP3S.port.to_string()])
        .args(["--user", RUBY.name, "--password-env", "TG_PASSWORD"])
        .args(["--auth", auth, "--delete"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .arg("--maildir")
        .arg(dir.join("Maildir"))
        .arg("--state")
        .arg(dir.join("state"))
        .env("TG_PASSWORD", password)
        .env_remove("RUST_LOG"))
}

#[test]
fn fetch_with_auth_ntlm_flag() {
    let _turn = RUBY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("fetch-flag");
    let id = unique("ntlm-fetch");
    put_for_ruby(&id);
    let output = fetch_with_flags(&dir, RUBY.password, "ntlm");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("POP3 login with NTLM"), "{stderr}");
    assert!(fetched(&dir.join("Maildir"), &id), "{stderr}");

    // Without --auth the same server is used with PLAIN, not NTLM.
    let id = unique("ntlm-fetch-auto");
    put_for_ruby(&id);
    let output = fetch_with_flags(&dir, RUBY.password, "auto");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("POP3 login with PLAIN"), "{stderr}");
    assert!(!stderr.contains("NTLM"), "{stderr}");
    assert!(fetched(&dir.join("Maildir"), &id), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_with_a_wrong_password_and_ntlm_is_an_authentication_error() {
    let _turn = RUBY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("fetch-wrong");
    let output = fetch_with_flags(&dir, "not-ruby-pass", "ntlm");
    assert_ntlm_authentication_error(&output);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_with_an_account_file_with_mechanism_ntlm() {
    mail_testground::require(&[DOVECOT_NTLM_POP3]);
    let _turn = RUBY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("fetch-account");
    let account = dir.join("ruby.toml");
    // The outgoing server is never contacted by `fetch`.
    std::fs::write(
        &account,
        format!(
            r#"address = "{address}"

[incoming]
host = "127.0.0.1"
port = {port}
security = "starttls"
username = "{{local}}"
auth = "password-encrypted"
mechanism = "ntlm"

[outgoing]
host = "127.0.0.1"
port = 16465
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[credential]
env = "TG_PASSWORD"

[tls]
extra_ca_file = "{ca}"
"#,
            address = RUBY.address,
            port = DOVECOT_NTLM_POP3.port,
            ca = mail_testground::ca_file().display()
        ),
    )
    .unwrap();
    let id = unique("ntlm-fetch-account");
    put_for_ruby(&id);
    let output = run(mailctl()
        .args(["-v", "fetch", "--delete", "-a"])
        .arg(&account)
        .arg("--maildir")
        .arg(dir.join("Maildir"))
        .arg("--state")
        .arg(dir.join("state"))
        .env("TG_PASSWORD", RUBY.password)
        .env_remove("RUST_LOG"));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("POP3 login with NTLM"), "{stderr}");
    assert!(fetched(&dir.join("Maildir"), &id), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
