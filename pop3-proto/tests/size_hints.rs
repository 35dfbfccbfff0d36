//! The sizes a `LIST` gave become the size hints of later `RETR`s sent without one, so the
//! pipelining window is budgeted by the real message sizes.

use std::time::Instant;

use pop3_proto::{Client, Command, Config, Credentials, Event, Limits, Login, Machine, Security};

fn sent(client: &mut Client) -> String {
    let bytes = client.poll_transmit().unwrap_or_default().to_vec();
    client.advance_transmit(bytes.len());
    String::from_utf8(bytes).unwrap()
}

/// A logged-in client whose server announces PIPELINING, with a 4 MiB window.
fn logged_in(now: Instant) -> Client {
    let limits = Limits::default().with_max_bytes_in_flight(4 << 20);
    let config = Config::new(Security::ImplicitTls).with_limits(limits);
    let mut client = Client::new(config, now);
    client.handle_input(now, b"+OK ready\r\n").unwrap();
    assert_eq!(sent(&mut client), "CAPA\r\n");
    client
        .handle_input(now, b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n")
        .unwrap();
    client
        .login(now, Login::auto(Credentials::password("alice", "secret")))
        .unwrap();
    assert_eq!(sent(&mut client), "USER alice\r\n");
    client.handle_input(now, b"+OK\r\n").unwrap();
    assert_eq!(sent(&mut client), "PASS secret\r\n");
    client.handle_input(now, b"+OK\r\n").unwrap();
    while client.poll_event().is_some() {}
    client
}

#[test]
fn retr_after_list_is_budgeted_by_the_listed_size() {
    let now = Instant::now();
    let mut client = logged_in(now);
    let list = client.send(now, Command::List(None)).unwrap();
    assert_eq!(sent(&mut client), "LIST\r\n");
    client
        .handle_input(now, b"+OK\r\n1 3000000\r\n2 3000000\r\n.\r\n")
        .unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Listing { id, .. }) if id == list));
    client.send(now, Command::retr(1)).unwrap();
    client.send(now, Command::retr(2)).unwrap();
    // Two 3 MB messages do not fit a 4 MiB window together: the second waits.
    assert_eq!(sent(&mut client), "RETR 1\r\n");
}

#[test]
fn retr_without_list_uses_the_estimate() {
    let now = Instant::now();
    let mut client = logged_in(now);
    client.send(now, Command::retr(1)).unwrap();
    client.send(now, Command::retr(2)).unwrap();
    assert_eq!(sent(&mut client), "RETR 1\r\nRETR 2\r\n");
}
