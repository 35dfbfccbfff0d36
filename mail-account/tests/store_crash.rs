//! The kill -9 test of `mail_account::store`.
//!
//! The test re-runs its own executable as a child (selected by an environment variable). The
//! child is one fetch session against a simulated POP3 server (a list of UIDLs in a file; the
//! message bytes are derived from the UIDL): open the store (reconcile), forget what the
//! server no longer lists, write every unseen message in 4 KiB chunks and commit them in
//! batches (of a random size per run, 1 to 12; a batch of 1 is `Incoming::commit`), then
//! delete after download (the server applies the deletions atomically at "QUIT", as POP3
//! does) and mark them deleted. The parent kills the child with SIGKILL at random points
//! (after a random number of progress lines plus a random delay of up to a few milliseconds,
//! so kills land inside `open`, inside message writes, between finished messages and their
//! batch's commit, between the syncs and renames of a commit, and between QUIT and
//! `mark_deleted`), reruns it until it completes, and checks that every message is in the
//! Maildir exactly once, intact, and that the server is empty.
//!
//! `MAIL_STORE_CRASH_SEED=<n>` replays a run; `MAIL_STORE_CRASH_KILLS=<n>` asks for more
//! kills (default 40).

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mail_account::store::{RetentionPolicy, Store};

const CHILD_ENV: &str = "MAIL_STORE_CRASH_CHILD";
const BATCH_ENV: &str = "MAIL_STORE_CRASH_BATCH";
const TEST_NAME: &str = "store_sigkill_at_random_points_leaves_every_message_exactly_once";
const FIRST_BATCH: usize = 100;

#[test]
fn store_sigkill_at_random_points_leaves_every_message_exactly_once() {
    if let Some(dir) = env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    } else {
        parent();
    }
}

// ------------------------------------------------------------------------------------------
// The simulated server.

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
/// about 120 KB.
fn message(uidl: &str) -> Vec<u8> {
    let seed = uidl.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)));
    let len = 100 + (seed % 120_000) as usize;
    let mut m = format!("X-Uidl: {uidl}\nSubject: message {uidl}\n\n").into_bytes();
    let mut x = seed;
    while m.len() < len {
        x = mix(x);
        m.extend_from_slice(format!("{x:016x}\n").as_bytes());
    }
    m
}

// ------------------------------------------------------------------------------------------
// The child: one fetch session.

