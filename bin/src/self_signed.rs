//! A CA and a certificate for `localhost` and 127.0.0.1 it signed, made in memory at start:
//! TLS for in-process benches and local trials, where no operator-issued certificate
//! exists. Nothing here is written to disk.

use anyhow::{Context, Result};
use ferrojob_transport::tls::{ClientTls, ServerTls};

/// PEM text of a fresh CA and of a leaf certificate (with its key) that it signed.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA's certificate.
    pub ca_pem: String,
    /// The leaf certificate (SANs `localhost` and `127.0.0.1`).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

impl SelfSigned {
    /// Makes a new CA and leaf (ECDSA P-256).
    pub fn generate() -> Result<SelfSigned> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferrojob local CA");
        let ca = ca_params.self_signed(&ca_key).context("CA certificate")?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().context("leaf key")?;
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&key, &issuer)
            .context("leaf certificate")?;
        Ok(SelfSigned {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The server side: the leaf and its key.
    pub fn server(&self) -> Result<ServerTls> {
        Ok(ServerTls::from_pem(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
        )?)
    }

    /// The client side: trusts the CA and expects the name `localhost`.
    pub fn client(&self) -> Result<ClientTls> {
        Ok(ClientTls::from_ca_pem(self.ca_pem.as_bytes())?.with_server_name("localhost")?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_leaf_loads_and_the_ca_loads() {
        let pki = super::SelfSigned::generate().unwrap();
        pki.server().unwrap();
        pki.client().unwrap();
    }
}
