//! Split invariance: every transcript passes, with the same events and the same bytes sent,
//! whatever the chunking of the server's bytes.

mod common;

use mail_testground::transcript;
use proptest::prelude::*;

fn run_all(chunks: &[usize]) {
    for (name, text) in common::transcripts() {
        common::Runner::new(&name, transcript::cycling(chunks.to_vec())).run(&text);
    }
}

#[test]
fn one_byte_at_a_time() {
    run_all(&[1]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking(chunks in proptest::collection::vec(1_usize..40, 1..64)) {
        run_all(&chunks);
    }
}
