//! Where SCRAM's client nonce comes from when the caller passes none.
//!
//! The sans-IO cores read no random source of their own accord: their configuration carries a
//! [`NonceSource`], a plain function that fills a buffer. The default asks the operating system
//! (`getrandom`); tests inject a fixed one to get reproducible transcripts. A caller that
//! passes its own nonce bypasses the source entirely.

use std::borrow::Cow;

use super::{Mechanism, SaslError};

/// Bytes drawn for one nonce: 24 random bytes become 32 base64 characters on the wire, more
/// than the 18 bytes RFC 5802 implementations commonly use.
pub const NONCE_LEN: usize = 24;

/// A function that fills a buffer with fresh random bytes, or explains why it cannot.
pub type FillRandom = fn(&mut [u8]) -> Result<(), String>;

/// Where the cores get a SCRAM client nonce when the caller passes none.
///
/// ```
/// use mail_common::sasl::{Mechanism, NonceSource};
///
/// // Tests: the same nonce every time.
/// let fixed = NonceSource::new(|buf| {
///     buf.fill(7);
///     Ok(())
/// });
/// let nonce = fixed.nonce_for(Mechanism::ScramSha256, &[]).unwrap();
/// assert_eq!(&*nonce, &[7; 24][..]);
/// // A nonce the caller passed wins, and mechanisms without a nonce get none.
/// assert_eq!(&*fixed.nonce_for(Mechanism::ScramSha1, b"mine").unwrap(), b"mine");
/// assert!(fixed.nonce_for(Mechanism::Plain, &[]).unwrap().is_empty());
/// // The default asks the operating system.
/// let a = NonceSource::default().nonce_for(Mechanism::ScramSha256, &[]).unwrap();
/// let b = NonceSource::default().nonce_for(Mechanism::ScramSha256, &[]).unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy)]
pub struct NonceSource {
    fill: FillRandom,
}

impl NonceSource {
    /// A source that calls `fill` for every nonce it is asked for.
    pub const fn new(fill: FillRandom) -> Self {
        Self { fill }
    }

    /// The operating system's random source (`getrandom`). The default.
    pub const fn system() -> Self {
        Self::new(system_fill)
    }

    /// A source that never produces a nonce: SCRAM then needs one from the caller, and fails
    /// with [`SaslError::NonceUnavailable`] without it.
    pub const fn none() -> Self {
        Self::new(|_| Err("no random source configured".to_owned()))
    }

    /// The nonce for starting `mechanism`: `given` when it is not empty or the mechanism needs
    /// no nonce, otherwise [`NONCE_LEN`] fresh bytes from the source.
    pub fn nonce_for(self, mechanism: Mechanism, given: &[u8]) -> Result<Cow<'_, [u8]>, SaslError> {
        let needs_nonce = matches!(
            mechanism,
            Mechanism::ScramSha1 | Mechanism::ScramSha256 | Mechanism::Ntlm
        );
        if !given.is_empty() || !needs_nonce {
            return Ok(Cow::Borrowed(given));
        }
        let mut fresh = vec![0; NONCE_LEN];
        (self.fill)(&mut fresh).map_err(SaslError::NonceUnavailable)?;
        Ok(Cow::Owned(fresh))
    }
}

fn system_fill(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| e.to_string())
}

impl Default for NonceSource {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if std::ptr::fn_addr_eq(self.fill, system_fill as FillRandom) {
            f.write_str("NonceSource(system)")
        } else {
            f.write_str("NonceSource(custom)")
        }
    }
}

/// Two sources are equal when they call the same function (configurations compare equal when
/// cloned; distinct closures with the same body may or may not compare equal).
impl PartialEq for NonceSource {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.fill, other.fill)
    }
}

impl Eq for NonceSource {}
