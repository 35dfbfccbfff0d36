//! Which state journal a fetch uses: named after the mailbox (the login and the server's
//! identity), never after the way the connection is made.
//!
//! A fetch that finds a different journal than the last run fetches every message again, so
//! the name must stay the same across every change that leaves the mailbox the same: the
//! port and the TLS mode (POP3S on 995, or STLS on 110) never enter it. The server part is
//! the host name given on a command line, or the account's identity when an account file is
//! used (its address; changing the host name in the account file keeps the state).
//!
//! ```
//! # #[cfg(feature = "session")] {
//! use mail_account::connect::ServerSettings;
//! use mail_account::settings::Security;
//! use mail_account::store::MailboxIdentity;
//!
//! let pop3s = ServerSettings::new("Pop.Example.org", 995, Security::ImplicitTls, "alice");
//! let stls = ServerSettings::new("pop.example.org.", 110, Security::StartTls, "alice");
//! assert_eq!(
//!     MailboxIdentity::for_server(&pop3s),
//!     MailboxIdentity::for_server(&stls)
//! );
//! assert_eq!(
//!     MailboxIdentity::for_server(&pop3s).state_file_name(),
//!     ".mailctl-state-alice@pop.example.org"
//! );
//! # }
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Result, io_err};
use super::{ReconcileReport, Store};
#[cfg(feature = "session")]
use crate::connect::{ConnectError, ServerSettings};
#[cfg(feature = "session")]
use crate::settings::Account;

/// The prefix of every default state journal's file name (a dot file, so mail readers skip
/// it).
pub const STATE_FILE_PREFIX: &str = ".mailctl-state-";

/// The mailbox a fetch state belongs to: a login on a server (or in an account).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxIdentity {
    login: String,
    server: ServerIdentity,
}

/// The server part of a [`MailboxIdentity`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerIdentity {
    /// A host name as given (lower-cased, without a trailing dot).
    Host(String),
    /// An account, by its address.
    // Built from an account's settings, which needs `session`.
    #[cfg_attr(not(feature = "session"), allow(dead_code))]
    Account(String),
}

impl MailboxIdentity {
    /// `login` on the server `host` (port and TLS mode do not matter).
    pub fn new(login: impl Into<String>, host: &str) -> Self {
        Self {
            login: login.into(),
            server: ServerIdentity::Host(normalise_host(host)),
        }
    }

    /// The login and host of `settings`; the port and the TLS mode are left out.
    #[cfg(feature = "session")]
    pub fn for_server(settings: &ServerSettings) -> Self {
        Self::new(settings.username.clone(), &settings.host)
    }

    /// The incoming login of `account`, identified by the account's address: editing the
    /// account's host name, port or TLS mode keeps the state.
    ///
    /// # Errors
    ///
    /// When the username template needs a value the address does not give.
    #[cfg(feature = "session")]
    pub fn for_account(account: &Account) -> Result<Self, ConnectError> {
        let settings = ServerSettings::incoming(account)?;
        Ok(Self {
            login: settings.username,
            server: ServerIdentity::Account(account.address.trim().to_lowercase()),
        })
    }

    /// The login.
    pub fn login(&self) -> &str {
        &self.login
    }

    /// The default journal's file name: `.mailctl-state-<login>@<host>`, or
    /// `.mailctl-state-<login>@account:<address>` for an account; `/` and `\` become `_`.
    pub fn state_file_name(&self) -> String {
        let server = match &self.server {
            ServerIdentity::Host(host) => host.clone(),
            ServerIdentity::Account(address) => format!("account:{address}"),
        };
        format!("{STATE_FILE_PREFIX}{}@{server}", self.login).replace(['/', '\\'], "_")
    }

    /// The default journal in `maildir`.
    pub fn default_journal(&self, maildir: &Path) -> PathBuf {
        maildir.join(self.state_file_name())
    }

    /// The names an earlier version gave this mailbox's journal: `<prefix><login>@<host>-<port>`
    /// for every port. `host` is the server connected to (for an account, its incoming host).
    fn is_legacy_name(&self, name: &str, host: &str) -> bool {
        let stem = format!(
            "{STATE_FILE_PREFIX}{}@{}-",
            self.login,
            normalise_host(host)
        )
        .replace(['/', '\\'], "_");
        name.len() > stem.len()
            && name[..stem.len()].eq_ignore_ascii_case(&stem)
            && name[stem.len()..].bytes().all(|b| b.is_ascii_digit())
    }
}

