//! Passwords from the OS keyring (feature `keyring`): the macOS Keychain, the Windows
//! Credential Manager, or the Secret Service (GNOME Keyring, KWallet, KeePassXC) on Linux and
//! the BSDs, through the `keyring-core` crate and its platform stores.
//!
//! A [`Credential::Keyring`](crate::settings::Credential::Keyring) names the entry's service
//! and user; [`Credential::password`](crate::settings::Credential::password) reads it from
//! the store set with [`use_store`], else from the platform's store, opened on first use.
//!
//! On Linux the Secret Service is a daemon on the D-Bus session bus: on a headless machine
//! (a server, a container, CI) there is none unless one is started (for example
//! `gnome-keyring-daemon --unlock` inside `dbus-run-session`), and the keyring credential
//! fails with an error naming the entry; use an `env` or `command` credential there.
//!
//! Tests (and programs with a store of their own) inject a store:
//!
//! ```
//! use mail_account::keyring::{keyring_core, use_store};
//! use mail_account::settings::{Credential, KeyringEntry};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use_store(keyring_core::mock::Store::new()?);
//! let credential = Credential::Keyring(KeyringEntry::new("mailctl", "taro@example.jp"));
//! // The mock store keeps nothing between entries: no password there.
//! assert!(credential.password().is_err());
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, OnceLock};

use mail_common::Secret;

use crate::settings::{CredentialError, KeyringEntry};

pub use keyring_core;
/// A credential store (`keyring_core`'s trait object).
pub use keyring_core::CredentialStore;

/// Uses `store` for every keyring credential from now on, instead of the platform's store
/// (a test's in-memory store, or a store the program chose).
pub fn use_store(store: Arc<CredentialStore>) {
    keyring_core::set_default_store(store);
}

/// Why the platform's store could not be opened, once it was tried.
static PLATFORM: OnceLock<Result<(), String>> = OnceLock::new();

/// The platform's store, opened and made the default once, unless a store was set already.
fn ensure_store() -> Result<(), String> {
    if keyring_core::get_default_store().is_some() {
        return Ok(());
    }
    PLATFORM
        .get_or_init(|| {
            platform_store()
                .map(keyring_core::set_default_store)
                .map_err(|e| {
                    format!(
                        "cannot open the OS keyring: {e}{}",
                        if cfg!(any(target_os = "macos", windows)) {
                            ""
                        } else {
                            " (the Secret Service must run on the D-Bus session bus; a headless \
                             machine has none unless one is started)"
                        }
                    )
                })
        })
        .clone()
}

#[cfg(target_os = "macos")]
fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    let store: Arc<CredentialStore> = apple_native_keyring_store::keychain::Store::new()?;
    Ok(store)
}

#[cfg(windows)]
fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    let store: Arc<CredentialStore> = windows_native_keyring_store::Store::new()?;
    Ok(store)
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    let store: Arc<CredentialStore> = zbus_secret_service_keyring_store::Store::new()?;
    Ok(store)
}

#[cfg(not(any(
    target_os = "macos",
    windows,
    all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )
)))]
fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    Err(keyring_core::Error::NoDefaultStore)
}

/// The password of `entry` from the keyring. Blocking: the platform stores talk to a daemon.
pub(crate) fn password(entry: &KeyringEntry) -> Result<Secret<String>, CredentialError> {
    let fail = |reason: String| CredentialError::Keyring {
        service: entry.service.clone(),
        user: entry.user.clone(),
        reason,
    };
    ensure_store().map_err(fail)?;
    let found = keyring_core::Entry::new(&entry.service, &entry.user)
        .and_then(|e| e.get_password())
        .map(Secret::new);
    match found {
        Ok(password) => Ok(password),
        Err(keyring_core::Error::NoEntry) => Err(CredentialError::KeyringMissing {
            service: entry.service.clone(),
            user: entry.user.clone(),
        }),
        // The keyring's errors carry no secret (a bad encoding's bytes are not shown).
        Err(keyring_core::Error::BadEncoding(_)) => Err(fail("the password is not UTF-8".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}
