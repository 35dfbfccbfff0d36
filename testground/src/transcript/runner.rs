//! The run loop both protocol suites share: a transcript's steps executed against any
//! [`Machine`], with the protocol supplying only its configuration, its calls, how its events
//! are spelt and any directives of its own ([`Protocol`]).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::Instant;

use mail_common::Machine;

use super::{Clock, Splitter, StepKind, debug_matches, escape, feed, parse, unescape_str};

/// The events of a protocol's client.
pub type EventOf<P> = <<P as Protocol>::Client as Machine>::Event;
/// The fatal errors of a protocol's client.
pub type ErrorOf<P> = <<P as Protocol>::Client as Machine>::Error;

/// What a protocol adds to the shared run loop. `Default` is the configuration a session
/// starts with (again after `!new`).
pub trait Protocol: Default + Sized {
    /// The sans-IO client the transcripts drive.
    type Client: Machine;

    /// Whether the client's output is written only when a `C:` block declares it, the block
    /// being exactly what one `poll_transmit` offers, rather than after every step with blocks
    /// matching it in order. Bytes of a client that then fails fatally were never written, so
    /// they need no block.
    const WRITE_ON_DECLARE: bool;

    /// Applies `!config <args>`.
    fn configure(&mut self, args: &str);

    /// The client, created at the session's start before its first step that is not `!config`.
    fn client(&self, start: Instant) -> Self::Client;

    /// The event as an `!event` line spells it.
    fn render(&self, event: &EventOf<Self>) -> String;

    /// Runs a directive the loop does not know (`!call` and the protocol's own); `false` when
    /// the protocol does not know it either.
    fn directive(run: &mut Runner<Self>, name: &str, args: &str) -> bool;

    /// After `error` poisoned the client: whether a call into it is refused for that reason.
    fn refuses_after(client: &mut Self::Client, now: Instant, error: &ErrorOf<Self>) -> bool;
}

/// Everything observable about one run, for comparing runs of the same transcript.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every byte the client wrote.
    pub sent: Vec<u8>,
    /// Every event, rendered, in order.
    pub events: Vec<String>,
    /// The `Debug` of the last fatal error.
    pub error: Option<String>,
}

/// Executes one transcript; panics with the file name and line number at the first mismatch.
///
/// What the loop checks, the same way for every protocol:
///
/// - After every step the client's events are queued and its output is written out (unless
///   `!hold`); a `C:`/`C>` block must match what was written next. With
///   [`Protocol::WRITE_ON_DECLARE`] the output is written only when a block declares it, and
///   the block must be all of it.
/// - Before a server read, every written byte and every event must have been declared (and
///   with `WRITE_ON_DECLARE` nothing may wait to be written).
/// - A fatal error must be matched by the `!error` line right after the step that caused it,
///   and the client must then be poisoned: silent, the same error again, no deadline, and
///   [`Protocol::refuses_after`] holds. A refused call or `!tls` must be matched by `!misuse`.
/// - At the end (and at `!new`) nothing written or queued may be left undeclared.
///
/// Directives of the loop itself, beyond those in the [grammar](crate::transcript):
///
/// ```text
/// !config <settings>   before anything else in a session: Protocol::configure
/// !new                 check the session is complete, then start a fresh one (default
///                      configuration, new clock)
/// !no-event            no event is queued now
/// !flights <n>         the last call into the client had its output written in n slices
/// !hold / !release     stop writing the client's output / write it all again
/// !transmit <n>        while holding: a partial write of n bytes
/// ```
pub struct Runner<P: Protocol> {
    /// The protocol's state: configuration and whatever its calls remember.
    pub protocol: P,
    name: String,
    line: usize,
    splitter: Splitter,
    clock: Clock,
    client: Option<P::Client>,
    /// Written but not yet matched by a `C:` block.
    sent: Vec<u8>,
    events: VecDeque<EventOf<P>>,
    error: Option<ErrorOf<P>>,
    /// The `Debug` of a refusal, until `!misuse` takes it.
    misuse: Option<String>,
    holding: bool,
    /// `poll_transmit` slices written after the last call into the client.
    flights: usize,
    outcome: Outcome,
}

impl<P: Protocol> Debug for Runner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// Runs `text` (the transcript `name`), cutting each server read as `splitter` decides, and
/// returns what was observed.
pub fn run<P: Protocol>(name: &str, text: &str, splitter: Splitter) -> Outcome
where
    ErrorOf<P>: Debug + PartialEq,
    <P::Client as Machine>::Misuse: Debug,
{
    Runner::<P>::new(name, splitter).run(text)
}

