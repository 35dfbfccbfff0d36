//! Provider OAuth 2.0 data: the generated ISPDB table is current, curated entries cover the
//! Microsoft consumer domains and Gmail, scopes split per protocol.

use std::path::{Path, PathBuf};

use mail_account::providers::{self, oauth2};
use mail_account::settings::Protocol;

fn ispdb_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("MAIL_ACCOUNT_ISPDB_DIR")
        .map_or_else(|| manifest.join("data/ispdb"), PathBuf::from)
}

#[test]
fn generated_oauth2_table_matches_the_ispdb_snapshot() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rendered = oauth2::render_ispdb_oauth2_table(&ispdb_dir()).unwrap();
    let checked_in =
        std::fs::read_to_string(manifest.join("src/providers/ispdb_oauth2_generated.rs")).unwrap();
    assert!(
        rendered == checked_in,
        "src/providers/ispdb_oauth2_generated.rs is stale: run `cargo run -p mail-account --bin \
         gen-provider-db -- mail-account/data/ispdb mail-account/src/providers/ispdb_generated.rs`"
    );
    // The eight ISPDB files with an <oAuth2> block at c6ad796.
    let ids: Vec<&str> = providers::ispdb_oauth2_generated::ISPDB_OAUTH2
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids,
        [
            "aol.com",
            "comcast.net",
            "googlemail.com",
            "mail.ru",
            "office365.com",
            "umich.edu",
            "yahoo.com",
            "yandex.ru"
        ]
    );
}

#[test]
fn microsoft_consumer_domains_get_the_curated_device_grant_entry() {
    for domain in [
        "hotmail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "outlook.jp",
        "hotmail.co.jp",
        "live.jp",
        "windowslive.com",
        "hotmail.co.uk",
    ] {
        let provider = providers::lookup(domain).unwrap_or_else(|| panic!("{domain}"));
        let entry = oauth2::for_provider(provider).unwrap_or_else(|| panic!("{domain}"));
        assert_eq!(entry.id, "microsoft", "{domain}");
        assert_eq!(entry.preferred_grant, oauth2::Grant::DeviceCode);
        assert!(entry.device_authorization_url.is_some());
        assert_eq!(
            entry.scopes_for_all(Protocol::Pop3),
            [
                "https://outlook.office.com/POP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access"
            ]
        );
        assert!(matches!(entry.origin, providers::Origin::Curated { .. }));
    }
}

#[test]
fn gmail_gets_pkce_with_the_mail_scope_only() {
    for domain in ["gmail.com", "googlemail.com"] {
        let entry = oauth2::for_provider(providers::lookup(domain).unwrap()).unwrap();
        assert_eq!(entry.id, "google");
        assert_eq!(entry.preferred_grant, oauth2::Grant::AuthorizationCodePkce);
        assert_eq!(entry.device_authorization_url, None);
        assert_eq!(
            entry.scopes_for(Protocol::Smtp),
            ["https://mail.google.com/"]
        );
        assert!(
            entry
                .extra_authorization_params
                .contains(&("access_type", "offline"))
        );
    }
    // office365.com keeps its ISPDB block, split per protocol.
    let entry = oauth2::for_provider_id("office365.com").unwrap();
    assert_eq!(
        entry.scopes_for(Protocol::Smtp),
        ["https://outlook.office365.com/SMTP.Send", "offline_access"]
    );
    assert!(matches!(
        entry.origin,
        providers::Origin::Ispdb {
            file: "office365.com.xml"
        }
    ));
    // A password-only provider has none.
    assert!(oauth2::for_provider(providers::lookup("ocn.ne.jp").unwrap()).is_none());
}
