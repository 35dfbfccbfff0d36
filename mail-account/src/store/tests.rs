//! Unit tests of the store: each crash point, reconciliation cases, and random operation
//! sequences against a model (proptest).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;

/// A scratch directory, removed when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(what: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mail-store-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn maildir(&self) -> PathBuf {
        self.0.join("Maildir")
    }
    fn journal(&self) -> PathBuf {
        self.0.join("state").join("account.journal")
    }
    fn open(&self) -> (Store, ReconcileReport) {
        Store::open(self.maildir(), self.journal()).unwrap()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A message that names its UIDL in a header; `len` bytes of body.
fn message(uidl: &str, len: usize) -> Vec<u8> {
    let mut m = format!("X-Uidl: {uidl}\nSubject: test\n\n").into_bytes();
    m.extend((0..len).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27]));
    m
}

/// Every message file in `new/` and `cur/`, by the UIDL it names, with the contents.
fn maildir_messages(root: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut found: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(dir) = fs::read_dir(root.join(sub)) else {
            continue;
        };
        for entry in dir {
            let bytes = fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let uidl = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("X-Uidl: "))
                .expect("a test message")
                .to_owned();
            found.entry(uidl).or_default().push(bytes);
        }
    }
    found
}

fn tmp_files(root: &Path) -> Vec<String> {
    let Ok(dir) = fs::read_dir(root.join("tmp")) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn store_message(store: &mut Store, uidl: &str, body: &[u8]) -> PathBuf {
    let mut incoming = store.begin(uidl, body.len() as u64).unwrap();
    for chunk in body.chunks(1000) {
        incoming.write_all(chunk).unwrap();
    }
    incoming.commit().unwrap()
}

#[test]
fn store_and_reopen() {
    let dir = TestDir::new("basic");
    let (mut store, report) = dir.open();
    assert!(report.journal_created && report.is_clean());
    for root in ["tmp", "new", "cur"] {
        assert!(dir.maildir().join(root).is_dir());
    }
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| message(&format!("u{i}"), i * 5000))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let path = store_message(&mut store, &format!("u{i}"), body);
        assert_eq!(path.parent().unwrap(), dir.maildir().join("new"));
        assert_eq!(&fs::read(&path).unwrap(), body);
    }
    let entry = store.entry("u2").unwrap();
    assert_eq!(entry.state, EntryState::Delivered);
    assert_eq!(entry.bytes, bodies[2].len() as u64);
    assert_eq!(entry.crc32, Crc32::of(&bodies[2]));
    assert!(matches!(
        store.begin("u1", 1),
        Err(StoreError::AlreadyKnown(_))
    ));
    assert!(matches!(
        store.begin("", 1),
        Err(StoreError::InvalidUidl(_))
    ));
    assert_eq!(store.unseen(&["u0", "x", "u2", "y"]), ["x", "y"]);
    drop(store);

    let (store, report) = dir.open();
    assert!(report.is_clean() && !report.journal_created, "{report:?}");
    assert_eq!(store.entries().len(), 3);
    assert!(store.is_known("u0"));
    assert!(tmp_files(&dir.maildir()).is_empty());
}

