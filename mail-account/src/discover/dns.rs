//! The DNS resolver discovery uses: a trait, so tests and applications can inject their own,
//! and [`HickoryDns`], the default built on `hickory-resolver`.
//!
//! Names passed in are ASCII (already converted with UTS-46) and are queried as fully qualified
//! names, so no search domain is ever appended.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
};

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is preferred.
    pub priority: u16,
    /// Higher is chosen more often among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host without the trailing dot; `"."` (RFC 6186: service not offered) is kept as
    /// `"."`.
    pub target: String,
}

impl SrvRecord {
    /// True for the RFC 6186 "service is not offered" record (target `"."`).
    pub fn is_not_offered(&self) -> bool {
        self.target == "." || self.target.is_empty()
    }
}

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is preferred.
    pub preference: u16,
    /// Exchange host without the trailing dot.
    pub exchange: String,
}

/// A lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name exists with no record of this type, or does not exist.
    #[error("no {rtype} record for {name}")]
    NoRecords {
        /// Record type asked for.
        rtype: &'static str,
        /// Name asked for.
        name: String,
    },
    /// The resolver failed (timeout, server failure, network).
    #[error("{rtype} lookup of {name} failed: {reason}")]
    Failed {
        /// Record type asked for.
        rtype: &'static str,
        /// Name asked for.
        name: String,
        /// Why.
        reason: String,
    },
}

/// What discovery needs from DNS.
pub trait DnsResolver: Send + Sync {
    /// SRV records of `name` (for example `_submissions._tcp.example.com`).
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<SrvRecord>, DnsError>> + Send;
    /// MX records of `domain`.
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Vec<MxRecord>, DnsError>> + Send;
    /// A and AAAA addresses of `host` (for probing).
    fn ip(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send;
}

/// The default resolver, `hickory-resolver` on tokio.
#[derive(Clone)]
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HickoryDns")
            .field("name_servers", &self.resolver.config().name_servers())
            .finish()
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn strip_dot(name: &str) -> String {
    let s = name.strip_suffix('.').unwrap_or(name);
    if s.is_empty() {
        ".".into()
    } else {
        s.to_ascii_lowercase()
    }
}

impl HickoryDns {
    /// Uses the system configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, DnsError> {
        let builder = TokioResolver::builder_tokio().map_err(|e| DnsError::Failed {
            rtype: "resolver",
            name: "/etc/resolv.conf".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            resolver: builder.build(),
        })
    }

    /// Uses the given name servers (UDP, with TCP fallback), for example a DNS server on
    /// loopback in tests. All addresses must use the same port.
    pub fn with_name_servers(servers: &[SocketAddr], timeout: Duration) -> Self {
        let port = servers.first().map_or(53, SocketAddr::port);
        let ips: Vec<IpAddr> = servers.iter().map(SocketAddr::ip).collect();
        let group = NameServerConfigGroup::from_ips_clear(&ips, port, true);
        let config = ResolverConfig::from_parts(None, vec![], group);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.ndots = 0;
        opts.cache_size = 0;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Self { resolver }
    }

    fn map_err(rtype: &'static str, name: &str, e: &hickory_resolver::ResolveError) -> DnsError {
        if e.is_no_records_found() {
            DnsError::NoRecords {
                rtype,
                name: name.to_owned(),
            }
        } else {
            DnsError::Failed {
                rtype,
                name: name.to_owned(),
                reason: e.to_string(),
            }
        }
    }
}

impl DnsResolver for HickoryDns {
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, DnsError> {
        let lookup = self
            .resolver
            .srv_lookup(fqdn(name))
            .await
            .map_err(|e| Self::map_err("SRV", name, &e))?;
        Ok(lookup
            .iter()
            .map(|r| SrvRecord {
                priority: r.priority(),
                weight: r.weight(),
                port: r.port(),
                target: strip_dot(&r.target().to_ascii()),
            })
            .collect())
    }

    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let lookup = self
            .resolver
            .mx_lookup(fqdn(domain))
            .await
            .map_err(|e| Self::map_err("MX", domain, &e))?;
        Ok(lookup
            .iter()
            .map(|r| MxRecord {
                preference: r.preference(),
                exchange: strip_dot(&r.exchange().to_ascii()),
            })
            .collect())
    }

    async fn ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let lookup = self
            .resolver
            .lookup_ip(fqdn(host))
            .await
            .map_err(|e| Self::map_err("A/AAAA", host, &e))?;
        Ok(lookup.iter().collect())
    }
}
