//! Logging in to an account's servers: from settings to a logged-in POP3 session or an
//! authenticated SMTP session, with failures sorted into the kinds a person (or a CLI exit
//! message) can act on.
//!
//! ```no_run
//! use mail_account::connect::{LoginSecret, ServerSettings, pop3_login};
//! use mail_account::settings::Security;
//!
//! # async fn run() -> Result<(), mail_account::connect::ConnectError> {
//! let server = ServerSettings::new("pop.example.org", 995, Security::ImplicitTls, "alice");
//! let session = pop3_login(&server, &LoginSecret::password("secret")).await?;
//! # drop(session); Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use mail_common::Secret;
use mail_common::connection::ConnectOptions;
use mail_common::sasl::{Credentials, Mechanism};
use mail_common::transport::{SetupTimeouts, TrustRoots};
use pop3_proto::tokio as pop3;
use smtp_submit::tokio as smtp;

use crate::diagnose::FailureKind;
use crate::oauth::OAuth2Credential;
use crate::settings::{Account, AuthMethod, Credential, CredentialError, Security};

/// What to log in with.
#[derive(Clone)]
#[non_exhaustive]
pub enum LoginSecret {
    /// A password (or app password).
    Password(Secret<String>),
    /// An OAuth2 access token.
    OAuth2Token(Secret<String>),
}

impl LoginSecret {
    /// A password.
    pub fn password(password: impl Into<String>) -> Self {
        Self::Password(Secret::new(password.into()))
    }

    /// A password from the environment variable `var`.
    ///
    /// # Errors
    ///
    /// [`CredentialError::EnvMissing`] when it is not set (or not Unicode).
    pub fn from_env(var: &str) -> Result<Self, CredentialError> {
        std::env::var(var)
            .map(Self::password)
            .map_err(|_| CredentialError::EnvMissing(var.to_owned()))
    }

    /// The secret to log in to `account` with, by precedence: a password from the environment
    /// variable `password_env` names (the caller's explicit choice for this run, such as a
    /// command-line flag) wins over the account's credential; an OAuth 2.0 credential gives
    /// the access token `oauth2_token` returns (the caller owns the token store and any sign-in
    /// prompt); any other credential gives its password (inline, environment, command,
    /// keyring). `Ok(None)`: the account has no credential and none was given.
    ///
    /// # Errors
    ///
    /// The environment variable unset, the credential unusable, or what `oauth2_token`
    /// returns.
    pub fn for_account<E: From<CredentialError>>(
        account: &Account,
        password_env: Option<&str>,
        oauth2_token: impl FnOnce(&OAuth2Credential) -> Result<Secret<String>, E>,
    ) -> Result<Option<Self>, E> {
        if let Some(var) = password_env {
            return Ok(Some(Self::from_env(var)?));
        }
        match &account.credential {
            None => Ok(None),
            Some(Credential::OAuth2(oauth)) => {
                oauth2_token(oauth).map(|t| Some(Self::OAuth2Token(t)))
            }
            Some(credential) => Ok(Some(Self::Password(credential.password()?))),
        }
    }

    fn credentials(&self, username: &str) -> Credentials {
        match self {
            Self::Password(p) => Credentials::password(username, p.expose().as_str()),
            Self::OAuth2Token(t) => Credentials::oauth2(username, t.expose().as_str()),
        }
    }
}

impl fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Password(_) => "Password(<redacted>)",
            Self::OAuth2Token(_) => "OAuth2Token(<redacted>)",
        })
    }
}

/// How to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoginMethod {
    /// The strongest method both sides support (SCRAM first; APOP or USER/PASS for POP3 only
    /// when no SASL mechanism fits).
    #[default]
    Auto,
    /// POP3 `USER`/`PASS`.
    Pop3User,
    /// POP3 `APOP`.
    Pop3Apop,
    /// This SASL mechanism exactly.
    Sasl(Mechanism),

    /// No authentication (SMTP only).
    None,
}

