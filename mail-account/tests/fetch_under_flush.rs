//! The store's blocking work runs off the async worker threads: while another program flushes
//! a lot of dirty data to the same file system (so every `syncfs` of a batch commit waits
//! seconds for it), 100 concurrent fetches on a two-worker runtime all complete, none with a
//! timeout.
//!
//! Before the fetch engine moved its commits to the blocking pool, each commit's `syncfs` held
//! an async worker for the whole flush; with two workers, the other sessions' reads and timers
//! stalled behind it and their reply timeouts fired.
//!
//! This machine's disk (a host-cached virtual disk) flushes about 3 GB/s, so a real flush
//! stalls a sync for only a fraction of a second here; the second test makes the stall
//! certain with a delivery whose every commit blocks for longer than the sessions' reply
//! limit (a stand-in for a sync stuck behind a slow disk): run inline on the two workers, it
//! makes most fetches time out; on the blocking pool none does.
//!
//! The unrelated program writes and flushes 1.5 GiB (the figure) in passes over one
//! file of up to 512 MiB, and keeps going until the fetches are done: the machine's disk is
//! shared and nearly full, so the file must stay small (it leaves 2 GiB free; at least
//! 128 MiB), while the flush pressure lasts the whole run. The figures are printed.

use std::fs::{self, File};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use mail_account::connect::{LoginMethod, LoginSecret, ServerSettings, pop3_login};
use mail_account::deliver::{self, Delivered, Delivery};
use mail_account::fetch::{FetchError, FetchOptions, fetch};
use mail_account::settings::Security;
use mail_account::store::{Finished, RetentionPolicy, Staging, Store};
use mail_testground::server::TestServer;

const MAILBOXES: usize = 100;
const MESSAGES_EACH: usize = 8;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A scratch directory removed on drop, even when the test fails.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The size of the dirty file: 512 MiB when it leaves 2 GiB free.
fn dirty_file_size(dir: &Path) -> u64 {
    let stat = rustix::fs::statvfs(dir).expect("statvfs");
    let available = stat.f_bavail * stat.f_frsize;
    (512 * MIB)
        .min(available.saturating_sub(2 * GIB))
        .max(128 * MIB)
}

/// Dirties `size` bytes of `path` (page cache) and flushes them, over and over, until `stop`
/// is set and at least 1.5 GiB went through; says on `dirty` when the first pass is dirty.
/// Returns the bytes flushed and the time spent flushing.
fn dirty_and_flush(
    path: &Path,
    size: u64,
    dirty: &mpsc::Sender<()>,
    stop: &AtomicBool,
) -> (u64, Duration) {
    let mut file = File::create(path).expect("create the dirty file");
    let block = vec![0x5a_u8; 4 * MIB as usize];
    let mut flushed = 0;
    let mut flushing = Duration::ZERO;
    loop {
        // Fresh blocks every pass (rewriting flushed ones is much faster than a real
        // writer's new data).
        file.set_len(0).expect("truncate the dirty file");
        file.rewind().expect("rewind the dirty file");
        let mut written = 0;
        while written < size {
            file.write_all(&block).expect("write the dirty file");
            written += block.len() as u64;
        }
        let _ = dirty.send(());
        let started = Instant::now();
        file.sync_all().expect("flush the dirty file");
        flushing += started.elapsed();
        flushed += written;
        if stop.load(Ordering::Relaxed) && flushed >= GIB * 3 / 2 {
            return (flushed, flushing);
        }
    }
}

/// The sessions' reply and set-up limit: a worker stalled longer than this by a sync makes
/// the sessions it runs time out.
const SESSION_LIMIT: Duration = Duration::from_secs(3);

/// A Maildir store whose every batch commit first blocks its thread for longer than
/// [`SESSION_LIMIT`], like a sync stuck behind another program's flush on a slow disk.
struct SlowDisk(Store);

const SLOW_COMMIT: Duration = Duration::from_secs(4);

impl Delivery for SlowDisk {
    type Staging = Staging;
    type Staged = Finished;

    fn is_known(&self, uidl: &str) -> bool {
        self.0.is_known(uidl)
    }
    fn forget_missing(
        &mut self,
        server_uidls: &[String],
    ) -> mail_account::store::Result<Vec<String>> {
        self.0.forget_missing(server_uidls)
    }
    fn stage(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> mail_account::store::Result<Staging> {
        self.0.stage(uidl, server_size, first_seen)
    }
    fn write_chunk(staging: &mut Staging, bytes: &[u8]) -> std::io::Result<()> {
        <Store as Delivery>::write_chunk(staging, bytes)
    }
    fn finish(&mut self, staging: Staging) -> mail_account::store::Result<Finished> {
        staging.finish()
    }
    fn commit(&mut self, batch: Vec<Finished>) -> mail_account::store::Result<Vec<Delivered>> {
        std::thread::sleep(SLOW_COMMIT);
        Delivery::commit(&mut self.0, batch)
    }
    fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        self.0.to_delete(policy, now)
    }
    fn mark_deleted(&mut self, uidls: &[String]) -> mail_account::store::Result<usize> {
        self.0.mark_deleted(uidls)
    }
    fn sync(&mut self) -> mail_account::store::Result<()> {
        self.0.sync()
    }
}

