//! The blocking driver (`pop3_proto::blocking`, feature `blocking`) against the test ground's
//! Dovecot and scripted hostile servers: the set-up reaches ready over TLS, a wrong TLS mode
//! for the port gets the tokio adapter's diagnosis, bytes after the STLS reply abort, and a
//! [`Batch`] pipelines the whole mailbox. User: alice, read-only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mail_testground::hostile::{HostileServer, Pki, Step};
use mail_testground::{ALICE, DOVECOT_POP3, DOVECOT_POP3S, HOST, TLS_NAME};
use pop3_proto::blocking::{
    ConnectOptions, Connection, Error, SetupTimeouts, TransportError, TrustRoots,
};
use pop3_proto::{
    Batch, BatchKind, Command, Config, Credentials, Event, Login, ProtocolError, Security, Timeouts,
};

const DEADLINE: Duration = Duration::from_millis(1500);

fn options(port: u16) -> ConnectOptions {
    ConnectOptions::new(HOST)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME)
        .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)))
}

#[test]
fn stls_reaches_ready_over_tls_then_logs_in_and_quits() {
    mail_testground::require(&[DOVECOT_POP3]);
    let mut conn = Connection::open(&options(DOVECOT_POP3.port), Config::new(Security::StartTls))
        .expect("STLS set-up");
    assert!(conn.is_tls());
    let caps = conn.machine_ref().capabilities().expect("capabilities");
    assert!(caps.user && !caps.stls, "asked again over TLS: {caps:?}");

    let login = Login::auto(Credentials::password(ALICE.name, ALICE.password));
    conn.machine().login(Instant::now(), login).unwrap();
    let event = conn.next_event().unwrap();
    assert!(matches!(event, Event::LoggedIn { .. }), "{event:?}");
    conn.machine().send(Instant::now(), Command::Stat).unwrap();
    let event = conn.next_event().unwrap();
    assert!(matches!(event, Event::Stat { count: 100, .. }), "{event:?}");
    conn.machine().send(Instant::now(), Command::Quit).unwrap();
    while !matches!(conn.next_event().unwrap(), Event::Closed) {}
    conn.close();
    assert!(matches!(conn.next_event(), Err(Error::Closed)));
}

#[test]
fn a_batch_retrieves_the_whole_mailbox_pipelined_and_in_order() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let mut conn = Connection::open(
        &options(DOVECOT_POP3S.port),
        Config::new(Security::ImplicitTls),
    )
    .expect("implicit TLS set-up");
    let greeting = conn.machine_ref().greeting().expect("greeting kept");
    assert!(greeting.text.contains("ready"), "{greeting:?}");
    let login = Login::auto(Credentials::password(ALICE.name, ALICE.password));
    conn.machine().login(Instant::now(), login).unwrap();
    assert!(matches!(conn.next_event().unwrap(), Event::LoggedIn { .. }));
    assert!(conn.machine_ref().is_pipelining());
    conn.machine()
        .send(Instant::now(), Command::List(None))
        .unwrap();
    let Event::Listing { entries, .. } = conn.next_event().unwrap() else {
        panic!("no listing");
    };
    assert_eq!(entries.len(), 100);
    let sizes: HashMap<u32, u64> = entries.iter().map(|e| (e.msg, e.size)).collect();

    // 101 does not exist: refused in the middle, the others go on.
    let msgs: Vec<u32> = (51..=100).chain([101]).chain(1..=50).collect();
    let mut batch = Batch::new(BatchKind::Retr, msgs.iter().copied());
    let (mut bodies, mut ends, mut refused) =
        (HashMap::<u32, Vec<u8>>::new(), Vec::new(), Vec::new());
    let mut most_outstanding = 0;
    loop {
        batch.fill(conn.machine(), Instant::now()).unwrap();
        most_outstanding = most_outstanding.max(batch.outstanding());
        if batch.is_done() {
            break;
        }
        let event = conn.next_event().unwrap();
        let msg = batch.claim(&event).expect("only the batch is running");
        match event {
            Event::MessageStart { msg: start, .. } => assert_eq!(start, msg),
            Event::MessageChunk { data, .. } => bodies.entry(msg).or_default().extend(&data),
            Event::MessageEnd { octets, .. } => ends.push((msg, octets)),
            Event::Refused { .. } => refused.push(msg),
            other => panic!("RETR answered by {other:?}"),
        }
    }
    assert!(most_outstanding > 1, "not pipelined: {most_outstanding}");
    assert_eq!(refused, [101]);
    let order: Vec<u32> = ends.iter().map(|&(msg, _)| msg).collect();
    assert_eq!(
        order,
        msgs[..50]
            .iter()
            .chain(&msgs[51..])
            .copied()
            .collect::<Vec<_>>()
    );
    for (msg, octets) in ends {
        let body = &bodies[&msg];
        assert_eq!(octets, body.len() as u64, "message {msg}");
        assert_eq!(octets, sizes[&msg], "message {msg}: LIST size");
        let subject = format!("alice message {msg} of 100");
        let text = String::from_utf8_lossy(body);
        assert!(text.contains(&subject), "message {msg} is not {subject:?}");
    }
    conn.machine().send(Instant::now(), Command::Quit).unwrap();
    while !matches!(conn.next_event().unwrap(), Event::Closed) {}
}

