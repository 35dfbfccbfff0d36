//! `mailctl fetch` delivery targets and the "until I delete it here" retention, end to end
//! against the test ground's Dovecot: a Maildir whose deletions (and trashed flags) are carried
//! to the server, an mbox that Python's `mailbox` module reads back, an MDA script that records
//! what it got, an account file that names its delivery target; and SIGKILL tests for each.
//!
//! User: `mia` (100 messages at reset, two of them 1 MiB; scratch). Every test resets her
//! mailbox first and the tests are serialized by a lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_testground::{MIA, User};

static MIA_LOCK: Mutex<()> = Mutex::new(());

fn lock_mia() -> std::sync::MutexGuard<'static, ()> {
    let guard = MIA_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mail_testground::reset_mailboxes(&[MIA]);
    guard
}

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
    let dir = std::env::temp_dir().join(format!("mailctl-delivery-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `--host ... --password-env ...` for POP3S of `user`.
fn pop3_flags(command: &mut Command, user: &User) {
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "11995",
            "--tls",
            "implicit",
        ])
        .args(["--user", user.name, "--password-env", "TG_PASSWORD"])
        .arg("--ca-file")
        .arg(mail_testground::ca_file())
        .env("TG_PASSWORD", user.password);
}

/// `mailctl fetch` of mia with the server flags and `args`.
fn fetch_command(args: &[&std::ffi::OsStr]) -> Command {
    let mut command = mailctl();
    command.arg("fetch");
    pop3_flags(&mut command, &MIA);
    command.args(args);
    command
}

fn fetch(args: &[&std::ffi::OsStr]) -> Output {
    run(&mut fetch_command(args))
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// `fetched N messages (B bytes) in S s` -> N.
fn fetched_count(output: &Output) -> usize {
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

/// The Message-ID of a message's header.
fn message_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("message-id"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| format!("<no id, {} bytes>", bytes.len()))
}

/// Every message file of a Maildir (`new/`, `cur/`), by file path, with its Message-ID.
fn maildir_files(maildir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let id = message_id(&std::fs::read(&path).unwrap());
            files.insert(path, id);
        }
    }
    files
}

/// Message-IDs of a Maildir with how often each occurs.
fn maildir_ids(maildir: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for id in maildir_files(maildir).into_values() {
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// The Message-IDs still on mia's server.
fn server_ids() -> BTreeSet<String> {
    maildir_ids(&mail_testground::maildir(&MIA))
        .into_keys()
        .collect()
}

fn all_ids() -> BTreeSet<String> {
    (1..=100)
        .map(|i| format!("<mia.{i}@testground.example>"))
        .collect()
}

/// A tiny xorshift, so the kill points are spread but the test is reproducible.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Runs `command` and SIGKILLs it after `delay` unless it finished; returns whether it
/// finished successfully.
fn run_or_kill(command: &mut Command, delay: Duration) -> Option<bool> {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let until = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.success());
        }
        if Instant::now() >= until {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Issue 18: "leave on the server until I delete it here". A message whose file is removed,
/// or flagged trashed, is deleted on the server by the next fetch; one read, flagged or moved
/// into a subfolder stays.
#[test]
fn until_deleted_here_carries_local_deletions_to_the_server() {
    let _mia = lock_mia();
    let dir = scratch("until-deleted");
    let maildir = dir.join("Maildir");
    let flags = [
        os("--maildir"),
        maildir.as_os_str(),
        os("--until-deleted-here"),
    ];
    let output = fetch(&flags);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 100);
    assert_eq!(server_ids(), all_ids(), "nothing deleted on the first run");

    let files = maildir_files(&maildir);
    let path_of = |i: u32| {
        let id = format!("<mia.{i}@testground.example>");
        files.iter().find(|(_, v)| **v == id).unwrap().0.clone()
    };
    let name_of = |i: u32| path_of(i).file_name().unwrap().to_str().unwrap().to_owned();
    // Deleted: 3, 50 (a 1 MiB one), 77. Trashed: 4 (in cur/ with T), 5 (T among others).
    for i in [3, 50, 77] {
        std::fs::remove_file(path_of(i)).unwrap();
    }
    let cur = maildir.join("cur");
    std::fs::rename(path_of(4), cur.join(format!("{}:2,T", name_of(4)))).unwrap();
    std::fs::rename(path_of(5), cur.join(format!("{}:2,FST", name_of(5)))).unwrap();
    // Kept: 6 read and flagged, 7 moved into a Maildir++ folder.
    std::fs::rename(path_of(6), cur.join(format!("{}:2,FS", name_of(6)))).unwrap();
    std::fs::create_dir_all(maildir.join(".Archive/cur")).unwrap();
    std::fs::rename(
        path_of(7),
        maildir
            .join(".Archive/cur")
            .join(format!("{}:2,S", name_of(7))),
    )
    .unwrap();

    let output = fetch(&flags);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0, "nothing fetched again");
    assert!(
        text(&output.stderr).contains("5 deleted on the server"),
        "{}",
        text(&output.stderr)
    );
    let gone: BTreeSet<String> = [3, 4, 5, 50, 77]
        .iter()
        .map(|i| format!("<mia.{i}@testground.example>"))
        .collect();
    let expected: BTreeSet<String> = all_ids().difference(&gone).cloned().collect();
    assert_eq!(server_ids(), expected);
    // The trashed files are left to the mail reader; nothing came back.
    assert_eq!(maildir_files(&maildir).len(), 95 + 2 - 1);
    // A third run has nothing to do.
    let output = fetch(&flags);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0);
    assert!(!text(&output.stderr).contains("deleted on the server"));
    assert_eq!(server_ids(), expected);
    let _ = std::fs::remove_dir_all(dir);
}

