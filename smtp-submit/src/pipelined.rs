//! [`PipelinedReports`]: the reports of several messages in flight at once over one session
//! (RFC 2920 pipelining across transactions), for any driver.

use std::collections::VecDeque;

use crate::{Envelope, Event, ReportCollector, SendReport, TransactionId};

/// The reports of messages pipelined over one session: which message an event belongs to, and
/// its [`SendReport`] once its transaction is over.
///
/// The caller numbers the messages (`index`, typically their place in its own list) and tells
/// the tracker each transaction it starts ([`PipelinedReports::start`]); it hands every event
/// of the client to [`PipelinedReports::take`], which returns a message's index and report when
/// its transaction ends. Replies may come back for several messages before the first is done;
/// each goes to its own message.
///
/// A report is as [`ReportCollector`] makes it: every recipient of every message appears once
/// (one the server never answered before a 421 is
/// [`RecipientOutcome::NotAttempted`](crate::RecipientOutcome::NotAttempted)). When the
/// connection fails instead, no event ends
/// the messages still in flight; [`PipelinedReports::drain_unanswered`] names them, and whether
/// the server delivered them is unknown.
///
/// The tracker does not start transactions: when [`Client::send_mail_bytes`] refuses one with
/// [`Misuse::WindowFull`] (or [`Misuse::Busy`]), wait for a report and start it then.
///
/// [`Client::send_mail_bytes`]: crate::Client::send_mail_bytes
/// [`Misuse::WindowFull`]: crate::Misuse::WindowFull
/// [`Misuse::Busy`]: crate::Misuse::Busy
///
/// # Example
///
/// Two messages in one flight; the server refuses the second one's recipient.
///
/// ```
/// use std::time::Instant;
/// use smtp_submit::{
///     Address, Client, ClientName, Config, Envelope, Event, Machine, MailOptions,
///     PipelinedReports, Security,
/// };
///
/// let now = Instant::now();
/// let config = Config::new(ClientName::new("client.example.org")?, Security::ImplicitTls);
/// let mut client = Client::new(config, now);
/// client.handle_input(now, b"220 mail.example.org ESMTP\r\n")?;
/// client.handle_input(now, b"250-mail.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n")?;
/// while client.poll_event().is_some() {}
///
/// let mut reports = PipelinedReports::new();
/// for (index, to) in ["bob@example.org", "nobody@example.org"].into_iter().enumerate() {
///     let envelope = Envelope::new(Some(Address::new("alice@example.org")?))
///         .with_recipient(Address::new(to)?);
///     let id = client.send_mail_bytes(now, envelope.clone(), MailOptions::default(), b"Hi\r\n")?;
///     reports.start(index, id, &envelope);
/// }
/// // A driver writes what `poll_transmit` offers here; both messages leave before any reply.
/// while let Some(bytes) = client.poll_transmit() {
///     let written = bytes.len();
///     client.advance_transmit(written);
/// }
///
/// client.handle_input(
///     now,
///     b"250 Ok\r\n250 Ok\r\n250 Ok: queued as 1\r\n\
///       250 Ok\r\n250 Ok\r\n550 5.1.1 No such user\r\n554 No valid recipients\r\n",
/// )?;
/// let mut sent = [None, None];
/// while let Some(event) = client.poll_event() {
///     if let Some((index, report)) = reports.take(event) {
///         sent[index] = Some(report.is_sent());
///     }
/// }
/// assert_eq!(sent, [Some(true), Some(false)]);
/// assert!(reports.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct PipelinedReports {
    /// In the order started, which is the order the server answers in.
    in_flight: VecDeque<InFlight>,
}

/// A message started and not yet answered: its place in the caller's list and its events so
/// far.
#[derive(Debug)]
struct InFlight {
    index: usize,
    collector: ReportCollector,
}

impl PipelinedReports {
    /// A tracker with no message in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the message the caller calls `index` was started as `transaction` with
    /// `envelope` (the one given to the client, for the recipients the server never answers).
    pub fn start(&mut self, index: usize, transaction: TransactionId, envelope: &Envelope) {
        tracing::trace!(%transaction, index, "started");
        self.in_flight.push_back(InFlight {
            index,
            collector: ReportCollector::new(transaction, envelope),
        });
    }

    /// Takes one event of the client. When it ends the transaction of a message in flight,
    /// returns that message's index and report, and the message is no longer in flight.
    /// Events of no message in flight (of an unknown transaction, or of the session) are
    /// dropped: look at [`Event::SessionFailed`] and [`Event::Closed`] before handing them
    /// over.
    #[must_use = "the report of a finished message is returned only once"]
    pub fn take(&mut self, event: Event) -> Option<(usize, SendReport)> {
        let transaction = match &event {
            Event::Recipient { transaction, .. } | Event::MessageDone { transaction, .. } => {
                *transaction
            }
            _ => return None,
        };
        let position = self
            .in_flight
            .iter()
            .position(|m| m.collector.transaction() == transaction)?;
        let report = self.in_flight[position].collector.take(event)?;
        let message = self.in_flight.remove(position)?;
        Some((message.index, report))
    }

