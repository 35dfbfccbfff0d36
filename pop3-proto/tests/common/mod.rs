//! The POP3 side of the transcript runner: configuration, calls and event rendering for the
//! shared grammar and run loop of `mail_testground::transcript` (server and client bytes,
//! events, errors, the clock, `!new`; see that module and its `Runner`).
//!
//! Directives of POP3's own:
//!
//! ```text
//! !config security=stls pipelining=no max_line=64 reply=30   (before anything else;
//!                       also cleartext=yes, nonces=counting|none for Config::nonce_source)
//! !message #n <msg> <escaped body>   MessageStart, the chunks (concatenated), MessageEnd
//! !partial #n <msg> <escaped body>   MessageStart and the chunks so far (no MessageEnd)
//! ```
//!
//! A block of consecutive `C:` lines must be exactly what one `poll_transmit` returns. A `!call` that succeeds gives its command id a name: #1, #2, ... in the order of the
//! calls; a refused one must hand the value back.
//!
//! `<api>` is `login <auto|userpass|apop|MECHANISM> <user> <secret> [nonce=<n>] [token]`
//! (`token`: OAuth credentials instead of a password),
//! `stat`, `list [n]`, `uidl [n]`, `retr <n> [size]`, `top <n> <lines>`, `dele <n>`, `rset`,
//! `noop`, `quit`, `capa`, `utf8`. Escapes work in bodies and login arguments too.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use mail_common::sasl::{Credentials, Mechanism, NonceSource};
use mail_testground::transcript::{self, Protocol, escape, unescape};
use pop3_proto::{
    AuthMethod, Capabilities, Client, Command, CommandId, Config, Event, Limits, Login, Misuse,
    ProtocolError, Rejected, Response, ResponseCode, Security, Timeouts,
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
pub(crate) type Runner = transcript::Runner<Pop3>;

/// A session's configuration and the ids of its calls.
pub(crate) struct Pop3 {
    config: Config,
    ids: Vec<CommandId>,
}

impl Default for Pop3 {
    fn default() -> Self {
        Self {
            config: Config::new(Security::ImplicitTls),
            ids: Vec::new(),
        }
    }
}

impl Protocol for Pop3 {
    type Client = Client;

    const WRITE_ON_DECLARE: bool = true;

    fn configure(&mut self, args: &str) {
        self.config = configure(args);
    }

    fn client(&self, start: Instant) -> Client {
        Client::new(self.config.clone(), start)
    }

    fn render(&self, event: &Event) -> String {
        // An empty list leaves a trailing space that `!event` lines do not carry.
        self.render_event(event).trim_end().to_owned()
    }

    fn directive(run: &mut Runner, name: &str, args: &str) -> bool {
        match name {
            "call" => call(run, args),
            "message" => message(run, args, true),
            "partial" => message(run, args, false),
            _ => return false,
        }
        true
    }

    fn refuses_after(client: &mut Client, now: Instant, _: &ProtocolError) -> bool {
        matches!(
            client.send(now, Command::Noop),
            Err(Rejected {
                reason: Misuse::Fatal(_),
                ..
            })
        )
    }
}

impl Pop3 {
    fn id_of(&self, id: CommandId) -> String {
        self.ids
            .iter()
            .position(|known| *known == id)
            .map_or_else(|| format!("{id:?}"), |n| format!("#{}", n + 1))
    }

    fn render_event(&self, event: &Event) -> String {
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
}

/// `!message` (complete, `ended`) or `!partial` (start and all chunks received so far).
fn message(run: &mut Runner, args: &str, ended: bool) {
    let mut parts = args.splitn(3, ' ');
    let id = parts.next().expect("#id");
    let msg: u32 = parts.next().expect("msg").parse().expect("msg number");
    let body = unescape(parts.next().unwrap_or(""));
    let start = run.next_event();
    let rendered = run.protocol.render(&start);
    if rendered != format!("message-start {id} {msg}") {
        run.fail(&format!(
            "expected message-start {id} {msg}, got {rendered}"
        ));
    }
    let mut got = Vec::new();
    loop {
        if !ended && !matches!(run.peek_event(), Some(Event::MessageChunk { .. })) {
            break;
        }
        let event = run.next_event();
        let (event_id, event_msg) = match &event {
            Event::MessageChunk { id, msg, data } if !data.is_empty() => {
                got.extend_from_slice(data);
                (*id, *msg)
            }
            Event::MessageEnd { id, msg, octets } if *octets == got.len() as u64 => (*id, *msg),
            other => run.fail(&format!(
                "unexpected {} in message {msg} ({} octets so far)",
                run.protocol.render(other),
                got.len()
            )),
        };
        if run.protocol.id_of(event_id) != id || event_msg != msg {
            run.fail(&format!(
                "{} in message {id} {msg}",
                run.protocol.render(&event)
            ));
        }
        if matches!(event, Event::MessageEnd { .. }) {
            break;
        }
    }
    if got != body {
        run.fail(&format!(
            "body: expected \"{}\", got \"{}\"",
            escape(&body),
            escape(&got)
        ));
    }
}

fn configure(args: &str) -> Config {
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
    Config::new(security)
        .with_limits(limits)
        .with_timeouts(timeouts)
        .with_pipelining(pipelining)
        .with_nonce_source(nonces)
        .allow_cleartext_credentials_dangerously(cleartext)
}

/// `!call <api>`: a refusal is kept for `!misuse`, a command id is named `#n`.
fn call(run: &mut Runner, api: &str) {
    let now = run.now();
    let words: Vec<&str> = api.split_whitespace().collect();
    let number = |i: usize| -> u32 { words[i].parse().expect("number") };
    let command = match words.as_slice() {
        ["login", ..] => return login(run, &words[1..]),
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
    let result = run.client().send(now, command).map_err(|rejected| {
        assert_eq!(rejected.value, command, "the command comes back");
        rejected.reason
    });
    if let Some(id) = run.refused(result) {
        run.protocol.ids.push(id);
    }
}

fn login(run: &mut Runner, words: &[&str]) {
    let now = run.now();
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
    let result = run.client().login(now, login).map_err(|rejected| {
        assert_eq!(rejected.value.username(), username, "the login comes back");
        rejected.reason
    });
    if let Some(id) = run.refused(result) {
        run.protocol.ids.push(id);
    }
}

/// All transcript files, sorted, as (name, text).
pub(crate) fn transcripts() -> Vec<(String, String)> {
    transcript::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts"))
}
