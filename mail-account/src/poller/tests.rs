//! The schedule rules, with tokio's clock paused: every wait is measured on the virtual
//! clock, so the tests take no real time and assert exact durations.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const INTERVAL: Duration = Duration::from_secs(60);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn fetched(login_delay: Option<Duration>) -> CheckOutcome {
    CheckOutcome::Fetched {
        report: FetchReport::default(),
        login_delay,
    }
}

fn failed(retry: Retry) -> CheckOutcome {
    CheckOutcome::Failed(CheckFailure::new(format!("{retry:?}"), retry))
}

/// A check that returns `script`'s outcomes in turn (the last one forever) and records the
/// virtual time of each call.
fn scripted(script: Vec<CheckOutcome>, calls: Arc<Mutex<Vec<Instant>>>) -> Check {
    let script = Arc::new(script);
    Arc::new(move |_stop| {
        let script = Arc::clone(&script);
        let calls = Arc::clone(&calls);
        Box::pin(async move {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            script[(calls.len() - 1).min(script.len() - 1)].clone()
        })
    })
}

fn no_jitter() -> PollerConfig {
    PollerConfig::default()
        .with_jitter(0.0)
        .with_backoff(secs(10), secs(40))
}

/// Runs one account with `script` until it made `checks` checks (or parked); returns the
/// waits between them and the events.
async fn run_script(
    config: PollerConfig,
    script: Vec<CheckOutcome>,
    checks: usize,
) -> (Vec<Duration>, Vec<PollEvent>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let account = PolledAccount::new(
        "a",
        "pop.example.org",
        INTERVAL,
        scripted(script, Arc::clone(&calls)),
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let poller = Poller::start(vec![account], config, tx);
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        let parked = matches!(event, PollEvent::Parked { .. });
        events.push(event);
        if parked || calls.lock().unwrap().len() >= checks {
            break;
        }
    }
    poller.shutdown().await;
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    let calls = calls.lock().unwrap();
    let waits = calls.windows(2).map(|w| w[1] - w[0]).collect();
    (waits, events)
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_its_cap_and_a_success_resets_it() {
    let script = vec![
        failed(Retry::Backoff),
        failed(Retry::Backoff),
        failed(Retry::Backoff),
        failed(Retry::Backoff),
        fetched(None),
        failed(Retry::Backoff),
        fetched(None),
    ];
    let (waits, events) = run_script(no_jitter(), script, 8).await;
    assert_eq!(
        waits,
        [
            secs(10),
            secs(20),
            secs(40),
            secs(40),
            INTERVAL,
            secs(10),
            INTERVAL
        ]
    );
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            PollEvent::Failed { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 1]);
}

#[tokio::test(start_paused = true)]
async fn in_use_backs_off_like_a_transient_failure() {
    let script = vec![failed(Retry::InUse), failed(Retry::InUse), fetched(None)];
    let (waits, _) = run_script(no_jitter(), script, 4).await;
    assert_eq!(waits, [secs(10), secs(20), INTERVAL]);
}

#[tokio::test(start_paused = true)]
async fn login_delay_is_never_undercut() {
    // After a success the server's LOGIN-DELAY (15 minutes) wins over the 1 minute interval;
    // after a LOGIN-DELAY refusal it wins over the 10 s backoff; without a known delay the
    // backoff applies.
    let script = vec![
        fetched(Some(secs(900))),
        failed(Retry::LoginDelay(Some(secs(600)))),
        failed(Retry::LoginDelay(None)),
        fetched(Some(secs(5))),
        fetched(None),
    ];
    let (waits, _) = run_script(no_jitter(), script, 5).await;
    assert_eq!(waits, [secs(900), secs(600), secs(20), INTERVAL]);
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_waits_within_bounds_and_spreads_them() {
    let config = no_jitter().with_jitter(0.2).with_seed(7);
    let (waits, _) = run_script(config, vec![fetched(None)], 60).await;
    assert_eq!(waits.len(), 59);
    let (low, high) = (INTERVAL.mul_f64(0.8), INTERVAL.mul_f64(1.2));
    assert!(
        waits.iter().all(|w| *w >= low && *w <= high),
        "{waits:?} outside {low:?}..{high:?}"
    );
    let mut distinct = waits.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 30, "jitter barely varies: {distinct:?}");
    // Spread over the range, not bunched on one side.
    assert!(waits.iter().any(|w| *w < INTERVAL.mul_f64(0.9)));
    assert!(waits.iter().any(|w| *w > INTERVAL.mul_f64(1.1)));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_parks_the_account_with_its_reason() {
    let script = vec![
        failed(Retry::Backoff),
        CheckOutcome::Failed(CheckFailure::new("[AUTH] wrong password", Retry::Park)),
        fetched(None),
    ];
    let (waits, events) = run_script(no_jitter(), script, 10).await;
    assert_eq!(waits, [secs(10)], "no check after parking");
    assert!(
        events.contains(&PollEvent::Parked {
            account: "a".into(),
            reason: "[AUTH] wrong password".into()
        }),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, PollEvent::Stopped { .. })),
        "a parked account's task ended on its own"
    );
}