impl fmt::Display for MailboxIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            ServerIdentity::Host(host) => write!(f, "{} on {host}", self.login),
            ServerIdentity::Account(address) => {
                write!(f, "{} of the account {address}", self.login)
            }
        }
    }
}

fn normalise_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_lowercase()
}

/// What [`Store::open_mailbox`] did besides opening the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateReport {
    /// The journal used.
    pub journal: PathBuf,
    /// Journals of earlier versions (named after the port too) that were merged into this
    /// one and removed, with how many messages each brought.
    pub taken_over: Vec<(PathBuf, usize)>,
    /// Other journals in the Maildir for the same login (another host name, an account file,
    /// or flags): their messages are not known to this one and will be fetched again if they
    /// are the same mailbox. Only reported when this journal was just created.
    pub other_states: Vec<PathBuf>,
}

impl Store {
    /// Opens the Maildir with the default journal of `mailbox` (see
    /// [`MailboxIdentity::default_journal`]), after taking over the journals an earlier
    /// version named after the port (`host` is the server connected to): their messages are
    /// merged into this journal, which is made durable before they are removed, so no
    /// message is fetched twice. Reports other journals of the same login in the Maildir
    /// when this one is new.
    ///
    /// # Errors
    ///
    /// As [`Store::open`]; a legacy journal in use by another process is
    /// [`StoreError::Locked`](super::StoreError::Locked).
    pub fn open_mailbox(
        maildir: impl AsRef<Path>,
        mailbox: &MailboxIdentity,
        host: &str,
    ) -> Result<(Self, ReconcileReport, StateReport)> {
        let maildir = maildir.as_ref();
        let journal = mailbox.default_journal(maildir);
        let (mut store, reconciled) = Self::open(maildir, &journal)?;
        let mut report = StateReport {
            journal: journal.clone(),
            ..StateReport::default()
        };
        let mut others = Vec::new();
        let same_login = format!("{STATE_FILE_PREFIX}{}@", mailbox.login).replace(['/', '\\'], "_");
        for name in state_files(maildir)? {
            let path = maildir.join(&name);
            if path == journal {
                continue;
            }
            if mailbox.is_legacy_name(&name, host) {
                let taken = store.take_over(&path)?;
                report.taken_over.push((path, taken));
            } else if name.starts_with(&same_login) {
                others.push(path);
            }
        }
        if reconciled.journal_created && report.taken_over.is_empty() {
            others.sort();
            report.other_states = others;
        }
        Ok((store, reconciled, report))
    }

    /// Merges the journal at `other` (of the same Maildir) into this one: every message it
    /// knows and this one does not is recorded here, this journal is made durable, then
    /// `other` and its lock file are removed. Returns how many messages were taken over.
    ///
    /// # Errors
    ///
    /// As [`Store::open`] for `other`, and any journal write.
    pub fn take_over(&mut self, other: &Path) -> Result<usize> {
        let (old, _) = Self::open(self.maildir(), other)?;
        let mut taken = 0;
        for entry in old.entries() {
            if !self.is_known(&entry.uidl) {
                self.journal.append(super::journal::Record::Put(entry))?;
                self.entries.insert(entry.uidl.clone(), entry.clone());
                taken += 1;
            }
        }
        self.journal.sync()?;
        let old_path = old.journal_path().to_path_buf();
        drop(old);
        fs::remove_file(&old_path).map_err(io_err("remove", &old_path))?;
        let mut lock = old_path.into_os_string();
        lock.push(".lock");
        let _ = fs::remove_file(PathBuf::from(lock));
        super::maildir::sync_dir(self.maildir())?;
        tracing::info!(taken, journal = %other.display(), "took over an older state journal");
        Ok(taken)
    }
}

