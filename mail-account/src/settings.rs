//! The account settings model and its TOML form.
//!
//! An [`Account`] is complete: every server field is known. [`ManualSettings`] is what a person
//! typed or wrote in a file, possibly partial (only the SMTP port, say); discovery fills in the
//! rest and manual values always win (see [`crate::discover`]).
//!
//! Both parse from TOML with unknown keys refused, and the error names the key:
//!
//! ```
//! use mail_account::settings::Account;
//! let toml = r#"
//! address = "taro@example.jp"
//! [incoming]
//! protocol = "pop3"
//! host = "pop.example.jp"
//! port = 995
//! security = "implicit-tls"
//! username = "{address}"
//! auth = "password-cleartext"
//! [outgoing]
//! host = "smtp.example.jp"
//! port = 465
//! security = "implicit-tls"
//! username = "{address}"
//! auth = "password-cleartext"
//! [credential]
//! env = "MAIL_PASSWORD"
//! "#;
//! let account = Account::from_toml(toml).unwrap();
//! assert_eq!(account.outgoing.port, 465);
//! let err = Account::from_toml(&toml.replace("port = 465", "prot = 465")).unwrap_err();
//! assert!(err.to_string().contains("prot"));
//! ```

use std::{fmt, path::PathBuf};

use mail_common::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::EmailAddress;

/// How a connection is protected: the one type the protocol crates use too. Account files
/// spell it `implicit-tls`, `starttls` or `none` (`plaintext` is accepted as well).
pub use mail_common::Security;

/// A mail protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// POP3 (fully supported for fetching).
    Pop3,
    /// IMAP (representable as data: providers and autoconfig files describe it).
    Imap,
    /// SMTP submission.
    Smtp,
}

impl Protocol {
    /// The usual security mode of a well-known port of this protocol, if it has one.
    ///
    /// ```
    /// use mail_account::settings::{Protocol, Security};
    /// assert_eq!(Protocol::Smtp.security_for_port(587), Some(Security::StartTls));
    /// assert_eq!(Protocol::Pop3.security_for_port(995), Some(Security::ImplicitTls));
    /// assert_eq!(Protocol::Pop3.security_for_port(2525), None);
    /// ```
    pub const fn security_for_port(self, port: u16) -> Option<Security> {
        match (self, port) {
            (Self::Pop3, 995) | (Self::Imap, 993) | (Self::Smtp, 465) => {
                Some(Security::ImplicitTls)
            }
            (Self::Pop3, 110) | (Self::Imap, 143) | (Self::Smtp, 587 | 25) => {
                Some(Security::StartTls)
            }
            _ => None,
        }
    }

    /// The default port for a security mode (995/110, 993/143, 465/587).
    pub const fn default_port(self, security: Security) -> u16 {
        match (self, security) {
            (Self::Pop3, Security::ImplicitTls) => 995,
            (Self::Pop3, _) => 110,
            (Self::Imap, Security::ImplicitTls) => 993,
            (Self::Imap, _) => 143,
            (Self::Smtp, Security::ImplicitTls) => 465,
            (Self::Smtp, _) => 587,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pop3 => "POP3",
            Self::Imap => "IMAP",
            Self::Smtp => "SMTP",
        })
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// The strongest password mechanism the server offers (SCRAM, then PLAIN/LOGIN/USER inside
    /// TLS).
    Automatic,
    /// A password sent as is inside TLS (SASL PLAIN or LOGIN, POP3 USER/PASS).
    PasswordCleartext,
    /// A password mechanism that does not reveal the password (SCRAM-SHA-*, CRAM-MD5, APOP).
    PasswordEncrypted,
    /// An OAuth2 bearer token (XOAUTH2 or OAUTHBEARER); needs a token provider.
    #[serde(rename = "oauth2")]
    OAuth2,
    /// No authentication (outgoing only: a relay that trusts the client's network).
    None,
}

/// The name used in account files (`password-cleartext`, `oauth2`, ...).
impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Automatic => "automatic",
            Self::PasswordCleartext => "password-cleartext",
            Self::PasswordEncrypted => "password-encrypted",
            Self::OAuth2 => "oauth2",
            Self::None => "none",
        })
    }
}

