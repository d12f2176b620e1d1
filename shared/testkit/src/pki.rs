//! A throwaway PKI for TLS tests: one CA, a server certificate for
//! `localhost` and 127.0.0.1, and a client certificate, all signed by it.
//! `generate` twice gives two unrelated CAs, for "signed by someone else".

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// Where [`Pki::write_to`] put each file.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// # Panics
    /// If rcgen cannot build a certificate; only tests call this.
    #[allow(clippy::expect_used, reason = "test fixture generator")]
    pub fn generate() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "Switchyard test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &ca).expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "localhost",
        );
        let (client_cert_pem, client_key_pem) = leaf(
            vec!["data-plane".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "data-plane",
        );
        Self {
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        }
    }

    /// Writes every file into `dir` (which must exist).
    ///
    /// # Panics
    /// If a file cannot be written.
    #[allow(clippy::expect_used, reason = "test fixture writer")]
    pub fn write_to(&self, dir: &Path) -> PkiFiles {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("writing a PKI file");
            path
        };
        PkiFiles {
            ca: write("ca.pem", &self.ca_pem),
            server_cert: write("server.pem", &self.server_cert_pem),
            server_key: write("server-key.pem", &self.server_key_pem),
            client_cert: write("client.pem", &self.client_cert_pem),
            client_key: write("client-key.pem", &self.client_key_pem),
        }
    }
}
