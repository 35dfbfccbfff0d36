//! A blocking SMTP submission client on `std::net` and rustls, with no async runtime:
//! smtp-submit's sans-IO core run by its `blocking` driver. It connects (STARTTLS on 587 or
//! implicit TLS on 465), logs in, sends one message to ADDRESS from ADDRESS, then quits.
//!
//! ```text
//! MAIL_PASSWORD=secret cargo run -p mail-examples --bin blocking_send -- \
//!     starttls smtp.example.org 587 alice alice@example.org [CA-FILE.pem]
//! ```
#![forbid(unsafe_code)]

use std::time::Instant;

use smtp_submit::blocking::{ConnectOptions, Connection, TrustRoots};
use smtp_submit::{
    AuthMethod, ClientName, Config, Credentials, Envelope, Event, MailOptions, MessageOutcome,
    Security,
};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, host, port, user, address, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: MAIL_PASSWORD=... blocking_send starttls|tls HOST PORT USER ADDRESS [CA-FILE]"
        );
        std::process::exit(2);
    };
    let security = match mode.as_str() {
        "starttls" => Security::StartTls,
        "tls" => Security::ImplicitTls,
        other => return Err(format!("mode {other:?}: starttls or tls").into()),
    };
    let password = std::env::var("MAIL_PASSWORD").map_err(|_| "MAIL_PASSWORD is not set")?;
    let roots = rest.first().map_or(TrustRoots::WebPki, |ca| {
        TrustRoots::WebPkiAndCaFile(ca.into())
    });
    let options = ConnectOptions::new(host.as_str())
        .with_port(port.parse()?)
        .with_trust_roots(roots);
    // Returns after EHLO (and STARTTLS, then EHLO again over TLS): ready to authenticate.
    let config = Config::new(ClientName::new("localhost")?, security);
    let mut conn = Connection::open(&options, config)?;
    println!("connected, TLS: {}", conn.is_tls());

    let credentials = Credentials::password(user.as_str(), password);
    conn.machine()
        .authenticate(Instant::now(), &credentials, AuthMethod::Auto, &[])?;
    match conn.next_event()? {
        Event::Authenticated { mechanism } => println!("logged in with {mechanism:?}"),
        Event::AuthFailed { failure, .. } => {
            return Err(format!("login failed: {failure:?}").into());
        }
        other => return Err(format!("unexpected {other:?}").into()),
    }

    let envelope = Envelope::mail_from(address.parse()?).to(address.parse()?);
    let message = format!(
        "From: {address}\r\nTo: {address}\r\nSubject: hello\r\n\r\nHello from std::net.\r\n"
    );
    conn.machine()
        .send_mail_bytes(
            Instant::now(),
            envelope,
            MailOptions::default(),
            message.as_bytes(),
        )
        .map_err(|rejected| rejected.reason)?;
    // Recipient events come first; the transaction's outcome ends it.
    let outcome = loop {
        if let Event::MessageDone { outcome, .. } = conn.next_event()? {
            break outcome;
        }
    };
    match outcome {
        MessageOutcome::Sent { reply, .. } => println!("sent: {}", reply.text()),
        MessageOutcome::Failed(failure) => return Err(format!("not sent: {failure}").into()),
        other => return Err(format!("not sent: {other:?}").into()),
    }

    conn.machine().quit(Instant::now())?;
    while !matches!(conn.next_event()?, Event::Closed) {}
    Ok(())
}
