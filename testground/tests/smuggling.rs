//! Message bodies that try to end the data early or smuggle a second transaction, sent through
//! the real Postfix (submission, STARTTLS, AUTH) and fetched back from the real Dovecot over
//! POP3: each arrives whole (CRLF-normalized, behind Postfix's added headers), and each send is
//! exactly one message: nothing after a would-be terminator ever ran as a command.
//!
//! Sent twice: with `BDAT` (Postfix offers CHUNKING) and with `DATA` (dot-stuffing), half of
//! the bodies from memory, half streamed. User: `judy` only, reset at the start.

use std::io::Cursor;
use std::time::{Duration, Instant};

use mail_testground::{DOVECOT_POP3S, HOST, JUDY, POSTFIX_SUBMISSION, TLS_NAME};
use pop3_proto::tokio::{ConnectOptions as PopOptions, Session as PopSession};
use smtp_submit::tokio::{ConnectOptions, Session, SetupTimeouts, TrustRoots};
use smtp_submit::{
    Address, AuthMethod, ClientName, Config, Credentials, Envelope, MailOptions, Security,
};

/// One corpus entry: a name, and the message after the headers (or the whole message).
struct Case {
    name: &'static str,
    /// `true`: the message is exactly `body`, no header block (for a dot at byte 0).
    headerless: bool,
    body: Vec<u8>,
}

fn corpus() -> Vec<Case> {
    let smuggle = format!(
        "hello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<{judy}>\r\nDATA\r\nSubject: smuggled\r\n\r\n\
         smuggled body\r\n.\r\nQUIT\r\n",
        judy = JUDY.address
    );
    let smuggle_lf = format!(
        "hello\n.\nMAIL FROM:<x@y>\nRCPT TO:<{judy}>\nDATA\nsmuggled\n.\n",
        judy = JUDY.address
    );
    let smuggle_cr = format!(
        "hello\r.\rMAIL FROM:<x@y>\rRCPT TO:<{judy}>\rDATA\rsmuggled\r.\r",
        judy = JUDY.address
    );
    let long = format!("{}\r\n{}", "x".repeat(12_000), "y".repeat(20_000));
    let case = |name, body: &[u8]| Case {
        name,
        headerless: false,
        body: body.to_vec(),
    };
    vec![
        case("bare LF", b"line one\nline two\n"),
        case("bare CR", b"line one\rline two\r\n"),
        case("LF dot LF", b"before\n.\nafter\n"),
        case("CRLF dot LF", b"before\r\n.\nafter\r\n"),
        case("LF dot CRLF", b"before\n.\r\nafter\r\n"),
        Case {
            name: "dot at byte 0 of the message",
            headerless: true,
            body: b".starts with a dot\r\n..two dots\r\nthird\r\n".to_vec(),
        },
        case("dot at byte 0 of the body", b".leading dot\r\n..two\r\n"),
        case("lone dot line", b"a\r\n.\r\nb\r\n"),
        case("ends with a lone dot", b"last line\r\n."),
        case("NUL bytes", b"nul\0here\r\n\0\r\nend\r\n"),
        case("no final newline", b"no newline at the end"),
        case("very long lines", long.as_bytes()),
        case("smuggling CRLF", smuggle.as_bytes()),
        case("smuggling bare LF", smuggle_lf.as_bytes()),
        case("smuggling bare CR", smuggle_cr.as_bytes()),
    ]
}

/// What the client puts on the wire (and Postfix stores): every bare CR or LF becomes CRLF and
/// a final CRLF is added when missing.
fn normalized(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The message as sent: a complete header block (so Postfix adds only trace headers in front)
/// carrying the token, then the body.
fn message(case: &Case, token: &str) -> Vec<u8> {
    if case.headerless {
        let mut body = case.body.clone();
        body.extend_from_slice(format!("token {token}\r\n").as_bytes());
        return body;
    }
    let mut message = format!(
        "From: <{judy}>\r\nTo: <{judy}>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{token}@client.testground.example>\r\nSubject: {token}\r\n\r\n",
        judy = JUDY.address
    )
    .into_bytes();
    message.extend_from_slice(&case.body);
    message
}

fn smtp_config(chunking: bool) -> Config {
    Config::new(
        ClientName::new("client.testground.example").unwrap(),
        Security::StartTls,
    )
    .with_chunking(chunking)
}

async fn submit(sends: &[(String, Vec<u8>)], chunking: bool, streamed_every_other: bool) {
    let options = ConnectOptions::new(HOST)
        .with_port(POSTFIX_SUBMISSION.port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME)
        .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)));
    let mut session = Session::connect(&options, smtp_config(chunking))
        .await
        .expect("connect to Postfix submission");
    assert!(session.capabilities().chunking());
    session
        .authenticate(
            &Credentials::password(JUDY.name, JUDY.password),
            AuthMethod::Auto,
        )
        .await
        .expect("AUTH as judy");
    let judy = Address::new(JUDY.address).unwrap();
    for (index, (token, message)) in sends.iter().enumerate() {
        let envelope = Envelope::new(Some(judy.clone())).with_recipient(judy.clone());
        let report = if streamed_every_other && index % 2 == 1 {
            session
                .send(
                    envelope,
                    MailOptions::default(),
                    Cursor::new(message.clone()),
                )
                .await
        } else {
            session
                .send_bytes(envelope, MailOptions::default(), message)
                .await
        }
        .unwrap_or_else(|e| panic!("{token}: {e}"));
        assert!(report.is_sent(), "{token}: {report:?}");
        assert_eq!(report.accepted().count(), 1, "{token}");
    }
    session.quit().await.unwrap();
}

