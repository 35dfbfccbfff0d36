//! Reply parsing and hostile input: any chunking gives the same replies (or the same error), and
//! arbitrary bytes from the server never panic the client.

use std::time::Instant;

use proptest::prelude::*;
use smtp_submit::reply::{ReplyError, ReplyReader};
use smtp_submit::{Client, ClientName, Config, Event, Machine, ProtocolError, Security};

/// Feeds `data` in pieces cut at `cuts`; collects replies (rendered) until the first error.
fn read_replies(data: &[u8], cuts: &[usize]) -> (Vec<String>, Option<ReplyError>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut reader = ReplyReader::new(64);
    let mut replies = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        reader.extend(&data[start..cut]);
        start = cut;
        loop {
            match reader.next_reply(5) {
                Ok(Some(reply)) => replies.push(format!("{reply:?}")),
                Ok(None) => break,
                Err(error) => return (replies, Some(error)),
            }
        }
    }
    (replies, None)
}

/// A well-formed reply: one code, 1..6 lines, optional enhanced code.
fn reply_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        200u16..600,
        proptest::collection::vec("[ -~]{0,20}", 1..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(code, lines, enhanced, lf_only)| {
            let mut out = Vec::new();
            let count = lines.len();
            for (i, text) in lines.into_iter().enumerate() {
                let separator = if i + 1 == count { ' ' } else { '-' };
                let esc = if enhanced {
                    format!("{}.1.{} ", code / 100, i)
                } else {
                    String::new()
                };
                out.extend_from_slice(format!("{code}{separator}{esc}{text}").as_bytes());
                out.extend_from_slice(if lf_only { b"\n" } else { b"\r\n" });
            }
            out
        })
}

/// Bytes that look a bit like SMTP: digits, separators, line ends, letters, and anything.
fn smtpish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            3 => prop_oneof![Just(b'2'), Just(b'3'), Just(b'4'), Just(b'5'), Just(b'0')],
            2 => prop_oneof![Just(b'-'), Just(b' '), Just(b'.')],
            2 => prop_oneof![Just(b'\r'), Just(b'\n')],
            1 => any::<u8>(),
        ],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn valid_replies_split_anywhere(
        replies in proptest::collection::vec(reply_bytes(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let data: Vec<u8> = replies.concat();
        let whole = read_replies(&data, &[]);
        prop_assert_eq!(whole.0.len(), replies.len());
        prop_assert_eq!(whole.1, None);
        prop_assert_eq!(read_replies(&data, &cuts), whole);
    }

    #[test]
    fn garbage_splits_the_same_way(
        data in smtpish(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        prop_assert_eq!(read_replies(&data, &cuts), read_replies(&data, &[]));
    }

    /// The whole client under hostile bytes: no panic, and the same events and error whatever
    /// the chunking. Replies that parse drive the client through its
    /// handshake (EHLO, HELO fallback, STARTTLS, QUIT), so this reaches far.
    #[test]
    fn client_survives_garbage_identically(
        data in smtpish(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
        starttls in any::<bool>(),
    ) {
        let run = |cuts: &[usize]| {
            let security = if starttls { Security::StartTls } else { Security::ImplicitTls };
            let config = Config::new(ClientName::new("c.example").unwrap(), security);
            let now = Instant::now();
            let mut client = Client::new(config, now);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut sent = Vec::new();
            let mut events = Vec::new();
            let mut error = None;
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                if let Err(e) = client.handle_input(now, &data[start..cut]) {
                    error = Some(e);
                    break;
                }
                start = cut;
                while let Some(bytes) = client.poll_transmit() {
                    sent.extend_from_slice(bytes);
                    let n = bytes.len();
                    client.advance_transmit(n);
                }
                while let Some(event) = client.poll_event() {
                    events.push(format!("{event:?}"));
                }
            }
            while let Some(event) = client.poll_event() {
                events.push(format!("{event:?}"));
            }
            (sent, events, error)
        };
        let (split_sent, split_events, split_error) = run(&cuts);
        let (whole_sent, whole_events, whole_error) = run(&[]);
        prop_assert_eq!(split_events, whole_events);
        prop_assert_eq!(split_error, whole_error);
        // Draining between reads may let out bytes queued before a later fatal error (after
        // the error nothing more leaves), so the whole-read bytes are a prefix.
        prop_assert!(split_sent.starts_with(&whole_sent));
    }
}

#[test]
fn client_rejects_every_hostile_shape_with_a_typed_error() {
    let cases: [(&[u8], ProtocolError); 6] = [
        (
            b"\x00\x00\x00\r\n",
            ProtocolError::MalformedReply(smtp_submit::reply::MalformedReply::InvalidCode),
        ),
        (
            b"220 ok\r\n250-a\r\n199 b\r\n",
            ProtocolError::MalformedReply(smtp_submit::reply::MalformedReply::CodeOutOfRange {
                code: 199,
            }),
        ),
        (&[b'x'; 5000], ProtocolError::LineTooLong { limit: 2048 }),
        (
            b"220 ok\r\n250-a\r\n\xff\xfe\r\n",
            ProtocolError::MalformedReply(smtp_submit::reply::MalformedReply::InvalidCode),
        ),
        (
            b"220 ok\r\n250 a\r\n250 extra\r\n",
            ProtocolError::UnsolicitedReply { code: 250 },
        ),
        (
            b"220 ok\r\n354 go\r\n",
            ProtocolError::UnexpectedReply {
                code: 354,
                phase: smtp_submit::Phase::Ehlo,
            },
        ),
    ];
    for (input, expected) in cases {
        let now = Instant::now();
        let config = Config::new(ClientName::new("c.example").unwrap(), Security::ImplicitTls);
        let mut client = Client::new(config, now);
        assert_eq!(
            client.handle_input(now, input),
            Err(expected.clone()),
            "{input:?}"
        );
        assert_eq!(client.error(), Some(&expected));
        assert_eq!(client.poll_transmit(), None);
        assert_eq!(client.poll_timeout(), None);
        // Events produced before the error stay readable (here: at most Greeting and Ready).
        while let Some(event) = client.poll_event() {
            assert!(
                matches!(event, Event::Greeting(_) | Event::Ready(_)),
                "{event:?}"
            );
        }
    }
}

#[test]
fn many_reply_lines_are_bounded() {
    let now = Instant::now();
    let config = Config::new(ClientName::new("c.example").unwrap(), Security::ImplicitTls);
    let mut client = Client::new(config, now);
    let mut flood = b"220 ok\r\n".to_vec();
    for _ in 0..10_000 {
        flood.extend_from_slice(b"250-X\r\n");
    }
    assert_eq!(
        client.handle_input(now, &flood),
        Err(ProtocolError::TooManyEhloLines { limit: 64 })
    );
}
