//! `mailctl fetch`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use mail_account::connect::{ServerSettings, pop3_login};
use mail_account::deliver::Delivery;
use mail_account::fetch::{FetchEvent, FetchOptions, fetch};
use mail_account::settings::DeliveryTarget;
use mail_account::store::{
    MailboxIdentity, Mbox, Mda, ReconcileReport, RetentionPolicy, StateReport, Store, StoreError,
};

use crate::server::{Role, ServerArgs};
use crate::{Failure, Outcome};
use mail_account::diagnose::FailureKind;

/// How `mailctl fetch` keeps its state and which file modes it uses (shown in `--help`).
pub(crate) const FETCH_HELP: &str = "\
Fetch state:
  Which messages were fetched is kept in a state journal in the Maildir, named after the
  mailbox, never after the way the connection is made:
    with --host/--user:  .mailctl-state-<user>@<host>
    with --account:      .mailctl-state-<login>@account:<address>
  Changing the port or the TLS mode (POP3S on 995, STLS on 110) keeps the state, and so
  does changing the host name inside an account file. A different --host (localhost
  instead of 127.0.0.1) is a different server to mailctl: it starts a new state, and says
  so when the Maildir already holds state for the same user; give --state FILE to keep
  using one state whatever the flags. State files of earlier versions (named after the
  port too) are taken over without losing any message.
File modes:
  Mail is private: the Maildir and its tmp/, new/, cur/ are created 0700, and messages,
  the state journal and its lock file 0600, whatever the umask. An existing Maildir keeps
  the modes its owner gave it.
Delivery targets:
  --maildir DIR     each message a file in new/; the state journal in the Maildir.
  --mbox FILE       appended in mboxrd form under a dot lock and an fcntl lock, fsynced;
                    the state journal is .<name>.mailctl-state-... beside the file. A run
                    that was killed in the middle of an append cuts the torn message off
                    on the next run and fetches it again.
  --mda COMMAND     run for each message (sh -c, the message on its standard input);
                    only exit status 0 counts as delivered, and it is recorded before any
                    message is deleted on the server. The state journal is in
                    $XDG_STATE_HOME/mailctl/ (~/.local/state/mailctl/). An MDA cannot take
                    part in mailctl's commit: if mailctl is killed while the MDA runs or
                    after it exited, before the record is written, that one message is
                    handed over again on the next run (nothing is ever lost).
  Without a flag the account's [delivery] is used (maildir = \"~/Maildir\", mbox = ...,
  or mda = \"procmail -d %T\").";

/// Flags of `mailctl fetch`.
#[derive(Debug, clap::Args)]
#[command(after_help = FETCH_HELP)]
pub(crate) struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The Maildir to deliver into (created if missing). One of --maildir, --mbox and --mda
    /// is needed unless the account names its delivery ([delivery] in the account).
    // The help text names the TOML table as users write it; it is not a rustdoc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "DIR", group = "target")]
    maildir: Option<PathBuf>,
    /// Append to this mbox file instead (mboxrd, locked with a dot lock and fcntl; created
    /// if missing).
    #[arg(long, value_name = "FILE", group = "target")]
    mbox: Option<PathBuf>,
    /// Hand each message to this command on its standard input instead, run by sh -c
    /// (%F: the envelope sender, %T: the login), e.g. 'procmail -d %T'. Delivered means exit
    /// status 0; a kill can hand the message in flight over twice (see below).
    #[arg(long, value_name = "COMMAND", group = "target")]
    mda: Option<String>,
    /// Leave every message on the server (the default, unless the account file says
    /// otherwise); only new messages are fetched.
    #[arg(long, group = "retention")]
    keep: bool,
    /// Delete each message on the server once it is safely stored.
    #[arg(long, group = "retention")]
    delete: bool,
    /// Delete messages on the server N days after they were downloaded.
    #[arg(long, value_name = "N", group = "retention")]
    delete_after_days: Option<u32>,
    /// Leave each message on the server until it is deleted here: once its file is gone
    /// from the Maildir (and its subfolders), or carries the trashed flag (T), the next
    /// fetch deletes it on the server. Maildir only.
    #[arg(long, group = "retention")]
    until_deleted_here: bool,
    /// The state journal (default: a file in the Maildir named after the login and the
    /// server's host name, or the account; see "Fetch state" below).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Fetch at most N messages in this run.
    #[arg(long, value_name = "N")]
    max_messages: Option<usize>,
    /// Fetch every account of the configuration file once, in parallel (each with its own
    /// fetch state and retention), into --maildir.
    #[arg(long, conflicts_with_all = ["account", "host", "user", "state", "max_messages", "keep", "delete", "delete_after_days"])]
    all: bool,
    /// With --all: checks at once against one server host.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "all")]
    max_per_host: usize,
}

