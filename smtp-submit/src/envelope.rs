//! The typed envelope: who the message is from and to, and the `MAIL`/`RCPT` parameters.
//!
//! Values are validated where they are built, so a command line can never be extended or split
//! by caller data: [`Address`] and [`ClientName`] refuse CR, LF, NUL, other control characters,
//! spaces and angle brackets. Free-text DSN values (ENVID, ORCPT) are checked for CR/LF/NUL when
//! the transaction starts and are then xtext-encoded (RFC 3461 section 4), which leaves only
//! printable ASCII without `+`, `=` or spaces on the wire.
//!
//! ```
//! use smtp_submit::{Address, Envelope, Notify, Recipient};
//! let envelope = Envelope::new(Some(Address::new("alice@example.org")?))
//!     .with_recipient(Address::new("bob@example.org")?)
//!     .with_recipient(
//!         Recipient::new(Address::new("carol@example.org")?).with_notify(Notify::on_failure()),
//!     );
//! assert_eq!(envelope.recipients().len(), 2);
//! assert!(Address::new("bob@example.org>\r\nRSET").is_err());
//! # Ok::<(), smtp_submit::InvalidValue>(())
//! ```

use std::fmt;

use mail_common::check_arg;

/// The longest mailbox accepted: RFC 5321 section 4.5.3.1.3 limits a path, brackets included,
/// to 256 octets.
pub const MAX_ADDRESS_LEN: usize = 254;

/// The longest client name accepted (a domain name is at most 255 octets).
pub const MAX_CLIENT_NAME_LEN: usize = 255;

/// A value was refused when building an [`Address`] or a [`ClientName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The value is longer than allowed.
    #[error("value of {length} bytes is longer than the limit of {max}")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The value contains a character that would break or extend the command line.
    #[error("character {character:?} at byte {position} is not allowed here")]
    ForbiddenCharacter {
        /// The character.
        character: char,
        /// Its byte offset.
        position: usize,
    },
}

fn validate(value: &str, max: usize, allow_non_ascii: bool) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if let Err(forbidden) = check_arg(value) {
        return Err(InvalidValue::ForbiddenCharacter {
            character: char::from(forbidden.byte),
            position: forbidden.position,
        });
    }
    if let Some((position, character)) = value.char_indices().find(|&(_, c)| {
        c.is_control() || c == ' ' || c == '<' || c == '>' || (!allow_non_ascii && !c.is_ascii())
    }) {
        return Err(InvalidValue::ForbiddenCharacter {
            character,
            position,
        });
    }
    if value.len() > max {
        return Err(InvalidValue::TooLong {
            length: value.len(),
            max,
        });
    }
    Ok(())
}

/// A mailbox for `MAIL FROM` or `RCPT TO`, validated on construction.
///
/// Non-ASCII (internationalised) addresses are allowed; a transaction that uses one requires
/// the server's SMTPUTF8 extension and carries the `SMTPUTF8` parameter.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    /// Validates a mailbox: non-empty, at most [`MAX_ADDRESS_LEN`] bytes, without CR, LF, NUL,
    /// control characters, spaces, `<` or `>`.
    pub fn new(address: impl Into<String>) -> Result<Self, InvalidValue> {
        let address = address.into();
        validate(&address, MAX_ADDRESS_LEN, true)?;
        Ok(Self(address))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the address needs SMTPUTF8.
    pub fn is_internationalized(&self) -> bool {
        !self.0.is_ascii()
    }
}

impl std::str::FromStr for Address {
    type Err = InvalidValue;