/// A username template: `{address}`, `{local}`, `{domain}`, any literal text, or
/// `{input:LABEL}` for a value the person must enter (not derivable from the address).
///
/// ```
/// use mail_account::{domain::EmailAddress, settings::Username};
/// let a = EmailAddress::parse("taro@mio.example.jp").unwrap();
/// assert_eq!(Username::new("{local}.{domain}").resolve(&a).unwrap(), "taro.mio.example.jp");
/// assert_eq!(Username::new("{input:d ACCOUNT ID}").needs_input(), Some("d ACCOUNT ID"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// The full address.
    pub const ADDRESS: &'static str = "{address}";
    /// The local part.
    pub const LOCAL: &'static str = "{local}";

    /// Wraps a template.
    pub fn new(template: impl Into<String>) -> Self {
        Self(template.into())
    }

    /// The full address template.
    pub fn address() -> Self {
        Self::new(Self::ADDRESS)
    }

    /// The template text.
    pub fn template(&self) -> &str {
        &self.0
    }

    /// The label of the value the person must enter, for an `{input:LABEL}` template.
    pub fn needs_input(&self) -> Option<&str> {
        let start = self.0.find("{input:")?;
        let rest = &self.0[start + "{input:".len()..];
        Some(rest.split_once('}').map_or(rest, |(label, _)| label))
    }

    /// Expands the template for an address. Fails with the label of an `{input:...}` part.
    pub fn resolve(&self, address: &EmailAddress) -> Result<String, String> {
        if let Some(label) = self.needs_input() {
            return Err(label.to_owned());
        }
        Ok(self
            .0
            .replace("{address}", &address.to_string())
            .replace("{local}", address.local_part())
            .replace("{domain}", address.domain()))
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The incoming server (POP3, or IMAP as data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingServer {
    /// POP3 or IMAP.
    #[serde(default = "pop3")]
    pub protocol: Protocol,
    /// Host name (ASCII or Unicode; converted before use).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub security: Security,
    /// Username template.
    pub username: Username,
    /// Authentication method.
    pub auth: AuthMethod,
    /// The login method exactly, overriding the automatic choice (which prefers SCRAM):
    /// `plain` (one round trip, the password inside TLS), `scram-sha-256`, ..., or for POP3
    /// `user` or `apop`. Absent: chosen from `auth` and what the server offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
}

const fn pop3() -> Protocol {
    Protocol::Pop3
}

/// The outgoing (SMTP submission) server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingServer {
    /// Host name.
    pub host: String,
    /// TCP port (465 or 587; 25 is reported by [`Account::warnings`]).
    pub port: u16,
    /// TLS mode.
    pub security: Security,
    /// Username template.
    pub username: Username,
    /// Authentication method.
    pub auth: AuthMethod,
    /// The login method exactly, overriding the automatic choice (which prefers SCRAM):
    /// `plain` (one round trip, the password inside TLS), `scram-sha-256`, ..., or for POP3
    /// `user` or `apop`. Absent: chosen from `auth` and what the server offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
}

/// Where the password or token comes from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Credential {
    /// A password kept in the settings (redacted in `Debug`).
    Password(#[serde(with = "secret_string")] Secret<String>),
    /// The name of an environment variable holding the password.
    Env(String),
    /// A command (program and arguments, no shell) whose first output line is the password.
    Command(Vec<String>),
    /// OAuth 2.0: the client id, endpoints, scopes and token file (`[credential.oauth2]`;
    /// written by `mailctl login`, used through [`crate::oauth::OAuthClient`]).
    #[serde(rename = "oauth2")]
    OAuth2(crate::oauth::OAuth2Credential),
    /// The OS keyring (macOS Keychain, Windows Credential Manager, the Secret Service on Linux
    /// and BSD): `[credential.keyring]` with `service` and `user`. Resolved only when the
    /// crate is built with the `keyring` feature (its `keyring` module).
    Keyring(KeyringEntry),
}

/// Where a password is kept in the OS keyring: the service and user of the entry.
///
/// ```
/// use mail_account::settings::{Credential, KeyringEntry, ManualSettings};
/// let manual = ManualSettings::from_toml(
///     "[credential.keyring]\nservice = \"mailctl\"\nuser = \"taro@example.jp\"\n",
/// )
/// .unwrap();
/// assert_eq!(
///     manual.credential,
///     Some(Credential::Keyring(KeyringEntry::new("mailctl", "taro@example.jp")))
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringEntry {
    /// The service name of the entry (for example `mailctl`).
    pub service: String,
    /// The user name of the entry (for example the mail address).
    pub user: String,
}

impl KeyringEntry {
    /// An entry for `service` and `user`.
    pub fn new(service: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            user: user.into(),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(p) => f.debug_tuple("Password").field(p).finish(),
            Self::Env(v) => f.debug_tuple("Env").field(v).finish(),
            Self::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Self::OAuth2(c) => f.debug_tuple("OAuth2").field(c).finish(),
            Self::Keyring(k) => f.debug_tuple("Keyring").field(k).finish(),
        }
    }
}

