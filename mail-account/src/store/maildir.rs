//! Maildir layout, unique file names and directory fsync.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::crc::Crc32;
use super::error::{Result, io_err};

/// Per-process delivery counter (the `Q` part of the unique name).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Makes a directory's entries (creations, renames, removals) durable.
///
/// On Linux (and the other Unixes) `fsync` on a directory opened read-only does that; on
/// platforms where a directory cannot be opened as a file this is a no-op.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    let file = match File::open(dir) {
        Ok(file) => file,
        Err(_) if cfg!(not(unix)) => return Ok(()),
        Err(e) => return Err(io_err("open directory", dir)(e)),
    };
    match file.sync_all() {
        Ok(()) => Ok(()),
        Err(_) if cfg!(not(unix)) => Ok(()),
        Err(e) => Err(io_err("fsync directory", dir)(e)),
    }
}

/// A Maildir (`tmp/`, `new/`, `cur/`) and the naming scheme of this store's deliveries.
#[derive(Debug)]
pub(super) struct Maildir {
    root: PathBuf,
    tmp: PathBuf,
    new: PathBuf,
    cur: PathBuf,
    /// `J` and 8 hex digits of the journal path's CRC: marks the files of *this* journal, so
    /// reconciliation never removes another program's (or another account's) tmp files.
    tag: String,
    /// The sanitised host name (last part of the unique name).
    host: String,
}

impl Maildir {
    /// Opens the Maildir at `root`, creating `root`, `tmp/`, `new/` and `cur/` as needed
    /// (durably: the parent directories are fsynced after a creation).
    pub(super) fn open(root: &Path, journal: &Path) -> Result<Self> {
        let existed = root.is_dir();
        let tmp = root.join("tmp");
        let new = root.join("new");
        let cur = root.join("cur");
        let mut created = false;
        for dir in [&tmp, &new, &cur] {
            if !dir.is_dir() {
                fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
                created = true;
            }
        }
        if created {
            sync_dir(root)?;
            if !existed {
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
        }
        let journal_dir = match journal.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let journal_id = fs::canonicalize(journal_dir)
            .unwrap_or_default()
            .join(journal.file_name().unwrap_or_default());
        let tag = format!(
            "J{:08x}",
            Crc32::of(journal_id.as_os_str().to_string_lossy().as_bytes())
        );
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
            new,
            cur,
            tag,
            host: hostname(),
        })
    }

    /// The Maildir's root.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// `new/`.
    pub(super) fn new_dir(&self) -> &Path {
        &self.new
    }

    /// `tmp/`.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    pub(super) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// `tmp/<name>`.
    pub(super) fn tmp_path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// `new/<name>`.
    pub(super) fn new_path(&self, name: &str) -> PathBuf {
        self.new.join(name)
    }

    /// A fresh unique name, `<secs>.M<usec>P<pid>Q<n>R<random>J<tag>.<host>` (the Maildir
    /// spec's `time.unique.host`, as Dovecot and qmail spell the middle part).
    pub(super) fn unique_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut h = RandomState::new().build_hasher();
        h.write_u128(now.as_nanos());
        h.write_u32(pid);
        h.write_u64(n);
        format!(
            "{}.M{}P{pid}Q{n}R{:016x}{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            h.finish(),
            self.tag,
            self.host
        )
    }

    /// Whether `name` (a file in `tmp/`) was made by this store for this journal.
    pub(super) fn is_ours(&self, name: &str) -> bool {
        name.split('.')
            .nth(1)
            .is_some_and(|unique| unique.ends_with(&self.tag))
    }

    /// The names of the files in `tmp/`.
    pub(super) fn tmp_names(&self) -> Result<Vec<String>> {
        list(&self.tmp)
    }

    /// The base names (the part before `:2,FLAGS`) of every message in `new/` and `cur/`.
    pub(super) fn delivered_names(&self) -> Result<HashSet<String>> {
        let mut names = HashSet::new();
        for dir in [&self.new, &self.cur] {
            for name in list(dir)? {
                let base = name.split(':').next().unwrap_or_default().to_owned();
                names.insert(base);
            }
        }
        Ok(names)
    }
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            if !name.starts_with('.') {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Removes a file; a missing file is not an error.
pub(super) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// The host name, with `/` and `:` escaped as the Maildir spec asks (`\057`, `\072`) and
/// anything else unusual replaced.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let raw = raw.trim();
    let raw = if raw.is_empty() { "localhost" } else { raw };
    let mut host = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => host.push_str("\\057"),
            ':' => host.push_str("\\072"),
            c if c.is_ascii_graphic() => host.push(c),
            _ => host.push('_'),
        }
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ours() {
        let dir = std::env::temp_dir().join(format!("maildir-names-{}", std::process::id()));
        let md = Maildir::open(&dir, &dir.join("state")).unwrap();
        let names: HashSet<String> = (0..10_000).map(|_| md.unique_name()).collect();
        assert_eq!(names.len(), 10_000);
        for name in names.iter().take(5) {
            assert!(md.is_ours(name), "{name}");
            assert!(!name.contains(['/', ':']));
        }
        assert!(!md.is_ours("1700000000.M1P2Q3.otherhost"));
        let other = Maildir::open(&dir, &dir.join("other-state")).unwrap();
        assert!(!other.is_ours(names.iter().next().unwrap()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
