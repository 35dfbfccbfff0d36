//! Named accounts in one configuration file, as msmtp and mpop users keep them, and
//! `mailctl accounts`.
//!
//! The file is `--config FILE`, else `$MAILCTL_CONFIG`, else
//! `$XDG_CONFIG_HOME/mailctl/accounts.toml` (`~/.config/mailctl/accounts.toml`). Each
//! `[accounts.NAME]` table is an account exactly as in a single account file; `default` names
//! the account used when none is given (a file with one account needs none):
//!
//! ```toml
//! default = "work"
//!
//! [accounts.work]
//! address = "taro@example.jp"
//! display_name = "山田 太郎"
//! [accounts.work.incoming]
//! # host, port, security, username, auth as in an account file
//! [accounts.work.credential]
//! command = ["pass", "mail/work"]
//! [accounts.work.delivery]           # where `mailctl fetch -a work` delivers
//! maildir = "~/Mail/work"            # or: mbox = "~/mail/work", or: mda = "procmail -d %T"
//! ```
//!
//! A file that holds a password itself must be readable by its owner only (as msmtp demands);
//! otherwise it is refused. Passwords normally come from `env` or `command` credentials, the
//! OS keyring (`[accounts.NAME.credential.keyring]` with `service` and `user`; mailctl built
//! with the `keyring` feature), or OAuth2 (`mailctl login ADDRESS --save NAME`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use mail_account::Account;
use mail_account::settings::{Credential, KeyringEntry};
use serde::{Deserialize, Serialize};

use crate::{Failure, Outcome};

/// The environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "MAILCTL_CONFIG";

/// The configuration file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    /// The account used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    /// The accounts by name.
    #[serde(default)]
    accounts: BTreeMap<String, Account>,
}

/// The configuration file's path: `explicit`, else `$MAILCTL_CONFIG`, else the XDG location.
pub(crate) fn config_path(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(path) = non_empty(CONFIG_ENV) {
        return Ok(PathBuf::from(path));
    }
    let base = non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or_else(|| {
            Failure::settings(format!(
                "no configuration file: HOME is not set; give --config FILE or set {CONFIG_ENV}"
            ))
        })?;
    Ok(base.join("mailctl").join("accounts.toml"))
}

/// Whether `--account`'s value names a file rather than an account in the configuration file.
fn is_file_spec(spec: &str) -> bool {
    spec.contains(std::path::MAIN_SEPARATOR)
        || spec.contains('/')
        || Path::new(spec)
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"))
}

/// Refuses a file holding a password that others may read.
fn check_secret_permissions(path: &Path, holds_secret: bool) -> Result<(), Failure> {
    #[cfg(unix)]
    if holds_secret {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| Failure::local(format!("{}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Failure::settings(format!(
                "{} holds a password and is readable by others (mode {:o}); \
                 run `chmod 600 {}`, or keep the password in an env or command credential",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, holds_secret);
    Ok(())
}

fn holds_password(account: &Account) -> bool {
    matches!(account.credential, Some(Credential::Password(_)))
}

/// Whether saving `account` puts a secret into the file: a password, or an OAuth2 client
/// secret (`mailctl login --client-secret-env`).
pub(crate) fn saves_secret(account: &Account) -> bool {
    match &account.credential {
        Some(Credential::OAuth2(oauth)) => oauth.client_secret.is_some(),
        _ => holds_password(account),
    }
}

/// Where an account's password or token comes from, for `mailctl accounts`; never the secret.
fn credential_source(account: &Account) -> String {
    match &account.credential {
        None => "no credential".to_owned(),
        Some(Credential::Password(_)) => "password in this file".to_owned(),
        Some(Credential::Env(var)) => format!("env {var}"),
        Some(Credential::Command(argv)) => {
            format!("command {}", argv.first().map_or("", String::as_str))
        }
        Some(Credential::OAuth2(oauth)) => {
            format!("oauth2, tokens in {}", oauth.token_file.display())
        }
        Some(Credential::Keyring(entry)) => {
            format!("keyring service {:?} user {:?}", entry.service, entry.user)
        }
    }
}

/// Reads an account file (one account), refusing it when it holds a password others can read.
pub(crate) fn read_account_file(path: &Path) -> Result<Account, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::local(format!("cannot read account file {}: {e}", path.display())))?;
    let account = Account::from_toml(&text)
        .map_err(|e| Failure::settings(format!("{}: {e}", path.display())))?;
    check_secret_permissions(path, holds_password(&account))?;
    Ok(account)
}

fn read_config(path: &Path) -> Result<Option<AccountsFile>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::local(format!("{}: {e}", path.display()))),
    };
    let file: AccountsFile =
        toml::from_str(&text).map_err(|e| Failure::settings(format!("{}: {e}", path.display())))?;
    for (name, account) in &file.accounts {
        account
            .check()
            .map_err(|e| Failure::settings(format!("{}: account {name}: {e}", path.display())))?;
    }
    if let Some(default) = &file.default
        && !file.accounts.contains_key(default)
    {
        return Err(Failure::settings(format!(
            "{}: default = {default:?} names no account",
            path.display()
        )));
    }
    check_secret_permissions(path, file.accounts.values().any(holds_password))?;
    Ok(Some(file))
}