impl<P: Protocol> Runner<P>
where
    ErrorOf<P>: Debug + PartialEq,
    <P::Client as Machine>::Misuse: Debug,
{
    /// A runner for the transcript `name`.
    pub fn new(name: &str, splitter: Splitter) -> Self {
        Self {
            protocol: P::default(),
            name: name.to_owned(),
            line: 0,
            splitter,
            clock: Clock::new(),
            client: None,
            sent: Vec::new(),
            events: VecDeque::new(),
            error: None,
            misuse: None,
            holding: false,
            flights: 0,
            outcome: Outcome::default(),
        }
    }

    /// Runs every step, then checks the session left nothing undeclared.
    pub fn run(mut self, text: &str) -> Outcome {
        for step in parse(&self.name, text) {
            self.line = step.line;
            let config = matches!(step.kind, StepKind::Directive { name: "config", .. });
            let expectation = matches!(
                step.kind,
                StepKind::Directive {
                    name: "error" | "misuse",
                    ..
                }
            );
            if !expectation {
                self.settled();
            }
            if !config && self.client.is_none() {
                self.client = Some(self.protocol.client(self.clock.start()));
                self.drain();
            }
            match step.kind {
                StepKind::Read(data) => self.read(&data),
                StepKind::Sent(expected) => self.expect_sent(&expected),
                StepKind::Directive { name, args } => self.directive(name, args.trim()),
            }
        }
        self.line = text.lines().count() + 1;
        self.settled();
        self.finish_session();
        self.outcome
    }

    /// Panics with the current place in the transcript.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{}:{}: {message}", self.name, self.line);
    }

    /// The transcript's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The client (created before any step but `!config`).
    pub fn client(&mut self) -> &mut P::Client {
        self.client
            .as_mut()
            .expect("the client exists after !config")
    }

    /// Writes out the client's output (unless holding or [`Protocol::WRITE_ON_DECLARE`]) and
    /// queues its events; call after every call into the client, and only then (`!flights`
    /// counts the slices of the last drain).
    pub fn drain(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        self.flights = 0;
        if !self.holding && !P::WRITE_ON_DECLARE {
            while let Some(bytes) = client.poll_transmit() {
                let written = bytes.len();
                self.sent.extend_from_slice(bytes);
                self.outcome.sent.extend_from_slice(bytes);
                client.advance_transmit(written);
                self.flights += 1;
            }
        }
        while let Some(event) = client.poll_event() {
            self.events.push_back(event);
        }
    }

    /// Drains, then keeps a refusal for `!misuse` to match.
    pub fn refused<T, E: Debug>(&mut self, result: Result<T, E>) -> Option<T> {
        self.drain();
        result
            .map_err(|reason| self.misuse = Some(format!("{reason:?}")))
            .ok()
    }

    /// The next queued event, taken.
    pub fn next_event(&mut self) -> EventOf<P> {
        let Some(event) = self.events.pop_front() else {
            self.fail("expected an event, none left");
        };
        self.outcome.events.push(self.protocol.render(&event));
        event
    }

    /// The next queued event, left in the queue.
    pub fn peek_event(&self) -> Option<&EventOf<P>> {
        self.events.front()
    }

    /// Nothing failed that an `!error` or `!misuse` line has not matched.
    fn settled(&self) {
        if let Some(error) = &self.error {
            self.fail(&format!("unexpected error {error:?}"));
        }
        if let Some(misuse) = &self.misuse {
            self.fail(&format!("call refused: {misuse}"));
        }
    }

    /// Every written byte and every event declared.
    fn declared(&self, when: &str) {
        if !self.sent.is_empty() {
            self.fail(&format!(
                "client bytes not declared {when}: \"{}\"",
                escape(&self.sent)
            ));
        }
        if P::WRITE_ON_DECLARE {
            self.unwritten(when);
        }
        if let Some(event) = self.events.front() {
            self.fail(&format!(
                "event not declared {when}: {}",
                self.protocol.render(event)
            ));
        }
    }

    fn finish_session(&mut self) {
        self.declared("at the end");
        self.unwritten("at the end");
    }

    fn unwritten(&self, when: &str) {
        if let Some(pending) = self.client.as_ref().and_then(|c| c.poll_transmit()) {
            self.fail(&format!(
                "client bytes not written {when}: \"{}\"",
                escape(pending)
            ));
        }
    }

    fn record(&mut self, result: Result<(), ErrorOf<P>>) {
        if let Err(error) = result {
            if self.error.is_some() {
                self.fail(&format!("second error {error:?}"));
            }
            self.outcome.error = Some(format!("{error:?}"));
            self.error = Some(error);
        }
        self.drain();
    }

    fn read(&mut self, data: &[u8]) {
        self.declared("before server input");
        let now = self.clock.now();
        let client = self.client.as_mut().expect("client");
        let result = feed(data, &mut self.splitter, |piece| {
            client.handle_input(now, piece)
        });
        self.record(result);
    }

    fn expect_sent(&mut self, expected: &[u8]) {
        let matched = if P::WRITE_ON_DECLARE {
            let client = self.client.as_mut().expect("client");
            if let Some(bytes) = client.poll_transmit() {
                let written = bytes.len();
                self.sent.extend_from_slice(bytes);
                self.outcome.sent.extend_from_slice(bytes);
                client.advance_transmit(written);
            }
            self.sent == expected
        } else {
            self.sent.starts_with(expected)
        };
        if !matched {
            self.fail(&format!(
                "client bytes: expected \"{}\", sent \"{}\"",
                escape(expected),
                escape(&self.sent)
            ));
        }
        self.sent.drain(..expected.len());
    }

    fn directive(&mut self, name: &str, args: &str) {
        let now = self.clock.now();
        match name {
            "config" => {
                if self.client.is_some() {
                    self.fail("!config after the client was created");
                }
                self.protocol.configure(args);
            }
            "new" => {
                self.finish_session();
                self.protocol = P::default();
                self.client = None;
                self.clock = Clock::new();
            }
            "event" => {
                let expected = unescape_str(args);
                if self.peek_event().is_none() {
                    self.fail(&format!("expected event {expected:?}, none left"));
                }
                let event = self.next_event();
                let rendered = self.protocol.render(&event);
                if rendered != expected {
                    self.fail(&format!("expected event {expected:?}, got {rendered:?}"));
                }
            }
            "no-event" => {
                if let Some(event) = self.events.front() {
                    let rendered = self.protocol.render(event);
                    self.fail(&format!("unexpected event {rendered}"));
                }
            }
            "error" => {
                let Some(error) = self.error.take() else {
                    self.fail(&format!("expected error {args}, none happened"));
                };
                let rendered = format!("{error:?}");
                if !debug_matches(args, &rendered) {
                    self.fail(&format!("expected error {args}, got {rendered}"));
                }
                self.check_poisoned(&error);
            }
            "misuse" => match self.misuse.take() {
                Some(misuse) if debug_matches(args, &misuse) => {}
                got => self.fail(&format!(
                    "expected the call refused with {args}, got {got:?}"
                )),
            },
            "tls" => {
                let result = self.client().tls_established(now);
                self.refused(result);
            }
            "eof" => {
                let result = self.client().handle_eof(now);
                self.record(result);
            }
            "timeout" => {
                let result = self.client().handle_timeout(now);
                self.record(result);
            }
            "at" => self.clock.at(args),
            "deadline" => {
                let deadline = self.client().poll_timeout();
                if let Err(mismatch) = self.clock.deadline(args, deadline) {
                    self.fail(&mismatch);
                }
            }
            "flights" => {
                let expected: usize = args.parse().expect("!flights <count>");
                if self.flights != expected {
                    self.fail(&format!(
                        "expected {expected} transmit slices, got {}",
                        self.flights
                    ));
                }
            }
            "hold" => self.holding = true,
            "release" => {
                self.holding = false;
                self.drain();
            }
            "transmit" => {
                let n: usize = args.parse().expect("!transmit <bytes>");
                let pending = self.client().poll_transmit().unwrap_or_default().to_vec();
                let Some(written) = pending.get(..n) else {
                    self.fail(&format!("!transmit {n}: only {} pending", pending.len()));
                };
                self.sent.extend_from_slice(written);
                self.outcome.sent.extend_from_slice(written);
                self.client().advance_transmit(n);
                self.drain();
            }
            other => {
                if !P::directive(self, other, args) {
                    self.fail(&format!("unknown directive !{other}"));
                }
            }
        }
    }

    /// After a fatal error the client stays silent and repeats the error.
    fn check_poisoned(&mut self, error: &ErrorOf<P>) {
        let now = self.clock.now();
        let client = self.client();
        let again = client.handle_input(now, b"+OK 250 ok\r\n").err();
        let timeout = client.handle_timeout(now).err();
        let silent = client.poll_transmit().is_none() && client.poll_timeout().is_none();
        let refused = P::refuses_after(client, now, error);
        if again.as_ref() != Some(error) || timeout.as_ref() != Some(error) || !silent || !refused {
            self.fail("client is not poisoned after a fatal error");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use mail_common::{Machine, Transmit};

    use super::{Protocol, Runner};
    use crate::transcript::{cycling, failures, whole};

    /// Answers each complete line `x` with `x` sent back and an event `x`; `bad` is fatal.
    #[derive(Default)]
    struct Echo {
        rx: Vec<u8>,
        tx: Transmit,
        events: Vec<String>,
        poisoned: bool,
    }

    impl Machine for Echo {
        type Error = String;
        type Event = String;
        type Misuse = &'static str;

        fn poll_event(&mut self) -> Option<String> {
            (!self.events.is_empty()).then(|| self.events.remove(0))
        }
        fn wants_tls(_: &String) -> bool {
            false
        }
        fn tls_established(&mut self, _: Instant) -> Result<(), &'static str> {
            Err("NoTls")
        }
        fn is_greeting_timeout(_: &String) -> bool {
            false
        }
        fn handle_input(&mut self, _: Instant, bytes: &[u8]) -> Result<(), String> {
            if self.poisoned {
                return Err("Bad".into());
            }
            self.rx.extend_from_slice(bytes);
            while let Some(end) = self.rx.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.rx.drain(..=end).collect();
                if line == b"bad\n" {
                    self.poisoned = true;
                    return Err("Bad".into());
                }
                self.tx.push(&line);
                self.events
                    .push(String::from_utf8_lossy(&line).trim().to_owned());
            }
            Ok(())
        }
        fn handle_eof(&mut self, now: Instant) -> Result<(), String> {
            self.handle_input(now, b"")
        }
        fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
            self.handle_input(now, b"")
        }
        fn poll_transmit(&self) -> Option<&[u8]> {
            if self.poisoned {
                None
            } else {
                self.tx.pending()
            }
        }
        fn advance_transmit(&mut self, written: usize) {
            self.tx.advance(written);
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    #[derive(Default)]
    struct EchoProtocol;

    impl Protocol for EchoProtocol {
        type Client = Echo;
        const WRITE_ON_DECLARE: bool = false;
        fn configure(&mut self, _: &str) {}
        fn client(&self, _: Instant) -> Echo {
            Echo::default()
        }
        fn render(&self, event: &String) -> String {
            format!("echo {event}")
        }
        fn directive(_: &mut Runner<Self>, _: &str, _: &str) -> bool {
            false
        }
        fn refuses_after(client: &mut Echo, _: Instant, _: &String) -> bool {
            client.poisoned
        }
    }

    fn run(text: &str) -> Vec<String> {
        let corpus = [("t".to_owned(), text.to_owned())];
        failures(&corpus, |name, text| {
            Runner::<EchoProtocol>::new(name, cycling(vec![1])).run(text);
        })
    }

    #[test]
    fn a_complete_transcript_passes_and_reports_its_outcome() {
        let text = "S> a\\nb\\n\nC> a\nC> \\n\n!event echo a\nC> b\\n\n!event echo b\n!no-event\n";
        assert_eq!(run(text), Vec::<String>::new());
        let outcome = Runner::<EchoProtocol>::new("t", whole()).run(text);
        assert_eq!(outcome.sent, b"a\nb\n");
        assert_eq!(outcome.events, ["echo a", "echo b"]);
    }

    #[test]
    fn every_byte_and_event_must_be_declared() {
        // The last byte of the echo is missing.
        assert_eq!(
            run("S> a\\n\nC> a\n!event echo a\n"),
            [r#"t: t:4: client bytes not declared at the end: "\n""#]
        );
        assert_eq!(
            run("S> a\\n\nC> a\\n\nS> b\\n\n"),
            ["t: t:3: event not declared before server input: echo a"]
        );
        assert_eq!(
            run("S> a\\n\nC> b\\n\n"),
            [r#"t: t:2: client bytes: expected "b\n", sent "a\n""#]
        );
    }

    #[test]
    fn errors_and_refusals_must_be_matched_next() {
        assert_eq!(run("S> bad\\n\n!error \"Bad\"\n"), Vec::<String>::new());
        assert_eq!(
            run("S> bad\\n\n!eof\n"),
            ["t: t:2: unexpected error \"Bad\""]
        );
        assert_eq!(run("!tls\n!misuse \"NoTls\"\n"), Vec::<String>::new());
        assert_eq!(run("!tls\n!misuse Other\n").len(), 1);
        assert_eq!(
            run("!frobnicate\n"),
            ["t: t:1: unknown directive !frobnicate"]
        );
    }
}
