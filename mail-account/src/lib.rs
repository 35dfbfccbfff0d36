//! Mail account settings and discovery (POP3 + SMTP submission), and account-level fetch and send.
#![forbid(unsafe_code)]
