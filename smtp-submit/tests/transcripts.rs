//! Runs every `tests/transcripts/*.txt` file (grammar: `mail_testground::transcript`;
//! directives: `harness/mod.rs`), whole, byte by byte, and with random splits of each server
//! read: the outcome must not depend on how the server's bytes were cut into reads.

mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use harness::{Outcome, run_transcript, transcripts};
use mail_testground::transcript::{self, Splitter};
use proptest::prelude::*;

fn run_all(splitter: impl Fn() -> Splitter) -> Vec<String> {
    transcript::failures(&transcripts(), |name, text| {
        run_transcript(name, text, splitter());
    })
}

#[test]
fn every_transcript_passes() {
    let failures = run_all(transcript::whole);
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(transcripts().len() >= 40, "transcript corpus went missing");
}

#[test]
fn every_transcript_passes_byte_by_byte() {
    let failures = run_all(|| transcript::cycling(vec![1]));
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn outcome_of(name: &str, text: &str, splitter: Splitter) -> Option<Outcome> {
    catch_unwind(AssertUnwindSafe(|| run_transcript(name, text, splitter))).ok()
}

/// Each transcript with its outcome when every server read is fed whole, computed once.
fn expected_outcomes() -> &'static [(String, String, Option<Outcome>)] {
    static EXPECTED: OnceLock<Vec<(String, String, Option<Outcome>)>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        transcripts()
            .into_iter()
            .map(|(name, text)| {
                let outcome = outcome_of(&name, &text, transcript::whole());
                (name, text, outcome)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Split invariance over the whole corpus: the same bytes sent, events and error whatever
    /// the read boundaries.
    #[test]
    fn any_split_gives_the_same_outcome(seed in any::<u64>()) {
        for (name, text, expected) in expected_outcomes() {
            // A failing transcript is reported by `every_transcript_passes`.
            let Some(expected) = expected else { continue };
            let got = outcome_of(name, text, transcript::seeded(seed));
            prop_assert_eq!(got.as_ref(), Some(expected), "{}", name);
        }
    }
}
