//! A hostile POP3 server: arbitrary bytes, in arbitrary pieces, against a client that logs in
//! and issues every command. The client must never panic, never hold more than its limits, and
//! keep its message-size accounting consistent.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mail_common::sasl::Credentials;
use pop3_proto::{Client, Command, Config, Event, Limits, Login, Machine, Security};

fn drain_transmit(client: &mut Client) {
    while let Some(bytes) = client.poll_transmit() {
        let n = bytes.len();
        client.advance_transmit(n);
    }
}

fn command(selector: u8) -> Command {
    match selector % 10 {
        0 => Command::Stat,
        1 => Command::List(None),
        2 => Command::List(Some(1)),
        3 => Command::Uidl(None),
        4 => Command::Uidl(Some(2)),
        5 => Command::retr(1),
        6 => Command::top(1, 3),
        7 => Command::Dele(1),
        8 => Command::Noop,
        _ => Command::Quit,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::default()
        .with_max_line(512)
        .with_max_listing_entries(64)
        .with_max_message_size(64 * 1024);
    let security = if seed & 1 == 0 { Security::Plaintext } else { Security::StartTls };
    let config = Config::new(security)
        .with_limits(limits)
        .with_pipelining(seed & 2 != 0)
        .allow_cleartext_credentials_dangerously(true);
    let start = Instant::now();
    let mut now = start;
    let mut client = Client::new(config, now);
    let step = usize::from(seed >> 3) + 1;
    let mut selector = seed;
    let mut message_octets = 0u64;
    for chunk in input.chunks(step) {
        now += Duration::from_millis(u64::from(chunk[0] % 4) * 500);
        if chunk[0] == 0xff {
            if client.handle_timeout(now).is_err() {
                return;
            }
        } else if client.handle_input(now, chunk).is_err() {
            return;
        }
        drain_transmit(&mut client);
        while let Some(event) = client.poll_event() {
            match event {
                Event::StartTls => {
                    let _ = client.tls_established(now);
                }
                Event::Ready(_) | Event::LoginFailed { .. } => {
                    let method = Login::auto(Credentials::password("fuzz", "secret"))
                        .with_nonce(b"0123456789abcdef01".to_vec());
                    let _ = client.login(now, method);
                }
                Event::MessageChunk { data, .. } => {
                    message_octets += data.len() as u64;
                    assert!(message_octets <= 64 * 1024, "message size limit not enforced");
                }
                Event::MessageEnd { octets, .. } => {
                    assert_eq!(octets, message_octets, "MessageEnd octets disagree with chunks");
                    message_octets = 0;
                }
                Event::Closed => return,
                _ => {}
            }
            selector = selector.wrapping_mul(31).wrapping_add(7);
            let _ = client.send(now, command(selector));
            drain_transmit(&mut client);
        }
    }
    let _ = client.handle_eof(now);
    while client.poll_event().is_some() {}
});
