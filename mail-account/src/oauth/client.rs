//! Getting, refreshing and storing OAuth 2.0 tokens (feature `session`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::oauth2::basic::{BasicClient, BasicErrorResponseType};
use ::oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, PkceCodeChallenge, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, StandardDeviceAuthorizationResponse,
    StandardErrorResponse, TokenUrl,
};
use mail_common::Secret;
use mail_common::transport::{TrustRoots, root_store};

use super::store::{StoredTokens, TokenFile};
use super::{CLIENT_ID_ENV, CLIENT_SECRET_ENV, OAuth2Credential, REFRESH_MARGIN, loopback};

/// An OAuth 2.0 step failed. No variant carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// No client id anywhere: a settings error.
    #[error(
        "no OAuth2 client id: register an application with the provider (see the README, \
         \"Signing in with OAuth2\") and give its id with --client-id, client-id in the \
         account file's [credential.oauth2], or the environment variable {CLIENT_ID_ENV}"
    )]
    MissingClientId,
    /// An endpoint or other setting is unusable.
    #[error("invalid OAuth2 setting: {0}")]
    Settings(String),
    /// The grant is expired or revoked (`invalid_grant`): only signing in again helps.
    #[error("the sign-in is no longer valid (invalid_grant{}): sign in again", describe(.description.as_deref()))]
    GrantInvalid {
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// No tokens are stored yet (or the refresh token is missing).
    #[error("not signed in: no OAuth2 refresh token stored; sign in first")]
    NotSignedIn,
    /// The person refused access (`access_denied`).
    #[error("access was denied at the sign-in page")]
    AccessDenied,
    /// The device code or the wait for the browser ran out.
    #[error("the sign-in was not completed within {}s", .0.as_secs())]
    TimedOut(Duration),
    /// The loopback redirect carried a `state` other than the one sent: a forged or stale
    /// response, refused.
    #[error("the sign-in response's state does not match the request: refused")]
    StateMismatch,
    /// The authorization server refused with another error code.
    #[error("the authorization server refused: {code}{}", describe(.description.as_deref()))]
    Refused {
        /// The RFC 6749 error code (`invalid_client`, `invalid_scope`, ...).
        code: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// The HTTP exchange failed (connection, TLS, timeout) or the reply did not parse.
    #[error("OAuth2 request failed: {0}")]
    Http(String),
    /// The token file could not be read or written.
    #[error("token file {}: {reason}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why (never the content).
        reason: String,
    },
}

fn describe(description: Option<&str>) -> String {
    description.map_or_else(String::new, |d| format!(": {d}"))
}

impl OAuthError {
    pub(super) fn from_code(code: &str, description: Option<String>) -> Self {
        match code {
            "invalid_grant" => Self::GrantInvalid { description },
            "access_denied" => Self::AccessDenied,
            _ => Self::Refused {
                code: code.to_owned(),
                description,
            },
        }
    }

    /// True when only a new sign-in can help (`invalid_grant`, or no tokens stored).
    pub const fn needs_new_sign_in(&self) -> bool {
        matches!(self, Self::GrantInvalid { .. } | Self::NotSignedIn)
    }

    /// What a person can do about it, for the common provider error codes (the RFC 6749 codes,
    /// which Microsoft's AADSTS and Google's errors come as).
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            Self::GrantInvalid { .. } | Self::NotSignedIn => Some("sign in again"),
            Self::Refused { code, .. } => match code.as_str() {
                "invalid_client" => Some(
                    "check the client id and secret of your application registration (a \
                     Microsoft public client must not send a secret)",
                ),
                "unauthorized_client" => Some(
                    "the application registration does not allow this grant: for the device \
                     code enable 'Allow public client flows' (Microsoft), or use --grant browser",
                ),
                "invalid_scope" => Some(
                    "the application registration lacks permission for these scopes (add the \
                     POP and SMTP permissions, or use the provider's documented scopes)",
                ),
                "invalid_request" => Some("check the endpoints and the redirect URI"),
                _ => None,
            },
            Self::AccessDenied => Some("the sign-in was refused at the provider's page"),
            Self::StateMismatch => Some("start the sign-in again and finish it in one browser tab"),
            _ => None,
        }
    }

    /// True for settings problems (no client id, unusable endpoint).
    pub const fn is_settings(&self) -> bool {
        matches!(self, Self::MissingClientId | Self::Settings(_))
    }
}

