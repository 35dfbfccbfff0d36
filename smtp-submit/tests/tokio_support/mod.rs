//! Shared pieces of the tokio adapter's integration tests against the real test ground.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_testground::{self as tg, Endpoint, GRACE, User};
use smtp_submit::tokio::{ConnectOptions, Session, SetupTimeouts, TrustRoots};
use smtp_submit::{Address, AuthMethod, ClientName, Config, Credentials, Security, Timeouts};

/// Deadlines short enough that a hung test fails instead of waiting for RFC 5321's minutes.
pub fn test_timeouts() -> Timeouts {
    let t = Duration::from_secs(30);
    Timeouts::default()
        .with_greeting(t)
        .with_command(t)
        .with_mail(t)
        .with_rcpt(t)
        .with_data_init(t)
        .with_data_block(t)
        .with_data_termination(t)
}

pub fn config() -> Config {
    Config::new(
        ClientName::new("client.testground.example").unwrap(),
        Security::StartTls,
    )
    .with_timeouts(test_timeouts())
}

pub fn options(endpoint: Endpoint) -> ConnectOptions {
    tg::require(&[endpoint]);
    ConnectOptions::new(tg::HOST)
        .with_port(endpoint.port)
        .with_trust_roots(TrustRoots::CaFile(tg::ca_file()))
        .with_tls_name(tg::TLS_NAME)
        .with_timeouts(SetupTimeouts::uniform(Duration::from_secs(10)))
}

pub async fn connect(endpoint: Endpoint, security: Security, config: Config) -> Session {
    Session::connect(&options(endpoint), config.with_security(security))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", endpoint.name))
}

pub fn grace_credentials() -> Credentials {
    Credentials::password(GRACE.name, GRACE.password)
}

pub async fn connect_as_grace(endpoint: Endpoint, security: Security, config: Config) -> Session {
    let mut session = connect(endpoint, security, config).await;
    session
        .authenticate(&grace_credentials(), AuthMethod::Auto)
        .await
        .unwrap_or_else(|e| panic!("AUTH on {}: {e}", endpoint.name));
    session
}

pub fn grace() -> Address {
    Address::new(GRACE.address).unwrap()
}

pub fn sink(local: &str) -> Address {
    Address::new(format!("{local}@{}", tg::SINK_DOMAIN)).unwrap()
}

/// A token no other message carries: it finds the delivered copy.
pub fn new_token(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}.{}.{nanos}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Headers (complete, so the server adds none inside our part) followed by `body`.
/// The Message-ID line comes first: it marks where our message starts in the delivered file.
pub fn message(token: &str, to: &str, subject: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "Message-ID: <{token}@client.testground.example>\r\n\
         From: Grace <{from}>\r\n\
         To: <{to}>\r\n\
         Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\
         Subject: {subject} {token}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
        from = GRACE.address,
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A body that would end the data early or inject commands if the encoder were wrong:
/// dot lines, a lone dot, a leading dot, bare LF and bare CR line endings.
pub fn tricky_body() -> Vec<u8> {
    b".leading dot on the first body line\r\n\
      .\r\n\
      ..two dots\r\n\
      line with bare LF\n\
      .\n\
      after bare LF dot\r\n\
      bare CR here\r.\r\n\
      MAIL FROM:<evil@example.org>\r\n\
      \r\n\
      . space after dot\r\n\
      last line without newline"
        .to_vec()
}

/// What a correct server stores for `sent`: every line ending (CRLF, bare LF, bare CR) as LF,
/// and a final newline.
pub fn normalized(sent: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.len());
    let mut i = 0;
    while i < sent.len() {
        match sent[i] {
            b'\r' if sent.get(i + 1) == Some(&b'\n') => {
                out.push(b'\n');
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.push(b'\n'),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// Where the test ground's aiosmtpd stores every message it accepts (catch-all).
pub fn aiosmtpd_maildir() -> PathBuf {
    tg::dir().join("aiosmtpd/Maildir")
}

pub fn user_maildir(user: &User) -> PathBuf {
    tg::maildir(user)
}

/// Polls `maildir/new` (and `cur`) for the message holding `token`, up to `limit`.
pub fn find_delivered(maildir: &Path, token: &str, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let needle = format!("Message-ID: <{token}@");
    loop {
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                if let Some(pos) = find(&bytes, needle.as_bytes()) {
                    return bytes[pos..].to_vec();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no message with {needle:?} in {} after {limit:?}",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks that the copy delivered into `maildir` is `sent`, byte for byte after line-ending
/// normalisation.
pub fn assert_delivered(maildir: &Path, token: &str, sent: &[u8]) {
    let delivered = find_delivered(maildir, token, Duration::from_secs(10));
    let delivered = normalized(&delivered);
    let expected = normalized(sent);
    if delivered != expected {
        let at = delivered
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| delivered.len().min(expected.len()));
        let show = |b: &[u8]| {
            String::from_utf8_lossy(&b[at.saturating_sub(80)..(at + 80).min(b.len())]).into_owned()
        };
        panic!(
            "delivered copy differs at byte {at} (lengths {} vs {}):\n--- delivered\n{}\n--- expected\n{}",
            delivered.len(),
            expected.len(),
            show(&delivered),
            show(&expected)
        );
    }
}

/// A deterministic body of about `size` bytes with dot lines and an 8-bit-free mix of lengths.
pub fn generated_body(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut i = 0_u64;
    while out.len() < size {
        let line = match i % 97 {
            0 => ".".to_owned(),
            1 => format!(".line {i} starts with a dot"),
            2 => String::new(),
            n => format!("line {i:08} {}", "abcdefghij".repeat((n % 9) as usize)),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        i += 1;
    }
    out
}

/// A source that writes `bytes` through a small in-memory pipe from another task, in uneven
/// pieces: the session must read while it writes, and can never hold the whole message.
pub fn trickle(bytes: Vec<u8>) -> tokio::io::DuplexStream {
    use tokio::io::AsyncWriteExt;
    let (mut writer, reader) = tokio::io::duplex(16 * 1024);
    tokio::spawn(async move {
        let mut at = 0;
        let mut step = 1000;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            writer.write_all(&bytes[at..end]).await.unwrap();
            at = end;
            step = step * 7 % 9001 + 1;
        }
        writer.shutdown().await.unwrap();
    });
    reader
}
