//! Server responses as data: the text of a `+OK`/`-ERR` line and its RFC 2449 response code,
//! typed so that policy (retry later? ask the user for a new password?) can be decided without
//! matching on free text.

use mail_common::FailureClass;

/// An RFC 2449 / RFC 3206 / RFC 6856 response code: the bracketed word that may follow
/// `+OK` or `-ERR`.
///
/// Codes are hierarchical (`SYS/TEMP/QUOTA`); only the registered codes get their own variant,
/// everything else (including sub-codes of registered ones) is kept in [`ResponseCode::Other`]
/// and classified by its registered ancestor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `[IN-USE]`: the maildrop is locked by another session (RFC 2449).
    InUse,
    /// `[LOGIN-DELAY]`: logged in again too soon (RFC 2449).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system problem (RFC 3206).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system problem (RFC 3206).
    SysPerm,
    /// `[AUTH]`: the credentials are wrong or the account is not allowed (RFC 3206).
    Auth,
    /// `[UTF8]`: the request needs UTF-8 mode (RFC 6856).
    Utf8,
    /// Any other code, as sent.
    Other(String),
}

/// Registered codes whose failures go away by themselves, so that unknown sub-codes of them
/// (which a server may send to be more specific) are classified the same way.
const TRANSIENT_ROOTS: [&str; 3] = ["IN-USE", "LOGIN-DELAY", "SYS/TEMP"];

impl ResponseCode {
    /// Recognises a code from the text between the brackets, ignoring ASCII case.
    pub fn from_text(code: &str) -> Self {
        const KNOWN: [(&str, ResponseCode); 6] = [
            ("IN-USE", ResponseCode::InUse),
            ("LOGIN-DELAY", ResponseCode::LoginDelay),
            ("SYS/TEMP", ResponseCode::SysTemp),
            ("SYS/PERM", ResponseCode::SysPerm),
            ("AUTH", ResponseCode::Auth),
            ("UTF8", ResponseCode::Utf8),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(code))
            .map_or_else(|| Self::Other(code.to_owned()), |(_, known)| known)
    }

    /// Whether retrying the same request later may succeed.
    ///
    /// `IN-USE`, `LOGIN-DELAY` and `SYS/TEMP` (and codes below them in the hierarchy) are
    /// transient; `SYS/PERM`, `AUTH`, `UTF8` and unknown codes are permanent: an unknown code
    /// carries no promise that waiting helps, and retrying a rejected login risks an account
    /// lock-out.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::InUse | Self::LoginDelay | Self::SysTemp => FailureClass::Transient,
            Self::SysPerm | Self::Auth | Self::Utf8 => FailureClass::Permanent,
            Self::Other(code) => {
                let below_transient = TRANSIENT_ROOTS.iter().any(|root| {
                    code.as_bytes().get(root.len()) == Some(&b'/')
                        && code
                            .get(..root.len())
                            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(root))
                });
                if below_transient {
                    FailureClass::Transient
                } else {
                    FailureClass::Permanent
                }
            }
        }
    }
}

/// The text of a status line (`+OK` or `-ERR`), split into its response code and the
/// human-readable rest.
///
/// Whether it was positive is known from the event that carries it. The text is decoded as
/// UTF-8 with invalid sequences replaced, because it is meant for people, not for parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response code, if the text started with one.
    pub code: Option<ResponseCode>,
    /// The text after the status indicator and the code.
    pub text: String,
}

impl Response {
    /// Whether retrying may help, for a negative response.
    ///
    /// Without a response code the answer is [`FailureClass::Permanent`]: a server that does
    /// not send codes cannot say "try later", the most common refusals (wrong password, no
    /// such message) do not heal by themselves, and repeating a failed login is what locks
    /// accounts.
    pub fn class(&self) -> FailureClass {
        self.code
            .as_ref()
            .map_or(FailureClass::Permanent, ResponseCode::class)
    }
}

#[cfg(test)]
mod tests {
    use super::{FailureClass, ResponseCode};

    #[test]
    fn registered_codes_and_their_class() {
        for (text, code, class) in [
            ("IN-USE", ResponseCode::InUse, FailureClass::Transient),
            (
                "login-delay",
                ResponseCode::LoginDelay,
                FailureClass::Transient,
            ),
            ("SYS/TEMP", ResponseCode::SysTemp, FailureClass::Transient),
            ("SYS/PERM", ResponseCode::SysPerm, FailureClass::Permanent),
            ("AUTH", ResponseCode::Auth, FailureClass::Permanent),
            ("UTF8", ResponseCode::Utf8, FailureClass::Permanent),
        ] {
            let parsed = ResponseCode::from_text(text);
            assert_eq!(parsed, code);
            assert_eq!(parsed.class(), class, "{text}");
        }
    }

    #[test]
    fn unknown_codes_inherit_transience_only_from_a_transient_ancestor() {
        let transient = ["SYS/TEMP/QUOTA", "in-use/other", "LOGIN-DELAY/X"];
        let permanent = [
            "SYS/PERM/X",
            "SYS",
            "SYS/TEMPORARY",
            "IN-USEX",
            "AUTH/X",
            "FOO",
        ];
        for code in transient {
            assert_eq!(
                ResponseCode::from_text(code).class(),
                FailureClass::Transient,
                "{code}"
            );
        }
        for code in permanent {
            assert_eq!(
                ResponseCode::from_text(code).class(),
                FailureClass::Permanent,
                "{code}"
            );
        }
    }
}
