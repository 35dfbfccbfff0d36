//! The SMTP side of the transcript runner: configuration, calls and event rendering over the
//! shared grammar of `mail_testground::transcript` (`S:`/`S>` server bytes, `C:`/`C>` client
//! bytes, `!read`, escapes, reads and their splits).
//!
//! Beyond the shared directives (`!call`, `!misuse`, `!tls`, `!eof`, `!timeout`, `!error`,
//! `!event`, `!at`, `!deadline`; see that module):
//!
//! - `C:`/`C>` blocks are matched, in order, against everything the client has transmitted.
//! - `!config key=value...`; `!call` words: `auth`, `mail`, `send`, `write`, `finish`, `quit`.
//! - Expectations: `!no-event`, `!caps`, `!flights` (transmit slices of the last step); the
//!   driver's partial writes: `!hold`, `!transmit <n>`, `!release`.
//!
//! The runner is strict: before each server read every client byte must have been matched by a
//! `C:` line and every event by an `!event` line, and an error must be matched by `!error` or
//! `!misuse` right after the call that caused it.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::VecDeque;
use std::fmt::Write as _;

use mail_testground::transcript::{
    self, Clock, Splitter, StepKind, debug_matches, unescape, unescape_str,
};
use smtp_submit::{
    Address, AuthFailure, AuthMethod, BodyType, Client, ClientName, Config, Credentials, Envelope,
    Event, Limits, LineEndingPolicy, Machine, MailOptions, Mechanism, MessageOutcome, Misuse,
    Notify, ProtocolError, Recipient, RecipientOutcome, Reply, Ret, Security, SessionFailure,
    TransactionFailure,
};

fn class_word(reply: &Reply) -> &'static str {
    match reply.failure_class() {
        Some(class) if class.is_transient() => "transient ",
        Some(_) => "permanent ",
        None => "",
    }
}

fn render_reply(reply: &Reply) -> String {
    format!("{}{reply}", class_word(reply))
}

pub(crate) fn render_event(event: &Event) -> String {
    match event {
        Event::Greeting(_) => "Greeting".into(),
        Event::GreetingRefused(reply) => format!("GreetingRefused {}", render_reply(reply)),
        Event::StartTls => "StartTls".into(),
        Event::Ready(_) => "Ready".into(),
        Event::Authenticated { mechanism } => format!("Authenticated {}", mechanism.name()),
        Event::AuthFailed { mechanism, failure } => {
            let detail = match failure {
                AuthFailure::Refused(reply) => format!("refused {}", render_reply(reply)),
                AuthFailure::Cancelled { error, reply } => {
                    format!("cancelled {error:?} {}", render_reply(reply))
                }
                AuthFailure::TokenRefused { error, reply } => {
                    format!("token-refused [{error}] {}", render_reply(reply))
                }
                other => format!("{other:?}"),
            };
            format!("AuthFailed {} {detail}", mechanism.name())
        }
        Event::Recipient {
            transaction,
            index,
            address,
            outcome,
        } => {
            let outcome = match outcome {
                RecipientOutcome::Accepted(reply) => format!("accepted {}", render_reply(reply)),
                RecipientOutcome::Rejected(reply) => format!("rejected {}", render_reply(reply)),
                RecipientOutcome::SenderRefused(reply) => {
                    format!("sender-refused {}", render_reply(reply))
                }
                RecipientOutcome::NotAttempted => "not-attempted".to_owned(),
                other => format!("{other:?}"),
            };
            format!("Recipient {transaction} {index} {address:?} {outcome}")
        }
        Event::BodyWritable { transaction } => format!("BodyWritable {transaction}"),
        Event::MessageDone {
            transaction,
            outcome,
        } => {
            let outcome = match outcome {
                MessageOutcome::Sent { reply, accepted } => {
                    format!("sent accepted={accepted} {}", render_reply(reply))
                }
                MessageOutcome::Failed(failure) => format!("failed {}", render_failure(failure)),
                other => format!("{other:?}"),
            };
            format!("MessageDone {transaction} {outcome}")
        }
        Event::SessionFailed(failure) => {
            let detail = match failure {
                SessionFailure::EhloRefused(r) => format!("ehlo-refused {}", render_reply(r)),
                SessionFailure::HeloRefused(r) => format!("helo-refused {}", render_reply(r)),
                SessionFailure::ServiceNotAvailable(r) => {
                    format!("service-not-available {}", render_reply(r))
                }
                other => format!("{other:?}"),
            };
            format!("SessionFailed {detail}")
        }
        Event::Closed => "Closed".into(),
        other => format!("{other:?}"),
    }
}

