//! Login verification: log in to an account's servers, send nothing, and say exactly what failed.
//!
//! POP3: connect, `CAPA`, `STLS` when the settings say STARTTLS, log in, `QUIT`. SMTP: connect,
//! `EHLO`, `STARTTLS` when the settings say so, `AUTH`, `QUIT`; no mail transaction is ever
//! started. Both run on [`crate::connect`] (the same code the fetch and send paths use), so a
//! verification that passes means the real session will log in too.
//!
//! A failure is a [`VerifyFailure`], sorted from the servers' own words by
//! [`crate::diagnose`]; [`VerifyFailure::advice`] is a sentence a person can act on.
//!
//! ```no_run
//! use mail_account::Account;
//! use mail_account::verify::{LoginSecret, VerifyOptions, verify_account};
//!
//! # async fn run(account: &Account) {
//! let secret = LoginSecret::password("app-password");
//! let report = verify_account(account, &secret, &VerifyOptions::default()).await;
//! for (role, result) in report.results() {
//!     match result {
//!         Ok(ok) => println!("{role}: logged in with {} ({:?}) in {:?}", ok.mechanism, ok.tls, ok.elapsed),
//!         Err(failure) => println!("{role}: {failure}\n  {}", failure.advice()),
//!     }
//! }
//! # }
//! ```
//!
//! One server with settings of its own (a TLS name, a private CA, a local address):
//!
//! ```no_run
//! use mail_account::connect::ServerSettings;
//! use mail_account::settings::Security;
//! use mail_account::verify::{LoginSecret, verify_pop3};
//!
//! # async fn run() {
//! let mut server = ServerSettings::new("127.0.0.1", 995, Security::ImplicitTls, "ivan");
//! server.tls_name = Some("localhost".into());
//! let result = verify_pop3(&server, &LoginSecret::password("ivan-pass")).await;
//! # drop(result); }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mail_common::transport::TrustRoots;

pub use crate::connect::LoginSecret;
use crate::connect::{
    ServerSettings, pop3_authenticate, pop3_connect, smtp_authenticate, smtp_connect,
};
use crate::diagnose::classify_in_context;
pub use crate::diagnose::{VerifyFailure, classify};
use crate::settings::{Account, Protocol, Security};

/// How long a polite `QUIT` may take before the connection is simply dropped.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Which server a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The incoming (POP3) server.
    Incoming,
    /// The outgoing (SMTP submission) server.
    Outgoing,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Incoming => "incoming",
            Self::Outgoing => "outgoing",
        })
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifySuccess {
    /// Which server.
    pub role: Role,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The SASL mechanism (or `USER`, `APOP`; `none` for an SMTP server used without AUTH)
    /// that worked.
    pub mechanism: String,
    /// How the connection was protected, e.g. `implicit TLS, certificate valid for
    /// mail.example.org`; `None` without TLS.
    pub tls: Option<String>,
    /// From the start of the TCP connection to the end of the login.
    pub elapsed: Duration,
}

/// What [`verify_account`] changes in the settings it derives from an account.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Limit for the TCP connect, for each TLS handshake and for the server's greeting
    /// (default 15 s). A server that does not answer within it is
    /// [`VerifyFailure::PortBlocked`].
    pub setup_timeout: Duration,
    /// Trusted CAs instead of the account's (web PKI plus its `extra_ca_file`).
    pub trust_roots: Option<TrustRoots>,
    /// The name both certificates must carry instead of the host names.
    pub tls_name: Option<String>,
    /// The local address to connect to the POP3 server from (the SMTP adapter cannot bind one,
    /// so it is not used for the outgoing server).
    pub local_addr: Option<IpAddr>,
    /// Allows sending the credential without TLS to a server set to [`Security::Plaintext`].
    /// Dangerous: anyone on the path can read it. Off by default, and then such a server is
    /// [`VerifyFailure::CleartextRefused`] without anything being sent.
    pub allow_cleartext_credentials_dangerously: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            setup_timeout: Duration::from_secs(15),
            trust_roots: None,
            tls_name: None,
            local_addr: None,
            allow_cleartext_credentials_dangerously: false,
        }
    }
}

impl VerifyOptions {
    fn apply(&self, server: &mut ServerSettings) {
        server.setup_timeout = self.setup_timeout;
        server.greeting_timeout = Some(self.setup_timeout);
        if let Some(roots) = &self.trust_roots {
            server.trust_roots = roots.clone();
        }
        if let Some(name) = &self.tls_name {
            server.tls_name = Some(name.clone());
        }
        server.allow_cleartext_credentials_dangerously =
            self.allow_cleartext_credentials_dangerously;
    }
}

/// The result of [`verify_account`]: one entry per server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The incoming (POP3) server.
    pub incoming: Result<VerifySuccess, VerifyFailure>,
    /// The outgoing (SMTP submission) server.
    pub outgoing: Result<VerifySuccess, VerifyFailure>,
}

impl VerifyReport {
    /// True when both logins worked.
    pub fn is_ok(&self) -> bool {
        self.incoming.is_ok() && self.outgoing.is_ok()
    }

    /// Both results with their role, incoming first.
    pub fn results(&self) -> [(Role, &Result<VerifySuccess, VerifyFailure>); 2] {
        [
            (Role::Incoming, &self.incoming),
            (Role::Outgoing, &self.outgoing),
        ]
    }
}

/// Logs in to both servers of `account` at the same time and logs out; nothing is sent.
pub async fn verify_account(
    account: &Account,
    secret: &LoginSecret,
    options: &VerifyOptions,
) -> VerifyReport {
    let (incoming, outgoing) = tokio::join!(
        verify_incoming(account, secret, options),
        verify_outgoing(account, secret, options)
    );
    VerifyReport { incoming, outgoing }
}