impl LoginMethod {
    /// Parses a name as given on a command line: `auto`, `user`, `apop`, `none`, or a SASL
    /// mechanism name (`plain`, `login`, `cram-md5`, `scram-sha-1`, `scram-sha-256`, `xoauth2`,
    /// `oauthbearer`, `ntlm`), case-insensitive.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "user" => Some(Self::Pop3User),
            "apop" => Some(Self::Pop3Apop),
            "none" => Some(Self::None),
            other => Mechanism::from_name(&other.to_ascii_uppercase()).map(Self::Sasl),
        }
    }
}

/// One server, fully resolved: where, how protected, who logs in and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub security: Security,
    /// The login name.
    pub username: String,
    /// The authentication method.
    pub login: LoginMethod,
    /// Trusted certificate authorities.
    pub trust_roots: TrustRoots,
    /// The name the certificate must carry (default: `host`).
    pub tls_name: Option<String>,
    /// Allows sending a credential without TLS ([`Security::Plaintext`]). Off by default: a
    /// password over a cleartext connection can be read by anyone on the path.
    pub allow_cleartext_credentials_dangerously: bool,
    /// Limit for the TCP connect and for the TLS handshake, each.
    pub setup_timeout: Duration,
    /// The local address to connect from (`None`: the system chooses).
    pub local_addr: Option<IpAddr>,
    /// Limit for the server's greeting (`None`: the protocol crate's default, 60 s for POP3
    /// and 30 s for SMTP). A port that expects implicit TLS says nothing to a plaintext
    /// client: the timeout error then names that likely cause.
    pub greeting_timeout: Option<Duration>,
    /// Limit for the greeting and for every later reply and piece of data (`None`: the
    /// protocol crates' per-phase defaults, up to 10 minutes for SMTP's end of data). Set it
    /// to make a stalled server fail fast; it overrides `greeting_timeout`.
    pub reply_timeout: Option<Duration>,
}

impl ServerSettings {
    /// A server with the web PKI roots, automatic login and a 30 s set-up limit.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        security: Security,
        username: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            security,
            username: username.into(),
            login: LoginMethod::Auto,
            trust_roots: TrustRoots::WebPki,
            tls_name: None,
            allow_cleartext_credentials_dangerously: false,
            setup_timeout: Duration::from_secs(30),
            local_addr: None,
            greeting_timeout: None,
            reply_timeout: None,
        }
    }

    /// Refuses, before any connection is made, settings that would send a credential
    /// without TLS, unless [`ServerSettings::allow_cleartext_credentials_dangerously`] is set. The
    /// protocol clients refuse it too, at login time; this says so up front, in words.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] naming the risk.
    pub fn check_cleartext(&self) -> Result<(), ConnectError> {
        if self.security == Security::Plaintext
            && self.login != LoginMethod::None
            && !self.allow_cleartext_credentials_dangerously
        {
            return Err(ConnectError::Config(
                "refusing to send a password without TLS: anyone on the path could read it".into(),
            ));
        }
        Ok(())
    }

    /// The incoming server of `account`.
    ///
    /// # Errors
    ///
    /// When the username template needs a value the address does not give.
    pub fn incoming(account: &Account) -> Result<Self, ConnectError> {
        let server = &account.incoming;
        Self::from_parts(
            account,
            &server.host,
            server.port,
            server.security,
            &server.username,
            server.auth,
            server.mechanism.as_deref(),
        )
    }

    /// The outgoing server of `account`.
    ///
    /// # Errors
    ///
    /// When the username template needs a value the address does not give.
    pub fn outgoing(account: &Account) -> Result<Self, ConnectError> {
        let server = &account.outgoing;
        Self::from_parts(
            account,
            &server.host,
            server.port,
            server.security,
            &server.username,
            server.auth,
            server.mechanism.as_deref(),
        )
    }

    fn from_parts(
        account: &Account,
        host: &str,
        port: u16,
        security: Security,
        username: &crate::settings::Username,
        auth: AuthMethod,
        mechanism: Option<&str>,
    ) -> Result<Self, ConnectError> {
        let address = crate::EmailAddress::parse(&account.address)
            .map_err(|e| ConnectError::Config(format!("address: {e}")))?;
        let username = username
            .resolve(&address)
            .map_err(|e| ConnectError::Config(format!("username: {e}")))?;
        let mut settings = Self::new(host, port, security, username);
        settings.login = match (auth, mechanism) {
            (AuthMethod::None, _) => LoginMethod::None,
            // The account names the mechanism (`mechanism = "plain"`: one round trip instead
            // of SCRAM's three, at the price of sending the password inside TLS).
            (_, Some(name)) => LoginMethod::parse(name).ok_or_else(|| {
                ConnectError::Config(format!(
                    "mechanism {name:?}: not auto, user, apop or a SASL mechanism name"
                ))
            })?,
            // With a token, Auto picks OAUTHBEARER or XOAUTH2, whichever the server offers
            // (Outlook.com offers XOAUTH2 only).
            _ => LoginMethod::Auto,
        };
        settings.trust_roots = account.tls.trust_roots();
        Ok(settings)
    }

    /// Where and how to connect, for either adapter.
    fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.host.clone())
            .with_port(self.port)
            .with_trust_roots(self.trust_roots.clone())
            .with_timeouts(SetupTimeouts::uniform(self.setup_timeout));
        options.tls_name.clone_from(&self.tls_name);
        options.local_addr = self.local_addr;
        options
    }
}

