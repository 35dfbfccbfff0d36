//! Retrieval: messages written chunk by chunk into any `AsyncWrite` or read as an `AsyncRead`,
//! and pipelined batches ([`Session::retr_many`], [`Session::retrieve`]).

use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use ::tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use bytes::Bytes;
use tracing::Instrument as _;

use super::{Error, Session};
use crate::{Batch, BatchKind, Command, CommandId, Event, Response};

/// The outcome of one message of [`Session::retr_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fetched {
    /// The message was written to its writer, which was flushed.
    Message {
        /// The message number.
        msg: u32,
        /// Octets written (after dot-unstuffing).
        octets: u64,
    },
    /// The server refused it (e.g. deleted in this session, or no such message).
    Refused {
        /// The message number.
        msg: u32,
        /// The server's answer.
        response: Response,
    },
}

/// A step of a pipelined retrieval ([`Retrieval::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetrievalEvent {
    /// The server accepted `RETR msg`; its chunks follow.
    Start {
        /// The message number.
        msg: u32,
    },
    /// A piece of the message, dot-unstuffed, line ends as sent.
    Chunk {
        /// The message number.
        msg: u32,
        /// The bytes.
        data: Bytes,
    },
    /// The message is complete.
    End {
        /// The message number.
        msg: u32,
        /// Octets delivered in its chunks.
        octets: u64,
    },
    /// The server refused `RETR msg`; the retrieval goes on with the next message.
    Refused {
        /// The message number.
        msg: u32,
        /// The server's answer.
        response: Response,
    },
}

impl Session {
    /// `RETR msg`, streamed into `out` chunk by chunk (dot-unstuffed, line ends as sent);
    /// `out` is flushed at the end. Returns the octets written.
    ///
    /// Memory does not grow with the message: each chunk is written before more is read.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the rest of the message is read and
    /// discarded by the next call; `out` may hold part of the message.
    pub async fn retr_to<W>(&mut self, msg: u32, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.body_to(Command::retr(msg), out).await
    }