/// Where this fetch delivers.
enum Target {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Mda(String),
}

/// The delivery target: the flags, else the account's `[delivery]`.
fn target(args: &Args, account: Option<&mail_account::Account>) -> Result<Target, Failure> {
    if let Some(dir) = &args.maildir {
        return Ok(Target::Maildir(dir.clone()));
    }
    if let Some(file) = &args.mbox {
        return Ok(Target::Mbox(file.clone()));
    }
    if let Some(command) = &args.mda {
        return Ok(Target::Mda(command.clone()));
    }
    match account.and_then(|a| a.delivery.as_ref()) {
        Some(DeliveryTarget::Maildir(dir)) => Ok(Target::Maildir(expand_home(dir)?)),
        Some(DeliveryTarget::Mbox(file)) => Ok(Target::Mbox(expand_home(file)?)),
        Some(DeliveryTarget::Mda(command)) => Ok(Target::Mda(command.clone())),
        Some(other) => Err(Failure::settings(format!(
            "this mailctl cannot deliver to {other:?}"
        ))),
        None => Err(Failure::settings(
            "nowhere to deliver: give --maildir DIR, --mbox FILE or --mda COMMAND, or set \
             [delivery] in the account",
        )),
    }
}

/// A leading `~/` of a path from an account file is the home directory.
fn expand_home(path: &Path) -> Result<PathBuf, Failure> {
    let Ok(rest) = path.strip_prefix("~") else {
        return Ok(path.to_owned());
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::settings(format!("{}: HOME is not set", path.display())))?;
    Ok(PathBuf::from(home).join(rest))
}

