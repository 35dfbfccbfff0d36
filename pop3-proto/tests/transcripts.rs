//! Runs every `tests/transcripts/*.txt` file (format: see `common/mod.rs`) with each server
//! block fed in one piece.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

#[test]
fn all_transcripts_pass() {
    let mut failures = Vec::new();
    let files = common::transcripts();
    assert!(files.len() >= 10, "transcripts missing");
    for (name, text) in files {
        let run = catch_unwind(AssertUnwindSafe(|| {
            common::Runner::new(&name, Vec::new()).run(&text);
        }));
        if run.is_err() {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "failed transcripts: {failures:?}");
}