fn render_failure(failure: &TransactionFailure) -> String {
    match failure {
        TransactionFailure::MailRejected(r) => format!("mail-rejected {}", render_reply(r)),
        TransactionFailure::NoValidRecipients { reply: None } => "no-valid-recipients".into(),
        TransactionFailure::NoValidRecipients { reply: Some(r) } => {
            format!("no-valid-recipients {}", render_reply(r))
        }
        TransactionFailure::DataRejected(r) => format!("data-rejected {}", render_reply(r)),
        TransactionFailure::MessageRejected(r) => format!("message-rejected {}", render_reply(r)),
        TransactionFailure::ServiceClosing(r) => format!("service-closing {}", render_reply(r)),
        other => format!("{other:?}"),
    }
}

/// The keywords `render_caps` shows as flags rather than under `other=`.
const KNOWN: [&str; 10] = [
    "PIPELINING",
    "CHUNKING",
    "SIZE",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
    "REQUIRETLS",
    "AUTH",
];

pub(crate) fn render_caps(client: &Client) -> String {
    let Some(caps) = client.capabilities() else {
        return "none".into();
    };
    let mut out = caps.server_name().to_owned();
    if !caps.is_extended() {
        out.push_str(" (helo)");
    }
    for (on, name) in [
        (caps.pipelining(), "PIPELINING"),
        (caps.chunking(), "CHUNKING"),
        (caps.size(), "SIZE"),
        (caps.eight_bit_mime(), "8BITMIME"),
        (caps.smtputf8(), "SMTPUTF8"),
        (caps.dsn(), "DSN"),
        (caps.enhanced_status_codes(), "ENHANCEDSTATUSCODES"),
        (caps.starttls(), "STARTTLS"),
        (caps.require_tls(), "REQUIRETLS"),
    ] {
        if on {
            out.push(' ');
            out.push_str(name);
            if name == "SIZE"
                && let Some(max) = caps.max_message_size()
            {
                let _ = write!(out, "={max}");
            }
        }
    }
    if !caps.auth_mechanisms().is_empty() {
        let _ = write!(out, " auth={}", caps.auth_mechanisms().join(","));
    }
    let others: Vec<String> = caps
        .keywords()
        .iter()
        .filter(|k| !KNOWN.contains(&k.keyword.as_str()))
        .map(|k| {
            if k.params.is_empty() {
                k.keyword.clone()
            } else {
                format!("{}({})", k.keyword, k.params.join(" "))
            }
        })
        .collect();
    if !others.is_empty() {
        let _ = write!(out, " other={}", others.join(","));
    }
    out
}

#[derive(Default)]
struct ConfigSpec {
    security: Option<Security>,
    name: Option<String>,
    pipelining: bool,
    chunking: bool,
    cleartext: bool,
    policy: LineEndingPolicy,
    limits: Limits,
}

impl ConfigSpec {
    fn new() -> Self {
        Self {
            pipelining: true,
            chunking: true,
            ..Self::default()
        }
    }

