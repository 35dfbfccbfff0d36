//! Crash-safe local storage for a POP3 fetch: Maildir delivery, a state journal, reconciliation
//! after a crash, and retention.
//!
//! Besides the Maildir [`Store`], two more targets implement the same
//! [`Delivery`](crate::deliver::Delivery) protocol with the same journal format: an mbox file
//! ([`Mbox`], module [`mbox`]: journal first, then the append, a torn append cut off on open)
//! and an MDA command ([`Mda`], module [`mda`]: recorded on exit status 0; a crash can hand the
//! message in flight over twice, never lose it).
//!
//! The fetch engine drives a [`Store`]; it never touches the Maildir or the journal itself.
//! One [`Store`] serves one mailbox (one journal), but several accounts may deliver into the
//! same Maildir, and other programs (an MDA, the mail reader) may use it at the same time.
//! [`Store::open_mailbox`] names the journal after the mailbox ([`MailboxIdentity`]: the login
//! and the host name, or the account), never after the port or TLS mode, so a settings change
//! does not fetch everything again.
//!
//! Mail is private: the directories the store creates are 0700 ([`PRIVATE_DIR_MODE`]) and
//! the files (messages, journal, lock, compaction file) 0600 ([`PRIVATE_FILE_MODE`]),
//! whatever the umask; existing directories keep their modes.
//!
//! # The guarantee
//!
//! A process crash (`kill -9`) at any instant, followed by [`Store::open`] and a rerun of the
//! fetch, leaves every server message in the Maildir exactly once: none lost, none duplicated.
//! With working `fsync` (the disk does not lie about its write cache), the same holds for a
//! power loss.
//!
//! # How one session uses it
//!
//! ```no_run
//! use std::io::Write;
//! use std::time::SystemTime;
//! use mail_account::store::{RetentionPolicy, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut store, report) = Store::open("Maildir", "state/pop3-alice@example.org.journal")?;
//! if !report.is_clean() {
//!     eprintln!("recovered after a crash: {report}");
//! }
//! let server: Vec<(String, Vec<u8>)> = vec![("uid-1".into(), b"Subject: hi\n\nbody\n".to_vec())];
//! let uidls: Vec<&str> = server.iter().map(|(u, _)| u.as_str()).collect();
//! store.forget_missing(&uidls)?; // 1. drop what the server no longer has
//! let mut batch = Vec::new();
//! for uidl in store.unseen(&uidls) {
//!     // 2. RETR each unseen message, streaming its chunks into the store
//!     let body = &server.iter().find(|(u, _)| u == uidl).unwrap().1;
//!     let mut incoming = store.begin(uidl, body.len() as u64)?;
//!     incoming.write_all(body)?; // chunk by chunk, as they arrive
//!     batch.push(incoming.finish()?); // complete in tmp/, not yet stored
//!     if batch.len() == 64 {
//!         store.commit_batch(std::mem::take(&mut batch))?; // durable, journaled, in new/
//!     }
//! }
//! store.commit_batch(batch)?; // the rest, before any DELE
//! // (`incoming.commit()` instead of `finish` stores one message on its own.)
//! // 3. DELE what retention says, 4. QUIT, and only once the server confirmed the QUIT:
//! let doomed = store.to_delete(RetentionPolicy::DeleteAfterDownload, SystemTime::now());
//! store.mark_deleted(&doomed)?;
//! # Ok(()) }
//! ```
//!
//! # The durability protocol
//!
//! Per message ([`Store::begin`], writes, [`Incoming::finish`]): create `tmp/<name>`
//! (`O_EXCL`, a fresh unique name), stream the message into it and close it, noting its size
//! and CRC-32. Nothing is synced and nothing journaled: a crash now leaves an orphan tmp
//! file that is removed on restart, and the message, never deleted on the server, is fetched
//! again.
//!
//! Per batch of finished messages ([`Store::commit_batch`]; [`Incoming::commit`] is a batch
//! of one), in this order:
//!
//! 1. Make every file's bytes durable: one `syncfs` of the Maildir's file system on Linux
//!    (for batches of a few files or more; it flushes them all in one go), else an `fsync`
//!    per file.
//! 2. Append `S <uidl> <name> <size> <crc32> ...` for every message of the batch (one
//!    `write`) and `fsync` the journal once. A message whose `S` record is durable is *ours*:
//!    its file was durable before the record (step 1), so a restart finds the record and the
//!    complete file (size and CRC-32 match), and never needs the server again. A crash (or a
//!    power loss) during this step can keep any prefix of the records: those messages are
//!    ours, the others are orphans as above.
//! 3. `rename` every `tmp/<name>` to `new/<name>` (each atomic) and `fsync` `new/` once.
//!    The mail reader sees each message now, complete, exactly once.
//! 4. Append `D <uidl> ...` (delivered) for every message (one `write`), *without* `fsync`:
//!    they become durable with the next `fsync` of the journal (the next batch's step 2,
//!    [`Store::mark_deleted`], [`Store::sync`], or dropping the store). If they are lost,
//!    step 3's `fsync` of `new/` makes reconciliation find the files in `new/` (or in `cur/`,
//!    where the mail reader may have moved them, as `<name>:2,<flags>`) and write them again.
//!
//! So a batch costs three syncs, whatever its size, instead of three per message; the price
//! is that a crash loses (to a refetch, never to the user) the messages received since the
//! last batch. The order of the steps is the single-message protocol's, applied to a set:
//! for every message, its data is durable before its `S` record, its `S` record before its
//! rename, its rename before its `D` record, and in memory it becomes `Delivered` (the only
//! state [`Store::to_delete`] offers) only after step 3.
//!
//! Deleting on the server comes strictly after: [`Store::to_delete`] only offers `Delivered`
//! messages, i.e. ones past step 3, every sync of their batch done; a fetch commits its last
//! batch before it sends any `DELE`. [`Store::mark_deleted`] (`X` records) is called once the
//! server confirmed `QUIT`; if a crash comes between the `QUIT` and it,
//! the next session's [`Store::forget_missing`] sees the messages are gone and forgets them.
//! A message is never deleted twice, nor fetched again once delivered, because the journal
//! knows its UIDL until the server has stopped listing it.
//!
//! # Reconciliation ([`Store::open`])
//!
//! 1. The journal's lock is taken (`flock` on `<journal>.lock`; a second fetch of the same
//!    account fails with [`StoreError::Locked`]). A leftover `<journal>.compact` is removed.
//! 2. The journal is read; a torn tail (an unterminated or failing last record) is cut off.
//!    Damage anywhere else is refused ([`StoreError::CorruptJournal`]), never guessed at.
//! 3. Every `S` (stored, not yet known delivered) record is settled, each on its own (a
//!    batch interrupted anywhere leaves some of its messages with a durable `S` record, in
//!    `tmp/` or already in `new/`, and others with none, whose files are orphans; every
//!    combination is one of these cases):
//!    - its name is in `new/` or `cur/` (base name before `:`): it is delivered, `D` is
//!      written;
//!    - else `tmp/<name>` exists with the recorded size and CRC-32: it is renamed into
//!      `new/`, `new/` is fsynced, then `D` is written;
//!    - else (missing or damaged): the record is forgotten (`F`); the message is still on the
//!      server (it was never delivered, so never deleted) and is fetched again.
//! 4. Every file in `tmp/` that carries this journal's tag in its name and has no `S` record
//!    is removed: an interrupted download, or the stale second name of a file already in
//!    `new/`. Other programs' tmp files are left alone.
//! 5. The journal is fsynced and, when mostly superseded records, compacted (see below).
//!
//! Every step is idempotent, so a crash *during* reconciliation is settled by the next one.
//!
//! # The journal
//!
//! One append-only text file per account and server, one record a line, each with its
//! CRC-32. See the `journal` module's source for the format. Compaction (at open when more
//! than half the records are superseded, and by [`Store::compact`]) writes the live entries
//! to `<journal>.compact`, fsyncs it, renames it over the journal and fsyncs the directory.
//! Every compaction first makes the Maildir side durable, so no `D` record can ever become
//! durable before the file it speaks of.
//!
//! # Limits
//!
//! - If the user deletes (or moves out of the Maildir) a message in the instant between
//!   step 3 and the `fsync` that makes its `D` record durable, and the system crashes then,
//!   the message is fetched again: a deleted message comes back, none is lost.
//! - A POP3 server that reuses a UIDL for a different message while the journal still knows
//!   the old one hides the new message; RFC 1939 forbids that reuse.
//! - The store does blocking file I/O (and `fsync`s, a few milliseconds each on a disk, or
//!   seconds while another program flushes a lot): the fetch engine calls its slow steps
//!   through [`Delivery`](crate::deliver::Delivery) on tokio's blocking pool
//!   ([`crate::deliver`] explains which).
//! - `syncfs` flushes every dirty file of the file system, not only ours: while another
//!   program writes a lot to the same file system, a batch commit waits for that too (it
//!   stays correct). On Linux before 5.8 `syncfs` did not report write-back errors; there an
//!   I/O error during step 1 could go unnoticed (reconciliation still checks each file's
//!   size and CRC-32 against its `S` record, but reads it through the page cache).
//!
//! [`Store`]: crate::store::Store
//! [`Mbox`]: crate::store::Mbox
//! [`mbox`]: crate::store::mbox
//! [`Mda`]: crate::store::Mda
//! [`mda`]: crate::store::mda
//! [`Store::open_mailbox`]: crate::store::Store::open_mailbox
//! [`MailboxIdentity`]: crate::store::MailboxIdentity
//! [`PRIVATE_DIR_MODE`]: crate::store::PRIVATE_DIR_MODE
//! [`PRIVATE_FILE_MODE`]: crate::store::PRIVATE_FILE_MODE
//! [`Store::open`]: crate::store::Store::open
//! [`Store::begin`]: crate::store::Store::begin
//! [`Incoming::commit`]: crate::store::Incoming::commit
//! [`Incoming::finish`]: crate::store::Incoming::finish
//! [`Store::commit_batch`]: crate::store::Store::commit_batch
//! [`Store::mark_deleted`]: crate::store::Store::mark_deleted
//! [`Store::sync`]: crate::store::Store::sync
//! [`Store::to_delete`]: crate::store::Store::to_delete
//! [`Store::forget_missing`]: crate::store::Store::forget_missing
//! [`StoreError::Locked`]: crate::store::StoreError::Locked
//! [`StoreError::CorruptJournal`]: crate::store::StoreError::CorruptJournal
//! [`Store::compact`]: crate::store::Store::compact

