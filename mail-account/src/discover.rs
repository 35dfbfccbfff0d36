//! Automatic discovery: from an address (and any manual settings) to complete account settings,
//! with the source of every value and a list of every network request made.
//!
//! Steps, in order, stopping as soon as both the incoming and the outgoing server are known:
//! 1. the bundled provider database ([`crate::providers`]), offline;
//! 2. the provider's autoconfig file: `https://autoconfig.<domain>/mail/config-v1.1.xml`, then
//!    `https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml` (plain `http` only when
//!    [`DiscoveryOptions::allow_http`] is set, reported with a warning), then the online ISPDB
//!    when [`DiscoveryOptions::online_ispdb`] names one;
//! 3. DNS SRV (RFC 6186, RFC 8314): `_pop3s`, `_pop3`, then `_imaps`, `_imap` (as data: the
//!    incoming server when no POP3 is published, else [`DiscoveryReport::imap`]);
//!    `_submissions`, `_submission`. A target of `.` means "not offered";
//! 4. MX: the first exchange's parent domain and registrable domain (Public Suffix List), each
//!    looked up in the bundled database, then their autoconfig files (HTTPS only);
//! 5. guessing host names and probing them ([`crate::probe`]), TLS first.
//!
//! Rules applied to every source:
//! - submission is never on port 25: an entry that says 25 (or no TLS) is listed in
//!   [`DiscoveryReport::rejected`] with a warning and never chosen; among usable entries 465
//!   (implicit TLS) comes before 587 (STARTTLS); the hosts of rejected entries are probed first
//!   on the TLS ports, which upgrades stale plaintext entries when the server allows it;
//! - POP3 is preferred over IMAP, implicit TLS over STARTTLS; plaintext is never chosen;
//! - the domain is converted with UTS-46 before any request;
//! - manual settings always win, field by field; a partial manual setting is merged with what
//!   discovery found (a manual port without a security mode takes the port's usual mode).

use std::{fmt, fmt::Write as _, time::Duration};

use crate::{
    autoconfig::{self, ServerEntry},
    dns::{DnsResolver, HickoryDns, SrvRecord},
    domain::{self, AddressError, EmailAddress},
    http::{HttpClient, HttpsClient, HttpsOptions},
    probe::{self, ProbeFailure, ProbeOptions},
    providers::{self, Hint, HintKind, Origin, Provider},
    settings::{
        Account, AuthMethod, Credential, IncomingServer, ManualSettings, OutgoingServer,
        PartialServer, Protocol, Retention, Security, TlsOptions, Username,
    },
};

/// The public ISPDB service (opt-in, see [`DiscoveryOptions::online_ispdb`]).
pub const ONLINE_ISPDB_URL: &str = "https://autoconfig.thunderbird.net/v1.1/";

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
        /// The entry's origin (ISPDB file, curated source and date, or demo).
        origin: Origin,
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
                Origin::Demo => f.write_str("bundled demo entry (loopback)"),
            },
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
    fn new(value: T, source: Source) -> Self {
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
    /// The demo entry (loopback servers) was used.
    DemoEntry,
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

/// The host and ports the demo entry points at (defaults: the test ground on 127.0.0.1,
/// POP3S 11995 and submissions 10465, both implicit TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DemoEndpoints {
    /// Host.
    pub host: String,
    /// POP3 port.
    pub pop3_port: u16,
    /// POP3 TLS mode.
    pub pop3_security: Security,
    /// Submission port.
    pub submission_port: u16,
    /// Submission TLS mode.
    pub submission_security: Security,
}

impl Default for DemoEndpoints {
    fn default() -> Self {
        Self {
            host: providers::DEMO_HOST.into(),
            pop3_port: providers::DEMO_POP3_PORT,
            pop3_security: Security::ImplicitTls,
            submission_port: providers::DEMO_SUBMISSION_PORT,
            submission_security: Security::ImplicitTls,
        }
    }
}

