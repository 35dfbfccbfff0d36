//! `mailctl send` with "Secure Password Authentication" (`--auth ntlm`, or `mechanism = "ntlm"`
//! in an account file) against the test ground's Postfix instance whose SASL is Cyrus SASL: a
//! real NTLMv2 verifier. It also offers SCRAM-SHA-256, which the automatic choice takes.
//!
//! User: `pat`, known only to that instance; every message carries a unique Message-ID and is
//! found again in pat's Maildir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_testground::{PAT, POSTFIX_NTLM_SUBMISSION, POSTFIX_NTLM_SUBMISSIONS};

fn mailctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailctl"))
}

fn run(command: &mut Command) -> Output {
    command.output().expect("mailctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailctl-ntlm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("mailctl: authentication error:") && last.contains("NTLM"),
        "{stderr}"
    );
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
