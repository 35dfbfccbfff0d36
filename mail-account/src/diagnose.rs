//! Diagnosis: what went wrong, in terms a person (or a command line's exit status) can act on.
//!
//! One classification system for every session failure of this crate:
//! - [`FailureKind`]: the coarse kind (network, TLS, authentication, protocol, timeout, refused,
//!   settings, local I/O), for exit statuses and one-line messages: both adapters' errors
//!   answer it with `kind()`, [`crate::connect::ConnectError::kind`] for a login failure.
//! - [`VerifyFailure`]: the fine diagnosis of a failed login, sorted from the servers' own
//!   words: the RFC 2449/3206 response codes of POP3 (`[AUTH]`, `[SYS/PERM]`, `[IN-USE]`, ...),
//!   the SMTP reply and enhanced status codes (535 5.7.8, 534 5.7.9, 538 5.7.11, ...), the
//!   phrases big providers use (Gmail's "Application-specific password required" and "Web
//!   login required", Outlook's "BasicAuthBlocked" and 5.7.139, Dovecot's "Plaintext
//!   authentication disallowed"), and the rustls certificate errors.
//!   [`VerifyFailure::advice`] is a sentence a person can act on; [`VerifyFailure::kind`] is
//!   its [`FailureKind`].

use std::io;

use mail_common::transport::{ConnectionError, SetupPhase, TransportError};
use pop3_proto::tokio as pop3;
use smtp_submit::tokio as smtp;

use crate::connect::{ConnectError, LoginSecret, ServerSettings};
use crate::settings::Security;

/// The kind of a failure, for advice and for a command line's one-line message: what both
/// adapters' errors answer with `kind()`.
pub use mail_common::FailureKind;