mod crc;
mod error;
mod journal;
mod ledger;
mod maildir;
#[cfg(unix)]
pub mod mbox;
#[cfg(unix)]
pub mod mda;
mod retention;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::{Result, StoreError};
pub use maildir::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
#[cfg(unix)]
pub use mbox::{Mbox, MboxReport};
#[cfg(unix)]
pub use mda::Mda;
pub use retention::{RetentionPolicy, due_for_deletion};
pub use state::{MailboxIdentity, STATE_FILE_PREFIX, StateReport};

use crc::Crc32;
use error::io_err;
use journal::{Journal, Record};
use maildir::{Maildir, remove_if_exists, sync_dir};

/// The longest UIDL accepted, in bytes (RFC 1939 allows 70; some servers send more).
pub const MAX_UIDL_LEN: usize = 1024;

/// Where a message known to the journal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// Complete and durable in `tmp/<name>`, not yet known to be in `new/`. Only seen in
    /// between the steps of a commit, or after a failed commit; [`Store::open`] settles it.
    Stored,
    /// Durably in the Maildir (`new/`, or `cur/` if the mail reader moved it), still on the
    /// server.
    Delivered,
    /// Delivered, and deleted on the server (the server confirmed the `QUIT` after `DELE`).
    Deleted,
}

/// What the journal knows about one server message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The server's unique id (UIDL).
    pub uidl: String,
    /// The Maildir file name (in `tmp/` or `new/`; in `cur/` the reader may append `:2,...`).
    pub name: String,
    /// Where the message is.
    pub state: EntryState,
    /// Bytes written to the file.
    pub bytes: u64,
    /// CRC-32 of the bytes written.
    pub crc32: u32,
    /// The size the server announced (`LIST`), as given to [`Store::begin`].
    pub server_size: u64,
    /// When the message was first seen (downloaded), seconds since the Unix epoch.
    pub first_seen: u64,
}