#[test]
fn second_open_is_locked() {
    let dir = TestDir::new("lock");
    let (store, _) = dir.open();
    let err = Store::open(dir.maildir(), dir.journal()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    drop(store);
    let _reopened = dir.open();
}

#[test]
fn drop_without_commit_removes_tmp() {
    let dir = TestDir::new("abort");
    let (mut store, _) = dir.open();
    let mut incoming = store.begin("u1", 10).unwrap();
    incoming.write_all(b"partial").unwrap();
    assert_eq!(tmp_files(&dir.maildir()).len(), 1);
    drop(incoming);
    assert!(tmp_files(&dir.maildir()).is_empty());
    assert!(!store.is_known("u1"));
    store_message(&mut store, "u1", &message("u1", 10));
}

#[test]
fn crash_mid_write_is_refetched() {
    let dir = TestDir::new("midwrite");
    let (mut store, _) = dir.open();
    let mut incoming = store.begin("u1", 10).unwrap();
    incoming.write_all(b"partial").unwrap();
    incoming.crash();
    drop(store);
    let (store, report) = dir.open();
    assert_eq!(report.tmp_removed.len(), 1, "{report:?}");
    assert!(!store.is_known("u1"));
    assert!(tmp_files(&dir.maildir()).is_empty());
}

fn crash_commit(dir: &TestDir, point: CrashPoint) -> Vec<u8> {
    let (mut store, _) = dir.open();
    store.crash_at = Some(point);
    let body = message("u1", 3000);
    let mut incoming = store.begin("u1", 3000).unwrap();
    incoming.write_all(&body).unwrap();
    assert!(matches!(incoming.commit(), Err(StoreError::SimulatedCrash)));
    body
}

#[test]
fn crash_after_file_sync_is_refetched() {
    let dir = TestDir::new("c1");
    crash_commit(&dir, CrashPoint::FileSynced);
    let (store, report) = dir.open();
    assert_eq!(report.tmp_removed.len(), 1, "{report:?}");
    assert!(!store.is_known("u1"));
    assert!(maildir_messages(&dir.maildir()).is_empty());
}

#[test]
fn crash_after_stored_record_is_moved_to_new() {
    let dir = TestDir::new("c2");
    let body = crash_commit(&dir, CrashPoint::Journaled);
    let (store, report) = dir.open();
    assert_eq!(report.moved_to_new, ["u1"], "{report:?}");
    assert_eq!(store.entry("u1").unwrap().state, EntryState::Delivered);
    assert_eq!(maildir_messages(&dir.maildir())["u1"], [body]);
    assert!(tmp_files(&dir.maildir()).is_empty());
}

#[test]
fn crash_after_rename_and_reader_moved_it_to_cur() {
    let dir = TestDir::new("c3");
    let body = crash_commit(&dir, CrashPoint::Renamed);
    // The mail reader saw it, moved it to cur/ and flagged it seen.
    let new = dir.maildir().join("new");
    let name = fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let name = name.into_string().unwrap();
    fs::rename(
        new.join(&name),
        dir.maildir().join("cur").join(format!("{name}:2,S")),
    )
    .unwrap();
    let (store, report) = dir.open();
    assert_eq!(report.already_delivered, ["u1"], "{report:?}");
    assert_eq!(store.entry("u1").unwrap().state, EntryState::Delivered);
    assert_eq!(maildir_messages(&dir.maildir())["u1"], [body]);
}

#[test]
fn damaged_tmp_file_is_refetched() {
    let dir = TestDir::new("damaged");
    crash_commit(&dir, CrashPoint::Journaled);
    let tmp = tmp_files(&dir.maildir());
    let path = dir.maildir().join("tmp").join(&tmp[0]);
    // Same length, different bytes: only the CRC can tell.
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 1;
    fs::write(&path, bytes).unwrap();
    let (store, report) = dir.open();
    assert_eq!(report.refetch, ["u1"], "{report:?}");
    assert_eq!(report.tmp_removed, tmp);
    assert!(!store.is_known("u1"));
    assert!(maildir_messages(&dir.maildir()).is_empty());
}

#[test]
fn foreign_tmp_files_are_left_alone() {
    let dir = TestDir::new("foreign");
    let (store, _) = dir.open();
    drop(store);
    let tmp = dir.maildir().join("tmp");
    fs::write(tmp.join("1700000000.M1P99Q1.otherhost"), b"mda").unwrap();
    // Another account delivering into the same Maildir.
    let other_journal = dir.0.join("state").join("other.journal");
    let (mut other, _) = Store::open(dir.maildir(), &other_journal).unwrap();
    let mut incoming = other.begin("o1", 5).unwrap();
    incoming.write_all(b"other").unwrap();
    let (_store, report) = dir.open();
    assert!(report.tmp_removed.is_empty(), "{report:?}");
    assert_eq!(report.foreign_tmp.len(), 2);
    assert_eq!(tmp_files(&dir.maildir()).len(), 2);
    incoming.commit().unwrap();
}

#[test]
fn torn_journal_tail_is_dropped() {
    let dir = TestDir::new("torn");
    let (mut store, _) = dir.open();
    store_message(&mut store, "u1", &message("u1", 10));
    drop(store);
    let mut journal = OpenOptions::new().append(true).open(dir.journal()).unwrap();
    journal
        .write_all(b"1234abcd S u2 1700000000.M1P1Q")
        .unwrap();
    drop(journal);
    let (mut store, report) = dir.open();
    assert_eq!(report.torn_tail_bytes, 30, "{report:?}");
    assert!(store.is_known("u1"));
    store_message(&mut store, "u2", &message("u2", 10));
    drop(store);
    let (store, report) = dir.open();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.entries().len(), 2);
}

