//! A blocking POP3 client on `std::net` and rustls, with no async runtime: pop3-proto's
//! sans-IO core run by its `blocking` driver. It shows the server's greeting, logs in over
//! implicit TLS, lists the mailbox and prints the Subject of each message (`TOP n 0`, pipelined
//! by a `Batch`), then quits.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p mail-examples --bin blocking_pop3 -- \
//!     pop.example.org 995 alice [CA-FILE.pem]
//! ```
#![forbid(unsafe_code)]

use std::time::Instant;

use pop3_proto::blocking::{ConnectOptions, Connection, TrustRoots};
use pop3_proto::{Batch, BatchKind, Command, Config, Credentials, Event, Login, Security};

type Error = Box<dyn std::error::Error>;

fn subject(header: &[u8]) -> String {
    String::from_utf8_lossy(header)
        .lines()
        .find_map(|l| l.strip_prefix("Subject:").map(|s| s.trim().to_owned()))
        .unwrap_or_default()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user, rest @ ..] = args.as_slice() else {
        eprintln!("usage: POP3_PASSWORD=... blocking_pop3 HOST PORT USER [CA-FILE]");
        std::process::exit(2);
    };
    let password = std::env::var("POP3_PASSWORD").map_err(|_| "POP3_PASSWORD is not set")?;
    let roots = rest.first().map_or(TrustRoots::WebPki, |ca| {
        TrustRoots::WebPkiAndCaFile(ca.into())
    });
    let options = ConnectOptions::new(host.as_str())
        .with_port(port.parse()?)
        .with_trust_roots(roots);
    // Returns once the greeting and the capabilities are in: the client is ready for a login.
    let mut conn = Connection::open(&options, Config::new(Security::ImplicitTls))?;
    if let Some(greeting) = conn.machine_ref().greeting() {
        println!("server: {}", greeting.text);
    }

    let login = Login::auto(Credentials::password(user.as_str(), password));
    conn.machine()
        .login(Instant::now(), login)
        .map_err(|rejected| rejected.reason)?;
    match conn.next_event()? {
        Event::LoggedIn { method, .. } => println!("logged in with {method:?}"),
        Event::LoginFailed { failure, .. } => {
            return Err(format!("login failed: {}", failure.response.text).into());
        }
        other => return Err(format!("unexpected {other:?}").into()),
    }
    conn.machine()
        .send(Instant::now(), Command::Stat)
        .map_err(|rejected| rejected.reason)?;
    let Event::Stat { count, size, .. } = conn.next_event()? else {
        return Err("no STAT answer".into());
    };
    println!("{count} messages, {size} octets");
    // A batch keeps the client's pipelining window full without queueing every TOP at once.
    let mut batch = Batch::new(BatchKind::Top { lines: 0 }, 1..=count);
    let mut header = Vec::new();
    loop {
        batch.fill(conn.machine(), Instant::now())?;
        if batch.is_done() {
            break;
        }
        let event = conn.next_event()?;
        let Some(msg) = batch.claim(&event) else {
            continue;
        };
        match event {
            Event::MessageChunk { data, .. } => header.extend_from_slice(&data),
            Event::MessageEnd { .. } => {
                println!("{msg:>5}  {}", subject(&header));
                header.clear();
            }
            Event::Refused { response, .. } => println!("{msg:>5}  (refused: {})", response.text),
            _ => {}
        }
    }
    conn.machine()
        .send(Instant::now(), Command::Quit)
        .map_err(|rejected| rejected.reason)?;
    while !matches!(conn.next_event()?, Event::Closed) {}
    Ok(())
}
