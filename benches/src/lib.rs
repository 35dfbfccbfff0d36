//! Benchmark support: realistic mail corpora for the criterion codec benches, and the small
//! pieces the whole-process benchmark programs in `src/bin/` share (argument parsing, a TLS
//! connector for the peer crates, a Maildir-like writer).
//!
//! The suite is run by `bash benches/run.sh`, which writes `benches/README.md`.
#![forbid(unsafe_code)]

pub mod args;
pub mod corpus;
pub mod maildir;
pub mod tls;

use std::time::Instant;

/// Prints the one result line every benchmark program ends with, parsed by the runner:
/// `RESULT <program> messages=<n> bytes=<n> seconds=<s>` (on stderr, so stdout stays free).
pub fn report(program: &str, messages: u64, bytes: u64, started: Instant) {
    eprintln!(
        "RESULT {program} messages={messages} bytes={bytes} seconds={:.6}",
        started.elapsed().as_secs_f64()
    );
}

/// A current-thread tokio runtime: every program here is one connection, one task.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
