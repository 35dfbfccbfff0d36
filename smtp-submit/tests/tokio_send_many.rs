//! `Session::send_many` against scripted servers that read a whole window of transactions
//! before answering anything: a client that waited for a reply between messages would stall
//! into the deadline. Each message's result is exact: refusals stay with their message, and a
//! 421 in the middle of the window says which messages the server took before it.
#![cfg(feature = "tokio")]

use std::time::Duration;

use mail_testground::hostile::{HostileServer, Pki, Step};
use smtp_submit::tokio::{ConnectOptions, Error, Session, Stage, TrustRoots};
use smtp_submit::{
    Address, ClientName, Config, Envelope, Limits, MailOptions, MessageOutcome, RecipientOutcome,
    Security, Timeouts, TransactionFailure,
};

const DEADLINE: Duration = Duration::from_millis(1500);

fn config(in_flight: usize) -> Config {
    let timeouts = Timeouts::default()
        .with_greeting(DEADLINE)
        .with_command(DEADLINE)
        .with_mail(DEADLINE)
        .with_rcpt(DEADLINE)
        .with_data_termination(DEADLINE)
        .with_data_block(DEADLINE);
    Config::new(
        ClientName::new("client.example").unwrap(),
        Security::ImplicitTls,
    )
    .with_timeouts(timeouts)
    .with_limits(Limits::default().with_max_pipelined_transactions(in_flight))
}

fn envelope(to: &str) -> Envelope {
    Envelope::new(Some(Address::new("me@client.example").unwrap()))
        .with_recipient(Address::new(format!("{to}@server.example")).unwrap())
}

fn body(i: usize) -> Vec<u8> {
    format!("Subject: {i}\r\n\r\nmessage {i}\r\n").into_bytes()
}

/// The server reads transaction `i` whole (with the RSET that opens every one behind another).
fn read_transaction(i: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    if i > 0 {
        steps.push(Step::expect("RSET"));
    }
    let size = body(i).len();
    steps.extend([
        Step::expect("MAIL FROM:<me@client.example>"),
        Step::expect("RCPT TO:"),
        Step::expect(&format!("BDAT {size} LAST")),
        Step::ExpectBytes(size),
    ]);
    steps
}

async fn session(script: Vec<Step>, in_flight: usize) -> (Session, HostileServer) {
    let pki = Pki::generate();
    let mut steps = vec![
        Step::StartTls,
        Step::send("220 server.example ESMTP\r\n"),
        Step::expect("EHLO client.example"),
        Step::send("250-server.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
    ];
    steps.extend(script);
    let server = HostileServer::start(steps, pki.leaf_for("localhost")).await;
    let options = ConnectOptions::new("127.0.0.1")
        .with_port(server.port())
        .with_trust_roots(TrustRoots::CaFile(pki.ca_file()))
        .with_tls_name("localhost");
    let session = Session::connect(&options, config(in_flight)).await.unwrap();
    (session, server)
}

fn messages(recipients: &[&str]) -> Vec<(Envelope, MailOptions, Vec<u8>)> {
    recipients
        .iter()
        .enumerate()
        .map(|(i, to)| (envelope(to), MailOptions::default(), body(i)))
        .collect()
}

#[tokio::test]
async fn a_refused_sender_and_recipient_mid_window_leave_the_neighbours_alone() {
    let mut script = Vec::new();
    for i in 0..4 {
        script.extend(read_transaction(i));
    }
    script.push(Step::send(
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as A\r\n\
         250 2.0.0 reset\r\n553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n\
         250 2.0.0 reset\r\n250 2.1.0 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n\
         250 2.0.0 reset\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as D\r\n",
    ));
    script.extend([Step::expect("QUIT"), Step::send("221 bye\r\n")]);
    let (mut session, server) = session(script, 8).await;
    let messages = messages(&["a", "b", "nobody", "d"]);
    let results = session
        .send_many(
            messages
                .iter()
                .map(|(e, o, b)| (e.clone(), o.clone(), b.as_slice())),
        )
        .await
        .unwrap();
    let reports: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(reports[0].reply().unwrap().text(), "queued as A");
    assert!(matches!(
        reports[1].failure(),
        Some(TransactionFailure::MailRejected(reply)) if reply.code() == 553
    ));
    assert!(matches!(
        reports[1].recipients[0].outcome,
        RecipientOutcome::SenderRefused(_)
    ));
    assert!(matches!(
        reports[2].failure(),
        Some(TransactionFailure::NoValidRecipients { .. })
    ));
    assert_eq!(reports[2].rejected().next().unwrap().1.code(), 550);
    assert_eq!(reports[3].reply().unwrap().text(), "queued as D");
    session.quit().await.unwrap();
    server.finish().await;
}

#[tokio::test]
async fn a_421_mid_window_names_what_was_taken_and_what_was_not() {
    // A window of three: the fourth message waits for a place, which never comes.
    let mut script = Vec::new();
    for i in 0..3 {
        script.extend(read_transaction(i));
    }
    script.push(Step::send(
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as A\r\n\
         250 2.0.0 reset\r\n250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n",
    ));
    script.push(Step::Close);
    let (mut session, server) = session(script, 3).await;
    let messages = messages(&["a", "b", "c", "d"]);
    let results = session
        .send_many(
            messages
                .iter()
                .map(|(e, o, b)| (e.clone(), o.clone(), b.as_slice())),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    let first = results[0].as_ref().unwrap();
    assert!(first.is_sent());
    assert_eq!(first.reply().unwrap().text(), "queued as A");
    for report in [&results[1], &results[2]] {
        let report = report.as_ref().unwrap();
        assert!(matches!(
            &report.outcome,
            MessageOutcome::Failed(TransactionFailure::ServiceClosing(reply)) if reply.code() == 421
        ));
        // The 421 came before any RCPT reply of theirs: every recipient is accounted for.
        assert_eq!(report.recipients.len(), 1);
        assert_eq!(report.recipients[0].outcome, RecipientOutcome::NotAttempted);
        // A message lost to a 421 is worth trying again on a new connection.
        assert!(
            report
                .clone()
                .ensure_sent()
                .is_err_and(|e| e.is_transient())
        );
    }
    assert!(matches!(results[3], Err(Error::Closed)), "{:?}", results[3]);
    // The session is over: a later call says so.
    let later = session
        .send_bytes(envelope("e"), MailOptions::default(), &body(4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            later,
            Error::Refused {
                stage: Stage::ServiceClosing,
                ..
            } | Error::Closed
        ),
        "{later:?}"
    );
    server.finish().await;
}
