//! Keeping many mailboxes checked, each on its own schedule, in one tokio runtime: what a
//! mail client's "check every few minutes" and a help desk's hundreds of POP3 mailboxes
//! both need.
//!
//! A [`Poller`] runs one task per account. Each check takes a permit of the whole poller
//! ([`PollerConfig::max_concurrent`]) and one of its server host
//! ([`PollerConfig::max_per_host`]; providers limit parallel logins per host), runs the
//! account's [`Check`], and schedules the next one by these rules ([`next_check`]):
//!
//! - **success**: after the account's interval, varied by ±[`PollerConfig::jitter`] so that
//!   accounts started together drift apart instead of logging in in lock-step; never sooner
//!   than the server's `LOGIN-DELAY` (RFC 2449) announced in the session;
//! - **transient failure** (network, timeout, `[SYS/TEMP]`, a local disk error): exponential
//!   backoff from [`PollerConfig::backoff_initial`] to [`PollerConfig::backoff_max`],
//!   jittered; reset by the next success;
//! - **`[IN-USE]`** (RFC 2449: another client holds the mailbox): backoff, as transient;
//! - **`[LOGIN-DELAY]`** refusal: not before the server's `LOGIN-DELAY` (from its
//!   capabilities), and not before the backoff;
//! - **permanent failure** (wrong password `[AUTH]`, `[SYS/PERM]`, a login refused without a
//!   code, an OAuth2 grant revoked, a certificate or settings problem): the account is
//!   **parked** with the reason ([`PollEvent::Parked`]) and not tried again: retrying a
//!   rejected login is what gets accounts locked.
//!
//! Every check reports [`PollEvent`]s on a channel, so an embedding program can show or log
//! them. [`Poller::shutdown`] is cancel-safe: accounts waiting for their turn stop at once,
//! and a fetch in progress stops after the message it is receiving ([`fetch_until`]), with
//! everything received delivered and nothing deleted on the server.
//!
//! Each account's state is exactly as crash-safe as a single fetch: the poller only calls
//! [`fetch_until`] with the account's [`Delivery`], which holds the account's lock for the
//! poller's life (one account, one poller; see [`crate::deliver`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use mail_account::connect::{LoginSecret, ServerSettings};
//! use mail_account::deliver;
//! use mail_account::fetch::FetchOptions;
//! use mail_account::poller::{PolledAccount, Poller, PollerConfig, pop3_check};
//! use mail_account::settings::Security;
//! use mail_account::store::{RetentionPolicy, Store};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ServerSettings::new("pop.example.org", 995, Security::ImplicitTls, "alice");
//! let (store, _) = Store::open("Maildir", "Maildir/.state-alice")?;
//! let check = pop3_check(
//!     server.clone(),
//!     LoginSecret::password("secret"),
//!     deliver::shared(store),
//!     FetchOptions::new(RetentionPolicy::KeepForever),
//! );
//! let account = PolledAccount::new("alice", &server.host, Duration::from_secs(300), check);
//! let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
//! let poller = Poller::start(vec![account], PollerConfig::default(), events_tx);
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         println!("{event:?}");
//!     }
//! });
//! // ... until the program is asked to stop (a signal, a command):
//! tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
//! poller.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pop3_proto::ResponseCode;
use pop3_proto::tokio::Error as Pop3Error;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::connect::{ConnectError, LoginSecret, ServerSettings, pop3_authenticate, pop3_connect};
use crate::deliver::{Delivery, SharedDelivery};
use crate::diagnose::FailureKind;
use crate::fetch::{FetchError, FetchOptions, FetchReport, fetch_until};
use crate::oauth::{OAuthClient, OAuthError, TokenFile};
use crate::store::StoreError;

/// Limits and timings of a [`Poller`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PollerConfig {
    /// Checks running at once, over all accounts.
    pub max_concurrent: usize,
    /// Checks running at once against one server host.
    pub max_per_host: usize,
    /// How much each wait is varied, as a fraction (0.1: ±10 %), in `0.0..=0.5`.
    pub jitter: f64,
    /// The wait after the first transient failure; doubled after each further one.
    pub backoff_initial: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// Seed of the jitter (for tests; `None`: from the operating system).
    pub seed: Option<u64>,
}

