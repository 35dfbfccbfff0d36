//! OAuth 2.0 sign-in for mail accounts: the device authorization grant (RFC 8628), the
//! authorization code grant with PKCE S256 and a loopback redirect (RFC 7636, RFC 8252),
//! refresh with rotation, and the token file.
//!
//! Built on the `oauth2` crate over this crate's reqwest/rustls stack (no redirects followed,
//! `https` required except for loopback endpoints). Tokens are [`Secret`]s: they never appear in
//! `Debug` output, logs or error messages.
//!
//! The client identity is the application's own registration with the provider: this crate
//! ships no client id. [`ClientIdentity::resolve`] takes it from a flag, the account file or the
//! environment ([`CLIENT_ID_ENV`], [`CLIENT_SECRET_ENV`]), and a missing id is
//! [`OAuthError::MissingClientId`], a settings error that says how to get one.
//!
//! # Example
//!
//! Sign in once with the device grant (Outlook.com's preferred one), then get a current access
//! token whenever a connection needs one:
//!
//! ```no_run
//! # #[cfg(feature = "session")] {
//! use std::time::Duration;
//! use mail_account::oauth::{ClientIdentity, OAuth2Credential, OAuthClient, TokenFile};
//! use mail_account::providers::{self, oauth2::for_provider};
//! use mail_account::settings::Protocol;
//! use mail_common::transport::TrustRoots;
//!
//! # async fn sign_in() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = for_provider(providers::lookup("hotmail.com").unwrap()).unwrap();
//! let credential = OAuth2Credential {
//!     client_id: Some("your-application-id".into()),
//!     client_secret: None,
//!     token_url: provider.token_url.into(),
//!     authorization_url: Some(provider.authorization_url.into()),
//!     device_authorization_url: provider.device_authorization_url.map(Into::into),
//!     scopes: provider.scopes_for_all(Protocol::Pop3).into_iter().map(Into::into).collect(),
//!     token_file: "taro.tokens.json".into(),
//! };
//! let identity = ClientIdentity::resolve(None, None, Some(&credential))?;
//! let file = TokenFile::new(&credential.token_file);
//! let client = OAuthClient::new(credential, identity, &TrustRoots::WebPki)?;
//! client
//!     .device_grant(
//!         &file,
//!         |prompt| println!("Open {} and enter {}", prompt.verification_uri, prompt.user_code),
//!         Duration::from_secs(300),
//!     )
//!     .await?;
//! // Later, for each connection: cached, or refreshed (the rotated refresh token saved first).
//! let token = client.access_token(&file).await?;
//! # let _ = token;
//! # Ok(())
//! # }
//! # }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use mail_common::Secret;
use serde::{Deserialize, Serialize};

// The credential is account data (feature-free); getting and refreshing tokens needs HTTP.
#[cfg(feature = "session")]
mod client;
#[cfg(feature = "session")]
mod loopback;
#[cfg(feature = "session")]
mod store;

#[cfg(feature = "session")]
pub use client::*;
#[cfg(feature = "session")]
pub use store::{StoredTokens, TokenFile, TokenLock};

/// The environment variable read for the client id when neither a flag nor the account file
/// gives one.
pub const CLIENT_ID_ENV: &str = "MAIL_OAUTH2_CLIENT_ID";
/// The environment variable read for the client secret (confidential or "desktop" clients).
pub const CLIENT_SECRET_ENV: &str = "MAIL_OAUTH2_CLIENT_SECRET";
/// An access token is refreshed when it expires within this margin.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The `[credential.oauth2]` table of an account file: where tokens come from and where they are
/// kept. `Debug` shows no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OAuth2Credential {
    /// The application's client id (else a flag or [`CLIENT_ID_ENV`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret, for clients that have one (Google "desktop" clients; not Microsoft
    /// public clients). Prefer [`CLIENT_SECRET_ENV`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_secret_string"
    )]
    pub client_secret: Option<Secret<String>>,
    /// The token endpoint.
    pub token_url: String,
    /// The authorization endpoint (for signing in again with the code grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// The device authorization endpoint (for signing in again with the device grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// The scopes requested (and sent again on refresh, which Microsoft requires).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The token file (refresh token and cached access token; mode 0600).
    pub token_file: PathBuf,
}

/// Serde for optional secrets: the value itself in the file (which is mode 0600), never in `Debug`.
mod opt_secret_string {
    use mail_common::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // the signature serde's `with` requires
    pub(super) fn serialize<S: Serializer>(
        value: &Option<Secret<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(|v| v.map(Secret::new))
    }
}