/// A credential could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The environment variable is not set (or not Unicode).
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The command could not run or failed.
    #[error("password command {command:?} failed: {reason}")]
    Command {
        /// The program.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// The credential is OAuth2 (token endpoint named); get a token through
    /// [`crate::oauth::OAuthClient`] (or an [`OAuth2TokenProvider`]).
    #[error("credential for token endpoint {0} is OAuth2, not a password")]
    NeedsTokenProvider(String),
    /// The OS keyring has no password for this service and user.
    #[error(
        "no password in the OS keyring for service {service:?}, user {user:?} \
         (store one there under this service and user)"
    )]
    KeyringMissing {
        /// The service of the entry.
        service: String,
        /// The user of the entry.
        user: String,
    },
    /// The OS keyring could not be used (no keyring service running, access refused, or a
    /// build without the `keyring` feature).
    #[error("OS keyring entry for service {service:?}, user {user:?}: {reason}")]
    Keyring {
        /// The service of the entry.
        service: String,
        /// The user of the entry.
        user: String,
        /// What went wrong.
        reason: String,
    },
}

impl Credential {
    /// Obtains the password for `Password`, `Env`, `Command` and `Keyring` credentials. `Command` runs the
    /// program (blocking) and takes the first line of its output.
    pub fn password(&self) -> Result<Secret<String>, CredentialError> {
        match self {
            Self::Password(p) => Ok(p.clone()),
            Self::Env(var) => std::env::var(var)
                .map(Secret::new)
                .map_err(|_| CredentialError::EnvMissing(var.clone())),
            Self::Command(argv) => {
                let fail = |reason: String| CredentialError::Command {
                    command: argv.first().cloned().unwrap_or_default(),
                    reason,
                };
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| fail("empty command".into()))?;
                let out = std::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| fail(e.to_string()))?;
                if !out.status.success() {
                    return Err(fail(format!("exited with {}", out.status)));
                }
                let text = String::from_utf8(out.stdout)
                    .map_err(|_| fail("output is not UTF-8".into()))?;
                Ok(Secret::new(text.lines().next().unwrap_or("").to_owned()))
            }
            Self::OAuth2(c) => Err(CredentialError::NeedsTokenProvider(c.token_url.clone())),
            #[cfg(feature = "keyring")]
            Self::Keyring(entry) => crate::keyring::password(entry),
            #[cfg(not(feature = "keyring"))]
            Self::Keyring(entry) => Err(CredentialError::Keyring {
                service: entry.service.clone(),
                user: entry.user.clone(),
                reason: "this program was built without the `keyring` feature".into(),
            }),
        }
    }
}

/// The callback that supplies OAuth2 access tokens for a [`Credential::OAuth2`] credential. The
/// crate bundles no client IDs or secrets: the application owns the OAuth2 flow.
pub trait OAuth2TokenProvider: Send + Sync {
    /// A current access token for `username` at `host`.
    fn access_token(
        &self,
        username: &str,
        host: &str,
    ) -> impl Future<Output = Result<Secret<String>, String>> + Send;
}

