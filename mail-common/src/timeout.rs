//! [`Timeout`]: the one shape of "a deadline passed" in both protocols' adapters.
//!
//! A deadline passes either while the connection is being set up (TCP connect, a TLS
//! handshake: [`SetupPhase`], with the limit) or while the server owes an answer (the core's
//! own phase type, `P`: the greeting, a reply, a message body, ...). Both adapters report it
//! this way, so a caller (or `mail-account`'s diagnosis) reads one vocabulary.

use std::fmt;
use std::time::Duration;

/// A step of connection set-up, for timeout errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetupPhase {
    /// The TCP connection.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
}

impl fmt::Display for SetupPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "TCP connect",
            Self::TlsHandshake => "TLS handshake",
        })
    }
}

/// A deadline that passed. `P` is the protocol core's phase (`pop3_proto::Phase`,
/// `smtp_submit::Phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout<P> {
    /// Connection set-up: TCP connect or a TLS handshake.
    Setup {
        /// Which step.
        phase: SetupPhase,
        /// The limit that passed.
        after: Duration,
    },
    /// The server did not answer (or did not take the data) in time.
    Server {
        /// What the client was waiting for.
        phase: P,
    },
}

impl<P> Timeout<P> {
    /// The set-up step, for a set-up timeout.
    pub const fn setup_phase(&self) -> Option<SetupPhase> {
        match self {
            Self::Setup { phase, .. } => Some(*phase),
            Self::Server { .. } => None,
        }
    }

    /// The core's phase, for a server timeout.
    pub const fn server_phase(&self) -> Option<&P> {
        match self {
            Self::Setup { .. } => None,
            Self::Server { phase } => Some(phase),
        }
    }
}

impl<P: fmt::Display> fmt::Display for Timeout<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup { phase, after } => write!(f, "{phase} timed out after {after:?}"),
            Self::Server { phase } => write!(f, "the server was silent {phase}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_step_and_the_limit() {
        let setup: Timeout<&str> = Timeout::Setup {
            phase: SetupPhase::TlsHandshake,
            after: Duration::from_secs(10),
        };
        assert_eq!(setup.to_string(), "TLS handshake timed out after 10s");
        assert_eq!(setup.setup_phase(), Some(SetupPhase::TlsHandshake));
        let server = Timeout::Server {
            phase: "waiting for the greeting",
        };
        assert_eq!(
            server.to_string(),
            "the server was silent waiting for the greeting"
        );
        assert_eq!(server.server_phase(), Some(&"waiting for the greeting"));
    }
}
