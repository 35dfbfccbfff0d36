//! A Maildir-like destination for the fetch programs: each message is written to `tmp/`,
//! optionally fsynced, and renamed into `new/` — what mpop and `mailctl fetch` do, so the
//! programs compare protocol work, not file handling.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// A Maildir (`tmp/`, `new/`, `cur/`) being filled.
#[derive(Debug)]
pub struct Maildir {
    root: PathBuf,
    fsync: bool,
    serial: u64,
    stamp: String,
}

impl Maildir {
    /// Creates the three directories under `root` (which may exist).
    pub fn create(root: &Path, fsync: bool) -> io::Result<Self> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Self {
            root: root.to_owned(),
            fsync,
            serial: 0,
            stamp: format!("{}.{}", now.as_secs(), std::process::id()),
        })
    }

    /// Opens a new message file in `tmp/`.
    pub fn open(&mut self) -> io::Result<MaildirFile> {
        self.serial += 1;
        let name = format!("{}_{}.bench", self.stamp, self.serial);
        let tmp = self.root.join("tmp").join(&name);
        let file = File::create(&tmp)?;
        Ok(MaildirFile {
            file,
            tmp,
            new: self.root.join("new").join(name),
            fsync: self.fsync,
        })
    }

    /// Writes a whole message held in memory.
    pub fn deliver(&mut self, message: &[u8]) -> io::Result<()> {
        let mut file = self.open()?;
        file.file.write_all(message)?;
        file.commit()
    }
}

/// One message being written. Writes go straight to the file: the benchmark programs run one
/// task on one thread, and a local file write does not wait on the network.
#[derive(Debug)]
pub struct MaildirFile {
    file: File,
    tmp: PathBuf,
    new: PathBuf,
    fsync: bool,
}

impl MaildirFile {
    /// Syncs (if asked) and moves the complete message into `new/`.
    pub fn commit(self) -> io::Result<()> {
        if self.fsync {
            self.file.sync_all()?;
        }
        drop(self.file);
        fs::rename(&self.tmp, &self.new)
    }
}

impl AsyncWrite for MaildirFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().file.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().file.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A file read with plain blocking reads behind `AsyncRead` (the streamed-body source of the
/// 200 MiB send: one task on one thread, local disk).
#[derive(Debug)]
pub struct BlockingReader(pub File);

impl tokio::io::AsyncRead for BlockingReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use std::io::Read as _;
        let n = self.get_mut().0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}
