//! Transactions pipelined across messages against a simulated server that refuses at random
//! (MAIL, each RCPT, BDAT LAST) and keeps a refused transaction open as the least forgiving
//! server would (a `MAIL` on top of it is refused as nested): whatever the window, the order of
//! starts and replies and how the replies are cut into reads, every message gets exactly the
//! outcome its own replies call for, and every recipient exactly its own answer.

use std::collections::VecDeque;
use std::time::Instant;

use proptest::prelude::*;
use smtp_submit::{
    Address, Client, ClientName, Config, Envelope, Event, Limits, Machine, MailOptions,
    MessageOutcome, Misuse, RecipientOutcome, Security, TransactionFailure,
};

/// What the server does with one message.
#[derive(Debug, Clone)]
struct Plan {
    mail: bool,
    rcpts: Vec<bool>,
    bdat: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop::bool::weighted(0.8),
        prop::collection::vec(prop::bool::weighted(0.7), 1..4),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(mail, rcpts, bdat)| Plan { mail, rcpts, bdat })
}

/// A server that answers every command in order, by the plans of the messages in the order
/// their `MAIL` arrives.
struct Server {
    plans: VecDeque<Plan>,
    current: Option<Plan>,
    /// A transaction is open (MAIL accepted, not ended by BDAT LAST success or RSET).
    open: bool,
    rcpt_index: usize,
    accepted: usize,
    input: Vec<u8>,
    replies: Vec<u8>,
}

impl Server {
    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        loop {
            let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line = String::from_utf8(self.input[..lf - 1].to_vec()).unwrap();
            if let Some(size) = line.strip_prefix("BDAT ") {
                let size: usize = size.trim_end_matches(" LAST").parse().unwrap();
                if self.input.len() < lf + 1 + size {
                    return;
                }
                self.input.drain(..lf + 1 + size);
                self.bdat();
            } else {
                self.input.drain(..=lf);
                self.command(&line);
            }
        }
    }

    fn reply(&mut self, text: &str) {
        self.replies.extend_from_slice(text.as_bytes());
        self.replies.extend_from_slice(b"\r\n");
    }

    fn command(&mut self, line: &str) {
        if line == "RSET" {
            self.open = false;
            self.reply("250 2.0.0 reset");
        } else if line.starts_with("MAIL FROM") {
            let plan = self.plans.pop_front().expect("a MAIL for every message");
            let ok = plan.mail;
            self.current = Some(plan);
            self.rcpt_index = 0;
            self.accepted = 0;
            if self.open {
                // The previous transaction was never cleared: the client's fault.
                self.reply("503 5.5.1 nested MAIL command");
            } else if ok {
                self.open = true;
                self.reply("250 2.1.0 ok");
            } else {
                self.reply("553 5.7.1 sender refused");
            }
        } else if line.starts_with("RCPT TO") {
            let ok = self.current.as_ref().unwrap().rcpts[self.rcpt_index];
            self.rcpt_index += 1;
            if !self.open {
                self.reply("503 5.5.1 need MAIL command");
            } else if ok {
                self.accepted += 1;
                self.reply("250 2.1.5 ok");
            } else {
                self.reply("550 5.1.1 unknown user");
            }
        } else if line == "QUIT" {
            self.reply("221 bye");
        } else {
            panic!("unexpected command {line}");
        }
    }

    fn bdat(&mut self) {
        let ok = self.current.as_ref().unwrap().bdat;
        if !self.open {
            self.reply("503 5.5.1 need MAIL command");
        } else if self.accepted == 0 {
            // Postfix: refused, and the transaction stays open.
            self.reply("554 5.5.1 no valid recipients");
        } else if ok {
            self.open = false;
            self.reply("250 2.0.0 queued");
        } else {
            // The least forgiving reading: the transaction stays open until RSET.
            self.reply("554 5.7.1 message refused");
        }
    }
}

fn expected(plan: &Plan) -> (Vec<&'static str>, &'static str) {
    if !plan.mail {
        return (vec!["sender-refused"; plan.rcpts.len()], "mail-rejected");
    }
    let rcpts: Vec<_> = plan
        .rcpts
        .iter()
        .map(|&ok| if ok { "accepted" } else { "rejected" })
        .collect();
    let outcome = if !plan.rcpts.contains(&true) {
        "no-valid-recipients"
    } else if plan.bdat {
        "sent"
    } else {
        "message-rejected"
    };
    (rcpts, outcome)
}

