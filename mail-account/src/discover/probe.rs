//! Step 5 of discovery: guess host names and probe them.
//!
//! A probe resolves the host with the injected resolver and connects to the address with the
//! protocol crates' own sessions ([`pop3_proto::tokio::Session::connect`],
//! [`smtp_submit::tokio::Session::connect`]), TLS first: implicit TLS ports are tried before
//! STARTTLS ones. The session reads the greeting, asks `CAPA` or `EHLO`, performs STLS or
//! STARTTLS where the port needs it (refusing bytes injected before the handshake), and the
//! certificate is checked against the guessed host name either way; then the probe says
//! `QUIT`. Nothing is authenticated and nothing is sent. Plaintext is never probed: a port
//! without TLS is not a candidate.
//!
//! The sessions bound every read (their `Limits`) and every step has a deadline; at most
//! [`ProbeOptions::concurrency`] probes run at once.

use std::{net::IpAddr, sync::Mutex, time::Duration};

use futures_util::{StreamExt, stream};
use mail_common::transport::{ConnectionError, SetupTimeouts, TransportError, TrustRoots};

use crate::{
    discover::dns::DnsResolver,
    settings::{Protocol, Security},
};

/// What step 5 tries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProbeOptions {
    /// Host templates for the incoming server, in order (`{domain}` is the ASCII domain).
    pub incoming_hosts: Vec<String>,
    /// Host templates for the outgoing server, in order.
    pub outgoing_hosts: Vec<String>,
    /// POP3 ports, in order of preference (TLS modes only).
    pub pop3_ports: Vec<(u16, Security)>,
    /// Submission ports, in order of preference (465 implicit TLS, then 587 STARTTLS).
    pub submission_ports: Vec<(u16, Security)>,
    /// Probes running at once.
    pub concurrency: usize,
    /// TCP connect and TLS handshake deadline.
    pub connect_timeout: Duration,
    /// Deadline for each reply.
    pub io_timeout: Duration,
    /// The name sent in EHLO.
    pub ehlo_name: String,
    /// Which certificate authorities are trusted.
    pub trust: TrustRoots,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            incoming_hosts: ["pop.{domain}", "pop3.{domain}", "mail.{domain}", "{domain}"]
                .map(String::from)
                .to_vec(),
            outgoing_hosts: ["smtp.{domain}", "mail.{domain}", "{domain}"]
                .map(String::from)
                .to_vec(),
            pop3_ports: vec![(995, Security::ImplicitTls), (110, Security::StartTls)],
            submission_ports: vec![(465, Security::ImplicitTls), (587, Security::StartTls)],
            concurrency: 4,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            ehlo_name: "localhost".into(),
            trust: TrustRoots::WebPki,
        }
    }
}

/// One host and port to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// POP3 or SMTP.
    pub protocol: Protocol,
    /// Host name (ASCII).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode tried.
    pub security: Security,
}

/// A server answered as expected over TLS with a valid certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSuccess {
    /// The address connected to.
    pub address: IpAddr,
    /// POP3: the greeting text. SMTP: the name the server gives in its EHLO reply (the
    /// adapter keeps that, not the greeting).
    pub greeting: String,
    /// SASL mechanisms offered after TLS (`USER` included for POP3 when offered).
    pub auth_mechanisms: Vec<String>,
    /// The TLS mode, and the name the certificate was verified for.
    pub tls: Option<String>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The host name does not resolve.
    #[error("does not resolve: {0}")]
    Resolve(String),
    /// The connection was refused or failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// A step took too long (a blocked port often shows up this way).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The TLS handshake failed: certificate not valid for the host, unknown CA, or not TLS.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The port does not offer STLS/STARTTLS, so it is not used.
    #[error("no STLS/STARTTLS offered")]
    NoStarttls,
    /// The server did not speak the expected protocol.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// Not run: a preferred candidate succeeded first.
    #[error("cancelled: a preferred candidate answered first")]
    Cancelled,
}

/// One probe that was started, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAttempt {
    /// What was probed.
    pub target: ProbeTarget,
    /// How it ended.
    pub outcome: Result<ProbeSuccess, ProbeFailure>,
}