#[test]
fn corrupt_journal_is_refused() {
    let dir = TestDir::new("corrupt");
    let (mut store, _) = dir.open();
    store_message(&mut store, "u1", &message("u1", 10));
    store_message(&mut store, "u2", &message("u2", 10));
    drop(store);
    let mut text = fs::read(dir.journal()).unwrap();
    let second_line = text.iter().position(|&b| b == b'\n').unwrap() + 12;
    text[second_line] ^= 0x20;
    fs::write(dir.journal(), text).unwrap();
    let err = Store::open(dir.maildir(), dir.journal()).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptJournal { line: 2, .. }),
        "{err}"
    );
    // Not a journal at all: refused, and left untouched.
    fs::write(dir.journal(), b"[account]\nuser = \"me\"\n").unwrap();
    assert!(Store::open(dir.maildir(), dir.journal()).is_err());
    assert_eq!(
        fs::read(dir.journal()).unwrap(),
        b"[account]\nuser = \"me\"\n"
    );
}

#[test]
fn retention_flow_and_compaction() {
    let dir = TestDir::new("retention");
    let (mut store, _) = dir.open();
    let day = Duration::from_secs(86_400);
    let t0 = SystemTime::UNIX_EPOCH + 20_000 * day;
    let uidls: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    for (i, uidl) in uidls.iter().enumerate() {
        let mut incoming = store
            .begin_at(uidl, 20, t0 + (i as u32 % 10) * day)
            .unwrap();
        incoming.write_all(&message(uidl, 20)).unwrap();
        incoming.commit().unwrap();
    }
    let now = t0 + 10 * day;
    assert!(
        store
            .to_delete(RetentionPolicy::KeepForever, now)
            .is_empty()
    );
    assert_eq!(
        store
            .to_delete(RetentionPolicy::DeleteAfterDownload, now)
            .len(),
        100
    );
    let old = store.to_delete(RetentionPolicy::DeleteAfterDays(5), now);
    assert_eq!(old.len(), 60); // first seen on days 0..=5
    assert_eq!(store.mark_deleted(&old).unwrap(), 60);
    assert_eq!(store.entry(&old[0]).unwrap().state, EntryState::Deleted);
    // Deleted ones are not offered again, and still known (never refetched).
    assert_eq!(
        store
            .to_delete(RetentionPolicy::DeleteAfterDownload, now)
            .len(),
        40
    );
    assert!(store.unseen(&old).is_empty());
    // The server no longer lists them: forgotten.
    let remaining: Vec<&String> = uidls.iter().filter(|u| !old.contains(u)).collect();
    let forgotten = store.forget_missing(&remaining).unwrap();
    assert_eq!(forgotten.len(), 60);
    assert_eq!(store.entries().len(), 40);
    // 100 stored + 100 delivered + 60 deleted + 60 forgotten records: compacted on the way.
    let lines = || fs::read_to_string(dir.journal()).unwrap().lines().count();
    assert_eq!(lines(), 41);
    store.compact().unwrap();
    assert_eq!(lines(), 41);
    drop(store);
    let (store, report) = dir.open();
    assert!(report.is_clean());
    assert_eq!(store.entries().len(), 40);
    assert_eq!(maildir_messages(&dir.maildir()).len(), 100);
}

