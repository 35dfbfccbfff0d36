//! Passwords and tokens never show up in Debug output, error messages or log events.

use std::time::Instant;

use mail_common::sasl::{Credentials, Mechanism};
use pop3_proto::{AuthMethod, Client, Config, Login, Machine, Security};

#[test]
fn credentials_stay_out_of_debug_errors_and_logs() {
    const PASSWORD: &str = "hunter2-very-secret";
    let ((), logs) = mail_testground::logs::capture(mail_testground::logs::Spans::Off, || {
        let now = Instant::now();
        let mut client = Client::new(Config::new(Security::ImplicitTls), now);
        client
            .handle_input(now, b"+OK hi <1.2@host>\r\n+OK\r\nUSER\r\n.\r\n")
            .unwrap();
        let login = Login::using(
            AuthMethod::UserPass,
            Credentials::password("alice", PASSWORD),
        );
        assert!(!format!("{login:?}").contains(PASSWORD));
        client.login(now, login).unwrap();
        client.handle_input(now, b"+OK\r\n").unwrap();
        let pending = String::from_utf8(client.poll_transmit().unwrap().to_vec()).unwrap();
        assert!(
            pending.contains(&format!("PASS {PASSWORD}")),
            "the password is sent"
        );
        assert!(!format!("{client:?}").contains(PASSWORD), "{client:?}");

        // A rejected login hands the credentials back without printing them.
        let second = Login::using(AuthMethod::Apop, Credentials::password("al\nice", PASSWORD));
        let rejected = client.login(now, second).unwrap_err();
        assert!(!format!("{rejected:?} {rejected}").contains(PASSWORD));

        // A fatal error clears the buffer that held the password.
        let error = client.handle_input(now, b"garbage\r\n").unwrap_err();
        assert!(!format!("{error:?} {error}").contains(PASSWORD));
        assert_eq!(client.poll_transmit(), None);
    });
    assert!(logs.contains("PASS [redacted]"), "{logs}");
    assert!(logs.contains("C: USER alice"), "{logs}");
    assert!(!logs.contains(PASSWORD), "{logs}");
}

#[test]
fn sasl_lines_are_redacted_in_logs() {
    // base64 of "\0alice\0secret", and of the LOGIN password prompt answer "secret".
    const PLAIN_RESPONSE: &str = "AGFsaWNlAHNlY3JldA==";
    const LOGIN_PASSWORD: &str = "c2VjcmV0";
    let now = Instant::now();
    let mut client = Client::new(Config::new(Security::ImplicitTls), now);
    let ((), logs) = mail_testground::logs::capture(mail_testground::logs::Spans::Off, || {
        client
            .handle_input(now, b"+OK hi\r\n+OK\r\nSASL PLAIN LOGIN\r\n.\r\n")
            .unwrap();
        let plain = Credentials::password("alice", "secret");
        let login = Login::using(AuthMethod::Sasl(Mechanism::Plain), plain.clone());
        client.login(now, login).unwrap();
        client.handle_input(now, b"-ERR [AUTH] no\r\n").unwrap();
        client
            .login(now, Login::using(AuthMethod::Sasl(Mechanism::Login), plain))
            .unwrap();
        client
            .handle_input(now, b"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n")
            .unwrap();
    });
    let sent = String::from_utf8(client.poll_transmit().unwrap().to_vec()).unwrap();
    assert!(
        sent.contains(PLAIN_RESPONSE) && sent.contains(LOGIN_PASSWORD),
        "{sent}"
    );
    assert!(logs.contains("AUTH PLAIN [redacted]"), "{logs}");
    assert!(logs.contains("S: + [redacted]"), "{logs}");
    assert!(
        !logs.contains(PLAIN_RESPONSE) && !logs.contains(LOGIN_PASSWORD),
        "{logs}"
    );
}
