//! SASL client mechanisms against arbitrary server challenges: no panic, and SCRAM never
//! reports success unless the server proved knowledge of the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_common::sasl::{Credentials, Mechanism, SaslClient};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(selector) % Mechanism::ALL.len()];
    let credentials = match mechanism {
        Mechanism::XOAuth2 | Mechanism::OAuthBearer => Credentials::oauth2("user@example.org", "token"),
        _ => Credentials::password("user", "pencil"),
    };
    let Ok(mut client) = SaslClient::new(mechanism, &credentials, b"fyko+d2lbbFgONRv9qkxdawL") else {
        return;
    };
    let _ = client.initial_response();
    let mut challenges = rest.split(|&b| b == 0);
    for challenge in challenges.by_ref().take(4) {
        if client.step(challenge).is_err() {
            return;
        }
    }
    let finished = client.finish(challenges.next()).is_ok();
    if finished && matches!(mechanism, Mechanism::ScramSha1 | Mechanism::ScramSha256) {
        // Fuzzed challenges cannot carry a valid server signature (an HMAC keyed by the
        // password): success means the signature check was skipped.
        panic!("SCRAM finished without a valid server signature");
    }
});