/// Logging in failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The POP3 session failed.
    #[error("POP3 {}:{}: {error}", .host, .port)]
    Pop3 {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What happened.
        error: Box<pop3::Error>,
    },
    /// The SMTP session failed.
    #[error("SMTP {}:{}: {error}", .host, .port)]
    Smtp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What happened.
        error: Box<smtp::Error>,
    },
    /// The settings or the credential are unusable.
    #[error("{0}")]
    Config(String),
}

impl ConnectError {
    /// When the server refused an OAuth 2.0 token: its decoded JSON error challenge (status,
    /// required scope). [`crate::oauth::refusal_advice`] turns it into advice.
    pub fn oauth_refusal(&self) -> Option<&mail_common::sasl::OAuthErrorChallenge> {
        match self {
            Self::Pop3 { error, .. } => match error.as_ref() {
                pop3::Error::LoginFailed(failure) => failure.oauth_error.as_deref(),
                _ => None,
            },
            Self::Smtp { error, .. } => crate::oauth::smtp_oauth_refusal(error),
            Self::Config(_) => None,
        }
    }
}

impl From<CredentialError> for ConnectError {
    fn from(error: CredentialError) -> Self {
        Self::Config(error.to_string())
    }
}

impl ConnectError {
    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Pop3 { error, .. } => error.kind(),
            Self::Smtp { error, .. } => error.kind(),
            Self::Config(_) => FailureKind::Config,
        }
    }
}

/// Connects to a POP3 server and logs in.
///
/// # Errors
///
/// [`ConnectError::Pop3`] for anything the session reports; a wrong password is
/// [`FailureKind::Auth`].
pub async fn pop3_login(
    server: &ServerSettings,
    secret: &LoginSecret,
) -> Result<pop3::Session, ConnectError> {
    let mut session = pop3_connect(server).await?;
    pop3_authenticate(&mut session, server, secret).await?;
    Ok(session)
}

/// A POP3 session error of `server`, as a [`ConnectError`].
pub(crate) fn pop3_error(server: &ServerSettings, error: pop3::Error) -> ConnectError {
    ConnectError::Pop3 {
        host: server.host.clone(),
        port: server.port,
        error: Box::new(error),
    }
}