    fn apply(&mut self, args: &str) {
        for token in args.split_whitespace() {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            let number = || value.parse::<usize>().unwrap();
            match key {
                "security" => {
                    self.security = Some(match value {
                        "implicit" => Security::ImplicitTls,
                        "starttls" => Security::StartTls,
                        "plaintext" => Security::Plaintext,
                        _ => panic!("unknown security {value}"),
                    });
                }
                "name" => self.name = Some(unescape_str(value)),
                "pipelining" => self.pipelining = value == "on",
                "chunking" => self.chunking = value == "on",
                "cleartext-auth" => self.cleartext = value == "on",
                "policy" => {
                    self.policy = match value {
                        "reject" => LineEndingPolicy::Reject,
                        _ => LineEndingPolicy::Normalize,
                    };
                }
                "chunk" => self.limits = self.limits.clone().with_chunk_size(number()),
                "window" => self.limits = self.limits.clone().with_send_window(number()),
                "in-flight" => {
                    self.limits = self
                        .limits
                        .clone()
                        .with_max_pipelined_transactions(number());
                }
                "in-flight-bytes" => {
                    self.limits = self.limits.clone().with_max_pipelined_bytes(number());
                }
                "max-line" => self.limits = self.limits.clone().with_max_reply_line(number()),
                "max-lines" => self.limits = self.limits.clone().with_max_reply_lines(number()),
                "max-ehlo" => self.limits = self.limits.clone().with_max_ehlo_lines(number()),
                "max-auth-challenges" => {
                    self.limits = self.limits.clone().with_max_auth_challenges(number());
                }
                _ => panic!("unknown config key {key}"),
            }
        }
    }

    fn build(&self) -> Config {
        let name = self.name.clone().unwrap_or_else(|| "client.example".into());
        Config::new(
            ClientName::new(name).unwrap(),
            self.security.unwrap_or(Security::ImplicitTls),
        )
        .with_pipelining(self.pipelining)
        .with_chunking(self.chunking)
        .with_line_endings(self.policy)
        .with_limits(self.limits.clone())
        .allow_cleartext_credentials_dangerously(self.cleartext)
    }
}

/// Everything observable about one run, for comparing runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) sent: Vec<u8>,
    pub(crate) events: Vec<String>,
    pub(crate) error: Option<ProtocolError>,
}

pub(crate) struct Runner {
    name: String,
    spec: ConfigSpec,
    client: Option<Client>,
    clock: Clock,
    sent: Vec<u8>,
    events: VecDeque<Event>,
    error: Option<ProtocolError>,
    misuse: Option<Misuse>,
    splitter: Splitter,
    draining: bool,
    flights: usize,
    written: Option<usize>,
    pub(crate) outcome: Outcome,
}

impl Runner {
    pub(crate) fn new(name: &str, splitter: Splitter) -> Self {
        Self {
            name: name.to_owned(),
            spec: ConfigSpec::new(),
            client: None,
            clock: Clock::new(),
            sent: Vec::new(),
            events: VecDeque::new(),
            error: None,
            misuse: None,
            splitter,
            draining: true,
            flights: 0,
            written: None,
            outcome: Outcome::default(),
        }
    }

    fn client(&mut self) -> &mut Client {
        if self.client.is_none() {
            self.client = Some(Client::new(self.spec.build(), self.clock.now()));
        }
        self.client.as_mut().unwrap()
    }

    /// Collects transmitted bytes (when draining) and events.
    fn drain(&mut self) {
        let client = self.client.as_mut().unwrap();
        self.flights = 0;
        if self.draining {
            while let Some(bytes) = client.poll_transmit() {
                let n = bytes.len();
                self.sent.extend_from_slice(bytes);
                self.outcome.sent.extend_from_slice(bytes);
                client.advance_transmit(n);
                self.flights += 1;
            }
        }
        while let Some(event) = client.poll_event() {
            self.outcome.events.push(render_event(&event));
            self.events.push_back(event);
        }
    }

    fn fail(&self, line_no: usize, message: &str) -> ! {
        panic!("{}:{line_no}: {message}", self.name);
    }

    fn check_settled(&self, line_no: usize) {
        if let Some(error) = &self.error {
            self.fail(line_no, &format!("unexpected fatal error {error:?}"));
        }
        if let Some(misuse) = &self.misuse {
            self.fail(line_no, &format!("unexpected misuse {misuse:?}"));
        }
    }

