//! The POP3 side of the transcript runner: configuration, calls and event rendering over the
//! shared grammar of `mail_testground::transcript` (`S:`/`S>` server bytes, `C:`/`C>` client
//! bytes, escapes, reads and their splits).
//!
//! Directives beyond the shared ones (`!call`, `!misuse`, `!tls`, `!eof`, `!timeout`,
//! `!error`, `!event`, `!at`, `!deadline`; see that module):
//!
//! ```text
//! !config security=stls pipelining=no max_line=64 reply=30   (before anything else;
//!                       also cleartext=yes, nonces=counting|none for Config::nonce_source)
//! !message #n <msg> <escaped body>   MessageStart, the chunks (concatenated), MessageEnd
//! !partial #n <msg> <escaped body>   MessageStart and the chunks so far (no MessageEnd)
//! !new                  check the session is complete, then start a fresh one (config and
//!                       clock reset)
//! ```
//!
//! A block of consecutive `C:` lines must be exactly what one `poll_transmit` returns. A
//! `!call` that succeeds gives its command id a name: #1, #2, ... in the order of the calls;
//! a refused one must hand the value back.
//!
//! `<api>` is `login <auto|userpass|apop|MECHANISM> <user> <secret> [nonce=<n>] [token]`
//! (`token`: OAuth credentials instead of a password),
//! `stat`, `list [n]`, `uidl [n]`, `retr <n> [size]`, `top <n> <lines>`, `dele <n>`, `rset`,
//! `noop`, `quit`, `capa`, `utf8`. Escapes work in bodies and login arguments too.
//!
//! The runner is strict: every transmitted byte must be declared before the next server
//! input, every event must be consumed, and at the end nothing may be left over.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use mail_common::sasl::{Credentials, Mechanism, NonceSource};
use mail_testground::transcript::{
    self, Clock, Splitter, StepKind, debug_matches, escape, unescape,
};
use pop3_proto::{
    AuthMethod, Capabilities, Client, Command, CommandId, Config, Event, Limits, Login, Machine,
    ProtocolError, Response, ResponseCode, Security, Timeouts,
};

fn code_name(code: &ResponseCode) -> String {
    match code {
        ResponseCode::InUse => "IN-USE".into(),
        ResponseCode::LoginDelay => "LOGIN-DELAY".into(),
        ResponseCode::SysTemp => "SYS/TEMP".into(),
        ResponseCode::SysPerm => "SYS/PERM".into(),
        ResponseCode::Auth => "AUTH".into(),
        ResponseCode::Utf8 => "UTF8".into(),
        ResponseCode::Other(other) => other.clone(),
        other => format!("{other:?}"),
    }
}

fn render_response(r: &Response) -> String {
    match &r.code {
        Some(code) => format!("[{}] {}", code_name(code), r.text),
        None => r.text.clone(),
    }
}

fn render_refusal(r: &Response) -> String {
    let class = if r.class().is_transient() {
        "transient"
    } else {
        "permanent"
    };
    format!("{} ({class})", render_response(r))
}

/// One line per capability set, in a fixed order.
pub(crate) fn render_caps(caps: &Capabilities) -> String {
    if !caps.announced {
        return "(no capa)".into();
    }
    let mut out = Vec::new();
    for (on, name) in [
        (caps.top, "TOP"),
        (caps.uidl, "UIDL"),
        (caps.user, "USER"),
        (caps.stls, "STLS"),
        (caps.pipelining, "PIPELINING"),
        (caps.resp_codes, "RESP-CODES"),
        (caps.auth_resp_code, "AUTH-RESP-CODE"),
    ] {
        if on {
            out.push(name.to_owned());
        }
    }
    if !caps.sasl.is_empty() {
        out.push(format!("SASL={}", caps.sasl.join(",")));
    }
    if let Some(delay) = caps.login_delay {
        let user = if delay.per_user { "/USER" } else { "" };
        out.push(format!("LOGIN-DELAY={}{user}", delay.value));
    }
    if let Some(expire) = caps.expire {
        let user = if expire.per_user { "/USER" } else { "" };
        out.push(format!("EXPIRE={:?}{user}", expire.value));
    }
    if let Some(user) = caps.utf8 {
        out.push(if user { "UTF8/USER" } else { "UTF8" }.to_owned());
    }
    if let Some(implementation) = &caps.implementation {
        out.push(format!("IMPLEMENTATION={implementation:?}"));
    }
    for other in &caps.other {
        if other.args.is_empty() {
            out.push(format!("+{}", other.name));
        } else {
            out.push(format!("+{}({})", other.name, other.args.join(",")));
        }
    }
    out.join(" ")
}

