//! Step 5 of discovery: guess host names and probe them.
//!
//! A probe resolves the host with the injected resolver, connects (TLS first: implicit TLS ports
//! are tried before STARTTLS ones), reads the greeting, asks `CAPA` or `EHLO`, performs STLS or
//! STARTTLS where the port needs it (the certificate is checked against the guessed host name
//! either way) and says `QUIT`. Nothing is authenticated and nothing is sent. Plaintext is never
//! probed: a port without TLS is not a candidate.
//!
//! Every read is bounded (line length, lines per reply) and every step has a deadline; at most
//! [`ProbeOptions::concurrency`] probes run at once.

use std::{net::IpAddr, sync::Mutex, time::Duration};

use futures_util::{StreamExt, stream};
use mail_common::{
    LineReader,
    transport::{
        MailStream, SetupTimeouts, TlsConnector, TransportError, TrustRoots, Wrapping, connect,
        server_name,
    },
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    dns::DnsResolver,
    settings::{Protocol, Security},
};

/// Longest line accepted from a probed server.
const MAX_LINE: usize = 2048;
/// Most lines accepted in one reply (CAPA list, EHLO reply).
const MAX_LINES: usize = 100;

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
            pop3_ports: vec![(995, Security::ImplicitTls), (110, Security::Starttls)],
            submission_ports: vec![(465, Security::ImplicitTls), (587, Security::Starttls)],
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
    /// The greeting line.
    pub greeting: String,
    /// SASL mechanisms offered after TLS (`USER` included for POP3 when offered).
    pub auth_mechanisms: Vec<String>,
    /// The TLS version and cipher suite.
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
    connector: &TlsConnector,
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
        let outcome = probe_one(dns, connector, &target, options).await;
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

/// Probes one target.
pub async fn probe_one<R: DnsResolver>(
    dns: &R,
    connector: &TlsConnector,
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
    let wrapping = if target.security == Security::ImplicitTls {
        Wrapping::ImplicitTls
    } else {
        Wrapping::Plain
    };
    let timeouts = SetupTimeouts::uniform(options.connect_timeout);
    let stream = connect(
        &address.to_string(),
        target.port,
        wrapping,
        connector,
        &target.host,
        timeouts,
    )
    .await
    .map_err(transport_failure)?;
    let conn = Conn {
        stream,
        reader: LineReader::new(MAX_LINE),
        io_timeout: options.io_timeout,
    };
    let mut success = if target.protocol == Protocol::Smtp {
        probe_smtp(conn, connector, target, options).await?
    } else {
        probe_pop3(conn, connector, target, options).await?
    };
    success.address = address;
    Ok(success)
}

