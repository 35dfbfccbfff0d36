//! The SMTP side of the transcript runner: configuration, calls and event rendering for the
//! shared grammar and run loop of `mail_testground::transcript` (server and client bytes,
//! events, errors, the clock, `!no-event`, `!flights`, `!hold`/`!transmit`/`!release`; see
//! that module and its `Runner`).
//!
//! - `C:`/`C>` blocks are matched, in order, against everything the client has transmitted.
//! - `!config key=value...`; `!call` words: `auth`, `mail`, `send`, `write`, `finish`, `quit`.
//! - `!caps <rendering>`: the capabilities the client knows now.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::fmt::Write as _;
use std::time::Instant;

pub(crate) use mail_testground::transcript::Outcome;
use mail_testground::transcript::{self, Protocol, Splitter, unescape, unescape_str};
use smtp_submit::{
    Address, AuthFailure, AuthMethod, BodyType, Client, ClientName, Config, Credentials, Envelope,
    Event, Limits, LineEndingPolicy, MailOptions, Mechanism, MessageOutcome, Misuse, Notify,
    ProtocolError, Recipient, RecipientOutcome, Reply, Ret, Security, SessionFailure,
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

/// A session's configuration, from `!config`.
pub(crate) struct Smtp {
    security: Option<Security>,
    name: Option<String>,
    pipelining: bool,
    chunking: bool,
    cleartext: bool,
    policy: LineEndingPolicy,
    limits: Limits,
}

impl Default for Smtp {
    fn default() -> Self {
        Self {
            security: None,
            name: None,
            pipelining: true,
            chunking: true,
            cleartext: false,
            policy: LineEndingPolicy::default(),
            limits: Limits::default(),
        }
    }
}

type Runner = transcript::Runner<Smtp>;

impl Protocol for Smtp {
    type Client = Client;

    const WRITE_ON_DECLARE: bool = false;

    fn configure(&mut self, args: &str) {
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

    fn client(&self, start: Instant) -> Client {
        let name = self.name.clone().unwrap_or_else(|| "client.example".into());
        let config = Config::new(
            ClientName::new(name).unwrap(),
            self.security.unwrap_or(Security::ImplicitTls),
        )
        .with_pipelining(self.pipelining)
        .with_chunking(self.chunking)
        .with_line_endings(self.policy)
        .with_limits(self.limits.clone())
        .allow_cleartext_credentials_dangerously(self.cleartext);
        Client::new(config, start)
    }

    fn render(&self, event: &Event) -> String {
        render_event(event)
    }

    fn directive(run: &mut Runner, name: &str, args: &str) -> bool {
        match name {
            "call" => call(run, args),
            "caps" => {
                let rendered = render_caps(run.client());
                if rendered != unescape_str(args) {
                    run.fail(&format!("expected caps {args:?}, got {rendered:?}"));
                }
            }
            _ => return false,
        }
        true
    }

    fn refuses_after(client: &mut Client, now: Instant, error: &ProtocolError) -> bool {
        client.quit(now) == Err(Misuse::Fatal(Box::new(error.clone())))
    }
}

/// `!call <api>`: `auth`, `mail`, `send`, `write`, `finish`, `quit`.
fn call(run: &mut Runner, api: &str) {
    let (name, args) = api.split_once(' ').unwrap_or((api, ""));
    let now = run.now();
    match name {
        "quit" => {
            let result = run.client().quit(now);
            run.refused(result);
        }
        "auth" => auth(run, args),
        "mail" | "send" => mail(run, name == "send", args),
        "write" => {
            let (expected, data) = match args.strip_prefix('=') {
                Some(rest) => {
                    let (count, data) = rest.split_once(' ').unwrap_or((rest, ""));
                    (Some(count.parse::<usize>().unwrap()), data)
                }
                None => (None, args),
            };
            let data = unescape(data);
            let result = run.client().write_body(now, &data);
            if let Some(taken) = run.refused(result) {
                let expected = expected.unwrap_or(data.len());
                if taken != expected {
                    run.fail(&format!("write_body took {taken}, expected {expected}"));
                }
            }
        }
        "finish" => {
            let result = run.client().finish_body(now);
            run.refused(result);
        }
        _ => run.fail(&format!("unknown call {name}")),
    }
}

fn auth(run: &mut Runner, args: &str) {
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
    let now = run.now();
    let result = run.client().authenticate(now, &credentials, method, &nonce);
    run.refused(result);
}

fn mail(run: &mut Runner, with_body: bool, args: &str) {
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
    let now = run.now();
    let result = match body {
        Some(body) => run
            .client()
            .send_mail_bytes(now, envelope.clone(), options, &body),
        None => run.client().send_mail(now, envelope.clone(), options),
    };
    // A refusal hands the envelope back unchanged.
    let result = result.map_err(|rejected| {
        assert_eq!(
            rejected.value, envelope,
            "the refused envelope came back changed"
        );
        rejected.reason
    });
    run.refused(result);
}

/// Runs a transcript, feeding each server read in the pieces `splitter` chooses.
pub(crate) fn run_transcript(name: &str, text: &str, splitter: Splitter) -> Outcome {
    transcript::run::<Smtp>(name, text, splitter)
}

pub(crate) fn transcripts() -> Vec<(String, String)> {
    transcript::corpus(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts"))
}
