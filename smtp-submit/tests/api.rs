//! Behaviour best checked through the Rust API rather than transcripts: validation at
//! construction, secrets kept out of `Debug` and logs, configuration, and streaming through
//! the whole client.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use smtp_submit::{
    Address, AuthMethod, Client, ClientName, Config, Credentials, Envelope, Event, InvalidValue,
    Limits, Machine, MailOptions, Mechanism, MessageOutcome, Misuse, Phase, ProtocolError,
    RecipientOutcome, Rejected, Security, Timeouts,
};

fn drain(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        out.extend_from_slice(bytes);
        let n = bytes.len();
        client.advance_transmit(n);
    }
    out
}

fn ready_client(config: Config, ehlo: &str) -> (Client, Instant) {
    let now = Instant::now();
    let mut client = Client::new(config, now);
    client
        .handle_input(now, b"220 mail.example ESMTP\r\n")
        .unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Greeting(r)) if r.code() == 220));
    drain(&mut client);
    client.handle_input(now, ehlo.as_bytes()).unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Ready(_))));
    (client, now)
}

fn implicit() -> Config {
    Config::new(
        ClientName::new("client.example").unwrap(),
        Security::ImplicitTls,
    )
}

#[test]
fn injection_through_names_and_addresses_is_impossible() {
    for name in [
        "host\r\nMAIL FROM:<x>",
        "host\n",
        "ho\0st",
        "host name",
        "<host>",
    ] {
        assert!(
            matches!(
                ClientName::new(name),
                Err(InvalidValue::ForbiddenCharacter { .. })
            ),
            "{name:?}"
        );
    }
    for address in [
        "b@example.org>\r\nRSET\r\nRCPT TO:<evil@example.net",
        "a@b\n",
        "a@b\r",
        "a\0@b",
        "a b@c",
        "a@b> SIZE=1",
    ] {
        assert!(
            matches!(
                Address::new(address),
                Err(InvalidValue::ForbiddenCharacter { .. })
            ),
            "{address:?}"
        );
    }
    assert_eq!(ClientName::new(""), Err(InvalidValue::Empty));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let ehlo = "250-mail.example\r\n250 AUTH PLAIN LOGIN\r\n";
    let (mut client, now) = ready_client(implicit(), ehlo);
    let credentials = Credentials::password("alice", "hunter2-secret");
    client
        .authenticate(now, &credentials, AuthMethod::Auto, b"nonce-nonce-nonce-1")
        .unwrap();
    // The AUTH line (with the base64 password) is waiting in the transmit buffer.
    let pending = String::from_utf8(client.poll_transmit().unwrap().to_vec()).unwrap();
    assert!(pending.starts_with("AUTH PLAIN "));
    let base64_part = pending.trim_start_matches("AUTH PLAIN ").trim_end();
    for text in [
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{credentials:?}"),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(base64_part), "{text}");
    }
}

#[test]
fn secrets_stay_out_of_logs() {
    let ((), logs) = mail_testground::logs::capture(mail_testground::logs::Spans::Off, || {
        let ehlo = "250-mail.example\r\n250 AUTH PLAIN LOGIN\r\n";
        let (mut client, now) = ready_client(implicit(), ehlo);
        let credentials = Credentials::password("alice", "hunter2-secret");
        client
            .authenticate(
                now,
                &credentials,
                AuthMethod::Mechanism(Mechanism::Login),
                b"",
            )
            .unwrap();
        drain(&mut client);
        client.handle_input(now, b"334 VXNlcm5hbWU6\r\n").unwrap();
        drain(&mut client);
        client.handle_input(now, b"334 UGFzc3dvcmQ6\r\n").unwrap();
        let answer = drain(&mut client);
        assert_eq!(answer, b"aHVudGVyMi1zZWNyZXQ=\r\n");
        client.handle_input(now, b"235 2.7.0 ok\r\n").unwrap();
        assert_eq!(
            client.poll_event(),
            Some(Event::Authenticated {
                mechanism: Mechanism::Login
            })
        );
        // And PLAIN, whose whole credential is on the command line.
        let (mut client, now) = ready_client(implicit(), ehlo);
        client
            .authenticate(now, &credentials, AuthMethod::Auto, b"")
            .unwrap();
        drain(&mut client);
    });
    // LOGIN has no initial response: its AUTH line carries nothing secret and is shown whole.
    assert!(logs.contains("C: AUTH LOGIN\n"), "{logs}");
    assert!(logs.contains("C: AUTH PLAIN [redacted]"), "{logs}");
    assert!(logs.contains("C: [redacted]"), "{logs}");
    assert!(logs.contains("C: EHLO client.example"), "{logs}");
    for secret in ["hunter2", "aHVudGVyMi1zZWNyZXQ", "AGFsaWNlAGh1bnRlcjIt"] {
        assert!(!logs.contains(secret), "{secret} leaked:\n{logs}");
    }
}

