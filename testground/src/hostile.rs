//! Scripted hostile servers: a POP3 or SMTP "server" on loopback that follows a script of
//! steps, including the attacks no real server performs (response injection around STARTTLS,
//! stalls, oversized input, bad certificates), and records what the client sent.
//!
//! These complement the real servers of the test ground; they never replace them. Their
//! certificates come from [`Pki`] (re-exported here from [`crate::pki`]).
//!
//! ```no_run
//! # async fn demo() {
//! use mail_testground::hostile::{HostileServer, Pki, Step};
//! let pki = Pki::generate();
//! let server = HostileServer::start(
//!     vec![
//!         Step::send("+OK hostile ready\r\n"),
//!         Step::expect("CAPA"),
//!         Step::send("+OK\r\nSTLS\r\n.\r\n"),
//!         Step::expect("STLS"),
//!         // injection: a forged reply in the same packet as the +OK
//!         Step::send("+OK begin TLS\r\n+OK forged\r\n"),
//!         Step::Close,
//!     ],
//!     pki.leaf_for("localhost"),
//! )
//! .await;
//! // ... run the client against server.addr() ...
//! let transcript = server.finish().await;
//! assert!(!transcript.plaintext_contains(b"PASS"));
//! # }
//! ```

use std::{net::SocketAddr, time::Duration};

pub use crate::pki::{Pki, ServerCert};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

/// The longest line the scripted server reads; longer input ends the script with an error.
const MAX_LINE: usize = 64 * 1024;
/// The receive buffer of a server whose script hangs (see [`HostileServer::start`]).
const HANG_RECV_BUFFER: u32 = 16 * 1024;
/// How long `Step::Expect` waits for the client before the script fails.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(20);

/// One step of a script.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Step {
    /// Write these bytes in one write call (so they arrive in one packet on loopback).
    Send(Vec<u8>),
    /// Write `count` copies of `bytes`, streaming (for oversized responses).
    SendRepeated {
        /// The bytes.
        bytes: Vec<u8>,
        /// How many times.
        count: usize,
    },
    /// Read one line from the client; the script fails unless it starts with this prefix
    /// (ASCII case-insensitive).
    Expect(String),
    /// Read one line from the client, whatever it is.
    ExpectAny,
    /// Read and discard client lines until one equals `.` (the end of an SMTP DATA body).
    ExpectDataEnd,
    /// Read exactly this many bytes (a BDAT chunk).
    ExpectBytes(usize),
    /// Run the server side of a TLS handshake now (STARTTLS/STLS, or implicit TLS as the
    /// first step).
    StartTls,
    /// Read the start of the client's TLS handshake, then never answer it.
    StallHandshake,
    /// Stop answering but keep the connection open until the client gives up.
    Stall,
    /// Stop reading for this long, keeping the connection open (what the client writes backs up
    /// in the socket buffers: a server that stops reading mid-body); then read and discard until
    /// the client closes, like [`Step::Stall`].
    HangFor(Duration),
    /// Wait before the next step.
    Pause(Duration),
    /// Close the connection (and end the script).
    Close,
}

impl Step {
    /// [`Step::Send`] from text or bytes.
    pub fn send(bytes: impl AsRef<[u8]>) -> Self {
        Self::Send(bytes.as_ref().to_vec())
    }

    /// [`Step::Expect`].
    pub fn expect(prefix: &str) -> Self {
        Self::Expect(prefix.to_owned())
    }
}

/// What a scripted server saw.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Bytes the client sent before any TLS handshake.
    pub plaintext: Vec<u8>,
    /// Bytes the client sent inside TLS.
    pub encrypted: Vec<u8>,
    /// The lines matched by `Expect`/`ExpectAny` steps, in order.
    pub lines: Vec<String>,
    /// Why the script stopped early (client closed, expectation failed, TLS failed), if it did.
    pub stopped: Option<String>,
}

impl Transcript {
    /// True when `needle` occurs in what the client sent in clear.
    pub fn plaintext_contains(&self, needle: &[u8]) -> bool {
        contains(&self.plaintext, needle)
    }

