//! `mailctl` against scripted hostile servers: each attack ends with the documented exit
//! status and one line on stderr, no credential leaves in clear, and a fetch cut mid-message
//! leaves no partial file and deletes nothing.

mod common;

use common::{mailctl_async, scratch, text};
use std::path::Path;
use std::process::Output;

use mail_testground::hostile::{HostileServer, Pki, Step, Transcript};

fn fetch_args(pki: &Pki, port: u16, tls: &str, maildir: &Path) -> Vec<String> {
    [
        "fetch",
        "--host",
        "127.0.0.1",
        "--tls-name",
        "localhost",
        "--port",
        &port.to_string(),
        "--tls",
        tls,
        "--user",
        "victim",
        "--password-env",
        "HOSTILE_PASSWORD",
        "--timeout",
        "3",
        "--delete",
        "--ca-file",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([
        pki.ca_file().display().to_string(),
        "--maildir".into(),
        maildir.display().to_string(),
    ])
    .collect()
}

/// The exit status, the one stderr line, and that the password never left in clear.
fn assert_failed(output: &Output, code: i32, words: &str, transcript: &Transcript) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(words), "{words:?} not in {stderr:?}");
    for secret in ["s3cret-password", "PASS ", "AUTH "] {
        assert!(
            !transcript.plaintext_contains(secret.as_bytes()),
            "{secret} sent in clear: {transcript:?}"
        );
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

const CAPA_STLS: &str = "+OK\r\nUSER\r\nUIDL\r\nSTLS\r\n.\r\n";

#[tokio::test]
async fn stls_response_injection_is_a_protocol_error_before_any_credential() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::send("+OK hostile\r\n"),
            Step::expect("CAPA"),
            Step::send(CAPA_STLS),
            Step::expect("STLS"),
            Step::send("+OK begin TLS\r\n+OK forged reply\r\n"),
            Step::ExpectAny,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let dir = scratch("inject");
    let output = mailctl_async(fetch_args(&pki, server.port(), "starttls", &dir)).await;
    let transcript = server.finish().await;
    assert_failed(&output, 5, "protocol error", &transcript);
}

#[tokio::test]
async fn stls_stripped_or_refused_is_a_tls_error() {
    for (capa, stls_reply) in [
        ("+OK\r\nUSER\r\nUIDL\r\n.\r\n", None),
        (CAPA_STLS, Some("-ERR [SYS/PERM] TLS is broken today\r\n")),
        (CAPA_STLS, Some("-ERR not now\r\n")),
    ] {
        let pki = Pki::generate();
        let mut script = vec![
            Step::send("+OK hostile\r\n"),
            Step::expect("CAPA"),
            Step::send(capa),
        ];
        if let Some(reply) = stls_reply {
            script.extend([Step::expect("STLS"), Step::send(reply)]);
        }
        script.push(Step::ExpectAny);
        let server = HostileServer::start(script, pki.leaf_for("localhost")).await;
        let output = mailctl_async(fetch_args(
            &pki,
            server.port(),
            "starttls",
            &scratch("strip"),
        ))
        .await;
        let transcript = server.finish().await;
        assert_failed(&output, 3, "TLS error", &transcript);
        assert!(!transcript.plaintext_contains(b"USER"), "{transcript:?}");
    }
}

#[tokio::test]
async fn bad_certificates_are_tls_errors() {
    for kind in ["expired", "wrong-name", "unknown-ca"] {
        let pki = Pki::generate();
        let cert = match kind {
            "expired" => pki.expired_leaf_for("localhost"),
            "wrong-name" => pki.leaf_for("mail.example.net"),
            _ => Pki::generate().leaf_for("localhost"),
        };
        let server =
            HostileServer::start(vec![Step::StartTls, Step::send("+OK hostile\r\n")], cert).await;
        let output = mailctl_async(fetch_args(
            &pki,
            server.port(),
            "implicit",
            &scratch("cert"),
        ))
        .await;
        let transcript = server.finish().await;
        assert_failed(&output, 3, "TLS error", &transcript);
    }
}

