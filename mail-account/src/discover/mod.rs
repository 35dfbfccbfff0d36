//! Automatic discovery: from an address (and any manual settings) to complete account settings,
//! with the source of every value and a list of every network request made.
//!
//! Steps, in order, stopping as soon as both the incoming and the outgoing server are known:
//! 1. the caller's extra provider descriptions ([`DiscoveryOptions::extra_providers`]), then the
//!    bundled provider database ([`crate::providers`]), offline;
//! 2. the provider's autoconfig file: `https://autoconfig.<domain>/mail/config-v1.1.xml`, then
//!    `https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml` (plain `http` only when
//!    [`DiscoveryOptions::allow_http`] is set, reported with a warning), then the online ISPDB
//!    when [`DiscoveryOptions::online_ispdb`] names one;
//! 3. DNS SRV (RFC 6186, RFC 8314): `_pop3s`, `_pop3`, then `_imaps`, `_imap` (as data: the
//!    incoming server when no POP3 is published, else [`DiscoveryReport::imap`]);
//!    `_submissions`, `_submission`. A target of `.` means "not offered";
//! 4. MX: the first exchange's parent domain and registrable domain (Public Suffix List), each
//!    looked up in the bundled database, then their autoconfig files (HTTPS only);
//! 5. guessing host names and probing them ([`probe`]), TLS first.
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
//!
//! The module is laid out by concept: [`report`] (what discovery returns), `rank` (which
//! candidate wins: never port 25, 465 before 587, POP3 before IMAP, no plaintext), `steps` (the
//! five steps), `merge` (manual settings over discovered ones), and the injectable network:
//! [`dns`], [`http`], [`probe`].

use std::time::Duration;

use crate::{
    autoconfig::ClientConfig,
    domain::{AddressError, EmailAddress},
    settings::ManualSettings,
};

pub mod dns;
pub mod http;
mod merge;
pub mod probe;
mod rank;
pub mod report;
mod steps;

use dns::{DnsResolver, HickoryDns};
use http::{HttpClient, HttpsClient, HttpsOptions};
use merge::finish;
use probe::ProbeOptions;
use rank::new_collector;
pub use report::{
    DiscoveryReport, IMAP_NOT_USED, ImapReport, Incomplete, NetworkRequest, ProviderInfo, Rejected,
    RequestKind, ServerReport, Source, Sourced, Step, StepRecord, Warning, WarningKind,
};
use steps::step_bundled;

/// The public ISPDB service (opt-in, see [`DiscoveryOptions::online_ispdb`]).
pub const ONLINE_ISPDB_URL: &str = "https://autoconfig.thunderbird.net/v1.1/";

/// What discovery may do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// Step 1's bundled database (the extra providers are always consulted).
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
    /// Provider descriptions consulted in step 1 before the bundled database, in order: a
    /// site's own servers, or loopback test and demo servers, which have no place in the
    /// bundled table. Each serves the domains its `domains` list (ASCII, any case); values
    /// from it carry [`Source::ExtraProvider`].
    pub extra_providers: Vec<ClientConfig>,
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
            extra_providers: Vec::new(),
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
        step_bundled(&mut c, &domain, &self.options);
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
}

/// Step 1 alone: the extra providers and the bundled database, no network at all (for offline
/// use and demos).
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
