//! The bundled provider database: step 1 of discovery, offline.
//!
//! Two tables:
//! - [`ispdb_generated`]: generated from a pinned snapshot of the Thunderbird ISPDB
//!   (MPL-2.0; commit in [`ISPDB_COMMIT`]) by `cargo run -p mail-account --bin gen-provider-db`
//!   (see [`render_ispdb_table`]). The XML is not parsed at run time.
//! - `curated`: our own entries where the ISPDB is stale or missing (Outlook.com, Gmail, Yahoo,
//!   iCloud, Japanese ISPs), each with a source and a checked date, and per-provider [`Hint`]s.
//!   A curated entry may replace an ISPDB entry (`replaces_ispdb`), taking over its domains.
//!
//! Only real providers are here. Test and demo servers (loopback) are given to discovery by
//! the caller instead: [`crate::discover::DiscoveryOptions::extra_providers`].

use std::borrow::Cow;
#[cfg(feature = "discover")]
use std::{fmt::Write as _, io, path::Path};

#[cfg(feature = "discover")]
use crate::autoconfig;
use crate::{
    autoconfig::ServerEntry,
    domain,
    settings::{AuthMethod, Protocol, Security, Username},
};

mod curated;
#[rustfmt::skip]
pub mod ispdb_generated;
#[rustfmt::skip]
pub mod ispdb_oauth2_generated;
pub mod oauth2;

pub use ispdb_generated::ISPDB_COMMIT;

/// A server of a bundled entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbServer {
    /// Protocol.
    pub protocol: Protocol,
    /// Host (may contain `{domain}`).
    pub host: &'static str,
    /// Port.
    pub port: u16,
    /// TLS mode as listed.
    pub security: Security,
    /// Username template.
    pub username: &'static str,
    /// Authentication methods in order of preference.
    pub auth: &'static [AuthMethod],
}

impl DbServer {
    /// The owned form used by discovery.
    pub fn to_entry(&self) -> ServerEntry {
        ServerEntry {
            protocol: self.protocol,
            host: self.host.to_owned(),
            port: self.port,
            security: self.security,
            username: Username::new(self.username),
            auth: self.auth.to_vec(),
        }
    }
}

/// Where a bundled entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// Generated from the ISPDB snapshot.
    Ispdb {
        /// The ISPDB file.
        file: &'static str,
    },
    /// Curated by this project.
    Curated {
        /// Where the values come from.
        source: &'static str,
        /// When they were last checked (ISO date).
        checked: &'static str,
    },
}

/// What kind of advice a [`Hint`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HintKind {
    /// The account password does not work for mail apps; an app password is needed.
    AppPassword,
    /// POP (or IMAP/POP) access must be switched on in the provider's web settings first.
    EnablePop,
    /// Only OAuth2 works; passwords are refused.
    OAuth2Only,
    /// The username cannot be derived from the address: the person must enter it.
    UsernameNotDerivable,
    /// The provider issues a separate password for mail apps (carrier mail).
    ProviderIssuedPassword,
    /// The provider offers no POP3; IMAP settings are given as data.
    NoPop3,
    /// The entry's server values are not verified against the provider's current pages.
    Unverified,
    /// Anything else worth knowing.
    Note,
}

/// Advice about a provider, shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hint {
    /// What kind of advice.
    pub kind: HintKind,
    /// The advice.
    pub text: Cow<'static, str>,
    /// A page to visit, if any.
    pub url: Option<Cow<'static, str>>,
}

impl Hint {
    /// A hint with text only.
    pub const fn new(kind: HintKind, text: &'static str) -> Self {
        Self {
            kind,
            text: Cow::Borrowed(text),
            url: None,
        }
    }
}

/// A bundled provider entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    /// Identifier (the ISPDB file name without `.xml`, or ours).
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Mail domains served (ASCII, lowercase).
    pub domains: &'static [&'static str],
    /// Domain suffixes: any subdomain matches (`so-net.ne.jp` matches `aa2.so-net.ne.jp`).
    pub domain_suffixes: &'static [&'static str],
    /// MX domains (registrable or parent) that identify this provider for customer domains.
    pub mx_domains: &'static [&'static str],
    /// Servers in order of preference. Empty for hint-only entries.
    pub servers: &'static [DbServer],
    /// POP3 `leaveMessagesOnServer`, if the source states it.
    pub pop3_leave_on_server: Option<bool>,
    /// Advice for this provider.
    pub hints: &'static [Hint],
    /// Where the entry comes from.
    pub origin: Origin,
    /// The ISPDB entry this curated one replaces (its domains resolve here).
    pub replaces_ispdb: Option<&'static str>,
}

impl Provider {
    fn serves(&self, domain: &str) -> bool {
        self.domains.contains(&domain)
            || self
                .domain_suffixes
                .iter()
                .any(|s| domain == *s || domain.strip_suffix(s).is_some_and(|p| p.ends_with('.')))
    }
}

/// Every bundled entry: curated first, then the ISPDB table.
pub fn all() -> impl Iterator<Item = &'static Provider> {
    curated::CURATED.iter().chain(ispdb_generated::ISPDB.iter())
}

fn replacement_for(ispdb_id: &str) -> Option<&'static Provider> {
    curated::CURATED
        .iter()
        .find(|p| p.replaces_ispdb == Some(ispdb_id))
}

/// The entry for a mail domain (ASCII, lowercase): curated first, then the ISPDB (an ISPDB entry
/// replaced by a curated one resolves to the curated one).
///
/// ```
/// let p = mail_account::providers::lookup("hotmail.co.jp").unwrap();
/// assert_eq!(p.id, "outlook.com");
/// ```
pub fn lookup(ascii_domain: &str) -> Option<&'static Provider> {
    let domain = ascii_domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(p) = curated::CURATED.iter().find(|p| p.serves(&domain)) {
        return Some(p);
    }
    let found = ispdb_generated::ISPDB.iter().find(|p| p.serves(&domain))?;
    Some(replacement_for(found.id).unwrap_or(found))
}