#[tokio::test]
async fn a_stalled_server_is_a_timeout() {
    for script in [
        vec![Step::StartTls, Step::Stall],
        vec![
            Step::StartTls,
            Step::send("+OK hostile\r\n"),
            Step::expect("CAPA"),
            Step::Stall,
        ],
        vec![Step::StallHandshake],
    ] {
        let pki = Pki::generate();
        let server = HostileServer::start(script, pki.leaf_for("localhost")).await;
        let output = mailctl_async(fetch_args(
            &pki,
            server.port(),
            "implicit",
            &scratch("stall"),
        ))
        .await;
        let transcript = server.finish().await;
        assert_failed(&output, 6, "timeout error", &transcript);
    }
}

#[tokio::test]
async fn a_connection_cut_mid_message_stores_nothing_partial_and_deletes_nothing() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("+OK hostile\r\n"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
            Step::expect("USER victim"),
            Step::send("+OK\r\n"),
            Step::expect("PASS"),
            Step::send("+OK logged in\r\n"),
            Step::expect("LIST"),
            Step::send("+OK\r\n1 40\r\n2 40\r\n.\r\n"),
            Step::expect("UIDL"),
            Step::send("+OK\r\n1 uid-one\r\n2 uid-two\r\n.\r\n"),
            Step::expect("RETR 1"),
            Step::send("+OK\r\nSubject: one\r\n\r\ncomplete body\r\n.\r\n"),
            Step::expect("RETR 2"),
            Step::send("+OK\r\nSubject: two\r\n\r\nthe connection dies in the mid"),
            Step::Close,
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let dir = scratch("cut");
    let output = mailctl_async(fetch_args(&pki, server.port(), "implicit", &dir)).await;
    let transcript = server.finish().await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !transcript.any_contains(b"DELE"),
        "nothing may be deleted: {transcript:?}"
    );
    assert_eq!(files_in(&dir.join("new")), 1, "only the complete message");
    assert_eq!(files_in(&dir.join("tmp")), 0, "no partial file left");
    let stored = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(stored).unwrap(),
        "Subject: one\n\ncomplete body\n"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The cleartext opt-in under its name and its old one (`--allow-plaintext`), with `--tls`
