//! `mailctl` used as a new user would in the first week (issue 15): the fetch state follows
//! the mailbox (not the port, the TLS mode, or the host name inside an account file), mail
//! is created private whatever the umask, a fetch that leaves a message behind exits non-zero,
//! a closed pipe ends output quietly, messages are for people (no Rust `Debug`), `--auth none`
//! needs no `--user`, and discovery reports the provider's IMAP server as data.
//!
//! Users: `kate` (100 messages at reset; only read here, every fetch keeps the messages on
//! the server). Scripted servers stand in where no real server behaves as needed (a refused
//! `RETR`, SMTP without authentication).

mod common;

use common::{mailctl, mailctl_async, maildir_ids, scratch, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, Once};

use mail_testground::KATE;
use mail_testground::hostile::{HostileServer, Pki, Step};

static KATE_LOCK: Mutex<()> = Mutex::new(());
static RESET: Once = Once::new();

/// Serialises the tests that read kate's mailbox, after one reset.
fn kate() -> std::sync::MutexGuard<'static, ()> {
    let guard = KATE_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    RESET.call_once(|| mail_testground::reset_mailboxes(&[KATE]));
    guard
}

/// `fetch --keep` of kate with flags.
fn fetch_flags(maildir: &Path, host: &str, port: u16, tls: &str, extra: &[&str]) -> Output {
    mailctl()
        .args([
            "fetch",
            "--keep",
            "--host",
            host,
            "--port",
            &port.to_string(),
        ])
        .args([
            "--tls",
            tls,
            "--user",
            KATE.name,
            "--password-env",
            "TG_PASSWORD",
        ])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .arg("--maildir")
        .arg(maildir)
        .args(extra)
        .env("TG_PASSWORD", KATE.password)
        .output()
        .expect("mailctl runs")
}

/// An account file for kate with this incoming server.
fn account_file(path: &Path, host: &str, port: u16, security: &str) {
    let toml = format!(
        r#"address = "{address}"

[incoming]
host = "{host}"
port = {port}
security = "{security}"
username = "{{local}}"
auth = "automatic"

[outgoing]
host = "{host}"
port = 10465
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[credential]
env = "TG_PASSWORD"

[tls]
extra_ca_file = "{ca}"
"#,
        address = KATE.address,
        ca = mail_testground::ca_file().display(),
    );
    std::fs::write(path, toml).unwrap();
}

fn fetch_account(account: &Path, maildir: &Path) -> Output {
    mailctl()
        .args(["fetch", "--keep", "--account"])
        .arg(account)
        .arg("--maildir")
        .arg(maildir)
        .env("TG_PASSWORD", KATE.password)
        .output()
        .expect("mailctl runs")
}

