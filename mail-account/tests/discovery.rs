//! Discovery against real local services: a DNS server (hickory-server on a random loopback
//! port) serving SRV and MX records, and an HTTPS server serving autoconfig files with a
//! certificate from a CA made for the test. Probing runs against the test ground's real Dovecot
//! and Postfix.

mod discovery_support;

use std::{sync::Arc, time::Duration};

use discovery_support::{DnsServer, HttpsServer, Rr, TestCa, autoconfig_xml};
use mail_account::{
    Discoverer, autoconfig,
    discover::{
        DiscoveryOptions, RequestKind, Source, Step, WarningKind, dns::HickoryDns,
        http::HttpsClient, probe::ProbeOptions,
    },
    providers::{self, HintKind, Origin},
    settings::{AuthMethod, ManualSettings, PartialServer, Protocol, Security, Username},
};
use mail_common::transport::TrustRoots;

const XML_PATH: &str = "/mail/config-v1.1.xml";
const WELL_KNOWN: &str = "/.well-known/autoconfig/mail/config-v1.1.xml";

/// Every test domain; `autoconfig.<d>` and `<d>` are sent to the HTTPS server.
const DOMAINS: &[&str] = &[
    "ac.test",
    "p25.test",
    "wk.test",
    "srv.test",
    "srv25.test",
    "customer.test",
    "shop.test",
    "mailhost.co.jp",
    "xn--bcher-kva.test",
];

fn records() -> Vec<Rr> {
    vec![
        // p25.test: the autoconfig file says SMTP on 25; SRV offers submissions on 465.
        Rr::Srv("_submissions._tcp.p25.test", 0, 1, 465, "smtp.p25.test"),
        // srv.test: POP3S (two priorities), submissions not offered ("."), submission on 587.
        Rr::Srv("_pop3s._tcp.srv.test", 20, 1, 995, "pop-backup.srv.test"),
        Rr::Srv("_pop3s._tcp.srv.test", 10, 1, 995, "pop.srv.test"),
        Rr::Srv("_submissions._tcp.srv.test", 0, 0, 0, "."),
        Rr::Srv("_submission._tcp.srv.test", 0, 1, 587, "smtp.srv.test"),
        // ... and IMAPS, reported as data (issue 15 item 7).
        Rr::Srv("_imaps._tcp.srv.test", 0, 1, 993, "imap.srv.test"),
        // srv25.test: SRV says submission on port 25.
        Rr::Srv("_pop3s._tcp.srv25.test", 0, 1, 995, "mail.srv25.test"),
        Rr::Srv("_submission._tcp.srv25.test", 0, 1, 25, "mail.srv25.test"),
        // customer.test: a BIGLOBE-hosted customer domain.
        Rr::Mx("customer.test", 10, "bgmgate1.biglobe.ne.jp"),
        // shop.test: hosted by mailhost.co.jp, which publishes an autoconfig file.
        Rr::Mx("shop.test", 20, "mx2.mailhost.co.jp"),
        Rr::Mx("shop.test", 10, "mx1.mailhost.co.jp"),
        // IDN: bücher.test.
        Rr::Srv(
            "_submissions._tcp.xn--bcher-kva.test",
            0,
            1,
            465,
            "smtp.xn--bcher-kva.test",
        ),
    ]
}

struct Fixture {
    dns: DnsServer,
    https: HttpsServer,
    ca: TestCa,
}

