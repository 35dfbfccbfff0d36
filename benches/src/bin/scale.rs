//! The poller at scale: many mailboxes checked concurrently in one process.
//!
//! `bench-scale [--mailboxes 1000] [--messages 3] [--delay-ms 0] [--work DIR]`
//!
//! Starts itself a second time as the server (`--serve`): the embedded test server with
//! `--mailboxes` users of `--messages` messages each, behind an in-process latency relay of
//! `--delay-ms` each way when asked; the server is a separate process so that the client's
//! memory and file descriptors are the client's alone. Then, in this process:
//!
//! 1. **open sessions**: every mailbox logged in at once (TLS) and held open, on a fresh
//!    heap: the process's RSS before and with them, and its open file descriptors;
//! 2. **first round**: the poller's one-shot run ([`check_once`]) over every mailbox, each
//!    into the same Maildir with its own state journal, delete after download: every
//!    message fetched;
//! 3. **empty round**: the same again: every mailbox is now empty (login, `LIST`, `UIDL`,
//!    `QUIT`): the time of one round of empty-mailbox checks.
//!
//! Prints a `RESULT` line and a Markdown table row.

// KiB and session counts of a few thousand, far below f64's 2^52: the casts are exact.
#![allow(clippy::cast_precision_loss)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_account::connect::{LoginMethod, LoginSecret, ServerSettings, pop3_login};
use mail_account::deliver;
use mail_account::fetch::FetchOptions;
use mail_account::poller::{CheckOutcome, PolledAccount, PollerConfig, check_once, pop3_check};
use mail_account::settings::Security;
use mail_account::store::{RetentionPolicy, Store};
use mail_benches::args::{Args, die};
use mail_common::transport::TrustRoots;
use mail_testground::server::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const NAME: &str = "bench-scale";

fn user(i: usize) -> String {
    format!("box{i}@scale.test")
}

fn main() {
    let args = Args::from_env(&["serve"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if args.flag("serve") {
        runtime.block_on(serve(&args));
    } else {
        runtime.block_on(client(&args));
    }
}

// ------------------------------------------------------------------ server process

async fn serve(args: &Args) {
    let mailboxes: usize = args.get_or("mailboxes", 1000);
    let messages: usize = args.get_or("messages", 3);
    let delay = Duration::from_millis(args.get_or("delay-ms", 0));
    let mut builder = TestServer::builder()
        .max_connections(mailboxes * 2 + 16)
        .idle_timeout(Duration::from_secs(600));
    for i in 0..mailboxes {
        builder = builder.user(user(i), "secret");
        for n in 0..messages {
            builder = builder.message(
                user(i),
                format!(
                    "Message-ID: <{n}.{i}@scale.test>\r\nSubject: message {n}\r\n\r\n{}\r\n",
                    "a line of a small message\r\n".repeat(40)
                )
                .into_bytes(),
            );
        }
    }
    let server = builder
        .start()
        .await
        .unwrap_or_else(|e| die(NAME, &e.to_string()));
    let ca = server
        .ca_file()
        .unwrap_or_else(|e| die(NAME, &e.to_string()));
    let port = if delay.is_zero() {
        server.pop3s_addr().port()
    } else {
        relay(server.pop3s_addr().port(), delay).await
    };
    println!("PORT {port} CA {}", ca.display());
    std::io::stdout().flush().ok();
    // Serve until the client closes our stdin.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    server.shutdown().await;
}

/// A latency relay on loopback: every byte is forwarded `delay` after it arrived, in each
/// direction (the kernel here has no netem). Returns its port.
async fn relay(target: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(NAME, &e.to_string()));
    let port = listener.local_addr().map_or(0, |a| a.port());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(delayed_copy(client_read, server_write, delay));
                tokio::spawn(delayed_copy(server_read, client_write, delay));
            });
        }
    });
    port
}

async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

// ------------------------------------------------------------------ client process

/// From `/proc/self/status`: the line's value in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn settings(port: u16, ca: &Path, i: usize) -> ServerSettings {
    let mut settings = ServerSettings::new("localhost", port, Security::ImplicitTls, user(i));
    settings.trust_roots = TrustRoots::CaFile(ca.to_owned());
    // USER/PASS inside TLS, as the mpop comparison (`auth user`); the test server also offers
    // SCRAM, whose key derivation per login would make this a benchmark of PBKDF2.
    settings.login = LoginMethod::Pop3User;
    settings.setup_timeout = Duration::from_secs(120);
    settings.reply_timeout = Some(Duration::from_secs(120));
    settings
}

/// One round over every mailbox; returns (seconds, messages fetched, failures).
async fn round(accounts: Vec<PolledAccount>, mailboxes: usize) -> (f64, usize, usize) {
    let config = PollerConfig::default()
        .with_max_concurrent(mailboxes)
        .with_max_per_host(mailboxes);
    let (tx, mut rx) = mpsc::channel(1024);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (_stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let results = check_once(accounts, &config, tx, stop).await;
    let seconds = started.elapsed().as_secs_f64();
    let _ = drain.await;
    let mut fetched = 0;
    let mut failures = 0;
    for (name, outcome) in results {
        match outcome {
            CheckOutcome::Fetched { report, .. } => fetched += report.fetched,
            other => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("{NAME}: {name}: {other:?}");
                }
            }
        }
    }
    (seconds, fetched, failures)
}