/// `fetched N messages ...` -> N, asserting success.
fn fetched(output: &Output) -> usize {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "status {:?}, stderr {}",
        output.status,
        text(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fetched "))
        .unwrap_or_else(|| panic!("no summary in {stdout:?}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Message files in new/ and cur/.
fn messages(maildir: &Path) -> Vec<PathBuf> {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect()
}

fn state_files(maildir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(maildir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with(".mailctl-state-") && Path::new(n).extension().is_none_or(|e| e != "lock")
        })
        .collect();
    names.sort();
    names
}

/// Item 1: POP3S, then STLS on another port, then (in an account file) another host name:
/// the same 100 messages, each once.
#[test]
fn the_fetch_state_follows_the_mailbox_not_the_connection() {
    let _kate = kate();
    let dir = scratch("state");

    // With flags: the port and TLS mode change, the state stays.
    let maildir = dir.join("flags");
    assert_eq!(
        fetched(&fetch_flags(&maildir, "127.0.0.1", 11995, "implicit", &[])),
        100
    );
    assert_eq!(
        fetched(&fetch_flags(&maildir, "127.0.0.1", 11110, "starttls", &[])),
        0,
        "STLS on 110 is the same mailbox"
    );
    assert_eq!(messages(&maildir).len(), 100);
    assert_eq!(state_files(&maildir), [".mailctl-state-kate@127.0.0.1"]);

    // A state file of an earlier version (named after the port too) is taken over.
    std::fs::rename(
        maildir.join(".mailctl-state-kate@127.0.0.1"),
        maildir.join(".mailctl-state-kate@127.0.0.1-11995"),
    )
    .unwrap();
    let _ = std::fs::remove_file(maildir.join(".mailctl-state-kate@127.0.0.1.lock"));
    assert_eq!(
        fetched(&fetch_flags(&maildir, "127.0.0.1", 11110, "starttls", &[])),
        0,
        "the old state file's messages are known"
    );
    assert_eq!(state_files(&maildir), [".mailctl-state-kate@127.0.0.1"]);

    // Another host name with flags is another server: said on stderr, naming the other state.
    let output = fetch_flags(
        &maildir,
        "localhost",
        11995,
        "implicit",
        &["--max-messages", "0"],
    );
    assert_eq!(fetched(&output), 0);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains(".mailctl-state-kate@127.0.0.1"),
        "{stderr}"
    );
    assert_eq!(messages(&maildir).len(), 100);

    // With an account file: port, TLS mode and host name change, the account stays.
    let maildir = dir.join("account");
    let account = dir.join("kate.toml");
    account_file(&account, "127.0.0.1", 11995, "implicit-tls");
    assert_eq!(fetched(&fetch_account(&account, &maildir)), 100);
    account_file(&account, "127.0.0.1", 11110, "starttls");
    assert_eq!(fetched(&fetch_account(&account, &maildir)), 0);
    account_file(&account, "localhost", 11110, "starttls");
    assert_eq!(fetched(&fetch_account(&account, &maildir)), 0);
    let ids = maildir_ids(&maildir);
    assert_eq!(messages(&maildir).len(), 100);
    assert_eq!(ids.len(), 100);
    assert!(ids.values().all(|&n| n == 1));
    let _ = std::fs::remove_dir_all(dir);
}

/// Item 2: mail is private with the usual umask 022; an existing Maildir keeps its modes.
#[cfg(unix)]
#[test]
fn fetched_mail_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let _kate = kate();
    let dir = scratch("modes");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let fetch_with_umask = |maildir: &Path| {
        Command::new("sh")
            .arg("-c")
            .arg("umask 022; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_mailctl"))
            .args(["fetch", "--keep", "--host", "127.0.0.1", "--port", "11995"])
            .args(["--user", KATE.name, "--password-env", "TG_PASSWORD"])
            .arg("--ca-file")
            .arg(mail_testground::ca_file())
            .args(["--max-messages", "3", "--maildir"])
            .arg(maildir)
            .env("TG_PASSWORD", KATE.password)
            .output()
            .unwrap()
    };

    let maildir = dir.join("Maildir");
    assert_eq!(fetched(&fetch_with_umask(&maildir)), 3);
    for sub in ["", "tmp", "new", "cur"] {
        assert_eq!(mode(&maildir.join(sub)), 0o700, "{sub}/");
    }
    let files = messages(&maildir);
    assert_eq!(files.len(), 3);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let journal = maildir.join(".mailctl-state-kate@127.0.0.1");
    assert_eq!(mode(&journal), 0o600, "journal");
    assert_eq!(
        mode(&maildir.join(".mailctl-state-kate@127.0.0.1.lock")),
        0o600,
        "lock"
    );

    // A Maildir its owner made 0750 (shared with a group) keeps that; messages are 0600.
    let shared = dir.join("Shared");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(shared.join(sub)).unwrap();
        std::fs::set_permissions(shared.join(sub), std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(fetched(&fetch_with_umask(&shared)), 3);
    for sub in ["", "tmp", "new", "cur"] {
        assert_eq!(mode(&shared.join(sub)), 0o750, "{sub}/ kept");
    }
    for file in messages(&shared) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn hostile_fetch_args(pki: &Pki, port: u16, maildir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "fetch",
        "--host",
        "127.0.0.1",
        "--tls-name",
        "localhost",
        "--port",
        &port.to_string(),
        "--user",
        "victim",
        "--password-env",
        "HOSTILE_PASSWORD",
        "--timeout",
        "5",
        "--delete",
        "--ca-file",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.push(pki.ca_file().display().to_string());
    args.push("--maildir".into());
    args.push(maildir.display().to_string());
    args
}

fn pop3_login_steps() -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::send("+OK hostile\r\n"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        Step::expect("USER victim"),
        Step::send("+OK\r\n"),
        Step::expect("PASS"),
        Step::send("+OK logged in\r\n"),
    ]
}

/// Item 3: a message the server refuses to hand out makes the run exit 9 ("refused by the
/// server"); it is not deleted, and the next run fetches it.
#[tokio::test]
async fn a_refused_message_fails_the_run_stays_on_the_server_and_is_retried() {
    let pki = Pki::generate();
    let dir = scratch("refused");
    let maildir = dir.join("Maildir");

    let mut first = pop3_login_steps();
    first.extend([
        Step::expect("LIST"),
        Step::send("+OK\r\n1 40\r\n2 40\r\n.\r\n"),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n"),
        Step::expect("RETR 1"),
        Step::send("-ERR [SYS/TEMP] message 1 is locked, try later\r\n"),
        Step::expect("RETR 2"),
        Step::send("+OK\r\nSubject: two\r\n\r\nbody two\r\n.\r\n"),
        Step::expect("DELE 2"),
        Step::send("+OK\r\n"),
        Step::expect("QUIT"),
        Step::send("+OK bye\r\n"),
    ]);
    let server = HostileServer::start(first, pki.leaf_for("localhost")).await;
    let output = mailctl_async(hostile_fetch_args(&pki, server.port(), &maildir)).await;
    let transcript = server.finish().await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(9), "stderr: {stderr}");
    assert!(
        stderr.contains("1 message refused by the server"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("mailctl: refused by the server:"),
        "{stderr}"
    );
    assert!(!stderr.contains("server refused error"), "{stderr}");
    assert!(
        !transcript.any_contains(b"DELE 1"),
        "the refused message was deleted: {transcript:?}"
    );
    assert_eq!(messages(&maildir).len(), 1);

    // Next run: the server hands it out, the run succeeds.
    let mut second = pop3_login_steps();
    second.extend([
        Step::expect("LIST"),
        Step::send("+OK\r\n1 40\r\n.\r\n"),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 uid-one\r\n.\r\n"),
        Step::expect("RETR 1"),
        Step::send("+OK\r\nSubject: one\r\n\r\nbody one\r\n.\r\n"),
        Step::expect("DELE 1"),
        Step::send("+OK\r\n"),
        Step::expect("QUIT"),
        Step::send("+OK bye\r\n"),
    ]);
    let server = HostileServer::start(second, pki.leaf_for("localhost")).await;
    let output = mailctl_async(hostile_fetch_args(&pki, server.port(), &maildir)).await;
    let _ = server.finish().await;
    assert_eq!(fetched(&output), 1);
    assert_eq!(messages(&maildir).len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// A command whose stdout is a pipe nobody reads any more (the read end closed before the
/// command starts, so every write fails with EPIPE, deterministically).
// `std::io::pipe` is newer than the MSRV the libraries promise; tests run on the pinned
// toolchain (rust-toolchain.toml) only.
#[allow(clippy::incompatible_msrv)]
fn with_closed_stdout(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("mailctl runs")
}

fn assert_quiet_sigpipe_exit(output: &Output, what: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{what}: {stderr}");
    for noise in ["panicked", "Broken pipe", "failed printing", "backtrace"] {
        assert!(!stderr.contains(noise), "{what}: {stderr}");
    }
}

/// Item 4: `mailctl discover ... | head` and friends end quietly.
#[allow(clippy::incompatible_msrv)] // std::io::pipe: see `with_closed_stdout`
#[test]
fn a_closed_stdout_ends_output_quietly() {
    for json in [true, false] {
        let mut command = mailctl();
        command.args(["discover", "taro@ocn.ne.jp", "--offline"]);
        if json {
            command.arg("--json");
        }
        assert_quiet_sigpipe_exit(&with_closed_stdout(&mut command), "discover");
    }
    let _kate = kate();
    let dir = scratch("pipe");
    let mut command = mailctl();
    command
        .args(["fetch", "--keep", "--host", "127.0.0.1", "--port", "11995"])
        .args(["--user", KATE.name, "--password-env", "TG_PASSWORD"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .args(["--max-messages", "1", "--maildir"])
        .arg(dir.join("Maildir"))
        .env("TG_PASSWORD", KATE.password);
    assert_quiet_sigpipe_exit(&with_closed_stdout(&mut command), "fetch");
    // The fetch itself completed before the summary line could not be written.
    assert_eq!(messages(&dir.join("Maildir")).len(), 1);

    // A closed stderr (with -v, so log lines go there) does not stop a fetch either.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command
        .arg("-v")
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(fetched(&output), 1);
    assert_eq!(messages(&dir.join("Maildir")).len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

fn assert_for_people(stderr: &str) {
    for debug in ["{", "ReconcileReport", "tmp_removed", "Sasl(", "ScramSha"] {
        assert!(!stderr.contains(debug), "{debug:?} in {stderr}");
    }
}

/// Item 5: an interrupted fetch's repair is one line with counts (names at -v); a failed
/// login names the mechanism as people know it.
#[test]
fn messages_are_for_people() {
    use std::io::Write;
    let _kate = kate();
    let dir = scratch("people");
    let maildir = dir.join("Maildir");
    // Partial downloads left in tmp/ by an interrupted run of this state journal.
    {
        let journal = maildir.join(".mailctl-state-kate@127.0.0.1");
        let (mut store, _) = mail_account::store::Store::open(&maildir, &journal).unwrap();
        for n in 0..3 {
            let mut incoming = store.begin(&format!("partial-{n}"), 10).unwrap();
            incoming.write_all(b"Subject: half").unwrap();
            // As if killed here: the file stays in tmp/, no record of it.
            std::mem::forget(incoming.finish().unwrap());
        }
    }
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 3);
    let output = fetch_flags(
        &maildir,
        "127.0.0.1",
        11995,
        "implicit",
        &["--max-messages", "0"],
    );
    assert_eq!(fetched(&output), 0);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("mailctl: recovered after an interrupted run: 3 partial downloads removed"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("recovered")).count(),
        1
    );
    assert_for_people(&stderr);
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);

    // -v names the files.
    {
        let journal = maildir.join(".mailctl-state-kate@127.0.0.1");
        let (mut store, _) = mail_account::store::Store::open(&maildir, &journal).unwrap();
        let mut incoming = store.begin("partial-v", 10).unwrap();
        incoming.write_all(b"Subject: half").unwrap();
        std::mem::forget(incoming.finish().unwrap());
    }
    let output = fetch_flags(
        &maildir,
        "127.0.0.1",
        11995,
        "implicit",
        &["--max-messages", "0", "-v"],
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("1 partial download removed"), "{stderr}");
    assert!(
        stderr.contains("removed the partial download tmp/"),
        "{stderr}"
    );

    // A refused SCRAM login.
    let output = mailctl()
        .args(["fetch", "--host", "127.0.0.1", "--port", "11995"])
        .args(["--user", KATE.name, "--password-env", "TG_PASSWORD"])
        .args(["--auth", "scram-sha-256", "--ca-file"])
        .arg(mail_testground::ca_file())
        .arg("--maildir")
        .arg(&maildir)
        .env("TG_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("SCRAM-SHA-256"), "{stderr}");
    assert_for_people(&stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// Item 6: `--tls none --auth none` sends without `--user` (a relay that trusts the network);
/// POP3 still needs a login.
#[tokio::test]
async fn auth_none_needs_no_user() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("220 relay ESMTP\r\n"),
            Step::expect("EHLO"),
            Step::send("250 relay\r\n"),
            Step::expect("MAIL FROM:<kate@testground.example>"),
            Step::send("250 2.1.0 ok\r\n"),
            Step::expect("RCPT TO:<kate@testground.example>"),
            Step::send("250 2.1.5 ok\r\n"),
            Step::expect("DATA"),
            Step::send("354 go ahead\r\n"),
            Step::ExpectDataEnd,
            Step::send("250 2.0.0 queued\r\n"),
            Step::expect("QUIT"),
            Step::send("221 bye\r\n"),
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let args: Vec<String> = [
        "send",
        "--host",
        "127.0.0.1",
        "--port",
        &server.port().to_string(),
        "--tls",
        "none",
        "--auth",
        "none",
        "--timeout",
        "5",
        "--from",
        "kate@testground.example",
        "--to",
        "kate@testground.example",
        "--subject",
        "relay test",
        "--body",
        "sent without a login",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let output = mailctl_async(args).await;
    let transcript = server.finish().await;
    assert!(
        output.status.success(),
        "{} / {transcript:?}",
        text(&output.stderr)
    );
    assert!(transcript.any_contains(b"sent without a login"));
    assert!(!transcript.any_contains(b"AUTH"));

    let output = mailctl_async(
        [
            "fetch",
            "--host",
            "127.0.0.1",
            "--tls",
            "none",
            "--auth",
            "none",
            "--maildir",
            "/nonexistent",
        ]
        .iter()
        .map(ToString::to_string)
        .collect(),
    )
    .await;
    assert_eq!(output.status.code(), Some(10));
    assert!(text(&output.stderr).contains("--user"));
}

/// Item 7: discovery shows the provider's IMAP server, with its source, marked as not used.
#[test]
fn discovery_reports_imap_as_data() {
    for (address, imap_host) in [
        ("taro@gmail.com", "imap.gmail.com"),
        ("taro@jet.ne.jp", "imap.jet.ne.jp"),
    ] {
        let output = mailctl()
            .args(["discover", address, "--offline"])
            .output()
            .unwrap();
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(stdout.contains("incoming: POP3 "), "{stdout}");
        assert!(
            stdout.contains(&format!("imap: IMAP {imap_host}:993 (implicit TLS)")),
            "{stdout}"
        );
        assert!(
            stdout.contains("not used by this project's clients"),
            "{stdout}"
        );
        assert!(!stdout.contains("Automatic") && !stdout.contains("BundledDb"));

        let output = mailctl()
            .args(["discover", address, "--offline", "--json"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["incoming"]["protocol"]["value"], "pop3");
        assert_eq!(json["imap"]["host"]["value"], imap_host);
        assert_eq!(json["imap"]["port"]["value"], 993);
        assert_eq!(json["imap"]["protocol"]["value"], "imap");
        assert_eq!(json["imap"]["used_by_this_project"], false);
        assert_eq!(json["imap"]["host"]["source"]["kind"], "bundled-db");
        assert_eq!(json["address"], address);
    }
}
