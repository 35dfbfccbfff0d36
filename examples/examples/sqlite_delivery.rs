//! Fetching POP3 mailboxes into a SQLite database instead of a Maildir: a second
//! implementation of [`mail_account::deliver::Delivery`], the way a help desk or ticket system
//! would own its incoming mail.
//!
//! Each mailbox has one [`SqliteDelivery`]: its own connection to the shared database, and an
//! exclusive lock file (`<database>.<mailbox>.lock`, `flock`ed for as long as it lives) that
//! keeps the sharding rule: one account, one poller at a time, whatever the number of
//! processes delivering into the database. The protocol maps onto SQLite like this:
//!
//! - **stage**: the message's bytes are collected in memory (a batch is at most
//!   [`mail_account::fetch::BATCH_BYTES`], plus one message);
//! - **make durable**: one transaction per batch inserts every message into `messages` and its
//!   UIDL into `pop3_state` (with `synchronous = FULL` in WAL mode, durable at `COMMIT`);
//!   after a crash either both rows of a message are there, or neither;
//! - **acknowledge**: after the `COMMIT`, the UIDLs join the in-memory set of known ones, and
//!   only then can retention offer them for `DELE`.
//!
//! Run it with `cargo run -p mail-examples --features sqlite --example sqlite_delivery`: it
//! starts the embedded test server with three mailboxes, fetches them concurrently into
//! `messages.sqlite` in a temporary directory (deleting on the server), runs the poll again
//! to show that nothing is fetched twice, and prints the table.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_account::connect::{LoginSecret, ServerSettings, pop3_login};
use mail_account::deliver::{self, Delivered, Delivery};
use mail_account::fetch::{FetchOptions, fetch};
use mail_account::settings::Security;
use mail_account::store::{Result, RetentionPolicy, StoreError};
use mail_testground::server::TestServer;
use rusqlite::{Connection, params};

/// One mailbox's delivery into the shared database.
struct SqliteDelivery {
    connection: Connection,
    mailbox: String,
    /// Known UIDLs with their first-seen time and whether the server deleted them.
    known: std::collections::HashMap<String, (u64, bool)>,
    /// Where the database is, for [`Delivered::location`].
    database: PathBuf,
    /// Held for the life of the delivery: one poller per mailbox.
    _lock: File,
}

/// A message being received: its bytes, in memory.
struct Pending {
    uidl: String,
    first_seen: u64,
    bytes: Vec<u8>,
}

fn target_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Target(Box::new(error))
}

impl SqliteDelivery {
    /// Opens the database (creating the tables) for `mailbox`, taking the mailbox's lock.
    fn open(database: &Path, mailbox: &str) -> Result<Self> {
        let lock_path = PathBuf::from(format!(
            "{}.{}.lock",
            database.display(),
            mailbox.replace(['/', '\\'], "_")
        ));
        let lock = File::create(&lock_path).map_err(target_error)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(StoreError::Locked { path: lock_path });
        }
        let connection = Connection::open(database).map_err(target_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 10000;
                 CREATE TABLE IF NOT EXISTS messages (
                     id INTEGER PRIMARY KEY,
                     mailbox TEXT NOT NULL,
                     received INTEGER NOT NULL,
                     body BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS pop3_state (
                     mailbox TEXT NOT NULL,
                     uidl TEXT NOT NULL,
                     message INTEGER NOT NULL REFERENCES messages(id),
                     first_seen INTEGER NOT NULL,
                     deleted INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (mailbox, uidl));",
            )
            .map_err(target_error)?;
        let known = {
            let mut select = connection
                .prepare("SELECT uidl, first_seen, deleted FROM pop3_state WHERE mailbox = ?1")
                .map_err(target_error)?;
            select
                .query_map([mailbox], |row| {
                    Ok((row.get::<_, String>(0)?, (row.get(1)?, row.get(2)?)))
                })
                .map_err(target_error)?
                .collect::<rusqlite::Result<_>>()
                .map_err(target_error)?
        };
        Ok(Self {
            connection,
            mailbox: mailbox.to_owned(),
            known,
            database: database.to_owned(),
            _lock: lock,
        })
    }
}

impl Delivery for SqliteDelivery {
    type Staging = Pending;
    type Staged = Pending;

    fn is_known(&self, uidl: &str) -> bool {
        self.known.contains_key(uidl)
    }

