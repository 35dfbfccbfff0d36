//! `mailctl`: set up a mail account, fetch over POP3 into a Maildir, send over SMTP.
//!
//! The command line is flags and printing; the work, and the choices (default ports per role,
//! which credential source wins, the cleartext refusal, failure kinds), are `mail-account`'s,
//! `pop3-proto`'s and `smtp-submit`'s.
#![forbid(unsafe_code)]

// First, and with `macro_use`: its `println!`/`eprintln!` replace the standard ones in every
// module below (a closed pipe ends output quietly instead of panicking).
#[macro_use]
mod output;

mod accounts;
mod completions;
mod demo;
mod discover;
mod fetch;
mod list;
mod login;
mod roundtrip;
mod send;
mod sendmail;
mod server;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mail_account::diagnose::FailureKind;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success
  2   usage error (bad flags)
  3   TLS: certificate not trusted or not valid for the host, STARTTLS missing
  4   authentication refused
  5   protocol error (the server broke the protocol, or a limit was exceeded)
  6   timeout
  7   local I/O (Maildir, mbox, an MDA that failed, state journal, message file)
  8   network (connection refused, host unknown)
  9   the server refused a command, a message or a recipient (also: a fetch that left a
      message on the server because the server refused to hand it out)
  10  settings (missing or contradictory flags, unreadable account file, password variable unset)
  141 stdout was closed by its reader (as `mailctl discover ... | head`): output stops
      quietly, as a Unix tool killed by SIGPIPE
On failure one line on stderr names the cause; -v adds details.";

#[derive(Debug, Parser)]
#[command(
    name = "mailctl",
    version,
    about = "Set up a mail account, fetch mail over POP3 into a Maildir, send mail over SMTP.",
    after_help = EXIT_STATUS_HELP
)]
struct Cli {
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). Passwords are never
    /// logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find the POP3 and SMTP settings of an address, with the source of each (and the IMAP
    /// settings, as data for other mail clients: mailctl does not use IMAP).
    Discover(discover::Args),
    /// Sign in with OAuth2 (Outlook.com, Gmail, ...) and save an account that uses it (--save NAME or --account FILE).
    Login(login::Args),
    /// Fetch mail over POP3 into a Maildir, crash-safely (--all: every account at once).
    Fetch(fetch::Args),
    /// Check every account (or -a NAME...) again and again, delivering into one Maildir,
    /// until SIGTERM or SIGINT.
    Watch(watch::Args),
    /// Show what is on the POP3 server (number, size, date, sender, subject) without
    /// downloading bodies (TOP n 0).
    List(list::Args),
    /// Send an RFC 5322 message (a file, stdin, or composed from --subject/--body).
    Send(send::Args),
    /// Prove an account works end to end: send a test message to itself and fetch it back
    /// (`verify` is its earlier name; `discover --verify` only logs in).
    #[command(visible_alias = "verify")]
    Roundtrip(roundtrip::Args),
    /// Offline demo: start loopback POP3 and SMTP servers, then discover, send and fetch.
    Demo(demo::Args),
    /// List the named accounts of the configuration file (the default marked with *).
    Accounts(accounts::Args),
    /// sendmail-compatible submission of the message on stdin through an account (-t -i -f
    /// -F -a), for git send-email, cron, mutt and scripts; also when run as `sendmail`.
    Sendmail(Box<sendmail::Args>),
    /// Print a shell completion script (bash: `source <(mailctl completions bash)`).
    Completions(completions::Args),
    /// Write the man pages generated from these flags into a directory.
    #[command(hide = true)]
    Man(completions::ManArgs),
}

