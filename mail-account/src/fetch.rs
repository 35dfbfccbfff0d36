//! The POP3 fetch engine: a logged-in [`pop3_proto::tokio::Session`] into a [`Delivery`]
//! (the Maildir [`Store`] with its journal, or a service's own target), crash-safe, with
//! "leave a copy on the server" by UIDL.
//!
//! One run:
//!
//! 1. `UIDL` (and `LIST` for sizes). The journal forgets what the server no longer has.
//! 2. The messages the journal does not know are retrieved in pipelined flights, within the
//!    per-run count and size limits, and each is streamed into the store's `tmp/`. Complete
//!    messages are committed in batches (up to [`BATCH_MESSAGES`] messages or
//!    [`BATCH_BYTES`] bytes, and whatever is left at the end): made durable, journaled and
//!    moved to `new/` together, with three `fsync`s per batch rather than per message
//!    ([`crate::deliver`] gives the protocol, [`crate::store`] the Maildir's steps). Every
//!    step that waits for the disk runs on tokio's blocking pool, never on the async worker
//!    threads, so a slow sync stalls only this account.
//! 3. The retention policy names the delivered messages to delete; they are marked with a
//!    pipelined `DELE`, and `QUIT` commits. The journal records the deletion only after the
//!    server confirmed `QUIT`.
//!
//! A message is therefore deleted on the server only once it is durable locally, and a crash
//! (or a dropped connection) at any instant loses nothing: the next run settles the journal
//! and carries on.
//!
//! Servers without `UIDL` are handled by identifying each message by a hash of its header
//! (`TOP n 0`) and size. That costs a round trip per message and a download of every message
//! in keep mode, and the report says so in a warning.
//!
//! ```no_run
//! use std::time::SystemTime;
//! use mail_account::deliver;
//! use mail_account::fetch::{FetchOptions, fetch};
//! use mail_account::store::{RetentionPolicy, Store};
//! use pop3_proto::tokio::{ConnectOptions, Session};
//! use pop3_proto::Config;
//! use mail_common::sasl::Credentials;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (store, _recovered) = Store::open("Maildir", "Maildir/.pop3-journal")?;
//! let store = deliver::shared(store);
//! let options = ConnectOptions::new("pop.example.org");
//! let mut session = Session::connect(&options, Config::default()).await?;
//! session.login(Credentials::password("alice", "secret")).await?;
//! let fetch_options = FetchOptions::new(RetentionPolicy::KeepForever);
//! let report = fetch(session, &store, &fetch_options, SystemTime::now(), |event| {
//!     eprintln!("{event:?}");
//! })
//! .await?;
//! println!("fetched {} messages ({} bytes)", report.fetched, report.bytes);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use pop3_proto::tokio::{Error as Pop3Error, RetrievalEvent, Session};
use pop3_proto::{Command, Response};
use sha2::{Digest, Sha256};

use crate::deliver::{self, Delivery, SharedDelivery, run_blocking};
#[cfg(doc)]
use crate::store::Store;
use crate::store::{RetentionPolicy, StoreError};

/// A batch of received messages is committed once it holds this many messages...
pub const BATCH_MESSAGES: usize = 64;
/// ... or this many bytes (as received), whichever comes first.
pub const BATCH_BYTES: u64 = 4 << 20;

/// How a fetch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    /// What happens to delivered messages on the server.
    pub retention: RetentionPolicy,
    /// Fetch at most this many messages in one run (the rest wait for the next run).
    pub max_messages: Option<usize>,
    /// Fetch at most this many octets (server sizes) in one run. A single message larger than
    /// the limit is fetched only when it is the first of the run, so the run makes progress.
    pub max_bytes: Option<u64>,
    /// How line ends are written to the Maildir.
    pub line_endings: LineEndings,
}

impl FetchOptions {
    /// No limits, Unix line ends, the given retention.
    pub const fn new(retention: RetentionPolicy) -> Self {
        Self {
            retention,
            max_messages: None,
            max_bytes: None,
            line_endings: LineEndings::Lf,
        }
    }

