use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::{Credentials, Mechanism, OAuthErrorChallenge, SaslClient, SaslError, choose};

const PASSWORD: &str = "S3cr3t-pa55w0rd";
const TOKEN: &str = "ya29.T0k3n-value";

/// The RFC vectors give the client nonce as a string; it is the base64 of whole bytes, so the
/// public constructor reproduces it exactly from the decoded bytes.
fn nonce_bytes(nonce: &str) -> Vec<u8> {
    let bytes = STANDARD.decode(nonce).unwrap();
    assert_eq!(STANDARD.encode(&bytes), nonce);
    bytes
}

fn password_client(mechanism: Mechanism) -> SaslClient {
    SaslClient::new(
        mechanism,
        &Credentials::password("user", PASSWORD),
        b"0123456789abcdefgh",
    )
    .unwrap()
}

fn token_client(mechanism: Mechanism) -> SaslClient {
    SaslClient::new(
        mechanism,
        &Credentials::oauth2("user@example.com", TOKEN),
        &[],
    )
    .unwrap()
}

fn bytes(secret: &crate::Secret<Vec<u8>>) -> &[u8] {
    secret.expose()
}

// ---------------------------------------------------------------- SCRAM vectors

const SHA1_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
const SHA1_SERVER_FIRST: &[u8] =
    b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
const SHA1_CLIENT_FINAL: &[u8] =
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
const SHA1_SERVER_FINAL: &[u8] = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

const SHA256_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SHA256_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SHA256_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SHA256_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_client(mechanism: Mechanism) -> SaslClient {
    let nonce = match mechanism {
        Mechanism::ScramSha1 => SHA1_NONCE,
        _ => SHA256_NONCE,
    };
    SaslClient::new(
        mechanism,
        &Credentials::password("user", "pencil"),
        &nonce_bytes(nonce),
    )
    .unwrap()
}

/// A client that has sent its client-first message and answers `server_first` next.
fn scram_after_first(mechanism: Mechanism) -> SaslClient {
    let mut client = rfc_client(mechanism);
    client.initial_response().unwrap();
    client
}

fn scram_with_server_first(server_first: &[u8]) -> Result<SaslClient, SaslError> {
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(server_first).map(|_| client)
}

