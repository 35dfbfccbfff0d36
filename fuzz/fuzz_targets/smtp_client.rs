//! A hostile SMTP server: arbitrary bytes, in arbitrary pieces, against a client that
//! authenticates and sends a message with several recipients. The client must never panic, and
//! what it sends must never hold an early end-of-data line.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mail_common::sasl::Credentials;
use smtp_submit::{
    Address, AuthMethod, ClientName, Client, Config, Envelope, Event, Limits, MailOptions, Machine,
    Security,
};

const BODY: &[u8] = b"Subject: fuzz\r\n\r\n.leading dot\r\n.\r\nbare\nlf\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::default().with_max_reply_line(512).with_max_reply_lines(32);
    let security = if seed & 1 == 0 { Security::Plaintext } else { Security::StartTls };
    let config = Config::new(ClientName::new("client.fuzz.example").unwrap(), security)
        .with_limits(limits)
        .with_pipelining(seed & 2 != 0)
        .with_chunking(seed & 4 != 0)
        .allow_cleartext_credentials_dangerously(true);
    let mut now = Instant::now();
    let mut client = Client::new(config, now);
    let credentials = Credentials::password("fuzz", "secret");
    let step = usize::from(seed >> 3) + 1;
    let mut sent = Vec::new();
    let mut authenticated = false;
    let mut mailed = 0;
    for chunk in input.chunks(step) {
        now += Duration::from_millis(u64::from(chunk[0] % 4) * 500);
        let result = if chunk[0] == 0xff {
            client.handle_timeout(now)
        } else {
            client.handle_input(now, chunk)
        };
        if result.is_err() {
            break;
        }
        loop {
            while let Some(bytes) = client.poll_transmit() {
                sent.extend_from_slice(bytes);
                let n = bytes.len();
                client.advance_transmit(n);
            }
            let Some(event) = client.poll_event() else {
                break;
            };
            match event {
                Event::StartTls => {
                    let _ = client.tls_established(now);
                }
                Event::Ready(_) if !authenticated => {
                    authenticated = true;
                    let _ = client.authenticate(now, &credentials, AuthMethod::Auto, b"0123456789abcdef01");
                }
                Event::Closed => break,
                _ => {}
            }
            if mailed < 2 {
                let envelope = Envelope::new(Some(Address::new("from@fuzz.example").unwrap()))
                    .with_recipient(Address::new("a@fuzz.example").unwrap())
                    .with_recipient(Address::new("b@fuzz.example").unwrap());
                if client
                    .send_mail_bytes(now, envelope, MailOptions::default(), BODY)
                    .is_ok()
                {
                    mailed += 1;
                }
            }
        }
    }
    let _ = client.handle_eof(now);
    while client.poll_event().is_some() {}
    // The body holds a lone "." line: with DATA it must only ever appear stuffed. (BDAT sends
    // the body as it is, so the check applies when chunking is off.)
    let needle = b"dot\r\n.\r\n";
    if seed & 4 == 0 {
        assert!(
            !sent.windows(needle.len()).any(|w| w == needle),
            "unstuffed terminator on the wire"
        );
    }
});
