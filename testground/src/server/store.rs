//! The shared in-memory mail store: users, passwords and mailboxes.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// One message in a mailbox.
///
/// Cheap to clone: the bytes are shared.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    uid: Arc<str>,
    bytes: Arc<[u8]>,
}

impl StoredMessage {
    /// The POP3 unique id (UIDL) of the message, stable for the life of the server.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The message as stored: CRLF line endings, ending in CRLF, not dot-stuffed. This is what
    /// `RETR` returns (after un-stuffing) and what `LIST` counts.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The size in octets, as `LIST` reports it.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

impl fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMessage")
            .field("uid", &self.uid)
            .field("size", &self.bytes.len())
            .finish()
    }
}

struct User {
    /// The name as given to the builder.
    name: String,
    password: String,
    messages: Vec<StoredMessage>,
    /// A POP3 session holds the maildrop (RFC 1939 section 4).
    locked: bool,
}

struct Inner {
    /// Keyed by the ASCII-lower-cased name.
    users: HashMap<String, User>,
    next_uid: u64,
}

/// A handle on the server's mail store, shared by its POP3 and SMTP sessions.
///
/// Cloning gives another handle on the same store.
#[derive(Clone)]
pub struct MailStore {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for MailStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MailStore")
            .field("users", &inner.users.len())
            .finish_non_exhaustive()
    }
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Normalizes line endings to CRLF (a bare LF gets a CR) and makes a non-empty message end with
/// CRLF, so that what POP3 sends and what LIST counts agree.
pub(crate) fn normalize_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl MailStore {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                users: HashMap::new(),
                next_uid: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock; recover anyway rather than propagate.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a user (or replaces the password of an existing one).
    pub(crate) fn add_user(&self, name: &str, password: &str) {
        let mut inner = self.lock();
        inner
            .users
            .entry(key(name))
            .and_modify(|u| password.clone_into(&mut u.password))
            .or_insert_with(|| User {
                name: name.to_owned(),
                password: password.to_owned(),
                messages: Vec::new(),
                locked: false,
            });
    }

    /// Whether `name` (compared without regard to ASCII case) is a user of this server.
    pub fn has_user(&self, name: &str) -> bool {
        self.lock().users.contains_key(&key(name))
    }

    /// The names of all users, sorted.
    pub fn users(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().users.values().map(|u| u.name.clone()).collect();
        names.sort();
        names
    }

    /// A snapshot of `user`'s mailbox, oldest first; `None` for an unknown user. Messages
    /// marked deleted by a POP3 session that has not sent QUIT yet are still listed.
    pub fn mailbox(&self, user: &str) -> Option<Vec<StoredMessage>> {
        self.lock()
            .users
            .get(&key(user))
            .map(|u| u.messages.clone())
    }

    /// Appends a message to `user`'s mailbox as it is (only line endings normalized to CRLF)
    /// and returns its UID; `None` for an unknown user.
    pub fn add_message(&self, user: &str, bytes: &[u8]) -> Option<String> {
        let bytes = normalize_crlf(bytes);
        let mut inner = self.lock();
        let uid = format!("{:016x}", inner.next_uid);
        let user = inner.users.get_mut(&key(user))?;
        user.messages.push(StoredMessage {
            uid: Arc::from(uid.as_str()),
            bytes: Arc::from(bytes),
        });
        inner.next_uid += 1;
        Some(uid)
    }

    /// Removes every message from `user`'s mailbox; returns how many there were.
    pub fn clear_mailbox(&self, user: &str) -> Option<usize> {
        let mut inner = self.lock();
        let user = inner.users.get_mut(&key(user))?;
        let n = user.messages.len();
        user.messages.clear();
        Some(n)
    }

    /// The stored password of `user`, for the SASL and APOP checks.
    pub(crate) fn password(&self, user: &str) -> Option<String> {
        self.lock()
            .users
            .get(&key(user))
            .map(|u| u.password.clone())
    }

    /// Checks a clear-text password.
    pub(crate) fn check_password(&self, user: &str, password: &str) -> bool {
        self.password(user).is_some_and(|p| p == password)
    }

    /// Takes the POP3 maildrop lock of `user` and returns the messages present at this instant.
    /// `None` when another session holds it (or the user is unknown).
    pub(crate) fn lock_maildrop(&self, user: &str) -> Option<(MaildropLock, Vec<StoredMessage>)> {
        let mut inner = self.lock();
        let u = inner.users.get_mut(&key(user))?;
        if u.locked {
            return None;
        }
        u.locked = true;
        let messages = u.messages.clone();
        Some((
            MaildropLock {
                store: self.clone(),
                user: key(user),
            },
            messages,
        ))
    }

    /// Removes the messages whose UIDs are in `uids` from `user`'s mailbox (messages delivered
    /// since the session started are kept).
    pub(crate) fn expunge(&self, user: &str, uids: &HashSet<Arc<str>>) {
        if let Some(u) = self.lock().users.get_mut(&key(user)) {
            u.messages.retain(|m| !uids.contains(&m.uid));
        }
    }
}

/// Held by an authenticated POP3 session; releases the maildrop when dropped (QUIT, error,
/// disconnection or server shutdown).
pub(crate) struct MaildropLock {
    store: MailStore,
    user: String,
}

impl MaildropLock {
    /// The user (lower-cased key) this lock is for.
    pub(crate) fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Some(u) = self.store.lock().users.get_mut(&self.user) {
            u.locked = false;
        }
    }
}

/// The UID of a stored message as a shared string, for deletion sets.
pub(crate) fn uid_of(m: &StoredMessage) -> Arc<str> {
    Arc::clone(&m.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_line_endings() {
        assert_eq!(normalize_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(normalize_crlf(b""), b"");
        assert_eq!(normalize_crlf(b"x\r"), b"x\r\r\n");
    }

    #[test]
    fn maildrop_lock_is_exclusive_and_released() {
        let store = MailStore::new();
        store.add_user("A@x", "p");
        assert!(store.add_message("a@X", b"m").is_some());
        let (lock, msgs) = store.lock_maildrop("a@x").unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(store.lock_maildrop("A@X").is_none());
        drop(lock);
        assert!(store.lock_maildrop("a@x").is_some());
        assert!(store.add_message("nobody", b"m").is_none());
    }
}
