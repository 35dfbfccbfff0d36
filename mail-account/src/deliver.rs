//! Where fetched messages go: the commit protocol the fetch engine drives, as a trait, so a
//! service can deliver into its own database or queue exactly once, as safely as into a
//! Maildir.
//!
//! [`Delivery`] is implemented by the Maildir [`Store`] (see [`crate::store`] for how it makes
//! each step durable); the example `examples/examples/sqlite_delivery.rs` (feature `sqlite`)
//! delivers into SQLite, one transaction per batch.
//!
//! # The protocol
//!
//! For every message the server lists, the engine asks [`Delivery::is_known`]; a known
//! message is never fetched again. Every unknown one goes through three steps:
//!
//! 1. **Stage**: [`Delivery::stage`] returns a writer the message's bytes are streamed into
//!    as they arrive; [`Delivery::finish`] closes it. A staged message is *not* delivered:
//!    after a crash it must vanish (or be recognised as not delivered), so that the message,
//!    still on the server, is fetched again.
//! 2. **Make durable**: [`Delivery::commit`] takes a batch of staged messages and makes all
//!    of them durable together, together with the record that each UIDL is now known (a
//!    Maildir: file data synced, journal record fsynced, renamed into `new/`; a database: one
//!    transaction holding the messages and their UIDLs). After a crash at any instant, each
//!    message of the batch is either delivered and known, or neither.
//! 3. **Acknowledge**: `commit` returns one [`Delivered`] per message once it is durable.
//!    From then on [`Delivery::to_delete`] may offer it for deletion on the server; before
//!    that it must not. The engine commits its last batch before it sends any `DELE`, and
//!    calls [`Delivery::mark_deleted`] only after the server confirmed `QUIT`.
//!
//! [`Delivery::forget_missing`] drops what the server no longer lists, so the set of known
//! UIDLs does not grow forever.
//!
//! So the guarantee of the Maildir store carries over: a crash (`kill -9`) at any instant,
//! then a rerun, leaves every server message delivered exactly once, provided the
//! implementation keeps the two rules: *durable before acknowledged*, and *known exactly when
//! delivered* (one atomic step for a database; a journal plus reconciliation on open for a
//! file system).
//!
//! # Threads
//!
//! The methods block (disk syncs, database commits). The fetch engine calls the ones that
//! wait for the disk ([`commit`](Delivery::commit), [`forget_missing`](Delivery::forget_missing),
//! [`mark_deleted`](Delivery::mark_deleted), [`sync`](Delivery::sync)),
//! [`stage`](Delivery::stage) (which creates a file) and [`to_delete`](Delivery::to_delete)
//! (the Maildir's "until deleted here" reads directories) on tokio's blocking pool, never on an
//! async worker thread, so one account's slow sync does not stall other sessions' network
//! I/O. It therefore shares the delivery as `Arc<Mutex<D>>`: a fetch that is cancelled while
//! a commit runs leaves the commit to finish on its thread, and the delivery stays usable.
//! The cheap calls ([`is_known`](Delivery::is_known),
//! writing chunks into the staging writer, [`finish`](Delivery::finish)) run in place.
//!
//! # One account, one poller (the sharding rule)
//!
//! A mailbox's state (the journal, or the rows of known UIDLs) must have exactly one writer
//! at a time: two fetches of the same mailbox at once would both see a message as unknown
//! and deliver it twice. The Maildir store enforces that with a lock on its journal
//! (`flock` on `<journal>.lock`, taken by [`Store::open`]; a second opener gets
//! [`StoreError::Locked`]). A service that shards its
//! accounts across processes or machines, all delivering into one shared database or queue,
//! must keep the same rule: assign each account to one shard, and have the shard hold a
//! per-account lock (a lock row, an advisory lock, a lease) for as long as it polls that
//! account. Accounts are independent of each other, so any number of them can be polled in
//! parallel, in one process or many.
//!
//! # Example: a delivery that keeps messages in memory
//!
//! ```
//! use std::collections::{BTreeMap, HashSet};
//! use std::path::PathBuf;
//! use std::time::SystemTime;
//! use mail_account::deliver::{Delivered, Delivery};
//! use mail_account::store::{Result, RetentionPolicy};
//!
//! /// Messages by UIDL; a real implementation would write them to durable storage.
//! #[derive(Default)]
//! struct Memory {
//!     messages: BTreeMap<String, Vec<u8>>,
//!     deleted: HashSet<String>,
//! }
//!
//! impl Delivery for Memory {
//!     type Staging = (String, Vec<u8>);
//!     type Staged = (String, Vec<u8>);
//!
//!     fn is_known(&self, uidl: &str) -> bool {
//!         self.messages.contains_key(uidl)
//!     }
//!     fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>> {
//!         let gone: Vec<String> = (self.messages.keys())
//!             .filter(|u| !server_uidls.contains(u))
//!             .cloned()
//!             .collect();
//!         for uidl in &gone {
//!             self.messages.remove(uidl);
//!         }
//!         Ok(gone)
//!     }
//!     fn stage(&mut self, uidl: &str, _size: u64, _first_seen: SystemTime) -> Result<Self::Staging> {
//!         Ok((uidl.to_owned(), Vec::new()))
//!     }
//!     fn write_chunk(staging: &mut Self::Staging, bytes: &[u8]) -> std::io::Result<()> {
//!         staging.1.extend_from_slice(bytes);
//!         Ok(())
//!     }
//!     fn finish(&mut self, staging: Self::Staging) -> Result<Self::Staged> {
//!         Ok(staging)
//!     }
//!     fn commit(&mut self, batch: Vec<Self::Staged>) -> Result<Vec<Delivered>> {
//!         let mut delivered = Vec::new();
//!         for (uidl, bytes) in batch {
//!             self.messages.insert(uidl.clone(), bytes);
//!             delivered.push(Delivered::new(uidl.clone(), PathBuf::from(format!("memory:{uidl}"))));
//!         }
//!         Ok(delivered)
//!     }
//!     fn to_delete(&self, policy: RetentionPolicy, _now: SystemTime) -> Vec<String> {
//!         match policy {
//!             RetentionPolicy::DeleteAfterDownload => (self.messages.keys())
//!                 .filter(|u| !self.deleted.contains(*u))
//!                 .cloned()
//!                 .collect(),
//!             _ => Vec::new(),
//!         }
//!     }
//!     fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize> {
//!         self.deleted.extend(uidls.iter().cloned());
//!         Ok(uidls.len())
//!     }
//!     fn sync(&mut self) -> Result<()> {
//!         Ok(())
//!     }
//! }
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::store::{Finished, Result, RetentionPolicy, Staging, Store, StoreError};

