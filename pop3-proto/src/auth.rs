//! Logging in: choosing the method, and running USER/PASS, APOP or an RFC 5034 `AUTH`
//! exchange as a small step machine that turns server replies into lines to send.
//!
//! Kept apart from the session logic because it is where secrets live: everything derived from
//! a password or token stays in a [`Secret`] until the moment it is appended to the transmit
//! buffer, and each line carries a redacted rendering for logs.

use std::fmt::Write as _;

use base64::Engine as _;
use md5::{Digest as _, Md5};

use mail_common::sasl::{self, Credentials, NonceSource, SaslClient, SaslError};
use mail_common::{Secret, check_arg};

use crate::capabilities::Capabilities;
use crate::command::{AuthMethod, Login};
use crate::error::{Malformed, Misuse, ProtocolError};
use crate::event::{AuthAbort, LoginFailure};
use crate::parse::{self, Status};

/// RFC 2449 section 4 / RFC 5034 section 4: a command line is at most 255 octets, CRLF
/// included; a longer initial response goes after an empty challenge instead.
const MAX_COMMAND_LINE: usize = 255;

/// A command line to send (CRLF not included) and what to log instead of it.
pub(crate) struct Line {
    pub(crate) bytes: Secret<Vec<u8>>,
    pub(crate) shown: String,
}

impl Line {
    pub(crate) fn public(text: String) -> Self {
        Self {
            bytes: Secret::new(text.clone().into_bytes()),
            shown: text,
        }
    }

    fn secret(bytes: Vec<u8>, shown: &str) -> Self {
        Self {
            bytes: Secret::new(bytes),
            shown: shown.to_owned(),
        }
    }
}

/// A login ready to start: the method fixed, the credentials checked and encoded.
pub(crate) enum LoginPlan {
    UserPass {
        user: String,
        password: Secret<String>,
    },
    Apop {
        user: String,
        digest: Secret<String>,
    },
    Sasl(Box<SaslClient>),
}

impl std::fmt::Debug for LoginPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserPass { user, .. } => write!(f, "UserPass({user})"),
            Self::Apop { user, .. } => write!(f, "Apop({user})"),
            Self::Sasl(client) => write!(f, "Sasl({:?})", client.mechanism()),
        }
    }
}

/// Picks the method for [`Login::auto`]: see its documentation for the order.
///
/// A timestamp in the greeting does not mean APOP works: servers print one whether or not they
/// can check APOP (GNU mailutils pop3d greets with one, has no APOP secrets, and answers
/// "Bad login"), and `CAPA` has no way to announce APOP. So inside TLS, where USER/PASS exposes
/// nothing, APOP (MD5, legacy) is only the last resort. Without TLS (cleartext explicitly
/// allowed) it still goes before USER/PASS, which would put the password itself on the wire.
fn choose(
    credentials: &Credentials,
    caps: &Capabilities,
    apop_timestamp: Option<&str>,
    tls: bool,
) -> Result<AuthMethod, Misuse> {
    if let Some(mechanism) = sasl::choose(caps.sasl.iter().map(String::as_str), credentials) {
        return Ok(AuthMethod::Sasl(mechanism));
    }
    let password = matches!(credentials, Credentials::Password { .. });
    let apop = password && apop_timestamp.is_some();
    let user_pass = password && (caps.user || !caps.announced);
    match (apop, user_pass) {
        (true, true) if tls => Ok(AuthMethod::UserPass),
        (true, _) => Ok(AuthMethod::Apop),
        (false, true) => Ok(AuthMethod::UserPass),
        (false, false) => Err(Misuse::NoSuitableMethod),
    }
}

fn password_of(credentials: &Credentials) -> Result<(&str, &Secret<String>), Misuse> {
    match credentials {
        Credentials::Password { username, password } => Ok((username, password)),
        _ => Err(Misuse::WrongCredentialKind),
    }
}