impl Default for PollerConfig {
    /// 256 checks at once, 8 per host, ±10 % jitter, backoff from 30 s to 30 minutes.
    fn default() -> Self {
        Self {
            max_concurrent: 256,
            max_per_host: 8,
            jitter: 0.1,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30 * 60),
            seed: None,
        }
    }
}

impl PollerConfig {
    /// Sets [`PollerConfig::max_concurrent`] (at least 1).
    #[must_use]
    pub fn with_max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Sets [`PollerConfig::max_per_host`] (at least 1).
    #[must_use]
    pub fn with_max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = n.max(1);
        self
    }

    /// Sets [`PollerConfig::jitter`] (clamped to `0.0..=0.5`).
    #[must_use]
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 0.5);
        self
    }

    /// Sets the backoff's first and longest wait.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Sets [`PollerConfig::seed`].
    #[must_use]
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// What one check of an account came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// The mailbox was checked (and its new mail fetched).
    Fetched {
        /// What the fetch did.
        report: FetchReport,
        /// The server's `LOGIN-DELAY`: the next login must not come sooner.
        login_delay: Option<Duration>,
    },
    /// The check failed.
    Failed(CheckFailure),
}

/// A failed check: why, and what the schedule does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckFailure {
    /// For a person: the error as reported.
    pub reason: String,
    /// The schedule rule that applies.
    pub retry: Retry,
}

impl CheckFailure {
    /// A failure with its rule.
    pub fn new(reason: impl Into<String>, retry: Retry) -> Self {
        Self {
            reason: reason.into(),
            retry,
        }
    }
}

/// Which schedule rule a failure falls under (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Transient: exponential backoff.
    Backoff,
    /// `[IN-USE]`: another client holds the mailbox; backoff.
    InUse,
    /// `[LOGIN-DELAY]`: not before the server's delay (when it announced one), nor before
    /// the backoff.
    LoginDelay(Option<Duration>),
    /// Permanent: park the account.
    Park,
}

/// A boxed future, as [`Check`]s return.
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckOutcome> + Send>>;

/// What checking one account does: called once per check with the poller's stop signal
/// (`true` once [`Poller::shutdown`] was called), which the check should honour between
/// messages. [`pop3_check`] makes the usual one.
pub type Check = Arc<dyn Fn(watch::Receiver<bool>) -> CheckFuture + Send + Sync>;

/// One account the poller keeps checked.
#[derive(Clone)]
#[non_exhaustive]
pub struct PolledAccount {
    /// The account's name in events.
    pub name: String,
    /// The server host, for [`PollerConfig::max_per_host`] (compared without case).
    pub host: String,
    /// The time between two checks.
    pub interval: Duration,
    /// What a check does.
    pub check: Check,
}

impl std::fmt::Debug for PolledAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledAccount")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl PolledAccount {
    /// An account named `name` on `host`, checked every `interval` by `check`.
    pub fn new(name: impl Into<String>, host: &str, interval: Duration, check: Check) -> Self {
        Self {
            name: name.into(),
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            interval,
            check,
        }
    }
}

/// What the poller reports, per account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollEvent {
    /// A check starts (both permits taken).
    Checking {
        /// The account.
        account: String,
    },
    /// A check succeeded.
    Fetched {
        /// The account.
        account: String,
        /// What the fetch did.
        report: FetchReport,
        /// When the next check is due, from now.
        next_in: Duration,
    },
    /// A check failed and will be retried.
    Failed {
        /// The account.
        account: String,
        /// The failure.
        failure: CheckFailure,
        /// Failures in a row, this one included.
        attempt: u32,
        /// When the next check is due, from now.
        next_in: Duration,
    },
    /// A check failed permanently: the account is not checked again.
    Parked {
        /// The account.
        account: String,
        /// Why.
        reason: String,
    },
    /// The account's task ended after [`Poller::shutdown`].
    Stopped {
        /// The account.
        account: String,
    },
}

/// The scheduling state of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleState {
    /// Transient failures in a row.
    pub failures: u32,
}

/// What to do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextCheck {
    /// Check again after this long.
    After(Duration),
    /// Do not check again.
    Park,
}

