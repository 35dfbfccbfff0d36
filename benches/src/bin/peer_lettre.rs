//! Peer: lettre (crates.io) sending `--count` copies of the message file over one authenticated
//! STARTTLS session: an async transport on tokio + rustls (ring) with a pool of one connection,
//! the way an application keeps a lettre mailer around.
//!
//! `bench-lettre --port 10587 --user bob --password-env PW --ca ca.crt --count 500
//!  --message msg.eml`

use std::time::Instant;

use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use mail_benches::args::{Args, die};

const NAME: &str = "bench-lettre";

fn main() {
    let args = Args::from_env(&[]);
    mail_benches::runtime().block_on(run(&args));
}

async fn run(args: &Args) {
    let started = Instant::now();
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { die(NAME, &format!("{what}: {e}")) };
    let count: u64 = args.get_or("count", 1);
    let message = std::fs::read(args.path("message")).unwrap_or_else(|e| fail("--message", &e));
    let pem = std::fs::read(args.path("ca")).unwrap_or_else(|e| fail("--ca", &e));
    let tls = TlsParameters::builder(args.get_or("tls-name", "localhost".to_owned()))
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(&pem).unwrap_or_else(|e| fail("--ca", &e)))
        .build_rustls()
        .unwrap_or_else(|e| fail("TLS parameters", &e));
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
        args.get_or("host", "127.0.0.1".to_owned()),
    )
    .port(args.required("port"))
    .tls(Tls::Required(tls))
    .hello_name(ClientId::Domain("bench.testground.example".to_owned()))
    .credentials(Credentials::new(args.required("user"), args.password()))
    .pool_config(PoolConfig::new().max_size(1))
    .build();
    let from = args
        .get_or("from", "bob@testground.example".to_owned())
        .parse()
        .unwrap_or_else(|e| fail("--from", &e));
    let to = args
        .get_or("to", "x@sink.testground.example".to_owned())
        .parse()
        .unwrap_or_else(|e| fail("--to", &e));
    let envelope = Envelope::new(Some(from), vec![to]).unwrap_or_else(|e| fail("envelope", &e));
    for _ in 0..count {
        mailer
            .send_raw(&envelope, &message)
            .await
            .unwrap_or_else(|e| fail("send", &e));
    }
    mailer.shutdown().await;
    mail_benches::report(NAME, count, count * message.len() as u64, started);
}