#[test]
fn timeouts_are_configurable_and_name_the_phase() {
    let t0 = Instant::now();
    let config = implicit().with_timeouts(
        Timeouts::default()
            .with_greeting(Duration::from_secs(7))
            .with_command(Duration::from_secs(11)),
    );
    let mut client = Client::new(config, t0);
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(7)));
    let t1 = t0 + Duration::from_secs(1);
    client.handle_input(t1, b"220 hi\r\n").unwrap();
    assert_eq!(client.poll_timeout(), Some(t1 + Duration::from_secs(11)));
    assert_eq!(client.handle_timeout(t1 + Duration::from_secs(10)), Ok(()));
    assert_eq!(
        client.handle_timeout(t1 + Duration::from_secs(11)),
        Err(ProtocolError::Timeout { phase: Phase::Ehlo })
    );
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn documented_defaults() {
    let limits = Limits::default();
    assert_eq!(
        (
            limits.max_reply_line,
            limits.max_reply_lines,
            limits.max_ehlo_lines
        ),
        (2048, 128, 64)
    );
    assert_eq!(
        (limits.send_window, limits.chunk_size),
        (64 * 1024, 1024 * 1024)
    );
    let t = Timeouts::default();
    let minutes = |d: Duration| d.as_secs() / 60;
    // The greeting: 30 s, not RFC 5321's 5 minutes (a person waits; see Timeouts::greeting).
    assert_eq!(t.greeting, Duration::from_secs(30));
    assert_eq!(
        [
            t.command,
            t.mail,
            t.rcpt,
            t.data_init,
            t.data_block,
            t.data_termination
        ]
        .map(minutes),
        [5, 5, 5, 2, 3, 10]
    );
    let config = implicit();
    assert!(config.pipelining && config.chunking && !config.cleartext_credentials_allowed());
}

#[test]
fn enhanced_codes_and_classes_reach_the_caller() {
    // No ENHANCEDSTATUSCODES advertised: codes are still read when they match the reply class.
    let (mut client, now) = ready_client(implicit(), "250-mail.example\r\n250 PIPELINING\r\n");
    let envelope = Envelope::new(Some(Address::new("a@example").unwrap()))
        .with_recipient(Address::new("b@example").unwrap());
    let id = client
        .send_mail_bytes(now, envelope, MailOptions::default(), b"x")
        .unwrap();
    drain(&mut client);
    client
        .handle_input(
            now,
            b"250 ok\r\n452 4.2.2 over quota\r\n554 5.5.1 no valid recipients\r\n",
        )
        .unwrap();
    let Some(Event::Recipient {
        outcome: RecipientOutcome::Rejected(reply),
        ..
    }) = client.poll_event()
    else {
        panic!("expected a rejected recipient");
    };
    assert_eq!(reply.code(), 452);
    assert_eq!(reply.enhanced().unwrap().to_string(), "4.2.2");
    assert!(reply.failure_class().unwrap().is_transient());
    assert_eq!(reply.text(), "over quota");
    let Some(Event::MessageDone {
        transaction,
        outcome: MessageOutcome::Failed(_),
    }) = client.poll_event()
    else {
        panic!("expected the transaction to fail");
    };
    assert_eq!(transaction, id);
}

