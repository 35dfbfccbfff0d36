//! NTLM ("Secure Password Authentication" in Windows Live Mail and Outlook Express), as a SASL
//! mechanism for POP3 and SMTP `AUTH NTLM`: negotiate, then the NTLMv2 answer to the server's
//! challenge. The message formats come from the `ntlmclient` crate; the NTLMv2 response is
//! computed here from the caller's random bytes (the sans-IO core has no random source and no
//! clock: the time stamp is the server's `MsvAvTimestamp` when it sends one, else zero).
//!
//! NTLM is weaker than SCRAM (the server stores a password equivalent, and the exchange can be
//! attacked offline), so it is never chosen automatically.

use hmac::{Hmac, Mac as _};
use md5::Md5;
use ntlmclient::{
    AuthenticateMessage, ChallengeMessage, Credentials as NtlmCredentials, Flags, Message,
    NegotiateMessage, OsVersion, TargetInfoType,
};

use super::SaslError;
use crate::Secret;

/// The flags of the negotiate message: Unicode, NTLM, NTLMv2-style session security, and the
/// target information (which carries the server's time stamp).
fn negotiate_flags() -> Flags {
    Flags::NEGOTIATE_UNICODE
        | Flags::REQUEST_TARGET
        | Flags::NEGOTIATE_NTLM
        | Flags::NEGOTIATE_ALWAYS_SIGN
        | Flags::NEGOTIATE_NTLM2_KEY
        | Flags::NEGOTIATE_TARGET_INFO
}

/// The NEGOTIATE_MESSAGE (type 1), with no domain and no workstation.
pub(super) fn negotiate() -> Vec<u8> {
    Message::Negotiate(NegotiateMessage {
        flags: negotiate_flags(),
        supplied_domain: String::new(),
        supplied_workstation: String::new(),
        os_version: OsVersion::default(),
    })
    .to_bytes()
    // Empty strings always encode.
    .unwrap_or_default()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Splits `DOMAIN\user` (the Windows form) into domain and user.
fn split_domain(username: &str) -> (&str, &str) {
    username.split_once('\\').unwrap_or(("", username))
}

/// The AUTHENTICATE_MESSAGE (type 3) answering a CHALLENGE_MESSAGE (type 2) with an NTLMv2
/// response. `client_challenge` is 8 fresh random bytes.
pub(super) fn authenticate(
    challenge: &[u8],
    username: &str,
    password: &Secret<String>,
    client_challenge: [u8; 8],
) -> Result<Secret<Vec<u8>>, SaslError> {
    let message = Message::try_from(challenge)
        .map_err(|_| SaslError::MalformedChallenge("not an NTLM challenge message"))?;
    let Message::Challenge(ChallengeMessage {
        flags: server_flags,
        challenge: server_challenge,
        target_information,
        ..
    }) = message
    else {
        return Err(SaslError::MalformedChallenge(
            "NTLM message of the wrong type (expected a challenge)",
        ));
    };
    let (domain, user) = split_domain(username);
    let credentials = NtlmCredentials {
        username: user.to_owned(),
        password: password.expose().clone(),
        domain: domain.to_owned(),
    };
    let key = ntlmclient::ntlm_v2_password_func(&credentials);
    drop(credentials);
    let target_info: Vec<u8> = target_information
        .iter()
        .flat_map(ntlmclient::TargetInfoEntry::to_bytes)
        .collect();
    let server_time = target_information
        .iter()
        .find(|e| e.entry_type == TargetInfoType::Timestamp)
        .and_then(|e| <[u8; 8]>::try_from(e.data.as_slice()).ok());
    // MS-NLMP 3.1.5.1.2: the blob (NTLMv2_CLIENT_CHALLENGE).
    let mut blob = Vec::with_capacity(28 + target_info.len() + 4);
    blob.extend_from_slice(&[0x01, 0x01, 0, 0, 0, 0, 0, 0]);
    blob.extend_from_slice(&server_time.unwrap_or([0; 8]));
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(&target_info);
    blob.extend_from_slice(&[0; 4]);
    let nt_proof = hmac_md5(&key, &[&server_challenge, &blob]);
    let mut nt_response = nt_proof.to_vec();
    nt_response.extend_from_slice(&blob);
    // With the server's time stamp the LMv2 response is all zeros (MS-NLMP 3.1.5.1.2).
    let lm_response = if server_time.is_some() {
        vec![0; 24]
    } else {
        let mut lm = hmac_md5(&key, &[&server_challenge, &client_challenge]).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    let charset = if server_flags.contains(Flags::NEGOTIATE_UNICODE) {
        Flags::NEGOTIATE_UNICODE
    } else {
        Flags::NEGOTIATE_OEM
    };
    let flags = (negotiate_flags() - Flags::NEGOTIATE_UNICODE) & server_flags | charset;
    Message::Authenticate(AuthenticateMessage {
        lm_response,
        ntlm_response: nt_response,
        domain_name: domain.to_owned(),
        user_name: user.to_owned(),
        workstation_name: String::new(),
        session_key: Vec::new(),
        flags,
        os_version: OsVersion::default(),
    })
    .to_bytes()
    .map(Secret::new)
    .map_err(|_| SaslError::UnencodableCredential {
        mechanism: super::Mechanism::Ntlm,
    })
}