/// The default journal of an MDA delivery: `$XDG_STATE_HOME/mailctl/` (else
/// `~/.local/state/mailctl/`), named after the mailbox.
fn mda_state_file(mailbox: &MailboxIdentity) -> Result<PathBuf, Failure> {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    let base = non_empty("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .ok_or_else(|| Failure::settings("no place for the fetch state: give --state FILE"))?;
    let name = mailbox.state_file_name();
    Ok(base.join("mailctl").join(name.trim_start_matches('.')))
}

/// The default journal of an mbox delivery: `.<mbox name>.mailctl-state-...` beside it.
fn mbox_state_file(mbox: &Path, mailbox: &MailboxIdentity) -> PathBuf {
    let name = mbox
        .file_name()
        .map_or_else(|| "mbox".into(), |n| n.to_string_lossy());
    let dir = match mbox.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    dir.join(format!(".{name}{}", mailbox.state_file_name()))
}

pub(crate) async fn run(args: Args) -> Outcome {
    if args.all {
        // Every account into one Maildir (each with its own state), as `watch` does.
        let maildir = args.maildir.as_deref().ok_or_else(|| {
            Failure::settings("fetch --all delivers into one Maildir: give --maildir DIR")
        })?;
        return crate::watch::fetch_all(
            &[],
            args.server.config.as_deref(),
            maildir,
            args.max_per_host,
        )
        .await;
    }
    let resolved = args.server.resolve(Role::Incoming)?;
    // The account the settings came from: its identity names the fetch state.
    let account = resolved.account;
    let settings = resolved.settings;
    let secret = resolved
        .secret
        .ok_or_else(|| Failure::settings("POP3 needs a password"))?;
    let retention = match (args.delete, args.delete_after_days, &account) {
        _ if args.until_deleted_here => RetentionPolicy::UntilDeletedLocally,
        (true, _, _) => RetentionPolicy::DeleteAfterDownload,
        (false, Some(days), _) => RetentionPolicy::DeleteAfterDays(days),
        // No flag: the account's retention, else keep (the safe default).
        (false, None, Some(account)) if !args.keep => account.retention.into(),
        (false, None, _) => RetentionPolicy::KeepForever,
    };
    let target = target(&args, account.as_ref())?;
    if retention == RetentionPolicy::UntilDeletedLocally && !matches!(target, Target::Maildir(_)) {
        return Err(Failure::settings(
            "\"until deleted here\" needs a Maildir: mailctl cannot see deletions in an mbox \
             or behind an MDA",
        ));
    }
    let mailbox = match &account {
        Some(account) => MailboxIdentity::for_account(account)?,
        None => MailboxIdentity::for_server(&settings),
    };
    let mut options = FetchOptions::new(retention);
    if let Some(max) = args.max_messages {
        options = options.with_max_messages(max);
    }
    let started = Instant::now();
    let local = |e: StoreError| Failure::local(e.to_string());
    match target {
        Target::Maildir(maildir) => {
            let (store, recovered) = match &args.state {
                Some(state) => Store::open(&maildir, state).map_err(local)?,
                None => open_mailbox(&maildir, &mailbox, &settings.host)?,
            };
            report_recovery(&recovered);
            deliver(store, &settings, &secret, &options, started).await
        }
        Target::Mbox(file) => {
            let journal = (args.state.clone()).unwrap_or_else(|| mbox_state_file(&file, &mailbox));
            let (mbox, recovered) = Mbox::open(&file, &journal).map_err(local)?;
            if !recovered.is_clean() {
                eprintln!("mailctl: recovered after an interrupted run: {recovered}");
            }
            deliver(mbox, &settings, &secret, &options, started).await
        }
        Target::Mda(command) => {
            let journal = match args.state.clone() {
                Some(state) => state,
                None => mda_state_file(&mailbox)?,
            };
            let mda = Mda::open(command, settings.username.clone(), &journal).map_err(local)?;
            deliver(mda, &settings, &secret, &options, started).await
        }
    }
}

/// Logs in and fetches into `delivery`, with a progress bar on a terminal.
async fn deliver<D: Delivery>(
    delivery: D,
    settings: &ServerSettings,
    secret: &mail_account::connect::LoginSecret,
    options: &FetchOptions,
    started: Instant,
) -> Outcome {
    let store = mail_account::deliver::shared(delivery);
    let session = pop3_login(settings, secret).await?;
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut stored = 0usize;
    let result = fetch(session, &store, options, SystemTime::now(), |event| {
        let Some(bar) = &bar else { return };
        match event {
            FetchEvent::Listed {
                bytes, to_fetch, ..
            } => {
                bar.set_length(*bytes);
                bar.set_message(format!("0/{to_fetch}"));
            }
            FetchEvent::Received { octets } => bar.inc(*octets),
            FetchEvent::Stored { .. } => {
                stored += 1;
                bar.set_message(format!("{stored} stored"));
            }
            FetchEvent::Warning(text) => bar.println(format!("warning: {text}")),
            _ => {}
        }
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    println!(
        "fetched {} messages ({} bytes) in {:.2} s",
        report.fetched,
        report.bytes,
        started.elapsed().as_secs_f64()
    );
    if report.deleted > 0 || report.deferred > 0 {
        eprintln!(
            "mailctl: {} deleted on the server, {} left for a later run",
            report.deleted, report.deferred
        );
    }
    for warning in &report.warnings {
        if bar.is_none() {
            eprintln!("mailctl: warning: {warning}");
        }
    }
    if !report.is_complete() {
        let n = report.refused;
        return Err(Failure::new(
            FailureKind::Refused,
            format!(
                "{n} message{} refused by the server; {} on the server and will be tried \
                 again next run",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it stays" } else { "they stay" }
            ),
        ));
    }
    Ok(())
}

/// Opens the store with the default journal of `mailbox`, telling what happened to older
/// or other journals.
fn open_mailbox(
    maildir: &Path,
    mailbox: &MailboxIdentity,
    host: &str,
) -> Result<(Store, ReconcileReport), Failure> {
    let (store, recovered, state) =
        Store::open_mailbox(maildir, mailbox, host).map_err(|e| Failure::local(e.to_string()))?;
    report_state(&state, mailbox);
    Ok((store, recovered))
}

/// Tells what happened to older or other state journals.
fn report_state(state: &StateReport, mailbox: &MailboxIdentity) {
    for (path, taken) in &state.taken_over {
        tracing::info!(
            "took over {} ({taken} messages) into {}",
            path.display(),
            state.journal.display()
        );
    }
    for other in &state.other_states {
        eprintln!(
            "mailctl: warning: new fetch state for {mailbox}, but this Maildir already holds \
             state for {} in {}: messages fetched under it are not known here and will be \
             fetched again if it is the same mailbox (give --state {} to keep using it)",
            mailbox.login(),
            other.display(),
            other.display()
        );
    }
}

/// One line after an interrupted run; the file names at -v.
fn report_recovery(recovered: &ReconcileReport) {
    if recovered.is_clean() {
        return;
    }
    eprintln!("mailctl: recovered after an interrupted run: {recovered}");
    for name in &recovered.tmp_removed {
        tracing::info!("removed the partial download tmp/{name}");
    }
    for uidl in &recovered.moved_to_new {
        tracing::info!("completed message {uidl} into new/");
    }
    for uidl in &recovered.already_delivered {
        tracing::info!("message {uidl} was already delivered");
    }
    for uidl in &recovered.refetch {
        tracing::info!("message {uidl} will be fetched again (its download was damaged)");
    }
}