#[test]
fn fatal_error_poisons_every_call() {
    let (mut client, now) = ready_client(implicit(), "250 mail.example\r\n");
    let error = client.handle_input(now, b"999 what\r\n").unwrap_err();
    let envelope = Envelope::new(None).with_recipient(Address::new("b@example").unwrap());
    // The refused envelope comes back, unchanged.
    assert_eq!(
        client.send_mail(now, envelope.clone(), MailOptions::default()),
        Err(Rejected {
            reason: Misuse::Fatal(Box::new(error.clone())),
            value: envelope,
        })
    );
    assert_eq!(client.handle_eof(now), Err(error.clone()));
    assert_eq!(
        client.write_body(now, b"x"),
        Err(Misuse::Fatal(Box::new(error)))
    );
}

/// Parses a BDAT stream after the envelope commands: returns the concatenated payloads and
/// checks every `BDAT n` count.
fn parse_bdat(mut stream: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    loop {
        let end = stream.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = std::str::from_utf8(&stream[..end]).unwrap();
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("BDAT"));
        let n: usize = words.next().unwrap().parse().unwrap();
        let last = words.next() == Some("LAST");
        payload.extend_from_slice(&stream[end + 2..end + 2 + n]);
        stream = &stream[end + 2 + n..];
        if last {
            assert!(stream.is_empty());
            return payload;
        }
    }
}

/// Streams `body` through a client with the given write sizes, writing at most `write_limit`
/// bytes per driver write; returns everything sent after the envelope commands.
fn stream_through_client(
    chunking: bool,
    body: &[u8],
    write_sizes: &[usize],
    write_limit: usize,
) -> Vec<u8> {
    let limits = Limits::default().with_send_window(32).with_chunk_size(16);
    let config = implicit().with_limits(limits);
    let ehlo = if chunking {
        "250-mail.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
    } else {
        "250-mail.example\r\n250 PIPELINING\r\n"
    };
    let (mut client, now) = ready_client(config, ehlo);
    let envelope = Envelope::new(None).with_recipient(Address::new("b@example").unwrap());
    client
        .send_mail(now, envelope, MailOptions::default())
        .unwrap();
    let mut wire = Vec::new();
    let write_some = |client: &mut Client, wire: &mut Vec<u8>| {
        if let Some(bytes) = client.poll_transmit() {
            let n = bytes.len().min(write_limit);
            wire.extend_from_slice(&bytes[..n]);
            client.advance_transmit(n);
        }
    };
    if !chunking {
        // Let the DATA command go out and answer the envelope.
        while client.poll_transmit().is_some() {
            write_some(&mut client, &mut wire);
        }
        client
            .handle_input(now, b"250 ok\r\n250 ok\r\n354 go\r\n")
            .unwrap();
        wire.clear();
    }
    let mut rest = body;
    let mut sizes = write_sizes.iter().cycle();
    let mut stalls = 0;
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).clamp(1, rest.len());
        let taken = client.write_body(now, &rest[..size]).unwrap();
        rest = &rest[taken..];
        if taken == 0 {
            // Blocked: the driver writes; a BodyWritable must eventually follow.
            write_some(&mut client, &mut wire);
            stalls += 1;
            assert!(stalls < 100_000, "no progress");
        }
    }
    client.finish_body(now).unwrap();
    while client.poll_transmit().is_some() {
        write_some(&mut client, &mut wire);
    }
    if chunking {
        let start = wire.windows(4).position(|w| w == b"BDAT").unwrap();
        wire.drain(..start);
    }
    wire
}

