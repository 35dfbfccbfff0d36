//! The TOML form of the settings: round trips, unknown keys named, secrets redacted.

use mail_account::settings::{
    Account, AuthMethod, Credential, ManualSettings, Protocol, Retention, Security,
};

const FULL: &str = r#"
address = "taro@example.jp"
display_name = "山田太郎"
retention = { delete-after-days = 14 }

[incoming]
protocol = "pop3"
host = "pop.example.jp"
port = 995
security = "implicit-tls"
username = "{local}"
auth = "password-encrypted"

[outgoing]
host = "smtp.example.jp"
port = 587
security = "starttls"
username = "{address}"
auth = "oauth2"

[credential]
command = ["pass", "show", "mail/taro"]

[tls]
extra_ca_file = "/etc/ssl/private-ca.pem"
"#;

#[test]
fn full_account_round_trips() {
    let a = Account::from_toml(FULL).unwrap();
    assert_eq!(a.incoming.protocol, Protocol::Pop3);
    assert_eq!(a.outgoing.security, Security::StartTls);
    assert_eq!(a.outgoing.auth, AuthMethod::OAuth2);
    assert_eq!(a.retention, Retention::DeleteAfterDays(14));
    assert!(matches!(a.credential, Some(Credential::Command(ref c)) if c.len() == 3));
    assert!(a.warnings().is_empty());
    let text = a.to_toml().unwrap();
    assert_eq!(Account::from_toml(&text).unwrap(), a);
}

#[test]
fn unknown_keys_are_named() {
    for (from, to, key) in [
        ("display_name", "displayname", "displayname"),
        ("port = 587", "prot = 587", "prot"),
        ("extra_ca_file", "ca_file", "ca_file"),
        ("command =", "cmd =", "cmd"),
    ] {
        let err = Account::from_toml(&FULL.replacen(from, to, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    let err = ManualSettings::from_toml("[outgoing]\nhots = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hots"), "{err}");
    let err = Account::from_toml(&FULL.replace("\"starttls\"", "\"ssl\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssl"), "{err}");
}

#[test]
fn retention_forms_and_defaults() {
    let keep = FULL.replace("retention = { delete-after-days = 14 }", "");
    assert_eq!(
        Account::from_toml(&keep).unwrap().retention,
        Retention::KeepOnServer
    );
    let del = FULL.replace(
        "retention = { delete-after-days = 14 }",
        "retention = \"delete-after-download\"",
    );
    assert_eq!(
        Account::from_toml(&del).unwrap().retention,
        Retention::DeleteAfterDownload
    );
}

#[test]
fn passwords_are_redacted_and_port_25_warned() {
    let text = FULL
        .replace(
            "command = [\"pass\", \"show\", \"mail/taro\"]",
            "password = \"hunter2\"",
        )
        .replace("port = 587", "port = 25");
    let a = Account::from_toml(&text).unwrap();
    assert!(!format!("{a:?}").contains("hunter2"));
    assert_eq!(
        a.credential.as_ref().unwrap().password().unwrap().expose(),
        "hunter2"
    );
    let w = a.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].setting, "outgoing.port");
}