    fn forget_missing(&mut self, server_uidls: &[String]) -> Result<Vec<String>> {
        let on_server: HashSet<&str> = server_uidls.iter().map(String::as_str).collect();
        let gone: Vec<String> = (self.known.keys())
            .filter(|uidl| !on_server.contains(uidl.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        // Only the fetch state is forgotten; the messages stay the service's.
        let transaction = self.connection.transaction().map_err(target_error)?;
        for uidl in &gone {
            transaction
                .execute(
                    "DELETE FROM pop3_state WHERE mailbox = ?1 AND uidl = ?2",
                    params![self.mailbox, uidl],
                )
                .map_err(target_error)?;
        }
        transaction.commit().map_err(target_error)?;
        for uidl in &gone {
            self.known.remove(uidl);
        }
        Ok(gone)
    }

    fn stage(&mut self, uidl: &str, server_size: u64, first_seen: SystemTime) -> Result<Pending> {
        if self.is_known(uidl) {
            return Err(StoreError::AlreadyKnown(uidl.to_owned()));
        }
        Ok(Pending {
            uidl: uidl.to_owned(),
            first_seen: first_seen
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            // The announced size is only a hint; a hostile server can lie about it.
            bytes: Vec::with_capacity(usize::try_from(server_size.min(1 << 20)).unwrap_or(0)),
        })
    }

    fn write_chunk(staging: &mut Pending, bytes: &[u8]) -> std::io::Result<()> {
        staging.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self, staging: Pending) -> Result<Pending> {
        Ok(staging)
    }

    fn commit(&mut self, batch: Vec<Pending>) -> Result<Vec<Delivered>> {
        let transaction = self.connection.transaction().map_err(target_error)?;
        let mut delivered = Vec::with_capacity(batch.len());
        for message in &batch {
            transaction
                .execute(
                    "INSERT INTO messages (mailbox, received, body) VALUES (?1, ?2, ?3)",
                    params![self.mailbox, message.first_seen, message.bytes],
                )
                .map_err(target_error)?;
            let id = transaction.last_insert_rowid();
            transaction
                .execute(
                    "INSERT INTO pop3_state (mailbox, uidl, message, first_seen)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![self.mailbox, message.uidl, id, message.first_seen],
                )
                .map_err(target_error)?;
            delivered.push(Delivered::new(
                message.uidl.clone(),
                format!("{}#{id}", self.database.display()),
            ));
        }
        // Durable here: the messages and their UIDLs together, or neither.
        transaction.commit().map_err(target_error)?;
        // Acknowledged: from now on retention may offer them for deletion.
        for message in batch {
            self.known.insert(message.uidl, (message.first_seen, false));
        }
        Ok(delivered)
    }

    fn to_delete(&self, policy: RetentionPolicy, now: SystemTime) -> Vec<String> {
        (self.known.iter())
            .filter(|(_, (first_seen, deleted))| {
                !deleted
                    && policy.is_due(
                        UNIX_EPOCH + std::time::Duration::from_secs(*first_seen),
                        now,
                    )
            })
            .map(|(uidl, _)| uidl.clone())
            .collect()
    }

    fn mark_deleted(&mut self, uidls: &[String]) -> Result<usize> {
        let transaction = self.connection.transaction().map_err(target_error)?;
        let mut changed = 0;
        for uidl in uidls {
            changed += transaction
                .execute(
                    "UPDATE pop3_state SET deleted = 1
                     WHERE mailbox = ?1 AND uidl = ?2 AND deleted = 0",
                    params![self.mailbox, uidl],
                )
                .map_err(target_error)?;
        }
        transaction.commit().map_err(target_error)?;
        for uidl in uidls {
            if let Some((_, deleted)) = self.known.get_mut(uidl) {
                *deleted = true;
            }
        }
        Ok(changed)
    }

    fn sync(&mut self) -> Result<()> {
        // Every change was committed (and so made durable) in its own transaction.
        Ok(())
    }
}

const MAILBOXES: [&str; 3] = [
    "desk@help.example",
    "sales@help.example",
    "jobs@help.example",
];

/// Polls every mailbox once, concurrently, each into its own delivery; returns the messages
/// fetched.
async fn poll_all(
    server: &TestServer,
    database: &Path,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut polls = tokio::task::JoinSet::new();
    for mailbox in MAILBOXES {
        let mut settings = ServerSettings::new(
            "localhost",
            server.pop3s_addr().port(),
            Security::ImplicitTls,
            mailbox,
        );
        settings.trust_roots = server.trust_roots();
        let database = database.to_owned();
        polls.spawn(async move {
            let delivery =
                tokio::task::spawn_blocking(move || SqliteDelivery::open(&database, mailbox))
                    .await??;
            let delivery = deliver::shared(delivery);
            let session = pop3_login(&settings, &LoginSecret::password("secret")).await?;
            let options = FetchOptions::new(RetentionPolicy::DeleteAfterDownload);
            let report = fetch(session, &delivery, &options, SystemTime::now(), |_| {}).await?;
            println!(
                "{mailbox}: {} fetched, {} deleted",
                report.fetched, report.deleted
            );
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(report.fetched)
        });
    }
    let mut fetched = 0;
    while let Some(result) = polls.join_next().await {
        fetched += result?.map_err(|e| e.to_string())?;
    }
    Ok(fetched)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = TestServer::builder();
    for mailbox in MAILBOXES {
        builder = builder.user(mailbox, "secret");
        for n in 1..=5 {
            builder = builder.message(
                mailbox,
                format!("Subject: request {n} to {mailbox}\r\n\r\nPlease help.\r\n").into_bytes(),
            );
        }
    }
    let server = builder.start().await?;
    let dir = std::env::temp_dir().join(format!("sqlite-delivery-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("messages.sqlite");

    let first = poll_all(&server, &database).await?;
    // New mail for one mailbox, then a second poll: only that message is fetched.
    server.add_message(
        MAILBOXES[0],
        b"Subject: a follow-up\r\n\r\nStill broken.\r\n",
    );
    let second = poll_all(&server, &database).await?;

    let connection = Connection::open(&database)?;
    let mut per_mailbox = connection
        .prepare("SELECT mailbox, count(*) FROM messages GROUP BY mailbox ORDER BY mailbox")?;
    for row in per_mailbox.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })? {
        let (mailbox, count) = row?;
        println!("{mailbox}: {count} messages in the database");
    }
    let total: i64 = connection.query_row("SELECT count(*) FROM messages", [], |row| row.get(0))?;
    println!(
        "first poll {first}, second poll {second}, {total} rows; database {}",
        database.display()
    );
    assert_eq!(
        (first, second, total),
        (15, 1, 16),
        "every message exactly once"
    );
    server.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
