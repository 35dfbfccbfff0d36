//! Our side of the send benchmark: smtp-submit's tokio adapter sends `--count` copies of the
//! message file over one authenticated STARTTLS session (PIPELINING, and CHUNKING when the
//! server offers it: one round trip per message). `--stream` sends the file once, streamed
//! from disk (the 200 MiB memory measurement). `--many` hands all copies to
//! `Session::send_many`, which pipelines the transactions across messages (RFC 2920) instead of
//! waiting for each message's replies.
//!
//! `bench-ours-send --port 10587 --user bob --password-env PW --ca ca.crt --count 500
//!  --message msg.eml [--from bob@testground.example] [--to x@sink.testground.example] [--many]`

use std::time::Instant;

use mail_benches::args::{Args, die};
use mail_benches::maildir::BlockingReader;
use smtp_submit::tokio::{ConnectOptions, Session, TrustRoots};
use smtp_submit::{
    Address, AuthMethod, ClientName, Config, Credentials, Envelope, MailOptions, Security,
};

const NAME: &str = "bench-ours-send";

fn main() {
    let args = Args::from_env(&["stream", "implicit", "many"]);
    mail_benches::runtime().block_on(run(&args));
}

async fn run(args: &Args) {
    let started = Instant::now();
    let host: String = args.get_or("host", "127.0.0.1".to_owned());
    let port: u16 = args.required("port");
    let count: u64 = args.get_or("count", 1);
    let message_path = args.path("message");
    let security = if args.flag("implicit") {
        Security::ImplicitTls
    } else {
        Security::StartTls
    };
    let options = ConnectOptions::new(host)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(args.path("ca")))
        .with_tls_name(args.get_or("tls-name", "localhost".to_owned()));
    let name = ClientName::new("bench.testground.example").expect("valid name");
    let config = Config::new(name, security);
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { die(NAME, &format!("{what}: {e}")) };

    let mut session = Session::connect(&options, config)
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    let credentials = Credentials::password(args.required::<String>("user"), args.password());
    session
        .authenticate(&credentials, AuthMethod::Auto)
        .await
        .unwrap_or_else(|e| fail("auth", &e));
    let from = Address::new(args.get_or("from", "bob@testground.example".to_owned()))
        .unwrap_or_else(|e| fail("--from", &e));
    let to = Address::new(args.get_or("to", "x@sink.testground.example".to_owned()))
        .unwrap_or_else(|e| fail("--to", &e));
    let envelope = Envelope::new(Some(from)).with_recipient(to);

    let mut bytes = 0;
    if args.flag("stream") {
        let file = std::fs::File::open(&message_path).unwrap_or_else(|e| fail("--message", &e));
        bytes = file.metadata().map_or(0, |m| m.len());
        let report = session
            .send(envelope, MailOptions::default(), BlockingReader(file))
            .await
            .unwrap_or_else(|e| fail("send", &e));
        if !report.is_sent() {
            fail("send", &format!("{:?}", report.outcome));
        }
    } else if args.flag("many") {
        let message = std::fs::read(&message_path).unwrap_or_else(|e| fail("--message", &e));
        let results = session
            .send_many(
                (0..count).map(|_| (envelope.clone(), MailOptions::default(), message.as_slice())),
            )
            .await
            .unwrap_or_else(|e| fail("send_many", &e));
        for result in results {
            let report = result.unwrap_or_else(|e| fail("send", &e));
            if !report.is_sent() {
                fail("send", &format!("{:?}", report.outcome));
            }
            bytes += message.len() as u64;
        }
    } else {
        let message = std::fs::read(&message_path).unwrap_or_else(|e| fail("--message", &e));
        for _ in 0..count {
            let report = session
                .send_bytes(envelope.clone(), MailOptions::default(), &message)
                .await
                .unwrap_or_else(|e| fail("send", &e));
            if !report.is_sent() {
                fail("send", &format!("{:?}", report.outcome));
            }
            bytes += message.len() as u64;
        }
    }
    session.quit().await.unwrap_or_else(|e| fail("quit", &e));
    let messages = if args.flag("stream") { 1 } else { count };
    mail_benches::report(NAME, messages, bytes, started);
}