/// The entry for a mail exchanger host: its parent domain, then its registrable domain (by the
/// Public Suffix List), each matched against entry domains and MX domains. Returns the entry and
/// the domain that matched.
pub fn lookup_mx(mx_host: &str) -> Option<(&'static Provider, String)> {
    let mut tried = Vec::new();
    tried.extend(domain::parent_domain(mx_host));
    tried.extend(domain::registrable_domain(mx_host));
    tried.dedup();
    for d in tried {
        if let Some(p) = all().find(|p| p.mx_domains.contains(&d.as_str())) {
            return Some((p, d));
        }
        if let Some(p) = lookup(&d) {
            return Some((p, d));
        }
    }
    None
}

#[cfg(feature = "discover")]
fn rust_str(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(feature = "discover")]
fn security_path(s: Security) -> String {
    // The variant names are the Rust paths; `Debug` prints exactly them.
    format!("Security::{s:?}")
}

#[cfg(feature = "discover")]
fn auth_path(a: AuthMethod) -> &'static str {
    match a {
        AuthMethod::Automatic => "AuthMethod::Automatic",
        AuthMethod::PasswordCleartext => "AuthMethod::PasswordCleartext",
        AuthMethod::PasswordEncrypted => "AuthMethod::PasswordEncrypted",
        AuthMethod::OAuth2 => "AuthMethod::OAuth2",
        AuthMethod::None => "AuthMethod::None",
    }
}

#[cfg(feature = "discover")]
fn protocol_path(p: Protocol) -> &'static str {
    match p {
        Protocol::Pop3 => "Protocol::Pop3",
        Protocol::Imap => "Protocol::Imap",
        Protocol::Smtp => "Protocol::Smtp",
    }
}

#[cfg(feature = "discover")]
/// The generator of [`ispdb_generated`]: reads every `*.xml` in an ISPDB folder (and the commit
/// named in its `SOURCE.md`) and renders the Rust table. The `gen-provider-db` tool writes the
/// result; a test checks that the checked-in file matches it.
pub fn render_ispdb_table(dir: &Path) -> io::Result<String> {
    let source = std::fs::read_to_string(dir.join("SOURCE.md")).unwrap_or_default();
    let commit = source
        .split_whitespace()
        .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("unknown")
        .to_owned();
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    let mut out = String::new();
    out.push_str(
        "// @generated by `cargo run -p mail-account --bin gen-provider-db` -- do not edit.\n\
         //\n\
         // Derived from the Thunderbird ISPDB (repository thunderbird/autoconfig, folder ispdb/),\n",
    );
    let _ = writeln!(out, "// commit {commit}.");
    out.push_str(
        "// This Source Code Form is subject to the terms of the Mozilla Public License, v. 2.0.\n\
         // If a copy of the MPL was not distributed with this file, You can obtain one at\n\
         // https://mozilla.org/MPL/2.0/. The rest of this crate is MIT OR Apache-2.0.\n\
         //\n\
         // Kept: POP3, IMAP and SMTP servers, domains, POP3 leave-on-server. Entries that list\n\
         // plaintext or port 25 are kept as data; discovery reports and never uses them.\n\n\
         //! The bundled table generated from the ISPDB snapshot (MPL-2.0; see the file header).\n\n\
         use super::{DbServer, Origin, Provider};\n\
         use crate::settings::{AuthMethod, Protocol, Security};\n\n",
    );
    let _ = writeln!(
        out,
        "/// The ISPDB commit the table was generated from.\npub const ISPDB_COMMIT: &str = {};\n",
        rust_str(&commit)
    );
    out.push_str(
        "/// The generated entries, sorted by file name.\npub static ISPDB: &[Provider] = &[\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for path in files {
        let xml = std::fs::read_to_string(&path)?;
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_owned();
        let config = autoconfig::parse(&xml)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{file}: {e}")))?;
        let domains: Vec<String> = config
            .domains
            .iter()
            .filter(|d| seen.insert((*d).clone()))
            .cloned()
            .collect();
        let id = file.trim_end_matches(".xml");
        let name = config.display_name.as_deref().unwrap_or(id);
        let _ = writeln!(out, "    Provider {{");
        let _ = writeln!(out, "        id: {},", rust_str(id));
        let _ = writeln!(out, "        name: {},", rust_str(name));
        let _ = writeln!(
            out,
            "        domains: &[{}],",
            domains
                .iter()
                .map(|d| rust_str(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push_str(
            "        domain_suffixes: &[],\n        mx_domains: &[],\n        servers: &[\n",
        );
        for s in &config.servers {
            let _ = writeln!(
                out,
                "            DbServer {{ protocol: {}, host: {}, port: {}, security: {}, username: {}, auth: &[{}] }},",
                protocol_path(s.protocol),
                rust_str(&s.host),
                s.port,
                security_path(s.security),
                rust_str(s.username.template()),
                s.auth
                    .iter()
                    .map(|a| auth_path(*a))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.push_str("        ],\n");
        let _ = writeln!(
            out,
            "        pop3_leave_on_server: {:?},",
            config.pop3_leave_on_server
        );
        let _ = writeln!(
            out,
            "        hints: &[],\n        origin: Origin::Ispdb {{ file: {} }},\n        replaces_ispdb: None,\n    }},",
            rust_str(&file)
        );
    }
    out.push_str("];\n");
    Ok(out)
}
