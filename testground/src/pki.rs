//! The one throwaway certificate authority of the test support: the embedded [`server`]
//! and the scripted [`hostile`] servers both get their certificates here.
//!
//! [`server`]: crate::server
//! [`hostile`]: crate::hostile

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

static NEXT_PKI: AtomicU64 = AtomicU64::new(0);

/// A throwaway CA, with good and bad leaf certificates signed by it.
#[derive(Debug)]
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// Written on first use only: the demo and most tests never need the file.
    ca_file: Mutex<Option<PathBuf>>,
    serial: u64,
}

impl Pki {
    /// A fresh CA.
    ///
    /// # Panics
    /// When key generation fails (see [`Pki::try_generate`]).
    pub fn generate() -> Self {
        Self::try_generate().expect("CA generation")
    }

    /// A fresh CA, or rcgen's reason why not.
    pub fn try_generate() -> Result<Self, rcgen::Error> {
        let serial = NEXT_PKI.fetch_add(1, Ordering::Relaxed);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        // A distinct name per CA: a leaf from another CA must look unknown, not mis-signed.
        params.distinguished_name.push(
            DnType::CommonName,
            format!("mail-testground CA {} {serial}", std::process::id()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mail-testground");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            ca_file: Mutex::new(None),
            serial,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A file holding the CA certificate (PEM), for `TrustRoots::CaFile` and `--ca-file`
    /// options: written to a fresh temporary directory on the first call, the same path after
    /// that, removed when the `Pki` is dropped.
    ///
    /// # Panics
    /// When the file cannot be written (see [`Pki::try_ca_file`]).
    pub fn ca_file(&self) -> PathBuf {
        self.try_ca_file().expect("write the CA file")
    }

    /// [`Pki::ca_file`], or the I/O error.
    pub fn try_ca_file(&self) -> io::Result<PathBuf> {
        let mut slot = self.ca_file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = slot.as_ref() {
            return Ok(path.clone());
        }
        let dir = std::env::temp_dir().join(format!(
            "mail-testground-pki-{}-{}",
            std::process::id(),
            self.serial
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("ca.crt");
        std::fs::write(&path, self.ca_pem.as_bytes())?;
        *slot = Some(path.clone());
        Ok(path)
    }

    /// A valid leaf for `name` (a DNS name or an IP address).
    ///
    /// # Panics
    /// When `name` is neither (see [`Pki::try_leaf`]).
    pub fn leaf_for(&self, name: &str) -> ServerCert {
        self.try_leaf(&[name], false).expect("leaf certificate")
    }

    /// A leaf for `name` that expired in 2020.
    ///
    /// # Panics
    /// As [`Pki::leaf_for`].
    pub fn expired_leaf_for(&self, name: &str) -> ServerCert {
        self.try_leaf(&[name], true).expect("leaf certificate")
    }

    /// A server certificate for every name in `names` (DNS names or IP addresses; the first is
    /// also the subject's common name), valid now or, with `expired`, only during 2019.
    pub fn try_leaf(&self, names: &[&str], expired: bool) -> Result<ServerCert, rcgen::Error> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            chain: vec![cert.der().clone(), self.ca_der.clone()],
            key_pkcs8: key.serialize_der(),
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let slot = self
            .ca_file
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = slot.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A server certificate chain (leaf, then CA) and the leaf's key.
#[derive(Debug, Clone)]
pub struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
}

impl ServerCert {
    /// A TLS 1.2/1.3 acceptor (ring provider) serving this certificate, or rustls' reason why
    /// not.
    pub fn try_acceptor(&self) -> Result<TlsAcceptor, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone())),
            )?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// [`ServerCert::try_acceptor`] for a certificate generated here, which rustls always
    /// accepts.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.try_acceptor()
            .expect("generated certificate and key match")
    }
}