/// Checks a login request against the session and prepares everything it will send.
pub(crate) fn prepare(
    login: &Login,
    caps: &Capabilities,
    apop_timestamp: Option<&str>,
    tls: bool,
    nonces: NonceSource,
) -> Result<(AuthMethod, LoginPlan), Misuse> {
    let method = match login.method {
        Some(method) => method,
        None => choose(&login.credentials, caps, apop_timestamp, tls)?,
    };
    let plan = match method {
        AuthMethod::UserPass => {
            let (user, password) = password_of(&login.credentials)?;
            check_arg(user)?;
            check_arg(password.expose())?;
            check_line_length("USER", user.len())?;
            check_line_length("PASS", password.expose().len())?;
            LoginPlan::UserPass {
                user: user.to_owned(),
                password: password.clone(),
            }
        }
        AuthMethod::Apop => {
            let (user, password) = password_of(&login.credentials)?;
            check_arg(user)?;
            // `APOP user digest`: the digest is 32 hex digits after one more space.
            check_line_length("APOP", user.len() + 1 + 32)?;
            let timestamp = apop_timestamp.ok_or(Misuse::NoApopTimestamp)?;
            LoginPlan::Apop {
                user: user.to_owned(),
                digest: apop_digest(timestamp, password),
            }
        }
        AuthMethod::Sasl(mechanism) => {
            let given = login
                .nonce
                .as_ref()
                .map_or(&[][..], |n| n.expose().as_slice());
            let nonce = Secret::new(
                nonces
                    .nonce_for(mechanism, given)
                    .map_err(Misuse::Sasl)?
                    .into_owned(),
            );
            let client = SaslClient::new(mechanism, &login.credentials, nonce.expose())
                .map_err(Misuse::Sasl)?;
            LoginPlan::Sasl(Box::new(client))
        }
    };
    Ok((method, plan))
}

/// Refuses a `KEYWORD argument` line longer than [`MAX_COMMAND_LINE`] (RFC 2449 section 4),
/// which a server may truncate or reject in ways that are hard to tell from a wrong password.
fn check_line_length(command: &'static str, argument_len: usize) -> Result<(), Misuse> {
    // Keyword, one space, the argument, CRLF.
    if command.len() + 1 + argument_len + 2 > MAX_COMMAND_LINE {
        return Err(Misuse::CommandTooLong {
            command,
            limit: MAX_COMMAND_LINE,
        });
    }
    Ok(())
}

/// RFC 1939 section 7: lower-case hex MD5 of the timestamp followed by the password.
fn apop_digest(timestamp: &str, password: &Secret<String>) -> Secret<String> {
    let digest = Md5::new()
        .chain_update(timestamp.as_bytes())
        .chain_update(password.expose().as_bytes())
        .finalize();
    let hex = digest
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        });
    Secret::new(hex)
}

fn base64(bytes: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

enum Step {
    /// `USER` sent; `PASS` follows a positive reply.
    User { password: Secret<String> },
    /// `PASS` or `APOP` sent: the next reply decides.
    Final,
    Sasl {
        client: Box<SaslClient>,
        /// Base64 initial response that did not fit on the `AUTH` line, sent after the empty
        /// challenge.
        deferred_initial: Option<Secret<Vec<u8>>>,
        challenges: usize,
    },
    /// `*` sent; the server's `-ERR` is expected.
    Cancelled { abort: AuthAbort },
}

/// What the session should do after a reply to a login command.
pub(crate) enum Progress {
    Send(Line),
    Succeeded,
    Failed(LoginFailure),
}

/// A login in progress.
pub(crate) struct Exchange {
    method: AuthMethod,
    step: Step,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exchange({:?})", self.method)
    }
}

impl Exchange {
    /// Starts a login: the exchange and its first line.
    pub(crate) fn start(method: AuthMethod, plan: LoginPlan) -> (Self, Line) {
        let (step, line) = match plan {
            LoginPlan::UserPass { user, password } => (
                Step::User { password },
                Line::public(format!("USER {user}")),
            ),
            LoginPlan::Apop { user, digest } => {
                let bytes = format!("APOP {user} {}", digest.expose()).into_bytes();
                (
                    Step::Final,
                    Line::secret(bytes, &format!("APOP {user} [redacted]")),
                )
            }
            LoginPlan::Sasl(mut client) => {
                let command = format!("AUTH {}", client.mechanism().name());
                let initial = client
                    .initial_response()
                    .map(|ir| match ir.expose().as_slice() {
                        // RFC 5034: "=" is an empty initial response.
                        [] => b"=".to_vec(),
                        bytes => base64(bytes),
                    });
                let mut deferred_initial = None;
                let line = match initial {
                    Some(ir) if command.len() + 1 + ir.len() + 2 <= MAX_COMMAND_LINE => {
                        let mut bytes = command.clone().into_bytes();
                        bytes.push(b' ');
                        bytes.extend_from_slice(&ir);
                        Line::secret(bytes, &format!("{command} [redacted]"))
                    }
                    too_long_or_none => {
                        deferred_initial = too_long_or_none.map(Secret::new);
                        Line::public(command)
                    }
                };
                let step = Step::Sasl {
                    client,
                    deferred_initial,
                    challenges: 0,
                };
                (step, line)
            }
        };
        (Self { method, step }, line)
    }