#[test]
fn inconsistent_values_are_refused() {
    let err = Account::from_toml(&FULL.replace("protocol = \"pop3\"", "protocol = \"smtp\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("incoming.protocol"), "{err}");
    let err = Account::from_toml(&FULL.replace("taro@example.jp", "not-an-address"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("address"), "{err}");
}

/// Issue 18: the account names where fetched mail goes, and the "until deleted here"
/// retention; both round-trip, and a target with two kinds or an unknown one is refused.
#[test]
fn delivery_target_and_until_deleted_retention() {
    use mail_account::settings::DeliveryTarget;
    let with = |extra: &str| format!("{FULL}\n{extra}");
    for (toml, want) in [
        (
            "[delivery]\nmaildir = \"~/Maildir\"\n",
            DeliveryTarget::Maildir("~/Maildir".into()),
        ),
        (
            "[delivery]\nmbox = \"/var/mail/taro\"\n",
            DeliveryTarget::Mbox("/var/mail/taro".into()),
        ),
        (
            "[delivery]\nmda = \"procmail -d %T\"\n",
            DeliveryTarget::Mda("procmail -d %T".into()),
        ),
    ] {
        let a = Account::from_toml(&with(toml)).unwrap();
        assert_eq!(a.delivery.as_ref(), Some(&want));
        assert_eq!(Account::from_toml(&a.to_toml().unwrap()).unwrap(), a);
    }
    assert_eq!(Account::from_toml(FULL).unwrap().delivery, None);
    for bad in [
        "[delivery]\nmaildir = \"a\"\nmbox = \"b\"\n",
        "[delivery]\nimap = \"x\"\n",
    ] {
        assert!(Account::from_toml(&with(bad)).is_err(), "{bad}");
    }
    let text = FULL.replace(
        "retention = { delete-after-days = 14 }",
        "retention = \"until-deleted-locally\"",
    );
    assert_eq!(
        Account::from_toml(&text).unwrap().retention,
        Retention::UntilDeletedLocally
    );
}

/// Issue 17: an account says how often `mailctl watch` checks it; absent, the watcher decides.
#[test]
fn check_interval_round_trips_and_defaults_to_none() {
    let text = format!("check_interval = 600\n{FULL}");
    let account = Account::from_toml(&text).unwrap();
    assert_eq!(account.check_interval, Some(600));
    assert_eq!(
        Account::from_toml(&account.to_toml().unwrap()).unwrap(),
        account
    );
    assert_eq!(Account::from_toml(FULL).unwrap().check_interval, None);
    assert!(Account::from_toml(&format!("check_interval = \"often\"\n{FULL}")).is_err());
}

/// Issue 13: `Security` is now mail-common's (`StartTls`, `Plaintext`), but account files
/// written before keep their spellings: each old value parses, is written back exactly as it
/// was, and round-trips; `plaintext` is read as `none`; the Rust variant names are not TOML.
#[test]
fn old_security_spellings_parse_and_are_written_back_unchanged() {
    for (old, security) in [
        ("implicit-tls", Security::ImplicitTls),
        ("starttls", Security::StartTls),
        ("none", Security::Plaintext),
    ] {
        let text = FULL
            .replace(
                "security = \"implicit-tls\"",
                &format!("security = \"{old}\""),
            )
            .replace("security = \"starttls\"", &format!("security = \"{old}\""));
        let a = Account::from_toml(&text).unwrap();
        assert_eq!(a.incoming.security, security, "{old}");
        assert_eq!(a.outgoing.security, security, "{old}");
        let written = a.to_toml().unwrap();
        assert_eq!(
            written.matches(&format!("security = \"{old}\"")).count(),
            2,
            "{old}: {written}"
        );
        assert_eq!(Account::from_toml(&written).unwrap(), a);
        let manual =
            ManualSettings::from_toml(&format!("[outgoing]\nsecurity = \"{old}\"\n")).unwrap();
        assert_eq!(manual.outgoing.security, Some(security), "{old}");
        let written = toml::to_string(&manual).unwrap();
        assert!(
            written.contains(&format!("security = \"{old}\"")),
            "{written}"
        );
    }
    let a = Account::from_toml(&FULL.replace("\"starttls\"", "\"plaintext\"")).unwrap();
    assert_eq!(a.outgoing.security, Security::Plaintext);
    assert!(a.to_toml().unwrap().contains("security = \"none\""));
    for rust_name in ["StartTls", "Plaintext", "implicit_tls", "start-tls"] {
        let text = FULL.replace("\"starttls\"", &format!("\"{rust_name}\""));
        assert!(Account::from_toml(&text).is_err(), "{rust_name}");
    }
}
