//! A hostile or broken server: any byte sequence, in any chunks, at any point of a session,
//! leads to events or a typed fatal error, never a panic; a failed client stays failed and
//! sends nothing more.
//!
//! With the `tokio` feature, the `adapter` module plays scripted hostile servers (STLS
//! injection and stripping, bad certificates, oversized and malformed replies, stalls, closes
//! mid-body, caller-side injection) against the real tokio adapter.

#[cfg(feature = "tokio")]
#[path = "hostile/adapter.rs"]
mod adapter;

use std::time::{Duration, Instant};

use mail_common::sasl::Credentials;
use pop3_proto::{
    AuthMethod, Client, Command, Config, Event, Limits, Login, Machine, Misuse, Security,
};
use proptest::prelude::*;

/// Protocol-shaped fragments, so that random input reaches deep states, plus raw bytes.
fn server_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"+OK".to_vec()),
        Just(b"-ERR".to_vec()),
        Just(b"+ ".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"[SYS/TEMP]".to_vec()),
        Just(b"[IN-USE".to_vec()),
        Just(b"1 ".to_vec()),
        Just(b"4294967296".to_vec()),
        Just(b"STLS".to_vec()),
        Just(b"PIPELINING".to_vec()),
        Just(b"SASL PLAIN".to_vec()),
        Just(b"<1.2@host>".to_vec()),
        Just(vec![0]),
        Just(vec![0xff, 0xfe]),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    proptest::collection::vec(fragment, 0..120).prop_map(|parts| parts.concat())
}

/// A request refused only because an earlier fatal error poisoned the client is fine.
fn accepted_unless_failed(client: &Client, refusal: Option<Misuse>) {
    match refusal {
        None => {}
        Some(Misuse::Fatal(error)) => assert_eq!(client.error(), Some(&*error)),
        Some(other) => panic!("refused: {other:?}"),
    }
}

/// Plays a cooperative caller: answers StartTls and Ready, queues every command once logged in.
fn react(client: &mut Client, now: Instant) {
    if let Some(bytes) = client.poll_transmit() {
        let n = bytes.len();
        client.advance_transmit(n);
    }
    while let Some(event) = client.poll_event() {
        match event {
            Event::StartTls => {
                let refusal = client.tls_established(now).err();
                accepted_unless_failed(client, refusal);
            }
            Event::Ready(_) => {
                let login = Login::using(AuthMethod::UserPass, Credentials::password("u", "p"));
                let refusal = client.login(now, login).err().map(|r| r.reason);
                accepted_unless_failed(client, refusal);
            }
            Event::LoggedIn { .. } => {
                for command in [
                    Command::Stat,
                    Command::List(None),
                    Command::Uidl(None),
                    Command::retr(1),
                    Command::top(1, 0),
                    Command::List(Some(1)),
                    Command::Uidl(Some(1)),
                    Command::Capa,
                    Command::Dele(1),
                    Command::Quit,
                ] {
                    let refusal = client.send(now, command).err().map(|r| r.reason);
                    accepted_unless_failed(client, refusal);
                }
            }
            _ => {}
        }
    }
}

fn hammer(security: Security, limits: Limits, input: &[u8], chunks: &[usize]) {
    let now = Instant::now();
    let config = Config::new(security)
        .with_limits(limits)
        .allow_cleartext_credentials_dangerously(true);
    let mut client = Client::new(config, now);
    let mut rest = input;
    for size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        rest = tail;
        let result = client.handle_input(now, piece);
        react(&mut client, now);
        if let Err(error) = result {
            assert_eq!(client.error(), Some(&error));
            assert_eq!(client.handle_input(now, b"+OK\r\n"), Err(error.clone()));
            assert_eq!(client.handle_eof(now), Err(error));
            assert_eq!(client.poll_transmit(), None);
            assert_eq!(client.poll_timeout(), None);
            return;
        }
    }
    let later = now + Duration::from_secs(3600);
    if client.handle_eof(now).is_ok() {
        react(&mut client, now);
    }
    let _ = client.handle_timeout(later);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn never_panics(
        input in server_bytes(),
        chunks in proptest::collection::vec(1_usize..64, 1..16),
        security in prop_oneof![Just(Security::ImplicitTls), Just(Security::StartTls), Just(Security::Plaintext)],
    ) {
        hammer(security, Limits::default(), &input, &chunks);
        let tight = Limits::default()
            .with_max_line(16)
            .with_max_capability_lines(2)
            .with_max_listing_entries(2)
            .with_max_uid_len(3)
            .with_max_message_size(8)
            .with_max_in_flight(2);
        hammer(security, tight, &input, &chunks);
    }

    #[test]
    fn a_valid_prefix_then_garbage(garbage in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut input = b"+OK hi <1@h>\r\n+OK\r\nUSER\r\nPIPELINING\r\n.\r\n+OK\r\n+OK\r\n".to_vec();
        input.extend_from_slice(&garbage);
        hammer(Security::ImplicitTls, Limits::default(), &input, &[7]);
    }
}

#[test]
fn an_endless_line_is_cut_off_at_the_limit() {
    let now = Instant::now();
    let mut client = Client::new(Config::default(), now);
    let chunk = [b'x'; 1000];
    let mut fed = 0;
    let error = loop {
        match client.handle_input(now, &chunk) {
            Ok(()) => fed += chunk.len(),
            Err(error) => break error,
        }
        assert!(fed < 100_000, "no limit enforced");
    };
    assert_eq!(
        error,
        pop3_proto::ProtocolError::LineTooLong { limit: 8192 }
    );
}

#[test]
fn an_endless_body_streams_in_constant_memory_until_the_size_limit() {
    let now = Instant::now();
    let limits = Limits::default().with_max_message_size(10 << 20);
    let mut client = Client::new(Config::default().with_limits(limits), now);
    client
        .handle_input(now, b"+OK\r\n+OK\r\nUSER\r\n.\r\n")
        .unwrap();
    react(&mut client, now);
    client.handle_input(now, b"+OK\r\n+OK\r\n").unwrap();
    while client.poll_event().is_some() {}
    client.send(now, Command::retr(1)).unwrap();
    client.handle_input(now, b"+OK\r\n").unwrap();
    let line = [b'a'; 4096];
    let mut delivered = 0_u64;
    let error = loop {
        let result = client.handle_input(now, &line);
        while let Some(event) = client.poll_event() {
            if let Event::MessageChunk { data, .. } = event {
                delivered += data.len() as u64;
            }
        }
        if let Err(error) = result {
            break error;
        }
    };
    assert_eq!(
        error,
        pop3_proto::ProtocolError::MessageTooLarge { limit: 10 << 20 }
    );
    assert_eq!(delivered, 10 << 20);
}