#[test]
fn scram_sha1_rfc5802_vector() {
    let mut client = rfc_client(Mechanism::ScramSha1);
    let first = client.initial_response().unwrap();
    assert_eq!(bytes(&first), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    assert!(client.initial_response().is_none());
    let client_final = client.step(SHA1_SERVER_FIRST).unwrap();
    assert_eq!(bytes(&client_final), SHA1_CLIENT_FINAL);
    assert!(!client.is_complete());
    client.finish(Some(SHA1_SERVER_FINAL)).unwrap();
    assert!(client.is_complete());
}

#[test]
fn scram_sha256_rfc7677_vector() {
    let mut client = rfc_client(Mechanism::ScramSha256);
    let first = client.initial_response().unwrap();
    assert_eq!(bytes(&first), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let client_final = client.step(SHA256_SERVER_FIRST).unwrap();
    assert_eq!(bytes(&client_final), SHA256_CLIENT_FINAL);
    client.finish(Some(SHA256_SERVER_FINAL)).unwrap();
}

#[test]
fn scram_server_final_as_challenge_then_finish_none() {
    // Dovecot POP3: the server-final comes as a continuation, the client answers empty.
    let mut client = scram_after_first(Mechanism::ScramSha256);
    client.step(SHA256_SERVER_FIRST).unwrap();
    let response = client.step(SHA256_SERVER_FINAL).unwrap();
    assert!(bytes(&response).is_empty());
    assert!(client.is_complete());
    client.finish(None).unwrap();
    client.finish(Some(b"")).unwrap();
    // Additional data after verification must verify too.
    client.finish(Some(SHA256_SERVER_FINAL)).unwrap();
    assert_eq!(
        client.finish(Some(SHA1_SERVER_FINAL)),
        Err(SaslError::ServerSignatureMismatch)
    );
}

#[test]
fn scram_challenge_after_verification_is_unexpected() {
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(SHA1_SERVER_FIRST).unwrap();
    client.step(SHA1_SERVER_FINAL).unwrap();
    assert_eq!(client.step(b""), Err(SaslError::UnexpectedChallenge));
    assert_eq!(client.step(b"x"), Err(SaslError::Aborted));
    assert_eq!(client.finish(None), Err(SaslError::Aborted));
}

#[test]
fn scram_wrong_server_signature_rejected() {
    for via_step in [false, true] {
        let mut client = scram_after_first(Mechanism::ScramSha1);
        client.step(SHA1_SERVER_FIRST).unwrap();
        // A well-formed signature of the right length, one bit off.
        let wrong = b"v=rmF9pqV8S7suAoZWja4dJRkFsKY=";
        let result = if via_step {
            client.step(wrong).map(|_| ())
        } else {
            client.finish(Some(wrong))
        };
        assert_eq!(result, Err(SaslError::ServerSignatureMismatch));
        assert_eq!(
            client.finish(Some(SHA1_SERVER_FINAL)),
            Err(SaslError::Aborted)
        );
    }
    // The SHA-256 signature for the SHA-1 exchange, and a too-short one.
    for wrong in [SHA256_SERVER_FINAL, b"v=AAAA".as_slice()] {
        let mut client = scram_after_first(Mechanism::ScramSha1);
        client.step(SHA1_SERVER_FIRST).unwrap();
        assert_eq!(
            client.finish(Some(wrong)),
            Err(SaslError::ServerSignatureMismatch)
        );
    }
}

#[test]
fn scram_missing_server_signature() {
    // Success right after the client-final.
    let mut client = scram_after_first(Mechanism::ScramSha256);
    client.step(SHA256_SERVER_FIRST).unwrap();
    assert_eq!(client.finish(None), Err(SaslError::MissingServerSignature));

    let mut client = scram_after_first(Mechanism::ScramSha256);
    client.step(SHA256_SERVER_FIRST).unwrap();
    assert_eq!(
        client.finish(Some(b"")),
        Err(SaslError::MissingServerSignature)
    );

    // Success before the server-first, or before anything.
    let mut client = scram_after_first(Mechanism::ScramSha256);
    assert_eq!(client.finish(None), Err(SaslError::MissingServerSignature));
    let mut client = rfc_client(Mechanism::ScramSha1);
    assert_eq!(
        client.finish(Some(SHA1_SERVER_FINAL)),
        Err(SaslError::MissingServerSignature)
    );
}

#[test]
fn scram_server_error_final() {
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(SHA1_SERVER_FIRST).unwrap();
    assert_eq!(
        client.step(b"e=invalid-proof"),
        Err(SaslError::ServerError("invalid-proof".into()))
    );
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(SHA1_SERVER_FIRST).unwrap();
    assert_eq!(
        client.finish(Some(b"e=other\r\nerror\x00")),
        Err(SaslError::MalformedChallenge(
            "SCRAM attribute contains NUL"
        ))
    );
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(SHA1_SERVER_FIRST).unwrap();
    assert_eq!(
        client.finish(Some(b"e=other\r\nerror")),
        Err(SaslError::ServerError("other??error".into()))
    );
    // e= instead of a server-first.
    assert_eq!(
        scram_with_server_first(b"e=unknown-user").unwrap_err(),
        SaslError::ServerError("unknown-user".into())
    );
}

#[test]
fn scram_server_final_extensions_and_garbage() {
    let mut client = scram_after_first(Mechanism::ScramSha1);
    client.step(SHA1_SERVER_FIRST).unwrap();
    let with_extension = [SHA1_SERVER_FINAL, b",x=ext"].concat();
    client.finish(Some(&with_extension)).unwrap();

    for bad in [
        b"rmF9pqV8S7suAoZWja4dJRkFsKQ=".as_slice(),
        b"v=",
        b"v=!!!!",
        b"x=abc",
        b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,",
        b",v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ] {
        let mut client = scram_after_first(Mechanism::ScramSha1);
        client.step(SHA1_SERVER_FIRST).unwrap();
        assert!(
            matches!(client.step(bad), Err(SaslError::MalformedChallenge(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn scram_nonce_mismatch() {
    for server_first in [
        b"r=XXXX+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".as_slice(),
        b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxda,s=QSXCR+Q6sek8bf92,i=4096",
    ] {
        assert_eq!(
            scram_with_server_first(server_first).unwrap_err(),
            SaslError::NonceMismatch
        );
    }
}

#[test]
fn scram_iteration_count_bounds() {
    let with_count = |count: &str| {
        let first = format!("r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i={count}");
        scram_with_server_first(first.as_bytes()).map(|_| ())
    };
    assert_eq!(with_count("0"), Err(SaslError::BadIterationCount(0)));
    assert_eq!(
        with_count("10000000"),
        Err(SaslError::BadIterationCount(10_000_000))
    );
    assert_eq!(
        with_count("1000001"),
        Err(SaslError::BadIterationCount(1_000_001))
    );
    assert_eq!(
        with_count("99999999999999999999999"),
        Err(SaslError::BadIterationCount(u32::MAX))
    );
    assert_eq!(with_count("1"), Ok(()));
    for malformed in ["-1", "+5", "010", "4096 ", "0x10", "١"] {
        assert!(
            matches!(with_count(malformed), Err(SaslError::MalformedChallenge(_))),
            "{malformed}"
        );
    }
}

#[test]
fn scram_malformed_server_first() {
    let cases: &[&[u8]] = &[
        b"",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096",
        b"s=QSXCR+Q6sek8bf92,i=4096",
        b"s=QSXCR+Q6sek8bf92,r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,r=x",
        b"r=,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,,i=4096",
        b"m=ext,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,m=ext",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,x=y,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=not base64!,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3r c,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3r\xffc,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096\0",
        b"rr=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
        b"1=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
        b"r",
    ];
    for case in cases {
        let result = scram_with_server_first(case).map(|_| ());
        assert!(
            matches!(result, Err(SaslError::MalformedChallenge(_))),
            "{:?} gave {result:?}",
            String::from_utf8_lossy(case)
        );
    }
    // Optional extensions after i= are skipped.
    scram_with_server_first(b"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=1,x=ext")
        .unwrap();
}

#[test]
fn scram_empty_challenge_gives_client_first_once() {
    let mut client = rfc_client(Mechanism::ScramSha1);
    let first = client.step(b"").unwrap();
    assert_eq!(bytes(&first), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    assert!(client.initial_response().is_none());
    assert_eq!(
        bytes(&client.step(SHA1_SERVER_FIRST).unwrap()),
        SHA1_CLIENT_FINAL
    );

    let mut client = rfc_client(Mechanism::ScramSha1);
    assert!(matches!(
        client.step(b"r=x"),
        Err(SaslError::MalformedChallenge(_))
    ));
}

#[test]
fn scram_username_escaped_and_nonce_base64() {
    let credentials = Credentials::password("a,b=c", "pw");
    let mut client = SaslClient::new(Mechanism::ScramSha256, &credentials, &[0xff; 4]).unwrap();
    assert_eq!(
        bytes(&client.initial_response().unwrap()),
        b"n,,n=a=2Cb=3Dc,r=/////w=="
    );
    assert_eq!(
        SaslClient::new(Mechanism::ScramSha256, &credentials, &[]).unwrap_err(),
        SaslError::EmptyNonce
    );
    assert_eq!(
        SaslClient::new(
            Mechanism::ScramSha1,
            &Credentials::password("a\0b", "pw"),
            b"n"
        )
        .unwrap_err(),
        SaslError::UnencodableCredential {
            mechanism: Mechanism::ScramSha1
        }
    );
}

// ---------------------------------------------------------------- CRAM-MD5

#[test]
fn cram_md5_rfc2195_vector() {
    let credentials = Credentials::password("tim", "tanstaaftanstaaf");
    let mut client = SaslClient::new(Mechanism::CramMd5, &credentials, &[]).unwrap();
    assert!(client.initial_response().is_none());
    assert_eq!(client.finish(None), Err(SaslError::Incomplete));

    let mut client = SaslClient::new(Mechanism::CramMd5, &credentials, &[]).unwrap();
    let response = client
        .step(b"<1896.697170952@postoffice.reston.mci.net>")
        .unwrap();
    assert_eq!(bytes(&response), b"tim b913a602c7eda7a495b4e6e7334d3890");
    assert!(client.is_complete());
    assert_eq!(client.step(b"<x@y>"), Err(SaslError::UnexpectedChallenge));

    let mut client = SaslClient::new(Mechanism::CramMd5, &credentials, &[]).unwrap();
    client.step(b"<1.2@host>").unwrap();
    client.finish(Some(b"ignored")).unwrap();

    let mut client = SaslClient::new(Mechanism::CramMd5, &credentials, &[]).unwrap();
    assert!(matches!(
        client.step(b""),
        Err(SaslError::MalformedChallenge(_))
    ));
}

// ---------------------------------------------------------------- PLAIN and LOGIN

#[test]
fn plain_exact_bytes() {
    let mut client = password_client(Mechanism::Plain);
    let message = client.initial_response().unwrap();
    assert_eq!(bytes(&message), b"\0user\0S3cr3t-pa55w0rd");
    assert!(client.initial_response().is_none());
    assert_eq!(client.step(b""), Err(SaslError::UnexpectedChallenge));

    let mut client = password_client(Mechanism::Plain);
    client.initial_response().unwrap();
    client.finish(Some(b"whatever")).unwrap();
    client.finish(None).unwrap();
}

#[test]
fn plain_via_empty_challenge_once() {
    let mut client = password_client(Mechanism::Plain);
    assert_eq!(client.finish(None), Err(SaslError::Incomplete));

    let mut client = password_client(Mechanism::Plain);
    let message = client.step(b"").unwrap();
    assert_eq!(bytes(&message), b"\0user\0S3cr3t-pa55w0rd");
    assert!(client.initial_response().is_none());
    assert_eq!(client.step(b""), Err(SaslError::UnexpectedChallenge));

    let mut client = password_client(Mechanism::Plain);
    assert!(matches!(
        client.step(b"hello"),
        Err(SaslError::MalformedChallenge(_))
    ));
}

#[test]
fn plain_rejects_nul() {
    for credentials in [
        Credentials::password("us\0er", "pw"),
        Credentials::password("user", "p\0w"),
    ] {
        assert_eq!(
            SaslClient::new(Mechanism::Plain, &credentials, &[]).unwrap_err(),
            SaslError::UnencodableCredential {
                mechanism: Mechanism::Plain
            }
        );
    }
}

#[test]
fn login_order() {
    let mut client = password_client(Mechanism::Login);
    assert!(client.initial_response().is_none());
    assert_eq!(bytes(&client.step(b"Username:").unwrap()), b"user");
    assert!(!client.is_complete());
    assert_eq!(client.finish(None), Err(SaslError::Incomplete));

    let mut client = password_client(Mechanism::Login);
    assert_eq!(bytes(&client.step(b"VXNlcm5hbWU6").unwrap()), b"user");
    assert_eq!(bytes(&client.step(b"").unwrap()), PASSWORD.as_bytes());
    assert!(client.is_complete());
    assert_eq!(
        client.step(b"Password:"),
        Err(SaslError::UnexpectedChallenge)
    );

    let mut client = password_client(Mechanism::Login);
    client.step(b"Username:").unwrap();
    client.step(b"Password:").unwrap();
    client.finish(None).unwrap();
}

// ---------------------------------------------------------------- OAuth

#[test]
fn xoauth2_exact_bytes_and_error_json() {
    let mut client = token_client(Mechanism::XOAuth2);
    assert_eq!(
        bytes(&client.initial_response().unwrap()),
        b"user=user@example.com\x01auth=Bearer ya29.T0k3n-value\x01\x01"
    );
    assert!(client.server_error_json().is_none());
    assert!(client.is_complete());
    let json = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
    let response = client.step(json).unwrap();
    assert!(bytes(&response).is_empty());
    assert_eq!(client.server_error_json().unwrap().as_bytes(), json);
    assert_eq!(client.step(json), Err(SaslError::UnexpectedChallenge));

    let mut client = token_client(Mechanism::XOAuth2);
    client.initial_response().unwrap();
    client.finish(None).unwrap();
}

#[test]
fn oauthbearer_exact_bytes_and_error_json() {
    let mut client = token_client(Mechanism::OAuthBearer);
    assert_eq!(
        bytes(&client.initial_response().unwrap()),
        b"n,a=user@example.com,\x01auth=Bearer ya29.T0k3n-value\x01\x01"
    );
    let json = br#"{"status":"invalid_token"}"#;
    assert_eq!(bytes(&client.step(json).unwrap()), b"\x01");
    assert_eq!(
        client.server_error_json(),
        Some(r#"{"status":"invalid_token"}"#)
    );
    assert_eq!(client.step(b""), Err(SaslError::UnexpectedChallenge));
    // The server-error JSON survives the failure.
    assert!(client.server_error_json().is_some());

    let credentials = Credentials::oauth2("a,b=c", "tok");
    let mut client = SaslClient::new(Mechanism::OAuthBearer, &credentials, &[]).unwrap();
    assert_eq!(
        bytes(&client.step(b"").unwrap()),
        b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"
    );
    assert!(client.initial_response().is_none());
    client.finish(None).unwrap();

    let mut client = token_client(Mechanism::OAuthBearer);
    assert_eq!(client.finish(None), Err(SaslError::Incomplete));
}

#[test]
fn oauth_rejects_control_a() {
    for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
        for credentials in [
            Credentials::oauth2("us\x01er", "tok"),
            Credentials::oauth2("user", "to\x01k"),
        ] {
            assert_eq!(
                SaslClient::new(mechanism, &credentials, &[]).unwrap_err(),
                SaslError::UnencodableCredential { mechanism }
            );
        }
    }
}

// ---------------------------------------------------------------- construction and choice

#[test]
fn wrong_credential_kind() {
    for mechanism in Mechanism::ALL {
        let wrong = if mechanism.uses_token() {
            Credentials::password("user", PASSWORD)
        } else {
            Credentials::oauth2("user", TOKEN)
        };
        assert_eq!(
            SaslClient::new(mechanism, &wrong, b"nonce").unwrap_err(),
            SaslError::WrongCredentialKind { mechanism }
        );
    }
}

#[test]
fn choose_strongest_suitable() {
    let password = Credentials::password("u", "p");
    let token = Credentials::oauth2("u", "t");
    let all = [
        "LOGIN",
        "PLAIN",
        "CRAM-MD5",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "XOAUTH2",
        "OAUTHBEARER",
    ];
    assert_eq!(choose(all, &password), Some(Mechanism::ScramSha256));
    assert_eq!(choose(all, &token), Some(Mechanism::OAuthBearer));
    assert_eq!(
        choose(["login", "Scram-Sha-1", "plain"], &password),
        Some(Mechanism::ScramSha1)
    );
    assert_eq!(
        choose(["GSSAPI", "NTLM", "cram-md5", "LOGIN"], &password),
        Some(Mechanism::CramMd5)
    );
    assert_eq!(
        choose(["LOGIN", "PLAIN"], &password),
        Some(Mechanism::Plain)
    );
    assert_eq!(choose(["LOGIN"], &password), Some(Mechanism::Login));
    assert_eq!(
        choose(["xoauth2", "PLAIN"], &token),
        Some(Mechanism::XOAuth2)
    );
    assert_eq!(choose(["XOAUTH2", "OAUTHBEARER"], &password), None);
    assert_eq!(choose(["PLAIN", "SCRAM-SHA-256"], &token), None);
    assert_eq!(choose(["GSSAPI", "SCRAM-SHA-512", ""], &password), None);
    assert_eq!(choose([], &password), None);
    for mechanism in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
    }
}

#[test]
fn error_messages_carry_no_secrets() {
    let errors = [
        SaslError::WrongCredentialKind {
            mechanism: Mechanism::Plain,
        },
        SaslError::UnencodableCredential {
            mechanism: Mechanism::XOAuth2,
        },
        SaslError::ServerSignatureMismatch,
        SaslError::MissingServerSignature,
        SaslError::BadIterationCount(0),
    ];
    for error in errors {
        let text = format!("{error} {error:?}");
        assert!(!text.contains(PASSWORD) && !text.contains(TOKEN));
    }
}

// ---------------------------------------------------------------- Debug and fuzz-safety

/// Drives a client of every mechanism through all of its states, calling `visit` in each.
fn visit_all_states(mut visit: impl FnMut(&SaslClient)) {
    let scram_nonce = nonce_bytes(SHA256_NONCE);
    let credentials = Credentials::password("user", "pencil");
    for via_step in [false, true] {
        let mut client =
            SaslClient::new(Mechanism::ScramSha256, &credentials, &scram_nonce).unwrap();
        visit(&client);
        if via_step {
            client.step(b"").unwrap();
        } else {
            client.initial_response().unwrap();
        }
        visit(&client);
        client.step(SHA256_SERVER_FIRST).unwrap();
        visit(&client);
        client.step(SHA256_SERVER_FINAL).unwrap();
        visit(&client);
        client.finish(None).unwrap();
        visit(&client);
        let _ = client.step(b"x");
        visit(&client);
    }
    for mechanism in [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha1,
    ] {
        let mut client = password_client(mechanism);
        visit(&client);
        let _ = client.initial_response();
        visit(&client);
        for challenge in [b"<1.2@h>".as_slice(), b"r=x", b""] {
            let _ = client.step(challenge);
            visit(&client);
        }
        let _ = client.finish(None);
        visit(&client);
    }
    for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
        let mut client = token_client(mechanism);
        visit(&client);
        client.initial_response().unwrap();
        visit(&client);
        client.step(b"{}").unwrap();
        visit(&client);
        let _ = client.step(b"{}");
        visit(&client);
    }
}

#[test]
fn debug_never_shows_password_or_token() {
    let mut visited = 0;
    visit_all_states(|client| {
        visited += 1;
        for text in [format!("{client:?}"), format!("{client:#?}")] {
            for secret in [PASSWORD, TOKEN, "pencil"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    });
    assert!(visited > 30);
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[a-z]=[ -~]{0,12}(,[a-z]=[ -~]{0,12}){0,4}".prop_map(String::into_bytes),
        Just(Vec::new()),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Initial,
    Step(Vec<u8>),
    Finish(Option<Vec<u8>>),
    /// A well-formed server-first that extends the client nonce, to reach the later SCRAM states.
    ServerFirst {
        suffix: String,
        salt: Vec<u8>,
        iterations: u32,
    },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Initial),
        any_bytes().prop_map(Op::Step),
        proptest::option::of(any_bytes()).prop_map(Op::Finish),
        (
            "[!-+\\--~]{0,8}",
            proptest::collection::vec(any::<u8>(), 0..8),
            0u32..4
        )
            .prop_map(|(suffix, salt, iterations)| Op::ServerFirst {
                suffix,
                salt,
                iterations
            }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(
        mechanism in proptest::sample::select(Mechanism::ALL.to_vec()),
        ops in proptest::collection::vec(any_op(), 0..8),
    ) {
        let credentials = if mechanism.uses_token() {
            Credentials::oauth2("user", TOKEN)
        } else {
            Credentials::password("user", PASSWORD)
        };
        let nonce = nonce_bytes(SHA1_NONCE);
        let mut client = SaslClient::new(mechanism, &credentials, &nonce).unwrap();
        for op in ops {
            match op {
                Op::Initial => {
                    let _ = client.initial_response();
                }
                Op::Step(challenge) => {
                    if let Ok(response) = client.step(&challenge) {
                        // Responses are bounded by the credentials plus the challenge.
                        prop_assert!(response.expose().len() <= 200 + challenge.len());
                    }
                }
                Op::Finish(data) => {
                    let _ = client.finish(data.as_deref());
                }
                Op::ServerFirst { suffix, salt, iterations } => {
                    let first = format!(
                        "r={SHA1_NONCE}{suffix},s={},i={iterations}",
                        STANDARD.encode(salt)
                    );
                    let _ = client.step(first.as_bytes());
                }
            }
            let debug = format!("{client:?}");
            prop_assert!(!debug.contains(PASSWORD) && !debug.contains(TOKEN));
            let _ = client.is_complete();
            let _ = client.server_error_json();
        }
    }
}

#[test]
fn oauth_error_challenge_is_decoded_as_data() {
    let mut client = token_client(Mechanism::XOAuth2);
    client.initial_response().unwrap();
    client
        .step(br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#)
        .unwrap();
    let error = client.server_error().unwrap();
    assert_eq!(error.status.as_deref(), Some("401"));
    assert_eq!(error.schemes.as_deref(), Some("bearer"));
    assert_eq!(error.scope.as_deref(), Some("https://mail.google.com/"));
    assert!(error.is_invalid_token());
    assert!(!error.is_insufficient_scope());
    assert_eq!(
        error.to_string(),
        "status 401, required scope https://mail.google.com/"
    );

    // RFC 7628 section 3.2.2 example shape, with a numeric status from a sloppy server.
    let error = OAuthErrorChallenge::parse(
        br#"{"status":403,"scope":"example_scope","openid-configuration":"https://as.example/.well-known/openid-configuration"}"#,
    );
    assert_eq!(error.status.as_deref(), Some("403"));
    assert!(error.is_insufficient_scope());
    assert_eq!(
        error.openid_configuration.as_deref(),
        Some("https://as.example/.well-known/openid-configuration")
    );

    // Not JSON: only the raw text, shown escaped.
    let error = OAuthErrorChallenge::parse(b"bad\xff\ntoken");
    assert_eq!(error.status, None);
    assert_eq!(error.raw, "bad\u{fffd}\ntoken");
    assert_eq!(error.to_string(), "bad\u{fffd}\\ntoken");
}

// ---------------------------------------------------------------- NTLM

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The CHALLENGE_MESSAGE of MS-NLMP section 4.2.4.3, written out by hand (server challenge
/// 0123456789abcdef; target info MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server"),
/// optionally with an MsvAvTimestamp 0102030405060708 before the terminator.
fn ms_nlmp_challenge(with_timestamp: bool) -> Vec<u8> {
    let utf16 =
        |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let av = |kind: u16, data: &[u8]| -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
        out
    };
    let mut target_info = av(2, &utf16("Domain"));
    target_info.extend(av(1, &utf16("Server")));
    if with_timestamp {
        target_info.extend(av(7, &[1, 2, 3, 4, 5, 6, 7, 8]));
    }
    target_info.extend(av(0, &[]));
    let target_name = utf16("Server");
    let mut out = b"NTLMSSP\0\x02\0\0\0".to_vec();
    // TargetNameFields: length, max length, offset 56 (after the 56-byte header).
    out.extend_from_slice(&12u16.to_le_bytes());
    out.extend_from_slice(&12u16.to_le_bytes());
    out.extend_from_slice(&56u32.to_le_bytes());
    out.extend_from_slice(&hex("33828ae2")); // NegotiateFlags of the example
    out.extend_from_slice(&hex("0123456789abcdef"));
    out.extend_from_slice(&[0; 8]); // Reserved
    let len = target_info.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&68u32.to_le_bytes());
    out.extend_from_slice(&hex("060070170000000f")); // Version
    out.extend_from_slice(&target_name);
    out.extend_from_slice(&target_info);
    out
}

/// One (length, max length, offset) field of an NTLM message header, resolved by hand per
/// MS-NLMP (independent of the crate that built the message).
fn ntlm_field(message: &[u8], at: usize) -> &[u8] {
    let len = usize::from(u16::from_le_bytes([message[at], message[at + 1]]));
    let offset = u32::from_le_bytes(message[at + 4..at + 8].try_into().unwrap()) as usize;
    &message[offset..offset + len]
}

struct Type3 {
    lm_response: Vec<u8>,
    ntlm_response: Vec<u8>,
    domain_name: String,
    user_name: String,
}

fn ntlm_authenticate(bytes: &[u8]) -> Type3 {
    assert_eq!(&bytes[..12], b"NTLMSSP\0\x03\0\0\0");
    let text = |field: &[u8]| {
        String::from_utf16(
            &field
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    Type3 {
        lm_response: ntlm_field(bytes, 12).to_vec(),
        ntlm_response: ntlm_field(bytes, 20).to_vec(),
        domain_name: text(ntlm_field(bytes, 28)),
        user_name: text(ntlm_field(bytes, 36)),
    }
}

#[test]
fn ntlm_v2_matches_the_ms_nlmp_test_vector() {
    let credentials = Credentials::password("Domain\\User", "Password");
    let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[0xaa; 24]).unwrap();
    // The server speaks first (an empty challenge); the answer is the negotiate message.
    assert!(client.initial_response().is_none());
    let negotiate = client.step(b"").unwrap();
    assert_eq!(&bytes(&negotiate)[..12], b"NTLMSSP\0\x01\0\0\0");
    assert!(!client.is_complete());
    let authenticate = client.step(&ms_nlmp_challenge(false)).unwrap();
    let message = ntlm_authenticate(bytes(&authenticate));
    assert_eq!(
        (message.user_name.as_str(), message.domain_name.as_str()),
        ("User", "Domain")
    );
    // MS-NLMP 4.2.4.2.2 NTProofStr and 4.2.4.2.1 LMv2 response (time 0, client challenge aa..).
    assert_eq!(
        message.ntlm_response[..16],
        hex("68cd0ab851e51c96aabc927bebef6a1c")[..]
    );
    assert_eq!(
        message.lm_response,
        hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
    );
    // The password appears nowhere, in any encoding.
    let wire = bytes(&authenticate);
    for secret in [&b"Password"[..], &b"P\0a\0s\0s\0w\0o\0r\0d\0"[..]] {
        assert!(!wire.windows(secret.len()).any(|w| w == secret));
    }
    client.finish(None).unwrap();
    assert!(!format!("{client:?}").contains("Password"));
}

#[test]
fn ntlm_uses_the_server_time_stamp_and_is_never_chosen_automatically() {
    let credentials = Credentials::password("olivia", "olivia-pass");
    let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[7; 8]).unwrap();
    client.step(b"").unwrap();
    let message = ntlm_authenticate(bytes(&client.step(&ms_nlmp_challenge(true)).unwrap()));
    // The blob carries the server's MsvAvTimestamp, and the LMv2 response is all zeros then.
    assert_eq!(message.ntlm_response[24..32], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(message.lm_response, vec![0; 24]);

    assert_eq!(
        choose(["NTLM", "LOGIN"], &credentials),
        Some(Mechanism::Login)
    );
    assert_eq!(choose(["NTLM"], &credentials), None);
    assert_eq!(Mechanism::from_name("ntlm"), Some(Mechanism::Ntlm));
    // Fewer than 8 nonce bytes: no client challenge.
    assert_eq!(
        SaslClient::new(Mechanism::Ntlm, &credentials, &[1; 7]).unwrap_err(),
        SaslError::EmptyNonce
    );
    // A challenge that is not an NTLM challenge message fails without panicking.
    for garbage in [
        &b""[..],
        b"NTLMSSP\0",
        b"NTLMSSP\0\x02\0\0\0short",
        &[0xff; 64],
    ] {
        let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[7; 8]).unwrap();
        client.step(b"").unwrap();
        assert!(matches!(
            client.step(garbage),
            Err(SaslError::MalformedChallenge(_))
        ));
    }
    let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[7; 8]).unwrap();
    assert!(client.step(b"not empty").is_err());
}

proptest! {
    #[test]
    fn ntlm_never_panics_on_a_hostile_challenge(challenge in proptest::collection::vec(any::<u8>(), 0..300), flip in 0usize..300) {
        let credentials = Credentials::password("u", "p");
        let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[7; 8]).unwrap();
        client.step(b"").unwrap();
        let _ = client.step(&challenge);
        // A valid message with one byte changed.
        let mut valid = ms_nlmp_challenge(true);
        let at = flip % valid.len();
        valid[at] ^= 0x5a;
        let mut client = SaslClient::new(Mechanism::Ntlm, &credentials, &[7; 8]).unwrap();
        client.step(b"").unwrap();
        let _ = client.step(&valid);
    }
}
