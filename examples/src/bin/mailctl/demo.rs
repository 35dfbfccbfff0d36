//! `mailctl demo`: everything offline, against our own loopback servers.

use std::time::{Duration, Instant, SystemTime};

use mail_account::DiscoveryOptions;
use mail_account::autoconfig::{ClientConfig, ServerEntry};
use mail_account::compose::SimpleMessage;
use mail_account::connect::{LoginSecret, ServerSettings, pop3_login, smtp_login};
use mail_account::fetch::{FetchOptions, fetch};
use mail_account::roundtrip::{RoundtripOptions, send_and_fetch_back};
use mail_account::settings::{AuthMethod, Protocol, Security, Username};
use mail_account::store::{RetentionPolicy, Store};
use mail_testground::server::TestServer;
use smtp_submit::{Address, Envelope, MailOptions};

use crate::discover::{discover, print_text};
use crate::{Failure, Outcome};

/// Flags of `mailctl demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to put the demo Maildir (default: a new directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    maildir: Option<std::path::PathBuf>,
}

const ADDRESS: &str = "demo@demo.example";

fn say(title: &str) {
    println!("\n== {title}");
}

/// The loopback servers as a provider description for `demo.example`: what a provider's
/// autoconfig file would say, with the ports the servers got.
fn demo_provider(server: &TestServer) -> ClientConfig {
    let entry = |protocol, addr: std::net::SocketAddr| ServerEntry {
        protocol,
        host: addr.ip().to_string(),
        port: addr.port(),
        security: Security::ImplicitTls,
        username: Username::address(),
        auth: vec![AuthMethod::Automatic],
    };
    ClientConfig {
        provider_id: "demo".into(),
        display_name: Some("Demo (loopback test servers)".into()),
        domains: vec!["demo.example".into()],
        servers: vec![
            entry(Protocol::Pop3, server.pop3s_addr()),
            entry(Protocol::Smtp, server.submissions_addr()),
        ],
        pop3_leave_on_server: Some(true),
        ..ClientConfig::default()
    }
}

pub(crate) async fn run(args: Args) -> Outcome {
    let started = Instant::now();
    let password = "demo-password";
    say("starting loopback POP3 and SMTP servers (mail-testground, TLS with a generated CA)");
    let server = TestServer::builder()
        .user(ADDRESS, password)
        .message(
            ADDRESS,
            SimpleMessage::new(
                "welcome@demo.example",
                [ADDRESS],
                "Welcome",
                "This message was waiting on the server.\n",
            )
            .to_bytes(),
        )
        .start()
        .await
        .map_err(|e| Failure::local(format!("cannot start the demo servers: {e}")))?;
    println!(
        "POP3S {}   submissions {}",
        server.pop3s_addr(),
        server.submissions_addr()
    );

    say(&format!(
        "discover {ADDRESS} (offline: the demo servers given as an extra provider entry)"
    ));
    let mut options = DiscoveryOptions::default();
    options.extra_providers.push(demo_provider(&server));
    let report = discover(ADDRESS, true, &options).await?;
    print_text(&report);
    let account = report
        .to_account()
        .map_err(|e| Failure::settings(format!("demo discovery incomplete: {e}")))?;
    let trust = |mut settings: ServerSettings| {
        settings.trust_roots = server.trust_roots();
        settings.setup_timeout = Duration::from_secs(10);
        settings
    };
    let pop3 = trust(ServerSettings::incoming(&account)?);
    let smtp = trust(ServerSettings::outgoing(&account)?);
    let secret = LoginSecret::password(password);

    say("roundtrip: send a test message to ourselves and fetch it back");
    let roundtrip = send_and_fetch_back(
        ADDRESS,
        &smtp,
        &pop3,
        &secret,
        &RoundtripOptions::default(),
        |step| {
            println!("{step}");
        },
    )
    .await
    .map_err(|e| Failure::new(e.kind(), e.to_string()))?;
    println!(
        "verified in {:.1} ms",
        roundtrip.total.as_secs_f64() * 1000.0
    );

    say("send two messages over SMTP (AUTH, pipelined)");
    let mut session = smtp_login(&smtp, Some(&secret)).await?;
    for n in 1..=2 {
        let body = format!(
            "Message {n} of the demo.\n.\nA line with only a dot is above: dot-stuffing at work.\n"
        );
        let message =
            SimpleMessage::new(ADDRESS, [ADDRESS], format!("Demo message {n}"), body).to_bytes();
        let mailbox = Address::new(ADDRESS).map_err(|e| Failure::settings(e.to_string()))?;
        let envelope = Envelope::new(Some(mailbox.clone())).with_recipient(mailbox);
        let report = session
            .send_bytes(envelope, MailOptions::default(), &message)
            .await?;
        println!(
            "message {n}: {}",
            if report.is_sent() {
                "accepted"
            } else {
                "refused"
            }
        );
    }
    let _ = session.quit().await;

    say("fetch over POP3 into a Maildir (delete after download)");
    let maildir = args.maildir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mailctl-demo-{}", std::process::id()))
    });
    let journal = maildir.join(".mailctl-state-demo");
    let (store, _) = Store::open(&maildir, &journal).map_err(|e| Failure::local(e.to_string()))?;
    let store = mail_account::deliver::shared(store);
    let session = pop3_login(&pop3, &secret).await?;
    let fetched = fetch(
        session,
        &store,
        &FetchOptions::new(RetentionPolicy::DeleteAfterDownload),
        SystemTime::now(),
        |event| {
            if let mail_account::fetch::FetchEvent::Stored { path, octets, .. } = event {
                println!("stored {octets:>6} bytes  {}", path.display());
            }
        },
    )
    .await?;
    println!(
        "fetched {} messages ({} bytes), deleted {} on the server",
        fetched.fetched, fetched.bytes, fetched.deleted
    );
    let left = server.mailbox(ADDRESS).map_or(0, |m| m.len());
    println!("server mailbox now holds {left} messages");
    server.shutdown().await;
    say(&format!(
        "done in {:.2} s; Maildir: {}",
        started.elapsed().as_secs_f64(),
        maildir.display()
    ));
    Ok(())
}
