//! `mailctl sendmail` (and mailctl run under the name `sendmail`): a sendmail-compatible
//! front end, as msmtp offers, so git send-email, cron, mutt and scripts can submit mail
//! through an account. The message comes on stdin; the exit status is from sysexits.h.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use mail_account::compose::{mailbox_header, rfc5322_date};
use mail_account::connect::{ConnectError, ServerSettings, smtp_login};
use mail_account::diagnose::FailureKind;
use mail_account::headers::{has_header, header_recipients, remove_header};
use smtp_submit::{Address, Envelope, MailOptions};
use tokio::io::AsyncReadExt as _;

use crate::Failure;

/// The exit statuses (sysexits.h), for `--help` and the man page.
pub(crate) const EXIT_STATUS_HELP: &str = "\
Exit status (sysexits.h, as sendmail and msmtp use them):
  0   sent (every recipient accepted)
  64  EX_USAGE: bad flags
  65  EX_DATAERR: no recipient, or the server refused the message or a recipient for good (5xx)
  69  EX_UNAVAILABLE: TLS failed (certificate not trusted or not for the host, no STARTTLS)
  74  EX_IOERR: the message could not be read from stdin
  75  EX_TEMPFAIL: try again later: a 4xx reply, the network, a timeout, a lost connection
  76  EX_PROTOCOL: the server broke the protocol
  77  EX_NOPERM: authentication refused
  78  EX_CONFIG: no usable account (missing, unreadable, no password)
When the server refuses some recipients, the others get the message and the status names
the refusal (65 or 75).";

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_UNAVAILABLE: u8 = 69;
const EX_IOERR: u8 = 74;
const EX_TEMPFAIL: u8 = 75;
const EX_PROTOCOL: u8 = 76;
const EX_NOPERM: u8 = 77;
const EX_CONFIG: u8 = 78;

/// Flags of `mailctl sendmail`, sendmail's own where they exist.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub(crate) struct Args {
    /// Read recipients from the To, Cc and Bcc headers (in addition to those given, as msmtp
    /// does); the Bcc header is removed before sending.
    #[arg(short = 't', long = "read-recipients")]
    read_recipients: bool,
    /// Accepted for compatibility (also as -oi): the message always ends at the end of
    /// input, never at a line holding a single dot.
    #[arg(short = 'i')]
    ignore_dots: bool,
    /// Envelope sender (default: the account's address); also the From of a message that
    /// has none.
    #[arg(short = 'f', long = "from", value_name = "ADDR")]
    from: Option<String>,
    /// The full name for a From header added to a message that has none (default: the
    /// account's display_name).
    #[arg(short = 'F', value_name = "NAME")]
    full_name: Option<String>,
    /// The account: a name in the configuration file or an account file (default: the
    /// configuration file's default account).
    #[arg(short = 'a', long = "account", value_name = "NAME|FILE")]
    account: Option<String>,
    /// The configuration file with the named accounts (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Sendmail options, accepted and ignored except -oi (= -i): -oem, -odi, -oQ...
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
    /// Body type (7BIT, 8BITMIME): accepted and ignored (8BITMIME is declared when needed).
    #[arg(short = 'B', value_name = "TYPE")]
    body_type: Option<String>,
    /// The recipients (an argument may hold several separated by commas).
    #[arg(value_name = "RCPT")]
    recipients: Vec<String>,
}

/// The parser when mailctl runs under the name `sendmail`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "sendmail",
    version,
    about = "Submit the message on stdin through a mailctl account (sendmail-compatible).",
    after_help = EXIT_STATUS_HELP
)]
pub(crate) struct SendmailCli {
    /// More log output on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(flatten)]
    pub(crate) args: Args,
}

/// True when the program was started under the name `sendmail` (a symlink or a copy).
pub(crate) fn invoked_as_sendmail() -> bool {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .is_some_and(|name| name == "sendmail")
}

/// A clap error in sendmail mode: help and version exit 0, anything else is EX_USAGE.
pub(crate) fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EX_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// A failure with its sysexits status.
#[derive(Debug)]
struct Exit {
    status: u8,
    message: String,
}

impl Exit {
    fn new(status: u8, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn for_kind(kind: FailureKind, message: String) -> Self {
        let status = match kind {
            FailureKind::Tls => EX_UNAVAILABLE,
            FailureKind::Auth => EX_NOPERM,
            FailureKind::Protocol => EX_PROTOCOL,
            FailureKind::Timeout | FailureKind::Network => EX_TEMPFAIL,
            FailureKind::LocalIo => EX_IOERR,
            FailureKind::Refused => EX_DATAERR,
            _ => EX_CONFIG,
        };
        Self::new(status, message)
    }
}

impl From<Failure> for Exit {
    fn from(failure: Failure) -> Self {
        Self::for_kind(failure.kind, failure.message)
    }
}

impl From<ConnectError> for Exit {
    fn from(error: ConnectError) -> Self {
        let transient = matches!(&error, ConnectError::Smtp { error, .. } if error.is_transient());
        let exit = Self::for_kind(error.kind(), error.to_string());
        if transient {
            Self::new(EX_TEMPFAIL, exit.message)
        } else {
            exit
        }
    }
}

impl From<smtp_submit::tokio::Error> for Exit {
    fn from(error: smtp_submit::tokio::Error) -> Self {
        if error.is_transient() {
            Self::new(EX_TEMPFAIL, error.to_string())
        } else {
            Self::for_kind(error.kind(), error.to_string())
        }
    }
}

fn status_for_reply(reply: Option<&smtp_submit::Reply>) -> u8 {
    if reply.is_some_and(|r| (400..500).contains(&r.code())) {
        EX_TEMPFAIL
    } else {
        EX_DATAERR
    }
}

/// Runs `mailctl sendmail`; returns the sysexits status.
pub(crate) async fn run(args: Args) -> ExitCode {
    match submit(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            eprintln!("mailctl sendmail: {}", exit.message);
            ExitCode::from(exit.status)
        }
    }
}

