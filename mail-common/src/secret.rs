//! A wrapper for values that must never reach logs: passwords, OAuth tokens, SASL responses.

use std::fmt;

/// Holds a secret value. `Debug` prints `Secret([redacted])`; there is no `Display`.
///
/// The value is reachable only through [`Secret::expose`], which makes every place that handles
/// the plaintext easy to find.
///
/// ```
/// use mail_common::Secret;
/// let password = Secret::new(String::from("hunter2"));
/// assert_eq!(format!("{password:?}"), "Secret([redacted])");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Gives access to the secret value.
    pub const fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_is_redacted_even_nested() {
        let s = Secret::new(vec![b'p', b'w']);
        let nested = Some((1, Secret::new("top-secret")));
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{nested:?}").contains("top-secret"));
        assert!(!format!("{nested:#?}").contains("top-secret"));
    }
}