fn child(dir: &Path) {
    let (mut store, report) = Store::open(dir.join("Maildir"), dir.join("state/account.journal"))
        .expect("open the store");
    println!(
        "@open moved={} delivered={} refetch={} tmp_removed={} torn={}",
        report.moved_to_new.len(),
        report.already_delivered.len(),
        report.refetch.len(),
        report.tmp_removed.len(),
        report.torn_tail_bytes
    );
    let server = server_list(dir);
    store.forget_missing(&server).expect("forget_missing");
    let unseen: Vec<String> = store
        .unseen(&server)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let batch_size: usize = env::var(BATCH_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut batch = Vec::new();
    let count = unseen.len();
    for (i, uidl) in unseen.into_iter().enumerate() {
        let body = message(&uidl);
        let mut incoming = store.begin(&uidl, body.len() as u64).expect("begin");
        for chunk in body.chunks(4096) {
            incoming.write_all(chunk).expect("write");
        }
        if batch_size == 1 {
            incoming.commit().expect("commit");
            println!("@stored {uidl}");
            continue;
        }
        batch.push(incoming.finish().expect("finish"));
        println!("@finished {uidl}");
        if batch.len() == batch_size || i + 1 == count {
            let committed: Vec<String> = batch.iter().map(|f| f.uidl().to_owned()).collect();
            store
                .commit_batch(std::mem::take(&mut batch))
                .expect("commit_batch");
            for uidl in committed {
                println!("@stored {uidl}");
            }
        }
    }
    let doomed = store.to_delete(RetentionPolicy::DeleteAfterDownload, SystemTime::now());
    println!("@dele {}", doomed.len());
    let remaining: Vec<String> = server.into_iter().filter(|u| !doomed.contains(u)).collect();
    set_server_list(dir, &remaining);
    println!("@quit");
    store.mark_deleted(&doomed).expect("mark_deleted");
    println!("@done");
}

// ------------------------------------------------------------------------------------------
// The parent: kill, rerun, verify.

/// When the parent kills the child.
#[derive(Clone, Copy)]
enum Trigger {
    Never,
    /// After this many progress lines.
    Lines(u64),
    /// Once this progress line was seen.
    Event(&'static str),
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = mix(self.0.wrapping_add(0x9E37_79B9_7F4A_7C15));
        self.0 % n
    }
}

/// Every message in `new/` and `cur/`, by the UIDL its header names.
fn maildir_messages(root: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut found: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for sub in ["new", "cur"] {
        for entry in fs::read_dir(root.join(sub)).unwrap() {
            let bytes = fs::read(entry.unwrap().path()).unwrap();
            let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
            let uidl = String::from_utf8_lossy(first)
                .strip_prefix("X-Uidl: ")
                .unwrap_or("<no header>")
                .to_owned();
            found.entry(uidl).or_default().push(bytes);
        }
    }
    found
}

/// The mail reader: moves one message from `new/` to `cur/` and flags it seen.
fn reader_moves_one(maildir: &Path, rng: &mut Rng) {
    let new = maildir.join("new");
    let Ok(entries) = fs::read_dir(&new) else {
        return;
    };
    let names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    if names.is_empty() {
        return;
    }
    let name = &names[rng.below(names.len() as u64) as usize];
    let _ = fs::rename(
        new.join(name),
        maildir.join("cur").join(format!("{name}:2,S")),
    );
}

fn parent() {
    let seed = env::var("MAIL_STORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let target_kills: u32 = env::var("MAIL_STORE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rng = Rng(seed);
    let dir: PathBuf = env::temp_dir().join(format!("mail-store-crash-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();

    let mut ever: Vec<String> = (0..FIRST_BATCH).map(|i| format!("msg-{i:05}")).collect();
    set_server_list(&dir, &ever);

    let exe = env::current_exe().unwrap();
    let debug = env::var_os("MAIL_STORE_CRASH_DEBUG").is_some();
    let mut kills = 0u32;
    let mut runs = 0u32;
    let mut killed_in: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut recovered = [0u64; 5]; // moved, delivered, refetch, tmp_removed, torn bytes
    loop {
        runs += 1;
        assert!(runs < 2000, "no progress after {runs} runs");
        let finishing = kills >= target_kills;
        // Between sessions, new mail arrives now and then.
        if !finishing && ever.len() < 400 && rng.below(4) == 0 {
            let next = ever.len();
            let batch: Vec<String> = (next..next + 5).map(|i| format!("msg-{i:05}")).collect();
            let mut list = server_list(&dir);
            list.extend(batch.iter().cloned());
            set_server_list(&dir, &list);
            ever.extend(batch);
        }
        // When to kill: after some progress lines (inside open or a message), or right
        // after the DELE decision, or right after the QUIT (before/inside mark_deleted).
        let (kill_after, max_delay_us) = if finishing {
            (Trigger::Never, 0)
        } else {
            match rng.below(20) {
                0..=11 => (Trigger::Lines(rng.below(6)), 3000),
                12..=15 => (Trigger::Event("dele"), 400),
                _ => (Trigger::Event("quit"), 400),
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
        let mut seen = 0u64;
        let mut phase = "start";
        let mut eof = false;
        loop {
            let fire = match kill_after {
                Trigger::Never => false,
                Trigger::Lines(n) => seen >= n,
                Trigger::Event(e) => phase == e,
            };
            if fire {
                break;
            }
            let Some(line) = lines.next() else {
                eof = true;
                break;
            };
            let line = line.unwrap();
            if debug {
                eprintln!("run {runs}: {line}");
            }
            // libtest may print its own text before ours on the same line.
            let Some(at) = line.find('@') else {
                continue;
            };
            let event = &line[at + 1..];
            seen += 1;
            phase = match event.split(' ').next().unwrap() {
                "open" => {
                    let n = event
                        .split(' ')
                        .skip(1)
                        .map(|kv| kv.split('=').nth(1).unwrap().parse::<u64>().unwrap());
                    for (total, n) in recovered.iter_mut().zip(n) {
                        *total += n;
                    }
                    "open"
                }
                "stored" | "finished" => "storing",
                "dele" => "dele",
                "quit" => "quit",
                _ => "done",
            };
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
                if rng.below(3) == 0 {
                    reader_moves_one(&dir.join("Maildir"), &mut rng);
                }
                continue;
            }
        };
        drop(lines);
        assert!(status.success(), "child failed: {status} (seed {seed})");
        if finishing {
            break;
        }
    }

    // Verify.
    let found = maildir_messages(&dir.join("Maildir"));
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
    let tmp_left = fs::read_dir(dir.join("Maildir/tmp")).unwrap().count();
    println!(
        "store crash test (seed {seed}): {} messages, {kills} SIGKILLs over {runs} runs \
         (killed during: {killed_in:?}); losses {losses}, duplicates {duplicates}, \
         damaged {damaged}, unknown files {strangers}; server left {server_left}, tmp left \
         {tmp_left}; recovery: {} moved tmp->new, {} found already delivered, {} refetched, \
         {} orphan tmp files removed, {} torn journal bytes",
        ever.len(),
        recovered[0],
        recovered[1],
        recovered[2],
        recovered[3],
        recovered[4],
    );
    assert_eq!(
        (losses, duplicates, damaged, strangers),
        (0, 0, 0, 0),
        "seed {seed}"
    );
    assert_eq!(server_left, 0, "the server mailbox is empty (seed {seed})");
    assert_eq!(tmp_left, 0, "tmp/ is empty (seed {seed})");
    assert!(kills >= target_kills);
    fs::remove_dir_all(&dir).unwrap();
}