/// A message made durable and acknowledged by [`Delivery::commit`]: from now on it may be
/// deleted on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The message's UIDL.
    pub uidl: String,
    /// Where it is: the file in `new/` for a Maildir, an implementation-chosen locator
    /// otherwise (for example `messages.sqlite#42`).
    pub location: PathBuf,
}

impl Delivered {
    /// A delivered message `uidl`, now at `location`.
    pub fn new(uidl: impl Into<String>, location: impl Into<PathBuf>) -> Self {
        Self {
            uidl: uidl.into(),
            location: location.into(),
        }
    }
}

/// The commit protocol of a delivery target (see the module docs): stage, make durable,
/// acknowledge; the server deletes only acknowledged messages.
///
/// Every method may block; the fetch engine calls the slow ones on tokio's blocking pool.
/// Errors are [`StoreError`]s; targets other than the Maildir wrap theirs in
/// [`StoreError::Target`].
pub trait Delivery: Send + 'static {
    /// A message being received: the bytes go in with [`Delivery::write_chunk`].
    type Staging: Send + 'static;
    /// A complete, staged message, not yet durable, waiting for its batch's
    /// [`commit`](Self::commit). Dropping it must give the message up (it stays on the
    /// server).
    type Staged: Send + 'static;

    /// Whether `uidl` was delivered (or is being settled): such a message is never fetched
    /// again.
    fn is_known(&self, uidl: &str) -> bool;

    /// Forgets the delivered messages the server no longer lists (`server_uidls` is the
    /// session's complete listing). Returns the forgotten UIDLs.
    ///
    /// # Errors
    ///
    /// When the change cannot be recorded.
    fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>>;

    /// Starts receiving the message `uidl` (`server_size` octets as announced by `LIST`,
    /// first seen at `first_seen`).
    ///
    /// # Errors
    ///
    /// When the staging area cannot be written, or `uidl` is already known.
    fn stage(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> Result<Self::Staging>;

    /// Appends received bytes to a staged message. Called on the async thread for every
    /// chunk: it should only buffer or write into the page cache, never sync.
    ///
    /// # Errors
    ///
    /// When the bytes cannot be written.
    fn write_chunk(staging: &mut Self::Staging, bytes: &[u8]) -> std::io::Result<()>;

    /// Completes a staged message (all its bytes arrived). Not durable yet.
    ///
    /// # Errors
    ///
    /// When the staged bytes cannot be completed (a failed flush).
    fn finish(&mut self, staging: Self::Staging) -> Result<Self::Staged>;

    /// Makes a batch of staged messages durable and known, together, and acknowledges each
    /// with a [`Delivered`], in the batch's order. On an error, any message of the batch may
    /// or may not be delivered; [`is_known`](Self::is_known) (after a reopen, for a target
    /// that reconciles on open) tells.
    ///
    /// # Errors
    ///
    /// When the batch could not be made durable.
    fn commit(&mut self, batch: Vec<Self::Staged>) -> Result<Vec<Delivered>>;

    /// The UIDLs `policy` says to delete on the server at `now`; only acknowledged messages.
    fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String>;

    /// Records that the server deleted these messages (after it confirmed `QUIT`). Returns
    /// how many changed.
    ///
    /// # Errors
    ///
    /// When the change cannot be recorded.
    fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize>;

    /// Makes every lazily written record durable (the end of a session).
    ///
    /// # Errors
    ///
    /// When the sync fails.
    fn sync(&mut self) -> Result<()>;
}

