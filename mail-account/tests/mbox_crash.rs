//! The kill -9 test of the mbox delivery (`mail_account::store::Mbox`), like the Maildir
//! store's `store_crash.rs`.
//!
//! The test re-runs its own executable as a child (selected by an environment variable). The
//! child is one fetch session against a simulated POP3 server (a list of UIDLs in a file; the
//! message bytes, with `From ` lines to quote, are derived from the UIDL): open the mbox
//! delivery (which settles an interrupted append), forget what the server no longer lists,
//! stage every unseen message in 4 KiB chunks and commit them in batches (a random size per
//! run, 1 to 12), then delete after download (the server applies the deletions at "QUIT")
//! and mark them deleted. The parent kills the child with SIGKILL after a random number of
//! progress lines plus a random delay, so kills land inside the journal write, the append,
//! its fsync and the final records, reruns it until it completes, and checks that the mbox
//! holds every message exactly once, intact, parses cleanly (here and in Python's
//! `mailbox`), and that the server is empty.
//!
//! `MAIL_MBOX_CRASH_SEED=<n>` replays a run; `MAIL_MBOX_CRASH_KILLS=<n>` asks for more
//! kills (default 40).

#![cfg(unix)]

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mail_account::deliver::Delivery;
use mail_account::store::{Mbox, RetentionPolicy};

const CHILD_ENV: &str = "MAIL_MBOX_CRASH_CHILD";
const BATCH_ENV: &str = "MAIL_MBOX_CRASH_BATCH";
const TEST_NAME: &str = "mbox_sigkill_at_random_points_leaves_every_message_exactly_once";

#[test]
fn mbox_sigkill_at_random_points_leaves_every_message_exactly_once() {
    if let Some(dir) = env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    } else {
        parent();
    }
}

fn server_list(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("server.list"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Replaces the server's list atomically (a POP3 server applies all DELEs at QUIT, or none).
fn set_server_list(dir: &Path, uidls: &[String]) {
    let tmp = dir.join("server.list.tmp");
    let mut text = uidls.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join("server.list")).unwrap();
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// The bytes of the message `uidl`: a header naming it and a pseudo-random body of 100 B to
/// about 120 KB (or 2 to 3 MB), every 50th line of it a `From ` line (quoted or not) the mbox must quote.
fn message(uidl: &str) -> Vec<u8> {
    let seed = uidl.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)));
    // One in ten is 2 to 3 MB: appending it takes long enough for kills to land inside.
    let len = if seed % 10 == 0 {
        2_000_000 + (seed % 1_000_000) as usize
    } else {
        100 + (seed % 120_000) as usize
    };
    let mut m = format!("X-Uidl: {uidl}\nSubject: message {uidl}\n\n").into_bytes();
    let mut x = seed;
    let mut n = 0u64;
    while m.len() < len {
        x = mix(x);
        n += 1;
        let quote = ">".repeat((x % 3) as usize);
        if n.is_multiple_of(50) {
            m.extend_from_slice(format!("{quote}From {x:016x}\n").as_bytes());
        } else {
            m.extend_from_slice(format!("{x:016x}\n").as_bytes());
        }
    }
    m
}

fn child(dir: &Path) {
    let (mut mbox, report) =
        Mbox::open(dir.join("inbox"), dir.join(".inbox.state")).expect("open the mbox");
    println!(
        "@open completed={} refetch={} truncated={} torn={}",
        report.completed.len(),
        report.refetch.len(),
        report.truncated_bytes,
        report.torn_journal_bytes
    );
    let server = server_list(dir);
    mbox.forget_missing(&server).expect("forget_missing");
    let unseen: Vec<String> = server
        .iter()
        .filter(|u| !mbox.is_known(u))
        .cloned()
        .collect();
    let batch_size: usize = env::var(BATCH_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut batch = Vec::new();
    let count = unseen.len();
    for (i, uidl) in unseen.into_iter().enumerate() {
        let body = message(&uidl);
        let mut staging = mbox
            .stage(&uidl, body.len() as u64, SystemTime::now())
            .expect("stage");
        for chunk in body.chunks(4096) {
            Mbox::write_chunk(&mut staging, chunk).expect("write");
        }
        batch.push(mbox.finish(staging).expect("finish"));
        println!("@finished {uidl}");
        if batch.len() == batch_size || i + 1 == count {
            println!("@commit");
            for delivered in mbox.commit(std::mem::take(&mut batch)).expect("commit") {
                println!("@stored {}", delivered.uidl);
            }
        }
    }
    let doomed = mbox.to_delete(RetentionPolicy::DeleteAfterDownload, SystemTime::now());
    println!("@dele {}", doomed.len());
    let remaining: Vec<String> = server.into_iter().filter(|u| !doomed.contains(u)).collect();
    set_server_list(dir, &remaining);
    println!("@quit");
    mbox.mark_deleted(&doomed).expect("mark_deleted");
    println!("@done");
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = mix(self.0.wrapping_add(0x9E37_79B9_7F4A_7C15));
        self.0 % n
    }
}

/// The mbox's messages (mboxrd quoting undone), by the UIDL their header names, and whether
/// every message had its `From ` line and blank line.
fn mbox_messages(path: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let data = fs::read(path).unwrap_or_default();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            messages.push(Vec::new());
            continue;
        }
        let current = messages
            .last_mut()
            .expect("the mbox starts with a From line");
        let quoted = line.iter().position(|&b| b != b'>').unwrap_or(0);
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            current.extend_from_slice(&line[1..]);
        } else {
            current.extend_from_slice(line);
        }
    }
    let mut found: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for mut m in messages {
        assert_eq!(m.pop(), Some(b'\n'), "a blank line after each message");
        let first = m.split(|&b| b == b'\n').next().unwrap_or_default();
        let uidl = String::from_utf8_lossy(first)
            .strip_prefix("X-Uidl: ")
            .unwrap_or("<no header>")
            .to_owned();
        found.entry(uidl).or_default().push(m);
    }
    found
}

