//! The transcript grammar both protocol suites are written in, and the runner that executes
//! it against any [`mail_common::Machine`] ([`Runner`]): escapes, blocks of server and client
//! bytes, how a server read is split into `handle_input` calls, the checks on bytes, events,
//! errors and deadlines, and loading a corpus.
//!
//! Here, in the test-support crate, because `pop3-proto` and `smtp-submit` already use this
//! crate as a dev-dependency and it depends on neither of them (no second copy of either crate
//! is built). The protocol-specific part (configuration, calls into the client, how an event
//! is rendered, extra directives) is each crate's [`Protocol`] impl in its tests.
//!
//! # Grammar
//!
//! ```text
//! # a comment; comments and blank lines are ignored (they do not end a block)
//! S: +OK ready        server bytes, CRLF appended ("S:" alone is a bare CRLF)
//! S> +OK par          server bytes, no CRLF (partial lines)
//! C: CAPA             client bytes the client must have transmitted next, CRLF appended
//! C> BDAT 5           client bytes, no CRLF
//! !read               ends a block of server bytes explicitly (two reads back to back)
//! !name args          a directive, interpreted by the protocol's runner
//! ```
//!
//! Consecutive `S` lines form one server read ([`StepKind::Read`]); consecutive `C` lines form one
//! block of expected client bytes ([`StepKind::Sent`]). Escapes `\r \n \t \0 \\ \xHH` work in `S`
//! and `C` text and wherever a runner calls [`unescape`] on a directive's arguments.
//!
//! Directives the [`Runner`] understands for every protocol (each protocol adds its own
//! `!config` settings, call words, event renderings and directives; the runner's own
//! expectations such as `!new` and `!flights` are listed there):
//!
//! ```text
//! !call <api>          a call into the client; when the client refuses it, the next line
//!                      must be !misuse
//! !misuse <reason>     the refusal's Debug (see "Debug expectations")
//! !tls / !eof / !timeout   the TLS handshake finished / the server closed / a deadline passed
//! !error <error>       the previous input failed fatally, with this Debug; the client must then
//!                      stay silent and repeat the error
//! !event <rendering>   the next event, as the protocol renders it
//! !at <secs>           the clock: seconds since the session started (fractions allowed)
//! !deadline <secs|none>   what poll_timeout returns, in seconds since the session started
//! ```
//!
//! Debug expectations (`!misuse`, `!error`) are the value's `Debug` text exactly, or its
//! beginning when written with a trailing `..` ([`debug_matches`]).
//!
//! `testground/scripts/convert-transcripts.py` rewrites transcripts in the older per-crate
//! spellings into this grammar.

mod runner;

pub use runner::{ErrorOf, EventOf, Outcome, Protocol, Runner, run};

use std::path::Path;
use std::time::{Duration, Instant};

/// Decodes the escapes `\r \n \t \0 \\ \xHH`.
///
/// # Panics
/// On any other escape, a bad `\x`, or a trailing backslash: a transcript typo.
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("bad \\x escape"));
            }
            other => panic!("bad escape \\{:?}", other.map(char::from)),
        }
    }
    out
}

/// [`unescape`] for text arguments.
///
/// # Panics
/// As [`unescape`], and when the result is not UTF-8.
pub fn unescape_str(text: &str) -> String {
    String::from_utf8(unescape(text)).expect("UTF-8 argument")
}

/// Bytes as printable ASCII with escapes, for assertion messages.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Whether `debug` (a value's `Debug` text) meets the expectation `expected`: equal, or
/// starting with it when `expected` ends in `..`.
pub fn debug_matches(expected: &str, debug: &str) -> bool {
    match expected.strip_suffix("..") {
        Some(prefix) => debug.starts_with(prefix),
        None => debug == expected,
    }
}

