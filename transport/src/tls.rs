//! TLS for the worker port (rustls with the `ring` provider, no OpenSSL): certificates and
//! keys from PEM, the server's and the client's settings, and the channel binding the
//! handshake proofs sign.
//!
//! ```text
//!   server (or a worker's peer listener)          client (a worker)
//!   ServerTls::from_pem_files(cert, key)         ClientTls::from_ca_pem_file(ca)
//!                                                  .with_server_name("ferrojob.internal")
//!          TLS 1.3 / 1.2 handshake: the client verifies the server's chain and name
//!          then both ends export 32 bytes of keying material (RFC 5705 / 8446 §7.5)
//!          under EXPORTER_LABEL, and the ferrojob handshake proofs sign them
//! ```
//!
//! A relay that terminates TLS on both sides gets two different exported values, so a proof
//! made on one channel does not verify on the other (see [`crate::auth`]).
//!
//! Plain TCP stays possible (no [`ServerTls`] / [`ClientTls`] in the
//! [`NetConfig`](crate::net::NetConfig)): then frames travel in clear text and are not
//! authenticated after the handshake, which is only fit for one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The label of the keying material the handshake proofs bind (RFC 5705 exporter).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-ferrojob-handshake-v1";

/// Length of the channel binding, bytes.
pub const CHANNEL_BINDING_LEN: usize = 32;

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file (certificate chain, private key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PEM holds nothing usable.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or key (e.g. the key does not match the certificate).
    #[error("TLS settings: {0}")]
    Config(String),
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName {
        /// The name given.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// The `ring` provider: classical key exchange (X25519, P-256, P-384) and AES-GCM /
/// ChaCha20-Poly1305. rustls marks it deprecated because it has no post-quantum key
/// exchange; the alternative, aws-lc-rs, needs CMake and a much larger C build. Switching is
/// this one function and the feature in the workspace manifest.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The server side of TLS: a certificate chain and its private key. Cheap to clone (one
/// shared rustls config). Equal when it is the same loaded config.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// From PEM text: `cert_chain` holds the leaf first, then intermediates; `key` one
    /// PKCS#8, PKCS#1 or SEC1 private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<ServerTls, TlsError> {
        let certs = certificates("certificate chain", cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// From two PEM files (see [`ServerTls::from_pem`]).
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        ServerTls::from_pem(
            &read("certificate chain", cert_chain)?,
            &read("private key", key)?,
        )
    }

    /// The rustls settings (e.g. to serve HTTP over the same certificate).
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// An acceptor for incoming connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

/// The client side of TLS: the CA certificates a server's chain must lead to, and the name
/// the server's certificate must carry. Without a fixed name, the name is the IP address
/// connected to (the certificate then needs that IP in its subject alternative names).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Trusts the CA certificates in `ca` (PEM, one or more).
    pub fn from_ca_pem(ca: &[u8]) -> Result<ClientTls, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates("CA certificates", ca)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Trusts the CA certificates in the PEM file `ca`.
    pub fn from_ca_pem_file(ca: &Path) -> Result<ClientTls, TlsError> {
        ClientTls::from_ca_pem(&read("CA certificates", ca)?)
    }

    /// Requires the server's certificate to name `name` (a DNS name or an IP address).
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|e| TlsError::ServerName {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// The same trust, with the name taken from each address connected to.
    pub fn without_server_name(mut self) -> ClientTls {
        self.server_name = None;
        self
    }

    /// The name checked when connecting to `addr`.
    pub fn server_name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }

    /// The rustls settings (e.g. for an HTTP client).
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// A connector for outgoing connections.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The channel binding of an established TLS connection: keying material exported under
/// [`EXPORTER_LABEL`]; both ends of one TLS connection get the same bytes, ends of different
/// connections different ones.
pub(crate) fn channel_binding(
    conn: &impl ExportKeyingMaterial,
) -> Result<[u8; CHANNEL_BINDING_LEN], String> {
    let mut out = [0u8; CHANNEL_BINDING_LEN];
    conn.export(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The one rustls call [`channel_binding`] needs, for client and server connections alike.
pub(crate) trait ExportKeyingMaterial {
    fn export(&self, out: &mut [u8]) -> Result<(), rustls::Error>;
}

impl ExportKeyingMaterial for rustls::ServerConnection {
    fn export(&self, out: &mut [u8]) -> Result<(), rustls::Error> {
        self.export_keying_material(out, EXPORTER_LABEL, None)
            .map(|_| ())
    }
}

impl ExportKeyingMaterial for rustls::ClientConnection {
    fn export(&self, out: &mut [u8]) -> Result<(), rustls::Error> {
        self.export_keying_material(out, EXPORTER_LABEL, None)
            .map(|_| ())
    }
}