    fn feed_read(&mut self, line_no: usize, data: &[u8]) {
        self.check_settled(line_no);
        if !self.sent.is_empty() {
            self.fail(
                line_no,
                &format!(
                    "client sent bytes not matched by C: lines: {:?}",
                    String::from_utf8_lossy(&self.sent)
                ),
            );
        }
        if let Some(event) = self.events.front() {
            self.fail(
                line_no,
                &format!("event not matched: {}", render_event(event)),
            );
        }
        let now = self.clock.now();
        self.client();
        let client = self.client.as_mut().unwrap();
        let result = transcript::feed(data, &mut self.splitter, |piece| {
            client.handle_input(now, piece)
        });
        if let Err(error) = result {
            self.error = Some(error);
        }
        self.drain();
    }

    fn protocol_result(&mut self, result: Result<(), ProtocolError>) {
        if let Err(error) = result {
            self.error = Some(error);
        }
        self.drain();
    }

    fn misuse_result<T>(&mut self, result: Result<T, Misuse>) -> Option<T> {
        let value = match result {
            Ok(value) => Some(value),
            Err(misuse) => {
                self.misuse = Some(misuse);
                None
            }
        };
        self.drain();
        value
    }

    pub(crate) fn run(&mut self, text: &str) {
        for step in transcript::parse(&self.name, text) {
            let line_no = step.line;
            if let StepKind::Read(data) = &step.kind {
                self.feed_read(line_no, data);
                continue;
            }
            if self.client.is_none()
                && !matches!(step.kind, StepKind::Directive { name: "config", .. })
            {
                self.client();
                self.drain();
            }
            match step.kind {
                StepKind::Sent(expected) => self.expect_sent(line_no, &expected),
                StepKind::Directive { name, args } => self.directive(line_no, name, args),
                StepKind::Read(_) => unreachable!("handled above"),
            }
        }
        let end = text.lines().count() + 1;
        self.check_settled(end);
        if !self.sent.is_empty() {
            self.fail(
                end,
                &format!(
                    "unmatched client bytes at the end: {:?}",
                    String::from_utf8_lossy(&self.sent)
                ),
            );
        }
        if let Some(event) = self.events.front() {
            self.fail(
                end,
                &format!("event not matched at the end: {}", render_event(event)),
            );
        }
        self.outcome.error = self
            .error
            .clone()
            .or_else(|| self.client.as_ref().and_then(|c| c.error().cloned()));
    }

    fn expect_sent(&mut self, line_no: usize, expected: &[u8]) {
        self.check_settled(line_no);
        if !self.sent.starts_with(expected) {
            self.fail(
                line_no,
                &format!(
                    "expected client to send {:?}, it sent {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&self.sent)
                ),
            );
        }
        self.sent.drain(..expected.len());
    }