fn take_output(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        out.extend_from_slice(bytes);
        let n = bytes.len();
        client.advance_transmit(n);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_outcome_is_its_own(
        plans in prop::collection::vec(plan(), 1..12),
        window in 1_usize..6,
        pipelining in prop::bool::weighted(0.8),
        // Per step: start a message if possible (true), else deliver some replies.
        steps in prop::collection::vec((prop::bool::ANY, 1_usize..40), 1..80),
    ) {
        let now = Instant::now();
        let config = Config::new(ClientName::new("client.example").unwrap(), Security::ImplicitTls)
            .with_limits(Limits::default().with_max_pipelined_transactions(window));
        let mut client = Client::new(config, now);
        let mut server = Server {
            plans: plans.iter().cloned().collect(),
            current: None,
            open: false,
            rcpt_index: 0,
            accepted: 0,
            input: Vec::new(),
            replies: Vec::new(),
        };
        client.handle_input(now, b"220 server ESMTP\r\n").unwrap();
        prop_assert_eq!(take_output(&mut client), b"EHLO client.example\r\n".to_vec());
        let ehlo: &[u8] = if pipelining {
            b"250-server\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
        } else {
            b"250-server\r\n250 CHUNKING\r\n"
        };
        client.handle_input(now, ehlo).unwrap();
        prop_assert!(matches!(client.poll_event(), Some(Event::Greeting(_))));
        prop_assert!(matches!(client.poll_event(), Some(Event::Ready(_))));

        let mut started = 0;
        let mut ids = Vec::new();
        let mut events = Vec::new();
        let mut step = steps.iter().cycle();
        let mut max_in_flight = 0;
        let mut idle_rounds = 0;
        while events.iter().filter(|e| matches!(e, Event::MessageDone { .. })).count() < plans.len() {
            let &(start, cut) = step.next().unwrap();
            // Nothing to wait for: start the next message whatever the step says.
            let start = start || (client.transactions_in_flight() == 0 && server.replies.is_empty());
            let mut progressed = false;
            if start && started < plans.len() {
                let recipients = plans[started].rcpts.len();
                let envelope = (0..recipients).fold(
                    Envelope::new(Some(Address::new("me@client.example").unwrap())),
                    |e, i| e.with_recipient(Address::new(format!("r{i}@server.example")).unwrap()),
                );
                let body = format!("message {started}\r\n");
                match client.send_mail_bytes(now, envelope, MailOptions::default(), body.as_bytes()) {
                    Ok(id) => {
                        ids.push(id);
                        started += 1;
                        progressed = true;
                    }
                    Err(rejected) if matches!(rejected.reason, Misuse::Busy | Misuse::WindowFull { .. }) => {}
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
                max_in_flight = max_in_flight.max(client.transactions_in_flight());
            }
            let sent = take_output(&mut client);
            server.feed(&sent);
            if !start || !progressed {
                let n = cut.min(server.replies.len());
                if n > 0 {
                    let piece: Vec<u8> = server.replies.drain(..n).collect();
                    client.handle_input(now, &piece).unwrap();
                    progressed = true;
                }
            }
            while let Some(event) = client.poll_event() {
                events.push(event);
            }
            idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
            prop_assert!(idle_rounds < 1000, "stuck: {} started, {:?}", started, client);
        }
        let allowed = if pipelining { window } else { 1 };
        prop_assert!(max_in_flight <= allowed, "{} in flight", max_in_flight);
        prop_assert!(server.plans.is_empty());

        // Every message's events, in order, are exactly what its own plan calls for.
        for (index, (plan, id)) in plans.iter().zip(&ids).enumerate() {
            let (rcpts, outcome) = expected(plan);
            let mut got_rcpts = Vec::new();
            let mut got_outcome = None;
            for event in &events {
                match event {
                    Event::Recipient { transaction, index: i, outcome, .. } if transaction == id => {
                        prop_assert_eq!(*i, got_rcpts.len());
                        got_rcpts.push(match outcome {
                            RecipientOutcome::Accepted(_) => "accepted",
                            RecipientOutcome::Rejected(_) => "rejected",
                            RecipientOutcome::SenderRefused(_) => "sender-refused",
                            _ => "other",
                        });
                    }
                    Event::MessageDone { transaction, outcome } if transaction == id => {
                        got_outcome = Some(match outcome {
                            MessageOutcome::Sent { .. } => "sent",
                            MessageOutcome::Failed(TransactionFailure::MailRejected(_)) => "mail-rejected",
                            MessageOutcome::Failed(TransactionFailure::NoValidRecipients { .. }) => "no-valid-recipients",
                            MessageOutcome::Failed(TransactionFailure::MessageRejected(_)) => "message-rejected",
                            _ => "other",
                        });
                    }
                    _ => {}
                }
            }
            // Without PIPELINING no RCPT follows a refused MAIL.
            let rcpts = if !pipelining && !plan.mail { Vec::new() } else { rcpts };
            prop_assert_eq!(&got_rcpts, &rcpts, "message {}", index);
            prop_assert_eq!(got_outcome, Some(outcome), "message {}", index);
        }
        // MessageDone events come in the order the messages were started.
        let done: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::MessageDone { transaction, .. } => Some(*transaction),
                _ => None,
            })
            .collect();
        prop_assert_eq!(done, ids);
    }
}