#[test]
fn leftover_compaction_file_is_removed() {
    let dir = TestDir::new("compact-leftover");
    let (mut store, _) = dir.open();
    store_message(&mut store, "u1", &message("u1", 10));
    drop(store);
    let mut leftover = dir.journal().into_os_string();
    leftover.push(".compact");
    fs::write(&leftover, b"half a compaction").unwrap();
    let (store, _) = dir.open();
    assert!(store.is_known("u1"));
    assert!(!Path::new(&leftover).exists());
}

// ---------------------------------------------------------------------------------------
// Batch commits.

fn finish_message(store: &mut Store, uidl: &str, body: &[u8]) -> Finished {
    let mut incoming = store.begin(uidl, body.len() as u64).unwrap();
    for chunk in body.chunks(1000) {
        incoming.write_all(chunk).unwrap();
    }
    incoming.finish().unwrap()
}

fn journal_kinds(dir: &TestDir) -> String {
    fs::read_to_string(dir.journal())
        .unwrap()
        .lines()
        .map(|l| &l[9..10])
        .collect()
}

#[test]
fn batch_commit_stores_every_message() {
    // 2 files: an fsync each; 9 files: one syncfs on Linux.
    for n in [2usize, 9] {
        let dir = TestDir::new("batch");
        let (mut store, _) = dir.open();
        let bodies: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| (format!("u{i}"), message(&format!("u{i}"), i * 700)))
            .collect();
        let mut batch = Vec::new();
        for (uidl, body) in &bodies {
            let finished = finish_message(&mut store, uidl, body);
            assert_eq!(finished.uidl(), uidl);
            assert_eq!(finished.bytes(), body.len() as u64);
            batch.push(finished);
        }
        // Finished is not stored: unknown, still unseen, nothing journaled.
        assert!(!store.is_known("u0"));
        assert_eq!(store.unseen(&["u0"]), ["u0"]);
        assert_eq!(journal_kinds(&dir), "H");
        assert_eq!(tmp_files(&dir.maildir()).len(), n);
        let paths = store.commit_batch(batch).unwrap();
        assert_eq!(paths.len(), n);
        for ((uidl, body), path) in bodies.iter().zip(&paths) {
            assert_eq!(path.parent().unwrap(), dir.maildir().join("new"));
            assert_eq!(&fs::read(path).unwrap(), body);
            let entry = store.entry(uidl).unwrap();
            assert_eq!(entry.state, EntryState::Delivered);
            assert_eq!(entry.crc32, Crc32::of(body));
        }
        assert!(tmp_files(&dir.maildir()).is_empty());
        // All S records, then all D records.
        assert_eq!(
            journal_kinds(&dir),
            format!("H{}{}", "S".repeat(n), "D".repeat(n))
        );
        assert!(store.commit_batch(Vec::new()).unwrap().is_empty());
        drop(store);
        let (store, report) = dir.open();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(store.entries().len(), n);
    }
}

