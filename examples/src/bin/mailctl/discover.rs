//! `mailctl discover`.

use std::path::PathBuf;

use mail_account::connect::LoginSecret;
use mail_account::discover::{DiscoveryReport, ServerReport};
use mail_account::settings::ManualSettings;
use mail_account::verify::{VerifyOptions, verify_account};
use mail_account::{Discoverer, DiscoveryOptions, discover_offline};
use mail_common::transport::TrustRoots;

use crate::{Failure, Outcome};

/// Flags of `mailctl discover`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The mail address.
    address: String,
    /// Use only the provider files and the bundled provider database (no DNS, no HTTP, no
    /// probes).
    #[arg(long)]
    offline: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Log in to both servers with the discovered settings (nothing is sent).
    #[arg(long, requires = "password_env")]
    verify: bool,
    /// Environment variable holding the password, for --verify.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Extra CA certificates (PEM) to trust for --verify (and to save with --save), besides
    /// the web PKI roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[command(flatten)]
    providers: ProviderArgs,
    #[command(flatten)]
    save: crate::accounts::SaveArgs,
}

/// Where discovery finds providers besides the bundled database.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ProviderArgs {
    /// A provider description (Mozilla autoconfig, config-v1.1.xml) consulted before the
    /// bundled database, for the domains it lists: your site's own servers, or test servers.
    /// Repeatable.
    #[arg(long, value_name = "XML", env = "MAILCTL_PROVIDER_FILE")]
    provider_file: Vec<PathBuf>,
}

impl ProviderArgs {
    /// Default discovery options with the provider files read in.
    pub(crate) fn options(&self) -> Result<DiscoveryOptions, Failure> {
        let mut options = DiscoveryOptions::default();
        for path in &self.provider_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::settings(format!("{}: {e}", path.display())))?;
            let config = mail_account::autoconfig::parse(&text)
                .map_err(|e| Failure::settings(format!("{}: {e}", path.display())))?;
            options.extra_providers.push(config);
        }
        Ok(options)
    }
}

pub(crate) async fn run(args: Args) -> Outcome {
    let report = discover(&args.address, args.offline, &args.providers.options()?).await?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::local(format!("cannot write the report as JSON: {e}")))?;
        println!("{json}");
    } else {
        print_text(&report);
    }
    if args.verify {
        let var = args.password_env.as_deref().unwrap_or_default();
        let secret = LoginSecret::from_env(var)?;
        let mut options = VerifyOptions::default();
        options.trust_roots = args.ca_file.clone().map(TrustRoots::WebPkiAndCaFile);
        Box::pin(verify_logins(&report, &secret, &options)).await?;
    }
    crate::accounts::save_discovered(
        &args.save,
        &report,
        args.password_env.as_deref(),
        args.ca_file.as_deref(),
    )
}

/// Runs discovery (offline: the bundled database only).
pub(crate) async fn discover(
    address: &str,
    offline: bool,
    options: &DiscoveryOptions,
) -> Result<DiscoveryReport, Failure> {
    let manual = ManualSettings::default();
    let result = if offline {
        discover_offline(address, &manual, options)
    } else {
        let discoverer = Discoverer::with_system_defaults(options.clone())
            .map_err(|e| Failure::settings(e.to_string()))?;
        // Boxed: the discovery future is large (DNS, HTTP and probe state).
        Box::pin(discoverer.discover(address, &manual)).await
    };
    result.map_err(|e| Failure::settings(e.to_string()))
}

/// Logs in to both servers of a discovery report and logs out (nothing is sent), printing
/// each result with advice; fails with the first failure's kind.
pub(crate) async fn verify_logins(
    report: &DiscoveryReport,
    secret: &LoginSecret,
    options: &VerifyOptions,
) -> Outcome {
    let account = report
        .to_account()
        .map_err(|e| Failure::settings(format!("cannot verify: {e}")))?;
    let verified = verify_account(&account, secret, options).await;
    let mut first_failure = None;
    for (role, result) in verified.results() {
        match result {
            Ok(ok) => println!(
                "ok    {role} {} login with {} ({}) in {:.1} ms",
                ok.protocol,
                ok.mechanism,
                ok.tls.as_deref().unwrap_or("no TLS"),
                ok.elapsed.as_secs_f64() * 1000.0
            ),
            Err(failure) => {
                println!("FAIL  {role}: {failure}");
                println!("      advice: {}", failure.advice());
                first_failure.get_or_insert_with(|| {
                    Failure::new(failure.kind(), format!("{role}: {failure}"))
                });
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

fn print_server(role: &str, server: Option<&ServerReport>) {
    let Some(s) = server else {
        println!("{role}: not found");
        return;
    };
    println!(
        "{role}: {} {}:{} ({})",
        s.protocol.value, s.host.value, s.port.value, s.security.value
    );
    let line = |name: &str, value: String, source: &dyn std::fmt::Display| {
        println!("    {name:<9} {value:<32} <- {source}");
    };
    line("host", s.host.value.clone(), &s.host.source);
    line("port", s.port.value.to_string(), &s.port.source);
    line("security", s.security.value.to_string(), &s.security.source);
    line("username", s.username.value.to_string(), &s.username.source);
    line("auth", s.auth.value.to_string(), &s.auth.source);
}

/// The report as text: every setting with its source, then warnings, hints and requests.
pub(crate) fn print_text(report: &DiscoveryReport) {
    println!("address:  {}", report.address);
    if let Some(provider) = &report.provider {
        println!("provider: {} ({})", provider.name, provider.source);
    }
    print_server("incoming", report.incoming.as_ref());
    print_server("outgoing", report.outgoing.as_ref());
    if let Some(imap) = &report.imap {
        print_server("imap", Some(&imap.server));
        println!("    note      {}", imap.note);
    }
    crate::login::print_oauth2_text(report);
    for warning in &report.warnings {
        println!("warning:  {}", warning.message);
    }
    for hint in &report.hints {
        match &hint.url {
            Some(url) => println!("hint:     {} ({url})", hint.text),
            None => println!("hint:     {}", hint.text),
        }
    }
    for rejected in &report.rejected {
        println!(
            "rejected: {}:{} from {}: {}",
            rejected.entry.host, rejected.entry.port, rejected.source, rejected.reason
        );
    }
    for step in &report.steps {
        println!("step:     {} {}: {}", step.step, step.domain, step.outcome);
    }
    if report.requests.is_empty() {
        println!("network:  no request made");
    }
    for request in &report.requests {
        println!(
            "network:  {} {}: {}",
            request.kind, request.target, request.outcome
        );
    }
}