impl Entry {
    /// [`first_seen`](Self::first_seen) as a time.
    pub fn first_seen_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.first_seen)
    }
}

/// What [`Store::open`] found and repaired. All lists hold UIDLs unless said otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// The journal did not exist (or held nothing) and was created.
    pub journal_created: bool,
    /// Bytes of a torn last record (a crash in the middle of an append) that were dropped.
    pub torn_tail_bytes: u64,
    /// Messages that were complete in `tmp/` and have been moved into `new/`.
    pub moved_to_new: Vec<String>,
    /// Messages whose file was already in `new/` or `cur/`; now recorded as delivered.
    pub already_delivered: Vec<String>,
    /// Records whose tmp file was missing or damaged: forgotten, to be fetched again.
    pub refetch: Vec<String>,
    /// File names of this store's tmp files that had no record (interrupted downloads);
    /// removed.
    pub tmp_removed: Vec<String>,
    /// File names in `tmp/` that belong to someone else; left alone.
    pub foreign_tmp: Vec<String>,
    /// The journal was compacted.
    pub compacted: bool,
}

impl ReconcileReport {
    /// Whether the last run ended cleanly (nothing had to be repaired).
    pub fn is_clean(&self) -> bool {
        self.torn_tail_bytes == 0
            && self.moved_to_new.is_empty()
            && self.already_delivered.is_empty()
            && self.refetch.is_empty()
            && self.tmp_removed.is_empty()
    }
}

