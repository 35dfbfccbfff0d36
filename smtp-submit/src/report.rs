//! What the server said about one message: [`SendReport`], gathered from the core's events by
//! [`ReportCollector`], and [`RecipientBatches`], which splits a message over the transactions a
//! server's recipient limits need. Any driver (the tokio adapter, a blocking loop) uses them.

use std::collections::VecDeque;
use std::fmt;

use crate::{
    Address, Envelope, Event, MessageOutcome, RecipientOutcome, Reply, TransactionFailure,
    TransactionId,
};

/// The server's answer to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecipientReport {
    /// Index into the envelope's recipients.
    pub index: usize,
    /// The recipient.
    pub address: Address,
    /// Accepted or rejected, with the server's reply.
    pub outcome: RecipientOutcome,
    /// The transaction this outcome belongs to (several when a recipient limit split the
    /// envelope; see [`SendReport::transactions`]).
    pub transaction: TransactionId,
}

impl RecipientReport {
    /// True when the server accepted this recipient (its transaction may still have failed:
    /// see [`SendReport::delivered`]).
    pub const fn is_accepted(&self) -> bool {
        self.outcome.is_accepted()
    }

    /// The server's reply to this `RCPT TO`; none when it was never sent.
    pub const fn reply(&self) -> Option<&Reply> {
        self.outcome.reply()
    }
}

/// A message that was not sent ([`SendReport::ensure_sent`]): the report, and the reply that
/// decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    reply: Option<Reply>,
    report: Box<SendReport>,
}

impl NotSent {
    /// The reply that refused the message: the first recipient's refusal when every recipient
    /// was refused, else the reply that ended the first failed transaction; `None` when the only problem is recipients that were
    /// never attempted.
    pub const fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// True when trying again later may succeed: a 4yz refusal, or recipients never attempted
    /// (the session ended or a limit was reached).
    pub fn is_transient(&self) -> bool {
        self.reply.as_ref().is_none_or(|reply| {
            reply
                .failure_class()
                .is_some_and(mail_common::FailureClass::is_transient)
        })
    }

    /// The whole report.
    pub fn report(&self) -> &SendReport {
        &self.report
    }

    /// The whole report, by value.
    pub fn into_report(self) -> SendReport {
        *self.report
    }
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.report.failure() {
            Some(TransactionFailure::NoValidRecipients { .. }) => {
                f.write_str("the message was not sent: no recipient accepted")?;
                match self.report.rejected().next() {
                    Some((address, reply)) => write!(f, " ({address}: {reply})"),
                    None => Ok(()),
                }
            }
            Some(failure) => write!(f, "the message was not sent: {failure}"),
            None => write!(
                f,
                "the message was not sent to {} recipient(s): {}",
                self.report.not_attempted().count(),
                self.report.stopped.as_deref().unwrap_or("not attempted")
            ),
        }
    }
}

impl std::error::Error for NotSent {}

/// Everything the server said about one message.
///
/// One message may take several transactions: when the server answers `452 too many
/// recipients` (RFC 5321 section 4.5.3.1.10) or announces a smaller `LIMITS RCPTMAX` (RFC
/// 9422), the rest is sent in further transactions of the same session ([`RecipientBatches`]). Each recipient appears exactly once, with the answer of
/// the transaction that settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a refused message is reported here, not as an error: check `is_sent()` or call `ensure_sent()`"]
pub struct SendReport {
    /// The first transaction.
    pub transaction: TransactionId,
    /// One entry per recipient, in envelope order. When `MAIL FROM` is refused, the recipients
    /// are [`RecipientOutcome::SenderRefused`]; the cause is in `outcome`.
    pub recipients: Vec<RecipientReport>,
    /// Sent (every transaction was), or the first failure.
    pub outcome: MessageOutcome,
    /// Every transaction with its outcome, in order.
    pub transactions: Vec<(TransactionId, MessageOutcome)>,
    /// Why later transactions were not attempted, when a later one could not start (the
    /// session ended, or a limit was reached); their recipients are
    /// [`RecipientOutcome::NotAttempted`].
    pub stopped: Option<String>,
}

