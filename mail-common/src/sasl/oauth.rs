//! The error document an OAuth 2.0 mail server sends as a SASL challenge when it refuses a
//! bearer token (RFC 7628 section 3.2.2; the same JSON is used by XOAUTH2 servers such as Gmail
//! and Dovecot).

use serde::Deserialize;

/// A decoded OAuth error challenge: why the server refused the token, as data.
///
/// Servers send something like `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`.
/// Every field is optional because servers differ (RFC 7628 uses `invalid_token`-style status
/// values, XOAUTH2 servers send HTTP status codes); the raw document is kept for logs and for
/// fields this type does not know.
///
/// ```
/// use mail_common::sasl::OAuthErrorChallenge;
///
/// let error = OAuthErrorChallenge::parse(
///     br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#,
/// );
/// assert_eq!(error.status.as_deref(), Some("401"));
/// assert_eq!(error.scope.as_deref(), Some("https://mail.google.com/"));
/// assert!(error.is_invalid_token());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OAuthErrorChallenge {
    /// `status`: an HTTP status code (`"401"`, `"400"`) or an RFC 6750 error code
    /// (`"invalid_token"`, `"insufficient_scope"`).
    pub status: Option<String>,
    /// `schemes`: the authentication schemes the server accepts (usually `"bearer"`).
    pub schemes: Option<String>,
    /// `scope`: the scope a token needs for this service.
    pub scope: Option<String>,
    /// `openid-configuration`: where the server says its authorization server is described.
    pub openid_configuration: Option<String>,
    /// The document as received (invalid UTF-8 replaced by U+FFFD). It holds no secret: the
    /// server describes the failure, it does not echo the token.
    pub raw: String,
}

/// The fields as they appear in the JSON document; anything else is ignored.
#[derive(Deserialize)]
struct Wire {
    status: Option<serde_json::Value>,
    schemes: Option<String>,
    scope: Option<String>,
    #[serde(rename = "openid-configuration")]
    openid_configuration: Option<String>,
}

impl OAuthErrorChallenge {
    /// Decodes a challenge. A document that is not a JSON object (or has fields of unexpected
    /// types) still gives a value, with only [`raw`](Self::raw) set: the exchange fails either
    /// way, and the raw text is the best the caller can show.
    pub fn parse(challenge: &[u8]) -> Self {
        let raw = String::from_utf8_lossy(challenge).into_owned();
        let Ok(wire) = serde_json::from_slice::<Wire>(challenge) else {
            return Self {
                raw,
                ..Self::default()
            };
        };
        // Some servers send the status as a number.
        let status = wire.status.and_then(|value| match value {
            serde_json::Value::String(text) => Some(text),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        });
        Self {
            status,
            schemes: wire.schemes,
            scope: wire.scope,
            openid_configuration: wire.openid_configuration,
            raw,
        }
    }

    /// True when the server says the token itself is bad (expired, revoked, unknown): HTTP 401
    /// or `invalid_token`. Getting a new access token (refresh, or signing in again) may help.
    pub fn is_invalid_token(&self) -> bool {
        matches!(self.status.as_deref(), Some("401" | "invalid_token"))
    }

    /// True when the server says the token lacks a scope this service needs: HTTP 403 or
    /// `insufficient_scope`. Signing in again with [`scope`](Self::scope) may help; refreshing
    /// does not.
    pub fn is_insufficient_scope(&self) -> bool {
        matches!(self.status.as_deref(), Some("403" | "insufficient_scope"))
    }
}

impl std::fmt::Display for OAuthErrorChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.status, &self.scope) {
            (Some(status), Some(scope)) => write!(f, "status {status}, required scope {scope}"),
            (Some(status), None) => write!(f, "status {status}"),
            (None, Some(scope)) => write!(f, "required scope {scope}"),
            (None, None) => write!(f, "{}", self.raw.escape_debug()),
        }
    }
}
