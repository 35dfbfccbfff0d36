//! Issue 16, item 4: the embedded server offers what real servers offer (Dovecot's mechanisms
//! SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN for POP3 and SMTP; PIPELINING and
//! CHUNKING for SMTP), so a client tested here does not meet them first on a real server. Each
//! mechanism is run to the end by the project's own clients.

use mail_common::sasl::{Credentials, Mechanism};
use mail_testground::server::TestServer;
use pop3_proto::{AuthMethod as PopMethod, Config as PopConfig, Login, Security};
use smtp_submit::{
    Address, AuthMethod as SmtpMethod, ClientName, Config as SmtpConfig, Envelope, MailOptions,
    Security as SmtpSecurity,
};

const USER: &str = "demo@demo.example";
const PASS: &str = "secret";
const SCRAM_AND_CO: [Mechanism; 5] = [
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::CramMd5,
    Mechanism::Plain,
    Mechanism::Login,
];

async fn server() -> TestServer {
    TestServer::builder()
        .user(USER, PASS)
        .message(USER, b"Subject: one\r\n\r\nfirst\r\n".to_vec())
        .start()
        .await
        .expect("server starts")
}

async fn pop3(server: &TestServer, security: Security) -> pop3_proto::tokio::Session {
    let port = match security {
        Security::ImplicitTls => server.pop3s_addr().port(),
        _ => server.pop3_addr().port(),
    };
    let options = pop3_proto::tokio::ConnectOptions::new("127.0.0.1")
        .with_port(port)
        .with_trust_roots(server.trust_roots())
        .with_tls_name(server.tls_server_name());
    pop3_proto::tokio::Session::connect(&options, PopConfig::new(security))
        .await
        .expect("POP3 connect")
}

async fn smtp(server: &TestServer) -> smtp_submit::tokio::Session {
    let options = smtp_submit::tokio::ConnectOptions::new("127.0.0.1")
        .with_port(server.submission_addr().port())
        .with_trust_roots(server.trust_roots())
        .with_tls_name(server.tls_server_name());
    let config = SmtpConfig::new(
        ClientName::new("client.example").unwrap(),
        SmtpSecurity::StartTls,
    );
    smtp_submit::tokio::Session::connect(&options, config)
        .await
        .expect("SMTP connect")
}

#[tokio::test]
async fn pop3_offers_and_accepts_every_mechanism_a_real_server_does() {
    let server = server().await;
    let session = pop3(&server, Security::StartTls).await;
    let sasl = session.capabilities().unwrap().sasl.clone();
    assert_eq!(
        sasl,
        ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"],
        "as Dovecot lists them"
    );
    session.quit().await.unwrap();

    // Automatic login picks SCRAM-SHA-256, as against Dovecot.
    let mut session = pop3(&server, Security::ImplicitTls).await;
    let used = session
        .login(Credentials::password(USER, PASS))
        .await
        .unwrap();
    assert_eq!(used, PopMethod::Sasl(Mechanism::ScramSha256));
    assert_eq!(session.stat().await.unwrap().count, 1);
    session.quit().await.unwrap();

    for mechanism in SCRAM_AND_CO {
        for password in [PASS, "wrong"] {
            let mut session = pop3(&server, Security::ImplicitTls).await;
            let login = Login::using(
                PopMethod::Sasl(mechanism),
                Credentials::password(USER, password),
            );
            let result = session.login_with(login).await;
            assert_eq!(
                result.is_ok(),
                password == PASS,
                "{mechanism:?} with {password}: {result:?}"
            );
        }
    }
    for method in [PopMethod::UserPass, PopMethod::Apop] {
        let mut session = pop3(&server, Security::ImplicitTls).await;
        let login = Login::using(method, Credentials::password(USER, PASS));
        session.login_with(login).await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn smtp_offers_every_mechanism_pipelining_and_chunking() {
    let server = server().await;
    let session = smtp(&server).await;
    let caps = session.capabilities().clone();
    assert!(caps.pipelining() && caps.chunking(), "{caps:?}");
    assert_eq!(
        caps.auth_mechanisms(),
        ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    );
    session.quit().await.unwrap();

    for mechanism in SCRAM_AND_CO {
        let mut session = smtp(&server).await;
        let wrong = Credentials::password(USER, "wrong");
        assert!(
            session
                .authenticate(&wrong, SmtpMethod::Mechanism(mechanism))
                .await
                .is_err(),
            "{mechanism:?} with a wrong password"
        );
        let used = session
            .authenticate(
                &Credentials::password(USER, PASS),
                SmtpMethod::Mechanism(mechanism),
            )
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(used, mechanism);
        // Pipelined MAIL/RCPT and a BDAT body.
        let me = Address::new(USER).unwrap();
        let body = format!("Subject: {mechanism:?}\r\n\r\nsent after {mechanism:?}\r\n");
        let report = session
            .send_bytes(
                Envelope::new(Some(me.clone())).with_recipient(me),
                MailOptions::default(),
                body.as_bytes(),
            )
            .await
            .unwrap();
        assert!(report.is_sent(), "{report:?}");
        session.quit().await.unwrap();
    }
    // The automatic choice is SCRAM-SHA-256 here too.
    let mut session = smtp(&server).await;
    let used = session
        .authenticate(&Credentials::password(USER, PASS), SmtpMethod::Auto)
        .await
        .unwrap();
    assert_eq!(used, Mechanism::ScramSha256);
    session.quit().await.unwrap();

    let stored = server.mailbox(USER).unwrap();
    assert_eq!(stored.len(), 1 + SCRAM_AND_CO.len());
    server.shutdown().await;
}