impl SendReport {
    /// The report when [`SendReport::is_sent`], else [`NotSent`] (which hands the report
    /// back): for callers that treat a refused message as an error. The tokio adapter's error
    /// converts from it.
    ///
    /// Recipients refused next to accepted ones do not make it an error (the message went to
    /// the others); [`SendReport::rejected`] lists them.
    ///
    /// ```
    /// # fn f(report: smtp_submit::SendReport) -> Result<(), smtp_submit::NotSent> {
    /// let report = report.ensure_sent()?;
    /// println!("queued: {:?}", report.reply());
    /// # Ok(()) }
    /// ```
    pub fn ensure_sent(self) -> Result<Self, NotSent> {
        if self.is_sent() {
            return Ok(self);
        }
        // Every recipient refused: the recipient's refusal says why (`550 5.1.1 unknown user`);
        // the reply to a pipelined DATA only says that none was left (`554 no valid
        // recipients`, from Postfix).
        let first_refusal = self.rejected().next().map(|(_, reply)| reply);
        let reply = match self.failure() {
            Some(TransactionFailure::NoValidRecipients { reply }) => {
                first_refusal.or(reply.as_ref())
            }
            Some(failure) => failure.reply(),
            None => first_refusal,
        }
        .cloned();
        Err(NotSent {
            reply,
            report: Box::new(self),
        })
    }

    /// True when the server took responsibility for the message in every transaction and
    /// every recipient was attempted.
    pub fn is_sent(&self) -> bool {
        matches!(self.outcome, MessageOutcome::Sent { .. })
            && !self
                .recipients
                .iter()
                .any(|r| r.outcome == RecipientOutcome::NotAttempted)
    }

    /// The final reply when sent (of the last transaction; its text usually carries the
    /// queue id).
    pub const fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            MessageOutcome::Sent { reply, .. } => Some(reply),
            MessageOutcome::Failed(_) => None,
        }
    }

    /// Why nothing was delivered in the first failed transaction, when one failed.
    pub const fn failure(&self) -> Option<&TransactionFailure> {
        match &self.outcome {
            MessageOutcome::Failed(failure) => Some(failure),
            MessageOutcome::Sent { .. } => None,
        }
    }

    /// The outcome of `transaction`.
    pub fn outcome_of(&self, transaction: TransactionId) -> Option<&MessageOutcome> {
        self.transactions
            .iter()
            .find(|(id, _)| *id == transaction)
            .map(|(_, outcome)| outcome)
    }

    /// True when `recipient` was accepted in a transaction the server took.
    pub fn delivered(&self, recipient: &RecipientReport) -> bool {
        recipient.is_accepted()
            && matches!(
                self.outcome_of(recipient.transaction),
                Some(MessageOutcome::Sent { .. })
            )
    }

    /// The recipients the server accepted (see [`SendReport::delivered`] for whether their
    /// transaction went through).
    pub fn accepted(&self) -> impl Iterator<Item = &Address> {
        self.recipients
            .iter()
            .filter(|r| r.is_accepted())
            .map(|r| &r.address)
    }

    /// The recipients the server refused (or did not get to: sender refused), with its
    /// replies.
    pub fn rejected(&self) -> impl Iterator<Item = (&Address, &Reply)> {
        self.recipients
            .iter()
            .filter(|r| !r.is_accepted())
            .filter_map(|r| Some((&r.address, r.reply()?)))
    }

    /// The recipients never sent to the server (see [`SendReport::stopped`]).
    pub fn not_attempted(&self) -> impl Iterator<Item = &Address> {
        self.recipients
            .iter()
            .filter(|r| r.outcome == RecipientOutcome::NotAttempted)
            .map(|r| &r.address)
    }

    /// Merges the reports of the transactions of one message; `recipients` are already mapped
    /// to the envelope's indexes, one per recipient.
    pub(crate) fn merge(
        transactions: Vec<(TransactionId, MessageOutcome)>,
        recipients: Vec<RecipientReport>,
        stopped: Option<String>,
    ) -> Self {
        let first_failure = transactions.iter().find_map(|(_, outcome)| match outcome {
            MessageOutcome::Failed(failure) => Some(failure.clone()),
            MessageOutcome::Sent { .. } => None,
        });
        let outcome = match (first_failure, transactions.last()) {
            (Some(failure), _) => MessageOutcome::Failed(failure),
            (None, Some((_, MessageOutcome::Sent { reply, .. }))) => MessageOutcome::Sent {
                reply: reply.clone(),
                accepted: recipients.iter().filter(|r| r.is_accepted()).count(),
            },
            (None, _) => {
                MessageOutcome::Failed(TransactionFailure::NoValidRecipients { reply: None })
            }
        };
        Self {
            transaction: transactions
                .first()
                .map_or(TransactionId(u64::MAX), |(id, _)| *id),
            recipients,
            outcome,
            transactions,
            stopped,
        }
    }
}

