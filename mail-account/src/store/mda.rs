//! Delivery through an MDA command (`procmail -d %T`, `maildrop`, `dovecot-lda`, a script),
//! as one [`Delivery`].
//!
//! Each message is handed to a fresh run of the command on its standard input (LF line ends;
//! the command's standard output goes to our standard error). The command runs under
//! `sh -c`, so it may use the shell's quoting, pipes and variables; in it, `%F` is replaced by
//! the envelope sender (the message's `Return-Path`, else `MAILER-DAEMON`), `%T` by the
//! recipient (the mailbox's login) and `%%` by `%`. A replaced value holds only letters,
//! digits and `@._+=-` (others become `_`), so it can never break out of the command's
//! quoting.
//!
//! # What counts as delivered
//!
//! A message is delivered when the command exits with status 0, and only then: right after
//! that exit a `D` record is appended to the journal and `fsync`ed, before the next message
//! is handed over, and long before any `DELE` for it. A command that fails (any other status,
//! or killed by a signal) ends the fetch with an error naming its status; the message stays
//! on the server, the messages handed over before it stay delivered.
//!
//! # The one duplicate a crash can cause
//!
//! An external command cannot take part in the journal's commit. If mailctl is killed (or
//! the machine stops) while the command runs (it runs on to the end by itself, reading the
//! message from the spool file it was given) or after it exited and before the message's
//! journal record is durable, the next run does not know the message and hands it over
//! again. So a crash can
//! deliver **at most one message twice** (the one in flight), and never loses one: nothing is
//! deleted on the server before its record is durable. An MDA that files by Message-ID (or
//! procmail with a `formail -D` duplicate cache) absorbs even that one.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::error::{Result, StoreError, io_err};
use super::ledger::{Ledger, Spool, epoch_secs};
use super::{Entry, EntryState, RetentionPolicy};
use crate::deliver::{Delivered, Delivery};

/// An MDA command and the state journal of what it was handed (see the module docs).
#[derive(Debug)]
pub struct Mda {
    command: String,
    recipient: String,
    ledger: Ledger,
}

/// The MDA refused a message (it exited with a status other than 0, or was killed).
#[derive(Debug, thiserror::Error)]
#[error("the MDA `{command}` failed ({status}) for message {uidl}; it stays on the server")]
#[non_exhaustive]
pub struct MdaFailed {
    /// The command as run (after `%F`/`%T`).
    pub command: String,
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// The message's UIDL.
    pub uidl: String,
}

impl Mda {
    /// Opens (or creates) the journal at `journal` and takes its lock, for handing messages
    /// to `command` (`%T` becomes `recipient`).
    pub fn open(
        command: impl Into<String>,
        recipient: impl Into<String>,
        journal: impl AsRef<Path>,
    ) -> Result<Self> {
        let mut ledger = Ledger::open(journal.as_ref())?;
        if ledger.torn_tail_bytes > 0 {
            tracing::info!(
                bytes = ledger.torn_tail_bytes,
                "dropped an unfinished journal record"
            );
        }
        // Nothing is ever recorded before the command exits; a `Stored` entry can only come
        // from a journal the Maildir store wrote. Forget them: fetched again.
        let stored: Vec<String> = (ledger.entries.values())
            .filter(|e| e.state == EntryState::Stored)
            .map(|e| e.uidl.clone())
            .collect();
        for uidl in &stored {
            ledger.forget(uidl)?;
        }
        ledger.sync()?;
        Ok(Self {
            command: command.into(),
            recipient: recipient.into(),
            ledger,
        })
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        self.ledger.journal.path()
    }

    /// Every entry of the journal.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.ledger.entries.values()
    }

    /// Hands one message to the command; records it durably on exit status 0.
    fn deliver_one(&mut self, staged: MdaStaged) -> Result<Delivered> {
        let MdaStaged {
            mut entry,
            mut spool,
        } = staged;
        let journal = self.ledger.journal.path().to_path_buf();
        let sender = envelope_sender(&mut spool).map_err(io_err("read", &journal))?;
        let command = expand(&self.command, &sender, &self.recipient);
        let stdout = io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err("duplicate stderr for", &journal))?;
        let status = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::from(spool))
            .stdout(Stdio::from(stdout))
            .status()
            .map_err(|e| StoreError::Io {
                op: "run the MDA",
                path: PathBuf::from(&command),
                source: e,
            })?;
        if !status.success() {
            return Err(StoreError::Target(Box::new(MdaFailed {
                command,
                status,
                uidl: entry.uidl,
            })));
        }
        entry.state = EntryState::Delivered;
        "mda".clone_into(&mut entry.name);
        let uidl = entry.uidl.clone();
        self.ledger.put(entry)?;
        self.ledger.sync()?;
        Ok(Delivered::new(uidl, format!("| {command}")))
    }
}