    /// True when no message is in flight: every one started has its report.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// How many messages are in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Forgets every message in flight and returns their indexes, in the order started: for
    /// a connection that failed before they were answered. Whether the server delivered them
    /// is unknown.
    pub fn drain_unanswered(&mut self) -> impl Iterator<Item = usize> + '_ {
        self.in_flight.drain(..).map(|m| m.index)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::PipelinedReports;
    use crate::{
        Address, Client, ClientName, Config, Envelope, Event, Machine, MailOptions, MessageOutcome,
        RecipientOutcome, Security, TransactionFailure, TransactionId,
    };

    fn envelope(recipients: &[&str]) -> Envelope {
        let mut envelope = Envelope::new(Some(Address::new("a@example.org").unwrap()));
        for to in recipients {
            envelope.add_recipient(Address::new(*to).unwrap());
        }
        envelope
    }

    /// A client past EHLO with PIPELINING and CHUNKING.
    fn ready() -> Client {
        let now = Instant::now();
        let config = Config::new(
            ClientName::new("client.example").unwrap(),
            Security::ImplicitTls,
        );
        let mut client = Client::new(config, now);
        client.handle_input(now, b"220 mx ESMTP\r\n").unwrap();
        client
            .handle_input(now, b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
            .unwrap();
        while client.poll_event().is_some() {}
        client
    }

    /// Starts one message per envelope as the caller's `index`, and lets the client send.
    fn start(
        client: &mut Client,
        reports: &mut PipelinedReports,
        messages: &[(usize, Envelope)],
    ) -> Vec<TransactionId> {
        let now = Instant::now();
        let ids = messages
            .iter()
            .map(|(index, envelope)| {
                let id = client
                    .send_mail_bytes(now, envelope.clone(), MailOptions::default(), b"x\r\n")
                    .unwrap();
                reports.start(*index, id, envelope);
                id
            })
            .collect();
        write_all(client);
        ids
    }

    /// Takes everything the client has to send, as a driver writing it would.
    fn write_all(client: &mut Client) {
        while let Some(bytes) = client.poll_transmit() {
            let written = bytes.len();
            client.advance_transmit(written);
        }
    }

    /// Feeds `replies` and hands every event to `reports`: the reports that came back, and
    /// the events of the session (neither `Recipient` nor `MessageDone`).
    fn answer(
        client: &mut Client,
        reports: &mut PipelinedReports,
        replies: &str,
    ) -> (Vec<(usize, crate::SendReport)>, Vec<Event>) {
        client
            .handle_input(Instant::now(), replies.as_bytes())
            .unwrap();
        let (mut done, mut session) = (Vec::new(), Vec::new());
        while let Some(event) = client.poll_event() {
            if matches!(event, Event::SessionFailed(_) | Event::Closed) {
                session.push(event);
            } else if let Some(report) = reports.take(event) {
                done.push(report);
            }
        }
        (done, session)
    }

    fn outcomes(report: &crate::SendReport) -> Vec<(&str, &RecipientOutcome)> {
        report
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), &r.outcome))
            .collect()
    }

    #[test]
    fn each_message_gets_its_own_replies_under_the_callers_index() {
        let mut client = ready();
        let mut reports = PipelinedReports::new();
        let messages = [
            (7, envelope(&["b@example.org", "c@example.org"])),
            (3, envelope(&["d@example.org"])),
        ];
        start(&mut client, &mut reports, &messages);
        assert_eq!(reports.len(), 2);
        // The first message's replies only: the second stays in flight.
        let (done, _) = answer(
            &mut client,
            &mut reports,
            "250 Ok\r\n250 Ok\r\n550 5.1.1 unknown\r\n250 queued as A\r\n",
        );
        assert_eq!(done.len(), 1);
        let (index, report) = &done[0];
        assert_eq!(*index, 7);
        assert!(report.is_sent());
        assert_eq!(report.reply().unwrap().text(), "queued as A");
        let refused = outcomes(report);
        assert!(refused[0].1.is_accepted(), "{refused:?}");
        assert!(
            matches!(refused[1], ("c@example.org", RecipientOutcome::Rejected(r)) if r.code() == 550),
            "{refused:?}"
        );
        assert_eq!(reports.len(), 1);
        // RSET, MAIL, RCPT, BDAT of the second.
        let (done, _) = answer(
            &mut client,
            &mut reports,
            "250 Ok\r\n250 Ok\r\n250 Ok\r\n250 queued as B\r\n",
        );
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, 3);
        assert_eq!(done[0].1.reply().unwrap().text(), "queued as B");
        assert!(reports.is_empty());
    }

    #[test]
    fn a_421_with_messages_in_flight_fails_them_and_their_unanswered_recipients_are_not_attempted()
    {
        let mut client = ready();
        let mut reports = PipelinedReports::new();
        let messages = [
            (0, envelope(&["b@example.org"])),
            (1, envelope(&["c@example.org", "d@example.org"])),
            (2, envelope(&["e@example.org"])),
        ];
        start(&mut client, &mut reports, &messages);
        // The first message is taken; the second's MAIL and first RCPT are answered, then the
        // server goes away.
        let (done, session) = answer(
            &mut client,
            &mut reports,
            "250 Ok\r\n250 Ok\r\n250 queued as A\r\n\
             250 Ok\r\n250 Ok\r\n250 Ok\r\n421 4.3.2 shutting down\r\n",
        );
        assert!(matches!(
            session.as_slice(),
            [Event::SessionFailed(_), Event::Closed]
        ));
        assert!(reports.is_empty(), "every message got its report");
        assert_eq!(done.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(done[0].1.is_sent());
        for (_, report) in &done[1..] {
            assert!(
                matches!(&report.outcome, MessageOutcome::Failed(TransactionFailure::ServiceClosing(r)) if r.code() == 421),
                "{report:?}"
            );
            assert!(!report.is_sent());
        }
        // The answered RCPT keeps its answer; the others are accounted for as never tried.
        let second = outcomes(&done[1].1);
        assert_eq!(second.len(), 2);
        assert_eq!(second[0].0, "c@example.org");
        assert!(second[0].1.is_accepted(), "{second:?}");
        assert_eq!(
            second[1],
            ("d@example.org", &RecipientOutcome::NotAttempted)
        );
        assert_eq!(
            outcomes(&done[2].1),
            [("e@example.org", &RecipientOutcome::NotAttempted)]
        );
    }

    /// `send_bytes` and `send` build their report with a bare [`crate::ReportCollector`]: it
    /// lists every recipient after a 421 too, as `send_many`'s reports do.
    #[test]
    fn one_collector_lists_the_recipients_a_421_left_unanswered() {
        let mut client = ready();
        let message = envelope(&["c@example.org", "d@example.org"]);
        let id = client
            .send_mail_bytes(
                Instant::now(),
                message.clone(),
                MailOptions::default(),
                b"x\r\n",
            )
            .unwrap();
        write_all(&mut client);
        let mut collector = crate::ReportCollector::new(id, &message);
        client
            .handle_input(
                Instant::now(),
                b"250 Ok\r\n250 Ok\r\n421 4.3.2 shutting down\r\n",
            )
            .unwrap();
        let report = std::iter::from_fn(|| client.poll_event())
            .find_map(|event| collector.take(event))
            .expect("the 421 ends the transaction");
        assert!(!report.is_sent());
        let outcomes = outcomes(&report);
        assert_eq!(outcomes.len(), 2, "{report:?}");
        assert!(outcomes[0].1.is_accepted());
        assert_eq!(
            outcomes[1],
            ("d@example.org", &RecipientOutcome::NotAttempted)
        );
    }

    #[test]
    fn events_of_an_unknown_transaction_or_of_the_session_are_dropped() {
        let mut client = ready();
        let mut reports = PipelinedReports::new();
        let ids = start(
            &mut client,
            &mut reports,
            &[(0, envelope(&["b@example.org"]))],
        );
        let stranger = TransactionId(ids[0].0 + 100);
        let mut reader = crate::reply::ReplyReader::new(512);
        reader.extend(b"250 queued\r\n");
        let reply = reader.next_reply(10).unwrap().unwrap();
        let foreign = [
            Event::Recipient {
                transaction: stranger,
                index: 0,
                address: Address::new("b@example.org").unwrap(),
                outcome: RecipientOutcome::Accepted(reply.clone()),
            },
            Event::MessageDone {
                transaction: stranger,
                outcome: MessageOutcome::Sent {
                    reply: reply.clone(),
                    accepted: 1,
                },
            },
            Event::NoopReply(reply),
            Event::Closed,
        ];
        for event in foreign {
            assert!(reports.take(event).is_none());
        }
        assert_eq!(reports.len(), 1, "the message in flight is untouched");
        let (done, _) = answer(
            &mut client,
            &mut reports,
            "250 Ok\r\n250 Ok\r\n250 queued as A\r\n",
        );
        assert_eq!(done.len(), 1);
        assert_eq!(outcomes(&done[0].1).len(), 1, "no stray recipient");
        assert!(done[0].1.is_sent());
    }

    #[test]
    fn drain_unanswered_names_the_messages_in_flight_in_order_and_forgets_them() {
        let mut client = ready();
        let mut reports = PipelinedReports::new();
        let messages = [
            (4, envelope(&["b@example.org"])),
            (5, envelope(&["c@example.org"])),
            (6, envelope(&["d@example.org"])),
        ];
        start(&mut client, &mut reports, &messages);
        let (done, _) = answer(
            &mut client,
            &mut reports,
            "250 Ok\r\n250 Ok\r\n250 queued as A\r\n",
        );
        assert_eq!(done.len(), 1);
        assert_eq!(reports.drain_unanswered().collect::<Vec<_>>(), [5, 6]);
        assert!(reports.is_empty());
        assert_eq!(reports.drain_unanswered().count(), 0);
    }
}
