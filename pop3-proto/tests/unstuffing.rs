//! Dot-unstuffing through the whole client: any body, stuffed by a reference encoder and fed
//! in any chunks, comes out byte for byte.

use std::time::Instant;

use mail_common::sasl::Credentials;
use pop3_proto::{AuthMethod, Client, Command, Config, Event, Login, Machine, Security};
use proptest::prelude::*;

/// Turns arbitrary bytes into a body of CRLF-terminated lines (what a server sends).
fn normalize(raw: &[u8]) -> Vec<u8> {
    if raw.is_empty() {
        return Vec::new();
    }
    let mut body = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        body.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// RFC 1939 section 3, server side: a line starting with "." gets another; then ".CRLF".
fn stuff(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// A logged-in, pipelining client that has sent `RETR 1` and `NOOP`.
fn retrieving() -> Client {
    let now = Instant::now();
    let mut client = Client::new(Config::new(Security::ImplicitTls), now);
    let feed = |client: &mut Client, bytes: &[u8]| {
        client.handle_input(now, bytes).unwrap();
        let n = client.poll_transmit().map_or(0, <[u8]>::len);
        client.advance_transmit(n);
    };
    feed(&mut client, b"+OK\r\n");
    feed(&mut client, b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n");
    let login = Login::using(AuthMethod::UserPass, Credentials::password("u", "p"));
    client.login(now, login).unwrap();
    feed(&mut client, b"+OK\r\n");
    feed(&mut client, b"+OK\r\n");
    client.send(now, Command::retr(1)).unwrap();
    client.send(now, Command::Noop).unwrap();
    assert_eq!(client.poll_transmit(), Some(&b"RETR 1\r\nNOOP\r\n"[..]));
    while client.poll_event().is_some() {}
    client
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'.'),
        3 => Just(b'\n'),
        2 => Just(b'\r'),
        3 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..600)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_body_in_any_chunks(raw in body_bytes(), chunks in proptest::collection::vec(1_usize..32, 1..32)) {
        let body = normalize(&raw);
        let mut wire = b"+OK message follows\r\n".to_vec();
        wire.extend(stuff(&body));
        wire.extend_from_slice(b"+OK after\r\n");

        let mut client = retrieving();
        let mut rest = &wire[..];
        for size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            client.handle_input(Instant::now(), piece).unwrap();
            rest = tail;
        }

        let mut got = Vec::new();
        let mut ended = None;
        let mut after = false;
        while let Some(event) = client.poll_event() {
            match event {
                Event::MessageStart { msg, .. } => prop_assert_eq!(msg, 1),
                Event::MessageChunk { data, .. } => {
                    prop_assert!(ended.is_none() && !data.is_empty());
                    got.extend_from_slice(&data);
                }
                Event::MessageEnd { octets, .. } => ended = Some(octets),
                Event::Done { command: Command::Noop, .. } => after = true,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(&got, &body);
        prop_assert_eq!(ended, Some(body.len() as u64));
        prop_assert!(after, "the reply after the body is read as a reply");
    }
}