/// Maps an `oauth2` request error without its body (a parse failure keeps the raw body, which
/// could hold a token).
fn request_error<
    RE: std::error::Error,
    T: ::oauth2::ErrorResponseType + AsRef<str> + std::fmt::Display,
>(
    error: RequestTokenError<RE, StandardErrorResponse<T>>,
) -> OAuthError {
    match error {
        RequestTokenError::ServerResponse(response) => OAuthError::from_code(
            response.error().as_ref(),
            response.error_description().cloned(),
        ),
        RequestTokenError::Request(e) => OAuthError::Http(error_chain(&e)),
        RequestTokenError::Parse(e, _body) => OAuthError::Http(format!(
            "unexpected reply from the authorization server ({})",
            e.path()
        )),
        RequestTokenError::Other(text) => OAuthError::Http(text),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The application's identity at the authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The client id.
    pub client_id: String,
    /// The client secret, if the registration has one.
    pub client_secret: Option<Secret<String>>,
}

impl ClientIdentity {
    /// The identity from, in order: `flag_id`/`flag_secret` (command line), the account file's
    /// credential, the environment ([`CLIENT_ID_ENV`], [`CLIENT_SECRET_ENV`]). Fails with
    /// [`OAuthError::MissingClientId`] when none gives an id.
    pub fn resolve(
        flag_id: Option<&str>,
        flag_secret: Option<&str>,
        credential: Option<&OAuth2Credential>,
    ) -> Result<Self, OAuthError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let client_id = flag_id
            .map(str::to_owned)
            .or_else(|| credential.and_then(|c| c.client_id.clone()))
            .or_else(|| env(CLIENT_ID_ENV))
            .filter(|id| !id.trim().is_empty())
            .ok_or(OAuthError::MissingClientId)?;
        let client_secret = flag_secret
            .map(|s| Secret::new(s.to_owned()))
            .or_else(|| credential.and_then(|c| c.client_secret.clone()))
            .or_else(|| env(CLIENT_SECRET_ENV).map(Secret::new));
        Ok(Self {
            client_id,
            client_secret,
        })
    }
}

/// What the person must do for the device grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    /// The page to open.
    pub verification_uri: String,
    /// The code to enter there.
    pub user_code: String,
    /// The page with the code filled in, if the server offers it (Microsoft does not).
    pub verification_uri_complete: Option<String>,
    /// How long the code is valid.
    pub expires_in: Duration,
}

/// Where to listen for the loopback redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackOptions {
    /// The port on 127.0.0.1; 0 (the default) lets the system choose one (RFC 8252 section 7.3).
    pub port: u16,
    /// The path of the redirect URI.
    pub path: String,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        Self {
            port: 0,
            path: "/".into(),
        }
    }
}

/// An OAuth 2.0 client for one account: endpoints, scopes, identity, and the HTTP client.
#[derive(Clone)]
pub struct OAuthClient {
    identity: ClientIdentity,
    credential: OAuth2Credential,
    extra_authorization_params: Vec<(String, String)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.identity.client_id)
            .field("token_url", &self.credential.token_url)
            .field("scopes", &self.credential.scopes)
            .finish_non_exhaustive()
    }
}

