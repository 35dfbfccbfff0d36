//! `mailctl watch` and `mailctl fetch --all` with several accounts, against the embedded
//! test server: killed with SIGKILL over and over while new mail keeps arriving, then run to
//! the end, every account's every message is in the Maildir exactly once; SIGTERM ends a
//! watch cleanly (exit status 0); a second watch of the same accounts is refused while the
//! first holds their state.

mod common;

use common::{maildir_ids, scratch};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mail_testground::server::{BlockingTestServer, TestServer};

const ACCOUNTS: usize = 3;
const PASSWORD_ENV: &str = "MAILCTL_WATCH_TEST_PASSWORD";

fn mailctl() -> Command {
    let mut command = common::mailctl();
    command
        .env(PASSWORD_ENV, "secret")
        .env_remove("MAILCTL_CONFIG");
    command
}

fn user(i: usize) -> String {
    format!("u{i}@watch.test")
}

fn message(i: usize, n: usize) -> Vec<u8> {
    format!(
        "Message-ID: <{n}.u{i}@watch.test>\r\nSubject: message {n} for account {i}\r\n\r\n{}\r\n",
        "body line, long enough to make a fetch take a while\r\n".repeat(400)
    )
    .into_bytes()
}

/// The configuration file: one account per test-server user, delete after download.
fn config_file(dir: &Path, server: &BlockingTestServer) -> PathBuf {
    let ca = server.ca_file().unwrap();
    let mut toml = String::new();
    for i in 0..ACCOUNTS {
        write!(
            toml,
            r#"[accounts.a{i}]
address = "{user}"
retention = "delete-after-download"
[accounts.a{i}.incoming]
host = "localhost"
port = {port}
security = "implicit-tls"
username = "{user}"
auth = "automatic"
[accounts.a{i}.outgoing]
host = "localhost"
port = {smtp}
security = "implicit-tls"
username = "{user}"
auth = "automatic"
[accounts.a{i}.credential]
env = "{PASSWORD_ENV}"
[accounts.a{i}.tls]
extra_ca_file = "{ca}"

"#,
            user = user(i),
            port = server.pop3s_addr().port(),
            smtp = server.submissions_addr().port(),
            ca = ca.display(),
        )
        .unwrap();
    }
    let path = dir.join("accounts.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn watch(config: &Path, maildir: &Path) -> Child {
    mailctl()
        .args(["watch", "--interval", "1", "--config"])
        .arg(config)
        .arg("--maildir")
        .arg(maildir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn fetch_all(config: &Path, maildir: &Path) -> Output {
    mailctl()
        .args(["fetch", "--all", "--config"])
        .arg(config)
        .arg("--maildir")
        .arg(maildir)
        .output()
        .unwrap()
}

fn server() -> BlockingTestServer {
    let mut builder = TestServer::builder();
    for i in 0..ACCOUNTS {
        builder = builder.user(user(i), "secret");
    }
    builder.start_blocking().unwrap()
}

/// A small deterministic generator for the kill points (no clock, no OS randomness: a
/// failing run can be repeated).
fn randoms(count: usize) -> Vec<u64> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect()
}

/// Files in new/ (cheap: names only).
fn maildir_count(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map_or(0, Iterator::count)
}

#[test]
fn watch_killed_at_many_points_delivers_every_message_of_every_account_exactly_once() {
    let server = server();
    let dir = scratch("kill");
    let config = config_file(&dir, &server);
    let maildir = dir.join("Maildir");
    let mut sent = 0usize;
    let mut next = [0usize; ACCOUNTS];
    let mut add = |server: &BlockingTestServer, per_account: usize| {
        for (i, n) in next.iter_mut().enumerate() {
            for _ in 0..per_account {
                server.add_message(&user(i), &message(i, *n)).unwrap();
                *n += 1;
                sent += 1;
            }
        }
    };
    let mut interrupted = 0;
    let numbers = randoms(24);
    for (round, random) in numbers.iter().enumerate() {
        add(&server, 60); // new mail arrives between runs
        let before = maildir_ids(&maildir).len();
        let mut child = watch(&config, &maildir);
        if round % 2 == 0 {
            // Kill once some (a random number) of the new messages are in the Maildir: in
            // the middle of the fetching, whatever the machine's speed.
            let target = before + 1 + (*random as usize) % 170;
            for _ in 0..2000 {
                if maildir_count(&maildir) >= target || child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            // Kill at a random time: during start-up, login, listing, DELE or the wait.
            std::thread::sleep(Duration::from_millis(50 + random % 1200));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let left: usize = (0..ACCOUNTS)
            .map(|i| server.mailbox(&user(i)).map_or(0, |m| m.len()))
            .sum();
        if left > 0 && maildir_ids(&maildir).len() > before {
            interrupted += 1;
        }
    }
    println!("{interrupted} of 24 kills landed in the middle of fetching");
    assert!(
        interrupted >= 5,
        "only {interrupted} kills interrupted a fetch"
    );
    // Run to the end: fetch --all until every server mailbox is empty.
    for _ in 0..5 {
        let output = fetch_all(&config, &maildir);
        assert!(
            output.status.success(),
            "fetch --all: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if (0..ACCOUNTS).all(|i| server.mailbox(&user(i)).is_some_and(|m| m.is_empty())) {
            break;
        }
    }
    for i in 0..ACCOUNTS {
        assert_eq!(
            server.mailbox(&user(i)).map(|m| m.len()),
            Some(0),
            "account {i}"
        );
    }
    let ids = maildir_ids(&maildir);
    let duplicated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    for (i, n) in next.iter().enumerate() {
        for k in 0..*n {
            let id = format!("<{k}.u{i}@watch.test>");
            assert_eq!(ids.get(&id), Some(&1), "{id} lost");
        }
    }
    assert_eq!(ids.len(), sent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_ends_a_watch_cleanly_and_a_second_watch_is_refused_meanwhile() {
    let server = server();
    for i in 0..ACCOUNTS {
        for n in 0..20 {
            server.add_message(&user(i), &message(i, n)).unwrap();
        }
    }
    let dir = scratch("term");
    let config = config_file(&dir, &server);
    let maildir = dir.join("Maildir");
    let child = watch(&config, &maildir);
    // Wait until the first round delivered everything.
    while (0..ACCOUNTS).any(|i| server.mailbox(&user(i)).is_some_and(|m| !m.is_empty())) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = mailctl()
        .args(["watch", "--config"])
        .arg(&config)
        .arg("--maildir")
        .arg(&maildir)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second watch of the same accounts ran"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    let pid = child.id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    for i in 0..ACCOUNTS {
        assert!(
            stdout.contains(&format!("a{i}: ")),
            "a status line per account: {stdout}"
        );
    }
    assert_eq!(maildir_ids(&maildir).len(), ACCOUNTS * 20);
    let _ = std::fs::remove_dir_all(&dir);
}