/// The default journals in `maildir` (not their `.lock` or `.compact` files).
fn state_files(maildir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(maildir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(io_err("read directory", maildir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", maildir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Our own suffixes, always lower case.
        let companion = Path::new(&name)
            .extension()
            .is_some_and(|e| e == "lock" || e == "compact");
        if name.starts_with(STATE_FILE_PREFIX) && !companion {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Security;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("store-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn port_and_tls_mode_do_not_change_the_identity() {
        let a = ServerSettings::new("127.0.0.1", 11995, Security::ImplicitTls, "kate");
        let b = ServerSettings::new("127.0.0.1", 11110, Security::StartTls, "kate");
        let c = ServerSettings::new("localhost", 11110, Security::StartTls, "kate");
        let d = ServerSettings::new("127.0.0.1", 11110, Security::StartTls, "kim");
        let id = MailboxIdentity::for_server(&a);
        assert_eq!(id, MailboxIdentity::for_server(&b));
        assert_ne!(id, MailboxIdentity::for_server(&c));
        assert_ne!(id, MailboxIdentity::for_server(&d));
        assert_eq!(id.state_file_name(), ".mailctl-state-kate@127.0.0.1");
        assert!(id.is_legacy_name(".mailctl-state-kate@127.0.0.1-11995", "127.0.0.1"));
        assert!(!id.is_legacy_name(".mailctl-state-kate@127.0.0.1-11995.lock", "127.0.0.1"));
        assert!(!id.is_legacy_name(".mailctl-state-kate@localhost-11995", "127.0.0.1"));
        assert!(!id.is_legacy_name(".mailctl-state-kate@127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn an_account_is_identified_by_its_address_not_its_host() {
        let toml = |host: &str, port: u16| {
            format!(
                "address = \"kate@testground.example\"\n[incoming]\nhost = \"{host}\"\n\
                 port = {port}\nsecurity = \"implicit-tls\"\nusername = \"{{local}}\"\n\
                 auth = \"automatic\"\n[outgoing]\nhost = \"{host}\"\nport = 465\n\
                 security = \"implicit-tls\"\nusername = \"{{local}}\"\nauth = \"automatic\"\n"
            )
        };
        let one = Account::from_toml(&toml("127.0.0.1", 995)).unwrap();
        let two = Account::from_toml(&toml("localhost", 110)).unwrap();
        let id = MailboxIdentity::for_account(&one).unwrap();
        assert_eq!(id, MailboxIdentity::for_account(&two).unwrap());
        assert_eq!(id.login(), "kate");
        assert_eq!(
            id.state_file_name(),
            ".mailctl-state-kate@account:kate@testground.example"
        );
    }

    /// Issue 15 item 1: journals named after the port are merged, every UIDL kept.
    #[test]
    fn journals_named_after_the_port_are_taken_over_without_loss() {
        let dir = scratch("takeover");
        let stored = |journal: &str, uidls: &[&str]| {
            let (mut store, _) = Store::open(&dir, dir.join(journal)).unwrap();
            for uidl in uidls {
                let mut incoming = store.begin(uidl, 5).unwrap();
                incoming.write_all(b"hello").unwrap();
                incoming.commit().unwrap();
            }
        };
        stored(".mailctl-state-kate@127.0.0.1-995", &["a", "b"]);
        stored(".mailctl-state-kate@127.0.0.1-110", &["b", "c"]);
        stored(".mailctl-state-kate@localhost-995", &["z"]);
        let id = MailboxIdentity::new("kate", "127.0.0.1");
        let (store, _, report) = Store::open_mailbox(&dir, &id, "127.0.0.1").unwrap();
        let mut uidls: Vec<&str> = store.entries().map(|e| e.uidl.as_str()).collect();
        uidls.sort_unstable();
        assert_eq!(uidls, ["a", "b", "c"]);
        assert_eq!(report.taken_over.len(), 2);
        assert_eq!(
            report.taken_over.iter().map(|(_, n)| n).sum::<usize>(),
            3,
            "{report:?}"
        );
        assert!(!dir.join(".mailctl-state-kate@127.0.0.1-995").exists());
        assert!(!dir.join(".mailctl-state-kate@127.0.0.1-110").exists());
        assert!(report.other_states.is_empty(), "{report:?}");
        drop(store);
        // Reopened: the merged journal holds them durably.
        let (store, _, report) = Store::open_mailbox(&dir, &id, "127.0.0.1").unwrap();
        assert_eq!(store.entries().len(), 3);
        assert!(report.taken_over.is_empty());
        drop(store);
        // A new identity for the same login names the other journals.
        let other = MailboxIdentity::new("kate", "pop.example.org");
        let (_, _, report) = Store::open_mailbox(&dir, &other, "pop.example.org").unwrap();
        assert_eq!(
            report.other_states,
            [
                dir.join(".mailctl-state-kate@127.0.0.1"),
                dir.join(".mailctl-state-kate@localhost-995")
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
