//! Retention: which delivered messages to delete on the server, and when.

use std::time::{Duration, SystemTime};

use super::{Entry, EntryState};

/// What to do with the server's copy of a message once it is safely in the Maildir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetentionPolicy {
    /// Leave every message on the server ("leave a copy on the server").
    #[default]
    KeepForever,
    /// Delete each message from the server once it is delivered.
    DeleteAfterDownload,
    /// Delete a delivered message once this many days have passed since it was first seen
    /// (downloaded); `DeleteAfterDays(0)` is [`DeleteAfterDownload`](Self::DeleteAfterDownload).
    DeleteAfterDays(u32),
    /// "Leave on the server until I delete it here" (Thunderbird's "until I delete them",
    /// Windows Live Mail's "remove from server when deleted from Deleted Items"): a delivered
    /// message is deleted on the server once its local copy is gone from the Maildir, or
    /// every copy carries the Maildir trashed flag (`T`). Only a Maildir store can tell; see
    /// [`Store::to_delete`](super::Store::to_delete).
    UntilDeletedLocally,
}

impl From<crate::settings::Retention> for RetentionPolicy {
    /// The policy an account's retention setting asks for (the one mapping between the two).
    fn from(retention: crate::settings::Retention) -> Self {
        use crate::settings::Retention;
        match retention {
            Retention::KeepOnServer => Self::KeepForever,
            Retention::DeleteAfterDownload => Self::DeleteAfterDownload,
            Retention::DeleteAfterDays(days) => Self::DeleteAfterDays(days),
            Retention::UntilDeletedLocally => Self::UntilDeletedLocally,
        }
    }
}

impl RetentionPolicy {
    /// Whether a delivered message first seen at `first_seen` is due for deletion at `now`.
    /// A `first_seen` in the future (the clock went back) counts as age zero.
    /// [`UntilDeletedLocally`](Self::UntilDeletedLocally) is never due by age: it depends on
    /// the local copy, which only the store sees.
    pub fn is_due(self, first_seen: SystemTime, now: SystemTime) -> bool {
        match self {
            Self::KeepForever | Self::UntilDeletedLocally => false,
            Self::DeleteAfterDownload => true,
            Self::DeleteAfterDays(days) => {
                let age = now.duration_since(first_seen).unwrap_or(Duration::ZERO);
                age >= Duration::from_secs(u64::from(days) * 86_400)
            }
        }
    }
}

/// The UIDLs, among `entries`, that `policy` says to delete on the server at `now`: only
/// messages that are [`Delivered`](EntryState::Delivered) (durably in the Maildir and not yet
/// deleted). Pure: the time is passed in, nothing is read from a clock.
pub fn due_for_deletion<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    policy: RetentionPolicy,
    now: SystemTime,
) -> Vec<&'a str> {
    entries
        .into_iter()
        .filter(|e| e.state == EntryState::Delivered && policy.is_due(e.first_seen_time(), now))
        .map(|e| e.uidl.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn entry(uidl: &str, state: EntryState, first_seen: u64) -> Entry {
        Entry {
            uidl: uidl.to_owned(),
            name: format!("n-{uidl}"),
            state,
            bytes: 1,
            crc32: 0,
            server_size: 1,
            first_seen,
        }
    }

    #[test]
    fn policies() {
        let day = 86_400;
        let entries = [
            entry("old", EntryState::Delivered, 10 * day),
            entry("new", EntryState::Delivered, 19 * day + 1),
            entry("pending", EntryState::Stored, 0),
            entry("gone", EntryState::Deleted, 0),
        ];
        let now = UNIX_EPOCH + Duration::from_secs(20 * day);
        assert!(due_for_deletion(&entries, RetentionPolicy::KeepForever, now).is_empty());
        assert!(due_for_deletion(&entries, RetentionPolicy::UntilDeletedLocally, now).is_empty());
        assert_eq!(
            due_for_deletion(&entries, RetentionPolicy::DeleteAfterDownload, now),
            ["old", "new"]
        );
        assert_eq!(
            due_for_deletion(&entries, RetentionPolicy::DeleteAfterDays(0), now),
            ["old", "new"]
        );
        assert_eq!(
            due_for_deletion(&entries, RetentionPolicy::DeleteAfterDays(1), now),
            ["old"]
        );
        assert_eq!(
            due_for_deletion(&entries, RetentionPolicy::DeleteAfterDays(10), now),
            ["old"]
        );
        assert!(due_for_deletion(&entries, RetentionPolicy::DeleteAfterDays(11), now).is_empty());
        // Clock went back: nothing is old.
        let past = UNIX_EPOCH;
        assert!(due_for_deletion(&entries, RetentionPolicy::DeleteAfterDays(1), past).is_empty());
    }
}
