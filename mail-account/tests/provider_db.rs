//! Table tests of the bundled provider database (offline): big providers and Japanese ISPs give
//! the expected servers, no submission setting on port 25 (or without TLS) is ever chosen, and
//! the checked-in generated table matches the ISPDB snapshot.

use std::path::PathBuf;

use mail_account::{
    discover::{DiscoveryOptions, Source, WarningKind},
    discover_offline,
    providers::{self, HintKind, Origin},
    settings::{AuthMethod, ManualSettings, Protocol, Security, Username},
};

use Protocol::{Imap, Pop3};
use Security::{ImplicitTls as Tls, StartTls};

type Server = (Protocol, &'static str, u16, Security);

/// (address, provider id, incoming, outgoing (host, port, security), username, hints expected)
#[allow(clippy::type_complexity)]
const TABLE: &[(&str, &str, Server, (&str, u16, Security), &str, &[HintKind])] = &[
    (
        "taro@outlook.com",
        "outlook.com",
        (Pop3, "outlook.office365.com", 995, Tls),
        ("smtp-mail.outlook.com", 587, StartTls),
        "{address}",
        &[HintKind::OAuth2Only, HintKind::EnablePop],
    ),
    (
        "taro@hotmail.co.jp",
        "outlook.com",
        (Pop3, "outlook.office365.com", 995, Tls),
        ("smtp-mail.outlook.com", 587, StartTls),
        "{address}",
        &[HintKind::OAuth2Only],
    ),
    (
        "taro@live.jp",
        "outlook.com",
        (Pop3, "outlook.office365.com", 995, Tls),
        ("smtp-mail.outlook.com", 587, StartTls),
        "{address}",
        &[HintKind::OAuth2Only],
    ),
    (
        "taro@gmail.com",
        "gmail.com",
        (Pop3, "pop.gmail.com", 995, Tls),
        ("smtp.gmail.com", 465, Tls),
        "{address}",
        &[HintKind::AppPassword, HintKind::EnablePop],
    ),
    (
        "taro@googlemail.com",
        "gmail.com",
        (Pop3, "pop.gmail.com", 995, Tls),
        ("smtp.gmail.com", 465, Tls),
        "{address}",
        &[HintKind::AppPassword],
    ),
    (
        "taro@yahoo.com",
        "yahoo.com",
        (Pop3, "pop.mail.yahoo.com", 995, Tls),
        ("smtp.mail.yahoo.com", 465, Tls),
        "{address}",
        &[HintKind::AppPassword],
    ),
    (
        "taro@icloud.com",
        "icloud.com",
        (Imap, "imap.mail.me.com", 993, Tls),
        ("smtp.mail.me.com", 587, StartTls),
        "{local}",
        &[HintKind::NoPop3, HintKind::AppPassword],
    ),
    (
        "taro@ocn.ne.jp",
        "ocn.ne.jp",
        (Pop3, "pop.ocn.ne.jp", 995, Tls),
        ("smtp.ocn.ne.jp", 465, Tls),
        "{address}",
        &[HintKind::Note],
    ),
    (
        "taro@biglobe.ne.jp",
        "biglobe.ne.jp",
        (Pop3, "mail.biglobe.ne.jp", 995, Tls),
        ("mail.biglobe.ne.jp", 465, Tls),
        "{address}",
        &[],
    ),
    (
        "taro@nifty.com",
        "nifty.com",
        (Pop3, "pop.nifty.com", 995, Tls),
        ("smtp.nifty.com", 465, Tls),
        "{local}",
        &[HintKind::Unverified],
    ),
    (
        "taro@docomo.ne.jp",
        "docomo.ne.jp",
        (Imap, "imap.spmode.ne.jp", 993, Tls),
        ("smtp.spmode.ne.jp", 465, Tls),
        "{input:d ACCOUNT ID}",
        &[
            HintKind::UsernameNotDerivable,
            HintKind::ProviderIssuedPassword,
        ],
    ),
    (
        "taro@yahoo.co.jp",
        "yahoo.co.jp",
        (Pop3, "pop.mail.yahoo.co.jp", 995, Tls),
        ("smtp.mail.yahoo.co.jp", 465, Tls),
        "{local}",
        &[HintKind::EnablePop],
    ),
    (
        "taro@iijmio-mail.jp",
        "iijmio-mail.jp",
        (Pop3, "mbox.iijmio-mail.jp", 110, StartTls),
        ("mbox.iijmio-mail.jp", 587, StartTls),
        "{local}.{domain}",
        &[],
    ),
    (
        "taro@ybb.ne.jp",
        "ybb.ne.jp",
        (Pop3, "ybbpop.mail.yahoo.co.jp", 995, Tls),
        ("ybbsmtp.mail.yahoo.co.jp", 465, Tls),
        "{local}",
        &[],
    ),
    (
        "taro@mopera.net",
        "mopera.net",
        (Pop3, "mail.mopera.net", 995, Tls),
        ("mail.mopera.net", 465, Tls),
        "{local}",
        &[],
    ),
];

#[test]
fn big_providers_and_japanese_isps_give_expected_servers() {
    for (address, id, incoming, outgoing, username, hints) in TABLE {
        let r = discover_offline(
            address,
            &ManualSettings::default(),
            &DiscoveryOptions::default(),
        )
        .unwrap();
        assert!(r.requests.is_empty(), "{address}: offline");
        assert_eq!(
            r.provider.as_ref().map(|p| p.id.as_str()),
            Some(*id),
            "{address}"
        );
        let i = r
            .incoming
            .as_ref()
            .unwrap_or_else(|| panic!("{address}: no incoming"));
        let o = r
            .outgoing
            .as_ref()
            .unwrap_or_else(|| panic!("{address}: no outgoing"));
        assert_eq!(
            (
                i.protocol.value,
                i.host.value.as_str(),
                i.port.value,
                i.security.value
            ),
            *incoming,
            "{address} incoming"
        );
        assert_eq!(
            (o.host.value.as_str(), o.port.value, o.security.value),
            *outgoing,
            "{address} outgoing"
        );
        assert_eq!(i.username.value, Username::new(*username), "{address}");
        assert!(matches!(i.host.source, Source::BundledDb { .. }));
        for h in *hints {
            assert!(
                r.has_hint(*h),
                "{address}: hint {h:?} missing: {:?}",
                r.hints
            );
        }
    }
}

#[test]
fn outlook_is_oauth2_only_and_curated_with_source_and_date() {
    let r = discover_offline(
        "a@outlook.jp",
        &ManualSettings::default(),
        &DiscoveryOptions::default(),
    )
    .unwrap();
    assert_eq!(r.incoming.as_ref().unwrap().auth.value, AuthMethod::OAuth2);
    assert_eq!(r.outgoing.as_ref().unwrap().auth.value, AuthMethod::OAuth2);
    let Source::BundledDb {
        origin: Origin::Curated { source, checked },
        ..
    } = &r.incoming.as_ref().unwrap().host.source
    else {
        panic!("curated entry expected")
    };
    assert!(source.contains("Microsoft"));
    assert_eq!(checked.len(), 10, "ISO date");
}

#[test]
fn hint_only_entries_so_net_and_au() {
    for (address, id) in [
        ("taro@aa2.so-net.ne.jp", "so-net.ne.jp"),
        ("taro@ezweb.ne.jp", "au.com"),
        ("taro@au.com", "au.com"),
    ] {
        let r = discover_offline(
            address,
            &ManualSettings::default(),
            &DiscoveryOptions::default(),
        )
        .unwrap();
        assert_eq!(r.provider.as_ref().unwrap().id, id, "{address}");
        assert!(r.incoming.is_none() && r.outgoing.is_none(), "{address}");
        assert!(r.has_hint(HintKind::UsernameNotDerivable), "{address}");
    }
}

#[test]
fn never_port_25_or_plaintext_for_any_bundled_domain() {
    let mut checked = 0;
    let mut rejected_25 = Vec::new();
    for p in providers::all() {
        for domain in p.domains {
            let address = format!("user@{domain}");
            let r = discover_offline(
                &address,
                &ManualSettings::default(),
                &DiscoveryOptions::default(),
            )
            .unwrap();
            if let Some(o) = &r.outgoing {
                assert_ne!(o.port.value, 25, "{address}: submission on 25 chosen");
                assert!(
                    o.security.value.is_tls(),
                    "{address}: plaintext submission chosen"
                );
            }
            if let Some(i) = &r.incoming {
                assert!(
                    i.security.value.is_tls(),
                    "{address}: plaintext incoming chosen"
                );
            }
            if r.warnings_of(WarningKind::Port25Submission)
                .next()
                .is_some()
            {
                rejected_25.push(domain.to_string());
            }
            checked += 1;
        }
    }
    assert!(checked > 900, "only {checked} domains checked");
    // The nine Japanese regional ISPs (and a few others) that the ISPDB lists with SMTP on 25.
    for d in ["bb-niigata.jp", "iwafune.ne.jp", "parabox.or.jp"] {
        assert!(
            rejected_25.iter().any(|x| x == d),
            "{d} not reported: {rejected_25:?}"
        );
    }
}

#[test]
fn port_25_entry_is_reported_with_a_warning() {
    let r = discover_offline(
        "a@bb-niigata.jp",
        &ManualSettings::default(),
        &DiscoveryOptions::default(),
    )
    .unwrap();
    assert!(r.outgoing.is_none());
    assert!(r.incoming.is_none(), "plain POP3 110 is not used either");
    assert_eq!(r.warnings_of(WarningKind::Port25Submission).count(), 1);
    assert_eq!(r.rejected.len(), 2);
    assert!(
        r.rejected
            .iter()
            .any(|x| x.entry.port == 25 && x.reason.contains("25"))
    );
}

#[test]
fn mx_lookup_in_the_table() {
    let (p, d) = providers::lookup_mx("bgmgate1.biglobe.ne.jp").unwrap();
    assert_eq!((p.id, d.as_str()), ("biglobe.ne.jp", "biglobe.ne.jp"));
    let (p, _) = providers::lookup_mx("aspmx.l.google.com").unwrap();
    assert_eq!(p.id, "gmail.com");
    // Microsoft 365 customer MX: the parent domain matches before the registrable outlook.com.
    let (p, d) = providers::lookup_mx("contoso-com.mail.protection.outlook.com").unwrap();
    assert_eq!(
        (p.id, d.as_str()),
        ("office365.com", "mail.protection.outlook.com")
    );
    assert!(providers::lookup_mx("mx.unknown-provider.example.jp").is_none());
}

#[test]
fn generated_table_matches_the_ispdb_snapshot() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("MAIL_ACCOUNT_ISPDB_DIR")
        .map_or_else(|| manifest.join("data/ispdb"), PathBuf::from);
    assert!(
        dir.join("SOURCE.md").is_file(),
        "ISPDB snapshot not found at {} (set MAIL_ACCOUNT_ISPDB_DIR)",
        dir.display()
    );
    let rendered = providers::render_ispdb_table(&dir).unwrap();
    let checked_in =
        std::fs::read_to_string(manifest.join("src/providers/ispdb_generated.rs")).unwrap();
    assert!(
        rendered == checked_in,
        "src/providers/ispdb_generated.rs is stale: run `cargo run -p mail-account --bin \
         gen-provider-db -- mail-account/data/ispdb mail-account/src/providers/ispdb_generated.rs`"
    );
    assert!(checked_in.contains("Mozilla Public License, v. 2.0"));
    assert!(checked_in.contains(providers::ISPDB_COMMIT));
    assert_eq!(providers::ISPDB_COMMIT.len(), 40);
}