/// spelled as on the command line (`none`) or as in account files (`plaintext`): the password
/// is sent as asked. Without the opt-in nothing is sent at all.
#[tokio::test]
async fn cleartext_opt_in_under_both_spellings_sends_the_password() {
    for (opt_in, tls) in [
        ("--allow-cleartext-credentials-dangerously", "none"),
        ("--allow-plaintext", "plaintext"),
    ] {
        let pki = Pki::generate();
        let server = HostileServer::start(
            vec![
                Step::send("+OK cleartext\r\n"),
                Step::expect("CAPA"),
                Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
                Step::expect("USER victim"),
                Step::send("+OK\r\n"),
                Step::expect("PASS s3cret-password"),
                Step::send("-ERR [AUTH] not today\r\n"),
                Step::ExpectAny,
            ],
            pki.leaf_for("localhost"),
        )
        .await;
        let dir = scratch("cleartext");
        let mut args = fetch_args(&pki, server.port(), tls, &dir);
        args.push(opt_in.into());
        let output = mailctl_async(args).await;
        let transcript = server.finish().await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{opt_in}: {stderr}");
        assert!(
            transcript.plaintext_contains(b"PASS s3cret-password"),
            "{opt_in}: {transcript:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    // Without the opt-in: refused before connecting (port 9 is never listened to here).
    let pki = Pki::generate();
    let output = mailctl_async(fetch_args(&pki, 9, "plaintext", &scratch("cleartext"))).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains("--allow-cleartext-credentials-dangerously"),
        "{stderr}"
    );
}

#[tokio::test]
async fn smtp_354_after_every_recipient_failed_sends_no_body() {
    let pki = Pki::generate();
    let server = HostileServer::start(
        vec![
            Step::StartTls,
            Step::send("220 hostile ESMTP\r\n"),
            Step::expect("EHLO"),
            Step::send("250-hostile\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
            Step::expect("AUTH PLAIN"),
            Step::send("235 2.7.0 ok\r\n"),
            Step::expect("MAIL FROM"),
            Step::expect("RCPT TO"),
            Step::expect("DATA"),
            Step::send("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead anyway\r\n"),
            Step::ExpectAny,
            Step::send("554 5.5.1 no valid recipients\r\n"),
            Step::ExpectAny,
            Step::send("221 bye\r\n"),
        ],
        pki.leaf_for("localhost"),
    )
    .await;
    let args: Vec<String> = [
        "send",
        "--host",
        "127.0.0.1",
        "--tls-name",
        "localhost",
        "--port",
        &server.port().to_string(),
        "--tls",
        "implicit",
        "--user",
        "victim",
        "--password-env",
        "HOSTILE_PASSWORD",
        "--timeout",
        "3",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--subject",
        "s",
        "--body",
        "hostile-body-text",
        "--ca-file",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([pki.ca_file().display().to_string()])
    .collect();
    let output = mailctl_async(args).await;
    let transcript = server.finish().await;
    assert_failed(&output, 9, "refused by the server", &transcript);
    assert!(
        !transcript.any_contains(b"hostile-body-text"),
        "the body went out: {transcript:?}"
    );
    assert!(
        text(&output.stdout).contains("refused  b@example.org: 550"),
        "{}",
        text(&output.stdout)
    );
}

/// `mailctl send` arguments for a scripted SMTP server (implicit TLS, AUTH PLAIN).
fn send_args(pki: &Pki, port: u16, extra: &[&str]) -> Vec<String> {
    [
        "send",
        "--host",
        "127.0.0.1",
        "--tls-name",
        "localhost",
        "--port",
        &port.to_string(),
        "--tls",
        "implicit",
        "--user",
        "victim",
        "--password-env",
        "HOSTILE_PASSWORD",
        "--timeout",
        "3",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--subject",
        "s",
        "--body",
        "hostile-body-text",
    ]
    .iter()
    .chain(extra)
    .map(ToString::to_string)
    .chain(["--ca-file".to_owned(), pki.ca_file().display().to_string()])
    .collect()
}

/// Exim 4.96 refusing MAIL FROM: the RCPT pipelined behind it gets 503.
fn refused_sender_script() -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::send("220 exim.example ESMTP Exim 4.96\r\n"),
        Step::expect("EHLO"),
        Step::send("250-exim.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
        Step::expect("AUTH PLAIN"),
        Step::send("235 Authentication succeeded\r\n"),
        Step::expect("MAIL FROM"),
        Step::expect("RCPT TO"),
        Step::expect("DATA"),
        Step::send(
            "550 authentication required\r\n503 sender not yet given\r\n\
             503-All RCPT commands were rejected with this error:\r\n\
             503-503 sender not yet given\r\n503 Valid RCPT command must precede DATA\r\n",
        ),
        Step::expect("QUIT"),
        Step::send("221 bye\r\n"),
    ]
}

#[tokio::test]
async fn smtp_refused_sender_is_the_cause_with_the_servers_words() {
    // Issue 16, item 5: the 550 to MAIL FROM is the cause, not the 503s that follow it.
    let pki = Pki::generate();
    let server = HostileServer::start(refused_sender_script(), pki.leaf_for("localhost")).await;
    let output = mailctl_async(send_args(&pki, server.port(), &[])).await;
    let transcript = server.finish().await;
    assert_failed(
        &output,
        9,
        "sender refused (MAIL FROM): 550 authentication required",
        &transcript,
    );
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("refused  b@example.org"), "{stdout}");
    assert!(
        stdout.contains("not sent b@example.org: the sender was refused"),
        "{stdout}"
    );
}

#[tokio::test]
async fn smtp_verbose_log_shows_the_servers_replies_and_no_secret() {
    // Issue 16, item 5: at -vv the server's side of a failing exchange is visible too.
    let pki = Pki::generate();
    let server = HostileServer::start(refused_sender_script(), pki.leaf_for("localhost")).await;
    let output = mailctl_async(send_args(&pki, server.port(), &["-vv"])).await;
    server.finish().await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(9), "{stderr}");
    for line in [
        "S: 220 exim.example ESMTP Exim 4.96",
        "S: 235 Authentication succeeded",
        "S: 550 authentication required",
        "S: 503 sender not yet given",
        "C: MAIL FROM:<a@example.org>",
    ] {
        assert!(
            stderr.contains(line),
            "{line:?} not in the -vv log:\n{stderr}"
        );
    }
    // The password, and the AUTH PLAIN line that carries it (base64 of "\0victim\0password").
    for secret in ["s3cret-password", "AHZpY3RpbQBzM2NyZXQtcGFzc3dvcmQ="] {
        assert!(
            !stderr.contains(secret),
            "{secret} in the -vv log:\n{stderr}"
        );
    }
}