/// A failure: its kind picks the exit status, its message is the one stderr line.
#[derive(Debug)]
pub(crate) struct Failure {
    kind: FailureKind,
    message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A settings failure.
    pub(crate) fn settings(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Config, message)
    }

    /// A local I/O failure.
    pub(crate) fn local(message: impl Into<String>) -> Self {
        Self::new(FailureKind::LocalIo, message)
    }

    /// How the one stderr line names the failure: "TLS error", "refused by the server".
    fn label(&self) -> String {
        match self.kind {
            FailureKind::Refused => "refused by the server".to_owned(),
            kind => format!("{kind} error"),
        }
    }

    fn exit_code(&self) -> u8 {
        match self.kind {
            FailureKind::Tls => 3,
            FailureKind::Auth => 4,
            FailureKind::Protocol => 5,
            FailureKind::Timeout => 6,
            FailureKind::LocalIo => 7,
            FailureKind::Network => 8,
            FailureKind::Refused => 9,
            _ => 10,
        }
    }
}

/// An unusable credential (a variable unset, a password command that failed) is a settings
/// failure.
impl From<mail_account::settings::CredentialError> for Failure {
    fn from(error: mail_account::settings::CredentialError) -> Self {
        Self::settings(error.to_string())
    }
}

impl From<mail_account::connect::ConnectError> for Failure {
    fn from(error: mail_account::connect::ConnectError) -> Self {
        match error.oauth_refusal() {
            Some(refusal) => login::refused_token(error.kind(), &error.to_string(), refusal),
            None => Self::new(error.kind(), error.to_string()),
        }
    }
}

impl From<smtp_submit::tokio::Error> for Failure {
    fn from(error: smtp_submit::tokio::Error) -> Self {
        if let Some(refusal) = mail_account::oauth::smtp_oauth_refusal(&error) {
            let kind = error.kind();
            return login::refused_token(kind, &error.to_string(), refusal);
        }
        Self::new(error.kind(), error.to_string())
    }
}

impl From<mail_account::fetch::FetchError> for Failure {
    fn from(error: mail_account::fetch::FetchError) -> Self {
        use mail_account::fetch::FetchError;
        let kind = match &error {
            FetchError::Pop3(inner) => inner.kind(),
            FetchError::Store(_) | FetchError::Write(_) => FailureKind::LocalIo,
            _ => FailureKind::Protocol,
        };
        Self::new(kind, error.to_string())
    }
}

/// The result of a subcommand.
pub(crate) type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    // Under the name `sendmail` (a symlink or a copy): sendmail's flags, sysexits statuses.
    if sendmail::invoked_as_sendmail() {
        let cli = match sendmail::SendmailCli::try_parse() {
            Ok(cli) => cli,
            Err(error) => return sendmail::usage_error(&error),
        };
        init_tracing(cli.verbose);
        return match runtime() {
            Ok(runtime) => runtime.block_on(sendmail::run(cli.args)),
            Err(code) => code,
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `mailctl sendmail` with bad flags is a usage error as sendmail reports it (64).
        Err(error) if std::env::args().nth(1).as_deref() == Some("sendmail") => {
            return sendmail::usage_error(&error);
        }
        Err(error) => error.exit(),
    };
    init_tracing(cli.verbose);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let command = match cli.command {
        // sysexits statuses of its own, and no "mailctl: kind error" line.
        Command::Sendmail(args) => return runtime.block_on(sendmail::run(*args)),
        command => command,
    };
    let outcome = runtime.block_on(async {
        match command {
            // Boxed: discovery with its connection checks is a large future (clippy large_futures).
            Command::Discover(args) => Box::pin(discover::run(args)).await,
            Command::Login(args) => Box::pin(login::run(args)).await,
            Command::Fetch(args) => fetch::run(args).await,
            Command::Watch(args) => watch::run(args).await,
            Command::List(args) => list::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Roundtrip(args) => roundtrip::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Accounts(args) => accounts::run(&args),
            Command::Completions(args) => completions::run(&args),
            Command::Man(args) => completions::man(&args),
            Command::Sendmail(_) => Ok(()), // ran above
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mailctl: {}: {}", failure.label(), failure.message);
            ExitCode::from(failure.exit_code())
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not end the run: the subscriber would report its write error
        // with `eprintln!`, which panics on a closed pipe.
        .log_internal_errors(false)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("mailctl: cannot start the runtime: {e}");
            ExitCode::from(7)
        })
}
