//! Delivery into an mbox file (the mboxrd variant), crash-safely, as one
//! [`Delivery`].
//!
//! Each message is appended as a `From MAILER-DAEMON <date>` line (the date it was first
//! seen, in UTC, in `asctime` form, as mpop and fetchmail write it), the message with LF line
//! ends and every line that matches `^>*From ` given one more `>` (mboxrd quoting, so a reader
//! can undo it exactly), and a blank line.
//!
//! # Locking
//!
//! While it reads or appends, the delivery holds both locks other mbox programs use: a dot
//! lock (`<mbox>.lock`, created with `O_EXCL`, holding the process id; a lock left by a
//! process that no longer runs, or older than five minutes, is broken) and an `fcntl` lock on
//! the whole file. A directory where the dot lock cannot be created (permission denied) gets
//! the `fcntl` lock only, as mutt does. Both are waited for up to [`LOCK_WAIT`].
//!
//! # The commit protocol
//!
//! An append is visible to readers at once, so unlike the Maildir the record comes first:
//!
//! 1. Under the locks, the mbox's length `L` is read and each message of the batch gets its
//!    offset (after one or two newlines if the file does not end with a blank line).
//! 2. `S <uidl> <offset> <bytes> <crc32> ...` for every message, one append and one `fsync`
//!    of the journal. Nothing is in the mbox yet.
//! 3. The messages are appended and the mbox is `fsync`ed.
//! 4. `D` records for every message, `fsync`ed before the locks are released.
//!
//! A kill before step 2 ends leaves nothing (the spool files are unlinked; the messages are
//! fetched again). A kill after it leaves `S` records that [`Mbox::open`] settles, under the
//! locks: a message whose bytes are in the mbox at its offset with its size and CRC-32 is
//! delivered (`D`); any other is forgotten and fetched again, and if the mbox ends inside the
//! first such message with nothing but that message's beginning after its offset (a torn
//! append: it starts with its `From ` line and holds no other), the mbox is truncated back to
//! that offset and `fsync`ed. So a crash loses nothing and duplicates nothing, and a torn
//! append is repaired on the next run.
//!
//! # Limits
//!
//! - Between a crash and the next run, a program that rewrites the mbox (a mail reader
//!   expunging messages) moves the offsets of an unsettled batch: its messages are then
//!   fetched again (a duplicate, never a loss). The stale dot lock a kill leaves keeps
//!   well-behaved programs away until it is broken.
//! - "Until I delete it here" retention needs to see the local copy; it is for Maildirs only.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::crc::Crc32;
use super::error::{Result, StoreError, io_err};
use super::ledger::{Ledger, Spool, epoch_secs};
use super::maildir::{make_private, private_file_options, sync_dir};
use super::{Entry, EntryState, RetentionPolicy};
use crate::deliver::{Delivered, Delivery};

/// How long [`Mbox`] waits for another program's lock on the mbox.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A dot lock older than this is taken to be left by a crashed program and broken.
const STALE_DOT_LOCK: Duration = Duration::from_secs(300);

/// An mbox file and its state journal (see the module docs).
#[derive(Debug)]
pub struct Mbox {
    path: PathBuf,
    ledger: Ledger,
}

/// What [`Mbox::open`] found and repaired after an interrupted run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MboxReport {
    /// Bytes of a torn last journal record that were dropped.
    pub torn_journal_bytes: u64,
    /// UIDLs whose append was complete: now recorded as delivered.
    pub completed: Vec<String>,
    /// UIDLs whose append was missing or incomplete: forgotten, fetched again.
    pub refetch: Vec<String>,
    /// Bytes of a torn append cut off the end of the mbox.
    pub truncated_bytes: u64,
}

impl MboxReport {
    /// Whether the last run ended cleanly.
    pub fn is_clean(&self) -> bool {
        self.torn_journal_bytes == 0
            && self.completed.is_empty()
            && self.refetch.is_empty()
            && self.truncated_bytes == 0
    }
}

impl std::fmt::Display for MboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages found complete in the mbox, {} to fetch again, {} bytes of a torn \
             append removed",
            self.completed.len(),
            self.refetch.len(),
            self.truncated_bytes
        )
    }
}