/// `%F`, `%T` and `%%` in `command`.
fn expand(command: &str, sender: &str, recipient: &str) -> String {
    let mut out = String::with_capacity(command.len() + 32);
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('F') => out.push_str(&shell_safe(sender)),
            Some('T') => out.push_str(&shell_safe(recipient)),
            Some('%') | None => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

/// Letters, digits and `@._+=-` kept; anything else `_`.
fn shell_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._+=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The address of the `Return-Path` header (in the first 64 KiB), else `MAILER-DAEMON`;
/// the spool is rewound afterwards.
fn envelope_sender(spool: &mut File) -> io::Result<String> {
    let mut head = Vec::new();
    spool.by_ref().take(64 * 1024).read_to_end(&mut head)?;
    spool.rewind()?;
    let text = String::from_utf8_lossy(&head);
    let found = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("return-path"))
                .map(|(_, v)| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .trim()
                        .to_owned()
                })
        })
        .filter(|v| !v.is_empty());
    Ok(found.unwrap_or_else(|| "MAILER-DAEMON".to_owned()))
}

/// A message being received for an [`Mda`], spooled in an anonymous file.
#[derive(Debug)]
pub struct MdaStaging {
    entry: Entry,
    spool: Spool,
}

/// A message received completely for an [`Mda`], waiting for its batch.
#[derive(Debug)]
#[must_use = "a staged message is delivered only by its commit"]
pub struct MdaStaged {
    entry: Entry,
    spool: File,
}

impl Delivery for Mda {
    type Staging = MdaStaging;
    type Staged = MdaStaged;

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
        Ok(MdaStaging {
            entry: Entry {
                uidl: uidl.to_owned(),
                name: String::new(),
                state: EntryState::Stored,
                bytes: 0,
                crc32: 0,
                server_size,
                first_seen: epoch_secs(first_seen),
            },
            spool: Spool::create(self.ledger.journal.path())?,
        })
    }

    fn write_chunk(staging: &mut Self::Staging, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut staging.spool, bytes)
    }

    fn finish(&mut self, staging: Self::Staging) -> Result<Self::Staged> {
        let journal = self.ledger.journal.path().to_path_buf();
        let (spool, bytes, crc32) = staging
            .spool
            .into_file()
            .map_err(io_err("write", &journal))?;
        let mut entry = staging.entry;
        entry.bytes = bytes;
        entry.crc32 = crc32;
        Ok(MdaStaged { entry, spool })
    }

    /// Hands the messages over one by one; on a failure the ones before it stay delivered
    /// (and known) and the error names the failed one.
    fn commit(&mut self, batch: Vec<Self::Staged>) -> Result<Vec<Delivered>> {
        let mut delivered = Vec::with_capacity(batch.len());
        for staged in batch {
            if self.ledger.is_known(&staged.entry.uidl) {
                return Err(StoreError::AlreadyKnown(staged.entry.uidl));
            }
            delivered.push(self.deliver_one(staged)?);
        }
        Ok(delivered)
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

    #[test]
    fn placeholders_are_replaced_with_shell_safe_values() {
        assert_eq!(
            expand("procmail -f '%F' -d %T 100%%", "a@b.example", "mia"),
            "procmail -f 'a@b.example' -d mia 100%"
        );
        assert_eq!(
            expand("x %F %Q %", "'; rm -rf / #$(id)`", "m i"),
            "x ___rm_-rf______id__ %Q %"
        );
    }

    fn staged(mda: &mut Mda, uidl: &str, body: &[u8]) -> MdaStaged {
        let mut staging = mda
            .stage(uidl, body.len() as u64, SystemTime::now())
            .unwrap();
        Mda::write_chunk(&mut staging, body).unwrap();
        mda.finish(staging).unwrap()
    }

    /// Only exit status 0 delivers; the record of each delivered message is durable before
    /// the next is handed over, so a failure keeps the ones before it known after a reopen.
    #[test]
    fn exit_0_delivers_and_is_journaled_a_failure_stops_the_batch() {
        let dir = std::env::temp_dir().join(format!("mda-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let journal = dir.join("state");
        // Refuses the message whose first line says "refuse".
        let command = format!(
            "t=$(cat); case \"$t\" in refuse*) exit 75;; esac; printf '%s|%F|%T\\n' \"$t\" >> '{}'",
            out.display()
        );
        let mut mda = Mda::open(&command, "mia", &journal).unwrap();
        let batch = vec![
            staged(&mut mda, "u1", b"Return-Path: <a@b.example>\n\none"),
            staged(&mut mda, "u2", b"two"),
            staged(&mut mda, "u3", b"refuse me"),
            staged(&mut mda, "u4", b"four"),
        ];
        let err = mda.commit(batch).unwrap_err();
        let StoreError::Target(inner) = &err else {
            panic!("{err}")
        };
        let failed = inner.downcast_ref::<MdaFailed>().expect("an MdaFailed");
        assert_eq!(failed.uidl, "u3");
        assert_eq!(failed.status.code(), Some(75));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "Return-Path: <a@b.example>\n\none|a@b.example|mia\ntwo|MAILER-DAEMON|mia\n"
        );
        drop(mda);
        let mut mda = Mda::open(&command, "mia", &journal).unwrap();
        assert!(mda.is_known("u1") && mda.is_known("u2"));
        assert!(!mda.is_known("u3") && !mda.is_known("u4"));
        let batch = vec![staged(&mut mda, "u4", b"four")];
        let delivered = mda.commit(batch).unwrap();
        assert_eq!(delivered[0].uidl, "u4");
        assert_eq!(
            mda.to_delete(RetentionPolicy::DeleteAfterDownload, SystemTime::now())
                .len(),
            3
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