/// Checks an endpoint: `https`, or `http` on a loopback host only (test servers).
fn endpoint(url: &str, what: &str) -> Result<String, OAuthError> {
    let parsed = ::oauth2::url::Url::parse(url)
        .map_err(|e| OAuthError::Settings(format!("{what} {url:?}: {e}")))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(url.to_owned()),
        "http" if loopback => Ok(url.to_owned()),
        _ => Err(OAuthError::Settings(format!(
            "{what} {url:?} must use https (plain http only on loopback)"
        ))),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl OAuthClient {
    /// A client for `credential` with `identity`, trusting `trust` for the endpoints' TLS.
    pub fn new(
        credential: OAuth2Credential,
        identity: ClientIdentity,
        trust: &TrustRoots,
    ) -> Result<Self, OAuthError> {
        endpoint(&credential.token_url, "token URL")?;
        if let Some(url) = &credential.authorization_url {
            endpoint(url, "authorization URL")?;
        }
        if let Some(url) = &credential.device_authorization_url {
            endpoint(url, "device authorization URL")?;
        }
        let roots = root_store(trust).map_err(|e| OAuthError::Settings(e.to_string()))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OAuthError::Settings(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The oauth2 crate's advice: no redirects (a redirect could carry a code or token to
        // another host).
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| OAuthError::Settings(error_chain(&e)))?;
        Ok(Self {
            identity,
            credential,
            extra_authorization_params: Vec::new(),
            http,
        })
    }

    /// Adds query parameters to the authorization request (Google: `access_type=offline`,
    /// `prompt=consent`).
    #[must_use]
    pub fn with_authorization_params(
        mut self,
        params: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.extra_authorization_params.extend(params);
        self
    }

    /// The account-file credential this client uses.
    pub const fn credential(&self) -> &OAuth2Credential {
        &self.credential
    }

    fn base(&self) -> BasicClient {
        let mut client = BasicClient::new(ClientId::new(self.identity.client_id.clone()))
            // Credentials in the form body: public clients have no secret to put in a Basic
            // header, and servers differ in what they accept for the device request.
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = &self.identity.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().clone()));
        }
        client
    }

    fn token_url(&self) -> Result<TokenUrl, OAuthError> {
        TokenUrl::new(self.credential.token_url.clone())
            .map_err(|e| OAuthError::Settings(format!("token URL: {e}")))
    }

    fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.credential.scopes.iter().cloned().map(Scope::new)
    }

    fn stored(
        response: &impl ::oauth2::TokenResponse,
        previous_refresh: Option<&Secret<String>>,
    ) -> StoredTokens {
        StoredTokens {
            // Rotation: a new refresh token replaces the old; none returned keeps the old.
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone()))
                .or_else(|| previous_refresh.cloned()),
            access_token: Some(Secret::new(response.access_token().secret().clone())),
            expires_at: response
                .expires_in()
                .map(|d| now_secs().saturating_add(d.as_secs())),
        }
    }

    /// The device authorization grant (RFC 8628): asks for a code, calls `show` with what the
    /// person must do, and polls the token endpoint (at the server's interval) until the
    /// person approves, refuses, or `timeout` passes. Saves the tokens to `file`.
    pub async fn device_grant(
        &self,
        file: &TokenFile,
        show: impl FnOnce(&DevicePrompt),
        timeout: Duration,
    ) -> Result<StoredTokens, OAuthError> {
        let device_url = self
            .credential
            .device_authorization_url
            .clone()
            .ok_or_else(|| {
                OAuthError::Settings("the provider has no device authorization endpoint".into())
            })?;
        let client = self
            .base()
            .set_token_uri(self.token_url()?)
            .set_device_authorization_url(
                DeviceAuthorizationUrl::new(device_url)
                    .map_err(|e| OAuthError::Settings(format!("device URL: {e}")))?,
            );
        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scopes(self.scopes())
            .request_async(&self.http)
            .await
            .map_err(request_error)?;
        show(&DevicePrompt {
            verification_uri: details.verification_uri().to_string(),
            user_code: details.user_code().secret().clone(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().clone()),
            expires_in: details.expires_in(),
        });
        let response = client
            .exchange_device_access_token(&details)
            .request_async(&self.http, tokio::time::sleep, Some(timeout))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => match r.error() {
                    DeviceCodeErrorResponseType::AccessDenied => OAuthError::AccessDenied,
                    DeviceCodeErrorResponseType::ExpiredToken => OAuthError::TimedOut(timeout),
                    other => OAuthError::from_code(other.as_ref(), r.error_description().cloned()),
                },
                RequestTokenError::Request(e) => OAuthError::Http(error_chain(&e)),
                RequestTokenError::Parse(e, _) => OAuthError::Http(format!(
                    "unexpected reply from the authorization server ({})",
                    e.path()
                )),
                RequestTokenError::Other(text) => OAuthError::Http(text),
            })?;
        let tokens = Self::stored(&response, None);
        file.save(&tokens)?;
        Ok(tokens)
    }

    /// The authorization code grant with PKCE S256 and a loopback redirect (RFC 7636, RFC 8252):
    /// listens on 127.0.0.1, calls `show` with the authorization URL (to print, and to open in
    /// a browser), waits up to `timeout` for the redirect, refuses a wrong `state`, exchanges
    /// the code with the verifier, and saves the tokens to `file`.
    pub async fn authorization_code_grant(
        &self,
        file: &TokenFile,
        loopback: &LoopbackOptions,
        show: impl FnOnce(&str),
        timeout: Duration,
    ) -> Result<StoredTokens, OAuthError> {
        let auth_url = self.credential.authorization_url.clone().ok_or_else(|| {
            OAuthError::Settings("the provider has no authorization endpoint".into())
        })?;
        let listener = loopback::Loopback::bind(loopback.port, &loopback.path).await?;
        let client = self
            .base()
            .set_token_uri(self.token_url()?)
            .set_auth_uri(
                AuthUrl::new(auth_url)
                    .map_err(|e| OAuthError::Settings(format!("authorization URL: {e}")))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(listener.redirect_uri.clone())
                    .map_err(|e| OAuthError::Settings(e.to_string()))?,
            );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes())
            .set_pkce_challenge(challenge);
        for (name, value) in &self.extra_authorization_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, state) = request.url();
        show(url.as_str());
        let redirected = listener.receive(state.secret(), timeout).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(redirected.code))
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(request_error::<_, BasicErrorResponseType>)?;
        let tokens = Self::stored(&response, None);
        file.save(&tokens)?;
        Ok(tokens)
    }

    /// A current access token: the cached one while it is valid for more than
    /// [`REFRESH_MARGIN`], else a refreshed one. A rotated refresh token is saved to `file`
    /// before the new access token is returned, so a crash never loses the only valid one.
    ///
    /// The refresh runs under the token file's lock, and the file is read again once the lock
    /// is held: of several processes that find the token expired, one refreshes and the others
    /// use its result.
    pub async fn access_token(&self, file: &TokenFile) -> Result<Secret<String>, OAuthError> {
        let valid = |stored: &StoredTokens| match (&stored.access_token, stored.expires_at) {
            (Some(token), Some(expires_at))
                if expires_at > now_secs().saturating_add(REFRESH_MARGIN.as_secs()) =>
            {
                Some(token.clone())
            }
            _ => None,
        };
        if let Some(token) = valid(&file.load()?) {
            return Ok(token);
        }
        let _lock = file.lock().await?;
        let stored = file.load()?;
        if let Some(token) = valid(&stored) {
            return Ok(token);
        }
        let tokens = self.refresh(file, &stored).await?;
        tokens.access_token.ok_or(OAuthError::NotSignedIn)
    }

    /// Refreshes now, whatever the cached access token's expiry; saves and returns the tokens.
    pub async fn refresh(
        &self,
        file: &TokenFile,
        stored: &StoredTokens,
    ) -> Result<StoredTokens, OAuthError> {
        let refresh = stored
            .refresh_token
            .as_ref()
            .ok_or(OAuthError::NotSignedIn)?;
        let client = self.base().set_token_uri(self.token_url()?);
        let refresh_token = RefreshToken::new(refresh.expose().clone());
        tracing::debug!(token_url = %self.credential.token_url, "refreshing the OAuth2 access token");
        let response = client
            .exchange_refresh_token(&refresh_token)
            // Microsoft refuses a refresh without scope (AADSTS900144).
            .add_scopes(self.scopes())
            .request_async(&self.http)
            .await
            .map_err(request_error::<_, BasicErrorResponseType>)?;
        let tokens = Self::stored(&response, Some(refresh));
        file.save(&tokens)?;
        Ok(tokens)
    }
}

/// When an SMTP session error is the server refusing an OAuth 2.0 token: its decoded JSON
/// error challenge.
pub fn smtp_oauth_refusal(
    error: &smtp_submit::tokio::Error,
) -> Option<&mail_common::sasl::OAuthErrorChallenge> {
    match error {
        smtp_submit::tokio::Error::Auth {
            failure: smtp_submit::AuthFailure::TokenRefused { error, .. },
            ..
        } => Some(error),
        _ => None,
    }
}

/// Advice a person can act on when a mail server refused an OAuth 2.0 token, from the server's
/// JSON error challenge.
pub fn refusal_advice(error: &mail_common::sasl::OAuthErrorChallenge) -> String {
    if error.is_insufficient_scope() {
        format!(
            "the token lacks the scope this server needs ({}): sign in again so that it is requested",
            error.scope.as_deref().unwrap_or("not named")
        )
    } else {
        let scope = error
            .scope
            .as_deref()
            .map_or_else(String::new, |s| format!(" (scope {s})"));
        format!(
            "the server refused the OAuth2 token{scope}: check that POP/SMTP access is enabled in the account's settings at the provider, then sign in again"
        )
    }
}