/// The schedule rules (module docs): the wait before the next check after `outcome`, given
/// the account's `interval`; updates `state`. `random` is a number in `0.0..1.0` for the
/// jitter. Pure: no clock, no randomness of its own.
pub fn next_check(
    config: &PollerConfig,
    interval: Duration,
    outcome: &CheckOutcome,
    state: &mut ScheduleState,
    random: f64,
) -> NextCheck {
    // A factor in [1 - jitter, 1 + jitter).
    let factor = 1.0 + config.jitter * (2.0 * random - 1.0);
    let jittered = |d: Duration| d.mul_f64(factor.max(0.0));
    match outcome {
        CheckOutcome::Fetched { login_delay, .. } => {
            state.failures = 0;
            let wait = jittered(interval);
            NextCheck::After(login_delay.map_or(wait, |delay| wait.max(delay)))
        }
        CheckOutcome::Failed(failure) => {
            if failure.retry == Retry::Park {
                return NextCheck::Park;
            }
            state.failures = state.failures.saturating_add(1);
            let doublings = state.failures.saturating_sub(1).min(32);
            let backoff = config
                .backoff_initial
                .saturating_mul(1u32 << doublings.min(31))
                .min(config.backoff_max);
            let wait = jittered(backoff);
            match failure.retry {
                Retry::LoginDelay(Some(delay)) => NextCheck::After(wait.max(delay)),
                _ => NextCheck::After(wait),
            }
        }
    }
}

/// The schedule rule for a failed POP3 login or fetch. `login_delay` is the server's
/// announced `LOGIN-DELAY`, if any.
pub fn classify_pop3(error: &Pop3Error, login_delay: Option<Duration>) -> Retry {
    let response = match error {
        Pop3Error::LoginFailed(failure) => {
            // An OAuth2 error document means the token or grant was refused: a person must
            // sign in again.
            if failure.oauth_error.is_some() {
                return Retry::Park;
            }
            Some(&failure.response)
        }
        Pop3Error::GreetingRefused(response) | Pop3Error::Refused { response, .. } => {
            Some(response)
        }
        _ => None,
    };
    if let Some(response) = response {
        return match &response.code {
            Some(ResponseCode::InUse) => Retry::InUse,
            Some(ResponseCode::LoginDelay) => Retry::LoginDelay(login_delay),
            _ => match response.class() {
                pop3_proto::FailureClass::Transient => Retry::Backoff,
                _ => Retry::Park,
            },
        };
    }
    match error.kind() {
        FailureKind::Network
        | FailureKind::Timeout
        | FailureKind::Protocol
        | FailureKind::LocalIo => Retry::Backoff,
        _ => Retry::Park,
    }
}

fn classify_connect(error: &ConnectError, login_delay: Option<Duration>) -> Retry {
    match error {
        ConnectError::Pop3 { error, .. } => classify_pop3(error, login_delay),
        // Unusable settings, or not a POP3 path at all: a person must look.
        _ => Retry::Park,
    }
}

fn classify_store(error: &StoreError) -> Retry {
    match error {
        // Another poller holds the account (the sharding rule), or the journal needs a
        // person: park rather than fight over it.
        StoreError::Locked { .. } | StoreError::CorruptJournal { .. } | StoreError::Poisoned => {
            Retry::Park
        }
        _ => Retry::Backoff,
    }
}

/// Where a check gets its login secret, once per check (on tokio's blocking pool): a
/// password command, or an OAuth2 access token refreshed when it expires. Its failure is the
/// check's, with the schedule rule the source chooses (a revoked grant parks; a network error
/// backs off).
pub type SecretSource = Arc<dyn Fn() -> Result<LoginSecret, CheckFailure> + Send + Sync>;

/// A [`SecretSource`] for an OAuth 2.0 account: the access token cached in `file`, refreshed
/// through `client` shortly before it expires (the rotated refresh token saved first, see
/// [`OAuthClient::access_token`]).
///
/// What a failure means for the schedule: an expired or revoked grant (`invalid_grant`), no
/// stored tokens, a refusal by the authorization server or unusable settings park the account
/// with the error and "sign in again" advice (retrying cannot help, and providers lock out
/// clients that keep presenting a revoked grant); an unreachable authorization server or an
/// unreadable token file backs off.
///
/// Called on tokio's blocking pool (as [`pop3_check_with`] does): it waits for the refresh
/// with the runtime's handle.
pub fn oauth2_secret(client: OAuthClient, file: TokenFile) -> SecretSource {
    Arc::new(move || {
        let token = tokio::runtime::Handle::try_current()
            .map_err(|e| CheckFailure::new(format!("OAuth2: {e}"), Retry::Backoff))?
            .block_on(client.access_token(&file))
            .map_err(|error| oauth_failure(&error))?;
        Ok(LoginSecret::OAuth2Token(token))
    })
}