    pub(crate) const fn method(&self) -> AuthMethod {
        self.method
    }

    /// Handles one reply line (already split by [`parse::status_line`]; `line` is the whole
    /// line for error messages).
    pub(crate) fn on_reply(
        &mut self,
        status: Status<'_>,
        line: &[u8],
        max_challenges: usize,
    ) -> Result<Progress, ProtocolError> {
        let unexpected_continuation = || ProtocolError::Malformed {
            kind: Malformed::UnexpectedContinuation,
            excerpt: parse::excerpt(line),
        };
        let step = std::mem::replace(&mut self.step, Step::Final);
        match (step, status) {
            (Step::User { password }, Status::Ok(_)) => {
                let bytes = format!("PASS {}", password.expose()).into_bytes();
                Ok(Progress::Send(Line::secret(bytes, "PASS [redacted]")))
            }
            (Step::Final, Status::Ok(_)) => Ok(Progress::Succeeded),
            (Step::User { .. } | Step::Final, Status::Err(text)) => {
                Ok(Progress::Failed(self.failure(text, None, None)))
            }
            (Step::User { .. } | Step::Final, Status::Continuation(_)) => {
                Err(unexpected_continuation())
            }
            (Step::Sasl { mut client, .. }, Status::Ok(_)) => {
                // POP3 has no "additional data with success": a SCRAM server-final comes as a
                // challenge, so by now the server signature must have been checked.
                client
                    .finish(None)
                    .map_err(ProtocolError::ServerNotAuthenticated)?;
                Ok(Progress::Succeeded)
            }
            (Step::Sasl { client, .. }, Status::Err(text)) => {
                let oauth_error = client.server_error().cloned().map(Box::new);
                Ok(Progress::Failed(self.failure(text, None, oauth_error)))
            }
            (
                Step::Sasl {
                    client,
                    deferred_initial,
                    challenges,
                },
                Status::Continuation(text),
            ) => self
                .answer(
                    client,
                    deferred_initial,
                    challenges + 1,
                    max_challenges,
                    text,
                )
                .map(Progress::Send),
            (Step::Cancelled { abort }, Status::Err(text)) => {
                Ok(Progress::Failed(self.failure(text, Some(abort), None)))
            }
            (Step::Cancelled { .. }, Status::Ok(_)) => Err(ProtocolError::CancelledLoginAccepted),
            (Step::Cancelled { .. }, Status::Continuation(_)) => Err(unexpected_continuation()),
        }
    }

    /// Answers a SASL challenge, or cancels the exchange when it cannot be answered. A server
    /// that fails to prove it knows the password is not cancelled politely: it is an impostor,
    /// and the session ends.
    fn answer(
        &mut self,
        mut client: Box<SaslClient>,
        mut deferred_initial: Option<Secret<Vec<u8>>>,
        challenges: usize,
        max_challenges: usize,
        text: &[u8],
    ) -> Result<Line, ProtocolError> {
        let reply = if challenges > max_challenges {
            Err(AuthAbort::TooManyChallenges {
                limit: max_challenges,
            })
        } else if let Some(initial) = deferred_initial.take() {
            if text.trim_ascii().is_empty() {
                Ok(initial)
            } else {
                Err(AuthAbort::UnexpectedChallenge)
            }
        } else {
            parse::challenge(text)
                .ok_or(AuthAbort::InvalidChallenge)
                .and_then(|challenge| client.step(&challenge).map_err(AuthAbort::Sasl))
                .map(|response| Secret::new(base64(response.expose())))
        };
        match reply {
            Ok(response) => {
                self.step = Step::Sasl {
                    client,
                    deferred_initial,
                    challenges,
                };
                Ok(Line::secret(response.into_inner(), "[redacted]"))
            }
            Err(AuthAbort::Sasl(
                error @ (SaslError::ServerSignatureMismatch | SaslError::MissingServerSignature),
            )) => Err(ProtocolError::ServerNotAuthenticated(error)),
            Err(abort) => {
                self.step = Step::Cancelled { abort };
                Ok(Line::public("*".to_owned()))
            }
        }
    }

