//! `mailctl roundtrip` (alias `verify`, its earlier name): send a test message to the
//! account itself and fetch it back. `mailctl discover --verify` is the login-only check.

use std::path::PathBuf;
use std::time::Duration;

use mail_account::connect::ServerSettings;
use mail_account::roundtrip::{RoundtripOptions, send_and_fetch_back};
use mail_common::transport::TrustRoots;

use crate::server::account_secret;
use crate::{Failure, Outcome};

/// Flags of `mailctl roundtrip`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The account: a name in the configuration file or an account file (default: the
    /// configuration file's default account).
    #[arg(short = 'a', long, value_name = "NAME|FILE")]
    account: Option<String>,
    /// The configuration file with the named accounts (default: $MAILCTL_CONFIG, else
    /// $XDG_CONFIG_HOME/mailctl/accounts.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Environment variable holding the password (overrides the account's credential).
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Extra CA certificates (PEM) to trust besides the web PKI roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Seconds to wait for the test message to arrive.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    wait: u64,
    /// Leave the test message on the server (it is deleted by default; nothing else is).
    #[arg(long)]
    keep_test_message: bool,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let account = crate::accounts::find_account(args.account.as_deref(), args.config.as_deref())?
        .ok_or_else(|| {
        Failure::settings(
            "-a NAME|FILE, or a default account in the configuration file, is required",
        )
    })?;
    let secret = account_secret(&account, args.password_env.as_deref())?.ok_or_else(|| {
        Failure::settings(
            "no password: give --password-env VAR or a credential in the account file",
        )
    })?;
    let mut pop3 = ServerSettings::incoming(&account)?;
    let mut smtp = ServerSettings::outgoing(&account)?;
    if let Some(ca) = &args.ca_file {
        pop3.trust_roots = TrustRoots::WebPkiAndCaFile(ca.clone());
        smtp.trust_roots = TrustRoots::WebPkiAndCaFile(ca.clone());
    }
    for warning in account.warnings() {
        eprintln!("warning: {}: {}", warning.setting, warning.message);
    }
    let mut options = RoundtripOptions::default();
    options.wait = Duration::from_secs(args.wait);
    options.delete_test_message = !args.keep_test_message;
    println!("verifying {}", account.address);
    let report = send_and_fetch_back(&account.address, &smtp, &pop3, &secret, &options, |step| {
        println!("{step}");
    })
    .await
    .map_err(|e| Failure::new(e.kind(), e.to_string()))?;
    println!(
        "verified: {} went out over SMTP and came back over POP3 in {:.1} ms",
        report.message_id,
        report.total.as_secs_f64() * 1000.0
    );
    Ok(())
}