    /// Sets [`FetchOptions::max_messages`].
    #[must_use]
    pub const fn with_max_messages(mut self, max: usize) -> Self {
        self.max_messages = Some(max);
        self
    }

    /// Sets [`FetchOptions::max_bytes`].
    #[must_use]
    pub const fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// Sets [`FetchOptions::line_endings`].
    #[must_use]
    pub const fn with_line_endings(mut self, line_endings: LineEndings) -> Self {
        self.line_endings = line_endings;
        self
    }
}

/// Line ends of the messages written to the Maildir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineEndings {
    /// `LF`, what Maildir readers on Unix (mutt, Dovecot, notmuch) expect.
    #[default]
    Lf,
    /// As sent on the wire (`CRLF`).
    Crlf,
}

/// Progress of a fetch, reported as it happens (for a progress bar or a log).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// The server's listing was read.
    Listed {
        /// Messages on the server.
        on_server: usize,
        /// Messages this run will fetch.
        to_fetch: usize,
        /// Their total size (server sizes).
        bytes: u64,
        /// Messages left for a later run by the count or size limit.
        deferred: usize,
    },
    /// Bytes of the current message arrived.
    Received {
        /// Octets received in this piece.
        octets: u64,
    },
    /// A message is durable in the Maildir (or the delivery target) and acknowledged.
    Stored {
        /// Its UIDL (or the header-hash key on a server without UIDL).
        uidl: String,
        /// Octets as received.
        octets: u64,
        /// The message's file in `new/` (for another [`Delivery`], its
        /// [`location`](deliver::Delivered::location)).
        path: PathBuf,
    },
    /// A message the server listed was refused (for example deleted by another client
    /// meanwhile); it is left for a later run.
    Refused {
        /// The message number in this session.
        msg: u32,
        /// The server's answer.
        response: Response,
    },
    /// Delivered messages are being marked for deletion.
    Deleting {
        /// How many.
        count: usize,
    },
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchReport {
    /// Messages on the server when the run started.
    pub on_server: usize,
    /// Messages delivered into the Maildir in this run.
    pub fetched: usize,
    /// Their octets, as received.
    pub bytes: u64,
    /// Messages deleted on the server (confirmed by `QUIT`).
    pub deleted: usize,
    /// Messages left for a later run by the limits.
    pub deferred: usize,
    /// Messages the server refused to hand out.
    pub refused: usize,
    /// Messages downloaded again but already delivered (only on servers without UIDL).
    pub duplicates_discarded: usize,
    /// Warnings (also reported as [`FetchEvent::Warning`]).
    pub warnings: Vec<String>,
    /// The run was asked to stop ([`fetch_until`]) and stopped after a complete message:
    /// what arrived is delivered, nothing was deleted on the server, and the rest waits for
    /// the next run.
    pub stopped: bool,
}

impl FetchReport {
    /// Whether every message this run set out to fetch was fetched. False when the server
    /// refused one (it stays on the server, is never deleted by this run, and is tried again
    /// next run): a caller should report that as a failure, so scripts and cron notice mail
    /// that is stuck. Messages left for later by the run's limits do not count.
    pub const fn is_complete(&self) -> bool {
        self.refused == 0
    }
}

