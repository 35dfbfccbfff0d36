//! The state journal: an append-only text file, one record a line, a CRC-32 per record.
//!
//! ```text
//! 1c291ca3 H mail-account-store 1
//! 5d0e2a10 S <uidl> <name> <bytes> <crc32> <server-size> <first-seen>
//! 8f01bb2e D <uidl> <name> <bytes> <crc32> <server-size> <first-seen>
//! 02ac94d7 X <uidl> <name> <bytes> <crc32> <server-size> <first-seen>
//! 77e0c1a9 F <uidl>
//! ```
//!
//! Each line starts with the CRC-32 (8 lower-case hex digits) of the rest of the line after
//! the space. `S`, `D` and `X` put a whole entry (stored in tmp / delivered / deleted on the
//! server), replacing any earlier one for the UIDL; `F` forgets the UIDL. UIDLs and file names
//! are percent-encoded outside `!`..`~` (and `%` itself), so fields never hold a space or a
//! line break. `first-seen` is in seconds since the Unix epoch, `crc32` is the message's.
//!
//! A record (or the records of one batch commit) is written with a single `write` and never
//! changed afterwards. The only damage a
//! crash can leave is therefore at the end: an unterminated line, or (after a power loss)
//! lines that fail their checksum with nothing valid after them. That tail is dropped and the
//! file truncated to the last good record. A bad record *followed by* a good one is not a
//! crash artefact; the journal is then refused ([`StoreError::CorruptJournal`]) rather than
//! guessed at.
//!
//! Compaction writes the live entries to `<journal>.compact`, fsyncs it, renames it over the
//! journal and fsyncs the directory: a crash leaves either the old or the new journal, both
//! complete; a leftover `.compact` file is removed on open.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::crc::Crc32;
use super::error::{Result, StoreError, io_err};
use super::maildir::{create_private_dir, make_private, private_file_options, sync_dir};
use super::{Entry, EntryState};

