//! `mailctl watch` (every account of the configuration file, checked again and again) and
//! `mailctl fetch --all` (every account once, in parallel), on the library's poller.
//!
//! All accounts deliver into one Maildir, each with its own fetch state (named after the
//! account, as `mailctl fetch -a NAME` names it), so `watch` and `fetch -a NAME` share
//! their state. Each state's lock is held while `watch` runs: a second `watch` (or a `fetch`)
//! of the same account fails with "in use" instead of fetching the same mail twice.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mail_account::Account;
use mail_account::connect::ServerSettings;
use mail_account::deliver;
use mail_account::diagnose::FailureKind;
use mail_account::fetch::FetchOptions;
use mail_account::poller::{
    CheckFailure, CheckOutcome, PollEvent, PolledAccount, Poller, PollerConfig, Retry,
    SecretSource, check_once, pop3_check_with, pop3_oauth2_check,
};
use mail_account::settings::Credential;
use mail_account::store::{MailboxIdentity, RetentionPolicy, Store};
use tokio::sync::{mpsc, watch};

use crate::{Failure, Outcome};

/// An example systemd user unit (shown in `--help`).
pub(crate) const WATCH_HELP: &str = "\
Running as a service (systemd user unit, ~/.config/systemd/user/mailctl-watch.service):
  [Unit]
  Description=mailctl watch: fetch POP3 mail into ~/Maildir
  After=network-online.target
  [Service]
  ExecStart=%h/.cargo/bin/mailctl watch --maildir %h/Maildir --interval 300
  Restart=on-failure
  [Install]
  WantedBy=default.target
Then: systemctl --user enable --now mailctl-watch. systemd stops it with SIGTERM: mailctl
finishes the message it is receiving, keeps everything received, deletes nothing more and
exits 0. A crash or SIGKILL loses nothing either: the next start settles the state.";

/// Flags of `mailctl watch`.
#[derive(Debug, clap::Args)]
#[command(after_help = WATCH_HELP)]
pub(crate) struct Args {
    /// Watch only these accounts of the configuration file (repeatable; default: all).
    #[arg(short = 'a', long = "account", value_name = "NAME")]
    accounts: Vec<String>,
    /// The configuration file with the named accounts (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The Maildir every account delivers into (created if missing).
    #[arg(long, value_name = "DIR")]
    maildir: PathBuf,
    /// Seconds between two checks of every account (varied by ±10 % so accounts drift apart;
    /// never sooner than the server's LOGIN-DELAY). Without it, each account's
    /// `check_interval`, else 300.
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u64>,
    /// Checks at once against one server host.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_per_host: usize,
    /// Checks at once over all accounts.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_concurrent: usize,
}

/// What both commands need of one account.
struct Prepared {
    name: String,
    polled: PolledAccount,
}

fn retention_of(account: &Account) -> RetentionPolicy {
    account.retention.into()
}

/// Seconds between checks when neither the command line nor the account says.
const DEFAULT_INTERVAL_SECS: u64 = 300;

/// How often `account` is checked: the command line's `--interval` for every account, else the
/// account's own `check_interval`, else [`DEFAULT_INTERVAL_SECS`]; at least a second.
fn interval_for(flag: Option<u64>, account: &Account) -> Duration {
    let secs = flag
        .or(account.check_interval)
        .unwrap_or(DEFAULT_INTERVAL_SECS);
    Duration::from_secs(secs.max(1))
}

