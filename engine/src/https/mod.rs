//! Outgoing HTTPS: the TLS settings every HTTP client of the engine is built with (the Rust
//! client of the OpenAPI, alarm webhooks, the worker's `http` processor).
//!
//! rustls runs on the `ring` provider, handed to each [`rustls::ClientConfig`] explicitly and
//! the config handed to reqwest whole ([`HttpsRoots::client_builder`]): no client depends on
//! a process-wide default provider, and reqwest is compiled with no provider of its own, so
//! neither OpenSSL nor aws-lc is linked. Which certificate authorities a server's chain may
//! lead to is an [`HttpsRoots`]:
//!
//! | roots | trusts | used by |
//! |---|---|---|
//! | [`HttpsRoots::public`] | Mozilla's root CAs (`webpki-roots`, compiled in, no system files read) | the client by default, alarm webhooks and the `http` processor by default |
//! | [`HttpsRoots::from_ca_file`] | only the CAs in a PEM file (a private CA) | `ferrojob --tls-ca FILE` |
//! | [`HttpsRoots::with_public`] of the above | both | `ferrojob-server --alarm-tls-ca FILE` |
//!
//! The server's certificate must name the URL's host (a DNS name or an IP address in its
//! subject alternative names). TLS 1.3 and 1.2 only. `http://` URLs stay plain.
//!
//! A handshake failure surfaces as a [`rustls::Error`] deep in a request error's chain:
//! [`tls_failure`] finds it and [`explain`] says in words what it means.

#[cfg(any(feature = "server", feature = "worker"))]
pub mod destination;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// Why HTTPS settings could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CA PEM holds no usable certificate.
    #[error("CA certificates from {origin}: {reason}")]
    Pem {
        /// Where they came from (a path, or "PEM text").
        origin: String,
        /// What is wrong with them.
        reason: String,
    },
    /// rustls or reqwest refused the settings.
    #[error("HTTPS client settings: {0}")]
    Config(String),
}

/// The certificate authorities an HTTPS server's chain may lead to (see the module docs).
/// Cheap to clone.
#[derive(Clone)]
pub struct HttpsRoots {
    /// Mozilla's roots are trusted.
    public: bool,
    /// Extra CAs (DER), shared.
    extra: Arc<[CertificateDer<'static>]>,
    /// Where the extra CAs came from, for messages.
    origin: Option<String>,
}

impl Default for HttpsRoots {
    fn default() -> Self {
        HttpsRoots::public()
    }
}

impl std::fmt::Debug for HttpsRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsRoots")
            .field("public", &self.public)
            .field("extra_cas", &self.extra.len())
            .field("origin", &self.origin)
            .finish()
    }
}

impl PartialEq for HttpsRoots {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public && self.extra == other.extra
    }
}

impl HttpsRoots {
    /// Mozilla's root CAs (the `webpki-roots` crate).
    pub fn public() -> HttpsRoots {
        HttpsRoots {
            public: true,
            extra: Arc::from(Vec::new()),
            origin: None,
        }
    }

    /// Only the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn from_ca_pem(pem: &[u8]) -> Result<HttpsRoots, HttpsError> {
        HttpsRoots::parse(pem, "PEM text".to_owned())
    }

    /// Only the CA certificates in the PEM file at `path`.
    pub fn from_ca_file(path: &Path) -> Result<HttpsRoots, HttpsError> {
        let pem = std::fs::read(path).map_err(|source| HttpsError::Read {
            path: path.to_owned(),
            source,
        })?;
        HttpsRoots::parse(&pem, path.display().to_string())
    }

    fn parse(pem: &[u8], origin: String) -> Result<HttpsRoots, HttpsError> {
        let bad = |reason: String| HttpsError::Pem {
            origin: origin.clone(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE block".to_owned()));
        }
        // Each one must be a certificate rustls can anchor trust in.
        let mut store = RootCertStore::empty();
        for cert in &certs {
            store
                .add(cert.clone())
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        Ok(HttpsRoots {
            public: false,
            extra: Arc::from(certs),
            origin: Some(origin),
        })
    }

    /// The same CAs, and Mozilla's roots too.
    pub fn with_public(mut self) -> HttpsRoots {
        self.public = true;
        self
    }

    /// Whether Mozilla's roots are trusted.
    pub fn trusts_public(&self) -> bool {
        self.public
    }

    /// The number of CA certificates trusted besides Mozilla's roots.
    pub fn extra_cas(&self) -> usize {
        self.extra.len()
    }

    /// The rustls settings: these roots, the `ring` provider, TLS 1.3 and 1.2, HTTP/1.1 by
    /// ALPN, no client certificate.
    pub fn client_config(&self) -> Result<ClientConfig, HttpsError> {
        let mut roots = RootCertStore::empty();
        if self.public {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in self.extra.iter() {
            roots
                .add(cert.clone())
                .map_err(|e| HttpsError::Config(format!("CA certificate: {e}")))?;
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A reqwest builder that speaks HTTPS with these roots (and plain HTTP); the caller adds
    /// its timeouts and redirect policy. The only way the engine makes an HTTP client: a
    /// reqwest builder without a preconfigured TLS config would look for a process-wide
    /// rustls provider and panic when there is none.
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder, HttpsError> {
        let config = self.client_config()?;
        #[allow(clippy::disallowed_methods)]
        let builder = reqwest::Client::builder();
        Ok(builder.tls_backend_preconfigured(config))
    }

    /// A reqwest client with these roots and reqwest's defaults otherwise.
    pub fn client(&self) -> Result<reqwest::Client, HttpsError> {
        self.client_builder()?
            .build()
            .map_err(|e| HttpsError::Config(e.to_string()))
    }
}

/// The `ring` provider (as in `ferrojob_transport::tls`): rustls marks it deprecated for
/// lacking a post-quantum key exchange; the alternative, aws-lc-rs, needs CMake and a much
/// larger C build.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS error somewhere in `error`'s chain, if the failure was the handshake's. An
/// `io::Error` hides the error it wraps from `source()` (and hyper wraps rustls's in two), so
/// each one is opened instead.
pub fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

/// What a TLS failure means, in words a user can act on.
pub fn explain(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the server's certificate is not signed by a CA this client trusts"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host in the URL"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet"
            }
            CertificateError::Revoked => "the server's certificate is revoked",
            _ => "the server's certificate is refused",
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer in TLS (is it serving plain http://?)"
        }
        rustls::Error::AlertReceived(_) => "the server refused the TLS handshake",
        _ => "the TLS handshake failed",
    }
}

/// `error` with its causes, one after the other (reqwest's own message names only the URL),
/// and what a TLS failure means: a detail for logs and alarm attempts.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    if let Some(tls) = tls_failure(error) {
        let tls_text = tls.to_string();
        if !out.contains(&tls_text) {
            out.push_str(": ");
            out.push_str(&tls_text);
        }
        out.push_str(" (");
        out.push_str(explain(tls));
        out.push(')');
    }
    out
}

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;