/// Why a login failed, classified for advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The server rejected the username or password.
    #[error("wrong username or password (server: {server_text})")]
    WrongPassword {
        /// The server's words.
        server_text: String,
    },
    /// The provider wants an app password rather than the account password.
    #[error("an app password is required (server: {server_text})")]
    AppPasswordRequired {
        /// The server's words.
        server_text: String,
    },
    /// POP access is switched off in the provider's web settings.
    #[error("POP access is disabled at the provider (server: {server_text})")]
    PopDisabled {
        /// The server's words.
        server_text: String,
    },
    /// Only OAuth2 is accepted.
    #[error("the server accepts only OAuth2")]
    OAuth2Required,
    /// The certificate is not valid for the host (or not from a trusted CA).
    #[error("the certificate of {host} is not valid: {reason}")]
    CertificateInvalid {
        /// The host name checked.
        host: String,
        /// What rustls reported.
        reason: String,
    },
    /// No answer before the deadline, or the connection refused: a firewall or the provider
    /// blocks the port (or nothing listens on it).
    #[error("{host}:{port} did not answer (port blocked?)")]
    PortBlocked {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// Authentication without TLS was refused: by the server, or by this client, which does not
    /// send a credential in the clear unless told to.
    #[error("the server refuses authentication without TLS")]
    CleartextRefused,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl VerifyFailure {
    /// The coarse kind of this failure (for an exit status): a certificate or a refused
    /// cleartext login is TLS, a port that does not answer a timeout, an unexplained failure
    /// a protocol one, the rest authentication.
    pub const fn kind(&self) -> FailureKind {
        match self {
            Self::CertificateInvalid { .. } | Self::CleartextRefused => FailureKind::Tls,
            Self::PortBlocked { .. } => FailureKind::Timeout,
            Self::Other(_) => FailureKind::Protocol,
            Self::WrongPassword { .. }
            | Self::AppPasswordRequired { .. }
            | Self::PopDisabled { .. }
            | Self::OAuth2Required => FailureKind::Auth,
        }
    }

    /// Advice a person can act on.
    pub fn advice(&self) -> String {
        match self {
            Self::WrongPassword { .. } => "Check the username and password. Some providers \
                want the full address as username, others only the part before @."
                .into(),
            Self::AppPasswordRequired { .. } => "Create an app password in the provider's \
                account security settings and use it instead of the account password."
                .into(),
            Self::PopDisabled { .. } => "Switch POP access on in the provider's web mail \
                settings, then try again."
                .into(),
            Self::OAuth2Required => "This provider accepts only OAuth2 sign-in: sign in with \
                OAuth2 (mailctl login ADDRESS) so that the account's credential is oauth2."
                .into(),
            Self::CertificateInvalid { host, .. } => format!(
                "The server's certificate does not prove it is {host}. Check the host name; \
                 for a private CA, add its certificate as extra_ca_file."
            ),
            Self::PortBlocked { port, .. } => format!(
                "Nothing answered on port {port}. The network may block it; try the other \
                 submission port (465 or 587) or another network."
            ),
            Self::CleartextRefused => "Use implicit TLS or STARTTLS for this server.".into(),
            Self::Other(_) => "See the server's message above.".into(),
        }
    }
}

/// Sorts a failure of [`crate::connect`] into a [`VerifyFailure`]. `server` gives the context
/// the error itself does not carry (the TLS mode, for timeouts and missing AUTH).
pub fn classify(error: &ConnectError, server: &ServerSettings) -> VerifyFailure {
    match error {
        ConnectError::Pop3 { host, port, error } => classify_pop3(error, server, host, *port),
        ConnectError::Smtp { host, port, error } => classify_smtp(error, server, host, *port),
        ConnectError::Config(text) => VerifyFailure::Other(text.clone()),
    }
}

/// [`classify`], knowing also the secret and the mechanisms the server offered: a password
/// for a server that offers only OAuth2 mechanisms is [`VerifyFailure::OAuth2Required`].
pub(crate) fn classify_in_context(
    error: &ConnectError,
    server: &ServerSettings,
    secret: &LoginSecret,
    offered: &[String],
) -> VerifyFailure {
    let no_method = match error {
        ConnectError::Pop3 { error, .. } => matches!(
            **error,
            pop3::Error::Misuse(pop3_proto::Misuse::NoSuitableMethod { .. })
        ),
        ConnectError::Smtp { error, .. } => matches!(
            **error,
            smtp::Error::Misuse(smtp_submit::Misuse::NoSuitableMethod { .. })
        ),
        ConnectError::Config(_) => false,
    };
    if no_method
        && matches!(secret, LoginSecret::Password(_))
        && !offered.is_empty()
        && offered.iter().all(|m| is_oauth_mechanism(m))
    {
        return VerifyFailure::OAuth2Required;
    }
    classify(error, server)
}

fn is_oauth_mechanism(name: &str) -> bool {
    name.eq_ignore_ascii_case("XOAUTH2") || name.eq_ignore_ascii_case("OAUTHBEARER")
}

fn classify_pop3(
    error: &pop3::Error,
    server: &ServerSettings,
    host: &str,
    port: u16,
) -> VerifyFailure {
    use pop3::Error;
    match error {
        Error::Connection(connection) => {
            classify_connection(connection, &pop3_proto::Phase::Greeting, server, host, port)
        }
        Error::LoginFailed(failure) => classify_pop3_response(&failure.response),
        Error::Misuse(pop3_proto::Misuse::CleartextCredentials) => VerifyFailure::CleartextRefused,
        Error::Misuse(pop3_proto::Misuse::NoSuitableMethod { .. })
            if server.security == Security::Plaintext =>
        {
            // Servers hide their password mechanisms until TLS is up.
            VerifyFailure::CleartextRefused
        }
        Error::GreetingRefused(response) | Error::Refused { response, .. } => {
            match classify_pop3_response(response) {
                // A refusal outside the login is not about the password.
                VerifyFailure::WrongPassword { server_text } => VerifyFailure::Other(server_text),
                other => other,
            }
        }
        other => VerifyFailure::Other(other.to_string()),
    }
}

fn classify_smtp(
    error: &smtp::Error,
    server: &ServerSettings,
    host: &str,
    port: u16,
) -> VerifyFailure {
    use smtp::Error;
    match error {
        Error::Connection(connection) => classify_connection(
            connection,
            &smtp_submit::Phase::Greeting,
            server,
            host,
            port,
        ),
        Error::Auth { failure, .. } => match failure {
            smtp_submit::AuthFailure::Refused(reply)
            | smtp_submit::AuthFailure::Cancelled { reply, .. }
            | smtp_submit::AuthFailure::TokenRefused { reply, .. } => classify_smtp_reply(reply),
            _ => VerifyFailure::Other(error.to_string()),
        },
        Error::Misuse(smtp_submit::Misuse::CleartextCredentials) => VerifyFailure::CleartextRefused,
        Error::Misuse(
            smtp_submit::Misuse::ExtensionNotOffered(smtp_submit::Extension::Auth)
            | smtp_submit::Misuse::NoSuitableMethod { .. },
        ) if server.security == Security::Plaintext => {
            // Submission servers hide AUTH (or the password mechanisms) until STARTTLS.
            VerifyFailure::CleartextRefused
        }
        Error::Refused { reply, .. } => match classify_smtp_reply(reply) {
            VerifyFailure::WrongPassword { server_text } => VerifyFailure::Other(server_text),
            other => other,
        },
        other => VerifyFailure::Other(other.to_string()),
    }
}

/// A connect or greeting that never completes is a swallowed port, and so is a TLS handshake
/// that never completes on an implicit-TLS port; any other silence is the server's.
fn classify_connection<P: PartialEq + std::fmt::Display>(
    error: &ConnectionError<P>,
    greeting: &P,
    server: &ServerSettings,
    host: &str,
    port: u16,
) -> VerifyFailure {
    let blocked = match error {
        ConnectionError::Transport(transport) => return classify_transport(transport, host, port),
        ConnectionError::Timeout(timeout) => match timeout.setup_phase() {
            Some(SetupPhase::Connect) => true,
            Some(SetupPhase::TlsHandshake) => server.security == Security::ImplicitTls,
            _ => timeout.server_phase() == Some(greeting),
        },
        _ => false,
    };
    if blocked {
        VerifyFailure::PortBlocked {
            host: host.to_owned(),
            port,
        }
    } else {
        VerifyFailure::Other(error.to_string())
    }
}

fn classify_transport(error: &TransportError, host: &str, port: u16) -> VerifyFailure {
    match error {
        // Silence in plaintext on a port that expects implicit TLS: the TLS mode is wrong, and
        // the error's text says so. Elsewhere a silent server is a swallowed port.
        TransportError::NoGreeting {
            implicit_tls: false,
            port: silent,
            ..
        } if mail_common::transport::is_implicit_tls_port(*silent) => {
            VerifyFailure::Other(error.to_string())
        }
        TransportError::NoGreeting { .. }
        | TransportError::Timeout {
            phase: SetupPhase::Connect,
            ..
        } => VerifyFailure::PortBlocked {
            host: host.to_owned(),
            port,
        },
        TransportError::Connect { source, .. }
            if matches!(
                source.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            ) =>
        {
            VerifyFailure::PortBlocked {
                host: host.to_owned(),
                port,
            }
        }
        TransportError::Tls {
            server_name,
            source,
        } => match certificate_problem(source) {
            Some(reason) => VerifyFailure::CertificateInvalid {
                host: server_name.clone(),
                reason,
            },
            None => VerifyFailure::Other(error.to_string()),
        },
        other => VerifyFailure::Other(other.to_string()),
    }
}

/// The certificate problem behind a failed handshake, if it was one (and not, say, a peer that
/// does not speak TLS).
fn certificate_problem(source: &io::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(problem) = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())?
    else {
        return None;
    };
    let what = match problem {
        C::UnknownIssuer => "not issued by a trusted certificate authority".to_owned(),
        C::NotValidForName => "not valid for this name".to_owned(),
        C::NotValidForNameContext { presented, .. } => {
            format!(
                "not valid for this name (it is for {})",
                presented.join(", ")
            )
        }
        C::Expired | C::ExpiredContext { .. } => "expired".to_owned(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".to_owned(),
        C::Revoked => "revoked".to_owned(),
        C::BadSignature => "badly signed".to_owned(),
        other => format!("{other:?}"),
    };
    Some(format!("{what} ({problem})"))
}

/// How a refusal is coded, for [`classify_text`].
#[derive(Debug, Clone, Copy)]
enum Coded<'a> {
    /// A POP3 `-ERR` and its response code.
    Pop3(Option<&'a pop3_proto::ResponseCode>),
    /// An SMTP reply code and enhanced status code.
    Smtp(u16, Option<smtp_submit::EnhancedStatusCode>),
}

fn classify_pop3_response(response: &pop3_proto::Response) -> VerifyFailure {
    let server_text = match &response.code {
        Some(code) => format!("[{}] {}", pop3_code_name(code), response.text),
        None => response.text.clone(),
    };
    classify_text(
        Coded::Pop3(response.code.as_ref()),
        &response.text,
        server_text,
    )
}

fn pop3_code_name(code: &pop3_proto::ResponseCode) -> &str {
    use pop3_proto::ResponseCode as R;
    match code {
        R::InUse => "IN-USE",
        R::LoginDelay => "LOGIN-DELAY",
        R::SysTemp => "SYS/TEMP",
        R::SysPerm => "SYS/PERM",
        R::Auth => "AUTH",
        R::Utf8 => "UTF8",
        R::Other(other) => other,
        _ => "?",
    }
}

fn classify_smtp_reply(reply: &smtp_submit::Reply) -> VerifyFailure {
    classify_text(
        Coded::Smtp(reply.code(), reply.enhanced()),
        &reply.text(),
        reply.to_string(),
    )
}

fn has_any(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| text.contains(p))
}

