//! What discovery returns: every value with its source, the steps that ran and every network
//! request made.

use std::fmt;

use crate::{
    autoconfig::ServerEntry,
    domain::EmailAddress,
    providers::{self, Hint, HintKind, Origin},
    settings::{
        Account, AuthMethod, Credential, IncomingServer, OutgoingServer, Protocol, Retention,
        Security, TlsOptions, Username,
    },
};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Source {
    /// The person's manual settings.
    Manual,
    /// The bundled provider database.
    BundledDb {
        /// The entry's id.
        provider: String,
        /// The entry's origin (ISPDB file, or curated source and date).
        origin: Origin,
    },
    /// A description the caller gave ([`super::DiscoveryOptions::extra_providers`]).
    ExtraProvider {
        /// Its `emailProvider id`.
        provider: String,
    },
    /// A provider autoconfig file.
    Autoconfig {
        /// The URL it was read from (after redirects).
        url: String,
        /// False when it came over plain HTTP.
        secure: bool,
    },
    /// The online ISPDB.
    OnlineIspdb {
        /// The URL.
        url: String,
    },
    /// A DNS SRV record.
    Srv {
        /// The record name, such as `_submissions._tcp.example.com`.
        name: String,
    },
    /// Found through the domain's MX record.
    Mx {
        /// The mail exchanger.
        exchange: String,
        /// The domain derived from it that matched.
        domain: String,
        /// Where the value came from for that domain.
        via: Box<Self>,
    },
    /// A successful probe of a guessed host.
    Probe {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// A default, for a value no source stated.
    Default {
        /// Why this default.
        reason: &'static str,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manual => f.write_str("manual setting"),
            Self::BundledDb { provider, origin } => match origin {
                Origin::Ispdb { file } => write!(
                    f,
                    "bundled ISPDB entry {file} (commit {})",
                    providers::ISPDB_COMMIT
                ),
                Origin::Curated { checked, .. } => {
                    write!(f, "bundled curated entry {provider} (checked {checked})")
                }
            },
            Self::ExtraProvider { provider } => write!(f, "extra provider entry {provider}"),
            Self::Autoconfig { url, secure } => {
                write!(
                    f,
                    "autoconfig {url}{}",
                    if *secure { "" } else { " (insecure HTTP)" }
                )
            }
            Self::OnlineIspdb { url } => write!(f, "online ISPDB {url}"),
            Self::Srv { name } => write!(f, "DNS SRV {name}"),
            Self::Mx {
                exchange,
                domain,
                via,
            } => write!(f, "MX {exchange} -> {domain}: {via}"),
            Self::Probe { host, port } => write!(f, "probe of {host}:{port}"),
            Self::Default { reason } => write!(f, "default ({reason})"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Its source.
    pub source: Source,
}

impl<T> Sourced<T> {
    pub(super) const fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// One server's settings, each with its source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerReport {
    /// Protocol.
    pub protocol: Sourced<Protocol>,
    /// Host.
    pub host: Sourced<String>,
    /// Port.
    pub port: Sourced<u16>,
    /// TLS mode.
    pub security: Sourced<Security>,
    /// Username template.
    pub username: Sourced<Username>,
    /// Authentication method.
    pub auth: Sourced<AuthMethod>,
}

/// A step of discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Step {
    /// Nothing to discover: the manual settings are complete.
    Manual,
    /// Step 1.
    BundledDb,
    /// Step 2.
    Autoconfig,
    /// Step 3.
    Srv,
    /// Step 4.
    Mx,
    /// Step 5.
    Probe,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Manual => "manual",
            Self::BundledDb => "bundled database",
            Self::Autoconfig => "autoconfig",
            Self::Srv => "DNS SRV",
            Self::Mx => "MX",
            Self::Probe => "probe",
        })
    }
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// The domain it worked on.
    pub domain: String,
    /// What it found, in words.
    pub outcome: String,
}

/// The kind of a network request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RequestKind {
    /// DNS SRV query.
    DnsSrv,
    /// DNS MX query.
    DnsMx,
    /// HTTPS GET.
    Https,
    /// Plain HTTP GET (opt-in only).
    Http,
    /// A probe: address lookup, TCP (and TLS) connection, greeting, CAPA/EHLO, QUIT.
    Probe,
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DnsSrv => "DNS SRV",
            Self::DnsMx => "DNS MX",
            Self::Https => "HTTPS",
            Self::Http => "HTTP",
            Self::Probe => "probe",
        })
    }
}

/// One network request discovery made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetworkRequest {
    /// Kind.
    pub kind: RequestKind,
    /// Name, URL or `host:port`.
    pub target: String,
    /// How it ended.
    pub outcome: String,
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WarningKind {
    /// A source said submission on port 25.
    Port25Submission,
    /// A source said no TLS.
    Plaintext,
    /// An autoconfig file came over plain HTTP.
    InsecureHttp,
    /// Only IMAP was found; POP3 is not offered by that source.
    NoPop3,
    /// A manual setting is unsafe (used as asked).
    UnsafeManualSetting,
}