/// The first half of [`pop3_login`]: connects, reads the greeting and the capabilities and
/// sets up TLS (implicitly or with `STLS`). The session is ready for [`pop3_authenticate`].
///
/// # Errors
///
/// [`ConnectError::Pop3`] for anything the session reports.
pub async fn pop3_connect(server: &ServerSettings) -> Result<pop3::Session, ConnectError> {
    let mut config = pop3_proto::Config::new(server.security)
        .allow_cleartext_credentials_dangerously(server.allow_cleartext_credentials_dangerously);
    if let Some(limit) = server.greeting_timeout {
        config.timeouts = config.timeouts.with_greeting(limit);
    }
    if let Some(limit) = server.reply_timeout {
        config.timeouts = config.timeouts.with_server_waits(limit);
    }
    pop3::Session::connect(&server.options(), config)
        .await
        .map_err(|error| pop3_error(server, error))
}

/// The second half of [`pop3_login`]: enables UTF-8 mode (RFC 6856) when the server announces
/// `UTF8`, then logs in with the method of `server.login` and returns the method used.
///
/// # Errors
///
/// [`ConnectError::Pop3`] for anything the session reports (a wrong password is
/// [`FailureKind::Auth`]); [`ConnectError::Config`] for [`LoginMethod::None`].
pub async fn pop3_authenticate(
    session: &mut pop3::Session,
    server: &ServerSettings,
    secret: &LoginSecret,
) -> Result<pop3_proto::AuthMethod, ConnectError> {
    let credentials = secret.credentials(&server.username);
    let login = match server.login {
        LoginMethod::Auto => pop3_proto::Login::auto(credentials),
        LoginMethod::Pop3User => {
            pop3_proto::Login::using(pop3_proto::AuthMethod::UserPass, credentials)
        }
        LoginMethod::Pop3Apop => {
            pop3_proto::Login::using(pop3_proto::AuthMethod::Apop, credentials)
        }
        LoginMethod::Sasl(m) => {
            pop3_proto::Login::using(pop3_proto::AuthMethod::Sasl(m), credentials)
        }
        LoginMethod::None => {
            return Err(ConnectError::Config("POP3 always needs a login".into()));
        }
    };
    // RFC 6856: a server that announces UTF8 may rewrite mail with raw UTF-8 headers for
    // clients that did not enable it (Courier replaces each such message with a "Cannot
    // display Unicode content" notice). Everything here stores the bytes as they come, so
    // UTF-8 mode costs nothing. It must be sent before the login; a refusal is not fatal.
    if session
        .capabilities()
        .is_some_and(|caps| caps.utf8.is_some())
    {
        match session.utf8().await {
            Ok(_) => tracing::debug!("POP3 UTF8 mode enabled"),
            Err(error) if !error.is_fatal() => {
                tracing::warn!("the server announced UTF8 but refused it: {error}");
            }
            Err(error) => return Err(pop3_error(server, error)),
        }
    }
    let method = session
        .login_with(login)
        .await
        .map_err(|error| pop3_error(server, error))?;
    let name = match method {
        pop3_proto::AuthMethod::Sasl(m) => m.name(),
        pop3_proto::AuthMethod::UserPass => "USER/PASS",
        pop3_proto::AuthMethod::Apop => "APOP",
        _ => "another method",
    };
    tracing::info!(
        "POP3 login with {name}: {}",
        why_this_login(server.login, name)
    );
    Ok(method)
}

/// Why the login used `chosen` (`-v` output): the setting that chose it, and what it costs.
fn why_this_login(login: LoginMethod, chosen: &str) -> String {
    let scram = chosen.starts_with("SCRAM");
    match login {
        LoginMethod::Auto if scram => "chosen automatically, the strongest the server offers: \
            SCRAM never sends the password, so an impostor with a mis-issued certificate does \
            not learn it; it costs two round trips more than PLAIN (mechanism = \
            \"plain\" in the account's server settings, or --auth plain, trades that protection \
            for speed)"
            .to_owned(),
        LoginMethod::Auto => "chosen automatically, the strongest the server offers (it \
            offers no SCRAM)"
            .to_owned(),
        LoginMethod::Sasl(_) | LoginMethod::Pop3User | LoginMethod::Pop3Apop => {
            "asked for by the account's mechanism setting or --auth".to_owned()
        }
        LoginMethod::None => "no login".to_owned(),
    }
}