impl Mbox {
    /// Opens the journal (created if missing; its lock taken) for delivery into the mbox at
    /// `path` (created on the first delivery, mode 0600), and settles a batch a crash
    /// interrupted (see the module docs).
    pub fn open(path: impl AsRef<Path>, journal: impl AsRef<Path>) -> Result<(Self, MboxReport)> {
        let mut mbox = Self {
            path: path.as_ref().to_path_buf(),
            ledger: Ledger::open(journal.as_ref())?,
        };
        let mut report = MboxReport {
            torn_journal_bytes: mbox.ledger.torn_tail_bytes,
            ..MboxReport::default()
        };
        mbox.reconcile(&mut report)?;
        Ok((mbox, report))
    }

    /// The mbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        self.ledger.journal.path()
    }

    /// Every entry of the journal.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.ledger.entries.values()
    }

    fn reconcile(&mut self, report: &mut MboxReport) -> Result<()> {
        let mut pending: Vec<(u64, Entry)> = (self.ledger.entries.values())
            .filter(|e| e.state == EntryState::Stored)
            .map(|e| (e.name.parse().unwrap_or(u64::MAX), e.clone()))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_by_key(|(offset, _)| *offset);
        let lock = MboxLock::acquire(&self.path)?;
        let len = lock.len()?;
        let mut first_failure = true;
        for (offset, mut entry) in pending {
            let end = offset.saturating_add(entry.bytes);
            if end <= len && crc_at(&lock.file, &self.path, offset, entry.bytes)? == entry.crc32 {
                entry.state = EntryState::Delivered;
                report.completed.push(entry.uidl.clone());
                self.ledger.put(entry)?;
                continue;
            }
            if first_failure && offset < len && len < end {
                let torn = read_at(&lock.file, &self.path, offset, len - offset)?;
                if is_one_torn_message(&torn) {
                    lock.file
                        .set_len(offset)
                        .map_err(io_err("truncate", &self.path))?;
                    lock.file.sync_all().map_err(io_err("fsync", &self.path))?;
                    report.truncated_bytes = len - offset;
                }
            }
            first_failure = false;
            report.refetch.push(entry.uidl.clone());
            self.ledger.forget(&entry.uidl)?;
        }
        self.ledger.sync()?;
        drop(lock);
        Ok(())
    }

    fn commit_batch(&mut self, batch: Vec<MboxStaged>) -> Result<Vec<Delivered>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = std::collections::HashSet::new();
        for staged in &batch {
            if self.ledger.is_known(&staged.entry.uidl) || !seen.insert(&staged.entry.uidl) {
                return Err(StoreError::AlreadyKnown(staged.entry.uidl.clone()));
            }
        }
        let lock = MboxLock::acquire(&self.path)?;
        let len0 = lock.len()?;
        let tail = if len0 >= 2 {
            read_at(&lock.file, &self.path, len0 - 2, 2)?
        } else {
            read_at(&lock.file, &self.path, 0, len0)?
        };
        let padding: &[u8] = match (len0, tail.as_slice()) {
            (0, _) | (_, [b'\n', b'\n']) => b"",
            (1, [b'\n']) | (_, [_, b'\n']) => b"\n",
            _ => b"\n\n",
        };
        let mut offset = len0 + padding.len() as u64;
        let mut entries = Vec::with_capacity(batch.len());
        for staged in &batch {
            let mut entry = staged.entry.clone();
            entry.name = offset.to_string();
            offset += entry.bytes;
            entries.push(entry);
        }
        // (2) The records first: once durable, the next open settles whatever happens next.
        self.ledger.put_all(&entries)?;
        self.ledger.sync()?;
        // (3) Append and fsync.
        if let Err(e) = append(&lock, &self.path, padding, batch) {
            // Cut back; if that works the records can go too, else the next open settles.
            let cut = lock.file.set_len(len0).and_then(|()| lock.file.sync_all());
            if cut.is_ok() {
                for entry in &entries {
                    self.ledger.forget(&entry.uidl)?;
                }
                self.ledger.sync()?;
            }
            return Err(e);
        }
        if lock.created {
            sync_dir(parent_dir(&self.path))?;
        }
        // (4) Delivered, durably, before the locks go.
        for entry in &mut entries {
            entry.state = EntryState::Delivered;
        }
        self.ledger.put_all(&entries)?;
        self.ledger.sync()?;
        drop(lock);
        Ok(entries
            .into_iter()
            .map(|e| {
                let location = format!("{}#{}", self.path.display(), e.name);
                Delivered::new(e.uidl, location)
            })
            .collect())
    }
}

