//! The Mozilla autoconfig format (`config-v1.1.xml`): provider files served at
//! `autoconfig.<domain>`, `<domain>/.well-known/autoconfig/`, the online ISPDB, and the ISPDB
//! snapshot the bundled table is generated from.
//!
//! Parsing uses `roxmltree` (no DTDs, so no entity expansion). Only POP3, IMAP and SMTP servers
//! are kept; other types (Exchange, EWS, Graph, ...) are listed in [`ClientConfig::skipped`].
//! Placeholders become [`Username`] templates: `%EMAILADDRESS%` -> `{address}`,
//! `%EMAILLOCALPART%` -> `{local}`, `%EMAILDOMAIN%` -> `{domain}`, any other `%NAME%` ->
//! `{input:NAME}`. A missing closing `%` (seen in the ISPDB's office365 file) is tolerated.

use crate::settings::{AuthMethod, Protocol, Security, Username};

/// One server of a provider description.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerEntry {
    /// POP3, IMAP or SMTP.
    pub protocol: Protocol,
    /// Host name; may contain `{domain}` (hosters that serve every customer domain).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode as the source states it (`None` entries are reported, never used).
    pub security: Security,
    /// Username template.
    pub username: Username,
    /// Authentication methods in the source's order of preference (empty: not stated).
    pub auth: Vec<AuthMethod>,
}

impl ServerEntry {
    /// The host with `{domain}` replaced by the address's ASCII domain.
    pub fn host_for(&self, ascii_domain: &str) -> String {
        self.host.replace("{domain}", ascii_domain)
    }

    /// The first stated authentication method, or [`AuthMethod::Automatic`].
    pub fn preferred_auth(&self) -> AuthMethod {
        self.auth.first().copied().unwrap_or(AuthMethod::Automatic)
    }
}

/// A parsed `clientConfig` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientConfig {
    /// The `emailProvider id`.
    pub provider_id: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// The `domain` elements.
    pub domains: Vec<String>,
    /// POP3, IMAP and SMTP servers in document order (the order of preference).
    pub servers: Vec<ServerEntry>,
    /// Servers or values that were not used, with the reason.
    pub skipped: Vec<String>,
    /// `<pop3><leaveMessagesOnServer>` of the first POP3 server.
    pub pop3_leave_on_server: Option<bool>,
    /// `<pop3><daysToLeaveMessagesOnServer>`.
    pub pop3_days_on_server: Option<u32>,
    /// `<enable visiturl>`: a page where access must be switched on, with its instruction.
    pub enable: Option<(String, Option<String>)>,
}

/// An autoconfig document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AutoconfigError {
    /// Not well-formed XML (or it has a DTD).
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but not a `clientConfig` with an `emailProvider`.
    #[error("not an autoconfig document: {0}")]
    NotAutoconfig(&'static str),
}

/// Converts an autoconfig placeholder string to our template syntax.
pub fn convert_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        if name.is_empty() {
            out.push('%');
            rest = after;
            continue;
        }
        let closed = after[name_len..].starts_with('%');
        match name {
            "EMAILADDRESS" => out.push_str("{address}"),
            "EMAILLOCALPART" => out.push_str("{local}"),
            "EMAILDOMAIN" => out.push_str("{domain}"),
            other => {
                out.push_str("{input:");
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[name_len + usize::from(closed)..];
    }
    out.push_str(rest);
    out
}

#[cfg(feature = "discover")]
fn auth_method(value: &str) -> Option<AuthMethod> {
    Some(match value.trim() {
        "password-cleartext" | "plain" => AuthMethod::PasswordCleartext,
        "password-encrypted" | "secure" => AuthMethod::PasswordEncrypted,
        "OAuth2" | "oauth2" => AuthMethod::OAuth2,
        "none" | "client-IP-address" => AuthMethod::None,
        _ => return None,
    })
}

#[cfg(feature = "discover")]
fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::trim)
}

#[cfg(feature = "discover")]
/// Parses a `config-v1.1.xml` document.
pub fn parse(xml: &str) -> Result<ClientConfig, AutoconfigError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| AutoconfigError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if !root.has_tag_name("clientConfig") {
        return Err(AutoconfigError::NotAutoconfig(
            "root element is not clientConfig",
        ));
    }
    let provider = root
        .children()
        .find(|c| c.has_tag_name("emailProvider"))
        .ok_or(AutoconfigError::NotAutoconfig("no emailProvider element"))?;
    let mut config = ClientConfig {
        provider_id: provider.attribute("id").unwrap_or_default().to_owned(),
        display_name: child_text(provider, "displayName").map(str::to_owned),
        ..ClientConfig::default()
    };
    // `<enable>` appears inside `emailProvider` in some files and beside it in others.
    let siblings = root.children().filter(|c| c.has_tag_name("enable"));
    for node in provider
        .children()
        .filter(roxmltree::Node::is_element)
        .chain(siblings)
    {
        match node.tag_name().name() {
            "domain" => {
                if let Some(d) = node.text().map(str::trim).filter(|d| !d.is_empty()) {
                    config.domains.push(d.to_ascii_lowercase());
                }
            }
            "incomingServer" | "outgoingServer" => parse_server(node, &mut config),
            "enable" => {
                if let Some(url) = node.attribute("visiturl") {
                    let instruction = child_text(node, "instruction").map(str::to_owned);
                    config.enable = Some((url.to_owned(), instruction));
                }
            }
            _ => {}
        }
    }
    Ok(config)
}

