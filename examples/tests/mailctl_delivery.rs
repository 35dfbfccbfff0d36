//! `mailctl fetch` delivery targets and the "until I delete it here" retention, end to end
//! against the test ground's Dovecot: a Maildir whose deletions (and trashed flags) are carried
//! to the server, an mbox that Python's `mailbox` module reads back, an MDA script that records
//! what it got, an account file that names its delivery target; and SIGKILL tests for each.
//!
//! User: `mia` (100 messages at reset, two of them 1 MiB; scratch). Every test resets her
//! mailbox first and the tests are serialized by a lock.

mod common;

use common::{fetched_count, mailctl, pop3_flags, run, scratch, smtp_flags, text};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_testground::MIA;

static MIA_LOCK: Mutex<()> = Mutex::new(());

fn lock_mia() -> std::sync::MutexGuard<'static, ()> {
    let guard = MIA_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mail_testground::reset_mailboxes(&[MIA]);
    guard
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
            // The server's Dovecot may remove a file between the listing and the read.
            if let Ok(bytes) = std::fs::read(&path) {
                files.insert(path, message_id(&bytes));
            }
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
    run_or_kill_logged(command, delay, None)
}

/// [`run_or_kill`], appending the run's stderr to `log` if given.
fn run_or_kill_logged(command: &mut Command, delay: Duration, log: Option<&Path>) -> Option<bool> {
    let stderr = log.map_or_else(Stdio::null, |log| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Stdio::from(file)
    });
    command.stdout(Stdio::null()).stderr(stderr);
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
    let seq = |id: &str| -> u32 {
        id.trim_start_matches("<mia.")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut seed = 0x5EED_1234_u64;
    let (mut total_runs, mut total_kills, mut rounds) = (0, 0, 0);
    while total_kills < 20 {
        rounds += 1;
        assert!(rounds <= 10, "only {total_kills} kills in {rounds} rounds");
        mail_testground::reset_mailboxes(&[MIA]);
        let maildir = dir.join(format!("Maildir-{rounds}"));
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
            if seq(&id) % 2 == 1 {
                std::fs::remove_file(&path).unwrap();
                deleted.insert(id);
            } else if seq(&id) % 10 == 0 {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                std::fs::rename(&path, maildir.join("cur").join(format!("{name}:2,ST"))).unwrap();
                deleted.insert(id);
            }
        }
        let kept: BTreeSet<String> = all_ids().difference(&deleted).cloned().collect();
        // Kill points from a quarter up to n quarters of a run with nothing to do (login,
        // listing; the deleting runs add DELE and QUIT), n the run's number in the round.
        let started = Instant::now();
        let keep = [os("--maildir"), maildir.as_os_str(), os("--keep")];
        assert!(fetch(&keep).status.success());
        let window = u64::try_from(started.elapsed().as_millis())
            .unwrap_or(1000)
            .max(10);
        let mut runs = 0u32;
        loop {
            runs += 1;
            assert!(runs < 100, "no completion after {runs} runs");
            let delay =
                Duration::from_millis(1 + next(&mut seed) % (window * u64::from(runs) / 4 + 1));
            match run_or_kill(&mut fetch_command(&flags), delay) {
                None => total_kills += 1,
                Some(true) if server_ids() == kept => break,
                Some(_) => {}
            }
        }
        total_runs += runs;
        let output = fetch(&flags);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(fetched_count(&output), 0, "{}", text(&output.stderr));
        assert!(!text(&output.stderr).contains("deleted on the server"));
        assert_eq!(
            server_ids(),
            kept,
            "exactly the kept messages stay on the server"
        );
        let ids = maildir_ids(&maildir);
        for id in &kept {
            assert_eq!(ids.get(id), Some(&1), "{id} once in the Maildir");
        }
        // Of the messages deleted here, only the trashed ones (every tenth) are still in the
        // Maildir, once each, left to the mail reader; the removed ones never came back.
        let still_here: Vec<&String> = deleted.iter().filter(|id| ids.contains_key(*id)).collect();
        assert_eq!(still_here.len(), 10, "{still_here:?}");
        for id in still_here {
            assert_eq!(ids[id], 1, "{id}");
            assert_eq!(seq(id) % 10, 0, "{id} is a trashed one");
        }
    }
    eprintln!(
        "until-deleted kill test: {rounds} rounds, {total_runs} runs, {total_kills} SIGKILLs: \
         each round exactly the kept 50 on the server, nothing fetched again"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The Message-ID of the message with `From ` lines in its body.
const FROM_LINES_ID: &str = "<mia.from-lines@testground.example>";

/// Sends mia a message whose body has lines an mbox must quote, and waits until the server
/// holds it (101 messages).
fn send_from_lines_message(dir: &Path) {
    let file = dir.join("from-lines.eml");
    std::fs::write(
        &file,
        format!(
            "From: Mia <mia@testground.example>\r\nTo: mia@testground.example\r\n\
             Subject: From lines\r\nMessage-ID: {FROM_LINES_ID}\r\n\r\n\
             From the start of a line\r\n>From once quoted\r\n>>From twice\r\nFrom\r\n\
             Fromage\r\n"
        ),
    )
    .unwrap();
    let mut command = mailctl();
    command.arg("send");
    smtp_flags(&mut command, &MIA);
    command
        .args(["--from", MIA.address, "--to", MIA.address])
        .arg(&file);
    let output = run(&mut command);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let until = Instant::now() + Duration::from_secs(30);
    while !server_ids().contains(FROM_LINES_ID) {
        assert!(Instant::now() < until, "the message did not arrive");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's messages by Message-ID, as POP3 delivers them with LF line ends (Postfix
/// adds a Delivered-To and Return-Path to the one sent over SMTP).
fn server_messages() -> BTreeMap<String, Vec<u8>> {
    let mut messages = BTreeMap::new();
    for (path, id) in maildir_files(&mail_testground::maildir(&MIA)) {
        messages.insert(
            id,
            std::fs::read(path)
                .unwrap()
                .into_iter()
                .filter(|&b| b != b'\r')
                .collect(),
        );
    }
    messages
}

/// Undoes the mboxrd format: the messages' bytes, in order.
fn read_mboxrd(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            messages.push(Vec::new());
            continue;
        }
        let current = messages.last_mut().expect("a From line first");
        let quoted = line.iter().position(|&b| b != b'>').unwrap_or(0);
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            current.extend_from_slice(&line[1..]);
        } else {
            current.extend_from_slice(line);
        }
    }
    for m in &mut messages {
        assert_eq!(m.pop(), Some(b'\n'), "the blank line after each message");
    }
    messages
}