fn method_name(method: AuthMethod) -> String {
    match method {
        AuthMethod::UserPass => "USER/PASS".into(),
        AuthMethod::Apop => "APOP".into(),
        AuthMethod::Sasl(mechanism) => format!("AUTH {}", mechanism.name()),
        other => format!("{other:?}"),
    }
}

/// Runs a transcript; panics with the line number on the first mismatch.
pub(crate) struct Runner {
    name: String,
    /// How each server read is cut into `handle_input` calls.
    splitter: Splitter,
    config: Config,
    client: Option<Client>,
    clock: Clock,
    ids: Vec<CommandId>,
    events: VecDeque<Event>,
    error: Option<ProtocolError>,
    /// The Debug of the last call's refusal, until `!misuse` takes it.
    misuse: Option<String>,
    line_no: usize,
}

impl Runner {
    pub(crate) fn new(name: &str, splitter: Splitter) -> Self {
        Self {
            name: name.to_owned(),
            splitter,
            config: Config::new(Security::ImplicitTls),
            client: None,
            clock: Clock::new(),
            ids: Vec::new(),
            events: VecDeque::new(),
            error: None,
            misuse: None,
            line_no: 0,
        }
    }

    fn at(&self) -> String {
        format!("{}:{}", self.name, self.line_no)
    }

    fn client(&mut self) -> &mut Client {
        if self.client.is_none() {
            self.client = Some(Client::new(self.config.clone(), self.clock.start()));
        }
        self.client.as_mut().expect("client")
    }

    pub(crate) fn run(mut self, text: &str) {
        let steps = transcript::parse(&self.name, text);
        for step in steps {
            self.line_no = step.line;
            match step.kind {
                StepKind::Read(data) => {
                    self.no_error();
                    self.server_read(&data);
                }
                StepKind::Sent(expected) => {
                    self.no_error();
                    self.client_sent(&expected);
                }
                StepKind::Directive { name, args } => {
                    if name != "error" && name != "misuse" {
                        self.no_error();
                    }
                    self.directive(name, args.trim());
                }
            }
        }
        self.line_no = text.lines().count() + 1;
        self.no_error();
        self.finish_session();
    }

    /// Checks that the current session left nothing undeclared.
    fn finish_session(&mut self) {
        self.collect();
        let at = self.at();
        assert!(
            self.events.is_empty(),
            "{at}: undeclared events at the end: {:?}",
            self.events
        );
        if let Some(client) = &self.client {
            assert_eq!(
                client.poll_transmit().map(escape),
                None,
                "{at}: undeclared client bytes at the end"
            );
        }
    }

    /// Nothing failed that a `!error` or `!misuse` line has not matched.
    fn no_error(&self) {
        assert!(
            self.error.is_none(),
            "{}: unexpected error {:?}",
            self.at(),
            self.error
        );
        assert!(
            self.misuse.is_none(),
            "{}: call refused: {}",
            self.at(),
            self.misuse.as_deref().unwrap_or_default()
        );
    }

    fn record(&mut self, result: Result<(), ProtocolError>) {
        if let Err(e) = result {
            assert!(self.error.is_none(), "{}: second error {e:?}", self.at());
            self.error = Some(e);
        }
        self.collect();
    }

    fn collect(&mut self) {
        if let Some(client) = self.client.as_mut() {
            while let Some(event) = client.poll_event() {
                self.events.push_back(event);
            }
        }
    }

    fn server_read(&mut self, data: &[u8]) {
        let at = self.at();
        let now = self.clock.now();
        self.client();
        let client = self.client.as_mut().expect("client");
        assert_eq!(
            client.poll_transmit().map(escape),
            None,
            "{at}: client bytes not declared before server input"
        );
        let result = transcript::feed(data, &mut self.splitter, |piece| {
            client.handle_input(now, piece)
        });
        self.record(result);
    }

    /// A block of `C:` lines: exactly what one `poll_transmit` returns.
    fn client_sent(&mut self, expected: &[u8]) {
        let at = self.at();
        let client = self.client();
        let got = client
            .poll_transmit()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        assert_eq!(escape(&got), escape(expected), "{at}: client bytes");
        client.advance_transmit(got.len());
    }