fn normalize(input: &[u8]) -> Vec<u8> {
    let mut encoder = smtp_submit::body::BodyEncoder::new(
        smtp_submit::body::Framing::Bdat,
        smtp_submit::LineEndingPolicy::Normalize,
    );
    let mut out = Vec::new();
    encoder.encode(input, &mut out).unwrap();
    encoder.finish(&mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Streaming through the client, with any write sizes and a driver that writes in small
    /// pieces, DATA (after un-stuffing) and BDAT (after removing the framing) deliver the same
    /// bytes: the normalised body.
    #[test]
    fn streamed_data_and_bdat_deliver_identical_bytes(
        body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'x')], 0..300),
        write_sizes in proptest::collection::vec(1usize..40, 1..5),
        write_limit in 1usize..50,
    ) {
        let expected = normalize(&body);
        let bdat = parse_bdat(&stream_through_client(true, &body, &write_sizes, write_limit));
        prop_assert_eq!(&bdat, &expected);
        let data = stream_through_client(false, &body, &write_sizes, write_limit);
        prop_assert!(data.ends_with(b".\r\n"));
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(&data);
        let end = framed.windows(5).position(|w| w == b"\r\n.\r\n").unwrap();
        prop_assert_eq!(end + 5, framed.len(), "early end of data");
        let mut decoded = Vec::new();
        for line in framed[2..end + 2].split_inclusive(|&b| b == b'\n') {
            decoded.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        prop_assert_eq!(decoded, expected);
    }
}

#[test]
fn noop_and_rset_report_their_replies() {
    let ehlo = "250-mail.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n";
    let (mut client, now) = ready_client(implicit(), ehlo);
    client.noop(now).unwrap();
    assert_eq!(drain(&mut client), b"NOOP\r\n");
    client.handle_input(now, b"250 2.0.0 Ok\r\n").unwrap();
    let Some(Event::NoopReply(reply)) = client.poll_event() else {
        panic!()
    };
    assert_eq!(
        (reply.code(), reply.enhanced().unwrap().to_string()),
        (250, "2.0.0".into())
    );

    // A failed transaction leaves an automatic RSET owed; an explicit one pays it.
    let envelope = Envelope::new(Some(Address::new("a@example.org").unwrap()))
        .with_recipient(Address::new("b@example.org").unwrap());
    client
        .send_mail_bytes(now, envelope.clone(), MailOptions::default(), b"x\r\n")
        .unwrap();
    assert_eq!(client.noop(now), Err(Misuse::Busy));
    assert_eq!(client.rset(now), Err(Misuse::Busy));
    drain(&mut client);
    client
        .handle_input(
            now,
            b"250 2.1.0 Ok\r\n550 5.1.1 No\r\n554 5.5.1 No valid recipients\r\n",
        )
        .unwrap();
    while let Some(event) = client.poll_event() {
        if let Event::MessageDone { outcome, .. } = event {
            assert!(matches!(outcome, MessageOutcome::Failed(_)));
        }
    }
    client.rset(now).unwrap();
    assert_eq!(drain(&mut client), b"RSET\r\n");
    client.handle_input(now, b"250 2.0.0 Ok\r\n").unwrap();
    assert!(matches!(client.poll_event(), Some(Event::RsetReply(r)) if r.code() == 250));
    client
        .send_mail_bytes(now, envelope, MailOptions::default(), b"x\r\n")
        .unwrap();
    let sent = String::from_utf8(drain(&mut client)).unwrap();
    assert!(sent.starts_with("MAIL FROM:"), "no second RSET: {sent}");

    // A refused NOOP is still just a reply; a silent server times out in phase Noop.
    let (mut client, now) = ready_client(implicit(), ehlo);
    client.noop(now).unwrap();
    drain(&mut client);
    client.handle_input(now, b"500 5.5.1 What?\r\n").unwrap();
    assert!(matches!(client.poll_event(), Some(Event::NoopReply(r)) if r.code() == 500));
    client.noop(now).unwrap();
    drain(&mut client);
    let deadline = client.poll_timeout().unwrap();
    assert_eq!(
        client.handle_timeout(deadline),
        Err(ProtocolError::Timeout { phase: Phase::Noop })
    );
}