/// One line for a person, with counts (the UIDLs and file names are in the fields):
/// `3 messages completed into new/, 120 partial downloads removed`.
impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, one: &'static str, many: &'static str| {
            if n == 1 { one } else { many }
        };
        let mut parts = Vec::new();
        for (n, one, many) in [
            (
                self.moved_to_new.len(),
                "message completed into new/",
                "messages completed into new/",
            ),
            (
                self.already_delivered.len(),
                "message found already delivered",
                "messages found already delivered",
            ),
            (
                self.refetch.len(),
                "damaged download to fetch again",
                "damaged downloads to fetch again",
            ),
            (
                self.tmp_removed.len(),
                "partial download removed",
                "partial downloads removed",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {}", plural(n, one, many)));
            }
        }
        if self.torn_tail_bytes > 0 {
            parts.push(format!(
                "an unfinished journal record ({} bytes) dropped",
                self.torn_tail_bytes
            ));
        }
        if parts.is_empty() {
            return f.write_str("nothing to repair");
        }
        f.write_str(&parts.join(", "))
    }
}

/// Test builds only: where [`Store::commit_batch`] (and so [`Incoming::commit`]) stops, as
/// if the process were killed.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// Every file of the batch is durable; no record written.
    FileSynced,
    /// Only the first half of the batch's `S` records became durable (a power loss during
    /// the journal's fsync can keep a prefix of one append).
    JournaledPartly,
    /// Every `S` record is durable; nothing renamed.
    Journaled,
    /// The first half of the batch was renamed into `new/`, `new/` not fsynced.
    RenamedPartly,
    /// Every file is in `new/`, `new/` fsynced; no `D` record.
    Renamed,
}

/// Batches of at least this many files are made durable with one `syncfs` instead of an
/// `fsync` per file (Linux only). Measured on ext4: an `fsync` of a new small file costs
/// about 0.13 ms, one `syncfs` after 64 of them about 1.1 ms, after 8 about 0.4 ms.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SYNCFS_MIN_BATCH: usize = 4;

/// Stops a batch commit as if the process had been killed at this point: the batch's files
/// stay (unit tests only).
macro_rules! crash_point {
    ($store:ident, $batch:ident, $point:ident) => {
        #[cfg(test)]
        if $store.crash_at == Some(CrashPoint::$point) {
            for finished in &mut $batch {
                finished.remove_on_drop = false;
            }
            return Err(StoreError::SimulatedCrash);
        }
    };
}

/// The local store of one account on one server: a Maildir and a state journal.
#[derive(Debug)]
pub struct Store {
    maildir: Maildir,
    journal: Journal,
    entries: BTreeMap<String, Entry>,
    /// `tmp/`, open for `syncfs` for the life of the store: a write-back error on the file
    /// system since the store was opened is reported by the next `syncfs` on it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sync_handle: File,
    /// The Maildir was created by [`Store::open`] although the journal already knew
    /// messages: they were delivered somewhere else, so their absence here says nothing.
    maildir_foreign: bool,
    #[cfg(test)]
    crash_at: Option<CrashPoint>,
}

impl Store {
    /// Opens the Maildir (created with `tmp/`, `new/`, `cur/` if missing) and the journal
    /// (created if missing; one file per account and server), takes the journal's lock and
    /// reconciles the two after a crash (see the module docs).
    pub fn open(
        maildir: impl AsRef<Path>,
        journal: impl AsRef<Path>,
    ) -> Result<(Self, ReconcileReport)> {
        let journal_path = journal.as_ref();
        let loaded = Journal::open(journal_path)?;
        let maildir = Maildir::open(maildir.as_ref(), journal_path)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let sync_handle =
            File::open(maildir.tmp_dir()).map_err(io_err("open directory", maildir.tmp_dir()))?;
        let maildir_foreign = maildir.was_created() && !loaded.entries.is_empty();
        let mut store = Self {
            maildir,
            journal: loaded.journal,
            entries: loaded.entries,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            sync_handle,
            maildir_foreign,
            #[cfg(test)]
            crash_at: None,
        };
        let mut report = ReconcileReport {
            journal_created: loaded.created,
            torn_tail_bytes: loaded.torn_bytes,
            ..ReconcileReport::default()
        };
        store.reconcile(&mut report)?;
        Ok((store, report))
    }