    fn id_of(&self, id: CommandId) -> String {
        self.ids
            .iter()
            .position(|known| *known == id)
            .map_or_else(|| format!("{id:?}"), |n| format!("#{}", n + 1))
    }

    fn next_event(&mut self) -> Event {
        self.collect();
        let at = self.at();
        self.events
            .pop_front()
            .unwrap_or_else(|| panic!("{at}: expected an event, none left"))
    }

    pub(crate) fn render(&self, event: &Event) -> String {
        match event {
            Event::Greeting(r) => format!("greeting {}", render_response(r)),
            Event::GreetingRefused(r) => format!("greeting-refused {}", render_refusal(r)),
            Event::StartTls => "starttls".into(),
            Event::Ready(caps) => format!("ready {}", render_caps(caps)),
            Event::LoggedIn { id, method } => {
                format!("logged-in {} {}", self.id_of(*id), method_name(*method))
            }
            Event::LoginFailed { id, failure } => {
                let mut out = format!(
                    "login-failed {} {}: {}",
                    self.id_of(*id),
                    method_name(failure.method),
                    render_refusal(&failure.response)
                );
                if let Some(abort) = &failure.aborted {
                    let _ = write!(out, " aborted={abort:?}");
                }
                if let Some(error) = &failure.oauth_error {
                    let _ = write!(out, " oauth=[{error}] raw={}", error.raw);
                }
                out
            }
            Event::Stat { id, count, size } => format!("stat {} {count} {size}", self.id_of(*id)),
            Event::Listing { id, entries } => {
                let mut out = format!("listing {}", self.id_of(*id));
                for e in entries {
                    let _ = write!(out, " {}:{}", e.msg, e.size);
                }
                out
            }
            Event::Listed { id, entry } => {
                format!("listed {} {}:{}", self.id_of(*id), entry.msg, entry.size)
            }
            Event::UidListing { id, entries } => {
                let mut out = format!("uidl {}", self.id_of(*id));
                for e in entries {
                    let _ = write!(out, " {}:{}", e.msg, e.uid);
                }
                out
            }
            Event::UidListed { id, entry } => {
                format!("uidl-one {} {}:{}", self.id_of(*id), entry.msg, entry.uid)
            }
            Event::MessageStart { id, msg } => format!("message-start {} {msg}", self.id_of(*id)),
            Event::MessageChunk { id, msg, data } => {
                format!("chunk {} {msg} {}", self.id_of(*id), escape(data))
            }
            Event::MessageEnd { id, msg, octets } => {
                format!("message-end {} {msg} {octets}", self.id_of(*id))
            }
            Event::Capabilities { id, capabilities } => {
                format!(
                    "capabilities {} {}",
                    self.id_of(*id),
                    render_caps(capabilities)
                )
            }
            Event::Done {
                id,
                command,
                response,
            } => format!(
                "done {} {command}: {}",
                self.id_of(*id),
                render_response(response)
            ),
            Event::Refused {
                id,
                command,
                response,
            } => format!(
                "refused {} {command}: {}",
                self.id_of(*id),
                render_refusal(response)
            ),
            Event::Closed => "closed".into(),
            other => format!("{other:?}"),
        }
    }