/// Connects to an SMTP submission server and authenticates (unless the login method is
/// [`LoginMethod::None`]).
///
/// # Errors
///
/// [`ConnectError::Smtp`] for anything the session reports; a wrong password is
/// [`FailureKind::Auth`].
pub async fn smtp_login(
    server: &ServerSettings,
    secret: Option<&LoginSecret>,
) -> Result<smtp::Session, ConnectError> {
    let mut session = smtp_connect(server).await?;
    smtp_authenticate(&mut session, server, secret).await?;
    Ok(session)
}

/// An SMTP session error of `server`, as a [`ConnectError`].
pub(crate) fn smtp_error(server: &ServerSettings, error: smtp::Error) -> ConnectError {
    ConnectError::Smtp {
        host: server.host.clone(),
        port: server.port,
        error: Box::new(error),
    }
}

/// The first half of [`smtp_login`]: connects, reads the greeting, says EHLO and sets up TLS
/// (implicitly or with STARTTLS). The session is ready for [`smtp_authenticate`].
///
/// # Errors
///
/// [`ConnectError::Smtp`] for anything the session reports.
pub async fn smtp_connect(server: &ServerSettings) -> Result<smtp::Session, ConnectError> {
    let mut config = smtp_submit::Config::default()
        .with_security(server.security)
        .allow_cleartext_credentials_dangerously(server.allow_cleartext_credentials_dangerously);
    if let Some(limit) = server.greeting_timeout {
        config.timeouts = config.timeouts.with_greeting(limit);
    }
    if let Some(limit) = server.reply_timeout {
        config.timeouts = config.timeouts.clone().with_server_waits(limit);
    }
    smtp::Session::connect(&server.options(), config)
        .await
        .map_err(|error| smtp_error(server, error))
}

/// The second half of [`smtp_login`]: authenticates with the method of `server.login` and
/// returns the mechanism used (`None` for [`LoginMethod::None`], which sends nothing).
///
/// # Errors
///
/// [`ConnectError::Smtp`] for anything the session reports (a wrong password is
/// [`FailureKind::Auth`]); [`ConnectError::Config`] for a POP3-only method or a missing secret.
pub async fn smtp_authenticate(
    session: &mut smtp::Session,
    server: &ServerSettings,
    secret: Option<&LoginSecret>,
) -> Result<Option<Mechanism>, ConnectError> {
    let method = match server.login {
        LoginMethod::None => return Ok(None),
        LoginMethod::Sasl(m) => smtp_submit::AuthMethod::Mechanism(m),
        LoginMethod::Pop3User | LoginMethod::Pop3Apop => {
            return Err(ConnectError::Config(
                "USER and APOP are POP3 methods; SMTP uses SASL (auto, plain, login, cram-md5, scram-sha-256, ...)".into(),
            ));
        }
        LoginMethod::Auto => smtp_submit::AuthMethod::Auto,
    };
    let Some(secret) = secret else {
        return Err(ConnectError::Config(
            "SMTP AUTH needs a password or token".into(),
        ));
    };
    let credentials = secret.credentials(&server.username);
    let mechanism = session
        .authenticate(&credentials, method)
        .await
        .map_err(|error| smtp_error(server, error))?;
    tracing::info!(
        "SMTP AUTH {}: {}",
        mechanism.name(),
        why_this_login(server.login, mechanism.name())
    );
    Ok(Some(mechanism))
}

#[cfg(test)]
mod tests {
    use super::{ConnectError, LoginMethod, Mechanism, ServerSettings};
    use crate::settings::Account;