/// What discovery may do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// Step 1.
    pub bundled_db: bool,
    /// Step 2 (the provider's own autoconfig file).
    pub autoconfig: bool,
    /// Also try plain `http://` autoconfig URLs (after HTTPS); results carry a warning.
    pub allow_http: bool,
    /// Base URL of an online ISPDB to ask in step 2 (off by default; [`ONLINE_ISPDB_URL`] is
    /// the public one). The domain is appended.
    pub online_ispdb: Option<String>,
    /// Append `?emailaddress=` to the provider's autoconfig URLs (off: the address stays
    /// private).
    pub send_address: bool,
    /// Step 3.
    pub srv: bool,
    /// Step 4.
    pub mx: bool,
    /// Step 5.
    pub probe: bool,
    /// How step 5 probes.
    pub probe_options: ProbeOptions,
    /// Deadline of each DNS query.
    pub dns_timeout: Duration,
    /// Prefer IMAP over POP3 for the incoming server (default POP3).
    pub prefer_imap: bool,
    /// Where the demo entry points.
    pub demo: DemoEndpoints,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            bundled_db: true,
            autoconfig: true,
            allow_http: false,
            online_ispdb: None,
            send_address: false,
            srv: true,
            mx: true,
            probe: true,
            probe_options: ProbeOptions::default(),
            dns_timeout: Duration::from_secs(5),
            prefer_imap: false,
            demo: DemoEndpoints::default(),
        }
    }
}

/// Discovery could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The address is unusable.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The default resolver or HTTP client could not be built.
    #[error("cannot set up discovery: {0}")]
    Setup(String),
}

/// Runs discovery with an injected DNS resolver and HTTP client.
#[derive(Debug)]
pub struct Discoverer<R, H> {
    dns: R,
    http: H,
    options: DiscoveryOptions,
}

impl Discoverer<HickoryDns, HttpsClient> {
    /// The system resolver and the default HTTPS client (web PKI roots).
    pub fn with_system_defaults(options: DiscoveryOptions) -> Result<Self, DiscoveryError> {
        let dns = HickoryDns::system().map_err(|e| DiscoveryError::Setup(e.to_string()))?;
        let http = HttpsClient::new(&HttpsOptions::default())
            .map_err(|e| DiscoveryError::Setup(e.to_string()))?;
        Ok(Self::new(dns, http, options))
    }
}

/// A candidate chosen for a role.
#[derive(Debug, Clone)]
struct Found {
    entry: ServerEntry,
    source: Source,
    /// False when the source does not state username and auth (SRV, probe).
    stated: bool,
}

struct Collector {
    address: EmailAddress,
    prefer_imap: bool,
    need_incoming: bool,
    need_outgoing: bool,
    incoming: Option<Found>,
    outgoing: Option<Found>,
    provider: Option<ProviderInfo>,
    pop3_leave: Option<(bool, Option<u32>, Source)>,
    hints: Vec<Hint>,
    warnings: Vec<Warning>,
    rejected: Vec<Rejected>,
    alternatives: Vec<(ServerEntry, Source)>,
    steps: Vec<StepRecord>,
    requests: Vec<NetworkRequest>,
}

impl Collector {
    fn done(&self) -> bool {
        (!self.need_incoming || self.incoming.is_some())
            && (!self.need_outgoing || self.outgoing.is_some())
    }

    fn step(&mut self, step: Step, domain: &str, outcome: impl Into<String>) {
        self.steps.push(StepRecord {
            step,
            domain: domain.to_owned(),
            outcome: outcome.into(),
        });
    }

    fn request(
        &mut self,
        kind: RequestKind,
        target: impl Into<String>,
        outcome: impl Into<String>,
    ) {
        self.requests.push(NetworkRequest {
            kind,
            target: target.into(),
            outcome: outcome.into(),
        });
    }