fn address(text: &str) -> Result<Address, Exit> {
    Address::new(text).map_err(|e| Exit::new(EX_DATAERR, format!("address {text:?}: {e}")))
}

async fn submit(args: Args) -> Result<(), Exit> {
    let _ = (args.ignore_dots, &args.options, &args.body_type);
    let account = crate::accounts::find_account(args.account.as_deref(), args.config.as_deref())?
        .ok_or_else(|| {
        Exit::new(
            EX_CONFIG,
            "no account: give -a NAME or set up a default account \
                 (mailctl discover ADDRESS --save NAME)",
        )
    })?;
    let settings = ServerSettings::outgoing(&account)?;
    let secret = crate::server::account_secret(&account, None)?;
    if secret.is_none() && settings.login != mail_account::connect::LoginMethod::None {
        return Err(Exit::new(
            EX_CONFIG,
            "the account has no credential (env or command)",
        ));
    }

    let mut message = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut message)
        .await
        .map_err(|e| Exit::new(EX_IOERR, format!("cannot read the message: {e}")))?;

    let mut recipients: Vec<String> = args
        .recipients
        .iter()
        .flat_map(|arg| arg.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    if args.read_recipients {
        recipients.extend(header_recipients(&message));
        message = remove_header(&message, "Bcc");
    }
    let mut seen = Vec::new();
    recipients.retain(|r| {
        let new = !seen.iter().any(|s: &String| s.eq_ignore_ascii_case(r));
        seen.push(r.clone());
        new
    });
    if recipients.is_empty() {
        return Err(Exit::new(
            EX_DATAERR,
            "no recipient (give them as arguments, or -t to read To, Cc and Bcc)",
        ));
    }

    let from = args.from.clone().unwrap_or_else(|| account.address.clone());
    let mut added = Vec::new();
    if !has_header(&message, "From") {
        let name = args
            .full_name
            .as_deref()
            .or(account.display_name.as_deref());
        added.push(format!("From: {}\r\n", mailbox_header(name, &from)));
    }
    if !has_header(&message, "Date") {
        added.push(format!("Date: {}\r\n", rfc5322_date(SystemTime::now())));
    }
    if !added.is_empty() {
        message.splice(0..0, added.concat().into_bytes());
    }

    let mut envelope = Envelope::new(Some(address(&from)?));
    for recipient in &recipients {
        envelope.add_recipient(address(recipient)?);
    }
    let mut session = smtp_login(&settings, secret.as_ref()).await?;
    let report = session
        .send_bytes(envelope, MailOptions::default(), &message)
        .await?;
    // Every transaction has its reply: the reply to QUIT would change nothing.
    let _ = session.quit_without_waiting().await;
    if let Some(failure) = report.failure() {
        use smtp_submit::TransactionFailure as F;
        let reply = match failure {
            F::MailRejected(reply)
            | F::DataRejected(reply)
            | F::MessageRejected(reply)
            | F::ServiceClosing(reply) => Some(reply),
            F::NoValidRecipients { reply } => reply
                .as_ref()
                .or_else(|| report.rejected().next().map(|(_, reply)| reply)),
            _ => None,
        };
        for (recipient, reply) in report.rejected() {
            eprintln!("mailctl sendmail: recipient {recipient} refused: {reply}");
        }
        let why = reply.map_or_else(|| "refused".to_owned(), ToString::to_string);
        let status = if matches!(failure, F::ServiceClosing(_)) {
            EX_TEMPFAIL
        } else {
            status_for_reply(reply)
        };
        return Err(Exit::new(status, format!("message not sent: {why}")));
    }
    let rejected: Vec<_> = report.rejected().collect();
    if !rejected.is_empty() {
        for (recipient, reply) in &rejected {
            eprintln!("mailctl sendmail: recipient {recipient} refused: {reply}");
        }
        let status = if rejected
            .iter()
            .all(|(_, reply)| status_for_reply(Some(reply)) == EX_TEMPFAIL)
        {
            EX_TEMPFAIL
        } else {
            EX_DATAERR
        };
        return Err(Exit::new(
            status,
            format!(
                "{} of {} recipients refused (the others got the message)",
                rejected.len(),
                report.recipients.len()
            ),
        ));
    }
    Ok(())
}