/// Writes the padding and every staged message at the end of the locked mbox, then fsyncs it.
fn append(lock: &MboxLock, path: &Path, padding: &[u8], batch: Vec<MboxStaged>) -> Result<()> {
    let mut file = &lock.file;
    file.seek(SeekFrom::End(0)).map_err(io_err("seek", path))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    out.write_all(padding).map_err(io_err("append to", path))?;
    for staged in batch {
        let mut spool = staged.spool;
        io::copy(&mut spool, &mut out).map_err(io_err("append to", path))?;
    }
    out.flush().map_err(io_err("append to", path))?;
    drop(out);
    lock.file.sync_all().map_err(io_err("fsync", path))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut buf, offset)
        .map_err(io_err("read", path))?;
    Ok(buf)
}

fn crc_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut crc = Crc32::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact_at(&mut buf[..want], offset + done)
            .map_err(io_err("read", path))?;
        crc.update(&buf[..want]);
        done += want as u64;
    }
    Ok(crc.finish())
}

/// Whether `bytes` (from a recorded offset to the end of the mbox) are the beginning of one
/// message of ours and nothing else: they start with a `From ` line and no other line does
/// (inside a message every such line is quoted).
fn is_one_torn_message(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ") && memchr::memmem::find(bytes, b"\nFrom ").is_none()
}

/// The two locks on an mbox (module docs), released on drop.
#[derive(Debug)]
struct MboxLock {
    file: File,
    path: PathBuf,
    dot_lock: Option<PathBuf>,
    /// The mbox did not exist and was created.
    created: bool,
}

impl MboxLock {
    fn acquire(path: &Path) -> Result<Self> {
        let started = Instant::now();
        let dot_lock = take_dot_lock(path, started)?;
        let existed = path.exists();
        let opened = private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open", path));
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                if let Some(dot) = &dot_lock {
                    let _ = std::fs::remove_file(dot);
                }
                return Err(e);
            }
        };
        let lock = Self {
            file,
            path: path.to_path_buf(),
            dot_lock,
            created: !existed,
        };
        if lock.created {
            make_private(&lock.file, path)?;
        }
        loop {
            match rustix::fs::fcntl_lock(
                &lock.file,
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            ) {
                Ok(()) => return Ok(lock),
                Err(e)
                    if (e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS)
                        && started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                    return Err(StoreError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) => return Err(io_err("lock", path)(e.into())),
            }
        }
    }

    fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(io_err("stat", &self.path))?
            .len())
    }
}

impl Drop for MboxLock {
    fn drop(&mut self) {
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::Unlock);
        if let Some(dot) = &self.dot_lock {
            let _ = std::fs::remove_file(dot);
        }
    }
}