/// Gathers the events of one transaction into a [`SendReport`]: give it every event after
/// starting the transaction; the report comes back with the transaction's last event.
#[derive(Debug)]
pub struct ReportCollector {
    transaction: TransactionId,
    /// The envelope's recipients, for those that get no `RCPT` reply.
    addresses: Vec<Address>,
    recipients: Vec<RecipientReport>,
}

impl ReportCollector {
    /// A collector for the events of `transaction`, sent with `envelope`.
    pub fn new(transaction: TransactionId, envelope: &Envelope) -> Self {
        Self {
            transaction,
            addresses: envelope
                .recipients()
                .iter()
                .map(|r| r.address().clone())
                .collect(),
            recipients: Vec::new(),
        }
    }

    /// Takes one event (events of other transactions are ignored); returns the report once the
    /// transaction is over. The report has one entry per recipient of the envelope: one the
    /// server never answered (it ended the session first) is
    /// [`RecipientOutcome::NotAttempted`]; behind a refused `MAIL FROM`, each has that refusal.
    pub fn take(&mut self, event: Event) -> Option<SendReport> {
        match event {
            Event::Recipient {
                transaction,
                index,
                address,
                outcome,
            } if transaction == self.transaction => {
                tracing::trace!(%address, accepted = outcome.is_accepted(), "RCPT answered");
                self.recipients.push(RecipientReport {
                    index,
                    address,
                    outcome,
                    transaction,
                });
                None
            }
            Event::MessageDone {
                transaction,
                outcome,
            } if transaction == self.transaction => {
                tracing::debug!(?outcome, "message done");
                if let MessageOutcome::Failed(TransactionFailure::MailRejected(reply)) = &outcome {
                    self.sender_refused(reply);
                }
                // The server ended the session (421) before answering every RCPT.
                fill_unanswered(&mut self.recipients, &self.addresses, transaction, || {
                    RecipientOutcome::NotAttempted
                });
                self.recipients.sort_by_key(|r| r.index);
                Some(SendReport {
                    transaction,
                    recipients: std::mem::take(&mut self.recipients),
                    outcome: outcome.clone(),
                    transactions: vec![(transaction, outcome)],
                    stopped: None,
                })
            }
            _ => None,
        }
    }

    /// The transaction this collector gathers the events of.
    pub const fn transaction(&self) -> TransactionId {
        self.transaction
    }

    /// Gives every recipient that got no `RCPT` reply because `MAIL FROM` was refused (no
    /// PIPELINING) that refusal as its outcome, so each recipient appears once.
    fn sender_refused(&mut self, reply: &Reply) {
        fill_unanswered(
            &mut self.recipients,
            &self.addresses,
            self.transaction,
            || RecipientOutcome::SenderRefused(reply.clone()),
        );
    }
}

/// Adds a report with `outcome()` for every one of `addresses` (by index) that `recipients`
/// does not answer yet, so each recipient of a transaction appears exactly once.
fn fill_unanswered(
    recipients: &mut Vec<RecipientReport>,
    addresses: &[Address],
    transaction: TransactionId,
    outcome: impl Fn() -> RecipientOutcome,
) {
    let mut answered = vec![false; addresses.len()];
    for r in recipients.iter() {
        if let Some(slot) = answered.get_mut(r.index) {
            *slot = true;
        }
    }
    for (index, address) in addresses.iter().enumerate() {
        if !answered[index] {
            recipients.push(RecipientReport {
                index,
                address: address.clone(),
                outcome: outcome(),
                transaction,
            });
        }
    }
}