#[test]
fn stls_against_the_implicit_tls_port_names_host_port_and_cause() {
    mail_testground::require(&[DOVECOT_POP3S]);
    let wait = Duration::from_secs(2);
    let config =
        Config::new(Security::StartTls).with_timeouts(Timeouts::default().with_greeting(wait));
    let error = Connection::open(&options(DOVECOT_POP3S.port), config).unwrap_err();
    let Error::Transport(TransportError::NoGreeting {
        host,
        port,
        after,
        implicit_tls: false,
    }) = &error
    else {
        panic!("expected NoGreeting, got {error:?}");
    };
    assert_eq!(
        (host.as_str(), *port, *after),
        (HOST, DOVECOT_POP3S.port, wait)
    );
    let text = error.to_string();
    for words in ["127.0.0.1:11995", "implicit TLS", "995"] {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}

#[test]
fn implicit_tls_against_the_stls_port_says_stls_is_wanted() {
    mail_testground::require(&[DOVECOT_POP3]);
    let error = Connection::open(
        &options(DOVECOT_POP3.port),
        Config::new(Security::ImplicitTls),
    )
    .unwrap_err();
    let Error::Transport(TransportError::PlaintextGreeting { port, greeting, .. }) = &error else {
        panic!("expected PlaintextGreeting, got {error:?}");
    };
    assert_eq!(*port, DOVECOT_POP3.port);
    assert!(greeting.starts_with("+OK"), "{greeting:?}");
}

/// Plays `reply` to `STLS` from a scripted server and returns the client's error and the
/// lines the server read.
fn after_stls(reply: Vec<Step>) -> (Error, Vec<String>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pki = Pki::generate();
    let mut script = vec![
        Step::send("+OK hostile POP3 ready\r\n"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nSTLS\r\n.\r\n"),
        Step::expect("STLS"),
    ];
    script.extend(reply);
    let server = runtime.block_on(HostileServer::start(script, pki.leaf_for("localhost")));
    let options = ConnectOptions::new("127.0.0.1")
        .with_port(server.port())
        .with_trust_roots(TrustRoots::CaFile(pki.ca_file()))
        .with_tls_name("localhost")
        .with_timeouts(SetupTimeouts::uniform(DEADLINE));
    let config = Config::new(Security::StartTls).with_timeouts(
        Timeouts::default()
            .with_greeting(DEADLINE)
            .with_reply(DEADLINE),
    );
    let error = Connection::open(&options, config).unwrap_err();
    let transcript = runtime.block_on(server.finish());
    assert!(
        transcript.encrypted.is_empty(),
        "no TLS session was established"
    );
    (error, transcript.lines)
}

#[test]
fn bytes_in_the_stls_reply_packet_abort() {
    let (error, lines) = after_stls(vec![Step::send("+OK begin TLS\r\n+OK forged\r\n")]);
    assert!(
        matches!(error, Error::Protocol(ProtocolError::InputAfterStartTls)),
        "{error:?}"
    );
    assert_eq!(lines, ["CAPA", "STLS"]);
}

#[test]
fn bytes_after_the_stls_reply_reach_only_rustls() {
    // A separate write arrives before the handshake (the core refuses it) or during it (rustls
    // refuses it as a TLS record): never as a reply.
    let (error, _) = after_stls(vec![
        Step::send("+OK begin TLS\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("+OK forged\r\n"),
        Step::StartTls,
    ]);
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::InputAfterStartTls)
                | Error::Transport(TransportError::Tls { .. })
        ),
        "{error:?}"
    );
}