/// The schedule rule for an OAuth 2.0 failure: only an unreachable authorization server or an
/// unreadable token file can pass; anything else needs a person.
fn oauth_failure(error: &OAuthError) -> CheckFailure {
    let retry = match error {
        OAuthError::Http(_) | OAuthError::TimedOut(_) | OAuthError::TokenFile { .. } => {
            Retry::Backoff
        }
        _ => Retry::Park,
    };
    let mut reason = format!("OAuth2: {error}");
    // (The message of a grant to renew already says to sign in again.)
    if let Some(advice) = error.advice().filter(|_| !error.needs_new_sign_in()) {
        reason.push_str(": ");
        reason.push_str(advice);
    }
    CheckFailure::new(reason, retry)
}

/// [`pop3_check_with`] for an OAuth 2.0 account ([`oauth2_secret`]), which also handles the
/// server refusing the access token: the token is refreshed at once, whatever its recorded
/// lifetime, because a token can be revoked before it expires. If the refresh is refused
/// (`invalid_grant`: the grant was revoked) the account is parked with that reason; if it
/// succeeds, the check backs off and the next one uses the new token.
///
/// Without this a revoked access token would be presented again at every check until its
/// recorded expiry (an hour, typically), and servers do not all say that the token was
/// refused: Dovecot 2.3 answers a token its authorization server no longer knows with
/// `-ERR [SYS/TEMP]`, a temporary failure.
pub fn pop3_oauth2_check<D: Delivery>(
    server: ServerSettings,
    client: OAuthClient,
    file: TokenFile,
    delivery: SharedDelivery<D>,
    options: FetchOptions,
) -> Check {
    let server = Arc::new(server);
    let source = oauth2_secret(client.clone(), file.clone());
    Arc::new(move |stop| {
        let server = Arc::clone(&server);
        let source = Arc::clone(&source);
        let delivery = Arc::clone(&delivery);
        let options = options.clone();
        let (client, file) = (client.clone(), file.clone());
        Box::pin(async move {
            let secret = match secret_of(source).await {
                Ok(secret) => secret,
                Err(failure) => return CheckOutcome::Failed(failure),
            };
            let (outcome, login_refused) =
                check_pop3(&server, &secret, &delivery, &options, &stop).await;
            let CheckOutcome::Failed(failure) = outcome else {
                return outcome;
            };
            if !login_refused {
                return CheckOutcome::Failed(failure);
            }
            match refresh_now(&client, &file).await {
                Ok(()) => CheckOutcome::Failed(CheckFailure::new(
                    format!(
                        "{} (access token refused; refreshed for the next check)",
                        failure.reason
                    ),
                    Retry::Backoff,
                )),
                Err(error) => {
                    let mut park = oauth_failure(&error);
                    park.reason = format!("{}; after: {}", park.reason, failure.reason);
                    CheckOutcome::Failed(park)
                }
            }
        })
    })
}

/// Refreshes `file`'s tokens now, under its lock.
async fn refresh_now(client: &OAuthClient, file: &TokenFile) -> Result<(), OAuthError> {
    let _lock = file.lock().await?;
    let stored = file.load()?;
    client.refresh(file, &stored).await.map(drop)
}

/// Asks `source` for the check's secret on tokio's blocking pool.
async fn secret_of(source: SecretSource) -> Result<LoginSecret, CheckFailure> {
    match tokio::task::spawn_blocking(move || source()).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(CheckFailure::new(e.to_string(), Retry::Backoff)),
    }
}

/// The usual [`Check`]: log in to `server` over POP3 and fetch into `delivery` with
/// `options`, stopping between messages on shutdown; the server's `LOGIN-DELAY` is reported
/// for the schedule, and failures are sorted into the schedule's rules.
pub fn pop3_check<D: Delivery>(
    server: ServerSettings,
    secret: LoginSecret,
    delivery: SharedDelivery<D>,
    options: FetchOptions,
) -> Check {
    let secret = Arc::new(secret);
    let source: SecretSource = Arc::new(move || Ok((*secret).clone()));
    pop3_check_with(server, source, delivery, options)
}

