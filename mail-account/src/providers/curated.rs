//! Our own entries: providers whose ISPDB entry is stale or missing, with a source and the date
//! the values were last checked, and advice ([`Hint`]s) per provider. Host names and ports are
//! facts; the wording is ours. Sources are summarised in `shared/notes/account-discovery.md`
//! (sections 1.4, 1.5 and 3).

use super::{DbServer, Hint, HintKind, Origin, Provider};
use crate::settings::{AuthMethod, Protocol, Security};

const CLEAR: &[AuthMethod] = &[AuthMethod::PasswordCleartext];
const OAUTH: &[AuthMethod] = &[AuthMethod::OAuth2];

const fn server(
    protocol: Protocol,
    host: &'static str,
    port: u16,
    security: Security,
    username: &'static str,
    auth: &'static [AuthMethod],
) -> DbServer {
    DbServer {
        protocol,
        host,
        port,
        security,
        username,
        auth,
    }
}

use AuthMethod as A;
use Protocol::{Imap, Pop3, Smtp};
use Security::{ImplicitTls as Tls, StartTls};

pub(super) static CURATED: &[Provider] = &[
    Provider {
        id: "outlook.com",
        name: "Outlook.com / Hotmail",
        domains: &["outlook.com", "hotmail.com", "live.com", "msn.com"],
        domain_suffixes: &[],
        mx_domains: &["olc.protection.outlook.com"],
        servers: &[
            server(Pop3, "outlook.office365.com", 995, Tls, "{address}", OAUTH),
            server(Imap, "outlook.office365.com", 993, Tls, "{address}", OAUTH),
            server(
                Smtp,
                "smtp-mail.outlook.com",
                587,
                StartTls,
                "{address}",
                OAUTH,
            ),
        ],
        pop3_leave_on_server: Some(true),
        hints: &[
            Hint::new(
                HintKind::OAuth2Only,
                "Outlook.com accepts only OAuth2 (Modern Auth) since 2024-09-16: account \
                 passwords and app passwords are refused. Sign in with OAuth2 (the device code \
                 grant; `mailctl login ADDRESS`).",
            ),
            Hint::new(
                HintKind::EnablePop,
                "POP access is off by default: in Outlook.com open Settings > Mail > \
                 Forwarding and IMAP and allow devices and apps to use POP.",
            ),
        ],
        origin: Origin::Curated {
            source: "Microsoft support 'POP, IMAP, and SMTP settings for Outlook.com'; ISPDB \
                     hotmail.com.xml at c6ad796 (same hosts, OAuth2 only)",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("hotmail.com"),
    },
    Provider {
        id: "gmail.com",
        name: "Gmail",
        domains: &["gmail.com", "googlemail.com", "google.com"],
        domain_suffixes: &[],
        mx_domains: &["google.com", "googlemail.com"],
        servers: &[
            server(
                Pop3,
                "pop.gmail.com",
                995,
                Tls,
                "{address}",
                &[A::PasswordCleartext, A::OAuth2],
            ),
            server(
                Imap,
                "imap.gmail.com",
                993,
                Tls,
                "{address}",
                &[A::PasswordCleartext, A::OAuth2],
            ),
            server(
                Smtp,
                "smtp.gmail.com",
                465,
                Tls,
                "{address}",
                &[A::PasswordCleartext, A::OAuth2],
            ),
        ],
        pop3_leave_on_server: Some(true),
        hints: &[
            Hint::new(
                HintKind::AppPassword,
                "Gmail refuses the account password for mail apps: turn on 2-Step Verification \
                 and create an app password (or use OAuth2).",
            ),
            Hint::new(
                HintKind::EnablePop,
                "Enable POP in Gmail: Settings > Forwarding and POP/IMAP > Enable POP.",
            ),
        ],
        origin: Origin::Curated {
            source: "ISPDB googlemail.com.xml at c6ad796; app-password requirement since the \
                     2022-05-30 removal of 'less secure apps'",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("googlemail.com"),
    },
    Provider {
        id: "yahoo.com",
        name: "Yahoo Mail",
        domains: &["yahoo.com", "ymail.com", "rocketmail.com"],
        domain_suffixes: &[],
        mx_domains: &["yahoodns.net"],
        servers: &[
            server(Pop3, "pop.mail.yahoo.com", 995, Tls, "{address}", CLEAR),
            server(Imap, "imap.mail.yahoo.com", 993, Tls, "{address}", CLEAR),
            server(Smtp, "smtp.mail.yahoo.com", 465, Tls, "{address}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[Hint::new(
            HintKind::AppPassword,
            "Yahoo Mail needs an app password for mail apps: Account Security > Generate app \
             password.",
        )],
        origin: Origin::Curated {
            source: "ISPDB yahoo.com.xml at c6ad796; Yahoo help on app passwords",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("yahoo.com"),
    },
    Provider {
        id: "icloud.com",
        name: "iCloud Mail",
        domains: &["icloud.com", "me.com", "mac.com"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(Imap, "imap.mail.me.com", 993, Tls, "{local}", CLEAR),
            server(Smtp, "smtp.mail.me.com", 587, StartTls, "{address}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::NoPop3,
                "iCloud Mail offers no POP3; only IMAP settings are known.",
            ),
            Hint::new(
                HintKind::AppPassword,
                "iCloud Mail needs an app-specific password (appleid.apple.com > Sign-In and \
                 Security).",
            ),
        ],
        origin: Origin::Curated {
            source: "ISPDB me.com.xml at c6ad796; Apple's mail server settings for iCloud",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("me.com"),
    },
    Provider {
        id: "ocn.ne.jp",
        name: "OCN",
        domains: &["ocn.ne.jp", "ocn.ad.jp"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(Pop3, "pop.ocn.ne.jp", 995, Tls, "{address}", CLEAR),
            server(Smtp, "smtp.ocn.ne.jp", 465, Tls, "{address}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[Hint::new(
            HintKind::Note,
            "Since October 2019 OCN accepts only its recommended SSL settings (POP3S 995, \
             SMTPS 465); older plain settings fail.",
        )],
        origin: Origin::Curated {
            source: "ISPDB ocn.ne.jp.xml at c6ad796; OCN announcement of 2010-11-25 (SSL) and \
                     the 2019 recommended-settings change",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("ocn.ne.jp"),
    },
    Provider {
        id: "biglobe.ne.jp",
        name: "BIGLOBE",
        domains: &["biglobe.ne.jp"],
        domain_suffixes: &[],
        mx_domains: &["biglobe.ne.jp"],
        servers: &[
            server(Pop3, "mail.biglobe.ne.jp", 995, Tls, "{address}", CLEAR),
            server(Smtp, "mail.biglobe.ne.jp", 465, Tls, "{address}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[Hint::new(
            HintKind::Note,
            "About 1400 customer domains use BIGLOBE's MX (bgmgate1.biglobe.ne.jp); they are \
             found through the MX step. TLS 1.1 was switched off on 2023-04-13.",
        )],
        origin: Origin::Curated {
            source: "ISPDB biglobe.ne.jp.xml at c6ad796; BIGLOBE FAQ 20845 (TLS 1.1 end)",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("biglobe.ne.jp"),
    },
    Provider {
        id: "nifty.com",
        name: "@nifty",
        domains: &["nifty.com"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(Pop3, "pop.nifty.com", 995, Tls, "{local}", CLEAR),
            server(Smtp, "smtp.nifty.com", 465, Tls, "{local}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::Unverified,
                "The ISPDB still lists plaintext POP 110 / SMTP 587 for @nifty \
                 (thunderbird/autoconfig#177). These TLS ports (995/465) are our upgrade of \
                 that entry and are not yet checked against @nifty's pages: verify by logging in.",
            ),
            Hint::new(
                HintKind::UsernameNotDerivable,
                "If the address was changed from the default, the username is the @nifty ID, \
                 not the local part.",
            ),
        ],
        origin: Origin::Curated {
            source: "ISPDB nifty.com.xml at c6ad796 (plaintext, outdated), upgraded to TLS ports",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("nifty.com"),
    },
    Provider {
        id: "so-net.ne.jp",
        name: "So-net",
        domains: &[],
        domain_suffixes: &["so-net.ne.jp"],
        mx_domains: &[],
        servers: &[],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::UsernameNotDerivable,
                "So-net addresses use per-member subdomains (taro@aa2.so-net.ne.jp); the login \
                 name is the mail account shown on the So-net member page.",
            ),
            Hint::new(
                HintKind::Unverified,
                "Server names for So-net are not in the bundled data; discovery continues with \
                 the provider's autoconfig, SRV, MX and probing.",
            ),
        ],
        origin: Origin::Curated {
            source: "nuro.jp mail pages (per-member subdomains); not in the ISPDB",
            checked: "2026-12-02",
        },
        replaces_ispdb: None,
    },
    Provider {
        id: "docomo.ne.jp",
        name: "docomo mail",
        domains: &["docomo.ne.jp"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(
                Imap,
                "imap.spmode.ne.jp",
                993,
                Tls,
                "{input:d ACCOUNT ID}",
                CLEAR,
            ),
            server(
                Smtp,
                "smtp.spmode.ne.jp",
                465,
                Tls,
                "{input:d ACCOUNT ID}",
                CLEAR,
            ),
        ],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::UsernameNotDerivable,
                "The username is your d ACCOUNT ID (dアカウント), not part of the address.",
            ),
            Hint::new(
                HintKind::ProviderIssuedPassword,
                "Use the IMAP-only password (IMAP専用パスワード) issued in the docomo mail \
                 settings, not the d ACCOUNT password.",
            ),
            Hint::new(
                HintKind::NoPop3,
                "docomo mail offers IMAP only; no POP3 settings are known.",
            ),
        ],
        origin: Origin::Curated {
            source: "NTT docomo 'docomo mail' security page; not in the ISPDB",
            checked: "2026-12-02",
        },
        replaces_ispdb: None,
    },
    Provider {
        id: "au.com",
        name: "au mail",
        domains: &["au.com", "ezweb.ne.jp"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::UsernameNotDerivable,
                "au publishes no fixed settings: sign in with your au ID on the au mail \
                 settings page to get your personal username, password and servers.",
            ),
            Hint::new(
                HintKind::NoPop3,
                "au mail is IMAP only for other mail apps.",
            ),
        ],
        origin: Origin::Curated {
            source: "au mail settings portal (set.mail.ezweb.ne.jp); not in the ISPDB",
            checked: "2026-12-02",
        },
        replaces_ispdb: None,
    },
    Provider {
        id: "yahoo.co.jp",
        name: "Yahoo! JAPAN",
        domains: &["yahoo.co.jp"],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(Pop3, "pop.mail.yahoo.co.jp", 995, Tls, "{local}", CLEAR),
            server(Smtp, "smtp.mail.yahoo.co.jp", 465, Tls, "{local}", CLEAR),
        ],
        pop3_leave_on_server: None,
        hints: &[
            Hint::new(
                HintKind::EnablePop,
                "Allow access from mail apps other than Yahoo! JAPAN's in Yahoo!メール's \
                 IMAP/POP/SMTP access settings (not verified in our sources).",
            ),
            Hint::new(
                HintKind::Note,
                "Accounts set to passwordless login (パスワード無効設定, SMS code) may not be \
                 able to log in from mail apps (not verified).",
            ),
        ],
        origin: Origin::Curated {
            source: "ISPDB yahoo.co.jp.xml at c6ad796",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("yahoo.co.jp"),
    },
    Provider {
        id: "iijmio-mail.jp",
        name: "IIJmio Safety Mail",
        domains: &[
            "iijmio-mail.jp",
            "miomio.jp",
            "miobox.jp",
            "e23.jp",
            "x-il.jp",
        ],
        domain_suffixes: &[],
        mx_domains: &[],
        servers: &[
            server(
                Pop3,
                "mbox.iijmio-mail.jp",
                110,
                StartTls,
                "{local}.{domain}",
                &[A::PasswordEncrypted],
            ),
            server(
                Smtp,
                "mbox.iijmio-mail.jp",
                587,
                StartTls,
                "{local}.{domain}",
                &[A::PasswordEncrypted],
            ),
        ],
        pop3_leave_on_server: None,
        hints: &[Hint::new(
            HintKind::Note,
            "The username is the local part, a dot, and the domain (taro.iijmio-mail.jp).",
        )],
        origin: Origin::Curated {
            source: "ISPDB iijmio-mail.jp.xml at c6ad796",
            checked: "2026-12-02",
        },
        replaces_ispdb: Some("iijmio-mail.jp"),
    },
];