/// Phrases of servers that refuse a password without TLS (Dovecot, Postfix, RFC 4954 538).
const CLEARTEXT: &[&str] = &[
    "plaintext authentication disallowed",
    "plaintext authentication disabled",
    "plaintext authentication not allowed",
    "cleartext authentication",
    "must issue a starttls command first",
    "encryption required",
    "tls required",
    "ssl required",
    "requires tls",
    "requires ssl",
    "use stls",
];

/// Phrases of providers that want an app password (Gmail, Yahoo/AOL) or a web sign-in first.
const APP_PASSWORD: &[&str] = &[
    "application-specific password",
    "application specific password",
    "app-specific password",
    "app password",
    "web login required",
    "log in via your web browser",
    "login via your web browser",
    "sign in via your web browser",
];

/// Phrases of providers that switched basic (password) authentication off (Microsoft).
const OAUTH2: &[&str] = &[
    "basicauthblocked",
    "basic authentication is disabled",
    "basic auth is disabled",
    "basic authentication is not supported",
    "did not meet the criteria to be authenticated",
    "security defaults policy",
    "oauth2 required",
    "oauth is required",
];

/// Phrases of a refused password.
const WRONG_PASSWORD: &[&str] = &[
    "authentication failed",
    "authentication failure",
    "authentication unsuccessful",
    "invalid credentials",
    "credentials invalid",
    "incorrect authentication data",
    "username and password not accepted",
    "logon failure",
    "bad password",
    "invalid password",
    "incorrect password",
    "invalid login",
    "login failed",
];

