//! The small examples run against the test ground's real servers (alice read-only; bob gets
//! one message from itself).

mod common;

use common::text;
use std::process::Command;

use mail_testground::BOB;

#[test]
fn blocking_pop3_lists_subjects_over_implicit_tls() {
    mail_testground::require_running();
    let output = Command::new(env!("CARGO_BIN_EXE_blocking_pop3"))
        .args(["localhost", "11995", "alice"])
        .arg(mail_testground::ca_file())
        .env("POP3_PASSWORD", "alice-pass")
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.starts_with("server: Dovecot"), "{stdout}");
    assert!(stdout.contains("100 messages, 2224872 octets"), "{stdout}");
    assert!(
        stdout.contains("  100  [tg] alice message 100 of 100"),
        "{stdout}"
    );
}

#[test]
fn tokio_send_fetch_sends_then_lists() {
    mail_testground::require_running();
    let output = Command::new(env!("CARGO_BIN_EXE_tokio_send_fetch"))
        .args(["localhost:10465", "localhost:11995", BOB.name, BOB.address])
        .arg(mail_testground::ca_file())
        .env("MAIL_PASSWORD", BOB.password)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("sent: true"), "{stdout}");
    assert!(stdout.contains("message 1: "), "{stdout}");
}

#[test]
fn blocking_send_sends_over_starttls() {
    mail_testground::require_running();
    let port = mail_testground::POSTFIX_SUBMISSION.port.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_blocking_send"))
        .args(["starttls", "localhost", &port, BOB.name, BOB.address])
        .arg(mail_testground::ca_file())
        .env("MAIL_PASSWORD", BOB.password)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("connected, TLS: true"), "{stdout}");
    assert!(stdout.contains("logged in with "), "{stdout}");
    assert!(stdout.contains("sent: "), "{stdout}");
}
