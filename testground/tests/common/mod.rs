//! A raw, scripted TCP/TLS client for driving the test server line by line.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use mail_testground::server::TestServer;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

pub const USER: &str = "demo@demo.example";
pub const PASS: &str = "secret";
pub const OTHER: &str = "other@demo.example";
pub const OTHER_PASS: &str = "hunter2";

const LIMIT: Duration = Duration::from_secs(10);

pub async fn server() -> TestServer {
    TestServer::builder()
        .user(USER, PASS)
        .user(OTHER, OTHER_PASS)
        .start()
        .await
        .expect("server starts")
}

pub fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

pub fn plain_ir(user: &str, pass: &str) -> String {
    b64(&format!("\0{user}\0{pass}"))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One client connection with its read buffer.
pub struct Client {
    stream: Option<Stream>,
    buf: Vec<u8>,
}

impl Client {
    pub async fn plain(addr: SocketAddr) -> Self {
        let tcp = timeout(LIMIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self {
            stream: Some(Stream::Plain(tcp)),
            buf: Vec::new(),
        }
    }

    pub async fn tls(
        addr: SocketAddr,
        connector: &TlsConnector,
        name: &str,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let tls = timeout(LIMIT, connector.connect(name, tcp)).await??;
        Ok(Self {
            stream: Some(Stream::Tls(Box::new(tls))),
            buf: Vec::new(),
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// Upgrades after a positive STLS/STARTTLS reply; nothing may be buffered.
    pub async fn upgrade(&mut self, connector: &TlsConnector) -> std::io::Result<()> {
        assert!(
            self.buf.is_empty(),
            "bytes after the TLS go-ahead: {:?}",
            self.buf
        );
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            panic!("not plain");
        };
        let name = ServerName::try_from("localhost").unwrap();
        let tls = timeout(LIMIT, connector.connect(name, tcp)).await??;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        match self.stream.as_mut().unwrap() {
            Stream::Plain(s) => s.write_all(bytes).await.unwrap(),
            Stream::Tls(s) => {
                s.write_all(bytes).await.unwrap();
                s.flush().await.unwrap();
            }
        }
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = timeout(LIMIT, async {
            match self.stream.as_mut().unwrap() {
                Stream::Plain(s) => s.read(&mut chunk).await,
                Stream::Tls(s) => s.read(&mut chunk).await,
            }
        })
        .await
        .expect("server answers in time")
        .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// One raw line with its CRLF, or `None` at end of stream.
    pub async fn raw_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=pos).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// One line without its CRLF; panics at end of stream.
    pub async fn line(&mut self) -> String {
        let raw = self.raw_line().await.expect("a line before end of stream");
        assert!(raw.ends_with(b"\r\n"), "line without CRLF: {raw:?}");
        String::from_utf8(raw[..raw.len() - 2].to_vec()).unwrap()
    }

    /// Whether the server closed the connection (with nothing more to read).
    pub async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }

    /// Sends a command line and returns the first reply line.
    pub async fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n")).await;
        self.line().await
    }

    /// Sends a command and asserts the reply starts with `prefix`; returns the reply.
    pub async fn ok(&mut self, command: &str, prefix: &str) -> String {
        let reply = self.cmd(command).await;
        assert!(
            reply.starts_with(prefix),
            "{command:?} -> {reply:?}, wanted {prefix:?}"
        );
        reply
    }

    /// Reads a POP3 multi-line body after its status line: the raw (still dot-stuffed) bytes
    /// up to, not including, the terminating `.` line.
    pub async fn pop3_multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.raw_line().await.expect("multi-line response ends");
            if line == b".\r\n" {
                return out;
            }
            out.extend_from_slice(&line);
        }
    }

    /// Reads one whole SMTP reply: its code and text lines.
    pub async fn smtp_reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let code: u16 = line[..3].parse().unwrap();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line[4.min(line.len())..].to_owned());
            if !more {
                return (code, lines);
            }
        }
    }

    /// Sends an SMTP command and asserts the reply code.
    pub async fn smtp(&mut self, command: &str, code: u16) -> Vec<String> {
        self.send(format!("{command}\r\n")).await;
        let (got, lines) = self.smtp_reply().await;
        assert_eq!(got, code, "{command:?} -> {got} {lines:?}");
        lines
    }
}

/// Removes POP3 dot-stuffing.
pub fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// An SMTP session on the STARTTLS listener, upgraded, greeted and authenticated.
pub async fn smtp_authenticated(server: &TestServer) -> Client {
    let mut c = Client::plain(server.submission_addr()).await;
    assert_eq!(c.smtp_reply().await.0, 220);
    c.smtp("EHLO client.test", 250).await;
    c.smtp("STARTTLS", 220).await;
    c.upgrade(&server.tls_connector()).await.unwrap();
    c.smtp("EHLO client.test", 250).await;
    c.smtp(&format!("AUTH PLAIN {}", plain_ir(USER, PASS)), 235)
        .await;
    c
}

/// A POP3 session on the implicit-TLS listener, logged in as `user`.
pub async fn pop3_logged_in(server: &TestServer, user: &str, pass: &str) -> Client {
    let mut c = Client::tls(server.pop3s_addr(), &server.tls_connector(), "localhost")
        .await
        .unwrap();
    assert!(c.line().await.starts_with("+OK"));
    c.ok(&format!("USER {user}"), "+OK").await;
    c.ok(&format!("PASS {pass}"), "+OK").await;
    c
}