/// A test server with [`MAILBOXES`] users of [`MESSAGES_EACH`] messages each.
async fn server_with_mailboxes() -> TestServer {
    let mut builder = TestServer::builder().max_connections(MAILBOXES * 2);
    for i in 0..MAILBOXES {
        let user = format!("user{i}@flush.test");
        builder = builder.user(user.clone(), "secret");
        for m in 0..MESSAGES_EACH {
            let body = format!(
                "Subject: message {m} for {user}\r\n\r\n{}\r\n",
                "x".repeat(2000)
            );
            builder = builder.message(user.clone(), body.into_bytes());
        }
    }
    builder.start().await.expect("start the test server")
}

/// Fetches every mailbox concurrently (one task each, delete after download), each into its
/// own Maildir under `dir` wrapped by `wrap`. Returns the messages fetched and the failures.
async fn fetch_every_mailbox<D: Delivery>(
    server: &TestServer,
    dir: &Path,
    wrap: fn(Store) -> D,
) -> (usize, Vec<String>) {
    let mut fetches = tokio::task::JoinSet::new();
    for i in 0..MAILBOXES {
        let user = format!("user{i}@flush.test");
        let maildir = dir.join(format!("maildir-{i}"));
        let mut settings = ServerSettings::new(
            "localhost",
            server.pop3s_addr().port(),
            Security::ImplicitTls,
            user.clone(),
        );
        settings.trust_roots = server.trust_roots();
        // USER/PASS inside TLS: the automatic choice is a SCRAM mechanism, whose key
        // derivation (on both sides, in a debug build, 200 logins at once on two cores) is CPU
        // work that would hit the reply limit on its own; this test is about the disk.
        settings.login = LoginMethod::Pop3User;
        settings.setup_timeout = SESSION_LIMIT;
        settings.reply_timeout = Some(SESSION_LIMIT);
        fetches.spawn(async move {
            let (store, _) = tokio::task::spawn_blocking(move || {
                Store::open(&maildir, maildir.join(".journal"))
            })
            .await
            .unwrap()
            .expect("open the store");
            let store = deliver::shared(wrap(store));
            let session = pop3_login(&settings, &LoginSecret::password("secret"))
                .await
                .map_err(|e| format!("{user}: login: {e}"))?;
            let options = FetchOptions::new(RetentionPolicy::DeleteAfterDownload);
            let report = fetch(session, &store, &options, SystemTime::now(), |_| {})
                .await
                .map_err(|e| match e {
                    FetchError::Pop3(e) => format!("{user}: POP3: {e}"),
                    other => format!("{user}: {other}"),
                })?;
            // Drop the store (its final journal sync) off the async threads too.
            tokio::task::spawn_blocking(move || drop(store))
                .await
                .unwrap();
            Ok::<_, String>(report.fetched)
        });
    }
    let mut failures = Vec::new();
    let mut fetched = 0;
    while let Some(result) = fetches.join_next().await {
        match result.unwrap() {
            Ok(n) => fetched += n,
            Err(e) => failures.push(e),
        }
    }
    (fetched, failures)
}

fn assert_all_fetched(server: &TestServer, fetched: usize, failures: &[String]) {
    let timeouts = failures
        .iter()
        .filter(|f| f.contains("timed out") || f.contains("timeout"))
        .count();
    assert!(
        failures.is_empty(),
        "{} fetches failed ({timeouts} with a timeout): {failures:#?}",
        failures.len()
    );
    assert_eq!(fetched, MAILBOXES * MESSAGES_EACH);
    for i in 0..MAILBOXES {
        let user = format!("user{i}@flush.test");
        assert_eq!(server.mailbox(&user).map(|m| m.len()), Some(0), "{user}");
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("mail-account-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_fetches_complete_while_another_program_flushes_gigabytes() {
    let scratch = scratch("flush");
    let size = dirty_file_size(&scratch.0);
    let server = server_with_mailboxes().await;

    let (dirty_tx, dirty_rx) = mpsc::channel();
    let dirty_path = scratch.0.join("unrelated-dirty-data");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || dirty_and_flush(&dirty_path, size, &dirty_tx, &stop)
    });
    // Start the fetches once the data is dirty, so their commits meet the flush.
    tokio::task::spawn_blocking(move || dirty_rx.recv())
        .await
        .unwrap()
        .expect("the writer dirtied its data");

    let started = Instant::now();
    let (fetched, failures) = fetch_every_mailbox(&server, &scratch.0, |store| store).await;
    let fetching = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (flushed, flushing) = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    println!(
        "{} MiB of unrelated dirty data flushed in {:.1} s (passes of {} MiB); {fetched} \
         messages fetched by {MAILBOXES} concurrent fetches in {:.1} s; {} failed",
        flushed / MIB,
        flushing.as_secs_f64(),
        size / MIB,
        fetching.as_secs_f64(),
        failures.len()
    );
    assert_all_fetched(&server, fetched, &failures);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_fetches_complete_while_every_commit_blocks_longer_than_the_reply_limit() {
    let scratch = scratch("slow-commit");
    let server = server_with_mailboxes().await;
    let started = Instant::now();
    let (fetched, failures) = fetch_every_mailbox(&server, &scratch.0, SlowDisk).await;
    println!(
        "{fetched} messages fetched by {MAILBOXES} concurrent fetches, each commit blocking \
         {} s, in {:.1} s; {} failed",
        SLOW_COMMIT.as_secs(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert_all_fetched(&server, fetched, &failures);
    server.shutdown().await;
}
