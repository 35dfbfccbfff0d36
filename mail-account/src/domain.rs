//! Mail addresses and domain names: UTS-46 (IDN) conversion and Public Suffix List reduction.
//!
//! Every DNS name and URL host that discovery uses goes through [`to_ascii_domain`] first, so a
//! domain typed as `bücher.example` is asked for as `xn--bcher-kva.example`.

use std::fmt;

/// A mail address split into its local part and domain, with the domain in both forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    local: String,
    domain: String,
    ascii_domain: String,
}

/// An address or domain that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `@`, or an empty local part or domain.
    #[error("{0:?} is not a mail address (expected local@domain)")]
    NotAnAddress(String),
    /// The domain is not valid under UTS-46.
    #[error("{domain:?} is not a valid domain name: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// What UTS-46 processing reported.
        reason: String,
    },
}

impl EmailAddress {
    /// Parses `local@domain`. The last `@` separates the two parts (a quoted local part may
    /// contain `@`). The domain is converted with UTS-46 and lowercased.
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        let address = address.trim();
        let (local, domain) = address
            .rsplit_once('@')
            .filter(|(l, d)| !l.is_empty() && !d.is_empty())
            .ok_or_else(|| AddressError::NotAnAddress(address.to_owned()))?;
        if local
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() && !local.starts_with('"'))
        {
            return Err(AddressError::NotAnAddress(address.to_owned()));
        }
        let ascii_domain = to_ascii_domain(domain)?;
        let domain = idna::domain_to_unicode(&ascii_domain).0;
        Ok(Self {
            local: local.to_owned(),
            domain,
            ascii_domain,
        })
    }

    /// The local part, as given.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain in Unicode form (lowercased, normalised), for display.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain in ASCII (A-label) form: what DNS and HTTP requests use.
    pub fn ascii_domain(&self) -> &str {
        &self.ascii_domain
    }
}

/// Serialised as the address text (`taro@example.jp`).
impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Converts a domain name to its ASCII form with UTS-46 (IDNA2008, non-transitional), lowercased,
/// without a trailing dot.
///
/// ```
/// use mail_account::domain::to_ascii_domain;
/// assert_eq!(to_ascii_domain("Bücher.Example").unwrap(), "xn--bcher-kva.example");
/// assert_eq!(to_ascii_domain("example.com.").unwrap(), "example.com");
/// ```
pub fn to_ascii_domain(domain: &str) -> Result<String, AddressError> {
    let trimmed = domain.trim().trim_end_matches('.');
    let fail = |reason: String| AddressError::InvalidDomain {
        domain: domain.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(fail("empty".into()));
    }
    let ascii = idna::domain_to_ascii(trimmed).map_err(|e| fail(e.to_string()))?;
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(fail("empty label".into()));
    }
    if !ascii
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(fail("characters not allowed in a host name".into()));
    }
    Ok(ascii)
}

/// The registrable domain ("eTLD+1") of an ASCII host name, by the Public Suffix List:
/// `mx.biglobe.ne.jp` belongs to `biglobe.ne.jp`, not `ne.jp`.
///
/// Returns `None` for a public suffix itself or a name the list does not cover.
///
/// ```
/// use mail_account::domain::registrable_domain;
/// assert_eq!(registrable_domain("mx.biglobe.ne.jp").as_deref(), Some("biglobe.ne.jp"));
/// assert_eq!(registrable_domain("aspmx.l.google.com").as_deref(), Some("google.com"));
/// assert_eq!(registrable_domain("ne.jp"), None);
/// ```
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let found = psl::domain_str(&host)?;
    // The list's implicit "*" rule makes any unknown TLD a suffix; require a known one.
    let suffix = psl::suffix(host.as_bytes())?;
    if !suffix.is_known() {
        return None;
    }
    Some(found.to_owned())
}

/// The host name minus its first label (`mx1.mail.example.net` -> `mail.example.net`), if that
/// leaves at least two labels. Thunderbird tries this before the registrable domain, which tells
/// Microsoft 365 (`*.mail.protection.outlook.com`) from Outlook.com.
pub fn parent_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.');
    let (_, rest) = host.split_once('.')?;
    rest.contains('.').then(|| rest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_converts() {
        let a = EmailAddress::parse("Taro@Bücher.example").unwrap();
        assert_eq!(a.local_part(), "Taro");
        assert_eq!(a.ascii_domain(), "xn--bcher-kva.example");
        assert_eq!(a.domain(), "bücher.example");
        assert_eq!(a.to_string(), "Taro@bücher.example");
        let j = EmailAddress::parse("user@例え.jp").unwrap();
        assert_eq!(j.ascii_domain(), "xn--r8jz45g.jp");
    }

    #[test]
    fn rejects_non_addresses() {
        for bad in [
            "",
            "nobody",
            "@x.jp",
            "x@",
            "a b@x.jp",
            "a@exa mple.jp",
            "a@x..jp",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn psl_reduction() {
        assert_eq!(
            registrable_domain("bgmgate1.biglobe.ne.jp").as_deref(),
            Some("biglobe.ne.jp")
        );
        assert_eq!(
            registrable_domain("mx01.nifty.com").as_deref(),
            Some("nifty.com")
        );
        assert_eq!(
            registrable_domain("a.b.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(
            parent_domain("contoso-com.mail.protection.outlook.com").as_deref(),
            Some("mail.protection.outlook.com")
        );
        assert_eq!(parent_domain("example.com"), None);
    }
}
