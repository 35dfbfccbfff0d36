//! The loopback redirect of RFC 8252 section 7.3: a one-shot HTTP listener on 127.0.0.1 that
//! receives the authorization response (`code` and `state`, or `error`) from the browser.

use std::time::Duration;

use ::oauth2::url::Url;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::OAuthError;

/// Largest request head read from the browser.
const MAX_REQUEST: usize = 16 * 1024;

/// The authorization response, once its `state` matched.
pub(super) struct Redirected {
    pub(super) code: String,
}

/// A bound loopback listener and the redirect URI that names it.
pub(super) struct Loopback {
    listener: TcpListener,
    pub(super) redirect_uri: String,
}

impl Loopback {
    /// Binds 127.0.0.1 on `port` (0: an ephemeral port chosen by the system).
    pub(super) async fn bind(port: u16, path: &str) -> Result<Self, OAuthError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| OAuthError::Http(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Http(e.to_string()))?
            .port();
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}{path}"),
        })
    }

    /// Waits for the browser's request carrying the authorization response, answers it, and
    /// checks `state`. Requests without `code`, `error` or `state` (a favicon) are answered with
    /// 404 and ignored.
    pub(super) async fn receive(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<Redirected, OAuthError> {
        let wait = async {
            loop {
                let (stream, _) = self
                    .listener
                    .accept()
                    .await
                    .map_err(|e| OAuthError::Http(format!("loopback accept failed: {e}")))?;
                if let Some(result) = handle(stream, expected_state).await {
                    return result;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| OAuthError::TimedOut(timeout))?
    }
}

async fn handle(
    mut stream: TcpStream,
    expected_state: &str,
) -> Option<Result<Redirected, OAuthError>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else {
        reply(
            &mut stream,
            "400 Bad Request",
            "Not an authorization response.",
        )
        .await;
        return None;
    };
    let url = Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let (code, state, error) = (get("code"), get("state"), get("error"));
    if code.is_none() && error.is_none() {
        reply(&mut stream, "404 Not Found", "Not found.").await;
        return None;
    }
    // RFC 6749 section 10.12: a response whose state is not ours is a forgery (or a stale tab).
    if state.as_deref() != Some(expected_state) {
        reply(
            &mut stream,
            "400 Bad Request",
            "The sign-in response does not belong to this request (state mismatch). Start the \
             sign-in again.",
        )
        .await;
        return Some(Err(OAuthError::StateMismatch));
    }
    if let Some(error) = error {
        reply(
            &mut stream,
            "200 OK",
            "Sign-in refused. You can close this window.",
        )
        .await;
        return Some(Err(OAuthError::from_code(&error, get("error_description"))));
    }
    reply(
        &mut stream,
        "200 OK",
        "Signed in. You can close this window.",
    )
    .await;
    Some(Ok(Redirected {
        code: code.unwrap_or_default(),
    }))
}

async fn reply(stream: &mut TcpStream, status: &str, text: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