    /// True when `needle` occurs anywhere the client sent, in clear or inside TLS.
    pub fn any_contains(&self, needle: &[u8]) -> bool {
        contains(&self.plaintext, needle) || contains(&self.encrypted, needle)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A scripted server accepting one connection on an ephemeral loopback port.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    task: JoinHandle<Transcript>,
}

impl HostileServer {
    /// Listens on 127.0.0.1 and plays `script` to the first client that connects.
    ///
    /// A script with a [`Step::HangFor`] gets a small receive buffer, so that a client writing
    /// to the hanging server blocks after a few hundred KiB instead of tens of MiB.
    // Async so that callers need not change if binding ever needs to await again.
    #[allow(clippy::unused_async)]
    pub async fn start(script: Vec<Step>, cert: ServerCert) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        if script.iter().any(|step| matches!(step, Step::HangFor(_))) {
            socket
                .set_recv_buffer_size(HANG_RECV_BUFFER)
                .expect("SO_RCVBUF");
        }
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind loopback");
        let listener = socket.listen(8).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let mut transcript = Transcript::default();
            match listener.accept().await {
                Ok((tcp, _)) => {
                    if let Err(why) = play(tcp, &script, &cert, &mut transcript).await {
                        transcript.stopped = Some(why);
                    }
                }
                Err(e) => transcript.stopped = Some(format!("accept: {e}")),
            }
            transcript
        });
        Self { addr, task }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the script to end (the client must have closed or the script finished) and
    /// returns what the client sent.
    pub async fn finish(self) -> Transcript {
        let joined = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .unwrap_or_else(|elapsed| panic!("hostile server did not finish: {elapsed}"));
        joined.unwrap_or_else(|e| panic!("hostile server task failed: {e}"))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn play(
    tcp: TcpStream,
    script: &[Step],
    cert: &ServerCert,
    transcript: &mut Transcript,
) -> Result<(), String> {
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(tcp));
    let mut tls = false;
    for step in script {
        match step {
            Step::Send(bytes) => write(&mut io, bytes).await?,
            Step::SendRepeated { bytes, count } => {
                for _ in 0..*count {
                    write(&mut io, bytes).await?;
                }
            }
            Step::Expect(prefix) => {
                let line = read_line(&mut io, tls, transcript).await?;
                let head = line.as_bytes().get(..prefix.len());
                if !head.is_some_and(|h| h.eq_ignore_ascii_case(prefix.as_bytes())) {
                    return Err(format!("expected {prefix:?}, client sent {line:?}"));
                }
                transcript.lines.push(line);
            }
            Step::ExpectAny => {
                let line = read_line(&mut io, tls, transcript).await?;
                transcript.lines.push(line);
            }
            Step::ExpectDataEnd => loop {
                let line = read_line(&mut io, tls, transcript).await?;
                if line == "." {
                    break;
                }
            },
            Step::ExpectBytes(n) => {
                let mut buf = vec![0; *n];
                tokio::time::timeout(
                    EXPECT_TIMEOUT,
                    tokio::io::AsyncReadExt::read_exact(&mut io, &mut buf),
                )
                .await
                .map_err(|_| "client sent no chunk".to_owned())?
                .map_err(|e| format!("reading chunk: {e}"))?;
                record(transcript, tls, &buf);
            }
            Step::StartTls => {
                if !io.buffer().is_empty() {
                    return Err("client pipelined bytes behind its STARTTLS".into());
                }
                let inner = io.into_inner();
                let stream = cert
                    .acceptor()
                    .accept(inner)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                io = BufReader::new(Box::new(stream));
                tls = true;
            }
            Step::StallHandshake => {
                let mut hello = [0u8; 5];
                let _ = tokio::io::AsyncReadExt::read_exact(&mut io, &mut hello).await;
                drain_until_closed(&mut io).await;
                return Ok(());
            }
            Step::Stall => {
                drain_until_closed(&mut io).await;
                return Ok(());
            }
            Step::HangFor(d) => {
                tokio::time::sleep(*d).await;
                drain_until_closed(&mut io).await;
                return Ok(());
            }
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::Close => {
                let _ = io.get_mut().shutdown().await;
                return Ok(());
            }
        }
    }
    // End of script: give the client a moment to say QUIT, then close.
    let _ = tokio::time::timeout(Duration::from_secs(2), read_line(&mut io, tls, transcript)).await;
    Ok(())
}

async fn write(io: &mut BufReader<Box<dyn Io>>, bytes: &[u8]) -> Result<(), String> {
    let inner = io.get_mut();
    inner
        .write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    inner.flush().await.map_err(|e| format!("flush: {e}"))
}

async fn read_line(
    io: &mut BufReader<Box<dyn Io>>,
    tls: bool,
    transcript: &mut Transcript,
) -> Result<String, String> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(EXPECT_TIMEOUT, async {
        loop {
            let available = io.fill_buf().await.map_err(|e| format!("read: {e}"))?;
            if available.is_empty() {
                return Err("client closed the connection".to_owned());
            }
            let (take, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            io.consume(take);
            if done {
                return Ok(());
            }
            if line.len() > MAX_LINE {
                return Err("client line too long".to_owned());
            }
        }
    })
    .await
    .map_err(|_| "client sent nothing".to_owned())?;
    record(transcript, tls, &line);
    read?;
    let text = String::from_utf8_lossy(&line);
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn record(transcript: &mut Transcript, tls: bool, bytes: &[u8]) {
    if tls {
        transcript.encrypted.extend_from_slice(bytes);
    } else {
        transcript.plaintext.extend_from_slice(bytes);
    }
}

async fn drain_until_closed(io: &mut BufReader<Box<dyn Io>>) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match tokio::io::AsyncReadExt::read(io, &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