/// The Maildir and its journal; the protocol's steps are those of [`crate::store`].
impl Delivery for Store {
    type Staging = Staging;
    type Staged = Finished;

    fn is_known(&self, uidl: &str) -> bool {
        Self::is_known(self, uidl)
    }

    fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>> {
        Self::forget_missing(self, server_uidls)
    }

    fn stage(
        &mut self,
        uidl: &str,
        server_size: u64,
        first_seen: SystemTime,
    ) -> Result<Self::Staging> {
        Self::stage(self, uidl, server_size, first_seen)
    }

    fn write_chunk(staging: &mut Self::Staging, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(staging, bytes)
    }

    fn finish(&mut self, staging: Self::Staging) -> Result<Self::Staged> {
        staging.finish()
    }

    fn commit(&mut self, batch: Vec<Self::Staged>) -> Result<Vec<Delivered>> {
        let uidls: Vec<String> = batch.iter().map(|f| f.uidl().to_owned()).collect();
        let paths = self.commit_batch(batch)?;
        Ok(uidls
            .into_iter()
            .zip(paths)
            .map(|(uidl, location)| Delivered { uidl, location })
            .collect())
    }

    fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        Self::to_delete(self, policy, now)
    }

    fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize> {
        Self::mark_deleted(self, uidls)
    }

    fn sync(&mut self) -> Result<()> {
        Self::sync(self)
    }
}

/// A delivery shared between the async engine and the blocking pool.
pub type SharedDelivery<D> = Arc<Mutex<D>>;

/// Wraps a delivery for [`crate::fetch::fetch`].
pub fn shared<D: Delivery>(delivery: D) -> SharedDelivery<D> {
    Arc::new(Mutex::new(delivery))
}

/// Locks a shared delivery. A panic during an earlier step left its state unknown:
/// [`StoreError::Poisoned`] (reopen it).
///
/// # Errors
///
/// [`StoreError::Poisoned`] as said.
pub fn lock<D>(delivery: &Mutex<D>) -> Result<MutexGuard<'_, D>> {
    delivery.lock().map_err(|_| StoreError::Poisoned)
}

#[cfg(feature = "session")]
/// Runs `work` on the delivery on tokio's blocking pool (never on an async worker thread)
/// and waits for it. If the waiting future is dropped, `work` still runs to its end.
///
/// # Errors
///
/// `work`'s error; [`StoreError::Poisoned`] after an earlier panic;
/// [`StoreError::RuntimeShutDown`] if the runtime shut down before `work` started.
///
/// # Panics
///
/// If `work` panicked (the panic is carried over).
pub async fn run_blocking<D, R>(
    delivery: &SharedDelivery<D>,
    work: impl FnOnce(&mut D) -> Result<R> + Send + 'static,
) -> Result<R>
where
    D: Delivery,
    R: Send + 'static,
{
    let delivery = Arc::clone(delivery);
    let task = tokio::task::spawn_blocking(move || {
        let mut guard = lock(&delivery)?;
        work(&mut guard)
    });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::RuntimeShutDown),
    }
}
