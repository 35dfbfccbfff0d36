//! The server flags shared by fetch and send, or an account file.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use mail_account::Account;
use mail_account::connect::{LoginMethod, LoginSecret, ServerSettings};
use mail_account::settings::{Protocol, Security};
use mail_common::transport::TrustRoots;

use crate::Failure;

/// TLS mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsMode {
    /// TLS from the first byte (POP3S 995, submissions 465).
    // The account files' spellings are accepted too.
    #[value(alias = "implicit-tls")]
    Implicit,
    /// STARTTLS / STLS before logging in (587, 110).
    Starttls,
    /// No TLS. Sending a password also needs --allow-cleartext-credentials-dangerously.
    #[value(alias = "plaintext")]
    None,
}

/// Which server of an account the flags are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// POP3.
    Incoming,
    /// SMTP submission.
    Outgoing,
}

/// Server flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// The account: a name in the configuration file, or an account file (a path with a `/`
    /// or ending in .toml), instead of --host/--port/... Without it and without --host, the
    /// configuration file's default account.
    #[arg(
        short = 'a',
        long,
        value_name = "NAME|FILE",
        conflicts_with_all = ["host", "port", "tls", "user"]
    )]
    pub(crate) account: Option<String>,
    /// The configuration file with the named accounts (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Server host name or IP address.
    #[arg(long, value_name = "HOST")]
    pub(crate) host: Option<String>,
    /// Server port (default: 995/465 with implicit TLS, 110/587 with STARTTLS).
    #[arg(long, value_name = "PORT")]
    pub(crate) port: Option<u16>,
    /// TLS mode.
    #[arg(long, value_enum, default_value_t = TlsMode::Implicit)]
    pub(crate) tls: TlsMode,
    /// Login name (not needed with --auth none).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Environment variable holding the password (never a flag: flags show up in `ps`).
    #[arg(long, value_name = "VAR")]
    pub(crate) password_env: Option<String>,
    /// Extra CA certificates (PEM) to trust besides the web PKI roots.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Authentication: auto, user, apop, plain, login, cram-md5, scram-sha-1, scram-sha-256,
    /// xoauth2, oauthbearer, ntlm ("Secure Password Authentication"; never chosen by auto),
    /// none (SMTP only).
    #[arg(long, value_name = "MECH", default_value = "auto")]
    pub(crate) auth: String,
    /// Allow sending a password without TLS (with --tls none). Anyone on the path can read it.
    // The old name stays accepted, hidden, so existing scripts keep working.
    #[arg(long, alias = "allow-plaintext")]
    pub(crate) allow_cleartext_credentials_dangerously: bool,
    /// The name the server certificate must carry (default: the host).
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_name: Option<String>,
    /// Limit in seconds for connecting, for the TLS handshake and for each server reply.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) timeout: u64,
}

/// Resolved flags: where to connect, and with what secret.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) settings: ServerSettings,
    pub(crate) secret: Option<LoginSecret>,
    /// The account the settings came from (named, default, or an account file).
    pub(crate) account: Option<Account>,
}

/// The secret of an account's credential, or of `--password-env`, which wins (the precedence
/// is [`LoginSecret::for_account`]'s).
pub(crate) fn account_secret(
    account: &Account,
    password_env: Option<&str>,
) -> Result<Option<LoginSecret>, Failure> {
    LoginSecret::for_account(account, password_env, |oauth| {
        crate::login::access_token(account, oauth)
    })
}

impl ServerArgs {
    /// Resolves the flags for one role.
    pub(crate) fn resolve(&self, role: Role) -> Result<Resolved, Failure> {
        let login = LoginMethod::parse(&self.auth)
            .ok_or_else(|| Failure::settings(format!("unknown --auth {:?}", self.auth)))?;
        // Server flags without --host are a mistake to report, not a reason to use the
        // default account silently.
        let server_flags = self.host.is_some() || self.port.is_some() || self.user.is_some();
        let account = if server_flags {
            None
        } else {
            crate::accounts::find_account(self.account.as_deref(), self.config.as_deref())?
        };
        let (mut settings, secret) = if let Some(account) = &account {
            let settings = match role {
                Role::Incoming => ServerSettings::incoming(account)?,
                Role::Outgoing => ServerSettings::outgoing(account)?,
            };
            let secret = account_secret(account, self.password_env.as_deref())?;
            (settings, secret)
        } else {
            let host = self.host.clone().ok_or_else(|| {
                Failure::settings(
                    "--host, -a NAME, or a default account in the configuration file is required",
                )
            })?;
            // A login name is needed only to log in: `--auth none` (an SMTP relay that
            // trusts the client's network) has none.
            let user = match (&self.user, login) {
                (Some(user), _) => user.clone(),
                (None, LoginMethod::None) if role == Role::Outgoing => String::new(),
                (None, _) => {
                    return Err(Failure::settings(
                        "--user (or --account) is required, unless --auth none (SMTP only)",
                    ));
                }
            };
            let security = match self.tls {
                TlsMode::Implicit => Security::ImplicitTls,
                TlsMode::Starttls => Security::StartTls,
                TlsMode::None => Security::Plaintext,
            };
            let protocol = match role {
                Role::Incoming => Protocol::Pop3,
                Role::Outgoing => Protocol::Smtp,
            };
            let port = self.port.unwrap_or_else(|| protocol.default_port(security));
            let secret = match &self.password_env {
                Some(var) => Some(LoginSecret::from_env(var)?),
                None => None,
            };
            let mut settings = ServerSettings::new(host, port, security, user);
            settings.login = login;
            (settings, secret)
        };
        if account.is_some() && self.auth != "auto" {
            settings.login = login;
        }
        if let Some(ca) = &self.ca_file {
            settings.trust_roots = TrustRoots::WebPkiAndCaFile(ca.clone());
        }
        settings.tls_name.clone_from(&self.tls_name);
        settings.setup_timeout = Duration::from_secs(self.timeout);
        settings.reply_timeout = Some(Duration::from_secs(self.timeout));
        settings.allow_cleartext_credentials_dangerously =
            self.allow_cleartext_credentials_dangerously;
        let needs_secret = !(role == Role::Outgoing && settings.login == LoginMethod::None);
        if needs_secret && secret.is_none() {
            return Err(Failure::settings(
                "no password: give --password-env VAR (or a credential in the account file)",
            ));
        }
        settings.check_cleartext().map_err(|e| {
            Failure::settings(format!(
                "{e}; use --tls implicit or starttls, or add \
                 --allow-cleartext-credentials-dangerously if you accept that"
            ))
        })?;
        Ok(Resolved {
            settings,
            secret,
            account,
        })
    }
}
