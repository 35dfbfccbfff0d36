//! `mailctl login ADDRESS`, and the OAuth 2.0 part of `mailctl discover`'s report.

use mail_account::discover::DiscoveryReport;
use mail_account::settings::Protocol;
use serde_json::{Value, json};

/// The OAuth 2.0 lines of the text report: endpoints, scopes per protocol, preferred grant, and
/// where the data comes from.
pub(crate) fn print_oauth2_text(report: &DiscoveryReport) {
    let Some(oauth) = &report.oauth2 else {
        return;
    };
    let (entry, source) = (&oauth.value, &oauth.source);
    println!("oauth2:   issuer {} <- {source}", entry.issuer);
    println!("oauth2:   authorization {}", entry.authorization_url);
    println!("oauth2:   token {}", entry.token_url);
    if let Some(device) = entry.device_authorization_url {
        println!("oauth2:   device authorization {device}");
    }
    for protocol in [Protocol::Pop3, Protocol::Smtp] {
        println!(
            "oauth2:   {protocol} scopes {}",
            entry.scopes_for(protocol).join(" ")
        );
    }
    println!("oauth2:   grant {}", entry.preferred_grant.name());
}

/// The OAuth 2.0 part of the JSON report (`null` when unknown).
pub(crate) fn oauth2_json(report: &DiscoveryReport) -> Value {
    report.oauth2.as_ref().map_or(Value::Null, |oauth| {
        let entry = &oauth.value;
        json!({
            "issuer": entry.issuer,
            "authorization_url": entry.authorization_url,
            "token_url": entry.token_url,
            "device_authorization_url": entry.device_authorization_url,
            "scopes": {
                "pop3": entry.scopes_for(Protocol::Pop3),
                "smtp": entry.scopes_for(Protocol::Smtp),
            },
            "grant": entry.preferred_grant.name(),
            "source": oauth.source.to_string(),
        })
    })
}