#[test]
fn batch_with_a_known_or_repeated_uidl_is_refused_whole() {
    let dir = TestDir::new("batch-dup");
    let (mut store, _) = dir.open();
    // Begun twice before either is committed (begin refuses a known UIDL).
    let first = finish_message(&mut store, "u1", &message("u1", 10));
    let again = finish_message(&mut store, "u1", &message("u1", 10));
    store.commit_batch(vec![first]).unwrap();
    let batch = vec![finish_message(&mut store, "u2", &message("u2", 10)), again];
    let err = store.commit_batch(batch).unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyKnown(ref u) if u == "u1"),
        "{err}"
    );
    let batch = vec![
        finish_message(&mut store, "u3", &message("u3", 10)),
        finish_message(&mut store, "u3", &message("u3", 10)),
    ];
    let err = store.commit_batch(batch).unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyKnown(ref u) if u == "u3"),
        "{err}"
    );
    assert!(tmp_files(&dir.maildir()).is_empty());
    assert!(!store.is_known("u2") && !store.is_known("u3"));
    assert_eq!(maildir_messages(&dir.maildir()).len(), 1);
}

#[test]
fn finished_but_not_committed_is_removed_or_refetched() {
    let dir = TestDir::new("batch-drop");
    let (mut store, _) = dir.open();
    let finished = finish_message(&mut store, "u1", &message("u1", 10));
    assert_eq!(tmp_files(&dir.maildir()).len(), 1);
    finished.abort();
    assert!(tmp_files(&dir.maildir()).is_empty());
    // A crash with finished messages waiting for their batch: orphans.
    finish_message(&mut store, "u1", &message("u1", 10)).crash();
    finish_message(&mut store, "u2", &message("u2", 10)).crash();
    drop(store);
    let (store, report) = dir.open();
    assert_eq!(report.tmp_removed.len(), 2, "{report:?}");
    assert!(store.entries().len() == 0);
    assert!(tmp_files(&dir.maildir()).is_empty());
}

/// A batch of `n` messages `u0..` whose commit crashes at `point`; then a reopen and a
/// refetch of what the store does not know. Returns the reopen's report.
fn crash_batch(n: usize, point: CrashPoint) -> ReconcileReport {
    let dir = TestDir::new("batch-crash");
    let (mut store, _) = dir.open();
    store_message(&mut store, "before", &message("before", 100));
    store.crash_at = Some(point);
    let uidls: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let batch: Vec<Finished> = uidls
        .iter()
        .map(|u| finish_message(&mut store, u, &message(u, 2000)))
        .collect();
    assert!(matches!(
        store.commit_batch(batch),
        Err(StoreError::SimulatedCrash)
    ));
    drop(store);
    let (mut store, report) = dir.open();
    assert!(tmp_files(&dir.maildir()).is_empty(), "{report:?}");
    for uidl in &uidls {
        if let Some(entry) = store.entry(uidl) {
            assert_eq!(entry.state, EntryState::Delivered);
        }
    }
    let unseen: Vec<String> = store
        .unseen(&uidls)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let refetch: Vec<Finished> = unseen
        .iter()
        .map(|u| finish_message(&mut store, u, &message(u, 2000)))
        .collect();
    store.commit_batch(refetch).unwrap();
    let found = maildir_messages(&dir.maildir());
    assert_eq!(found.len(), n + 1);
    for uidl in &uidls {
        assert_eq!(found[uidl], [message(uidl, 2000)], "{uidl}");
    }
    report
}