/// The same, killed with SIGKILL at many points: every message deleted here ends up deleted
/// on the server, every kept one stays on the server and in the Maildir once, and no deleted
/// one comes back.
#[test]
fn until_deleted_here_killed_at_many_points() {
    let _mia = lock_mia();
    let dir = scratch("until-deleted-kill");
    let maildir = dir.join("Maildir");
    let flags = [
        os("--maildir"),
        maildir.as_os_str(),
        os("--until-deleted-here"),
    ];
    let output = fetch(&flags);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 100);
    // Delete every other message here (the odd ones), trash every tenth even one.
    let mut deleted = BTreeSet::new();
    for (path, id) in maildir_files(&maildir) {
        let seq: u32 = id
            .trim_start_matches("<mia.")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if seq % 2 == 1 {
            std::fs::remove_file(&path).unwrap();
            deleted.insert(id);
        } else if seq % 10 == 0 {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            std::fs::rename(&path, maildir.join("cur").join(format!("{name}:2,ST"))).unwrap();
            deleted.insert(id);
        }
    }
    let kept: BTreeSet<String> = all_ids().difference(&deleted).cloned().collect();
    // Kill points up to the length of a run with nothing to fetch (login, listing, and
    // then the DELEs and QUIT of the real runs), so they land all over the deleting runs.
    let started = Instant::now();
    assert!(
        fetch(&[os("--maildir"), maildir.as_os_str(), os("--keep")])
            .status
            .success()
    );
    let window = u64::try_from(started.elapsed().as_millis())
        .unwrap_or(1000)
        .max(10);
    let mut seed = 0x5EED_1234_u64;
    let mut kills = 0;
    let mut runs = 0;
    while kills < 20 {
        runs += 1;
        assert!(runs < 200, "only {kills} kills in {runs} runs");
        let delay = Duration::from_millis(1 + next(&mut seed) % window);
        if run_or_kill(&mut fetch_command(&flags), delay).is_none() {
            kills += 1;
        }
    }
    let output = fetch(&flags);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0, "{}", text(&output.stderr));
    let ids = maildir_ids(&maildir);
    eprintln!(
        "until-deleted kill test: {runs} runs, {kills} SIGKILLs, {} on the server, {} files here",
        server_ids().len(),
        ids.values().sum::<usize>()
    );
    assert_eq!(
        server_ids(),
        kept,
        "exactly the kept messages stay on the server"
    );
    for id in &kept {
        assert_eq!(ids.get(id), Some(&1), "{id} once in the Maildir");
    }
    for id in deleted.iter().filter(|id| ids.contains_key(*id)) {
        // Only the trashed ones are still here (left to the mail reader), once.
        assert_eq!(ids[id], 1, "{id}");
        assert!(
            id.trim_start_matches("<mia.")
                .starts_with(|c: char| c.is_ascii_digit())
        );
    }
    let returned = ids
        .keys()
        .filter(|id| deleted.contains(*id))
        .filter(|id| {
            let seq: u32 = id
                .trim_start_matches("<mia.")
                .split('@')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            seq % 2 == 1
        })
        .count();
    assert_eq!(returned, 0, "no message deleted here came back");
    let _ = std::fs::remove_dir_all(dir);
}
