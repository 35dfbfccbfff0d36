//! The shortest useful tokio program: send one message over SMTP submission, then fetch the
//! mailbox over POP3 (leaving it on the server) and print each message's size.
//!
//! ```text
//! MAIL_PASSWORD=secret cargo run -p mail-examples --bin tokio_send_fetch -- \
//!     smtp.example.org pop.example.org alice alice@example.org [CA-FILE.pem]
//! ```
//!
//! A host may carry a port (`smtp.example.org:10465`); the defaults are 465 and 995.
#![forbid(unsafe_code)]

use pop3_proto::tokio as pop3;
use smtp_submit::tokio as smtp;
use smtp_submit::tokio::TrustRoots;
use smtp_submit::{Credentials, Envelope, MailOptions};

type Error = Box<dyn std::error::Error>;

fn host_port(text: &str, default: u16) -> Result<(String, u16), Error> {
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port.parse()?)),
        None => Ok((text.to_owned(), default)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [smtp_host, pop3_host, user, address, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: MAIL_PASSWORD=... tokio_send_fetch SMTP-HOST POP3-HOST USER ADDRESS [CA-FILE]"
        );
        std::process::exit(2);
    };
    let password = std::env::var("MAIL_PASSWORD").map_err(|_| "MAIL_PASSWORD is not set")?;
    let roots = rest.first().map_or(TrustRoots::WebPki, |ca| {
        TrustRoots::WebPkiAndCaFile(ca.into())
    });
    let credentials = Credentials::password(user.as_str(), password);

    // Send: implicit TLS on 465, EHLO localhost, AUTH with the strongest mechanism offered; a
    // refused message is an error (ensure_sent).
    let (smtp_host, smtp_port) = host_port(smtp_host, 465)?;
    let options = smtp::ConnectOptions::new(smtp_host)
        .with_port(smtp_port)
        .with_trust_roots(roots.clone());
    let mut session = smtp::Session::connect(&options, smtp_submit::Config::default()).await?;
    session.login(&credentials).await?;
    let envelope = Envelope::mail_from(address.parse()?).to(address.parse()?);
    let message =
        format!("From: {address}\r\nTo: {address}\r\nSubject: hello\r\n\r\nHello from tokio.\r\n");
    let report = session
        .send_bytes(envelope, MailOptions::default(), message.as_bytes())
        .await?
        .ensure_sent()?;
    println!("sent: {}", report.is_sent());
    session.quit().await?;

    // Fetch: POP3S on 995, every message into memory (pipelined), left on the server.
    let (pop3_host, pop3_port) = host_port(pop3_host, 995)?;
    let options = pop3::ConnectOptions::new(pop3_host)
        .with_port(pop3_port)
        .with_trust_roots(roots);
    let mut session = pop3::Session::connect(&options, pop3_proto::Config::default()).await?;
    session.login(credentials).await?;
    for (msg, body) in session.retr_all().await? {
        println!("message {msg}: {} bytes", body.len());
    }
    session.quit().await?;
    Ok(())
}