/// The transcript's clock: `!at` sets it, `!deadline` reads against it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    now: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock at the start of a session.
    pub fn new() -> Self {
        let start = Instant::now();
        Self { start, now: start }
    }

    /// The session's start.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// `!at <secs>`.
    ///
    /// # Panics
    /// When `args` is not a number of seconds, or lies before the current time.
    pub fn at(&mut self, args: &str) {
        let at = self.start + seconds(args);
        assert!(at >= self.now, "!at {args} goes back in time");
        self.now = at;
    }

    /// Checks `!deadline <secs|none>` against what the client's `poll_timeout` returned;
    /// `Err` describes the mismatch.
    pub fn deadline(&self, args: &str, got: Option<Instant>) -> Result<(), String> {
        let expected = (args != "none").then(|| self.start + seconds(args));
        if got == expected {
            Ok(())
        } else {
            let got = got.map(|d| d.saturating_duration_since(self.start).as_secs_f64());
            Err(format!("expected deadline {args}, got {got:?} s"))
        }
    }
}

fn seconds(args: &str) -> Duration {
    Duration::from_secs_f64(
        args.parse::<f64>()
            .unwrap_or_else(|_| panic!("{args:?} is not seconds")),
    )
}

/// One step of a transcript, with the number of its (first) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'a> {
    /// 1-based line number.
    pub line: usize,
    /// What the step is.
    pub kind: StepKind<'a>,
}

/// What a [`Step`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind<'a> {
    /// One server read: the bytes of consecutive `S:`/`S>` lines.
    Read(Vec<u8>),
    /// Client bytes expected next: the bytes of consecutive `C:`/`C>` lines.
    Sent(Vec<u8>),
    /// `!name args` (escapes left to the runner).
    Directive {
        /// The name, without the `!`.
        name: &'a str,
        /// The rest of the line after the first space, as written.
        args: &'a str,
    },
}

/// Parses a transcript into steps.
///
/// # Panics
/// On a line that is neither a comment, blank, `S`, `C` nor a directive, naming `name` and
/// the line number.
pub fn parse<'a>(name: &str, text: &'a str) -> Vec<Step<'a>> {
    let mut steps: Vec<Step<'a>> = Vec::new();
    // Whether the last step is a block that the next line of the same kind extends.
    let mut open = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = |rest: &str, crlf: bool| {
            let mut bytes = unescape(rest);
            if crlf {
                bytes.extend_from_slice(b"\r\n");
            }
            bytes
        };
        let (server, data) = if let Some(rest) = line.strip_prefix("S: ") {
            (true, bytes(rest, true))
        } else if line == "S:" {
            (true, bytes("", true))
        } else if let Some(rest) = line.strip_prefix("S> ") {
            (true, bytes(rest, false))
        } else if let Some(rest) = line.strip_prefix("C: ") {
            (false, bytes(rest, true))
        } else if line == "C:" {
            (false, bytes("", true))
        } else if let Some(rest) = line.strip_prefix("C> ") {
            (false, bytes(rest, false))
        } else if let Some(directive) = line.strip_prefix('!') {
            open = false;
            let (name, args) = directive.split_once(' ').unwrap_or((directive, ""));
            if name != "read" {
                steps.push(Step {
                    line: line_no,
                    kind: StepKind::Directive { name, args },
                });
            }
            continue;
        } else {
            panic!("{name}:{line_no}: unparsable line {line:?}");
        };
        match steps.last_mut() {
            Some(Step {
                kind: StepKind::Read(block),
                ..
            }) if open && server => block.extend(data),
            Some(Step {
                kind: StepKind::Sent(block),
                ..
            }) if open && !server => block.extend(data),
            _ => steps.push(Step {
                line: line_no,
                kind: if server {
                    StepKind::Read(data)
                } else {
                    StepKind::Sent(data)
                },
            }),
        }
        open = true;
    }
    steps
}

/// Decides how one server read of `len` bytes is cut into `handle_input` calls: the piece
/// lengths, each at least 1, summing to `len`.
pub type Splitter = Box<dyn FnMut(usize) -> Vec<usize>>;

/// Every read in one piece.
pub fn whole() -> Splitter {
    Box::new(|len| if len == 0 { Vec::new() } else { vec![len] })
}

/// The piece sizes in `sizes` in turn, carried on from one read to the next (each clamped to
/// what is left of the read); empty `sizes` means whole reads.
pub fn cycling(sizes: Vec<usize>) -> Splitter {
    if sizes.is_empty() {
        return whole();
    }
    let mut next = 0;
    Box::new(move |len| {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            let piece = sizes[next % sizes.len()].clamp(1, left);
            next += 1;
            pieces.push(piece);
            left -= piece;
        }
        pieces
    })
}

