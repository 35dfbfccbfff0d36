//! Runs every `tests/transcripts/*.txt` file (format: see `harness/mod.rs`), whole, byte by
//! byte, and with random splits of each server read: the outcome must not depend on how the
//! server's bytes were cut into reads.

mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use harness::{Outcome, run_transcript, transcripts, whole};
use proptest::prelude::*;

fn run_all(mut splitter: impl FnMut(&str) -> Box<dyn FnMut(usize) -> Vec<usize>>) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, text) in transcripts() {
        let mut split = splitter(&name);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_transcript(&name, &text, &mut *split)
        }));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    failures
}

#[test]
fn every_transcript_passes() {
    let failures = run_all(|_| Box::new(whole));
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
    let failures = run_all(|_| Box::new(|len| vec![1; len]));
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Cuts `len` bytes at the positions chosen by a tiny PRNG seeded from `seed`.
fn seeded_splitter(seed: u64) -> impl FnMut(usize) -> Vec<usize> {
    let mut state = seed | 1;
    move |len| {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let piece = 1 + usize::try_from(state % 24).unwrap().min(left - 1);
            pieces.push(piece);
            left -= piece;
        }
        pieces
    }
}

fn outcome_of(
    name: &str,
    text: &str,
    splitter: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Option<Outcome> {
    catch_unwind(AssertUnwindSafe(|| run_transcript(name, text, splitter))).ok()
}

/// Each transcript with its outcome when every server read is fed whole, computed once.
fn expected_outcomes() -> &'static [(String, String, Option<Outcome>)] {
    static EXPECTED: OnceLock<Vec<(String, String, Option<Outcome>)>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        transcripts()
            .into_iter()
            .map(|(name, text)| {
                let outcome = outcome_of(&name, &text, &mut whole);
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
            let mut split = seeded_splitter(seed);
            let got = outcome_of(name, text, &mut split);
            prop_assert_eq!(got.as_ref(), Some(expected), "{}", name);
        }
    }
}