#[tokio::test(start_paused = true)]
async fn checks_are_bounded_overall_and_per_host() {
    // 12 accounts on 3 hosts; each check takes 10 s of virtual time.
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let per_host: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let checks = Arc::new(AtomicUsize::new(0));
    let mut accounts = Vec::new();
    for i in 0..12 {
        let host = format!("pop{}.example.org", i % 3);
        let (running, peak, per_host, checks) = (
            Arc::clone(&running),
            Arc::clone(&peak),
            Arc::clone(&per_host),
            Arc::clone(&checks),
        );
        let host_name = host.clone();
        let check: Check = Arc::new(move |_stop| {
            let (running, peak, per_host, checks, host) = (
                Arc::clone(&running),
                Arc::clone(&peak),
                Arc::clone(&per_host),
                Arc::clone(&checks),
                host_name.clone(),
            );
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                {
                    let mut hosts = per_host.lock().unwrap();
                    let entry = hosts.entry(host.clone()).or_default();
                    entry.0 += 1;
                    entry.1 = entry.1.max(entry.0);
                }
                tokio::time::sleep(secs(10)).await;
                per_host.lock().unwrap().get_mut(&host).unwrap().0 -= 1;
                running.fetch_sub(1, Ordering::SeqCst);
                checks.fetch_add(1, Ordering::SeqCst);
                fetched(None)
            })
        });
        accounts.push(PolledAccount::new(format!("a{i}"), &host, INTERVAL, check));
    }
    let config = no_jitter().with_max_concurrent(5).with_max_per_host(2);
    let (tx, mut rx) = mpsc::channel(1024);
    let poller = Poller::start(accounts, config, tx);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    // Every account checked at least twice.
    while checks.load(Ordering::SeqCst) < 24 {
        tokio::time::sleep(secs(1)).await;
    }
    poller.shutdown().await;
    drain.await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 5, "the overall limit, reached");
    let hosts = per_host.lock().unwrap();
    assert_eq!(hosts.len(), 3);
    for (host, (_, host_peak)) in hosts.iter() {
        assert_eq!(*host_peak, 2, "{host}: the per-host limit, reached");
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_waiting_accounts_and_reports_each() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let accounts = (0..3)
        .map(|i| {
            PolledAccount::new(
                format!("a{i}"),
                "pop.example.org",
                secs(3600),
                scripted(vec![fetched(None)], Arc::clone(&calls)),
            )
        })
        .collect();
    let (tx, mut rx) = mpsc::channel(64);
    let poller = Poller::start(accounts, no_jitter(), tx);
    while calls.lock().unwrap().len() < 3 {
        tokio::time::sleep(secs(1)).await;
    }
    let before = Instant::now();
    poller.shutdown().await;
    assert!(
        Instant::now() - before < secs(1),
        "did not wait for the next check"
    );
    let mut stopped = Vec::new();
    while let Some(event) = rx.recv().await {
        if let PollEvent::Stopped { account } = event {
            stopped.push(account);
        }
    }
    stopped.sort();
    assert_eq!(stopped, ["a0", "a1", "a2"]);
    assert_eq!(calls.lock().unwrap().len(), 3);
}

#[test]
fn next_check_is_pure_and_bounded() {
    let config = no_jitter().with_jitter(0.5);
    let mut state = ScheduleState::default();
    for random in [0.0, 0.25, 0.5, 0.999] {
        let NextCheck::After(wait) =
            next_check(&config, INTERVAL, &fetched(None), &mut state, random)
        else {
            panic!("a success never parks")
        };
        assert!(wait >= INTERVAL / 2 && wait < INTERVAL * 3 / 2, "{wait:?}");
    }
    for _ in 0..100 {
        next_check(&config, INTERVAL, &failed(Retry::Backoff), &mut state, 0.5);
    }
    assert_eq!(state.failures, 100);
    assert_eq!(
        next_check(&config, INTERVAL, &failed(Retry::Backoff), &mut state, 0.5),
        NextCheck::After(secs(40)),
        "capped, no overflow after many failures"
    );
}