/// Something the person should know about the result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Kind.
    pub kind: WarningKind,
    /// Message.
    pub message: String,
}

/// An entry a source offered that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// The entry.
    pub entry: ServerEntry,
    /// Its source.
    pub source: Source,
    /// Why it was not used.
    pub reason: String,
}

/// The provider discovery identified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderInfo {
    /// Id (bundled entry id, or the autoconfig `emailProvider id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where this identification came from.
    pub source: Source,
}

/// The marker every [`ImapReport`] carries.
pub const IMAP_NOT_USED: &str = "not used by this project's clients (they fetch over POP3); \
                                 for a mail client that reads over IMAP";

/// IMAP settings found by discovery: data for a person, not used by this project's clients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImapReport {
    /// The server's settings, each with its source.
    #[serde(flatten)]
    pub server: ServerReport,
    /// Always false: nothing in this project connects to it.
    pub used_by_this_project: bool,
    /// [`IMAP_NOT_USED`], in words.
    pub note: &'static str,
}

/// The result of discovery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveryReport {
    /// The address, with its domain in both forms.
    pub address: EmailAddress,
    /// The incoming server, if found or given.
    pub incoming: Option<ServerReport>,
    /// The provider's IMAP server, from the same sources, as data for a person who picks an
    /// IMAP client: this project's clients fetch over POP3 only and never use it.
    pub imap: Option<ImapReport>,
    /// The outgoing server, if found or given.
    pub outgoing: Option<ServerReport>,
    /// Display name (manual only).
    pub display_name: Option<String>,
    /// POP3 retention.
    pub retention: Sourced<Retention>,
    /// Credential (manual only; never serialised: it may hold a password).
    #[serde(skip)]
    pub credential: Option<Credential>,
    /// TLS options (manual only).
    pub tls: TlsOptions,
    /// The provider, if identified.
    pub provider: Option<ProviderInfo>,
    /// The provider's OAuth 2.0 authorization server (endpoints, scopes per protocol, preferred
    /// grant), when the bundled data knows it; see [`providers::oauth2`].
    pub oauth2: Option<Sourced<&'static providers::oauth2::OAuth2Provider>>,
    /// Advice for the person (app password, enable POP, OAuth2 only, ...).
    pub hints: Vec<Hint>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// Entries not used, with the reason (port 25, plaintext).
    pub rejected: Vec<Rejected>,
    /// Usable entries that lost to a preferred one.
    pub alternatives: Vec<(ServerEntry, Source)>,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// Every network request, in the order made.
    pub requests: Vec<NetworkRequest>,
}

/// Discovery could not produce complete settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings incomplete: {}", missing.join(", "))]
pub struct Incomplete {
    /// What is missing.
    pub missing: Vec<String>,
}

impl DiscoveryReport {
    /// True when both servers are known.
    pub const fn is_complete(&self) -> bool {
        self.incoming.is_some() && self.outgoing.is_some()
    }

    /// The warnings of one kind.
    pub fn warnings_of(&self, kind: WarningKind) -> impl Iterator<Item = &Warning> {
        self.warnings.iter().filter(move |w| w.kind == kind)
    }

    /// True when a hint of this kind applies.
    pub fn has_hint(&self, kind: HintKind) -> bool {
        self.hints.iter().any(|h| h.kind == kind)
    }

    /// Complete account settings, or what is missing.
    pub fn to_account(&self) -> Result<Account, Incomplete> {
        let mut missing = Vec::new();
        if self.incoming.is_none() {
            missing.push("incoming server".to_owned());
        }
        if self.outgoing.is_none() {
            missing.push("outgoing server".to_owned());
        }
        let (Some(i), Some(o)) = (&self.incoming, &self.outgoing) else {
            return Err(Incomplete { missing });
        };
        Ok(Account {
            address: self.address.to_string(),
            display_name: self.display_name.clone(),
            check_interval: None,
            incoming: IncomingServer {
                protocol: i.protocol.value,
                host: i.host.value.clone(),
                port: i.port.value,
                security: i.security.value,
                username: i.username.value.clone(),
                auth: i.auth.value,
                mechanism: None,
            },
            outgoing: OutgoingServer {
                host: o.host.value.clone(),
                port: o.port.value,
                security: o.security.value,
                username: o.username.value.clone(),
                auth: o.auth.value,
                mechanism: None,
            },
            credential: self.credential.clone(),
            retention: self.retention.value,
            delivery: None,
            tls: self.tls.clone(),
        })
    }
}
