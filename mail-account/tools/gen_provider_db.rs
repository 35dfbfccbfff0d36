//! Regenerates `src/providers/ispdb_generated.rs` from an ISPDB snapshot.
//!
//! Usage (from the repository root):
//! `cargo run -p mail-account --bin gen-provider-db -- mail-account/data/ispdb mail-account/src/providers/ispdb_generated.rs`
//!
//! With no arguments it reads `mail-account/data/ispdb` and prints the table to standard output.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let dir = args
        .next()
        .map_or_else(|| PathBuf::from("mail-account/data/ispdb"), PathBuf::from);
    let out = args.next().map(PathBuf::from);
    let table = match mail_account::providers::render_ispdb_table(&dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gen-provider-db: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, table) {
                eprintln!("gen-provider-db: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("gen-provider-db: wrote {}", path.display());
            // The OAuth 2.0 table goes next to the server table.
            let oauth_path = path.with_file_name("ispdb_oauth2_generated.rs");
            let written = mail_account::providers::oauth2::render_ispdb_oauth2_table(&dir)
                .and_then(|oauth| std::fs::write(&oauth_path, oauth));
            if let Err(e) = written {
                eprintln!(
                    "gen-provider-db: cannot write {}: {e}",
                    oauth_path.display()
                );
                return ExitCode::FAILURE;
            }
            eprintln!("gen-provider-db: wrote {}", oauth_path.display());
        }
        None => print!("{table}"),
    }
    ExitCode::SUCCESS
}