    fn warn(&mut self, kind: WarningKind, message: String) {
        let w = Warning { kind, message };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn add_hint(&mut self, hint: Hint) {
        if !self.hints.contains(&hint) {
            self.hints.push(hint);
        }
    }

    /// Offers the entries of one source; returns how many usable entries it had.
    fn offer(&mut self, entries: Vec<(ServerEntry, Source)>, stated: bool) -> usize {
        let domain = self.address.ascii_domain().to_owned();
        let mut incoming = Vec::new();
        let mut outgoing = Vec::new();
        for (mut entry, source) in entries {
            entry.host = entry.host_for(&domain);
            if entry.protocol == Protocol::Smtp {
                if entry.port == 25 {
                    self.warn(
                        WarningKind::Port25Submission,
                        format!(
                            "{source} says submission on {}:25; port 25 is for server relay \
                             and blocked on most networks (OP25B), so it is not used",
                            entry.host
                        ),
                    );
                    self.rejected.push(Rejected {
                        entry,
                        source,
                        reason: "submission on port 25".into(),
                    });
                    continue;
                }
                if entry.security == Security::None {
                    self.warn(
                        WarningKind::Plaintext,
                        format!(
                            "{source} says SMTP without TLS on {}:{}; not used",
                            entry.host, entry.port
                        ),
                    );
                    self.rejected.push(Rejected {
                        entry,
                        source,
                        reason: "no TLS".into(),
                    });
                    continue;
                }
                outgoing.push((entry, source));
            } else {
                if entry.security == Security::None {
                    self.warn(
                        WarningKind::Plaintext,
                        format!(
                            "{source} says {} without TLS on {}:{}; not used",
                            entry.protocol, entry.host, entry.port
                        ),
                    );
                    self.rejected.push(Rejected {
                        entry,
                        source,
                        reason: "no TLS".into(),
                    });
                    continue;
                }
                incoming.push((entry, source));
            }
        }
        let usable = incoming.len() + outgoing.len();
        let prefer_imap = self.prefer_imap;
        incoming.sort_by_key(|(e, _)| {
            (
                u8::from((e.protocol == Protocol::Imap) != prefer_imap),
                u8::from(e.security != Security::ImplicitTls),
            )
        });
        outgoing.sort_by_key(|(e, _)| u8::from(e.security != Security::ImplicitTls));
        let mut incoming = incoming.into_iter();
        if self.need_incoming
            && self.incoming.is_none()
            && let Some((entry, source)) = incoming.next()
        {
            if entry.protocol == Protocol::Imap && !prefer_imap {
                self.warn(
                    WarningKind::NoPop3,
                    format!("{source} lists no POP3 server; IMAP settings are given as data"),
                );
            }
            self.incoming = Some(Found {
                entry,
                source,
                stated,
            });
        }
        self.alternatives.extend(incoming);
        let mut outgoing = outgoing.into_iter();
        if self.need_outgoing
            && self.outgoing.is_none()
            && let Some((entry, source)) = outgoing.next()
        {
            self.outgoing = Some(Found {
                entry,
                source,
                stated,
            });
        }
        self.alternatives.extend(outgoing);
        usable
    }

    fn offer_provider(
        &mut self,
        provider: &'static Provider,
        source: &Source,
        demo: &DemoEndpoints,
    ) {
        if self.provider.is_none() {
            self.provider = Some(ProviderInfo {
                id: provider.id.to_owned(),
                name: provider.name.to_owned(),
                source: source.clone(),
            });
        }
        for h in provider.hints {
            self.add_hint(h.clone());
        }
        if let Some(leave) = provider.pop3_leave_on_server {
            self.pop3_leave
                .get_or_insert_with(|| (leave, None, source.clone()));
        }
        let mut entries: Vec<(ServerEntry, Source)> = provider
            .servers
            .iter()
            .map(|s| (s.to_entry(), source.clone()))
            .collect();
        if provider.is_demo() {
            self.warn(
                WarningKind::DemoEntry,
                format!(
                    "the demo entry was used: servers on {} (loopback), not a real provider",
                    demo.host
                ),
            );
            for (e, _) in &mut entries {
                e.host.clone_from(&demo.host);
                if e.protocol == Protocol::Smtp {
                    e.port = demo.submission_port;
                    e.security = demo.submission_security;
                } else {
                    e.port = demo.pop3_port;
                    e.security = demo.pop3_security;
                }
            }
        }
        self.offer(entries, true);
    }

    fn offer_autoconfig(&mut self, config: autoconfig::ClientConfig, source: &Source) -> usize {
        if self.provider.is_none() && !config.provider_id.is_empty() {
            self.provider = Some(ProviderInfo {
                id: config.provider_id.clone(),
                name: config
                    .display_name
                    .clone()
                    .unwrap_or_else(|| config.provider_id.clone()),
                source: source.clone(),
            });
        }
        if let Some((url, instruction)) = config.enable {
            self.add_hint(Hint {
                kind: HintKind::EnablePop,
                text: instruction
                    .unwrap_or_else(|| "Mail app access must be enabled at the provider".into())
                    .into(),
                url: Some(url.into()),
            });
        }
        if let Some(leave) = config.pop3_leave_on_server {
            self.pop3_leave
                .get_or_insert_with(|| (leave, config.pop3_days_on_server, source.clone()));
        }
        let entries = config
            .servers
            .into_iter()
            .map(|e| (e, source.clone()))
            .collect();
        self.offer(entries, true)
    }
}

fn srv_sorted(mut records: Vec<SrvRecord>) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    records
}