    fn directive(&mut self, directive: &str, args: &str) {
        let at = self.at();
        match directive {
            "config" => {
                assert!(self.client.is_none(), "{at}: !config after start");
                self.configure(args);
            }
            "call" => match self.call(args) {
                Ok(Some(id)) => self.ids.push(id),
                Ok(None) => {}
                Err(reason) => self.misuse = Some(reason),
            },
            "misuse" => {
                let got = self.misuse.take();
                assert!(
                    got.as_deref().is_some_and(|got| debug_matches(args, got)),
                    "{at}: expected the call refused with {args}, got {got:?}"
                );
            }
            "tls" => {
                let now = self.clock.now();
                let result = self.client().tls_established(now);
                self.collect();
                if let Err(e) = result {
                    self.misuse = Some(format!("{e:?}"));
                }
            }
            "event" => {
                let event = self.next_event();
                assert_eq!(self.render(&event).trim_end(), args, "{at}: event");
            }
            "message" => self.message(args, true),
            "partial" => self.message(args, false),
            "new" => {
                self.finish_session();
                let splitter = std::mem::replace(&mut self.splitter, transcript::whole());
                *self = Self {
                    splitter,
                    line_no: self.line_no,
                    ..Self::new(&self.name, transcript::whole())
                };
            }
            "error" => {
                let error = self.error.take();
                assert!(
                    error
                        .as_ref()
                        .is_some_and(|e| debug_matches(args, &format!("{e:?}"))),
                    "{at}: expected error {args}, got {error:?}"
                );
                // Poisoned: the same error again, nothing sent, no deadline.
                let now = self.clock.now();
                let client = self.client();
                assert_eq!(client.handle_input(now, b"+OK\r\n").err(), error);
                assert_eq!(client.handle_timeout(now).err(), error);
                assert_eq!(client.poll_transmit(), None);
                assert_eq!(client.poll_timeout(), None);
                assert!(matches!(
                    client.send(now, Command::Noop),
                    Err(pop3_proto::Rejected {
                        reason: pop3_proto::Misuse::Fatal(_),
                        ..
                    })
                ));
            }
            "eof" => {
                let now = self.clock.now();
                let result = self.client().handle_eof(now);
                self.record(result);
            }
            "timeout" => {
                let now = self.clock.now();
                let result = self.client().handle_timeout(now);
                self.record(result);
            }
            "at" => self.clock.at(args),
            "deadline" => {
                let deadline = self.client().poll_timeout();
                if let Err(mismatch) = self.clock.deadline(args, deadline) {
                    panic!("{at}: {mismatch}");
                }
            }
            other => panic!("{at}: unknown directive !{other}"),
        }
    }

    /// `!message` (complete, `ended`) or `!partial` (start and all chunks received so far).
    fn message(&mut self, args: &str, ended: bool) {
        let at = self.at();
        let mut parts = args.splitn(3, ' ');
        let id = parts.next().expect("#id");
        let msg: u32 = parts.next().expect("msg").parse().expect("msg number");
        let body = unescape(parts.next().unwrap_or(""));
        let start = self.next_event();
        assert_eq!(
            self.render(&start),
            format!("message-start {id} {msg}"),
            "{at}: message start"
        );
        let mut got = Vec::new();
        loop {
            self.collect();
            if !ended && !matches!(self.events.front(), Some(Event::MessageChunk { .. })) {
                break;
            }
            match self.next_event() {
                Event::MessageChunk {
                    id: chunk_id,
                    msg: chunk_msg,
                    data,
                } => {
                    assert_eq!(self.id_of(chunk_id), id, "{at}: chunk id");
                    assert_eq!(chunk_msg, msg, "{at}: chunk message number");
                    assert!(!data.is_empty(), "{at}: empty chunk");
                    got.extend_from_slice(&data);
                }
                Event::MessageEnd {
                    id: end_id,
                    msg: end_msg,
                    octets,
                } => {
                    assert_eq!(self.id_of(end_id), id, "{at}: end id");
                    assert_eq!(end_msg, msg, "{at}: end message number");
                    assert_eq!(octets, got.len() as u64, "{at}: octets");
                    break;
                }
                other => panic!("{at}: unexpected {}", self.render(&other)),
            }
        }
        assert_eq!(escape(&got), escape(&body), "{at}: body");
    }