/// The payload of the first record of every journal.
const HEADER: &str = "H mail-account-store 1";

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub(super) enum Record<'a> {
    /// Put (insert or replace) an entry.
    Put(&'a Entry),
    /// Forget a UIDL.
    Forget(&'a str),
}

/// The open journal: the append handle and what is known about the file.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    /// Length of the file (all of it valid records).
    len: u64,
    /// Records in the file, the header included.
    lines: u64,
    /// Records were appended since the last fsync.
    unsynced: bool,
    /// A write or fsync failed and the file's state is unknown.
    poisoned: bool,
    /// Held for the life of the journal: an exclusive `flock` on `<journal>.lock`.
    #[cfg(unix)]
    _lock: File,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) journal: Journal,
    pub(super) entries: BTreeMap<String, Entry>,
    /// Bytes of a torn tail that were dropped.
    pub(super) torn_bytes: u64,
    /// The journal file did not exist (or was empty) and was created.
    pub(super) created: bool,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn lock(path: &Path) -> Result<File> {
    use rustix::fs::{FlockOperation, flock};
    let lock_path = sibling(path, ".lock");
    let existed = lock_path.exists();
    let file = private_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open lock file", &lock_path))?;
    if !existed {
        make_private(&file, &lock_path)?;
    }
    // A lock just released can still be held for an instant by a child process another
    // thread is spawning (between its fork and its exec it shares every open file of this
    // process, the lock file's too): wait that out briefly before reporting another fetch.
    let started = std::time::Instant::now();
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e)
                if e == rustix::io::Errno::WOULDBLOCK
                    && started.elapsed() < std::time::Duration::from_millis(250) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err("lock", &lock_path)(e.into())),
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`, takes its lock, reads it and drops a torn
    /// tail.
    pub(super) fn open(path: &Path) -> Result<Loaded> {
        let dir = parent_dir(path);
        create_private_dir(dir)?;
        #[cfg(unix)]
        let lock = lock(path)?;
        let compact = sibling(path, ".compact");
        match fs::remove_file(&compact) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &compact)(e)),
        }
        let existed = path.exists();
        let mut file = private_file_options()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err("open", path))?;
        if !existed {
            make_private(&file, path)?;
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err("read", path))?;
        let parsed = parse(path, &data)?;
        let torn_bytes = data.len() as u64 - parsed.good_len;
        let mut journal = Self {
            path: path.to_path_buf(),
            file,
            len: parsed.good_len,
            lines: parsed.lines,
            unsynced: false,
            poisoned: false,
            #[cfg(unix)]
            _lock: lock,
        };
        if torn_bytes > 0 {
            journal
                .file
                .set_len(parsed.good_len)
                .map_err(io_err("truncate", path))?;
            journal.file.sync_all().map_err(io_err("fsync", path))?;
        }
        let created = parsed.good_len == 0;
        if created {
            journal.append_payload(HEADER)?;
            journal.sync()?;
            sync_dir(dir)?;
        }
        Ok(Loaded {
            journal,
            entries: parsed.entries,
            torn_bytes,
            created,
        })
    }

    /// The journal file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the file, the header included.
    pub(super) fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether records were appended since the last fsync.
    pub(super) fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Whether a failed write or fsync left the file in an unknown state.
    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Appends one record (one `write`), without fsync. On failure the file is cut back to
    /// its previous length; if even that fails the journal is poisoned.
    pub(super) fn append(&mut self, record: Record<'_>) -> Result<()> {
        self.append_payload(&payload(record))
    }

    /// Appends several records with one `write` (a batch commit's `S` or `D` records),
    /// without fsync. On failure the file is cut back to its previous length, none of them
    /// appended; if even that fails the journal is poisoned.
    pub(super) fn append_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<()> {
        let mut text = String::new();
        let mut lines = 0u64;
        for record in records {
            let payload = payload(record);
            let _ = writeln!(text, "{:08x} {payload}", Crc32::of(payload.as_bytes()));
            lines += 1;
        }
        self.append_lines(&text, lines)
    }

    fn append_payload(&mut self, payload: &str) -> Result<()> {
        let line = format!("{:08x} {payload}\n", Crc32::of(payload.as_bytes()));
        self.append_lines(&line, 1)
    }

    /// Appends `text` (`lines` complete records) with a single `write`.
    fn append_lines(&mut self, text: &str, lines: u64) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if lines == 0 {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(text.as_bytes()) {
            if self.file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            return Err(io_err("append to", &self.path)(e));
        }
        self.len += text.len() as u64;
        self.lines += lines;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every appended record durable. A failed fsync poisons the journal: after it
    /// the kernel may have dropped the dirty pages, so nothing is known any more.
    pub(super) fn sync(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if let Err(e) = self.file.sync_all() {
            self.poisoned = true;
            return Err(io_err("fsync", &self.path)(e));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Replaces the journal with one `Put` record per entry (compaction), atomically.
    pub(super) fn rewrite<'a>(&mut self, entries: impl Iterator<Item = &'a Entry>) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let compact = sibling(&self.path, ".compact");
        let mut text = String::new();
        let mut lines = 0u64;
        for p in std::iter::once(HEADER.to_owned()).chain(entries.map(|e| payload(Record::Put(e))))
        {
            let _ = writeln!(text, "{:08x} {p}", Crc32::of(p.as_bytes()));
            lines += 1;
        }
        let mut file = private_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&compact)
            .map_err(io_err("create", &compact))?;
        make_private(&file, &compact)?;
        file.write_all(text.as_bytes())
            .map_err(io_err("write", &compact))?;
        file.sync_all().map_err(io_err("fsync", &compact))?;
        drop(file);
        fs::rename(&compact, &self.path).map_err(io_err("rename over", &self.path))?;
        // From here on the new file is the journal, whatever happens next.
        let reopened = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err("reopen", &self.path));
        match reopened {
            Ok(file) => self.file = file,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        }
        self.len = text.len() as u64;
        self.lines = lines;
        self.unsynced = false;
        if let Err(e) = sync_dir(parent_dir(&self.path)) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }
}

fn state_tag(state: EntryState) -> char {
    match state {
        EntryState::Stored => 'S',
        EntryState::Delivered => 'D',
        EntryState::Deleted => 'X',
    }
}

fn payload(record: Record<'_>) -> String {
    let mut s = String::with_capacity(96);
    match record {
        Record::Put(e) => {
            s.push(state_tag(e.state));
            s.push(' ');
            encode(&e.uidl, &mut s);
            s.push(' ');
            encode(&e.name, &mut s);
            let _ = write!(
                s,
                " {} {:08x} {} {}",
                e.bytes, e.crc32, e.server_size, e.first_seen
            );
        }
        Record::Forget(uidl) => {
            s.push_str("F ");
            encode(uidl, &mut s);
        }
    }
    s
}

/// Percent-encodes every byte outside `!`..`~`, and `%`.
fn encode(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        if (0x21..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = field.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

/// A checked line: its payload, or `None` when the checksum or the frame is wrong.
fn check(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let (crc, payload) = text.split_at_checked(8)?;
    let payload = payload.strip_prefix(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (Crc32::of(payload.as_bytes()) == crc).then_some(payload)
}

enum Parsed {
    Header,
    Put(Entry),
    Forget(String),
}

/// Interprets a checked payload; `Err` names what is wrong.
fn interpret(payload: &str) -> Result<Parsed, &'static str> {
    if payload == HEADER {
        return Ok(Parsed::Header);
    }
    if payload.starts_with("H ") {
        return Err("unsupported journal version");
    }
    let mut fields = payload.split(' ');
    let kind = fields.next().ok_or("empty record")?;
    let mut next = || fields.next().ok_or("missing field");
    let state = match kind {
        "S" => EntryState::Stored,
        "D" => EntryState::Delivered,
        "X" => EntryState::Deleted,
        "F" => {
            let uidl = decode(next()?).ok_or("bad UIDL")?;
            return Ok(Parsed::Forget(uidl));
        }
        _ => return Err("unknown record kind"),
    };
    let uidl = decode(next()?).ok_or("bad UIDL")?;
    let name = decode(next()?).ok_or("bad file name")?;
    let bytes = next()?.parse().map_err(|_| "bad size")?;
    let crc32 = u32::from_str_radix(next()?, 16).map_err(|_| "bad checksum")?;
    let server_size = next()?.parse().map_err(|_| "bad server size")?;
    let first_seen = next()?.parse().map_err(|_| "bad time")?;
    if fields.next().is_some() {
        return Err("extra field");
    }
    Ok(Parsed::Put(Entry {
        uidl,
        name,
        state,
        bytes,
        crc32,
        server_size,
        first_seen,
    }))
}

#[derive(Debug)]
struct ParseResult {
    entries: BTreeMap<String, Entry>,
    good_len: u64,
    lines: u64,
}

fn parse(path: &Path, data: &[u8]) -> Result<ParseResult> {
    let corrupt = |line: usize, reason: &'static str| StoreError::CorruptJournal {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut entries = BTreeMap::new();
    let mut good_len = 0u64;
    let mut lines = 0u64;
    let mut offset = 0usize;
    // The first line that failed its checksum (1-based), if any: only a tail may be bad.
    let mut first_bad: Option<usize> = None;
    for (index, chunk) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        offset += chunk.len();
        let Some(line) = chunk.strip_suffix(b"\n") else {
            break; // unterminated last line: torn
        };
        let Some(payload) = check(line) else {
            first_bad.get_or_insert(number);
            continue;
        };
        if let Some(bad) = first_bad {
            return Err(corrupt(bad, "bad record followed by good ones"));
        }
        let parsed = interpret(payload).map_err(|reason| corrupt(number, reason))?;
        match (number, parsed) {
            (1, Parsed::Header) => {}
            (1, _) => return Err(corrupt(1, "not a journal of this store (no header)")),
            (_, Parsed::Header) => return Err(corrupt(number, "second header")),
            (_, Parsed::Put(entry)) => {
                entries.insert(entry.uidl.clone(), entry);
            }
            (_, Parsed::Forget(uidl)) => {
                entries.remove(&uidl);
            }
        }
        good_len = offset as u64;
        lines += 1;
    }
    if good_len == 0 && !data.is_empty() {
        // Nothing valid at all: only a torn header write is acceptable, never a foreign file.
        let header = format!("{:08x} {HEADER}\n", Crc32::of(HEADER.as_bytes()));
        if !header.as_bytes().starts_with(data) {
            return Err(corrupt(1, "not a journal of this store (no header)"));
        }
    }
    Ok(ParseResult {
        entries,
        good_len,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uidl: &str, state: EntryState) -> Entry {
        Entry {
            uidl: uidl.to_owned(),
            name: format!("1.M1P1Q1.{uidl}"),
            state,
            bytes: 10,
            crc32: 0xDEAD_BEEF,
            server_size: 12,
            first_seen: 1_700_000_000,
        }
    }

    fn line(p: &str) -> String {
        format!("{:08x} {p}\n", Crc32::of(p.as_bytes()))
    }

    #[test]
    fn encode_round_trip() {
        for s in ["abc", "a b%c\n", "ü:/", "~!"] {
            let mut enc = String::new();
            encode(s, &mut enc);
            assert!(!enc.contains([' ', '\n']));
            assert_eq!(decode(&enc).as_deref(), Some(s));
        }
    }

    #[test]
    fn parse_put_forget_and_torn_tail() {
        let a = entry("a", EntryState::Delivered);
        let b = entry("b b", EntryState::Stored);
        let mut text = line(HEADER);
        text += &line(&payload(Record::Put(&a)));
        text += &line(&payload(Record::Put(&b)));
        text += &line(&payload(Record::Forget("a")));
        let good = text.len() as u64;
        text += "0123abcd S half-writ";
        let r = parse(Path::new("j"), text.as_bytes()).unwrap();
        assert_eq!(r.good_len, good);
        assert_eq!(r.lines, 4);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries["b b"], b);
    }

    #[test]
    fn bad_checksum_at_tail_is_torn_but_in_middle_is_corrupt() {
        let a = entry("a", EntryState::Delivered);
        let good = line(HEADER) + &line(&payload(Record::Put(&a)));
        let bad = "00000000 D zz\n";
        let tail = format!("{good}{bad}\0\0\0");
        let r = parse(Path::new("j"), tail.as_bytes()).unwrap();
        assert_eq!(r.good_len, good.len() as u64);
        let middle = format!("{good}{bad}{}", line(&payload(Record::Forget("a"))));
        let err = parse(Path::new("j"), middle.as_bytes()).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptJournal { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn foreign_file_is_refused_torn_header_is_not() {
        assert!(parse(Path::new("j"), b"hello world\n").is_err());
        assert!(parse(Path::new("j"), b"[account]\nuser = 1").is_err());
        let header = line(HEADER);
        let r = parse(Path::new("j"), &header.as_bytes()[..5]).unwrap();
        assert_eq!(r.good_len, 0);
    }
}