fn names(file: &AccountsFile) -> String {
    file.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The account `spec` names (a file path, or a name in the configuration file), or the
/// configuration file's default account when `spec` is `None`. `Ok(None)`: no spec and no
/// configuration file (the caller falls back to its flags).
pub(crate) fn find_account(
    spec: Option<&str>,
    config: Option<&Path>,
) -> Result<Option<Account>, Failure> {
    if let Some(spec) = spec
        && is_file_spec(spec)
    {
        return read_account_file(Path::new(spec)).map(Some);
    }
    let path = config_path(config)?;
    let Some(file) = read_config(&path)? else {
        return match spec {
            Some(name) => Err(Failure::settings(format!(
                "no account {name:?}: {} does not exist",
                path.display()
            ))),
            None => Ok(None),
        };
    };
    let name = match (spec, file.default.as_deref()) {
        (Some(name), _) | (None, Some(name)) => name.to_owned(),
        (None, None) if file.accounts.len() == 1 => {
            file.accounts.keys().next().cloned().unwrap_or_default()
        }
        (None, None) if file.accounts.is_empty() => return Ok(None),
        (None, None) => {
            return Err(Failure::settings(format!(
                "{} has several accounts ({}) and no default: give -a NAME or set default = \"NAME\"",
                path.display(),
                names(&file)
            )));
        }
    };
    let mut file = file;
    file.accounts.remove(&name).map(Some).ok_or_else(|| {
        Failure::settings(format!(
            "no account {name:?} in {} (accounts: {})",
            path.display(),
            names(&file)
        ))
    })
}

/// The accounts of the configuration file named in `names`, or all of them when `names` is
/// empty, by name. For `mailctl watch` and `mailctl fetch --all`.
pub(crate) fn named_accounts(
    wanted: &[String],
    config: Option<&Path>,
) -> Result<Vec<(String, Account)>, Failure> {
    let path = config_path(config)?;
    let mut file = read_config(&path)?.ok_or_else(|| {
        Failure::settings(format!(
            "{} does not exist; `mailctl discover ADDRESS --save NAME` writes an entry",
            path.display()
        ))
    })?;
    if file.accounts.is_empty() {
        return Err(Failure::settings(format!(
            "{} holds no account",
            path.display()
        )));
    }
    if wanted.is_empty() {
        return Ok(std::mem::take(&mut file.accounts).into_iter().collect());
    }
    let mut chosen = Vec::with_capacity(wanted.len());
    for name in wanted {
        let account = file.accounts.get(name).cloned().ok_or_else(|| {
            Failure::settings(format!(
                "no account {name:?} in {} (accounts: {})",
                path.display(),
                names(&file)
            ))
        })?;
        chosen.push((name.clone(), account));
    }
    Ok(chosen)
}

/// Flags of `mailctl accounts`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `mailctl accounts`: the accounts of the configuration file, the default marked.
pub(crate) fn run(args: &Args) -> Outcome {
    let path = config_path(args.config.as_deref())?;
    let file = read_config(&path)?.ok_or_else(|| {
        Failure::settings(format!(
            "{} does not exist; `mailctl discover ADDRESS --save NAME` writes an entry",
            path.display()
        ))
    })?;
    let default = file
        .default
        .clone()
        .or_else(|| (file.accounts.len() == 1).then(|| names(&file)));
    if args.json {
        let accounts: Vec<_> = file
            .accounts
            .iter()
            .map(|(name, a)| {
                serde_json::json!({
                    "name": name,
                    "default": default.as_deref() == Some(name.as_str()),
                    "address": a.address,
                    "display_name": a.display_name,
                    "incoming": format!("{}:{}", a.incoming.host, a.incoming.port),
                    "outgoing": format!("{}:{}", a.outgoing.host, a.outgoing.port),
                    "credential": credential_source(a),
                })
            })
            .collect();
        println!(
            "{:#}",
            serde_json::json!({ "config": path, "accounts": accounts })
        );
        return Ok(());
    }
    println!("{}", path.display());
    for (name, a) in &file.accounts {
        let mark = if default.as_deref() == Some(name.as_str()) {
            '*'
        } else {
            ' '
        };
        let who = a.display_name.as_ref().map_or_else(
            || a.address.clone(),
            |display| format!("{display} <{}>", a.address),
        );
        println!(
            "{mark} {name:<12} {who}  in {}:{}  out {}:{}  password: {}",
            a.incoming.host,
            a.incoming.port,
            a.outgoing.host,
            a.outgoing.port,
            credential_source(a)
        );
    }
    Ok(())
}

/// Flags of `mailctl discover` for `--save NAME`.
#[derive(Debug, clap::Args)]
pub(crate) struct SaveArgs {
    /// Save the discovered settings as account NAME in the configuration file (the first
    /// account saved becomes the default).
    #[arg(long, value_name = "NAME")]
    save: Option<String>,
    /// With --save: the configuration file (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE", requires = "save")]
    config: Option<PathBuf>,
    /// With --save: the name shown in From of mail you compose (RFC 2047-encoded when not
    /// ASCII).
    #[arg(long, value_name = "NAME", requires = "save")]
    display_name: Option<String>,
    /// With --save: a command whose first output line is the password (program and
    /// arguments separated by spaces, no shell), saved instead of --password-env's variable
    /// (which --verify still uses).
    #[arg(long, value_name = "CMD", requires = "save")]
    password_command: Option<String>,
    /// With --save: take the password from the OS keyring entry of service SERVICE (user: the
    /// address, or --keyring-user). Reading it needs mailctl built with the `keyring` feature
    /// and, on Linux, a running Secret Service.
    #[arg(
        long,
        value_name = "SERVICE",
        requires = "save",
        conflicts_with = "password_command"
    )]
    password_keyring: Option<String>,
    /// With --password-keyring: the user of the keyring entry (default: the address).
    #[arg(long, value_name = "USER", requires = "password_keyring")]
    keyring_user: Option<String>,
}

