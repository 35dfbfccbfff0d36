//! Whether a refusal from the server is worth retrying later.

/// The class of a server refusal (an SMTP 4xx/5xx reply, a POP3 `-ERR`).
///
/// SMTP derives it from the reply code (RFC 5321 section 4.2.1) or the enhanced status code
/// (RFC 3463); POP3 from the response code (RFC 2449, RFC 3206): `[SYS/TEMP]`, `[IN-USE]` and
/// `[LOGIN-DELAY]` are transient, `[SYS/PERM]` and `[AUTH]` are permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// The same request may succeed later without any change (4xx, `[SYS/TEMP]`).
    Transient,
    /// Retrying the same request will fail again (5xx, `[SYS/PERM]`, `[AUTH]`).
    Permanent,
}

impl FailureClass {
    /// True for [`FailureClass::Transient`].
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Transient)
    }
}
