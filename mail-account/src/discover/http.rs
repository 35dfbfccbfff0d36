//! The HTTP client discovery uses to fetch autoconfig files: a trait, so tests and applications
//! can inject their own, and [`HttpsClient`], the default built on `reqwest` with rustls (ring
//! provider, no native TLS).
//!
//! The default client follows at most [`MAX_REDIRECTS`] redirects and never from `https` to
//! `http`, stops reading after [`MAX_BODY`] bytes, sends no cookies and no credentials.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use mail_common::transport::{TrustRoots, root_store};

/// Largest body read, in bytes. Autoconfig files are a few kilobytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 3;

/// A response to a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The URL after redirects.
    pub final_url: String,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

/// A GET failed before a status code arrived, or the body was unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connection, TLS or protocol failure, timeout, or a refused redirect.
    #[error("GET {url} failed: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The body exceeded [`MAX_BODY`].
    #[error("GET {url}: body larger than {MAX_BODY} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
}

/// What discovery needs from HTTP.
pub trait HttpClient: Send + Sync {
    /// GETs `url` (scheme `https`, or `http` when the caller opted in).
    fn get(&self, url: &str) -> impl Future<Output = Result<HttpResponse, HttpError>> + Send;
}

/// The default client: `reqwest` over rustls with the ring provider.
#[derive(Clone)]
pub struct HttpsClient {
    client: reqwest::Client,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

/// Options of [`HttpsClient`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpsOptions {
    /// Which certificate authorities are trusted.
    pub trust: TrustRoots,
    /// Timeout of one request, connection included.
    pub timeout: Duration,
    /// Fixed addresses for host names, bypassing DNS (for loopback test servers). A port of 0
    /// keeps the URL's port.
    pub resolve: Vec<(String, SocketAddr)>,
    /// The User-Agent header.
    pub user_agent: String,
}

impl Default for HttpsOptions {
    fn default() -> Self {
        Self {
            trust: TrustRoots::WebPki,
            timeout: Duration::from_secs(10),
            resolve: Vec::new(),
            user_agent: concat!("mail-account/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

impl HttpsClient {
    /// Builds a client.
    pub fn new(options: &HttpsOptions) -> Result<Self, HttpError> {
        let fail = |reason: String| HttpError::Failed {
            url: String::new(),
            reason,
        };
        let roots = root_store(&options.trust).map_err(|e| fail(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if attempt
                .previous()
                .last()
                .is_some_and(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https"
            {
                attempt.error("refused a redirect from https to a non-https URL")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(redirect)
            .user_agent(options.user_agent.clone())
            .no_proxy();
        for (host, addr) in &options.resolve {
            builder = builder.resolve(host, *addr);
        }
        let client = builder.build().map_err(|e| fail(e.to_string()))?;
        Ok(Self { client })
    }
}

impl HttpClient for HttpsClient {
    async fn get(&self, url: &str) -> Result<HttpResponse, HttpError> {
        let fail = |e: &reqwest::Error| HttpError::Failed {
            url: url.to_owned(),
            reason: error_chain(e),
        };
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| HttpError::Failed {
                url: url.to_owned(),
                reason: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge {
                    url: url.to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            final_url,
            body,
        })
    }
}

/// An error with its sources, for messages a person reads.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_defaults() {
        let c = HttpsClient::new(&HttpsOptions::default()).unwrap();
        assert!(format!("{c:?}").contains("HttpsClient"));
    }
}