impl Fixture {
    async fn start() -> Self {
        let mut names = Vec::new();
        for d in DOMAINS {
            names.push(format!("autoconfig.{d}"));
            names.push((*d).to_owned());
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let ca = TestCa::new(&name_refs);
        let ac = autoconfig_xml(
            "ac.test",
            &[
                ("imap", "imap.ac.test", 993, "SSL", "%EMAILADDRESS%"),
                ("pop3", "pop.ac.test", 110, "STARTTLS", "%EMAILLOCALPART%"),
                ("pop3", "pop.ac.test", 995, "SSL", "%EMAILLOCALPART%"),
                ("smtp", "smtp.ac.test", 587, "STARTTLS", "%EMAILADDRESS%"),
                ("smtp", "smtp.ac.test", 465, "SSL", "%EMAILADDRESS%"),
            ],
        );
        let p25 = autoconfig_xml(
            "p25.test",
            &[
                ("pop3", "pop.p25.test", 995, "SSL", "%EMAILADDRESS%"),
                ("smtp", "smtp.p25.test", 25, "plain", "%EMAILADDRESS%"),
            ],
        );
        let wk = autoconfig_xml(
            "wk.test",
            &[
                ("pop3", "mail.wk.test", 995, "SSL", "%EMAILADDRESS%"),
                ("smtp", "mail.wk.test", 465, "SSL", "%EMAILADDRESS%"),
            ],
        );
        let mailhost = autoconfig_xml(
            "mailhost.co.jp",
            &[
                ("pop3", "pop.%EMAILDOMAIN%", 995, "SSL", "%EMAILADDRESS%"),
                ("smtp", "smtp.mailhost.co.jp", 465, "SSL", "%EMAILADDRESS%"),
            ],
        );
        let idn = autoconfig_xml(
            "xn--bcher-kva.test",
            &[(
                "pop3",
                "pop.xn--bcher-kva.test",
                995,
                "SSL",
                "%EMAILADDRESS%",
            )],
        );
        let routes = [
            ("autoconfig.ac.test", XML_PATH, ac.as_str()),
            ("autoconfig.p25.test", XML_PATH, p25.as_str()),
            ("wk.test", WELL_KNOWN, wk.as_str()),
            ("autoconfig.mailhost.co.jp", XML_PATH, mailhost.as_str()),
            ("autoconfig.xn--bcher-kva.test", XML_PATH, idn.as_str()),
        ];
        let https = HttpsServer::start(&ca, &routes).await;
        let dns = DnsServer::start(&records()).await;
        Self { dns, https, ca }
    }

    fn client(&self) -> HttpsClient {
        let mut names = Vec::new();
        for d in DOMAINS {
            names.push(format!("autoconfig.{d}"));
            names.push((*d).to_owned());
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.https.client(&self.ca, &refs)
    }

    fn discoverer(&self, options: DiscoveryOptions) -> Discoverer<HickoryDns, HttpsClient> {
        Discoverer::new(self.dns.resolver(), self.client(), options)
    }
}

/// Steps 1-4 only: probing has its own tests.
fn no_probe() -> DiscoveryOptions {
    let mut o = DiscoveryOptions::default();
    o.probe = false;
    o
}

fn autoconfig_url(host: &str) -> String {
    format!("https://{host}{XML_PATH}")
}

#[tokio::test(flavor = "multi_thread")]
async fn step2_autoconfig_prefers_pop3_and_implicit_tls() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("taro@ac.test", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    let o = r.outgoing.as_ref().unwrap();
    let src = Source::Autoconfig {
        url: autoconfig_url("autoconfig.ac.test"),
        secure: true,
    };
    assert_eq!(i.protocol.value, Protocol::Pop3, "POP3 before IMAP");
    assert_eq!((i.host.value.as_str(), i.port.value), ("pop.ac.test", 995));
    assert_eq!(
        i.security.value,
        Security::ImplicitTls,
        "implicit TLS first"
    );
    assert_eq!(i.username.value, Username::new("{local}"));
    assert_eq!(i.host.source, src);
    assert_eq!(i.auth.value, AuthMethod::PasswordCleartext);
    assert_eq!((o.host.value.as_str(), o.port.value), ("smtp.ac.test", 465));
    assert_eq!(o.port.source, src);
    assert_eq!(
        r.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        [Step::BundledDb, Step::Autoconfig],
        "stops at the first complete answer"
    );
    assert_eq!(r.requests.len(), 1, "{:#?}", r.requests);
    assert_eq!(r.requests[0].kind, RequestKind::Https);
    assert_eq!(
        r.alternatives.len(),
        3,
        "the other servers are kept as alternatives"
    );
    // The IMAP server of the same file, as data (issue 15 item 7).
    let imap = &r.imap.as_ref().expect("IMAP reported").server;
    assert_eq!(
        (imap.host.value.as_str(), imap.port.value),
        ("imap.ac.test", 993)
    );
    assert_eq!(imap.username.value, Username::address());
    assert_eq!(imap.host.source, src);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let account = r.to_account().unwrap();
    assert_eq!(account.incoming.host, "pop.ac.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn step2_well_known_after_autoconfig_host() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@wk.test", &ManualSettings::default())
        .await
        .unwrap();
    let urls: Vec<_> = r.requests.iter().map(|q| q.target.as_str()).collect();
    assert_eq!(
        urls,
        [
            autoconfig_url("autoconfig.wk.test").as_str(),
            "https://wk.test/.well-known/autoconfig/mail/config-v1.1.xml"
        ]
    );
    assert_eq!(r.requests[0].outcome, "HTTP 404");
    assert_eq!(r.incoming.unwrap().host.value, "mail.wk.test");
    assert_eq!(r.outgoing.unwrap().port.value, 465);
    // The address was not sent (privacy default).
    assert!(f.https.served().iter().all(|s| !s.contains("emailaddress")));
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_file_with_port_25_is_reported_not_used() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@p25.test", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    let o = r.outgoing.as_ref().unwrap();
    assert_eq!(i.host.value, "pop.p25.test");
    assert_eq!(
        (o.host.value.as_str(), o.port.value),
        ("smtp.p25.test", 465)
    );
    assert_eq!(
        o.port.source,
        Source::Srv {
            name: "_submissions._tcp.p25.test".into()
        },
        "the outgoing server came from the next step, not the port-25 entry"
    );
    assert_eq!(r.warnings_of(WarningKind::Port25Submission).count(), 1);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].entry.port, 25);
    assert!(matches!(r.rejected[0].source, Source::Autoconfig { .. }));
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::BundledDb, Step::Autoconfig, Step::Srv]);
    // Only the missing role is asked for in SRV.
    assert!(
        r.requests
            .iter()
            .filter(|q| q.kind == RequestKind::DnsSrv)
            .all(|q| q.target.starts_with("_submission")),
        "{:#?}",
        r.requests
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn step3_srv_priority_dot_target_and_order_of_steps() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@srv.test", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    let o = r.outgoing.as_ref().unwrap();
    assert_eq!(i.host.value, "pop.srv.test", "lowest priority wins");
    assert_eq!(i.security.value, Security::ImplicitTls);
    assert_eq!(
        i.username.source,
        Source::Default {
            reason: "the source does not state a username; the full address is the usual login"
        }
    );
    assert_eq!(i.auth.value, AuthMethod::Automatic);
    assert!(matches!(i.auth.source, Source::Default { .. }));
    assert_eq!(
        (o.host.value.as_str(), o.port.value),
        ("smtp.srv.test", 587)
    );
    assert_eq!(o.security.value, Security::StartTls);
    let srv_step = r.steps.iter().find(|s| s.step == Step::Srv).unwrap();
    assert!(
        srv_step
            .outcome
            .contains("_submissions._tcp.srv.test: service not offered"),
        "{}",
        srv_step.outcome
    );
    assert!(
        r.alternatives
            .iter()
            .any(|(e, _)| e.host == "pop-backup.srv.test")
    );
    // IMAP from the same source, as data (issue 15 item 7): POP3 stays the incoming server.
    let imap = r.imap.as_ref().expect("IMAP settings reported");
    assert_eq!(
        (imap.server.host.value.as_str(), imap.server.port.value),
        ("imap.srv.test", 993)
    );
    assert_eq!(imap.server.protocol.value, Protocol::Imap);
    assert_eq!(
        imap.server.host.source,
        Source::Srv {
            name: "_imaps._tcp.srv.test".into()
        }
    );
    assert!(!imap.used_by_this_project);
    // Order of requests: autoconfig (both URLs) before SRV; IMAP looked up after POP3.
    let kinds: Vec<_> = r
        .requests
        .iter()
        .map(|q| (q.kind, q.target.clone()))
        .collect();
    assert_eq!(kinds[0].0, RequestKind::Https);
    assert_eq!(kinds[1].0, RequestKind::Https);
    let srv: Vec<_> = kinds[2..].iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        srv,
        [
            "_pop3s._tcp.srv.test",
            "_pop3._tcp.srv.test",
            "_imaps._tcp.srv.test",
            "_imap._tcp.srv.test",
            "_submissions._tcp.srv.test",
            "_submission._tcp.srv.test"
        ]
    );
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::BundledDb, Step::Autoconfig, Step::Srv]);
}