/// Opens each account's fetch state in `maildir` (taking its lock) and builds its check,
/// scheduled every `interval(account)`.
async fn prepare(
    accounts: Vec<(String, Account)>,
    maildir: &Path,
    interval: impl Fn(&Account) -> Duration,
) -> Result<Vec<Prepared>, Failure> {
    let mut prepared = Vec::with_capacity(accounts.len());
    for (name, account) in accounts {
        let settings = ServerSettings::incoming(&account)?;
        // Once now, so that a missing variable or a failing command stops the start with a
        // clear error, rather than parking the account at its first check.
        crate::server::account_secret(&account, None)?
            .ok_or_else(|| Failure::settings(format!("account {name}: POP3 needs a password")))?;
        // Asked at every check: a password command runs again, an OAuth2 access token is
        // refreshed once it expires.
        let secret = {
            let account = account.clone();
            let secret: SecretSource =
                Arc::new(
                    move || match crate::server::account_secret(&account, None) {
                        Ok(Some(secret)) => Ok(secret),
                        Ok(None) => Err(CheckFailure::new("no password", Retry::Park)),
                        Err(failure) => {
                            let retry = match failure.kind {
                                FailureKind::Network | FailureKind::Timeout => Retry::Backoff,
                                _ => Retry::Park,
                            };
                            Err(CheckFailure::new(failure.message, retry))
                        }
                    },
                );
            secret
        };
        let mailbox = MailboxIdentity::for_account(&account)?;
        let (maildir, host, label) = (maildir.to_owned(), settings.host.clone(), name.clone());
        let opened =
            tokio::task::spawn_blocking(move || Store::open_mailbox(&maildir, &mailbox, &host))
                .await
                .map_err(|e| Failure::local(e.to_string()))?
                .map_err(|e| Failure::local(format!("account {label}: {e}")))?;
        let (store, recovered, _state) = opened;
        if !recovered.is_clean() {
            eprintln!("mailctl: {name}: recovered after an interrupted run: {recovered}");
        }
        let every = interval(&account);
        let options = FetchOptions::new(retention_of(&account));
        let host = settings.host.clone();
        let check = match &account.credential {
            // A token the server refuses is refreshed at once; a revoked grant parks.
            Some(Credential::OAuth2(oauth)) => {
                let (client, file) = crate::login::oauth_client(&account, oauth)?;
                pop3_oauth2_check(settings, client, file, deliver::shared(store), options)
            }
            _ => pop3_check_with(settings, secret, deliver::shared(store), options),
        };
        prepared.push(Prepared {
            polled: PolledAccount::new(name.clone(), &host, every, check),
            name,
        });
    }
    Ok(prepared)
}

fn describe(event: &PollEvent) -> Option<String> {
    Some(match event {
        PollEvent::Fetched {
            account,
            report,
            next_in,
        } => {
            let mut line = format!(
                "{account}: {} new ({} bytes), {} deleted on the server",
                report.fetched, report.bytes, report.deleted
            );
            if report.stopped {
                line.push_str(", stopped after the current message");
            } else if !next_in.is_zero() {
                let _ = write!(line, ", next check in {}", human(*next_in));
            }
            line
        }
        PollEvent::Failed {
            account,
            failure,
            attempt,
            next_in,
        } => {
            let mut line = format!("{account}: failed ({}): {}", attempt, failure.reason);
            if !next_in.is_zero() {
                let _ = write!(line, "; retry in {}", human(*next_in));
            }
            line
        }
        PollEvent::Parked { account, reason } => {
            format!("{account}: not checked again until mailctl restarts: {reason}")
        }
        _ => return None,
    })
}

fn human(wait: Duration) -> String {
    let secs = wait.as_secs();
    if secs >= 120 {
        format!("{} min", (secs + 30) / 60)
    } else {
        format!("{secs} s")
    }
}