/// [`pop3_check`] with the secret asked of `secret` at every check (a token that expires
/// between checks is refreshed).
pub fn pop3_check_with<D: Delivery>(
    server: ServerSettings,
    secret: SecretSource,
    delivery: SharedDelivery<D>,
    options: FetchOptions,
) -> Check {
    let server = Arc::new(server);
    Arc::new(move |stop| {
        let server = Arc::clone(&server);
        let secret = Arc::clone(&secret);
        let delivery = Arc::clone(&delivery);
        let options = options.clone();
        Box::pin(async move {
            let secret = match secret_of(secret).await {
                Ok(secret) => secret,
                Err(failure) => return CheckOutcome::Failed(failure),
            };
            check_pop3(&server, &secret, &delivery, &options, &stop)
                .await
                .0
        })
    })
}

fn login_delay_of(session: &pop3_proto::tokio::Session) -> Option<Duration> {
    session
        .capabilities()
        .and_then(|caps| caps.login_delay)
        .map(|policy| Duration::from_secs(policy.value))
}

/// One check; the flag is true when the server refused the credentials (not the network, not
/// TLS, not `[IN-USE]` or `[LOGIN-DELAY]`): what [`pop3_oauth2_check`] answers with a refresh.
async fn check_pop3<D: Delivery>(
    server: &ServerSettings,
    secret: &LoginSecret,
    delivery: &SharedDelivery<D>,
    options: &FetchOptions,
    stop: &watch::Receiver<bool>,
) -> (CheckOutcome, bool) {
    let failed = |reason: String, retry| CheckOutcome::Failed(CheckFailure::new(reason, retry));
    let mut session = match pop3_connect(server).await {
        Ok(session) => session,
        Err(e) => return (failed(e.to_string(), classify_connect(&e, None)), false),
    };
    let announced = login_delay_of(&session);
    if let Err(e) = pop3_authenticate(&mut session, server, secret).await {
        let retry = classify_connect(&e, announced);
        // `[IN-USE]` and `[LOGIN-DELAY]` refuse the session, not the credentials.
        let refused = matches!(&e, ConnectError::Pop3 { error, .. }
            if matches!(**error, Pop3Error::LoginFailed(_)))
            && !matches!(retry, Retry::InUse | Retry::LoginDelay(_));
        return (failed(e.to_string(), retry), refused);
    }
    // The value after login is the user's own when the server said `USER`.
    let login_delay = login_delay_of(&session).or(announced);
    let outcome =
        match fetch_until(session, delivery, options, SystemTime::now(), |_| {}, stop).await {
            Ok(report) => CheckOutcome::Fetched {
                report,
                login_delay,
            },
            Err(FetchError::Pop3(e)) => {
                let retry = classify_pop3(&e, login_delay);
                failed(format!("POP3 {}: {e}", server.host), retry)
            }
            Err(FetchError::Store(e)) => {
                let retry = classify_store(&e);
                failed(format!("local store: {e}"), retry)
            }
            Err(e) => failed(e.to_string(), Retry::Backoff),
        };
    (outcome, false)
}

/// A running poller: one task per account.
#[derive(Debug)]
pub struct Poller {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// What every account task shares.
struct Shared {
    config: PollerConfig,
    all: Semaphore,
    per_host: HashMap<String, Semaphore>,
    events: mpsc::Sender<PollEvent>,
}

impl Poller {
    /// Starts checking `accounts` (the first check of each at once, within the limits),
    /// reporting on `events` (a full channel makes the poller wait; a closed one is ignored).
    /// Must be called within a tokio runtime.
    pub fn start(
        accounts: Vec<PolledAccount>,
        config: PollerConfig,
        events: mpsc::Sender<PollEvent>,
    ) -> Self {
        let per_host = accounts
            .iter()
            .map(|a| (a.host.clone(), Semaphore::new(config.max_per_host.max(1))))
            .collect();
        let mut seeds = config
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let shared = Arc::new(Shared {
            all: Semaphore::new(config.max_concurrent.max(1)),
            per_host,
            config,
            events,
        });
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for account in accounts {
            let rng = fastrand::Rng::with_seed(seeds.u64(..));
            tasks.spawn(run_account(
                account,
                Arc::clone(&shared),
                stop.subscribe(),
                rng,
            ));
        }
        Self { stop, tasks }
    }

    /// Waits until every account is parked (forever, unless all of them fail permanently).
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops: accounts waiting for their next check stop at once; a check in progress stops
    /// after the message it is receiving (delivered; nothing deleted). Returns when every
    /// account's task has ended.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        self.wait().await;
    }
}