    /// `RETR msg` as an [`AsyncRead`]: the message's bytes
    /// (dot-unstuffed, line ends as sent), then end of file once the terminator has arrived.
    /// A session error surfaces as an `io::Error` whose inner error is the [`Error`].
    ///
    /// Read it to the end before using the session again; a reader dropped early leaves the
    /// rest of the reply to be read and skipped by the next call.
    ///
    /// ```no_run
    /// # async fn f(session: &mut pop3_proto::tokio::Session) -> std::io::Result<()> {
    /// let mut reader = session.retr_reader(1)?;
    /// let mut message = Vec::new(); // or a file, a pipe, a hasher...
    /// tokio::io::copy(&mut reader, &mut message).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Fails at once (as an `io::Error`) when the command cannot be sent (the session failed
    /// earlier, or misuse such as not being logged in).
    pub fn retr_reader(&mut self, msg: u32) -> io::Result<MessageReader<'_>> {
        self.conn
            .check_now()
            .map_err(|error| io::Error::other(Error::from(error)))?;
        let id = self.send(Command::retr(msg)).map_err(io::Error::other)?;
        Ok(MessageReader {
            state: ReaderState::Idle(self, id),
            pending: Bytes::new(),
        })
    }

    /// `RETR msg` into memory. Prefer [`Session::retr_to`] for messages of unknown size.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn retr(&mut self, msg: u32) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.retr_to(msg, &mut out).await?;
        Ok(out)
    }

    /// `TOP msg lines` (the header and the first `lines` body lines), streamed into `out`.
    ///
    /// Cancel safety: cancel-safe, like [`Session::retr_to`].
    pub async fn top_to<W>(&mut self, msg: u32, lines: u32, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.body_to(Command::top(msg, lines), out).await
    }

    /// `TOP msg lines` into memory.
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the command still completes: the next
    /// call reads its reply and discards it before its own.
    pub async fn top(&mut self, msg: u32, lines: u32) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.top_to(msg, lines, &mut out).await?;
        Ok(out)
    }

    async fn body_to<W>(&mut self, command: Command, out: &mut W) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.command", %command);
        async {
            self.prepare().await?;
            let id = self.send(command)?;
            let mut output_error = None;
            loop {
                match self.reply(id).await? {
                    Event::MessageStart { .. } => {}
                    Event::MessageChunk { data, .. } => {
                        if output_error.is_none() {
                            output_error = out.write_all(&data).await.err();
                        }
                    }
                    Event::MessageEnd { octets, .. } => {
                        if output_error.is_none() {
                            output_error = out.flush().await.err();
                        }
                        tracing::debug!(octets, "message received");
                        return output_error.map_or(Ok(octets), |e| Err(Error::LocalIo(e)));
                    }
                    other => unreachable!("{command} answered by {other:?}"),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Retrieves `msgs` in pipelined flights (when the server announces `PIPELINING`),
    /// writing each message into the writer `open(msg)` returns. When a message is complete
    /// its writer is flushed and handed to `done(msg, writer)` (to close a file, rename it
    /// into place, keep a buffer). A refused message is reported in the result and the others
    /// go on.
    ///
    /// If a writer fails, no further `RETR` is sent, the replies already requested are read
    /// and discarded, and [`Error::LocalIo`] is returned.
    ///
    /// ```no_run
    /// # async fn f(session: &mut pop3_proto::tokio::Session) -> Result<(), pop3_proto::tokio::Error> {
    /// let mut messages = Vec::new();
    /// session
    ///     .retr_many(1..=10, |_msg| Vec::new(), |msg, body| messages.push((msg, body)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Cancel safety: cancel-safe. Dropped part way, the retrievals already sent complete and
    /// are discarded by the next call; which messages reached `done` is what `done` saw.
    pub async fn retr_many<I, F, W, D>(
        &mut self,
        msgs: I,
        mut open: F,
        mut done: D,
    ) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator<Item = u32>,
        F: FnMut(u32) -> W,
        W: AsyncWrite + Unpin,
        D: FnMut(u32, W),
    {
        let mut retrieval = self.retrieve(msgs);
        let mut fetched = Vec::new();
        let mut current: Option<W> = None;
        while let Some(event) = retrieval.next().await? {
            let result = match event {
                RetrievalEvent::Start { msg } => {
                    current = Some(open(msg));
                    Ok(())
                }
                RetrievalEvent::Chunk { data, .. } => match current.as_mut() {
                    Some(out) => out.write_all(&data).await,
                    None => Ok(()),
                },
                RetrievalEvent::End { msg, octets } => {
                    let flushed = match current.take() {
                        Some(mut out) => {
                            let flushed = out.flush().await;
                            if flushed.is_ok() {
                                done(msg, out);
                            }
                            flushed
                        }
                        None => Ok(()),
                    };
                    fetched.push(Fetched::Message { msg, octets });
                    flushed
                }
                RetrievalEvent::Refused { msg, response } => {
                    fetched.push(Fetched::Refused { msg, response });
                    Ok(())
                }
            };
            if let Err(error) = result {
                retrieval.abandon().await?;
                return Err(Error::LocalIo(error));
            }
        }
        Ok(fetched)
    }

    /// Starts a pipelined retrieval of `msgs`, read step by step with [`Retrieval::next`]:
    /// the pull-style form of [`Session::retr_many`], for callers that do asynchronous work
    /// per message (open a file, commit it to a store).
    pub fn retrieve<I>(&mut self, msgs: I) -> Retrieval<'_>
    where
        I: IntoIterator<Item = u32>,
    {
        let span = tracing::debug_span!(parent: &self.span, "pop3.retrieve");
        Retrieval {
            session: self,
            batch: Batch::new(BatchKind::Retr, msgs),
            span,
        }
    }

    /// Every message of the maildrop into memory, with its number, in order: `STAT`, then
    /// [`Session::retr_many`] of `1..=count`, pipelined when the server announces it. A
    /// message the server refuses (one marked deleted in this session) is left out. Each
    /// message is held whole: for a maildrop of unknown size, write each one out with
    /// [`Session::retr_many`] or [`Session::retrieve`] instead.
    ///
    /// Cancel safety: cancel-safe, like [`Session::retr_many`].
    pub async fn retr_all(&mut self) -> Result<Vec<(u32, Vec<u8>)>, Error> {
        let count = self.stat().await?.count;
        let mut messages = Vec::with_capacity(count as usize);
        self.retr_many(
            1..=count,
            |_| Vec::new(),
            |msg, body| messages.push((msg, body)),
        )
        .await?;
        Ok(messages)
    }
}

/// A pipelined retrieval started by [`Session::retrieve`].
///
/// Dropping it early leaves the commands already handed to the client running; their replies
/// are read and skipped by the next session call. [`Retrieval::abandon`] stops sending and
/// drains them at once.
#[derive(Debug)]
pub struct Retrieval<'a> {
    session: &'a mut Session,
    batch: Batch,
    span: tracing::Span,
}

impl Retrieval<'_> {
    /// The next step, or `None` when every message has been answered.
    ///
    /// Cancel safety: cancel-safe. Dropped while waiting, no event is lost: the next call
    /// returns it.
    pub async fn next(&mut self) -> Result<Option<RetrievalEvent>, Error> {
        let span = self.span.clone();
        self.next_inner().instrument(span).await
    }

    async fn next_inner(&mut self) -> Result<Option<RetrievalEvent>, Error> {
        self.session.conn.check().await?;
        if self.batch.outstanding() == 0 && !self.batch.is_done() {
            self.session.conn.take_arrived().await?;
        }
        let Some((msg, event)) = self.session.batch_event(&mut self.batch).await? else {
            return Ok(None);
        };
        Ok(Some(match event {
            Event::MessageStart { .. } => RetrievalEvent::Start { msg },
            Event::MessageChunk { data, .. } => RetrievalEvent::Chunk { msg, data },
            Event::MessageEnd { octets, .. } => {
                tracing::debug!(msg, octets, "message received");
                RetrievalEvent::End { msg, octets }
            }
            Event::Refused { response, .. } => {
                tracing::debug!(msg, ?response, "RETR refused");
                RetrievalEvent::Refused { msg, response }
            }
            other => unreachable!("RETR answered by {other:?}"),
        }))
    }

    /// Sends no further `RETR` and reads (discarding) the replies of those already sent.
    ///
    /// Cancel safety: cancel-safe; the rest is discarded by the next call.
    pub async fn abandon(&mut self) -> Result<(), Error> {
        self.batch.abandon();
        while self.next().await?.is_some() {}
        Ok(())
    }

    /// Messages not yet completely answered.
    pub fn remaining(&self) -> usize {
        self.batch.remaining()
    }
}

