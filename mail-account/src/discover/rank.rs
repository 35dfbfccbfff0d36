//! Which candidate wins a role. The rules: submission is never on port 25 and never without
//! TLS (such entries are rejected, with a warning); implicit TLS (465, 995) comes before
//! STARTTLS (587, 110); POP3 comes before IMAP unless IMAP is preferred; the first source that
//! offers a usable entry for a role wins it, and the rest become alternatives.

use crate::{
    autoconfig::{self, ServerEntry},
    discover::{
        DiscoveryOptions,
        dns::SrvRecord,
        report::{
            NetworkRequest, ProviderInfo, Rejected, RequestKind, Source, Step, StepRecord, Warning,
            WarningKind,
        },
    },
    domain::EmailAddress,
    providers::{Hint, HintKind, Provider},
    settings::{ManualSettings, Protocol, Security},
};

/// A candidate chosen for a role.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) entry: ServerEntry,
    pub(super) source: Source,
    /// False when the source does not state username and auth (SRV, probe).
    pub(super) stated: bool,
}

pub(super) struct Collector {
    pub(super) address: EmailAddress,
    pub(super) prefer_imap: bool,
    pub(super) need_incoming: bool,
    pub(super) need_outgoing: bool,
    pub(super) incoming: Option<Found>,
    pub(super) outgoing: Option<Found>,
    pub(super) provider: Option<ProviderInfo>,
    pub(super) pop3_leave: Option<(bool, Option<u32>, Source)>,
    pub(super) hints: Vec<Hint>,
    pub(super) warnings: Vec<Warning>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) alternatives: Vec<(ServerEntry, Source)>,
    pub(super) steps: Vec<StepRecord>,
    pub(super) requests: Vec<NetworkRequest>,
}

impl Collector {
    pub(super) fn done(&self) -> bool {
        (!self.need_incoming || self.incoming.is_some())
            && (!self.need_outgoing || self.outgoing.is_some())
    }

    pub(super) fn step(&mut self, step: Step, domain: &str, outcome: impl Into<String>) {
        self.steps.push(StepRecord {
            step,
            domain: domain.to_owned(),
            outcome: outcome.into(),
        });
    }

    pub(super) fn request(
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

    pub(super) fn warn(&mut self, kind: WarningKind, message: String) {
        let w = Warning { kind, message };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    pub(super) fn add_hint(&mut self, hint: Hint) {
        if !self.hints.contains(&hint) {
            self.hints.push(hint);
        }
    }

    /// Offers the entries of one source; returns how many usable entries it had.
    pub(super) fn offer(&mut self, entries: Vec<(ServerEntry, Source)>, stated: bool) -> usize {
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
                if entry.security == Security::Plaintext {
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
                if entry.security == Security::Plaintext {
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

    pub(super) fn offer_provider(&mut self, provider: &'static Provider, source: &Source) {
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
        let entries: Vec<(ServerEntry, Source)> = provider
            .servers
            .iter()
            .map(|s| (s.to_entry(), source.clone()))
            .collect();
        self.offer(entries, true);
    }

    pub(super) fn offer_autoconfig(
        &mut self,
        config: autoconfig::ClientConfig,
        source: &Source,
    ) -> usize {
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

pub(super) fn srv_sorted(mut records: Vec<SrvRecord>) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    records
}

pub(super) fn new_collector(
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
