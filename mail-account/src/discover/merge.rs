//! Manual settings over discovered ones, field by field, into the final report.

use crate::{
    discover::{
        rank::{Collector, Found},
        report::{
            DiscoveryReport, IMAP_NOT_USED, ImapReport, ProviderInfo, ServerReport, Source,
            Sourced, WarningKind,
        },
    },
    providers,
    settings::{
        AuthMethod, ManualSettings, PartialServer, Protocol, Retention, Security, Username,
    },
};

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
            protocol
                .value
                .security_for_port(port)
                .unwrap_or(Security::ImplicitTls),
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
    if security.value == Security::Plaintext && security.source == Source::Manual {
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

pub(super) fn finish(mut c: Collector, manual: &ManualSettings) -> DiscoveryReport {
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
