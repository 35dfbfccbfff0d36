//! The last step of an account set-up: send a test message to the account's own address over
//! SMTP, then find it over POP3 by its Message-ID, touching no other message.
//!
//! ```no_run
//! use std::time::Duration;
//! use mail_account::connect::{LoginSecret, ServerSettings};
//! use mail_account::roundtrip::{RoundtripOptions, send_and_fetch_back};
//! use mail_account::settings::Security;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let smtp = ServerSettings::new("smtp.example.org", 465, Security::ImplicitTls, "alice");
//! let pop3 = ServerSettings::new("pop.example.org", 995, Security::ImplicitTls, "alice");
//! let secret = LoginSecret::password("secret");
//! let report = send_and_fetch_back(
//!     "alice@example.org",
//!     &smtp,
//!     &pop3,
//!     &secret,
//!     &RoundtripOptions::default(),
//!     |step| println!("{step}"),
//! )
//! .await?;
//! println!("round trip in {:?}", report.total);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use smtp_submit::{Address, Envelope, MailOptions};

use crate::compose::SimpleMessage;
use crate::connect::{
    ConnectError, LoginSecret, ServerSettings, pop3_error, pop3_login, smtp_error, smtp_login,
};
use crate::diagnose::FailureKind;

/// How the round trip runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoundtripOptions {
    /// How long to wait for the message to arrive.
    pub wait: Duration,
    /// Pause between two POP3 looks.
    pub poll_interval: Duration,
    /// Delete the test message from the server once found (default true; nothing else is
    /// ever deleted).
    pub delete_test_message: bool,
}

impl Default for RoundtripOptions {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            delete_test_message: true,
        }
    }
}

/// A finished step, with its duration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepReport {
    /// What was done.
    pub what: String,
    /// How long it took.
    pub took: Duration,
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok  {:<48} {:>8.1} ms",
            self.what,
            self.took.as_secs_f64() * 1000.0
        )
    }
}

/// What the round trip did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundtripReport {
    /// The test message's Message-ID.
    pub message_id: String,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// From the first connection to the message found.
    pub total: Duration,
}

/// The round trip failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundtripError {
    /// Logging in or a session command failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused the test message or the address.
    #[error("the SMTP server refused the test message: {0}")]
    NotAccepted(String),
    /// The message did not arrive in time.
    #[error("the test message {message_id} did not arrive within {waited:?}")]
    NotArrived {
        /// Its Message-ID.
        message_id: String,
        /// How long we waited.
        waited: Duration,
    },
}

impl RoundtripError {
    /// The kind of failure, for a one-line message.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Connect(e) => e.kind(),
            Self::NotAccepted(_) => FailureKind::Refused,
            Self::NotArrived { .. } => FailureKind::Timeout,
        }
    }
}

/// Sends a test message from `address` to itself over `smtp`, then looks for it over `pop3`
/// by its Message-ID. Each finished step is passed to `on_step` as it completes.
///
/// # Errors
///
/// See [`RoundtripError`].
pub async fn send_and_fetch_back(
    address: &str,
    smtp: &ServerSettings,
    pop3: &ServerSettings,
    secret: &LoginSecret,
    options: &RoundtripOptions,
    mut on_step: impl FnMut(&StepReport),
) -> Result<RoundtripReport, RoundtripError> {
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut step = |what: String, since: Instant, steps: &mut Vec<StepReport>| {
        let report = StepReport {
            what,
            took: since.elapsed(),
        };
        on_step(&report);
        steps.push(report);
    };

    // What is already there is left alone: only messages that appear later are examined.
    let t = Instant::now();
    let mut session = pop3_login(pop3, secret).await?;
    let before: HashSet<String> = session
        .uidl()
        .await
        .map_err(|e| pop3_error(pop3, e))?
        .into_iter()
        .map(|e| e.uid)
        .collect();
    session.quit().await.map_err(|e| pop3_error(pop3, e))?;
    step(
        format!(
            "POP3 login {}:{} ({} messages there)",
            pop3.host,
            pop3.port,
            before.len()
        ),
        t,
        &mut steps,
    );

    let t = Instant::now();
    let mut smtp_session = smtp_login(smtp, Some(secret)).await?;
    step(
        format!("SMTP login {}:{}", smtp.host, smtp.port),
        t,
        &mut steps,
    );

    let mut message = SimpleMessage::new(
        address,
        [address],
        "mailctl roundtrip: test message",
        "This message was sent by `mailctl roundtrip` to check this account's settings.\n\
         It is deleted once found.\n",
    )
    .with_header("X-Mailctl-Verify", "1");
    let message_id = message.message_id().to_owned();
    let bytes = message.to_bytes();
    let mailbox = Address::new(address).map_err(|e| RoundtripError::NotAccepted(e.to_string()))?;
    let envelope = Envelope::new(Some(mailbox.clone())).with_recipient(mailbox);
    let t = Instant::now();
    let sent = smtp_session
        .send_bytes(envelope, MailOptions::default(), &bytes)
        .await
        .map_err(|e| smtp_error(smtp, e))?;
    if !sent.is_sent() {
        let why = sent
            .rejected()
            .map(|(addr, reply)| format!("{addr}: {reply}"))
            .chain(sent.reply().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(RoundtripError::NotAccepted(why));
    }
    let _ = smtp_session.quit().await;
    step(format!("sent {message_id}"), t, &mut steps);

    let t = Instant::now();
    let mut looks = 0u32;
    loop {
        looks += 1;
        let mut session = pop3_login(pop3, secret).await?;
        let listing = session.uidl().await.map_err(|e| pop3_error(pop3, e))?;
        let mut found = None;
        for entry in listing.iter().rev().filter(|e| !before.contains(&e.uid)) {
            let header = session
                .top(entry.msg, 0)
                .await
                .map_err(|e| pop3_error(pop3, e))?;
            if header_has_message_id(&header, &message_id) {
                found = Some(entry.msg);
                break;
            }
        }
        if let Some(msg) = found {
            if options.delete_test_message {
                session.dele(msg).await.map_err(|e| pop3_error(pop3, e))?;
            }
            session.quit().await.map_err(|e| pop3_error(pop3, e))?;
            step(
                format!(
                    "found it over POP3 after {looks} look(s){}",
                    if options.delete_test_message {
                        ", deleted it"
                    } else {
                        ""
                    }
                ),
                t,
                &mut steps,
            );
            return Ok(RoundtripReport {
                message_id,
                steps,
                total: start.elapsed(),
            });
        }
        session.quit().await.map_err(|e| pop3_error(pop3, e))?;
        if t.elapsed() >= options.wait {
            return Err(RoundtripError::NotArrived {
                message_id,
                waited: t.elapsed(),
            });
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// True when the header block holds `Message-ID: <id>` (case-insensitive name, folded value
/// allowed).
fn header_has_message_id(header: &[u8], id: &str) -> bool {
    let text = String::from_utf8_lossy(header);
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        if value == id {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::header_has_message_id;

    #[test]
    fn message_id_is_found_in_the_header_only() {
        let header = b"Received: x\r\nMessage-Id: <a.1@example.org>\r\nSubject: s\r\n\r\n";
        assert!(header_has_message_id(header, "<a.1@example.org>"));
        assert!(!header_has_message_id(header, "<a.2@example.org>"));
        let folded = b"Message-ID:\r\n <a.1@example.org>\r\n\r\n";
        assert!(header_has_message_id(folded, "<a.1@example.org>"));
        let in_body = b"Subject: s\r\n\r\nMessage-ID: <a.1@example.org>\r\n";
        assert!(!header_has_message_id(in_body, "<a.1@example.org>"));
    }
}