#[tokio::test(flavor = "multi_thread")]
async fn srv_submission_on_port_25_is_rejected() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@srv25.test", &ManualSettings::default())
        .await
        .unwrap();
    assert_eq!(r.incoming.as_ref().unwrap().host.value, "mail.srv25.test");
    assert!(r.outgoing.is_none(), "port 25 is never chosen");
    assert_eq!(r.warnings_of(WarningKind::Port25Submission).count(), 1);
    assert!(matches!(r.rejected[0].source, Source::Srv { .. }));
    assert!(r.to_account().is_err());
    // MX ran (nothing there) after SRV.
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [Step::BundledDb, Step::Autoconfig, Step::Srv, Step::Mx]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn step4_mx_psl_reduction_finds_biglobe() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@customer.test", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    assert_eq!(i.host.value, "mail.biglobe.ne.jp");
    match &i.host.source {
        Source::Mx {
            exchange,
            domain,
            via,
        } => {
            assert_eq!(exchange, "bgmgate1.biglobe.ne.jp");
            assert_eq!(domain, "biglobe.ne.jp", "PSL: biglobe.ne.jp, not ne.jp");
            assert!(matches!(**via, Source::BundledDb { .. }));
        }
        other => panic!("unexpected source {other:?}"),
    }
    assert_eq!(r.outgoing.unwrap().port.value, 465);
    assert_eq!(r.provider.unwrap().id, "biglobe.ne.jp");
    assert!(r.requests.iter().any(|q| q.kind == RequestKind::DnsMx));
}

