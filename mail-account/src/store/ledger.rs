//! What the mbox and MDA deliveries share: the state journal of the messages delivered (the
//! same journal format and rules as the Maildir store's), and anonymous spool files for the
//! messages being received.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::crc::Crc32;
use super::error::{Result, StoreError, io_err};
use super::journal::{Journal, Record};
use super::maildir::{make_private, private_file_options};
use super::{Entry, EntryState, MAX_UIDL_LEN, RetentionPolicy, due_for_deletion};

/// The journal and the entries it holds.
#[derive(Debug)]
pub(super) struct Ledger {
    pub(super) journal: Journal,
    pub(super) entries: BTreeMap<String, Entry>,
    /// Bytes of a torn last journal record dropped at open.
    pub(super) torn_tail_bytes: u64,
}

impl Ledger {
    /// Opens (creating) the journal at `path` and takes its lock; removes spool files a
    /// killed run left next to it.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let loaded = Journal::open(path)?;
        remove_stale_spools(path);
        Ok(Self {
            journal: loaded.journal,
            entries: loaded.entries,
            torn_tail_bytes: loaded.torn_bytes,
        })
    }

    pub(super) fn is_known(&self, uidl: &str) -> bool {
        self.entries.contains_key(uidl)
    }

    /// Refuses an invalid or known UIDL before anything is staged.
    pub(super) fn check_new(&self, uidl: &str) -> Result<()> {
        if uidl.is_empty() || uidl.len() > MAX_UIDL_LEN {
            return Err(StoreError::InvalidUidl(uidl.to_owned()));
        }
        if self.is_known(uidl) {
            return Err(StoreError::AlreadyKnown(uidl.to_owned()));
        }
        Ok(())
    }

    /// Records `entry` (one append, no fsync).
    pub(super) fn put(&mut self, entry: Entry) -> Result<()> {
        self.journal.append(Record::Put(&entry))?;
        self.entries.insert(entry.uidl.clone(), entry);
        Ok(())
    }

    /// Records several entries with one append (no fsync).
    pub(super) fn put_all(&mut self, entries: &[Entry]) -> Result<()> {
        self.journal.append_all(entries.iter().map(Record::Put))?;
        for entry in entries {
            self.entries.insert(entry.uidl.clone(), entry.clone());
        }
        Ok(())
    }

    /// Forgets a UIDL (one append, no fsync).
    pub(super) fn forget(&mut self, uidl: &str) -> Result<()> {
        self.journal.append(Record::Forget(uidl))?;
        self.entries.remove(uidl);
        Ok(())
    }

    pub(super) fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>> {
        let on_server: HashSet<&str> = server_uidls.iter().map(String::as_str).collect();
        let gone: Vec<String> = (self.entries.values())
            .filter(|e| e.state != EntryState::Stored && !on_server.contains(e.uidl.as_str()))
            .map(|e| e.uidl.clone())
            .collect();
        for uidl in &gone {
            self.forget(uidl)?;
        }
        if !gone.is_empty() {
            self.sync()?;
            self.maybe_compact()?;
        }
        Ok(gone)
    }

    pub(super) fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        due_for_deletion(self.entries.values(), policy, now)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    pub(super) fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize> {
        let mut changed = 0;
        for uidl in uidls {
            let Some(entry) = self.entries.get(uidl) else {
                continue;
            };
            if entry.state != EntryState::Delivered {
                continue;
            }
            let mut entry = entry.clone();
            entry.state = EntryState::Deleted;
            self.put(entry)?;
            changed += 1;
        }
        self.sync()?;
        self.maybe_compact()?;
        Ok(changed)
    }

    pub(super) fn sync(&mut self) -> Result<()> {
        if self.journal.is_unsynced() {
            self.journal.sync()?;
        }
        Ok(())
    }

    /// Rewrites the journal with the live entries when most records are superseded.
    pub(super) fn maybe_compact(&mut self) -> Result<()> {
        let live = self.entries.len() as u64 + 1;
        if self.journal.lines() > 64 && self.journal.lines() > 2 * live {
            self.journal.rewrite(self.entries.values())?;
        }
        Ok(())
    }
}

/// The prefix of spool files: `<journal>.spool-`.
fn spool_prefix(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".spool-");
    PathBuf::from(name)
}

/// Removes `<journal>.spool-*` files (a spool file is unlinked right after it is created; one
/// is left only by a kill in between).
fn remove_stale_spools(journal: &Path) {
    let prefix = spool_prefix(journal);
    let (Some(dir), Some(stem)) = (prefix.parent(), prefix.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stem = stem.to_string_lossy().into_owned();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&stem) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An anonymous file holding one received message: created next to the journal (mode 0600)
/// and unlinked at once, so it vanishes with the process; never synced.
#[derive(Debug)]
pub(super) struct Spool {
    file: BufWriter<File>,
    bytes: u64,
    crc: Crc32,
}

impl Spool {
    pub(super) fn create(journal: &Path) -> Result<Self> {
        let prefix = spool_prefix(journal);
        let (path, file) = loop {
            let mut path = prefix.clone().into_os_string();
            path.push(format!(
                "{}-{}",
                std::process::id(),
                SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = PathBuf::from(path);
            match private_file_options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        };
        let unlinked = std::fs::remove_file(&path).map_err(io_err("remove", &path));
        make_private(&file, &path)?;
        unlinked?;
        Ok(Self {
            file: BufWriter::with_capacity(64 * 1024, file),
            bytes: 0,
            crc: Crc32::new(),
        })
    }

    /// Bytes written so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes the spool and returns its file rewound to the start, its length and CRC-32.
    pub(super) fn into_file(self) -> io::Result<(File, u64, u32)> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok((file, self.bytes, self.crc.finish()))
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(super) fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
