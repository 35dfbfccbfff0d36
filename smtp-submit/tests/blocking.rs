//! The blocking driver (`smtp_submit::blocking`, feature `blocking`) against the test ground's
//! Postfix and scripted hostile servers: the STARTTLS set-up reaches ready over TLS, a wrong
//! TLS mode for the port gets the tokio adapter's diagnosis, bytes after the STARTTLS reply
//! abort, a refused greeting is an error after which QUIT still went out, and messages
//! pipelined with the core's `PipelinedReports` each get their own report. Nothing is sent to
//! any mailbox (the pipelined messages go to the sink domain, which Postfix discards).

use std::time::{Duration, Instant};

use mail_testground::hostile::{HostileServer, Pki, Step, Transcript};
use mail_testground::{
    GRACE, HOST, POSTFIX_SUBMISSION, POSTFIX_SUBMISSIONS, SINK_DOMAIN, TLS_NAME,
};
use smtp_submit::blocking::{
    ConnectOptions, Connection, Error, SetupTimeouts, TransportError, TrustRoots,
};
use smtp_submit::{
    Address, AuthMethod, ClientName, Config, Credentials, Envelope, Event, MailOptions, Phase,
    PipelinedReports, ProtocolError, Security, SendReport, Timeouts,
};

const DEADLINE: Duration = Duration::from_millis(1500);

fn config(security: Security) -> Config {
    Config::new(ClientName::new("client.example").unwrap(), security)
}

fn options(port: u16) -> ConnectOptions {
    ConnectOptions::new(HOST)
        .with_port(port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME)
        .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)))
}

/// A connection to Postfix's submission port, upgraded with STARTTLS and ready.
fn starttls_to_postfix() -> Connection {
    mail_testground::require(&[POSTFIX_SUBMISSION]);
    Connection::open(
        &options(POSTFIX_SUBMISSION.port),
        config(Security::StartTls),
    )
    .expect("STARTTLS set-up")
}

#[test]
fn starttls_reaches_ready_over_tls_then_quits() {
    let mut conn = starttls_to_postfix();
    assert!(conn.is_tls());
    let caps = conn.machine_ref().capabilities().expect("capabilities");
    // Postfix offers AUTH only over TLS: seeing it proves the EHLO after the upgrade.
    assert!(!caps.auth_mechanisms().is_empty(), "{caps:?}");
    assert!(!caps.starttls(), "{caps:?}");
    conn.machine().quit(Instant::now()).unwrap();
    while !matches!(conn.next_event().unwrap(), Event::Closed) {}
}

#[test]
fn three_messages_pipelined_each_get_their_own_report() {
    let mut conn = starttls_to_postfix();
    let caps = conn.machine_ref().capabilities().expect("capabilities");
    assert!(caps.pipelining() && caps.chunking(), "{caps:?}");
    let credentials = Credentials::password(GRACE.name, GRACE.password);
    conn.machine()
        .authenticate(Instant::now(), &credentials, AuthMethod::Auto, &[])
        .unwrap();
    loop {
        match conn.next_event().unwrap() {
            Event::Authenticated { .. } => break,
            event @ (Event::AuthFailed { .. } | Event::SessionFailed(_) | Event::Closed) => {
                panic!("AUTH: {event:?}")
            }
            _ => {}
        }
    }

    let sink = |local: &str| Address::new(format!("{local}@{SINK_DOMAIN}")).unwrap();
    let mut reports = PipelinedReports::new();
    for index in 0..3 {
        let envelope = Envelope::new(Some(Address::new(GRACE.address).unwrap()))
            .with_recipient(sink(&format!("blocking{index}a")))
            .with_recipient(sink(&format!("blocking{index}b")));
        let body = format!("Subject: blocking pipelined {index}\r\n\r\n.{index}\r\n");
        let id = conn
            .machine()
            .send_mail_bytes(
                Instant::now(),
                envelope.clone(),
                MailOptions::default(),
                body.as_bytes(),
            )
            .expect("room in the window");
        reports.start(index, id, &envelope);
    }
    // All three were started before any reply was read: they are in flight together.
    assert_eq!(reports.len(), 3);
    let mut done: Vec<Option<SendReport>> = vec![None, None, None];
    while !reports.is_empty() {
        let event = conn.next_event().unwrap();
        assert!(
            !matches!(event, Event::SessionFailed(_) | Event::Closed),
            "{event:?}"
        );
        if let Some((index, report)) = reports.take(event) {
            assert!(done[index].is_none(), "message {index} reported twice");
            done[index] = Some(report);
        }
    }
    for (index, report) in done.into_iter().enumerate() {
        let report = report.unwrap_or_else(|| panic!("message {index} has no report"));
        assert!(report.is_sent(), "message {index}: {report:?}");
        let accepted: Vec<String> = report.accepted().map(ToString::to_string).collect();
        assert_eq!(
            accepted,
            [
                format!("blocking{index}a@{SINK_DOMAIN}"),
                format!("blocking{index}b@{SINK_DOMAIN}")
            ],
            "message {index}: {report:?}"
        );
        assert!(report.recipients.iter().all(|r| report.delivered(r)));
    }
    conn.machine().quit(Instant::now()).unwrap();
    while !matches!(conn.next_event().unwrap(), Event::Closed) {}
}