    fn reconcile(&mut self, report: &mut ReconcileReport) -> Result<()> {
        let tmp_names = self.maildir.tmp_names()?;
        let pending: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| e.state == EntryState::Stored)
            .cloned()
            .collect();
        if !pending.is_empty() {
            let delivered = self.maildir.delivered_names()?;
            let mut renamed = false;
            for mut entry in pending {
                if delivered.contains(&entry.name) {
                    report.already_delivered.push(entry.uidl.clone());
                } else if self.tmp_is_complete(&entry)? {
                    let from = self.maildir.tmp_path(&entry.name);
                    let to = self.maildir.new_path(&entry.name);
                    fs::rename(&from, &to).map_err(io_err("rename into new/", &from))?;
                    renamed = true;
                    report.moved_to_new.push(entry.uidl.clone());
                } else {
                    self.journal.append(Record::Forget(&entry.uidl))?;
                    self.entries.remove(&entry.uidl);
                    report.refetch.push(entry.uidl);
                    continue;
                }
                entry.state = EntryState::Delivered;
                // Not appended yet: the renames must be durable first.
                self.entries.insert(entry.uidl.clone(), entry);
            }
            if renamed {
                sync_dir(self.maildir.new_dir())?;
            }
            for uidl in report
                .already_delivered
                .iter()
                .chain(report.moved_to_new.iter())
            {
                self.journal.append(Record::Put(&self.entries[uidl]))?;
            }
        }
        // Orphans: our tmp files without an `S` record (there are none left after the loop
        // above, but keep the rule general).
        let referenced: HashSet<&str> = self
            .entries
            .values()
            .filter(|e| e.state == EntryState::Stored)
            .map(|e| e.name.as_str())
            .collect();
        for name in tmp_names {
            if referenced.contains(name.as_str()) {
                continue;
            }
            if self.maildir.is_ours(&name) {
                // Not there any more: moved into `new/` by the loop above.
                if remove_if_exists(&self.maildir.tmp_path(&name))? {
                    report.tmp_removed.push(name);
                }
            } else {
                report.foreign_tmp.push(name);
            }
        }
        self.journal.sync()?;
        report.compacted = self.maybe_compact()?;
        Ok(())
    }

    /// Whether `tmp/<name>` exists with the recorded size and CRC-32.
    fn tmp_is_complete(&self, entry: &Entry) -> Result<bool> {
        let path = self.maildir.tmp_path(&entry.name);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let len = file.metadata().map_err(io_err("stat", &path))?.len();
        if len != entry.bytes {
            return Ok(false);
        }
        let mut crc = Crc32::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
        }
        Ok(crc.finish() == entry.crc32)
    }

    /// The Maildir's root directory.
    pub fn maildir(&self) -> &Path {
        self.maildir.root()
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Whether the journal knows `uidl` (stored, delivered or deleted): such a message is
    /// never fetched again.
    pub fn is_known(&self, uidl: &str) -> bool {
        self.entries.contains_key(uidl)
    }

    /// What the journal knows about `uidl`.
    pub fn entry(&self, uidl: &str) -> Option<&Entry> {
        self.entries.get(uidl)
    }

    /// Every entry of the journal, by UIDL.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.values()
    }

    /// The server's UIDLs the journal does not know, in the server's order: the messages to
    /// fetch.
    pub fn unseen<'a, S: AsRef<str>>(&self, server_uidls: &'a [S]) -> Vec<&'a str> {
        server_uidls
            .iter()
            .map(AsRef::as_ref)
            .filter(|u| !self.is_known(u))
            .collect()
    }

    /// Starts storing the message `uidl` (whose size the server announced as `server_size`),
    /// first seen now. Write its bytes into the returned [`Incoming`], then
    /// [`commit`](Incoming::commit) it, or [`finish`](Incoming::finish) it and pass it to
    /// [`commit_batch`](Self::commit_batch) with others; dropping it without either removes
    /// the partial file.
    pub fn begin(&mut self, uidl: &str, server_size: u64) -> Result<Incoming<'_>> {
        self.begin_at(uidl, server_size, SystemTime::now())
    }

    /// [`begin`](Self::begin) with an explicit first-seen time (for retention by age).
    pub fn begin_at(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> Result<Incoming<'_>> {
        let staging = self.stage(uidl, server_size, first_seen)?;
        Ok(Incoming {
            store: self,
            staging,
        })
    }

    /// Starts storing the message `uidl`, like [`begin_at`](Self::begin_at), but returns a
    /// writer that does not borrow the store, so that an async engine can hold it across
    /// `.await`s while other work uses the store. [`Staging::finish`] it and pass the result
    /// to [`commit_batch`](Self::commit_batch).
    pub fn stage(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> Result<Staging> {
        if uidl.is_empty() || uidl.len() > MAX_UIDL_LEN {
            return Err(StoreError::InvalidUidl(uidl.to_owned()));
        }
        if self.is_known(uidl) {
            return Err(StoreError::AlreadyKnown(uidl.to_owned()));
        }
        let (name, path, file) = loop {
            let name = self.maildir.unique_name();
            let path = self.maildir.tmp_path(&name);
            match maildir::private_file_options()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    maildir::make_private(&file, &path)?;
                    break (name, path, file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        };
        Ok(Staging {
            uidl: uidl.to_owned(),
            server_size,
            first_seen: first_seen
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            name,
            path,
            file: Some(BufWriter::with_capacity(64 * 1024, file)),
            bytes: 0,
            crc: Crc32::new(),
            remove_on_drop: true,
        })
    }

    /// Makes a batch of [finished](Incoming::finish) messages durable, records them in the
    /// journal and moves them into `new/`, with one data sync, one journal `fsync` and one
    /// `fsync` of `new/` for the whole batch (the protocol in the module docs). Returns their
    /// paths in `new/`, in the batch's order. An empty batch does nothing.
    ///
    /// A UIDL the journal already knows, or one that comes twice in the batch, fails the
    /// batch with [`StoreError::AlreadyKnown`] before anything is written; the batch's files
    /// are removed. On any other error the messages may or may not be stored:
    /// [`Store::is_known`] tells; messages left half-way are settled by the next
    /// [`Store::open`], and the others' files are removed.
    ///
    /// # Panics
    ///
    /// If a message was begun on another store.
    pub fn commit_batch(&mut self, mut batch: Vec<Finished>) -> Result<Vec<PathBuf>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut uidls = HashSet::with_capacity(batch.len());
        for finished in &batch {
            assert!(
                finished.path == self.maildir.tmp_path(&finished.entry.name),
                "a message begun on another store"
            );
            let uidl = finished.entry.uidl.as_str();
            if self.is_known(uidl) || !uidls.insert(uidl) {
                return Err(StoreError::AlreadyKnown(uidl.to_owned()));
            }
        }

        // (a) Every file's bytes durable before any of its records can be.
        self.sync_files(&batch)?;
        crash_point!(self, batch, FileSynced);

        // (b) The `S` records, one append, one fsync.
        #[cfg(test)]
        if self.crash_at == Some(CrashPoint::JournaledPartly) {
            let half = batch.len() / 2;
            self.journal
                .append_all(batch[..half].iter().map(|f| Record::Put(&f.entry)))?;
            self.journal.sync()?;
            for finished in &mut batch {
                finished.remove_on_drop = false;
            }
            return Err(StoreError::SimulatedCrash);
        }
        if let Err(e) = self
            .journal
            .append_all(batch.iter().map(|f| Record::Put(&f.entry)))
        {
            // Cut back cleanly: the files are nobody's and go (when `batch` drops).
            // Poisoned: they may be referenced, so they stay for the next reconciliation.
            if self.journal.is_poisoned() {
                for finished in &mut batch {
                    finished.remove_on_drop = false;
                }
            }
            return Err(e);
        }
        for finished in &mut batch {
            finished.remove_on_drop = false;
            self.entries
                .insert(finished.entry.uidl.clone(), finished.entry.clone());
        }
        self.journal.sync()?;
        crash_point!(self, batch, Journaled);

        // (c) Into `new/`, one fsync of `new/`.
        let mut paths = Vec::with_capacity(batch.len());
        for finished in &batch {
            #[cfg(test)]
            if self.crash_at == Some(CrashPoint::RenamedPartly) && paths.len() == batch.len() / 2 {
                return Err(StoreError::SimulatedCrash);
            }
            let target = self.maildir.new_path(&finished.entry.name);
            fs::rename(&finished.path, &target)
                .map_err(io_err("rename into new/", &finished.path))?;
            paths.push(target);
        }
        sync_dir(self.maildir.new_dir())?;
        crash_point!(self, batch, Renamed);

        // (d) The `D` records, durable with the next journal fsync.
        for finished in &mut batch {
            finished.entry.state = EntryState::Delivered;
        }
        self.journal
            .append_all(batch.iter().map(|f| Record::Put(&f.entry)))?;
        for finished in &batch {
            self.entries
                .insert(finished.entry.uidl.clone(), finished.entry.clone());
        }
        Ok(paths)
    }

    /// Makes the bytes of every file of `batch` durable: one `syncfs` for a batch of a few
    /// files or more on Linux, else an `fsync` per file.
    fn sync_files(&self, batch: &[Finished]) -> Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if batch.len() >= SYNCFS_MIN_BATCH {
            return rustix::fs::syncfs(&self.sync_handle)
                .map_err(|e| io_err("syncfs", self.maildir.tmp_dir())(e.into()));
        }
        for finished in batch {
            let path = &finished.path;
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err("open", path))?;
            file.sync_all().map_err(io_err("fsync", path))?;
        }
        Ok(())
    }

    /// The UIDLs that `policy` says to delete on the server at `now` (passed in: no clock is
    /// read here). Only delivered messages are offered. Send `DELE` for those the server
    /// still lists, then `QUIT`, then call [`mark_deleted`](Self::mark_deleted).
    ///
    /// [`RetentionPolicy::UntilDeletedLocally`] looks at the Maildir: a delivered message is
    /// offered when no file of its name (the journal knows which file each UIDL became) is
    /// left in `new/` or `cur/`, nor in a Maildir++ subfolder (`.Archive/cur`: moving a
    /// message into another folder keeps it), or when every copy carries the trashed flag
    /// `T`. Nothing is offered when [`Store::open`] had to create the Maildir while the
    /// journal already knew messages (a journal given with a Maildir it never delivered
    /// into must not delete the whole mailbox), or when the Maildir cannot be read.
    ///
    /// A message moved into a trash folder (`.Trash/cur`) is kept on the server until the
    /// trash is emptied (Windows Live Mail's "remove from server when deleted from Deleted
    /// Items"). A reader that gives a moved or copied message a new file name (rather than
    /// renaming it with its base name kept, as Maildir readers do for flags) makes it look
    /// deleted: its server copy is then deleted while the local copy lives on; no mail is
    /// lost.
    pub fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        if policy == RetentionPolicy::UntilDeletedLocally {
            return self.deleted_locally();
        }
        due_for_deletion(self.entries.values(), policy, now)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The delivered messages whose local copy is gone or trashed (see
    /// [`to_delete`](Self::to_delete)).
    fn deleted_locally(&self) -> Vec<String> {
        if self.maildir_foreign {
            tracing::warn!(
                maildir = %self.maildir.root().display(),
                "the Maildir was created now but the journal knew messages: none of them \
                 counts as deleted here"
            );
            return Vec::new();
        }
        let copies = match self.maildir.local_copies() {
            Ok(copies) => copies,
            Err(error) => {
                tracing::warn!(%error, "cannot tell which messages were deleted here");
                return Vec::new();
            }
        };
        self.entries
            .values()
            .filter(|e| {
                e.state == EntryState::Delivered
                    && copies.get(&e.name) != Some(&maildir::LocalCopy::Kept)
            })
            .map(|e| e.uidl.clone())
            .collect()
    }

    /// Records that the server deleted these messages (call it after the server confirmed
    /// `QUIT`). UIDLs that are unknown or not delivered are ignored. Returns how many entries
    /// changed. Durable on return.
    pub fn mark_deleted<S: AsRef<str>>(&mut self, uidls: &[S]) -> Result<usize> {
        let mut changed = 0;
        for uidl in uidls {
            let Some(entry) = self.entries.get(uidl.as_ref()) else {
                continue;
            };
            if entry.state != EntryState::Delivered {
                continue;
            }
            let mut entry = entry.clone();
            entry.state = EntryState::Deleted;
            self.journal.append(Record::Put(&entry))?;
            self.entries.insert(entry.uidl.clone(), entry);
            changed += 1;
        }
        self.sync()?;
        self.maybe_compact()?;
        Ok(changed)
    }

    /// Forgets the delivered or deleted messages that are no longer in the server's list
    /// (`server_uidls`, the complete `UIDL` listing of this session), so the journal does not
    /// grow forever. Returns the forgotten UIDLs. Durable on return.
    pub fn forget_missing<S: AsRef<str>>(&mut self, server_uidls: &[S]) -> Result<Vec<String>> {
        let on_server: HashSet<&str> = server_uidls.iter().map(AsRef::as_ref).collect();
        let gone: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.state != EntryState::Stored && !on_server.contains(e.uidl.as_str()))
            .map(|e| e.uidl.clone())
            .collect();
        for uidl in &gone {
            self.journal.append(Record::Forget(uidl))?;
            self.entries.remove(uidl);
        }
        if !gone.is_empty() {
            self.sync()?;
            self.maybe_compact()?;
        }
        Ok(gone)
    }

    /// Makes every journal record durable (the lazily written "delivered" records).
    pub fn sync(&mut self) -> Result<()> {
        if self.journal.is_unsynced() {
            self.journal.sync()?;
        }
        Ok(())
    }

    /// Rewrites the journal with only the live entries (atomically).
    pub fn compact(&mut self) -> Result<()> {
        // Every `new/` rename was fsynced in its commit; still, make it explicit that no `D`
        // record becomes durable here before its file.
        sync_dir(self.maildir.new_dir())?;
        self.journal.rewrite(self.entries.values())
    }

    fn maybe_compact(&mut self) -> Result<bool> {
        let live = self.entries.len() as u64 + 1;
        if self.journal.lines() > 64 && self.journal.lines() > 2 * live {
            self.compact()?;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// A message being written into `tmp/`. Write its bytes (in any chunks) with
/// [`std::io::Write`], then [`commit`](Self::commit). Dropped without a commit, it removes its
/// tmp file: the message was not stored and will be fetched again.
#[derive(Debug)]
pub struct Incoming<'s> {
    store: &'s mut Store,
    staging: Staging,
}

impl Incoming<'_> {
    /// The UIDL being stored.
    pub fn uidl(&self) -> &str {
        self.staging.uidl()
    }

    /// The Maildir file name it will have.
    pub fn name(&self) -> &str {
        self.staging.name()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.staging.bytes_written()
    }

    /// Makes the message durable, records it in the journal and moves it into `new/`: a
    /// [`finish`](Self::finish) and a [`Store::commit_batch`] of this one message. Returns its
    /// path in `new/`.
    ///
    /// On an error the message may or may not be stored: [`Store::is_known`] tells; a
    /// message left half-way is settled by the next [`Store::open`].
    pub fn commit(self) -> Result<PathBuf> {
        let finished = self.staging.finish()?;
        let mut paths = self.store.commit_batch(vec![finished])?;
        Ok(paths.pop().expect("one path per message"))
    }

    /// Completes the message in `tmp/` (its size and CRC-32 recorded) without making it
    /// durable or journaling it, and releases the store, so that the next message can be
    /// begun. Pass the result to [`Store::commit_batch`] with others: one `fsync` each of the
    /// data, the journal and `new/` for the whole batch instead of three per message.
    ///
    /// Until it is committed the message is not stored: [`Store::is_known`] does not know it,
    /// and after a crash its file is removed and the message is fetched again.
    pub fn finish(self) -> Result<Finished> {
        self.staging.finish()
    }

    /// Gives up on this message and removes its tmp file (the same as dropping it).
    pub fn abort(self) {}

    /// Unit tests only: stops here as if the process were killed (the tmp file stays).
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        self.staging.remove_on_drop = false;
    }
}

