//! `mailctl fetch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use mail_account::connect::pop3_login;
use mail_account::fetch::{FetchEvent, FetchOptions, fetch};
use mail_account::store::{RetentionPolicy, Store};

use mail_account::settings::Retention;

use crate::server::{Role, ServerArgs};
use crate::{Failure, Outcome};

/// Flags of `mailctl fetch`.
#[derive(Debug, clap::Args)]
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
    /// The state journal (default: a file in the Maildir named after the user and server).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Fetch at most N messages in this run.
    #[arg(long, value_name = "N")]
    max_messages: Option<usize>,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let resolved = args.server.resolve(Role::Incoming)?;
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
    let state = args.state.clone().unwrap_or_else(|| {
        let name = format!(
            ".mailctl-state-{}@{}-{}",
            settings.username, settings.host, settings.port
        );
        args.maildir.join(name.replace(['/', '\\'], "_"))
    });
    let started = Instant::now();
    let (mut store, recovered) =
        Store::open(&args.maildir, &state).map_err(|e| Failure::local(e.to_string()))?;
    if !recovered.is_clean() {
        eprintln!("mailctl: recovered after an interrupted run: {recovered:?}");
    }
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
    let result = fetch(session, &mut store, &options, SystemTime::now(), |event| {
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
    if report.deleted > 0 || report.deferred > 0 || report.refused > 0 {
        eprintln!(
            "mailctl: {} deleted on the server, {} left for a later run, {} refused by the server",
            report.deleted, report.deferred, report.refused
        );
    }
    for warning in &report.warnings {
        if bar.is_none() {
            eprintln!("mailctl: warning: {warning}");
        }
    }
    Ok(())
}
