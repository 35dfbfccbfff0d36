//! The error type of the store.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong in the local store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed (local I/O: disk full, permissions, ...).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed, e.g. "fsync".
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },
    /// The journal is damaged somewhere other than its last record (a torn last record is
    /// tolerated and dropped), or is not a journal of this store at all. Nothing was changed.
    #[error("state journal {} is damaged at line {line}: {reason}", path.display())]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number of the first bad record.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another process holds the journal's lock (another fetch of the same account is running).
    #[error("state journal {} is in use by another process", path.display())]
    Locked {
        /// The journal file.
        path: PathBuf,
    },
    /// [`Store::begin`](super::Store::begin) for a UIDL the journal already knows.
    #[error("UIDL {0:?} is already in the state journal")]
    AlreadyKnown(String),
    /// The UIDL is empty or longer than [`MAX_UIDL_LEN`](super::MAX_UIDL_LEN) bytes.
    #[error("invalid UIDL {0:?}: empty or too long")]
    InvalidUidl(String),
    /// An earlier write or fsync of the journal failed and left its state unknown; reopen the
    /// store (which reconciles) to go on.
    #[error("the store is unusable after an earlier failed journal write; reopen it")]
    Poisoned,
    /// A [`Delivery`](crate::deliver::Delivery) other than the Maildir failed (its database
    /// or queue refused a write, a connection was lost, ...).
    #[error("delivery target: {0}")]
    Target(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The async runtime shut down before the store's blocking work could run; nothing of
    /// that step happened.
    #[error("the runtime shut down before the store's work ran")]
    RuntimeShutDown,
    /// Test builds only: a crash injected by the unit tests.
    #[cfg(test)]
    #[error("simulated crash")]
    SimulatedCrash,
}

/// Shorthand for the store's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Builds a closure turning an `io::Error` into [`StoreError::Io`].
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}