/// Pieces of 1 to 24 bytes, chosen by a small PRNG seeded with `seed` (reproducible).
pub fn seeded(seed: u64) -> Splitter {
    let mut state = seed | 1;
    Box::new(move |len| {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let piece = 1 + usize::try_from(state % 24).unwrap_or(0).min(left - 1);
            pieces.push(piece);
            left -= piece;
        }
        pieces
    })
}

/// Feeds `data` to `input` in the pieces `splitter` chooses, stopping at the first error.
///
/// # Panics
/// When the splitter's pieces do not add up to the read.
pub fn feed<E>(
    data: &[u8],
    splitter: &mut Splitter,
    mut input: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let pieces = splitter(data.len());
    assert_eq!(pieces.iter().sum::<usize>(), data.len(), "splitter pieces");
    let mut start = 0;
    for piece in pieces {
        input(&data[start..start + piece])?;
        start += piece;
    }
    Ok(())
}

/// Every `*.txt` file in `dir`, sorted by name, as (file name, text).
///
/// # Panics
/// When the directory or a file cannot be read.
pub fn corpus(dir: impl AsRef<Path>) -> Vec<(String, String)> {
    let dir = dir.as_ref();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

/// Runs `run` on every transcript of `corpus`, catching panics, and returns one line per
/// failed transcript (its name and the panic message).
pub fn failures(corpus: &[(String, String)], mut run: impl FnMut(&str, &str)) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, text) in corpus {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(name, text)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{name}: {message}"));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::{Step, StepKind, cycling, parse, seeded, unescape};

    #[test]
    fn blocks_join_consecutive_lines_and_end_at_anything_else() {
        let text =
            "S: +OK a\n# comment\nS> +O\n\nS: K\n!read\nS: second\nC: CAPA\nC> X\n!event e f\nC:\n";
        let steps = parse("t", text);
        let kinds: Vec<_> = steps.iter().map(|s| (s.line, s.kind.clone())).collect();
        assert_eq!(
            kinds,
            [
                (1, StepKind::Read(b"+OK a\r\n+OK\r\n".to_vec())),
                (7, StepKind::Read(b"second\r\n".to_vec())),
                (8, StepKind::Sent(b"CAPA\r\nX".to_vec())),
                (
                    10,
                    StepKind::Directive {
                        name: "event",
                        args: "e f"
                    }
                ),
                (11, StepKind::Sent(b"\r\n".to_vec())),
            ]
        );
        assert!(matches!(steps[0], Step { line: 1, .. }));
    }

    #[test]
    fn debug_expectations_are_exact_or_prefixes() {
        use super::debug_matches;
        assert!(debug_matches("NotReady", "NotReady"));
        assert!(!debug_matches("NotReady", "NotReady(x)"));
        assert!(debug_matches("Failed..", "Failed(Timeout)"));
        assert!(!debug_matches("Failed..", "NotReady"));
    }

    #[test]
    fn the_clock_counts_from_the_session_start() {
        let mut clock = super::Clock::new();
        assert!(clock.deadline("none", None).is_ok());
        clock.at("1.5");
        assert_eq!(
            clock.now() - clock.start(),
            std::time::Duration::from_millis(1500)
        );
        let in_ten = clock.start() + std::time::Duration::from_secs(10);
        assert!(clock.deadline("10", Some(in_ten)).is_ok());
        assert!(clock.deadline("9", Some(in_ten)).is_err());
        assert!(clock.deadline("none", Some(in_ten)).is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\r\n\t\0\\\x7f"), b"a\r\n\t\0\\\x7f");
        assert!(std::panic::catch_unwind(|| unescape(r"\q")).is_err());
    }

    #[test]
    fn splitters_cover_every_byte() {
        for mut split in [cycling(vec![3, 1]), seeded(7)] {
            for len in [0, 1, 5, 100] {
                let pieces = split(len);
                assert_eq!(pieces.iter().sum::<usize>(), len);
                assert!(pieces.iter().all(|p| *p > 0));
            }
        }
        let mut split = cycling(vec![2, 5]);
        assert_eq!(split(3), [2, 1]);
        // carried on: the next read starts with the size after the last one used
        assert_eq!(split(9), [2, 5, 2]);
    }
}
