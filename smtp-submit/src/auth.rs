//! SMTP AUTH (RFC 4954): the method choice, and the framing constants handed to
//! `mail_common::sasl::AuthExchange`, which runs the exchange for POP3 and SMTP alike.

use mail_common::sasl::{Framing, Mechanism};

/// RFC 5321 section 4.5.3.1.4: a command line, CRLF included, is at most 512 octets; RFC 4954
/// challenges are `334 ` replies.
pub(crate) const FRAMING: Framing = Framing::new(512, "334 ");

/// Which SASL mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// The strongest mechanism both the server and the credentials support
    /// (`mail_common::sasl::choose`). Never falls back to a weaker one after a failure.
    #[default]
    Auto,
    /// Exactly this mechanism; refused before sending if the server does not offer it.
    Mechanism(Mechanism),
}