async fn client(args: &Args) {
    let mailboxes: usize = args.get_or("mailboxes", 1000);
    let messages: usize = args.get_or("messages", 3);
    let delay_ms: u64 = args.get_or("delay-ms", 0);
    let work = PathBuf::from(args.get_or("work", "/tmp/mail-benches/scale".to_owned()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap_or_else(|e| die(NAME, &e.to_string()));

    let exe = std::env::current_exe().unwrap_or_else(|e| die(NAME, &e.to_string()));
    let mut server = Command::new(exe)
        .args(["--serve", "--mailboxes", &mailboxes.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--delay-ms", &delay_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(NAME, &e.to_string()));
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .unwrap_or_else(|e| die(NAME, &e.to_string()));
    let mut words = line.split_whitespace();
    let (port, ca) = match (words.next(), words.next(), words.next(), words.next()) {
        (Some("PORT"), Some(port), Some("CA"), Some(ca)) => (
            port.parse::<u16>()
                .unwrap_or_else(|e| die(NAME, &e.to_string())),
            PathBuf::from(ca),
        ),
        _ => die(NAME, &format!("the server said {line:?}")),
    };

    // First, on a fresh heap: every mailbox logged in at once, held open.
    let rss_start = status_kib("VmRSS:");
    let rss_before = status_kib("VmRSS:");
    let fds_before = open_fds();
    let mut logins = tokio::task::JoinSet::new();
    let ca_shared = Arc::new(ca.clone());
    for i in 0..mailboxes {
        let ca = Arc::clone(&ca_shared);
        logins.spawn(async move {
            pop3_login(&settings(port, &ca, i), &LoginSecret::password("secret")).await
        });
    }
    let mut sessions = Vec::with_capacity(mailboxes);
    let mut login_failures = 0;
    while let Some(result) = logins.join_next().await {
        match result {
            Ok(Ok(session)) => sessions.push(session),
            _ => login_failures += 1,
        }
    }
    let rss_open = status_kib("VmRSS:");
    let fds_open = open_fds();
    let per_session_kib = if sessions.is_empty() {
        0.0
    } else {
        (rss_open.saturating_sub(rss_before)) as f64 / sessions.len() as f64
    };
    let open = sessions.len();
    for session in sessions {
        let _ = session.quit().await;
    }
    let fds_start = open_fds();
    // One Maildir for all, one state journal (and lock) per mailbox, held for the run.
    let maildir = work.join("Maildir");
    let mut accounts = Vec::with_capacity(mailboxes);
    for i in 0..mailboxes {
        let (store, _) = Store::open(&maildir, maildir.join(format!(".state-{i}")))
            .unwrap_or_else(|e| die(NAME, &e.to_string()));
        let check = pop3_check(
            settings(port, &ca, i),
            LoginSecret::password("secret"),
            deliver::shared(store),
            FetchOptions::new(RetentionPolicy::DeleteAfterDownload),
        );
        accounts.push(PolledAccount::new(
            format!("box{i}"),
            "localhost",
            Duration::from_secs(300),
            check,
        ));
    }
    let fds_stores = open_fds();
    let (first_s, first_fetched, first_failed) = round(accounts.clone(), mailboxes).await;
    let (empty_s, empty_fetched, empty_failed) = round(accounts.clone(), mailboxes).await;
    let peak_rounds = status_kib("VmHWM:");
    drop(accounts);

    let peak = status_kib("VmHWM:");
    drop(server.stdin.take());
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&work);

    eprintln!(
        "RESULT {NAME} mailboxes={mailboxes} delay_ms={delay_ms} first_round_s={first_s:.3} \
         first_fetched={first_fetched} first_failed={first_failed} empty_round_s={empty_s:.3} \
         empty_fetched={empty_fetched} empty_failed={empty_failed} rss_start_kib={rss_start} \
         peak_rounds_kib={peak_rounds} peak_kib={peak} open_sessions={open} \
         login_failures={login_failures} rss_before_kib={rss_before} rss_open_kib={rss_open} \
         per_session_kib={per_session_kib:.1} fds_start={fds_start} fds_stores={fds_stores} \
         fds_before={fds_before} fds_open={fds_open}"
    );
    println!(
        "| {mailboxes} | +{delay_ms} ms | {first_s:.2} s ({first_fetched} messages) | \
         {empty_s:.2} s | {:.1} MiB | {per_session_kib:.1} KiB ({open} open) | {} / {} / {} |",
        peak as f64 / 1024.0,
        fds_stores - fds_start,
        fds_open - fds_before,
        fds_open,
    );
}
