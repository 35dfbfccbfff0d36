//! What the server says it supports (RFC 2449 `CAPA`), as a struct the session logic and the
//! caller can query without re-parsing text.

use mail_common::sasl::Mechanism;

/// One line of a `CAPA` response, recognised. Produced by the `CAPA` line parser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `TOP`.
    Top,
    /// `UIDL`.
    Uidl,
    /// `USER`: USER/PASS login is available.
    User,
    /// `STLS` (RFC 2595).
    Stls,
    /// `PIPELINING`.
    Pipelining,
    /// `RESP-CODES`: `-ERR` replies carry response codes.
    RespCodes,
    /// `AUTH-RESP-CODE` (RFC 3206): login failures carry `[AUTH]` or `[SYS/...]`.
    AuthRespCode,
    /// `SASL mech...`: the mechanisms, upper-cased.
    Sasl(Vec<String>),
    /// `LOGIN-DELAY n [USER]`.
    LoginDelay(Policy<u64>),
    /// `EXPIRE n|NEVER [USER]`.
    Expire(Policy<Expire>),
    /// `UTF8 [USER]` (RFC 6856).
    Utf8 {
        /// `USER` argument: user names and passwords may be UTF-8 in USER/PASS.
        user: bool,
    },
    /// `IMPLEMENTATION text`.
    Implementation(String),
    /// Anything else (or a known name with arguments that do not parse), as sent.
    Other(OtherCapability),
}

/// A value announced with an optional `USER` flag: with the flag the value may differ per
/// user, and the one sent before login is only the server-wide minimum (RFC 2449).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<T> {
    /// The announced value.
    pub value: T,
    /// `USER` was given: ask again after login for the user's own value.
    pub per_user: bool,
}

/// The `EXPIRE` retention announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expire {
    /// `EXPIRE NEVER`: the server keeps messages until they are deleted.
    Never,
    /// `EXPIRE n`: messages may be deleted `n` days after they were first retrieved. `0`
    /// means on retrieval, whatever the client does.
    Days(u32),
}

/// A capability this crate does not interpret, kept so callers can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherCapability {
    /// The capability name, as sent.
    pub name: String,
    /// Its arguments, as sent.
    pub args: Vec<String>,
}

/// The server's capabilities.
///
/// Names are matched ignoring ASCII case. A server that answers `CAPA` with `-ERR` (an RFC
/// 1939-only server) yields [`Capabilities::default`], with [`Capabilities::announced`]
/// `false`: then nothing is known, rather than everything being absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The server answered `CAPA` positively.
    pub announced: bool,
    /// `TOP`.
    pub top: bool,
    /// `UIDL`.
    pub uidl: bool,
    /// `USER`.
    pub user: bool,
    /// `STLS`.
    pub stls: bool,
    /// `PIPELINING`.
    pub pipelining: bool,
    /// `RESP-CODES`.
    pub resp_codes: bool,
    /// `AUTH-RESP-CODE`.
    pub auth_resp_code: bool,
    /// The `SASL` mechanism names, upper-cased, in the server's order.
    pub sasl: Vec<String>,
    /// `LOGIN-DELAY`, in seconds.
    pub login_delay: Option<Policy<u64>>,
    /// `EXPIRE`.
    pub expire: Option<Policy<Expire>>,
    /// `UTF8`; `Some(true)` when it came with `USER`.
    pub utf8: Option<bool>,
    /// `IMPLEMENTATION`.
    pub implementation: Option<String>,
    /// Capabilities not interpreted here.
    pub other: Vec<OtherCapability>,
}

impl Capabilities {
    /// Builds the capabilities from the lines of a `CAPA` response (terminator excluded).
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut caps = Self {
            announced: true,
            ..Self::default()
        };
        for capability in lines.into_iter().filter_map(crate::parse::capability) {
            caps.add(capability);
        }
        caps
    }

    /// Records one capability.
    pub fn add(&mut self, capability: Capability) {
        match capability {
            Capability::Top => self.top = true,
            Capability::Uidl => self.uidl = true,
            Capability::User => self.user = true,
            Capability::Stls => self.stls = true,
            Capability::Pipelining => self.pipelining = true,
            Capability::RespCodes => self.resp_codes = true,
            Capability::AuthRespCode => self.auth_resp_code = true,
            Capability::Sasl(names) => self.sasl.extend(names),
            Capability::LoginDelay(policy) => self.login_delay = Some(policy),
            Capability::Expire(policy) => self.expire = Some(policy),
            Capability::Utf8 { user } => self.utf8 = Some(user),
            Capability::Implementation(text) => self.implementation = Some(text),
            Capability::Other(other) => self.other.push(other),
        }
    }

    /// The announced SASL mechanisms this crate can run, in the server's order.
    pub fn sasl_mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        self.sasl
            .iter()
            .filter_map(|name| Mechanism::from_name(name))
    }

    /// Whether a capability this crate does not interpret was announced (ASCII case ignored).
    pub fn has_other(&self, name: &str) -> bool {
        self.other.iter().any(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::{Capabilities, Expire, Policy};

    #[test]
    fn dovecot_capa_before_stls() {
        let lines: [&[u8]; 9] = [
            b"CAPA",
            b"TOP",
            b"UIDL",
            b"RESP-CODES",
            b"PIPELINING",
            b"AUTH-RESP-CODE",
            b"STLS",
            b"USER",
            b"SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256",
        ];
        let caps = Capabilities::from_lines(lines);
        assert!(caps.announced && caps.top && caps.uidl && caps.resp_codes && caps.pipelining);
        assert!(caps.auth_resp_code && caps.stls && caps.user);
        assert_eq!(
            caps.sasl,
            ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
        );
        assert_eq!(caps.sasl_mechanisms().count(), 5);
        assert!(caps.has_other("capa"));
    }

    #[test]
    fn case_arguments_and_unknowns() {
        let lines: [&[u8]; 8] = [
            b"top",
            b"Login-Delay 900 USER",
            b"EXPIRE NEVER",
            b"utf8 user",
            b"IMPLEMENTATION Shlemazle Plotz v302",
            b"X-FOO a b",
            b"sasl xoauth2 X-UNKNOWN",
            b"",
        ];
        let caps = Capabilities::from_lines(lines);
        assert!(caps.top);
        assert_eq!(
            caps.login_delay,
            Some(Policy {
                value: 900,
                per_user: true
            })
        );
        assert_eq!(
            caps.expire,
            Some(Policy {
                value: Expire::Never,
                per_user: false
            })
        );
        assert_eq!(caps.utf8, Some(true));
        assert_eq!(caps.implementation.as_deref(), Some("Shlemazle Plotz v302"));
        assert_eq!(caps.other.len(), 1);
        assert_eq!(caps.other[0].name, "X-FOO");
        assert_eq!(caps.other[0].args, ["a", "b"]);
        assert_eq!(caps.sasl, ["XOAUTH2", "X-UNKNOWN"]);
        assert_eq!(caps.sasl_mechanisms().count(), 1);
    }
}
