//! Issue 16, item 4: AUTH with SCRAM through the sans-IO core without a nonce from the caller
//! takes one from `Config::nonce_source` instead of failing.

use std::time::Instant;

use mail_common::sasl::{NonceSource, SaslError};
use smtp_submit::{
    AuthMethod, Client, ClientName, Config, Credentials, Event, Machine, Mechanism, Misuse,
    Security,
};

const EHLO: &[u8] = b"250-mail.example\r\n250 AUTH PLAIN SCRAM-SHA-1 SCRAM-SHA-256\r\n";

fn drain(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        out.extend_from_slice(bytes);
        let n = bytes.len();
        client.advance_transmit(n);
    }
    out
}

fn ready_client(source: NonceSource) -> (Client, Instant) {
    let config = Config::new(
        ClientName::new("client.example").unwrap(),
        Security::ImplicitTls,
    )
    .with_nonce_source(source);
    let now = Instant::now();
    let mut client = Client::new(config, now);
    client
        .handle_input(now, b"220 mail.example ESMTP\r\n")
        .unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Greeting(_))));
    drain(&mut client);
    client.handle_input(now, EHLO).unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Ready(_))));
    (client, now)
}

/// Yields the bytes 0, 1, 2, ...: reproducible client-first messages.
const COUNTING: NonceSource = NonceSource::new(|buf| {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    Ok(())
});

#[test]
fn scram_without_a_nonce_takes_one_from_the_configured_source() {
    let credentials = Credentials::password("alice", "secret");
    let (mut client, now) = ready_client(COUNTING);
    let mechanism = client
        .authenticate(now, &credentials, AuthMethod::Auto, b"")
        .unwrap();
    assert_eq!(mechanism, Mechanism::ScramSha256);
    // client-first "n,,n=alice,r=" + base64 of the bytes 0, 1, ..., 23
    assert_eq!(
        drain(&mut client),
        b"AUTH SCRAM-SHA-256 biwsbj1hbGljZSxyPUFBRUNBd1FGQmdjSUNRb0xEQTBPRHhBUkVoTVVGUllY\r\n"
    );

    // The default source asks the operating system: two logins, two different nonces.
    let mut lines = Vec::new();
    for _ in 0..2 {
        let (mut client, now) = ready_client(NonceSource::default());
        client
            .authenticate(now, &credentials, AuthMethod::Auto, b"")
            .unwrap();
        lines.push(drain(&mut client));
    }
    assert!(lines[0].starts_with(b"AUTH SCRAM-SHA-256 "));
    assert_ne!(lines[0], lines[1]);
}

#[test]
fn without_a_source_scram_is_refused_before_anything_is_sent() {
    let credentials = Credentials::password("alice", "secret");
    let (mut client, now) = ready_client(NonceSource::none());
    let error = client
        .authenticate(now, &credentials, AuthMethod::Auto, b"")
        .unwrap_err();
    assert!(
        matches!(error, Misuse::Sasl(SaslError::NonceUnavailable(_))),
        "{error:?}"
    );
    assert!(drain(&mut client).is_empty());
    // PLAIN needs no nonce, so the source is not asked.
    client
        .authenticate(
            now,
            &credentials,
            AuthMethod::Mechanism(Mechanism::Plain),
            b"",
        )
        .unwrap();
    assert_eq!(drain(&mut client), b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
}