    fn configure(&mut self, args: &str) {
        let mut limits = Limits::default();
        let mut timeouts = Timeouts::default();
        let mut security = Security::ImplicitTls;
        let mut pipelining = true;
        let mut cleartext = false;
        let mut nonces = NonceSource::system();
        for setting in args.split_whitespace() {
            let (key, value) = setting.split_once('=').expect("key=value");
            let number = || value.parse::<u64>().expect("number");
            let size = || value.parse::<usize>().expect("number");
            let secs = || Duration::from_secs(number());
            match key {
                "security" => {
                    security = match value {
                        "implicit" => Security::ImplicitTls,
                        "stls" => Security::StartTls,
                        "plaintext" => Security::Plaintext,
                        other => panic!("security {other}"),
                    }
                }
                "pipelining" => pipelining = value == "yes",
                "cleartext" => cleartext = value == "yes",
                "nonces" => {
                    nonces = match value {
                        // bytes 0, 1, 2, ...: reproducible SCRAM client-first messages
                        "counting" => NonceSource::new(|buf| {
                            for (i, b) in buf.iter_mut().enumerate() {
                                *b = i as u8;
                            }
                            Ok(())
                        }),
                        "none" => NonceSource::none(),
                        other => panic!("nonces {other}"),
                    }
                }
                "max_line" => limits = limits.with_max_line(size()),
                "max_capability_lines" => limits = limits.with_max_capability_lines(size()),
                "max_listing_entries" => limits = limits.with_max_listing_entries(size()),
                "max_uid_len" => limits = limits.with_max_uid_len(size()),
                "max_message_size" => limits = limits.with_max_message_size(number()),
                "max_in_flight" => limits = limits.with_max_in_flight(size()),
                "max_bytes_in_flight" => limits = limits.with_max_bytes_in_flight(number()),
                "max_queued_commands" => limits = limits.with_max_queued_commands(size()),
                "max_auth_challenges" => limits = limits.with_max_auth_challenges(size()),
                "greeting" => timeouts = timeouts.with_greeting(secs()),
                "reply" => timeouts = timeouts.with_reply(secs()),
                "data" => timeouts = timeouts.with_data(secs()),
                "tls" => timeouts = timeouts.with_tls_handshake(secs()),
                other => panic!("unknown setting {other}"),
            }
        }
        self.config = Config::new(security)
            .with_limits(limits)
            .with_timeouts(timeouts)
            .with_pipelining(pipelining)
            .with_nonce_source(nonces)
            .allow_cleartext_credentials_dangerously(cleartext);
    }

    /// Runs an API call; `Err` carries the Debug of the misuse reason.
    fn call(&mut self, api: &str) -> Result<Option<CommandId>, String> {
        let now = self.clock.now();
        let words: Vec<&str> = api.split_whitespace().collect();
        let number = |i: usize| -> u32 { words[i].parse().expect("number") };
        let command = match words.as_slice() {
            ["login", ..] => return self.login(&words[1..]).map(Some),
            ["stat"] => Command::Stat,
            ["list"] => Command::List(None),
            ["list", _] => Command::List(Some(number(1))),
            ["uidl"] => Command::Uidl(None),
            ["uidl", _] => Command::Uidl(Some(number(1))),
            ["retr", _] => Command::retr(number(1)),
            ["retr", _, size] => Command::Retr {
                msg: number(1),
                size_hint: Some(size.parse().expect("size")),
            },
            ["top", _, _] => Command::top(number(1), number(2)),
            ["dele", _] => Command::Dele(number(1)),
            ["rset"] => Command::Rset,
            ["noop"] => Command::Noop,
            ["quit"] => Command::Quit,
            ["capa"] => Command::Capa,
            ["utf8"] => Command::Utf8,
            other => panic!("unknown api {other:?}"),
        };
        let result = self.client().send(now, command);
        self.collect();
        match result {
            Ok(id) => Ok(Some(id)),
            Err(rejected) => {
                assert_eq!(rejected.value, command, "the command comes back");
                Err(format!("{:?}", rejected.reason))
            }
        }
    }

    fn login(&mut self, words: &[&str]) -> Result<CommandId, String> {
        let now = self.clock.now();
        let text = |s: &str| String::from_utf8(unescape(s)).expect("utf-8 argument");
        let [method, user, secret, options @ ..] = words else {
            panic!("bad login {words:?}")
        };
        let credentials = if options.contains(&"token") {
            Credentials::oauth2(text(user), text(secret))
        } else {
            Credentials::password(text(user), text(secret))
        };
        let mut login = match *method {
            "auto" => Login::auto(credentials),
            "userpass" => Login::using(AuthMethod::UserPass, credentials),
            "apop" => Login::using(AuthMethod::Apop, credentials),
            mechanism => Login::using(
                AuthMethod::Sasl(Mechanism::from_name(mechanism).expect("mechanism")),
                credentials,
            ),
        };
        for option in options {
            if let Some(nonce) = option.strip_prefix("nonce=") {
                login = login.with_nonce(unescape(nonce));
            } else {
                assert_eq!(*option, "token", "login option");
            }
        }
        let username = login.username().to_owned();
        let result = self.client().login(now, login);
        self.collect();
        result.map_err(|rejected| {
            assert_eq!(rejected.value.username(), username, "the login comes back");
            format!("{:?}", rejected.reason)
        })
    }
}

/// All transcript files, sorted, as (name, text).
pub(crate) fn transcripts() -> Vec<(String, String)> {
    transcript::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts"))
}