/// Phrases of a server that refuses for a while after failures (not a verdict on the password).
const LOCKED_OUT: &[&str] = &["too many", "try again later", "temporarily"];

/// Whether a POP3 text says POP is switched off: the word POP (or POP3) and a word of
/// refusal, as in Gmail's "Your account is not enabled for POP access".
fn says_pop_disabled(lower: &str) -> bool {
    let mentions_pop = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "pop" || word == "pop3");
    mentions_pop
        && has_any(
            lower,
            &[
                "disabled",
                "not enabled",
                "not allowed",
                "not permitted",
                "enable",
            ],
        )
}

/// The classifier proper: the server's words (and codes) into a [`VerifyFailure`]. The most
/// specific verdict wins: cleartext, then POP disabled, app password, OAuth2, a lock-out, and
/// only then a wrong password.
fn classify_text(coded: Coded<'_>, text: &str, server_text: String) -> VerifyFailure {
    use pop3_proto::ResponseCode as R;
    let lower = text.to_ascii_lowercase();
    let (smtp_code, esc) = match coded {
        Coded::Smtp(code, esc) => (Some(code), esc.map(|e| (e.class, e.subject, e.detail))),
        Coded::Pop3(_) => (None, None),
    };
    let pop3_code = match coded {
        Coded::Pop3(code) => code,
        Coded::Smtp(..) => None,
    };

    // Outlook's tenant switch for SMTP AUTH: neither a password nor OAuth2 helps.
    if lower.contains("smtpclientauthentication is disabled") {
        return VerifyFailure::Other(server_text);
    }
    if has_any(&lower, CLEARTEXT) || smtp_code == Some(538) || esc == Some((5, 7, 11)) {
        return VerifyFailure::CleartextRefused;
    }
    if matches!(coded, Coded::Pop3(_)) && says_pop_disabled(&lower) {
        return VerifyFailure::PopDisabled { server_text };
    }
    if has_any(&lower, APP_PASSWORD)
        || smtp_code == Some(534)
        || matches!(esc, Some((5, 7, 9 | 14)))
    {
        return VerifyFailure::AppPasswordRequired { server_text };
    }
    if has_any(&lower, OAUTH2) || esc == Some((5, 7, 139)) {
        return VerifyFailure::OAuth2Required;
    }
    // Locks, delays and system trouble (RFC 2449, 3206), SMTP 4yz: not about the password.
    if matches!(
        pop3_code,
        Some(R::InUse | R::LoginDelay | R::SysTemp | R::SysPerm)
    ) || matches!(smtp_code, Some(400..=499))
        || has_any(&lower, LOCKED_OUT)
    {
        return VerifyFailure::Other(server_text);
    }
    if matches!(pop3_code, Some(R::Auth))
        || smtp_code == Some(535)
        || matches!(esc, Some((5, 7, 8)))
        || has_any(&lower, WRONG_PASSWORD)
    {
        return VerifyFailure::WrongPassword { server_text };
    }
    // A POP3 login refused without a code and without a known phrase: RFC 1939 servers say
    // only "-ERR" for a bad password, and that is by far the most common reason.
    if matches!(coded, Coded::Pop3(None)) {
        return VerifyFailure::WrongPassword { server_text };
    }
    VerifyFailure::Other(server_text)
}