/// Shows each event as it comes: on a terminal, one status line per account, rewritten in
/// place; otherwise one line per account and check (for a log or the journal).
fn spawn_printer(
    names: &[String],
    mut events: mpsc::Receiver<PollEvent>,
) -> tokio::task::JoinHandle<()> {
    let lines = std::io::stdout().is_terminal().then(|| {
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        names
            .iter()
            .map(|name| {
                let line =
                    multi.add(indicatif::ProgressBar::new_spinner().with_style(style.clone()));
                line.set_message(format!("{name}: waiting"));
                (name.clone(), line)
            })
            .collect::<std::collections::HashMap<_, _>>()
    });
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let text = match &event {
                PollEvent::Checking { account } => Some(format!("{account}: checking...")),
                other => describe(other),
            };
            let Some(text) = text else { continue };
            let (PollEvent::Checking { account }
            | PollEvent::Fetched { account, .. }
            | PollEvent::Failed { account, .. }
            | PollEvent::Parked { account, .. }
            | PollEvent::Stopped { account }) = &event
            else {
                continue;
            };
            match lines.as_ref().and_then(|lines| lines.get(account)) {
                Some(line) => line.set_message(text),
                None if !matches!(event, PollEvent::Checking { .. }) => println!("{text}"),
                None => {}
            }
        }
        if let Some(lines) = lines {
            for line in lines.values() {
                line.finish();
            }
        }
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn run(args: Args) -> Outcome {
    let accounts = crate::accounts::named_accounts(&args.accounts, args.config.as_deref())?;
    let flag = args.interval;
    let prepared = prepare(accounts, &args.maildir, |account| {
        interval_for(flag, account)
    })
    .await?;
    let every = flag.map_or_else(
        || {
            let default = human(Duration::from_secs(DEFAULT_INTERVAL_SECS));
            format!("each at its check_interval (default every {default})")
        },
        |secs| format!("every {}", human(Duration::from_secs(secs.max(1)))),
    );
    let names: Vec<String> = prepared.iter().map(|p| p.name.clone()).collect();
    eprintln!(
        "mailctl: watching {} account{} ({}) into {}, {}",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        args.maildir.display(),
        every
    );
    let config = PollerConfig::default()
        .with_max_concurrent(args.max_concurrent)
        .with_max_per_host(args.max_per_host);
    let (tx, rx) = mpsc::channel(256);
    let printer = spawn_printer(&names, rx);
    let mut poller = Poller::start(prepared.into_iter().map(|p| p.polled).collect(), config, tx);
    let all_parked = tokio::select! {
        () = termination() => false,
        () = poller.wait() => true,
    };
    poller.shutdown().await;
    let _ = printer.await;
    if all_parked {
        return Err(Failure::settings(
            "every account failed permanently; nothing left to watch",
        ));
    }
    eprintln!("mailctl: stopped");
    Ok(())
}

/// `mailctl fetch --all`: every account (or those named) once, in parallel.
pub(crate) async fn fetch_all(
    names: &[String],
    config: Option<&Path>,
    maildir: &Path,
    max_per_host: usize,
) -> Outcome {
    let accounts = crate::accounts::named_accounts(names, config)?;
    let prepared = prepare(accounts, maildir, |_| Duration::ZERO).await?;
    let names: Vec<String> = prepared.iter().map(|p| p.name.clone()).collect();
    let (tx, rx) = mpsc::channel(256);
    let printer = spawn_printer(&names, rx);
    let (stop_tx, stop) = watch::channel(false);
    let polled = prepared.into_iter().map(|p| p.polled).collect();
    let config = PollerConfig::default().with_max_per_host(max_per_host);
    let run = check_once(polled, &config, tx, stop);
    tokio::pin!(run);
    let results = tokio::select! {
        results = &mut run => results,
        () = termination() => {
            stop_tx.send_replace(true);
            run.await
        }
    };
    let _ = printer.await;
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, outcome)| !matches!(outcome, CheckOutcome::Fetched { .. }))
        .map(|(name, _)| name.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        FailureKind::Refused,
        format!(
            "{} of {} accounts failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mail_account::Account;

    use super::interval_for;

    fn account(check_interval: Option<u64>) -> Account {
        let mut account = Account::from_toml(
            r#"
address = "taro@example.jp"
[incoming]
host = "pop.example.jp"
port = 995
security = "implicit-tls"
username = "{address}"
auth = "password-cleartext"
[outgoing]
host = "smtp.example.jp"
port = 587
security = "starttls"
username = "{address}"
auth = "password-cleartext"
"#,
        )
        .unwrap();
        account.check_interval = check_interval;
        account
    }

    /// Issue 17: "interval from the account or a flag": the flag wins for every account, then
    /// the account's own setting, then five minutes; never zero.
    #[test]
    fn the_flag_then_the_account_then_the_default() {
        assert_eq!(
            interval_for(Some(60), &account(Some(600))),
            Duration::from_secs(60)
        );
        assert_eq!(
            interval_for(None, &account(Some(600))),
            Duration::from_secs(600)
        );
        assert_eq!(interval_for(None, &account(None)), Duration::from_secs(300));
        assert_eq!(
            interval_for(None, &account(Some(0))),
            Duration::from_secs(1)
        );
    }
}
