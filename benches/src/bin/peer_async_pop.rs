//! Peer: async-pop (crates.io) fetching every message over POP3S into a Maildir-like
//! directory, keeping them on the server. async-pop has no rustls 0.23 connector of its own, so
//! it gets a tokio-rustls stream (ring, the test ground's CA) through `async_pop::new`.
//! It sends one command per round trip and returns each message whole, as `Bytes`.
//!
//! `bench-async-pop --port 11995 --user carol --password-env PW --ca ca.crt --maildir DIR`

use std::time::Instant;

use async_pop::response::types::DataType as _;
use mail_benches::args::{Args, die};
use mail_benches::maildir::Maildir;
use rustls_pki_types::ServerName;

const NAME: &str = "bench-async-pop";

fn main() {
    let args = Args::from_env(&["no-fsync", "last"]);
    mail_benches::runtime().block_on(run(&args));
}

async fn run(args: &Args) {
    let started = Instant::now();
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { die(NAME, &format!("{what}: {e}")) };
    let mut maildir = Maildir::create(&args.path("maildir"), !args.flag("no-fsync"))
        .unwrap_or_else(|e| fail("--maildir", &e));
    let connector =
        mail_benches::tls::connector(&args.path("ca")).unwrap_or_else(|e| fail("--ca", &e));
    let host: String = args.get_or("host", "127.0.0.1".to_owned());
    let port: u16 = args.required("port");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    let name = ServerName::try_from(args.get_or("tls-name", "localhost".to_owned()))
        .unwrap_or_else(|e| fail("--tls-name", &e));
    let tls = connector
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| fail("TLS", &e));
    let mut client = async_pop::new(tls)
        .await
        .unwrap_or_else(|e| fail("greeting", &e));
    client
        .login(args.required::<String>("user"), args.password())
        .await
        .unwrap_or_else(|e| fail("login", &e));
    let stat = client.stat().await.unwrap_or_else(|e| fail("STAT", &e));
    let count = stat
        .counter()
        .value()
        .unwrap_or_else(|e| fail("STAT", &e))
        .min(args.get_or("max", usize::MAX));
    // `--last`: only the newest message (the memory measurement's big one).
    let first = if args.flag("last") { count.max(1) } else { 1 };
    let mut bytes = 0;
    for msg in first..=count {
        let message = client.retr(msg).await.unwrap_or_else(|e| fail("RETR", &e));
        bytes += message.len() as u64;
        maildir
            .deliver(&message)
            .unwrap_or_else(|e| fail("write", &e));
    }
    client.quit().await.unwrap_or_else(|e| fail("QUIT", &e));
    mail_benches::report(NAME, (count + 1 - first) as u64, bytes, started);
}
