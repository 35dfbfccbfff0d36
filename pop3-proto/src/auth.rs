//! Logging in: choosing the method, and running USER/PASS or APOP as a small step machine that
//! turns server replies into lines to send. An RFC 5034 `AUTH` exchange is
//! `mail_common::sasl::AuthExchange` with POP3's [`FRAMING`]; this module only maps its
//! outcome to POP3 replies, events and errors.
//!
//! Kept apart from the session logic because it is where secrets live: everything derived from
//! a password or token stays in a [`Secret`] until the moment it is appended to the transmit
//! buffer, and each line carries a redacted rendering for logs.

use std::fmt::Write as _;

use md5::{Digest as _, Md5};

use mail_common::sasl::{
    self, AuthExchange, AuthLine, Credentials, Framing, NonceSource, Refusal, SaslClient,
};
use mail_common::{Secret, check_arg};

use crate::capabilities::Capabilities;
use crate::command::{AuthMethod, Login};
use crate::error::{Malformed, Misuse, ProtocolError};
use crate::event::LoginFailure;
use crate::parse::{self, Status};

/// RFC 2449 section 4 / RFC 5034 section 4: a command line is at most 255 octets, CRLF
/// included.
const MAX_COMMAND_LINE: usize = 255;

/// RFC 5034 `AUTH`: the 255-octet line and `+ ` continuations; the rest of the exchange is
/// mail-common's.
pub(crate) const FRAMING: Framing = Framing::new(MAX_COMMAND_LINE, "+ ");

/// A command line to send (CRLF not included) and what to log instead of it.
pub(crate) struct Line {
    pub(crate) bytes: Secret<Vec<u8>>,
    pub(crate) shown: String,
}

impl From<AuthLine> for Line {
    fn from(line: AuthLine) -> Self {
        Self {
            bytes: line.bytes,
            shown: line.shown,
        }
    }
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
        (false, false) => Err(Misuse::NoSuitableMethod {
            offered: caps.sasl.clone(),
        }),
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

enum Step {
    /// `USER` sent; `PASS` follows a positive reply.
    User {
        password: Secret<String>,
    },
    /// `PASS` or `APOP` sent: the next reply decides.
    Final,
    Sasl(Box<AuthExchange>),
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
    /// Starts a login: the exchange and its first line. `max_challenges` caps the SASL
    /// challenges answered.
    pub(crate) fn start(
        method: AuthMethod,
        plan: LoginPlan,
        max_challenges: usize,
    ) -> (Self, Line) {
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
            LoginPlan::Sasl(client) => {
                let (exchange, line) = AuthExchange::start(FRAMING, *client, max_challenges);
                (Step::Sasl(Box::new(exchange)), line.into())
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
    ) -> Result<Progress, ProtocolError> {
        let step = std::mem::replace(&mut self.step, Step::Final);
        match (step, status) {
            (Step::User { password }, Status::Ok(_)) => {
                let bytes = format!("PASS {}", password.expose()).into_bytes();
                Ok(Progress::Send(Line::secret(bytes, "PASS [redacted]")))
            }
            (Step::Final, Status::Ok(_)) => Ok(Progress::Succeeded),
            (Step::User { .. } | Step::Final, Status::Err(text)) => {
                Ok(Progress::Failed(self.failure(text, Refusal::default())))
            }
            (Step::User { .. } | Step::Final, Status::Continuation(_)) => {
                Err(ProtocolError::Malformed {
                    kind: Malformed::UnexpectedContinuation,
                    excerpt: parse::excerpt(line),
                })
            }
            (Step::Sasl(mut exchange), Status::Ok(_)) => {
                exchange.on_success().map_err(ProtocolError::Auth)?;
                Ok(Progress::Succeeded)
            }
            (Step::Sasl(exchange), Status::Err(text)) => Ok(Progress::Failed(
                self.failure(text, exchange.into_refusal()),
            )),
            (Step::Sasl(mut exchange), Status::Continuation(text)) => {
                let reply = exchange.on_challenge(text).map_err(ProtocolError::Auth)?;
                self.step = Step::Sasl(exchange);
                Ok(Progress::Send(reply.into()))
            }
        }
    }

    fn failure(&self, text: &[u8], refusal: Refusal) -> LoginFailure {
        LoginFailure {
            method: self.method,
            response: parse::response(text),
            aborted: refusal.aborted,
            oauth_error: refusal.oauth_error,
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
                Err(Misuse::NoSuitableMethod {
                    offered: caps.sasl.clone()
                })
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
            Err(Misuse::NoSuitableMethod { offered: vec![] })
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