    /// [`Address::new`]: `"bob@example.org".parse::<Address>()?`.
    fn from_str(address: &str) -> Result<Self, Self::Err> {
        Self::new(address)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name the client gives in EHLO/HELO: a domain or an address literal such as
/// `[192.0.2.1]`. ASCII only, validated like an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientName(String);

impl ClientName {
    /// Validates a client name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidValue> {
        let name = name.into();
        validate(&name, MAX_CLIENT_NAME_LEN, false)?;
        Ok(Self(name))
    }

    /// `localhost`: what a desktop client without a name of its own in the DNS says.
    /// Submission servers (RFC 6409) authenticate the user, not the EHLO name, and accept it.
    pub fn localhost() -> Self {
        Self("localhost".to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When the server should send delivery status notifications for a recipient (RFC 3461
/// `NOTIFY`). The empty set means `NOTIFY=NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Notify {
    success: bool,
    failure: bool,
    delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const fn never() -> Self {
        Self {
            success: false,
            failure: false,
            delay: false,
        }
    }

    /// `NOTIFY=FAILURE`.
    pub const fn on_failure() -> Self {
        Self::never().and_failure()
    }

    /// Adds `SUCCESS`.
    #[must_use]
    pub const fn and_success(mut self) -> Self {
        self.success = true;
        self
    }

    /// Adds `FAILURE`.
    #[must_use]
    pub const fn and_failure(mut self) -> Self {
        self.failure = true;
        self
    }

    /// Adds `DELAY`.
    #[must_use]
    pub const fn and_delay(mut self) -> Self {
        self.delay = true;
        self
    }

    fn keyword_list(self) -> String {
        let names: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            "NEVER".to_owned()
        } else {
            names.join(",")
        }
    }
}

/// One recipient with its DSN options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    address: Address,
    notify: Option<Notify>,
    original: Option<String>,
}

impl Recipient {
    /// A recipient without DSN options.
    pub const fn new(address: Address) -> Self {
        Self {
            address,
            notify: None,
            original: None,
        }
    }

    /// Sets `NOTIFY` (requires the server's DSN extension).
    #[must_use]
    pub const fn with_notify(mut self, notify: Notify) -> Self {
        self.notify = Some(notify);
        self
    }

    /// Sets `ORCPT=rfc822;<xtext>` with the original recipient address (requires DSN).
    /// Checked for CR/LF/NUL when the transaction starts.
    #[must_use]
    pub fn with_original_recipient(mut self, original: impl Into<String>) -> Self {
        self.original = Some(original.into());
        self
    }

    /// The address.
    pub const fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn uses_dsn(&self) -> bool {
        self.notify.is_some() || self.original.is_some()
    }
}

impl From<Address> for Recipient {
    fn from(address: Address) -> Self {
        Self::new(address)
    }
}

/// The sender and recipients of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    from: Option<Address>,
    recipients: Vec<Recipient>,
}

impl Envelope {
    /// An envelope without recipients yet. `None` is the null reverse-path `<>` used for
    /// bounces and other automatic replies.
    pub const fn new(from: Option<Address>) -> Self {
        Self {
            from,
            recipients: Vec::new(),
        }
    }

    /// An envelope from `sender` (`MAIL FROM`), without recipients yet: the common case of
    /// [`Envelope::new`].
    ///
    /// ```
    /// use smtp_submit::Envelope;
    /// # fn main() -> Result<(), smtp_submit::InvalidValue> {
    /// let envelope = Envelope::mail_from("alice@example.org".parse()?)
    ///     .to("bob@example.org".parse()?)
    ///     .to("carol@example.org".parse()?);
    /// assert_eq!(envelope.recipients().len(), 2);
    /// # Ok(()) }
    /// ```
    pub const fn mail_from(sender: Address) -> Self {
        Self::new(Some(sender))
    }

    /// Adds a recipient address (`RCPT TO`) without DSN parameters; a [`Recipient`] with them
    /// goes through [`Envelope::with_recipient`]. Taking only an [`Address`] lets
    /// `.to("bob@example.org".parse()?)` infer the type.
    #[must_use]
    pub fn to(self, address: Address) -> Self {
        self.with_recipient(address)
    }

    /// Adds a recipient.
    #[must_use]
    pub fn with_recipient(mut self, recipient: impl Into<Recipient>) -> Self {
        self.recipients.push(recipient.into());
        self
    }

    /// Adds a recipient.
    pub fn add_recipient(&mut self, recipient: impl Into<Recipient>) {
        self.recipients.push(recipient.into());
    }

    /// The reverse-path; `None` is `<>`.
    pub const fn from(&self) -> Option<&Address> {
        self.from.as_ref()
    }

    /// The recipients, in the order they are sent.
    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// The recipient addresses, consuming the envelope.
    pub(crate) fn recipient_addresses(&self) -> Vec<Address> {
        self.recipients.iter().map(|r| r.address.clone()).collect()
    }

    pub(crate) fn is_internationalized(&self) -> bool {
        self.from
            .as_ref()
            .is_some_and(Address::is_internationalized)
            || self
                .recipients
                .iter()
                .any(|r| r.address.is_internationalized())
    }
}

/// The body type declared with `BODY=` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyType {
    /// `BODY=7BIT`: ASCII only.
    SevenBit,
    /// `BODY=8BITMIME`: octets above 127 in the body (requires 8BITMIME).
    EightBitMime,
}

/// What a failure DSN should return of the message (RFC 3461 `RET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: the headers only.
    Headers,
}

/// Parameters of `MAIL FROM`. Every extension-dependent option is checked against the server's
/// capabilities before anything is sent: asking for something the server does not offer is a
/// [`Misuse`](crate::Misuse), never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MailOptions {
    /// `SIZE=n`: the caller's estimate of the message size; checked against the server's limit.
    /// Sent only when the server advertises SIZE. [`Client::send_mail_bytes`](crate::Client::send_mail_bytes)
    /// fills it in when unset.
    pub size: Option<u64>,
    /// `BODY=`. [`Client::send_mail_bytes`](crate::Client::send_mail_bytes) declares
    /// `8BITMIME` by itself when the body has 8-bit octets and this is unset;
    /// [`Client::send_mail`](crate::Client::send_mail) whenever the server offers it.
    pub body: Option<BodyType>,
    /// Adds `SMTPUTF8` even when all addresses are ASCII (for UTF-8 headers of a streamed
    /// message). Added automatically for internationalised addresses, and for UTF-8 headers of
    /// a body given whole.
    pub smtputf8: bool,
    /// `RET=` (DSN).
    pub ret: Option<Ret>,
    /// `ENVID=` (DSN), xtext-encoded on the wire; at most 100 characters once encoded.
    pub envid: Option<String>,
    /// `REQUIRETLS` (RFC 8689): only over TLS and only when offered.
    pub require_tls: bool,
}