/// Why a fetch stopped. Nothing is deleted on the server for a fetch that failed before
/// `QUIT`, and everything stored so far stays stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The POP3 session failed (transport, protocol, timeout, or a refused command).
    #[error("POP3: {0}")]
    Pop3(#[from] Pop3Error),
    /// The local store failed (disk full, permissions, a damaged journal).
    #[error("local store: {0}")]
    Store(#[from] StoreError),
    /// Writing a message into the Maildir's `tmp/` failed (disk full, permissions).
    #[error("writing a message into the Maildir: {0}")]
    Write(#[source] std::io::Error),
    /// The session was not logged in.
    #[error("the POP3 session is not logged in")]
    NotLoggedIn,
}

/// Runs one fetch on a logged-in session, ending it with `QUIT`. `now` is the time retention
/// ages are measured against.
///
/// # Errors
///
/// See [`FetchError`]. After an error the session is dropped without `QUIT`, so the server
/// deletes nothing.
pub async fn fetch<D: Delivery>(
    session: Session,
    store: &SharedDelivery<D>,
    options: &FetchOptions,
    now: SystemTime,
    on_event: impl FnMut(&FetchEvent),
) -> Result<FetchReport, FetchError> {
    fetch_inner(session, store, options, now, on_event, None).await
}

/// [`fetch`], stopping cleanly once `stop` holds `true`: after the message being received
/// (it and the batch before it are committed), without `DELE` and without `QUIT`, so the
/// server deletes nothing; [`FetchReport::stopped`] tells. The way a service shuts down
/// between messages rather than in the middle of one.
///
/// # Errors
///
/// As [`fetch`].
pub async fn fetch_until<D: Delivery>(
    session: Session,
    store: &SharedDelivery<D>,
    options: &FetchOptions,
    now: SystemTime,
    on_event: impl FnMut(&FetchEvent),
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<FetchReport, FetchError> {
    fetch_inner(session, store, options, now, on_event, Some(stop)).await
}

async fn fetch_inner<D: Delivery>(
    mut session: Session,
    store: &SharedDelivery<D>,
    options: &FetchOptions,
    now: SystemTime,
    mut on_event: impl FnMut(&FetchEvent),
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<FetchReport, FetchError> {
    if !session.is_logged_in() {
        return Err(FetchError::NotLoggedIn);
    }
    let mut report = FetchReport::default();
    let warn = |report: &mut FetchReport, text: String, on_event: &mut dyn FnMut(&FetchEvent)| {
        tracing::warn!("{text}");
        on_event(&FetchEvent::Warning(text.clone()));
        report.warnings.push(text);
    };

    // LIST and UIDL in one round trip where the server allows pipelining.
    let (listing, uidl) = session.list_and_uidl().await?;
    let sizes: HashMap<u32, u64> = listing
        .into_iter()
        .map(|entry| (entry.msg, entry.size))
        .collect();
    report.on_server = sizes.len();
    let mut numbers: Vec<u32> = sizes.keys().copied().collect();
    numbers.sort_unstable();

    // The key of each message: its UIDL, or a header hash where the server has no UIDL.
    let keys: Vec<(u32, String)> = match uidl {
        Ok(entries) => entries.into_iter().map(|e| (e.msg, e.uid)).collect(),
        Err(Pop3Error::Refused {
            command: Command::Uidl(_),
            ..
        }) => {
            warn(
                &mut report,
                "the server does not support UIDL: messages are identified by a hash of \
                 their header (one extra round trip each), and in keep mode every message is \
                 downloaded on every run"
                    .to_owned(),
                &mut on_event,
            );
            header_keys(&mut session, &numbers, &sizes).await?
        }
        Err(other) => return Err(other.into()),
    };
    let key_of: HashMap<u32, &str> = keys.iter().map(|(n, k)| (*n, k.as_str())).collect();
    let server_keys: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let owned_keys: Vec<String> = server_keys.iter().map(|&k| k.to_owned()).collect();
    let forgotten = run_blocking(store, move |d| d.forget_missing(&owned_keys)).await?;
    if !forgotten.is_empty() {
        tracing::debug!(
            count = forgotten.len(),
            "journal forgot messages the server no longer has"
        );
    }

    // What to fetch this run, in server order, within the limits.
    let mut to_fetch = Vec::new();
    let mut planned_bytes = 0u64;
    let mut deferred = 0usize;
    let mut planned = HashSet::new();
    let known: HashSet<&str> = {
        let delivery = deliver::lock(store)?;
        (keys.iter())
            .map(|(_, key)| key.as_str())
            .filter(|key| delivery.is_known(key))
            .collect()
    };
    for (msg, key) in &keys {
        if known.contains(key.as_str()) {
            continue;
        }
        if !planned.insert(key.as_str()) {
            // The same key twice in one listing (identical messages on a server without
            // UIDL): fetch it once.
            tracing::debug!(msg, %key, "duplicate key in the server's listing skipped");
            continue;
        }
        let size = sizes.get(msg).copied().unwrap_or(0);
        let over_count = options
            .max_messages
            .is_some_and(|max| to_fetch.len() >= max);
        let over_bytes = options
            .max_bytes
            .is_some_and(|max| !to_fetch.is_empty() && planned_bytes.saturating_add(size) > max);
        if over_count || over_bytes {
            deferred += 1;
            continue;
        }
        planned_bytes = planned_bytes.saturating_add(size);
        to_fetch.push(*msg);
    }
    report.deferred = deferred;
    on_event(&FetchEvent::Listed {
        on_server: keys.len(),
        to_fetch: to_fetch.len(),
        bytes: planned_bytes,
        deferred,
    });

    let stopped = FetchRun {
        store,
        options,
        key_of: &key_of,
        sizes: &sizes,
        report: &mut report,
        on_event: &mut on_event,
        stop,
    }
    .retrieve_into_store(&mut session, &to_fetch)
    .await?;
    if stopped {
        // Dropped without QUIT (responses may still be in flight): nothing is deleted.
        drop(session);
        run_blocking(store, Delivery::sync).await?;
        report.stopped = true;
        return Ok(report);
    }

    // Retention: only delivered messages are ever offered for deletion.
    // On the blocking pool: "until deleted here" reads the Maildir's directories.
    let retention = options.retention;
    let doomed_keys = run_blocking(store, move |d| Ok(d.to_delete(retention, now))).await?;
    let by_key: HashMap<&str, u32> = keys.iter().map(|(n, k)| (k.as_str(), *n)).collect();
    let doomed: Vec<(u32, String)> = doomed_keys
        .into_iter()
        .filter_map(|key| by_key.get(key.as_str()).map(|&msg| (msg, key)))
        .collect();
    let mut marked = Vec::new();
    if !doomed.is_empty() {
        on_event(&FetchEvent::Deleting {
            count: doomed.len(),
        });
        let refused = session
            .dele_many(doomed.iter().map(|(msg, _)| *msg))
            .await?;
        for (msg, key) in doomed {
            if refused.iter().all(|(r, _)| *r != msg) {
                marked.push(key);
            }
        }
        for (msg, response) in refused {
            warn(
                &mut report,
                format!(
                    "the server refused to delete message {msg}: {}",
                    response.text
                ),
                &mut on_event,
            );
        }
    }
    // Without DELE the reply to QUIT changes nothing: do not wait for it (with DELE it is
    // awaited, as it is what commits the deletions).
    session.quit_without_waiting().await?;
    if !marked.is_empty() {
        report.deleted = run_blocking(store, move |d| d.mark_deleted(&marked)).await?;
    }
    run_blocking(store, Delivery::sync).await?;
    Ok(report)
}

/// Received messages waiting for their commit.
struct Batch<D: Delivery> {
    staged: Vec<D::Staged>,
    /// Octets as received, per message.
    octets: Vec<u64>,
    /// Octets as received, all messages.
    bytes: u64,
}

impl<D: Delivery> Batch<D> {
    const fn new() -> Self {
        Self {
            staged: Vec::new(),
            octets: Vec::new(),
            bytes: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.staged.len() >= BATCH_MESSAGES || self.bytes >= BATCH_BYTES
    }

    /// Commits the batch on the blocking pool (for the Maildir: one data sync, one journal
    /// fsync, one `new/` fsync) and reports each message as stored.
    async fn commit(
        &mut self,
        store: &SharedDelivery<D>,
        report: &mut FetchReport,
        on_event: &mut impl FnMut(&FetchEvent),
    ) -> Result<(), StoreError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let octets = std::mem::take(&mut self.octets);
        self.bytes = 0;
        let delivered = run_blocking(store, move |d| d.commit(staged)).await?;
        tracing::debug!(count = delivered.len(), "batch committed");
        for (delivered, octets) in delivered.into_iter().zip(octets) {
            report.fetched += 1;
            report.bytes += octets;
            tracing::debug!(uidl = %delivered.uidl, octets, "stored");
            on_event(&FetchEvent::Stored {
                uidl: delivered.uidl,
                octets,
                path: delivered.location,
            });
        }
        Ok(())
    }
}

/// What the retrieval of one fetch works with: the delivery, the options, the server's
/// listing, the report being filled in, and the caller's event sink and stop signal.
struct FetchRun<'a, D: Delivery, E: FnMut(&FetchEvent)> {
    store: &'a SharedDelivery<D>,
    options: &'a FetchOptions,
    /// The delivery key of each message number.
    key_of: &'a HashMap<u32, &'a str>,
    /// The size the server listed for each message number.
    sizes: &'a HashMap<u32, u64>,
    report: &'a mut FetchReport,
    on_event: &'a mut E,
    stop: Option<&'a tokio::sync::watch::Receiver<bool>>,
}

impl<D: Delivery, E: FnMut(&FetchEvent)> FetchRun<'_, D, E> {
    /// Retrieves `to_fetch` into the delivery and commits what arrived complete. Returns
    /// whether it stopped early because the stop signal was set.
    async fn retrieve_into_store(
        &mut self,
        session: &mut Session,
        to_fetch: &[u32],
    ) -> Result<bool, FetchError> {
        let mut batch = Batch::new();
        let received = self.receive(session, to_fetch, &mut batch).await;
        match received {
            Ok(stopped) => {
                batch.commit(self.store, self.report, self.on_event).await?;
                Ok(stopped)
            }
            // The messages of the batch arrived complete before the session failed: keep
            // them.
            Err(FetchError::Pop3(e)) => {
                if let Err(store_error) = batch.commit(self.store, self.report, self.on_event).await
                {
                    tracing::warn!(%store_error, "committing the last batch after a POP3 error");
                }
                Err(FetchError::Pop3(e))
            }
            // A local failure: the uncommitted messages are given up (dropped with `batch`),
            // and they stay on the server.
            Err(other) => Err(other),
        }
    }

    /// Streams the messages into the delivery's staging area, committing `batch` whenever it
    /// is full. What is left in `batch` at the end is the caller's to commit. Returns whether
    /// it stopped early because the stop signal was set.
    async fn receive(
        &mut self,
        session: &mut Session,
        to_fetch: &[u32],
        batch: &mut Batch<D>,
    ) -> Result<bool, FetchError> {
        let (store, options, stop) = (self.store, self.options, self.stop);
        let stop_asked = || stop.is_some_and(|stop| *stop.borrow());
        if stop_asked() {
            return Ok(true);
        }
        let mut retrieval = session.retrieve(to_fetch.iter().copied());
        while let Some(event) = retrieval.next().await? {
            let msg = match event {
                RetrievalEvent::Start { msg } => msg,
                RetrievalEvent::Refused { msg, response } => {
                    self.report.refused += 1;
                    (self.on_event)(&FetchEvent::Refused { msg, response });
                    continue;
                }
                other => {
                    tracing::debug!(?other, "retrieval event outside a message ignored");
                    continue;
                }
            };
            let key = self
                .key_of
                .get(&msg)
                .copied()
                .unwrap_or_default()
                .to_owned();
            let size = self.sizes.get(&msg).copied().unwrap_or(0);
            // A store error ends the fetch: the session is dropped without QUIT, nothing deleted.
            // Staging creates a file: on the blocking pool, like every metadata change.
            let mut staging =
                run_blocking(store, move |d| d.stage(&key, size, SystemTime::now())).await?;
            let mut converter = LineEndingWriter::new(options.line_endings);
            loop {
                match retrieval.next().await? {
                    Some(RetrievalEvent::Chunk { data, .. }) => {
                        converter
                            .write(&mut ChunkWriter::<D>(&mut staging), &data)
                            .map_err(FetchError::Write)?;
                        (self.on_event)(&FetchEvent::Received {
                            octets: data.len() as u64,
                        });
                    }
                    Some(RetrievalEvent::End { octets, .. }) => {
                        converter
                            .finish(&mut ChunkWriter::<D>(&mut staging))
                            .map_err(FetchError::Write)?;
                        let staged = deliver::lock(store)?.finish(staging)?;
                        tracing::trace!(msg, octets, "received");
                        batch.bytes += octets;
                        batch.staged.push(staged);
                        batch.octets.push(octets);
                        if batch.is_full() {
                            batch.commit(store, self.report, self.on_event).await?;
                        }
                        if stop_asked() {
                            return Ok(true);
                        }
                        break;
                    }
                    // The adapter reports a message's Start, Chunks and End in a row; anything
                    // else (or the end) here means the message did not complete: the staged
                    // message is given up when `staging` drops, and it stays on the server.
                    Some(other) => {
                        tracing::warn!(?other, "message {msg} ended early");
                        break;
                    }
                    None => return Ok(false),
                }
            }
        }
        Ok(false)
    }
}

/// [`Write`] into a delivery's staged message.
struct ChunkWriter<'a, D: Delivery>(&'a mut D::Staging);

impl<D: Delivery> Write for ChunkWriter<'_, D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        D::write_chunk(self.0, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keys for a server without UIDL: `TOP n 0` (the header) hashed, with the size. Received
/// headers make the header of each delivery unique in practice.
async fn header_keys(
    session: &mut Session,
    numbers: &[u32],
    sizes: &HashMap<u32, u64>,
) -> Result<Vec<(u32, String)>, FetchError> {
    let mut keys = Vec::with_capacity(numbers.len());
    for &msg in numbers {
        let header = session.top(msg, 0).await?;
        let digest = Sha256::digest(&header);
        let hex = crate::compose::hex(&digest);
        let size = sizes.get(&msg).copied().unwrap_or(0);
        keys.push((msg, format!("hdr-sha256-{hex}-{size}")));
    }
    Ok(keys)
}

/// Streams message bytes into the store, turning CRLF into LF when asked, across chunk
/// boundaries.
#[derive(Debug)]
struct LineEndingWriter {
    mode: LineEndings,
    held_cr: bool,
    buf: Vec<u8>,
}

impl LineEndingWriter {
    fn new(mode: LineEndings) -> Self {
        Self {
            mode,
            held_cr: false,
            buf: Vec::new(),
        }
    }

    fn write(&mut self, out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
        if self.mode == LineEndings::Crlf || data.is_empty() {
            return out.write_all(data);
        }
        self.buf.clear();
        let mut rest = data;
        if self.held_cr {
            self.held_cr = false;
            if rest[0] != b'\n' {
                self.buf.push(b'\r');
            }
        }
        while let Some(i) = memchr::memchr(b'\r', rest) {
            self.buf.extend_from_slice(&rest[..i]);
            match rest.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => self.buf.push(b'\r'),
                None => self.held_cr = true,
            }
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
        out.write_all(&self.buf)
    }

    fn finish(self, out: &mut impl Write) -> std::io::Result<()> {
        if self.held_cr {
            out.write_all(b"\r")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LineEndingWriter, LineEndings};

    fn convert(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = LineEndingWriter::new(LineEndings::Lf);
        for piece in pieces {
            writer.write(&mut out, piece).unwrap();
        }
        writer.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn crlf_becomes_lf_across_chunk_boundaries() {
        assert_eq!(convert(&[b"a\r\nb\r\n"]), b"a\nb\n");
        assert_eq!(convert(&[b"a\r", b"\nb\r", b"\n"]), b"a\nb\n");
        assert_eq!(convert(&[b"a\rb", b"\r"]), b"a\rb\r");
        assert_eq!(convert(&[b"a\r", b"b"]), b"a\rb");
        assert_eq!(convert(&[b"\r", b"", b"\n"]), b"\n");
    }

    #[test]
    fn crlf_mode_passes_bytes_through() {
        let mut out = Vec::new();
        let mut writer = LineEndingWriter::new(LineEndings::Crlf);
        writer.write(&mut out, b"a\r\nb\r").unwrap();
        writer.finish(&mut out).unwrap();
        assert_eq!(out, b"a\r\nb\r");
    }
}
