//! A connection with a bounded read buffer, plain or TLS, with the STARTTLS/STLS upgrade.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// How many bytes one read asks the socket for.
const CHUNK: usize = 8 * 1024;

/// Why a session ends.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The peer closed the connection (possibly mid-line).
    Closed,
    /// No byte arrived within the idle limit.
    Timeout,
    /// A socket or TLS error.
    Io,
}

impl From<io::Error> for ConnError {
    fn from(_: io::Error) -> Self {
        Self::Io
    }
}

/// One line read from the peer.
#[derive(Debug)]
pub(crate) enum Line {
    /// A whole line, with its terminator (`\n` or `\r\n`).
    Complete(Vec<u8>),
    /// The line was longer than the limit; it was read and thrown away through its `\n`.
    TooLong,
}

/// Plain TCP or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What reading and writing need, as one object type.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Stream {
    /// The byte stream, whichever it is.
    fn io(&mut self) -> &mut dyn Io {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.as_mut(),
        }
    }
}

/// A server-side connection.
pub(crate) struct Conn {
    /// `None` only while an upgrade is under way (or after it failed).
    stream: Option<Stream>,
    /// Bytes received and not consumed yet; never much longer than the largest limit asked for
    /// plus one read.
    buf: Vec<u8>,
    idle: Duration,
}

impl Conn {
    /// Wraps a fresh TCP connection, doing the TLS handshake first for implicit TLS.
    pub(crate) async fn accept(
        tcp: TcpStream,
        tls: Option<&TlsAcceptor>,
        idle: Duration,
    ) -> Result<Self, ConnError> {
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(acceptor) => Stream::Tls(Box::new(
                timeout(idle, acceptor.accept(tcp))
                    .await
                    .map_err(|_| ConnError::Timeout)??,
            )),
        };
        Ok(Self {
            stream: Some(stream),
            buf: Vec::new(),
            idle,
        })
    }

    /// Whether the connection is TLS-protected.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    fn stream(&mut self) -> Result<&mut dyn Io, ConnError> {
        self.stream.as_mut().map(Stream::io).ok_or(ConnError::Io)
    }

    /// Reads one more chunk into the buffer.
    async fn fill(&mut self) -> Result<(), ConnError> {
        let idle = self.idle;
        let mut chunk = [0u8; CHUNK];
        let stream = self.stream()?;
        let n = timeout(idle, stream.read(&mut chunk))
            .await
            .map_err(|_| ConnError::Timeout)??;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one line of at most `limit` bytes (terminator included). A longer line is
    /// consumed and discarded through its end, holding at most `limit` plus one read in memory.
    pub(crate) async fn read_line(&mut self, limit: usize) -> Result<Line, ConnError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos + 1;
                let line: Vec<u8> = self.buf.drain(..end).collect();
                if line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.buf.len() > limit {
                return self.discard_through_newline().await;
            }
            scanned = self.buf.len();
            self.fill().await?;
        }
    }

    async fn discard_through_newline(&mut self) -> Result<Line, ConnError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                self.buf.drain(..=pos);
                return Ok(Line::TooLong);
            }
            self.buf.clear();
            self.fill().await?;
        }
    }

    /// Consumes exactly `n` bytes, appending them to `sink` when given (and discarding them
    /// otherwise, so that the caller can stay in step with a client without storing its data).
    pub(crate) async fn read_exact_into(
        &mut self,
        mut n: u64,
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<(), ConnError> {
        loop {
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            if let Some(sink) = sink.as_deref_mut() {
                sink.extend_from_slice(&self.buf[..take]);
            }
            self.buf.drain(..take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Writes `bytes` and flushes.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let idle = self.idle;
        let stream = self.stream()?;
        timeout(idle, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| ConnError::Timeout)??;
        Ok(())
    }

    /// Upgrades a plain connection to TLS after the positive STARTTLS/STLS reply was sent.
    /// Whatever the client sent after the command and before the handshake is thrown away
    /// (RFC 3207 section 4.2): it must never be executed as a command.
    pub(crate) async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> Result<(), ConnError> {
        self.buf.clear();
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(ConnError::Io);
        };
        let tls = timeout(self.idle, acceptor.accept(tcp))
            .await
            .map_err(|_| ConnError::Timeout)??;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// Closes the connection politely (TLS close_notify, TCP FIN).
    pub(crate) async fn close(&mut self) {
        let idle = self.idle;
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(idle, stream.io().shutdown()).await;
        }
    }
}

/// Strips one trailing `\r\n` or `\n`.
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a command line into its upper-cased verb and the rest (without the separating
/// space). `None` when the line is not UTF-8.
pub(crate) fn split_command(line: &[u8]) -> Option<(String, &str)> {
    let text = std::str::from_utf8(strip_eol(line)).ok()?;
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    Some((verb.to_ascii_uppercase(), rest))
}