impl MailOptions {
    /// Sets `SIZE=`.
    #[must_use]
    pub const fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
    /// Sets `BODY=`.
    #[must_use]
    pub const fn with_body_type(mut self, body: BodyType) -> Self {
        self.body = Some(body);
        self
    }
    /// Requests `SMTPUTF8`.
    #[must_use]
    pub const fn with_smtputf8(mut self) -> Self {
        self.smtputf8 = true;
        self
    }
    /// Sets `RET=`.
    #[must_use]
    pub const fn with_ret(mut self, ret: Ret) -> Self {
        self.ret = Some(ret);
        self
    }
    /// Sets `ENVID=`.
    #[must_use]
    pub fn with_envid(mut self, envid: impl Into<String>) -> Self {
        self.envid = Some(envid.into());
        self
    }
    /// Requests `REQUIRETLS`.
    #[must_use]
    pub const fn with_require_tls(mut self) -> Self {
        self.require_tls = true;
        self
    }

    pub(crate) const fn uses_dsn(&self) -> bool {
        self.ret.is_some() || self.envid.is_some()
    }
}

/// Encodes `value` as RFC 3461 xtext: printable ASCII except `+` and `=` stays, every other
/// octet becomes `+XX`.
pub fn xtext(value: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// Builds the `MAIL FROM` parameter string (leading space included) from validated parts.
pub(crate) fn mail_params(
    options: &MailOptions,
    size: Option<u64>,
    smtputf8: bool,
    envid: Option<&str>,
) -> String {
    let mut params = String::new();
    if let Some(size) = size {
        params.push_str(" SIZE=");
        params.push_str(&size.to_string());
    }
    match options.body {
        Some(BodyType::SevenBit) => params.push_str(" BODY=7BIT"),
        Some(BodyType::EightBitMime) => params.push_str(" BODY=8BITMIME"),
        None => {}
    }
    if smtputf8 {
        params.push_str(" SMTPUTF8");
    }
    match options.ret {
        Some(Ret::Full) => params.push_str(" RET=FULL"),
        Some(Ret::Headers) => params.push_str(" RET=HDRS"),
        None => {}
    }
    if let Some(envid) = envid {
        params.push_str(" ENVID=");
        params.push_str(envid);
    }
    if options.require_tls {
        params.push_str(" REQUIRETLS");
    }
    params
}

/// Builds the `RCPT TO` parameter string (leading space included); `orcpt` is the complete,
/// already encoded value (`rfc822;...`).
pub(crate) fn rcpt_params(recipient: &Recipient, orcpt: Option<&str>) -> String {
    let mut params = String::new();
    if let Some(notify) = recipient.notify {
        params.push_str(" NOTIFY=");
        params.push_str(&notify.keyword_list());
    }
    if let Some(orcpt) = orcpt {
        params.push_str(" ORCPT=");
        params.push_str(orcpt);
    }
    params
}

pub(crate) const fn original_recipient(recipient: &Recipient) -> Option<&String> {
    recipient.original.as_ref()
}

#[cfg(test)]
mod tests {
    use super::{Address, ClientName, InvalidValue, Notify, xtext};

    #[test]
    fn address_validation() {
        assert!(Address::new("a@b").is_ok());
        assert!(
            Address::new("δοκιμή@παράδειγμα.δοκιμή")
                .unwrap()
                .is_internationalized()
        );
        assert_eq!(Address::new(""), Err(InvalidValue::Empty));
        for (bad, character, position) in [
            ("a\r\nRSET", '\r', 1),
            ("a\nb", '\n', 1),
            ("a\0b", '\0', 1),
            ("a b", ' ', 1),
            ("a>b", '>', 1),
            ("<ab", '<', 0),
            ("a\tb", '\t', 1),
            ("a\u{7f}", '\u{7f}', 1),
            ("a\u{85}", '\u{85}', 1),
        ] {
            assert_eq!(
                Address::new(bad),
                Err(InvalidValue::ForbiddenCharacter {
                    character,
                    position
                }),
                "{bad:?}"
            );
        }
        assert!(Address::new("a".repeat(254)).is_ok());
        assert_eq!(
            Address::new("a".repeat(255)),
            Err(InvalidValue::TooLong {
                length: 255,
                max: 254
            })
        );
    }

    #[test]
    fn client_name_is_ascii() {
        assert!(ClientName::new("[192.0.2.1]").is_ok());
        assert!(ClientName::new("bücher.example").is_err());
        assert!(ClientName::new("host\r\nMAIL FROM:<x>").is_err());
    }

    #[test]
    fn xtext_and_notify() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
        assert_eq!(Notify::never().keyword_list(), "NEVER");
        assert_eq!(
            Notify::on_failure()
                .and_delay()
                .and_success()
                .keyword_list(),
            "SUCCESS,FAILURE,DELAY"
        );
    }
}