#[cfg(feature = "discover")]
fn parse_server(node: roxmltree::Node<'_, '_>, config: &mut ClientConfig) {
    let kind = node.attribute("type").unwrap_or("");
    let protocol = match (node.tag_name().name(), kind) {
        ("incomingServer", "pop3") => Protocol::Pop3,
        ("incomingServer", "imap") => Protocol::Imap,
        ("outgoingServer", "smtp") => Protocol::Smtp,
        (_, other) => {
            config
                .skipped
                .push(format!("server type {other:?} (not POP3, IMAP or SMTP)"));
            return;
        }
    };
    let host = child_text(node, "hostname").map(convert_placeholders);
    let port = child_text(node, "port").and_then(|p| p.parse::<u16>().ok());
    let security = match child_text(node, "socketType") {
        Some("SSL" | "TLS") => Some(Security::ImplicitTls),
        Some("STARTTLS") => Some(Security::StartTls),
        Some("plain") => Some(Security::Plaintext),
        _ => None,
    };
    let (Some(host), Some(port), Some(security)) = (host, port, security) else {
        config.skipped.push(format!(
            "{protocol} server without a usable hostname, port or socketType"
        ));
        return;
    };
    let mut auth = Vec::new();
    for a in node.children().filter(|c| c.has_tag_name("authentication")) {
        let text = a.text().unwrap_or("").trim();
        match auth_method(text) {
            Some(m) if !auth.contains(&m) => auth.push(m),
            Some(_) => {}
            None => config
                .skipped
                .push(format!("{protocol} {host}:{port}: authentication {text:?}")),
        }
    }
    let username = child_text(node, "username")
        .filter(|u| !u.is_empty())
        .map_or_else(Username::address, |u| {
            Username::new(convert_placeholders(u))
        });
    if protocol == Protocol::Pop3
        && config.pop3_leave_on_server.is_none()
        && let Some(pop3) = node.children().find(|c| c.has_tag_name("pop3"))
    {
        config.pop3_leave_on_server =
            child_text(pop3, "leaveMessagesOnServer").map(|v| v == "true");
        config.pop3_days_on_server =
            child_text(pop3, "daysToLeaveMessagesOnServer").and_then(|v| v.parse().ok());
    }
    config.servers.push(ServerEntry {
        protocol,
        host: host.to_ascii_lowercase(),
        port,
        security,
        username,
        auth,
    });
}

#[cfg(feature = "discover")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(convert_placeholders("%EMAILADDRESS%"), "{address}");
        assert_eq!(convert_placeholders("%EMAILADDRESS"), "{address}");
        assert_eq!(
            convert_placeholders("%EMAILLOCALPART%.%EMAILDOMAIN%"),
            "{local}.{domain}"
        );
        assert_eq!(convert_placeholders("%CUSTOMERID%"), "{input:CUSTOMERID}");
        assert_eq!(convert_placeholders("mail.%EMAILDOMAIN%"), "mail.{domain}");
        assert_eq!(convert_placeholders("100%"), "100%");
    }

    #[test]
    fn parses_servers_in_order_and_skips_others() {
        let xml = r#"<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.jp">
  <domain>Example.JP</domain><displayName>Example</displayName>
  <incomingServer type="imap"><hostname>imap.example.jp</hostname><port>993</port>
    <socketType>SSL</socketType><username>%EMAILLOCALPART%</username>
    <authentication>password-cleartext</authentication></incomingServer>
  <incomingServer type="pop3"><hostname>pop.example.jp</hostname><port>995</port>
    <socketType>SSL</socketType><username>%EMAILADDRESS%</username>
    <authentication>OAuth2</authentication><authentication>NTLM</authentication>
    <pop3><leaveMessagesOnServer>true</leaveMessagesOnServer>
    <daysToLeaveMessagesOnServer>14</daysToLeaveMessagesOnServer></pop3></incomingServer>
  <incomingServer type="ews"><url>https://x</url></incomingServer>
  <outgoingServer type="smtp"><hostname>smtp.example.jp</hostname><port>25</port>
    <socketType>plain</socketType></outgoingServer>
</emailProvider>
<enable visiturl="https://example.jp/settings"><instruction>Turn POP on</instruction></enable>
</clientConfig>"#;
        let c = parse(xml).unwrap();
        assert_eq!(c.provider_id, "example.jp");
        assert_eq!(c.domains, ["example.jp"]);
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.servers[1].auth, [AuthMethod::OAuth2]);
        assert_eq!(c.servers[2].security, Security::Plaintext);
        assert_eq!(c.servers[2].username, Username::address());
        assert_eq!(c.pop3_leave_on_server, Some(true));
        assert_eq!(c.pop3_days_on_server, Some(14));
        assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
        assert_eq!(c.enable.unwrap().1.as_deref(), Some("Turn POP on"));
    }

    #[test]
    fn rejects_dtd_and_other_documents() {
        let dtd = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><clientConfig/>"#;
        assert!(matches!(parse(dtd), Err(AutoconfigError::Xml(_))));
        assert!(matches!(
            parse("<html/>"),
            Err(AutoconfigError::NotAutoconfig(_))
        ));
        assert!(parse("not xml").is_err());
    }
}