/// Splits one message over as many transactions as the server's recipient limits need.
///
/// The driver asks for [`RecipientBatches::next_envelope`], runs that transaction, and hands its
/// report to [`RecipientBatches::record`], until there is no next envelope;
/// [`RecipientBatches::finish`] then merges the reports. A recipient refused with "too many
/// recipients" goes into the next transaction only after one the server took, so every round
/// settles at least one recipient and the loop ends; a recipient accepted once is never sent
/// again.
#[derive(Debug)]
pub struct RecipientBatches {
    from: Option<Address>,
    all: Vec<crate::Recipient>,
    per_transaction: usize,
    queue: VecDeque<usize>,
    batch: Vec<usize>,
    settled: Vec<Option<RecipientReport>>,
    transactions: Vec<(TransactionId, MessageOutcome)>,
    stopped: Option<String>,
}

impl RecipientBatches {
    /// Batches for `envelope`, at most `per_transaction` recipients each (the server's `LIMITS
    /// RCPTMAX`, else unlimited).
    pub fn new(envelope: &Envelope, per_transaction: Option<usize>) -> Self {
        let all = envelope.recipients().to_vec();
        Self {
            from: envelope.from().cloned(),
            queue: (0..all.len()).collect(),
            settled: vec![None; all.len()],
            all,
            per_transaction: per_transaction.unwrap_or(usize::MAX).max(1),
            batch: Vec::new(),
            transactions: Vec::new(),
            stopped: None,
        }
    }

    /// The envelope of the next transaction, or `None` when every recipient is settled (or
    /// [`RecipientBatches::stop`] was called).
    pub fn next_envelope(&mut self) -> Option<Envelope> {
        if self.queue.is_empty() || self.stopped.is_some() {
            return None;
        }
        let take = self.queue.len().min(self.per_transaction);
        self.batch = self.queue.drain(..take).collect();
        let mut part = Envelope::new(self.from.clone());
        for &index in &self.batch {
            part.add_recipient(self.all[index].clone());
        }
        Some(part)
    }

    /// True before the first transaction was recorded: an error then is the caller's to report
    /// as such, since nothing was sent yet.
    pub fn is_first(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Records the report of the transaction of the last [`RecipientBatches::next_envelope`].
    pub fn record(&mut self, report: SendReport) {
        let sent = report.is_sent();
        let mut deferred = Vec::new();
        for r in report.recipients {
            let Some(&index) = self.batch.get(r.index) else {
                continue;
            };
            if sent
                && matches!(&r.outcome, RecipientOutcome::Rejected(reply)
                    if reply.is_too_many_recipients())
            {
                deferred.push(index);
            }
            self.settled[index] = Some(RecipientReport { index, ..r });
        }
        if !deferred.is_empty() {
            tracing::debug!(
                count = deferred.len(),
                "too many recipients: the rest go in another transaction"
            );
        }
        for index in deferred.into_iter().rev() {
            self.queue.push_front(index);
        }
        self.transactions.push((report.transaction, report.outcome));
    }

    /// Records that the transaction of the last batch could not run (`why`): no further one is
    /// attempted, and its recipients are [`RecipientOutcome::NotAttempted`].
    pub fn stop(&mut self, why: String) {
        for &index in self.batch.iter().rev() {
            self.queue.push_front(index);
        }
        self.stopped = Some(why);
    }

    /// The merged report: every recipient once, with the answer of the transaction that
    /// settled it.
    pub fn finish(self) -> SendReport {
        let last = self.transactions.last().map(|(id, _)| *id);
        let all = self.all;
        let recipients = self
            .settled
            .into_iter()
            .enumerate()
            .map(|(index, report)| {
                report.unwrap_or_else(|| RecipientReport {
                    index,
                    address: all[index].address().clone(),
                    outcome: RecipientOutcome::NotAttempted,
                    transaction: last.unwrap_or(TransactionId(u64::MAX)),
                })
            })
            .collect();
        SendReport::merge(self.transactions, recipients, self.stopped)
    }
}
