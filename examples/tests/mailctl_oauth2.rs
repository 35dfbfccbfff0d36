//! `mailctl` and OAuth 2.0: the provider data that offline discovery reports.

use std::process::{Command, Output};

fn mailctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailctl"))
}

fn discover(address: &str) -> (String, serde_json::Value) {
    let run = |json: bool| -> Output {
        let mut command = mailctl();
        command.args(["discover", address, "--offline"]);
        if json {
            command.arg("--json");
        }
        command.output().expect("mailctl runs")
    };
    let text = run(false);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let json = run(true);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    (
        String::from_utf8_lossy(&text.stdout).into_owned(),
        serde_json::from_slice(&json.stdout).unwrap(),
    )
}

#[test]
fn offline_discover_shows_microsoft_oauth2_for_hotmail_and_outlook_jp() {
    for address in ["someone@hotmail.com", "taro@outlook.jp"] {
        let (text, json) = discover(address);
        assert!(
            text.contains(
                "oauth2:   issuer login.microsoftonline.com <- bundled curated entry outlook.com"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "oauth2:   device authorization https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
            ),
            "{text}"
        );
        assert!(text.contains("oauth2:   grant device-code"), "{text}");
        let oauth = &json["oauth2"];
        assert_eq!(
            oauth["token_url"],
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            oauth["scopes"]["pop3"],
            serde_json::json!([
                "https://outlook.office.com/POP.AccessAsUser.All",
                "offline_access"
            ])
        );
        assert_eq!(
            oauth["scopes"]["smtp"],
            serde_json::json!(["https://outlook.office.com/SMTP.Send", "offline_access"])
        );
        assert_eq!(oauth["grant"], "device-code");
        assert!(
            oauth["source"]
                .as_str()
                .unwrap()
                .starts_with("bundled curated entry outlook.com (checked "),
            "{oauth}"
        );
    }
}

#[test]
fn offline_discover_shows_google_oauth2_for_gmail() {
    let (text, json) = discover("taro@gmail.com");
    assert!(
        text.contains("oauth2:   issuer accounts.google.com <- bundled curated entry gmail.com"),
        "{text}"
    );
    assert!(
        text.contains("oauth2:   POP3 scopes https://mail.google.com/"),
        "{text}"
    );
    assert!(
        text.contains("oauth2:   grant authorization-code-pkce"),
        "{text}"
    );
    let oauth = &json["oauth2"];
    assert_eq!(oauth["device_authorization_url"], serde_json::Value::Null);
    assert_eq!(
        oauth["authorization_url"],
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(oauth["grant"], "authorization-code-pkce");
}

#[test]
fn offline_discover_shows_ispdb_oauth2_blocks_and_nothing_for_password_providers() {
    let (text, json) = discover("someone@yandex.ru");
    assert!(
        text.contains("oauth2:   issuer oauth.yandex.com <- bundled ISPDB entry yandex.ru.xml"),
        "{text}"
    );
    assert_eq!(
        json["oauth2"]["scopes"]["smtp"],
        serde_json::json!(["mail:imap_full", "mail:smtp"])
    );
    let (text, json) = discover("frank@testground.example");
    assert!(!text.contains("oauth2:"), "{text}");
    assert_eq!(json["oauth2"], serde_json::Value::Null);
}