    fn directive(&mut self, line_no: usize, name: &str, args: &str) {
        let expectation = matches!(name, "error" | "misuse");
        if !expectation {
            self.check_settled(line_no);
        }
        let now = self.clock.now();
        match name {
            "config" => {
                if self.client.is_some() {
                    self.fail(line_no, "!config after the client was created");
                }
                self.spec.apply(args);
            }
            "event" => {
                let Some(event) = self.events.pop_front() else {
                    self.fail(line_no, &format!("expected event {args:?}, none left"));
                };
                let rendered = render_event(&event);
                if rendered != unescape_str(args) {
                    self.fail(
                        line_no,
                        &format!("expected event {args:?}, got {rendered:?}"),
                    );
                }
            }
            "no-event" => {
                if let Some(event) = self.events.front() {
                    self.fail(
                        line_no,
                        &format!("unexpected event {}", render_event(event)),
                    );
                }
            }
            "caps" => {
                let rendered = render_caps(self.client());
                if rendered != unescape_str(args) {
                    self.fail(
                        line_no,
                        &format!("expected caps {args:?}, got {rendered:?}"),
                    );
                }
            }
            "error" => {
                let Some(error) = self.error.take() else {
                    self.fail(line_no, &format!("expected error {args}, none happened"));
                };
                let rendered = format!("{error:?}");
                if !debug_matches(args, &rendered) {
                    self.fail(line_no, &format!("expected error {args}, got {rendered}"));
                }
                self.check_poisoned(line_no, &error);
            }
            "misuse" => {
                let Some(misuse) = self.misuse.take() else {
                    self.fail(line_no, &format!("expected misuse {args}, none happened"));
                };
                let rendered = format!("{misuse:?}");
                if !debug_matches(args, &rendered) {
                    self.fail(line_no, &format!("expected misuse {args}, got {rendered}"));
                }
            }
            "at" => self.clock.at(args),
            "deadline" => {
                let deadline = self.client().poll_timeout();
                if let Err(mismatch) = self.clock.deadline(args, deadline) {
                    self.fail(line_no, &mismatch);
                }
            }
            "flights" => {
                let expected: usize = args.parse().unwrap();
                if self.flights != expected {
                    self.fail(
                        line_no,
                        &format!("expected {expected} transmit slices, got {}", self.flights),
                    );
                }
            }
            "hold" => self.draining = false,
            "transmit" => {
                // A partial write while holding: the driver wrote only `n` bytes.
                let n: usize = args.parse().unwrap();
                let client = self.client();
                let bytes = client.poll_transmit().unwrap_or_default()[..n].to_vec();
                client.advance_transmit(n);
                self.sent.extend_from_slice(&bytes);
                self.outcome.sent.extend_from_slice(&bytes);
                self.drain();
            }
            "release" => {
                self.draining = true;
                self.drain();
            }
            "timeout" => {
                let result = self.client().handle_timeout(now);
                self.protocol_result(result);
            }
            "eof" => {
                let result = self.client().handle_eof(now);
                self.protocol_result(result);
            }
            "tls" => {
                let result = self.client().tls_established(now);
                self.misuse_result(result);
            }
            "call" => self.call(line_no, args),
            _ => self.fail(line_no, &format!("unknown directive !{name}")),
        }
    }

    /// `!call <api>`: `auth`, `mail`, `send`, `write`, `finish`, `quit`.
    fn call(&mut self, line_no: usize, api: &str) {
        let (name, args) = api.split_once(' ').unwrap_or((api, ""));
        let now = self.clock.now();
        match name {
            "quit" => {
                let result = self.client().quit(now);
                self.misuse_result(result);
            }
            "auth" => self.auth(args),
            "mail" | "send" => self.mail(name == "send", args),
            "write" => {
                let (expected, data) = match args.strip_prefix('=') {
                    Some(rest) => {
                        let (count, data) = rest.split_once(' ').unwrap_or((rest, ""));
                        (Some(count.parse::<usize>().unwrap()), data)
                    }
                    None => (None, args),
                };
                let data = unescape(data);
                let result = self.client().write_body(now, &data);
                if let Some(taken) = self.misuse_result(result) {
                    let expected = expected.unwrap_or(data.len());
                    if taken != expected {
                        self.fail(
                            line_no,
                            &format!("write_body took {taken}, expected {expected}"),
                        );
                    }
                }
            }
            "finish" => {
                let result = self.client().finish_body(now);
                self.misuse_result(result);
            }
            _ => self.fail(line_no, &format!("unknown call {name}")),
        }
    }

    /// After a fatal error, the client must stay silent and repeat the error.
    fn check_poisoned(&mut self, line_no: usize, error: &ProtocolError) {
        let now = self.clock.now();
        let client = self.client();
        let again = client.handle_input(now, b"250 ok\r\n");
        let timeout = client.handle_timeout(now);
        let quit = client.quit(now);
        let transmit = client.poll_transmit().map(<[u8]>::to_vec);
        if again.as_ref() != Err(error)
            || timeout.as_ref() != Err(error)
            || quit != Err(Misuse::Fatal(Box::new(error.clone())))
            || transmit.is_some()
        {
            self.fail(line_no, "client is not poisoned after a fatal error");
        }
    }

