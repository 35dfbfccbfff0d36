//! The five steps of discovery (see the module documentation of [`crate::discover`]).

use std::fmt::Write as _;

use crate::{
    autoconfig::{self, ServerEntry},
    discover::{
        Discoverer, DiscoveryOptions,
        dns::{DnsResolver, SrvRecord},
        http::HttpClient,
        probe::{self, ProbeFailure},
        rank::{Collector, srv_sorted},
        report::{RequestKind, Source, Step, WarningKind},
    },
    domain, providers,
    settings::{Protocol, Security, Username},
};

impl<R: DnsResolver, H: HttpClient> Discoverer<R, H> {
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
    pub(super) async fn step_autoconfig(
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

    pub(super) async fn step_srv(&self, c: &mut Collector, domain: &str) {
        let mut labels: Vec<(&str, Protocol, Security)> = Vec::new();
        if c.need_incoming && c.incoming.is_none() {
            labels.extend([
                ("_pop3s", Protocol::Pop3, Security::ImplicitTls),
                ("_pop3", Protocol::Pop3, Security::StartTls),
                ("_imaps", Protocol::Imap, Security::ImplicitTls),
                ("_imap", Protocol::Imap, Security::StartTls),
            ]);
            if self.options.prefer_imap {
                labels.rotate_left(2);
            }
        }
        if c.need_outgoing && c.outgoing.is_none() {
            labels.extend([
                ("_submissions", Protocol::Smtp, Security::ImplicitTls),
                ("_submission", Protocol::Smtp, Security::StartTls),
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

    pub(super) async fn step_mx(&self, c: &mut Collector, domain: &str) {
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
            c.offer_provider(provider, &source);
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

    pub(super) async fn step_probe(&self, c: &mut Collector, domain: &str) {
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

/// Step 1: the caller's extra providers, then the bundled database.
pub(super) fn step_bundled(c: &mut Collector, domain: &str, options: &DiscoveryOptions) {
    let extra = options
        .extra_providers
        .iter()
        .find(|p| p.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)));
    if let Some(config) = extra {
        let source = Source::ExtraProvider {
            provider: config.provider_id.clone(),
        };
        let usable = c.offer_autoconfig(config.clone(), &source);
        c.step(
            Step::BundledDb,
            domain,
            format!(
                "extra entry {}: {usable} usable server(s)",
                config.provider_id
            ),
        );
        if c.done() || !options.bundled_db {
            return;
        }
    } else if !options.bundled_db {
        return;
    }
    match providers::lookup(domain) {
        Some(p) => {
            let source = Source::BundledDb {
                provider: p.id.to_owned(),
                origin: p.origin,
            };
            c.offer_provider(p, &source);
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
