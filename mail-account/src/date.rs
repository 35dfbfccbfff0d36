//! Calendar arithmetic for the date formats of messages (RFC 5322 `Date:`, the mbox `From `
//! line's asctime form): one implementation in `mail_common::date`, shared by `compose`, the
//! mbox store and the embedded test server.

pub(crate) use mail_common::date::{DAYS_FROM_THURSDAY, MONTHS, civil_from_days};
