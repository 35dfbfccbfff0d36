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

/// The mode of every directory the store creates (the Maildir, `tmp/`, `new/`, `cur/`, a
/// state directory): private to its owner, as Dovecot and mpop do. Mail is private.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of every file the store creates (messages, the journal, its lock and compaction
/// files), whatever the umask.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode [`PRIVATE_DIR_MODE`], set explicitly so the
/// umask neither widens nor narrows it. An existing directory is left as its owner made it.
/// Returns whether it was created.
pub(super) fn create_private_dir(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
    builder
        .create(dir)
        .map_err(io_err("create directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io_err("chmod", dir))?;
    }
    Ok(true)
}

/// Options that create a file with mode [`PRIVATE_FILE_MODE`] (before the umask; see
/// [`make_private`]).
pub(super) fn private_file_options() -> fs::OpenOptions {
    #[allow(unused_mut)] // `mut` is needed on Unix only
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
    options
}

/// Sets a file the store just created to exactly [`PRIVATE_FILE_MODE`] (an unusual umask
/// such as 0277 would otherwise leave it unwritable or, with `mode` ignored, too open).
pub(super) fn make_private(file: &File, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
            .map_err(io_err("chmod", path))?;
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

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
    /// The Maildir (or one of `tmp/`, `new/`, `cur/`) did not exist and was created by
    /// [`Maildir::open`].
    created: bool,
}

impl Maildir {
    /// Opens the Maildir at `root`, creating `root`, `tmp/`, `new/` and `cur/` as needed
    /// (durably: the parent directories are fsynced after a creation), each with mode
    /// [`PRIVATE_DIR_MODE`]; existing directories keep their modes.
    pub(super) fn open(root: &Path, journal: &Path) -> Result<Self> {
        let existed = root.is_dir();
        let tmp = root.join("tmp");
        let new = root.join("new");
        let cur = root.join("cur");
        let mut created = create_private_dir(root)?;
        for dir in [&tmp, &new, &cur] {
            created |= create_private_dir(dir)?;
        }
        if created {
            sync_dir(root)?;
            if !existed && let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
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
            created,
        })
    }

    /// Whether [`Maildir::open`] created the Maildir (or part of its layout).
    pub(super) fn was_created(&self) -> bool {
        self.created
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

/// What the Maildir holds of one delivered message (by its base name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LocalCopy {
    /// At least one copy without the trashed flag.
    Kept,
    /// Every copy carries the trashed flag `T` (`:2,` followed by flags holding `T`).
    Trashed,
}

impl Maildir {
    /// Every message file of the Maildir and of its Maildir++ subfolders (`.Name/new`,
    /// `.Name/cur`: a message the person moved into another folder is still kept), by base
    /// name (before `:`), with whether every copy is trashed.
    pub(super) fn local_copies(&self) -> Result<std::collections::HashMap<String, LocalCopy>> {
        let mut dirs = vec![self.new.clone(), self.cur.clone()];
        for entry in fs::read_dir(&self.root).map_err(io_err("read directory", &self.root))? {
            let entry = entry.map_err(io_err("read directory", &self.root))?;
            let name = entry.file_name();
            let is_folder = name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.len() > 1)
                && name != ".."
                && entry.file_type().is_ok_and(|t| t.is_dir());
            if is_folder {
                let folder = entry.path();
                for sub in ["new", "cur"] {
                    if folder.join(sub).is_dir() {
                        dirs.push(folder.join(sub));
                    }
                }
            }
        }
        let mut copies = std::collections::HashMap::new();
        for dir in dirs {
            for name in list(&dir)? {
                let (base, info) = name.split_once(':').unwrap_or((name.as_str(), ""));
                let trashed = info
                    .strip_prefix("2,")
                    .is_some_and(|flags| flags.contains('T'));
                let copy = if trashed {
                    LocalCopy::Trashed
                } else {
                    LocalCopy::Kept
                };
                copies
                    .entry(base.to_owned())
                    .and_modify(|c| {
                        if copy == LocalCopy::Kept {
                            *c = LocalCopy::Kept;
                        }
                    })
                    .or_insert(copy);
            }
        }
        Ok(copies)
    }
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        if let Ok(name) = entry.file_name().into_string()
            && !name.starts_with('.')
        {
            names.push(name);
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

    /// Issue 15 item 2: mail is private whatever the umask (the test process's is usually
    /// 022, which made 0644 files and 0755 directories before).
    #[cfg(unix)]
    #[test]
    fn created_directories_and_files_are_private_and_existing_modes_are_kept() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = std::env::temp_dir().join(format!("maildir-modes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let journal = dir.join(".state");
        let (mut store, _) = super::super::Store::open(&dir, &journal).unwrap();
        let mut incoming = store.begin("uid-1", 3).unwrap();
        incoming.write_all(b"hi\n").unwrap();
        let message = incoming.commit().unwrap();
        store.compact().unwrap();
        for d in [&dir, &dir.join("tmp"), &dir.join("new"), &dir.join("cur")] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        let lock = dir.join(".state.lock");
        for f in [&message, &journal, &lock] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        drop(store);
        // An existing Maildir keeps the modes its owner gave it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(dir.join("new"), fs::Permissions::from_mode(0o750)).unwrap();
        drop(super::super::Store::open(&dir, &journal).unwrap());
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(mode(&dir.join("new")), 0o750);
        fs::remove_dir_all(&dir).unwrap();
    }
}
