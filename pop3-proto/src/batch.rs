//! Pipelined batches: one command per message (`RETR`, `TOP`, `DELE`), kept queued in the
//! client a window at a time, with each reply matched back to its message.

use std::collections::VecDeque;
use std::time::Instant;

use crate::client::Client;
use crate::command::{Command, CommandId};
use crate::config::Limits;
use crate::error::Misuse;
use crate::event::Event;

/// The command a [`Batch`] sends for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchKind {
    /// `RETR msg` (with the size hint the last `LIST` gave, as [`Client::send`] adds it).
    Retr,
    /// `TOP msg lines`.
    Top {
        /// Body lines wanted.
        lines: u32,
    },
    /// `DELE msg`.
    Dele,
}

impl BatchKind {
    const fn command(self, msg: u32) -> Command {
        match self {
            Self::Retr => Command::retr(msg),
            Self::Top { lines } => Command::top(msg, lines),
            Self::Dele => Command::Dele(msg),
        }
    }
}

/// One command per message, handed to a [`Client`] a window at a time: the caller's side of
/// a pipelined `RETR`/`TOP`/`DELE` run, for any driver (the tokio session's `retr_many` and
/// `dele_many` are built on it; the blocking driver's users use it directly).
///
/// [`Batch::fill`] queues commands until twice [`Limits::max_in_flight`] of them are
/// unanswered (at most [`Limits::max_queued_commands`]): enough for the client to keep its
/// pipelining window full, without queueing the whole batch at once. [`Batch::claim`] matches
/// each event to the message it answers, in order. The batch does no I/O and reads no clock.
///
/// ```
/// use std::time::Instant;
/// use pop3_proto::{Batch, BatchKind, Client, Config, Credentials, Event, Login, Machine, Security};
///
/// # fn sent(client: &mut Client) -> String {
/// #     let bytes = client.poll_transmit().unwrap_or_default().to_vec();
/// #     client.advance_transmit(bytes.len());
/// #     String::from_utf8(bytes).unwrap()
/// # }
/// let now = Instant::now();
/// let mut client = Client::new(Config::new(Security::ImplicitTls), now);
/// client.handle_input(now, b"+OK ready\r\n")?;
/// # sent(&mut client);
/// client.handle_input(now, b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n")?;
/// client.login(now, Login::auto(Credentials::password("alice", "secret")))?;
/// client.handle_input(now, b"+OK\r\n+OK logged in\r\n")?;
/// # sent(&mut client);
/// while client.poll_event().is_some() {}
///
/// let mut batch = Batch::new(BatchKind::Dele, [1, 2, 3]);
/// batch.fill(&mut client, now)?;
/// assert_eq!(sent(&mut client), "DELE 1\r\nDELE 2\r\nDELE 3\r\n"); // one round trip
/// client.handle_input(now, b"+OK\r\n-ERR no such message\r\n+OK\r\n")?;
/// let mut refused = Vec::new();
/// while let Some(event) = client.poll_event() {
///     // A driver calls `fill` again after each event, to keep the window full.
///     if let (Some(msg), Event::Refused { .. }) = (batch.claim(&event), &event) {
///         refused.push(msg);
///     }
/// }
/// assert_eq!(refused, [2]);
/// assert!(batch.is_done());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Batch {
    kind: BatchKind,
    /// Messages whose command is not queued yet.
    pending: VecDeque<u32>,
    /// Commands queued in the client and not completely answered, in order.
    outstanding: VecDeque<(CommandId, u32)>,
}

impl Batch {
    /// A batch of `kind` for `msgs`, in their order. Nothing is queued before [`Batch::fill`].
    #[must_use = "a batch does nothing until it is filled"]
    pub fn new<I>(kind: BatchKind, msgs: I) -> Self
    where
        I: IntoIterator<Item = u32>,
    {
        Self {
            kind,
            pending: msgs.into_iter().collect(),
            outstanding: VecDeque::new(),
        }
    }

    /// The command sent for each message.
    pub const fn kind(&self) -> BatchKind {
        self.kind
    }

    /// Unanswered commands the batch keeps in the client: twice the pipelining window, so a
    /// reply never leaves it idle, within the client's queue.
    fn window(limits: &Limits) -> usize {
        (limits.max_in_flight.saturating_mul(2)).clamp(1, limits.max_queued_commands.max(1))
    }

