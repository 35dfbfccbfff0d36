//! `mailctl login ADDRESS`, and the OAuth 2.0 part of `mailctl discover`'s report.

use std::path::PathBuf;
use std::time::Duration;

use mail_account::diagnose::FailureKind;
use mail_account::discover::DiscoveryReport;
use mail_account::oauth::LoopbackOptions;
use mail_account::oauth::{ClientIdentity, OAuth2Credential, OAuthClient, OAuthError, TokenFile};
use mail_account::providers::oauth2::Grant;
use mail_account::settings::{Account, Protocol};
use mail_account::settings::{AuthMethod, Credential};
use mail_common::Secret;
use mail_common::transport::TrustRoots;

use crate::Failure;

/// The OAuth 2.0 lines of the text report: endpoints, scopes per protocol, preferred grant, and
/// where the data comes from.
pub(crate) fn print_oauth2_text(report: &DiscoveryReport) {
    let Some(oauth) = &report.oauth2 else {
        return;
    };
    let (entry, source) = (&oauth.value, &oauth.source);
    println!("oauth2:   issuer {} <- {source}", entry.issuer);
    println!("oauth2:   authorization {}", entry.authorization_url);
    println!("oauth2:   token {}", entry.token_url);
    if let Some(device) = entry.device_authorization_url {
        println!("oauth2:   device authorization {device}");
    }
    for protocol in [Protocol::Pop3, Protocol::Smtp] {
        println!(
            "oauth2:   {protocol} scopes {}",
            entry.scopes_for(protocol).join(" ")
        );
    }
    println!("oauth2:   grant {}", entry.preferred_grant.name());
}

/// A current access token for an account whose credential is OAuth2: the cached one, or a
/// refreshed one (the rotated refresh token saved first). Runs the async refresh on the
/// current runtime from the synchronous flag resolution.
pub(crate) fn access_token(
    account: &Account,
    credential: &OAuth2Credential,
) -> Result<Secret<String>, Failure> {
    let (client, file) = oauth_client(account, credential)?;
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(client.access_token(&file))
    })
    .map_err(oauth_failure)
}

/// The OAuth 2.0 client and token file of `account`'s OAuth2 credential.
pub(crate) fn oauth_client(
    account: &Account,
    credential: &OAuth2Credential,
) -> Result<(OAuthClient, TokenFile), Failure> {
    let identity = ClientIdentity::resolve(None, None, Some(credential)).map_err(oauth_failure)?;
    let client = OAuthClient::new(credential.clone(), identity, &account.tls.trust_roots())
        .map_err(oauth_failure)?;
    Ok((client, TokenFile::new(&credential.token_file)))
}

/// An OAuth failure as a mailctl failure: an expired or revoked grant is an authentication
/// failure (exit 4) with the advice to sign in again.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(oauth_failure)`
pub(crate) fn oauth_failure(error: OAuthError) -> Failure {
    let kind = match &error {
        e if e.needs_new_sign_in() => FailureKind::Auth,
        e if e.is_settings() => FailureKind::Config,
        OAuthError::AccessDenied | OAuthError::StateMismatch => FailureKind::Auth,
        OAuthError::TimedOut(_) => FailureKind::Timeout,
        OAuthError::TokenFile { .. } => FailureKind::LocalIo,
        _ => FailureKind::Network,
    };
    let mut message = error.to_string();
    if error.needs_new_sign_in() {
        message.push_str(": run `mailctl login ADDRESS --save NAME` (or --account FILE) again");
    } else if let Some(advice) = error.advice() {
        message.push_str(": ");
        message.push_str(advice);
    }
    Failure::new(kind, message)
}

