//! The check both Dovecot suites make after a wrong password: a refusal that is data, not the
//! end of the session.

use pop3_proto::tokio::{Error, Session};
use pop3_proto::{AuthMethod, FailureClass, ResponseCode};

/// `error` is a login by `method` refused with `[AUTH]`, permanent, not fatal, and `session` is
/// still in the authorization state.
pub(crate) fn assert_auth_refusal(error: &Error, method: AuthMethod, session: &Session) {
    let Error::LoginFailed(failure) = error else {
        panic!("{method:?}: {error:?}");
    };
    assert_eq!(failure.method, method);
    assert_eq!(
        failure.response.code,
        Some(ResponseCode::Auth),
        "{failure:?}"
    );
    assert_eq!(error.class(), Some(FailureClass::Permanent));
    assert!(!error.is_fatal());
    assert!(!session.is_logged_in());
}
