//! `mailctl` end to end against the test ground's real Dovecot and Postfix: discover, verify,
//! send, fetch with every retention policy, the 2,000-message mailbox, exit statuses, and a
//! fetch killed with SIGKILL over and over until it completes.
//!
//! Users: `frank` (100 messages at reset; deliveries and deletions) and `heidi` (2,000 messages
//! at reset; the large fetch and the kill test). Each test that changes a mailbox resets it
//! first, and the two users' tests are serialized by a lock.

mod common;

use common::{
    fetched_count, maildir_ids, pop3_flags, run, scratch, server_count, smtp_flags, text,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_testground::{FRANK, HEIDI, User};

static FRANK_LOCK: Mutex<()> = Mutex::new(());
static HEIDI_LOCK: Mutex<()> = Mutex::new(());

fn mailctl() -> Command {
    let mut command = common::mailctl();
    command.env("MAILCTL_TEST_PASSWORD", "unused");
    command
}

fn fetch(user: &User, maildir: &Path, extra: &[&str]) -> Output {
    let mut command = mailctl();
    command.arg("fetch");
    pop3_flags(&mut command, user);
    command.arg("--maildir").arg(maildir).args(extra);
    run(&mut command)
}

fn account_file(dir: &Path, user: &User) -> PathBuf {
    let path = dir.join("account.toml");
    let toml = format!(
        r#"address = "{address}"
display_name = "Frank Tester"

[incoming]
host = "127.0.0.1"
port = 11995
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[outgoing]
host = "127.0.0.1"
port = 10465
security = "implicit-tls"
username = "{{local}}"
auth = "automatic"

[credential]
env = "TG_PASSWORD"

[tls]
extra_ca_file = "{ca}"
"#,
        address = user.address,
        ca = mail_testground::ca_file().display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn discover_offline_names_the_test_ground_with_sources() {
    let output = run(mailctl().args(["discover", "frank@testground.example", "--offline"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("incoming: POP3 127.0.0.1:11995 (implicit TLS)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("outgoing: SMTP 127.0.0.1:10465 (implicit TLS)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("<- extra provider entry testground"),
        "{stdout}"
    );
    assert!(stdout.contains("network:  no request made"), "{stdout}");

    let output = run(mailctl().args(["discover", "taro@gmail.com", "--offline", "--json"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["incoming"]["host"]["value"], "pop.gmail.com");
    assert_ne!(json["outgoing"]["port"]["value"], 25);
}

#[test]
fn discover_verify_logs_in_to_both_servers_and_explains_failures() {
    let discover = |password: &str, ca: bool| {
        let mut command = mailctl();
        command
            .args([
                "discover",
                "ivan@testground.example",
                "--offline",
                "--verify",
            ])
            .args(["--password-env", "TG_PASSWORD"])
            .env("TG_PASSWORD", password);
        if ca {
            command.arg("--ca-file").arg(mail_testground::ca_file());
        }
        run(&mut command)
    };
    let output = discover("ivan-pass", true);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("ok    incoming POP3 login with"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    outgoing SMTP login with"),
        "{stdout}"
    );

    let output = discover("wrong", true);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("FAIL  incoming: wrong username or password"),
        "{stdout}"
    );
    assert!(
        stdout.contains("advice: Check the username and password"),
        "{stdout}"
    );

    // Without the private CA the certificate is rightly refused: a TLS failure, exit 3.
    let output = discover("ivan-pass", false);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("certificate"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn verify_send_and_fetch_with_every_retention_policy() {
    let _lock = FRANK_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mail_testground::reset_mailboxes(&[FRANK]);
    let dir = scratch("frank");
    let account = account_file(&dir, &FRANK);

    // verify: a test message goes out over SMTP and is found (and removed) over POP3.
    let output = run(mailctl()
        .args(["roundtrip", "--account"])
        .arg(&account)
        .env("TG_PASSWORD", FRANK.password));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("verified: <"), "{stdout}");
    assert!(stdout.contains("found it over POP3"), "{stdout}");
    assert_eq!(
        server_count(&FRANK),
        100,
        "verify leaves only its own message's trace removed"
    );

    // send: a composed message and a file with dot lines, to frank.
    let mut command = mailctl();
    command.arg("send");
    smtp_flags(&mut command, &FRANK);
    let output = run(command
        .args(["--from", FRANK.address, "--to", FRANK.address])
        .args([
            "--subject",
            "Grüße",
            "--body",
            "composed by mailctl\n.\nend",
            "--name",
            "Frank T",
        ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("accepted frank@testground.example"));
    let file = dir.join("message.eml");
    std::fs::write(
        &file,
        "Subject: from a file\nMessage-ID: <file.1@testground.example>\n\n.\n..\nlast\n",
    )
    .unwrap();
    let mut command = mailctl();
    command.arg("send");
    smtp_flags(&mut command, &FRANK);
    let output = run(command
        .args([
            "--from",
            FRANK.address,
            "--to",
            FRANK.address,
            "--to",
            "nobody@testground.example",
        ])
        .arg(&file));
    assert_eq!(
        output.status.code(),
        Some(9),
        "one recipient refused: {}",
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("accepted frank@testground.example"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused  nobody@testground.example: 550"),
        "{stdout}"
    );
    // Postfix delivers asynchronously.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server_count(&FRANK) < 102 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server_count(&FRANK), 102);

    // keep, twice: everything, then nothing new.
    let keep = dir.join("keep");
    let output = fetch(&FRANK, &keep, &["--keep"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 102);
    let output = fetch(&FRANK, &keep, &["--keep"]);
    assert_eq!(
        fetched_count(&output),
        0,
        "the second --keep run fetches nothing new"
    );
    let ids = maildir_ids(&keep);
    assert_eq!(ids.len(), 102);
    assert!(ids.values().all(|&n| n == 1), "duplicates: {ids:?}");
    let from_file = std::fs::read_dir(keep.join("new"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains("<file.1@testground.example>"))
        .expect("the file message arrived");
    assert!(
        from_file.ends_with("\n\n.\n..\nlast\n"),
        "dot lines survive: {from_file:?}"
    );
    assert_eq!(server_count(&FRANK), 102, "keep deletes nothing");

    // delete after N days: nothing is old enough yet.
    let output = fetch(&FRANK, &keep, &["--delete-after-days", "3"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0);
    assert_eq!(server_count(&FRANK), 102);

    // a per-run limit, then delete after download into a fresh Maildir.
    let fresh = dir.join("fresh");
    let output = fetch(&FRANK, &fresh, &["--delete", "--max-messages", "40"]);
    assert_eq!(fetched_count(&output), 40);
    assert_eq!(server_count(&FRANK), 62);
    let output = fetch(&FRANK, &fresh, &["--delete"]);
    assert_eq!(fetched_count(&output), 62);
    assert_eq!(
        server_count(&FRANK),
        0,
        "delete after download empties the server"
    );
    let ids = maildir_ids(&fresh);
    assert_eq!(ids.len(), 102);
    assert!(ids.values().all(|&n| n == 1));

    // the keep Maildir's journal now sees the messages gone and forgets them.
    let output = fetch(&FRANK, &keep, &["--keep"]);
    assert_eq!(fetched_count(&output), 0);
    mail_testground::reset_mailboxes(&[FRANK]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn failures_have_their_exit_status_and_one_line() {
    let dir = scratch("failures");
    let maildir = dir.join("Maildir");
    // wrong password: 4
    let mut command = mailctl();
    command.arg("fetch");
    pop3_flags(&mut command, &FRANK);
    let output = run(command
        .arg("--maildir")
        .arg(&maildir)
        .env("TG_PASSWORD", "wrong"));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("mailctl: authentication error:"),
        "{stderr}"
    );
    // a CA we do not trust: 3
    let output = run(mailctl()
        .args([
            "fetch",
            "--host",
            "127.0.0.1",
            "--port",
            "11995",
            "--user",
            "frank",
        ])
        .args(["--password-env", "TG_PASSWORD", "--maildir"])
        .arg(&maildir)
        .env("TG_PASSWORD", FRANK.password));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("TLS error"));
    // nothing listening: 8
    let output = run(mailctl()
        .args([
            "fetch",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--user",
            "frank",
        ])
        .args(["--password-env", "TG_PASSWORD", "--maildir"])
        .arg(&maildir)
        .env("TG_PASSWORD", FRANK.password));
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    // a password without TLS and without --allow-cleartext-credentials-dangerously: 10, before
    // any connection
    let output = run(mailctl()
        .args([
            "fetch",
            "--host",
            "127.0.0.1",
            "--port",
            "11110",
            "--tls",
            "none",
            "--user",
            "frank",
        ])
        .args(["--password-env", "TG_PASSWORD", "--maildir"])
        .arg(&maildir)
        .env("TG_PASSWORD", FRANK.password));
    assert_eq!(output.status.code(), Some(10), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--allow-cleartext-credentials-dangerously"));
    // usage: 2
    let output = run(mailctl().args(["fetch", "--bogus"]));
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_2000_message_mailbox_and_a_fetch_killed_at_many_points() {
    let _lock = HEIDI_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mail_testground::reset_mailboxes(&[HEIDI]);
    let dir = scratch("heidi");

    // All 2,000, keeping them on the server.
    let keep = dir.join("keep");
    let full_run = Instant::now();
    let output = fetch(&HEIDI, &keep, &["--keep"]);
    let full_run = full_run.elapsed();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 2000);
    assert_eq!(maildir_ids(&keep).len(), 2000);
    assert_eq!(server_count(&HEIDI), 2000);

    // Delete after download, killed with SIGKILL at many points, rerun until it completes.
    let maildir = dir.join("killed");
    let mut kills = 0u32;
    let mut runs = 0u32;
    let mut seed = 0x9E37_79B9_u64;
    let started = Instant::now();
    loop {
        runs += 1;
        assert!(runs < 400, "no completion after {runs} runs");
        let mut command = mailctl();
        command.arg("fetch");
        pop3_flags(&mut command, &HEIDI);
        command.arg("--maildir").arg(&maildir).arg("--delete");
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        // Kill after a random part of a tenth of a whole run: each killed run gets a little
        // further, so the kills land across login, listing, retrieval, DELE and QUIT, and
        // over the whole mailbox.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let window = u64::try_from(full_run.as_millis() / 10)
            .unwrap_or(1000)
            .max(5);
        let delay = Duration::from_millis(1 + seed % window);
        let until = Instant::now() + delay;
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= until {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match finished {
            Some(status) if status.success() && server_count(&HEIDI) == 0 => break,
            Some(_) => {}
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        if kills >= 25 && runs > 60 {
            // Enough kills; let the remaining runs finish.
            let output = fetch(&HEIDI, &maildir, &["--delete"]);
            assert!(output.status.success(), "{}", text(&output.stderr));
            if server_count(&HEIDI) == 0 {
                break;
            }
        }
    }
    let ids = maildir_ids(&maildir);
    let duplicates: usize = ids.values().map(|&n| n - 1).sum();
    let expected: Vec<String> = (1..=2000)
        .map(|i| format!("<heidi.{i}@testground.example>"))
        .collect();
    let lost = expected.iter().filter(|id| !ids.contains_key(*id)).count();
    eprintln!(
        "kill test: {runs} runs, {kills} SIGKILLs in {:.1} s: {} messages in the Maildir, \
         {lost} lost, {duplicates} duplicated, {} left on the server",
        started.elapsed().as_secs_f64(),
        ids.len(),
        server_count(&HEIDI)
    );
    assert!(kills >= 20, "only {kills} kills landed");
    assert_eq!(lost, 0);
    assert_eq!(duplicates, 0);
    assert_eq!(ids.len(), 2000);
    assert_eq!(server_count(&HEIDI), 0);
    assert!(
        std::fs::read_dir(maildir.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp/ is clean"
    );
    mail_testground::reset_mailboxes(&[HEIDI]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_offline_demo_runs_discover_verify_send_and_fetch() {
    let dir = scratch("demo");
    let output = run(mailctl()
        .args(["demo", "--maildir"])
        .arg(dir.join("Maildir")));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("<- extra provider entry demo"), "{stdout}");
    assert!(stdout.contains("found it over POP3 after"), "{stdout}");
    assert!(stdout.contains("fetched 3 messages"), "{stdout}");
    assert!(
        stdout.contains("server mailbox now holds 0 messages"),
        "{stdout}"
    );
    assert_eq!(maildir_ids(&dir.join("Maildir")).len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// `mailctl send FILE` through a Postfix port as `liam`, to the discarding sink domain.
fn send_file(port: &str, file: &Path) -> Output {
    let user = mail_testground::LIAM;
    let mut command = mailctl();
    command
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--tls",
            "starttls",
        ])
        .args(["--user", user.name, "--password-env", "TG_PASSWORD"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .env("TG_PASSWORD", user.password)
        .args(["--from", user.address, "--to"])
        .arg(format!("eightbit@{}", mail_testground::SINK_DOMAIN))
        .arg(file);
    run(&mut command)
}

#[test]
fn send_declares_8bit_content_or_says_why_it_cannot() {
    // Issue 16, item 7: a file with a UTF-8 header and an 8-bit body.
    let dir = scratch("eightbit");
    let file = dir.join("message.eml");
    std::fs::write(&file, "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n").unwrap();
    // 10026 offers neither 8BITMIME nor SMTPUTF8: refused before anything is sent.
    let output = send_file("10026", &file);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(9), "{stderr}");
    assert!(
        stderr.contains("SMTPUTF8") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    // 10025 offers both: declared and accepted.
    let output = send_file("10025", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("accepted eightbit@"));
}