impl<R: DnsResolver, H: HttpClient> Discoverer<R, H> {
    /// Discovery with this resolver, HTTP client and options.
    pub const fn new(dns: R, http: H, options: DiscoveryOptions) -> Self {
        Self { dns, http, options }
    }

    /// The options.
    pub const fn options(&self) -> &DiscoveryOptions {
        &self.options
    }

    /// Discovers settings for `address`; `manual` values win over everything discovered.
    pub async fn discover(
        &self,
        address: &str,
        manual: &ManualSettings,
    ) -> Result<DiscoveryReport, DiscoveryError> {
        let address = EmailAddress::parse(address)?;
        let mut c = new_collector(address, manual, &self.options);
        let domain = c.address.ascii_domain().to_owned();
        if c.done() {
            c.step(
                Step::Manual,
                &domain,
                "manual settings are complete; nothing discovered",
            );
            return Ok(finish(c, manual));
        }
        if self.options.bundled_db {
            step_bundled(&mut c, &domain, &self.options);
        }
        if !c.done() && self.options.autoconfig {
            self.step_autoconfig(&mut c, &domain, None, true).await;
        }
        if !c.done() && self.options.srv {
            self.step_srv(&mut c, &domain).await;
        }
        if !c.done() && self.options.mx {
            self.step_mx(&mut c, &domain).await;
        }
        if !c.done() && self.options.probe {
            self.step_probe(&mut c, &domain).await;
        }
        Ok(finish(c, manual))
    }

    async fn get_config(
        &self,
        c: &mut Collector,
        url: &str,
    ) -> Option<(autoconfig::ClientConfig, String)> {
        let kind = if url.starts_with("https://") {
            RequestKind::Https
        } else {
            RequestKind::Http
        };
        match self.http.get(url).await {
            Ok(resp) if resp.status == 200 => {
                let text = String::from_utf8_lossy(&resp.body);
                match autoconfig::parse(&text) {
                    Ok(config) => {
                        let outcome = if resp.final_url == url {
                            "200, autoconfig parsed".to_owned()
                        } else {
                            format!("200 via {}, autoconfig parsed", resp.final_url)
                        };
                        c.request(kind, url, outcome);
                        Some((config, resp.final_url))
                    }
                    Err(e) => {
                        c.request(kind, url, format!("200, not usable: {e}"));
                        None
                    }
                }
            }
            Ok(resp) => {
                c.request(kind, url, format!("HTTP {}", resp.status));
                None
            }
            Err(e) => {
                c.request(kind, url, e.to_string());
                None
            }
        }
    }

    /// Step 2 for `domain`. `mx` carries the MX exchange when run from step 4; `full` adds the
    /// `.well-known` URL and the opt-in HTTP URLs (step 4 asks `autoconfig.<domain>` over HTTPS
    /// only, as Thunderbird does).
    async fn step_autoconfig(
        &self,
        c: &mut Collector,
        domain: &str,
        mx: Option<&str>,
        full: bool,
    ) -> bool {
        let query = if self.options.send_address {
            format!("?emailaddress={}", url_encode(&c.address.to_string()))
        } else {
            String::new()
        };
        let mut urls: Vec<(String, bool)> = vec![(
            format!("https://autoconfig.{domain}/mail/config-v1.1.xml{query}"),
            false,
        )];
        if full {
            urls.push((
                format!("https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml{query}"),
                false,
            ));
            if self.options.allow_http {
                urls.push((
                    format!("http://autoconfig.{domain}/mail/config-v1.1.xml{query}"),
                    false,
                ));
                urls.push((
                    format!("http://{domain}/.well-known/autoconfig/mail/config-v1.1.xml{query}"),
                    false,
                ));
            }
        }
        if let Some(base) = &self.options.online_ispdb {
            urls.push((format!("{base}{domain}"), true));
        }
        let step = if mx.is_some() {
            Step::Mx
        } else {
            Step::Autoconfig
        };
        for (url, is_ispdb) in urls {
            let Some((config, final_url)) = self.get_config(c, &url).await else {
                continue;
            };
            let secure = final_url.starts_with("https://");
            let mut source = if is_ispdb {
                Source::OnlineIspdb {
                    url: final_url.clone(),
                }
            } else {
                Source::Autoconfig {
                    url: final_url.clone(),
                    secure,
                }
            };
            if !secure {
                c.warn(
                    WarningKind::InsecureHttp,
                    format!(
                        "{final_url} came over plain HTTP and could have been altered on the way"
                    ),
                );
            }
            if let Some(exchange) = mx {
                source = Source::Mx {
                    exchange: exchange.to_owned(),
                    domain: domain.to_owned(),
                    via: Box::new(source),
                };
            }
            let usable = c.offer_autoconfig(config, &source);
            c.step(step, domain, format!("{source}: {usable} usable server(s)"));
            return true;
        }
        c.step(step, domain, "no autoconfig file found");
        false
    }