/// `discover --save NAME`: writes the discovered account with its credential (the variable
/// of `--password-env`, `--password-command`, or `--password-keyring`), display name and CA
/// file.
pub(crate) fn save_discovered(
    args: &SaveArgs,
    report: &mail_account::DiscoveryReport,
    password_env: Option<&str>,
    ca_file: Option<&Path>,
) -> Outcome {
    let Some(name) = &args.save else {
        return Ok(());
    };
    let mut account = report
        .to_account()
        .map_err(|e| Failure::settings(format!("cannot save: {e}")))?;
    if let Some(display_name) = &args.display_name {
        account.display_name = Some(display_name.clone());
    }
    if let Some(var) = password_env {
        account.credential = Some(Credential::Env(var.to_owned()));
    }
    // The command wins: --password-env may be there only for --verify.
    if let Some(command) = &args.password_command {
        let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if argv.is_empty() {
            return Err(Failure::settings("--password-command is empty"));
        }
        account.credential = Some(Credential::Command(argv));
    }
    if let Some(service) = &args.password_keyring {
        let user = args
            .keyring_user
            .clone()
            .unwrap_or_else(|| account.address.clone());
        account.credential = Some(Credential::Keyring(KeyringEntry::new(
            service.clone(),
            user,
        )));
    }
    if let Some(ca) = ca_file {
        account.tls.extra_ca_file = Some(std::path::absolute(ca).unwrap_or_else(|_| ca.to_owned()));
    }
    let path = save_account(args.config.as_deref(), name, &account)?;
    println!("saved:    account {name} in {}", path.display());
    Ok(())
}

/// Checks that `name` is a valid account name not yet in the configuration file (which, if it
/// exists, must read, and be readable by its owner only when `with_secret`: the entry to save
/// holds one); returns the file's path. `save_account` checks the same again.
pub(crate) fn check_new_name(
    config: Option<&Path>,
    name: &str,
    with_secret: bool,
) -> Result<PathBuf, Failure> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Failure::settings(format!(
            "account name {name:?}: use letters, digits, '-' and '_'"
        )));
    }
    let path = config_path(config)?;
    if read_config(&path)?.is_some_and(|file| file.accounts.contains_key(name)) {
        return Err(Failure::settings(format!(
            "{} already has an account {name:?}; edit it there or choose another name",
            path.display()
        )));
    }
    if path.exists() {
        check_secret_permissions(&path, with_secret)?;
    }
    Ok(path)
}

/// Appends `account` as `[accounts.NAME]` to the configuration file (created with mode 0600
/// if missing; comments and the other accounts are left as they are). The first account of a
/// new file becomes its default.
pub(crate) fn save_account(
    config: Option<&Path>,
    name: &str,
    account: &Account,
) -> Result<PathBuf, Failure> {
    let path = check_new_name(config, name, saves_secret(account))?;
    let existing = read_config(&path)?;
    let entry = AccountsFile {
        default: existing.is_none().then(|| name.to_owned()),
        accounts: BTreeMap::from([(name.to_owned(), account.clone())]),
    };
    let text = toml::to_string(&entry).map_err(|e| Failure::settings(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::local(format!("{}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| Failure::local(format!("{}: {e}", path.display())))?;
    let separator = if existing.is_some() { "\n" } else { "" };
    file.write_all(format!("{separator}{text}").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::local(format!("cannot write {}: {e}", path.display())))?;
    // The appended table must read back (a file whose last line was a bare key would not).
    read_config(&path)?;
    check_secret_permissions(&path, holds_password(account))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::is_file_spec;

    #[test]
    fn names_and_files_are_told_apart() {
        assert!(!is_file_spec("work"));
        assert!(is_file_spec("work.toml"));
        assert!(is_file_spec("./work"));
        assert!(is_file_spec("/etc/mailctl/work"));
    }
}