#[test]
fn batch_crash_at_each_step_leaves_every_message_once() {
    for n in [1usize, 2, 7] {
        let half = n / 2;
        let r = crash_batch(n, CrashPoint::FileSynced);
        assert_eq!(r.tmp_removed.len(), n, "{r:?}");
        let r = crash_batch(n, CrashPoint::JournaledPartly);
        assert_eq!(
            (r.moved_to_new.len(), r.tmp_removed.len()),
            (half, n - half),
            "{r:?}"
        );
        let r = crash_batch(n, CrashPoint::Journaled);
        assert_eq!(r.moved_to_new.len(), n, "{r:?}");
        let r = crash_batch(n, CrashPoint::RenamedPartly);
        assert_eq!(
            (r.already_delivered.len(), r.moved_to_new.len()),
            (half, n - half),
            "{r:?}"
        );
        let r = crash_batch(n, CrashPoint::Renamed);
        assert_eq!(r.already_delivered.len(), n, "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Random operation sequences against a model.

#[derive(Clone, Copy, Debug)]
enum Crash {
    MidWrite,
    /// Finished, waiting for its batch's commit (with the batch's other finished ones).
    Finished,
    At(CrashPoint),
}

#[derive(Clone, Debug)]
enum Op {
    /// New mail arrives on the server.
    Arrive(Vec<usize>),
    /// A fetch of at most `limit` messages, committed in batches of `batch` (1: each with
    /// `Incoming::commit`), crashing at message `crash.0` (or its batch's commit) if given.
    Fetch {
        limit: usize,
        batch: usize,
        crash: Option<(usize, Crash)>,
    },
    /// Start a message and give up (drop).
    Abort,
    /// Retention pass; a crash between the server's QUIT and `mark_deleted` if `crash`.
    Delete {
        policy: RetentionPolicy,
        days_later: u32,
        crash: bool,
    },
    /// The mail reader moves the `n`th message of new/ to cur/ with flags.
    ReaderMoves(usize),
    /// A torn record at the end of the journal (crash in the middle of an append).
    Tear(Vec<u8>),
    /// Close and reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let crash = prop_oneof![
        Just(Crash::MidWrite),
        Just(Crash::Finished),
        Just(Crash::At(CrashPoint::FileSynced)),
        Just(Crash::At(CrashPoint::JournaledPartly)),
        Just(Crash::At(CrashPoint::Journaled)),
        Just(Crash::At(CrashPoint::RenamedPartly)),
        Just(Crash::At(CrashPoint::Renamed)),
    ];
    let policy = prop_oneof![
        Just(RetentionPolicy::KeepForever),
        Just(RetentionPolicy::DeleteAfterDownload),
        (0u32..4).prop_map(RetentionPolicy::DeleteAfterDays),
    ];
    prop_oneof![
        3 => prop::collection::vec(0usize..5000, 1..4).prop_map(Op::Arrive),
        4 => (1usize..8, 1usize..6, prop::option::of((0usize..7, crash)))
            .prop_map(|(limit, batch, crash)| Op::Fetch { limit, batch, crash }),
        1 => Just(Op::Abort),
        2 => (policy, 0u32..6, any::<bool>())
            .prop_map(|(policy, days_later, crash)| Op::Delete { policy, days_later, crash }),
        1 => (0usize..10).prop_map(Op::ReaderMoves),
        1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::Tear),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    dir: TestDir,
    /// The server's mailbox.
    server: BTreeMap<String, Vec<u8>>,
    /// Every message that was ever on the server.
    ever: BTreeMap<String, Vec<u8>>,
    next: usize,
    store: Option<Store>,
    now: SystemTime,
}

impl Model {
    fn store(&mut self) -> &mut Store {
        if self.store.is_none() {
            self.store = Some(self.dir.open().0);
        }
        self.store.as_mut().unwrap()
    }

    fn fetch(&mut self, limit: usize, batch_size: usize, crash: Option<(usize, Crash)>) {
        let server: Vec<(String, Vec<u8>)> = self
            .server
            .iter()
            .map(|(u, b)| (u.clone(), b.clone()))
            .collect();
        let uidls: Vec<&str> = server.iter().map(|(u, _)| u.as_str()).collect();
        let now = self.now;
        let store = self.store();
        store.forget_missing(&uidls).unwrap();
        let unseen: Vec<String> = store
            .unseen(&uidls)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let todo: Vec<&String> = unseen.iter().take(limit).collect();
        let crash_at = |i: usize| crash.filter(|(at, _)| *at == i).map(|(_, c)| c);
        let mut batch: Vec<Finished> = Vec::new();
        // Whether a message of the current batch is to crash its commit, and where.
        let mut batch_crash: Option<CrashPoint> = None;
        for (i, uidl) in todo.iter().enumerate() {
            let body = &server.iter().find(|(u, _)| u == *uidl).unwrap().1;
            let store = self.store.as_mut().unwrap();
            let mut incoming = store.begin_at(uidl, body.len() as u64, now).unwrap();
            for chunk in body.chunks(700) {
                incoming.write_all(chunk).unwrap();
            }
            match crash_at(i) {
                Some(Crash::MidWrite) => {
                    incoming.crash();
                    batch.into_iter().for_each(Finished::crash);
                    self.store = None;
                    return;
                }
                Some(Crash::At(point)) => batch_crash = Some(point),
                _ => {}
            }
            if batch_size == 1 && batch_crash.is_none() {
                incoming.commit().unwrap();
                continue;
            }
            batch.push(incoming.finish().unwrap());
            if matches!(crash_at(i), Some(Crash::Finished)) {
                batch.into_iter().for_each(Finished::crash);
                self.store = None;
                return;
            }
            if batch.len() >= batch_size || i + 1 == todo.len() {
                let store = self.store.as_mut().unwrap();
                let batch = std::mem::take(&mut batch);
                if let Some(point) = batch_crash {
                    store.crash_at = Some(point);
                    assert!(matches!(
                        store.commit_batch(batch),
                        Err(StoreError::SimulatedCrash)
                    ));
                    self.store = None;
                    return;
                }
                store.commit_batch(batch).unwrap();
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Arrive(sizes) => {
                for size in sizes {
                    let uidl = format!("uid-{}", self.next);
                    self.next += 1;
                    let body = message(&uidl, size);
                    self.server.insert(uidl.clone(), body.clone());
                    self.ever.insert(uidl, body);
                }
            }
            Op::Fetch {
                limit,
                batch,
                crash,
            } => self.fetch(limit, batch, crash),
            Op::Abort => {
                let store = self.store();
                let mut incoming = store.begin("aborted", 3).unwrap();
                incoming.write_all(b"abc").unwrap();
                incoming.abort();
                assert!(!store.is_known("aborted"));
            }
            Op::Delete {
                policy,
                days_later,
                crash,
            } => {
                self.now += Duration::from_secs(86_400 * u64::from(days_later));
                let now = self.now;
                let doomed = self.store().to_delete(policy, now);
                // DELE for those the server lists, then QUIT: the server applies them.
                for uidl in &doomed {
                    self.server.remove(uidl);
                }
                if crash {
                    self.store = None;
                } else {
                    self.store().mark_deleted(&doomed).unwrap();
                }
            }
            Op::ReaderMoves(n) => {
                let new = self.dir.maildir().join("new");
                let mut names: Vec<_> = fs::read_dir(&new)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                if let Some(name) = names.get(n) {
                    let cur = self.dir.maildir().join("cur").join(format!("{name}:2,S"));
                    fs::rename(new.join(name), cur).unwrap();
                }
            }
            Op::Tear(mut bytes) => {
                self.store = None;
                bytes.retain(|&b| b != b'\n');
                let mut journal = OpenOptions::new()
                    .append(true)
                    .open(self.dir.journal())
                    .unwrap();
                journal.write_all(&bytes).unwrap();
            }
            Op::Reopen => {
                self.store = None;
                self.store();
            }
        }
    }

    /// No duplicates, every file intact, nothing deleted on the server that is not in the
    /// Maildir.
    fn check(&self) {
        let found = maildir_messages(&self.dir.maildir());
        for (uidl, copies) in &found {
            assert_eq!(copies.len(), 1, "duplicate {uidl}");
            assert_eq!(&copies[0], &self.ever[uidl], "damaged {uidl}");
        }
        for uidl in self.ever.keys() {
            if !self.server.contains_key(uidl) {
                assert!(found.contains_key(uidl), "lost {uidl}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_every_message_exactly_once(ops in prop::collection::vec(op(), 1..25)) {
        let mut model = Model {
            dir: TestDir::new("prop"),
            server: BTreeMap::new(),
            ever: BTreeMap::new(),
            next: 0,
            store: None,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        model.store();
        for op in ops {
            model.apply(op);
            model.check();
        }
        // A final clean run fetches everything that is left.
        model.store = None;
        model.fetch(usize::MAX, 64, None);
        model.check();
        let found = maildir_messages(&model.dir.maildir());
        prop_assert_eq!(found.len(), model.ever.len());
        let store = model.store.as_ref().unwrap();
        prop_assert!(store.unseen(&model.server.keys().collect::<Vec<_>>()).is_empty());
        prop_assert!(tmp_files(&model.dir.maildir()).is_empty());
    }
}

/// Issue 15 item 5: the repair after an interrupted run is one line with counts, for people.
#[test]
fn reconcile_report_reads_as_one_line_with_counts() {
    let report = ReconcileReport {
        moved_to_new: vec!["a".into()],
        tmp_removed: (0..300).map(|n| format!("file-{n}")).collect(),
        torn_tail_bytes: 17,
        ..ReconcileReport::default()
    };
    assert_eq!(
        report.to_string(),
        "1 message completed into new/, 300 partial downloads removed, an unfinished journal \
         record (17 bytes) dropped"
    );
    assert_eq!(ReconcileReport::default().to_string(), "nothing to repair");
}

/// Issue 18, "until I delete it here": a message whose file is gone, or whose every copy is
/// flagged trashed, is offered; one moved into `cur/` (read, flagged), or into a Maildir++
/// subfolder, is kept.
#[test]
fn until_deleted_locally_follows_the_maildir() {
    let dir = TestDir::new("until-deleted");
    let (mut store, _) = dir.open();
    let mut files = BTreeMap::new();
    for i in 0..6 {
        let uidl = format!("u{i}");
        let mut incoming = store.begin(&uidl, 20).unwrap();
        incoming.write_all(&message(&uidl, 20)).unwrap();
        files.insert(uidl, incoming.commit().unwrap());
    }
    let now = SystemTime::now();
    let policy = RetentionPolicy::UntilDeletedLocally;
    assert!(store.to_delete(policy, now).is_empty());
    let md = dir.maildir();
    let name = |uidl: &str| {
        files[uidl]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    // u0: deleted; u1: read and trashed in cur/; u2: read (seen) in cur/; u3: moved to a
    // subfolder; u4: trashed in cur/ but kept in a subfolder; u5 untouched.
    fs::remove_file(&files["u0"]).unwrap();
    fs::rename(
        &files["u1"],
        md.join("cur").join(format!("{}:2,ST", name("u1"))),
    )
    .unwrap();
    fs::rename(
        &files["u2"],
        md.join("cur").join(format!("{}:2,S", name("u2"))),
    )
    .unwrap();
    fs::create_dir_all(md.join(".Archive/cur")).unwrap();
    fs::rename(
        &files["u3"],
        md.join(".Archive/cur").join(format!("{}:2,S", name("u3"))),
    )
    .unwrap();
    fs::copy(&files["u4"], md.join(".Archive/cur").join(name("u4"))).unwrap();
    fs::rename(
        &files["u4"],
        md.join("cur").join(format!("{}:2,T", name("u4"))),
    )
    .unwrap();
    let mut doomed = store.to_delete(policy, now);
    doomed.sort();
    assert_eq!(doomed, ["u0", "u1"]);
    // Once the server deleted them they are not offered again.
    assert_eq!(store.mark_deleted(&doomed).unwrap(), 2);
    assert!(store.to_delete(policy, now).is_empty());
    drop(store);
    // A journal opened with a Maildir it never delivered into (created now) deletes nothing.
    let (other, report) = Store::open(dir.0.join("Elsewhere"), dir.journal()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(other.entries().len(), 6);
    assert!(other.to_delete(policy, now).is_empty());
}