/// Logs in to the incoming server of `account` (POP3) and logs out.
pub async fn verify_incoming(
    account: &Account,
    secret: &LoginSecret,
    options: &VerifyOptions,
) -> Result<VerifySuccess, VerifyFailure> {
    if account.incoming.protocol != Protocol::Pop3 {
        return Err(VerifyFailure::Other(format!(
            "the incoming server speaks {}; only POP3 can be verified",
            account.incoming.protocol
        )));
    }
    let mut server =
        ServerSettings::incoming(account).map_err(|e| VerifyFailure::Other(e.to_string()))?;
    options.apply(&mut server);
    server.local_addr = options.local_addr;
    verify_pop3(&server, secret).await
}

/// Logs in to the outgoing server of `account` (EHLO, STARTTLS, AUTH) and quits without
/// sending.
pub async fn verify_outgoing(
    account: &Account,
    secret: &LoginSecret,
    options: &VerifyOptions,
) -> Result<VerifySuccess, VerifyFailure> {
    let mut server =
        ServerSettings::outgoing(account).map_err(|e| VerifyFailure::Other(e.to_string()))?;
    options.apply(&mut server);
    verify_smtp(&server, secret).await
}

/// Connects to a POP3 server, logs in as `server` says and sends `QUIT`.
pub async fn verify_pop3(
    server: &ServerSettings,
    secret: &LoginSecret,
) -> Result<VerifySuccess, VerifyFailure> {
    let started = Instant::now();
    let mut session = pop3_connect(server)
        .await
        .map_err(|e| classify(&e, server))?;
    let login = pop3_authenticate(&mut session, server, secret).await;
    let tls = tls_summary(server, Protocol::Pop3, session.is_tls());
    let offered: Vec<String> = session
        .capabilities()
        .map(|caps| caps.sasl.clone())
        .unwrap_or_default();
    let elapsed = started.elapsed();
    quietly(session.quit(), "POP3").await;
    let method = login.map_err(|e| classify_in_context(&e, server, secret, &offered))?;
    Ok(VerifySuccess {
        role: Role::Incoming,
        protocol: Protocol::Pop3,
        mechanism: match method {
            pop3_proto::AuthMethod::UserPass => "USER".into(),
            pop3_proto::AuthMethod::Apop => "APOP".into(),
            pop3_proto::AuthMethod::Sasl(m) => m.name().into(),
            other => format!("{other:?}"),
        },
        tls,
        elapsed,
    })
}

/// Connects to an SMTP submission server, authenticates as `server` says and sends `QUIT`.
/// No mail transaction is started.
pub async fn verify_smtp(
    server: &ServerSettings,
    secret: &LoginSecret,
) -> Result<VerifySuccess, VerifyFailure> {
    let started = Instant::now();
    let mut session = smtp_connect(server)
        .await
        .map_err(|e| classify(&e, server))?;
    let auth = smtp_authenticate(&mut session, server, Some(secret)).await;
    let tls = tls_summary(server, Protocol::Smtp, session.is_tls());
    let offered = session.capabilities().auth_mechanisms().to_vec();
    let elapsed = started.elapsed();
    quietly(session.quit(), "SMTP").await;
    let mechanism = auth.map_err(|e| classify_in_context(&e, server, secret, &offered))?;
    Ok(VerifySuccess {
        role: Role::Outgoing,
        protocol: Protocol::Smtp,
        mechanism: mechanism.map_or_else(|| "none".into(), |m| m.name().into()),
        tls,
        elapsed,
    })
}

/// Says goodbye, without letting a slow or broken server hold up the result.
async fn quietly<E: fmt::Display>(quit: impl Future<Output = Result<(), E>>, protocol: &str) {
    match tokio::time::timeout(QUIT_GRACE, quit).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "{protocol} QUIT failed"),
        Err(_) => tracing::debug!("{protocol} QUIT timed out"),
    }
}

/// The adapters do not expose the negotiated TLS version and cipher suite; what is known for
/// sure is the mode and that the certificate was verified for the name.
fn tls_summary(server: &ServerSettings, protocol: Protocol, is_tls: bool) -> Option<String> {
    if !is_tls {
        return None;
    }
    let mode = match (server.security, protocol) {
        (Security::StartTls, Protocol::Pop3) => "STLS",
        (Security::StartTls, _) => "STARTTLS",
        _ => "implicit TLS",
    };
    let name = server.tls_name.as_deref().unwrap_or(&server.host);
    Some(format!("{mode}, certificate valid for {name}"))
}

// ---- the trait --------------------------------------------------------------------------

/// Logs in to an account's servers without sending mail.
pub trait Verifier: Send + Sync {
    /// Logs in to the incoming server and logs out.
    fn verify_incoming(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send;

    /// Logs in to the outgoing server (EHLO, STARTTLS, AUTH) and quits without sending.
    fn verify_outgoing(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send;
}

/// The [`Verifier`] that talks to the real servers ([`verify_incoming`], [`verify_outgoing`]).
#[derive(Debug, Clone, Default)]
pub struct NetworkVerifier {
    /// Applied to both servers.
    pub options: VerifyOptions,
}

impl Verifier for NetworkVerifier {
    fn verify_incoming(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send {
        verify_incoming(account, secret, &self.options)
    }

    fn verify_outgoing(
        &self,
        account: &Account,
        secret: &LoginSecret,
    ) -> impl Future<Output = Result<VerifySuccess, VerifyFailure>> + Send {
        verify_outgoing(account, secret, &self.options)
    }
}
