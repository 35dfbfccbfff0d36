//! Our side of the fetch benchmark when `mailctl` is not built yet: pop3-proto's tokio adapter
//! logs in over POP3S and retrieves every message (pipelined `RETR`s, streamed chunk by chunk)
//! into a Maildir-like directory, keeping them on the server (no `DELE`).
//!
//! `bench-ours-fetch --port 11995 --user carol --password-env PW --ca ca.crt --maildir DIR
//!  [--no-fsync] [--max N | --last] [--max-in-flight N]`

use std::time::Instant;

use mail_benches::args::{Args, die};
use mail_benches::maildir::Maildir;
use mail_common::sasl::Credentials;
use pop3_proto::Config;
use pop3_proto::tokio::{ConnectOptions, Fetched, Session, TrustRoots};

const NAME: &str = "bench-ours-fetch";

fn main() {
    let args = Args::from_env(&["no-fsync", "last"]);
    mail_benches::runtime().block_on(run(&args));
}

async fn run(args: &Args) {
    let started = Instant::now();
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! { die(NAME, &format!("{what}: {e}")) };
    let mut maildir = Maildir::create(&args.path("maildir"), !args.flag("no-fsync"))
        .unwrap_or_else(|e| fail("--maildir", &e));
    let options = ConnectOptions::new(args.get_or("host", "127.0.0.1".to_owned()))
        .with_port(args.required("port"))
        .with_trust_roots(TrustRoots::CaFile(args.path("ca")))
        .with_tls_name(args.get_or("tls-name", "localhost".to_owned()));
    // The library's limits unless told otherwise (`--max-in-flight N`: RETRs in one pipeline).
    let mut config = Config::default();
    if let Some(n) = args.opt::<usize>("max-in-flight") {
        config.limits = config.limits.with_max_in_flight(n);
    }
    let mut session = Session::connect(&options, config)
        .await
        .unwrap_or_else(|e| fail("connect", &e));
    session
        .login(Credentials::password(
            args.required::<String>("user"),
            args.password(),
        ))
        .await
        .unwrap_or_else(|e| fail("login", &e));
    // LIST, as a fetch does before retrieving: the sizes let the client keep the pipeline full
    // (without them it budgets 64 KiB per message in flight).
    let listing = session.list().await.unwrap_or_else(|e| fail("LIST", &e));
    let count = u32::try_from(listing.len())
        .unwrap_or(u32::MAX)
        .min(args.get_or("max", u32::MAX));
    // `--last`: only the newest message (the memory measurement's big one).
    let first = if args.flag("last") { count.max(1) } else { 1 };
    let mut commit_error = None;
    let fetched = session
        .retr_many(
            first..=count,
            |_| maildir.open().unwrap_or_else(|e| fail("open", &e)),
            |_, file| {
                if let Err(e) = file.commit() {
                    commit_error.get_or_insert(e);
                }
            },
        )
        .await
        .unwrap_or_else(|e| fail("RETR", &e));
    if let Some(e) = commit_error {
        fail("commit", &e);
    }
    let mut bytes = 0;
    for f in &fetched {
        match f {
            Fetched::Message { octets, .. } => bytes += octets,
            other => fail("RETR", &format!("{other:?}")),
        }
    }
    session.quit().await.unwrap_or_else(|e| fail("QUIT", &e));
    mail_benches::report(NAME, fetched.len() as u64, bytes, started);
}