    fn account(incoming_mechanism: &str) -> Account {
        Account::from_toml(&format!(
            r#"
address = "taro@example.jp"
[incoming]
host = "pop.example.jp"
port = 995
security = "implicit-tls"
username = "{{address}}"
auth = "password-cleartext"
{incoming_mechanism}
[outgoing]
host = "smtp.example.jp"
port = 587
security = "starttls"
username = "{{address}}"
auth = "password-cleartext"
"#
        ))
        .unwrap()
    }

    #[test]
    fn password_cleartext_alone_keeps_the_automatic_choice() {
        // Discovery writes "password-cleartext" for almost every provider: it must not turn
        // SCRAM off. Only an explicit mechanism does.
        let account = account("");
        assert_eq!(
            ServerSettings::incoming(&account).unwrap().login,
            LoginMethod::Auto
        );
        assert_eq!(
            ServerSettings::outgoing(&account).unwrap().login,
            LoginMethod::Auto
        );
    }

    #[test]
    fn the_account_chooses_the_mechanism() {
        let account = account(r#"mechanism = "plain""#);
        assert_eq!(
            ServerSettings::incoming(&account).unwrap().login,
            LoginMethod::Sasl(Mechanism::Plain)
        );
        assert_eq!(
            ServerSettings::outgoing(&account).unwrap().login,
            LoginMethod::Auto
        );
        let account = self::account(r#"mechanism = "user""#);
        assert_eq!(
            ServerSettings::incoming(&account).unwrap().login,
            LoginMethod::Pop3User
        );
    }

    #[test]
    fn an_unknown_mechanism_is_a_settings_error() {
        let account = account(r#"mechanism = "rot13""#);
        assert!(matches!(
            ServerSettings::incoming(&account),
            Err(ConnectError::Config(text)) if text.contains("rot13")
        ));
    }

    #[test]
    fn an_explicit_password_variable_wins_over_the_accounts_credential() {
        use super::LoginSecret;
        use crate::settings::{Credential, CredentialError};
        use mail_common::Secret;
        let never =
            |_: &crate::oauth::OAuth2Credential| -> Result<Secret<String>, CredentialError> {
                unreachable!("no OAuth2 credential here")
            };
        let password = |secret: Option<LoginSecret>| match secret {
            Some(LoginSecret::Password(p)) => p.expose().clone(),
            other => panic!("{other:?}"),
        };
        let mut account = account("");
        assert!(matches!(
            LoginSecret::for_account(&account, None, never),
            Ok(None)
        ));
        account.credential = Some(Credential::Password(Secret::new("from-file".into())));
        assert_eq!(
            password(LoginSecret::for_account(&account, None, never).unwrap()),
            "from-file"
        );
        // PATH is set wherever the tests run (setting a variable needs unsafe code).
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            password(LoginSecret::for_account(&account, Some("PATH"), never).unwrap()),
            path
        );
        let unset = "MAIL_ACCOUNT_TEST_VARIABLE_NEVER_SET";
        assert!(matches!(
            LoginSecret::for_account(&account, Some(unset), never),
            Err(CredentialError::EnvMissing(var)) if var == unset
        ));
    }

    #[test]
    fn a_password_without_tls_is_refused_up_front_unless_allowed() {
        use crate::settings::Security;
        let mut server = ServerSettings::new("mail.example.jp", 110, Security::Plaintext, "taro");
        assert!(matches!(
            server.check_cleartext(),
            Err(ConnectError::Config(text)) if text.contains("without TLS")
        ));
        server.allow_cleartext_credentials_dangerously = true;
        assert!(server.check_cleartext().is_ok());
        server.allow_cleartext_credentials_dangerously = false;
        server.login = LoginMethod::None;
        assert!(server.check_cleartext().is_ok(), "nothing to send");
        let tls = ServerSettings::new("mail.example.jp", 995, Security::ImplicitTls, "taro");
        assert!(tls.check_cleartext().is_ok());
    }
}