#[test]
fn starttls_against_the_implicit_tls_port_names_host_port_and_cause() {
    mail_testground::require(&[POSTFIX_SUBMISSIONS]);
    let wait = Duration::from_secs(2);
    let config = config(Security::StartTls).with_timeouts(Timeouts::default().with_greeting(wait));
    let error = Connection::open(&options(POSTFIX_SUBMISSIONS.port), config).unwrap_err();
    let Error::Transport(TransportError::NoGreeting {
        port,
        after,
        implicit_tls: false,
        ..
    }) = &error
    else {
        panic!("expected NoGreeting, got {error:?}");
    };
    assert_eq!((*port, *after), (POSTFIX_SUBMISSIONS.port, wait));
    let text = error.to_string();
    for words in ["127.0.0.1:10465", "implicit TLS", "465", "995"] {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}

#[test]
fn implicit_tls_against_the_starttls_port_says_starttls_is_wanted() {
    mail_testground::require(&[POSTFIX_SUBMISSION]);
    let error = Connection::open(
        &options(POSTFIX_SUBMISSION.port),
        config(Security::ImplicitTls),
    )
    .unwrap_err();
    let Error::Transport(TransportError::PlaintextGreeting { greeting, .. }) = &error else {
        panic!("expected PlaintextGreeting, got {error:?}");
    };
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    assert!(error.to_string().contains("STARTTLS"), "{error}");
}

/// Runs `script` on a scripted server, opens a connection with `security` to it and hands it
/// to `then` (which gets the error if the set-up fails).
fn scripted_with(
    script: Vec<Step>,
    security: Security,
    then: impl FnOnce(Result<Connection, Error>) -> Error,
) -> (Error, Transcript) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pki = Pki::generate();
    let server = runtime.block_on(HostileServer::start(script, pki.leaf_for("localhost")));
    let options = ConnectOptions::new("127.0.0.1")
        .with_port(server.port())
        .with_trust_roots(TrustRoots::CaFile(pki.ca_file()))
        .with_tls_name("localhost")
        .with_timeouts(SetupTimeouts::uniform(DEADLINE));
    let timeouts = Timeouts::default()
        .with_greeting(DEADLINE)
        .with_command(DEADLINE)
        .with_mail(DEADLINE)
        .with_rcpt(DEADLINE)
        .with_data_init(DEADLINE)
        .with_data_block(DEADLINE);
    let error = then(Connection::open(
        &options,
        config(security).with_timeouts(timeouts),
    ));
    (error, runtime.block_on(server.finish()))
}

/// [`scripted_with`] for a set-up that must fail.
fn scripted(script: Vec<Step>, security: Security) -> (Error, Transcript) {
    scripted_with(script, security, Result::unwrap_err)
}

fn starttls_prelude() -> Vec<Step> {
    vec![
        Step::send("220 hostile.example ESMTP\r\n"),
        Step::expect("EHLO client.example"),
        Step::send("250-hostile.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
        Step::expect("STARTTLS"),
    ]
}

#[test]
fn bytes_in_the_starttls_reply_packet_abort() {
    let mut script = starttls_prelude();
    script.push(Step::send("220 go ahead\r\n250 forged\r\n"));
    let (error, transcript) = scripted(script, Security::StartTls);
    assert!(
        matches!(error, Error::Protocol(ProtocolError::InputAfterStartTls)),
        "{error:?}"
    );
    assert!(
        transcript.encrypted.is_empty(),
        "no TLS session was established"
    );
}

#[test]
fn bytes_after_the_starttls_reply_reach_only_rustls() {
    let mut script = starttls_prelude();
    script.extend([
        Step::send("220 go ahead\r\n"),
        Step::Pause(Duration::from_millis(100)),
        Step::send("250 forged\r\n"),
        Step::StartTls,
    ]);
    let (error, transcript) = scripted(script, Security::StartTls);
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::InputAfterStartTls)
                | Error::Transport(TransportError::Tls { .. })
        ),
        "{error:?}"
    );
    assert!(
        transcript.encrypted.is_empty(),
        "no TLS session was established"
    );
}

#[test]
fn a_refused_greeting_is_an_error_and_quit_still_goes_out() {
    let script = vec![
        Step::StartTls,
        Step::send("554 5.7.1 no service for you\r\n"),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
        Step::Close,
    ];
    let (error, transcript) = scripted(script, Security::ImplicitTls);
    let Error::Refused(event @ Event::GreetingRefused(reply)) = &error else {
        panic!("expected a refused greeting, got {error:?}");
    };
    assert_eq!(reply.code(), 554);
    assert_eq!(
        event.refusal().map(|(stage, reply)| (stage, reply.code())),
        Some((smtp_submit::Stage::Greeting, 554))
    );
    assert_eq!(transcript.lines, ["QUIT"], "{transcript:?}");
}

#[test]
fn a_server_that_stops_reading_mid_body_runs_into_the_data_deadline() {
    // The writes back up in the socket buffers; the write timeout, set to the core's next
    // deadline, turns that into the core's data-block timeout instead of a hang.
    let hang = Duration::from_secs(8);
    let script = vec![
        Step::StartTls,
        Step::send("220 hostile.example ESMTP\r\n"),
        Step::expect("EHLO client.example"),
        Step::send("250-hostile.example\r\n250 PIPELINING\r\n"),
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send("250 ok\r\n250 ok\r\n354 go\r\n"),
        Step::HangFor(hang),
    ];
    let mut took = Duration::ZERO;
    let (error, _) = scripted_with(script, Security::ImplicitTls, |conn| {
        let started = Instant::now();
        let mut conn = conn.expect("set-up");
        let envelope = Envelope::new(Some(Address::new("a@example.org").unwrap()))
            .with_recipient(Address::new("b@example.org").unwrap());
        let body = b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
            .repeat(256 * 1024);
        conn.machine()
            .send_mail_bytes(Instant::now(), envelope, MailOptions::default(), &body)
            .unwrap();
        loop {
            if let Err(error) = conn.next_event() {
                took = started.elapsed();
                return error;
            }
        }
    });
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::Timeout {
                phase: Phase::DataBlock
            })
        ),
        "{error:?}"
    );
    assert!(took < hang, "took {took:?}");
}
