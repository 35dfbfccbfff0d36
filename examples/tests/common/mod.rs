//! Helpers the mailctl integration tests share: running the binary, scratch directories, the
//! flags that point mailctl at the test ground, and reading its output and Maildirs.
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mail_testground::User;

/// The environment variable the test-ground flags name with `--password-env`.
const PASSWORD_ENV: &str = "TG_PASSWORD";

/// The mailctl binary of this build.
/// `mailctl`, with the test ground's provider file for discovery (the test ground's domain is
/// not in the bundled provider database).
pub(crate) fn mailctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailctl"));
    command.env("MAILCTL_PROVIDER_FILE", mail_testground::provider_file());
    command
}

/// Runs `command` to the end.
pub(crate) fn run(command: &mut Command) -> Output {
    command.output().expect("mailctl runs")
}

/// mailctl with `args`, on a blocking thread (for tests whose scripted server runs on the
/// same tokio runtime); `HOSTILE_PASSWORD` holds the password the hostile tests' flags name.
pub(crate) async fn mailctl_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        mailctl()
            .args(args)
            .env("HOSTILE_PASSWORD", "s3cret-password")
            .output()
            .expect("mailctl runs")
    })
    .await
    .unwrap()
}

/// Output bytes as text, invalid UTF-8 replaced.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory named after the test binary, the process and `name`.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Points a fetch-side command at the test ground's Dovecot POP3S as `user`.
pub(crate) fn pop3_flags(command: &mut Command, user: &User) {
    server_flags(command, user, "11995", "implicit");
}

/// Points a send-side command at the test ground's Postfix submission (STARTTLS) as `user`.
pub(crate) fn smtp_flags(command: &mut Command, user: &User) {
    server_flags(command, user, "10587", "starttls");
}

fn server_flags(command: &mut Command, user: &User, port: &str, tls: &str) {
    command
        .args(["--host", "127.0.0.1", "--port", port, "--tls", tls])
        .args(["--user", user.name, "--password-env", PASSWORD_ENV])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .env(PASSWORD_ENV, user.password);
}

/// N of the `fetched N ...` summary line on stdout.
pub(crate) fn fetched_count(output: &Output) -> usize {
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fetched "))
        .unwrap_or_else(|| {
            panic!(
                "no summary line in {stdout:?} (stderr {:?})",
                text(&output.stderr)
            )
        });
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many messages are in `user`'s mailbox on the test ground (its Maildir's new and cur).
pub(crate) fn server_count(user: &User) -> usize {
    let maildir = mail_testground::maildir(user);
    ["new", "cur"]
        .iter()
        .map(|sub| std::fs::read_dir(maildir.join(sub)).map_or(0, Iterator::count))
        .sum()
}

/// Message-ID -> how many copies, over a local Maildir's new and cur.
pub(crate) fn maildir_ids(maildir: &Path) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let id = text
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(name, _)| name.eq_ignore_ascii_case("message-id"))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(|| format!("<no id, {} bytes>", bytes.len()));
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}
