//! A blocking POP3 client on `std::net` and rustls, built directly on pop3-proto's sans-IO
//! core: no async runtime at all. It logs in over implicit TLS, lists the mailbox and prints
//! the Subject of each message (`TOP n 0`), then quits.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p mail-examples --bin blocking_pop3 -- \
//!     pop.example.org 995 alice [CA-FILE.pem]
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use mail_common::transport::{TrustRoots, root_store};
use pop3_proto::{Client, Command, Config, Credentials, Event, Login, Machine, Security};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

type Error = Box<dyn std::error::Error>;
type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Runs the client until it has an event: writes what it offers, reads what arrives, and
/// turns a passed deadline into `handle_timeout`. This loop is all a blocking driver is.
fn next_event(client: &mut Client, stream: &mut Tls, buf: &mut [u8]) -> Result<Event, Error> {
    loop {
        while let Some(bytes) = client.poll_transmit() {
            let written = stream.write(bytes)?;
            client.advance_transmit(written);
        }
        stream.flush()?;
        if let Some(event) = client.poll_event() {
            return Ok(event);
        }
        let now = Instant::now();
        if let Some(deadline) = client.poll_timeout() {
            if deadline <= now {
                client.handle_timeout(now)?;
                continue;
            }
            stream.sock.set_read_timeout(Some(deadline - now))?;
        }
        match stream.read(buf) {
            Ok(0) => client.handle_eof(Instant::now())?,
            Ok(n) => client.handle_input(Instant::now(), &buf[..n])?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                client.handle_timeout(Instant::now())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

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

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(&roots)?)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone())?;
    let tcp = TcpStream::connect((host.as_str(), port.parse::<u16>()?))?;
    tcp.set_nodelay(true)?;
    let mut stream = StreamOwned::new(ClientConnection::new(Arc::new(config), name)?, tcp);

    let mut client = Client::new(Config::new(Security::ImplicitTls), Instant::now());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match next_event(&mut client, &mut stream, &mut buf)? {
            Event::Ready(_) => break,
            Event::GreetingRefused(response) => {
                return Err(format!("greeting refused: {}", response.text).into());
            }
            _ => {}
        }
    }
    // The core reads no random source: SCRAM's nonce comes from us.
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    let login =
        Login::auto(Credentials::password(user.as_str(), password)).with_nonce(nonce.to_vec());
    client
        .login(Instant::now(), login)
        .map_err(|rejected| rejected.reason.to_string())?;
    match next_event(&mut client, &mut stream, &mut buf)? {
        Event::LoggedIn { method, .. } => println!("logged in with {method:?}"),
        Event::LoginFailed { failure, .. } => {
            return Err(format!("login failed: {}", failure.response.text).into());
        }
        other => return Err(format!("unexpected {other:?}").into()),
    }
    client
        .send(Instant::now(), Command::Stat)
        .map_err(|rejected| rejected.reason.to_string())?;
    let Event::Stat { count, size, .. } = next_event(&mut client, &mut stream, &mut buf)? else {
        return Err("no STAT answer".into());
    };
    println!("{count} messages, {size} octets");
    // Queue every TOP at once: the client pipelines them when the server allows it.
    for msg in 1..=count {
        client
            .send(Instant::now(), Command::top(msg, 0))
            .map_err(|rejected| rejected.reason.to_string())?;
    }
    let mut header = Vec::new();
    let mut shown = 0;
    while shown < count {
        match next_event(&mut client, &mut stream, &mut buf)? {
            Event::MessageChunk { data, .. } => header.extend_from_slice(&data),
            Event::MessageEnd { .. } => {
                shown += 1;
                println!("{shown:>5}  {}", subject(&header));
                header.clear();
            }
            Event::Refused { response, .. } => {
                shown += 1;
                println!("{shown:>5}  (refused: {})", response.text);
            }
            _ => {}
        }
    }
    client
        .send(Instant::now(), Command::Quit)
        .map_err(|rejected| rejected.reason.to_string())?;
    while !matches!(
        next_event(&mut client, &mut stream, &mut buf)?,
        Event::Closed
    ) {}
    Ok(())
}