    fn auth(&mut self, args: &str) {
        let mut user = String::from("alice");
        let mut secret = String::from("secret");
        let mut oauth = false;
        let mut method = AuthMethod::Auto;
        let mut nonce = b"fyko+d2lbbFgONRv9qkxdawL".to_vec();
        for token in args.split_whitespace() {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            match key {
                "user" => user = unescape_str(value),
                "pass" => secret = unescape_str(value),
                "token" => {
                    secret = unescape_str(value);
                    oauth = true;
                }
                "mech" => {
                    method = AuthMethod::Mechanism(Mechanism::from_name(value).unwrap());
                }
                "nonce" => nonce = unescape(value),
                _ => panic!("unknown auth key {key}"),
            }
        }
        let credentials = if oauth {
            Credentials::oauth2(user, secret)
        } else {
            Credentials::password(user, secret)
        };
        let now = self.clock.now();
        let result = self
            .client()
            .authenticate(now, &credentials, method, &nonce);
        self.misuse_result(result);
    }

    fn mail(&mut self, with_body: bool, args: &str) {
        let (args, body) = match args.split_once("body=") {
            Some((head, body)) => (head, Some(unescape(body))),
            None => (args, None),
        };
        assert_eq!(
            with_body,
            body.is_some(),
            "!send needs body=, !mail must not have one"
        );
        let mut envelope = Envelope::new(None);
        let mut options = MailOptions::default();
        for token in args.split_whitespace() {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            match key {
                "from" => {
                    let value = unescape_str(value);
                    let from = if value.is_empty() {
                        None
                    } else {
                        Some(Address::new(value).unwrap())
                    };
                    let recipients = envelope.recipients().to_vec();
                    envelope = Envelope::new(from);
                    for r in recipients {
                        envelope.add_recipient(r);
                    }
                }
                "to" => {
                    let mut parts = value.split(';');
                    let address = Address::new(unescape_str(parts.next().unwrap())).unwrap();
                    let mut recipient = Recipient::new(address);
                    for part in parts {
                        let (k, v) = part.split_once(':').unwrap();
                        match k {
                            "notify" => {
                                let mut notify = Notify::never();
                                for word in v.split(',') {
                                    notify = match word {
                                        "success" => notify.and_success(),
                                        "failure" => notify.and_failure(),
                                        "delay" => notify.and_delay(),
                                        "never" => notify,
                                        _ => panic!("unknown notify {word}"),
                                    };
                                }
                                recipient = recipient.with_notify(notify);
                            }
                            "orcpt" => {
                                recipient = recipient.with_original_recipient(unescape_str(v));
                            }
                            _ => panic!("unknown recipient option {k}"),
                        }
                    }
                    envelope.add_recipient(recipient);
                }
                "size" => options = options.with_size(value.parse().unwrap()),
                "body8" => options = options.with_body_type(BodyType::EightBitMime),
                "body7" => options = options.with_body_type(BodyType::SevenBit),
                "smtputf8" => options = options.with_smtputf8(),
                "ret" => {
                    options = options.with_ret(if value == "full" {
                        Ret::Full
                    } else {
                        Ret::Headers
                    });
                }
                "envid" => options = options.with_envid(unescape_str(value)),
                "requiretls" => options = options.with_require_tls(),
                _ => panic!("unknown mail key {key}"),
            }
        }
        let now = self.clock.now();
        let result = match body {
            Some(body) => self
                .client()
                .send_mail_bytes(now, envelope.clone(), options, &body),
            None => self.client().send_mail(now, envelope.clone(), options),
        };
        // A refusal hands the envelope back unchanged.
        let result = result.map_err(|rejected| {
            assert_eq!(
                rejected.value, envelope,
                "the refused envelope came back changed"
            );
            rejected.reason
        });
        self.misuse_result(result);
    }
}

/// Runs a transcript, feeding each server read in the pieces `splitter` chooses.
pub(crate) fn run_transcript(name: &str, text: &str, splitter: Splitter) -> Outcome {
    let mut runner = Runner::new(name, splitter);
    runner.run(text);
    runner.outcome
}

pub(crate) fn transcripts() -> Vec<(String, String)> {
    transcript::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts"))
}