/// A message being read with [`Session::retr_reader`].
pub struct MessageReader<'a> {
    state: ReaderState<'a>,
    pending: Bytes,
}

type ReplyFuture<'a> =
    Pin<Box<dyn Future<Output = (&'a mut Session, Result<Event, Error>)> + Send + 'a>>;

enum ReaderState<'a> {
    Idle(&'a mut Session, CommandId),
    Waiting(ReplyFuture<'a>, CommandId),
    Done,
    Moving,
}

impl fmt::Debug for MessageReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ReaderState::Idle(..) => "idle",
            ReaderState::Waiting(..) => "waiting",
            ReaderState::Done => "done",
            ReaderState::Moving => "moving",
        };
        f.debug_struct("MessageReader")
            .field("state", &state)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl AsyncRead for MessageReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.state, ReaderState::Moving) {
                ReaderState::Idle(session, id) => {
                    let reply = Box::pin(async move {
                        let event = session.reply(id).await;
                        (session, event)
                    });
                    this.state = ReaderState::Waiting(reply, id);
                }
                ReaderState::Waiting(mut reply, id) => match reply.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = ReaderState::Waiting(reply, id);
                        return Poll::Pending;
                    }
                    Poll::Ready((session, Ok(Event::MessageChunk { data, .. }))) => {
                        this.pending = data;
                        this.state = ReaderState::Idle(session, id);
                    }
                    Poll::Ready((_, Ok(Event::MessageEnd { .. }))) => {
                        this.state = ReaderState::Done;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready((session, Ok(_))) => this.state = ReaderState::Idle(session, id),
                    Poll::Ready((_, Err(error))) => {
                        this.state = ReaderState::Done;
                        return Poll::Ready(Err(io::Error::other(error)));
                    }
                },
                ReaderState::Done | ReaderState::Moving => {
                    this.state = ReaderState::Done;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
