//! Printing that behaves like a Unix tool when its reader goes away.
//!
//! `println!` panics when stdout is a closed pipe (`mailctl discover ... | head`), because
//! Rust ignores `SIGPIPE`. This module's `println!` and `eprintln!` shadow the standard ones
//! in all of mailctl, so every line goes through here: when stdout's reader is gone
//! the process exits at once, quietly, with [`BROKEN_PIPE_STATUS`] (what a shell reports for a
//! tool killed by `SIGPIPE`); a closed or failing stderr is ignored, so a fetch run with its
//! stderr closed still fetches.

use std::fmt;
use std::io::{self, Write};

/// The exit status after stdout's reader went away: 128 + `SIGPIPE` (13), as a shell reports
/// for `cat` or `grep` in the same place.
pub(crate) const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes one line to stdout (see the module docs for a closed pipe).
pub(crate) fn stdout_line(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        stderr_line(format_args!(
            "mailctl: local I/O error: writing to stdout: {error}"
        ));
        std::process::exit(7);
    }
}

/// Writes one line to stderr; errors are ignored (there is nowhere left to report them).
pub(crate) fn stderr_line(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` that exits quietly on a closed pipe. Declared with `#[macro_use]` before every
/// other module of mailctl, it shadows the standard `println!` in all of them, so no output
/// path (including subcommands added later) can panic on a closed pipe.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (shadows the standard one, as `println!` above).
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}