mod secret_string {
    use super::{Deserialize, Deserializer, Secret, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Secret<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Secret<String>, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// What happens to messages on the POP3 server after download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Retention {
    /// Leave every message on the server (the safe default).
    #[default]
    KeepOnServer,
    /// Delete each message once it is stored locally.
    DeleteAfterDownload,
    /// Delete messages from the server this many days after download.
    DeleteAfterDays(u32),
    /// Leave each message on the server until it is deleted (or flagged trashed) in the
    /// local Maildir ("until I delete them").
    UntilDeletedLocally,
}

/// Where fetched mail goes (`mailctl fetch` without `--maildir`, `--mbox` or `--mda`). In
/// TOML a table with one key:
///
/// ```toml
/// [delivery]
/// maildir = "~/Maildir"          # or: mbox = "~/mail/inbox", or: mda = "procmail -d %T"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum DeliveryTarget {
    /// A Maildir (created if missing). A leading `~/` is the home directory.
    Maildir(PathBuf),
    /// An mbox file (mboxrd; created if missing). A leading `~/` is the home directory.
    Mbox(PathBuf),
    /// An MDA command run under `sh -c` for each message (`%F` the envelope sender, `%T` the
    /// login); see [`crate::store::mda`].
    Mda(String),
}

/// TLS options of an account.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// A PEM file of extra CA certificates, trusted in addition to the web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
}

impl TlsOptions {
    /// The trust roots these options describe.
    #[cfg(any(feature = "discover", feature = "session"))]
    pub fn trust_roots(&self) -> mail_common::transport::TrustRoots {
        use mail_common::transport::TrustRoots;
        self.extra_ca_file
            .clone()
            .map_or(TrustRoots::WebPki, TrustRoots::WebPkiAndCaFile)
    }
}

/// A complete account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The mail address.
    pub address: String,
    /// The name shown in From.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Seconds between two checks for new mail when the account is watched (`mailctl watch`),
    /// unless the command line says otherwise; `None`: the watcher's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<u64>,
    /// Incoming server.
    pub incoming: IncomingServer,
    /// Outgoing server.
    pub outgoing: OutgoingServer,
    /// Where the password or token comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// POP3 retention.
    #[serde(default)]
    pub retention: Retention,
    /// Where fetched mail is delivered, when the command line does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryTarget>,
    /// TLS options.
    #[serde(default)]
    pub tls: TlsOptions,
}

/// Settings could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The TOML is malformed, has an unknown key (named in the message) or a wrong value.
    #[error("invalid account settings: {0}")]
    Toml(#[from] toml::de::Error),
    /// Serialisation failed.
    #[error("cannot write account settings: {0}")]
    Write(#[from] toml::ser::Error),
    /// The values are inconsistent.
    #[error("invalid account settings: {0}")]
    Invalid(String),
}

/// A setting that works but is unsafe or likely to fail; shown to the person, never hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingWarning {
    /// Which setting.
    pub setting: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Account {
    /// Parses and checks TOML settings.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let account: Self = toml::from_str(text)?;
        account.check()?;
        Ok(account)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        Ok(toml::to_string(self)?)
    }

    /// Checks consistency: a valid address, an incoming protocol of POP3 or IMAP.
    pub fn check(&self) -> Result<(), SettingsError> {
        EmailAddress::parse(&self.address)
            .map_err(|e| SettingsError::Invalid(format!("address: {e}")))?;
        if self.incoming.protocol == Protocol::Smtp {
            return Err(SettingsError::Invalid(
                "incoming.protocol: must be \"pop3\" or \"imap\"".into(),
            ));
        }
        for (key, host) in [
            ("incoming.host", &self.incoming.host),
            ("outgoing.host", &self.outgoing.host),
        ] {
            if host.trim().is_empty() {
                return Err(SettingsError::Invalid(format!("{key}: empty")));
            }
        }
        Ok(())
    }

    /// Unsafe choices in these settings: submission on port 25 (blocked by most networks and
    /// meant for server-to-server relay), connections without TLS.
    pub fn warnings(&self) -> Vec<SettingWarning> {
        let mut out = Vec::new();
        if self.outgoing.port == 25 {
            out.push(SettingWarning {
                setting: "outgoing.port",
                message: "port 25 is for server-to-server relay and is blocked on most consumer \
                          networks (OP25B); use 465 (implicit TLS) or 587 (STARTTLS)"
                    .into(),
            });
        }
        if self.outgoing.security == Security::Plaintext {
            out.push(SettingWarning {
                setting: "outgoing.security",
                message: "the password and messages travel unencrypted".into(),
            });
        }
        if self.incoming.security == Security::Plaintext {
            out.push(SettingWarning {
                setting: "incoming.security",
                message: "the password and messages travel unencrypted".into(),
            });
        }
        out
    }
}