    fn failure(
        &self,
        text: &[u8],
        aborted: Option<AuthAbort>,
        oauth_error: Option<Box<sasl::OAuthErrorChallenge>>,
    ) -> LoginFailure {
        LoginFailure {
            method: self.method,
            response: parse::response(text),
            aborted,
            oauth_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Capabilities, Credentials, NonceSource, apop_digest, choose};
    use crate::command::AuthMethod;
    use crate::error::Misuse;
    use mail_common::Secret;
    use mail_common::sasl::Mechanism;

    #[test]
    fn apop_digest_matches_rfc_1939_example() {
        let digest = apop_digest(
            "<1896.697170952@dbc.mtview.ca.us>",
            &Secret::new("tanstaaf".to_owned()),
        );
        assert_eq!(digest.expose(), "c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn user_pass_and_apop_lines_fit_in_255_octets() {
        use super::prepare;
        use crate::command::Login;
        let caps = Capabilities::default();
        let ts = Some("<1@x>");
        // "USER " + 248 + CRLF = 255: allowed; one more octet is refused.
        for (user, pass, method, refused) in [
            ("u".repeat(248), "p".to_owned(), AuthMethod::UserPass, None),
            (
                "u".repeat(249),
                "p".to_owned(),
                AuthMethod::UserPass,
                Some("USER"),
            ),
            ("u".to_owned(), "p".repeat(248), AuthMethod::UserPass, None),
            (
                "u".to_owned(),
                "p".repeat(249),
                AuthMethod::UserPass,
                Some("PASS"),
            ),
            // "APOP " + user + " " + 32 hex + CRLF.
            ("u".repeat(215), "p".repeat(1000), AuthMethod::Apop, None),
            (
                "u".repeat(216),
                "p".to_owned(),
                AuthMethod::Apop,
                Some("APOP"),
            ),
        ] {
            let login = Login::using(method, Credentials::password(user, pass));
            match (
                prepare(&login, &caps, ts, true, NonceSource::none()),
                refused,
            ) {
                (Ok(_), None) => {}
                (Err(Misuse::CommandTooLong { command, limit }), Some(expected)) => {
                    assert_eq!((command, limit), (expected, 255));
                }
                (other, _) => panic!("{method:?} {refused:?}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn automatic_choice_order() {
        let password = Credentials::password("u", "p");
        let token = Credentials::oauth2("u", "t");
        let mut caps = Capabilities {
            announced: true,
            user: true,
            sasl: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
            ..Capabilities::default()
        };
        let ts = Some("<1@x>");
        for tls in [true, false] {
            assert_eq!(
                choose(&password, &caps, ts, tls),
                Ok(AuthMethod::Sasl(Mechanism::ScramSha256))
            );
            assert_eq!(
                choose(&token, &caps, ts, tls),
                Err(Misuse::NoSuitableMethod)
            );
        }
        caps.sasl.clear();
        // Issue 16: a greeting timestamp is no promise that APOP works (mailutils pop3d).
        // Inside TLS USER/PASS wins; without TLS APOP keeps the password off the wire.
        assert_eq!(choose(&password, &caps, ts, true), Ok(AuthMethod::UserPass));
        assert_eq!(choose(&password, &caps, ts, false), Ok(AuthMethod::Apop));
        assert_eq!(
            choose(&password, &caps, None, true),
            Ok(AuthMethod::UserPass)
        );
        caps.user = false;
        // APOP when it is the only method left.
        assert_eq!(choose(&password, &caps, ts, true), Ok(AuthMethod::Apop));
        assert_eq!(
            choose(&password, &caps, None, true),
            Err(Misuse::NoSuitableMethod)
        );
        let unknown = Capabilities::default();
        assert_eq!(
            choose(&password, &unknown, None, true),
            Ok(AuthMethod::UserPass)
        );
        assert_eq!(
            choose(&password, &unknown, ts, true),
            Ok(AuthMethod::UserPass)
        );
    }
}