    async fn lookup_srv(&self, c: &mut Collector, name: &str) -> Vec<SrvRecord> {
        let result = tokio::time::timeout(self.options.dns_timeout, self.dns.srv(name)).await;
        match result {
            Ok(Ok(records)) => {
                let shown: Vec<String> = records
                    .iter()
                    .map(|r| format!("{} {} {} {}", r.priority, r.weight, r.port, r.target))
                    .collect();
                c.request(RequestKind::DnsSrv, name, shown.join("; "));
                srv_sorted(records)
            }
            Ok(Err(e)) => {
                c.request(RequestKind::DnsSrv, name, e.to_string());
                Vec::new()
            }
            Err(_) => {
                c.request(RequestKind::DnsSrv, name, "timed out");
                Vec::new()
            }
        }
    }

    async fn step_srv(&self, c: &mut Collector, domain: &str) {
        let mut labels: Vec<(&str, Protocol, Security)> = Vec::new();
        if c.need_incoming && c.incoming.is_none() {
            labels.extend([
                ("_pop3s", Protocol::Pop3, Security::ImplicitTls),
                ("_pop3", Protocol::Pop3, Security::Starttls),
                ("_imaps", Protocol::Imap, Security::ImplicitTls),
                ("_imap", Protocol::Imap, Security::Starttls),
            ]);
            if self.options.prefer_imap {
                labels.rotate_left(2);
            }
        }
        if c.need_outgoing && c.outgoing.is_none() {
            labels.extend([
                ("_submissions", Protocol::Smtp, Security::ImplicitTls),
                ("_submission", Protocol::Smtp, Security::Starttls),
            ]);
        }
        let mut summary = Vec::new();
        for (label, protocol, security) in labels {
            // IMAP is looked up even when POP3 was found: it is reported as data
            // (`DiscoveryReport::imap`) for a person choosing an IMAP client.
            let name = format!("{label}._tcp.{domain}");
            let records = self.lookup_srv(c, &name).await;
            if records.len() == 1 && records[0].is_not_offered() {
                summary.push(format!("{name}: service not offered (target \".\")"));
                continue;
            }
            let entries: Vec<(ServerEntry, Source)> = records
                .into_iter()
                .filter(|r| !r.is_not_offered())
                .map(|r| {
                    (
                        ServerEntry {
                            protocol,
                            host: r.target,
                            port: r.port,
                            security,
                            username: Username::address(),
                            auth: Vec::new(),
                        },
                        Source::Srv { name: name.clone() },
                    )
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let n = c.offer(entries, false);
            summary.push(format!("{name}: {n} usable"));
        }
        let outcome = if summary.is_empty() {
            "no SRV records".to_owned()
        } else {
            summary.join("; ")
        };
        c.step(Step::Srv, domain, outcome);
    }

    async fn step_mx(&self, c: &mut Collector, domain: &str) {
        let result = tokio::time::timeout(self.options.dns_timeout, self.dns.mx(domain)).await;
        let mut records = match result {
            Ok(Ok(r)) => {
                let shown: Vec<String> = r
                    .iter()
                    .map(|m| format!("{} {}", m.preference, m.exchange))
                    .collect();
                c.request(RequestKind::DnsMx, domain, shown.join("; "));
                r
            }
            Ok(Err(e)) => {
                c.request(RequestKind::DnsMx, domain, e.to_string());
                Vec::new()
            }
            Err(_) => {
                c.request(RequestKind::DnsMx, domain, "timed out");
                Vec::new()
            }
        };
        records.sort_by_key(|m| m.preference);
        let Some(exchange) = records
            .into_iter()
            .map(|m| m.exchange)
            .find(|e| e != "." && !e.is_empty())
        else {
            c.step(Step::Mx, domain, "no MX record");
            return;
        };
        if self.options.bundled_db
            && let Some((provider, matched)) = providers::lookup_mx(&exchange)
        {
            let source = Source::Mx {
                exchange: exchange.clone(),
                domain: matched.clone(),
                via: Box::new(Source::BundledDb {
                    provider: provider.id.to_owned(),
                    origin: provider.origin,
                }),
            };
            c.offer_provider(provider, &source, &self.options.demo);
            c.step(
                Step::Mx,
                &matched,
                format!("MX {exchange}: bundled entry {}", provider.id),
            );
            if c.done() {
                return;
            }
        }
        let mut candidates = Vec::new();
        candidates.extend(domain::parent_domain(&exchange));
        candidates.extend(domain::registrable_domain(&exchange));
        candidates.dedup();
        candidates.retain(|d| d != domain);
        if candidates.is_empty() {
            c.step(
                Step::Mx,
                domain,
                format!("MX {exchange} belongs to the mail domain itself; nothing new"),
            );
            return;
        }
        for d in candidates {
            if c.done() || !self.options.autoconfig {
                break;
            }
            self.step_autoconfig(c, &d, Some(&exchange), false).await;
        }
    }

    async fn step_probe(&self, c: &mut Collector, domain: &str) {
        let opts = &self.options.probe_options;
        // Every probe builds its own connector from the same roots: an unusable CA file is
        // reported once here instead of once per probe.
        if let Err(e) = mail_common::transport::tls_connector(&opts.trust) {
            c.step(Step::Probe, domain, format!("cannot set up TLS: {e}"));
            return;
        }
        let rejected_hosts = |protocols: &[Protocol]| -> Vec<String> {
            let mut hosts: Vec<String> = c
                .rejected
                .iter()
                .filter(|r| protocols.contains(&r.entry.protocol))
                .map(|r| r.entry.host.clone())
                .collect();
            hosts.dedup();
            hosts
        };
        let mut in_hosts = rejected_hosts(&[Protocol::Pop3, Protocol::Imap]);
        in_hosts.extend(opts.incoming_hosts.iter().cloned());
        let mut out_hosts = rejected_hosts(&[Protocol::Smtp]);
        out_hosts.extend(opts.outgoing_hosts.iter().cloned());
        let in_targets = if c.need_incoming && c.incoming.is_none() {
            probe::targets(Protocol::Pop3, &in_hosts, &opts.pop3_ports, domain)
        } else {
            Vec::new()
        };
        let out_targets = if c.need_outgoing && c.outgoing.is_none() {
            probe::targets(Protocol::Smtp, &out_hosts, &opts.submission_ports, domain)
        } else {
            Vec::new()
        };
        let ((best_in, tried_in), (best_out, tried_out)) = tokio::join!(
            probe::probe_first(&self.dns, in_targets, opts),
            probe::probe_first(&self.dns, out_targets, opts),
        );
        for attempt in tried_in.iter().chain(&tried_out) {
            let t = &attempt.target;
            let outcome = match &attempt.outcome {
                Ok(s) => format!(
                    "{} answered at {} ({}), {}; auth {}",
                    t.protocol,
                    s.address,
                    t.security,
                    s.tls.as_deref().unwrap_or("no TLS"),
                    s.auth_mechanisms.join(" ")
                ),
                Err(e @ ProbeFailure::Cancelled) => e.to_string(),
                Err(e) => format!("{} ({}): {e}", t.protocol, t.security),
            };
            c.request(
                RequestKind::Probe,
                format!("{}:{}", t.host, t.port),
                outcome,
            );
        }
        let mut found = Vec::new();
        for (target, _) in best_in.into_iter().chain(best_out) {
            let source = Source::Probe {
                host: target.host.clone(),
                port: target.port,
            };
            found.push((
                ServerEntry {
                    protocol: target.protocol,
                    host: target.host,
                    port: target.port,
                    security: target.security,
                    username: Username::address(),
                    auth: Vec::new(),
                },
                source,
            ));
        }
        let n = c.offer(found, false);
        c.step(
            Step::Probe,
            domain,
            format!(
                "{} probe(s), {n} server(s) found",
                tried_in.len() + tried_out.len()
            ),
        );
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn new_collector(
    address: EmailAddress,
    manual: &ManualSettings,
    options: &DiscoveryOptions,
) -> Collector {
    Collector {
        address,
        prefer_imap: options.prefer_imap || manual.incoming.protocol == Some(Protocol::Imap),
        need_incoming: !manual.incoming.is_complete(),
        need_outgoing: !manual.outgoing.is_complete(),
        incoming: None,
        outgoing: None,
        provider: None,
        pop3_leave: None,
        hints: Vec::new(),
        warnings: Vec::new(),
        rejected: Vec::new(),
        alternatives: Vec::new(),
        steps: Vec::new(),
        requests: Vec::new(),
    }
}

fn step_bundled(c: &mut Collector, domain: &str, options: &DiscoveryOptions) {
    match providers::lookup(domain) {
        Some(p) => {
            let source = Source::BundledDb {
                provider: p.id.to_owned(),
                origin: p.origin,
            };
            c.offer_provider(p, &source, &options.demo);
            let outcome = if p.servers.is_empty() {
                format!("entry {} (hints only, no servers)", p.id)
            } else {
                format!("entry {}", p.id)
            };
            c.step(Step::BundledDb, domain, outcome);
        }
        None => c.step(Step::BundledDb, domain, "no entry"),
    }
}

/// Step 1 alone: the bundled database, no network at all (for offline use and demos).
pub fn discover_offline(
    address: &str,
    manual: &ManualSettings,
    options: &DiscoveryOptions,
) -> Result<DiscoveryReport, DiscoveryError> {
    let address = EmailAddress::parse(address)?;
    let mut c = new_collector(address, manual, options);
    let domain = c.address.ascii_domain().to_owned();
    if !c.done() {
        step_bundled(&mut c, &domain, options);
    }
    Ok(finish(c, manual))
}

const DEFAULT_USERNAME: Source = Source::Default {
    reason: "the source does not state a username; the full address is the usual login",
};

fn merge(
    c: &mut Collector,
    manual: &PartialServer,
    found: Option<&Found>,
    role: Protocol,
) -> Option<ServerReport> {
    if found.is_none() && manual.host.is_none() {
        return None;
    }
    let protocol = match (role, manual.protocol, &found) {
        (Protocol::Smtp, _, _) => {
            Sourced::new(Protocol::Smtp, Source::Default { reason: "outgoing" })
        }
        (_, Some(p), _) => Sourced::new(p, Source::Manual),
        (_, None, Some(f)) => Sourced::new(f.entry.protocol, f.source.clone()),
        (_, None, None) => Sourced::new(
            Protocol::Pop3,
            Source::Default {
                reason: "POP3 is the incoming protocol this crate fetches with",
            },
        ),
    };
    let host = match (&manual.host, &found) {
        (Some(h), _) => Sourced::new(h.clone(), Source::Manual),
        (None, Some(f)) => Sourced::new(f.entry.host.clone(), f.source.clone()),
        (None, None) => unreachable!("checked above"),
    };
    let security = match (manual.security, manual.port, &found) {
        (Some(s), _, _) => Sourced::new(s, Source::Manual),
        (None, Some(port), f) if f.as_ref().is_none_or(|f| f.entry.port != port) => Sourced::new(
            Security::for_port(protocol.value, port).unwrap_or(Security::ImplicitTls),
            Source::Default {
                reason: "the usual TLS mode of the manual port",
            },
        ),
        (None, _, Some(f)) => Sourced::new(f.entry.security, f.source.clone()),
        (None, _, None) => Sourced::new(
            Security::ImplicitTls,
            Source::Default {
                reason: "implicit TLS is preferred (RFC 8314)",
            },
        ),
    };
    let port = match (manual.port, &found) {
        (Some(p), _) => Sourced::new(p, Source::Manual),
        (None, Some(f)) if f.entry.security == security.value => {
            Sourced::new(f.entry.port, f.source.clone())
        }
        _ => Sourced::new(
            protocol.value.default_port(security.value),
            Source::Default {
                reason: "the standard port of the protocol and TLS mode",
            },
        ),
    };
    let username = match (&manual.username, &found) {
        (Some(u), _) => Sourced::new(u.clone(), Source::Manual),
        (None, Some(f)) if f.stated => Sourced::new(f.entry.username.clone(), f.source.clone()),
        _ => Sourced::new(Username::address(), DEFAULT_USERNAME),
    };
    let auth = match (manual.auth, &found) {
        (Some(a), _) => Sourced::new(a, Source::Manual),
        (None, Some(f)) if f.stated && !f.entry.auth.is_empty() => {
            Sourced::new(f.entry.preferred_auth(), f.source.clone())
        }
        _ => Sourced::new(
            AuthMethod::Automatic,
            Source::Default {
                reason: "the strongest password mechanism the server offers",
            },
        ),
    };
    if role == Protocol::Smtp && port.value == 25 && port.source == Source::Manual {
        c.warn(
            WarningKind::UnsafeManualSetting,
            "manual outgoing port 25: blocked on most networks (OP25B); 465 or 587 are the \
             submission ports"
                .into(),
        );
    }
    if security.value == Security::None && security.source == Source::Manual {
        c.warn(
            WarningKind::UnsafeManualSetting,
            format!("manual {role} setting without TLS: the password travels unencrypted"),
        );
    }
    Some(ServerReport {
        protocol,
        host,
        port,
        security,
        username,
        auth,
    })
}

/// The first IMAP server of the sources consulted (the chosen incoming server when it is
/// IMAP, else the IMAP alternatives, implicit TLS first), as a report.
fn imap_report(c: &mut Collector, incoming: Option<&Found>) -> Option<ImapReport> {
    let found = if let Some(found) = incoming.filter(|f| f.entry.protocol == Protocol::Imap) {
        found.clone()
    } else {
        let (entry, source) = c
            .alternatives
            .iter()
            .filter(|(e, _)| e.protocol == Protocol::Imap)
            .min_by_key(|(e, _)| u8::from(e.security != Security::ImplicitTls))?
            .clone();
        let stated = !matches!(source, Source::Srv { .. } | Source::Probe { .. });
        Found {
            entry,
            source,
            stated,
        }
    };
    let server = merge(c, &PartialServer::default(), Some(&found), Protocol::Imap)?;
    Some(ImapReport {
        server,
        used_by_this_project: false,
        note: IMAP_NOT_USED,
    })
}

/// The OAuth 2.0 data for the identified provider, sourced like the provider: a bundled entry
/// (found directly or through the MX) gives its curated or ISPDB `<oAuth2>` data.
fn oauth2_of(info: &ProviderInfo) -> Option<Sourced<&'static providers::oauth2::OAuth2Provider>> {
    fn bundled(source: &Source) -> Option<Source> {
        match source {
            Source::BundledDb { provider, .. } => {
                let entry = providers::oauth2::for_provider_id(provider)?;
                Some(Source::BundledDb {
                    provider: provider.clone(),
                    origin: entry.origin,
                })
            }
            Source::Mx {
                exchange,
                domain,
                via,
            } => Some(Source::Mx {
                exchange: exchange.clone(),
                domain: domain.clone(),
                via: Box::new(bundled(via)?),
            }),
            _ => None,
        }
    }
    let source = bundled(&info.source)?;
    let entry = providers::oauth2::for_provider_id(&info.id)?;
    Some(Sourced::new(entry, source))
}

fn finish(mut c: Collector, manual: &ManualSettings) -> DiscoveryReport {
    let found_in = c.incoming.take();
    let found_out = c.outgoing.take();
    let imap = imap_report(&mut c, found_in.as_ref());
    let incoming = merge(&mut c, &manual.incoming, found_in.as_ref(), Protocol::Pop3);
    let outgoing = merge(&mut c, &manual.outgoing, found_out.as_ref(), Protocol::Smtp);
    let retention = match (manual.retention, &c.pop3_leave) {
        (Some(r), _) => Sourced::new(r, Source::Manual),
        (None, Some((true, Some(days), source))) => {
            Sourced::new(Retention::DeleteAfterDays(*days), source.clone())
        }
        (None, Some((true, None, source))) => Sourced::new(Retention::KeepOnServer, source.clone()),
        _ => Sourced::new(
            Retention::KeepOnServer,
            Source::Default {
                reason: "keeping a copy on the server is the safe choice",
            },
        ),
    };
    DiscoveryReport {
        address: c.address,
        incoming,
        imap,
        outgoing,
        display_name: manual.display_name.clone(),
        retention,
        credential: manual.credential.clone(),
        tls: manual.tls.clone().unwrap_or_default(),
        oauth2: c.provider.as_ref().and_then(oauth2_of),
        provider: c.provider,
        hints: c.hints,
        warnings: c.warnings,
        rejected: c.rejected,
        alternatives: c.alternatives,
        steps: c.steps,
        requests: c.requests,
    }
}
