//! Real local services for the discovery tests: a DNS server (hickory-server, UDP and TCP on a
//! random loopback port) and an HTTPS server (rustls, certificate from a CA made with rcgen)
//! that serves autoconfig files by host and path.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_server::{
    ServerFuture,
    authority::{Catalog, ZoneType},
    proto::rr::{
        LowerName, Name, RData, Record,
        rdata::{A, MX, SOA, SRV},
    },
    store::in_memory::InMemoryAuthority,
};
use mail_account::{
    discover::dns::HickoryDns,
    discover::http::{HttpsClient, HttpsOptions},
};
use mail_common::transport::TrustRoots;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

/// A DNS record to serve.
pub enum Rr {
    /// SRV: name, priority, weight, port, target ("." = not offered).
    Srv(&'static str, u16, u16, u16, &'static str),
    /// MX: name, preference, exchange.
    Mx(&'static str, u16, &'static str),
    /// A: name -> 127.0.0.1.
    A(&'static str),
}

fn name(s: &str) -> Name {
    let fq = if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    };
    Name::from_str(&fq).unwrap()
}

/// A running DNS server; dropping it stops it.
pub struct DnsServer {
    pub addr: SocketAddr,
    _server: ServerFuture<Catalog>,
}

impl DnsServer {
    /// Serves `records` (one root zone) on 127.0.0.1, UDP and TCP on the same random port.
    pub async fn start(records: &[Rr]) -> Self {
        let mut zone = InMemoryAuthority::empty(Name::root(), ZoneType::Primary, false);
        let soa = SOA::new(name("ns.test"), name("admin.test"), 1, 60, 60, 60, 60);
        zone.upsert_mut(Record::from_rdata(Name::root(), 60, RData::SOA(soa)), 1);
        for rr in records {
            let record = match rr {
                Rr::Srv(n, prio, weight, port, target) => Record::from_rdata(
                    name(n),
                    60,
                    RData::SRV(SRV::new(*prio, *weight, *port, name(target))),
                ),
                Rr::Mx(n, pref, exchange) => {
                    Record::from_rdata(name(n), 60, RData::MX(MX::new(*pref, name(exchange))))
                }
                Rr::A(n) => Record::from_rdata(name(n), 60, RData::A(A(Ipv4Addr::LOCALHOST))),
            };
            assert!(zone.upsert_mut(record, 1), "record not inserted");
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(zone)]);
        let mut server = ServerFuture::new(catalog);
        // Find a port free for both UDP and TCP.
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5));
                return Self {
                    addr,
                    _server: server,
                };
            }
        }
        panic!("no free loopback port for the DNS server");
    }

    /// A resolver that asks only this server.
    pub fn resolver(&self) -> HickoryDns {
        HickoryDns::with_name_servers(&[self.addr], Duration::from_secs(2))
    }
}

/// A CA and a server certificate for the given names, made with rcgen.
pub struct TestCa {
    pub roots: Arc<RootCertStore>,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mail-account discovery test CA");
        let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        Self {
            roots: Arc::new(roots),
            server_config: Arc::new(server_config),
        }
    }
}

/// A running HTTPS server serving fixed bodies by (host, path).
pub struct HttpsServer {
    pub addr: SocketAddr,
    /// "host path" of every request served, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    /// `routes`: (host, path, body); anything else is a 404.
    pub async fn start(ca: &TestCa, routes: &[(&str, &str, &str)]) -> Self {
        let routes: Arc<HashMap<(String, String), String>> = Arc::new(
            routes
                .iter()
                .map(|(h, p, b)| (((*h).to_owned(), (*p).to_owned()), (*b).to_owned()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&ca.server_config));
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let routes = Arc::clone(&routes);
                let log = Arc::clone(&log2);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let mut lines = text.lines();
                    let path = lines
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("/")
                        .to_owned();
                    let host = lines
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    let host = host.split(':').next().unwrap_or("").to_owned();
                    let bare_path = path.split('?').next().unwrap_or("").to_owned();
                    log.lock().unwrap().push(format!("{host} {path}"));
                    let (status, body) = routes
                        .get(&(host, bare_path))
                        .map_or(("404 Not Found", String::new()), |b| ("200 OK", b.clone()));
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { addr, log, task }
    }

    /// A client that trusts `ca` and sends every listed host to this server.
    pub fn client(&self, ca: &TestCa, hosts: &[&str]) -> HttpsClient {
        let mut options = HttpsOptions::default();
        options.trust = TrustRoots::Store(Arc::clone(&ca.roots));
        options.timeout = Duration::from_secs(5);
        options.resolve = hosts.iter().map(|h| ((*h).to_owned(), self.addr)).collect();
        HttpsClient::new(&options).unwrap()
    }

    pub fn served(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// An autoconfig file with the given servers: (type, host, port, socketType, username).
pub fn autoconfig_xml(id: &str, servers: &[(&str, &str, u16, &str, &str)]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\"?>\n<clientConfig version=\"1.1\"><emailProvider id=\"{id}\"><domain>{id}</domain><displayName>{id}</displayName>\n"
    );
    for (kind, host, port, socket, username) in servers {
        let element = if *kind == "smtp" {
            "outgoingServer"
        } else {
            "incomingServer"
        };
        let _ = writeln!(
            out,
            "<{element} type=\"{kind}\"><hostname>{host}</hostname><port>{port}</port><socketType>{socket}</socketType><username>{username}</username><authentication>password-cleartext</authentication></{element}>"
        );
    }
    out.push_str("</emailProvider></clientConfig>\n");
    out
}