impl Write for Incoming<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.staging.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.staging.flush()
    }
}

/// A message being written into `tmp/` that does not borrow its [`Store`] ([`Store::stage`]):
/// what an async engine holds across `.await`s. Write its bytes with [`std::io::Write`], then
/// [`finish`](Self::finish) it. Dropped before that, it removes its tmp file.
#[derive(Debug)]
pub struct Staging {
    uidl: String,
    server_size: u64,
    first_seen: u64,
    name: String,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    bytes: u64,
    crc: Crc32,
    remove_on_drop: bool,
}

impl Staging {
    /// The UIDL being stored.
    pub fn uidl(&self) -> &str {
        &self.uidl
    }

    /// The Maildir file name it will have.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and closes the file (no sync): the message is complete in `tmp/`, waiting for
    /// [`Store::commit_batch`]. From here on the [`Finished`] owns the file.
    pub fn finish(mut self) -> Result<Finished> {
        let writer = self.file.take().expect("the file is there until finish");
        let file = writer
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        drop(file);
        self.remove_on_drop = false;
        Ok(Finished {
            entry: Entry {
                uidl: std::mem::take(&mut self.uidl),
                name: std::mem::take(&mut self.name),
                state: EntryState::Stored,
                bytes: self.bytes,
                crc32: self.crc.finish(),
                server_size: self.server_size,
                first_seen: self.first_seen,
            },
            path: std::mem::take(&mut self.path),
            remove_on_drop: true,
        })
    }
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("the file is there until finish");
        let n = file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file
            .as_mut()
            .expect("the file is there until finish")
            .flush()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.remove_on_drop {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A message completely written to `tmp/` ([`Incoming::finish`]), waiting for
/// [`Store::commit_batch`]. It is not stored yet: dropped without a commit, it removes its
/// tmp file, and the message will be fetched again.
#[derive(Debug)]
#[must_use = "a finished message is stored only by Store::commit_batch"]
pub struct Finished {
    /// The entry to journal (state `Stored`).
    entry: Entry,
    /// `tmp/<name>`.
    path: PathBuf,
    remove_on_drop: bool,
}

impl Finished {
    /// The UIDL being stored.
    pub fn uidl(&self) -> &str {
        &self.entry.uidl
    }

    /// The Maildir file name it will have.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Bytes written to the file.
    pub fn bytes(&self) -> u64 {
        self.entry.bytes
    }

    /// Gives up on this message and removes its tmp file (the same as dropping it).
    pub fn abort(self) {}

    /// Unit tests only: stops here as if the process were killed (the tmp file stays).
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_file(&self.path);
        }
    }
}