async fn pop3() -> PopSession {
    let options = PopOptions::new(HOST)
        .with_port(DOVECOT_POP3S.port)
        .with_trust_roots(TrustRoots::CaFile(mail_testground::ca_file()))
        .with_tls_name(TLS_NAME);
    let mut session = PopSession::connect(&options, pop3_proto::Config::default())
        .await
        .expect("connect to Dovecot POP3S");
    session
        .login(Credentials::password(JUDY.name, JUDY.password))
        .await
        .expect("login as judy");
    session
}

/// Waits until Postfix has delivered `count` messages to judy, then fetches them all.
async fn fetch_all(count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut session = pop3().await;
        let stat = session.stat().await.unwrap();
        if stat.count as usize >= count || Instant::now() > deadline {
            let mut messages = Vec::new();
            for msg in 1..=stat.count {
                messages.push(session.retr(msg).await.unwrap());
            }
            session.quit().await.unwrap();
            return messages;
        }
        session.quit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Everything before `tail` is a block of header lines (Postfix's trace headers, and for a
/// headerless message the headers it adds), ending at a line boundary.
fn only_headers_before(message: &[u8], tail_len: usize) -> bool {
    let prefix = &message[..message.len() - tail_len];
    let text = String::from_utf8_lossy(prefix);
    prefix.is_empty()
        || (prefix.ends_with(b"\r\n")
            && text.split("\r\n").filter(|l| !l.is_empty()).all(|line| {
                line.starts_with([' ', '\t'])
                    || line
                        .split_once(':')
                        .is_some_and(|(name, _)| !name.is_empty() && !name.contains(' '))
            }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_arrive_whole_and_once_through_postfix_and_dovecot() {
    mail_testground::require(&[POSTFIX_SUBMISSION, DOVECOT_POP3S]);
    mail_testground::reset_mailboxes(&[JUDY]);
    let corpus = corpus();
    let run = std::process::id();
    let mut sends: Vec<(String, &Case, Vec<u8>)> = Vec::new();
    for (mode, chunking) in [("bdat", true), ("data", false)] {
        let batch: Vec<(String, Vec<u8>)> = corpus
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let token = format!("smuggle-{run}-{mode}-{i:02}");
                let message = message(case, &token);
                (token, message)
            })
            .collect();
        submit(&batch, chunking, true).await;
        for ((token, message), case) in batch.into_iter().zip(&corpus) {
            sends.push((token, case, message));
        }
    }

    let fetched = fetch_all(sends.len()).await;
    // Give a smuggled extra message (if any) the chance to be delivered too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fetched = if fetched.len() == sends.len() {
        fetch_all(sends.len()).await
    } else {
        fetched
    };
    assert_eq!(
        fetched.len(),
        sends.len(),
        "exactly one message per send (a smuggled transaction would add one)"
    );
    // Every message delivered is one of ours (a smuggled one would carry no token).
    for message in &fetched {
        let tokens = sends
            .iter()
            .filter(|(token, ..)| find(message, token.as_bytes()))
            .count();
        assert_eq!(
            tokens,
            1,
            "a message that is not exactly one send arrived: {}",
            String::from_utf8_lossy(message)
        );
    }
    for (token, case, sent) in &sends {
        let holders: Vec<&Vec<u8>> = fetched
            .iter()
            .filter(|m| find(m, token.as_bytes()))
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{token} ({}): in {} messages",
            case.name,
            holders.len()
        );
        let got = holders[0];
        let expected = normalized(sent);
        assert!(
            got.ends_with(&expected),
            "{token} ({}) did not arrive whole:\nsent     {:?}\nfetched  {:?}",
            case.name,
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(got)
        );
        assert!(
            only_headers_before(got, expected.len()),
            "{token} ({}): unexpected bytes before the message: {:?}",
            case.name,
            String::from_utf8_lossy(&got[..got.len() - expected.len()])
        );
    }
    eprintln!(
        "smuggling corpus: {} bodies x 2 transfers (BDAT, DATA) = {} messages, each arrived whole and once",
        corpus.len(),
        sends.len()
    );
}