/// Creates `<mbox>.lock` holding our process id, breaking a stale one. `None` when the
/// directory does not let us create it.
///
/// The id is written to a file of our own first, which is then hard-linked to the lock's name:
/// a lock file therefore always names its owner, even when the owner is killed while taking
/// it (an empty lock file could not be told stale until [`STALE_DOT_LOCK`] had passed).
fn take_dot_lock(mbox: &Path, started: Instant) -> Result<Option<PathBuf>> {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".lock");
    let dot = PathBuf::from(name);
    let mut own = dot.as_os_str().to_owned();
    own.push(format!(".{}", std::process::id()));
    let own = PathBuf::from(own);
    match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&own)
    {
        Ok(mut file) => {
            if let Err(e) = writeln!(file, "{}", std::process::id()) {
                let _ = std::fs::remove_file(&own);
                return Err(io_err("write", &own)(e));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::debug!(lock = %dot.display(), "no dot lock (permission denied); fcntl lock only");
            return Ok(None);
        }
        Err(e) => return Err(io_err("create", &own)(e)),
    }
    let taken = loop {
        match std::fs::hard_link(&own, &dot) {
            Ok(()) => break Ok(Some(dot)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if dot_lock_is_stale(&dot) {
                    tracing::info!(lock = %dot.display(), "breaking a stale dot lock");
                    let _ = std::fs::remove_file(&dot);
                    continue;
                }
                if started.elapsed() >= LOCK_WAIT {
                    break Err(StoreError::Locked {
                        path: mbox.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break Err(io_err("link", &dot)(e)),
        }
    };
    let _ = std::fs::remove_file(&own);
    taken
}

/// A dot lock whose process is gone, or that is older than [`STALE_DOT_LOCK`].
fn dot_lock_is_stale(dot: &Path) -> bool {
    let Ok(file) = File::open(dot) else {
        return false; // gone already: the next create_new tells
    };
    let mut text = String::new();
    let _ = (&file).take(64).read_to_string(&mut text);
    if let Some(pid) = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
    {
        return true;
    }
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_DOT_LOCK)
}

/// mboxrd quoting, streamed: every line matching `^>*From ` gets one more `>`.
#[derive(Debug, Default)]
struct Quoter {
    /// Bytes at the start of the current line that may still become `>*From `.
    pending: Vec<u8>,
    /// Inside a line, past its possible `>*From ` prefix.
    mid_line: bool,
    /// The last byte written (for the final newline).
    last: Option<u8>,
}

impl Quoter {
    fn write(&mut self, out: &mut impl Write, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.mid_line {
                let end = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
                out.write_all(&data[..end])?;
                self.last = Some(data[end - 1]);
                self.mid_line = data[end - 1] != b'\n';
                data = &data[end..];
                continue;
            }
            let byte = data[0];
            data = &data[1..];
            self.pending.push(byte);
            let quoted = self.pending.iter().position(|&b| b != b'>');
            let rest = quoted.map_or(&[][..], |i| &self.pending[i..]);
            if rest == b"From " {
                out.write_all(b">")?;
                self.flush_pending(out)?;
                self.mid_line = true;
            } else if !b"From ".starts_with(rest) || byte == b'\n' {
                self.flush_pending(out)?;
                self.mid_line = byte != b'\n';
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self, out: &mut impl Write) -> io::Result<()> {
        if let Some(&last) = self.pending.last() {
            out.write_all(&self.pending)?;
            self.last = Some(last);
            self.pending.clear();
        }
        Ok(())
    }

    /// Ends the message: whatever is pending, a final newline if missing, the blank line.
    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.flush_pending(out)?;
        if self.last.is_some_and(|b| b != b'\n') {
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")
    }
}

/// `asctime`-style UTC time, as in `From ` lines: `Sat Dec  5 15:58:10 2026`.
fn asctime(secs: u64) -> String {
    use crate::date::{DAYS_FROM_THURSDAY, MONTHS, civil_from_days};
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {day:>2} {:02}:{:02}:{:02} {year}",
        DAYS_FROM_THURSDAY[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::from(month - 1)],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A message being received for an [`Mbox`]: its `From ` line and quoted bytes go into an
/// anonymous spool file.
#[derive(Debug)]
pub struct MboxStaging {
    entry: Entry,
    spool: Spool,
    quoter: Quoter,
}

/// A message received completely for an [`Mbox`], waiting for its batch's commit.
#[derive(Debug)]
#[must_use = "a staged message is delivered only by its commit"]
pub struct MboxStaged {
    entry: Entry,
    spool: File,
}

impl Delivery for Mbox {
    type Staging = MboxStaging;
    type Staged = MboxStaged;

    fn is_known(&self, uidl: &str) -> bool {
        self.ledger.is_known(uidl)
    }

    fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>> {
        self.ledger.forget_missing(server_uidls)
    }

    fn stage(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> Result<Self::Staging> {
        self.ledger.check_new(uidl)?;
        let first_seen = epoch_secs(first_seen);
        let mut spool = Spool::create(self.ledger.journal.path())?;
        writeln!(spool, "From MAILER-DAEMON {}", asctime(first_seen))
            .map_err(io_err("write", self.ledger.journal.path()))?;
        Ok(MboxStaging {
            entry: Entry {
                uidl: uidl.to_owned(),
                name: String::new(),
                state: EntryState::Stored,
                bytes: 0,
                crc32: 0,
                server_size,
                first_seen,
            },
            spool,
            quoter: Quoter::default(),
        })
    }

    fn write_chunk(staging: &mut Self::Staging, bytes: &[u8]) -> io::Result<()> {
        staging.quoter.write(&mut staging.spool, bytes)
    }

    fn finish(&mut self, mut staging: Self::Staging) -> Result<Self::Staged> {
        let journal = self.ledger.journal.path().to_path_buf();
        staging
            .quoter
            .finish(&mut staging.spool)
            .map_err(io_err("write", &journal))?;
        debug_assert!(staging.spool.bytes() > 0);
        let (spool, bytes, crc32) = staging
            .spool
            .into_file()
            .map_err(io_err("write", &journal))?;
        let mut entry = staging.entry;
        entry.bytes = bytes;
        entry.crc32 = crc32;
        Ok(MboxStaged { entry, spool })
    }

    fn commit(&mut self, batch: Vec<Self::Staged>) -> Result<Vec<Delivered>> {
        self.commit_batch(batch)
    }

    fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        self.ledger.to_delete(policy, now)
    }

    fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize> {
        self.ledger.mark_deleted(uidls)
    }

    fn sync(&mut self) -> Result<()> {
        self.ledger.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn quote(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut q = Quoter::default();
        for piece in pieces {
            q.write(&mut out, piece).unwrap();
        }
        q.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn mboxrd_quoting_across_chunks() {
        let text: &[u8] = b"From a\n>From b\n>>From c\nFrom\nFromage\n From d\nx From e\n>F\nFrom ";
        let want: &[u8] =
            b">From a\n>>From b\n>>>From c\nFrom\nFromage\n From d\nx From e\n>F\n>From \n\n";
        assert_eq!(quote(&[text]), want);
        // Every split point gives the same bytes.
        for i in 0..text.len() {
            assert_eq!(quote(&[&text[..i], &text[i..]]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(quote(&bytes), want);
        assert_eq!(quote(&[b"a\n"]), b"a\n\n");
        assert_eq!(quote(&[b""]), b"\n");
    }

    #[test]
    fn asctime_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_704_067_200), "Mon Jan  1 00:00:00 2024");
        assert_eq!(asctime(1_709_210_096), "Thu Feb 29 12:34:56 2024");
        assert_eq!(asctime(1_796_486_290), "Sat Dec  5 15:58:10 2026");
    }

    #[test]
    fn torn_append_detection() {
        assert!(is_one_torn_message(
            b"From MAILER-DAEMON x\nSubject: a\n>From b"
        ));
        assert!(!is_one_torn_message(b"Subject: a\n"));
        assert!(!is_one_torn_message(b"From a\nb\n\nFrom c\n"));
    }

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn scratch(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mbox-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn staged(mbox: &mut Mbox, uidl: &str, body: &[u8]) -> MboxStaged {
        let mut staging = mbox
            .stage(uidl, body.len() as u64, SystemTime::now())
            .unwrap();
        for chunk in body.chunks(7) {
            Mbox::write_chunk(&mut staging, chunk).unwrap();
        }
        mbox.finish(staging).unwrap()
    }

    fn message(i: u32) -> Vec<u8> {
        format!("Message-ID: <m{i}@x>\nSubject: {i}\n\nFrom the start\n>From quoted\nend {i}\n")
            .into_bytes()
    }

    /// Undoes the mboxrd format: the messages' bytes, in order.
    fn read_back(path: &Path) -> Vec<Vec<u8>> {
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
            assert_eq!(m.pop(), Some(b'\n'), "the blank separator line");
        }
        messages
    }

    #[test]
    fn batches_append_in_mboxrd_and_read_back_exactly() {
        let dir = scratch("roundtrip");
        let path = dir.0.join("inbox");
        std::fs::write(
            &path,
            b"From someone Thu Jan  1 00:00:00 1970\nSubject: old\n\nno blank after",
        )
        .unwrap();
        let (mut mbox, report) = Mbox::open(&path, dir.0.join(".state")).unwrap();
        assert!(report.is_clean());
        let batch: Vec<MboxStaged> = (1..=3)
            .map(|i| staged(&mut mbox, &format!("u{i}"), &message(i)))
            .collect();
        let delivered = mbox.commit(batch).unwrap();
        assert_eq!(delivered.len(), 3);
        let batch = vec![staged(&mut mbox, "u4", &message(4))];
        mbox.commit(batch).unwrap();
        assert!(!dir.0.join("inbox.lock").exists(), "dot lock released");
        let messages = read_back(&path);
        assert_eq!(messages.len(), 5);
        assert_eq!(messages[0], b"Subject: old\n\nno blank after\n");
        for i in 1..=4 {
            assert_eq!(messages[i as usize], message(i));
        }
        // Known after a reopen; nothing to settle.
        drop(mbox);
        let (mbox, report) = Mbox::open(&path, dir.0.join(".state")).unwrap();
        assert!(report.is_clean(), "{report}");
        assert!(mbox.is_known("u4"));
        assert_eq!(
            mbox.entries()
                .filter(|e| e.state == EntryState::Delivered)
                .count(),
            4
        );
    }

    /// A kill after the `S` records: complete appends are kept, a torn one is cut off and
    /// fetched again, one never written is fetched again.
    #[test]
    fn torn_and_complete_appends_are_settled_on_open() {
        let dir = scratch("torn");
        let path = dir.0.join("inbox");
        let journal = dir.0.join(".state");
        let (mut mbox, _) = Mbox::open(&path, &journal).unwrap();
        let batch = vec![staged(&mut mbox, "u1", &message(1))];
        mbox.commit(batch).unwrap();
        let before = std::fs::read(&path).unwrap();
        // Steps 1 and 2 of a batch of three by hand, then half of step 3.
        let batch: Vec<MboxStaged> = (2..=4)
            .map(|i| staged(&mut mbox, &format!("u{i}"), &message(i)))
            .collect();
        let mut offset = before.len() as u64;
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        for mut staged in batch {
            let mut entry = staged.entry.clone();
            entry.name = offset.to_string();
            offset += entry.bytes;
            entries.push(entry);
            staged.spool.read_to_end(&mut bytes).unwrap();
        }
        mbox.ledger.put_all(&entries).unwrap();
        mbox.ledger.sync().unwrap();
        let cut = usize::try_from(entries[0].bytes + entries[1].bytes / 2).unwrap();
        let mut torn = before;
        torn.extend_from_slice(&bytes[..cut]);
        std::fs::write(&path, &torn).unwrap();
        std::fs::write(dir.0.join("inbox.lock"), b"999999999\n").unwrap(); // left by the "kill"
        drop(mbox);
        let (mbox, report) = Mbox::open(&path, &journal).unwrap();
        assert_eq!(report.completed, ["u2"]);
        assert_eq!(report.refetch, ["u3", "u4"]);
        assert_eq!(report.truncated_bytes, entries[1].bytes / 2);
        assert!(mbox.is_known("u2") && !mbox.is_known("u3") && !mbox.is_known("u4"));
        assert_eq!(read_back(&path), [message(1), message(2)]);
        assert!(
            !dir.0.join("inbox.lock").exists(),
            "the stale dot lock was broken"
        );
        drop(mbox);
        // Settled for good.
        let (_, report) = Mbox::open(&path, &journal).unwrap();
        assert!(report.is_clean(), "{report}");
    }

    /// Another writer's bytes after an offset we recorded are never cut off.
    #[test]
    fn foreign_bytes_are_not_truncated() {
        let dir = scratch("foreign");
        let path = dir.0.join("inbox");
        let journal = dir.0.join(".state");
        let (mut mbox, _) = Mbox::open(&path, &journal).unwrap();
        let staged = staged(&mut mbox, "u1", &message(1));
        let mut entry = staged.entry;
        entry.name = "0".to_owned();
        mbox.ledger.put_all(&[entry]).unwrap();
        mbox.ledger.sync().unwrap();
        let foreign: &[u8] =
            b"From other Thu Jan  1 00:00:00 1970\nx\n\nFrom b Thu Jan  1 00:00:00 1970\n";
        std::fs::write(&path, foreign).unwrap();
        drop(mbox);
        let (mbox, report) = Mbox::open(&path, &journal).unwrap();
        assert_eq!(report.refetch, ["u1"]);
        assert_eq!(report.truncated_bytes, 0);
        assert!(!mbox.is_known("u1"));
        assert_eq!(std::fs::read(&path).unwrap(), foreign);
    }
}
