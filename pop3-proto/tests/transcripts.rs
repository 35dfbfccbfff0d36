//! Runs every `tests/transcripts/*.txt` file (grammar: `mail_testground::transcript`;
//! directives: `common/mod.rs`) with each server read fed in one piece.

mod common;

use mail_testground::transcript;

#[test]
fn all_transcripts_pass() {
    let files = common::transcripts();
    assert!(files.len() >= 10, "transcripts missing");
    let failures = transcript::failures(&files, |name, text| {
        common::Runner::new(name, transcript::whole()).run(text);
    });
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
