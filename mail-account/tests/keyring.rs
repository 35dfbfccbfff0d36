//! Keyring credentials resolved through an injected in-memory store (`keyring-core`'s sample
//! store): CI has no Secret Service on a D-Bus session bus, and tests must not touch a
//! developer's real keyring.
#![cfg(feature = "keyring")]

use mail_account::keyring::{keyring_core, use_store};
use mail_account::settings::{Account, Credential, CredentialError, KeyringEntry};

const ACCOUNT: &str = r#"
address = "taro@example.jp"
[incoming]
host = "pop.example.jp"
port = 995
security = "implicit-tls"
username = "{address}"
auth = "automatic"
[outgoing]
host = "smtp.example.jp"
port = 465
security = "implicit-tls"
username = "{address}"
auth = "automatic"
[credential.keyring]
service = "mail-account-test"
user = "taro@example.jp"
"#;

/// One store for the whole test binary (the default store is process-wide).
fn store() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| use_store(keyring_core::sample::Store::new().unwrap()));
}

#[test]
fn the_password_comes_from_the_store_and_never_shows_in_debug() {
    store();
    let secret = "correct horse battery staple";
    keyring_core::Entry::new("mail-account-test", "taro@example.jp")
        .unwrap()
        .set_password(secret)
        .unwrap();
    let account = Account::from_toml(ACCOUNT).unwrap();
    let credential = account.credential.as_ref().unwrap();
    assert_eq!(
        credential,
        &Credential::Keyring(KeyringEntry::new("mail-account-test", "taro@example.jp"))
    );
    let password = credential.password().unwrap();
    assert_eq!(password.expose(), secret);
    for shown in [
        format!("{account:?}"),
        format!("{credential:?}"),
        format!("{password:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // The settings round trip keeps the entry, not the password.
    let written = account.to_toml().unwrap();
    assert!(!written.contains(secret), "{written}");
    assert_eq!(Account::from_toml(&written).unwrap(), account);
}

#[test]
fn a_missing_entry_is_a_settings_error_naming_the_service_and_user() {
    store();
    let credential =
        Credential::Keyring(KeyringEntry::new("mail-account-test", "nobody@example.jp"));
    let error = credential.password().unwrap_err();
    assert!(
        matches!(&error, CredentialError::KeyringMissing { service, user }
            if service == "mail-account-test" && user == "nobody@example.jp"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("\"mail-account-test\"") && message.contains("\"nobody@example.jp\""),
        "{message}"
    );
    // A password stored for another user of the same service is not taken.
    keyring_core::Entry::new("mail-account-test", "someone-else@example.jp")
        .unwrap()
        .set_password("not yours")
        .unwrap();
    assert!(matches!(
        credential.password(),
        Err(CredentialError::KeyringMissing { .. })
    ));
}
