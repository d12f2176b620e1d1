//! TLS for Switchyard: server certificates for every listener, client
//! certificates (mTLS) between data planes and the control plane, and the
//! trust a client needs to reach a TLS listener.
//!
//! Every PEM file is read and parsed when the process starts, so a missing
//! file, a key that does not parse or a key that does not match its
//! certificate stops the start with the file named, not the first handshake.
//! All of it is rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A handshake that takes longer than this is dropped, so a client that
/// opens a connection and sends nothing holds no resources for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} holds no PEM certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { what: &'static str, path: PathBuf },
    #[error("{what} {} is not a usable CA certificate: {reason}", path.display())]
    BadCa {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the key {} does not fit the certificate {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{0} and {1} go together: set both or neither")]
    Pair(&'static str, &'static str),
}

/// A certificate chain and its private key, checked to belong together.
#[derive(Clone)]
pub struct KeyPairFiles {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for KeyPairFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairFiles")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl KeyPairFiles {
    /// Reads `cert` (the leaf first, then intermediates) and `key`, and
    /// checks that the key is the certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("private key", key)?;
        let chain = certificates("certificate", cert, &cert_pem)?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
            what: "private key",
            path: key.to_path_buf(),
        })?;
        // Building a server config checks that the key signs for the leaf.
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(chain.clone(), private.clone_key())
            })
            .map_err(|e| TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            cert_pem,
            key_pem,
            chain,
            key: Arc::new(private),
        })
    }

    /// Loads the pair when both paths are given; one without the other is an error.
    pub fn load_optional(
        cert: Option<&Path>,
        key: Option<&Path>,
        names: (&'static str, &'static str),
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err(TlsError::Pair(names.0, names.1)),
        }
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// One or more CA certificates to trust.
#[derive(Clone)]
pub struct CaFile {
    pem: Vec<u8>,
    roots: Arc<rustls::RootCertStore>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl CaFile {
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = read("CA certificate", path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates("CA certificate", path, &pem)? {
            roots.add(cert).map_err(|e| TlsError::BadCa {
                what: "CA certificate",
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            pem,
            roots: Arc::new(roots),
        })
    }

    /// The PEM text as read, for clients that take it whole (reqwest).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// What a TLS listener serves: its certificate and, for mTLS, the CA that
/// client certificates must chain to.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub identity: KeyPairFiles,
    pub client_ca: Option<CaFile>,
}

impl ServerTls {
    /// For a tonic server. With a client CA, a client that presents a
    /// certificate must present one signed by it or the handshake fails; a
    /// client may still connect without one (operators' grpcurl with the
    /// admin token), and [`has_client_certificate`] tells the services apart.
    pub fn grpc(&self) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new()
            .identity(self.identity.identity())
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(Certificate::from_pem(&ca.pem))
                .client_auth_optional(true);
        }
        config
    }

    /// For an HTTP listener (HTTP/2 and HTTP/1.1 by ALPN). Client
    /// certificates are not asked for: HTTP clients authenticate by API key.
    pub fn http(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(self.identity.chain.clone(), self.identity.key.clone_key())
            })
            .map_err(|e| TlsError::Mismatch {
                cert: PathBuf::from("(server certificate)"),
                key: PathBuf::from("(server key)"),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// How a client reaches an `https://` server: the CA to trust (the system's
/// roots without one) and, for mTLS, its own certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca: Option<CaFile>,
    pub identity: Option<KeyPairFiles>,
}

impl ClientTls {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.identity.is_none()
    }

    /// For a tonic channel to an `https://` endpoint.
    pub fn grpc(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(&ca.pem)),
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(identity.identity());
        }
        config
    }
}

/// Whether the gRPC request came over TLS with a client certificate. With a
/// client CA configured, rustls has already verified any certificate
/// presented against it, so presence is proof.
pub fn has_client_certificate(extensions: &http::Extensions) -> bool {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

/// Installs ring as the process's rustls provider (reqwest and tonic's
/// client use the process default). Safe to call more than once.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}