/// The targets for one role, TLS first: every host on the first port mode, then the next.
pub fn targets(
    protocol: Protocol,
    hosts: &[String],
    ports: &[(u16, Security)],
    ascii_domain: &str,
) -> Vec<ProbeTarget> {
    let mut ports: Vec<(u16, Security)> =
        ports.iter().copied().filter(|(_, s)| s.is_tls()).collect();
    ports.sort_by_key(|(_, s)| u8::from(*s != Security::ImplicitTls));
    let mut out = Vec::new();
    for (port, security) in ports {
        for host in hosts {
            let host = host.replace("{domain}", ascii_domain);
            let t = ProbeTarget {
                protocol,
                host,
                port,
                security,
            };
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Probes `targets` with bounded concurrency and returns the first success in the targets'
/// order (not in completion order), plus every probe that was started.
pub async fn probe_first<R: DnsResolver>(
    dns: &R,
    targets: Vec<ProbeTarget>,
    options: &ProbeOptions,
) -> (Option<(ProbeTarget, ProbeSuccess)>, Vec<ProbeAttempt>) {
    let started: Mutex<Vec<ProbeAttempt>> = Mutex::new(Vec::new());
    let started_ref = &started;
    let mut results = stream::iter(targets.into_iter().map(|target| async move {
        let index = {
            let mut s = started_ref.lock().expect("probe log lock");
            s.push(ProbeAttempt {
                target: target.clone(),
                outcome: Err(ProbeFailure::Cancelled),
            });
            s.len() - 1
        };
        let outcome = probe_one(dns, &target, options).await;
        started_ref.lock().expect("probe log lock")[index]
            .outcome
            .clone_from(&outcome);
        (target, outcome)
    }))
    .buffered(options.concurrency.max(1));
    let mut best = None;
    while let Some((target, outcome)) = results.next().await {
        if let Ok(success) = outcome {
            best = Some((target, success));
            break;
        }
    }
    drop(results);
    (best, started.into_inner().expect("probe log lock"))
}

/// Probes one target: resolves the host with the injected resolver, then lets the protocol
/// crate's session connect to the address found, checking the certificate against the guessed
/// host name.
pub async fn probe_one<R: DnsResolver>(
    dns: &R,
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> Result<ProbeSuccess, ProbeFailure> {
    let addresses = tokio::time::timeout(options.connect_timeout, dns.ip(&target.host))
        .await
        .map_err(|_| ProbeFailure::Timeout("DNS lookup".into()))?
        .map_err(|e| ProbeFailure::Resolve(e.to_string()))?;
    let address = *addresses
        .first()
        .ok_or_else(|| ProbeFailure::Resolve(format!("no address for {}", target.host)))?;
    // The sessions' own deadlines bound every reply; the outer one bounds the whole probe, so
    // a server that trickles bytes cannot hold a probe slot for long.
    let whole = options
        .connect_timeout
        .saturating_mul(2)
        .saturating_add(options.io_timeout.saturating_mul(4));
    let probe = async {
        if target.protocol == Protocol::Smtp {
            probe_smtp(address, target, options).await
        } else {
            probe_pop3(address, target, options).await
        }
    };
    let (greeting, auth_mechanisms) = tokio::time::timeout(whole, probe)
        .await
        .map_err(|_| ProbeFailure::Timeout("the probe as a whole".into()))??;
    let mode = match (target.security, target.protocol) {
        (Security::StartTls, Protocol::Pop3) => "STLS",
        (Security::StartTls, _) => "STARTTLS",
        _ => "implicit TLS",
    };
    Ok(ProbeSuccess {
        address,
        greeting,
        auth_mechanisms,
        tls: Some(format!("{mode}, certificate valid for {}", target.host)),
    })
}

/// Connects, reads the greeting and the capabilities (again after STLS), says `QUIT`.
async fn probe_pop3(
    address: IpAddr,
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> Result<(String, Vec<String>), ProbeFailure> {
    use pop3_proto::tokio::{ConnectOptions, Error, Session};
    let security = protocol_security(target);
    let connect = ConnectOptions::new(address.to_string())
        .with_port(target.port)
        .with_tls_name(&target.host)
        .with_trust_roots(options.trust.clone())
        .with_timeouts(SetupTimeouts::uniform(options.connect_timeout));
    let mut config = pop3_proto::Config::new(security);
    config.timeouts = config
        .timeouts
        .with_server_waits(options.io_timeout)
        .with_tls_handshake(options.connect_timeout);
    let session = Session::connect(&connect, config)
        .await
        .map_err(|error| match error {
            Error::Connection(e) => connection_failure(e),
            Error::Protocol(pop3_proto::ProtocolError::StlsNotOffered) => ProbeFailure::NoStarttls,
            other => ProbeFailure::Protocol(other.to_string()),
        })?;
    let greeting = session.greeting().text.clone();
    let mut mechanisms = Vec::new();
    if let Some(caps) = session.capabilities() {
        mechanisms.clone_from(&caps.sasl);
        if caps.user {
            mechanisms.push("USER".into());
        }
    }
    quit_quietly(session.quit_without_waiting()).await;
    Ok((greeting, mechanisms))
}

/// Connects, reads the greeting, says `EHLO` (again after STARTTLS), says `QUIT`. The
/// adapter keeps the EHLO reply, not the greeting: the name the server gives there is
/// reported instead.
async fn probe_smtp(
    address: IpAddr,
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> Result<(String, Vec<String>), ProbeFailure> {
    use smtp_submit::tokio::{ConnectOptions, Error, Session};
    let security = protocol_security(target);
    let name = smtp_submit::ClientName::new(&options.ehlo_name)
        .map_err(|e| ProbeFailure::Protocol(format!("EHLO name: {e}")))?;
    let connect = ConnectOptions::new(address.to_string())
        .with_port(target.port)
        .with_tls_name(&target.host)
        .with_trust_roots(options.trust.clone())
        .with_timeouts(SetupTimeouts::uniform(options.connect_timeout));
    let timeouts = smtp_submit::Timeouts::default().with_server_waits(options.io_timeout);
    let config = smtp_submit::Config::new(name, security).with_timeouts(timeouts);
    let session = Session::connect(&connect, config)
        .await
        .map_err(|error| match error {
            Error::Connection(e) => connection_failure(e),
            Error::StartTlsNotOffered => ProbeFailure::NoStarttls,
            other => ProbeFailure::Protocol(other.to_string()),
        })?;
    let caps = session.capabilities();
    let greeting = caps.server_name().to_owned();
    let mechanisms = caps
        .auth_mechanisms()
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    quit_quietly(session.quit_without_waiting()).await;
    Ok((greeting, mechanisms))
}

/// The protocol crates' mode for a probe target: never cleartext (targets are TLS only).
fn protocol_security(target: &ProbeTarget) -> Security {
    if target.security == Security::ImplicitTls {
        Security::ImplicitTls
    } else {
        Security::StartTls
    }
}

/// A probe has what it came for before `QUIT`; a server that does not take it is not worth
/// waiting for.
async fn quit_quietly<E: std::fmt::Display>(quit: impl Future<Output = Result<(), E>>) {
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), quit).await {
        tracing::debug!(%error, "probe QUIT failed");
    }
}

fn connection_failure<P: std::fmt::Display>(e: ConnectionError<P>) -> ProbeFailure {
    match e {
        ConnectionError::Transport(e) => transport_failure(e),
        ConnectionError::Timeout(t) => ProbeFailure::Timeout(t.to_string()),
        ConnectionError::Io(e) => ProbeFailure::Connect(e.to_string()),
        other => ProbeFailure::Connect(other.to_string()),
    }
}

fn transport_failure(e: TransportError) -> ProbeFailure {
    match e {
        TransportError::Timeout { .. } | TransportError::NoGreeting { .. } => {
            ProbeFailure::Timeout(e.to_string())
        }
        TransportError::Tls { .. } | TransportError::CaFile { .. } => {
            ProbeFailure::Tls(e.to_string())
        }
        TransportError::Connect { .. } => ProbeFailure::Connect(e.to_string()),
        TransportError::PlaintextGreeting { .. } => ProbeFailure::Protocol(e.to_string()),
        other => ProbeFailure::Connect(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_tls_first_and_never_plain() {
        let t = targets(
            Protocol::Smtp,
            &["smtp.{domain}".into(), "{domain}".into()],
            &[
                (587, Security::StartTls),
                (25, Security::Plaintext),
                (465, Security::ImplicitTls),
            ],
            "example.jp",
        );
        let got: Vec<_> = t.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(
            got,
            [
                ("smtp.example.jp", 465),
                ("example.jp", 465),
                ("smtp.example.jp", 587),
                ("example.jp", 587)
            ]
        );
    }
}
