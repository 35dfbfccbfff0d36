//! Peer: mail-send (crates.io) sending `--count` copies of the message file over one
//! authenticated STARTTLS client (`SmtpClientBuilder::connect` once, `send` per message). It is
//! given a tokio-rustls connector (ring, the test ground's CA) instead of its platform verifier.
//!
//! `bench-mail-send --port 10587 --user bob --password-env PW --ca ca.crt --count 500
//!  --message msg.eml`

use std::time::Instant;

use mail_benches::args::{Args, die};
use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;

const NAME: &str = "bench-mail-send";

fn main() {
    let args = Args::from_env(&[]);
    mail_benches::runtime().block_on(run(&args));
}

async fn run(args: &Args) {
    let started = Instant::now();
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { die(NAME, &format!("{what}: {e}")) };
    let count: u64 = args.get_or("count", 1);
    let message = std::fs::read(args.path("message")).unwrap_or_else(|e| fail("--message", &e));
    let connector =
        mail_benches::tls::connector(&args.path("ca")).unwrap_or_else(|e| fail("--ca", &e));
    // The builder uses its host for both the TCP address and the certificate name.
    let host: String = args.get_or("host", "localhost".to_owned());
    let user: String = args.required("user");
    let mut client =
        SmtpClientBuilder::new_with_tls_connector(host, args.required("port"), connector)
            .implicit_tls(false)
            .helo_host("bench.testground.example")
            .credentials((user, args.password()))
            .connect()
            .await
            .unwrap_or_else(|e| fail("connect", &e));
    let from: String = args.get_or("from", "bob@testground.example".to_owned());
    let to: String = args.get_or("to", "x@sink.testground.example".to_owned());
    for _ in 0..count {
        let m = Message::new(from.as_str(), [to.as_str()], message.as_slice());
        client.send(m).await.unwrap_or_else(|e| fail("send", &e));
    }
    client.quit().await.unwrap_or_else(|e| fail("quit", &e));
    mail_benches::report(NAME, count, count * message.len() as u64, started);
}