/// Message-IDs of the mbox as Python's `mailbox` module reads it, and the body of the message
/// with `From ` lines.
fn python_mailbox(path: &Path) -> (Vec<String>, String) {
    let script = r#"
import json, mailbox, sys
box = mailbox.mbox(sys.argv[1], create=False)
ids, body = [], ""
for message in box:
    ids.append(message["Message-ID"])
    if message["Message-ID"] == sys.argv[2]:
        body = message.get_payload()
print(json.dumps({"ids": ids, "body": body}))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(FROM_LINES_ID)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    // A small JSON object: two keys, parsed by hand to keep the test's dependencies small.
    let ids_part = out
        .split("\"ids\": [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    let ids = ids_part
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_owned())
        .collect();
    let body = out
        .split("\"body\": \"")
        .nth(1)
        .unwrap()
        .rsplit_once("\"}")
        .unwrap()
        .0;
    (ids, body.replace("\\n", "\n"))
}

/// Issue 18: fetch into an mbox; Python's `mailbox` reads every message back, `From ` lines
/// in bodies are quoted the mboxrd way, and undoing the quoting gives the server's bytes.
#[test]
fn mbox_delivery_is_read_back_by_python_mailbox() {
    let _mia = lock_mia();
    let dir = scratch("mbox");
    send_from_lines_message(&dir);
    let mbox = dir.join("mail").join("inbox");
    std::fs::create_dir_all(mbox.parent().unwrap()).unwrap();
    let output = fetch(&[os("--mbox"), mbox.as_os_str(), os("--keep")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 101);

    let (ids, body) = python_mailbox(&mbox);
    assert_eq!(ids.len(), 101);
    let ids: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(ids, server_ids());
    assert_eq!(
        body, ">From the start of a line\n>>From once quoted\n>>>From twice\nFrom\nFromage\n",
        "mboxrd quoting as Python sees it"
    );
    // Byte for byte, once unquoted.
    let server = server_messages();
    let ours = read_mboxrd(&mbox);
    assert_eq!(ours.len(), 101);
    for message in &ours {
        assert_eq!(&server[&message_id(message)], message);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&mbox).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(
        !mbox.with_file_name("inbox.lock").exists(),
        "dot lock released"
    );
    // Again: nothing new, the mbox untouched.
    let before = std::fs::read(&mbox).unwrap();
    let output = fetch(&[os("--mbox"), mbox.as_os_str(), os("--keep")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0);
    assert_eq!(std::fs::read(&mbox).unwrap(), before);
    // "Until deleted here" cannot see an mbox: refused before connecting.
    let output = fetch(&[os("--mbox"), mbox.as_os_str(), os("--until-deleted-here")]);
    assert_eq!(output.status.code(), Some(10), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("needs a Maildir"));
    let _ = std::fs::remove_dir_all(dir);
}

/// An MDA script that records what it got: one file per message, and its arguments.
fn mda_script(dir: &Path) -> (String, PathBuf) {
    let got = dir.join("got");
    std::fs::create_dir_all(&got).unwrap();
    let script = dir.join("mda.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# usage: mda.sh DIR SENDER RECIPIENT\n\
         file=$(mktemp \"$1/msg.XXXXXXXX\") || exit 75\n\
         cat > \"$file\" || exit 75\n\
         echo \"$2 $3\" >> \"$1.log\"\n",
    )
    .unwrap();
    let command = format!("sh '{}' '{}' '%F' %T", script.display(), got.display());
    (command, got)
}

/// Message-IDs of the files an MDA script recorded, with how often each came.
fn recorded(got: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(got).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        *ids.entry(message_id(&bytes)).or_default() += 1;
    }
    ids
}

/// Issue 18: an MDA gets every message on its standard input, byte for byte, with %F and %T;
/// only exit status 0 counts: a failing MDA stops the fetch, nothing is deleted, and the
/// next run hands over only what was not delivered.
#[test]
fn mda_script_records_what_it_got_and_only_exit_0_counts() {
    let _mia = lock_mia();
    let dir = scratch("mda");
    let state = dir.join("mda.state");
    let (command, got) = mda_script(&dir);
    // Refuses message 7, after 6 were delivered.
    let picky = format!(
        "t=$(mktemp) && cat > \"$t\" && if grep -q '^Message-ID: <mia.7@' \"$t\"; then \
         rm -f \"$t\"; exit 75; else {command} < \"$t\"; s=$?; rm -f \"$t\"; exit $s; fi"
    );
    let output = fetch(&[
        os("--mda"),
        os(&picky),
        os("--state"),
        state.as_os_str(),
        os("--delete"),
    ]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("exit status: 75"), "{stderr}");
    assert_eq!(output.status.code(), Some(7), "{stderr}");
    assert_eq!(
        recorded(&got).len(),
        6,
        "messages 1 to 6 before the refusal"
    );
    assert_eq!(server_ids(), all_ids(), "a failed fetch deletes nothing");

    let output = fetch(&[
        os("--mda"),
        os(&command),
        os("--state"),
        state.as_os_str(),
        os("--delete"),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 94, "only what was not delivered");
    let ids = recorded(&got);
    assert_eq!(ids.keys().cloned().collect::<BTreeSet<_>>(), all_ids());
    assert!(ids.values().all(|&n| n == 1), "none twice");
    assert!(server_ids().is_empty(), "all deleted once delivered");
    // Byte for byte (LF line ends), and the placeholders.
    let generated: BTreeMap<String, Vec<u8>> = {
        let mut expected = BTreeMap::new();
        for entry in std::fs::read_dir(&got).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            expected.insert(message_id(&bytes), bytes);
        }
        expected
    };
    let sample = &generated["<mia.11@testground.example>"];
    assert!(sample.starts_with(b"Return-Path: <sender@testground.example>\n"));
    assert!(!sample.contains(&b'\r'));
    let log = std::fs::read_to_string(dir.join("got.log")).unwrap();
    assert_eq!(log.lines().count(), 100);
    assert!(
        log.lines().all(|l| l == "sender@testground.example mia"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 18: the account names its delivery target; `mailctl fetch -a FILE` and
/// `mailctl fetch -a NAME` (accounts file) need no `--maildir`; a flag still wins.
#[test]
fn the_account_names_its_delivery_target() {
    let _mia = lock_mia();
    let dir = scratch("account-delivery");
    let mbox = dir.join("inbox");
    let account = dir.join("mia.toml");
    std::fs::write(
        &account,
        format!(
            r#"address = "mia@testground.example"
retention = "until-deleted-locally"

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

[delivery]
mbox = "{mbox}"

[tls]
extra_ca_file = "{ca}"
"#,
            mbox = mbox.display(),
            ca = mail_testground::ca_file().display()
        ),
    )
    .unwrap();
    let fetch_account = |extra: &[&std::ffi::OsStr]| {
        run(mailctl()
            .arg("fetch")
            .arg("-a")
            .arg(&account)
            .args(extra)
            .env("TG_PASSWORD", MIA.password))
    };
    // The account's retention needs a Maildir: refused with the mbox of the account.
    let output = fetch_account(&[]);
    assert_eq!(output.status.code(), Some(10), "{}", text(&output.stderr));
    let output = fetch_account(&[os("--keep")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 100);
    assert_eq!(read_mboxrd(&mbox).len(), 100);
    // A Maildir given on the command line wins over the account's mbox, and "until
    // deleted here" from the account applies to it.
    let maildir = dir.join("Maildir");
    let output = fetch_account(&[os("--maildir"), maildir.as_os_str()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 100);
    let (first, _) = maildir_files(&maildir).into_iter().next().unwrap();
    std::fs::remove_file(first).unwrap();
    let output = fetch_account(&[os("--maildir"), maildir.as_os_str()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(server_ids().len(), 99);

    // A named account in the accounts file, with a Maildir as its delivery: `fetch -a mia`.
    let named_maildir = dir.join("Named");
    let account_toml = std::fs::read_to_string(&account)
        .unwrap()
        .replace("retention = \"until-deleted-locally\"\n", "")
        .replace(
            &format!("[delivery]\nmbox = \"{}\"", mbox.display()),
            &format!("[delivery]\nmaildir = \"{}\"", named_maildir.display()),
        );
    let mut accounts = String::from("default = \"mia\"\n\n[accounts.mia]\n");
    for line in account_toml.lines() {
        // Sub-tables of the account become [accounts.mia.NAME].
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            accounts.push_str("[accounts.mia.");
            accounts.push_str(name);
            accounts.push_str("]\n");
        } else {
            accounts.push_str(line);
            accounts.push('\n');
        }
    }
    let config = dir.join("accounts.toml");
    std::fs::write(&config, accounts).unwrap();
    let output = run(mailctl()
        .args(["fetch", "-a", "mia", "--config"])
        .arg(&config)
        .env("TG_PASSWORD", MIA.password));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 99);
    assert_eq!(maildir_files(&named_maildir).len(), 99);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `mailctl fetch` with `args` (which delete on the server) over and over until a run
/// succeeds and the server is empty, the n-th run SIGKILLed after a random part of n quarters of `window`
/// unless it finished first (so early runs are mostly killed, anywhere from login to QUIT,
/// and the round always ends); then one more run that must succeed with nothing to do.
/// Returns (runs, kills).
fn killed_until_done(
    args: &[&std::ffi::OsStr],
    window: Duration,
    seed: &mut u64,
    log: &Path,
    mut after_run: impl FnMut(u32),
) -> (u32, u32) {
    let window = u64::try_from(window.as_millis()).unwrap_or(1000).max(10);
    let mut runs = 0;
    let mut kills = 0;
    loop {
        runs += 1;
        assert!(runs < 100, "no completion after {runs} runs");
        let delay = Duration::from_millis(1 + next(seed) % (window * u64::from(runs) / 4 + 1));
        match run_or_kill_logged(&mut fetch_command(args), delay, Some(log)) {
            None => kills += 1,
            // Only a run that saw its QUIT confirmed may end the round: after a killed run,
            // Dovecot may still be winding that session up.
            Some(true) if server_ids().is_empty() => break,
            Some(_) => {}
        }
        after_run(kills);
    }
    let output = fetch(args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fetched_count(&output), 0);
    (runs, kills)
}

/// How long a whole fetch of mia's 100 messages takes (into a throwaway Maildir), so the
/// kill points spread over login, retrieval, delivery, DELE and QUIT.
fn full_run_time(dir: &Path) -> Duration {
    let started = Instant::now();
    let output = fetch(&[
        os("--maildir"),
        dir.join("timing").as_os_str(),
        os("--keep"),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    started.elapsed()
}

/// Issue 18: the mbox, killed with SIGKILL at many points (rounds over a fresh mailbox until
/// at least 20 kills landed): every message in the mbox exactly once, byte for byte, no torn
/// message left, the dot lock gone, Python reads it.
#[test]
fn mbox_fetch_killed_at_many_points_loses_and_duplicates_nothing() {
    let _mia = lock_mia();
    let dir = scratch("mbox-kill");
    let window = full_run_time(&dir);
    let mut seed = 0xB0B5_1EED_u64;
    let (mut total_runs, mut total_kills, mut rounds) = (0, 0, 0);
    while total_kills < 20 {
        rounds += 1;
        assert!(rounds <= 12, "only {total_kills} kills in {rounds} rounds");
        mail_testground::reset_mailboxes(&[MIA]);
        let server = server_messages();
        let mbox = dir.join(format!("inbox-{rounds}"));
        let (runs, kills) = killed_until_done(
            &[os("--mbox"), mbox.as_os_str(), os("--delete")],
            window,
            &mut seed,
            &dir.join("stderr.log"),
            |_| {},
        );
        total_runs += runs;
        total_kills += kills;
        let messages = read_mboxrd(&mbox);
        let mut seen = BTreeMap::new();
        for message in &messages {
            let id = message_id(message);
            assert_eq!(server.get(&id), Some(message), "{id} complete and intact");
            *seen.entry(id).or_insert(0) += 1;
        }
        let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            duplicated.is_empty(),
            "round {rounds}: duplicated {duplicated:?}"
        );
        assert_eq!(seen.len(), 100, "round {rounds}: none lost");
        assert!(!dir.join(format!("inbox-{rounds}.lock")).exists());
        let (ids, _) = python_mailbox(&mbox);
        assert_eq!(ids.len(), 100);
    }
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let recoveries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("recovered after"))
        .collect();
    let torn = recoveries
        .iter()
        .filter(|l| !l.contains(" 0 bytes of a torn"))
        .count();
    eprintln!(
        "mbox kill test: {rounds} rounds, {total_runs} runs, {total_kills} SIGKILLs (window \
         {} ms): 100 messages each round, none lost, none duplicated; {} runs recovered an \
         interrupted append, {torn} of them cut a torn message off",
        window.as_millis(),
        recoveries.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 18: the MDA, killed with SIGKILL at many points: nothing lost, and at most one
/// message handed over again per kill (the one in flight: its MDA was running, and runs on to
/// the end by itself, or had exited, when the kill came before its journal record).
#[test]
fn mda_fetch_killed_at_many_points_loses_nothing_repeats_at_most_one_per_kill() {
    let _mia = lock_mia();
    let dir = scratch("mda-kill");
    let window = full_run_time(&dir);
    let mut seed = 0x00DD_BA11_u64;
    let (mut total_runs, mut total_kills, mut total_repeats, mut rounds) = (0, 0, 0, 0);
    while total_kills < 20 {
        rounds += 1;
        assert!(rounds <= 12, "only {total_kills} kills in {rounds} rounds");
        mail_testground::reset_mailboxes(&[MIA]);
        let round = dir.join(format!("round-{rounds}"));
        std::fs::create_dir_all(&round).unwrap();
        let (command, got) = mda_script(&round);
        let state = round.join("state");
        let (runs, kills) = killed_until_done(
            &[
                os("--mda"),
                os(&command),
                os("--state"),
                state.as_os_str(),
                os("--delete"),
            ],
            window,
            &mut seed,
            &dir.join("stderr.log"),
            // After every run: the repeats so far never outnumber the kills so far (a kill
            // repeats at most the one message in flight, on the run after it).
            |kills| {
                let repeats: usize = recorded(&got).values().map(|n| n - 1).sum();
                assert!(
                    repeats <= kills as usize,
                    "{repeats} repeats after {kills} kills"
                );
            },
        );
        // A killed mailctl's MDA child may still be writing: wait until every recorded
        // file is complete (the script appends its log line last).
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&got).unwrap().count()
            > std::fs::read_to_string(round.join("got.log")).map_or(0, |l| l.lines().count())
        {
            assert!(Instant::now() < until, "an MDA did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ids = recorded(&got);
        let repeats: u32 = ids.values().map(|&n| u32::try_from(n - 1).unwrap()).sum();
        assert_eq!(
            ids.keys().cloned().collect::<BTreeSet<_>>(),
            all_ids(),
            "round {rounds}: none lost"
        );
        assert!(
            repeats <= kills,
            "round {rounds}: {repeats} repeated with {kills} kills"
        );
        total_runs += runs;
        total_kills += kills;
        total_repeats += repeats;
    }
    eprintln!(
        "MDA kill test: {rounds} rounds, {total_runs} runs, {total_kills} SIGKILLs (window {} \
         ms): none lost, {total_repeats} messages handed over twice",
        window.as_millis()
    );
    let _ = std::fs::remove_dir_all(dir);
}
