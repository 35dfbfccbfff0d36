//! `logs::capture` sees a call site even when a thread without a subscriber reached it first,
//! the order in which a plain `with_default` loses it (`tracing` caches the call site's
//! interest as "never" for the whole process).

use std::sync::mpsc;

use mail_testground::logs;

fn the_call_site(n: u32) {
    tracing::debug!(n, "the call site under test");
}

#[test]
fn a_call_site_first_reached_without_a_subscriber_is_still_captured() {
    let (reached, wait_reached) = mpsc::channel();
    let (captured, wait_captured) = mpsc::channel();
    let capturing = std::thread::spawn(move || {
        let ((), log) = logs::capture(logs::Spans::Off, || {
            // The capturing dispatcher now exists; another thread, with none, reaches the call
            // site first and so decides its cached interest.
            reached.send(()).unwrap();
            wait_captured.recv().unwrap();
            the_call_site(2);
        });
        log
    });
    wait_reached.recv().unwrap();
    the_call_site(1);
    captured.send(()).unwrap();
    let log = capturing.join().unwrap();
    assert!(
        log.contains("the call site under test n=2"),
        "the capturing thread's event is missing: {log:?}"
    );
    assert!(
        !log.contains("n=1"),
        "another thread's event leaked in: {log:?}"
    );
}
