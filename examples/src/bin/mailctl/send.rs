//! `mailctl send`.

use std::path::PathBuf;

use mail_account::compose::SimpleMessage;
use mail_account::connect::smtp_login;
use mail_account::diagnose::FailureKind;
use smtp_submit::{Address, Envelope, MailOptions, RecipientOutcome};

use crate::server::{Role, ServerArgs};
use crate::{Failure, Outcome};

/// Flags of `mailctl send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Envelope sender (and From of a composed message); default: the account's address.
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// A recipient; repeat for more.
    #[arg(long, value_name = "ADDR", required = true)]
    to: Vec<String>,
    /// The message file (RFC 5322, sent as it is, streamed; scanned first so 8-bit content is
    /// declared), or `-` for stdin (streamed unscanned: 8BITMIME is declared when offered).
    #[arg(value_name = "FILE", conflicts_with_all = ["subject", "body"])]
    file: Option<PathBuf>,
    /// Compose a simple message with this subject (and a Date, a Message-ID).
    #[arg(long, value_name = "S", requires = "body")]
    subject: Option<String>,
    /// The text of the composed message.
    #[arg(long, value_name = "TEXT", requires = "subject")]
    body: Option<String>,
    /// Attach a file to the composed message (repeat for more): its content type from its
    /// extension, its name RFC 2231-encoded when it is not ASCII.
    #[arg(long, value_name = "FILE", requires = "subject")]
    attach: Vec<PathBuf>,
    /// Display name for the From header of a composed message (default: the account's
    /// display_name); RFC 2047-encoded when it is not ASCII.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

fn address(text: &str) -> Result<Address, Failure> {
    Address::new(text).map_err(|e| Failure::settings(format!("address {text:?}: {e}")))
}

/// A file to attach: its name, its content type (from the extension) and its bytes.
async fn attachment(path: &std::path::Path) -> Result<(String, String, Vec<u8>), Failure> {
    let content = tokio::fs::read(path)
        .await
        .map_err(|e| Failure::local(format!("cannot read {}: {e}", path.display())))?;
    let name = path.file_name().map_or_else(
        || "attachment".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let content_type = mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned();
    Ok((name, content_type, content))
}

pub(crate) async fn run(args: Args) -> Outcome {
    let resolved = args.server.resolve(Role::Outgoing)?;
    let settings = resolved.settings;
    let account = resolved.account;
    let from = args
        .from
        .clone()
        .or_else(|| account.as_ref().map(|a| a.address.clone()))
        .ok_or_else(|| Failure::settings("--from (or an account) is required"))?;
    let display_name = args
        .name
        .clone()
        .or_else(|| account.and_then(|a| a.display_name));
    let mut envelope = Envelope::new(Some(address(&from)?));
    for to in &args.to {
        envelope.add_recipient(address(to)?);
    }
    let mut session = smtp_login(&settings, resolved.secret.as_ref()).await?;
    let report = match (&args.subject, &args.body, &args.file) {
        (Some(subject), Some(body), _) => {
            let mut message = SimpleMessage::new(&from, args.to.clone(), subject, body);
            if let Some(name) = &display_name {
                message = message.with_display_name(name);
            }
            for path in &args.attach {
                let (name, content_type, content) = attachment(path).await?;
                message = message.with_attachment(name, content_type, content);
            }
            session
                .send_bytes(envelope, MailOptions::default(), &message.to_bytes())
                .await?
        }
        (_, _, Some(path)) if path.as_os_str() != "-" => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| Failure::local(format!("cannot open {}: {e}", path.display())))?;
            // Scanned first, so 8-bit content and UTF-8 headers are declared (or refused with
            // a clear error when the server lacks the extension), then streamed.
            session
                .send_rewindable(envelope, MailOptions::default(), file)
                .await?
        }
        _ => {
            session
                .send(envelope, MailOptions::default(), tokio::io::stdin())
                .await?
        }
    };
    for recipient in &report.recipients {
        match (&recipient.outcome, recipient.reply()) {
            (RecipientOutcome::Accepted(_), _) if report.delivered(recipient) => {
                println!("accepted {}", recipient.address);
            }
            // Accepted, but its transaction failed: the cause is printed below.
            (RecipientOutcome::Accepted(_), _) => println!("not sent {}", recipient.address),
            // Pipelined behind a refused MAIL FROM: the reply is no verdict on the recipient.
            (RecipientOutcome::SenderRefused(_), _) => {
                println!("not sent {}: the sender was refused", recipient.address);
            }
            (_, Some(reply)) => println!("refused  {}: {reply}", recipient.address),
            (_, None) => println!("not sent {}: not attempted", recipient.address),
        }
    }
    // Every transaction has its reply: the reply to QUIT would change nothing.
    let _ = session.quit_without_waiting().await;
    if let Some(failure) = report.failure() {
        // The first failure of the transaction, with the server's words.
        return Err(Failure::new(
            FailureKind::Refused,
            format!("message not sent: {failure}"),
        ));
    }
    if let Some(why) = &report.stopped {
        let skipped = report.not_attempted().count();
        if skipped > 0 {
            return Err(Failure::new(
                FailureKind::Refused,
                format!("{skipped} recipients not attempted: {why}"),
            ));
        }
    }
    let refused = report.rejected().count();
    if refused > 0 {
        return Err(Failure::new(
            FailureKind::Refused,
            format!(
                "{refused} of {} recipients refused",
                report.recipients.len()
            ),
        ));
    }
    Ok(())
}