async fn probe_pop3(
    mut conn: Conn,
    connector: &TlsConnector,
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> Result<ProbeSuccess, ProbeFailure> {
    let greeting = conn.line().await?;
    if !greeting.starts_with("+OK") {
        return Err(ProbeFailure::Protocol(greeting));
    }
    let mut capa = conn.pop3_capa().await?;
    if target.security == Security::Starttls {
        if !capa.iter().any(|c| c.eq_ignore_ascii_case("STLS")) {
            return Err(ProbeFailure::NoStarttls);
        }
        conn.send("STLS").await?;
        let reply = conn.line().await?;
        if !reply.starts_with("+OK") {
            return Err(ProbeFailure::Protocol(reply));
        }
        conn = conn.upgrade(connector, &target.host, options).await?;
        capa = conn.pop3_capa().await?;
    }
    let mut mechs: Vec<String> = capa
        .iter()
        .filter_map(|c| c.strip_prefix("SASL "))
        .flat_map(|m| m.split_whitespace().map(str::to_owned))
        .collect();
    if capa.iter().any(|c| c.eq_ignore_ascii_case("USER")) {
        mechs.push("USER".into());
    }
    let _ = conn.send("QUIT").await;
    Ok(ProbeSuccess {
        address: IpAddr::from([0, 0, 0, 0]),
        greeting,
        auth_mechanisms: mechs,
        tls: conn.stream.tls_summary(),
    })
}

async fn probe_smtp(
    mut conn: Conn,
    connector: &TlsConnector,
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> Result<ProbeSuccess, ProbeFailure> {
    let greeting = conn.smtp_reply(220).await?;
    let greeting = greeting.into_iter().next().unwrap_or_default();
    conn.send(&format!("EHLO {}", options.ehlo_name)).await?;
    let mut ehlo = conn.smtp_reply(250).await?;
    if target.security == Security::Starttls {
        if !ehlo
            .iter()
            .skip(1)
            .any(|l| l.eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(ProbeFailure::NoStarttls);
        }
        conn.send("STARTTLS").await?;
        conn.smtp_reply(220).await?;
        conn = conn.upgrade(connector, &target.host, options).await?;
        conn.send(&format!("EHLO {}", options.ehlo_name)).await?;
        ehlo = conn.smtp_reply(250).await?;
    }
    let mechs = ehlo
        .iter()
        .skip(1)
        .find_map(|l| {
            let upper = l.to_ascii_uppercase();
            upper
                .strip_prefix("AUTH ")
                .or_else(|| upper.strip_prefix("AUTH="))
                .map(|m| m.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        })
        .unwrap_or_default();
    let _ = conn.send("QUIT").await;
    Ok(ProbeSuccess {
        address: IpAddr::from([0, 0, 0, 0]),
        greeting,
        auth_mechanisms: mechs,
        tls: conn.stream.tls_summary(),
    })
}

fn transport_failure(e: TransportError) -> ProbeFailure {
    match e {
        TransportError::Timeout { .. } => ProbeFailure::Timeout(e.to_string()),
        TransportError::Tls { .. } => ProbeFailure::Tls(e.to_string()),
        TransportError::Connect { .. } => ProbeFailure::Connect(e.to_string()),
        other => ProbeFailure::Connect(other.to_string()),
    }
}

struct Conn {
    stream: MailStream,
    reader: LineReader,
    io_timeout: Duration,
}

impl Conn {
    async fn line(&mut self) -> Result<String, ProbeFailure> {
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.next_line() {
                Ok(Some(line)) => return Ok(String::from_utf8_lossy(&line).into_owned()),
                Ok(None) => {}
                Err(e) => return Err(ProbeFailure::Protocol(e.to_string())),
            }
            let n = tokio::time::timeout(self.io_timeout, self.stream.read(&mut buf))
                .await
                .map_err(|_| ProbeFailure::Timeout("waiting for the server's reply".into()))?
                .map_err(|e| ProbeFailure::Connect(e.to_string()))?;
            if n == 0 {
                return Err(ProbeFailure::Protocol("connection closed".into()));
            }
            self.reader.extend(&buf[..n]);
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), ProbeFailure> {
        let data = format!("{command}\r\n");
        tokio::time::timeout(self.io_timeout, self.stream.write_all(data.as_bytes()))
            .await
            .map_err(|_| ProbeFailure::Timeout("sending".into()))?
            .map_err(|e| ProbeFailure::Connect(e.to_string()))?;
        tokio::time::timeout(self.io_timeout, self.stream.flush())
            .await
            .map_err(|_| ProbeFailure::Timeout("sending".into()))?
            .map_err(|e| ProbeFailure::Connect(e.to_string()))
    }

    async fn pop3_capa(&mut self) -> Result<Vec<String>, ProbeFailure> {
        self.send("CAPA").await?;
        let status = self.line().await?;
        if !status.starts_with("+OK") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        loop {
            let line = self.line().await?;
            if line == "." {
                return Ok(out);
            }
            if out.len() >= MAX_LINES {
                return Err(ProbeFailure::Protocol("CAPA list too long".into()));
            }
            out.push(line.strip_prefix('.').unwrap_or(&line).to_owned());
        }
    }

    /// Reads a (multi-line) SMTP reply and checks its code; returns the text of each line.
    async fn smtp_reply(&mut self, expected: u16) -> Result<Vec<String>, ProbeFailure> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            if code != Some(expected) {
                return Err(ProbeFailure::Protocol(line));
            }
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return Ok(lines);
            }
            if lines.len() >= MAX_LINES {
                return Err(ProbeFailure::Protocol("reply too long".into()));
            }
        }
    }

    async fn upgrade(
        self,
        connector: &TlsConnector,
        host: &str,
        options: &ProbeOptions,
    ) -> Result<Self, ProbeFailure> {
        if !self.reader.is_empty() {
            // Bytes after the go-ahead, before the handshake: a response injection.
            return Err(ProbeFailure::Protocol(
                "data received after the STARTTLS go-ahead".into(),
            ));
        }
        let name = server_name(host).map_err(transport_failure)?;
        let stream = self
            .stream
            .upgrade(connector, name, options.connect_timeout)
            .await
            .map_err(transport_failure)?;
        Ok(Self {
            stream,
            reader: LineReader::new(MAX_LINE),
            io_timeout: self.io_timeout,
        })
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
                (587, Security::Starttls),
                (25, Security::None),
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
