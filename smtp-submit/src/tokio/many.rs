//! Many messages over one session with transactions pipelined across (RFC 2920): see
//! [`Session::send_many`].

use std::io;
use std::time::Instant;

use super::{ConnectionError, Error, Session};
use crate::{Envelope, MailOptions, Misuse, PipelinedReports, SendReport};

impl Session {
    /// Sends messages held in memory over this session, several transactions in flight at once
    /// when the server offers PIPELINING: `MAIL`, `RCPT`s and `BDAT n LAST` of the next message
    /// leave before the replies to the one before arrive, so a run of messages costs a small
    /// fraction of a round trip each instead of one. The window is
    /// [`Limits::max_pipelined_transactions`](crate::Limits::max_pipelined_transactions) and
    /// [`Limits::max_pipelined_bytes`](crate::Limits::max_pipelined_bytes); without PIPELINING
    /// one transaction at a time.
    ///
    /// Returns one entry per message, in the order given:
    /// - `Ok(report)`: the server answered it; the [`SendReport`] says whether it was sent and
    ///   what happened to each recipient, exactly as from [`Session::send_bytes`]. A refused
    ///   message does not affect its neighbours. When the server ends the session (421) with
    ///   messages in flight, those are reported failed with
    ///   [`TransactionFailure::ServiceClosing`](crate::TransactionFailure::ServiceClosing) and
    ///   recipients it never answered are
    ///   [`RecipientOutcome::NotAttempted`](crate::RecipientOutcome::NotAttempted); the
    ///   messages before were answered before the 421 and stand.
    /// - `Err(Error::Misuse(..))`: refused before anything was sent (no recipients, more than
    ///   `LIMITS RCPTMAX`, content the server cannot take, ...); the others go on.
    /// - `Err(..)` with the session's own error (I/O, timeout, protocol): the connection failed
    ///   while the message was in flight; it may or may not have been delivered.
    /// - `Err(Error::Closed)`: never sent, because the session had ended.
    ///
    /// Unlike [`Session::send_bytes`], a message is one transaction: more recipients than the
    /// server's `LIMITS RCPTMAX` is [`Misuse::TooManyRecipients`].
    ///
    /// The outer `Err` is only for a session that was unusable from the start.
    ///
    /// Other drivers (the blocking one) keep the same books with [`PipelinedReports`].
    ///
    /// Cancel safety: not cancel-safe. Dropped part way, the session answers every later call
    /// with [`Error::Cancelled`]; which messages were delivered is unknown.
    pub async fn send_many<'m, I>(
        &mut self,
        messages: I,
    ) -> Result<Vec<Result<SendReport, Error>>, Error>
    where
        I: IntoIterator<Item = (Envelope, MailOptions, &'m [u8])>,
    {
        let span = tracing::debug_span!(parent: &self.span, "send_many");
        self.guarded("send_many", span, async |s| {
            s.send_many_inner(messages.into_iter()).await
        })
        .await
    }

    async fn send_many_inner<'m>(
        &mut self,
        mut messages: impl Iterator<Item = (Envelope, MailOptions, &'m [u8])>,
    ) -> Result<Vec<Result<SendReport, Error>>, Error> {
        self.take_arrived().await?;
        let mut results: Vec<Option<Result<SendReport, Error>>> = Vec::new();
        let mut in_flight = PipelinedReports::new();
        // A message the window had no room for yet.
        let mut held = None;
        let mut ended = false;
        loop {
            while let Some((envelope, options, body)) = held.take().or_else(|| messages.next()) {
                if ended {
                    results.push(Some(Err(Error::Closed)));
                    continue;
                }
                let started = self.client_mut().send_mail_bytes(
                    Instant::now(),
                    envelope.clone(),
                    options.clone(),
                    body,
                );
                match started {
                    Ok(id) => {
                        in_flight.start(results.len(), id, &envelope);
                        results.push(None);
                    }
                    Err(rejected)
                        if matches!(rejected.reason, Misuse::WindowFull { .. } | Misuse::Busy)
                            && !in_flight.is_empty() =>
                    {
                        held = Some((envelope, options, body));
                        break;
                    }
                    Err(rejected) if rejected.reason == Misuse::Closed => {
                        ended = true;
                        results.push(Some(Err(Error::Closed)));
                    }
                    Err(rejected) => results.push(Some(Err(Error::Misuse(rejected.reason)))),
                }
            }
            if in_flight.is_empty() {
                break;
            }
            match self.wait(|event| in_flight.take(event)).await {
                Ok((index, report)) => results[index] = Some(Ok(report)),
                Err(error) => {
                    // The connection failed with these still unanswered: their fate is unknown.
                    tracing::debug!(%error, unanswered = in_flight.len(), "session ended");
                    for index in in_flight.drain_unanswered() {
                        results[index] = Some(Err(duplicate(&error)));
                    }
                    ended = true;
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or(Err(Error::Closed)))
            .collect())
    }
}

/// The session's error again, for each message it left unanswered.
fn duplicate(error: &Error) -> Error {
    match error {
        Error::Connection(ConnectionError::Io(error)) => Error::Connection(ConnectionError::Io(
            io::Error::new(error.kind(), error.to_string()),
        )),
        Error::Connection(ConnectionError::Timeout(timeout)) => {
            Error::Connection(ConnectionError::Timeout(*timeout))
        }
        Error::Protocol(error) => Error::Protocol(error.clone()),
        Error::Refused { stage, reply } => Error::Refused {
            stage: *stage,
            reply: reply.clone(),
        },
        _ => Error::Closed,
    }
}