/// Checks every account once, concurrently within `config`'s limits (a one-shot run over
/// many accounts, no retries), reporting [`PollEvent::Checking`] and the outcome of each on
/// `events` (`next_in` is zero: nothing is scheduled). Returns each account's name and
/// outcome, in the order given. Stops early (each check after its current message) once
/// `stop` holds `true`.
pub async fn check_once(
    accounts: Vec<PolledAccount>,
    config: &PollerConfig,
    events: mpsc::Sender<PollEvent>,
    stop: watch::Receiver<bool>,
) -> Vec<(String, CheckOutcome)> {
    let shared = Arc::new(Shared {
        all: Semaphore::new(config.max_concurrent.max(1)),
        per_host: accounts
            .iter()
            .map(|a| (a.host.clone(), Semaphore::new(config.max_per_host.max(1))))
            .collect(),
        config: config.clone(),
        events,
    });
    let mut tasks = JoinSet::new();
    for (index, account) in accounts.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tasks.spawn(async move {
            let host = shared
                .per_host
                .get(&account.host)
                .expect("a semaphore per host");
            let outcome = {
                let _host = host.acquire().await;
                let _all = shared.all.acquire().await;
                emit(
                    &shared,
                    PollEvent::Checking {
                        account: account.name.clone(),
                    },
                )
                .await;
                (account.check)(stop).await
            };
            let event = match &outcome {
                CheckOutcome::Fetched { report, .. } => PollEvent::Fetched {
                    account: account.name.clone(),
                    report: report.clone(),
                    next_in: Duration::ZERO,
                },
                CheckOutcome::Failed(failure) if failure.retry == Retry::Park => {
                    PollEvent::Parked {
                        account: account.name.clone(),
                        reason: failure.reason.clone(),
                    }
                }
                CheckOutcome::Failed(failure) => PollEvent::Failed {
                    account: account.name.clone(),
                    failure: failure.clone(),
                    attempt: 1,
                    next_in: Duration::ZERO,
                },
            };
            emit(&shared, event).await;
            (index, account.name, outcome)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    results.sort_by_key(|(index, _, _)| *index);
    results
        .into_iter()
        .map(|(_, name, outcome)| (name, outcome))
        .collect()
}

async fn emit(shared: &Shared, event: PollEvent) {
    let _ = shared.events.send(event).await;
}

async fn run_account(
    account: PolledAccount,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut rng: fastrand::Rng,
) {
    let mut state = ScheduleState::default();
    let mut due = Instant::now();
    let host = shared
        .per_host
        .get(&account.host)
        .expect("a semaphore per host");
    loop {
        let permits = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            permits = async {
                tokio::time::sleep_until(due).await;
                // The host's permit first, so a busy host does not hold global permits.
                let host_permit = host.acquire().await;
                let all_permit = shared.all.acquire().await;
                (host_permit, all_permit)
            } => permits,
        };
        emit(
            &shared,
            PollEvent::Checking {
                account: account.name.clone(),
            },
        )
        .await;
        let outcome = (account.check)(stop.clone()).await;
        drop(permits);
        let next = next_check(
            &shared.config,
            account.interval,
            &outcome,
            &mut state,
            rng.f64(),
        );
        let event = match (outcome, next) {
            (CheckOutcome::Failed(failure), NextCheck::Park) => PollEvent::Parked {
                account: account.name.clone(),
                reason: failure.reason,
            },
            (_, NextCheck::Park) => PollEvent::Parked {
                account: account.name.clone(),
                reason: "parked".to_owned(),
            },
            (CheckOutcome::Fetched { report, .. }, NextCheck::After(wait)) => PollEvent::Fetched {
                account: account.name.clone(),
                report,
                next_in: wait,
            },
            (CheckOutcome::Failed(failure), NextCheck::After(wait)) => PollEvent::Failed {
                account: account.name.clone(),
                failure,
                attempt: state.failures,
                next_in: wait,
            },
        };
        let parked = matches!(event, PollEvent::Parked { .. });
        emit(&shared, event).await;
        if parked {
            return;
        }
        if let NextCheck::After(wait) = next {
            due = Instant::now() + wait;
        }
        if *stop.borrow() {
            break;
        }
    }
    emit(
        &shared,
        PollEvent::Stopped {
            account: account.name.clone(),
        },
    )
    .await;
}

#[cfg(test)]
mod tests;