    /// Queues the next commands in `client` while the window allows. Call it after every
    /// event [`Batch::claim`]s (and once at the start).
    ///
    /// # Errors
    ///
    /// The client refused a command ([`Client::send`]); its message stays pending, and the
    /// commands already queued still owe their replies.
    pub fn fill(&mut self, client: &mut Client, now: Instant) -> Result<(), Misuse> {
        let window = Self::window(&client.config().limits);
        while self.outstanding.len() < window {
            let Some(&msg) = self.pending.front() else {
                break;
            };
            let id = client
                .send(now, self.kind.command(msg))
                .map_err(|rejected| rejected.reason)?;
            self.pending.pop_front();
            self.outstanding.push_back((id, msg));
        }
        Ok(())
    }

    /// The message `event` is about, if it answers the batch's oldest unanswered command;
    /// `None` for events of anything else (another command, a set-up event). A final event
    /// ([`Event::MessageEnd`], [`Event::Refused`], [`Event::Done`]) completes that command.
    #[must_use = "an event the batch claims is its message's answer"]
    pub fn claim(&mut self, event: &Event) -> Option<u32> {
        let &(head, msg) = self.outstanding.front()?;
        if event.command_id() != Some(head) {
            return None;
        }
        if matches!(
            event,
            Event::MessageEnd { .. } | Event::Refused { .. } | Event::Done { .. }
        ) {
            self.outstanding.pop_front();
        }
        Some(msg)
    }

    /// Messages not completely answered yet: those still to be queued and those queued.
    pub fn remaining(&self) -> usize {
        self.pending.len() + self.outstanding.len()
    }

