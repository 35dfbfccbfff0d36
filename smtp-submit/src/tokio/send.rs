//! Sending: the message body streamed from the caller's reader (or held in memory), split
//! over the transactions a server's recipient limits need.

use std::{io, time::Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
use mail_common::transport::Until;

use super::{Error, Session};
use crate::{
    ContentScan, Envelope, Event, MailOptions, Misuse, RecipientBatches, ReportCollector,
    SendReport,
};

/// Bytes read from the caller's body source per read.
const BODY_READ_CHUNK: usize = 64 * 1024;

impl Session {
    /// Sends one message whose body is read from `body` as it goes out, never held whole in
    /// memory: `DATA` (dots stuffed, line endings per [`Config::line_endings`](crate::Config::line_endings)) or `BDAT` when
    /// CHUNKING is offered. Refused recipients and a refused message are in the
    /// [`SendReport`], not errors.
    ///
    /// A stream is read once, so it takes one transaction: more recipients than the server's
    /// `LIMITS RCPTMAX` is [`Misuse::TooManyRecipients`]; use [`Session::send_rewindable`] or
    /// [`Session::send_bytes`] for more. The body is not inspected before `MAIL FROM`:
    /// `BODY=8BITMIME` is declared whenever offered, `SMTPUTF8` must be asked for in
    /// `options`, and undeclared content stops the message before the end of data
    /// ([`Misuse::UndeclaredContent`], the session is closed).
    ///
    /// If reading `body` fails, the connection is closed without ending the data (the server
    /// discards the partial message) and [`Error::LocalIo`] is returned.
    pub async fn send<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        let span = self.send_span(&envelope);
        self.guarded("send", span, async |s| {
            s.send_streaming(envelope, options, body, None).await
        })
        .await
    }

    /// Sends one message from a source that can be read twice (a file): it is scanned once to
    /// declare exactly what its content needs (`BODY=8BITMIME`, `SMTPUTF8`), rewound, and
    /// streamed as by [`Session::send`]. When the server lacks a needed extension nothing is
    /// sent ([`Misuse::ContentNeedsExtension`]). Like [`Session::send_bytes`], a recipient limit
    /// is met with further transactions, the source being rewound for each.
    ///
    /// A failed read during the scan is [`Error::LocalIo`] with nothing sent.
    pub async fn send_rewindable<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let span = self.send_span(&envelope);
        self.guarded("send", span, async |s| {
            let scan = scan_and_rewind(&mut body).await.map_err(Error::LocalIo)?;
            let start = body.stream_position().await.map_err(Error::LocalIo)?;
            let replay = Replay::Source {
                source: &mut body,
                start,
                scan,
            };
            s.send_split(envelope, options, replay).await
        })
        .await
    }

    /// Sends a message held in memory. With PIPELINING and CHUNKING and a body of at most
    /// [`Limits::chunk_size`](crate::Limits::chunk_size) bytes, the whole message leaves in one
    /// flight. `SIZE=` and `BODY=8BITMIME` are filled in when `options` leaves them unset.
    ///
    /// More recipients than one transaction may take go in further transactions of this
    /// session ([`RecipientBatches`]); each recipient appears once in the [`SendReport`].
    pub async fn send_bytes(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: &[u8],
    ) -> Result<SendReport, Error> {
        let span = self.send_span(&envelope);
        span.record("bytes", body.len());
        let replay = Replay::<io::Cursor<&[u8]>>::Bytes(body);
        self.guarded("send_bytes", span, async |s| {
            s.send_split(envelope, options, replay).await
        })
        .await
    }

    fn send_span(&self, envelope: &Envelope) -> tracing::Span {
        tracing::debug_span!(
            parent: &self.span,
            "send",
            recipients = envelope.recipients().len(),
            bytes = tracing::field::Empty,
            transaction = tracing::field::Empty,
        )
    }

    /// Sends one message in as many transactions as the server's recipient limits need.
    async fn send_split<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: Replay<'_, R>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        if envelope.recipients().is_empty() {
            return self.one_transaction(envelope, options, &mut body).await;
        }
        let mut batches = RecipientBatches::new(&envelope, self.capabilities.rcpt_max());
        while let Some(part) = batches.next_envelope() {
            match self.one_transaction(part, options.clone(), &mut body).await {
                Ok(report) => batches.record(report),
                Err(error) if batches.is_first() => return Err(error),
                Err(error) => {
                    // Earlier transactions went through: their outcomes must not be lost.
                    tracing::debug!(%error, "no further transaction");
                    batches.stop(error.to_string());
                }
            }
        }
        Ok(batches.finish())
    }

    /// One transaction of [`Session::send_split`].
    async fn one_transaction<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        body: &mut Replay<'_, R>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        match body {
            Replay::Bytes(bytes) => {
                self.take_arrived().await?;
                let sent = envelope.clone();
                let id =
                    self.client_mut()
                        .send_mail_bytes(Instant::now(), envelope, options, bytes)?;
                tracing::Span::current().record("transaction", tracing::field::display(id));
                let mut collector = ReportCollector::new(id, &sent);
                self.wait(|event| collector.take(event)).await
            }
            Replay::Source {
                source,
                start,
                scan,
            } => {
                let rewound = source.seek(io::SeekFrom::Start(*start)).await;
                rewound.map_err(Error::LocalIo)?;
                self.send_streaming(envelope, options, &mut **source, Some(*scan))
                    .await
            }
        }
    }

    /// The body pump: feeds the client what the source gives, as fast as the server takes it,
    /// reading the next piece while the last one is written.
    async fn send_streaming<R>(
        &mut self,
        envelope: Envelope,
        options: MailOptions,
        mut body: R,
        scan: Option<ContentScan>,
    ) -> Result<SendReport, Error>
    where
        R: AsyncRead + Unpin,
    {
        self.take_arrived().await?;
        let now = Instant::now();
        let sent = envelope.clone();
        let id = match scan {
            Some(scan) => self
                .client_mut()
                .send_mail_scanned(now, envelope, options, scan)?,
            None => self.client_mut().send_mail(now, envelope, options)?,
        };
        tracing::Span::current().record("transaction", tracing::field::display(id));
        let mut collector = ReportCollector::new(id, &sent);
        let mut buf = vec![0_u8; BODY_READ_CHUNK].into_boxed_slice();
        // `buf[start..end]` was read from the source and not yet taken by the client.
        let (mut start, mut end) = (0, 0);
        let mut eof = false;
        loop {
            let now = Instant::now();
            let mut failed = false;
            while start < end {
                match self.client_mut().write_body(now, &buf[start..end]) {
                    Ok(0) => break,
                    Ok(taken) => start += taken,
                    Err(Misuse::TransactionFailed) => {
                        failed = true;
                        break;
                    }
                    Err(misuse) => return Err(self.abandon(Error::Misuse(misuse)).await),
                }
            }
            if start == end {
                (start, end) = (0, 0);
                if eof && !failed {
                    match self.client_mut().finish_body(now) {
                        Ok(()) => break,
                        Err(Misuse::TransactionFailed) => failed = true,
                        Err(misuse) => return Err(self.abandon(Error::Misuse(misuse)).await),
                    }
                }
            }
            let want_read = !failed && !eof && start == end;
            let (source, read_buf) = (&mut body, &mut buf);
            let read = async move {
                if want_read {
                    source.read(read_buf).await
                } else {
                    std::future::pending().await
                }
            };
            let woke = self
                .wait_or(
                    |event| match event {
                        Event::BodyWritable { transaction } if transaction == id => Some(None),
                        event => collector.take(event).map(Some),
                    },
                    read,
                )
                .await?;
            match woke {
                Until::Other(Ok(0)) => eof = true,
                Until::Other(Ok(n)) => end = n,
                Until::Other(Err(error)) => return Err(self.abandon(Error::LocalIo(error)).await),
                Until::Done(None) => {}
                Until::Done(Some(report)) => return Ok(report),
            }
        }
        self.wait(|event| collector.take(event)).await
    }

    /// Gives up on a message in the middle of its body: the only safe way out is to close the
    /// connection without ending the data, so the server discards what it got.
    async fn abandon(&mut self, error: Error) -> Error {
        tracing::debug!(%error, "abandoning the message: closing the connection");
        self.conn.close().await;
        error
    }
}

/// A body that can be sent again, for the further transactions a recipient limit needs.
enum Replay<'a, R> {
    /// Held in memory.
    Bytes(&'a [u8]),
    /// Read from `source`, rewound to `start` for each transaction; scanned already.
    Source {
        source: &'a mut R,
        start: u64,
        scan: ContentScan,
    },
}

/// Reads `source` to its end through a [`ContentScan`], then seeks back to where it started.
async fn scan_and_rewind<R>(source: &mut R) -> io::Result<ContentScan>
where
    R: AsyncRead + AsyncSeek + Unpin,
{
    let start = source.stream_position().await?;
    let mut scan = ContentScan::new();
    let mut buf = vec![0_u8; BODY_READ_CHUNK].into_boxed_slice();
    loop {
        let n = source.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
    }
    source.seek(io::SeekFrom::Start(start)).await?;
    tracing::debug!(
        eight_bit = scan.needs_8bitmime(),
        utf8_headers = scan.needs_smtputf8(),
        "message scanned"
    );
    Ok(scan)
}