fn parent() {
    let seed = env::var("MAIL_MBOX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let target_kills: u32 = env::var("MAIL_MBOX_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rng = Rng(seed);
    let dir: PathBuf = env::temp_dir().join(format!("mail-mbox-crash-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut ever: Vec<String> = (0..100).map(|i| format!("msg-{i:05}")).collect();
    set_server_list(&dir, &ever);

    let exe = env::current_exe().unwrap();
    let mut kills = 0u32;
    let mut runs = 0u32;
    let mut killed_in: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut recovered = [0u64; 4]; // completed, refetch, truncated bytes, torn journal bytes
    let mut truncations = 0u32;
    loop {
        runs += 1;
        assert!(runs < 2000, "no progress after {runs} runs");
        let finishing = kills >= target_kills;
        if !finishing && ever.len() < 400 && rng.below(4) == 0 {
            let next = ever.len();
            let batch: Vec<String> = (next..next + 5).map(|i| format!("msg-{i:05}")).collect();
            let mut list = server_list(&dir);
            list.extend(batch.iter().cloned());
            set_server_list(&dir, &list);
            ever.extend(batch);
        }
        // Mostly right after a commit starts (inside the journal write, the append or its
        // fsync), else after some progress lines, or around DELE/QUIT.
        let (kill_at, max_delay_us): (Option<(&str, u64)>, u64) = if finishing {
            (None, 0)
        } else {
            match rng.below(20) {
                0..=13 => (Some(("commit", rng.below(3))), 6000),
                14..=16 => (Some(("finished", rng.below(8))), 3000),
                17 => (Some(("dele", 0)), 400),
                _ => (Some(("quit", 0)), 400),
            }
        };
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(BATCH_ENV, (1 + rng.below(12)).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut phase = "start";
        let mut eof = false;
        loop {
            if let Some((event, after)) = kill_at
                && counts.get(event).copied().unwrap_or(0) > after
            {
                break;
            }
            let Some(line) = lines.next() else {
                eof = true;
                break;
            };
            let line = line.unwrap();
            let Some(at) = line.find('@') else {
                continue;
            };
            let event = line[at + 1..].to_owned();
            let name = event.split(' ').next().unwrap().to_owned();
            if name == "open" {
                let values = event
                    .split(' ')
                    .skip(1)
                    .map(|kv| kv.split('=').nth(1).unwrap().parse::<u64>().unwrap());
                for (i, (total, n)) in recovered.iter_mut().zip(values).enumerate() {
                    *total += n;
                    if i == 2 && n > 0 {
                        truncations += 1;
                    }
                }
            }
            phase = match name.as_str() {
                "open" => "open",
                "finished" => "staging",
                "commit" | "stored" => "commit",
                "dele" => "dele",
                "quit" => "quit",
                _ => "done",
            };
            *counts.entry(name).or_default() += 1;
        }
        let status = if eof {
            child.wait().unwrap()
        } else {
            thread::sleep(Duration::from_micros(rng.below(max_delay_us + 1)));
            if let Some(status) = child.try_wait().unwrap() {
                status
            } else {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                *killed_in.entry(phase).or_default() += 1;
                continue;
            }
        };
        drop(lines);
        assert!(status.success(), "child failed: {status} (seed {seed})");
        if finishing {
            break;
        }
    }

    let found = mbox_messages(&dir.join("inbox"));
    let mut losses = 0usize;
    let mut duplicates = 0usize;
    let mut damaged = 0usize;
    for uidl in &ever {
        match found.get(uidl) {
            None => losses += 1,
            Some(copies) => {
                duplicates += copies.len() - 1;
                damaged += copies.iter().filter(|c| **c != message(uidl)).count();
            }
        }
    }
    let strangers = found.keys().filter(|u| !ever.contains(u)).count();
    let server_left = server_list(&dir).len();
    println!(
        "mbox crash test (seed {seed}): {} messages, {kills} SIGKILLs over {runs} runs \
         (killed during: {killed_in:?}); losses {losses}, duplicates {duplicates}, damaged \
         {damaged}, unknown {strangers}; server left {server_left}; recovery: {} appends \
         found complete, {} refetched, {truncations} torn appends cut off ({} bytes), {} torn \
         journal bytes",
        ever.len(),
        recovered[0],
        recovered[1],
        recovered[2],
        recovered[3],
    );
    assert_eq!(
        (losses, duplicates, damaged, strangers),
        (0, 0, 0, 0),
        "seed {seed}"
    );
    assert_eq!(server_left, 0, "the server mailbox is empty (seed {seed})");
    assert!(!dir.join("inbox.lock").exists(), "no dot lock left");
    assert!(kills >= target_kills);
    // Python's mailbox module reads the same number of messages.
    let output = Command::new("python3")
        .args([
            "-c",
            "import mailbox, sys; print(len(mailbox.mbox(sys.argv[1], create=False)))",
        ])
        .arg(dir.join("inbox"))
        .output()
        .expect("python3 runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        ever.len().to_string()
    );
    fs::remove_dir_all(&dir).unwrap();
}
