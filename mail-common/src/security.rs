//! How a connection is protected: one type for both protocol cores, both tokio adapters and
//! the account settings.

use std::fmt;

/// How a connection is protected against eavesdropping and tampering.
///
/// In account files it is spelled `implicit-tls`, `starttls` or `none` (`plaintext` is
/// accepted too).
///
/// ```
/// use mail_common::Security;
///
/// assert_eq!(Security::default(), Security::ImplicitTls);
/// assert!(Security::StartTls.is_tls());
/// assert!(!Security::Plaintext.is_tls());
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum Security {
    /// TLS from the first byte (RFC 8314: POP3S on 995, SMTP submissions on 465). The default,
    /// because nothing is ever exchanged in the clear.
    #[default]
    #[serde(rename = "implicit-tls")]
    ImplicitTls,
    /// A plain connection upgraded with STARTTLS (SMTP, port 587) or STLS (POP3, port 110)
    /// before anything else. TLS is required: a server that does not offer the upgrade or
    /// refuses it ends the session before any credential or mail is sent.
    #[serde(rename = "starttls")]
    StartTls,
    /// No TLS at all: everything crosses the network readable and modifiable. Credentials are
    /// still refused unless the protocol's configuration says
    /// `allow_cleartext_credentials_dangerously`. For test servers on loopback.
    #[serde(rename = "none", alias = "plaintext")]
    Plaintext,
}

impl Security {
    /// True for the two TLS modes.
    pub const fn is_tls(self) -> bool {
        matches!(self, Self::ImplicitTls | Self::StartTls)
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ImplicitTls => "implicit TLS",
            Self::StartTls => "STARTTLS",
            Self::Plaintext => "no TLS",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Security;

    #[test]
    fn account_file_spellings() {
        for (text, security) in [
            ("\"implicit-tls\"", Security::ImplicitTls),
            ("\"starttls\"", Security::StartTls),
            ("\"none\"", Security::Plaintext),
            ("\"plaintext\"", Security::Plaintext),
        ] {
            assert_eq!(serde_json::from_str::<Security>(text).unwrap(), security);
        }
        assert_eq!(
            serde_json::to_string(&Security::Plaintext).unwrap(),
            "\"none\""
        );
        assert!(serde_json::from_str::<Security>("\"StartTls\"").is_err());
    }
}
