//! `mailctl fetch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use mail_account::connect::pop3_login;
use mail_account::fetch::{FetchEvent, FetchOptions, fetch};
use mail_account::store::{MailboxIdentity, ReconcileReport, RetentionPolicy, StateReport, Store};

use mail_account::settings::Retention;

use crate::server::{Role, ServerArgs};
use crate::{Failure, Outcome};
use mail_account::connect::FailureKind;

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
  the modes its owner gave it.";

/// Flags of `mailctl fetch`.
#[derive(Debug, clap::Args)]
#[command(after_help = FETCH_HELP)]
pub(crate) struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The Maildir to deliver into (created if missing).
    #[arg(long, value_name = "DIR")]
    maildir: PathBuf,
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

pub(crate) async fn run(args: Args) -> Outcome {
    if args.all {
        return crate::watch::fetch_all(
            &[],
            args.server.config.as_deref(),
            &args.maildir,
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
        (true, _, _) => RetentionPolicy::DeleteAfterDownload,
        (false, Some(days), _) => RetentionPolicy::DeleteAfterDays(days),
        // No flag: the account's retention, else keep (the safe default).
        (false, None, Some(account)) if !args.keep => match account.retention {
            Retention::KeepOnServer => RetentionPolicy::KeepForever,
            Retention::DeleteAfterDownload => RetentionPolicy::DeleteAfterDownload,
            Retention::DeleteAfterDays(days) => RetentionPolicy::DeleteAfterDays(days),
        },
        (false, None, _) => RetentionPolicy::KeepForever,
    };
    let started = Instant::now();
    let (store, recovered) = match (&args.state, &account) {
        (Some(state), _) => {
            Store::open(&args.maildir, state).map_err(|e| Failure::local(e.to_string()))?
        }
        (None, Some(account)) => {
            let mailbox = MailboxIdentity::for_account(account)?;
            open_mailbox(&args.maildir, &mailbox, &settings.host)?
        }
        (None, None) => open_mailbox(
            &args.maildir,
            &MailboxIdentity::for_server(&settings),
            &settings.host,
        )?,
    };
    report_recovery(&recovered);
    let store = mail_account::deliver::shared(store);
    let session = pop3_login(&settings, &secret).await?;
    let mut options = FetchOptions::new(retention);
    if let Some(max) = args.max_messages {
        options = options.with_max_messages(max);
    }
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
    let result = fetch(session, &store, &options, SystemTime::now(), |event| {
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
    maildir: &std::path::Path,
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