    /// Commands queued in the client whose answers are not complete.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether every command the batch will send has been answered.
    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }

    /// Queues nothing more: the messages not yet queued are dropped. The commands already
    /// queued still owe their replies; claim them (or let the events pass) to the end.
    pub fn abandon(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use mail_common::Machine as _;

    use super::*;
    use crate::{Config, Credentials, Login, Security};

    fn sent(client: &mut Client) -> String {
        let bytes = client.poll_transmit().unwrap_or_default().to_vec();
        client.advance_transmit(bytes.len());
        String::from_utf8(bytes).unwrap()
    }

    /// A client logged in to a server that announced `PIPELINING`, with these limits.
    fn logged_in(limits: Limits) -> Client {
        let now = Instant::now();
        let mut client = Client::new(Config::new(Security::ImplicitTls).with_limits(limits), now);
        client.handle_input(now, b"+OK ready\r\n").unwrap();
        assert_eq!(sent(&mut client), "CAPA\r\n");
        client
            .handle_input(now, b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n")
            .unwrap();
        let login = Login::auto(Credentials::password("alice", "secret"));
        client.login(now, login).unwrap();
        assert_eq!(sent(&mut client), "USER alice\r\n");
        client.handle_input(now, b"+OK\r\n").unwrap();
        assert_eq!(sent(&mut client), "PASS secret\r\n");
        client.handle_input(now, b"+OK in\r\n").unwrap();
        while client.poll_event().is_some() {}
        client
    }

    /// Every event the client has, with the message the batch claims it for.
    fn claimed(client: &mut Client, batch: &mut Batch) -> Vec<(Option<u32>, Event)> {
        std::iter::from_fn(|| client.poll_event())
            .map(|event| (batch.claim(&event), event))
            .collect()
    }

    fn retr_reply(msg: u32) -> String {
        format!("+OK\r\nmessage {msg}\r\n.\r\n")
    }

    /// A driver skips the reply to `QUIT` only when it commits nothing: no `DELE` was queued,
    /// one by one or by a batch.
    #[test]
    fn quit_commits_deletions_once_a_dele_is_queued() {
        let now = Instant::now();
        let mut client = logged_in(Limits::default());
        client.send(now, Command::Stat).unwrap();
        let mut retr = Batch::new(BatchKind::Retr, [1]);
        retr.fill(&mut client, now).unwrap();
        assert!(!client.quit_commits_deletions());
        let mut empty = Batch::new(BatchKind::Dele, []);
        empty.fill(&mut client, now).unwrap();
        assert!(!client.quit_commits_deletions());
        let mut dele = Batch::new(BatchKind::Dele, [1]);
        dele.fill(&mut client, now).unwrap();
        assert!(client.quit_commits_deletions());

        let mut client = logged_in(Limits::default());
        client.send(now, Command::Dele(2)).unwrap();
        assert!(client.quit_commits_deletions());
    }

    #[test]
    fn the_window_is_twice_the_pipelining_window_within_the_queue() {
        let limits = |in_flight, queued| {
            Batch::window(
                &Limits::default()
                    .with_max_in_flight(in_flight)
                    .with_max_queued_commands(queued),
            )
        };
        assert_eq!(limits(2, 100), 4);
        assert_eq!(limits(128, 10), 10);
        assert_eq!(limits(0, 10), 1);
        assert_eq!(limits(5, 0), 1);
    }

    #[test]
    fn retrieves_in_order_never_more_than_the_window_unanswered() {
        let mut client = logged_in(Limits::default().with_max_in_flight(2));
        let mut batch = Batch::new(BatchKind::Retr, 1..=7);
        batch.fill(&mut client, Instant::now()).unwrap();
        assert_eq!((batch.outstanding(), batch.remaining()), (4, 7));
        // The client sends its pipelining window (2); the other two wait inside it.
        assert_eq!(sent(&mut client), "RETR 1\r\nRETR 2\r\n");

        let mut done = Vec::new();
        let mut lines = Vec::new();
        while !batch.is_done() {
            let next = done.len() as u32 + 1;
            client
                .handle_input(Instant::now(), retr_reply(next).as_bytes())
                .unwrap();
            lines.push(sent(&mut client));
            for (msg, event) in claimed(&mut client, &mut batch) {
                assert_eq!(msg, Some(next), "{event:?}");
                if let Event::MessageEnd { msg, .. } = event {
                    done.push(msg);
                }
            }
            batch.fill(&mut client, Instant::now()).unwrap();
            assert!(batch.outstanding() <= 4);
        }
        assert_eq!(done, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            lines.concat(),
            "RETR 3\r\nRETR 4\r\nRETR 5\r\nRETR 6\r\nRETR 7\r\n"
        );
    }

    #[test]
    fn a_refused_message_in_the_middle_completes_and_the_rest_go_on() {
        let mut client = logged_in(Limits::default());
        let mut batch = Batch::new(BatchKind::Top { lines: 0 }, [1, 2, 3]);
        batch.fill(&mut client, Instant::now()).unwrap();
        assert_eq!(sent(&mut client), "TOP 1 0\r\nTOP 2 0\r\nTOP 3 0\r\n");
        client
            .handle_input(
                Instant::now(),
                b"+OK\r\na\r\n.\r\n-ERR no such message\r\n+OK\r\nc\r\n.\r\n",
            )
            .unwrap();
        let outcomes: Vec<_> = claimed(&mut client, &mut batch)
            .into_iter()
            .filter_map(|(msg, event)| match event {
                Event::MessageEnd { .. } => Some((msg, "end")),
                Event::Refused { .. } => Some((msg, "refused")),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [(Some(1), "end"), (Some(2), "refused"), (Some(3), "end")]
        );
        assert!(batch.is_done());
    }

    #[test]
    fn abandon_drops_the_pending_and_keeps_the_queued() {
        let mut client = logged_in(Limits::default().with_max_in_flight(1));
        let mut batch = Batch::new(BatchKind::Dele, 1..=5);
        batch.fill(&mut client, Instant::now()).unwrap();
        assert_eq!(batch.outstanding(), 2);
        batch.abandon();
        assert_eq!(batch.remaining(), 2);
        for _ in 0..2 {
            client.handle_input(Instant::now(), b"+OK\r\n").unwrap();
            let events = claimed(&mut client, &mut batch);
            assert!(
                matches!(events[..], [(Some(_), Event::Done { .. })]),
                "{events:?}"
            );
            batch.fill(&mut client, Instant::now()).unwrap();
        }
        assert!(batch.is_done());
        assert_eq!(sent(&mut client), "DELE 1\r\nDELE 2\r\n");
    }

    #[test]
    fn events_of_other_commands_are_not_claimed() {
        let mut client = logged_in(Limits::default());
        client.send(Instant::now(), Command::Stat).unwrap();
        let mut batch = Batch::new(BatchKind::Dele, [4]);
        batch.fill(&mut client, Instant::now()).unwrap();
        assert_eq!(sent(&mut client), "STAT\r\nDELE 4\r\n");
        client
            .handle_input(Instant::now(), b"+OK 1 10\r\n+OK\r\n")
            .unwrap();
        let events = claimed(&mut client, &mut batch);
        assert!(
            matches!(
                events[..],
                [(None, Event::Stat { .. }), (Some(4), Event::Done { .. })]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_refused_send_keeps_the_message_pending() {
        let now = Instant::now();
        let mut client = Client::new(Config::new(Security::ImplicitTls), now);
        let mut batch = Batch::new(BatchKind::Retr, [1, 2]);
        assert_eq!(batch.fill(&mut client, now), Err(Misuse::NotReady));
        assert_eq!((batch.remaining(), batch.outstanding()), (2, 0));
        assert_eq!(client.poll_transmit(), None);
    }
}