#[cfg(test)]
mod tests {
    use super::{Coded, VerifyFailure, classify_pop3_response, classify_smtp_reply, classify_text};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum K {
        Wrong,
        AppPw,
        PopOff,
        OAuth,
        Clear,
        Other,
    }

    fn kind(f: &VerifyFailure) -> K {
        match f {
            VerifyFailure::WrongPassword { .. } => K::Wrong,
            VerifyFailure::AppPasswordRequired { .. } => K::AppPw,
            VerifyFailure::PopDisabled { .. } => K::PopOff,
            VerifyFailure::OAuth2Required => K::OAuth,
            VerifyFailure::CleartextRefused => K::Clear,
            VerifyFailure::Other(_) => K::Other,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The text after `-ERR `, as servers send it.
    fn pop3(after_err: &str) -> VerifyFailure {
        classify_pop3_response(&pop3_proto::parse::response(after_err.as_bytes()))
    }

    /// A whole reply, lines separated by CRLF.
    fn smtp(reply: &str) -> VerifyFailure {
        let mut reader = smtp_submit::reply::ReplyReader::new(4096);
        reader.extend(reply.as_bytes());
        let reply = reader
            .next_reply(32)
            .expect("well-formed")
            .expect("complete");
        classify_smtp_reply(&reply)
    }

    #[test]
    fn pop3_texts() {
        let table = [
            // Dovecot
            ("[AUTH] Authentication failed.", K::Wrong),
            (
                "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
                K::Clear,
            ),
            ("[AUTH] Plaintext authentication disabled.", K::Clear),
            ("[IN-USE] Couldn't open INBOX: Mailbox is locked", K::Other),
            (
                "[SYS/TEMP] Internal error occurred. Refer to server log.",
                K::Other,
            ),
            ("[LOGIN-DELAY] Logged in too recently", K::Other),
            // Gmail
            ("[AUTH] Username and password not accepted.", K::Wrong),
            (
                "[AUTH] Application-specific password required: \
                 https://support.google.com/accounts/answer/185833",
                K::AppPw,
            ),
            (
                "[AUTH] Web login required: https://support.google.com/mail/answer/78754",
                K::AppPw,
            ),
            (
                "[SYS/PERM] Your account is not enabled for POP access. Please visit your \
                 Gmail settings page and enable your account for POP access.",
                K::PopOff,
            ),
            // Outlook / Exchange Online
            (
                "Logon failure: unknown user name or bad password.",
                K::Wrong,
            ),
            ("Authentication failure: BasicAuthBlocked", K::OAuth),
            // Yahoo / AOL
            ("[AUTH] Invalid credentials", K::Wrong),
            (
                "[AUTH] Please log in via your web browser: \
                 https://help.yahoo.com/kb/new-mail-for-desktop-sln3792.html",
                K::AppPw,
            ),
            (
                "[SYS/PERM] POP3 access is disabled for this account",
                K::PopOff,
            ),
            ("[SYS/PERM] Server error", K::Other),
            // RFC 1939 servers without response codes
            ("invalid password", K::Wrong),
            ("", K::Wrong),
            (
                "[SYS/TEMP] Too many login failures, try again later",
                K::Other,
            ),
        ];
        for (text, expected) in table {
            assert_eq!(kind(&pop3(text)), expected, "-ERR {text}");
        }
    }

    #[test]
    fn smtp_texts() {
        let table = [
            // Postfix + Dovecot SASL
            (
                "535 5.7.8 Error: authentication failed: authentication failure\r\n",
                K::Wrong,
            ),
            (
                "530 5.7.0 Must issue a STARTTLS command first\r\n",
                K::Clear,
            ),
            (
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
                K::Clear,
            ),
            ("454 4.7.0 Temporary authentication failure\r\n", K::Other),
            // Gmail
            (
                "535-5.7.8 Username and Password not accepted. For more information, go to\r\n\
                 535 5.7.8  https://support.google.com/mail/?p=BadCredentials\r\n",
                K::Wrong,
            ),
            (
                "534-5.7.9 Application-specific password required. For more information, go to\r\n\
                 534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor\r\n",
                K::AppPw,
            ),
            (
                "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1>\r\n\
                 534-5.7.14 Please log in via your web browser and then try again.\r\n\
                 534 5.7.14  Learn more at https://support.google.com/mail/answer/78754\r\n",
                K::AppPw,
            ),
            // RFC 4954 without a provider phrase
            (
                "534 5.7.9 Authentication mechanism is too weak\r\n",
                K::AppPw,
            ),
            ("535 Incorrect authentication data\r\n", K::Wrong),
            // Outlook / Office 365
            ("535 5.7.3 Authentication unsuccessful\r\n", K::Wrong),
            (
                "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.\r\n",
                K::OAuth,
            ),
            (
                "535 5.7.139 Authentication unsuccessful, the request did not meet the \
                 criteria to be authenticated successfully. Contact your administrator.\r\n",
                K::OAuth,
            ),
            (
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled \
                 for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n",
                K::Other,
            ),
            // Yahoo / AOL
            (
                "535 5.7.0 (#AUTH005) Too many bad auth attempts.\r\n",
                K::Other,
            ),
            ("535 5.7.0 (#AUTH012) Authentication failed\r\n", K::Wrong),
            // Exim, iCloud, GMX
            (
                "535 5.7.8 Error: authentication failed: bad user name or password\r\n",
                K::Wrong,
            ),
            ("535 Authentication credentials invalid\r\n", K::Wrong),
            ("504 5.5.4 Unrecognized authentication type\r\n", K::Other),
        ];
        for (text, expected) in table {
            assert_eq!(kind(&smtp(text)), expected, "{text}");
        }
    }

    #[test]
    fn server_text_is_kept() {
        let failure = pop3("[AUTH] Authentication failed.");
        assert_eq!(
            failure,
            VerifyFailure::WrongPassword {
                server_text: "[AUTH] Authentication failed.".into()
            }
        );
        let failure = smtp("535 5.7.8 Error: authentication failed: authentication failure\r\n");
        assert_eq!(
            failure,
            VerifyFailure::WrongPassword {
                server_text: "535 5.7.8 Error: authentication failed: authentication failure"
                    .into()
            }
        );
        // POP disabled is only read from POP3 texts.
        let failure = classify_text(
            Coded::Smtp(550, None),
            "POP access is disabled",
            "550 POP access is disabled".into(),
        );
        assert!(matches!(failure, VerifyFailure::Other(_)));
    }

    #[test]
    fn advice_names_the_port_and_host() {
        let blocked = VerifyFailure::PortBlocked {
            host: "smtp.example.org".into(),
            port: 587,
        };
        assert!(blocked.advice().contains("587"));
        let cert = VerifyFailure::CertificateInvalid {
            host: "pop.example.org".into(),
            reason: "expired".into(),
        };
        assert!(cert.advice().contains("pop.example.org"));
    }

    #[test]
    fn a_login_diagnosis_has_one_coarse_kind() {
        use super::FailureKind;
        let cases = [
            (VerifyFailure::CleartextRefused, FailureKind::Tls),
            (
                VerifyFailure::CertificateInvalid {
                    host: "h".into(),
                    reason: "expired".into(),
                },
                FailureKind::Tls,
            ),
            (
                VerifyFailure::PortBlocked {
                    host: "h".into(),
                    port: 465,
                },
                FailureKind::Timeout,
            ),
            (VerifyFailure::Other("?".into()), FailureKind::Protocol),
            (VerifyFailure::OAuth2Required, FailureKind::Auth),
            (
                VerifyFailure::AppPasswordRequired {
                    server_text: "x".into(),
                },
                FailureKind::Auth,
            ),
        ];
        for (failure, kind) in cases {
            assert_eq!(failure.kind(), kind, "{failure:?}");
        }
    }
}
