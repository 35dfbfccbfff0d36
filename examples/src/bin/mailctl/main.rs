//! `mailctl`: set up a mail account, fetch over POP3 into a Maildir, send over SMTP.
//!
//! The command line only parses flags and prints; the work is done by `mail-account`,
//! `pop3-proto` and `smtp-submit`.
#![forbid(unsafe_code)]

mod demo;
mod discover;
mod fetch;
mod login;
mod send;
mod server;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mail_account::connect::FailureKind;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success
  2   usage error (bad flags)
  3   TLS: certificate not trusted or not valid for the host, STARTTLS missing
  4   authentication refused
  5   protocol error (the server broke the protocol, or a limit was exceeded)
  6   timeout
  7   local I/O (Maildir, state journal, message file)
  8   network (connection refused, host unknown)
  9   the server refused a command, a message or a recipient
  10  settings (missing or contradictory flags, unreadable account file, password variable unset)
On failure one line on stderr names the cause.";

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
    /// Find the POP3 and SMTP settings of an address, with the source of each.
    Discover(discover::Args),
    /// Sign in with OAuth2 (Outlook.com, Gmail, ...) and write an account file that uses it.
    Login(login::Args),
    /// Fetch mail over POP3 into a Maildir, crash-safely.
    Fetch(fetch::Args),
    /// Send an RFC 5322 message (a file, stdin, or composed from --subject/--body).
    Send(send::Args),
    /// Prove an account works: send a test message to itself and fetch it back.
    Verify(verify::Args),
    /// Offline demo: start loopback POP3 and SMTP servers, then discover, send and fetch.
    Demo(demo::Args),
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
            let kind = mail_account::connect::smtp_failure_kind(&error);
            return login::refused_token(kind, &error.to_string(), refusal);
        }
        Self::new(
            mail_account::connect::smtp_failure_kind(&error),
            error.to_string(),
        )
    }
}

impl From<mail_account::fetch::FetchError> for Failure {
    fn from(error: mail_account::fetch::FetchError) -> Self {
        use mail_account::fetch::FetchError;
        let kind = match &error {
            FetchError::Pop3(inner) => mail_account::connect::pop3_failure_kind(inner),
            FetchError::Store(_) | FetchError::Write(_) => FailureKind::LocalIo,
            _ => FailureKind::Protocol,
        };
        Self::new(kind, error.to_string())
    }
}

/// The result of a subcommand.
pub(crate) type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
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
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mailctl: cannot start the runtime: {e}");
            return ExitCode::from(7);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Discover(args) => discover::run(args).await,
            Command::Login(args) => Box::pin(login::run(args)).await,
            Command::Fetch(args) => fetch::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mailctl: {} error: {}", failure.kind, failure.message);
            ExitCode::from(failure.exit_code())
        }
    }
}