/// Server settings as given by a person: any field may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialServer {
    /// Protocol (incoming only: POP3 or IMAP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// TLS mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// Username template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Username>,
    /// Authentication method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMethod>,
}

impl PartialServer {
    /// True when every connection field is given, so discovery has nothing to add.
    pub const fn is_complete(&self) -> bool {
        self.host.is_some()
            && self.port.is_some()
            && self.security.is_some()
            && self.username.is_some()
            && self.auth.is_some()
    }
}

/// Manual settings: whatever the person fixed by hand. They always win over discovery, field by
/// field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSettings {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Incoming server fields.
    #[serde(default)]
    pub incoming: PartialServer,
    /// Outgoing server fields.
    #[serde(default)]
    pub outgoing: PartialServer,
    /// Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// POP3 retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// TLS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

impl ManualSettings {
    /// Parses TOML; unknown keys are an error naming the key.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let manual: Self = toml::from_str(text)?;
        if manual.incoming.protocol == Some(Protocol::Smtp) {
            return Err(SettingsError::Invalid(
                "incoming.protocol: must be \"pop3\" or \"imap\"".into(),
            ));
        }
        Ok(manual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_is_redacted_and_toml_round_trips() {
        let c = Credential::Password(Secret::new("hunter2".into()));
        assert!(!format!("{c:?}").contains("hunter2"));
        let m = ManualSettings {
            credential: Some(c),
            retention: Some(Retention::DeleteAfterDays(14)),
            ..ManualSettings::default()
        };
        let text = toml::to_string(&m).unwrap();
        let back = ManualSettings::from_toml(&text).unwrap();
        assert_eq!(back, m);
        assert!(!format!("{back:?}").contains("hunter2"));
    }

    #[test]
    fn keyring_credential_round_trips_in_the_style_of_env_and_command() {
        let text = "[credential.keyring]\nservice = \"mailctl\"\nuser = \"taro@example.jp\"\n";
        let manual = ManualSettings::from_toml(text).unwrap();
        let entry = KeyringEntry::new("mailctl", "taro@example.jp");
        assert_eq!(manual.credential, Some(Credential::Keyring(entry)));
        let written = toml::to_string(&manual).unwrap();
        assert_eq!(ManualSettings::from_toml(&written).unwrap(), manual);
        assert!(written.contains("[credential.keyring]"), "{written}");
        // The inline form reads the same; unknown keys are refused and named.
        let inline =
            "credential = { keyring = { service = \"mailctl\", user = \"taro@example.jp\" } }";
        assert_eq!(ManualSettings::from_toml(inline).unwrap(), manual);
        let err = ManualSettings::from_toml(&text.replace("user =", "usr =")).unwrap_err();
        assert!(err.to_string().contains("usr"), "{err}");
    }

    #[cfg(not(feature = "keyring"))]
    #[test]
    fn keyring_credential_without_the_feature_says_so_naming_the_entry() {
        let c = Credential::Keyring(KeyringEntry::new("mailctl", "taro@example.jp"));
        let err = c.password().unwrap_err().to_string();
        assert!(
            err.contains("\"mailctl\"")
                && err.contains("taro@example.jp")
                && err.contains("`keyring` feature"),
            "{err}"
        );
    }

    #[test]
    fn username_templates() {
        let a = EmailAddress::parse("taro@example.jp").unwrap();
        assert_eq!(Username::address().resolve(&a).unwrap(), "taro@example.jp");
        assert_eq!(Username::new("{local}").resolve(&a).unwrap(), "taro");
        assert_eq!(Username::new("fixed").resolve(&a).unwrap(), "fixed");
        assert_eq!(
            Username::new("{input:dアカウントID}")
                .resolve(&a)
                .unwrap_err(),
            "dアカウントID"
        );
    }

    #[test]
    fn env_and_command_credentials() {
        let c = Credential::Env("MAIL_ACCOUNT_TEST_SURELY_UNSET_VAR".into());
        assert!(matches!(c.password(), Err(CredentialError::EnvMissing(_))));
        let c = Credential::Command(vec!["printf".into(), "s3cret\\nsecond".into()]);
        assert_eq!(c.password().unwrap().expose(), "s3cret");
        let c = Credential::Command(vec!["false".into()]);
        assert!(matches!(c.password(), Err(CredentialError::Command { .. })));
    }
}