/// Flags of `mailctl login`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["account", "save"]))]
pub(crate) struct Args {
    /// The mail address to sign in.
    address: String,
    /// Save the account as NAME in the configuration file (mode 0600; the first account
    /// saved becomes the default; its credential is `oauth2`).
    #[arg(long, value_name = "NAME")]
    save: Option<String>,
    /// With --save: the configuration file (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE", requires = "save")]
    config: Option<PathBuf>,
    /// Write a single account file instead (mode 0600; its credential is `oauth2`).
    #[arg(long, value_name = "FILE")]
    account: Option<PathBuf>,
    /// Where to keep the tokens (default: NAME.tokens.json beside the configuration file with
    /// --save, the account file with `.tokens.json` appended with --account).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The client id of your application registration (else the environment variable
    /// MAIL_OAUTH2_CLIENT_ID). mailctl ships none; see the README.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Environment variable holding the client secret, for registrations that have one
    /// (Google "Desktop app"). Kept in the account file, which is readable by you only.
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// The grant: `device` (a code to enter on any device) or `browser` (authorization code
    /// with PKCE and a loopback redirect). Default: the provider's preferred one.
    #[arg(long, value_name = "GRANT")]
    grant: Option<String>,
    /// Use only the provider files and the bundled provider database (no DNS, no HTTP) to
    /// find the servers.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    providers: crate::discover::ProviderArgs,
    /// Override the authorization endpoint (other tenants, other providers, tests).
    #[arg(long, value_name = "URL")]
    authorization_url: Option<String>,
    /// Override the token endpoint.
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Override the device authorization endpoint.
    #[arg(long, value_name = "URL")]
    device_url: Option<String>,
    /// Request this scope instead of the provider's (repeat for several).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// The loopback port for the browser grant's redirect (default: any free port).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    redirect_port: u16,
    /// The path of the loopback redirect URI.
    #[arg(long, value_name = "PATH", default_value = "/")]
    redirect_path: String,
    /// Do not try to open a browser (the URL is printed either way).
    #[arg(long)]
    no_browser: bool,
    /// Seconds to wait for the sign-in to complete.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Extra CA certificates (PEM) to trust for the mail servers (kept in the account file).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

/// Opens `url` in a browser when one is likely available; failures are ignored (the URL is
/// printed anyway).
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        Some(("open", vec![url.to_owned()]))
    } else if cfg!(windows) {
        Some((
            "rundll32",
            vec!["url.dll,FileProtocolHandler".into(), url.to_owned()],
        ))
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(("xdg-open", vec![url.to_owned()]))
    } else {
        None
    };
    if let Some((program, args)) = program {
        let _ = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Writes the account file readable by the owner only.
fn write_account(path: &std::path::Path, account: &Account) -> Result<(), Failure> {
    use std::io::Write as _;
    let text = account
        .to_toml()
        .map_err(|e| Failure::settings(e.to_string()))?;
    let fail = |e: std::io::Error| {
        Failure::local(format!("cannot write account file {}: {e}", path.display()))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

pub(crate) async fn run(args: Args) -> crate::Outcome {
    // Where the account goes, checked before the sign-in so that a taken name or an unreadable
    // configuration file does not cost the person a sign-in.
    let (token_file, config_file) = match (&args.save, &args.account) {
        (Some(name), _) => {
            let with_secret = args.client_secret_env.is_some();
            let config =
                crate::accounts::check_new_name(args.config.as_deref(), name, with_secret)?;
            let beside = config
                .parent()
                .map_or_else(PathBuf::new, std::path::Path::to_path_buf)
                .join(format!("{name}.tokens.json"));
            // Absolute: the account is used from any working directory.
            let token_file = args.token_file.clone().unwrap_or(beside);
            let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
            (token_file, Some(config))
        }
        (None, Some(account)) => {
            let token_file = args.token_file.clone().unwrap_or_else(|| {
                let mut name = account.clone().into_os_string();
                name.push(".tokens.json");
                PathBuf::from(name)
            });
            (token_file, None)
        }
        (None, None) => return Err(Failure::settings("give --save NAME or --account FILE")),
    };
    if let Some(dir) = token_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::local(format!("{}: {e}", dir.display())))?;
    }
    let report = Box::pin(crate::discover::discover(
        &args.address,
        args.offline,
        &args.providers.options()?,
    ))
    .await?;
    let mut account = report
        .to_account()
        .map_err(|e| Failure::settings(format!("{}: {e}", args.address)))?;
    let entry = report.oauth2.as_ref().map(|sourced| sourced.value);
    let token_url = args
        .token_url
        .clone()
        .or_else(|| entry.map(|e| e.token_url.to_owned()))
        .ok_or_else(|| {
            Failure::settings(format!(
                "no OAuth2 data known for {}: give --token-url and --device-url or \
                 --authorization-url",
                args.address
            ))
        })?;
    let scopes = if args.scopes.is_empty() {
        entry.map_or_else(Vec::new, |e| {
            e.scopes_for_all(account.incoming.protocol)
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
    } else {
        args.scopes.clone()
    };
    let client_secret = match &args.client_secret_env {
        Some(var) => Some(Secret::new(std::env::var(var).map_err(|_| {
            Failure::settings(format!(
                "environment variable {var} (--client-secret-env) is not set"
            ))
        })?)),
        None => None,
    };
    let credential = OAuth2Credential {
        client_id: args.client_id.clone(),
        client_secret,
        token_url,
        authorization_url: args
            .authorization_url
            .clone()
            .or_else(|| entry.map(|e| e.authorization_url.to_owned())),
        device_authorization_url: args
            .device_url
            .clone()
            .or_else(|| entry.and_then(|e| e.device_authorization_url.map(str::to_owned))),
        scopes,
        token_file: token_file.clone(),
    };
    let identity = ClientIdentity::resolve(None, None, Some(&credential)).map_err(oauth_failure)?;
    let client = OAuthClient::new(credential.clone(), identity, &TrustRoots::WebPki)
        .map_err(oauth_failure)?
        .with_authorization_params(entry.into_iter().flat_map(|e| {
            e.extra_authorization_params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        }));
    let grant = match args.grant.as_deref() {
        Some("device") => Grant::DeviceCode,
        Some("browser" | "code") => Grant::AuthorizationCodePkce,
        Some(other) => {
            return Err(Failure::settings(format!(
                "unknown --grant {other:?} (device or browser)"
            )));
        }
        None => match entry {
            Some(e) => e.preferred_grant,
            None if credential.device_authorization_url.is_some() => Grant::DeviceCode,
            None => Grant::AuthorizationCodePkce,
        },
    };
    let file = TokenFile::new(&token_file);
    let timeout = Duration::from_secs(args.timeout);
    let granted = if grant == Grant::DeviceCode {
        client
            .device_grant(
                &file,
                |prompt| {
                    eprintln!(
                        "To sign in, open {} and enter the code {} (valid {} minutes).",
                        prompt.verification_uri,
                        prompt.user_code,
                        prompt.expires_in.as_secs() / 60
                    );
                },
                timeout,
            )
            .await
    } else {
        let loopback = LoopbackOptions {
            port: args.redirect_port,
            path: args.redirect_path.clone(),
        };
        client
            .authorization_code_grant(
                &file,
                &loopback,
                |url| {
                    eprintln!("To sign in, open this address in a browser:\n{url}");
                    if !args.no_browser {
                        open_browser(url);
                    }
                },
                timeout,
            )
            .await
    };
    granted.map_err(oauth_failure)?;
    account.incoming.auth = AuthMethod::OAuth2;
    account.outgoing.auth = AuthMethod::OAuth2;
    account.credential = Some(Credential::OAuth2(credential));
    if let Some(ca) = &args.ca_file {
        account.tls.extra_ca_file = Some(ca.clone());
    }
    let written = match (&args.save, &args.account) {
        (Some(name), _) => {
            let path = crate::accounts::save_account(config_file.as_deref(), name, &account)?;
            format!("account {name} in {}", path.display())
        }
        (None, Some(path)) => {
            write_account(path, &account)?;
            format!("account file {}", path.display())
        }
        (None, None) => unreachable!("checked before the sign-in"),
    };
    println!(
        "signed in as {}: {written} (credential oauth2), tokens in {} (mode 0600)",
        args.address,
        token_file.display()
    );
    Ok(())
}

/// A mail server refused the OAuth 2.0 token: the failure with advice from its JSON challenge.
pub(crate) fn refused_token(
    kind: FailureKind,
    message: &str,
    refusal: &mail_common::sasl::OAuthErrorChallenge,
) -> Failure {
    Failure::new(
        kind,
        format!(
            "{message}; {} (mailctl login ADDRESS --save NAME)",
            mail_account::oauth::refusal_advice(refusal)
        ),
    )
}