#[tokio::test(flavor = "multi_thread")]
async fn step4_mx_then_autoconfig_of_the_mx_domain() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@shop.test", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    assert_eq!(
        i.host.value, "pop.shop.test",
        "{{domain}} is the user's domain"
    );
    let Source::Mx {
        exchange,
        domain,
        via,
    } = &i.host.source
    else {
        panic!("{:?}", i.host.source)
    };
    assert_eq!(exchange, "mx1.mailhost.co.jp", "lowest preference first");
    assert_eq!(domain, "mailhost.co.jp");
    assert!(matches!(**via, Source::Autoconfig { secure: true, .. }));
    assert_eq!(r.outgoing.unwrap().host.value, "smtp.mailhost.co.jp");
    let last = r.requests.last().unwrap();
    assert_eq!(last.target, autoconfig_url("autoconfig.mailhost.co.jp"));
}

#[tokio::test(flavor = "multi_thread")]
async fn idn_domain_is_converted_before_requests() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("müller@Bücher.test", &ManualSettings::default())
        .await
        .unwrap();
    assert_eq!(r.address.ascii_domain(), "xn--bcher-kva.test");
    assert!(
        r.requests.iter().all(|q| q.target.is_ascii()),
        "{:#?}",
        r.requests
    );
    assert_eq!(
        r.incoming.as_ref().unwrap().host.value,
        "pop.xn--bcher-kva.test"
    );
    assert_eq!(
        r.outgoing.as_ref().unwrap().host.value,
        "smtp.xn--bcher-kva.test"
    );
    assert!(
        f.https
            .served()
            .contains(&format!("autoconfig.xn--bcher-kva.test {XML_PATH}"))
    );
    let account = r.to_account().unwrap();
    assert_eq!(account.address, "müller@bücher.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn bundled_db_answers_first_without_network() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(DiscoveryOptions::default())
        .discover("taro@biglobe.ne.jp", &ManualSettings::default())
        .await
        .unwrap();
    assert!(r.requests.is_empty(), "{:#?}", r.requests);
    assert_eq!(r.steps.len(), 1);
    assert!(matches!(
        r.incoming.unwrap().host.source,
        Source::BundledDb {
            origin: Origin::Curated { .. },
            ..
        }
    ));
    assert!(f.https.served().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_settings_win_and_partial_settings_merge() {
    let f = Fixture::start().await;
    // Only the SMTP port is fixed: 587. Discovery finds 465 implicit TLS for smtp.ac.test.
    let manual = ManualSettings::from_toml("[outgoing]\nport = 587\n").unwrap();
    let r = f
        .discoverer(no_probe())
        .discover("a@ac.test", &manual)
        .await
        .unwrap();
    let o = r.outgoing.unwrap();
    assert_eq!(o.host.value, "smtp.ac.test");
    assert!(matches!(o.host.source, Source::Autoconfig { .. }));
    assert_eq!((o.port.value, o.port.source.clone()), (587, Source::Manual));
    assert_eq!(
        o.security.value,
        Security::StartTls,
        "derived from the manual port"
    );
    assert!(matches!(o.security.source, Source::Default { .. }));

    // A manual host wins over discovery; the rest is merged.
    let manual = ManualSettings {
        incoming: PartialServer {
            host: Some("pop.example.net".into()),
            ..PartialServer::default()
        },
        ..ManualSettings::default()
    };
    let r = f
        .discoverer(no_probe())
        .discover("a@ac.test", &manual)
        .await
        .unwrap();
    let i = r.incoming.unwrap();
    assert_eq!(
        (i.host.value.as_str(), i.host.source.clone()),
        ("pop.example.net", Source::Manual)
    );
    assert_eq!(i.port.value, 995);

    // Complete manual settings: no discovery and no network at all.
    let full = "[incoming]\nhost = \"in.example\"\nport = 995\nsecurity = \"implicit-tls\"\n\
                username = \"{local}\"\nauth = \"password-encrypted\"\n\
                [outgoing]\nhost = \"out.example\"\nport = 25\nsecurity = \"starttls\"\n\
                username = \"{address}\"\nauth = \"password-cleartext\"\n";
    let manual = ManualSettings::from_toml(full).unwrap();
    let r = f
        .discoverer(no_probe())
        .discover("a@ac.test", &manual)
        .await
        .unwrap();
    assert!(r.requests.is_empty());
    assert_eq!(r.steps[0].step, Step::Manual);
    assert_eq!(
        r.outgoing.as_ref().unwrap().port.value,
        25,
        "manual wins, even 25"
    );
    assert_eq!(r.warnings_of(WarningKind::UnsafeManualSetting).count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_only_when_opted_in_and_then_warned() {
    let f = Fixture::start().await;
    let r = f
        .discoverer(no_probe())
        .discover("a@srv.test", &ManualSettings::default())
        .await
        .unwrap();
    assert!(r.requests.iter().all(|q| q.kind != RequestKind::Http));
    let mut o = no_probe();
    o.allow_http = true;
    o.srv = false;
    o.mx = false;
    let r = f
        .discoverer(o)
        .discover("a@srv.test", &ManualSettings::default())
        .await
        .unwrap();
    let http: Vec<_> = r
        .requests
        .iter()
        .filter(|q| q.kind == RequestKind::Http)
        .collect();
    assert_eq!(http.len(), 2, "{:#?}", r.requests);
    assert_eq!(
        r.requests[0].kind,
        RequestKind::Https,
        "HTTPS is tried first"
    );
}

fn probe_options(
    ports_in: Vec<(u16, Security)>,
    ports_out: Vec<(u16, Security)>,
) -> DiscoveryOptions {
    let mut probe = ProbeOptions::default();
    probe.pop3_ports = ports_in;
    probe.submission_ports = ports_out;
    probe.trust = TrustRoots::CaFile(mail_testground::ca_file());
    probe.connect_timeout = Duration::from_secs(5);
    probe.io_timeout = Duration::from_secs(5);
    let mut o = DiscoveryOptions::default();
    o.autoconfig = false;
    o.srv = false;
    o.mx = false;
    o.probe_options = probe;
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn step5_probes_real_servers_tls_first_with_certificate_check() {
    use mail_testground::{DOVECOT_POP3, DOVECOT_POP3S, POSTFIX_SUBMISSION, POSTFIX_SUBMISSIONS};
    mail_testground::require(&[
        DOVECOT_POP3,
        DOVECOT_POP3S,
        POSTFIX_SUBMISSION,
        POSTFIX_SUBMISSIONS,
    ]);
    let f = Fixture::start().await;
    let options = probe_options(
        vec![
            (DOVECOT_POP3.port, Security::StartTls),
            (DOVECOT_POP3S.port, Security::ImplicitTls),
        ],
        vec![
            (POSTFIX_SUBMISSION.port, Security::StartTls),
            (POSTFIX_SUBMISSIONS.port, Security::ImplicitTls),
        ],
    );
    // "localhost" and its subdomains resolve to 127.0.0.1 (RFC 6761); the test ground's
    // certificate is valid for "localhost" only, so pop.localhost etc. fail the certificate check.
    let r = f
        .discoverer(options)
        .discover("alice@localhost", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    let o = r.outgoing.as_ref().unwrap();
    assert_eq!(
        (i.host.value.as_str(), i.port.value, i.security.value),
        ("localhost", DOVECOT_POP3S.port, Security::ImplicitTls),
        "implicit TLS is probed first: {:#?}",
        r.requests
    );
    assert_eq!(
        i.host.source,
        Source::Probe {
            host: "localhost".into(),
            port: DOVECOT_POP3S.port
        }
    );
    assert_eq!(
        (o.host.value.as_str(), o.port.value, o.security.value),
        ("localhost", POSTFIX_SUBMISSIONS.port, Security::ImplicitTls)
    );
    let probes: Vec<_> = r
        .requests
        .iter()
        .filter(|q| q.kind == RequestKind::Probe)
        .collect();
    let pop_localhost = probes
        .iter()
        .find(|q| q.target == format!("pop.localhost:{}", DOVECOT_POP3S.port))
        .expect("pop.localhost probed");
    assert!(
        pop_localhost.outcome.contains("TLS"),
        "{}",
        pop_localhost.outcome
    );
    let ok = probes
        .iter()
        .find(|q| q.target == format!("localhost:{}", DOVECOT_POP3S.port))
        .unwrap();
    assert!(ok.outcome.contains("answered"), "{}", ok.outcome);
    assert!(r.steps.iter().any(|s| s.step == Step::Probe));
}

#[tokio::test(flavor = "multi_thread")]
async fn step5_probes_starttls_ports_and_upgrades() {
    use mail_testground::{DOVECOT_POP3, POSTFIX_SUBMISSION};
    mail_testground::require(&[DOVECOT_POP3, POSTFIX_SUBMISSION]);
    let f = Fixture::start().await;
    let mut options = probe_options(
        vec![(DOVECOT_POP3.port, Security::StartTls)],
        vec![(POSTFIX_SUBMISSION.port, Security::StartTls)],
    );
    options.probe_options.incoming_hosts = vec!["{domain}".into()];
    options.probe_options.outgoing_hosts = vec!["{domain}".into()];
    let r = f
        .discoverer(options)
        .discover("bob@localhost", &ManualSettings::default())
        .await
        .unwrap();
    let i = r.incoming.as_ref().unwrap();
    let o = r.outgoing.as_ref().unwrap();
    assert_eq!(
        (i.port.value, i.security.value),
        (DOVECOT_POP3.port, Security::StartTls)
    );
    assert_eq!(
        (o.port.value, o.security.value),
        (POSTFIX_SUBMISSION.port, Security::StartTls)
    );
    let probes: Vec<_> = r
        .requests
        .iter()
        .filter(|q| q.kind == RequestKind::Probe)
        .collect();
    assert_eq!(probes.len(), 2);
    // AUTH mechanisms are learned after the upgrade.
    assert!(
        probes
            .iter()
            .all(|q| q.outcome.contains("auth ") && q.outcome.contains("PLAIN")),
        "{probes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn step5_upgrades_hosts_of_rejected_entries_first() {
    // A bundled-like situation: the provider file (p25.test) says SMTP on 25; probing tries that
    // host's TLS ports first. Here the host does not exist, so the probe reports it and moves on.
    let f = Fixture::start().await;
    let mut options = probe_options(vec![], vec![(1, Security::ImplicitTls)]);
    options.autoconfig = true;
    options.probe_options.outgoing_hosts = vec![];
    options.probe_options.connect_timeout = Duration::from_secs(2);
    let r = f
        .discoverer(options)
        .discover("a@p25.test", &ManualSettings::default())
        .await
        .unwrap();
    let probes: Vec<_> = r
        .requests
        .iter()
        .filter(|q| q.kind == RequestKind::Probe)
        .collect();
    assert_eq!(probes.len(), 1, "{:#?}", r.requests);
    assert_eq!(probes[0].target, "smtp.p25.test:1");
    assert!(
        probes[0].outcome.contains("does not resolve"),
        "{}",
        probes[0].outcome
    );
    assert!(r.outgoing.is_none());
}

#[test]
fn extra_providers_answer_step_1_offline_and_test_servers_are_not_bundled() {
    // Loopback test and demo servers are not in the production table.
    for domain in ["demo.example", "testground.example"] {
        assert!(providers::lookup(domain).is_none(), "{domain}");
    }
    let r = mail_account::discover_offline(
        "alice@testground.example",
        &ManualSettings::default(),
        &DiscoveryOptions::default(),
    )
    .unwrap();
    assert!(r.incoming.is_none() && r.outgoing.is_none());

    let xml = autoconfig_xml(
        "testground.example",
        &[
            ("pop3", "127.0.0.1", 2995, "SSL", "%EMAILLOCALPART%"),
            ("smtp", "::1", 25, "plain", "%EMAILLOCALPART%"),
            ("smtp", "::1", 2465, "SSL", "%EMAILLOCALPART%"),
        ],
    );
    let mut o = DiscoveryOptions::default();
    o.extra_providers = vec![autoconfig::parse(&xml).unwrap()];
    let r =
        mail_account::discover_offline("alice@TestGround.example", &ManualSettings::default(), &o)
            .unwrap();
    assert!(r.requests.is_empty());
    let i = r.incoming.as_ref().unwrap();
    assert_eq!((i.host.value.as_str(), i.port.value), ("127.0.0.1", 2995));
    assert_eq!(
        i.host.source,
        Source::ExtraProvider {
            provider: "testground.example".into()
        }
    );
    assert_eq!(i.username.value, Username::new("{local}"));
    assert!(i.host.source.to_string().contains("extra provider entry"));
    // The ranking rules hold for extra entries too: port 25 is rejected, 465 chosen.
    let out = r.outgoing.clone().unwrap();
    assert_eq!((out.host.value.as_str(), out.port.value), ("::1", 2465));
    assert_eq!(r.warnings_of(WarningKind::Port25Submission).count(), 1);
    assert!(r.oauth2.is_none());
    assert!(!r.has_hint(HintKind::AppPassword));
    // Other domains still go to the bundled database.
    let r =
        mail_account::discover_offline("taro@gmail.com", &ManualSettings::default(), &o).unwrap();
    assert!(matches!(
        r.incoming.unwrap().host.source,
        Source::BundledDb { .. }
    ));
    let _ = Arc::new(());
}
